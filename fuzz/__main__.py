"""``python -m fuzz --seconds 60 [--target NAME] [--seed N]``: fuzz, print a report, exit 1 on findings.

The time is shared among the chosen targets; the HTTP target (``http``) gets ``--http-share`` of
it when it runs. The process caps its own address space (``--memory-mb``), so a parser that
blows memory up raises ``MemoryError`` -- a finding -- instead of taking the machine down.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time

from .runner import Finding
from .runner import TargetReport
from .runner import fuzz_target
from .targets import TARGETS

HTTP = "http"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="total time budget (default 60)")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        help="a target name (repeatable; default all); 'http' is the app over HTTP",
    )
    parser.add_argument(
        "--exclude", action="append", default=[], help="a target name to leave out (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the run (default: random, printed)")
    parser.add_argument(
        "--http-share",
        type=float,
        default=0.3,
        help="fraction of the time for the HTTP target when it runs (default 0.3)",
    )
    parser.add_argument(
        "--hang-seconds",
        type=float,
        default=2.0,
        help="one parser call longer than this is a finding (default 2)",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=3072,
        help="address-space cap of the process; 0 for none (default 3072)",
    )
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    return parser.parse_args(argv)


def _cap_memory(megabytes: int) -> None:
    if megabytes <= 0:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = megabytes * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _print_finding(finding: Finding) -> None:
    print(
        f"  FINDING in {finding.target}: {finding.kind} at {finding.where}: {finding.message}", flush=True
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    names = list(TARGETS) + [HTTP]
    if args.list:
        print("\n".join(names))
        return 0
    chosen = [name for name in args.target or names if name not in args.exclude]
    unknown = [name for name in [*chosen, *args.exclude] if name not in names]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}; --list shows them", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    _cap_memory(args.memory_mb)

    parsers = [name for name in chosen if name != HTTP]
    http_seconds = 0.0
    if HTTP in chosen:
        http_seconds = args.seconds * (args.http_share if parsers else 1.0)
    per_parser = (args.seconds - http_seconds) / len(parsers) if parsers else 0.0
    print(
        f"fuzz: seed {seed}, {len(chosen)} target(s), {args.seconds:g} s "
        f"({per_parser:.2f} s per parser target, {http_seconds:.1f} s over HTTP)",
        flush=True,
    )

    reports: list[TargetReport] = []
    for name in parsers:
        reports.append(
            fuzz_target(
                TARGETS[name], per_parser, seed, hang_seconds=args.hang_seconds, on_finding=_print_finding
            )
        )
    if HTTP in chosen:
        from .http import fuzz_http  # imports the app only when needed

        reports.append(fuzz_http(http_seconds, seed, on_finding=_print_finding))

    started = time.monotonic()
    findings = [finding for report in reports for finding in report.findings]
    print()
    print(f"{'target':<28} {'examples':>9} {'rejected':>9} {'per s':>8} findings")
    for report in reports:
        print(
            f"{report.name:<28} {report.examples:>9} {report.rejected:>9} {report.rate:>8.0f} "
            f"{len(report.findings)}"
        )
    total = sum(report.examples for report in reports)
    seconds = sum(report.seconds for report in reports)
    print(f"{'total':<28} {total:>9} {'':>9} {total / seconds if seconds else 0:>8.0f} {len(findings)}")
    for finding in findings:
        print(f"\n{finding.target}: {finding.kind} at {finding.where} (seen {finding.count}x)")
        print(f"  {finding.message}")
        if finding.target == HTTP:
            print("  request:\n    " + finding.args[0].replace("\n", "\n    "))
        else:
            print(f"  reproducer: {finding.reproducer()}")
    del started
    print(f"\n{'FAIL' if findings else 'OK'}: {len(findings)} finding(s); rerun with --seed {seed}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
