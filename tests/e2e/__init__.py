"""End-to-end tests: a real gunicorn (gthread workers) on loopback, on SQLite and PostgreSQL."""
