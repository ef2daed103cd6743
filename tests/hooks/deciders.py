"""Python hooks for the tests: ``tests.hooks.deciders:decide`` (pre-create) and
``tests.hooks.deciders:on_event`` (events)."""

from __future__ import annotations

from typing import Any

from byterange_server.hooks import CreationRejected

#: What ``decide`` does next: "allow", "refuse", "false", "crash".
verdict = "allow"
seen: list[Any] = []


def decide(request: Any) -> Any:
    seen.append(request)
    if verdict == "refuse":
        raise CreationRejected(f"no uploads of {request.length} bytes")
    if verdict == "false":
        return False
    if verdict == "crash":
        raise RuntimeError("the hook has a bug")
    return None


#: Events ``on_event`` accepted; it refuses the first attempt of each.
events: list[Any] = []


def on_event(event: Any) -> None:
    if event.attempt == 1:
        raise ConnectionError("first attempts fail")
    events.append(event)
