"""The terminal extent map: which cell shows what."""

from __future__ import annotations

import pytest

from byterange_server.client.extentbar import render_bar
from byterange_server.extents import normalize


def bar(length, committed=(), in_flight=(), width=10, **options):
    return render_bar(length, normalize(committed), normalize(in_flight), width, **options)


def test_nothing_committed_is_all_holes():
    assert bar(1000) == "░" * 10


def test_everything_committed_is_full():
    assert bar(1000, [(0, 1000)]) == "█" * 10


def test_cells_follow_the_ranges():
    # 100 bytes a cell: [0,300) committed, [500,700) in flight, the rest holes.
    assert bar(1000, [(0, 300)], [(500, 700)]) == "███░░▒▒░░░"


def test_a_partly_committed_cell_without_writers():
    assert bar(1000, [(0, 150)]) == "█▓░░░░░░░░"


def test_in_flight_wins_over_partly_committed():
    assert bar(1000, [(0, 150)], [(150, 200)]) == "█▒░░░░░░░░"


def test_a_committed_cell_stays_full_while_a_writer_repeats_it():
    assert bar(1000, [(0, 1000)], [(0, 500)]) == "█" * 10


def test_a_one_byte_hole_still_shows():
    length = 1 << 40
    shown = bar(length, [(0, 12345), (12346, length)], width=40)
    assert shown == "▓" + "█" * 39


def test_a_length_smaller_than_the_bar():
    assert bar(3, [(1, 2)], width=6) == "░░██░░"


def test_an_empty_resource_is_complete():
    assert bar(0, width=5) == "█████"


def test_ascii_cells():
    assert bar(1000, [(0, 300), (300, 350)], [(500, 700)], ascii=True) == "###+.~~..."


def test_width_is_exact_for_any_length():
    for length in (1, 7, 59, 60, 61, 10**12 + 7):
        assert len(render_bar(length, normalize([(0, length // 2)]), [], 60)) == 60


@pytest.mark.parametrize(("length", "width"), [(-1, 10), (10, 0)])
def test_bad_arguments_are_refused(length, width):
    with pytest.raises(ValueError):
        render_bar(length, [], [], width)
