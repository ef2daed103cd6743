"""Hypothesis strategies and checks shared by the header-field tests of this directory.

Imported as ``from strategies import ...``: ``tests/protocol`` has no ``__init__.py``, so pytest
puts this directory on ``sys.path`` (as for ``decoding.py``).
"""

from __future__ import annotations

from hypothesis import strategies as st

from byterange_server.errors import ByterangeError
from byterange_server.protocol.ranges import ContentRange

MAX = 10**15 - 1  # the largest 15-digit number

positions = st.integers(min_value=0, max_value=MAX)


@st.composite
def content_ranges(draw):
    if draw(st.booleans()):
        return ContentRange.unsatisfied(draw(positions))
    first = draw(st.integers(min_value=0, max_value=MAX - 1))
    last = draw(st.integers(min_value=first, max_value=MAX - 1))
    length = draw(st.one_of(st.none(), st.integers(min_value=last + 1, max_value=MAX)))
    return ContentRange(first, last + 1, length)


# Text biased towards the characters these grammars care about, plus anything at all.
_HEADERISH = st.text(
    alphabet=st.sampled_from(list("bytes=-,/*; \t\"'\\:?%W0123456789١ _+aAeé\r\n")), max_size=40
)
ANY_TEXT = st.one_of(st.text(max_size=60), _HEADERISH)


def only_client_errors(call, *args):
    try:
        call(*args)
    except ByterangeError as exc:
        assert 400 <= exc.status < 500, exc
