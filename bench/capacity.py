"""C1, capacity: many slow uploads at once against a server with its defaults, and a fast HEAD.

``python -m bench --scenarios C1 [--db sqlite,postgresql] [--against main] [--slow-clients 1000]
[--slow-rate 128KiB] [--slow-size 1MiB]``

Each of ``--slow-clients`` clients (phones on a poor network) opens its own connection, creates
an upload (``POST``) and sends its whole ``--slow-size`` in one ``message/byterange`` PATCH whose
body goes out at ``--slow-rate`` (a tenth of a second's worth every 0.1 s, as
:meth:`bench.load.Client.write_paced`). The clients start spread over the first second. They are
driven by one child process on one asyncio loop, so 1,000 of them cost the generator a fraction
of a core. Meanwhile a fast client (a thread of the suite's process) sends a ``HEAD`` of a
finished upload every 20 ms on its own keep-alive connection.

An upload *completes* when its PATCH is answered 204 before the deadline (twice the time its
body takes at the rate, plus 10 s); anything else (another status, a reset, the deadline) is a
failure, counted by kind. The figures: HEAD p50/p99/max, uploads completed and failed, the
server's CPU seconds (master and workers, from ``/proc``), the peak RSS (``VmHWM``) of the largest
worker, and the most threads any worker had (sampled every 100 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import resource
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import load
from .report import percentile
from .server import cpu_seconds
from .server import peak_rss_kib

KiB = 1024
MiB = 1024 * 1024


@dataclass
class CapacityOptions:
    clients: int = 1000
    rate: int = 128 * KiB
    size: int = 1 * MiB
    ramp: float = 1.0
    head_pause: float = 0.02

    @property
    def deadline(self) -> float:
        """Seconds from the start until an upload still running counts as failed."""
        return self.ramp + 2 * self.size / self.rate + 10.0


def _status(line: bytes) -> int:
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and header fields of one response; its body (Content-Length) is read and dropped."""
    status = _status(await reader.readline())
    fields: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("closed inside a response head")
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    length = int(fields.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)
    return status, fields


async def _one_upload(host: str, port: int, collection: str, options: CapacityOptions, start: float,
                      outcomes: Counter[str], block: bytes) -> None:
    await asyncio.sleep(random.random() * options.ramp)
    size = options.size
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        outcomes["connect failed"] += 1
        return
    try:
        writer.write(f"POST {collection} HTTP/1.1\r\nHost: {host}\r\nUpload-Length: {size}\r\n"
                     "Content-Length: 0\r\n\r\n".encode())
        status, fields = await _response(reader)
        if status != 201:
            outcomes[f"create HTTP {status}"] += 1
            return
        path = urlsplit(fields.get("location", "")).path
        part = f"Content-Range: bytes 0-{size - 1}/{size}\r\n\r\n".encode()
        writer.write(f"PATCH {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: message/byterange\r\n"
                     f"Content-Length: {len(part) + size}\r\n\r\n".encode() + part)
        step = 0.1
        chunk = max(1, int(options.rate * step))
        sent, due = 0, time.monotonic()
        answer = asyncio.ensure_future(_response(reader))  # an early refusal ends the body
        while sent < size and not answer.done():
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
                continue
            count = min(chunk, size - sent)
            writer.write(block[:count])
            await writer.drain()
            sent += count
            due = max(due + step, now - step)
        status, _ = await answer
        outcomes["completed" if status == 204 else f"PATCH HTTP {status}"] += 1
    except (OSError, asyncio.IncompleteReadError):
        outcomes["connection error"] += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _all_uploads(url: str, options: CapacityOptions) -> dict[str, Any]:
    parts = urlsplit(url)
    block = random.randbytes(max(1, int(options.rate * 0.1)))
    outcomes: Counter[str] = Counter()
    start = time.monotonic()
    tasks = [asyncio.ensure_future(_one_upload(parts.hostname or "127.0.0.1", parts.port or 80, parts.path,
                                               options, start, outcomes, block))
             for _ in range(options.clients)]
    _, pending = await asyncio.wait(tasks, timeout=options.deadline)
    for task in pending:
        task.cancel()
    outcomes["not done by the deadline"] += len(pending)
    await asyncio.gather(*pending, return_exceptions=True)
    return {"outcomes": dict(outcomes), "elapsed": time.monotonic() - start}


def _generator(url: str, options: CapacityOptions, results: Any) -> None:
    outcome = asyncio.run(_all_uploads(url, options))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    outcome["cpu"] = usage.ru_utime + usage.ru_stime
    results.put(outcome)


def _threads(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(url: str, workers: list[int], master: int, options: CapacityOptions
        ) -> tuple[dict[str, tuple[float, str]], dict[str, Any]]:
    """One run of C1 against the server at ``url``; returns its figures and notes."""
    probe = load.Client(url, timeout=60)
    probe_path = probe.create(64 * KiB)
    probe.patch(probe_path, 0, memoryview(random.randbytes(64 * KiB)), 64 * KiB)
    probe.head(probe_path)
    pids = [master, *workers]
    cpu_before = sum(map(cpu_seconds, pids))
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    generator = context.Process(target=_generator, args=(url, options, results), daemon=True)
    stop = threading.Event()
    heads: list[float] = []
    head_errors: Counter[str] = Counter()
    most_threads = dict.fromkeys(workers, 0)

    def fast() -> None:
        while not stop.is_set():
            begun = time.perf_counter()
            try:
                probe.head(probe_path)
            except (OSError, load.HTTPStatusError) as exc:
                head_errors[type(exc).__name__] += 1
                probe.close()
            heads.append(time.perf_counter() - begun)
            stop.wait(options.head_pause)

    def sample() -> None:
        while not stop.is_set():
            for pid in workers:
                most_threads[pid] = max(most_threads[pid], _threads(pid))
            stop.wait(0.1)

    helpers = [threading.Thread(target=fast), threading.Thread(target=sample)]
    started = time.monotonic()
    generator.start()
    for helper in helpers:
        helper.start()
    try:
        outcome = results.get(timeout=options.deadline + 60)
    finally:
        stop.set()
        for helper in helpers:
            helper.join()
        generator.join(timeout=30)
        probe.close()
    elapsed = time.monotonic() - started
    cpu = sum(map(cpu_seconds, pids)) - cpu_before
    outcomes = outcome["outcomes"]
    completed = outcomes.get("completed", 0)
    ordered = sorted(heads) or [float("nan")]
    values = {
        "HEAD p50": (percentile(ordered, 50) * 1000, "ms"),
        "HEAD p99": (percentile(ordered, 99) * 1000, "ms"),
        "HEAD max": (ordered[-1] * 1000, "ms"),
        "uploads completed": (completed, "uploads"),
        "uploads failed": (options.clients - completed, "uploads"),
        "server CPU": (cpu, "CPU-s"),
        "peak RSS per worker (max)": (max(peak_rss_kib(pid) for pid in workers) / 1024, "MiB"),
        "threads per worker (max)": (max(most_threads.values()), "threads"),
    }
    notes = {"outcomes": outcomes, "heads": len(heads), "head_errors": dict(head_errors),
             "elapsed": round(elapsed, 1), "generator_cpu": round(outcome["cpu"], 1),
             "workers": len(workers), "clients": options.clients, "rate": options.rate, "size": options.size}
    return values, notes
