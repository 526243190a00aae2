"""Plain-text output for the terminal: ``table`` (columns sized to their content, figures right-aligned)
and ``figure`` (thousands separators for reading). The demo, ``init`` and ``bench`` print with them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO, indent: str = "  ") -> None:
    """Columns sized to their content; figures (anything that parses as a number) right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def numeric(i: int) -> bool:
        return bool(cells) and all(_is_number(r[i]) for r in cells)

    right = [numeric(i) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return indent + "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right,
                                                                                    strict=True)).rstrip()

    print(line(headers), file=out)
    print(indent + "  ".join("-" * w for w in widths), file=out)
    for row in cells:
        print(line(row), file=out)


def _is_number(text: str) -> bool:
    body = text.replace(",", "").removeprefix("-")
    whole, _, frac = body.partition(".")
    return whole.isdigit() and (frac == "" or frac.isdigit())


def figure(text: str) -> str:
    """'1234567.8900' -> '1,234,567.8900' for reading; wire strings stay exact."""
    if not text:
        return "-"
    sign = "-" if text.startswith("-") else ""
    whole, dot, frac = text.removeprefix("-").partition(".")
    return f"{sign}{int(whole):,}{dot}{frac}"
