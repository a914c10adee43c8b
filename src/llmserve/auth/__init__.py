"""Authentication, per-key limits and usage accounting."""

from llmserve.auth.factory import build_gatekeeper, open_key_store
from llmserve.auth.gatekeeper import KeyGatekeeper
from llmserve.auth.policy import BindPolicyError, check_bind_policy

__all__ = [
    "BindPolicyError",
    "KeyGatekeeper",
    "build_gatekeeper",
    "check_bind_policy",
    "open_key_store",
]
