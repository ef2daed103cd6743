"""The WSGI app, built from ``BYTERANGE_*`` environment variables (docs/configuration.md).

From a checkout: ``gunicorn -c python:byterange_server.runtime.gunicorn_conf wsgi:app``. This is the only
module that builds an app at import time; ``byterange-server serve`` asks gunicorn to call the
factory instead (``byterange_server.app:create_app()``), so an installed package needs no file
of the checkout.
"""

from byterange_server import create_app

app = create_app()
