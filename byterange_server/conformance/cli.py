"""``byterange conformance URL``: run the catalogue against a server, print the table, write JSON.

Exit status: 0 when every MUST that applies passes, 4 when one fails, 1 when the checker itself
failed on a check (an ``error`` row: please report it).
"""

from __future__ import annotations

import sys

import click

from . import report
from .catalogue import IETF_VERSIONS
from .catalogue import PROTOCOLS
from .runner import run

__all__ = ["conformance_command"]


@click.command("conformance")
@click.argument("url")
@click.option(
    "--protocol",
    "protocols",
    multiple=True,
    default=("all",),
    show_default=True,
    type=click.Choice([*PROTOCOLS, "all"]),
    help="Protocol to check (repeatable).",
)
@click.option(
    "--interop",
    "versions",
    multiple=True,
    type=click.Choice([str(v) for v in IETF_VERSIONS]),
    help="IETF interop version to check (repeatable) [default: all].",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the results as JSON to this file.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=15.0,
    show_default=True,
    help="Seconds to wait for each response.",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Evidence under every row, not only those that did not pass."
)
def conformance_command(
    url: str,
    protocols: tuple[str, ...],
    versions: tuple[str, ...],
    json_path: str | None,
    timeout: float,
    verbose: bool,
) -> None:
    """Check the upload server at URL (where uploads are created, e.g. http://host/files)
    against byte-range PATCH, IETF Resumable Uploads and tus 1.0.0, requirement by requirement.
    """
    chosen = PROTOCOLS if "all" in protocols else tuple(protocols)
    chosen_versions = tuple(int(v) for v in versions) or IETF_VERSIONS

    def progress(result) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"  {report.MARKS[result.outcome]:<6} {result.key}", err=True)

    results = run(url, chosen, chosen_versions, timeout=timeout, progress=progress)
    document = report.to_json(url, results, protocols=list(chosen), versions=list(chosen_versions))
    click.echo(report.table(document, verbose=verbose))
    if json_path:
        report.dump(document, json_path)
    outcomes = {(r.check.level, r.outcome) for r in results}
    if any(outcome == "error" for _, outcome in outcomes):
        sys.exit(1)
    if ("MUST", "fail") in outcomes:
        sys.exit(4)
