"""Event delivery over real HTTP from a real delivery thread (SQLite and PostgreSQL), and the
signature helper receivers use."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byterange_server import create_app
from byterange_server.app import HOOKS_KEY
from byterange_server.hooks import setup
from byterange_server.hooks import verify_signature
from byterange_server.hooks.signature import sign

from .receiver import DROP
from .receiver import receiving

MOUNT = "/files"


def fails_twice_then_succeeds():
    """500 on an event's first attempt, a dropped connection on its second, 200 after."""
    seen: dict[str, int] = defaultdict(int)

    def answer(request):
        key = request.headers["idempotency-key"]
        seen[key] += 1
        return {1: 500, 2: DROP}.get(seen[key], 200)

    return answer


def accepted(receiver) -> list:
    """Requests answered 2xx: the third attempt of each event."""
    counts: dict[str, int] = defaultdict(int)
    out = []
    for request in receiver.requests:
        counts[request.headers["idempotency-key"]] += 1
        if counts[request.headers["idempotency-key"]] == 3:
            out.append(request)
    return out


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_hook_failing_twice_then_succeeding_receives_each_event_once_in_order(settings_overrides) -> None:
    with receiving(fails_twice_then_succeeds()) as receiver:
        app = create_app(
            {
                **settings_overrides,
                "HOOK_URL": receiver.url,
                "HOOK_SECRET": "k",
                "HOOK_RETRY_BASE": "0.05",
                "HOOK_POLL_SECONDS": "0.1",
                "HOOK_PROGRESS_INTERVAL": "0",
            }
        )
        hooks = app.extensions[HOOKS_KEY]
        try:
            client = app.test_client()
            location = client.post(MOUNT, headers={"Upload-Length": "6"}).headers["Location"]
            for offset, chunk in [(3, b"def"), (0, b"abc")]:
                response = client.put(
                    location, data=chunk, headers={"Content-Range": f"bytes {offset}-{offset + 2}/6"}
                )
                assert response.status_code < 300, response.get_data()
            assert client.delete(location).status_code == 204
            wait_for(lambda: len(accepted(receiver)) == 5)
        finally:
            hooks.close()
            app.extensions["byterange"].db.dispose()
        assert hooks.worker._thread is None
    bodies = [request.json() for request in accepted(receiver)]
    assert [body["type"] for body in bodies] == ["created", "progress", "progress", "completed", "deleted"]
    assert [body["sequence"] for body in bodies] == sorted(body["sequence"] for body in bodies)
    assert len(receiver.requests) == 15
    by_key = defaultdict(list)
    for request in receiver.requests:
        by_key[request.headers["idempotency-key"]].append(request)
    for key, attempts in by_key.items():
        # A retry is the same request: same key, same bytes, same signature.
        assert [a.headers["byterange-delivery-attempt"] for a in attempts] == ["1", "2", "3"]
        assert len({a.body for a in attempts}) == 1
        assert attempts[0].json()["id"] == key
        assert verify_signature("k", attempts[0].body, attempts[0].headers["byterange-signature"])
        assert attempts[0].headers["byterange-event"] == attempts[0].json()["type"]


def test_the_python_form_gets_the_same_events_in_order(settings_overrides) -> None:
    from . import deciders

    deciders.events.clear()
    app = create_app(
        {
            **settings_overrides,
            "HOOK_PYTHON": "tests.hooks.deciders:on_event",
            "HOOK_EVENTS": "created,completed,deleted",
            "HOOK_RETRY_BASE": "0.05",
            "HOOK_POLL_SECONDS": "0.1",
        }
    )
    hooks = app.extensions[HOOKS_KEY]
    try:
        client = app.test_client()
        location = client.post(MOUNT, headers={"Upload-Length": "2"}).headers["Location"]
        assert client.put(location, data=b"ab", headers={"Content-Range": "bytes 0-1/2"}).status_code < 300
        assert client.delete(location).status_code == 204
        wait_for(lambda: len(deciders.events) == 3)
    finally:
        hooks.close()
        app.extensions["byterange"].db.dispose()
    assert [event.type for event in deciders.events] == ["created", "completed", "deleted"]
    assert all(event.attempt == 2 for event in deciders.events)
    assert deciders.events[0].resource_id == location.rsplit("/", 1)[1]
    assert deciders.events[1].data == {"failed": False} and deciders.events[1].length == 2
    assert deciders.events[2].payload["id"] == deciders.events[2].id


def test_no_hook_configured_installs_nothing(app, service) -> None:
    assert app.extensions[HOOKS_KEY] is None
    # Only the metrics listen: no outbox sink, so no outbox row is ever written.
    modules = [type(sink).__module__ for sink in service.events._sinks]
    assert not any(module.startswith("byterange_server.hooks") for module in modules)
    assert service.pre_create is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("hook_url", "ftp://example.com/x"),
        ("hook_python", "no_colon_here"),
        ("hook_python", "byterange_server:no_such_thing"),
        ("hook_pre_create", "json:__doc__"),
    ],
)
def test_bad_hook_settings_are_refused_at_startup(service, name, value) -> None:
    import dataclasses

    with pytest.raises(ValueError):
        setup(service.db, service.events, dataclasses.replace(service.settings, **{name: value}), start=False)


def test_unknown_event_kinds_are_refused(service) -> None:
    import dataclasses

    settings = dataclasses.replace(
        service.settings, hook_url="http://127.0.0.1:9/", hook_events="created,finished"
    )
    with pytest.raises(ValueError, match="finished"):
        setup(service.db, service.events, settings, start=False)


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=512), flip=st.integers(0, 10_000))
def test_signatures_verify_exactly_their_body(secret, body, flip) -> None:
    header = sign(secret, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(secret, body, header)
    assert verify_signature(secret, body, f"  {header} ")
    assert not verify_signature(secret + b"x", body, header)
    assert not verify_signature(secret, body, None)
    assert not verify_signature(b"", body, header)
    tampered = bytearray(body or b"\0")
    tampered[flip % len(tampered)] ^= 1
    if bytes(tampered) != body:
        assert not verify_signature(secret, bytes(tampered), header)


def test_a_python_hook_named_by_its_installed_entry_point(monkeypatch) -> None:
    import importlib.metadata

    from byterange_server.hooks import ENTRY_POINT_GROUP
    from byterange_server.hooks import load_callable

    declared = importlib.metadata.EntryPoint(name="audit", value="json:dumps", group=ENTRY_POINT_GROUP)
    real = importlib.metadata.entry_points

    def entry_points(**selection):
        if selection.get("group") == ENTRY_POINT_GROUP:
            return [e for e in [declared] if selection.get("name") in (None, e.name)]
        return real(**selection)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    import json

    assert load_callable("audit") is json.dumps
    assert load_callable("json:dumps") is json.dumps
    with pytest.raises(ValueError, match="installed: audit"):
        load_callable("missing")
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_callable("no_such_module_here:thing")
