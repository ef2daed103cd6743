"""WSGI entry point used by ``byterange-server serve``: ``gunicorn byterange_server.wsgi:app``."""

from byterange_server import create_app

app = create_app()
