"""The request observer must hand a ``wsgi.file_wrapper`` body back untouched: gunicorn sends
only an instance of its own wrapper with ``sendfile`` (api/reads.py), anything else byte by byte."""

from __future__ import annotations

import io
import logging

from gunicorn.http.wsgi import FileWrapper

from byterange_server.runtime.observe import RequestObserver


def test_a_file_wrapper_passes_through_and_is_logged_at_close(caplog):
    data = io.BytesIO(b"x" * 1000)
    statuses = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "1000")])
        return environ["wsgi.file_wrapper"](data)

    observer = RequestObserver(app, None, request_log=True)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/files/x", "wsgi.file_wrapper": FileWrapper}
    with caplog.at_level(logging.INFO, logger="byterange_server.access"):
        body = observer(environ, lambda status, headers, exc_info=None: statuses.append(status))
        assert isinstance(body, FileWrapper)  # gunicorn's isinstance check still holds
        assert not caplog.records
        body.close()
    assert data.closed
    assert statuses == ["200 OK"]
    [line] = [record for record in caplog.records if record.name == "byterange_server.access"]
    assert line.fields["bytes_out"] == 1000 and line.fields["status"] == 200
