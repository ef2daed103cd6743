"""Tests for :mod:`byterange_server.extents`.

Tables pin the edge cases by hand (touching vs. overlapping, windows at the edges); hypothesis
properties check every operation against a brute-force model: the set of integer offsets an
extent list denotes, over the small universe ``0..200``.
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byterange_server import extents as ex
from byterange_server.extents import Extent

from .support.sans_io import io_modules
from .support.sans_io import modules_loaded_by
from .support.sans_io import ours

E = Extent
UNIVERSE = 200


# -- model ---------------------------------------------------------------------------------------


def to_set(extents):
    return {offset for start, stop in extents for offset in range(start, stop)}


def from_set(offsets):
    """The normal form of a set of offsets, built the slow, obvious way."""
    out = []
    for offset in sorted(offsets):
        if out and out[-1][1] == offset:
            out[-1][1] = offset + 1
        else:
            out.append([offset, offset + 1])
    return [Extent(start, stop) for start, stop in out]


pairs = st.tuples(st.integers(0, UNIVERSE), st.integers(0, UNIVERSE)).map(
    lambda pair: (min(pair), max(pair))  # may be empty: normalize must drop those
)
raw_lists = st.lists(pairs, max_size=12)
normal_lists = raw_lists.map(ex.normalize)
extent_values = st.tuples(st.integers(0, UNIVERSE - 1), st.integers(1, 40)).map(
    lambda pair: Extent(pair[0], pair[0] + pair[1])
)
windows = pairs


# -- Extent --------------------------------------------------------------------------------------


def test_extent_fields_and_length():
    extent = Extent(3, 10)
    assert extent == (3, 10)
    assert (extent.start, extent.stop, extent.length) == (3, 10, 7)
    assert repr(extent) == "Extent(start=3, stop=10)"
    assert Extent._fields == ("start", "stop")
    assert pickle.loads(pickle.dumps(extent)) == extent
    assert type(pickle.loads(pickle.dumps(extent))) is Extent


@pytest.mark.parametrize(
    ("start", "stop"),
    [
        pytest.param(0, 0, id="empty"),
        pytest.param(5, 4, id="reversed"),
        pytest.param(-1, 4, id="negative"),
    ],
)
def test_extent_rejects_invalid_bounds(start, stop):
    with pytest.raises(ValueError):
        Extent(start, stop)


def test_extent_rejects_non_integers():
    with pytest.raises(TypeError):
        Extent(0.0, 1)  # type: ignore[arg-type]


# -- tables --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param([(4, 4)], [], id="empty-dropped"),
        pytest.param([(0, 5), (5, 10)], [E(0, 10)], id="adjacent-merge"),
        pytest.param([(0, 5), (6, 10)], [E(0, 5), E(6, 10)], id="one-byte-gap-stays"),
        pytest.param([(3, 8), (0, 5)], [E(0, 8)], id="overlap-unsorted"),
        pytest.param([(0, 10), (2, 3)], [E(0, 10)], id="contained"),
        pytest.param([(7, 9), (0, 1), (7, 9)], [E(0, 1), E(7, 9)], id="duplicate"),
        pytest.param([(0, 1), (1, 2), (2, 3), (3, 4)], [E(0, 4)], id="chain"),
    ],
)
def test_normalize_table(given, expected):
    assert ex.normalize(given) == expected


@pytest.mark.parametrize(
    "given",
    [pytest.param([(5, 4)], id="reversed"), pytest.param([(-2, 4)], id="negative")],
)
def test_normalize_rejects_invalid_pairs(given):
    with pytest.raises(ValueError):
        ex.normalize(given)


@pytest.mark.parametrize(
    ("extents", "new", "expected"),
    [
        pytest.param([], E(3, 5), [E(3, 5)], id="into-empty"),
        pytest.param([E(0, 2), E(8, 9)], E(4, 5), [E(0, 2), E(4, 5), E(8, 9)], id="between"),
        pytest.param([E(0, 2), E(8, 9)], E(2, 8), [E(0, 9)], id="bridges-touching"),
        pytest.param([E(0, 2), E(8, 9)], E(1, 3), [E(0, 3), E(8, 9)], id="extends-left"),
        pytest.param([E(2, 4), E(6, 8)], E(0, 10), [E(0, 10)], id="swallows-all"),
        pytest.param([E(2, 4)], E(0, 2), [E(0, 4)], id="touches-from-left"),
        pytest.param([E(2, 4)], E(4, 6), [E(2, 6)], id="touches-from-right"),
        pytest.param([E(2, 4)], E(2, 4), [E(2, 4)], id="same"),
        pytest.param([E(2, 4)], (9, 12), [E(2, 4), E(9, 12)], id="plain-tuple"),
    ],
)
def test_add_table(extents, new, expected):
    before = list(extents)
    assert ex.add(extents, new) == expected
    assert extents == before  # inputs are never modified


def test_add_rejects_empty_extent():
    with pytest.raises(ValueError):
        ex.add([E(0, 1)], (3, 3))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param([E(0, 10)], [E(2, 4)], [E(0, 2), E(4, 10)], id="hole-in-middle"),
        pytest.param([E(0, 10)], [E(0, 10)], [], id="all"),
        pytest.param([E(0, 10)], [E(10, 12)], [E(0, 10)], id="touching-removes-nothing"),
        pytest.param([E(0, 4), E(6, 10)], [E(3, 7)], [E(0, 3), E(7, 10)], id="spans-two"),
        pytest.param(
            [E(0, 10)], [E(1, 2), E(4, 5), E(9, 12)], [E(0, 1), E(2, 4), E(5, 9)], id="many"
        ),
        pytest.param([], [E(0, 1)], [], id="from-empty"),
    ],
)
def test_subtract_table(a, b, expected):
    assert ex.subtract(a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param([E(0, 5)], [E(5, 10)], [], id="touching-shares-nothing"),
        pytest.param([E(0, 6)], [E(5, 10)], [E(5, 6)], id="one-byte"),
        pytest.param([E(0, 3), E(5, 9)], [E(2, 6)], [E(2, 3), E(5, 6)], id="spans-two"),
    ],
)
def test_intersect_table(a, b, expected):
    assert ex.intersect(a, b) == expected
    assert ex.intersect(b, a) == expected


@pytest.mark.parametrize(
    ("start", "stop", "clipped", "missing"),
    [
        pytest.param(0, 20, [E(2, 4), E(6, 8)], [E(0, 2), E(4, 6), E(8, 20)], id="wide"),
        pytest.param(3, 7, [E(3, 4), E(6, 7)], [E(4, 6)], id="trims-both-ends"),
        pytest.param(4, 6, [], [E(4, 6)], id="exactly-the-hole"),
        pytest.param(2, 4, [E(2, 4)], [], id="exactly-an-extent"),
        pytest.param(5, 5, [], [], id="empty-window"),
    ],
)
def test_clip_and_gaps_table(start, stop, clipped, missing):
    extents = [E(2, 4), E(6, 8)]
    assert ex.clip(extents, start, stop) == clipped
    assert ex.gaps(extents, start, stop) == missing


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        pytest.param(0, 10, True, id="whole"),
        pytest.param(3, 7, True, id="inside"),
        pytest.param(9, 11, False, id="runs-past"),
        pytest.param(10, 12, False, id="starts-at-stop"),
        pytest.param(10, 10, True, id="empty-window"),
        pytest.param(11, 13, False, id="in-the-hole"),
        pytest.param(20, 30, True, id="second-extent"),
    ],
)
def test_covers_table(start, stop, expected):
    assert ex.covers([E(0, 10), E(20, 30)], start, stop) is expected


@pytest.mark.parametrize("function", [ex.clip, ex.gaps, ex.covers])
@pytest.mark.parametrize(("start", "stop"), [(-1, 3), (5, 4)])
def test_windows_are_checked(function, start, stop):
    with pytest.raises(ValueError):
        function([E(0, 10)], start, stop)


@pytest.mark.parametrize(
    ("extents", "expected"),
    [
        pytest.param([], 0, id="nothing"),
        pytest.param([E(1, 5)], 0, id="byte-zero-missing"),
        pytest.param([E(0, 5), E(6, 9)], 5, id="first-run"),
    ],
)
def test_prefix_end_table(extents, expected):
    assert ex.prefix_end(extents) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param(E(0, 5), E(5, 6), False, id="touching"),
        pytest.param(E(0, 5), E(4, 6), True, id="one-byte"),
        pytest.param(E(0, 10), E(3, 4), True, id="contained"),
        pytest.param(E(0, 1), E(7, 9), False, id="apart"),
    ],
)
def test_overlaps_table(a, b, expected):
    assert ex.overlaps(a, b) is expected
    assert ex.overlaps(b, a) is expected


@pytest.mark.parametrize(
    ("extents", "expected"),
    [
        pytest.param([], True, id="empty"),
        pytest.param([(0, 1), (2, 3)], True, id="gap"),
        pytest.param([(0, 1), (1, 3)], False, id="touching"),
        pytest.param([(2, 3), (0, 1)], False, id="unsorted"),
        pytest.param([(0, 0)], False, id="empty-extent"),
        pytest.param([(-1, 3)], False, id="negative"),
    ],
)
def test_is_normal_table(extents, expected):
    assert ex.is_normal(extents) is expected


def test_total():
    assert ex.total([]) == 0
    assert ex.total([E(0, 10), E(20, 25)]) == 15


def test_all_is_pinned():
    assert sorted(ex.__all__) == [
        "Extent",
        "add",
        "clip",
        "covers",
        "gaps",
        "intersect",
        "is_normal",
        "normalize",
        "overlaps",
        "prefix_end",
        "subtract",
        "total",
        "union",
    ]


# -- properties against the set model ------------------------------------------------------------


@given(raw_lists)
def test_normalize_matches_model_and_is_normal(raw):
    result = ex.normalize(raw)
    assert ex.is_normal(result)
    assert all(type(extent) is Extent for extent in result)
    assert result == from_set(to_set(raw))


@given(raw_lists, st.randoms(use_true_random=False))
def test_normalize_is_idempotent_and_order_free(raw, rnd):
    result = ex.normalize(raw)
    assert ex.normalize(result) == result
    shuffled = list(raw)
    rnd.shuffle(shuffled)
    assert ex.normalize(shuffled) == result


@given(normal_lists, normal_lists)
def test_union_is_set_union(a, b):
    result = ex.union(a, b)
    assert ex.is_normal(result)
    assert result == from_set(to_set(a) | to_set(b))


@given(normal_lists, normal_lists)
def test_subtract_is_set_difference(a, b):
    result = ex.subtract(a, b)
    assert ex.is_normal(result)
    assert result == from_set(to_set(a) - to_set(b))


@given(normal_lists, normal_lists)
def test_intersect_is_set_intersection(a, b):
    result = ex.intersect(a, b)
    assert ex.is_normal(result)
    assert result == from_set(to_set(a) & to_set(b))


@given(normal_lists, extent_values)
def test_add_is_union_with_one(extents, extent):
    before = list(extents)
    result = ex.add(extents, extent)
    assert ex.is_normal(result)
    assert result == ex.union(extents, [extent])
    assert result == from_set(to_set(extents) | to_set([extent]))
    assert extents == before


@given(normal_lists, windows)
def test_clip_and_gaps_match_model(extents, window):
    start, stop = window
    inside = set(range(start, stop))
    clipped = ex.clip(extents, start, stop)
    missing = ex.gaps(extents, start, stop)
    assert ex.is_normal(clipped) and ex.is_normal(missing)
    assert clipped == from_set(to_set(extents) & inside)
    assert missing == from_set(inside - to_set(extents))


@given(normal_lists, windows)
def test_covers_matches_model(extents, window):
    start, stop = window
    assert ex.covers(extents, start, stop) is set(range(start, stop)).issubset(to_set(extents))


@given(normal_lists)
def test_prefix_end_and_total_match_model(extents):
    covered = to_set(extents)
    expected_prefix = 0
    while expected_prefix in covered:
        expected_prefix += 1
    assert ex.prefix_end(extents) == expected_prefix
    assert ex.total(extents) == len(covered)


@given(extent_values, extent_values)
def test_overlaps_matches_model(a, b):
    assert ex.overlaps(a, b) is bool(to_set([a]) & to_set([b]))


@given(raw_lists)
def test_is_normal_agrees_with_normalize(raw):
    nonempty = [pair for pair in raw if pair[0] < pair[1]]
    assert ex.is_normal(nonempty) is (nonempty == ex.normalize(nonempty))


def test_importing_extents_reaches_no_io() -> None:
    """The server, the client and the ledger share this module: it imports nothing of theirs."""
    loaded = modules_loaded_by("byterange_server.extents")
    assert io_modules(loaded) == set()
    assert ours(loaded) == {"byterange_server.extents"}
