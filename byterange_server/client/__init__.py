"""Client side of the byte-range upload protocol (see ``docs/protocol.md``).

The client package speaks the same wire contract as the server and therefore reuses, rather
than re-implements, the server's sans-IO layers: header parsing and printing come from
:mod:`byterange_server.protocol` (``Committed-Ranges``, ``Content-Range``) and all interval
arithmetic from :mod:`byterange_server.extents`.

Its first brick is :mod:`byterange_server.client.plan`, a sans-IO segment planner for
parallel, resumable segmented uploads.
"""

from __future__ import annotations

from byterange_server.client.plan import Segment
from byterange_server.client.plan import bytes_remaining
from byterange_server.client.plan import committed_from_header
from byterange_server.client.plan import missing_ranges
from byterange_server.client.plan import plan_segments

__all__ = [
    "Segment",
    "bytes_remaining",
    "committed_from_header",
    "missing_ranges",
    "plan_segments",
]
