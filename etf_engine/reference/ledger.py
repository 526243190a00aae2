"""The test oracle: SPEC.md and the decisions of ``etf_engine.ledger``, literally, in plain Python.

Every valuation is a ``fractions.Fraction``; rounding happens only where SPEC says, half-even. Speed
is not a goal: the Cython core must agree with this ledger figure for figure.

A command with several faults reports the first in this order (ledger.py leaves it open outside
SubmitOrder): a registration checks its fields in declaration order, then ALREADY_EXISTS for its id;
a command on an existing record looks that record up first (NOT_FOUND), then checks its fields in
declaration order, because a field may need the record (an asset's decimals, a fund's assets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from typing import Any, NamedTuple

import msgspec

from etf_engine import addresses
from etf_engine import calendar as cal_
from etf_engine import model as m
from etf_engine.errors import (
    ALREADY_EXISTS,
    PERMISSION_DENIED,
    EngineError,
    invalid,
    not_found,
    out_of_range,
    precondition,
    quote,
)
from etf_engine.numbers import (
    FRACTION_DP,
    FRACTION_SCALE,
    MAX_CREATION_UNIT,
    MAX_DECIMALS,
    MAX_MONEY,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_SHARES,
    MONEY_DP,
    NAV_PER_SHARE_DP,
    PRICE_DP,
    PRICE_SCALE,
    format_quantity,
    parse_scaled,
    round_half_even,
)

_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SYMBOL = re.compile(r"[A-Z0-9]{2,10}")
_CURRENCY = re.compile(r"[A-Z]{3,10}")
_DEALING_TERMS = ("calendar_id", "dealing_cutoff", "create_settlement_days", "redeem_settlement_days", "pricing",
                  "require_delivery")


# -- small checks and arithmetic ----------------------------------------------------------------
def _match(pattern: re.Pattern[str], value: str, name: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise invalid(name, f"{value!r} does not match {pattern.pattern}")
    return value


def _at_least(value: int, low: int, name: str, high: int | None = None) -> int:
    if value < low:
        raise invalid(name, f"must be at least {low}")
    if high is not None and value > high:
        raise out_of_range(name, f"must be at most {high}")
    return value


def _one_of(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise invalid(name, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _money(text: str, name: str, *, signed: bool = False) -> int:
    return parse_scaled(text, name, MONEY_DP, signed=signed, limit=MAX_MONEY)


def _fraction(text: str, name: str) -> int:
    value = parse_scaled(text, name, FRACTION_DP)
    if value > FRACTION_SCALE:
        raise invalid(name, f"{text!r} is above 1")
    return value


def _tick_price(tick: m.PriceTick, at: str, now: int) -> int:
    """A §7 tick's price, checked with its as-of time; ``at`` is ``ticks[i]`` (PublishPrices, StrikeNav)."""
    price = parse_scaled(tick.price, f"{at}.price", PRICE_DP, limit=MAX_PRICE)
    if price == 0:
        raise invalid(f"{at}.price", "must be positive")
    _at_least(tick.as_of_unix_ms, 0, f"{at}.as_of_unix_ms")
    if tick.as_of_unix_ms > now + m.FUTURE_TOLERANCE_MS:
        raise invalid(f"{at}.as_of_unix_ms", "more than 5 s in the future")
    return price


def _text(value: str, name: str) -> str:
    """A free-text reason or label: a string of at most 256 characters."""
    if not isinstance(value, str) or len(value) > m.MAX_REASON:
        raise invalid(name, f"must be a text of at most {m.MAX_REASON} characters")
    return value


def _positive(text: str, name: str, decimals: int) -> int:
    quantity = parse_scaled(text, name, decimals, limit=MAX_QUANTITY)
    if quantity == 0:
        raise invalid(name, "must be positive")
    return quantity


def _sorted_ids(ids: list[str]) -> tuple[str, ...]:
    return tuple(sorted(set(ids)))


def _bucket(value: int, name: str) -> None:
    if value > MAX_QUANTITY:
        raise out_of_range(name, "a holding would exceed 10^30 smallest units")


def _exists(what: str, ident: str) -> EngineError:
    return EngineError(ALREADY_EXISTS, f"{what} {ident!r} already exists")


def _round(value: Fraction, dp: int) -> int:
    """An exact value in units 10^-dp, half-even."""
    return round_half_even(value.numerator * 10**dp, value.denominator)


def _worth(quantity: int, decimals: int, price: int) -> Fraction:
    """quantity smallest units of an asset at price (1e-8 base currency per whole unit)."""
    return Fraction(quantity, 10**decimals) * Fraction(price, PRICE_SCALE)


def _ratio(value: int) -> Fraction:
    return Fraction(value, FRACTION_SCALE)


# -- state --------------------------------------------------------------------------------------
@dataclass
class Holding:
    """One (fund, custodian, asset). A lot whose release time has passed counts as available."""

    available: int = 0
    reserved: int = 0
    staked: int = 0
    lots: list[tuple[int, int]] = field(default_factory=list)  # (release_at ms, quantity), one per Unstake

    def free(self, now: int) -> int:
        return self.available + sum(q for t, q in self.lots if t <= now)

    def unbonding(self, now: int) -> int:
        return sum(q for t, q in self.lots if t > now)

    def release(self, now: int) -> None:
        self.available += sum(q for t, q in self.lots if t <= now)
        self.lots = [(t, q) for t, q in self.lots if t > now]

    def is_empty(self, now: int) -> bool:
        return self.free(now) == self.reserved == self.staked == self.unbonding(now) == 0


@dataclass
class Fund:
    terms: m.FundTerms
    cash: int  # cents
    shares: int
    holdings: dict[tuple[str, str], Holding] = field(default_factory=dict)  # (custodian, asset)
    order_ids: list[str] = field(default_factory=list)
    navs: dict[str, m.OfficialNav] = field(default_factory=dict)  # dealing_date -> official NAV
    pcfs: dict[str, m.Pcf] = field(default_factory=dict)  # dealing_date -> PCF

    def asset(self, symbol: str) -> m.FundAssetTerms | None:
        return next((a for a in self.terms.assets if a.asset == symbol), None)


class Sums(NamedTuple):
    total: int
    committed: int
    liquid: int
    illiquid: int


class Prices(NamedTuple):
    by_asset: dict[str, int | None]  # None: missing
    stale: bool
    as_of: int


class ReferenceLedger:
    def __init__(self) -> None:
        self.assets: dict[str, int] = {}  # symbol -> decimals
        self.custodians: dict[str, m.CustodianRegistered] = {}
        self.participants: dict[str, m.ParticipantRegistered] = {}
        self.prices: dict[tuple[str, str], tuple[int, int]] = {}  # (asset, currency) -> (price, as_of)
        self.funds: dict[str, Fund] = {}
        self.orders: dict[str, m.Order] = {}
        self.order_keys: dict[tuple[str, str], str] = {}  # (participant, client_order_id) -> order_id
        self.next_order_seq = 1
        self.calendars: dict[str, cal_.Calendar] = {}
        self.asset_rules: dict[str, tuple[int, str]] = {}  # symbol -> (min_confirmations, chain)
        self.wallets: dict[str, m.Wallet] = {}
        self.next_wallet_seq = 1

    # == commands ===============================================================================
    def execute(self, command: Any, now_ms: int) -> tuple[Any, list[m.Event]]:
        handler = self._HANDLERS.get(type(command))
        if handler is None:
            raise invalid("command", f"unknown command {type(command).__name__}")
        return handler(self, command, now_ms)

    def _commit(self, *events: m.Event) -> list[m.Event]:
        for event in events:
            self.apply(event)
        return list(events)

    def _register_asset(self, c: m.RegisterAsset, now: int) -> tuple[None, list[m.Event]]:
        _match(_SYMBOL, c.symbol, "symbol")
        _at_least(c.decimals, 0, "decimals", MAX_DECIMALS)
        _at_least(c.min_confirmations, 0, "min_confirmations", m.MAX_CONFIRMATIONS)
        if c.chain:
            _one_of(c.chain, addresses.CHAINS, "chain")
        if c.symbol in self.assets:
            raise _exists("asset", c.symbol)
        return None, self._commit(m.AssetRegistered(at=now, symbol=c.symbol, decimals=c.decimals,
                                                    min_confirmations=c.min_confirmations,
                                                    chain=addresses.chain_of(c.symbol, c.chain)))

    def _register_custodian(self, c: m.RegisterCustodian, now: int) -> tuple[None, list[m.Event]]:
        _match(_ID, c.custodian_id, "custodian_id")
        _one_of(c.licence_status, m.LICENCE_STATUSES, "licence_status")
        _at_least(c.licence_expires_at, 0, "licence_expires_at")
        if c.custodian_id in self.custodians:
            raise _exists("custodian", c.custodian_id)
        return None, self._commit(m.CustodianRegistered(at=now, **msgspec.structs.asdict(c)))

    def _set_licence(self, c: m.SetCustodianLicence, now: int) -> tuple[None, list[m.Event]]:
        self._custodian(c.custodian_id)
        _one_of(c.licence_status, m.LICENCE_STATUSES, "licence_status")
        _at_least(c.licence_expires_at, 0, "licence_expires_at")
        return None, self._commit(m.LicenceSet(at=now, **msgspec.structs.asdict(c)))

    def _register_participant(self, c: m.RegisterParticipant, now: int) -> tuple[None, list[m.Event]]:
        _match(_ID, c.participant_id, "participant_id")
        for i, fund_id in enumerate(c.eligible_fund_ids):
            _match(_ID, fund_id, f"eligible_fund_ids[{i}]")
        _at_least(c.max_units_per_order, 1, "max_units_per_order")
        _at_least(c.max_units_per_day, 1, "max_units_per_day")
        if c.participant_id in self.participants:
            raise _exists("participant", c.participant_id)
        funds = tuple(sorted(set(c.eligible_fund_ids)))  # a set: order and repeats carry no meaning
        event = m.ParticipantRegistered(
            at=now, participant_id=c.participant_id, name=c.name, eligible_fund_ids=funds,
            max_units_per_order=c.max_units_per_order, max_units_per_day=c.max_units_per_day)
        return None, self._commit(event)

    def _create_fund(self, c: m.CreateFund, now: int) -> tuple[None, list[m.Event]]:
        _match(_ID, c.fund_id, "fund_id")
        terms = {name: self._fund_field(name, getattr(c, name), None) for name in c.__struct_fields__
                 if name not in ("fund_id", "initial_shares_outstanding", *_DEALING_TERMS)}
        shares = _at_least(c.initial_shares_outstanding, 0, "initial_shares_outstanding", MAX_SHARES)
        if c.fund_id in self.funds:
            raise _exists("fund", c.fund_id)
        # the terms of SPEC §13 after the Part I checks (ledger.py)
        terms |= {name: self._fund_field(name, getattr(c, name), None) for name in _DEALING_TERMS}
        fund_terms = self._with_first_date(m.FundTerms(fund_id=c.fund_id, **terms), None, now)
        return None, self._commit(m.FundCreated(at=now, terms=fund_terms, shares_outstanding=shares))

    def _update_fund(self, c: m.UpdateFund, now: int) -> tuple[None, list[m.Event]]:
        fund = self._fund(c.fund_id)
        changes = {name: self._fund_field(name, getattr(c, name), fund) for name in c.__struct_fields__
                   if name != "fund_id" and getattr(c, name) is not None}
        if "assets" in changes:
            merged = {a.asset: a for a in fund.terms.assets} | {a.asset: a for a in changes["assets"]}
            changes["assets"] = tuple(merged[a] for a in sorted(merged))
        terms = self._with_first_date(msgspec.structs.replace(fund.terms, **changes), fund.terms, now)
        return None, self._commit(m.FundUpdated(at=now, terms=terms))

    def _fund_field(self, name: str, value: Any, fund: Fund | None) -> Any:
        """One validated fund field as FundTerms holds it; ``fund`` is None for CreateFund."""
        match name:
            case "base_currency":
                return _match(_CURRENCY, value, name)
            case "creation_unit":
                return _at_least(value, 1, name, MAX_CREATION_UNIT)
            case "creation_custodian_id":
                return self._custodian(value).custodian_id
            case "custodian_priority":
                for i, custodian_id in enumerate(value):
                    self._custodian(custodian_id)
                    if custodian_id in value[:i]:
                        raise invalid(f"{name}[{i}]", f"{custodian_id!r} is repeated")
                return tuple(value)
            case "assets":
                return self._asset_terms(value, fund)
            case "dealing_status":
                return _one_of(value, m.DEALING_STATUSES, name)
            case "max_price_age_seconds":
                return _at_least(value, 1, name)
            case "creation_fee" | "redemption_fee":
                return _money(value, name)
            case "min_liquid_units":
                return _at_least(value, 0, name)
            case "seed_cash_per_unit":
                return _money(value, name, signed=True)
            case "calendar_id":
                return value and self._calendar(value).calendar_id
            case "dealing_cutoff":
                return cal_.parse_cutoff(value, name)
            case "create_settlement_days" | "redeem_settlement_days":
                if type(value) is not int or not 0 <= value <= m.MAX_SETTLEMENT_DAYS:
                    raise invalid(name, f"{value!r} is not 0-{m.MAX_SETTLEMENT_DAYS} dealing days")
                return value
            case "pricing":
                return _one_of(value, m.PRICINGS, name)
            case "require_delivery":
                if type(value) is not bool:
                    raise invalid(name, f"{value!r} is not true or false")
                return value
        return value  # name: free text

    def _with_first_date(self, terms: m.FundTerms, old: m.FundTerms | None, now: int) -> m.FundTerms:
        """FORWARD needs a calendar; first_dealing_date is set when the fund gets a (new) calendar."""
        if terms.pricing == m.FORWARD and not terms.calendar_id:
            raise invalid("pricing", "FORWARD pricing needs a calendar_id")
        if not terms.calendar_id:
            first = ""
        elif old is not None and old.calendar_id == terms.calendar_id:
            first = old.first_dealing_date
        else:
            first = self._dealing_date(terms, now)
        return msgspec.structs.replace(terms, first_dealing_date=first)

    def _asset_terms(self, specs: list[m.FundAssetSpec], fund: Fund | None) -> tuple[m.FundAssetTerms, ...]:
        if fund is None and not specs:
            raise invalid("assets", "a fund needs at least one asset")
        terms: dict[str, m.FundAssetTerms] = {}
        for i, spec in enumerate(specs):
            at = f"assets[{i}]"
            if fund is None and spec.asset not in self.assets:
                raise not_found("asset", spec.asset)
            if fund is not None and fund.asset(spec.asset) is None:
                raise invalid(f"{at}.asset", f"{spec.asset!r} is not an asset of the fund")
            if spec.asset in terms:
                raise invalid(f"{at}.asset", f"{spec.asset!r} is repeated")
            terms[spec.asset] = m.FundAssetTerms(
                asset=spec.asset,
                staking_cap=_fraction(spec.staking_cap, f"{at}.staking_cap"),
                liquidity_buffer=_fraction(spec.liquidity_buffer, f"{at}.liquidity_buffer"),
                unbonding_seconds=_at_least(spec.unbonding_seconds, 0, f"{at}.unbonding_seconds"),
                seed_quantity_per_unit=parse_scaled(spec.seed_quantity_per_unit, f"{at}.seed_quantity_per_unit",
                                                    self.assets[spec.asset], limit=MAX_QUANTITY),
            )
        return tuple(terms[a] for a in sorted(terms))

    # -- instructions (SPEC §6) -----------------------------------------------------------------
    def _instruction(self, c: Any, text: str, name: str, *, signed: bool = False) -> tuple[Fund, Holding, int]:
        """The target of an instruction and its parsed non-zero quantity (or delta)."""
        fund = self._fund(c.fund_id)
        self._custodian(c.custodian_id)
        if fund.asset(c.asset) is None:
            raise invalid("asset", f"{c.asset!r} is not an asset of fund {c.fund_id!r}")
        quantity = parse_scaled(text, name, self.assets[c.asset], signed=signed, limit=MAX_QUANTITY)
        if quantity == 0:
            raise invalid(name, "must not be zero")
        return fund, self._holding(fund, c.custodian_id, c.asset), quantity

    def _adjust_holding(self, c: m.AdjustHolding, now: int) -> tuple[None, list[m.Event]]:
        _, holding, delta = self._instruction(c, c.delta, "delta", signed=True)
        if holding.free(now) + delta < 0:
            raise precondition(m.INSUFFICIENT_LIQUID_BALANCE, f"available {holding.free(now)}, delta {delta}")
        _bucket(holding.free(now) + delta, "delta")
        event = m.HoldingAdjusted(at=now, fund_id=c.fund_id, custodian_id=c.custodian_id, asset=c.asset, delta=delta)
        return None, self._commit(event)

    def _adjust_cash(self, c: m.AdjustCash, now: int) -> tuple[None, list[m.Event]]:
        self._fund(c.fund_id)
        delta = _money(c.delta, "delta", signed=True)
        if delta == 0:
            raise invalid("delta", "must not be zero")
        return None, self._commit(m.CashAdjusted(at=now, fund_id=c.fund_id, delta=delta))

    def _stake(self, c: m.Stake, now: int) -> tuple[None, list[m.Event]]:
        fund, holding, q = self._instruction(c, c.quantity, "quantity")
        if not self._licensed(c.custodian_id, now):
            raise precondition(m.CUSTODIAN_NOT_LICENSED, f"custodian {c.custodian_id!r}")
        if holding.free(now) < q:
            raise precondition(m.INSUFFICIENT_LIQUID_BALANCE, f"available {holding.free(now)} < {q}")
        s = self._sums(fund, c.asset, now)
        qpu = self._quantities_per_unit(fund, now)[c.asset]
        reason = self._ratio_breach(fund, c.asset, qpu, s.illiquid + q, s.liquid - q, s.committed)
        if reason:
            raise precondition(reason, f"staking {q} of {c.asset}")
        _bucket(holding.staked + q, "quantity")
        return None, self._commit(m.Staked(at=now, **self._target(c), quantity=q))

    def _unstake(self, c: m.Unstake, now: int) -> tuple[None, list[m.Event]]:
        fund, holding, q = self._instruction(c, c.quantity, "quantity")
        if holding.staked < q:
            raise precondition(m.INSUFFICIENT_STAKED_BALANCE, f"staked {holding.staked} < {q}")
        _bucket(holding.unbonding(now) + q, "quantity")
        release_at = now + fund.asset(c.asset).unbonding_seconds * 1000
        return None, self._commit(m.Unstaked(at=now, **self._target(c), quantity=q, release_at=release_at))

    def _record_reward(self, c: m.RecordStakingReward, now: int) -> tuple[None, list[m.Event]]:
        _, holding, q = self._instruction(c, c.quantity, "quantity")
        _bucket(holding.free(now) + q, "quantity")
        return None, self._commit(m.RewardRecorded(at=now, **self._target(c), quantity=q))

    def _record_slashing(self, c: m.RecordSlashing, now: int) -> tuple[None, list[m.Event]]:
        _, holding, q = self._instruction(c, c.quantity, "quantity")
        if holding.staked < q:
            raise precondition(m.INSUFFICIENT_STAKED_BALANCE, f"staked {holding.staked} < {q}")
        return None, self._commit(m.Slashed(at=now, **self._target(c), quantity=q))

    @staticmethod
    def _target(c: m.Stake) -> dict[str, str]:
        return {"fund_id": c.fund_id, "custodian_id": c.custodian_id, "asset": c.asset}

    # -- prices (SPEC §7) -----------------------------------------------------------------------
    def _publish_prices(self, c: m.PublishPrices, now: int) -> tuple[m.PublishResult, list[m.Event]]:
        ticks = []
        for i, tick in enumerate(c.ticks):
            at = f"ticks[{i}]"
            if tick.asset not in self.assets:
                raise invalid(f"{at}.asset", f"unknown asset {tick.asset!r}")
            _match(_CURRENCY, tick.currency, f"{at}.currency")
            price = _tick_price(tick, at, now)
            ticks.append(m.PriceSet(at=now, asset=tick.asset, currency=tick.currency, price=price,
                                    as_of=tick.as_of_unix_ms))
        events: list[m.Event] = []
        for tick in ticks:  # in order: a later tick compares against an earlier one of the batch
            current = self.prices.get((tick.asset, tick.currency))
            if current is None or tick.as_of > current[1]:
                events += self._commit(tick)
        return m.PublishResult(applied=len(events), ignored=len(ticks) - len(events)), events

    # -- orders (SPEC §5) -----------------------------------------------------------------------
    def _submit_order(self, c: m.SubmitOrder, now: int) -> tuple[m.Order, list[m.Event]]:
        return self._record(c.participant_id, c.request, now)

    def _submit_orders(self, c: m.SubmitOrders, now: int) -> tuple[list[m.Order], list[m.Event]]:
        earlier: dict[tuple[str, str], m.OrderRequest] = {}
        for i, request in enumerate(c.requests):
            try:
                self._refusal(c.participant_id, request, earlier)
            except EngineError as e:
                raise EngineError(e.code, f"requests[{i}]: {e.message}") from None
            earlier.setdefault((c.participant_id, request.client_order_id), request)
        orders, events = [], []
        for request in c.requests:
            order, new = self._record(c.participant_id, request, now)
            orders.append(order)
            events += new
        return orders, events

    def _record(self, participant_id: str, request: m.OrderRequest, now: int) -> tuple[m.Order, list[m.Event]]:
        original = self._refusal(participant_id, request, {})
        if original is not None:
            return self._with_overdue(original, now), []
        order = self._decide(participant_id, request, now, f"ORD-{self.next_order_seq:08d}")
        events = self._commit(m.OrderRecorded(at=now, order=order))
        return self.orders[order.order_id], events

    def _refusal(self, participant_id: str, r: m.OrderRequest,
                 earlier: dict[tuple[str, str], m.OrderRequest]) -> m.Order | None:
        """Raise what SubmitOrder refuses (ledger.py order); return the original order of a repeat."""
        if r.side not in m.SIDES:
            raise invalid("side", f"{r.side!r} is not one of {', '.join(m.SIDES)}")
        if r.units <= 0:
            raise invalid("units", "must be positive")
        _match(_ID, r.client_order_id, "client_order_id")
        if len(r.payout_wallet_ids) > m.MAX_PAYOUT_WALLETS:
            raise invalid("payout_wallet_ids", f"more than {m.MAX_PAYOUT_WALLETS} ids")
        for i, wallet_id in enumerate(r.payout_wallet_ids):
            _match(_ID, wallet_id, f"payout_wallet_ids[{i}]")
        participant = self.participants.get(participant_id)
        if participant is None:
            raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} is not registered")
        key = (participant_id, r.client_order_id)
        original = self.orders[self.order_keys[key]] if key in self.order_keys else None
        kept = [None if original is None else original.payout_wallet_ids]
        if key in earlier:
            kept.append(self._kept_wallets(earlier[key]))
        for same, ids in zip((original, earlier.get(key)), kept, strict=False):
            if same is not None and ((same.fund_id, same.side, same.units) != (r.fund_id, r.side, r.units)
                                     or ids not in (None, _sorted_ids(r.payout_wallet_ids))):
                raise _exists("order with client_order_id", r.client_order_id)
        if original is not None:
            return original
        fund = self._fund(r.fund_id)
        if r.fund_id not in participant.eligible_fund_ids:
            raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} may not deal in {r.fund_id!r}")
        if r.units * fund.terms.creation_unit > MAX_SHARES:
            raise out_of_range("units", "units x creation_unit exceeds 10^15 shares")
        return None

    def _kept_wallets(self, r: m.OrderRequest) -> tuple[str, ...] | None:
        """The payout wallet ids an order of ``r`` keeps (and is checked for): REDEEM of a fund that
        requires delivery; None otherwise."""
        fund = self.funds.get(r.fund_id)
        if r.side == m.REDEEM and fund is not None and fund.terms.require_delivery:
            return _sorted_ids(r.payout_wallet_ids)
        return None

    def _payout_addresses(self, participant_id: str, fund: Fund, ids: tuple[str, ...]) -> dict[str, str] | None:
        """asset -> address of the payout wallets, or None unless they are one APPROVED wallet of the
        participant for each asset of the fund."""
        found: dict[str, str] = {}
        for wallet_id in ids:
            w = self.wallets.get(wallet_id)
            if (w is None or w.participant_id != participant_id or w.status != m.APPROVED
                    or fund.asset(w.asset) is None or w.asset in found):
                return None
            found[w.asset] = w.address
        return found if len(found) == len(fund.terms.assets) else None

    def _decide(self, participant_id: str, r: m.OrderRequest, now: int, order_id: str) -> m.Order:
        fund = self.funds[r.fund_id]
        basket = self._basket(fund, now)
        wallets = self._kept_wallets(r)
        reason = self._reason(participant_id, fund, r.side, r.units, now, basket, wallets)
        accepted = reason == ""
        fee = fund.terms.creation_fee if r.side == m.CREATE else fund.terms.redemption_fee
        t = fund.terms
        forward = t.pricing == m.FORWARD
        if forward:  # the cash component waits for the official NAV (StrikeNav)
            basket = msgspec.structs.replace(basket, cash_component=None)
        dealing_date = settlement_date = ""
        if t.calendar_id:
            dealing_date = self._dealing_date(t, now)
            if accepted:
                days = t.create_settlement_days if r.side == m.CREATE else t.redeem_settlement_days
                settlement_date = cal_.add_dealing_days(self.calendars[t.calendar_id],
                                                        date.fromisoformat(dealing_date), days).isoformat()
        legs = self._legs(fund, basket, r.units, now) if accepted and r.side == m.REDEEM else ()
        if wallets is not None and accepted:
            to = self._payout_addresses(participant_id, fund, wallets) or {}
            legs = tuple(msgspec.structs.replace(leg, destination_address=to[leg.asset]) for leg in legs)
        return m.Order(
            payout_wallet_ids=wallets,
            dealing_date=dealing_date, settlement_date=settlement_date, priced=not forward,
            order_id=order_id, client_order_id=r.client_order_id, participant_id=participant_id,
            fund_id=r.fund_id, side=r.side, units=r.units,
            status=m.ACCEPTED if accepted else m.REJECTED, reject_reason=reason, basket=basket,
            deliverables=tuple(m.Line(asset=ln.asset, quantity=r.units * ln.quantity_per_unit) for ln in basket.lines),
            cash_amount=None if basket.cash_component is None else r.units * basket.cash_component,
            fee=fee if accepted else 0,
            legs=legs, created_at=now, updated_at=now,
        )

    def _reason(self, participant_id: str, fund: Fund, side: str, units: int, now: int, basket: m.Basket,
                wallets: tuple[str, ...] | None = None) -> str:
        """The reject reason of SPEC §5 (checks in its order, with §14's after check 5), "" when the
        order is accepted. ``wallets`` None: not checked (GetCapacity assumes approved wallets)."""
        terms, participant = fund.terms, self.participants[participant_id]
        if terms.dealing_status != m.OPEN:
            return m.FUND_SUSPENDED
        if units > participant.max_units_per_order:
            return m.ORDER_LIMIT_EXCEEDED
        if units + self._dealt_today(participant_id, fund, now) > participant.max_units_per_day:
            return m.DAILY_LIMIT_EXCEEDED
        if basket.stale:
            return m.STALE_PRICE
        if side == m.CREATE:
            return "" if self._licensed(terms.creation_custodian_id, now) else m.CUSTODIAN_NOT_LICENSED
        if units * terms.creation_unit > fund.shares - self._pending_redemption_shares(fund):
            return m.INSUFFICIENT_SHARES
        if wallets is not None and self._payout_addresses(participant_id, fund, wallets) is None:
            return m.WALLET_NOT_APPROVED
        for line in basket.lines:  # symbol order
            s = self._sums(fund, line.asset, now)
            q = units * line.quantity_per_unit
            if q > s.liquid:
                return m.INSUFFICIENT_LIQUID_BALANCE
            reason = self._ratio_breach(fund, line.asset, line.quantity_per_unit, s.illiquid, s.liquid - q,
                                        s.committed - q)
            if reason:
                return reason
        return ""

    def _ratio_breach(self, fund: Fund, asset: str, qpu: int, illiquid: int, liquid: int, committed: int) -> str:
        """Cap and buffer checks on the figures as they would be after a redemption or a stake."""
        terms = fund.asset(asset)
        if illiquid > _ratio(terms.staking_cap) * committed:
            return m.STAKING_CAP_BREACH
        if liquid < _ratio(terms.liquidity_buffer) * committed or liquid < fund.terms.min_liquid_units * qpu:
            return m.LIQUIDITY_BUFFER_BREACH
        return ""

    def _legs(self, fund: Fund, basket: m.Basket, units: int, now: int) -> tuple[m.Leg, ...]:
        priority = fund.terms.custodian_priority
        ranked = list(priority) + sorted(set(self.custodians) - set(priority))
        ranked = [custodian_id for custodian_id in ranked if self._licensed(custodian_id, now)]
        legs = []
        for line in basket.lines:
            left = units * line.quantity_per_unit
            for custodian_id in ranked:
                take = min(self._holding(fund, custodian_id, line.asset).free(now), left)
                if take > 0:
                    legs.append(m.Leg(custodian_id=custodian_id, asset=line.asset, quantity=take))
                    left -= take
        return tuple(legs)

    def _dealt_today(self, participant_id: str, fund: Fund, now: int) -> int:
        """Units the daily limit counts: per dealing date with a calendar, else per UTC day (an order
        is counted by its own dealing date, or by its UTC day when it has none)."""
        today = self._dealing_date(fund.terms, now) if fund.terms.calendar_id else now // m.DAY_MS
        return sum(o.units for o in self._fund_orders(fund)
                   if o.participant_id == participant_id and o.status in (m.ACCEPTED, m.SETTLED)
                   and (o.dealing_date or o.created_at // m.DAY_MS) == today)

    def _dealing_date(self, terms: m.FundTerms, now: int) -> str:
        calendar = self.calendars[terms.calendar_id]
        return cal_.dealing_date(calendar, cal_.cutoff_seconds(terms.dealing_cutoff), now).isoformat()

    def _pending_redemption_shares(self, fund: Fund) -> int:
        return sum(o.units * o.basket.creation_unit for o in self._fund_orders(fund)
                   if o.side == m.REDEEM and o.status == m.ACCEPTED)

    def _settle_order(self, c: m.SettleOrder, now: int) -> tuple[m.Order, list[m.Event]]:
        order = self._accepted(c.order_id, None)
        if not order.priced:
            raise precondition(m.NOT_PRICED, f"order {order.order_id} waits for the official NAV")
        fund = self.funds[order.fund_id]
        if fund.terms.require_delivery:
            self._check_evidence(order)
        if order.side == m.CREATE:
            custodian_id = fund.terms.creation_custodian_id
            if not self._licensed(custodian_id, now):
                raise precondition(m.CUSTODIAN_NOT_LICENSED, f"creation custodian {custodian_id!r}")
            for line in order.deliverables:
                _bucket(self._holding(fund, custodian_id, line.asset).free(now) + line.quantity, "order_id")
            if fund.shares + order.units * order.basket.creation_unit > MAX_SHARES:
                raise out_of_range("order_id", "shares outstanding would exceed 10^15")
        events = self._commit(m.OrderSettled(at=now, order_id=c.order_id))
        return self.orders[c.order_id], events

    def _check_evidence(self, order: m.Order) -> None:
        """SettleOrder of a fund that requires delivery: every asset delivered, every leg paid."""
        if order.side == m.CREATE:
            confirmed = self._confirmed(order)
            for line in order.deliverables:
                if confirmed.get(line.asset, 0) < line.quantity:
                    raise precondition(m.DELIVERY_INCOMPLETE, f"order {order.order_id}: {line.asset} delivered "
                                       f"{self._qty(line.asset, confirmed.get(line.asset, 0))} of "
                                       f"{self._qty(line.asset, line.quantity)}")
        else:
            for leg in order.legs:
                paid = self._paid(order, leg.custodian_id, leg.asset)
                if paid < leg.quantity:
                    raise precondition(m.PAYOUT_INCOMPLETE, f"order {order.order_id}: {leg.asset} from "
                                       f"{leg.custodian_id} paid {self._qty(leg.asset, paid)} of "
                                       f"{self._qty(leg.asset, leg.quantity)}")

    def _qty(self, asset: str, quantity: int) -> str:
        return format_quantity(quantity, self.assets[asset])

    def _confirmed(self, order: m.Order) -> dict[str, int]:
        """asset -> quantity delivered with at least the asset's min_confirmations."""
        total: dict[str, int] = {}
        for d in order.deliveries:
            if d.confirmations >= self.asset_rules[d.asset][0]:
                total[d.asset] = total.get(d.asset, 0) + d.quantity
        return total

    @staticmethod
    def _paid(order: m.Order, custodian_id: str, asset: str) -> int:
        return sum(p.quantity for p in order.payouts if (p.custodian_id, p.asset) == (custodian_id, asset))

    def _cancel_order(self, c: m.CancelOrder, now: int) -> tuple[m.Order, list[m.Event]]:
        self.get_order(c.order_id, c.participant_id)
        _text(c.reason, "reason")
        self._accepted(c.order_id, c.participant_id)
        events = self._commit(m.OrderCancelled(at=now, order_id=c.order_id, reason=c.reason))
        return self.orders[c.order_id], events

    def _accepted(self, order_id: str, participant_id: str | None) -> m.Order:
        order = self.get_order(order_id, participant_id)
        if order.status != m.ACCEPTED:
            raise precondition(m.ORDER_NOT_ACCEPTED, f"order {order_id!r} is {order.status}")
        return order

    # -- wallets and deliveries (SPEC §14) ------------------------------------------------------
    def _wallet(self, wallet_id: str) -> m.Wallet:
        if wallet_id not in self.wallets:
            raise not_found("wallet", wallet_id)
        return self.wallets[wallet_id]

    def _register_wallet(self, c: m.RegisterWallet, now: int) -> tuple[m.Wallet, list[m.Event]]:
        if c.participant_id not in self.participants:
            raise not_found("participant", c.participant_id)
        if c.asset not in self.assets:
            raise not_found("asset", c.asset)
        addresses.check_address(self.asset_rules[c.asset][1], c.address, "address")
        _text(c.label, "label")
        for w in self.wallets.values():
            same = (w.participant_id, w.asset, w.address) == (c.participant_id, c.asset, c.address)
            if same and w.status != m.REVOKED:
                raise EngineError(ALREADY_EXISTS, f"wallet {w.wallet_id} of {c.participant_id} has this address")
        wallet = m.Wallet(wallet_id=f"WAL-{self.next_wallet_seq:08d}", participant_id=c.participant_id, asset=c.asset,
                          address=c.address, label=c.label, status=m.PENDING, registered_by=c.principal,
                          registered_at=now, updated_at=now)
        events = self._commit(m.WalletRegistered(at=now, wallet=wallet))
        return self.wallets[wallet.wallet_id], events

    def _approve_wallet(self, c: m.ApproveWallet, now: int) -> tuple[m.Wallet, list[m.Event]]:
        w = self._wallet(c.wallet_id)
        if w.status != m.PENDING:
            raise precondition(m.WALLET_NOT_PENDING, f"wallet {w.wallet_id} is {w.status}")
        if c.principal == w.registered_by:
            raise EngineError(PERMISSION_DENIED, f"four eyes: wallet {w.wallet_id} was registered by "
                                                 f"{quote(c.principal)}; another issuer principal approves it")
        events = self._commit(m.WalletApproved(at=now, wallet_id=w.wallet_id, approved_by=c.principal))
        return self.wallets[w.wallet_id], events

    def _revoke_wallet(self, c: m.RevokeWallet, now: int) -> tuple[m.Wallet, list[m.Event]]:
        w = self._wallet(c.wallet_id)
        _text(c.reason, "reason")
        if w.status == m.REVOKED:
            raise precondition(m.WALLET_NOT_APPROVED, f"wallet {w.wallet_id} is already REVOKED")
        events = self._commit(m.WalletRevoked(at=now, wallet_id=w.wallet_id, revoked_by=c.principal, reason=c.reason))
        return self.wallets[w.wallet_id], events

    def _tx_fields(self, order: m.Order, asset: str, quantity: str, tx_hash: str) -> int:
        """The asset (one of the order's), quantity and tx_hash of a transfer; the quantity parsed."""
        if asset not in {line.asset for line in order.deliverables}:
            raise invalid("asset", f"{asset!r} is not an asset of order {order.order_id}")
        q = _positive(quantity, "quantity", self.assets[asset])
        addresses.check_printable(tx_hash, "tx_hash")
        return q

    def _record_delivery(self, c: m.RecordDelivery, now: int) -> tuple[m.Order, list[m.Event]]:
        order = self.get_order(c.order_id)
        quantity = self._tx_fields(order, c.asset, c.quantity, c.tx_hash)
        addresses.check_address(self.asset_rules[c.asset][1], c.from_address, "from_address")
        _at_least(c.confirmations, 0, "confirmations", m.MAX_CONFIRMATIONS)
        if order.status != m.ACCEPTED or order.side != m.CREATE:
            raise precondition(m.ORDER_NOT_ACCEPTED, f"order {order.order_id} is a {order.status} {order.side}")
        known = next((d for d in order.deliveries if d.tx_hash == c.tx_hash), None)
        if known is not None:
            if (known.asset, known.quantity, known.from_address) != (c.asset, quantity, c.from_address):
                raise EngineError(ALREADY_EXISTS, f"tx_hash {quote(c.tx_hash)} is recorded with other figures")
            if known.confirmations == c.confirmations:
                return self._with_overdue(order, now), []
            delivery = msgspec.structs.replace(known, confirmations=c.confirmations)
        else:
            if not any(w.participant_id == order.participant_id and w.asset == c.asset and w.address == c.from_address
                       and w.status == m.APPROVED for w in self.wallets.values()):
                raise precondition(m.WALLET_NOT_APPROVED, f"{quote(c.from_address)} is not an approved {c.asset} "
                                                          f"wallet of {order.participant_id}")
            delivery = m.Delivery(asset=c.asset, quantity=quantity, tx_hash=c.tx_hash, from_address=c.from_address,
                                  confirmations=c.confirmations, recorded_at=now)
        events = self._commit(m.DeliveryRecorded(at=now, order_id=order.order_id, delivery=delivery))
        return self._with_overdue(self.orders[order.order_id], now), events

    def _record_payout(self, c: m.RecordPayout, now: int) -> tuple[m.Order, list[m.Event]]:
        order = self.get_order(c.order_id)
        _match(_ID, c.custodian_id, "custodian_id")
        quantity = self._tx_fields(order, c.asset, c.quantity, c.tx_hash)
        if order.status != m.ACCEPTED or order.side != m.REDEEM:
            raise precondition(m.ORDER_NOT_ACCEPTED, f"order {order.order_id} is a {order.status} {order.side}")
        leg = next((leg for leg in order.legs if (leg.custodian_id, leg.asset) == (c.custodian_id, c.asset)), None)
        if leg is None:
            raise invalid("custodian_id", f"order {order.order_id} has no {c.asset} leg at {quote(c.custodian_id)}")
        known = next((p for p in order.payouts if p.tx_hash == c.tx_hash), None)
        if known is not None:
            if (known.custodian_id, known.asset, known.quantity) != (c.custodian_id, c.asset, quantity):
                raise EngineError(ALREADY_EXISTS, f"tx_hash {quote(c.tx_hash)} is recorded with other figures")
            return self._with_overdue(order, now), []
        paid = self._paid(order, c.custodian_id, c.asset)
        if paid + quantity > leg.quantity:
            raise precondition(m.PAYOUT_EXCEEDS_LEG, f"order {order.order_id}: {c.asset} from {c.custodian_id} would "
                               f"be paid {self._qty(c.asset, paid + quantity)} of {self._qty(c.asset, leg.quantity)}")
        payout = m.Payout(custodian_id=c.custodian_id, asset=c.asset, quantity=quantity, tx_hash=c.tx_hash,
                          recorded_at=now)
        events = self._commit(m.PayoutRecorded(at=now, order_id=order.order_id, payout=payout))
        return self._with_overdue(self.orders[order.order_id], now), events

    def list_wallets(self, participant_id: str = "") -> list[m.Wallet]:
        if participant_id and participant_id not in self.participants:
            raise not_found("participant", participant_id)
        return [w for _, w in sorted(self.wallets.items()) if participant_id in ("", w.participant_id)]

    # -- the dealing day (SPEC §13) -------------------------------------------------------------
    def _calendar(self, calendar_id: str) -> cal_.Calendar:
        if calendar_id not in self.calendars:
            raise not_found("calendar", calendar_id)
        return self.calendars[calendar_id]

    def _register_calendar(self, c: m.RegisterCalendar, now: int) -> tuple[None, list[m.Event]]:
        _match(_ID, c.calendar_id, "calendar_id")
        cal_.zone(c.time_zone)
        holidays = cal_.parse_holidays(c.holidays)
        weekend = cal_.parse_weekend(c.weekend_days)
        if c.calendar_id in self.calendars:
            raise _exists("calendar", c.calendar_id)
        return None, self._commit(m.CalendarRegistered(at=now, calendar_id=c.calendar_id, time_zone=c.time_zone,
                                                       holidays=holidays, weekend_days=weekend))

    def _set_holidays(self, c: m.SetHolidays, now: int) -> tuple[None, list[m.Event]]:
        self._calendar(c.calendar_id)
        holidays = cal_.parse_holidays(c.holidays)
        return None, self._commit(m.HolidaysSet(at=now, calendar_id=c.calendar_id, holidays=holidays))

    def _funds_on(self, calendar_id: str) -> list[Fund]:
        return [f for _, f in sorted(self.funds.items()) if f.terms.calendar_id == calendar_id]

    def _close_day(self, c: m.CloseDealingDay, now: int) -> tuple[None, list[m.Event]]:
        before = self._calendar(c.calendar_id)
        day = cal_.parse_date(c.date, "date")
        _text(c.reason, "reason")
        if not cal_.is_dealing_day(before, day):
            raise precondition(m.NOT_A_DEALING_DAY, f"{c.date} is not a dealing day")
        if day < cal_.local_date(before, now):
            raise precondition(m.NOT_CLOSABLE, f"{c.date} is past")
        funds = self._funds_on(c.calendar_id)
        if any(day.isoformat() in f.navs for f in funds):
            raise precondition(m.NOT_CLOSABLE, f"{c.date} is struck")
        after = before.closing(day, c.reason)
        to_day = cal_.next_dealing_day(after, day)
        moves = []
        for f in funds:
            for o in self._fund_orders(f):
                if o.status != m.ACCEPTED or not o.dealing_date:
                    continue
                dealt, settles = date.fromisoformat(o.dealing_date), date.fromisoformat(o.settlement_date)
                if dealt != day and settles < day:
                    continue
                n = cal_.dealing_days_between(before, dealt, settles)  # the order's own settlement period
                dealt = to_day if dealt == day else dealt
                moves.append(m.OrderDates(order_id=o.order_id, dealing_date=dealt.isoformat(),
                                          settlement_date=cal_.add_dealing_days(after, dealt, n).isoformat()))
        moves.sort(key=lambda move: move.order_id)
        pcfs = tuple(m.PcfMoved(fund_id=f.terms.fund_id, to_date=to_day.isoformat())
                     for f in funds if day.isoformat() in f.pcfs)
        return None, self._commit(m.DealingDayClosed(at=now, calendar_id=c.calendar_id, date=day.isoformat(),
                                                     reason=c.reason, orders=tuple(moves), pcfs=pcfs))

    def _strike(self, c: m.StrikeNav, now: int) -> tuple[m.StrikeResult, list[m.Event]]:
        fund = self._fund(c.fund_id)
        t = fund.terms
        if not t.calendar_id:
            raise invalid("fund_id", f"fund {c.fund_id!r} has no calendar")
        day = cal_.parse_date(c.dealing_date, "dealing_date")
        official: dict[str, int] = {}
        for i, tick in enumerate(c.ticks):
            at = f"ticks[{i}]"
            if fund.asset(tick.asset) is None or tick.asset in official:
                raise invalid(f"{at}.asset", f"{tick.asset!r} is not an asset of the fund, or given twice")
            if tick.currency != t.base_currency:
                raise invalid(f"{at}.currency", f"{tick.currency!r} is not the base currency")
            price = _tick_price(tick, at, now)
            official[tick.asset] = price
        for a in t.assets:
            if a.asset not in official:
                raise invalid("ticks", f"no official price for {a.asset}")
        calendar = self.calendars[t.calendar_id]
        iso = day.isoformat()
        if not cal_.is_dealing_day(calendar, day) or iso < t.first_dealing_date:
            raise precondition(m.NOT_A_DEALING_DAY, f"{iso} is not a dealing day of the fund")
        if iso in fund.navs:
            raise _exists("official NAV for", iso)
        if now < cal_.cutoff_ms(calendar, day, cal_.cutoff_seconds(t.dealing_cutoff)):
            raise precondition(m.BEFORE_CUTOFF, f"the cut-off of {iso} has not passed")
        earlier = date.fromisoformat(t.first_dealing_date)
        while earlier < day:
            if cal_.is_dealing_day(calendar, earlier) and earlier.isoformat() not in fund.navs:
                raise precondition(m.EARLIER_DATE_NOT_STRUCK, f"{earlier.isoformat()} is not struck")
            earlier += timedelta(days=1)
        s, u = fund.shares, t.creation_unit
        totals = {a.asset: self._sums(fund, a.asset, now).total for a in t.assets}
        nav = sum((_worth(q, self.assets[a], official[a]) for a, q in totals.items()), Fraction(fund.cash, 100))
        nps = _round(nav / s, NAV_PER_SHARE_DP) if s else None
        official_nav = m.OfficialNav(
            fund_id=c.fund_id, dealing_date=iso, nav=_round(nav, MONEY_DP), nav_per_share=nps, shares_outstanding=s,
            cash=fund.cash, lines=tuple(m.OfficialLine(asset=a, quantity=q, price=official[a],
                                                       value=_round(_worth(q, self.assets[a], official[a]), MONEY_DP))
                                        for a, q in totals.items()),
            struck_at=now)
        if s:
            qpu = {a: q * u // s for a, q in totals.items()}
            lines_worth = sum(_worth(q, self.assets[a], official[a]) for a, q in qpu.items())
            estimated, per_unit = _round(nav * u / s - lines_worth, MONEY_DP), _round(nav * u / s, MONEY_DP)
        else:
            qpu = {a.asset: a.seed_quantity_per_unit for a in t.assets}
            lines_worth = sum(_worth(q, self.assets[a], official[a]) for a, q in qpu.items())
            estimated, per_unit = t.seed_cash_per_unit, _round(lines_worth + Fraction(t.seed_cash_per_unit, 100),
                                                               MONEY_DP)
        pcf = m.Pcf(
            fund_id=c.fund_id, dealing_date=cal_.next_dealing_day(calendar, day).isoformat(), creation_unit=u,
            lines=tuple(m.BasketLine(asset=a, quantity_per_unit=q) for a, q in qpu.items()),
            estimated_cash_component=estimated, nav_per_unit=per_unit, nav_per_share=nps, shares_outstanding=s,
            prices=tuple(m.PriceLine(asset=a, price=official[a]) for a in totals), published_at=now)
        priced = sum(1 for o in self._fund_orders(fund) if self._unpriced_on(o, iso))
        events = self._commit(m.NavStruck(at=now, nav=official_nav, pcf=pcf))
        return m.StrikeResult(nav=official_nav, pcf=pcf, priced_orders=priced), events

    @staticmethod
    def _unpriced_on(order: m.Order, dealing_date: str) -> bool:
        return order.status == m.ACCEPTED and not order.priced and order.dealing_date == dealing_date

    def get_calendar(self, calendar_id: str) -> m.CalendarInfo:
        c = self._calendar(calendar_id)
        return m.CalendarInfo(calendar_id=c.calendar_id, time_zone=c.time_zone,
                              holidays=sorted(d.isoformat() for d in c.holidays), weekend_days=sorted(c.weekend_days),
                              closed=[m.ClosedDay(date=d.isoformat(), reason=r) for d, r in sorted(c.closed.items())])

    def get_official_nav(self, fund_id: str, dealing_date: str) -> m.OfficialNav:
        fund = self._fund(fund_id)
        iso = cal_.parse_date(dealing_date, "dealing_date").isoformat()
        if iso not in fund.navs:
            raise not_found(f"official NAV of {fund_id} for", iso)
        return fund.navs[iso]

    def list_official_navs(self, fund_id: str, from_date: str = "", to_date: str = "") -> list[m.OfficialNav]:
        fund = self._fund(fund_id)
        low = cal_.parse_date(from_date, "from_date") if from_date else date.min
        high = cal_.parse_date(to_date, "to_date") if to_date else date.max
        return [nav for d, nav in sorted(fund.navs.items()) if low <= date.fromisoformat(d) <= high]

    def get_pcf(self, fund_id: str, dealing_date: str) -> m.Pcf:
        fund = self._fund(fund_id)
        iso = cal_.parse_date(dealing_date, "dealing_date").isoformat()
        if iso not in fund.pcfs:
            raise not_found(f"PCF of {fund_id} for", iso)
        return fund.pcfs[iso]

    # == events =================================================================================
    def apply(self, event: m.Event) -> None:
        self._APPLIERS[type(event)](self, event)

    def _live(self, fund_id: str, custodian_id: str, asset: str, at: int) -> Holding:
        """The holding an event changes, created if new, with the lots matured by ``at`` released."""
        holding = self.funds[fund_id].holdings.setdefault((custodian_id, asset), Holding())
        holding.release(at)
        return holding

    def _on_asset(self, e: m.AssetRegistered) -> None:
        self.assets[e.symbol] = e.decimals
        self.asset_rules[e.symbol] = (e.min_confirmations, addresses.chain_of(e.symbol, e.chain))  # also old records

    def _on_custodian(self, e: m.CustodianRegistered) -> None:
        self.custodians[e.custodian_id] = e

    def _on_licence(self, e: m.LicenceSet) -> None:
        self.custodians[e.custodian_id] = msgspec.structs.replace(
            self.custodians[e.custodian_id], licence_status=e.licence_status,
            licence_expires_at=e.licence_expires_at)

    def _on_participant(self, e: m.ParticipantRegistered) -> None:
        self.participants[e.participant_id] = e

    def _on_fund_created(self, e: m.FundCreated) -> None:
        self.funds[e.terms.fund_id] = Fund(terms=e.terms, cash=0, shares=e.shares_outstanding)

    def _on_fund_updated(self, e: m.FundUpdated) -> None:
        self.funds[e.terms.fund_id].terms = e.terms

    def _on_holding(self, e: m.HoldingAdjusted) -> None:
        self._live(e.fund_id, e.custodian_id, e.asset, e.at).available += e.delta

    def _on_cash(self, e: m.CashAdjusted) -> None:
        self.funds[e.fund_id].cash += e.delta

    def _on_staked(self, e: m.Staked) -> None:
        holding = self._live(e.fund_id, e.custodian_id, e.asset, e.at)
        holding.available -= e.quantity
        holding.staked += e.quantity

    def _on_unstaked(self, e: m.Unstaked) -> None:
        holding = self._live(e.fund_id, e.custodian_id, e.asset, e.at)
        holding.staked -= e.quantity
        holding.lots.append((e.release_at, e.quantity))

    def _on_reward(self, e: m.RewardRecorded) -> None:
        self._live(e.fund_id, e.custodian_id, e.asset, e.at).available += e.quantity

    def _on_slashed(self, e: m.Slashed) -> None:
        self._live(e.fund_id, e.custodian_id, e.asset, e.at).staked -= e.quantity

    def _on_price(self, e: m.PriceSet) -> None:
        self.prices[(e.asset, e.currency)] = (e.price, e.as_of)

    def _on_order(self, e: m.OrderRecorded) -> None:
        order = e.order
        self.orders[order.order_id] = order
        self.order_keys[(order.participant_id, order.client_order_id)] = order.order_id
        self.funds[order.fund_id].order_ids.append(order.order_id)
        self.next_order_seq += 1
        for leg in order.legs:  # only accepted redemptions have legs
            holding = self._live(order.fund_id, leg.custodian_id, leg.asset, e.at)
            holding.available -= leg.quantity
            holding.reserved += leg.quantity

    def _on_settled(self, e: m.OrderSettled) -> None:
        order = self.orders[e.order_id]
        fund = self.funds[order.fund_id]
        shares = order.units * order.basket.creation_unit
        if order.side == m.CREATE:
            for line in order.deliverables:
                holding = self._live(order.fund_id, fund.terms.creation_custodian_id, line.asset, e.at)
                holding.available += line.quantity
            fund.cash += order.cash_amount
            fund.shares += shares
        else:
            for leg in order.legs:
                self._live(order.fund_id, leg.custodian_id, leg.asset, e.at).reserved -= leg.quantity
            fund.cash -= order.cash_amount
            fund.shares -= shares
        self.orders[e.order_id] = msgspec.structs.replace(order, status=m.SETTLED, updated_at=e.at)

    def _on_cancelled(self, e: m.OrderCancelled) -> None:
        order = self.orders[e.order_id]
        for leg in order.legs:
            holding = self._live(order.fund_id, leg.custodian_id, leg.asset, e.at)
            holding.reserved -= leg.quantity
            holding.available += leg.quantity
        self.orders[e.order_id] = msgspec.structs.replace(order, status=m.CANCELLED, updated_at=e.at,
                                                          cancel_reason=e.reason)

    def _on_wallet(self, e: m.WalletRegistered) -> None:
        self.wallets[e.wallet.wallet_id] = e.wallet
        self.next_wallet_seq += 1

    def _on_wallet_approved(self, e: m.WalletApproved) -> None:
        self.wallets[e.wallet_id] = msgspec.structs.replace(self.wallets[e.wallet_id], status=m.APPROVED,
                                                            approved_by=e.approved_by, updated_at=e.at)

    def _on_wallet_revoked(self, e: m.WalletRevoked) -> None:
        self.wallets[e.wallet_id] = msgspec.structs.replace(self.wallets[e.wallet_id], status=m.REVOKED,
                                                            revoked_by=e.revoked_by, revoke_reason=e.reason,
                                                            updated_at=e.at)

    def _on_delivery(self, e: m.DeliveryRecorded) -> None:
        order = self.orders[e.order_id]
        d = e.delivery
        deliveries = [d if old.tx_hash == d.tx_hash else old for old in order.deliveries]
        if d not in deliveries:
            deliveries.append(d)
        order = msgspec.structs.replace(order, deliveries=tuple(deliveries), updated_at=e.at)
        confirmed = self._confirmed(order)
        excess = tuple(m.Line(asset=line.asset, quantity=confirmed[line.asset] - line.quantity)
                       for line in order.deliverables if confirmed.get(line.asset, 0) > line.quantity)
        self.orders[e.order_id] = msgspec.structs.replace(order, excess=excess)

    def _on_payout(self, e: m.PayoutRecorded) -> None:
        order = self.orders[e.order_id]
        self.orders[e.order_id] = msgspec.structs.replace(order, payouts=(*order.payouts, e.payout), updated_at=e.at)

    def _on_calendar(self, e: m.CalendarRegistered) -> None:
        self.calendars[e.calendar_id] = cal_.Calendar(
            e.calendar_id, e.time_zone, frozenset(map(date.fromisoformat, e.holidays)), frozenset(e.weekend_days))

    def _on_holidays(self, e: m.HolidaysSet) -> None:
        c = self.calendars[e.calendar_id]
        self.calendars[e.calendar_id] = c.with_holidays(e.holidays)

    def _on_day_closed(self, e: m.DealingDayClosed) -> None:
        c = self.calendars[e.calendar_id]
        self.calendars[e.calendar_id] = c.closing(date.fromisoformat(e.date), e.reason)
        for move in e.orders:
            self.orders[move.order_id] = msgspec.structs.replace(
                self.orders[move.order_id], dealing_date=move.dealing_date, settlement_date=move.settlement_date,
                updated_at=e.at)
        for move in e.pcfs:
            fund = self.funds[move.fund_id]
            pcf = fund.pcfs.pop(e.date)
            fund.pcfs.setdefault(move.to_date, msgspec.structs.replace(pcf, dealing_date=move.to_date))

    def _on_struck(self, e: m.NavStruck) -> None:
        nav = e.nav
        fund = self.funds[nav.fund_id]
        fund.navs[nav.dealing_date] = nav
        fund.pcfs[e.pcf.dealing_date] = e.pcf
        price = {line.asset: line.price for line in nav.lines}
        exact = sum((_worth(line.quantity, self.assets[line.asset], line.price) for line in nav.lines),
                    Fraction(nav.cash, 100))
        s = nav.shares_outstanding
        for o in self._fund_orders(fund):
            if not self._unpriced_on(o, nav.dealing_date):
                continue
            if s:
                own = sum(_worth(ln.quantity_per_unit, self.assets[ln.asset], price[ln.asset]) for ln in o.basket.lines)
                cash_component = _round(exact * o.basket.creation_unit / s - own, MONEY_DP)
            else:
                cash_component = fund.terms.seed_cash_per_unit
            self.orders[o.order_id] = msgspec.structs.replace(
                o, basket=msgspec.structs.replace(o.basket, cash_component=cash_component),
                cash_amount=o.units * cash_component, priced=True, official_nav_per_share=nav.nav_per_share,
                updated_at=e.at)

    def _on_clock(self, e: m.ClockAdvanced) -> None:
        return None  # the engine's clock, not the ledger's

    # == reads ==================================================================================
    def _fund(self, fund_id: str) -> Fund:
        if fund_id not in self.funds:
            raise not_found("fund", fund_id)
        return self.funds[fund_id]

    def _custodian(self, custodian_id: str) -> m.CustodianRegistered:
        if custodian_id not in self.custodians:
            raise not_found("custodian", custodian_id)
        return self.custodians[custodian_id]

    def _licensed(self, custodian_id: str, now: int) -> bool:
        c = self.custodians[custodian_id]
        return c.licence_status == m.ACTIVE and now < c.licence_expires_at * 1000

    @staticmethod
    def _holding(fund: Fund, custodian_id: str, asset: str) -> Holding:
        """A holding to read (an empty one if the fund never held the asset there)."""
        return fund.holdings.get((custodian_id, asset), Holding())

    def _fund_orders(self, fund: Fund) -> list[m.Order]:
        return [self.orders[order_id] for order_id in fund.order_ids]

    def _sums(self, fund: Fund, asset: str, now: int) -> Sums:
        total = committed = liquid = illiquid = 0
        for (custodian_id, symbol), h in fund.holdings.items():
            if symbol != asset:
                continue
            free, unbonding = h.free(now), h.unbonding(now)
            total += free + h.reserved + h.staked + unbonding
            committed += free + h.staked + unbonding
            liquid += free if self._licensed(custodian_id, now) else 0
            illiquid += h.staked + unbonding
        return Sums(total, committed, liquid, illiquid)

    def _prices(self, fund: Fund, now: int) -> Prices:
        by_asset: dict[str, int | None] = {}
        stale, as_of = False, 0
        for a in fund.terms.assets:
            tick = self.prices.get((a.asset, fund.terms.base_currency))
            by_asset[a.asset] = None if tick is None else tick[0]
            if tick is None or now - tick[1] > fund.terms.max_price_age_seconds * 1000:
                stale = True
            if tick is not None:
                as_of = max(as_of, tick[1])
        return Prices(by_asset, stale, as_of)

    def _nav(self, fund: Fund, now: int, prices: Prices) -> Fraction | None:
        """NAV = sum of total(a) / 10^decimals x price(a) + cash, exact; None when a price is missing."""
        if None in prices.by_asset.values():
            return None
        return sum((_worth(self._sums(fund, a, now).total, self.assets[a], p) for a, p in prices.by_asset.items()),
                   Fraction(fund.cash, 100))

    def _quantities_per_unit(self, fund: Fund, now: int) -> dict[str, int]:
        t, s = fund.terms, fund.shares
        if s == 0:
            return {a.asset: a.seed_quantity_per_unit for a in t.assets}
        return {a.asset: self._sums(fund, a.asset, now).total * t.creation_unit // s for a in t.assets}

    def _basket(self, fund: Fund, now: int) -> m.Basket:
        t, s = fund.terms, fund.shares
        prices = self._prices(fund, now)
        qpu = self._quantities_per_unit(fund, now)
        cash_component = nav_per_share = nav_per_unit = None  # while a price is missing
        priced = None not in prices.by_asset.values()
        if s == 0:  # the seed basket: its cash needs no price; no shares, so no nav_per_share (SPEC §3)
            cash_component = t.seed_cash_per_unit
        if priced:
            lines_worth = sum((_worth(q, self.assets[a], prices.by_asset[a]) for a, q in qpu.items()), Fraction(0))
            if s > 0:
                nav = self._nav(fund, now, prices)
                per_unit = nav * t.creation_unit / s
                cash_component = _round(per_unit - lines_worth, MONEY_DP)
                nav_per_share = _round(nav / s, NAV_PER_SHARE_DP)
            else:
                per_unit = lines_worth + Fraction(t.seed_cash_per_unit, 100)
            nav_per_unit = _round(per_unit, MONEY_DP)
        return m.Basket(
            fund_id=t.fund_id, creation_unit=t.creation_unit,
            lines=[m.BasketLine(asset=a, quantity_per_unit=q) for a, q in qpu.items()],
            cash_component=cash_component, nav_per_share=nav_per_share, nav_per_unit=nav_per_unit,
            shares_outstanding=s, as_of=prices.as_of, stale=prices.stale,
        )

    def get_nav(self, fund_id: str, now_ms: int) -> m.Nav:
        fund = self._fund(fund_id)
        prices = self._prices(fund, now_ms)
        nav = self._nav(fund, now_ms, prices)
        lines = []
        for a, price in prices.by_asset.items():
            total = self._sums(fund, a, now_ms).total
            value = None if price is None else _round(_worth(total, self.assets[a], price), MONEY_DP)
            lines.append(m.NavLine(asset=a, quantity=total, price=price, value=value))
        return m.Nav(
            fund_id=fund_id, nav=None if nav is None else _round(nav, MONEY_DP),
            nav_per_share=None if nav is None or fund.shares == 0 else _round(nav / fund.shares, NAV_PER_SHARE_DP),
            shares_outstanding=fund.shares, cash=fund.cash, as_of=prices.as_of, stale=prices.stale, lines=lines,
        )

    def get_basket(self, fund_id: str, now_ms: int) -> m.Basket:
        return self._basket(self._fund(fund_id), now_ms)

    def get_holdings(self, fund_id: str, now_ms: int) -> m.Holdings:
        fund = self._fund(fund_id)
        rows = [
            m.HoldingRow(custodian_id=c, asset=a, available=h.free(now_ms), reserved=h.reserved, staked=h.staked,
                         unbonding=h.unbonding(now_ms), licensed=self._licensed(c, now_ms))
            for (c, a), h in sorted(fund.holdings.items()) if not h.is_empty(now_ms)
        ]
        assets = [
            m.AssetSummary(asset=a.asset, **self._sums(fund, a.asset, now_ms)._asdict(),
                           staking_cap=a.staking_cap, liquidity_buffer=a.liquidity_buffer)
            for a in fund.terms.assets
        ]
        return m.Holdings(fund_id=fund_id, holdings=rows, assets=assets)

    def check_order(self, participant_id: str, request: m.OrderRequest, now_ms: int) -> m.Order:
        original = self._refusal(participant_id, request, {})
        if original is not None:
            return msgspec.structs.replace(original, order_id="")
        return self._decide(participant_id, request, now_ms, "")

    def get_capacity(self, participant_id: str, fund_id: str, now_ms: int) -> m.Capacity:
        participant = self.participants.get(participant_id)
        if participant is None:
            raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} is not registered")
        fund = self._fund(fund_id)
        if fund_id not in participant.eligible_fund_ids:
            raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} may not deal in {fund_id!r}")
        basket = self._basket(fund, now_ms)
        create, redeem = (self._capacity(participant, fund, side, now_ms, basket) for side in m.SIDES)
        return m.Capacity(fund_id=fund_id, create=create, redeem=redeem)

    def _capacity(self, participant: m.ParticipantRegistered, fund: Fund, side: str, now: int,
                  basket: m.Basket) -> m.CapacitySide:
        def reason(units: int) -> str:
            return self._reason(participant.participant_id, fund, side, units, now, basket)

        # Every check compares a figure that grows with units against a bound, so acceptance is
        # monotone in units and bisection finds the largest accepted n. SubmitOrder refuses
        # n x creation_unit > 10^15, so n stops there too.
        low, high = 0, min(participant.max_units_per_order, MAX_SHARES // fund.terms.creation_unit)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if reason(mid) == "" else (low, mid - 1)
        return m.CapacitySide(units=low, binding_reason=reason(low + 1))

    def get_order(self, order_id: str, participant_id: str | None = None, now_ms: int | None = None) -> m.Order:
        order = self.orders.get(order_id)
        if order is None or (participant_id is not None and order.participant_id != participant_id):
            raise not_found("order", order_id)
        return self._with_overdue(order, now_ms)

    def list_orders(self, fund_id: str = "", status: str = "", participant_id: str | None = None,
                    now_ms: int | None = None) -> list[m.Order]:
        return [self._with_overdue(o, now_ms) for _, o in sorted(self.orders.items())
                if fund_id in ("", o.fund_id) and status in ("", o.status)
                and participant_id in (None, o.participant_id)]

    def _with_overdue(self, order: m.Order, now: int | None) -> m.Order:
        """The order as read at ``now``: overdue when ACCEPTED past the end of its settlement date in its
        fund's calendar (ledger.py)."""
        calendar_id = self.funds[order.fund_id].terms.calendar_id
        if now is None or order.status != m.ACCEPTED or not order.settlement_date or not calendar_id:
            return order
        end = cal_.day_end_ms(self.calendars[calendar_id], date.fromisoformat(order.settlement_date))
        return msgspec.structs.replace(order, overdue=True) if now >= end else order

    def list_prices(self) -> list[tuple[str, str, int, int]]:
        return [(a, cur, p, as_of) for (a, cur), (p, as_of) in sorted(self.prices.items())]

    def list_funds(self) -> list[m.FundTerms]:
        return [f.terms for _, f in sorted(self.funds.items())]

    def list_participants(self) -> list[m.ParticipantRegistered]:
        return [msgspec.structs.replace(p, at=0) for _, p in sorted(self.participants.items())]  # as the core

    def participant_funds(self, participant_id: str) -> tuple[str, ...]:
        if participant_id not in self.participants:
            raise not_found("participant", participant_id)
        return self.participants[participant_id].eligible_fund_ids

    def state(self, now_ms: int) -> dict:
        def rows(fund: Fund) -> list:
            return [[c, a, h.free(now_ms), h.reserved, h.staked,
                     sorted([t, q] for t, q in h.lots if t > now_ms)]
                    for (c, a), h in sorted(fund.holdings.items()) if not h.is_empty(now_ms)]

        return {
            "assets": [[s, d, *self.asset_rules[s]] for s, d in sorted(self.assets.items())],
            "custodians": [[c.custodian_id, c.name, c.licence_number, c.licence_status, c.licence_expires_at]
                           for _, c in sorted(self.custodians.items())],
            "participants": [[p.participant_id, p.name, list(p.eligible_fund_ids), p.max_units_per_order,
                              p.max_units_per_day] for _, p in sorted(self.participants.items())],
            "prices": [[a, cur, p, as_of] for (a, cur), (p, as_of) in sorted(self.prices.items())],
            "funds": [[msgspec.to_builtins(f.terms), f.cash, f.shares, rows(f)] for _, f in sorted(self.funds.items())],
            "orders": [msgspec.to_builtins(o) for _, o in sorted(self.orders.items())],
            "next_order_seq": self.next_order_seq,
            "calendars": [[c.calendar_id, c.time_zone, sorted(d.isoformat() for d in c.holidays),
                           sorted(c.weekend_days), [[d.isoformat(), r] for d, r in sorted(c.closed.items())]]
                          for _, c in sorted(self.calendars.items())],
            "official_navs": [msgspec.to_builtins(n) for _, f in sorted(self.funds.items())
                              for _, n in sorted(f.navs.items())],
            "pcfs": [msgspec.to_builtins(p) for _, f in sorted(self.funds.items()) for _, p in sorted(f.pcfs.items())],
            "wallets": [msgspec.to_builtins(w) for _, w in sorted(self.wallets.items())],
            "next_wallet_seq": self.next_wallet_seq,
        }

    # Exact types: Unstake, RecordStakingReward and RecordSlashing subclass Stake (events likewise).
    _HANDLERS = {
        m.RegisterAsset: _register_asset, m.RegisterCustodian: _register_custodian,
        m.SetCustodianLicence: _set_licence, m.RegisterParticipant: _register_participant,
        m.CreateFund: _create_fund, m.UpdateFund: _update_fund, m.AdjustHolding: _adjust_holding,
        m.AdjustCash: _adjust_cash, m.Stake: _stake, m.Unstake: _unstake,
        m.RecordStakingReward: _record_reward, m.RecordSlashing: _record_slashing,
        m.PublishPrices: _publish_prices, m.SettleOrder: _settle_order, m.SubmitOrder: _submit_order,
        m.SubmitOrders: _submit_orders, m.CancelOrder: _cancel_order, m.RegisterCalendar: _register_calendar,
        m.SetHolidays: _set_holidays, m.CloseDealingDay: _close_day, m.StrikeNav: _strike,
        m.RegisterWallet: _register_wallet, m.ApproveWallet: _approve_wallet, m.RevokeWallet: _revoke_wallet,
        m.RecordDelivery: _record_delivery, m.RecordPayout: _record_payout,
    }
    _APPLIERS = {
        m.AssetRegistered: _on_asset, m.CustodianRegistered: _on_custodian, m.LicenceSet: _on_licence,
        m.ParticipantRegistered: _on_participant, m.FundCreated: _on_fund_created,
        m.FundUpdated: _on_fund_updated, m.HoldingAdjusted: _on_holding, m.CashAdjusted: _on_cash,
        m.Staked: _on_staked, m.Unstaked: _on_unstaked, m.RewardRecorded: _on_reward, m.Slashed: _on_slashed,
        m.PriceSet: _on_price, m.OrderRecorded: _on_order, m.OrderSettled: _on_settled,
        m.OrderCancelled: _on_cancelled, m.CalendarRegistered: _on_calendar, m.HolidaysSet: _on_holidays,
        m.DealingDayClosed: _on_day_closed, m.NavStruck: _on_struck, m.ClockAdvanced: _on_clock,
        m.WalletRegistered: _on_wallet, m.WalletApproved: _on_wallet_approved, m.WalletRevoked: _on_wallet_revoked,
        m.DeliveryRecorded: _on_delivery, m.PayoutRecorded: _on_payout,
    }
