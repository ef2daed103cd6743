"""Client side of the byte-range upload protocol: parallel, resumable upload and download.

::

    from byterange_server.client import upload, download
    result = upload("big.bin", "http://127.0.0.1:8080/files", parallel=8)
    download(result.url, "copy.bin", parallel=8)

The client speaks the same wire contract as the server and therefore reuses, rather than
re-implements, the server's sans-IO layers: header parsing and printing come from
:mod:`byterange_server.protocol`, interval arithmetic from :mod:`byterange_server.extents`.

Layers, each importable on its own:

- :mod:`.plan` and :mod:`.wire` (sans-IO): which segments to send, and the request bodies;
- :mod:`.remote` (sans-IO): the resource state a response reports;
- :mod:`.transport`: HTTP (urllib3), what a failure means, the retry policy;
- :mod:`.engine`: retries driven by the committed state, worker threads, progress;
- :mod:`.upload`, :mod:`.download`, :mod:`.state` (the resume records), :mod:`.cli`.
"""

from __future__ import annotations

from collections.abc import Mapping

from .download import Downloader
from .download import DownloadResult
from .download import IncompleteResource
from .download import download
from .engine import Engine
from .engine import NoticeCallback
from .engine import Progress
from .errors import Cancelled
from .errors import ClientError
from .errors import IntegrityError
from .errors import ProtocolError
from .errors import RemoteChanged
from .errors import ServerRefused
from .errors import TransferFailed
from .plan import Segment
from .plan import bytes_remaining
from .plan import committed_from_header
from .plan import missing_ranges
from .plan import plan_segments
from .remote import RemoteState
from .transport import RetryPolicy
from .transport import Timeouts
from .transport import Transport
from .transport import normalize_url
from .upload import Uploader
from .upload import UploadResult
from .upload import upload
from .wire import WireFormat

__all__ = [
    "Cancelled",
    "ClientError",
    "DownloadResult",
    "Downloader",
    "Engine",
    "IncompleteResource",
    "IntegrityError",
    "NoticeCallback",
    "Progress",
    "ProtocolError",
    "RemoteChanged",
    "RemoteState",
    "RetryPolicy",
    "Segment",
    "ServerRefused",
    "Timeouts",
    "TransferFailed",
    "Transport",
    "UploadResult",
    "Uploader",
    "WireFormat",
    "bytes_remaining",
    "committed_from_header",
    "download",
    "missing_ranges",
    "plan_segments",
    "status",
    "upload",
]


def status(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
    notify: NoticeCallback | None = None,
) -> RemoteState:
    """The state of a resource (``HEAD``, with the committed ranges fetched if need be).

    :raises ValueError: ``url`` is not an ``http``/``https`` URL.
    """
    url = normalize_url(url)
    engine = Engine.connect(parallel=1, timeouts=timeouts, retry=retry, headers=headers, notify=notify)
    with engine.transport:
        return engine.state(url)
