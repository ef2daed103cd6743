"""The ``byterange`` command: upload, download and status, for people and for scripts.

Progress goes to stderr (a bar with rate and ETA when stderr is a terminal); results go to
stdout (the resource URL after an upload), so ``URL=$(byterange upload f.bin …)`` works.
Every expected failure is one line on stderr, sometimes followed by a line that says what to do
next, and a documented exit status:

== ==========================================================================================
0  success
1  unexpected error (a bug: please report it, with the traceback it printed)
2  usage error: bad option or URL, unreadable local file
3  network or server kept failing; everything committed is kept: run the same command again
4  the server refused the request for good (4xx, 501), or answered outside the protocol
5  integrity: the file changed during the upload, or the bytes do not match their digest
6  the remote file changed during the download (with ``--on-change fail``)
130 interrupted (Ctrl-C); what was committed is kept
== ==========================================================================================

While a request is retried, one line says so ("retrying in 2.1 s (attempt 3 of 11): reason"),
printed above the progress bar rather than across it.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import shutil
import stat
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from typing import TypeVar

import click

from byterange_server import extents
from byterange_server.conformance.cli import conformance_command
from byterange_server.units import format_size
from byterange_server.units import parse_size

from . import status as fetch_status
from .download import Downloader
from .engine import Progress
from .errors import Cancelled
from .errors import ClientError
from .errors import ServerRefused
from .errors import TransferFailed
from .extentbar import fetch_in_flight
from .extentbar import render_bar
from .source import is_stream
from .transport import RetryPolicy
from .transport import Timeouts
from .transport import normalize_url
from .upload import DEFAULT_PARALLEL
from .upload import Uploader
from .wire import WireFormat

__all__ = ["main", "parse_cli_size"]

T = TypeVar("T")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

SIZE_HELP = "8MiB or 8Mi = 8388608 bytes (powers of 1024), 8MB or 8M = 8000000 (powers of 1000)"


def parse_cli_size(text: str) -> int:
    """A size as the options take it: the server's size syntax, plus ``Ki``, ``Mi``, ``Gi``, ``Ti``.

    A unit with an ``i`` is a power of 1024 (``8MiB`` = ``8Mi`` = 8,388,608); one without is a
    power of 1000 (``8MB`` = ``8M`` = 8,000,000), as SI and IEC define them.

    :raises ValueError: not a whole number with a known unit.
    """
    stripped = text.strip()
    try:
        return parse_size(stripped + "B" if stripped[-1:] in ("i", "I") else stripped)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (e.g. {SIZE_HELP})") from None


class _SizeType(click.ParamType):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            size = parse_cli_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if size < 1:
            self.fail("must be at least 1 byte", param, ctx)
        return size


class _UrlType(click.ParamType):
    """An ``http``/``https`` URL; without ``scheme://`` it means ``http://`` (as for curl)."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return normalize_url(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


URL = _UrlType()


def _parse_headers(values: tuple[str, ...], token: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for value in values:
        name, colon, rest = value.partition(":")
        if not colon or not name.strip() or name != name.strip():
            raise click.BadParameter(f"expected 'Name: value', got {value!r}", param_hint="'-H'")
        headers[name] = rest.strip()
    return headers


def _network_options(func: Callable[..., T]) -> Callable[..., T]:
    for decorator in reversed(
        [
            click.option("-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'",
                         help="Extra request header, e.g. -H 'X-Trace: 1' (repeatable)."),
            click.option("--token", envvar="BYTERANGE_TOKEN", default=None, show_envvar=True,
                         help="Bearer token for a server that requires one (a signed URL needs none)."),
            click.option("--timeout", type=click.FloatRange(min=0.1), default=Timeouts.read,
                         show_default=True, help="Seconds without a byte moving before a request fails."),
            click.option("--retries", type=click.IntRange(min=0), default=RetryPolicy.attempts,
                         show_default=True,
                         help="Retries of a failed request (in a row, without progress) before giving up; "
                              "0 for none. Errors that a retry cannot fix (most 4xx, 501) are not retried."),
        ]
    ):
        func = decorator(func)
    return func


def _transfer_options(func: Callable[..., T]) -> Callable[..., T]:
    for decorator in reversed(
        [
            click.option("-p", "--parallel", type=click.IntRange(1, 64), default=DEFAULT_PARALLEL,
                         show_default=True,
                         help="Requests in flight at once (an upload from a pipe sends one at a time)."),
            click.option("-s", "--segment-size", type=_SizeType(), default="8MiB", show_default=True,
                         help=f"Bytes per request: {SIZE_HELP}."),
            click.option("-q", "--quiet", is_flag=True,
                         help="Only errors: no progress bar, no retry notices, no summary."),
        ]
    ):
        func = decorator(func)
    return func


# -- stderr: the progress bar and the notices that share it -------------------------------------


class _Rate:
    """Bytes per second moved over the last few seconds (only this run's bytes count)."""

    WINDOW = 5.0

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, moved: int, now: float) -> None:
        self._samples.append((now, moved))

    def per_second(self, now: float) -> float:
        samples = self._samples
        while len(samples) > 1 and samples[1][0] < now - self.WINDOW:
            samples.popleft()
        if len(samples) < 2:
            return 0.0
        (first_time, first), (_, last) = samples[0], samples[-1]
        return (last - first) / max(now - first_time, 1e-3)


class _Terminal:
    """stderr for people: a progress bar (only on a terminal) and notices printed above it.

    Sizes and rates are in binary units, as in the summary line; the rate counts only the bytes
    this run moves, so a resumed transfer does not start at an absurd speed.
    """

    WITH_TOTAL = "{desc} {percentage:3.0f}%|{bar}| {stats}"
    WITHOUT_TOTAL = "{desc} {stats}"

    def __init__(self, quiet: bool, description: str | None) -> None:
        from tqdm import tqdm  # only the command line needs it

        self.quiet = quiet
        self._tqdm = tqdm
        self._lock = threading.Lock()
        self._rate = _Rate()
        self._latest: Progress | None = None
        self._bar: Any = None
        if not quiet and description is not None:
            terminal = self

            class Bar(tqdm):  # type: ignore[misc,valid-type]
                @property
                def format_dict(self) -> dict[str, Any]:
                    return {**super().format_dict, "stats": terminal.stats()}

            self._bar = Bar(
                desc=description, file=sys.stderr, disable=None, dynamic_ncols=True, leave=True,
                bar_format=self.WITHOUT_TOTAL, unit="B",
            )

    def progress(self, progress: Progress) -> None:
        """The transfer's progress callback (called from its worker threads)."""
        bar = self._bar
        if bar is None or bar.disable:
            return
        with self._lock:
            self._latest = progress
            self._rate.add(progress.transferred, time.monotonic())
            if progress.total is not None and bar.total != progress.total:
                bar.total = progress.total
                bar.bar_format = self.WITH_TOTAL
            bar.update(progress.done - bar.n)  # tqdm redraws at most 10 times a second

    def stats(self) -> str:
        progress = self._latest
        if progress is None:
            return "starting"
        rate = self._rate.per_second(time.monotonic())
        speed = f"{format_size(int(rate))}/s" if rate else "stalled" if progress.transferred else "…"
        if progress.total is None:
            return f"{format_size(progress.done)}, {speed}"
        text = f"{format_size(progress.done)}/{format_size(progress.total)}, {speed}"
        if rate and progress.total > progress.done:
            text += f", {self._tqdm.format_interval((progress.total - progress.done) / rate)} left"
        return text

    def notice(self, message: str) -> None:
        """One line above the bar (a retry, a warning); nothing with ``--quiet``."""
        if not self.quiet:
            self._tqdm.write(f"byterange: {message}", file=sys.stderr)

    def close(self) -> None:
        """Leave the bar where it is, on its own line: what follows goes below it."""
        if self._bar is not None:
            self._bar.close()


@contextmanager
def _terminal(quiet: bool, description: str | None) -> Iterator[_Terminal]:
    terminal = _Terminal(quiet, description)
    try:
        yield terminal
    finally:
        terminal.close()


def _run(
    work: Callable[[], T],
    cancel: Callable[[], None],
    terminal: _Terminal,
    advice: Callable[[BaseException], list[str]] = lambda error: [],
) -> T:
    """Run a transfer, turning every expected failure into one line, advice and an exit status."""
    try:
        return work()
    except KeyboardInterrupt:
        cancel()
        _fail(terminal, "cancelled", advice(Cancelled()), EXIT_INTERRUPTED)
    except Cancelled as error:  # Ctrl-C while the worker threads ran
        _fail(terminal, "cancelled", advice(error), EXIT_INTERRUPTED)
    except ClientError as error:
        _fail(terminal, str(error), advice(error), error.exit_code)
    except OSError as error:  # the local file: missing, unreadable, disk full
        where = f"{error.filename}: " if error.filename else ""
        _fail(terminal, f"{where}{error.strerror or error}", [], EXIT_USAGE)
    raise AssertionError("unreachable")  # pragma: no cover


def _fail(terminal: _Terminal, message: str, advice: list[str], code: int) -> None:
    terminal.close()  # the bar stays above; the message starts on a line of its own
    click.echo(f"byterange: {message}", err=True)
    for line in advice:
        click.echo(f"byterange: {line}", err=True)
    sys.exit(code)


def _server_advice(error: BaseException, headers: dict[str, str]) -> list[str]:
    """What to do about a refusal that a flag can fix."""
    if not isinstance(error, ServerRefused):
        return []
    if error.status == 401:
        if any(name.lower() == "authorization" for name in headers):
            return ["the server did not accept these credentials (--token, $BYTERANGE_TOKEN or -H): "
                    "check the token, or ask for a fresh signed URL"]
        return ["this server needs credentials: pass --token TOKEN (or set BYTERANGE_TOKEN), "
                "or use a signed URL"]
    if error.method == "PATCH" and error.status in (405, 415, 501):
        return ["the server, or a proxy in front of it, does not take PATCH uploads: try --format put"]
    return []


# -- the commands --------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="byterange-server", prog_name="byterange")
def main() -> None:
    """Parallel, resumable uploads and downloads over HTTP byte ranges."""


main.add_command(conformance_command)


def _input_is_stream(file: str) -> bool:
    try:
        if file == "-":
            return not stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode)
        return is_stream(file)
    except (OSError, ValueError):
        return False  # reported when the upload opens it


@main.command("upload")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("url", type=URL)
@_transfer_options
@click.option("-f", "--format", "wire_format", default="message", show_default=True,
              type=click.Choice([fmt.name.lower() for fmt in WireFormat]),
              help="Wire format: message/byterange, multipart/byteranges (batches small segments), "
                   "application/byteranges, or partial PUT.")
@click.option("--existing", is_flag=True, help="URL is a resource to fill, not a collection to allocate in.")
@click.option("--no-digest", is_flag=True, help="Do not send Content-Digest with each request.")
@click.option("--no-verify", is_flag=True, help="Do not compare the server's Repr-Digest with the file.")
@click.option("--no-resume", is_flag=True, help="Do not look up or record this upload in the resume store.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Resume store directory [default: $BYTERANGE_STATE_DIR or ~/.local/state/byterange].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of the URL.")
@_network_options
@click.pass_context
def upload_command(
    ctx: click.Context, file: str, url: str, parallel: int, segment_size: int, quiet: bool, wire_format: str,
    existing: bool, no_digest: bool, no_verify: bool, no_resume: bool, state_dir: str | None, as_json: bool,
    headers: tuple[str, ...], token: str | None, timeout: float, retries: int,
) -> None:
    """Upload FILE to the collection URL (or, with --existing, into the resource URL).

    Running the same command again after a failure or Ctrl-C resumes the upload: only the bytes
    the server has not committed are sent.

    FILE may be - (stdin), a pipe or a FIFO: its length need not be known. Such input is read
    once, in order, and sent one segment at a time (--parallel does not apply), each held in
    memory until the server has committed it.
    """
    streaming = _input_is_stream(file)
    request_headers = _parse_headers(headers, token)
    with _terminal(quiet, "upload") as terminal:
        explicit = ctx.get_parameter_source("parallel") is not click.core.ParameterSource.DEFAULT
        if streaming and parallel > 1 and explicit:
            terminal.notice("the input is a stream: segments go one at a time, in order "
                            "(--parallel does not apply)")
        if file == "-" and sys.stdin.isatty():
            terminal.notice("reading the upload from the terminal until end of input (Ctrl-D)")
        # Unbuffered: a read still blocked at exit (after Ctrl-C) must not hold sys.stdin's lock.
        source = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) if file == "-" else file
        uploader = Uploader(
            source, url, existing=existing, segment_size=segment_size, parallel=parallel,
            wire_format=WireFormat[wire_format.upper()], content_digest=not no_digest, verify=not no_verify,
            resume=not no_resume, state_dir=state_dir, headers=request_headers,
            timeouts=Timeouts(read=timeout), retry=RetryPolicy(attempts=retries),
            progress=terminal.progress, notify=terminal.notice,
        )

        def advice(error: BaseException) -> list[str]:
            lines = _server_advice(error, request_headers)
            if not isinstance(error, (TransferFailed, Cancelled)):
                return lines
            resource = uploader.resource_url
            if resource is None:
                later = "" if isinstance(error, Cancelled) else "; run the same command again later"
                return lines + [f"nothing was sent yet{later}"]
            if uploader.streaming:
                again = f"byterange upload --existing - {shlex.quote(resource)}"
                return lines + [
                    f"what the server committed is kept in {resource}; the input was a stream, so finish "
                    f"it by sending the same bytes again: … | {again}"
                ]
            again = f"byterange upload --existing {shlex.quote(file)} {shlex.quote(resource)}"
            if existing or not no_resume:
                lines.append("nothing committed is lost; run the same command again to resume")
                lines.append(f"the resource is {resource} (to resume from elsewhere: {again})")
            else:  # --no-resume: the same command would start a new resource
                lines.append(f"nothing committed is lost; resume with: {again}")
            return lines

        result = _run(uploader.run, uploader.cancel, terminal, advice)
    if as_json:
        click.echo(json.dumps(result.__dict__))
        return
    if not quiet:
        verb = "resumed" if result.resumed else "uploaded"
        click.echo(
            f"byterange: {verb} {format_size(result.size)}: sent {format_size(result.transferred)} in "
            f"{result.seconds:.1f} s ({_rate(result.transferred, result.seconds)})"
            + (", sha-256 verified" if result.verified else ""),
            err=True,
        )
    click.echo(result.url)


def _rate(nbytes: int, seconds: float) -> str:
    return f"{format_size(int(nbytes / max(seconds, 1e-3)))}/s"


@main.command("download")
@click.argument("url", type=URL)
@click.argument("file", type=click.Path(dir_okay=False))
@_transfer_options
@click.option("--no-verify", is_flag=True, help="Do not check the bytes against the server's Repr-Digest.")
@click.option("--on-change", type=click.Choice(["restart", "fail"]), default="restart", show_default=True,
              help="What to do when the remote file changes: start over, or fail with status 6.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_network_options
def download_command(
    url: str, file: str, parallel: int, segment_size: int, quiet: bool, no_verify: bool, on_change: str,
    as_json: bool, headers: tuple[str, ...], token: str | None, timeout: float, retries: int,
) -> None:
    """Download URL to FILE, resuming FILE.partial from an interrupted run of the same version."""
    request_headers = _parse_headers(headers, token)
    with _terminal(quiet, "download") as terminal:
        downloader = Downloader(
            url, file, segment_size=segment_size, parallel=parallel, verify=not no_verify,
            restart_on_change=on_change == "restart", headers=request_headers,
            timeouts=Timeouts(read=timeout), retry=RetryPolicy(attempts=retries),
            progress=terminal.progress, notify=terminal.notice,
        )

        def advice(error: BaseException) -> list[str]:
            lines = _server_advice(error, request_headers)
            if isinstance(error, (TransferFailed, Cancelled)):
                if downloader.partial.exists():
                    lines.append(f"what arrived is kept in {downloader.partial}; run the same command "
                                 "again to resume")
                else:
                    lines.append("nothing arrived yet; run the same command again later")
            return lines

        result = _run(downloader.run, downloader.cancel, terminal, advice)
    if as_json:
        click.echo(json.dumps(result.__dict__))
    elif not quiet:
        click.echo(
            f"byterange: downloaded {format_size(result.size)} to {result.path}: fetched "
            f"{format_size(result.transferred)} in {result.seconds:.1f} s "
            f"({_rate(result.transferred, result.seconds)})"
            + (", sha-256 verified" if result.verified else ""),
            err=True,
        )


@main.command("status")
@click.argument("url", type=URL)
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@_network_options
def status_command(
    url: str, as_json: bool, headers: tuple[str, ...], token: str | None, timeout: float, retries: int
) -> None:
    """Show what the server has committed of URL, and what is missing.

    Any other HTTP URL shows as complete, with its length, ETag and digest when the server sends
    them: it has no upload state.
    """
    request_headers = _parse_headers(headers, token)
    with _terminal(False, None) as terminal:
        state = _run(
            lambda: fetch_status(url, headers=request_headers, timeouts=Timeouts(read=timeout),
                                 retry=RetryPolicy(attempts=retries), notify=terminal.notice),
            lambda: None,
            terminal,
            lambda error: _server_advice(error, request_headers),
        )
    byterange = state.is_byterange_resource
    committed = state.committed or []
    known = byterange and state.committed is not None and state.length is not None
    missing = extents.gaps(committed, 0, state.length) if known else None  # type: ignore[arg-type]
    complete = bool(state.complete) if byterange else True  # a plain server serves the whole file
    in_flight = None
    if byterange and not complete and state.committed_link:
        in_flight = fetch_in_flight(
            state.committed_link, headers=request_headers, timeouts=Timeouts(read=timeout)
        )
    if as_json:
        click.echo(json.dumps({
            "url": url,
            "byterange_resource": byterange,
            "length": state.length,
            "complete": complete,
            "committed_bytes": extents.total(committed) if byterange else None,
            "committed": [[e.start, e.stop - 1] for e in committed] if byterange else None,
            "missing": [[e.start, e.stop - 1] for e in missing] if missing is not None else None,
            "in_flight": [[e.start, e.stop - 1] for e in in_flight] if in_flight is not None else None,
            "etag": state.etag.format() if state.etag else None,
            "repr_digest": {name: value.hex() for name, value in state.digests.items()},
        }))
        return
    done = extents.total(committed)
    length = state.length
    click.echo(url)
    shown_length = f"{format_size(length)} ({length} bytes)" if length is not None else "not known yet"
    click.echo(f"  length     {shown_length}")
    if not byterange:
        click.echo("  complete   yes (served whole: not a byte-range upload resource, no upload state)")
    else:
        share = f" ({100 * done / length:.1f}%)" if length else ""
        click.echo(f"  complete   {'yes' if complete else 'no'}")
        if length is not None:
            click.echo(f"  map        {_extent_bar(length, committed, in_flight or [])}")
        click.echo(f"  committed  {format_size(done)}{share} in {len(committed)} range(s)")
        for extent in committed[:20]:
            click.echo(f"             bytes {extent.start}-{extent.stop - 1}")
        if len(committed) > 20:
            click.echo(f"             … {len(committed) - 20} more (see --json)")
    if missing:
        click.echo(f"  missing    {format_size(extents.total(missing))} in {len(missing)} range(s)")
        for extent in missing[:20]:
            click.echo(f"             bytes {extent.start}-{extent.stop - 1}")
        if len(missing) > 20:
            click.echo(f"             … {len(missing) - 20} more (see --json)")
    if state.etag:
        click.echo(f"  etag       {state.etag.format()}")
    for name, value in state.digests.items():
        click.echo(f"  {name:<10} {value.hex()}")


def _extent_bar(length: int, committed: list[extents.Extent], in_flight: list[extents.Extent]) -> str:
    """The one-line extent map (client/extentbar.py), as wide as the terminal allows, in ASCII
    where the output cannot print block characters."""
    width = max(10, min(100, shutil.get_terminal_size((80, 24)).columns - 16))
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "█▒▓░".encode(encoding)
        ascii_only = False
    except (UnicodeEncodeError, LookupError):
        ascii_only = True
    return render_bar(length, committed, in_flight, width, ascii=ascii_only)


if __name__ == "__main__":  # pragma: no cover
    main()
