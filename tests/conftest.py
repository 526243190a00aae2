"""Shared fixtures: the ``ledger`` fixture (both implementations of ``etf_engine.ledger.Ledger``) and a
small ``Desk`` that builds a sample fund and drives a ledger with readable one-liners.

The sample world (``sample(ledger)``), all at NOW (noon UTC, 2026-01-01):
- assets BTC (8 decimals), ETH (18), SOL (9; registered but held by no fund)
- custodians CUS-A, CUS-B, CUS-C, CUS-D, all ACTIVE until EXPIRES (30 days after NOW)
- participants AP-1 (F1, F2), AP-2 (F1), AP-3 (F2 only); each 50 units per order, 100 per day
- fund F1 (HKD): creation unit 100, 1000 shares outstanding, creation custodian CUS-A,
  custodian priority CUS-B, CUS-A; holds 10 BTC and 100 ETH at CUS-A; cash 0; prices at NOW:
  BTC 500000, ETH 20000. So quantity_per_unit is 1 BTC and 10 ETH, NAV 7,000,000.00,
  nav_per_share 7000.0000, cash_component 0.00. The assets are declared ETH first, to make sure
  every "symbol order" really sorts.
- fund F2 (HKD): creation unit 100, no shares, seed basket 1 BTC + 10 ETH + 0.00 cash.
"""

from __future__ import annotations

import os

# The tests fork (subprocess: pg_ctl, servers) while gRPC calls of this process are in flight; gRPC's
# fork handlers then may wait on those calls' threads in the child. The children exec at once and use
# no gRPC of ours, so the handlers are not needed (a CI run hung once in tests/test_pg_failover.py).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import itertools
from datetime import date
from typing import Any

import msgspec
import pytest

from etf_engine import model as m
from etf_engine.errors import EngineError

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a UTC midnight
NOW = T0 + 12 * 3_600_000  # noon of that day (a whole second)
EXPIRES = NOW // 1000 + 30 * 86_400  # licence expiry, unix seconds
DECIMALS = {"BTC": 8, "ETH": 18, "SOL": 9}
CUSTODIANS = ("CUS-A", "CUS-B", "CUS-C", "CUS-D")
F1, F2 = "F1", "F2"


def _core():
    return pytest.importorskip("etf_engine._core").Ledger()


def _reference():
    return pytest.importorskip("etf_engine.reference").ReferenceLedger()


LEDGERS = {"core": _core, "reference": _reference}


@pytest.fixture(params=list(LEDGERS), ids=list(LEDGERS))
def ledger(request):
    """A fresh, empty ledger of each implementation."""
    return LEDGERS[request.param]()


# -- numbers, written the way a person reads them ------------------------------------------------
def units(text: str, decimals: int) -> int:
    """Decimal text -> smallest units (independent of etf_engine.numbers): units("1.5", 8) == 150000000."""
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("-").partition(".")
    assert len(frac) <= decimals
    return sign * int(whole + frac.ljust(decimals, "0"))


def btc(text: str) -> int:
    return units(text, 8)


def eth(text: str) -> int:
    return units(text, 18)


def cents(text: str) -> int:
    return units(text, 2)


def hk(day: str, clock: str = "00:00") -> int:
    """Unix ms of a Hong Kong local time ``HH:MM[:SS[.mmm]]`` on ``day`` (UTC+8, no daylight saving),
    written without etf_engine.calendar."""
    hms, _, frac = clock.partition(".")
    h, mi, s = ([int(x) for x in hms.split(":")] + [0])[:3]
    days = (date.fromisoformat(day) - date(1970, 1, 1)).days
    return days * 86_400_000 + ((h - 8) * 3600 + mi * 60 + s) * 1000 + int(frac.ljust(3, "0"))


# -- the desk ------------------------------------------------------------------------------------
def plain(state: Any) -> dict:
    """A canonical state as the JSON the digest hashes, read back: lists, dicts, ints and strings."""
    return msgspec.json.decode(msgspec.json.encode(state))


class Desk:
    """A ledger, the time of the next call, every event it produced and short-hands for commands."""

    def __init__(self, ledger: Any, now: int = NOW) -> None:
        self.ledger = ledger
        self.now = now
        self.events: list[m.Event] = []
        self.specs: dict[tuple[str, str], m.FundAssetSpec] = {}  # (fund, asset) -> current terms
        self._ids = itertools.count(1)

    # running commands
    def run(self, command: Any, now: int | None = None) -> Any:
        at = self.now if now is None else now
        result, events = self.ledger.execute(command, at)
        self.events += events
        self.ledger.check_invariants(at)
        return result

    def refused(self, command: Any, code: str, *, names: str | None = None, reason: str | None = None,
                now: int | None = None) -> EngineError:
        """Assert the command is refused with ``code`` (its message naming ``names`` / starting with
        ``reason``) and that the ledger is unchanged."""
        at = self.now if now is None else now
        before = self.ledger.state(at)
        with pytest.raises(EngineError) as info:
            self.ledger.execute(command, at)
        error = info.value
        assert error.code == code, error
        if names is not None:
            assert names in error.message, error
        if reason is not None:
            assert error.message.startswith(reason), error
        assert self.ledger.state(at) == before
        return error

    def state(self, now: int | None = None) -> dict:
        """The canonical state as plain data (what the digest encodes): rows as positional lists."""
        return plain(self.ledger.state(self.now if now is None else now))

    def replayed_state(self, now: int | None = None) -> dict:
        """state(now) of a fresh ledger of the same class after applying every event so far."""
        fresh = type(self.ledger)()
        for event in self.events:
            fresh.apply(event)
        return plain(fresh.state(self.now if now is None else now))

    # orders
    def request(self, side: str, n: int, coid: str | None = None, fund: str = F1) -> m.OrderRequest:
        return m.OrderRequest(fund_id=fund, side=side, units=n, client_order_id=coid or f"C-{next(self._ids)}")

    def order(self, side: str, n: int, coid: str | None = None, *, participant: str = "AP-1",
              fund: str = F1) -> m.Order:
        return self.run(m.SubmitOrder(participant_id=participant, request=self.request(side, n, coid, fund)))

    def check(self, side: str, n: int, coid: str | None = None, *, participant: str = "AP-1",
              fund: str = F1) -> m.Order:
        return self.ledger.check_order(participant, self.request(side, n, coid, fund), self.now)

    def reason(self, side: str, n: int, **kw: Any) -> str:
        """The reject reason CheckOrder gives ("" when it would be accepted)."""
        return self.check(side, n, **kw).reject_reason

    def settle(self, order_id: str) -> m.Order:
        return self.run(m.SettleOrder(order_id=order_id))

    def cancel(self, order_id: str, participant: str | None = None) -> m.Order:
        return self.run(m.CancelOrder(order_id=order_id, participant_id=participant))

    # instructions
    def adjust(self, custodian: str, asset: str, delta: str, fund: str = F1) -> None:
        self.run(m.AdjustHolding(fund_id=fund, custodian_id=custodian, asset=asset, delta=delta))

    def cash(self, delta: str, fund: str = F1) -> None:
        self.run(m.AdjustCash(fund_id=fund, delta=delta))

    def stake(self, custodian: str, asset: str, quantity: str, fund: str = F1) -> None:
        self.run(m.Stake(fund_id=fund, custodian_id=custodian, asset=asset, quantity=quantity))

    def unstake(self, custodian: str, asset: str, quantity: str, fund: str = F1) -> None:
        self.run(m.Unstake(fund_id=fund, custodian_id=custodian, asset=asset, quantity=quantity))

    def licence(self, custodian: str, status: str = m.ACTIVE, expires_at: int = EXPIRES) -> None:
        self.run(m.SetCustodianLicence(custodian_id=custodian, licence_status=status, licence_expires_at=expires_at))

    def update(self, fund: str = F1, **fields: Any) -> None:
        self.run(m.UpdateFund(fund_id=fund, **fields))

    def terms(self, asset: str, fund: str = F1, **changes: Any) -> None:
        """Change some of one asset's terms (staking_cap, liquidity_buffer, ...), keeping the rest."""
        spec = msgspec.structs.replace(self.specs[(fund, asset)], **changes)
        self.update(fund, assets=[spec])
        self.specs[(fund, asset)] = spec

    def publish(self, at: int | None = None, fund_prices: dict[str, str] | None = None, currency: str = "HKD",
                now: int | None = None) -> m.PublishResult:
        at = self.now if at is None else at
        prices = fund_prices or {"BTC": "500000", "ETH": "20000"}
        ticks = [m.PriceTick(asset=a, currency=currency, price=p, as_of_unix_ms=at) for a, p in prices.items()]
        return self.run(m.PublishPrices(ticks=ticks), now)

    def create_fund(self, fund_id: str, assets: dict[str, dict[str, Any]], **fields: Any) -> None:
        specs = [m.FundAssetSpec(asset=a, **kw) for a, kw in assets.items()]
        defaults = dict(name=fund_id, base_currency="HKD", creation_unit=100, creation_custodian_id="CUS-A",
                        custodian_priority=["CUS-B", "CUS-A"])
        self.run(m.CreateFund(fund_id=fund_id, assets=specs, **(defaults | fields)))
        self.specs.update({(fund_id, s.asset): s for s in specs})

    # reads
    def nav(self, fund: str = F1) -> m.Nav:
        return self.ledger.get_nav(fund, self.now)

    def basket(self, fund: str = F1) -> m.Basket:
        return self.ledger.get_basket(fund, self.now)

    def summary(self, asset: str, fund: str = F1) -> m.AssetSummary:
        return next(a for a in self.ledger.get_holdings(fund, self.now).assets if a.asset == asset)

    def rows(self, fund: str = F1) -> dict[tuple[str, str], tuple]:
        """The fund's non-empty holdings from state(): (custodian, asset) -> (available, reserved, staked, lots)."""
        funds = {f[0]["fund_id"]: f for f in self.state()["funds"]}
        return {(c, a): (av, res, st, lots) for c, a, av, res, st, lots, *_tiers in funds[fund][3]}

    def fund_figures(self, fund: str = F1) -> tuple[int, int]:
        """(cash in cents, shares outstanding) from state()."""
        funds = {f[0]["fund_id"]: f for f in self.state()["funds"]}
        return funds[fund][1], funds[fund][2]


def sample(ledger: Any, *, shares: int = 1000, holdings: dict[tuple[str, str], str] | None = None,
           cash: str | None = None, prices: dict[str, str] | None = None, max_order: int = 50,
           max_day: int = 100, priority: tuple[str, ...] = ("CUS-B", "CUS-A"), min_liquid: int = 0,
           btc_terms: dict[str, Any] | None = None, eth_terms: dict[str, Any] | None = None,
           **fund_fields: Any) -> Desk:
    """The sample world of this module's docstring; keyword arguments change F1 (``prices={}``: none)."""
    desk = Desk(ledger)
    for symbol, decimals in DECIMALS.items():
        desk.run(m.RegisterAsset(symbol=symbol, decimals=decimals))
    for cid in CUSTODIANS:
        desk.run(m.RegisterCustodian(custodian_id=cid, name=f"{cid} Ltd", licence_number=f"LIC-{cid}",
                                     licence_status=m.ACTIVE, licence_expires_at=EXPIRES))
    for pid, funds in (("AP-1", [F1, F2]), ("AP-2", [F1]), ("AP-3", [F2])):
        desk.run(m.RegisterParticipant(participant_id=pid, name=pid, eligible_fund_ids=funds,
                                       max_units_per_order=max_order, max_units_per_day=max_day))
    desk.create_fund(
        F1, {"ETH": {"unbonding_seconds": 86_400, **(eth_terms or {})},
             "BTC": {"unbonding_seconds": 3_600, **(btc_terms or {})}},
        custodian_priority=list(priority), min_liquid_units=min_liquid, initial_shares_outstanding=shares,
        **fund_fields,
    )
    desk.create_fund(F2, {"BTC": {"seed_quantity_per_unit": "1"}, "ETH": {"seed_quantity_per_unit": "10"}})
    for (custodian, asset), quantity in (holdings or {("CUS-A", "BTC"): "10", ("CUS-A", "ETH"): "100"}).items():
        desk.adjust(custodian, asset, quantity)
    if cash:
        desk.cash(cash)
    if prices != {}:
        desk.publish(fund_prices=prices)
    return desk
