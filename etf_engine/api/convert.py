"""Protobuf messages <-> the engine's model: requests into commands, results into replies.

Requests keep decimal strings as strings: the ledgers parse them with each asset's own decimals
and name the field when one is malformed. Replies format the ledger's exact integers with
``etf_engine.numbers``: quantities with the asset's decimals, money 2 dp, nav_per_share 4 dp,
prices as given, fractions with at least 2 dp; a figure the ledger could not compute (None) is "".
StreamEvents' bodies carry the journal's figures in the same form (``EventBodies``).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping
from functools import cache, lru_cache
from typing import Any, TypeVar, get_args

import msgspec
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from etf_engine import model as M
from etf_engine.errors import EngineError, invalid, quote
from etf_engine.numbers import (
    FRACTION_DP,
    NAV_PER_SHARE_DP,
    RATE_DP,
    format_fraction,
    format_money,
    format_price,
    format_quantity,
    format_scaled,
    round_half_even,
)
from etf_engine.v1 import engine_pb2 as pb

Decimals = Mapping[str, int]
S = TypeVar("S", bound=M.Struct)
R = TypeVar("R", bound=Message)

# -- enumerations: wire value <-> SPEC name ---------------------------------------------------------
SIDE_NAME = {pb.Side.CREATE: M.CREATE, pb.Side.REDEEM: M.REDEEM}
SIDE_VALUE = {name: value for value, name in SIDE_NAME.items()}
STATUS_NAME = {
    pb.OrderStatus.ACCEPTED: M.ACCEPTED,
    pb.OrderStatus.REJECTED: M.REJECTED,
    pb.OrderStatus.SETTLED: M.SETTLED,
    pb.OrderStatus.CANCELLED: M.CANCELLED,
}
STATUS_VALUE = {name: value for value, name in STATUS_NAME.items()}


def enum_name(names: Mapping[int, str], value: int) -> str:
    """SPEC name of an enum value; "" for unspecified and the number's text for one unknown to this
    server, so that the ledger refuses it naming the field instead of a default being guessed."""
    if value == 0:
        return ""
    return names.get(value, str(value))


# == requests -> commands ===========================================================================
# ``command`` builds a command from its request with msgspec.convert(from_attributes=True), which
# reads the request through a ``_View`` under the wire's conventions (engine.proto's header):
# - a field is copied to the command's field of the same name; a repeated one as a list, a message
#   (or a repeated one) converted the same way into the Struct the command's field holds;
# - an enum gives its value's name (the SPEC name; one unknown to this server: the number's text);
# - "not given" takes the command field's default: an `optional` field or a message left absent, an
#   enum's zero value (*_UNSPECIFIED) and an empty string. Where the field has no default, the zero
#   value and the empty string go to the ledger, which refuses them naming the field.
# What these rules cannot say is written by hand in ``FIELDS``: the fields it sets, the rest by the rules.
MAX_BATCH = 1000  # SubmitOrders items per call: keeps a reply of full orders well under the message cap
Hand = Callable[[Any], dict[str, Any]]  # request -> the command fields it sets
FIELDS: dict[type[M.Struct], Hand] = {}


def _fields(command_type: type[M.Struct]) -> Callable[[Hand], Hand]:
    def register(fn: Hand) -> Hand:
        FIELDS[command_type] = fn
        return fn

    return register


def command(command_type: type[S], request: Message, caller: dict[str, Any]) -> S:
    """The command for ``request``; ``caller`` sets the fields that come from who calls (they win)."""
    hand = FIELDS.get(command_type)
    given = {**hand(request), **caller} if hand is not None else caller
    if len(given) == len(command_type.__struct_fields__):  # nothing left to read from the request
        return command_type(**given)
    return msgspec.convert(_view(type(request), command_type)(request, given), command_type, from_attributes=True)


_NO_VALUE = object()  # no wire value is "not given" for a number or a bool


class _View:
    """A request message as msgspec reads it for a Struct type: a property per field of both (the
    rules above), what ``given`` holds winning; an AttributeError leaves a field to its default."""

    __slots__ = ("_message", "_given")

    def __init__(self, message: Message, given: Mapping[str, Any]) -> None:
        self._message = message
        self._given = given

    def __getattr__(self, name: str) -> Any:  # a field only ``given`` sets (principal)
        try:
            return self._given[name]
        except KeyError:
            raise AttributeError(name) from None


@cache
def _view(message_type: type[Message], struct_type: type[M.Struct]) -> type[_View]:
    fields = {f.name: f for f in msgspec.structs.fields(struct_type)}
    readers = {f.name: property(_reader(f, fields[f.name])) for f in message_type.DESCRIPTOR.fields if f.name in fields}
    return type(f"{message_type.__name__}As{struct_type.__name__}", (_View,), {"__slots__": (), **readers})


def _reader(field: FieldDescriptor, target: msgspec.structs.FieldInfo) -> Callable[[_View], Any]:
    read = _read(field, target)
    name = field.name

    def reader(view: _View) -> Any:
        given = view._given
        return given[name] if name in given else read(view._message)

    return reader


def _read(field: FieldDescriptor, target: msgspec.structs.FieldInfo) -> Callable[[Any], Any]:
    name = field.name
    has_default = target.default is not msgspec.NODEFAULT or target.default_factory is not msgspec.NODEFAULT
    if field.message_type is not None:
        nested = _struct_in(target.type)
        if nested is None:  # a wrapper on the wire (WeekendDays): FIELDS unwraps it
            return lambda m: getattr(m, name)
        view = _view(GetMessageClass(field.message_type), nested)
        if field.is_repeated:
            return lambda m: [view(item, _NOTHING) for item in getattr(m, name)]

        def message(m: Message) -> Any:
            if not m.HasField(name):
                raise AttributeError(name)
            return view(getattr(m, name), _NOTHING)

        return message
    if field.is_repeated:
        return lambda m: list(getattr(m, name))
    enum = field.enum_type
    names = {v.number: v.name for v in enum.values} if enum is not None else {}
    empty: Any = 0 if enum is not None else "" if field.type == FieldDescriptor.TYPE_STRING else _NO_VALUE
    presence = field.has_presence

    def scalar(m: Message) -> Any:
        value = getattr(m, name)
        if presence:
            if not m.HasField(name):
                raise AttributeError(name)
        elif value == empty and has_default:
            raise AttributeError(name)
        if enum is None:
            return value
        return names.get(value, str(value)) if value else ""

    return scalar


_NOTHING: Mapping[str, Any] = {}


def _struct_in(annotation: Any) -> Any:
    """The Struct type in a field's type (``list[FundAssetSpec]``, ``PriceTick | None``); else None."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    return next(filter(None, map(_struct_in, get_args(annotation))), None)


def unconverted(message_type: type[Message], struct_type: type[M.Struct], given: Iterable[str] = ()) -> list[str]:
    """What the rules above would get wrong for a request and its command (one without a ``FIELDS``
    entry), found when the server starts: a request field no command field takes (it would be dropped)
    and a command field without a default that neither the request nor ``given`` sets."""
    fields = {f.name: f for f in msgspec.structs.fields(struct_type)}
    problems = [f"{message_type.__name__}.{f.name}: {struct_type.__name__} has no such field"
                for f in message_type.DESCRIPTOR.fields if f.name not in fields]
    wire = message_type.DESCRIPTOR.fields_by_name
    for name, f in fields.items():
        if name in given:
            continue
        if name not in wire:
            if f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT:
                problems.append(f"{struct_type.__name__}.{name}: not in {message_type.__name__}")
        elif wire[name].message_type is not None:
            nested = _struct_in(f.type)
            if nested is None:
                problems.append(f"{struct_type.__name__}.{name}: a message on the wire, no Struct here")
            else:
                problems += unconverted(GetMessageClass(wire[name].message_type), nested)
    return problems


def order_request(
    r: pb.OrderRequest | pb.SubmitOrderRequest | pb.CheckOrderRequest,
) -> M.OrderRequest:
    """Written out: every order passes here (the rules would cost a microsecond more each)."""
    return M.OrderRequest(fund_id=r.fund_id, side=enum_name(SIDE_NAME, r.side), units=r.units,
                          client_order_id=r.client_order_id, payout_wallet_ids=list(r.payout_wallet_ids))


@_fields(M.SubmitOrder)
def _submit_order(r: pb.SubmitOrderRequest) -> dict[str, Any]:
    return {"request": order_request(r)}  # the request's fields are the order's


@_fields(M.SubmitOrders)
def _submit_orders(r: pb.SubmitOrdersRequest) -> dict[str, Any]:
    if len(r.requests) > MAX_BATCH:
        raise invalid("requests", f"{len(r.requests)} items; at most {MAX_BATCH} per call")
    return {"requests": [order_request(item) for item in r.requests]}


@_fields(M.UpdateFund)
def _update_fund(r: pb.UpdateFundRequest) -> dict[str, Any]:
    """custodian_priority comes wrapped (present and empty clears it). An assets entry replaces all of
    that asset's terms: its empty fields go to the ledger, which refuses them, never to a default
    that would silently zero a cap or a buffer; but for staking_fee_rate (SPEC §17), younger than the
    rest: empty is 0, so that a caller written before it updates a fund without a staking fee as before;
    and min_cold_ratio (SPEC §18), where empty means the custodian's policy, in CreateFund as here."""
    return {
        "custodian_priority": list(r.custodian_priority.custodian_ids) if r.HasField("custodian_priority") else None,
        "assets": [M.FundAssetSpec(asset=a.asset, staking_cap=a.staking_cap, liquidity_buffer=a.liquidity_buffer,
                                   unbonding_seconds=a.unbonding_seconds,
                                   seed_quantity_per_unit=a.seed_quantity_per_unit,
                                   staking_fee_rate=a.staking_fee_rate or "0",
                                   min_cold_ratio=a.min_cold_ratio) for a in r.assets] or None,
    }


@_fields(M.RegisterCalendar)
def _register_calendar(r: pb.RegisterCalendarRequest) -> dict[str, Any]:
    return {"weekend_days": list(r.weekend_days.days) if r.HasField("weekend_days") else None}  # comes wrapped


# == results -> replies =============================================================================
def reply(message_type: type[R], value: Any, decimals: Decimals) -> R:
    """The ``message_type`` message for a result (a Struct, a list of them or None)."""
    return _builder(message_type)(value, decimals)  # type: ignore[return-value]


_NOT_THERE = object()
# A reply of an Admin RPC that changes state carries these two (SPEC §20, engine.proto's header): set only
# for a call recorded as a pending instruction (``pending_reply``), never from a result.
FOUR_EYES_FIELDS = ("instruction_id", "pending")


def four_eyes_reply(message_type: type[Message]) -> bool:
    """Whether ``message_type`` is a reply that can say "recorded as a pending instruction"."""
    names = message_type.DESCRIPTOR.fields_by_name
    return all(n in names for n in FOUR_EYES_FIELDS)


def pending_reply(message_type: type[R], instruction: M.Instruction) -> R:
    """The reply of a call recorded as a PENDING instruction instead of acting: that and nothing else."""
    return message_type(instruction_id=instruction.instruction_id, pending=True)


@cache
def _builder(message_type: type[Message]) -> Callable[[Any, Decimals], Message]:
    """How a message is made: by its formatter in ``FORMATTERS`` where figures are formatted; else
    field by field from the result's attributes of the same names (a message field made the same way,
    a repeated one item by item, an enum from its name, None left out), and a message of one field
    from the whole result when it has no attribute of that name (SettleOrderReply.order: the Order).
    The four eyes fields of a reply (``FOUR_EYES_FIELDS``) are left out: a result never sets them."""
    formatter = FORMATTERS.get(message_type.DESCRIPTOR.full_name)
    if formatter is not None:
        return formatter
    skip = FOUR_EYES_FIELDS if four_eyes_reply(message_type) else ()
    fields = [(f.name, _field_builder(f)) for f in message_type.DESCRIPTOR.fields if f.name not in skip]
    whole = len(fields) == 1

    def build(value: Any, decimals: Decimals) -> Message:
        values = {}
        for name, make in fields:
            item = getattr(value, name, _NOT_THERE) if isinstance(value, msgspec.Struct) else _NOT_THERE
            if item is _NOT_THERE:
                if not whole:
                    raise TypeError(f"{type(value).__name__} has no {name} for {message_type.__name__}")
                item = value
            if item is not None:
                values[name] = item if make is None else make(item, decimals)
        return message_type(**values)

    return build


def _field_builder(field: FieldDescriptor) -> Callable[[Any, Decimals], Any] | None:
    if field.message_type is None:
        return None  # copied (an enum by its name)
    make = FIELD_FORMATTERS.get(field.message_type.full_name) or _builder(GetMessageClass(field.message_type))
    if field.is_repeated:
        return lambda items, decimals: [make(item, decimals) for item in items]
    return make


def _text(value: int | None, fmt: Callable[[int], str]) -> str:
    return "" if value is None else fmt(value)


# Replies repeat the same figures (every order of a basket's lifetime carries the same lines), and
# formatting one costs more than looking it up: about a third of an order's reply time before this.
_format_quantity = lru_cache(maxsize=65_536)(format_quantity)
_format_money = lru_cache(maxsize=65_536)(format_money)  # an order's fee and cash amount, the same way


def _quantity(value: int, asset: str, decimals: Decimals) -> str:
    return _format_quantity(value, decimals[asset])


def format_rate(value: int) -> str:
    """A fee rate (1e-6 units) as a decimal with at least 2 fraction digits: "0.0025", "0.18", "0.00"."""
    return format_scaled(value, RATE_DP, min_dp=2)


def nav_per_share_text(value: int | None) -> str:
    return "" if value is None else format_scaled(value, NAV_PER_SHARE_DP)


def ratio_text(num: int, den: int) -> str:
    """num/den as a 4 dp half-even decimal; "" when den is 0 (nothing committed)."""
    if den == 0:
        return ""
    return format_scaled(round_half_even(num * 10**FRACTION_DP, den), FRACTION_DP)


# The ledgers hand out the same Basket object until the basket changes (a tick, a settlement), and
# every order decided meanwhile carries it: convert it once. Keyed by identity, holding the object
# so that its id cannot be reused; an asset's decimals never change, so an entry never goes stale.
_BASKETS: dict[int, tuple[M.Basket, pb.Basket]] = {}
_BASKETS_MAX = 4096


def basket(b: M.Basket, decimals: Decimals) -> pb.Basket:
    """The reply message for ``b``; shared between calls, so never modified after it is made."""
    hit = _BASKETS.get(id(b))
    if hit is not None and hit[0] is b:
        return hit[1]
    message = _basket(b, decimals)
    if len(_BASKETS) >= _BASKETS_MAX:
        _BASKETS.clear()
    _BASKETS[id(b)] = (b, message)
    return message


def _basket(b: M.Basket, decimals: Decimals) -> pb.Basket:
    return pb.Basket(
        fund_id=b.fund_id,
        creation_unit=b.creation_unit,
        lines=[pb.BasketLine(asset=line.asset, quantity_per_unit=_quantity(line.quantity_per_unit, line.asset,
                                                                           decimals))
               for line in b.lines],
        cash_component=_text(b.cash_component, format_money),
        nav_per_share=nav_per_share_text(b.nav_per_share),
        nav_per_unit=_text(b.nav_per_unit, format_money),
        shares_outstanding=b.shares_outstanding,
        as_of=b.as_of,
        stale=b.stale,
        accrued_fees=format_money(b.accrued_fees),
    )


def order(o: M.Order, decimals: Decimals) -> pb.Order:
    return pb.Order(**order_fields(o, decimals))


def order_fields(o: M.Order, decimals: Decimals) -> dict[str, Any]:
    """The Order message of ``o`` as its constructor's arguments. A message given to a field of another
    is copied into it, a dict is built in place: an order inside a reply costs a third less this way
    (SubmitOrder's and CheckOrder's replies, a page of ListOrders)."""
    # Only what an order holds is handed over: every empty list or default given to the constructor
    # costs it time (an order's reply took 9.6 µs, a third of it on fields a new order leaves empty).
    fields: dict[str, Any] = {
        "order_id": o.order_id,
        "client_order_id": o.client_order_id,
        "participant_id": o.participant_id,
        "fund_id": o.fund_id,
        "side": SIDE_VALUE[o.side],
        "units": o.units,
        "status": STATUS_VALUE[o.status],
        "reject_reason": o.reject_reason,
        "basket": basket(o.basket, decimals),
        "deliverables": lines(o.deliverables, decimals),
        "cash_amount": _text(o.cash_amount, _format_money),
        "fee": _format_money(o.fee),
        "created_at": o.created_at,
        "updated_at": o.updated_at,
        "dealing_date": o.dealing_date,
        "settlement_date": o.settlement_date,
        "priced": o.priced,
        "official_nav_per_share": nav_per_share_text(o.official_nav_per_share),
        "overdue": o.overdue,
        "cancel_reason": o.cancel_reason,
    }
    if o.legs:
        fields["legs"] = [pb.Leg(custodian_id=leg.custodian_id, asset=leg.asset,
                                 quantity=_quantity(leg.quantity, leg.asset, decimals),
                                 destination_address=leg.destination_address) for leg in o.legs]
    if o.payout_wallet_ids:
        fields["payout_wallet_ids"] = o.payout_wallet_ids
    if o.deliveries:
        fields["deliveries"] = [pb.Delivery(asset=d.asset, quantity=_quantity(d.quantity, d.asset, decimals),
                                            tx_hash=d.tx_hash, from_address=d.from_address,
                                            confirmations=d.confirmations, recorded_at=d.recorded_at)
                                for d in o.deliveries]
    if o.payouts:
        fields["payouts"] = [pb.Payout(custodian_id=p.custodian_id, asset=p.asset,
                                       quantity=_quantity(p.quantity, p.asset, decimals), tx_hash=p.tx_hash,
                                       recorded_at=p.recorded_at)
                             for p in o.payouts]
    if o.excess:
        fields["excess"] = lines(o.excess, decimals)
    return fields


@lru_cache(maxsize=65_536)
def _line(asset: str, quantity: int, asset_decimals: int) -> pb.Line:
    """An asset's quantity as a Line; the orders of one basket carry the same ones. Shared: a message handed
    to another message's field is copied into it, so this one is never changed."""
    return pb.Line(asset=asset, quantity=_format_quantity(quantity, asset_decimals))


def nav(n: M.Nav, decimals: Decimals) -> pb.Nav:
    return pb.Nav(
        fund_id=n.fund_id,
        nav=_text(n.nav, format_money),
        nav_per_share=nav_per_share_text(n.nav_per_share),
        shares_outstanding=n.shares_outstanding,
        cash=format_money(n.cash),
        as_of=n.as_of,
        stale=n.stale,
        lines=[pb.NavLine(asset=line.asset, quantity=_quantity(line.quantity, line.asset, decimals),
                          price=_text(line.price, format_price), value=_text(line.value, format_money))
               for line in n.lines],
        accrued_fees=format_money(n.accrued_fees),
    )


def lines(items: Iterable[M.Line], decimals: Decimals) -> list[pb.Line]:
    """The Line messages of ``items``, each shared (``_line``): for a message's field, which copies them."""
    return [_line(x.asset, x.quantity, decimals[x.asset]) for x in items]


def tiers(t: M.HoldingTiers | None, asset: str, decimals: Decimals) -> pb.HoldingTiers | None:
    """A holding's storage tiers (SPEC §18); None (the field left out) where a ledger gave none."""
    if t is None:
        return None
    d = decimals[asset]
    return pb.HoldingTiers(cold=_format_quantity(t.cold, d), warm=_format_quantity(t.warm, d),
                           hot=_format_quantity(t.hot, d), cold_required=_format_quantity(t.cold_required, d),
                           hot_allowance=_format_quantity(t.hot_allowance, d), breach=t.breach, idle=t.idle)


def holdings(h: M.Holdings, decimals: Decimals) -> pb.Holdings:
    def q(value: int, asset: str) -> str:
        return _quantity(value, asset, decimals)

    return pb.Holdings(
        fund_id=h.fund_id,
        holdings=[pb.HoldingRow(custodian_id=r.custodian_id, asset=r.asset, available=q(r.available, r.asset),
                                reserved=q(r.reserved, r.asset), staked=q(r.staked, r.asset),
                                unbonding=q(r.unbonding, r.asset), licensed=r.licensed,
                                tiers=tiers(r.tiers, r.asset, decimals))
                  for r in h.holdings],
        assets=[pb.AssetSummary(asset=a.asset, total=q(a.total, a.asset), committed=q(a.committed, a.asset),
                                liquid=q(a.liquid, a.asset), illiquid=q(a.illiquid, a.asset),
                                illiquid_ratio=ratio_text(a.illiquid, a.committed),
                                liquid_ratio=ratio_text(a.liquid, a.committed),
                                staking_cap=format_fraction(a.staking_cap),
                                liquidity_buffer=format_fraction(a.liquidity_buffer))
                for a in h.assets],
        fee_payable=lines(h.fee_payable, decimals),
    )


def official_nav(n: M.OfficialNav, decimals: Decimals) -> pb.OfficialNav:
    return pb.OfficialNav(
        fund_id=n.fund_id, dealing_date=n.dealing_date, nav=format_money(n.nav),
        nav_per_share=nav_per_share_text(n.nav_per_share), shares_outstanding=n.shares_outstanding,
        cash=format_money(n.cash),
        lines=[pb.OfficialNavLine(asset=line.asset, quantity=_quantity(line.quantity, line.asset, decimals),
                                  price=format_price(line.price), value=format_money(line.value))
               for line in n.lines],
        struck_at=n.struck_at,
        fee=format_money(n.fee), fee_days=n.fee_days, fee_basis=format_money(n.fee_basis),
        accrued_fees=format_money(n.accrued_fees), fee_payable=lines(n.fee_payable, decimals),
        storage_breaches=[pb.StorageBreach(custodian_id=b.custodian_id, asset=b.asset,
                                           cold=_quantity(b.cold, b.asset, decimals),
                                           cold_required=_quantity(b.cold_required, b.asset, decimals))
                          for b in n.storage_breaches],
    )


def pcf(p: M.Pcf, decimals: Decimals) -> pb.Pcf:
    return pb.Pcf(
        fund_id=p.fund_id, dealing_date=p.dealing_date, creation_unit=p.creation_unit,
        lines=[pb.BasketLine(asset=line.asset,
                             quantity_per_unit=_quantity(line.quantity_per_unit, line.asset, decimals))
               for line in p.lines],
        estimated_cash_component=format_money(p.estimated_cash_component), nav_per_unit=format_money(p.nav_per_unit),
        nav_per_share=nav_per_share_text(p.nav_per_share), shares_outstanding=p.shares_outstanding,
        prices=[pb.PcfPrice(asset=line.asset, price=format_price(line.price)) for line in p.prices],
        published_at=p.published_at,
    )


def fee_waiver(w: M.FeeWaiver) -> pb.FeeWaiver:
    return pb.FeeWaiver(rate=format_rate(w.rate), nav_limit=format_money(w.nav_limit), until=w.until)


def fund_summary(t: M.FundTerms, decimals: Decimals) -> pb.FundSummary:
    """A fund's terms as ListFunds shows them: the fee terms in CreateFund's form, and every asset's (its
    min_cold_ratio "" where the custodian's policy applies, as CreateFund takes it)."""
    return pb.FundSummary(
        fund_id=t.fund_id, name=t.name, base_currency=t.base_currency, dealing_status=t.dealing_status,
        management_fee_rate=format_rate(t.management_fee_rate), fee_day_count=t.fee_day_count,
        fee_waiver=fee_waiver(t.fee_waiver) if t.fee_waiver is not None else None, fee_payment=t.fee_payment,
        fee_asset=t.fee_asset, fee_custodian_id=t.fee_custodian_id,
        hold_redemptions_on_break=t.hold_redemptions_on_break,
        assets=[pb.FundAsset(asset=a.asset, staking_cap=format_fraction(a.staking_cap),
                             liquidity_buffer=format_fraction(a.liquidity_buffer),
                             unbonding_seconds=a.unbonding_seconds,
                             seed_quantity_per_unit=_quantity(a.seed_quantity_per_unit, a.asset, decimals),
                             staking_fee_rate=format_rate(a.staking_fee_rate),
                             min_cold_ratio=_text(a.min_cold_ratio, format_fraction))
                for a in sorted(t.assets, key=lambda a: a.asset)],
    )


def break_record(b: M.Break, decimals: Decimals) -> pb.Break:
    """A break (SPEC §19): its quantities (book, statement, difference, adjustment) in the asset's decimals;
    an untiered break's tier unspecified."""
    d = decimals[b.asset]
    return pb.Break(
        break_id=b.break_id, fund_id=b.fund_id, custodian_id=b.custodian_id, asset=b.asset,
        bucket=pb.Bucket.Value.Value(b.bucket), tier=pb.Tier.Value.Value(b.tier) if b.tier else 0, as_of=b.as_of,
        book=_format_quantity(b.book, d), statement=_format_quantity(b.statement, d),
        difference=_format_quantity(b.difference, d),
        classification=pb.BreakClassification.Value.Value(b.classification),
        status=pb.BreakStatus.Value.Value(b.status), opened_at=b.opened_at, reference=b.reference,
        order_ids=b.order_ids, tx_hashes=b.tx_hashes, resolved_at=b.resolved_at,
        resolved_by_reference=b.resolved_by_reference, adjustment=_format_quantity(b.adjustment, d),
        comment=b.comment, proposed_by=b.proposed_by, approved_by=b.approved_by,
    )


# The messages whose figures are formatted (the rest are made field by field: ``reply``).
FORMATTERS: dict[str, Callable[[Any, Decimals], Message]] = {
    message.DESCRIPTOR.full_name: formatter for message, formatter in (
        (pb.Basket, basket), (pb.Order, order), (pb.Nav, nav), (pb.Holdings, holdings),
        (pb.OfficialNav, official_nav), (pb.Pcf, pcf), (pb.FundSummary, fund_summary), (pb.Break, break_record))}
# A message inside another is made from its constructor's arguments where a formatter gives them (order_fields).
FIELD_FORMATTERS: dict[str, Callable[[Any, Decimals], dict[str, Any]]] = {pb.Order.DESCRIPTOR.full_name: order_fields}


# == StreamEvents: an event's JSON with its figures as on the wire ==================================
# The journal keeps figures as integers in the engine's units; a record's body carries each one as
# the replies do, a decimal string: quantities with the asset's decimals (the ``asset`` beside them),
# money 2 dp, prices as given, fractions (caps, buffers) with at least 2 dp, nav_per_share 4 dp, a
# figure not computed (None) "". Counts (units, shares, decimals), times and the rest stay as stored,
# and so does every key: a body is the journaled event but for the form of its figures.
# A quantity is of the ``asset`` beside it, or of the field a (QUANTITY, field) pair names (NavStruck's
# fee_taken is of its fee_asset); a BREAK_QUANTITY is of the asset of the break its ``break_id`` names
# (BreakResolved's adjustment: the stream learns each break's asset from the StatementRecorded that opened
# it, and is told those opened before it started, ``EventBodies.learn_breaks``). Rates (fee rates, 1e-6)
# have at least 2 fraction digits, as fractions.
QUANTITY, MONEY, PRICE, FRACTION, PER_SHARE, RATE = "quantity", "money", "price", "fraction", "per_share", "rate"
BREAK_QUANTITY = "break_quantity"
Figure = str | tuple[str, str]
FIGURES: dict[type[msgspec.Struct], dict[str, Figure]] = {
    M.HoldingAdjusted: {"delta": QUANTITY},
    M.CashAdjusted: {"delta": MONEY},
    M.Staked: {"quantity": QUANTITY},  # and Slashed
    M.RewardRecorded: {"quantity": QUANTITY, "gross": QUANTITY, "staking_fee": QUANTITY, "net": QUANTITY},
    M.Unstaked: {"quantity": QUANTITY},
    M.PriceSet: {"price": PRICE},
    M.FundTerms: {"creation_fee": MONEY, "redemption_fee": MONEY, "seed_cash_per_unit": MONEY,
                  "management_fee_rate": RATE},
    M.FundAssetTerms: {"staking_cap": FRACTION, "liquidity_buffer": FRACTION, "seed_quantity_per_unit": QUANTITY,
                       "staking_fee_rate": RATE, "min_cold_ratio": FRACTION},
    M.FeeWaiver: {"rate": RATE, "nav_limit": MONEY},
    M.Order: {"cash_amount": MONEY, "fee": MONEY, "official_nav_per_share": PER_SHARE},
    M.Basket: {"cash_component": MONEY, "nav_per_share": PER_SHARE, "nav_per_unit": MONEY, "accrued_fees": MONEY},
    M.BasketLine: {"quantity_per_unit": QUANTITY},
    M.Line: {"quantity": QUANTITY},
    M.Leg: {"quantity": QUANTITY},
    M.Delivery: {"quantity": QUANTITY},
    M.Payout: {"quantity": QUANTITY},
    M.OfficialNav: {"nav": MONEY, "cash": MONEY, "nav_per_share": PER_SHARE, "fee": MONEY, "fee_basis": MONEY,
                    "accrued_fees": MONEY},
    M.OfficialLine: {"quantity": QUANTITY, "price": PRICE, "value": MONEY},
    M.Pcf: {"estimated_cash_component": MONEY, "nav_per_unit": MONEY, "nav_per_share": PER_SHARE},
    M.PriceLine: {"price": PRICE},
    M.NavStruck: {"fee_taken": (QUANTITY, "fee_asset")},
    M.FeePaid: {"amount": MONEY, "quantity": QUANTITY},
    M.Swept: {"quantity": QUANTITY},  # SPEC §18
    M.StoragePolicySet: {"min_cold_ratio": FRACTION},
    M.StorageBreach: {"cold": QUANTITY, "cold_required": QUANTITY},
    M.StatementLine: {"quantity": QUANTITY},  # SPEC §19
    M.Break: {"book": QUANTITY, "statement": QUANTITY, "difference": QUANTITY, "adjustment": QUANTITY},
    M.BreakResolved: {"adjustment": (BREAK_QUANTITY, "break_id")},
}
EVENT_TYPES: dict[str, type[M.Event]] = {t.__name__: t for t in get_args(M.AnyEvent)}


class _Shape(msgspec.Struct, frozen=True):
    figures: dict[str, Figure]  # field -> its kind of figure
    nested: dict[str, Any]  # field -> the _Shape of the Struct (or of each item) it holds


@cache
def _shape(struct_type: type[msgspec.Struct]) -> _Shape:
    figures = next((f for t in struct_type.__mro__ if (f := FIGURES.get(t)) is not None), {})
    nested = {f.name: _shape(inner) for f in msgspec.structs.fields(struct_type)
              if (inner := _struct_in(f.type)) is not None}
    return _Shape(figures, nested)


class EventBodies:
    """StreamEvents' bodies, one stream's worth: ``body(stored JSON)`` -> the JSON sent. Decimals come
    from ``decimals`` (the engine's) and from the AssetRegistered records the stream has passed (a
    follower may stream a record before it has applied it)."""

    def __init__(self, decimals: Decimals) -> None:
        self._decimals: ChainMap[str, int] = ChainMap({}, decimals)  # type: ignore[arg-type]
        self._break_assets: dict[str, str] = {}  # break_id -> its asset (BREAK_QUANTITY)

    def learn_breaks(self, assets: Mapping[str, str]) -> None:
        """The assets of breaks opened before the records this stream has passed (break_id -> asset)."""
        self._break_assets.update(assets)

    def unknown_breaks(self, stored: str) -> list[str]:
        """The break a BreakResolved record's body names, if this stream does not know its asset yet."""
        event = msgspec.json.decode(stored)
        break_id = event.get("break_id") if isinstance(event, dict) else None
        return [break_id] if isinstance(break_id, str) and break_id not in self._break_assets else []

    def body(self, stored: str) -> str:
        event = msgspec.json.decode(stored)
        event_type = EVENT_TYPES.get(event.get("type")) if isinstance(event, dict) else None
        if event_type is None:  # not an event this server knows: as stored
            return stored
        if event_type is M.AssetRegistered:
            self._decimals[event["symbol"]] = event["decimals"]
        elif event_type is M.StatementRecorded:
            self._break_assets.update({b["break_id"]: b["asset"] for b in event.get("opened", ())})
        self._convert(event, _shape(event_type))
        return msgspec.json.encode(event).decode()

    def _convert(self, item: dict[str, Any], shape: _Shape) -> None:
        for name, kind in shape.figures.items():
            if name in item:
                kind, asset_field = kind if isinstance(kind, tuple) else (kind, "asset")
                item[name] = self._figure(item[name], kind, item.get(asset_field, ""))
        for name, inner in shape.nested.items():
            value = item.get(name)
            if isinstance(value, dict):
                self._convert(value, inner)
            elif isinstance(value, list):
                for each in value:
                    self._convert(each, inner)

    def _figure(self, value: int | None, kind: str, asset: str) -> str:
        if value is None:
            return ""
        if kind == BREAK_QUANTITY:  # ``asset`` is the break's id
            break_asset = self._break_assets.get(asset)
            if break_asset is None:  # not applied here yet (a follower behind): the client resumes from its seq
                raise EngineError("UNAVAILABLE", f"break {quote(asset)} is not known here yet; resume the stream "
                                                 "in a moment")
            kind, asset = QUANTITY, break_asset
        if kind == QUANTITY:
            try:
                return format_quantity(value, self._decimals[asset])
            except KeyError:  # not applied here yet (a follower behind): the client resumes from its seq
                raise EngineError("UNAVAILABLE", f"asset {quote(asset)} is not known here yet; resume the "
                                                 "stream in a moment") from None
        if kind == MONEY:
            return format_money(value)
        if kind == PRICE:
            return format_price(value)
        if kind == FRACTION:
            return format_fraction(value)
        if kind == RATE:
            return format_rate(value)
        return format_scaled(value, NAV_PER_SHARE_DP)


def checkpoint(c: M.CheckpointRecorded) -> pb.Checkpoint:
    """SPEC §21: a checkpoint record as the wire shows it."""
    return pb.Checkpoint(tree_size=c.tree_size, root=c.root, at=c.at, signature=c.signature, shard=c.shard,
                         public_key=c.public_key)
