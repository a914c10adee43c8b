"""Where durable state lives: SQLite in the home (the default) or a PostgreSQL server.

- `url`: the `--database` URL (`sqlite:///PATH` or `postgresql://…`), parsed and redacted.
- `postgres`: the connection pool, start-up check, health probe and outage error.
- `migrations`: the PostgreSQL schema, created and migrated at start (`schema_version`).
"""
