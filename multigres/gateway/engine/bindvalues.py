"""A bind value's SQL text back to the value Postgres reads from it.

A primitive gets each parameter as SQL text (``multigres.gateway.engine.primitive``): the
literal's own source text when the normalizer lifted it out of the statement (``42``,
``'abc'``, ``E'a\\nb'``, ``1.5e3``, ``B'101'``, ``$$x$$``), or a client's extended-protocol
value rendered as a quoted literal (``'42'``, ``NULL``). Where the engine must look at the
value (a vindex column of an INSERT, the new value of an UPDATE's sharding column) it decodes
that text here, with Postgres 15's lexical rules (``src/backend/parser/scan.l``) and the type
the parser gives the constant (``make_const`` in ``parse_node.c``):

- an integer (digits) is int4 when it fits, else int8, else numeric; a sign in front (a
  client's ``-5``; the normalizer leaves signs out: ``-1`` is ``-$1``) folds into the value
  as the grammar's ``doNegate`` does, so ``-2147483648`` is int4;
- a number with ``.`` or an exponent is numeric (``Decimal``), even ``1.0``;
- ``'...'`` (``''`` is a quote; backslashes are plain characters unless
  ``standard_conforming_strings`` is off), ``E'...'`` (backslash escapes: ``\\b \\f \\n \\r
  \\t``, octal ``\\o..\\ooo``, hex ``\\xh..\\xhh``, ``\\uXXXX``, ``\\UXXXXXXXX`` with UTF-16
  surrogate pairs, any other character as itself), ``U&'...'`` (``\\XXXX``, ``\\+XXXXXX``,
  ``\\\\``, with an optional ``UESCAPE 'c'``), ``$tag$...$tag$`` and ``N'...'`` are strings of
  type unknown (``N'...'``: bpchar); strings separated by whitespace holding a newline
  continue each other, as in SQL;
- ``B'...'`` and ``X'...'`` are bit strings (``X'1F'`` is ``'00011111'``);
- ``NULL`` is None.

The server encoding is taken to be UTF-8 (what a sharded database needs: vindexes hash the
UTF-8 of text): escapes that make bytes must make valid UTF-8, and a zero byte is refused,
as Postgres refuses them. Errors carry Postgres's SQLSTATE and message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from multigres.wire import sqlstate as codes
from multigres.wire.errors import PgError

# Type OIDs of constants, as the parser types them (0: unknown, a string or NULL).
OID_UNKNOWN: Final = 0
OID_INT4: Final = 23
OID_INT8: Final = 20
OID_NUMERIC: Final = 1700
OID_BIT: Final = 1560
OID_BPCHAR: Final = 1042

# SQLSTATEs of the lexer's and the encoding check's errors (not in multigres.wire.sqlstate).
INVALID_ESCAPE_SEQUENCE: Final = "22025"
CHARACTER_NOT_IN_REPERTOIRE: Final = "22021"
INVALID_TEXT_REPRESENTATION: Final = "22P02"

_INT4_MIN, _INT4_MAX = -(1 << 31), (1 << 31) - 1
_INT8_MIN, _INT8_MAX = -(1 << 63), (1 << 63) - 1

_NUMBER = re.compile(r"(\d+)?(\.\d*)?([eE][+-]?\d+)?")
_SPACE = " \t\n\r\f\v"
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_HEX = "0123456789abcdefABCDEF"


@dataclass(frozen=True, slots=True)
class BindValue:
    """A decoded constant: ``value`` is None (NULL), int, Decimal, or str (a string's text;
    a bit string's digits); ``type_oid`` the type Postgres gives the constant."""

    value: int | Decimal | str | None
    type_oid: int
    # Written as digits only but too large for int8 (a numeric): negated, it may fit again.
    oversize_integer: bool = field(default=False, compare=False)

    @property
    def is_null(self) -> bool:
        return self.value is None


NULL: Final = BindValue(None, OID_UNKNOWN)


def decode(text: str, standard_conforming_strings: bool = True) -> BindValue:
    """The constant whose SQL text is ``text`` (surrounding whitespace allowed)."""
    s = text.strip(_SPACE)
    if not s:
        raise _syntax(text)
    if s.upper() == "NULL" or (s.upper().startswith("NULL::") and s[6:].strip() in _CASTS):
        return NULL
    c = s[0]
    if c in "+-" or c.isdigit() or c == ".":
        return _number(s, text)
    value, oid, end = _string(s, 0, standard_conforming_strings)
    rest = s[end:].strip(_SPACE)
    if rest.startswith("::"):
        return _cast(value, rest[2:].strip(_SPACE), text)
    if rest:
        raise _syntax(text)
    return BindValue(value, oid)


# Casts the gateway writes after a client's extended-protocol parameter (its declared type;
# sharded_ext._TYPE_NAMES): name -> (oid, how the text becomes the value a vindex reads).
_CASTS: dict[str, tuple[int, type]] = {
    "int2": (21, int), "int4": (23, int), "int8": (20, int), "oid": (26, int),
    "numeric": (1700, Decimal), "text": (25, str), "varchar": (1043, str),
    "bpchar": (1042, str), "name": (19, str),
}


def _cast(value: str, type_name: str, text: str) -> BindValue:
    """``'...'::type`` (a client's parameter with its declared type)."""
    cast = _CASTS.get(type_name)
    if cast is None:
        raise _syntax(text)
    oid, conv = cast
    try:
        return BindValue(conv(value.strip(_SPACE)) if conv is not str else value, oid)
    except (ValueError, ArithmeticError):
        raise PgError(f"invalid input syntax for type {type_name}: {value[:80]!r}",
                      codes.INVALID_TEXT_REPRESENTATION) from None


def decode_all(texts: list[str], standard_conforming_strings: bool = True) -> list[BindValue]:
    return [decode(t, standard_conforming_strings) for t in texts]


# -- numbers ----------------------------------------------------------------------------------


def _number(s: str, text: str) -> BindValue:
    negative = False
    i = 0
    # Signs are operators in SQL; a client's value may still carry one (or several: --
    # would be a comment, so Postgres never sees two minus signs in a row).
    while i < len(s) and s[i] in "+-":
        if s.startswith("--", i):
            raise _syntax(text)
        negative ^= s[i] == "-"
        i += 1
        while i < len(s) and s[i] in _SPACE:
            i += 1
    body = s[i:]
    m = _NUMBER.fullmatch(body)
    if not body or m is None or not (m.group(1) or (m.group(2) and len(m.group(2)) > 1)):
        raise _syntax(text)
    if m.group(2) is None and m.group(3) is None:
        v = int(body)
        v = -v if negative else v
        if _INT4_MIN <= v <= _INT4_MAX:
            return BindValue(v, OID_INT4)
        if _INT8_MIN <= v <= _INT8_MAX:
            return BindValue(v, OID_INT8)
        return BindValue(Decimal(v), OID_NUMERIC, oversize_integer=True)
    d = Decimal(body)
    return BindValue(-d if negative else d, OID_NUMERIC)


# -- strings ----------------------------------------------------------------------------------


def _string(s: str, pos: int, scs: bool) -> tuple[str, int, int]:
    """(value, type oid, end position) of the string constant at ``pos``."""
    c = s[pos].upper()
    if c == "$":
        m = _DOLLAR_TAG.match(s, pos)
        if m is None:
            raise _syntax(s)
        tag = m.group(0)
        end = s.find(tag, m.end())
        if end < 0:
            raise _unterminated("dollar-quoted string", s)
        return s[m.end() : end], OID_UNKNOWN, end + len(tag)
    if c == "'":
        return _plain(s, pos, not scs)
    if c == "E" and s.startswith("'", pos + 1):
        v, end = _quoted(s, pos + 1, escapes=True)
        return v, OID_UNKNOWN, end
    if c == "N" and s.startswith("'", pos + 1):
        v, end = _quoted(s, pos + 1, escapes=not scs)
        return v, OID_BPCHAR, end
    if c in "BX" and s.startswith("'", pos + 1):
        v, end = _quoted(s, pos + 1, escapes=False)
        return _bits(v, c == "X"), OID_BIT, end
    if c == "U" and s[pos : pos + 3].upper() == "U&'":
        if not scs:
            raise PgError(
                "unsafe use of string constant with Unicode escapes",
                codes.FEATURE_NOT_SUPPORTED,
                detail="String constants with Unicode escapes cannot be used when "
                "standard_conforming_strings is off.",
            )
        return _unicode_string(s, pos + 2)
    raise _syntax(s)


def _plain(s: str, pos: int, escapes: bool) -> tuple[str, int, int]:
    v, end = _quoted(s, pos, escapes)
    return v, OID_UNKNOWN, end


def _quoted(s: str, pos: int, escapes: bool) -> tuple[str, int]:
    """The text of '...' starting at ``pos`` (the quote), with continuations; and its end."""
    parts: list[str] = []
    while True:
        text, end = (_escaped_body if escapes else _plain_body)(s, pos + 1)
        parts.append(text)
        nxt = _continuation(s, end)
        if nxt < 0:
            return "".join(parts), end
        pos = nxt


def _continuation(s: str, end: int) -> int:
    """Where the next part of a continued string starts (its quote), or -1. SQL continues a
    string only across whitespace that holds a newline (scan.l's {quotecontinue})."""
    i = end
    newline = False
    while i < len(s) and s[i] in _SPACE:
        newline |= s[i] in "\n\r"
        i += 1
    return i if newline and s.startswith("'", i) else -1


def _plain_body(s: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    while True:
        j = s.find("'", i)
        if j < 0:
            raise _unterminated("quoted string", s)
        out.append(s[i:j])
        if s.startswith("'", j + 1):  # '' is one quote
            out.append("'")
            i = j + 2
            continue
        return "".join(out), j + 1


def _escaped_body(s: str, i: int) -> tuple[str, int]:
    """E'...' (scan.l's <xe> state). Escapes may make bytes (octal, hex), so the text is
    collected as UTF-8 bytes and checked once at the end, as Postgres checks the literal."""
    out = bytearray()
    n = len(s)
    while True:
        if i >= n:
            raise _unterminated("quoted string", s)
        c = s[i]
        if c == "'":
            if s.startswith("'", i + 1):
                out += b"'"
                i += 2
                continue
            break
        if c != "\\":
            j = i
            while j < n and s[j] not in "'\\":
                j += 1
            out += s[i:j].encode("utf-8", "surrogatepass")
            i = j
            continue
        if i + 1 >= n:
            raise _unterminated("quoted string", s)
        e = s[i + 1]
        if e in "uU":
            width = 4 if e == "u" else 8
            digits = s[i + 2 : i + 2 + width]
            if len(digits) != width or any(ch not in _HEX for ch in digits):
                raise PgError(
                    "invalid Unicode escape", INVALID_ESCAPE_SEQUENCE,
                    hint="Unicode escapes must be \\uXXXX or \\UXXXXXXXX.",
                )
            cp = int(digits, 16)
            i += 2 + width
            if 0xD800 <= cp <= 0xDBFF:  # a high surrogate needs its low one next
                low = s[i + 2 : i + 6] if s.startswith("\\u", i) else ""
                if len(low) != 4 or any(ch not in _HEX for ch in low) or not (
                    0xDC00 <= int(low, 16) <= 0xDFFF
                ):
                    raise PgError("invalid Unicode surrogate pair", codes.SYNTAX_ERROR)
                cp = 0x10000 + ((cp - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                i += 6
            elif 0xDC00 <= cp <= 0xDFFF:
                raise PgError("invalid Unicode surrogate pair", codes.SYNTAX_ERROR)
            out += _code_point(cp).encode()
            continue
        if e in "01234567":
            j = i + 1
            while j < n and j < i + 4 and s[j] in "01234567":
                j += 1
            out.append(int(s[i + 1 : j], 8) & 0xFF)  # \777 wraps to one byte, as in C
            i = j
            continue
        if e == "x" and i + 2 < n and s[i + 2] in _HEX:
            j = i + 2
            while j < n and j < i + 4 and s[j] in _HEX:
                j += 1
            out.append(int(s[i + 2 : j], 16))
            i = j
            continue
        out += _SIMPLE_ESCAPES.get(e, e).encode("utf-8", "surrogatepass")
        i += 2
    return _utf8(bytes(out)), i + 1


_SIMPLE_ESCAPES: Final = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _utf8(data: bytes) -> str:
    """The literal's bytes as text: valid UTF-8 without a zero byte (pg_verifymbstr)."""
    zero = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1]
        zero = zero if 0 <= zero < e.start else -1
        if zero < 0:
            raise PgError(
                f'invalid byte sequence for encoding "UTF8": 0x{bad.hex()}',
                CHARACTER_NOT_IN_REPERTOIRE,
            ) from None
    if zero >= 0:
        raise PgError('invalid byte sequence for encoding "UTF8": 0x00',
                      CHARACTER_NOT_IN_REPERTOIRE)
    return text


def _code_point(cp: int) -> str:
    if cp == 0 or cp > 0x10FFFF:
        raise PgError("invalid Unicode escape value", codes.SYNTAX_ERROR)
    return chr(cp)


def _unicode_string(s: str, quote: int) -> tuple[str, int, int]:
    """U&'...' [UESCAPE 'c']: escapes are applied after the UESCAPE clause is known."""
    raw, end = _quoted(s, quote, escapes=False)
    esc = "\\"
    m = re.compile(r"[ \t\n\r\f\v]*UESCAPE[ \t\n\r\f\v]*'([^'])'", re.IGNORECASE).match(s, end)
    if m is None and re.compile(r"[ \t\n\r\f\v]*UESCAPE\b", re.IGNORECASE).match(s, end):
        raise PgError("invalid Unicode escape character", codes.SYNTAX_ERROR)
    if m is not None:
        esc = m.group(1)
        if esc in _HEX or esc in "+'\"" or esc in _SPACE:
            raise PgError("invalid Unicode escape character", codes.SYNTAX_ERROR)
        end = m.end()
    out: list[str] = []
    i, n = 0, len(raw)
    pending_high = 0
    while i < n:
        c = raw[i]
        if c != esc:
            if pending_high:
                raise PgError("invalid Unicode surrogate pair", codes.SYNTAX_ERROR)
            out.append(c)
            i += 1
            continue
        if raw.startswith(esc, i + 1):
            if pending_high:
                raise PgError("invalid Unicode surrogate pair", codes.SYNTAX_ERROR)
            out.append(esc)
            i += 2
            continue
        if raw.startswith("+", i + 1):
            digits, i = raw[i + 2 : i + 8], i + 8
            width = 6
        else:
            digits, i = raw[i + 1 : i + 5], i + 5
            width = 4
        if len(digits) != width or any(ch not in _HEX for ch in digits):
            raise PgError(
                "invalid Unicode escape", codes.SYNTAX_ERROR,
                hint="Unicode escapes must be \\XXXX or \\+XXXXXX.",
            )
        cp = int(digits, 16)
        if pending_high:
            if not 0xDC00 <= cp <= 0xDFFF:
                raise PgError("invalid Unicode surrogate pair", codes.SYNTAX_ERROR)
            out.append(chr(0x10000 + ((pending_high - 0xD800) << 10) + (cp - 0xDC00)))
            pending_high = 0
        elif 0xD800 <= cp <= 0xDBFF:
            pending_high = cp
        elif 0xDC00 <= cp <= 0xDFFF:
            raise PgError("invalid Unicode surrogate pair", codes.SYNTAX_ERROR)
        else:
            out.append(_code_point(cp))
    if pending_high:
        raise PgError("invalid Unicode surrogate pair", codes.SYNTAX_ERROR)
    return "".join(out), OID_UNKNOWN, end


def _bits(text: str, hexadecimal: bool) -> str:
    """bit_in's reading of B'...' and X'...': the digits as a string of 0 and 1."""
    if hexadecimal:
        out = []
        for ch in text:
            if ch not in _HEX:
                raise PgError(f'"{ch}" is not a valid hexadecimal digit',
                              INVALID_TEXT_REPRESENTATION)
            out.append(format(int(ch, 16), "04b"))
        return "".join(out)
    for ch in text:
        if ch not in "01":
            raise PgError(f'"{ch}" is not a valid binary digit', INVALID_TEXT_REPRESENTATION)
    return text


def _syntax(text: str) -> PgError:
    return PgError(f"not a constant: {text[:80]!r}", codes.SYNTAX_ERROR)


def _unterminated(what: str, text: str) -> PgError:
    return PgError(f"unterminated {what}: {text[:80]!r}", codes.SYNTAX_ERROR)


# -- what the engine does with a value ---------------------------------------------------------


def negate(bv: BindValue) -> BindValue:
    """``-$n``: the normalizer lifts a literal without its sign. Postgres folds ``-`` into a
    numeric constant (``doNegate``), retyping it (``-2147483648`` is int4); it has no unary
    minus for a string, so that is refused rather than guessed."""
    v = bv.value
    if v is None:
        return bv
    if isinstance(v, int):
        return _number(str(-v), str(-v))
    if isinstance(v, Decimal):
        if bv.oversize_integer:
            return _number(str(-v), str(-v))
        return BindValue(-v, OID_NUMERIC)
    raise PgError(
        "a minus sign before a string constant in a sharding column's value is not supported",
        codes.FEATURE_NOT_SUPPORTED,
    )


def vindex_input(bv: BindValue) -> int | str | None:
    """The value as a vindex reads it (docs/vschema.md, "Values"): integers as int, strings
    (and bit strings) as str, numerics as the text Postgres stores for them in a text column
    (an integer vindex then refuses ``'1.5'``: Postgres would round it into an int column,
    and a refusal is better than a row on a guessed shard)."""
    v = bv.value
    if isinstance(v, Decimal):
        return numeric_text(v)
    return v


def numeric_text(d: Decimal) -> str:
    """numeric_out of a finite numeric constant: plain digits, the constant's own scale
    (``1.50`` -> ``1.50``, ``1.5e3`` -> ``1500``, ``1.5e-3`` -> ``0.0015``), no negative
    zero."""
    if d == 0:
        d = abs(d)
    text = format(d, "f")
    return text
