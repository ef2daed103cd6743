"""WSGI entry point for a checkout: ``gunicorn -c gunicorn.conf.py wsgi:app``.

This is the only module that builds an app at import time; configure it with ``BYTERANGE_*``
environment variables (see docs/configuration.md).
"""

from byterange_server import create_app

app = create_app()
