"""Protobuf messages <-> the engine's model: requests into commands, results into replies.

Requests keep decimal strings as strings: the ledgers parse them with each asset's own decimals
and name the field when one is malformed. Replies format the ledger's exact integers with
``etf_engine.numbers``: quantities with the asset's decimals, money 2 dp, nav_per_share 4 dp,
prices as given, fractions with at least 2 dp; a figure the ledger could not compute (None) is "".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

from etf_engine import model as M
from etf_engine.numbers import (
    FRACTION_DP,
    NAV_PER_SHARE_DP,
    format_fraction,
    format_money,
    format_price,
    format_quantity,
    format_scaled,
    round_half_even,
)
from etf_engine.v1 import engine_pb2 as pb

Decimals = Mapping[str, int]

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
LICENCE_NAME = {
    pb.LicenceStatus.ACTIVE: M.ACTIVE,
    pb.LicenceStatus.SUSPENDED: M.SUSPENDED,
    pb.LicenceStatus.REVOKED: M.REVOKED,
}
DEALING_NAME = {pb.DealingStatus.OPEN: M.OPEN, pb.DealingStatus.SUSPENDED: M.SUSPENDED}
PRICING_NAME = {pb.Pricing.LIVE: M.LIVE, pb.Pricing.FORWARD: M.FORWARD}
WALLET_STATUS_VALUE = {M.PENDING: pb.WalletStatus.PENDING, M.APPROVED: pb.WalletStatus.APPROVED,
                       M.REVOKED: pb.WalletStatus.REVOKED}


def enum_name(names: Mapping[int, str], value: int) -> str:
    """SPEC name of an enum value; "" for unspecified and the number's text for one unknown to this
    server, so that the ledger refuses it naming the field instead of a default being guessed."""
    if value == 0:
        return ""
    return names.get(value, str(value))


# == requests -> commands ===========================================================================
def register_asset(r: pb.RegisterAssetRequest) -> M.RegisterAsset:
    optional = {"min_confirmations": r.min_confirmations} if r.HasField("min_confirmations") else {}
    return M.RegisterAsset(symbol=r.symbol, decimals=r.decimals, chain=r.chain, **optional)


def register_custodian(r: pb.RegisterCustodianRequest) -> M.RegisterCustodian:
    return M.RegisterCustodian(
        custodian_id=r.custodian_id,
        name=r.name,
        licence_number=r.licence_number,
        licence_status=enum_name(LICENCE_NAME, r.licence_status),
        licence_expires_at=r.licence_expires_at,
    )


def set_custodian_licence(r: pb.SetCustodianLicenceRequest) -> M.SetCustodianLicence:
    return M.SetCustodianLicence(
        custodian_id=r.custodian_id,
        licence_status=enum_name(LICENCE_NAME, r.licence_status),
        licence_expires_at=r.licence_expires_at,
    )


def register_participant(r: pb.RegisterParticipantRequest) -> M.RegisterParticipant:
    return M.RegisterParticipant(
        participant_id=r.participant_id,
        name=r.name,
        eligible_fund_ids=list(r.eligible_fund_ids),
        max_units_per_order=r.max_units_per_order,
        max_units_per_day=r.max_units_per_day,
    )


def _asset_spec(a: pb.FundAsset, *, defaults: bool) -> M.FundAssetSpec:
    """With ``defaults`` (CreateFund) empty strings take the model's defaults; without (UpdateFund,
    where an entry replaces the asset's whole terms) they go to the ledger, which refuses them, so
    that a partial entry can never silently zero a cap or a buffer."""
    values = {
        "staking_cap": a.staking_cap,
        "liquidity_buffer": a.liquidity_buffer,
        "seed_quantity_per_unit": a.seed_quantity_per_unit,
    }
    if defaults:
        values = {k: v for k, v in values.items() if v != ""}
    return M.FundAssetSpec(asset=a.asset, unbonding_seconds=a.unbonding_seconds, **values)


def create_fund(r: pb.CreateFundRequest) -> M.CreateFund:
    optional: dict[str, object] = {}
    for name in ("creation_fee", "redemption_fee", "seed_cash_per_unit"):
        value = getattr(r, name)
        if value != "":
            optional[name] = value
    if r.dealing_status:
        optional["dealing_status"] = enum_name(DEALING_NAME, r.dealing_status)
    if r.HasField("max_price_age_seconds"):
        optional["max_price_age_seconds"] = r.max_price_age_seconds
    if r.dealing_cutoff != "":
        optional["dealing_cutoff"] = r.dealing_cutoff
    for name in ("create_settlement_days", "redeem_settlement_days"):
        if r.HasField(name):
            optional[name] = getattr(r, name)
    if r.pricing:
        optional["pricing"] = enum_name(PRICING_NAME, r.pricing)
    return M.CreateFund(
        calendar_id=r.calendar_id,
        require_delivery=r.require_delivery,
        fund_id=r.fund_id,
        name=r.name,
        base_currency=r.base_currency,
        creation_unit=r.creation_unit,
        creation_custodian_id=r.creation_custodian_id,
        custodian_priority=list(r.custodian_priority),
        assets=[_asset_spec(a, defaults=True) for a in r.assets],
        min_liquid_units=r.min_liquid_units,
        initial_shares_outstanding=r.initial_shares_outstanding,
        **optional,  # type: ignore[arg-type]
    )


def update_fund(r: pb.UpdateFundRequest) -> M.UpdateFund:
    changes: dict[str, object] = {}
    for name in ("name", "max_price_age_seconds", "creation_fee", "redemption_fee", "min_liquid_units",
                 "creation_custodian_id", "seed_cash_per_unit", "calendar_id", "dealing_cutoff",
                 "create_settlement_days", "redeem_settlement_days", "require_delivery"):
        if r.HasField(name):
            changes[name] = getattr(r, name)
    if r.dealing_status:
        changes["dealing_status"] = enum_name(DEALING_NAME, r.dealing_status)
    if r.HasField("custodian_priority"):
        changes["custodian_priority"] = list(r.custodian_priority.custodian_ids)
    if r.pricing:
        changes["pricing"] = enum_name(PRICING_NAME, r.pricing)
    if r.assets:
        changes["assets"] = [_asset_spec(a, defaults=False) for a in r.assets]
    return M.UpdateFund(fund_id=r.fund_id, **changes)  # type: ignore[arg-type]


def adjust_holding(r: pb.AdjustHoldingRequest) -> M.AdjustHolding:
    return M.AdjustHolding(fund_id=r.fund_id, custodian_id=r.custodian_id, asset=r.asset, delta=r.delta,
                           reason=r.reason)


def adjust_cash(r: pb.AdjustCashRequest) -> M.AdjustCash:
    return M.AdjustCash(fund_id=r.fund_id, delta=r.delta, reason=r.reason)


def stake(r: pb.StakeRequest) -> M.Stake:
    return M.Stake(fund_id=r.fund_id, custodian_id=r.custodian_id, asset=r.asset, quantity=r.quantity)


def unstake(r: pb.UnstakeRequest) -> M.Unstake:
    return M.Unstake(fund_id=r.fund_id, custodian_id=r.custodian_id, asset=r.asset, quantity=r.quantity)


def record_staking_reward(r: pb.RecordStakingRewardRequest) -> M.RecordStakingReward:
    return M.RecordStakingReward(fund_id=r.fund_id, custodian_id=r.custodian_id, asset=r.asset,
                                 quantity=r.quantity)


def record_slashing(r: pb.RecordSlashingRequest) -> M.RecordSlashing:
    return M.RecordSlashing(fund_id=r.fund_id, custodian_id=r.custodian_id, asset=r.asset,
                            quantity=r.quantity)


def publish_prices(r: pb.PublishPricesRequest) -> M.PublishPrices:
    return M.PublishPrices(ticks=price_ticks(r.ticks))


def price_ticks(ticks: Iterable[pb.PriceTick]) -> list[M.PriceTick]:
    return [M.PriceTick(asset=t.asset, currency=t.currency, price=t.price, as_of_unix_ms=t.as_of_unix_ms)
            for t in ticks]


def register_calendar(r: pb.RegisterCalendarRequest) -> M.RegisterCalendar:
    weekend = list(r.weekend_days.days) if r.HasField("weekend_days") else None
    return M.RegisterCalendar(calendar_id=r.calendar_id, time_zone=r.time_zone, holidays=list(r.holidays),
                              weekend_days=weekend)


def set_holidays(r: pb.SetHolidaysRequest) -> M.SetHolidays:
    return M.SetHolidays(calendar_id=r.calendar_id, holidays=list(r.holidays))


def close_dealing_day(r: pb.CloseDealingDayRequest) -> M.CloseDealingDay:
    return M.CloseDealingDay(calendar_id=r.calendar_id, date=r.date, reason=r.reason)


def strike_nav(r: pb.StrikeNavRequest) -> M.StrikeNav:
    return M.StrikeNav(fund_id=r.fund_id, dealing_date=r.dealing_date, ticks=price_ticks(r.ticks))


def order_request(
    r: pb.OrderRequest | pb.SubmitOrderRequest | pb.CheckOrderRequest,
) -> M.OrderRequest:
    return M.OrderRequest(fund_id=r.fund_id, side=enum_name(SIDE_NAME, r.side), units=r.units,
                          client_order_id=r.client_order_id, payout_wallet_ids=list(r.payout_wallet_ids))


def register_wallet(r: pb.RegisterWalletRequest, principal: str) -> M.RegisterWallet:
    return M.RegisterWallet(participant_id=r.participant_id, asset=r.asset, address=r.address, label=r.label,
                            principal=principal)


def record_delivery(r: pb.RecordDeliveryRequest) -> M.RecordDelivery:
    return M.RecordDelivery(order_id=r.order_id, asset=r.asset, quantity=r.quantity, tx_hash=r.tx_hash,
                            from_address=r.from_address, confirmations=r.confirmations)


def record_payout(r: pb.RecordPayoutRequest) -> M.RecordPayout:
    return M.RecordPayout(order_id=r.order_id, custodian_id=r.custodian_id, asset=r.asset, quantity=r.quantity,
                          tx_hash=r.tx_hash)


# == results -> replies =============================================================================
def _text(value: int | None, fmt: Callable[[int], str]) -> str:
    return "" if value is None else fmt(value)


# Replies repeat the same figures (every order of a basket's lifetime carries the same lines), and
# formatting one costs more than looking it up: about a third of an order's reply time before this.
_format_quantity = lru_cache(maxsize=65_536)(format_quantity)


def _quantity(value: int, asset: str, decimals: Decimals) -> str:
    return _format_quantity(value, decimals[asset])


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
    )


def order(o: M.Order, decimals: Decimals) -> pb.Order:
    return pb.Order(
        order_id=o.order_id,
        client_order_id=o.client_order_id,
        participant_id=o.participant_id,
        fund_id=o.fund_id,
        side=SIDE_VALUE[o.side],
        units=o.units,
        status=STATUS_VALUE[o.status],
        reject_reason=o.reject_reason,
        basket=basket(o.basket, decimals),
        deliverables=[pb.Line(asset=d.asset, quantity=_quantity(d.quantity, d.asset, decimals))
                      for d in o.deliverables],
        cash_amount=_text(o.cash_amount, format_money),
        fee=format_money(o.fee),
        legs=[pb.Leg(custodian_id=leg.custodian_id, asset=leg.asset,
                     quantity=_quantity(leg.quantity, leg.asset, decimals),
                     destination_address=leg.destination_address)
              for leg in o.legs],
        created_at=o.created_at,
        updated_at=o.updated_at,
        dealing_date=o.dealing_date,
        settlement_date=o.settlement_date,
        priced=o.priced,
        official_nav_per_share=nav_per_share_text(o.official_nav_per_share),
        payout_wallet_ids=o.payout_wallet_ids or (),
        deliveries=[pb.Delivery(asset=d.asset, quantity=_quantity(d.quantity, d.asset, decimals), tx_hash=d.tx_hash,
                                from_address=d.from_address, confirmations=d.confirmations,
                                recorded_at=d.recorded_at)
                    for d in o.deliveries],
        payouts=[pb.Payout(custodian_id=p.custodian_id, asset=p.asset,
                           quantity=_quantity(p.quantity, p.asset, decimals), tx_hash=p.tx_hash,
                           recorded_at=p.recorded_at)
                 for p in o.payouts],
        excess=[pb.Line(asset=x.asset, quantity=_quantity(x.quantity, x.asset, decimals)) for x in o.excess],
        overdue=o.overdue,
        cancel_reason=o.cancel_reason,
    )


def fund_summary(t: M.FundTerms) -> pb.FundSummary:
    return pb.FundSummary(fund_id=t.fund_id, name=t.name, base_currency=t.base_currency,
                          dealing_status=pb.DealingStatus.Value.Value(t.dealing_status))


def wallet(w: M.Wallet) -> pb.Wallet:
    return pb.Wallet(wallet_id=w.wallet_id, participant_id=w.participant_id, asset=w.asset, address=w.address,
                     label=w.label, status=WALLET_STATUS_VALUE[w.status], registered_by=w.registered_by,
                     approved_by=w.approved_by, revoked_by=w.revoked_by, revoke_reason=w.revoke_reason,
                     registered_at=w.registered_at, updated_at=w.updated_at)


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
    )


def holdings(h: M.Holdings, decimals: Decimals) -> pb.Holdings:
    def q(value: int, asset: str) -> str:
        return _quantity(value, asset, decimals)

    return pb.Holdings(
        fund_id=h.fund_id,
        holdings=[pb.HoldingRow(custodian_id=r.custodian_id, asset=r.asset, available=q(r.available, r.asset),
                                reserved=q(r.reserved, r.asset), staked=q(r.staked, r.asset),
                                unbonding=q(r.unbonding, r.asset), licensed=r.licensed)
                  for r in h.holdings],
        assets=[pb.AssetSummary(asset=a.asset, total=q(a.total, a.asset), committed=q(a.committed, a.asset),
                                liquid=q(a.liquid, a.asset), illiquid=q(a.illiquid, a.asset),
                                illiquid_ratio=ratio_text(a.illiquid, a.committed),
                                liquid_ratio=ratio_text(a.liquid, a.committed),
                                staking_cap=format_fraction(a.staking_cap),
                                liquidity_buffer=format_fraction(a.liquidity_buffer))
                for a in h.assets],
    )


def capacity(c: M.Capacity) -> pb.Capacity:
    return pb.Capacity(
        fund_id=c.fund_id,
        create=pb.CapacitySide(units=c.create.units, binding_reason=c.create.binding_reason),
        redeem=pb.CapacitySide(units=c.redeem.units, binding_reason=c.redeem.binding_reason),
    )


def publish_result(r: M.PublishResult) -> pb.PublishPricesReply:
    return pb.PublishPricesReply(applied=r.applied, ignored=r.ignored)


def calendar(c: M.CalendarInfo) -> pb.Calendar:
    return pb.Calendar(calendar_id=c.calendar_id, time_zone=c.time_zone, holidays=c.holidays,
                       weekend_days=c.weekend_days,
                       closed=[pb.ClosedDay(date=d.date, reason=d.reason) for d in c.closed])


def official_nav(n: M.OfficialNav, decimals: Decimals) -> pb.OfficialNav:
    return pb.OfficialNav(
        fund_id=n.fund_id, dealing_date=n.dealing_date, nav=format_money(n.nav),
        nav_per_share=nav_per_share_text(n.nav_per_share), shares_outstanding=n.shares_outstanding,
        cash=format_money(n.cash),
        lines=[pb.OfficialNavLine(asset=line.asset, quantity=_quantity(line.quantity, line.asset, decimals),
                                  price=format_price(line.price), value=format_money(line.value))
               for line in n.lines],
        struck_at=n.struck_at,
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
