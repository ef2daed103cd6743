"""Gunicorn settings for a checkout (``gunicorn -c gunicorn.conf.py wsgi:app``); the same
settings that ``byterange-server serve`` uses."""

from byterange_server.gunicorn_conf import *  # noqa: F401,F403
