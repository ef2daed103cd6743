"""Loaded at interpreter start by a server the tests start with this directory first on
PYTHONPATH: the host's own clock runs ``CLOCK_AHEAD_SECONDS`` ahead for everything that reads it
in Python (``time.time``, ``time.time_ns``, the package's ``clock.utcnow``, gunicorn's Date
header), while the monotonic clock, which timeouts and the lease keeper use, stays real.

libfaketime would do this from outside, but 0.9.10 breaks Python 3.11 here: with the monotonic
clock left real ``time.sleep`` fails with EINVAL (its absolute ``clock_nanosleep``), and with it
faked, timed waits on locks never return.
"""

import datetime
import os
import time

_AHEAD = float(os.environ.get("CLOCK_AHEAD_SECONDS") or 0)

if _AHEAD:
    _real_time = time.time
    _real_time_ns = time.time_ns
    time.time = lambda: _real_time() + _AHEAD
    time.time_ns = lambda: _real_time_ns() + int(_AHEAD * 1e9)

    from byterange_server.db import clock

    clock.utcnow = lambda: datetime.datetime.fromtimestamp(time.time(), datetime.timezone.utc)
