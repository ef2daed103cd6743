"""The ``byterange`` command: upload, download and status, for people and for scripts.

Progress goes to stderr (a bar with rate and ETA when stderr is a terminal); results go to
stdout (the resource URL after an upload), so ``URL=$(byterange upload f.bin …)`` works.
Every expected failure is one line on stderr and a documented exit status:

== ==========================================================================================
0  success
1  unexpected error (a bug: please report it, with the traceback it printed)
2  usage error: bad option, unreadable local file
3  network or server kept failing; everything committed is kept: run the same command again
4  the server refused the request for good (4xx), or answered outside the protocol
5  integrity: the file changed during the upload, or the bytes do not match their digest
6  the remote file changed during the download (with ``--on-change fail``)
130 interrupted (Ctrl-C); what was committed is kept
== ==========================================================================================
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
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
from .transport import RetryPolicy
from .transport import Timeouts
from .upload import DEFAULT_PARALLEL
from .upload import Uploader
from .wire import WireFormat

__all__ = ["main"]

T = TypeVar("T")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

class _SizeType(click.ParamType):
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            size = parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if size < 1:
            self.fail("must be at least 1 byte", param, ctx)
        return size


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
                         help="Retries of a failed request (in a row, without progress) before giving up."),
        ]
    ):
        func = decorator(func)
    return func


def _transfer_options(func: Callable[..., T]) -> Callable[..., T]:
    for decorator in reversed(
        [
            click.option("-p", "--parallel", type=click.IntRange(1, 64), default=DEFAULT_PARALLEL,
                         show_default=True, help="Requests in flight at once."),
            click.option("-s", "--segment-size", type=_SizeType(), default="8MiB", show_default=True,
                         help="Bytes per request, e.g. 512KiB, 8MiB, 64M."),
            click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
        ]
    ):
        func = decorator(func)
    return func


@contextmanager
def _progress_bar(quiet: bool, description: str) -> Iterator[Callable[[Progress], None]]:
    """A tqdm bar on stderr (only when it is a terminal), fed from the transfer's threads."""
    from tqdm import tqdm  # only the command line needs it

    bar = tqdm(
        unit="B", unit_scale=True, unit_divisor=1000, desc=description, file=sys.stderr,
        disable=True if quiet else None, dynamic_ncols=True, leave=True,
    )
    lock = threading.Lock()

    def update(progress: Progress) -> None:
        with lock:
            if progress.total is not None and bar.total != progress.total:
                bar.reset(total=progress.total)
            bar.update(progress.done - bar.n)

    try:
        yield update
    finally:
        bar.close()


def _run(work: Callable[[], T], cancel: Callable[[], None]) -> T:
    """Run a transfer, turning every expected failure into one line and an exit status."""
    try:
        return work()
    except KeyboardInterrupt:
        cancel()
        click.echo(f"byterange: {Cancelled.MESSAGE}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ClientError as error:
        click.echo(f"byterange: {error}", err=True)
        if error.exit_code == 3:
            click.echo("byterange: nothing committed is lost; run the same command again to resume", err=True)
        sys.exit(error.exit_code)
    except OSError as error:  # the local file: missing, unreadable, disk full
        where = f"{error.filename}: " if error.filename else ""
        click.echo(f"byterange: {where}{error.strerror or error}", err=True)
        sys.exit(EXIT_USAGE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="byterange-server", prog_name="byterange")
def main() -> None:
    """Parallel, resumable uploads and downloads over HTTP byte ranges."""


main.add_command(conformance_command)


@main.command("upload")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=False))
@click.argument("url")
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
def upload_command(
    file: str, url: str, parallel: int, segment_size: int, quiet: bool, wire_format: str, existing: bool,
    no_digest: bool, no_verify: bool, no_resume: bool, state_dir: str | None, as_json: bool,
    headers: tuple[str, ...], token: str | None, timeout: float, retries: int,
) -> None:
    """Upload FILE to the collection URL (or, with --existing, into the resource URL).

    Running the same command again after a failure or Ctrl-C resumes the upload: only the bytes
    the server has not committed are sent.
    """
    with _progress_bar(quiet, "upload") as progress:
        uploader = Uploader(
            file, url, existing=existing, segment_size=segment_size, parallel=parallel,
            wire_format=WireFormat[wire_format.upper()], content_digest=not no_digest, verify=not no_verify,
            resume=not no_resume, state_dir=state_dir, headers=_parse_headers(headers, token),
            timeouts=Timeouts(read=timeout), retry=RetryPolicy(attempts=retries), progress=progress,
        )
        result = _run(uploader.run, uploader.cancel)
    if as_json:
        click.echo(json.dumps(result.__dict__))
        return
    if not quiet:
        verb = "resumed" if result.resumed else "uploaded"
        click.echo(
            f"byterange: {verb} {format_size(result.size)}: sent {format_size(result.transferred)} in "
            f"{result.seconds:.1f} s ({result.transferred / max(result.seconds, 1e-9) / 1e6:.1f} MB/s)"
            + (", sha-256 verified" if result.verified else ""),
            err=True,
        )
    click.echo(result.url)


@main.command("download")
@click.argument("url")
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
    with _progress_bar(quiet, "download") as progress:
        downloader = Downloader(
            url, file, segment_size=segment_size, parallel=parallel, verify=not no_verify,
            restart_on_change=on_change == "restart", headers=_parse_headers(headers, token),
            timeouts=Timeouts(read=timeout), retry=RetryPolicy(attempts=retries), progress=progress,
        )
        result = _run(downloader.run, downloader.cancel)
    if as_json:
        click.echo(json.dumps(result.__dict__))
    elif not quiet:
        click.echo(
            f"byterange: downloaded {format_size(result.size)} to {result.path}: fetched "
            f"{format_size(result.transferred)} in {result.seconds:.1f} s"
            + (", sha-256 verified" if result.verified else ""),
            err=True,
        )


@main.command("status")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@_network_options
def status_command(
    url: str, as_json: bool, headers: tuple[str, ...], token: str | None, timeout: float, retries: int
) -> None:
    """Show what the server has committed of URL, and what is missing."""
    state = _run(
        lambda: fetch_status(url, headers=_parse_headers(headers, token), timeouts=Timeouts(read=timeout),
                             retry=RetryPolicy(attempts=retries)),
        lambda: None,
    )
    if not state.is_byterange_resource:  # a plain HTTP resource: no upload state to show
        state = dataclasses.replace(state, complete=True, committed=None)
    committed = state.committed or []
    known = state.committed is not None and state.length is not None
    missing = extents.gaps(committed, 0, state.length) if known else None  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps({
            "url": url,
            "length": state.length,
            "complete": state.complete,
            "committed_bytes": extents.total(committed),
            "committed": [[e.start, e.stop - 1] for e in committed],
            "missing": [[e.start, e.stop - 1] for e in missing] if missing is not None else None,
            "etag": state.etag.format() if state.etag else None,
            "repr_digest": {name: value.hex() for name, value in state.digests.items()},
        }))
        return
    done = extents.total(committed)
    length = state.length
    share = f" ({100 * done / length:.1f}%)" if length else ""
    click.echo(url)
    shown_length = f"{format_size(length)} ({length} bytes)" if length is not None else "not known yet"
    click.echo(f"  length     {shown_length}")
    click.echo(f"  complete   {'yes' if state.complete else 'no'}")
    if state.committed is None:
        click.echo("  committed  (not a byte-range upload resource: no committed ranges to show)")
    else:
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


if __name__ == "__main__":  # pragma: no cover
    main()
