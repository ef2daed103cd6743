"""The fuzz loop: feed a target seeds, mutants and random inputs for a time budget.

Each example is one call of the target with a tuple of arguments. One in eight is built from
nothing (random characters or bytes); the rest mutate a seed or an earlier input (so mutations
stack, as in AFL's queue), one the parsers accepted more often than one they rejected. A finding
is any exception the target does not document, a 5xx :class:`ByterangeError`, an
:class:`~fuzz.targets.InvariantViolation`, a call that takes longer than ``hang_seconds``
(SIGALRM), or a ``MemoryError`` under the address-space cap set by ``__main__``. Findings are
deduplicated by exception type and the innermost frame of the project, and shrunk to a small
reproducer before they are reported.
"""

from __future__ import annotations

import dataclasses
import random
import re
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

from byterange_server.errors import ByterangeError

from .mutate import mutate_bytes
from .mutate import mutate_text
from .mutate import random_bytes
from .mutate import random_text
from .targets import Target

#: Inputs kept for further mutation, per target.
QUEUE_SIZE = 256
#: Longest argument (characters or bytes): far over every header cap, and still fast.
MAX_ARG_LENGTH = 32 * 1024


class Hang(BaseException):
    """Raised by the SIGALRM handler inside a call that took too long."""


@dataclasses.dataclass
class Finding:
    target: str
    kind: str  # exception type name
    where: str  # innermost project frame
    message: str
    args: tuple[Any, ...]
    count: int = 1

    def reproducer(self, limit: int = 1500) -> str:
        """A call that repeats the finding (arguments over ``limit`` characters are elided)."""
        text = f"fuzz.targets.TARGETS[{self.target!r}].run(*{self.args!r})"
        if len(text) <= limit:
            return text
        shown = ", ".join(_short(arg) for arg in self.args)
        return f"fuzz.targets.TARGETS[{self.target!r}].run({shown})  # elided: rerun with the seed"


@dataclasses.dataclass
class TargetReport:
    name: str
    examples: int = 0
    rejected: int = 0  # documented errors (valid outcome for malformed input)
    seconds: float = 0.0
    findings: list[Finding] = dataclasses.field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0


def _short(arg: Any, keep: int = 60) -> str:
    text = repr(arg)
    if len(text) <= 2 * keep:
        return text
    return f"{repr(arg[:keep])} + ... ({len(arg)} in all)"


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if "byterange_server" in frame.filename:
            return f"{frame.filename.split('byterange_server', 1)[1].lstrip('/')}:{frame.lineno}"
    frame = frames[-1] if frames else None
    return f"{frame.filename}:{frame.lineno}" if frame else "?"


def classify(
    target: Target, args: tuple[Any, ...], hang_seconds: float
) -> tuple[str, str, str] | str | None:
    """Run one example: ``None`` if it passed, ``"rejected"`` if it raised a documented error,
    else ``(kind, where, message)`` of the finding."""
    _arm(hang_seconds)
    try:
        target.run(*args)
    except Hang:
        return "Hang", "?", f"no answer within {hang_seconds} s"
    except RecursionError as exc:
        return "RecursionError", _where(exc), str(exc)[:200]
    except Exception as exc:  # noqa: BLE001 - anything undocumented is a finding
        if not isinstance(exc, target.allowed):
            return type(exc).__name__, _where(exc), str(exc)[:300]
        if isinstance(exc, ByterangeError) and exc.status >= 500:
            return type(exc).__name__, _where(exc), f"a {exc.status} from a parser: {exc.detail}"
        return REJECTED
    finally:
        _disarm()
    return None


REJECTED = "rejected"


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang()


def _arm(seconds: float) -> None:
    if seconds > 0:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


def mutate_args(
    rnd: random.Random, args: tuple[Any, ...], corpus: list[tuple[Any, ...]]
) -> tuple[Any, ...]:
    """Mutate one argument (sometimes two) of ``args``, splicing from the same position of others."""
    out = list(args)
    for _ in range(1 if rnd.random() < 0.8 else 2):
        i = rnd.randrange(len(out))
        others = [c[i] for c in corpus if len(c) > i and type(c[i]) is type(out[i])]
        if isinstance(out[i], bytes):
            out[i] = mutate_bytes(rnd, out[i], others)
        else:
            out[i] = mutate_text(rnd, out[i], others)
        out[i] = out[i][:MAX_ARG_LENGTH]  # stacked mutations must not grow without bound
    return tuple(out)


def random_args(rnd: random.Random, template: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(random_bytes(rnd) if isinstance(a, bytes) else random_text(rnd) for a in template)


def finding_key(result: tuple[str, str, str]) -> tuple[str, str]:
    """What makes two findings the same: exception type and innermost project frame; for broken
    invariants (all raised by ``check``), the message without its figures."""
    kind, where, message = result
    if kind == "InvariantViolation":
        where = re.sub(r"\d+|'[^']*'|\[[^]]*\]", "", message)[:60]
    return kind, where


def shrink(
    target: Target, args: tuple[Any, ...], key: tuple[str, str], hang_seconds: float, budget: float = 5.0
) -> tuple[Any, ...]:
    """Make ``args`` smaller while the same finding (kind and place) still happens.

    Delta debugging light: try removing halves, quarters, ... of each argument, then single
    characters, for at most ``budget`` seconds.
    """
    deadline = time.monotonic() + budget

    def same(candidate: tuple[Any, ...]) -> bool:
        result = classify(target, candidate, hang_seconds)
        return isinstance(result, tuple) and finding_key(result) == key

    best = list(args)
    changed = True
    while changed and time.monotonic() < deadline:
        changed = False
        for i, value in enumerate(best):
            size = len(value) // 2
            while size >= 1 and time.monotonic() < deadline:
                start = 0
                while start < len(best[i]) and time.monotonic() < deadline:
                    candidate = best[i][:start] + best[i][start + size :]
                    trial = tuple(best[:i] + [candidate] + best[i + 1 :])
                    if same(trial):
                        best[i] = candidate
                        changed = True
                    else:
                        start += size
                size //= 2
            del value
    return tuple(best)


def fuzz_target(
    target: Target,
    seconds: float,
    seed: int,
    *,
    hang_seconds: float = 2.0,
    on_finding: Callable[[Finding], None] | None = None,
) -> TargetReport:
    """Fuzz one target for ``seconds``; every distinct finding is shrunk once and reported."""
    rnd = random.Random(f"{seed}:{target.name}")
    report = TargetReport(target.name)
    # Inputs the parsers accepted are mutated more often than ones they rejected: a mutant of
    # a valid value reaches the checks after the syntax (round trips, ranges, limits).
    queues: dict[bool, list[tuple[Any, ...]]] = {True: list(target.seeds), False: []}
    found: dict[tuple[str, str], Finding] = {}
    started = time.monotonic()
    deadline = started + seconds
    pending = list(target.seeds)  # seeds run first, unmutated
    while True:
        now = time.monotonic()
        if now >= deadline and not pending:
            break
        if pending:
            args = pending.pop(0)
        elif rnd.random() < 0.125:
            args = random_args(rnd, target.seeds[0])
        else:
            queue = queues[not queues[False] or rnd.random() < 0.7]
            args = mutate_args(rnd, rnd.choice(queue), queue)
        result = classify(target, args, hang_seconds)
        report.examples += 1
        if result is REJECTED:
            report.rejected += 1
        if not isinstance(result, tuple):
            queue = queues[result is None]
            if len(queue) < QUEUE_SIZE:
                queue.append(args)
            elif rnd.random() < 0.05:
                queue[rnd.randrange(len(target.seeds), QUEUE_SIZE)] = args  # seeds stay
            continue
        kind, where, message = result
        key = finding_key(result)
        if key in found:
            found[key].count += 1
            continue
        small = shrink(target, args, key, hang_seconds)
        finding = Finding(target.name, kind, where, message, small)
        found[key] = finding
        report.findings.append(finding)
        if on_finding is not None:
            on_finding(finding)
    report.seconds = time.monotonic() - started
    return report
