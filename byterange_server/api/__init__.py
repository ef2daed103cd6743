"""The HTTP layer: Flask lives here only.

One blueprint (``views.py``) is mounted at ``Settings.mount``; ``app.py`` runs every request
through one ordered pipeline of these modules. Every error leaves as ``application/problem+json``
(``responses.py``): :class:`~byterange_server.errors.ByterangeError` with its own type, told in
the request's dialect (``dialect.py``), Werkzeug's HTTP errors with theirs, and anything
unexpected as a bare 500 whose body holds no paths, SQL or stack traces (the log has them).
"""
