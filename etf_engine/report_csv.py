"""The CSV of a report (SPEC §21): ``report_csv`` turns any reply of the Reports service into CSV text, one
shape per kind of report, every column derived from the reply's message descriptors (a field added to
the proto appears without code here).

The text: RFC 4180 (``csv``, a header row first, "\\r\\n" after every row, a field quoted when it holds a
comma, a quote or a line break). A cell is the reply's value as the reply has it: decimal strings as
they are (never a float), integers (counts, unix ms) in digits, booleans ``true``/``false``, an enum by
its name (``""`` for its zero value, ``..._UNSPECIFIED``: none), a repeated string or number as its
values joined by one space. One change only, for a spreadsheet's sake: a text beginning with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return that is not a decimal number (a comment, a reason, a
client order id) gets a leading ``'``, so that a spreadsheet shows it instead of running it as a formula
(OWASP's advice on CSV injection); ``-12.5`` stays as it is.

The shapes, each a table an auditor loads as it is (one header, one kind of row per column set):

- **DailyReport** (R1), one figure a row, ``section,item,field,value``: the report's own figures as
  section ``summary`` with ``field`` their path (``official_nav.nav``, ``premium_discount``); each list
  (``official_nav.lines``, ``orders``, ``ratios``, ``storage_breaches``, ``open_breaks``,
  ``overdue_orders``, ...) as its own section, ``item`` the element's place in it (1, 2, ...) and
  ``field`` the element's field path (a list inside an element is indexed in the path:
  ``legs[1].quantity``). Rows are in the reply's order. A pivot on (section, item) x field gives back
  each list as a table.
- **RollForward** (R3), one line of the roll-forward a row: ``fund_id,from,to,item,kind,
  amount,reason,break_id,at``: per item (an asset, ``CASH``, ``SHARES``) its ``opening`` row, a row per
  movement (``contributed``, ``redeemed``, ..., each adjustment its own with its reason and break id),
  then its ``closing`` and ``check`` rows. Summing ``amount`` over an item's opening and movements gives
  its closing; ``check`` is that sum minus closing: 0.
- **HoldingsReport, StakingReport, BreakReport, ParticipantActivity** (R2, R5, R6, R7), one element of a
  list a row: ``section``, then the reply's own fields on every row (``fund_id``, ``as_of``, ``nav``),
  then the union of the lists' element fields (a field of a nested message as ``break_record.status``).
  ``section`` names the list the row comes from: HoldingsReport ``lines``, then ``receivable``,
  ``payable`` and ``fee_payable``; ParticipantActivity ``orders`` and ``rejects``; BreakReport ``breaks``;
  StakingReport ``lines``, each followed by its unbonding lots as ``lines.unbonding_lots`` rows, which
  repeat the line's first field (``asset``) to name their parent. A column a row's list lacks is empty.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from etf_engine.v1 import engine_pb2 as pb

# NAME of `etf-engine report NAME` and of GET /reports/NAME.csv -> the RPC of the Reports service
REPORTS: dict[str, str] = {
    "daily": "DailyReport", "holdings": "HoldingsReport", "roll-forward": "RollForward",
    "staking": "StakingReport", "breaks": "BreakReport", "participant-activity": "ParticipantActivity",
}
REPORTS_SERVICE = pb.DESCRIPTOR.services_by_name["Reports"]

_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def method(name: str) -> MethodDescriptor:
    """The Reports RPC of a report NAME (``daily``, ...); KeyError for any other name."""
    return REPORTS_SERVICE.methods_by_name[REPORTS[name]]


def report_csv(reply: Message) -> str:
    """The CSV text of a report reply (any of the six; another message takes the list shape)."""
    shape = _SHAPES.get(reply.DESCRIPTOR.full_name, _lists)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in shape(reply):
        writer.writerow(row)
    return out.getvalue()


def file_name(name: str, request: Message, reply: Message) -> str:
    """``<name>-<fund>-<date or period>.csv``: the dealing date, else the period (``<from>_<to>``), else the
    time the report is as of (UTC, ``2025-06-16T080000Z``); only letters, digits, ``.``, ``_`` and ``-``."""
    asked = {f.name: v for f, v in request.ListFields()}
    when = asked.get("dealing_date", "")
    if not when and ("from" in asked or "to" in asked):
        when = f"{asked.get('from', '')}_{asked.get('to', '')}"
    if not when and "as_of" in reply.DESCRIPTOR.fields_by_name:
        as_of = {f.name: v for f, v in reply.ListFields()}.get("as_of") or asked.get("as_of", 0)
        when = _utc(as_of) if as_of else "now"
    parts = [name, asked.get("fund_id", ""), when]
    return _SAFE_NAME.sub("_", "-".join(p for p in parts if p)) + ".csv"


def _utc(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    fraction = f".{ms % 1000:03d}" if ms % 1000 else ""
    return moment.strftime("%Y-%m-%dT%H%M%S") + fraction + "Z"


# == cells ========================================================================================
def _text(value: str) -> str:
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _one(field: FieldDescriptor, value: object) -> str:
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert isinstance(value, int)
        if not value:
            return ""
        known = field.enum_type.values_by_number.get(value)
        return known.name if known is not None else str(value)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        return _text(value)
    return str(value)


def _cell(message: Message, field: FieldDescriptor) -> str:
    value = getattr(message, field.name)
    if _repeated(field):
        return " ".join(_one(field, v) for v in value)
    return _one(field, value)


def _repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def _is_list(field: FieldDescriptor) -> bool:
    """A repeated message field: rows (or a section) of their own, never one cell."""
    return _repeated(field) and field.message_type is not None


def _nested(field: FieldDescriptor) -> bool:
    """A singular message field: its fields are flattened into columns ``field.sub``."""
    return not _repeated(field) and field.message_type is not None


# == columns: a message's flattened fields ========================================================
Path = tuple[FieldDescriptor, ...]  # singular message fields, then the field of the cell


def _columns(descriptor: Descriptor, prefix: str = "") -> list[tuple[str, Path]]:
    """Every cell-valued field of ``descriptor``, singular messages flattened (``break_record.status``);
    lists are left out (``_lists_of``)."""
    found: list[tuple[str, Path]] = []
    for field in descriptor.fields:
        if _nested(field):
            found += [(name, (field, *path)) for name, path in _columns(field.message_type, f"{prefix}{field.name}.")]
        elif not _is_list(field):
            found.append((prefix + field.name, (field,)))
    return found


def _lists_of(descriptor: Descriptor, prefix: str = "") -> list[tuple[str, Path]]:
    """Every list of ``descriptor``, reached through singular messages: (its dotted name, its path)."""
    found: list[tuple[str, Path]] = []
    for field in descriptor.fields:
        if _nested(field):
            found += [(name, (field, *path)) for name, path in _lists_of(field.message_type, f"{prefix}{field.name}.")]
        elif _is_list(field):
            found.append((prefix + field.name, (field,)))
    return found


def _value(message: Message, path: Path) -> str:
    for field in path[:-1]:
        message = getattr(message, field.name)
    return _cell(message, path[-1])


def _elements(message: Message, path: Path) -> list[Message]:
    for field in path[:-1]:
        message = getattr(message, field.name)
    return list(getattr(message, path[-1].name))


# == the list shape: HoldingsReport, StakingReport, BreakReport, ParticipantActivity ==============
def _lists(reply: Message) -> Iterator[list[str]]:
    own = _columns(reply.DESCRIPTOR)
    reserved = {"section"} | {name for name, _path in own}
    header = ["section", *(name for name, _path in own)]
    lists = _lists_of(reply.DESCRIPTOR)
    layouts = [_Layout(name, path[-1].message_type, reserved) for name, path in lists]
    for layout in layouts:
        for column in layout.all_columns():
            if column not in header:
                header.append(column)
    yield header
    carried = {"section": ""} | {name: _value(reply, path) for name, path in own}
    if not layouts:
        yield [carried.get(column, "") for column in header]
        return
    for layout, (_name, path) in zip(layouts, lists, strict=True):
        for cells in layout.rows(_elements(reply, path), carried):
            yield [cells.get(column, "") for column in header]


class _Layout:
    """One list of the list shape: its section name, its elements' columns (renamed ``<section>.<field>``
    where they would take a column of the reply's own) and the lists inside its elements."""

    def __init__(self, section: str, descriptor: Descriptor, reserved: set[str]) -> None:
        self.section = section
        self.columns = [(f"{section}.{name}" if name in reserved else name, path)
                        for name, path in _columns(descriptor)]
        self.children = [(path, _Layout(f"{section}.{name}", path[-1].message_type, reserved))
                         for name, path in _lists_of(descriptor)]

    def all_columns(self) -> Iterator[str]:
        yield from (name for name, _path in self.columns)
        for _path, child in self.children:
            yield from child.all_columns()

    def rows(self, elements: list[Message], carried: dict[str, str]) -> Iterator[dict[str, str]]:
        for element in elements:
            cells = carried | {"section": self.section} | {name: _value(element, path) for name, path in self.columns}
            yield cells
            # an element's own lists follow it, each row naming its parent by the parent's first field
            parent = {self.columns[0][0]: cells[self.columns[0][0]]} if self.columns else {}
            for path, child in self.children:
                yield from child.rows(_elements(element, path), carried | parent)


# == the figure-a-row shape: DailyReport ==========================================================
def _figures(reply: Message) -> Iterator[list[str]]:
    yield ["section", "item", "field", "value"]
    yield from _document(reply, "summary", "", "")


def _document(message: Message, section: str, item: str, prefix: str) -> Iterator[list[str]]:
    """``message``'s fields in order as rows; a list of the report itself (no ``item`` yet) is a section
    of its own, a list inside an element is indexed in the field's path."""
    for field in message.DESCRIPTOR.fields:
        name = prefix + field.name
        if _is_list(field):
            for i, element in enumerate(getattr(message, field.name), 1):
                if item:
                    yield from _document(element, section, item, f"{name}[{i}].")
                else:
                    yield from _document(element, name, str(i), "")
        elif _nested(field):
            yield from _document(getattr(message, field.name), section, item, f"{name}.")
        else:
            yield [section, item, name, _cell(message, field)]


# == the roll-forward shape: RollForward ===========================================================
def _balances(reply: Message) -> Iterator[list[str]]:
    """The reply's own fields, then per balance (its first field, the item) one row per figure: each
    movement with its own fields (kind and amount the first two), and the balance's other figures as
    (kind = their name, amount = their value): those declared before its movements first, the rest last."""
    own = _columns(reply.DESCRIPTOR)
    [(_name, balances)] = _lists_of(reply.DESCRIPTOR)
    balance = balances[-1].message_type
    [(_name, movements)] = _lists_of(balance)
    (item_name, item_path), *figures = _columns(balance)
    movement = _columns(movements[-1].message_type)
    before = [(n, p) for n, p in figures if p[0].index < movements[0].index]
    after = [(n, p) for n, p in figures if p[0].index > movements[0].index]
    yield [name for name, _path in own] + [item_name] + [name for name, _path in movement]
    head = [_value(reply, path) for _name, path in own]
    blank = [""] * (len(movement) - 2)
    for element in _elements(reply, balances):
        first = [*head, _value(element, item_path)]
        yield from ([*first, name, _value(element, path), *blank] for name, path in before)
        for m in _elements(element, movements):
            yield [*first, *(_value(m, path) for _name, path in movement)]
        yield from ([*first, name, _value(element, path), *blank] for name, path in after)


_SHAPES: dict[str, Callable[[Message], Iterator[list[str]]]] = {
    pb.DailyReportReply.DESCRIPTOR.full_name: _figures,
    pb.RollForwardReply.DESCRIPTOR.full_name: _balances,
}
