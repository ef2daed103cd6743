"""Numbers on the wire (sans-IO): decimal ``1*DIGIT`` and Structured Field Items.

Numbers are ASCII digits only (``[0-9]``, never ``str.isdigit``, which accepts ``'١'``) and at
most 15 of them, the Structured Fields limit (RFC 9651 §3.3.1; docs/spec-notes.md#e17), so every number
fits comfortably in a 64-bit integer and a 16-digit value is a 400, not an overflow.
``Upload-Complete``'s sf-boolean is here too: it is a bare Item, parsed as the sf-integer is.
"""

from __future__ import annotations

from ..errors import MalformedHeaderError
from ._abnf import DIGITS_RE
from ._abnf import is_sf_integer
from ._abnf import malformed
from ._abnf import sf_parse

__all__ = ["MAX_DIGITS", "check_int", "parse_int", "parse_sf_boolean", "parse_sf_integer"]

#: Most digits any number on the wire may have (RFC 9651 sf-integer limit; docs/spec-notes.md#e17).
MAX_DIGITS = 15


def parse_int(text: str, *, field: str | None = None) -> int:
    """Parse a non-negative decimal number: ASCII digits only, 1 to 15 of them.

    No sign, no whitespace, no ``_`` separators, no non-ASCII digits (``int()`` would accept
    all of those).  Leading zeros are allowed (``1*DIGIT``) but count towards the 15.

    :param field: the field name, for the error's detail and ``extra``.
    :raises MalformedHeaderError: for anything else, including a 16th digit
        (docs/spec-notes.md#e17).
    """
    if not DIGITS_RE.fullmatch(text):
        raise malformed(field, f"Not a decimal number{_where(field)}")
    if len(text) > MAX_DIGITS:
        raise _too_many_digits(len(text), field)
    return int(text)


def check_int(value: int, *, field: str | None = None) -> int:
    """``value`` if :func:`parse_int` could have returned it: 0 to 15 digits.

    For a number that reaches the protocol already parsed (the ``Content-Length`` Werkzeug
    reads), so that it meets the limit a number parsed here meets.

    :raises MalformedHeaderError: for a negative number or one of more than 15 digits.
    """
    if value < 0:
        raise malformed(field, f"Not a decimal number{_where(field)}")
    if len(str(value)) > MAX_DIGITS:
        raise _too_many_digits(len(str(value)), field)
    return value


def _where(field: str | None) -> str:
    return f" in {field}" if field else ""


def _too_many_digits(digits: int, field: str | None) -> MalformedHeaderError:
    return malformed(
        field,
        f"Number{_where(field)} has more than {MAX_DIGITS} digits",
        digits=digits,
        **{"max-digits": MAX_DIGITS},
    )


def parse_sf_integer(value: str, *, field: str = "Structured Field") -> int:
    """Parse an sf-integer Item that must be non-negative (``Upload-Offset``, ...).

    The 15-digit limit is the Structured Fields one.  Parameters are ignored, as RFC 9651 lets
    recipients do with ones they do not know.

    :raises MalformedHeaderError: if the value is not an Item, not an Integer, or negative.
    """
    item, _params = sf_parse(value, "item", field)
    if not is_sf_integer(item):
        raise malformed(field, f"{field} is not an Integer")
    if item < 0:
        raise malformed(field, f"{field} is negative")
    return int(item)


def parse_sf_boolean(value: str, *, field: str = "Structured Field") -> bool:
    """Parse an sf-boolean Item (``?0`` / ``?1``, e.g. ``Upload-Complete``); parameters ignored.

    :raises MalformedHeaderError: if the value is not an Item or not a Boolean.
    """
    item, _params = sf_parse(value, "item", field)
    if type(item) is not bool:
        raise malformed(field, f"{field} is not a Boolean")
    return item

