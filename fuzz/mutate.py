"""Mutations of valid inputs, for header values (``str``, one character per octet) and bodies.

Every mutation is drawn from a seeded :class:`random.Random`, so a run is reproducible from its
seed. The operators are the classic ones of mutational fuzzers (AFL's havoc stage, libFuzzer's
mutation dispatcher) plus the ones HTTP parsers get wrong most often: numbers grown past every
limit, obs-text and non-Latin-1 characters, CR/LF/NUL injection, separators and quotes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from collections.abc import Sequence

# Interesting values, as text: limits of the project (15 digits), of varints (2**62), of
# 32/64-bit integers, and forms int() accepts but HTTP does not (sign, underscore, Unicode digit).
NUMBERS = (
    "0",
    "1",
    "-1",
    "+1",
    "00",
    "007",
    "999999999999999",
    "1000000000000000",
    "9" * 16,
    "9" * 400,
    "4611686018427387903",
    "4611686018427387904",
    "2147483647",
    "2147483648",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "1_000",
    "١٢",
    "²",
    "1e3",
    "0x10",
    " 1",
    "1 ",
)
# Separators and characters with a meaning in some header grammar.
SPECIALS = (
    ",",
    ";",
    "=",
    ":",
    "/",
    "-",
    "*",
    '"',
    "\\",
    " ",
    "\t",
    "(",
    ")",
    "<",
    ">",
    "?",
    "@",
    "[",
    "]",
    "{",
    "}",
    "'",
    "%",
    "%00",
    "%ff",
    "%",
    "+",
    "&",
    "#",
    "W/",
    "?1",
    "?0",
    ":AAAA:",
    "bytes",
    "*/",
)
# Characters a WSGI server could hand over (latin-1: obs-text) and ones it never would.
ODD_CHARS = (
    "\x00",
    "\r",
    "\n",
    "\r\n",
    "\x7f",
    "\x80",
    "\xa0",
    "\xff",
    "\x1b",
    "é",
    "\u0130",
    "\u212a",
    "\u2028",
    "\ufeff",
    "\U0001f600",
    "\udc80",
)
ODD_BYTES = (
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\xff",
    b"\x80",
    b"\xc0\x80",
    b"\xe2\x80\xa8",
    b"\xef\xbb\xbf",
    b"--",
    b"\r\n--",
    b"\x40\x00",
    b"\xc0",
    b"\xff" * 8,
)


#: Longest value a mutation produces (characters or bytes): far past every header cap.
MAX_LENGTH = 64 * 1024


def _insert(text: str, pos: int, piece: str) -> str:
    return text[:pos] + piece + text[pos:]


def mutate_text(rnd: random.Random, text: str, corpus: Sequence[str] = (), *, latin1: bool = False) -> str:
    """Apply 1-4 random mutations to ``text``; ``corpus`` holds other valid values to splice.

    :param latin1: keep every character in U+0000..U+00FF and out of CR/LF/NUL (what a WSGI
        server can hand over as a header value).
    """
    for _ in range(rnd.randint(1, 4)):
        text = rnd.choice(_TEXT_OPS)(rnd, text, corpus)[:MAX_LENGTH]
    if latin1:
        text = "".join(c if c <= "\xff" and c not in "\r\n\x00" else "?" for c in text)
    return text


def _t_flip(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    if not text:
        return chr(rnd.randrange(256))
    pos = rnd.randrange(len(text))
    return text[:pos] + chr(ord(text[pos]) ^ (1 << rnd.randrange(8))) + text[pos + 1 :]


def _t_random_char(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    pos = rnd.randint(0, len(text))
    return _insert(text, pos, chr(rnd.randrange(256)))


def _t_delete(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    if not text:
        return text
    a = rnd.randrange(len(text))
    b = min(len(text), a + rnd.randint(1, 8))
    return text[:a] + text[b:]


def _t_truncate(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    return text[: rnd.randint(0, len(text))]


def _t_duplicate(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    if not text:
        return text
    a = rnd.randrange(len(text))
    b = min(len(text), a + rnd.randint(1, 16))
    return _insert(text, b, text[a:b] * rnd.choice((1, 2, 50)))


def _t_number(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    """Replace a run of digits (or insert a number) with an interesting one."""
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    number = rnd.choice(NUMBERS)
    if not digits:
        return _insert(text, rnd.randint(0, len(text)), number)
    a = b = rnd.choice(digits)
    while a > 0 and text[a - 1].isdigit():
        a -= 1
    while b < len(text) and text[b].isdigit():
        b += 1
    return text[:a] + number + text[b:]


def _t_special(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    return _insert(text, rnd.randint(0, len(text)), rnd.choice(SPECIALS))


def _t_odd(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    return _insert(text, rnd.randint(0, len(text)), rnd.choice(ODD_CHARS))


def _t_splice(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    if not corpus:
        return text + text
    other = rnd.choice(corpus)
    return text[: rnd.randint(0, len(text))] + other[rnd.randint(0, len(other)) :]


def _t_join(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    """Two values as one list (``a, b``), the way repeated field lines are combined."""
    other = rnd.choice(corpus) if corpus else text
    return text + rnd.choice((",", ", ", ";", " ", "")) + other


def _t_swap_case(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    return text.swapcase() if rnd.random() < 0.5 else text.upper()


def _t_whitespace(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    pad = rnd.choice((" ", "\t", "  ", " \t "))
    where = rnd.randrange(3)
    if where == 0:
        return pad + text
    if where == 1:
        return text + pad
    return _insert(text, rnd.randint(0, len(text)), pad)


def _t_huge(rnd: random.Random, text: str, corpus: Sequence[str]) -> str:
    """Grow the value a lot (repeat it, or a separator), for quadratic or recursive parsers."""
    unit = rnd.choice((text[:32] or "a", ",", ";", "a=b;", '"\\', "(", "[", " ", "-0", "0"))
    return text + unit * rnd.choice((100, 1000, 5000))


_TEXT_OPS: tuple[Callable[[random.Random, str, Sequence[str]], str], ...] = (
    _t_flip,
    _t_random_char,
    _t_delete,
    _t_truncate,
    _t_duplicate,
    _t_number,
    _t_number,
    _t_special,
    _t_special,
    _t_odd,
    _t_splice,
    _t_join,
    _t_swap_case,
    _t_whitespace,
    _t_huge,
)


def mutate_bytes(rnd: random.Random, data: bytes, corpus: Sequence[bytes] = ()) -> bytes:
    """Apply 1-6 random mutations to ``data``; ``corpus`` holds other valid bodies to splice."""
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 6)):
        buf = rnd.choice(_BYTE_OPS)(rnd, buf, corpus)[:MAX_LENGTH]
    return bytes(buf)


def _b_flip(rnd: random.Random, buf: bytearray, corpus: Sequence[bytes]) -> bytearray:
    if buf:
        pos = rnd.randrange(len(buf))
        buf[pos] ^= 1 << rnd.randrange(8)
    return buf


def _b_set(rnd: random.Random, buf: bytearray, corpus: Sequence[bytes]) -> bytearray:
    if buf:
        buf[rnd.randrange(len(buf))] = rnd.choice(
            (0, 0x0A, 0x0D, 0x2D, 0x3A, 0x40, 0x7F, 0x80, 0xC0, 0xFF, rnd.randrange(256))
        )
    return buf


def _b_insert(rnd: random.Random, buf: bytearray, corpus: Sequence[bytes]) -> bytearray:
    pos = rnd.randint(0, len(buf))
    piece = rnd.choice(ODD_BYTES) if rnd.random() < 0.6 else rnd.randbytes(rnd.randint(1, 8))
    buf[pos:pos] = piece
    return buf


def _b_delete(rnd: random.Random, buf: bytearray, corpus: Sequence[bytes]) -> bytearray:
    if buf:
        a = rnd.randrange(len(buf))
        del buf[a : a + rnd.randint(1, 16)]
    return buf


def _b_truncate(rnd: random.Random, buf: bytearray, corpus: Sequence[bytes]) -> bytearray:
    del buf[rnd.randint(0, len(buf)) :]
    return buf


def _b_duplicate(rnd: random.Random, buf: bytearray, corpus: Sequence[bytes]) -> bytearray:
    if buf:
        a = rnd.randrange(len(buf))
        b = min(len(buf), a + rnd.randint(1, 64))
        buf[b:b] = buf[a:b] * rnd.choice((1, 2, 3, 100))
    return buf


def _b_splice(rnd: random.Random, buf: bytearray, corpus: Sequence[bytes]) -> bytearray:
    if corpus:
        other = rnd.choice(corpus)
        return bytearray(buf[: rnd.randint(0, len(buf))] + other[rnd.randint(0, len(other)) :])
    return buf + buf


def _b_text(rnd: random.Random, buf: bytearray, corpus: Sequence[bytes]) -> bytearray:
    """Mutate a line of the body as text: numbers, separators, CR/LF inside field blocks."""
    if not buf:
        return buf
    start = rnd.randrange(len(buf))
    end = buf.find(b"\n", start)
    end = len(buf) if end < 0 else end
    line = buf[start:end].decode("latin-1")
    mutated = mutate_text(rnd, line)
    return buf[:start] + mutated.encode("utf-8", "surrogateescape") + buf[end:]


def _b_number(rnd: random.Random, buf: bytearray, corpus: Sequence[bytes]) -> bytearray:
    """Overwrite a byte with a varint prefix of a big length (2, 4 or 8 bytes)."""
    if buf:
        pos = rnd.randrange(len(buf))
        width = rnd.choice((1, 2, 4, 8))
        value = rnd.choice((0, 1, 63, 64, 8192, 8193, (1 << 30) - 1, (1 << 62) - 1))
        value &= (1 << (8 * width - 2)) - 1
        prefix = {1: 0, 2: 0x40, 4: 0x80, 8: 0xC0}[width] << (8 * width - 8)
        buf[pos : pos + width] = (value | prefix).to_bytes(width, "big")
    return buf


_BYTE_OPS: tuple[Callable[[random.Random, bytearray, Sequence[bytes]], bytearray], ...] = (
    _b_flip,
    _b_set,
    _b_insert,
    _b_insert,
    _b_delete,
    _b_truncate,
    _b_duplicate,
    _b_splice,
    _b_text,
    _b_text,
    _b_number,
)


def random_text(rnd: random.Random) -> str:
    """A value from nothing: random printable, latin-1 or arbitrary characters."""
    n = rnd.choice((0, 1, 2, 5, 20, 100))
    kind = rnd.randrange(3)
    if kind == 0:
        return "".join(chr(rnd.randint(0x20, 0x7E)) for _ in range(n))
    if kind == 1:
        return "".join(chr(rnd.randrange(256)) for _ in range(n))
    return "".join(chr(rnd.randrange(0x11000)) for _ in range(n))


def random_bytes(rnd: random.Random) -> bytes:
    return rnd.randbytes(rnd.choice((0, 1, 2, 8, 64, 512)))
