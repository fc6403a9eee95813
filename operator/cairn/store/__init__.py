"""PostgreSQL: migrations and every query, behind a small interface."""
