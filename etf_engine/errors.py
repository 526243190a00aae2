"""The one error type the ledgers raise; its code maps one-to-one onto a gRPC status code.

Messages are short (SPEC §11): a bad value is quoted with ``quote`` (at most ``QUOTE_CHARS``
characters of it, then ``… (N characters)``) and no message is longer than ``MAX_MESSAGE_BYTES``
in UTF-8. ``EngineError`` enforces both itself, for messages built with a plain ``!r``.
"""

from __future__ import annotations

import ast
import re

INVALID_ARGUMENT = "INVALID_ARGUMENT"
OUT_OF_RANGE = "OUT_OF_RANGE"
NOT_FOUND = "NOT_FOUND"
ALREADY_EXISTS = "ALREADY_EXISTS"
PERMISSION_DENIED = "PERMISSION_DENIED"
FAILED_PRECONDITION = "FAILED_PRECONDITION"

QUOTE_CHARS = 64  # characters of a bad value a message quotes
MAX_MESSAGE_BYTES = 1024  # UTF-8 bytes of a whole message
_CUT = "…"


def quote(value: object) -> str:
    """``repr`` of a value for a message: whole up to QUOTE_CHARS characters, else its first
    QUOTE_CHARS characters followed by ``… (N characters)``."""
    if isinstance(value, str):
        if len(value) <= QUOTE_CHARS:
            return repr(value)
        return f"{value[:QUOTE_CHARS]!r}{_CUT} ({len(value)} characters)"
    text = repr(value)
    if len(text) <= QUOTE_CHARS:
        return text
    return f"{text[:QUOTE_CHARS]}{_CUT} ({len(text)} characters)"


# A Python string literal as repr writes it ('...' or "..." with backslash escapes), unrolled so
# that a multi-megabyte one is scanned in linear time.
_LITERAL = re.compile(r"""'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*\"""", re.DOTALL)


def _requote(match: re.Match[str]) -> str:
    token = match.group()
    if len(token) <= QUOTE_CHARS + 2:
        return token
    text = token[1:-1]
    if "\\" in text:
        try:
            text = ast.literal_eval(token)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    return token if len(text) <= QUOTE_CHARS else quote(text)


def shorten(message: str) -> str:
    """``message`` with every quoted value longer than QUOTE_CHARS cut as ``quote`` cuts it, and
    the whole cut to MAX_MESSAGE_BYTES of UTF-8 (ending in "…"); its start is kept."""
    if len(message) <= QUOTE_CHARS + 2:  # too short to quote a long value: the common case
        return message
    message = _LITERAL.sub(_requote, message)
    if len(message) * 4 <= MAX_MESSAGE_BYTES:
        return message
    data = message.encode("utf-8", "backslashreplace")
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    keep = MAX_MESSAGE_BYTES - len(_CUT.encode())
    return data[:keep].decode("utf-8", "ignore") + _CUT


class EngineError(Exception):
    """A refused request. Raised before anything changes, so a refusal never leaves a trace.

    ``code`` is a gRPC status code name; ``message`` names the field or the reason code
    (for FAILED_PRECONDITION the message starts with the SPEC reason code). The message is
    ``shorten``-ed: a value quoted in it whole is cut, and it never exceeds MAX_MESSAGE_BYTES.
    """

    def __init__(self, code: str, message: str) -> None:
        message = shorten(message)
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EngineError) and (self.code, self.message) == (other.code, other.message)

    def __hash__(self) -> int:
        return hash((self.code, self.message))


def invalid(field: str, why: str) -> EngineError:
    """INVALID_ARGUMENT naming ``field``; quote a value in ``why`` with ``quote``."""
    return EngineError(INVALID_ARGUMENT, f"{field}: {why}")


def out_of_range(field: str, why: str) -> EngineError:
    return EngineError(OUT_OF_RANGE, f"{field}: {why}")


def not_found(what: str, ident: object) -> EngineError:
    return EngineError(NOT_FOUND, f"{what} {quote(ident)} not found")


def precondition(reason: str, detail: str) -> EngineError:
    return EngineError(FAILED_PRECONDITION, f"{reason}: {detail}")


# The invariants both ledgers keep (check_invariants), by the names a broken one is reported under.
INV_NEGATIVE = "no negative bucket"
INV_RESERVED = "reserved = open redemption legs"
INV_CONSERVED = "assets conserved"
INV_SHARES = "shares = created + settled creations - settled redemptions"
INV_CACHES = "cached sums = what they sum"  # the core's running totals; the reference keeps none


class InvariantBroken(AssertionError):
    """A ledger's state breaks one of its invariants: a bug or damage, never a refused request."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"invariant {name!r} broken: {detail}")
        self.name = name
