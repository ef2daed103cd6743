"""Running the catalogue: which checks a run covers, in which order, with which results.

Importing this module registers every check (the protocol modules add theirs to
:data:`~byterange_server.conformance.catalogue.CATALOGUE` when imported).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable

from . import byteranges  # noqa: F401 - registers its checks
from . import ietf  # noqa: F401 - registers its checks
from . import probe
from . import tus  # noqa: F401 - registers its checks
from .catalogue import CATALOGUE
from .catalogue import IETF_VERSIONS
from .catalogue import PROTOCOLS
from .catalogue import UNSUPPORTED
from .catalogue import Check
from .catalogue import Context
from .catalogue import Result
from .catalogue import run_one

__all__ = ["run", "select"]


def select(protocols: Iterable[str], versions: Iterable[int] | None = None) -> list[tuple[Check, int | None]]:
    """The (check, interop version) pairs a run covers, in catalogue order."""
    chosen = set(protocols)
    wanted = tuple(versions) if versions is not None else IETF_VERSIONS
    pairs: list[tuple[Check, int | None]] = []
    for protocol in PROTOCOLS:
        if protocol not in chosen:
            continue
        if protocol == "ietf":
            for version in wanted:
                pairs += [
                    (item, version)
                    for item in CATALOGUE
                    if item.protocol == "ietf" and (not item.versions or version in item.versions)
                ]
        else:
            pairs += [(item, None) for item in CATALOGUE if item.protocol == protocol]
    return pairs


def run(
    url: str,
    protocols: Iterable[str] = PROTOCOLS,
    versions: Iterable[int] | None = None,
    *,
    timeout: float = probe.DEFAULT_TIMEOUT,
    progress: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run the selected checks against ``url`` (the URL uploads are created at)."""
    context = Context(url, timeout=timeout)
    results = []
    for item, version in select(protocols, versions):
        if item.protocol == "ietf" and version is not None and item.id != "ietf.interop.spoken":
            spoken = context.shared.get(("ietf-spoken", version))
            if spoken is not None and not spoken[0]:
                result = Result(
                    item, version, UNSUPPORTED, f"interop {version} is not spoken: {spoken[1]}", [], 0.0
                )
                results.append(result)
                if progress:
                    progress(result)
                continue
        result = run_one(item, context, version)
        results.append(result)
        if progress:
            progress(result)
    return results
