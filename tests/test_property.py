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
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import date, timedelta
from fractions import Fraction

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from etf_engine import calendar as CAL
from etf_engine import model as M
from etf_engine.errors import EngineError

pytestmark = pytest.mark.unit

core = pytest.importorskip("etf_engine._core")
reference = pytest.importorskip("etf_engine.reference")

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
quantities = st.integers(min_value=1, max_value=10**6)
REFUSED = object()


def text(q: int, decimals: int) -> str:
    """Smallest units -> decimal text with the asset's decimals."""
    sign = "-" if q < 0 else ""
    whole, frac = divmod(abs(q), 10**decimals)
    return f"{sign}{whole}.{str(frac).rjust(decimals, '0')}" if decimals else f"{sign}{whole}"


class CoreAgainstReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = core.Ledger()
        self.ref = reference.ReferenceLedger()
        self.now = T0
        self.events: list[M.Event] = []
        self.flow: dict[tuple[str, str], int] = defaultdict(int)  # (fund, asset) -> in - out
        self.nps_at_acceptance: dict[str, Fraction] = {}

    # -- driving both ------------------------------------------------------------------------
    def both(self, command):
        """Execute on both ledgers; both refuse with the same code or both return the same.
        Returns REFUSED or the result."""
        outcomes = []
        for ledger in (self.core, self.ref):
            try:
                outcomes.append(ledger.execute(command, self.now))
            except EngineError as error:
                outcomes.append(error.code)
        (core_out, ref_out) = outcomes
        if isinstance(core_out, str) or isinstance(ref_out, str):
            assert core_out == ref_out, (command, core_out, ref_out)
            return REFUSED
        assert core_out[0] == ref_out[0], command
        assert core_out[1] == ref_out[1], command
        self.events.extend(core_out[1])
        return core_out[0]

    def read(self, method: str, *args):
        outcomes = []
        for ledger in (self.core, self.ref):
            try:
                outcomes.append(getattr(ledger, method)(*args))
            except EngineError as error:
                outcomes.append(error.code)
        assert outcomes[0] == outcomes[1], (method, args, outcomes)
        return outcomes[0]

    def orders(self, status: str) -> list[M.Order]:
        return self.core.list_orders("", status, None)

    # -- set-up ------------------------------------------------------------------------------
    @initialize(
        caps=st.lists(st.integers(0, 10_000), min_size=3, max_size=3),
        buffers=st.lists(st.integers(0, 5_000), min_size=3, max_size=3),
        unit=st.sampled_from([1, 10, 50_000]),
        min_liquid=st.integers(0, 2),
        shares=st.sampled_from([0, 1_000_000]),
        holdings=st.lists(st.integers(0, 10**12), min_size=9, max_size=9),
        weekend=st.sampled_from([None, [], [5, 6, 7]]),
        holidays=st.lists(st.integers(0, 12), max_size=3, unique=True),
        cutoff=st.sampled_from(["16:00", "08:00:01", "23:59:59", "00:00"]),
        settlement=st.tuples(st.integers(0, 3), st.integers(0, 3)),
        pricing=st.sampled_from(M.PRICINGS),
        confirmations=st.lists(st.integers(0, 2), min_size=3, max_size=3),
        delivery=st.booleans(),
    )
    def setup(self, caps, buffers, unit, min_liquid, shares, holdings, weekend, holidays, cutoff, settlement,
              pricing, confirmations, delivery):
        self.both(M.RegisterCalendar(calendar_id=CALENDAR, time_zone="Asia/Hong_Kong", weekend_days=weekend,
                                     holidays=[self.day(d) for d in holidays]))
        for (symbol, decimals), needed in zip(DECIMALS.items(), confirmations, strict=True):
            self.both(M.RegisterAsset(symbol=symbol, decimals=decimals, min_confirmations=needed))
        for cid in CUSTODIANS:
            self.both(M.RegisterCustodian(custodian_id=cid, name=cid, licence_number="L-" + cid,
                                          licence_status="ACTIVE", licence_expires_at=T0 // 1000 + 10 * 86_400))
        for pid in PARTICIPANTS:
            self.both(M.RegisterParticipant(participant_id=pid, name=pid, eligible_fund_ids=list(FUNDS),
                                            max_units_per_order=20, max_units_per_day=60))
        for fund_id in FUNDS:
            self.both(M.CreateFund(
                fund_id=fund_id, name=fund_id, base_currency="HKD", creation_unit=unit,
                creation_custodian_id="CUS-A", custodian_priority=["CUS-B", "CUS-A"],
                min_liquid_units=min_liquid, initial_shares_outstanding=shares, seed_cash_per_unit="12.34",
                require_delivery=delivery and fund_id == "F-1",
                redemption_fee="100", creation_fee="50.5",
                assets=[M.FundAssetSpec(asset=a, staking_cap=text(c, 4), liquidity_buffer=text(b, 4),
                                        unbonding_seconds=3600, seed_quantity_per_unit=text(7 * 10**d, d))
                        for (a, d), c, b in zip(DECIMALS.items(), caps, buffers, strict=True)],
                **({} if fund_id == "F-1" else {
                    "calendar_id": CALENDAR, "dealing_cutoff": cutoff, "create_settlement_days": settlement[0],
                    "redeem_settlement_days": settlement[1], "pricing": pricing}),
            ))
            for i, q in enumerate(holdings):
                asset = list(DECIMALS)[i % 3]
                if q:
                    self.adjust(fund_id, CUSTODIANS[i // 3], asset, q)
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
        terms = next(t for t, *_ in self.core.state(self.now)["funds"] if t["fund_id"] == fund_id)
        if not terms["calendar_id"]:
            return None
        info = self.core.get_calendar(CALENDAR)
        cal = CAL.Calendar(CALENDAR, info.time_zone, frozenset(map(date.fromisoformat, info.holidays)),
                           frozenset(info.weekend_days), {date.fromisoformat(c.date): c.reason for c in info.closed})
        struck = {nav.dealing_date for nav in self.core.list_official_navs(fund_id, "", "")}
        day = date.fromisoformat(terms["first_dealing_date"])
        while not CAL.is_dealing_day(cal, day) or day.isoformat() in struck:
            day += timedelta(days=1)
        return day.isoformat()

    def adjust(self, fund_id: str, custodian_id: str, asset: str, q: int) -> None:
        command = M.AdjustHolding(fund_id=fund_id, custodian_id=custodian_id, asset=asset,
                                  delta=text(q, DECIMALS[asset]))
        if self.both(command) is not REFUSED:
            self.flow[(fund_id, asset)] += q

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

    @rule(fund=st.sampled_from(FUNDS), participant=st.sampled_from(PARTICIPANTS),
          side=st.sampled_from(M.SIDES), units=st.integers(1, 25), key=st.integers(0, 30), data=st.data())
    def submit(self, fund, participant, side, units, key, data):
        request = M.OrderRequest(fund_id=fund, side=side, units=units, client_order_id=f"c-{key}",
                                 payout_wallet_ids=self.wallet_ids(data, participant))
        checked = self.read("check_order", participant, request, self.now)
        known = self.core.list_orders("", "", participant)
        order = self.both(M.SubmitOrder(participant_id=participant, request=request))
        if order is REFUSED:
            return
        assert checked == msgspec.structs.replace(order, order_id="")
        if order.status == M.ACCEPTED and order not in known:
            self.nps_at_acceptance[order.order_id] = nav_per_share(self.core, fund, self.now)

    @rule(participant=st.sampled_from(PARTICIPANTS), data=st.data())
    def submit_batch(self, participant, data):
        requests = data.draw(st.lists(st.builds(
            M.OrderRequest, fund_id=st.sampled_from(FUNDS), side=st.sampled_from(M.SIDES),
            units=st.integers(0, 6), client_order_id=st.integers(0, 40).map(lambda k: f"c-{k}")),
            min_size=1, max_size=5))
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
                needed = {a: n for a, _d, n, _chain in self.core.state(self.now)["assets"]}
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

    @rule(fund=st.sampled_from(FUNDS), custodian=st.sampled_from(CUSTODIANS), asset=st.sampled_from(list(DECIMALS)),
          q=quantities, kind=st.sampled_from(["stake", "unstake", "reward", "slash", "add", "remove"]))
    def instruction(self, fund, custodian, asset, q, kind):
        if kind in ("add", "remove"):
            self.adjust(fund, custodian, asset, q if kind == "add" else -q)
            return
        command = {"stake": M.Stake, "unstake": M.Unstake, "reward": M.RecordStakingReward,
                   "slash": M.RecordSlashing}[kind]
        done = self.both(command(fund_id=fund, custodian_id=custodian, asset=asset,
                                 quantity=text(q, DECIMALS[asset]))) is not REFUSED
        if done:
            if kind == "reward":
                self.flow[(fund, asset)] += q
            elif kind == "slash":
                self.flow[(fund, asset)] -= q

    @rule(fund=st.sampled_from(FUNDS), cents=st.integers(-10**6, 10**6).filter(bool))
    def cash(self, fund, cents):
        self.both(M.AdjustCash(fund_id=fund, delta=text(cents, 2)))

    @rule(ms=st.sampled_from([1, 999, 30_000, 60_000, 3_600_000, 4 * 3_600_000, 86_400_000]))
    def time_passes(self, ms):
        self.now += ms

    @rule(asset=st.sampled_from(list(DECIMALS)), cents=st.integers(1, 10**14), back=st.integers(0, 120_000))
    def tick(self, asset, cents, back):
        self.both(M.PublishPrices(ticks=[M.PriceTick(asset=asset, currency="HKD", price=text(cents, 8),
                                                     as_of_unix_ms=self.now - back)]))

    @rule(custodian=st.sampled_from(CUSTODIANS), status=st.sampled_from(M.LICENCE_STATUSES),
          days=st.integers(-1, 30))
    def licence(self, custodian, status, days):
        self.both(M.SetCustodianLicence(custodian_id=custodian, licence_status=status,
                                        licence_expires_at=self.now // 1000 + days * 86_400))

    @rule(fund=st.sampled_from(FUNDS), asset=st.sampled_from(list(DECIMALS)), cap=st.integers(0, 10_000),
          buffer=st.integers(0, 10_000), status=st.sampled_from(M.DEALING_STATUSES),
          calendar=st.sampled_from([None, None, "", CALENDAR]), pricing=st.sampled_from([None, None, *M.PRICINGS]),
          cutoff=st.sampled_from([None, "16:00", "12:00:30"]), days=st.sampled_from([None, 0, 1, 5]))
    def update_fund(self, fund, asset, cap, buffer, status, calendar, pricing, cutoff, days):
        self.both(M.UpdateFund(fund_id=fund, dealing_status=status, assets=[
            M.FundAssetSpec(asset=asset, staking_cap=text(cap, 4), liquidity_buffer=text(buffer, 4),
                            unbonding_seconds=3600, seed_quantity_per_unit="7")],
            calendar_id=calendar, pricing=pricing, dealing_cutoff=cutoff, redeem_settlement_days=days))

    def requires_delivery(self, fund_id: str) -> bool:
        return next(t for t, *_ in self.core.state(self.now)["funds"] if t["fund_id"] == fund_id)["require_delivery"]

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

    @rule(fund=st.sampled_from(FUNDS), offset=st.sampled_from([None, None, None, -1, 0, 1]),
          prices=st.lists(st.integers(1, 10**14), min_size=3, max_size=3), drop=st.sampled_from([None] * 5 + [0, 2]))
    def strike(self, fund, offset, prices, drop):
        dealing_date = self.next_unstruck(fund) if offset is None else self.day(offset)
        ticks = [M.PriceTick(asset=a, currency="HKD", price=text(p, 8), as_of_unix_ms=self.now)
                 for a, p in zip(DECIMALS, prices, strict=True)]
        if drop is not None:
            del ticks[drop]
        result = self.both(M.StrikeNav(fund_id=fund, dealing_date=dealing_date or self.day(0), ticks=ticks))
        if result is not REFUSED:
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
        for side, got in ((M.CREATE, cap.create), (M.REDEEM, cap.redeem)):
            # GetCapacity assumes approved wallets: the probe names them, or says nothing without them.
            wallets = {w.asset: w.wallet_id for w in self.core.list_wallets(participant) if w.status == M.APPROVED}
            request = M.OrderRequest(fund_id=fund, side=side, units=got.units + 1, client_order_id="probe",
                                     payout_wallet_ids=list(wallets.values()))
            beyond = self.core.check_order(participant, request, self.now)
            if beyond.reject_reason != M.WALLET_NOT_APPROVED or len(wallets) == len(DECIMALS):
                assert beyond.reject_reason == got.binding_reason

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
        for terms, _cash, _shares, rows in state["funds"]:
            for _custodian, asset, available, reserved, staked, lots in rows:
                assert min(available, reserved, staked) >= 0 and all(q > 0 for _, q in lots)
                held[(terms["fund_id"], asset)] += available + reserved + staked + sum(q for _, q in lots)
        for key in set(held) | set(self.flow):
            assert held[key] == self.flow[key], key

    def teardown(self):
        if not self.events:
            return
        for ledger_class in (core.Ledger, reference.ReferenceLedger):
            replayed = ledger_class()
            for event in self.events:
                replayed.apply(event)
            assert replayed.state(self.now) == self.core.state(self.now)


def nav_per_share(ledger, fund_id: str, now: int) -> Fraction | None:
    shares = ledger.get_nav(fund_id, now).shares_outstanding
    return exact_nav(ledger, fund_id, now) / shares if shares else None


def exact_nav(ledger, fund_id: str, now: int) -> Fraction:
    state = ledger.state(now)
    prices = {(a, c): Fraction(p, 10**8) for a, c, p, _ in state["prices"]}
    for terms, cash, _shares, rows in state["funds"]:
        if terms["fund_id"] == fund_id:
            total = Fraction(cash, 100)
            for _c, asset, available, reserved, staked, lots in rows:
                q = available + reserved + staked + sum(q for _, q in lots)
                total += Fraction(q, 10 ** DECIMALS[asset]) * prices[(asset, terms["base_currency"])]
            return total
    raise KeyError(fund_id)


# Longer runs: ETF_PROPERTY_EXAMPLES=1500 ETF_PROPERTY_STEPS=60 python -m pytest tests/test_property.py
CoreAgainstReference.TestCase.settings = settings(
    max_examples=int(os.environ.get("ETF_PROPERTY_EXAMPLES", "60")),
    stateful_step_count=int(os.environ.get("ETF_PROPERTY_STEPS", "40")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoreAgainstReference = CoreAgainstReference.TestCase
