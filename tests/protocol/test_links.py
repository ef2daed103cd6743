"""``Link`` (RFC 8288): how a client finds the committed-range document."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.errors import MalformedHeaderError
from byterange_server.protocol.headers import find_link
from byterange_server.protocol.headers import parse_links


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            '</files/a/committed-ranges>; rel="committed-ranges"',
            [("/files/a/committed-ranges", {"rel": "committed-ranges"})],
        ),
        ("<https://h/x?y=1>;rel=next", [("https://h/x?y=1", {"rel": "next"})]),
        ('<a>; REL="Next"; title="a, b; c"', [("a", {"rel": "Next", "title": "a, b; c"})]),
        ("<a>; rel=one; rel=two", [("a", {"rel": "one"})]),  # later rel ignored (RFC 8288 §3.3)
        ("<a>, <b>;rel=x", [("a", {}), ("b", {"rel": "x"})]),
        ("  <a>  ;  rel = x  ,  ", [("a", {"rel": "x"})]),
        (", ,<a>", [("a", {})]),
        ("<a>; crossorigin", [("a", {"crossorigin": ""})]),
        ('<a>; title="say \\"hi\\""', [("a", {"title": 'say "hi"'})]),
        ("", []),
    ],
)
def test_parse_links(raw, expected):
    assert parse_links(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["a", "<a", "<a>; =x", "<a> junk", "<a>; rel=", '<a>; rel="open', "<a b>", "<a>;; rel=x"],
)
def test_parse_links_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        parse_links(raw)


def test_find_link():
    value = '</p2>; rel="next", </c>; rel="alternate committed-ranges"'
    assert find_link(value, "committed-ranges") == "/c"
    assert find_link(value, "NEXT") == "/p2"
    assert find_link(value, "prev") is None
    assert find_link(None, "next") is None


TCHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._~!#$%&'*+^`|"
tokens = st.text(st.sampled_from(TCHARS), min_size=1, max_size=9)
targets = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="<>"), max_size=30
)
values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


@given(st.lists(st.tuples(targets, st.dictionaries(tokens, values, max_size=3)), max_size=4))
def test_formatted_links_parse_back(links):
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    raw = ", ".join(
        f"<{target}>" + "".join(f"; {name}={quote(value)}" for name, value in params.items())
        for target, params in links
    )
    parsed = parse_links(raw)
    assert [t for t, _ in parsed] == [t for t, _ in links]
    # Names differing only in case collapse to the first one given.
    for (_, got), (_, params) in zip(parsed, links, strict=True):
        first: dict[str, str] = {}
        for name, value in params.items():
            first.setdefault(name.lower(), value)
        assert got == first
