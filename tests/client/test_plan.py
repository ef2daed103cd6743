"""Tests for :mod:`byterange_server.client.plan`.

Tables pin the small cases by hand; hypothesis properties check the planner against a set-based
model on small files and against :func:`byterange_server.extents.subtract` on large ones, and
check that resuming re-cuts the grid of the first attempt.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import byterange_server.client as client
from byterange_server import extents as ex
from byterange_server.client.plan import Segment
from byterange_server.client.plan import bytes_remaining
from byterange_server.client.plan import committed_from_header
from byterange_server.client.plan import missing_ranges
from byterange_server.client.plan import plan_segments
from byterange_server.errors import MalformedHeaderError
from byterange_server.errors import UnsupportedRangeUnitError
from byterange_server.extents import Extent

S = Segment
E = Extent


def spans(segments):
    return [(s.start, s.stop) for s in segments]


# -- tables --------------------------------------------------------------------------------------

PLANS = [
    # (size, segment_size, committed, expected segments)
    pytest.param(0, 4, [], [], id="empty-file"),
    pytest.param(0, 4, [(0, 10)], [], id="empty-file-committed-past-size"),
    pytest.param(10, 4, [], [(0, 4), (4, 8), (8, 10)], id="nothing-committed"),
    pytest.param(8, 4, [], [(0, 4), (4, 8)], id="exact-multiple"),
    pytest.param(10, 4, [(0, 10)], [], id="everything-committed"),
    pytest.param(10, 4, [(0, 3), (3, 10)], [], id="everything-committed-in-pieces"),
    pytest.param(10, 4, [(0, 6)], [(6, 8), (8, 10)], id="committed-prefix-off-grid"),
    pytest.param(10, 4, [(0, 4)], [(4, 8), (8, 10)], id="committed-prefix-on-grid"),
    pytest.param(10, 4, [(2, 3), (5, 9)], [(0, 2), (3, 4), (4, 5), (9, 10)], id="holes"),
    pytest.param(12, 4, [(9, 10), (1, 2)], [(0, 1), (2, 4), (4, 8), (8, 9), (10, 12)], id="unsorted"),
    pytest.param(10, 4, [(1, 3), (2, 5), (5, 5)], [(0, 1), (5, 8), (8, 10)], id="overlap-touch-empty"),
    pytest.param(10, 4, [(8, 100)], [(0, 4), (4, 8)], id="committed-straddles-size"),
    pytest.param(10, 4, [(10, 20), (50, 60)], [(0, 4), (4, 8), (8, 10)], id="committed-past-size"),
    pytest.param(10, 100, [], [(0, 10)], id="segment-larger-than-file"),
    pytest.param(10, 100, [(3, 5)], [(0, 3), (5, 10)], id="segment-larger-than-file-holes"),
    pytest.param(5, 1, [(1, 3)], [(0, 1), (3, 4), (4, 5)], id="segment-size-one"),
    # A first attempt planned [0,4) [4,8) [8,12) [12,14); [4,6) of the second segment and all
    # of the fourth were committed before the connection dropped. The resume falls back on the
    # grid at 8 at once instead of cutting [6,10) [10,12).
    pytest.param(14, 4, [(4, 6), (12, 14)], [(0, 4), (6, 8), (8, 12)], id="alignment-after-resume"),
    pytest.param(20, 8, [(0, 3)], [(3, 8), (8, 16), (16, 20)], id="alignment-after-partial-first"),
]


@pytest.mark.parametrize(("size", "segment_size", "committed", "expected"), PLANS)
def test_plan_table(size, segment_size, committed, expected):
    plan = plan_segments(size, segment_size, committed)
    assert spans(plan) == expected
    assert all(type(s) is Segment for s in plan)
    assert missing_ranges(size, committed) == ex.normalize(expected)
    assert bytes_remaining(size, committed) == sum(stop - start for start, stop in expected)


def test_committed_default_is_nothing():
    assert spans(plan_segments(5, 2)) == [(0, 2), (2, 4), (4, 5)]
    assert missing_ranges(5) == [E(0, 5)]
    assert bytes_remaining(5) == 5
    assert missing_ranges(0) == []
    assert bytes_remaining(0) == 0


def test_committed_accepts_any_iterable_and_is_not_modified():
    committed = [(6, 8), (0, 2)]
    assert spans(plan_segments(8, 4, iter(committed))) == [(2, 4), (4, 6)]
    assert committed == [(6, 8), (0, 2)]
    assert spans(plan_segments(8, 4, [E(0, 2)])) == [(2, 4), (4, 8)]


@pytest.mark.parametrize(
    ("size", "segment_size"), [(-1, 4), (10, 0), (10, -4), (-1, 0)], ids=str
)
def test_plan_rejects_bad_sizes(size, segment_size):
    with pytest.raises(ValueError):
        plan_segments(size, segment_size)


@pytest.mark.parametrize("function", [missing_ranges, bytes_remaining])
def test_remaining_rejects_negative_size(function):
    with pytest.raises(ValueError, match="negative"):
        function(-1, [])


@pytest.mark.parametrize("committed", [[(-1, 3)], [(5, 3)]], ids=str)
def test_rejects_invalid_committed_range(committed):
    with pytest.raises(ValueError):
        plan_segments(10, 4, committed)
    with pytest.raises(ValueError):
        missing_ranges(10, committed)


# -- Segment -------------------------------------------------------------------------------------


def test_segment_basics():
    s = Segment(4, 10)
    assert (s.start, s.stop, s.length) == (4, 10, 6)
    assert s == Segment(4, 10)
    assert hash(s) == hash(Segment(4, 10))
    with pytest.raises(AttributeError):
        s.start = 0  # type: ignore[misc]


@pytest.mark.parametrize(("start", "stop"), [(0, 0), (5, 4), (-1, 3)], ids=str)
def test_segment_rejects_empty_or_negative(start, stop):
    with pytest.raises(ValueError):
        Segment(start, stop)


@pytest.mark.parametrize(
    ("segment", "total", "expected"),
    [
        (S(0, 8388608), 1073741824, "bytes 0-8388607/1073741824"),
        (S(0, 8388608), None, "bytes 0-8388607/*"),
        (S(1073733632, 1073741824), 1073741824, "bytes 1073733632-1073741823/1073741824"),
        (S(7, 8), 8, "bytes 7-7/8"),
        (S(0, 1), None, "bytes 0-0/*"),
    ],
)
def test_content_range(segment, total, expected):
    assert segment.content_range(total) == expected


def test_content_range_rejects_total_before_stop():
    with pytest.raises(ValueError):
        S(0, 10).content_range(9)


# -- committed_from_header -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("none", []),
        ("NONE", []),
        ("  none ", []),
        ("bytes=0-3", [E(0, 4)]),
        ("bytes=0-3,8-11", [E(0, 4), E(8, 12)]),
        ("bytes=8-11,0-3", [E(0, 4), E(8, 12)]),
        ("bytes=0-3,4-7,6-9", [E(0, 10)]),
        ("bytes=5-5", [E(5, 6)]),
    ],
)
def test_committed_from_header(value, expected):
    assert committed_from_header(value) == expected


def test_committed_from_header_absent_is_unknown_not_empty():
    with pytest.raises(ValueError, match='rel="committed-ranges"'):
        committed_from_header(None)


@pytest.mark.parametrize("value", ["", "bytes=", "bytes=3-1", "bytes=0-", "bytes=-5", "0-3"])
def test_committed_from_header_malformed(value):
    with pytest.raises(MalformedHeaderError):
        committed_from_header(value)


def test_committed_from_header_other_unit():
    with pytest.raises(UnsupportedRangeUnitError):
        committed_from_header("items=0-3")


def test_header_feeds_planner():
    committed = committed_from_header("bytes=0-3,8-11")
    assert spans(plan_segments(14, 4, committed)) == [(4, 8), (12, 14)]


def test_package_exports():
    planner = {"Segment", "bytes_remaining", "committed_from_header", "missing_ranges", "plan_segments"}
    library = {"upload", "download", "status", "Uploader", "Downloader", "WireFormat", "ClientError"}
    assert planner | library <= set(client.__all__)
    assert all(hasattr(client, name) for name in client.__all__)
    assert client.plan_segments is plan_segments


# -- properties ----------------------------------------------------------------------------------

MAX_SIZE = 10**6
MAX_SEGMENT = 10**5
# Bound the plan length (size / segment_size) so a million one-byte segments do not blow the
# time budget; size and segment_size still each span their whole range.
MAX_SEGMENTS = 2000


def committed_ranges(size: int, max_ranges: int = 12):
    """Range sets within and beyond ``[0, size)``: empty, overlapping, touching, unsorted."""
    bound = 2 * size + 10
    pair = st.tuples(st.integers(0, bound), st.integers(0, bound)).map(sorted).map(tuple)
    return st.lists(pair, max_size=max_ranges)


@st.composite
def cases(draw, max_size=MAX_SIZE, max_segment=MAX_SEGMENT):
    segment_size = draw(st.integers(1, max_segment))
    size = draw(st.integers(0, min(max_size, segment_size * MAX_SEGMENTS)))
    committed = draw(committed_ranges(size))
    return size, segment_size, committed


def to_set(ranges):
    return {offset for start, stop in ranges for offset in range(start, stop)}


def check_shape(plan, segment_size):
    previous_stop = -1
    for s in plan:
        assert 1 <= s.length <= segment_size
        assert s.start >= previous_stop  # disjoint and ascending
        # Never crosses a grid line: start and stop - 1 lie in the same grid cell.
        assert s.start // segment_size == (s.stop - 1) // segment_size
        previous_stop = s.stop


@given(cases(max_size=300, max_segment=40))
def test_plan_matches_set_model(case):
    size, segment_size, committed = case
    plan = plan_segments(size, segment_size, committed)
    expected = set(range(size)) - to_set(committed)
    covered = [offset for s in plan for offset in range(s.start, s.stop)]
    assert sorted(covered) == sorted(expected)
    assert len(covered) == len(set(covered))
    assert bytes_remaining(size, committed) == len(expected)


@settings(deadline=None)
@given(cases())
def test_plan_union_is_the_gaps(case):
    size, segment_size, committed = case
    plan = plan_segments(size, segment_size, committed)
    expected = ex.subtract([E(0, size)] if size else [], ex.normalize(committed))
    assert ex.normalize(spans(plan)) == expected
    assert missing_ranges(size, committed) == expected
    assert sum(s.length for s in plan) == bytes_remaining(size, committed) == ex.total(expected)


@settings(deadline=None)
@given(cases())
def test_plan_shape(case):
    size, segment_size, committed = case
    plan = plan_segments(size, segment_size, committed)
    check_shape(plan, segment_size)
    assert all(s.stop <= size for s in plan)


@settings(deadline=None)
@given(cases())
def test_plan_avoids_committed_bytes(case):
    size, segment_size, committed = case
    normal = ex.normalize(committed)
    for s in plan_segments(size, segment_size, committed):
        assert ex.intersect([E(s.start, s.stop)], normal) == []


@settings(deadline=None)
@given(st.integers(1, MAX_SEGMENT).flatmap(
    lambda segment_size: st.tuples(
        st.integers(0, min(MAX_SIZE, segment_size * MAX_SEGMENTS)), st.just(segment_size)
    )
))
def test_plan_with_nothing_committed_is_the_grid(case):
    size, segment_size = case
    plan = plan_segments(size, segment_size)
    assert len(plan) == -(-size // segment_size)
    assert spans(plan) == [
        (start, min(start + segment_size, size)) for start in range(0, size, segment_size)
    ]


@settings(deadline=None)
@given(cases(), st.randoms(use_true_random=False), st.floats(0, 1))
def test_resume_recuts_the_same_grid(case, rng, fraction):
    size, segment_size, committed = case
    plan = plan_segments(size, segment_size, committed)
    done = [s for s in plan if rng.random() < fraction]
    done_set = set(done)
    resumed = plan_segments(size, segment_size, [*committed, *spans(done)])
    assert resumed == [s for s in plan if s not in done_set]


@settings(deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_resume_after_interrupted_segments(case, rng):
    # An interrupted persist-mode PATCH commits a prefix of its segment. Replanning must give
    # back just the rest of that segment and leave every other planned segment unchanged, even
    # though the new gap starts off the grid. (Committing whole segments only, as above, cannot
    # tell grid cutting from cutting every segment_size bytes from the gap start.)
    size, segment_size, committed = case
    plan = plan_segments(size, segment_size, committed)
    progress = {s: rng.choice([0, s.length, rng.randint(0, s.length)]) for s in plan}
    written = [(s.start, s.start + n) for s, n in progress.items()]
    expected = [Segment(s.start + n, s.stop) for s, n in progress.items() if n < s.length]
    assert plan_segments(size, segment_size, [*committed, *written]) == expected
