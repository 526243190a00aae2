"""``etf-engine apply FILE``: assets, custodians, calendars, participants and funds from a TOML file,
made so on a server: what is missing is created, what the API can change is updated, and a
difference the API cannot apply is named (object and field) before anything is written.

The file holds one array of tables per request, applied in this order (a fund needs its assets,
custodians and calendar first)::

    [[assets]]        RegisterAsset         nothing changes one afterwards
    [[custodians]]    RegisterCustodian     licence_status, licence_expires_at: SetCustodianLicence
    [[calendars]]     RegisterCalendar      holidays: SetHolidays
    [[participants]]  RegisterParticipant   nothing changes one afterwards
    [[funds]]         CreateFund            what UpdateFund takes: UpdateFund

A table's keys are its request's field names (engine.proto) and its values the proto's JSON form:
enums by name (``ACTIVE``), decimals as strings (``"0.30"``; a TOML integer is taken too, a float
never), repeated messages as arrays of tables (``[[funds.assets]]``), ``weekend_days = { days = [5, 6] }``.
``licence_expires_at`` (unix seconds) may also be a TOML date-time or an ISO 8601 string, and an ISO
date a TOML date. The requests are built with ``json_format.ParseDict``: the proto is the one schema.

What the server has is read before the first write. ListParticipants and GetCalendar give
participants and calendars whole; nothing reads assets, custodians or a fund's whole terms (ListFunds,
GetBasket and GetHoldings show a few of them), so those come from the server's journal through
StreamEvents, up to GetLeader's applied_seq: AssetRegistered, CustodianRegistered, LicenceSet,
FundCreated and FundUpdated carry every field their requests set.

Both sides are compared in one form: the file's request with the defaults the server gives an
absent field (``convert.command``, the server's own conversion), figures as the ledgers' exact
integers (``parse_scaled``: "1500" equals "1500.00"), a cut-off as HH:MM:SS, the lists whose order
means nothing sorted. A field left out of the file is therefore its default, and apply sets it back.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TextIO

import grpc
import msgspec
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from etf_engine import calendar as cal
from etf_engine import model as M
from etf_engine.addresses import chain_of
from etf_engine.api import convert
from etf_engine.api.convert import format_rate
from etf_engine.client import EtfClient
from etf_engine.errors import EngineError, quote
from etf_engine.numbers import (
    FRACTION_DP,
    FRACTION_SCALE,
    MONEY_DP,
    RATE_DP,
    format_fraction,
    format_money,
    format_quantity,
    parse_scaled,
)
from etf_engine.v1 import engine_pb2 as pb

UNIX_SECONDS = frozenset({"licence_expires_at"})  # engine.proto's one unix-seconds field of these requests
# Figures: field -> (decimal places, signed). seed_quantity_per_unit takes its asset's decimals.
SCALED = {"creation_fee": (MONEY_DP, False), "redemption_fee": (MONEY_DP, False),
          "seed_cash_per_unit": (MONEY_DP, True), "staking_cap": (FRACTION_DP, False),
          "liquidity_buffer": (FRACTION_DP, False), "management_fee_rate": (RATE_DP, False),
          "staking_fee_rate": (RATE_DP, False)}
_WHOLE = re.compile(r"-?[0-9]+")


class ApplyError(ValueError):
    """A file that cannot be applied as it is; the message names the file and the key."""


@dataclass(frozen=True)
class Kind:
    """One table of the file: its request (``create``, also the model's command), the field naming
    an object, and the RPC that changes what can change afterwards (``update``; "" none)."""

    table: str
    noun: str
    create: str
    key: str
    update: str = ""
    partial: bool = False  # the update sends only what changed (UpdateFund), not every field of it

    @property
    def request(self) -> type[Message]:
        return getattr(pb, f"{self.create}Request")

    @property
    def updatable(self) -> frozenset[str]:
        if not self.update:
            return frozenset()
        return frozenset(f.name for f in getattr(pb, f"{self.update}Request").DESCRIPTOR.fields) - {self.key}


KINDS = (
    Kind("assets", "asset", "RegisterAsset", "symbol"),
    Kind("custodians", "custodian", "RegisterCustodian", "custodian_id", "SetCustodianLicence"),
    Kind("calendars", "calendar", "RegisterCalendar", "calendar_id", "SetHolidays"),
    Kind("participants", "participant", "RegisterParticipant", "participant_id"),
    Kind("funds", "fund", "CreateFund", "fund_id", "UpdateFund", partial=True),
)
BY_TABLE = {k.table: k for k in KINDS}
ENUMS = frozenset(f.name for k in KINDS for f in k.request.DESCRIPTOR.fields if f.enum_type is not None)


@dataclass(frozen=True)
class Entry:
    """One table of the file: where it is, its request as ParseDict built it, and the same as a
    plain record with the server's defaults for what it leaves out."""

    kind: Kind
    at: str  # "funds[0]"
    request: Message
    record: dict[str, Any]

    @property
    def key(self) -> str:
        return getattr(self.request, self.kind.key)

    @property
    def name(self) -> str:
        return f"{self.kind.noun} {self.key}"


# == the file =======================================================================================
def load(path: Path) -> list[Entry]:
    """The file's entries in apply order; ApplyError naming the key for anything malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ApplyError(f"{path}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ApplyError(f"{path}: not TOML: {e}") from None
    for table in data:
        if table not in BY_TABLE:
            raise ApplyError(f"{path}: {table}: not a table apply knows; expected "
                             f"{', '.join(f'[[{k.table}]]' for k in KINDS)}")
    entries = []
    for kind in KINDS:
        items = data.get(kind.table, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ApplyError(f"{path}: {kind.table}: expected an array of tables, [[{kind.table}]]")
        seen: dict[str, str] = {}
        for i, item in enumerate(items):
            at = f"{kind.table}[{i}]"
            try:
                entry = _entry(kind, at, item)
            except ApplyError as e:
                raise ApplyError(f"{path}: {e}") from None
            if entry.key in seen:
                raise ApplyError(f"{path}: {at}.{kind.key}: {quote(entry.key)} is also {seen[entry.key]}")
            seen[entry.key] = at
            entries.append(entry)
    return entries


def _entry(kind: Kind, at: str, item: dict[str, Any]) -> Entry:
    request = kind.request()
    try:
        json_format.ParseDict(_json_form(item, request.DESCRIPTOR, at), request)
    except json_format.ParseError as e:
        raise ApplyError(f"{at}: {e}") from None
    if not getattr(request, kind.key):
        raise ApplyError(f"{at}.{kind.key}: missing; every {kind.noun} needs one")
    try:  # the request as the server reads it: what the file leaves out takes the server's default
        command = convert.command(getattr(M, kind.create), request, {})
    except (EngineError, msgspec.ValidationError) as e:
        raise ApplyError(f"{at}: {e}") from None
    return Entry(kind, at, request, msgspec.to_builtins(command))


def _json_form(table: dict[str, Any], descriptor: Descriptor, at: str) -> dict[str, Any]:
    """A TOML table as ParseDict takes it for ``descriptor``, or ApplyError naming the key."""
    form = {}
    for name, value in table.items():
        where = f"{at}.{name}"
        fd = descriptor.fields_by_name.get(name)
        if fd is None:
            raise ApplyError(f"{where}: {descriptor.name} has no such field; its fields: "
                             f"{', '.join(f.name for f in descriptor.fields)}")
        if fd.is_repeated:
            if not isinstance(value, list):
                raise ApplyError(f"{where}: expected an array")
            form[name] = [_json_value(fd, v, f"{where}[{i}]") for i, v in enumerate(value)]
        else:
            form[name] = _json_value(fd, value, where)
    return form


def _json_value(fd: FieldDescriptor, value: Any, where: str) -> Any:
    if fd.message_type is not None:
        if not isinstance(value, dict):
            raise ApplyError(f"{where}: expected a table")
        return _json_form(value, fd.message_type, where)
    if fd.name in UNIX_SECONDS:
        return unix_seconds(value, where)
    if isinstance(value, float):
        raise ApplyError(f"{where}: {value!r} is a float; write an exact decimal as a string, e.g. \"0.30\"")
    if isinstance(value, datetime | time):
        raise ApplyError(f"{where}: a date-time is not a value of this field")
    if fd.type == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise ApplyError(f"{where}: {quote(value)} is not true or false")
        return value
    if isinstance(value, bool):
        raise ApplyError(f"{where}: {value!r} is a boolean, not a value of this field")
    if fd.enum_type is not None:
        names = [v.name for v in fd.enum_type.values if v.number]
        if value not in names:
            raise ApplyError(f"{where}: {quote(value)} is not one of {', '.join(names)}")
        return value
    if fd.type == FieldDescriptor.TYPE_STRING:
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, int):
            return str(value)
        if not isinstance(value, str):
            raise ApplyError(f"{where}: expected a string")
        return value
    if not (isinstance(value, int) or isinstance(value, str) and _WHOLE.fullmatch(value)):
        raise ApplyError(f"{where}: {quote(value)} is not a whole number")
    return value  # ParseDict checks its range


def unix_seconds(value: Any, where: str) -> int:
    """Unix seconds from an integer, a TOML date-time or date, or an ISO 8601 string; a time
    without an offset is UTC."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.strip().isdigit():
            return int(value)
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ApplyError(f"{where}: {quote(value)} is neither unix seconds nor an ISO 8601 date-time") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time(), UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())
    raise ApplyError(f"{where}: {quote(value)} is neither unix seconds nor an ISO 8601 date-time")


# == what the server has ============================================================================
@dataclass
class Current:
    """The server's objects as plain records (the create request's field names), by table and key."""

    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k.table: {} for k in KINDS})

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        return self.records[table].get(key)

    @property
    def decimals(self) -> dict[str, int]:
        return {symbol: r["decimals"] for symbol, r in self.records["assets"].items()}


def _with_defaults(struct_type: type[msgspec.Struct], body: dict[str, Any]) -> dict[str, Any]:
    """A journaled event's JSON (which leaves out fields at their defaults) with those defaults."""
    for f in msgspec.structs.fields(struct_type):
        if f.name not in body and f.default is not msgspec.NODEFAULT:
            body[f.name] = f.default
    return body


JOURNALED = frozenset({"AssetRegistered", "CustodianRegistered", "LicenceSet", "FundCreated", "FundUpdated"})


def read(client: EtfClient, entries: Iterable[Entry]) -> Current:
    """What the server has of the kinds in the file (grpc.RpcError when it cannot be read)."""
    current = Current()
    last = client.get_leader().applied_seq
    if last:
        # The journal to its last record, then no further: the stream would wait for new ones.
        stream = client.stream_events(0, timeout=60 + last / 2000)
        try:
            for r in stream:
                if r.type in JOURNALED:
                    _journaled(current.records, r.type, json.loads(r.body))
                if r.seq >= last:
                    break
        finally:
            stream.cancel()  # type: ignore[attr-defined]
    for p in client.list_participants():
        current.records["participants"][p.participant_id] = _message_record(p)
    entries = list(entries)
    calendars = {e.key for e in entries if e.kind.table == "calendars"}
    calendars |= {e.record["calendar_id"] for e in entries if e.kind.table == "funds" and e.record["calendar_id"]}
    for calendar_id in sorted(calendars):
        try:
            current.records["calendars"][calendar_id] = _message_record(client.get_calendar(calendar_id))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                raise
    return current


def _journaled(records: dict[str, dict[str, dict[str, Any]]], kind: str, body: dict[str, Any]) -> None:
    """One journaled event (its StreamEvents body) into the records it sets."""
    match kind:
        case "AssetRegistered":
            records["assets"][body["symbol"]] = _with_defaults(M.AssetRegistered, body)
        case "CustodianRegistered":
            records["custodians"][body["custodian_id"]] = body
        case "LicenceSet":
            records["custodians"][body["custodian_id"]].update(licence_status=body["licence_status"],
                                                               licence_expires_at=body["licence_expires_at"])
        case "FundCreated":
            records["funds"][body["terms"]["fund_id"]] = _fund(body["terms"], body.get("shares_outstanding", 0))
        case "FundUpdated":
            fund_id = body["terms"]["fund_id"]
            records["funds"][fund_id] = _fund(body["terms"], records["funds"][fund_id]["initial_shares_outstanding"])


def _fund(terms: dict[str, Any], shares: int) -> dict[str, Any]:
    """A fund's journaled terms as CreateFund's fields: initial_shares_outstanding from FundCreated."""
    record = _with_defaults(M.FundTerms, terms)
    record["assets"] = [_with_defaults(M.FundAssetTerms, a) for a in record["assets"]]
    record["initial_shares_outstanding"] = shares
    return record


def _message_record(message: Message) -> dict[str, Any]:
    return {f.name: list(getattr(message, f.name)) if f.is_repeated else getattr(message, f.name)
            for f in message.DESCRIPTOR.fields}


# == the plan =======================================================================================
@dataclass(frozen=True)
class Change:
    field: str  # "creation_fee", "assets[ETH].staking_cap"
    top: str  # the request field it belongs to: "creation_fee", "assets"
    was: str  # as shown
    now: str
    asset: str = ""  # of a fund's asset terms
    fixed: bool = False  # an asset the fund does not hold, or would no longer: no update makes that so

    def __str__(self) -> str:
        return f"{self.field} {self.was} -> {self.now}"


@dataclass(frozen=True)
class Step:
    entry: Entry
    rpc: str
    request: Message
    changes: tuple[Change, ...] = ()

    def describe(self, done: bool) -> str:
        if not self.changes:
            return f"{'created' if done else 'create'} {self.entry.name} ({self.rpc})"
        return (f"{'updated' if done else 'update'} {self.entry.name} ({self.rpc}): "
                + "; ".join(map(str, self.changes)))


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # differences the API cannot apply, missing references


def plan(entries: list[Entry], current: Current, source: str) -> Plan:
    """The calls that make the server match the file, in dependency order, or the problems that
    stop apply before its first write (an ApplyError for a value the ledgers' parsers refuse)."""
    result = Plan()
    result.problems += _missing_references(entries, current, source)
    if result.problems:
        return result
    decimals = {e.key: e.record["decimals"] for e in entries if e.kind.table == "assets"} | current.decimals
    for entry in entries:
        kind = entry.kind
        try:
            want = canon(kind, entry.record, decimals, f"{entry.at}.")
        except EngineError as e:
            raise ApplyError(f"{source}: {e.message}") from None
        record = current.get(kind.table, entry.key)
        if record is None:
            result.steps.append(Step(entry, kind.create, entry.request))
            continue
        have = canon(kind, record, current.decimals, f"the server's {entry.name}: ")
        changes = _changes(entry, have, want, decimals)
        cannot = [c for c in changes if c.fixed or c.top not in kind.updatable]
        for c in cannot:
            result.problems.append(_cannot(entry, c, source))
        if changes and not cannot:
            result.steps.append(Step(entry, kind.update, _update_request(entry, changes), tuple(changes)))
    return result


def _missing_references(entries: list[Entry], current: Current, source: str) -> list[str]:
    """A fund's custodians, assets and calendar must be on the server or in the file."""
    known = {k.table: {e.key for e in entries if e.kind is k} | set(current.records[k.table]) for k in KINDS}
    problems = []
    for e in entries:
        if e.kind.table != "funds":
            continue
        r = e.record
        if not r["creation_custodian_id"]:
            problems.append(f"{e.name} ({source} {e.at}): creation_custodian_id: missing; name the custodian "
                            "that receives creations")
        refs = [("creation_custodian_id", r["creation_custodian_id"], "custodians"),
                ("calendar_id", r["calendar_id"], "calendars")]
        refs += [(f"custodian_priority[{i}]", c, "custodians") for i, c in enumerate(r["custodian_priority"])]
        refs += [(f"assets[{i}].asset", a["asset"], "assets") for i, a in enumerate(r["assets"])]
        for name, ref, table in refs:
            if ref and ref not in known[table]:
                problems.append(f"{e.name} ({source} {e.at}): {name}: {BY_TABLE[table].noun} {quote(ref)} is "
                                f"neither in {source} nor on the server")
    return problems


def _cannot(entry: Entry, change: Change, source: str) -> str:
    kind = entry.kind
    if change.fixed:
        why = f"{kind.update} cannot {'add an asset to' if change.was == 'absent' else 'remove an asset from'} a fund"
    elif kind.update:
        why = f"{kind.update} cannot change it"
    else:
        why = f"no RPC changes a registered {kind.noun}"
    return (f"{entry.name}: {change.field} is {change.was} on the server and {change.now} in {source} "
            f"({entry.at}); {why}")


# -- one canonical form for the file's records and the server's ---------------------------------
def canon(kind: Kind, record: Mapping[str, Any], decimals: Mapping[str, int], where: str) -> dict[str, Any]:
    """``record`` (the create request's fields: the file's with defaults, or the server's) in the form
    both are compared in; EngineError naming ``where`` + the field for a value the ledgers refuse."""
    return {f.name: _canon_field(f.name, record[f.name], record, decimals, f"{where}{f.name}")
            for f in kind.request.DESCRIPTOR.fields if f.name != kind.key}


def _canon_field(name: str, value: Any, record: Mapping[str, Any], decimals: Mapping[str, int], where: str) -> Any:
    if name in SCALED:
        dp, signed = SCALED[name]
        return _scaled(value, where, dp, signed)
    match name:
        case "seed_quantity_per_unit":
            return _scaled(value, where, decimals[record["asset"]], False)
        case "dealing_cutoff":
            return cal.parse_cutoff(value, where)
        case "holidays":
            return cal.parse_holidays(value, where)
        case "weekend_days":
            return cal.parse_weekend(value, where)
        case "eligible_fund_ids":
            return tuple(sorted(set(value)))  # a set: the ledgers keep it sorted, without repeats
        case "custodian_priority":
            return tuple(value)
        case "chain":
            return chain_of(record["symbol"], value)
        case "fee_waiver":  # (rate, nav_limit, until), or None: no waiver (a waiver until "" is none)
            if not value or not value.get("until"):
                return None
            return (_scaled(value.get("rate", 0), f"{where}.rate", RATE_DP, False),
                    _scaled(value.get("nav_limit", 0), f"{where}.nav_limit", MONEY_DP, False),
                    cal.parse_date(value["until"], f"{where}.until").isoformat())
        case "min_cold_ratio":  # SPEC §18: None (the file's "", the server's none) is the custodian's policy
            if value in ("", None):
                return None
            return value if isinstance(value, int) else parse_scaled(value, where, FRACTION_DP,
                                                                     limit=FRACTION_SCALE)  # in [0, 1]
        case "assets":
            return {a["asset"]: {n: _canon_field(n, a[n], a, decimals, f"{where}[{i}].{n}")
                                 for n in a if n != "asset"} for i, a in enumerate(value)}
    return value


def _scaled(value: int | str, where: str, dp: int, signed: bool) -> int:
    """The exact integer of a figure: the server's journal holds integers, the file decimal text."""
    if isinstance(value, int):
        return value
    return parse_scaled(value, where, dp, signed=signed)


def _show(name: str, value: Any, decimals: Mapping[str, int], asset: str = "") -> str:
    if name in SCALED:
        dp = SCALED[name][0]
        return {MONEY_DP: format_money, RATE_DP: format_rate}.get(dp, format_fraction)(value)
    if name == "fee_waiver":
        if value is None:
            return "none"
        return f"{format_rate(value[0])} on the first {format_money(value[1])} until {value[2]}"
    if name == "seed_quantity_per_unit":
        return format_quantity(value, decimals[asset])
    if name == "min_cold_ratio":
        return "the custodian's" if value is None else format_fraction(value)
    if name in UNIX_SECONDS:
        return f"{value} ({datetime.fromtimestamp(value, UTC).isoformat().replace('+00:00', 'Z')})"
    if isinstance(value, bool):
        return str(value).lower()
    if name in ENUMS:
        return value
    if isinstance(value, tuple):
        return f"[{', '.join(map(str, value))}]"
    if isinstance(value, str):
        return quote(value)
    return str(value)


def _changes(entry: Entry, have: dict[str, Any], want: dict[str, Any], decimals: Mapping[str, int]) -> list[Change]:
    changes = []
    for name, wanted in want.items():
        had = have[name]
        if wanted == had:
            continue
        if name != "assets":
            changes.append(Change(name, name, _show(name, had, decimals), _show(name, wanted, decimals)))
            continue
        for asset in sorted(had.keys() | wanted.keys()):
            if asset not in had or asset not in wanted:
                changes.append(Change(f"assets[{asset}]", name, "present" if asset in had else "absent",
                                      "present" if asset in wanted else "absent", asset, fixed=True))
                continue
            for term, value in wanted[asset].items():
                was = had[asset][term]
                if value != was:
                    changes.append(Change(f"assets[{asset}].{term}", name, _show(term, was, decimals, asset),
                                          _show(term, value, decimals, asset), asset))
    return changes


def _update_request(entry: Entry, changes: list[Change]) -> Message:
    """The update call, built with ParseDict from the file's record: with ``partial`` only the fields
    that changed (and only the changed assets, each with all its terms), else every field."""
    kind, record = entry.kind, entry.record
    request = getattr(pb, f"{kind.update}Request")()
    fields = request.DESCRIPTOR.fields_by_name
    names = {c.top for c in changes} if kind.partial else kind.updatable
    form: dict[str, Any] = {kind.key: entry.key}
    for name in names:
        value = record[name]
        if name == "assets":
            changed = {c.asset for c in changes if c.top == "assets"}
            value = [a for a in value if a["asset"] in changed]
        message = fields[name].message_type
        if name == "fee_waiver" and value is None:
            value = {}  # present with until "": UpdateFund removes the fund's waiver
        if message is not None and not fields[name].is_repeated and isinstance(value, list):
            (only,) = message.fields  # a list whose presence matters, wrapped (CustodianPriority)
            value = {only.name: value}
        form[name] = value
    return json_format.ParseDict(form, request)


# == running it =====================================================================================
def run(path: Path, client: EtfClient, *, target: str, dry_run: bool, out: TextIO, err: TextIO) -> int:
    """apply: 0 done (or nothing to do), 2 a file or a difference that cannot be applied (nothing
    changed), 1 the server could not be read or refused a call."""
    try:
        entries = load(path)
    except ApplyError as e:
        print(f"etf-engine apply: {e}", file=err)
        return 2
    try:
        current = read(client, entries)
    except grpc.RpcError as e:
        code = e.code()  # type: ignore[attr-defined]
        hint = " (apply takes an issuer's token)" if code == grpc.StatusCode.PERMISSION_DENIED else ""
        print(f"etf-engine apply: cannot read {target}: {code.name} {e.details()}{hint}", file=err)  # type: ignore[attr-defined]
        return 1
    try:
        the_plan = plan(entries, current, path.name)
    except ApplyError as e:
        print(f"etf-engine apply: {e}", file=err)
        return 2
    if the_plan.problems:
        for line in the_plan.problems:
            print(f"etf-engine apply: {line}", file=err)
        print(f"etf-engine apply: nothing was changed on {target}", file=err)
        return 2
    steps = the_plan.steps
    if not steps:
        print(f"nothing to do: {target} already has what {path.name} says ({_count(entries)})", file=out)
        return 0
    if dry_run:
        print(f"plan for {target} (dry run: nothing is changed)", file=out)
        for step in steps:
            print(f"  {step.describe(done=False)}", file=out)
        print(f"{len(steps)} change{'s' * (len(steps) != 1)} planned", file=out)
        return 0
    pending = 0
    for i, step in enumerate(steps):
        try:
            reply = _send(client, step.rpc, step.request)
        except grpc.RpcError as e:
            print(f"etf-engine apply: {step.rpc} for {step.entry.name} ({path.name} {step.entry.at}) refused: "
                  f"{e.code().name} {e.details()}", file=err)  # type: ignore[attr-defined]
            print(f"etf-engine apply: {i} of {len(steps)} changes made before it; correct {path.name} and apply "
                  "it again", file=err)
            return 1
        if getattr(reply, "pending", False):  # the server's four_eyes lists the RPC (SPEC §20)
            pending += 1
            print(f"  {step.describe(done=False)}: proposed as instruction {reply.instruction_id}, pending approval "
                  "by another issuer principal", file=out, flush=True)
            continue
        print(f"  {step.describe(done=True)}", file=out, flush=True)
    done = len(steps) - pending
    print(f"applied {done} change{'s' * (done != 1)} to {target}"
          + (f"; {pending} pending approval (four eyes): apply again once approved" if pending else ""), file=out)
    return 0


def _send(client: EtfClient, rpc: str, request: Message) -> Message:
    """An Admin call by name on the client's channel, with its token and timeout: the client's typed
    methods take fields one by one, and apply has the whole request, built by ParseDict."""
    return client._call(getattr(client._admin, rpc), request)  # type: ignore[no-any-return]


def _count(entries: list[Entry]) -> str:
    counts = [(k, sum(e.kind is k for e in entries)) for k in KINDS]
    return ", ".join(f"{n} {k.noun}{'s' * (n != 1)}" for k, n in counts if n) or "an empty file"


# == the example init writes ========================================================================
def example(today: date, participant_id: str) -> str:
    """A commented fund.toml that applies as it is: two assets, two custodians licensed for a year from
    ``today``, a calendar, ``participant_id`` (init's dealer) and a fund with a seed basket."""
    expires = f"{(today + timedelta(days=365)).isoformat()}T00:00:00Z"
    return f"""\
# A first fund for etf-engine, written by `etf-engine init`. Load it into the running server with
#
#     ETF_ENGINE_TOKEN=<an issuer's token> etf-engine apply fund.toml [--dry-run] [--server HOST:PORT]
#
# and again after every edit: apply creates what is missing, changes what the API can change (a
# fund's terms, a custodian's licence, a calendar's holidays) and, changing nothing, names what it
# cannot. Each table is the request of its name in proto/etf_engine/v1/engine.proto in the proto's
# JSON form: field names as keys, enums by name, decimals as strings ("0.30"). A field left out takes
# the request's default (and apply sets it back to that default).

# RegisterAsset: a symbol and its decimal places, fixed once registered.
[[assets]]
symbol = "BTC"
decimals = 8
min_confirmations = 2  # a delivery counts from this many confirmations

[[assets]]
symbol = "ETH"
decimals = 18
min_confirmations = 12

# RegisterCustodian. licence_status (ACTIVE, SUSPENDED, REVOKED) and licence_expires_at (unix seconds
# or an ISO 8601 date-time) change with SetCustodianLicence; nothing else does.
[[custodians]]
custodian_id = "CUST-A"
name = "Harbour Digital Custody Ltd"
licence_number = "BVX101"
licence_status = "ACTIVE"
licence_expires_at = {expires}

[[custodians]]
custodian_id = "CUST-B"
name = "Kowloon Virtual Asset Trust Ltd"
licence_number = "BVX202"
licence_status = "ACTIVE"
licence_expires_at = {expires}

# RegisterCalendar: the dealing days of the funds that name it. holidays (ISO dates) change with
# SetHolidays; weekend_days = {{ days = [6, 7] }} (ISO weekdays, Saturday and Sunday) is the default.
[[calendars]]
calendar_id = "HK"
time_zone = "Asia/Hong_Kong"
holidays = ["{today.year}-12-25", "{today.year + 1}-01-01"]

# RegisterParticipant: who may deal, and how much. etf.toml's dealer principal acts as {participant_id}.
# Nothing changes a registered participant.
[[participants]]
participant_id = "{participant_id}"
name = "First Participating Dealer"
eligible_fund_ids = ["HK-BTCETH"]
max_units_per_order = 10
max_units_per_day = 50

# CreateFund. UpdateFund changes every term but base_currency, creation_unit,
# initial_shares_outstanding and which assets the fund holds.
[[funds]]
fund_id = "HK-BTCETH"
name = "Harbour Bitcoin & Ether ETF"
base_currency = "USD"
creation_unit = 50000  # shares per creation unit
creation_custodian_id = "CUST-A"  # receives the assets of creations
custodian_priority = ["CUST-A", "CUST-B"]  # redemptions are paid from these, in this order
creation_fee = "1500.00"
redemption_fee = "1500.00"
max_price_age_seconds = 60  # an older price is stale: orders are REJECTED with STALE_PRICE
dealing_status = "OPEN"  # SUSPENDED: orders are REJECTED with FUND_SUSPENDED
pricing = "LIVE"  # priced at acceptance; FORWARD: at the official NAV of the dealing day
calendar_id = "HK"
dealing_cutoff = "16:00"  # in the calendar's time zone
# The management fee, accrued at each official NAV (StrikeNav; it needs the calendar). Uncomment to charge one:
# management_fee_rate = "0.0099"  # a year's rate: at most 6 fraction digits, below 0.1
# fee_day_count = "ACT_365"  # or ACT_ACT (1/366 for a day of a leap year)
# fee_payment = "CASH"  # or IN_KIND, taken from fee_asset at fee_custodian_id:
# fee_asset = "BTC"
# fee_custodian_id = "CUST-A"
# fee_waiver = {{ rate = "0.0025", nav_limit = "100000000.00", until = "{today.year + 1}-12-31" }}
# Reconciliation: while an UNEXPLAINED break between a custodian's statement and the book is open on an
# asset, redemptions take none of that asset from that custodian (false, the default: they still may).
# hold_redemptions_on_break = true

# The fund's assets, a table each. While no shares are outstanding a creation unit is the seed
# basket: seed_quantity_per_unit of each asset (and seed_cash_per_unit of cash).
[[funds.assets]]
asset = "BTC"
seed_quantity_per_unit = "5"
# min_cold_ratio = "0.95"  # at least 95% of what each custodian holds in cold storage (SPEC §18);
#                          # absent: the custodian's policy (0.98 until SetStoragePolicy)

[[funds.assets]]
asset = "ETH"
staking_fee_rate = "0.18"  # the staking provider keeps 18% of each reward
staking_cap = "0.30"  # at most 30% of the fund's ETH staked
liquidity_buffer = "0.10"  # at least 10% of it liquid
unbonding_seconds = 604800  # 7 days from Unstake to liquid
seed_quantity_per_unit = "75"

# Orders need prices no older than max_price_age_seconds; for a rehearsal, a price every 10 s:
#     printf 'BTC,USD,97250.00\\nETH,USD,3412.55\\n' | etf-engine prices publish --from - --every 10
"""
