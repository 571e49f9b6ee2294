"""Alembic migrations of the SQL schema; `citizen-context db upgrade` applies them."""
