"""Authentication, per-key limits and usage accounting."""
