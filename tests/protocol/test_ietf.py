"""The IETF Resumable Uploads field parsers (protocol/ietf.py): examples and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byterange_server.errors import InconsistentLengthError
from byterange_server.errors import MalformedHeaderError
from byterange_server.protocol.ietf import UploadLimit
from byterange_server.protocol.ietf import parse_interop_version
from byterange_server.protocol.ietf import parse_upload_complete
from byterange_server.protocol.ietf import parse_upload_limit
from byterange_server.protocol.ietf import parse_upload_number
from byterange_server.protocol.ietf import resolve_length

SF_MAX = 999_999_999_999_999
sizes = st.integers(min_value=0, max_value=SF_MAX)
optional_sizes = st.none() | sizes


@pytest.mark.parametrize("value,expected", [("6", 6), ("7", 7), (" 8 ", 8), ("8;a=1", 8),
                                            ("9", 9), ("5", None), ("10", None), ("3", None), ("x", None),
                                            ("?1", None), ("-6", None), ("6.0", None), ("", None),
                                            ("1" * 16, None)])
def test_interop_version(value, expected):
    assert parse_interop_version(value) == expected


@pytest.mark.parametrize("value,expected", [("?0", False), ("?1", True), (" ?1", True), ("?1;x", True)])
def test_upload_complete(value, expected):
    assert parse_upload_complete(value) is expected


@pytest.mark.parametrize("value", ["?2", "1", "true", "?", "", "?1, ?0", "(?1)"])
def test_upload_complete_rejects(value):
    with pytest.raises(MalformedHeaderError):
        parse_upload_complete(value)


@pytest.mark.parametrize("value", ["-1", "1.0", "x", "?1", "1" * 16, "", "1,2", "0x10"])
def test_upload_number_rejects(value):
    with pytest.raises(MalformedHeaderError):
        parse_upload_number(value, field="Upload-Offset")


@given(sizes)
def test_upload_number_roundtrip(number):
    assert parse_upload_number(str(number), field="Upload-Length") == number


@given(
    st.builds(UploadLimit, max_size=optional_sizes, min_size=optional_sizes,
              max_append_size=optional_sizes, min_append_size=optional_sizes, max_age=optional_sizes),
    st.sampled_from([None, 6, 7, 8]),
)
def test_upload_limit_roundtrip(limit, interop):
    text = limit.format(interop)
    assert parse_upload_limit(text) == limit if text else limit == UploadLimit()
    if limit.max_age is not None:
        assert ("expires=" in text) == (interop == 6)


def test_upload_limit_examples():
    assert UploadLimit(max_size=1234567890).format(8) == "max-size=1234567890"
    assert parse_upload_limit("max-size=5, foo=?1, bar=\"x\"") == UploadLimit(max_size=5)
    assert parse_upload_limit("expires=60") == UploadLimit(max_age=60)


@pytest.mark.parametrize("value", ["max-size=-1", "max-size=?1", 'max-age="60"', "max-size=1.5",
                                   "max-size", "max-size=(1 2)", "=1"])
def test_upload_limit_rejects(value):
    with pytest.raises(MalformedHeaderError):
        parse_upload_limit(value)



# -- resolve_length ---------------------------------------------------------------------------


def test_resolve_length_examples():
    assert resolve_length(offset=0, complete=False, content_length=5, upload_length=None) is None
    assert resolve_length(offset=0, complete=True, content_length=5, upload_length=None) == 5
    assert resolve_length(offset=3, complete=True, content_length=5, upload_length=8) == 8
    assert resolve_length(offset=3, complete=True, content_length=None, upload_length=None) is None
    assert resolve_length(offset=3, complete=False, content_length=2, upload_length=None,
                          known_length=9) == 9
    for kwargs in (
        {"offset": 0, "complete": True, "content_length": 5, "upload_length": 6},  # docs/spec-notes.md#e21
        {"offset": 0, "complete": False, "content_length": 7, "upload_length": 6},
        {"offset": 0, "complete": False, "content_length": 1, "upload_length": 6, "known_length": 5},
        {"offset": 6, "complete": False, "content_length": 0, "upload_length": 5},
    ):
        with pytest.raises(InconsistentLengthError):
            resolve_length(**kwargs)


@given(
    offset=st.integers(0, 1000),
    complete=st.booleans(),
    content_length=st.none() | st.integers(0, 1000),
    upload_length=st.none() | st.integers(0, 3000),
    known_length=st.none() | st.integers(0, 3000),
)
def test_resolve_length_properties(offset, complete, content_length, upload_length, known_length):
    indicators = [x for x in (upload_length, known_length) if x is not None]
    if complete and content_length is not None:
        indicators.append(offset + content_length)
    end = offset + (content_length or 0)
    consistent = len(set(indicators)) <= 1 and all(end <= x for x in indicators)
    try:
        length = resolve_length(offset=offset, complete=complete, content_length=content_length,
                                upload_length=upload_length, known_length=known_length)
    except InconsistentLengthError:
        assert not consistent
        return
    assert consistent
    assert length == (indicators[0] if indicators else None)
