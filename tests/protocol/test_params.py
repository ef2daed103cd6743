"""Tests for :mod:`byterange_server.protocol.params`: ``Prefer``, ``Content-Disposition`` and ``Link``
(RFC 8288: how a client finds the committed-range document)."""

from __future__ import annotations

import string

import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from strategies import ANY_TEXT
from strategies import only_client_errors

from byterange_server.errors import MalformedHeaderError
from byterange_server.protocol.params import find_link
from byterange_server.protocol.params import format_content_disposition
from byterange_server.protocol.params import parse_content_disposition_filename
from byterange_server.protocol.params import parse_links
from byterange_server.protocol.params import parse_prefer
from byterange_server.protocol.params import transaction_preference

P = pytest.param


# -- Prefer --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("transaction=atomic", {"transaction": "atomic"}, id="one"),
        P("respond-async", {"respond-async": None}, id="no-value"),
        P("respond-async, wait=100", {"respond-async": None, "wait": "100"}, id="two"),
        P("Transaction=atomic", {"transaction": "atomic"}, id="name-case-insensitive"),
        P("transaction=ATOMIC", {"transaction": "ATOMIC"}, id="value-kept-as-sent"),
        P('transaction="atomic"', {"transaction": "atomic"}, id="quoted"),
        P('foo="a,b;c\\"d"', {"foo": 'a,b;c"d'}, id="quoted-specials"),
        P("transaction = atomic", {"transaction": "atomic"}, id="bws-around-equals"),
        P("transaction=atomic; foo=bar;baz", {"transaction": "atomic"}, id="params-ignored"),
        P("transaction=atomic;;", {"transaction": "atomic"}, id="empty-params"),
        P('transaction=atomic; x="1,2"', {"transaction": "atomic"}, id="param-with-comma"),
        P("transaction=atomic, transaction=persist", {"transaction": "atomic"},
          id="first-wins"),
        P('foo=""', {"foo": None}, id="empty-quoted-is-no-value"),
        P("foo=", {"foo": None}, id="empty-is-no-value"),
        P(",, foo ,", {"foo": None}, id="empty-elements"),
        P("", {}, id="empty"),
        P(["wait=10", "transaction=atomic, wait=20"], {"wait": "10", "transaction": "atomic"},
          id="several-field-lines"),
        P([], {}, id="no-field-lines"),
    ],
)
def test_parse_prefer(raw, expected):
    assert parse_prefer(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P("transaction atomic", id="missing-equals"),
        P("=atomic", id="no-name"),
        P('foo="unterminated', id="unterminated-quote"),
        P("foo=a b", id="space-in-value"),
        P("foo=a=b", id="two-equals"),
        P("fóo=1", id="non-token-name"),
        P("foo;=1", id="param-without-name"),
        P(["ok", "bad bad"], id="bad-second-line"),
    ],
)
def test_parse_prefer_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        parse_prefer(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P("", "persist", id="absent"),
        P("transaction=atomic", "atomic", id="atomic"),
        P("transaction=Atomic", "atomic", id="atomic-case"),
        P("transaction=persist", "persist", id="persist"),
        P("transaction=bogus", "persist", id="unknown"),
        P("transaction", "persist", id="no-value"),
        P("respond-async", "persist", id="other-preference"),
    ],
)
def test_transaction_preference(raw, expected):
    assert transaction_preference(parse_prefer(raw)) == expected


# -- Content-Disposition -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        P('attachment; filename="x.txt"', "x.txt", id="quoted"),
        P("attachment; filename=x.txt", "x.txt", id="token"),
        P("inline;filename=x.txt", "x.txt", id="inline-no-space"),
        P('ATTACHMENT; FileName="x.txt"', "x.txt", id="case-insensitive"),
        P('attachment; filename="a\\"b\\\\c"', 'a"b\\c', id="quoted-pairs"),
        P("attachment; filename*=UTF-8''na%C3%AFve.txt", "naïve.txt", id="ext-utf8"),
        P("attachment; filename*=utf-8'en'%E2%82%AC.txt", "€.txt", id="ext-language"),
        P("attachment; filename*=ISO-8859-1''%E9.txt", "é.txt", id="ext-latin1"),
        P("attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC.txt", "€.txt",
          id="ext-preferred-after"),
        P("attachment; filename*=UTF-8''%E2%82%AC.txt; filename=\"fallback.txt\"", "€.txt",
          id="ext-preferred-before"),
        P("attachment; filename=\"fallback.txt\"; filename*=KOI8-R''%C1", "fallback.txt",
          id="unknown-charset-falls-back"),
        P("attachment; filename*=KOI8-R''%C1", None, id="unknown-charset-only"),
        P('attachment; filename="caf\xc3\xa9.txt"', "café.txt", id="raw-utf8-octets"),
        P('attachment; filename="caf\xe9.txt"', "café.txt", id="raw-latin1-octets"),
        P("attachment", None, id="no-filename"),
        P("attachment; size=10", None, id="other-params"),
        P('attachment; filename=""', None, id="empty-filename"),
        P('attachment; filename="../../etc/passwd"', "../../etc/passwd", id="path-kept"),
    ],
)
def test_parse_content_disposition_filename(raw, expected):
    assert parse_content_disposition_filename(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        P("", id="empty"),
        P('; filename="x"', id="no-type"),
        P('attachment filename="x"', id="missing-semicolon"),
        P("attachment;", id="trailing-semicolon"),
        P("attachment; filename", id="param-without-value"),
        P('attachment; filename="x"; filename="y"', id="repeated-param"),
        P('attachment; filename="x"; FILENAME="y"', id="repeated-param-case"),
        P('attachment; filename="x', id="unterminated-quote"),
        P("attachment; filename=a b", id="space-in-token"),
        P("attachment; filename*=\"UTF-8''x\"", id="quoted-ext-value"),
        P("attachment; filename*=x.txt", id="ext-without-charset"),
        P("attachment; filename*=UTF-8''%E2%82", id="ext-truncated-utf8"),
        P("attachment; filename*=UTF-8''%ZZ", id="ext-bad-escape"),
        P("attachment; filename*=UTF-8''%00x", id="ext-nul"),
        P('attachment; filename="a\tb"', id="tab"),
    ],
)
def test_parse_content_disposition_filename_invalid(raw):
    with pytest.raises(MalformedHeaderError):
        parse_content_disposition_filename(raw)


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        P("x.txt", 'attachment; filename="x.txt"', id="ascii"),
        P('a"b\\c', 'attachment; filename="a\\"b\\\\c"', id="escaped"),
        P("100%.txt", 'attachment; filename="100%.txt"', id="percent-ascii"),
        P("naïve.txt", "attachment; filename=\"na_ve.txt\"; filename*=UTF-8''na%C3%AFve.txt",
          id="non-ascii"),
        P("€ 1'2.txt", "attachment; filename=\"_ 1'2.txt\"; filename*=UTF-8''%E2%82%AC%201%272.txt",
          id="space-and-apostrophe-encoded"),
    ],
)
def test_format_content_disposition(filename, text):
    assert format_content_disposition(filename) == text
    assert parse_content_disposition_filename(text) == filename


def test_format_content_disposition_inline():
    assert format_content_disposition("x", "inline") == 'inline; filename="x"'


@pytest.mark.parametrize(
    ("filename", "disposition"),
    [
        P("", "attachment", id="empty"),
        P("a\r\nSet-Cookie: x", "attachment", id="header-injection"),
        P("a\x00b", "attachment", id="nul"),
        P("x", "attach ment", id="bad-disposition"),
    ],
)
def test_format_content_disposition_rejects(filename, disposition):
    with pytest.raises(ValueError):
        format_content_disposition(filename, disposition)


# -- Link ----------------------------------------------------------------------------------------


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


# -- round trips ---------------------------------------------------------------------------------


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1))
def test_content_disposition_round_trip(filename):
    text = format_content_disposition(filename)
    assert text.isascii()
    assert "\r" not in text and "\n" not in text
    assert parse_content_disposition_filename(text) == filename


# -- robustness: arbitrary text ------------------------------------------------------------------


PARSERS = {
    "parse_prefer": parse_prefer,
    "parse_content_disposition_filename": parse_content_disposition_filename,
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(deadline=None)
@given(text=ANY_TEXT)
@example(text="bytes=" + "9" * 40)
@example(text="\udcff")
def test_parsers_raise_only_client_errors(name, text):
    only_client_errors(PARSERS[name], text)


@given(st.lists(st.tuples(st.sampled_from(string.ascii_lowercase[:3]), ANY_TEXT), max_size=3))
def test_parse_prefer_on_many_lines(lines):
    only_client_errors(parse_prefer, [text for _, text in lines])
