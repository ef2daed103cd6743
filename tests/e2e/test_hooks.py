"""Event hooks across a real gunicorn (4 worker processes × 4 threads) on SQLite and PostgreSQL.

A real HTTP receiver fails each event's first attempt (500) and its second (a dropped
connection), then accepts it. Six resources uploaded in parallel with our client, some then
deleted: every event of a resource is accepted exactly once, in sequence order, its three
attempts carry one Idempotency-Key and identical signed bytes, no two deliveries of one resource
ever overlap (whichever processes deliver them), and the progress events report every byte.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import random
import time
from collections import defaultdict

import requests

from byterange_server.client import upload
from byterange_server.hooks import verify_signature
from byterange_server.hooks.outbox import merge_ranges

from ..hooks.receiver import DROP
from ..hooks.receiver import receiving
from .conftest import GunicornServer
from .conftest import running

KiB = 1024
RESOURCES = 6
SIZE = 768 * KiB
SECRET = "e2e-secret"


def test_hooks_arrive_once_each_in_order_per_resource_across_workers(database_url, tmp_path) -> None:
    attempts: dict[str, int] = defaultdict(int)

    def answer(request):
        key = request.headers["idempotency-key"]
        attempts[key] += 1
        return {1: 500, 2: DROP}.get(attempts[key], 200)

    sources = []
    for n in range(RESOURCES):
        path = tmp_path / f"source-{n}.bin"
        path.write_bytes(random.Random(n).randbytes(SIZE + n * 1000))
        sources.append(path)

    with receiving(answer) as receiver:
        env = {
            "BYTERANGE_AUTH": "off",
            "BYTERANGE_HOOK_URL": receiver.url,
            "BYTERANGE_HOOK_SECRET": SECRET,
            "BYTERANGE_HOOK_RETRY_BASE": "0.05",
            "BYTERANGE_HOOK_POLL_SECONDS": "0.2",
            "BYTERANGE_HOOK_PROGRESS_INTERVAL": "0.2",
        }
        with running(GunicornServer(database_url, tmp_path / "server", extra_env=env)) as server:
            with concurrent.futures.ThreadPoolExecutor(RESOURCES) as pool:
                results = list(
                    pool.map(
                        lambda n: upload(
                            sources[n], server.url, segment_size=64 * KiB, parallel=4,
                            state_dir=tmp_path / f"state-{n}",
                        ),
                        range(RESOURCES),
                    )
                )
            urls = [result.url for result in results]
            ids = [url.rstrip("/").rsplit("/", 1)[1] for url in urls]
            deleted = set(ids[::2])
            for url, resource_id in zip(urls, ids, strict=True):
                if resource_id in deleted:
                    assert requests.delete(url, timeout=30).status_code == 204

            def last_event_accepted(resource_id: str) -> bool:
                final = "deleted" if resource_id in deleted else "completed"
                return any(
                    body["type"] == final and attempts[body["id"]] >= 3
                    for body in (r.json() for r in list(receiver.requests))
                    if body["resource"]["id"] == resource_id
                )

            deadline = time.monotonic() + 120
            while not all(last_event_accepted(resource_id) for resource_id in ids):
                assert time.monotonic() < deadline, f"hooks still missing\n{server.log_tail()}"
                time.sleep(0.1)
            time.sleep(1.0)  # room for a duplicate to show up, if the lease protocol let one through
            requests_seen = list(receiver.requests)
        # The delivery threads stopped with their workers, quietly.
        assert "Traceback" not in server.log_path.read_text(), server.log_tail()

    per_key: dict[str, list] = defaultdict(list)
    per_resource: dict[str, list] = defaultdict(list)
    for request in requests_seen:
        per_key[request.headers["idempotency-key"]].append(request)
        per_resource[request.json()["resource"]["id"]].append(request)

    for key, tries in per_key.items():
        # Failed twice, accepted once, never sent again: same key, same bytes, valid signature.
        assert len(tries) == 3, (key, [t.headers["byterange-delivery-attempt"] for t in tries])
        assert len({t.body for t in tries}) == 1
        assert [t.headers["byterange-delivery-attempt"] for t in tries] == ["1", "2", "3"]
        assert verify_signature(SECRET, tries[0].body, tries[0].headers["byterange-signature"])

    assert set(per_resource) == set(ids)
    for resource_id, sent in per_resource.items():
        sent.sort(key=lambda r: r.started)
        for earlier, later in itertools.pairwise(sent):
            # One deliverer at a time per resource, across all worker processes.
            assert later.started >= earlier.answered, resource_id
        bodies = [r.json() for r in sent]
        sequences = [body["sequence"] for body in bodies]
        assert sequences == sorted(sequences), resource_id  # retries included: never out of order
        # Each event's three attempts back to back: a, a, a, b, b, b, ...
        keys = [body["id"] for body in bodies]
        assert keys == [key for key in keys[::3] for _ in range(3)], resource_id
        accepted = bodies[2::3]
        kinds = [body["type"] for body in accepted]
        final = ["completed", "deleted"] if resource_id in deleted else ["completed"]
        assert kinds[0] == "created" and kinds[-len(final):] == final, kinds
        assert set(kinds[1 : -len(final)]) == {"progress"}, kinds
        length = SIZE + ids.index(resource_id) * 1000
        reported = merge_ranges(*(b["data"]["ranges"] for b in accepted if b["type"] == "progress"))
        assert reported == [[0, length]]
        assert accepted[-len(final)]["resource"]["length"] == length
