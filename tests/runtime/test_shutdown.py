"""The drain state and the gunicorn hooks of ``shutdown.py``, without a server.

Each test uses its own :class:`Drain` except the hook tests, which go through the process-wide
one (that is what the hooks drive) and reset it afterwards.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from byterange_server.config import Settings
from byterange_server.runtime.shutdown import DRAIN
from byterange_server.runtime.shutdown import Drain
from byterange_server.runtime.shutdown import grace_for
from byterange_server.runtime.shutdown import on_worker_init
from byterange_server.runtime.shutdown import on_worker_int


class Cuts:
    """A cut callable that counts its calls and can be waited for."""

    def __init__(self) -> None:
        self.calls = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.event.set()


def test_serving_until_begin():
    drain = Drain()
    cuts = Cuts()
    with drain.tracking(cuts) as write:
        assert drain.in_flight() == 1
        assert not drain.draining and not drain.cutting and not write.cut_by_shutdown
    assert drain.in_flight() == 0
    assert cuts.calls == 0


def test_begin_without_grace_cuts_every_write_once():
    drain = Drain()
    first, second = Cuts(), Cuts()
    with drain.tracking(first) as one, drain.tracking(second) as two:
        drain.begin(0)
        assert drain.draining and drain.cutting
        assert one.cut_by_shutdown and two.cut_by_shutdown
        assert drain.cut_all() == 2  # again: nothing is cut twice
        drain.begin(0)
    assert (first.calls, second.calls) == (1, 1)


def test_writes_run_on_during_the_grace_then_are_cut():
    drain = Drain()
    cuts = Cuts()
    with drain.tracking(cuts) as write:
        drain.begin(0.05)
        assert drain.draining
        assert cuts.event.wait(10), "never cut"
        assert write.cut_by_shutdown and drain.cutting


def test_a_long_grace_does_not_cut_and_a_later_begin_brings_the_cut_forward():
    drain = Drain()
    cuts = Cuts()
    with drain.tracking(cuts):
        drain.begin(3600)
        assert drain.draining and not drain.cutting and cuts.calls == 0
        drain.begin(7200)  # a later, longer grace changes nothing
        assert not drain.cutting
        drain.begin(0.01)  # SIGQUIT after SIGTERM
        assert cuts.event.wait(10), "the shorter grace did not apply"
    drain.reset()


def test_a_write_that_starts_after_the_cut_is_cut_at_once():
    drain = Drain()
    drain.begin(0)
    cuts = Cuts()
    with drain.tracking(cuts) as write:
        assert write.cut_by_shutdown and cuts.calls == 1


def test_a_failing_cut_is_logged_and_the_others_still_cut(caplog):
    drain = Drain()
    cuts = Cuts()

    def broken() -> None:
        raise OSError("socket already closed")

    with caplog.at_level(logging.ERROR), drain.tracking(broken), drain.tracking(cuts):
        assert drain.cut_all() == 2
    assert cuts.calls == 1
    assert "could not cut" in caplog.text


def test_reset_serves_again_and_stops_a_pending_cut():
    drain = Drain()
    drain.begin(3600)
    drain.reset()
    assert not drain.draining and not drain.cutting
    cuts = Cuts()
    with drain.tracking(cuts):
        drain.begin(0)
    assert cuts.calls == 1


@pytest.mark.parametrize(
    ("setting", "graceful_timeout", "used"),
    [(5, 60, 5), (40, 60, 30), (5, 5, 2.5), (0, 60, 0), (-1, 60, 0), (5, 0, 0)],
)
def test_grace_is_at_most_half_of_graceful_timeout(setting, graceful_timeout, used):
    assert grace_for(setting, graceful_timeout) == used


# -- gunicorn hooks ------------------------------------------------------------------------------


@pytest.fixture
def process_drain() -> Iterator[None]:
    original = signal.getsignal(signal.SIGTERM)
    DRAIN.reset()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, original)
        DRAIN.reset()


def _worker(grace: float, graceful_timeout: float) -> Any:
    settings = Settings(shutdown_grace=grace)
    return SimpleNamespace(
        wsgi=SimpleNamespace(config={"BYTERANGE_SETTINGS": settings}),
        cfg=SimpleNamespace(graceful_timeout=graceful_timeout),
        log=logging.getLogger("test.gunicorn"),
    )


def test_sigterm_drains_then_calls_gunicorns_handler(process_drain):
    seen: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))  # gunicorn's
    on_worker_init(_worker(grace=3600, graceful_timeout=7200))
    cuts = Cuts()
    with DRAIN.tracking(cuts):
        signal.raise_signal(signal.SIGTERM)
        assert seen == [signal.SIGTERM]
        assert DRAIN.draining and not DRAIN.cutting and cuts.calls == 0


def test_sigterm_grace_is_capped_by_graceful_timeout(process_drain, caplog):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with caplog.at_level(logging.WARNING):
        on_worker_init(_worker(grace=3600, graceful_timeout=0.02))
    assert "more than half of graceful_timeout" in caplog.text
    cuts = Cuts()
    with DRAIN.tracking(cuts):
        signal.raise_signal(signal.SIGTERM)
        assert cuts.event.wait(10), "the capped grace did not apply"


def test_worker_int_cuts_at_once(process_drain):
    cuts = Cuts()
    with DRAIN.tracking(cuts) as write:
        on_worker_int(_worker(grace=3600, graceful_timeout=7200))
        assert write.cut_by_shutdown and cuts.calls == 1
