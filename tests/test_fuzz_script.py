"""The fuzz script (``python -m fuzz``): every parser has a target, the loop finds planted bugs,
and a short run of everything -- parsers and the app over HTTP -- finds nothing."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import byterange_server.protocol
from byterange_server.errors import MalformedHeaderError
from fuzz import targets
from fuzz.runner import Target
from fuzz.runner import fuzz_target

REPO_ROOT = Path(__file__).resolve().parents[1]


def _modules() -> list[ModuleType]:
    # A private module (protocol/_abnf.py) holds grammar pieces, reached only through the public
    # parsers built from them.
    names = [
        f"byterange_server.protocol.{info.name}"
        for info in pkgutil.iter_modules(byterange_server.protocol.__path__)
        if not info.name.startswith("_")
    ]
    return [importlib.import_module(name) for name in [*names, *targets.SCANNED_MODULES]]


def _entry_points(module: ModuleType) -> set[str]:
    """Public functions, and public methods of public classes (and the class itself when it is a
    decoder or a WSGI middleware), of ``module`` -- by ``__all__`` when it has one."""
    names = getattr(module, "__all__", None) or [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
    ]
    out = set()
    for name in names:
        value = getattr(module, name)
        qualified = f"{module.__name__}:{name}"
        if inspect.isfunction(value):
            out.add(qualified)
        elif inspect.isclass(value) and not issubclass(value, (BaseException, __import__("enum").Enum)):
            if hasattr(value, "receive_data") or "__call__" in vars(value):
                out.add(qualified)
            for attr, member in vars(value).items():
                if not attr.startswith("_") and (
                    inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod))
                ):
                    out.add(f"{qualified}.{attr}")
    return out


def _satisfied(entry: str, names: set[str]) -> bool:
    return entry in names or any(entry.startswith(name + ".") for name in names)


def _exists(name: str) -> bool:
    module_name, _, path = name.partition(":")
    value: object = importlib.import_module(module_name)
    for attr in path.split("."):
        if not hasattr(value, attr):
            return False
        value = getattr(value, attr)
    return True


def test_every_public_parser_has_a_fuzz_target() -> None:
    covered = {name for target in targets.TARGETS.values() for name in target.covers}
    exempt = set(targets.EXEMPT)
    entries = set().union(*(_entry_points(module) for module in _modules()))
    printers = {
        e for e in entries if e.rsplit(":", 1)[1].split(".")[-1].startswith(targets.PRINTER_PREFIXES)
    }
    missing = sorted(e for e in entries - printers if not _satisfied(e, covered | exempt))
    assert not missing, (
        "public callables with neither a fuzz target (fuzz/targets.py, covers=...) nor an "
        f"EXEMPT reason: {missing}"
    )
    # And no stale names: everything covered or exempted still exists.
    stale = sorted(name for name in covered | exempt if not _exists(name))
    assert not stale, f"fuzz/targets.py names callables that no longer exist: {stale}"


def test_a_new_public_parser_would_be_noticed() -> None:
    fake = ModuleType("byterange_server.protocol.fake")
    fake.__all__ = ["parse_new_header"]

    def parse_new_header(value: str) -> str:
        return value

    fake.parse_new_header = parse_new_header  # type: ignore[attr-defined]
    assert _entry_points(fake) == {"byterange_server.protocol.fake:parse_new_header"}


def _buggy_parser(value: str) -> int:
    """Documented: MalformedHeaderError. Bug: a lone ')' indexes past the end."""
    if "(" in value:
        depth = value.index("(")
        return ord(value[depth + 5])  # IndexError when "(" is near the end
    raise MalformedHeaderError("no parenthesis")


def test_the_loop_finds_and_shrinks_a_planted_crash() -> None:
    target = Target("planted", _buggy_parser, (("a (bcdefg) z",),), ("planted:parse",))
    report = fuzz_target(target, 3.0, seed=1, hang_seconds=1.0)
    assert report.examples > 100 and report.rejected > 0
    kinds = {finding.kind for finding in report.findings}
    assert kinds == {"IndexError"}, report.findings
    (finding,) = report.findings
    assert len(finding.args[0]) <= 5 and "(" in finding.args[0]  # shrunk from 12 characters
    with pytest.raises(IndexError):
        _buggy_parser(*finding.args)


def test_the_loop_reports_a_hang() -> None:
    def slow(value: str) -> None:
        if re.search(r"\d{3}", value):  # stands for catastrophic backtracking
            while True:
                pass

    target = Target("hangs", slow, (("12",),), ("hangs:parse",))
    report = fuzz_target(target, 1.5, seed=2, hang_seconds=0.2)
    assert [finding.kind for finding in report.findings] == ["Hang"]


def test_the_loop_reports_a_5xx_error_as_a_finding() -> None:
    from byterange_server.errors import StorageError

    def fails(value: str) -> None:
        raise StorageError("disk gone")

    report = fuzz_target(Target("5xx", fails, (("x",),), ("5xx:parse",)), 0.3, seed=3)
    assert [finding.kind for finding in report.findings] == ["StorageError"]


def test_the_http_harness_sees_500s_non_problem_errors_and_lost_bytes(tmp_path: Path) -> None:
    import random

    from fuzz.http import Harness
    from fuzz.http import Request
    from fuzz.http import _check

    harness = Harness(tmp_path)

    @harness.app.route("/boom")
    def boom() -> str:
        raise RuntimeError("planted")

    try:
        harness.setup(random.Random(0))
        assert harness.lost_bytes() == []
        boom_request = Request("GET", "/boom", [])
        assert "500" in (_check(boom_request, harness.send(boom_request)) or "")
        missing = Request("GET", "/files/AAAAAAAAAAAAAAAAAAAAAA", [])
        assert _check(missing, harness.send(missing)) is None  # a 404 problem document
        victim = next(iter(harness.protected))
        assert harness.client.delete(victim).status_code == 204
        assert any(victim in problem for problem in harness.lost_bytes())
    finally:
        harness.close()


@pytest.mark.slow
def test_a_short_run_of_every_target_finds_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fuzz", "--seconds", "18", "--seed", "20261130"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    table = {line.split("  ")[0].strip(): line for line in result.stdout.splitlines()}
    for name in [*targets.TARGETS, "http"]:
        assert name in table, f"{name} missing from the report:\n{result.stdout}"
        examples = int(table[name][28:].split()[0])
        assert examples >= 50, table[name]
    assert "OK: 0 finding(s)" in result.stdout
