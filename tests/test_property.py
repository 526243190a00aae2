"""The compiled core against the Fraction reference on random command sequences (SPEC §1-10 and §13).

Hypothesis drives both ledgers with the same commands; after every step every figure they publish
must be equal (results, refusal codes, NAV, basket, holdings, whole state), and the invariants of
DESIGN.md must hold: no bucket below zero, assets conserved, NAV per share kept by a settled order
up to the cash component's rounding, no settlement of an order not priced, and the events replayed
into empty ledgers rebuild the state. F-2 deals on a calendar (drawn weekend, holidays, cut-off,
settlement days and pricing); the rules close days, change holidays, strike official NAVs and move
the fund on and off its calendar while time passes across cut-offs and midnights. Wallets (SPEC §14)
are registered, approved (four eyes) and revoked; F-1 may require delivery, redemptions name payout
wallets, deliveries and payouts are recorded, and no order of a fund that requires delivery ever
settles without its full evidence.

A refusal is compared by its gRPC code and by what its message names (``refusal``): the field
(INVALID_ARGUMENT, OUT_OF_RANGE, a batch item's as ``requests[i].units``), the reason code
(FAILED_PRECONDITION), what was not found (NOT_FOUND), the batch item (other codes).
Values are drawn near every limit of SPEC §1 (``near``): quantities at 10^30 smallest units and at
10^30 minus a bucket, shares at 10^15, creation units at 10^8, units at the participant's order and
daily limits and at the capacity GetCapacity reports, prices at 10^12, money at the engine's bound,
caps and buffers at 0 and 1 and at the exact boundary of each §6 check, each with its neighbours.
Every mismatch this test found (issue 18: eleven, each decided from SPEC and fixed in both ledgers)
stays at the end of this file as a test of its own, the shortest command sequence that showed it.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from datetime import date, timedelta
from fractions import Fraction

import msgspec
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from etf_engine import calendar as CAL
from etf_engine import model as M
from etf_engine.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, OUT_OF_RANGE, EngineError
from etf_engine.numbers import ACCRUED_DP, MAX_MONEY, MAX_SECONDS

pytestmark = pytest.mark.unit

core = pytest.importorskip("etf_engine._core")
from etf_engine.reference import ReferenceLedger  # noqa: E402  (after the skip: no core, no comparison)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DECIMALS = {"BTC": 8, "ETH": 18, "SOL": 9}
CUSTODIANS = ("CUS-A", "CUS-B", "CUS-C")
PARTICIPANTS = ("AP-1", "AP-2")
FUNDS = ("F-1", "F-2")
CALENDAR = "HK"
HONG_KONG = CAL.Calendar(CALENDAR, "Asia/Hong_Kong", frozenset(), frozenset())  # for local dates only

ADDRESSES = {  # valid mainnet addresses per asset's chain, and one malformed
    "BTC": ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "bc1qbad"),
    "ETH": ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359",
            "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
    "SOL": ("11111111111111111111111111111111", "So11111111111111111111111111111111111111112", "0OIl"),
}
ISSUERS = ("ops", "ops-2")
REFUSED = object()
INSTRUCTIONS = ("stake", "unstake", "reward", "slash", "add", "remove")
SPOILED = {  # OrderRequest field -> values SubmitOrder refuses outright (SPEC §5)
    "units": [0, -1], "side": ["HOLD", ""], "fund_id": ["F-9"], "client_order_id": ["", "c 1", "x" * 65],
}

# SPEC §1: exact up to these, refused beyond (MAX_MONEY, in cents, is the engine's own bound: §1 sets none)
MAX_QUANTITY = 10**30  # smallest units in a bucket
MAX_SHARES = 10**15  # shares outstanding, and units x creation_unit of one order
MAX_UNIT = 10**8  # shares per creation unit
MAX_PRICE = 10**12 * 10**8  # 10^12 base currency per whole asset, in 1e-8
ONE = 10_000  # the fraction 1 (caps, buffers) in 1e-4


def near(normal, *limits: int, low: int | None = None):
    """``normal`` values half the time, else one of ``limits`` or a neighbour (limit - 1, limit + 1),
    all at least ``low``."""
    edges = sorted({v + d for v in limits for d in (-1, 0, 1) if low is None or v + d >= low})
    return st.one_of(normal, st.sampled_from(edges)) if edges else normal


# -- comparing refusals ---------------------------------------------------------------------------
_ITEM = re.compile(r"requests\[\d+\]")


def refusal(outcome) -> tuple | str:
    """What an outcome is compared by when either ledger refuses: "accepted", or the refusal's code and
    what its message names (errors.EngineError: "message names the field or the reason code").
    INVALID_ARGUMENT and OUT_OF_RANGE messages start with the field, FAILED_PRECONDITION ones with the
    reason code, before the first ": " (errors.invalid, out_of_range, precondition; SPEC §1, §6, §11);
    NOT_FOUND ones are errors.not_found's "<what> '<id>' not found", compared whole; ALREADY_EXISTS and
    PERMISSION_DENIED ones are free wording, compared by the batch item they name (SPEC §5)."""
    if not isinstance(outcome, EngineError):
        return "accepted"
    if outcome.code in (INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION):
        return outcome.code, outcome.message.split(": ", 1)[0]
    if outcome.code == "NOT_FOUND":
        return outcome.code, outcome.message
    return outcome.code, tuple(_ITEM.findall(outcome.message))


def text(q: int, decimals: int) -> str:
    """Smallest units -> decimal text with the asset's decimals."""
    sign = "-" if q < 0 else ""
    whole, frac = divmod(abs(q), 10**decimals)
    return f"{sign}{whole}.{str(frac).rjust(decimals, '0')}" if decimals else f"{sign}{whole}"


def attempt(call, *args):
    """call(*args), or the EngineError it raised."""
    try:
        return call(*args)
    except EngineError as error:
        return error


class CoreAgainstReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = core.Ledger()
        self.ref = ReferenceLedger()
        self.now = T0
        self.events: list[M.Event] = []
        self.flow: dict[tuple[str, str], int] = defaultdict(int)  # (fund, asset) -> in - out
        self.fee_payable: dict[tuple[str, str], int] = defaultdict(int)  # (fund, asset) -> taken - paid in kind
        self.nps_at_acceptance: dict[str, Fraction] = {}
        self.diverged = False  # a mismatch failed the run: no replay check in teardown
        self.refused: tuple | str = ""  # refusal() of the last command refused

    # -- driving both ------------------------------------------------------------------------
    def both(self, command):
        """Execute on both ledgers; both refuse alike (``refusal``) or both return the same.
        Returns REFUSED or the result."""
        core_out, ref_out = (attempt(ledger.execute, command, self.now) for ledger in (self.core, self.ref))
        if isinstance(core_out, EngineError) or isinstance(ref_out, EngineError):
            self.agree(command, core_out, ref_out, refusal(core_out) == refusal(ref_out))
            self.refused = refusal(core_out)
            return REFUSED
        assert core_out[0] == ref_out[0], command
        assert core_out[1] == ref_out[1], command
        self.events.extend(core_out[1])
        for e in core_out[1]:
            if isinstance(e, M.NavStruck) and e.fee_taken:  # the fee taken in kind leaves the holdings
                self.flow[(e.nav.fund_id, e.fee_asset)] -= e.fee_taken
                self.fee_payable[(e.nav.fund_id, e.fee_asset)] += e.fee_taken
            elif isinstance(e, M.FeePaid) and e.asset:
                self.fee_payable[(e.fund_id, e.asset)] -= e.quantity
            elif isinstance(e, M.BreakResolved) and e.adjustment:  # a break's adjustment comes in or goes out
                b = self.core.get_break(e.break_id)
                self.flow[(b.fund_id, b.asset)] += e.adjustment
        return core_out[0]

    def read(self, method: str, *args):
        """A read on both ledgers: the same answer or the same refusal. Returns REFUSED or the answer."""
        core_out, ref_out = (attempt(getattr(ledger, method), *args) for ledger in (self.core, self.ref))
        if isinstance(core_out, EngineError) or isinstance(ref_out, EngineError):
            self.agree((method, *args), core_out, ref_out, refusal(core_out) == refusal(ref_out))
            return REFUSED
        self.agree((method, *args), core_out, ref_out, core_out == ref_out)
        return core_out

    def agree(self, what, core_out, ref_out, same: bool) -> None:
        """The two outcomes must be the ``same``."""
        if same:
            return
        self.diverged = True  # no replay check in teardown after a failure
        raise AssertionError(f"mismatch: core {refusal(core_out)}, reference {refusal(ref_out)} on {what!r}: "
                             f"core {core_out!r}, reference {ref_out!r}")

    def orders(self, status: str) -> list[M.Order]:
        return self.core.list_orders("", status, None)

    def figures(self, fund_id: str, custodian_id: str, asset: str) -> tuple[M.HoldingRow, M.AssetSummary]:
        """The holding and the asset's sums now, as the reference reads them (a read of the core would
        release its matured lots, which a command must do by itself)."""
        holdings = self.ref.get_holdings(fund_id, self.now)
        row = next((h for h in holdings.holdings if (h.custodian_id, h.asset) == (custodian_id, asset)),
                   M.HoldingRow(custodian_id=custodian_id, asset=asset, available=0, reserved=0, staked=0,
                                unbonding=0, licensed=True))
        return row, next(a for a in holdings.assets if a.asset == asset)

    def fund_state(self, fund_id: str):
        """The fund's row of the reference's state (snapshot.FundState)."""
        return next(f for f in self.ref.state(self.now).funds if f.terms.fund_id == fund_id)

    def terms(self, fund_id: str) -> M.FundTerms:
        return self.fund_state(fund_id).terms

    def limits(self, participant: str) -> tuple[int, int]:
        """(max_units_per_order, max_units_per_day) of a participant."""
        p = next(p for p in self.ref.list_participants() if p.participant_id == participant)
        return p.max_units_per_order, p.max_units_per_day

    # -- set-up ------------------------------------------------------------------------------
    @initialize(
        caps=st.lists(st.one_of(st.integers(0, ONE), st.sampled_from([0, 1, ONE - 1, ONE])), min_size=3, max_size=3),
        buffers=st.lists(st.one_of(st.integers(0, 5_000), st.sampled_from([0, 1, ONE - 1, ONE])), min_size=3,
                         max_size=3),
        unit=st.sampled_from([1, 10, 50_000, MAX_UNIT - 1, MAX_UNIT]),
        min_liquid=st.integers(0, 2),
        shares=st.sampled_from([0, 1_000_000, MAX_SHARES - 1, MAX_SHARES]),
        holdings=st.lists(near(st.integers(0, 10**12), MAX_QUANTITY, low=0), min_size=9, max_size=9),
        staked=st.lists(st.sampled_from([0, 0, 1, 2]), min_size=9, max_size=9),  # none, half, all
        limits=st.lists(st.tuples(st.sampled_from([20, 20, 20, 1, MAX_SHARES // 2, MAX_SHARES]),
                                  st.sampled_from([60, 60, 20, 21, MAX_SHARES])), min_size=2, max_size=2),
        weekend=st.sampled_from([None, [], [5, 6, 7]]),
        holidays=st.lists(st.integers(0, 12), max_size=3, unique=True),
        cutoff=st.sampled_from(["16:00", "08:00:01", "23:59:59", "00:00"]),
        settlement=st.tuples(st.integers(0, 3), st.integers(0, 3)),
        pricing=st.sampled_from(M.PRICINGS),
        confirmations=st.lists(st.integers(0, 2), min_size=3, max_size=3),
        delivery=st.booleans(),
    )
    def setup(self, caps, buffers, unit, min_liquid, shares, holdings, staked, limits, weekend, holidays, cutoff,
              settlement, pricing, confirmations, delivery):
        self.both(M.RegisterCalendar(calendar_id=CALENDAR, time_zone="Asia/Hong_Kong", weekend_days=weekend,
                                     holidays=[self.day(d) for d in holidays]))
        for (symbol, decimals), needed in zip(DECIMALS.items(), confirmations, strict=True):
            self.both(M.RegisterAsset(symbol=symbol, decimals=decimals, min_confirmations=needed))
        for cid in CUSTODIANS:
            self.both(M.RegisterCustodian(custodian_id=cid, name=cid, licence_number="L-" + cid,
                                          licence_status="ACTIVE", licence_expires_at=T0 // 1000 + 10 * 86_400))
        for pid, (per_order, per_day) in zip(PARTICIPANTS, limits, strict=True):
            self.both(M.RegisterParticipant(participant_id=pid, name=pid, eligible_fund_ids=list(FUNDS),
                                            max_units_per_order=per_order, max_units_per_day=per_day))
        for fund_id in FUNDS:
            self.both(M.CreateFund(
                fund_id=fund_id, name=fund_id, base_currency="HKD", creation_unit=unit,
                creation_custodian_id="CUS-A", custodian_priority=["CUS-B", "CUS-A"],
                min_liquid_units=min_liquid, initial_shares_outstanding=shares, seed_cash_per_unit="12.34",
                require_delivery=delivery and fund_id == "F-1",
                redemption_fee="100", creation_fee="50.5",
                assets=[M.FundAssetSpec(asset=a, staking_cap="1", liquidity_buffer="0", unbonding_seconds=3600,
                                        seed_quantity_per_unit=text(7 * 10**d, d)) for a, d in DECIMALS.items()],
                **({} if fund_id == "F-1" else {
                    "calendar_id": CALENDAR, "dealing_cutoff": cutoff, "create_settlement_days": settlement[0],
                    "redeem_settlement_days": settlement[1], "pricing": pricing}),
            ))
            for i, (q, share) in enumerate(zip(holdings, staked, strict=True)):
                asset = list(DECIMALS)[i % 3]
                if q:
                    self.adjust(fund_id, CUSTODIANS[i // 3], asset, q)
                if q * share // 2:  # staked under a cap of 1, then the drawn caps: a fund may start in breach
                    self.both(M.Stake(fund_id=fund_id, custodian_id=CUSTODIANS[i // 3], asset=asset,
                                      quantity=text(q * share // 2, DECIMALS[asset])))
            self.both(M.UpdateFund(fund_id=fund_id, assets=[
                M.FundAssetSpec(asset=a, staking_cap=text(c, 4), liquidity_buffer=text(b, 4), unbonding_seconds=3600,
                                seed_quantity_per_unit=text(7 * 10**d, d))
                for (a, d), c, b in zip(DECIMALS.items(), caps, buffers, strict=True)]))
        for pick, pid in enumerate(PARTICIPANTS):  # whitelisted from the start; the rules add and revoke
            for asset in DECIMALS:
                wallet = self.both(M.RegisterWallet(participant_id=pid, asset=asset, address=ADDRESSES[asset][pick],
                                                    principal="ops"))
                self.both(M.ApproveWallet(wallet_id=wallet.wallet_id, principal="ops-2"))
        self.both(M.PublishPrices(ticks=[
            M.PriceTick(asset="BTC", currency="HKD", price="712345.67891234", as_of_unix_ms=self.now),
            M.PriceTick(asset="ETH", currency="HKD", price="24567.1", as_of_unix_ms=self.now),
            M.PriceTick(asset="SOL", currency="HKD", price="1234.00000001", as_of_unix_ms=self.now),
        ]))

    def day(self, offset: int) -> str:
        """The Hong Kong date ``offset`` days from now's."""
        return (CAL.local_date(HONG_KONG, self.now) + timedelta(days=offset)).isoformat()

    def next_unstruck(self, fund_id: str) -> str | None:
        """The dealing day StrikeNav would take next for the fund (None without a calendar)."""
        terms = self.terms(fund_id)
        if not terms.calendar_id:
            return None
        info = self.core.get_calendar(CALENDAR)
        cal = CAL.Calendar(CALENDAR, info.time_zone, frozenset(map(date.fromisoformat, info.holidays)),
                           frozenset(info.weekend_days), {date.fromisoformat(c.date): c.reason for c in info.closed})
        struck = {nav.dealing_date for nav in self.core.list_official_navs(fund_id, "", "")}
        day = date.fromisoformat(terms.first_dealing_date)
        while not CAL.is_dealing_day(cal, day) or day.isoformat() in struck:
            day += timedelta(days=1)
        return day.isoformat()

    def adjust(self, fund_id: str, custodian_id: str, asset: str, q: int) -> bool:
        """AdjustHolding by q, naming the holding's first open break if it has one (SPEC §19)."""
        breaks = [b.break_id for b in self.ref.list_breaks(fund_id, M.OPEN)
                  if (b.custodian_id, b.asset) == (custodian_id, asset)] if self.events else []
        command = M.AdjustHolding(fund_id=fund_id, custodian_id=custodian_id, asset=asset,
                                  delta=text(q, DECIMALS[asset]), break_id=breaks[0] if breaks else "")
        if self.both(command) is REFUSED:
            return False
        self.flow[(fund_id, asset)] += q
        return True

    # -- rules -------------------------------------------------------------------------------
    def wallet_ids(self, data, participant: str) -> list[str]:
        """Payout wallets for a redemption: mostly one of the participant's per asset, sometimes any."""
        wallets = self.core.list_wallets("")
        if not wallets:
            return []
        own = {}
        for w in wallets:
            if w.participant_id == participant and w.status == M.APPROVED:
                own.setdefault(w.asset, w.wallet_id)
        if data.draw(st.booleans()) and own:
            return list(own.values())
        return data.draw(st.lists(st.sampled_from([w.wallet_id for w in wallets] + ["WAL-99"]), max_size=4))

    def units_near(self, participant: str, fund: str, few: int):
        """Order units: 1..few, or at a limit with its neighbours: the participant's order and daily limits,
        what is left of its daily limit, one unit beyond the capacity GetCapacity reports (the first one
        rejected), 10^15 shares' worth; 0 and -1 are malformed."""
        per_order, per_day = self.limits(participant)
        today = self.now // M.DAY_MS
        dealt = sum(o.units for o in self.core.list_orders(fund, "", participant)
                    if o.status in (M.ACCEPTED, M.SETTLED) and o.created_at // M.DAY_MS == today)
        capacity = attempt(self.core.get_capacity, participant, fund, self.now)
        beyond = [] if isinstance(capacity, EngineError) else [capacity.create.units + 1, capacity.redeem.units + 1]
        return near(st.integers(1, few), per_order, per_day, per_day - dealt, *beyond,
                    MAX_SHARES // self.terms(fund).creation_unit, low=-1)

    @rule(fund=st.sampled_from(FUNDS), participant=st.sampled_from(PARTICIPANTS), side=st.sampled_from(M.SIDES),
          key=st.integers(0, 30), spoil=st.sampled_from([None] * 12 + list(SPOILED)), data=st.data())
    def submit(self, fund, participant, side, key, spoil, data):
        units = data.draw(self.units_near(participant, fund, 25), label="units")
        request = M.OrderRequest(fund_id=fund, side=side, units=units, client_order_id=f"c-{key}",
                                 payout_wallet_ids=self.wallet_ids(data, participant))
        if spoil:
            request = msgspec.structs.replace(request, **{spoil: data.draw(st.sampled_from(SPOILED[spoil]))})
        checked = self.read("check_order", participant, request, self.now)
        known = self.core.list_orders("", "", participant)
        order = self.both(M.SubmitOrder(participant_id=participant, request=request))
        if order is REFUSED:
            return
        assert checked == msgspec.structs.replace(order, order_id="")
        if order.status == M.ACCEPTED and order not in known:
            self.nps_at_acceptance[order.order_id] = nav_per_share(self.core, fund, self.now)

    @rule(participant=st.sampled_from(PARTICIPANTS), spoil=st.sampled_from([None, None, *SPOILED]), data=st.data())
    def submit_batch(self, participant, spoil, data):
        """Up to five orders, units near the limits; with ``spoil`` one item (anywhere) is malformed, names
        an unknown fund or is refused outright: the whole call is refused naming that item (SPEC §5)."""
        requests = data.draw(st.lists(st.builds(
            M.OrderRequest, fund_id=st.sampled_from(FUNDS), side=st.sampled_from(M.SIDES),
            units=self.units_near(participant, "F-1", 6), client_order_id=st.integers(0, 40).map(lambda k: f"c-{k}")),
            min_size=1, max_size=5), label="requests")
        if spoil:
            at = data.draw(st.integers(0, len(requests) - 1), label="spoiled item")
            requests[at] = msgspec.structs.replace(requests[at], **{spoil: data.draw(st.sampled_from(SPOILED[spoil]))})
        self.both(M.SubmitOrders(participant_id=participant, requests=requests))

    @precondition(lambda self: self.orders(M.ACCEPTED))
    @rule(data=st.data(), cancel=st.booleans())
    def settle_or_cancel(self, data, cancel, order=None):
        order = order or data.draw(st.sampled_from(self.orders(M.ACCEPTED)))
        if cancel:
            self.both(M.CancelOrder(order_id=order.order_id, participant_id=order.participant_id,
                                    reason=data.draw(st.sampled_from(["", "overdue", "x" * 257]))))
            return
        before = nav_per_share(self.core, order.fund_id, self.now)
        evidence_needed = self.requires_delivery(order.fund_id)
        if self.both(M.SettleOrder(order_id=order.order_id)) is REFUSED:
            return
        if evidence_needed:  # never a settlement without full evidence
            order = self.core.get_order(order.order_id)
            if order.side == M.CREATE:
                needed = {a.symbol: a.min_confirmations for a in self.core.state(self.now).assets}
                for line in order.deliverables:
                    got = sum(d.quantity for d in order.deliveries
                              if d.asset == line.asset and d.confirmations >= needed[line.asset])
                    assert got >= line.quantity, order
            else:
                for leg in order.legs:
                    paid = sum(p.quantity for p in order.payouts if (p.custodian_id, p.asset) == (leg.custodian_id,
                                                                                                  leg.asset))
                    assert paid == leg.quantity, order
        sign = 1 if order.side == M.CREATE else -1
        for line in order.deliverables:
            self.flow[(order.fund_id, line.asset)] += sign * line.quantity
        after = nav_per_share(self.core, order.fund_id, self.now)
        # Only when nothing moved the valuation since acceptance is the basket the fair one.
        if before is not None and after is not None and before == self.nps_at_acceptance.get(order.order_id):
            shares_after = self.core.get_nav(order.fund_id, self.now).shares_outstanding
            assert abs(after - before) <= Fraction(5, 1000) * order.units / shares_after, order

    def quantity_near(self, kind: str, fund: str, custodian: str, asset: str):
        """An instruction's quantity: up to 10^6 smallest units, or at an edge with its neighbours: 10^30;
        what takes the bucket it fills to 10^30; the balance it draws on; for a stake, the most the
        staking cap and the liquidity buffer allow (SPEC §6)."""
        row, sums = self.figures(fund, custodian, asset)
        edges = [MAX_QUANTITY]
        if kind in ("add", "reward"):
            edges.append(MAX_QUANTITY - row.available)
        if kind == "remove":
            edges.append(row.available)
        if kind == "stake":
            edges += [row.available, MAX_QUANTITY - row.staked,
                      sums.staking_cap * sums.committed // ONE - sums.illiquid,
                      sums.liquid + (-sums.liquidity_buffer * sums.committed // ONE)]
        if kind in ("unstake", "slash"):
            edges.append(row.staked)
        if kind == "unstake":
            edges.append(MAX_QUANTITY - row.unbonding)
        return near(st.integers(1, 10**6), 0, *edges, low=0)

    def instruct(self, kind: str, fund: str, custodian: str, asset: str, data) -> bool:
        """One instruction of SPEC §6 (``add``/``remove``: AdjustHolding) with a quantity near an edge;
        True when done. Counts (hypothesis statistics) those that would take a bucket past 10^30."""
        row, _ = self.figures(fund, custodian, asset)
        q = data.draw(self.quantity_near(kind, fund, custodian, asset), label=f"{kind} quantity")
        if kind in ("add", "remove"):
            done = self.adjust(fund, custodian, asset, q if kind == "add" else -q)
        else:
            command = {"stake": M.Stake, "unstake": M.Unstake, "reward": M.RecordStakingReward,
                       "slash": M.RecordSlashing}[kind]
            done = self.both(command(fund_id=fund, custodian_id=custodian, asset=asset,
                                     quantity=text(q, DECIMALS[asset]))) is not REFUSED
            if done and kind == "reward":  # the net of the staking fee (SPEC §17)
                self.flow[(fund, asset)] += self.events[-1].quantity
            elif done and kind == "slash":
                self.flow[(fund, asset)] -= q
        filled = {"stake": row.staked, "unstake": row.unbonding, "reward": row.available, "add": row.available}
        if kind in filled and filled[kind] + q > MAX_QUANTITY >= q:
            event(f"{kind} past 10^30: {'done' if done else self.refused[-1]}")
        return done

    def holdings_with(self, bucket: str) -> list[tuple[str, str, str]]:
        """(fund, custodian, asset) of the holdings with something in a bucket ("available", "staked")."""
        return [(f.terms.fund_id, h.custodian_id, h.asset) for f in self.ref.state(self.now).funds
                if f.terms.fund_id in FUNDS for h in f.holdings if getattr(h, bucket)]

    @rule(fund=st.sampled_from(FUNDS), custodian=st.sampled_from(CUSTODIANS), asset=st.sampled_from(list(DECIMALS)),
          kind=st.sampled_from(INSTRUCTIONS), held=st.booleans(),
          wait=st.sampled_from([0] * 6 + [3_600_000, 7_200_000]), data=st.data())
    def instruction(self, fund, custodian, asset, kind, held, wait, data):
        """An instruction (at a holding with something available when ``held``) after ``wait`` ms with no read
        in between: a lot that matured meanwhile is available at once (SPEC §2)."""
        self.now += wait
        if held and self.holdings_with("available"):
            fund, custodian, asset = data.draw(st.sampled_from(self.holdings_with("available")), label="holding")
        self.instruct(kind, fund, custodian, asset, data)

    @precondition(lambda self: self.holdings_with("staked"))
    @rule(data=st.data(), restake=st.booleans(), kind=st.sampled_from(INSTRUCTIONS))
    def matured_lot(self, data, restake, kind):
        """Unstake at a holding (then, when ``restake``, load and stake there again), let the lot reach its
        release time with nothing reading the fund, and instruct there: from then on the lot is available,
        not unbonding (SPEC §2), though no read released it."""
        fund, custodian, asset = data.draw(st.sampled_from(self.holdings_with("staked")), label="holding")
        if not self.instruct("unstake", fund, custodian, asset, data):
            return
        if restake:
            self.instruct("add", fund, custodian, asset, data)
            self.instruct("stake", fund, custodian, asset, data)
        terms = next(a for a in self.terms(fund).assets if a.asset == asset)
        self.now += terms.unbonding_seconds * 1000
        self.instruct(kind, fund, custodian, asset, data)

    @rule(fund=st.sampled_from(FUNDS), data=st.data())
    def cash(self, fund, data):
        """AdjustCash by a few cents, or to the engine's bound on money (either sign) and beyond."""
        cash = self.fund_state(fund).cash
        cents = data.draw(near(st.integers(-10**6, 10**6), 0, MAX_MONEY, -MAX_MONEY, MAX_MONEY - cash,
                               -MAX_MONEY - cash), label="cents")
        self.both(M.AdjustCash(fund_id=fund, delta=text(cents, 2)))

    @rule(ms=st.sampled_from([1, 999, 30_000, 60_000, 3_600_000, 4 * 3_600_000, 86_400_000]))
    def time_passes(self, ms):
        self.now += ms

    @rule(asset=st.sampled_from(list(DECIMALS)), cents=near(st.integers(1, 10**14), 1, MAX_PRICE, low=0),
          back=st.integers(0, 120_000))
    def tick(self, asset, cents, back):
        self.both(M.PublishPrices(ticks=[M.PriceTick(asset=asset, currency="HKD", price=text(cents, 8),
                                                     as_of_unix_ms=self.now - back)]))

    @rule(custodian=st.sampled_from(CUSTODIANS), status=st.sampled_from(M.LICENCE_STATUSES),
          days=st.integers(-1, 30))
    def licence(self, custodian, status, days):
        self.both(M.SetCustodianLicence(custodian_id=custodian, licence_status=status,
                                        licence_expires_at=self.now // 1000 + days * 86_400))

    @rule(fund=st.sampled_from(FUNDS), asset=st.sampled_from(list(DECIMALS)),
          cap=near(st.integers(0, ONE), 0, ONE, low=0), buffer=near(st.integers(0, ONE), 0, ONE, low=0),
          status=st.sampled_from(M.DEALING_STATUSES),
          calendar=st.sampled_from([None, None, "", CALENDAR]), pricing=st.sampled_from([None, None, *M.PRICINGS]),
          cutoff=st.sampled_from([None, "16:00", "12:00:30"]), days=st.sampled_from([None, 0, 1, 5]),
          fee=st.one_of(st.none(), near(st.integers(0, 10**4), MAX_MONEY, low=0)),
          min_liquid=st.one_of(st.none(), near(st.integers(0, 2), MAX_SHARES, low=0)))
    def update_fund(self, fund, asset, cap, buffer, status, calendar, pricing, cutoff, days, fee, min_liquid):
        """Caps and buffers at 0 and 1 and just above 1; a fee at the bound on money; min_liquid_units
        (creation units) at 10^15."""
        self.both(M.UpdateFund(fund_id=fund, dealing_status=status, assets=[
            M.FundAssetSpec(asset=asset, staking_cap=text(cap, 4), liquidity_buffer=text(buffer, 4),
                            unbonding_seconds=3600, seed_quantity_per_unit="7")],
            calendar_id=calendar, pricing=pricing, dealing_cutoff=cutoff, redeem_settlement_days=days,
            creation_fee=None if fee is None else text(fee, 2), min_liquid_units=min_liquid))

    @rule(participant=st.sampled_from(["AP-3", "AP-4"]), per_order=near(st.integers(1, 100), 0, MAX_SHARES, low=0),
          per_day=near(st.integers(1, 100), 0, MAX_SHARES, low=0))
    def register_participant(self, participant, per_order, per_day):
        """A participant (who never deals) with limits at 0, 1 and 10^15 and their neighbours."""
        self.both(M.RegisterParticipant(participant_id=participant, name=participant, eligible_fund_ids=list(FUNDS),
                                        max_units_per_order=per_order, max_units_per_day=per_day))

    @rule(fund=st.sampled_from(["F-3", "F-4"]), unit=near(st.integers(1, 100), 0, MAX_UNIT, low=-1),
          shares=near(st.integers(0, 10**6), 0, MAX_SHARES, low=-1),
          seed=near(st.integers(0, 10**9), 0, MAX_QUANTITY, low=-1),
          seed_cash=near(st.integers(-10**6, 10**6), MAX_MONEY, -MAX_MONEY),
          cap=near(st.integers(0, ONE), 0, ONE, low=0))
    def create_fund(self, fund, unit, shares, seed, seed_cash, cap):
        """A fund (that nobody deals in) with creation unit, shares, seed basket and cap at their limits."""
        self.both(M.CreateFund(
            fund_id=fund, name=fund, base_currency="HKD", creation_unit=unit, creation_custodian_id="CUS-A",
            custodian_priority=["CUS-A"], initial_shares_outstanding=shares, seed_cash_per_unit=text(seed_cash, 2),
            assets=[M.FundAssetSpec(asset="SOL", staking_cap=text(cap, 4), seed_quantity_per_unit=text(seed, 9))]))

    def requires_delivery(self, fund_id: str) -> bool:
        return self.terms(fund_id).require_delivery

    # -- wallets and deliveries (SPEC §14) ----------------------------------------------------
    @rule(participant=st.sampled_from((*PARTICIPANTS, "AP-9")), asset=st.sampled_from(list(DECIMALS)),
          pick=st.integers(0, 2), by=st.sampled_from(ISSUERS))
    def register_wallet(self, participant, asset, pick, by):
        self.both(M.RegisterWallet(participant_id=participant, asset=asset, address=ADDRESSES[asset][pick],
                                   label="desk", principal=by))

    @precondition(lambda self: self.core.list_wallets(""))
    @rule(data=st.data(), by=st.sampled_from(ISSUERS), revoke=st.sampled_from([False, False, False, True]))
    def approve_or_revoke(self, data, by, revoke):
        wallet = data.draw(st.sampled_from(self.core.list_wallets("")))
        if revoke:
            self.both(M.RevokeWallet(wallet_id=wallet.wallet_id, reason="rotated", principal=by))
        else:
            self.both(M.ApproveWallet(wallet_id=wallet.wallet_id, principal=by))

    @precondition(lambda self: self.core.list_orders("", "", None))
    @rule(data=st.data(), share=st.sampled_from([(1, 1), (1, 1), (1, 2), (3, 2), (0, 1)]),
          tx=st.integers(0, 5), confirmations=st.integers(-1, 3), pick=st.sampled_from([None, None, None, 0, 1, 2]))
    def record_delivery(self, data, share, tx, confirmations, pick):
        """Mostly to an ACCEPTED CREATE from the participant's own wallet (pick None), else anything."""
        orders = self.core.list_orders("", "", None)
        creations = [o for o in orders if o.status == M.ACCEPTED and o.side == M.CREATE]
        order = data.draw(st.sampled_from(creations if creations and pick is None else orders))
        line = data.draw(st.sampled_from(order.deliverables))
        q = line.quantity * share[0] // share[1]
        address = ADDRESSES[line.asset][PARTICIPANTS.index(order.participant_id) if pick is None else pick]
        self.both(M.RecordDelivery(order_id=order.order_id, asset=line.asset, quantity=text(q, DECIMALS[line.asset]),
                                   tx_hash=f"tx-{tx}-{line.asset}", from_address=address,
                                   confirmations=confirmations))

    @precondition(lambda self: any(o.legs for o in self.core.list_orders("", "", None)))
    @rule(data=st.data(), share=st.sampled_from([(1, 1), (1, 1), (1, 2), (3, 2)]), tx=st.integers(0, 5),
          other_custodian=st.booleans())
    def record_payout(self, data, share, tx, other_custodian):
        order = data.draw(st.sampled_from([o for o in self.core.list_orders("", "", None) if o.legs]))
        leg = data.draw(st.sampled_from(order.legs))
        q = max(1, leg.quantity * share[0] // share[1])
        self.both(M.RecordPayout(order_id=order.order_id, custodian_id="CUS-C" if other_custodian else leg.custodian_id,
                                 asset=leg.asset, quantity=text(q, DECIMALS[leg.asset]), tx_hash=f"p-{tx}"))

    @precondition(lambda self: self.orders(M.ACCEPTED))
    @rule(data=st.data(), short=st.sampled_from([0, 0, 0, 1]), confirmations=st.integers(0, 3))
    def deliver_or_pay_in_full(self, data, short, confirmations):
        """The whole evidence of one order (one smallest unit short when ``short``), then often SettleOrder."""
        order = data.draw(st.sampled_from(self.orders(M.ACCEPTED)))
        for i, line in enumerate(order.deliverables if order.side == M.CREATE else order.legs):
            q = line.quantity - (short if i == 0 else 0)
            if q <= 0:
                continue
            if order.side == M.CREATE:
                address = ADDRESSES[line.asset][PARTICIPANTS.index(order.participant_id)]
                self.both(M.RecordDelivery(order_id=order.order_id, asset=line.asset,
                                           quantity=text(q, DECIMALS[line.asset]), tx_hash=f"full-{line.asset}",
                                           from_address=address, confirmations=confirmations))
            else:
                self.both(M.RecordPayout(order_id=order.order_id, custodian_id=line.custodian_id, asset=line.asset,
                                         quantity=text(q, DECIMALS[line.asset]), tx_hash=f"full-{i}"))
        if data.draw(st.booleans()):
            self.settle_or_cancel(data, False, order)

    @rule(delivery=st.booleans())
    def require_delivery(self, delivery):
        self.both(M.UpdateFund(fund_id="F-1", require_delivery=delivery))

    # -- the dealing day (SPEC §13) ----------------------------------------------------------
    @rule(offsets=st.lists(st.integers(-2, 20), max_size=4))
    def holidays(self, offsets):
        self.both(M.SetHolidays(calendar_id=CALENDAR, holidays=[self.day(o) for o in offsets]))

    @rule(offset=st.integers(-1, 4))
    def close_day(self, offset):
        self.both(M.CloseDealingDay(calendar_id=CALENDAR, date=self.day(offset), reason="typhoon signal no. 8"))

    @rule(fund=st.sampled_from(["F-1", "F-2", "F-2"]), offset=st.sampled_from([None, None, None, -1, 0, 1]),
          prices=st.lists(st.one_of(*[st.integers(1, 10**14)] * 4, near(st.integers(1, 10**14), 1, MAX_PRICE, low=0)),
                          min_size=3, max_size=3),
          drop=st.sampled_from([None] * 5 + [0, 2]), late=st.sampled_from([False, True, True]))
    def strike(self, fund, offset, prices, drop, late):
        """StrikeNav of the next date to strike (``late``: once its cut-off has passed) or another."""
        dealing_date = self.next_unstruck(fund) if offset is None else self.day(offset)
        if late and offset is None and dealing_date:
            cutoff = CAL.cutoff_seconds(self.terms(fund).dealing_cutoff)
            self.now = max(self.now, CAL.cutoff_ms(self.ref.calendars[CALENDAR], date.fromisoformat(dealing_date),
                                                   cutoff) + 1)
        ticks = [M.PriceTick(asset=a, currency="HKD", price=text(p, 8), as_of_unix_ms=self.now)
                 for a, p in zip(DECIMALS, prices, strict=True)]
        if drop is not None:
            del ticks[drop]
        result = self.both(M.StrikeNav(fund_id=fund, dealing_date=dealing_date or self.day(0), ticks=ticks))
        event(f"strike: {'refused ' + str(self.refused[-1])[:30] if result is REFUSED else 'struck'}")
        if result is not REFUSED:
            if result.nav.fee:
                event("strike: a fee accrued" + (", some taken in kind" if self.events[-1].fee_taken else ""))
            for order in self.core.list_orders(fund, "", None):
                if order.dealing_date == result.nav.dealing_date and order.status == M.ACCEPTED:
                    assert order.priced, order
            self.read("get_official_nav", fund, result.nav.dealing_date)
            self.read("get_pcf", fund, result.pcf.dealing_date)

    @rule(fund=st.sampled_from(FUNDS), low=st.integers(-5, 2), high=st.integers(-2, 5))
    def read_official(self, fund, low, high):
        self.read("list_official_navs", fund, self.day(low), self.day(high))
        self.read("get_pcf", fund, self.day(high))

    @rule(fund=st.sampled_from(FUNDS), participant=st.sampled_from(PARTICIPANTS))
    def capacity(self, fund, participant):
        cap = self.read("get_capacity", participant, fund, self.now)
        if cap is REFUSED:
            return
        for side, got in ((M.CREATE, cap.create), (M.REDEEM, cap.redeem)):
            # GetCapacity assumes approved wallets: the probe names them, or says nothing without them.
            wallets = {w.asset: w.wallet_id for w in self.core.list_wallets(participant) if w.status == M.APPROVED}
            request = M.OrderRequest(fund_id=fund, side=side, units=got.units + 1, client_order_id="probe",
                                     payout_wallet_ids=list(wallets.values()))
            beyond = self.read("check_order", participant, request, self.now)
            if beyond is REFUSED:  # one unit beyond 10^15 shares: refused outright, no reason binds
                assert got.binding_reason == "", got
            elif beyond.reject_reason != M.WALLET_NOT_APPROVED or len(wallets) == len(DECIMALS):
                assert beyond.reject_reason == got.binding_reason

    # -- the fund's books (SPEC §17, §20) -------------------------------------------------------
    @rule(fund=st.sampled_from(["F-1", "F-2", "F-2"]), rate=near(st.integers(0, 20_000), 0, 1, 99_999, 100_000, low=0),
          day_count=st.sampled_from([None, *M.FEE_DAY_COUNTS]), payment=st.sampled_from([None, *M.FEE_PAYMENTS]),
          asset=st.sampled_from(["", *DECIMALS]), custodian=st.sampled_from(["", *CUSTODIANS]),
          waiver=st.one_of(st.none(), st.tuples(near(st.integers(0, 20_000), 0, 99_999, 100_000),
                                                 near(st.integers(0, 10**12), 0, 1, MAX_MONEY), st.integers(-3, 5))),
          staking_fee=st.one_of(st.none(), near(st.integers(0, 10**6 - 1), 0, 1, 10**6 - 1, 10**6)),
          valid=st.booleans(), data=st.data())
    def fee_terms(self, fund, rate, day_count, payment, asset, custodian, waiver, staking_fee, valid, data):
        """Fee terms with the rate at 0, 0.099999 and 0.1, a waiver ending around today, IN_KIND with
        and without its asset and custodian, and a staking fee rate at 0 and just below and at 1; or
        (``valid``) a fee that accrues, in cash or in kind from a holding with something available."""
        if valid:
            rate = data.draw(st.integers(1, 99_999), label="valid rate")
            held = [(c, a) for f, c, a in self.holdings_with("available") if f == fund]
            if payment == M.IN_KIND and held:
                custodian, asset = data.draw(st.sampled_from(held), label="fee holding")
            else:
                payment, asset, custodian = M.CASH, "", ""
        spec = None if waiver is None else M.FeeWaiverSpec(rate=text(waiver[0], 6), nav_limit=text(waiver[1], 2),
                                                           until=self.day(waiver[2]))
        assets = None if staking_fee is None else [
            M.FundAssetSpec(asset=a, staking_cap="1", unbonding_seconds=3600, seed_quantity_per_unit="7",
                            staking_fee_rate=text(staking_fee, 6)) for a in DECIMALS]
        done = self.both(M.UpdateFund(fund_id=fund, management_fee_rate=text(rate, 6), fee_day_count=day_count,
                                      fee_waiver=spec, fee_payment=payment, fee_asset=asset, fee_custodian_id=custodian,
                                      assets=assets)) is not REFUSED
        event(f"fee terms: {'set' if done else 'refused ' + str(self.refused[-1])[:40]}")

    @rule(payment=st.sampled_from(M.FEE_PAYMENTS), day_count=st.sampled_from(M.FEE_DAY_COUNTS),
          prices=st.lists(st.integers(1, 10**14), min_size=3, max_size=3), in_kind=st.booleans(),
          four_eyes=st.booleans(), data=st.data())
    def fee_cycle(self, payment, day_count, prices, in_kind, four_eyes, data):
        """A fee that accrues on F-2 at its next strike, then paid (or not) as pay_fee does."""
        self.fee_terms("F-2", 0, day_count, payment, "", "", None, None, True, data)
        self.strike("F-2", None, prices, None, True)
        if "F-2" in self.owing():
            self.pay_fee(data, in_kind, four_eyes)

    # -- storage tiers (SPEC §18) ------------------------------------------------------------------
    @precondition(lambda self: self.events)
    @rule(data=st.data(), tiers=st.permutations(M.TIERS), held=st.booleans())
    def sweep(self, data, tiers, held):
        """A Sweep of what the from tier holds, a smallest unit more or less, or any quantity."""
        holdings = self.holdings_with("available") if held else []
        if holdings:
            fund, custodian, asset = data.draw(st.sampled_from(holdings), label="holding")
        else:
            fund, custodian, asset = (data.draw(st.sampled_from(values), label=name) for name, values in
                                      (("fund", FUNDS), ("custodian", CUSTODIANS), ("asset", list(DECIMALS))))
        row, _ = self.figures(fund, custodian, asset)
        source, target = tiers[0], data.draw(st.sampled_from([tiers[0], tiers[1], tiers[2], tiers[1]]), label="to")
        has = getattr(row.tiers, source.lower()) if row.tiers else 0
        q = data.draw(near(st.integers(1, 10**6), has, low=0), label="quantity")
        done = self.both(M.Sweep(fund_id=fund, custodian_id=custodian, asset=asset, quantity=text(q, DECIMALS[asset]),
                                 from_tier=source, to_tier=target)) is not REFUSED
        event(f"sweep: {'done' if done else 'refused ' + str(self.refused[-1])[:30]}")

    @rule(custodian=st.sampled_from(CUSTODIANS), ratio=near(st.integers(0, ONE), 0, 9_800, ONE, low=0),
          seconds=near(st.sampled_from([0, 60, 3_600, 86_400]), 0, MAX_SECONDS, low=-1))
    def storage_policy(self, custodian, ratio, seconds):
        """A custodian's storage ratio at 0, 0.98 and 1 and beyond, max_hot_seconds at 0 and 10^9."""
        self.both(M.SetStoragePolicy(custodian_id=custodian, min_cold_ratio=text(ratio, 4), max_hot_seconds=seconds))

    @rule(fund=st.sampled_from(FUNDS), asset=st.sampled_from(list(DECIMALS)),
          ratio=st.one_of(st.none(), near(st.integers(0, ONE), 0, ONE, low=0)))
    def fund_cold_ratio(self, fund, asset, ratio):
        """A fund asset's own min_cold_ratio ("" : the custodian's)."""
        self.both(M.UpdateFund(fund_id=fund, assets=[
            M.FundAssetSpec(asset=asset, staking_cap="1", unbonding_seconds=3600, seed_quantity_per_unit="7",
                            min_cold_ratio="" if ratio is None else text(ratio, 4))]))

    # -- reconciliation (SPEC §19) -----------------------------------------------------------------
    @precondition(lambda self: self.events)
    @rule(fund=st.sampled_from(FUNDS), custodian=st.sampled_from(CUSTODIANS), data=st.data(),
          back=st.sampled_from([0, 0, 0, 1, 60_000, -1]), reference=st.integers(0, 6))
    def statement(self, fund, custodian, data, back, reference):
        """A statement of the book now (or a little before, or in the future): each line as the book has
        it, a smallest unit off, or left out; a tier now and then; a reference reused now and then."""
        book = self.ref.statement_book(fund, custodian, self.now - max(back, 0))
        lines = []
        for line in book.lines:
            change = data.draw(st.sampled_from([0, 0, 0, 1, -1, None]), label=f"{line.asset} {line.bucket} {line.tier}")
            if change is None or line.quantity + change < 0 or (line.tier and not data.draw(st.booleans())):
                continue
            lines.append(M.StatementLineSpec(asset=line.asset, bucket=line.bucket, tier=line.tier,
                                             quantity=text(line.quantity + change, DECIMALS[line.asset])))
        result = self.both(M.RecordStatement(fund_id=fund, custodian_id=custodian, as_of=self.now - back,
                                             source=M.CUSTODIAN, reference=f"st-{reference}", lines=lines))
        if result is REFUSED:
            event(f"statement: refused {str(self.refused[-1])[:30]}")
        else:
            event(f"statement: {'ignored' if result.ignored else 'breaks' if result.opened else 'agreed'}"
                  f"{', resolving' if result.resolved else ''}")
        self.read("list_breaks", fund, "")

    @precondition(lambda self: self.events and self.ref.list_breaks("", M.OPEN))
    @rule(data=st.data(), four_eyes=st.booleans())
    def resolve_break(self, data, four_eyes):
        """ResolveBreak of an open break: its difference back, 0, or a smallest unit beyond; under four
        eyes or not."""
        b = data.draw(st.sampled_from(self.ref.list_breaks("", M.OPEN)), label="break")
        delta = data.draw(st.sampled_from([-b.difference, 0, -b.difference - 1, b.difference]), label="adjustment")
        command = M.ResolveBreak(break_id=b.break_id, adjustment=text(delta, DECIMALS[b.asset]), comment="checked",
                                 principal="ops")
        if four_eyes:
            proposal = self.both(M.ProposeInstruction(command=command, principal="ops"))
            if proposal is not REFUSED:
                decided = self.both(M.ApproveInstruction(instruction_id=proposal.instruction_id, principal="ops-2"))
                event(f"resolve break, four eyes: {getattr(decided, 'status', 'refused')}")
        else:
            done = self.both(command) is not REFUSED
            event(f"resolve break: {'done' if done else 'refused ' + str(self.refused[-1])[:30]}")

    @rule(fund=st.sampled_from(FUNDS), hold=st.booleans())
    def hold_on_break(self, fund, hold):
        self.both(M.UpdateFund(fund_id=fund, hold_redemptions_on_break=hold))

    def accrued(self, fund: str) -> Fraction:
        return Fraction(self.fund_state(fund).accrued_fees, 10**ACCRUED_DP)

    def owing(self) -> list[str]:
        """The funds with an accrued fee or a fee payable."""
        return [f.terms.fund_id for f in self.ref.state(self.now).funds if f.accrued_fees or f.fee_payable]

    @precondition(lambda self: self.events and self.owing())
    @rule(data=st.data(), in_kind=st.booleans(), four_eyes=st.booleans())
    def pay_fee(self, data, in_kind, four_eyes):
        """PayFee of the whole accrued fee (or fee payable), a smallest unit or a cent above or below it;
        proposed under four eyes, then approved by either issuer, or rejected."""
        fund = data.draw(st.sampled_from(self.owing()), label="fund")
        if in_kind:
            payable = dict(self.fund_state(fund).fee_payable)
            asset = data.draw(st.sampled_from(sorted(payable) or list(DECIMALS)), label="asset")
            q = data.draw(near(st.integers(1, max(payable.get(asset, 0), 1)), payable.get(asset, 0), low=1),
                          label="quantity")
            command = M.PayFee(fund_id=fund, asset=asset, quantity=text(q, DECIMALS[asset]), tx_hash="0xfee",
                               to_address=ADDRESSES[asset][0])
        else:
            whole = int(self.accrued(fund) * 100)
            amount = data.draw(near(st.integers(1, max(whole, 1)), whole, low=1), label="cents")
            command = M.PayFee(fund_id=fund, amount=text(amount, 2))
        if not four_eyes:
            event(f"PayFee {'in kind' if in_kind else 'cash'}: "
                  f"{'refused ' + str(self.refused[-1])[:30] if self.both(command) is REFUSED else 'paid'}")
            return
        proposal = self.both(M.ProposeInstruction(command=command, principal="ops"))
        if proposal is REFUSED:
            return
        self.now += data.draw(st.sampled_from([0, 1, 86_400_000]), label="wait")
        decision = data.draw(st.sampled_from(["approve", "approve", "self", "reject"]), label="decision")
        if decision == "reject":
            self.both(M.RejectInstruction(instruction_id=proposal.instruction_id, reason="withdrawn", principal="ops"))
        else:
            by = "ops" if decision == "self" else "ops-2"
            decided = self.both(M.ApproveInstruction(instruction_id=proposal.instruction_id, principal=by))
            event(f"instruction approved by {decision}: {getattr(decided, 'status', 'refused')}")
        self.read("list_instructions", "")

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def same_figures(self):
        if not self.events:
            return
        assert self.core.state(self.now) == self.ref.state(self.now)
        for fund in FUNDS:
            for method in ("get_nav", "get_basket", "get_holdings"):
                self.read(method, fund, self.now)
        self.read("list_orders", "", "", None, self.now)  # with overdue computed now
        self.read("list_funds")
        self.read("list_prices")
        self.read("list_participants")

    @invariant()
    def ledgers_own_invariants(self):
        """Each ledger's check_invariants() (etf_engine/ledger.py; InvariantBroken names the one broken)."""
        if self.events:
            self.core.check_invariants(self.now)
            self.ref.check_invariants(self.now)

    @invariant()
    def dates_and_pricing(self):
        for order in self.core.list_orders("", "", None):
            assert order.status != M.SETTLED or order.priced, order
            if order.status == M.ACCEPTED and order.dealing_date:
                assert order.settlement_date >= order.dealing_date, order
            if order.status == M.REJECTED:
                assert order.settlement_date == "", order

    @invariant()
    def no_negative_bucket_and_conserved(self):
        state = self.core.state(self.now)
        held: dict[tuple[str, str], int] = defaultdict(int)
        for f in state.funds:
            for h in f.holdings:
                assert min(h.available, h.reserved, h.staked) >= 0 and all(q > 0 for _, q in h.lots)
                held[(f.terms.fund_id, h.asset)] += h.available + h.reserved + h.staked + sum(q for _, q in h.lots)
        for key in set(held) | set(self.flow):
            assert held[key] == self.flow[key], key

    @invariant()
    def breaks_as_opened(self):
        """A break's difference is book - statement; a resolved one has a time; none ever goes away."""
        breaks = self.core.list_breaks("", "")
        assert [b.break_id for b in breaks] == [f"BRK-{i:08d}" for i in range(1, len(breaks) + 1)]
        for b in breaks:
            assert b.difference == b.book - b.statement and b.difference != 0, b
            assert (b.status == M.RESOLVED) == (b.resolved_at > 0), b

    @invariant()
    def tiers_add_up(self):
        """cold + warm + hot = available + reserved per holding, released lots in (SPEC §18)."""
        for f in self.core.state(self.now).funds:
            for h in f.holdings:
                assert 0 <= h.warm and 0 <= h.hot and h.warm + h.hot <= h.available + h.reserved, (f.terms.fund_id, h)

    @invariant()
    def fees_in_the_nav(self):
        """accrued_fees >= 0; fee_payable only what was taken in kind less what was paid; NAV = holdings x
        price + cash - accrued_fees, to the cent (SPEC §17)."""
        for f in self.core.state(self.now).funds:
            fund_id = f.terms.fund_id
            assert f.accrued_fees >= 0, fund_id
            assert {k: q for k, q in self.fee_payable.items() if k[0] == fund_id and q} == \
                {(fund_id, a): q for a, q in f.fee_payable}
            nav = self.core.get_nav(fund_id, self.now).nav
            if nav is not None:
                assert nav == round(exact_nav(self.core, fund_id, self.now) * 100), fund_id

    def teardown(self):
        if not self.events or self.diverged:
            return
        for ledger_class in (core.Ledger, ReferenceLedger):
            replayed = ledger_class()
            for recorded in self.events:
                replayed.apply(recorded)
            assert replayed.state(self.now) == self.core.state(self.now)


def nav_per_share(ledger, fund_id: str, now: int) -> Fraction | None:
    shares = ledger.get_nav(fund_id, now).shares_outstanding
    return exact_nav(ledger, fund_id, now) / shares if shares else None


def exact_nav(ledger, fund_id: str, now: int) -> Fraction:
    state = ledger.state(now)
    prices = {(p.asset, p.currency): Fraction(p.price, 10**8) for p in state.prices}
    for f in state.funds:
        if f.terms.fund_id == fund_id:
            total = Fraction(f.cash, 100) - Fraction(f.accrued_fees, 10**ACCRUED_DP)
            for h in f.holdings:
                q = h.available + h.reserved + h.staked + sum(q for _, q in h.lots)
                total += Fraction(q, 10 ** DECIMALS[h.asset]) * prices[(h.asset, f.terms.base_currency)]
            return total
    raise KeyError(fund_id)


# Longer runs: ETF_PROPERTY_EXAMPLES=1500 ETF_PROPERTY_STEPS=60 python -m pytest tests/test_property.py
CoreAgainstReference.TestCase.settings = settings(
    max_examples=int(os.environ.get("ETF_PROPERTY_EXAMPLES", "60")),
    stateful_step_count=int(os.environ.get("ETF_PROPERTY_STEPS", "40")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoreAgainstReference = CoreAgainstReference.TestCase


# -- each mismatch found, alone ----------------------------------------------------------------------
# One fund F of one asset COIN (0 decimals: quantities read as written) at custodian C, creation unit 1,
# cap 1, buffer 0, unbonding 3600 s; participant AP (20 units per order, 60 per day). Each test runs its
# commands on both ledgers (all but the last must be accepted by both) and compares the last outcome
# as the property test does.
COIN_WORLD = [
    M.RegisterAsset(symbol="COIN", decimals=0),
    M.RegisterCustodian(custodian_id="C", name="C", licence_number="L-C", licence_status="ACTIVE",
                        licence_expires_at=T0 // 1000 + 86_400),
    M.RegisterParticipant(participant_id="AP", name="AP", eligible_fund_ids=["F"], max_units_per_order=20,
                          max_units_per_day=60),
]


def coin_fund(**terms) -> M.CreateFund:
    return M.CreateFund(**{"fund_id": "F", "name": "F", "base_currency": "HKD", "creation_unit": 1,
                           "creation_custodian_id": "C", "custodian_priority": ["C"],
                           "assets": [M.FundAssetSpec(asset="COIN", staking_cap="1", unbonding_seconds=3600)]} | terms)


def coin(command, quantity: int):
    """Stake, Unstake or RecordStakingReward of ``quantity`` COIN at C; AdjustHolding by it."""
    if command is M.AdjustHolding:
        return M.AdjustHolding(fund_id="F", custodian_id="C", asset="COIN", delta=str(quantity))
    return command(fund_id="F", custodian_id="C", asset="COIN", quantity=str(quantity))


def last_outcomes(*steps) -> tuple:
    """Run ``steps`` (commands, or (ms after T0, command)) on a fresh core and a fresh reference; every
    step but the last must be accepted by both. Returns refusal() of the last on each: (core, reference)."""
    found = []
    for ledger in (core.Ledger(), ReferenceLedger()):
        for i, step in enumerate(steps):
            at, command = step if isinstance(step, tuple) else (0, step)
            outcome = attempt(ledger.execute, command, T0 + at)
            if i < len(steps) - 1:
                assert not isinstance(outcome, EngineError), (type(ledger).__name__, command, outcome)
        found.append(refusal(outcome))
    return tuple(found)


def test_agree_participant_limit_beyond_shares():
    core_out, ref_out = last_outcomes(M.RegisterParticipant(
        participant_id="AP-2", name="AP-2", eligible_fund_ids=[], max_units_per_order=10**15 + 1,
        max_units_per_day=1))
    assert core_out == ref_out


def test_agree_min_liquid_units_beyond_shares():
    core_out, ref_out = last_outcomes(*COIN_WORLD, coin_fund(), M.UpdateFund(fund_id="F", min_liquid_units=10**15 + 1))
    assert core_out == ref_out


def test_agree_fund_money_beyond_bound():
    beyond = "10000000000000000000000000000.01"
    for change in ({"creation_fee": beyond}, {"redemption_fee": beyond}, {"seed_cash_per_unit": "-" + beyond}):
        core_out, ref_out = last_outcomes(*COIN_WORLD, coin_fund(), M.UpdateFund(fund_id="F", **change))
        assert core_out == ref_out, change


def test_agree_cash_delta_beyond_bound():
    core_out, ref_out = last_outcomes(*COIN_WORLD, coin_fund(),
                                      M.AdjustCash(fund_id="F", delta="10000000000000000000000000000.00"),
                                      M.AdjustCash(fund_id="F", delta="-10000000000000000000000000000.01"))
    assert core_out == ref_out


def test_agree_cash_balance_beyond_bound():
    core_out, ref_out = last_outcomes(*COIN_WORLD, coin_fund(),
                                      M.AdjustCash(fund_id="F", delta="10000000000000000000000000000.00"),
                                      M.AdjustCash(fund_id="F", delta="0.01"))
    assert core_out == ref_out


def test_agree_create_fund_exists_before_fields():
    core_out, ref_out = last_outcomes(*COIN_WORLD, coin_fund(), coin_fund(seed_cash_per_unit="1.234"))
    assert core_out == ref_out


def test_agree_create_fund_shares_before_assets():
    core_out, ref_out = last_outcomes(*COIN_WORLD, coin_fund(
        initial_shares_outstanding=-1, assets=[M.FundAssetSpec(asset="COIN", staking_cap="1.5")]))
    assert core_out == ref_out


def test_agree_settle_names_field():
    create = M.SubmitOrder(participant_id="AP", request=M.OrderRequest(fund_id="F", side=M.CREATE, units=2,
                                                                       client_order_id="c-1"))
    price = M.PublishPrices(ticks=[M.PriceTick(asset="COIN", currency="HKD", price="1", as_of_unix_ms=T0)])
    settle = M.SettleOrder(order_id="ORD-00000001")
    shares = last_outcomes(*COIN_WORLD, coin_fund(initial_shares_outstanding=10**15 - 1), price, create, settle)
    bucket = last_outcomes(*COIN_WORLD, coin_fund(initial_shares_outstanding=1), coin(M.AdjustHolding, 10**30),
                           price, create, settle)  # the basket: 10^30 COIN per unit
    assert shares[0] == shares[1] and bucket[0] == bucket[1], (shares, bucket)


def test_agree_capacity_at_share_limit():
    ledgers = (core.Ledger(), ReferenceLedger())
    price = M.PublishPrices(ticks=[M.PriceTick(asset="COIN", currency="HKD", price="1", as_of_unix_ms=T0)])
    steps = [*COIN_WORLD[:2], M.RegisterParticipant(participant_id="AP", name="AP", eligible_fund_ids=["F"],
                                                    max_units_per_order=10**15, max_units_per_day=10**15),
             coin_fund(), price]
    for ledger in ledgers:
        for command in steps:
            ledger.execute(command, T0)
    core_cap, ref_cap = (ledger.get_capacity("AP", "F", T0) for ledger in ledgers)
    assert core_cap == ref_cap


def test_agree_unstake_counts_matured_lot():
    core_out, ref_out = last_outcomes(
        *COIN_WORLD, coin_fund(), coin(M.AdjustHolding, 10**30), coin(M.Stake, 10**30), coin(M.Unstake, 10**30),
        coin(M.AdjustHolding, 10**30), coin(M.Stake, 10**30),  # staked 10^30, unbonding 10^30 until T0 + 3600 s
        (3_600_000, coin(M.Unstake, 1)))
    assert core_out == ref_out


def test_agree_reward_misses_matured_lot():
    core_out, ref_out = last_outcomes(
        *COIN_WORLD, coin_fund(), coin(M.AdjustHolding, 10), coin(M.Stake, 10), coin(M.Unstake, 10),
        (3_600_000, coin(M.RecordStakingReward, 10**30 - 5)))
    assert core_out == ref_out


# -- mismatches found and fixed (issue 18's two), kept as plain tests ----------------------------------
def test_stake_past_limit_breaching_cap_or_buffer():
    """A Stake that would take staked past 10^30 and breaches the cap (or the buffer): SPEC §6's reason,
    from both (the range check of §1 comes after §6's checks)."""
    loaded = [*COIN_WORLD, coin_fund(), coin(M.AdjustHolding, 10**30), coin(M.Stake, 10**30), coin(M.AdjustHolding, 10)]
    cap = last_outcomes(*loaded, M.UpdateFund(fund_id="F", assets=[M.FundAssetSpec(asset="COIN", staking_cap="0.5")]),
                        coin(M.Stake, 1))
    buffer = last_outcomes(*loaded, M.UpdateFund(fund_id="F", assets=[M.FundAssetSpec(asset="COIN", staking_cap="1",
                                                                                     liquidity_buffer="1")]),
                           coin(M.Stake, 1))
    assert cap == ((FAILED_PRECONDITION, "STAKING_CAP_BREACH"),) * 2
    assert buffer == ((FAILED_PRECONDITION, "LIQUIDITY_BUFFER_BREACH"),) * 2


@pytest.mark.parametrize("spoil", ["units", "side", "client_order_id", "fund_id"])
def test_batch_names_the_bad_items_field(spoil):
    """SubmitOrders refuses a bad item naming its index and field, the same in both (SPEC §5, §1)."""
    good = M.OrderRequest(fund_id="F", side=M.CREATE, units=1, client_order_id="c-1")
    bad = msgspec.structs.replace(good, **({"client_order_id": "c-2"} | {spoil: SPOILED[spoil][0]}))
    batch = M.SubmitOrders(participant_id="AP", requests=[good, bad])
    core_out, ref_out = last_outcomes(*COIN_WORLD, coin_fund(), batch)
    assert core_out == ref_out
    named = "requests[1].fund 'F-9' not found" if spoil == "fund_id" else f"requests[1].{spoil}"
    assert core_out[1] == named, core_out
