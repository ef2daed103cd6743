"""The conformance catalogue as data, the report and the generated docs (no server needed;
tests/e2e/test_conformance.py runs the checks against real servers)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from byterange_server.conformance import docs
from byterange_server.conformance import probe
from byterange_server.conformance import report
from byterange_server.conformance.catalogue import CATALOGUE
from byterange_server.conformance.catalogue import IETF_VERSIONS
from byterange_server.conformance.catalogue import LEVELS
from byterange_server.conformance.catalogue import OUTCOMES
from byterange_server.conformance.catalogue import PROTOCOLS
from byterange_server.conformance.catalogue import Check
from byterange_server.conformance.catalogue import Context
from byterange_server.conformance.catalogue import Result
from byterange_server.conformance.catalogue import require
from byterange_server.conformance.catalogue import run_one
from byterange_server.conformance.catalogue import unsupported
from byterange_server.conformance.runner import select

ROOT = Path(__file__).resolve().parents[2]


def test_every_check_is_described() -> None:
    ids = [item.id for item in CATALOGUE]
    assert len(ids) == len(set(ids))
    for item in CATALOGUE:
        assert item.protocol in PROTOCOLS and item.level in LEVELS, item.id
        assert item.id.startswith(item.protocol + "."), item.id
        assert item.section and item.text and item.spec, item.id
        assert (item.level == "POLICY") == bool(item.policy), item.id
        assert set(item.versions) <= set(IETF_VERSIONS), item.id
        assert bool(item.versions) == (item.protocol == "ietf"), item.id


def test_every_protocol_has_its_core_musts() -> None:
    ids = {item.id for item in CATALOGUE if item.level == "MUST"}
    for expected in (
        "tus.version.412",
        "tus.head.offset",
        "tus.patch.409",
        "tus.resumable-on-responses",
        "tus.creation.201",
        "tus.termination",
        "tus.concat.final",
        "tus.concat.head-echo",
        "ietf.creation.location",
        "ietf.head.state",
        "ietf.append.409",
        "ietf.append.complete",
        "ietf.creation.104-echoes-version",
        "ietf.concurrency.offset-accepted",
        "ietf.length.exceeded-invalidates",
        "byterange.part.no-range",
        "byterange.part.content-type",
    ):
        assert expected in ids, expected


def test_select_runs_ietf_checks_per_version() -> None:
    pairs = select(["ietf"], [6, 9])
    assert {version for _, version in pairs} == {6, 9}
    assert ("ietf.v6.head-delete-fields", 6) in [(c.id, v) for c, v in pairs]
    assert ("ietf.v6.head-delete-fields", 9) not in [(c.id, v) for c, v in pairs]
    assert all(version is None for _, version in select(["tus", "byterange"]))


def _check(func) -> Check:  # type: ignore[no-untyped-def]
    return Check("tus.example", "tus", "tus 1.0.0", "Core", "MUST", "an example", func)


def test_run_one_maps_verdicts_to_outcomes() -> None:
    context = Context("http://127.0.0.1:9/files")

    def passes(ctx: Context) -> str:
        ctx.note("seen")
        return "fine"

    def fails(ctx: Context) -> str:
        require(False, "wrong")
        return ""

    def optional(ctx: Context) -> str:
        raise unsupported("not offered")

    def broken(ctx: Context) -> str:
        raise KeyError("bug")

    assert (
        run_one(_check(passes), context, None).outcome,
        run_one(_check(passes), context, None).evidence,
    ) == ("pass", ["seen"])
    assert run_one(_check(fails), context, None).note == "wrong"
    assert run_one(_check(optional), context, None).outcome == "not supported"
    # A bug of the checker is an error, never a verdict on the server.
    assert run_one(_check(broken), context, None).outcome == "error"


def test_report_counts_and_json() -> None:
    item = _check(lambda ctx: "")
    results = [
        Result(item, None, "pass", "", [], 0.1),
        Result(item, None, "fail", "no", ["GET / → 500"], 0.1),
    ]
    document = report.to_json("http://x/files", results)
    assert document["counts"] == {"tus": {"MUST": {**dict.fromkeys(OUTCOMES, 0), "pass": 1, "fail": 1}}}
    assert json.loads(json.dumps(document))["results"][1]["evidence"] == ["GET / → 500"]
    text = report.table(document)
    assert "FAIL   MUST   tus.example" in text and "GET / → 500" in text
    assert report.summary(document) == ["tus            MUST 1 pass / 1 fail"]


def test_docs_are_generated_from_the_checked_in_json() -> None:
    ours = json.loads((ROOT / "docs" / "conformance" / "ours.json").read_text())
    peer = json.loads((ROOT / "docs" / "conformance" / "tus-node-server.json").read_text())
    rendered = docs.render(ours, [("@tus/server 2.4.5", peer)])
    assert (ROOT / "docs" / "conformance.md").read_text() == rendered + "\n"
    for item, version in select(PROTOCOLS):
        key = f"{item.id}@{version}" if version is not None else item.id
        assert f"`{key}`" in rendered, key


@pytest.fixture
def interim_server() -> tuple[str, list[bytes]]:
    """A one-shot socket server: answers 104, 100 and then 204, records the request."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            data = b""
            while not data.endswith(b"sha1 x\r\n\r\n"):
                data += connection.recv(65536)
            received.append(data)
            connection.sendall(
                b"HTTP/1.1 104 Upload Resumption Supported\r\nLocation: /files/a\r\n\r\n"
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 204 No Content\r\nUpload-Offset: 4\r\n\r\n"
            )
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/files", received


def test_probe_reads_interim_responses_and_sends_trailers(interim_server) -> None:  # type: ignore[no-untyped-def]
    url, received = interim_server
    body = probe.chunked([b"ab", b"cd"], {"Upload-Checksum": "sha1 x"})
    exchange = probe.request("PATCH", url, {"Trailer": "Upload-Checksum"}, body, is_chunked=True, timeout=10)
    assert [i.status for i in exchange.interim] == [104, 100]
    assert exchange.interim[0].get("location") == "/files/a"
    assert (
        exchange.status == 204 and exchange.final is not None and exchange.final.get("Upload-Offset") == "4"
    )
    assert received[0].endswith(b"2\r\nab\r\n2\r\ncd\r\n0\r\nUpload-Checksum: sha1 x\r\n\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in received[0]


def test_ietf_checks_follow_the_drafts_versions() -> None:
    """Where a rule came or went with a draft, its check lists exactly those interop versions.

    -09 §Upload Append made progress 104s during an append a SHOULD (a MAY up to -08), and
    still had "any response, successful or not, MUST include Upload-Complete: ?0" (lifted in
    -10): both rules are interop 8's too, not only 9's and 7's.
    """
    versions = {item.id: item.versions for item in CATALOGUE if item.protocol == "ietf"}
    assert versions["ietf.append.progress-104"] == (8, 9)
    assert versions["ietf.append.progress-104-optional"] == (6, 7)
    assert versions["ietf.response.complete-false"] == (7, 8)
    assert versions["ietf.v6.head-delete-fields"] == (6,)
    assert versions["ietf.append.after-complete-empty"] == (6, 7, 8)
    assert versions["ietf.append.after-complete-replay"] == (9,)
    assert versions["ietf.get.state"] == (9,)
