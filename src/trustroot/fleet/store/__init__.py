"""The fleet store: SQLAlchemy 2 over SQLite (WAL, secure_delete) or PostgreSQL (psycopg 3)."""
