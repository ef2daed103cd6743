"""The ``byterange`` command's own rules: sizes, URLs, wording; what needs no server.

Behaviour against a server (retries, refusals, pipes, the terminal) is in
``tests/e2e/test_client.py``.
"""

from __future__ import annotations

import socket
import time

import pytest
from click.testing import CliRunner

from byterange_server.client.cli import _Rate
from byterange_server.client.cli import main
from byterange_server.client.cli import parse_cli_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64M", 64_000_000),
        ("64MB", 64_000_000),
        ("64Mi", 67_108_864),
        ("64MiB", 67_108_864),
        ("64mi", 67_108_864),
        ("512Ki", 524_288),
        ("512k", 512_000),
        ("1Gi", 1024**3),
        ("2 Ti", 2 * 1024**4),
        ("1048576", 1_048_576),
    ],
)
def test_sizes_take_si_and_binary_units(text, size):
    assert parse_cli_size(text) == size


@pytest.mark.parametrize("text", ["", "i", "64X", "64Xi", "1.5Mi", "64 M i", "Mi"])
def test_other_sizes_are_refused_with_the_rule(text):
    with pytest.raises(ValueError, match=r"8MiB or 8Mi = 8388608 bytes \(powers of 1024\)"):
        parse_cli_size(text)


def test_the_help_states_the_size_rule():
    shown = CliRunner().invoke(main, ["upload", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    rule = "8MiB or 8Mi = 8388608 bytes (powers of 1024), 8MB or 8M = 8000000 (powers of 1000)"
    assert rule in shown.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["upload", "f.bin", "ftp://127.0.0.1/files"], "unsupported URL scheme 'ftp'"),
        (["download", "file:///tmp/x", "out.bin"], "unsupported URL scheme 'file'"),
        (["status", "http:///files/abc"], "no host"),
    ],
)
def test_a_url_that_is_not_http_is_a_usage_error_at_once(args, message, tmp_path):
    started = time.monotonic()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert time.monotonic() - started < 5  # refused, not retried


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_retries_says_so_in_words(tmp_path):
    (tmp_path / "hello.txt").write_text("hello\n")
    url = f"http://127.0.0.1:{closed_port()}/files"
    result = CliRunner().invoke(
        main, ["upload", str(tmp_path / "hello.txt"), url, "--retries", "0", "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"byterange: failed, and retries are off: POST {url}: ")
    assert "attempts" not in result.output and "retrying" not in result.output
    assert lines[1] == "byterange: nothing was sent yet; run the same command again later"


def test_the_rate_counts_what_moved_lately_not_what_was_there():
    rate = _Rate()
    # A resumed transfer: 40 MiB were committed before this run; this run moves 1 MiB/s.
    for second in range(4):
        rate.add(second * 1024 * 1024, now=100.0 + second)
    assert rate.per_second(103.0) == pytest.approx(1024 * 1024)
    assert rate.per_second(103.0 + _Rate.WINDOW + 2) == 0.0  # a stall shows as one
