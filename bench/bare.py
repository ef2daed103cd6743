"""A bare Flask app of one route under the same gunicorn: the floor of scenario H1.

It answers ``HEAD /files/<id>`` (Flask routes HEAD to the GET view) with a fixed set of headers of
about the size of ours, so what H1 shows beside it is what our pipeline, observer and database
read add to gunicorn, Werkzeug and Flask dispatch. Run as ``bench.bare:create_app()`` with the
gunicorn config of the server.
"""

from __future__ import annotations

from flask import Flask
from flask import Response

__all__ = ["create_app"]

_HEADERS = {
    "Content-Length": "65536",
    "Upload-Offset": "65536",
    "Upload-Length": "131072",
    "Committed-Ranges": "bytes=0-65535",
    "Cache-Control": "no-store",
}


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/files/<resource_id>")
    def resource(resource_id: str) -> Response:
        return Response(status=200, headers=_HEADERS)

    return app
