"""Fixtures for the core benchmarks: the same fund loaded into the core and the reference."""

from __future__ import annotations

from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.bench.fixture import (
    ASSETS,
    CREATION_UNIT,
    CUSTODIANS,
    LIQUIDITY_BUFFER,
    OPENING_HOLDING,
    SHARES_OUTSTANDING,
    STAKED_ETH,
    STAKING_CAP,
    UNBONDING_SECONDS,
)
from etf_engine.errors import EngineError
from etf_engine.reference import ReferenceLedger

NOW = 1_767_225_600_000
LEDGERS = {"core": Ledger, "reference": ReferenceLedger}


CALENDAR = "HK"  # Asia/Hong_Kong, no weekend: every date is a dealing day, whatever day the run is
WALLETS = {"BTC": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "ETH": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
           "SOL": "So11111111111111111111111111111111111111112"}  # AP-1's payout wallets, WAL-00000001..3


def load_fund(ledger, fund_id: str = "F-1", *, calendar: bool = False, pricing: str = M.LIVE,
              delivery: bool = False, fee: bool = False) -> None:
    """The fund ``etf-engine bench`` loads over gRPC (etf_engine.bench.fixture): 3 assets at 5 licensed
    custodians, priced, 10M shares outstanding; the assets, custodians, participant and prices are
    registered with the first fund. ``calendar``: the fund deals on CALENDAR (cut-off 16:00 HKT).
    ``delivery``: the fund requires delivery and AP-1 has an approved wallet per asset (WALLETS).
    ``fee``: a 0.25% management fee with a waiver, taken IN_KIND in BTC at the first custodian (SPEC §17)."""
    run = ledger.execute
    if calendar:
        try:
            ledger.get_calendar(CALENDAR)
        except EngineError:
            run(M.RegisterCalendar(calendar_id=CALENDAR, time_zone="Asia/Hong_Kong", weekend_days=[]), NOW)
    if fund_id == "F-1":
        for symbol, (decimals, _price) in ASSETS.items():
            run(M.RegisterAsset(symbol=symbol, decimals=decimals), NOW)
        for cid in CUSTODIANS:
            run(M.RegisterCustodian(custodian_id=cid, name=cid, licence_number="L", licence_status="ACTIVE",
                                    licence_expires_at=NOW // 1000 + 86_400 * 365), NOW)
        run(M.RegisterParticipant(participant_id="AP-1", name="AP", eligible_fund_ids=["F-1"],
                                  max_units_per_order=1_000, max_units_per_day=10_000), NOW)
        run(M.PublishPrices(ticks=[M.PriceTick(asset=a, currency="HKD", price=p, as_of_unix_ms=NOW)
                                   for a, (_decimals, p) in ASSETS.items()]), NOW)
    run(M.CreateFund(
        fund_id=fund_id, name=fund_id, base_currency="HKD", creation_unit=CREATION_UNIT,
        creation_custodian_id=CUSTODIANS[0], custodian_priority=CUSTODIANS,
        initial_shares_outstanding=SHARES_OUTSTANDING, min_liquid_units=1,
        assets=[M.FundAssetSpec(asset=a, staking_cap=STAKING_CAP, liquidity_buffer=LIQUIDITY_BUFFER,
                                unbonding_seconds=UNBONDING_SECONDS) for a in ASSETS],
        calendar_id=CALENDAR if calendar else "", pricing=pricing, require_delivery=delivery,
        **({"management_fee_rate": "0.0025", "fee_payment": M.IN_KIND, "fee_asset": "BTC",
            "fee_custodian_id": CUSTODIANS[0], "fee_waiver": M.FeeWaiverSpec(rate="0.0012", nav_limit="1000000",
                                                                            until="2026-12-31")} if fee else {}),
    ), NOW)
    if delivery and not ledger.list_wallets("AP-1"):
        for asset, address in WALLETS.items():
            wallet, _ = run(M.RegisterWallet(participant_id="AP-1", asset=asset, address=address, principal="ops"), NOW)
            run(M.ApproveWallet(wallet_id=wallet.wallet_id, principal="ops-2"), NOW)
    for cid in CUSTODIANS:
        for symbol in ASSETS:
            run(M.AdjustHolding(fund_id=fund_id, custodian_id=cid, asset=symbol, delta=OPENING_HOLDING), NOW)
    run(M.Stake(fund_id=fund_id, custodian_id=CUSTODIANS[-1], asset="ETH", quantity=STAKED_ETH), NOW)


def recorded_fund() -> tuple[Ledger, list[M.Event]]:
    """A core ledger with ``load_fund``'s fund and participant AP-B (10 units an order, no daily limit),
    and the events that made it: the opening of a journal the benchmarks then grow order by order."""
    ledger = Ledger()
    events: list[M.Event] = []

    class Recording:  # load_fund drives a ledger; keep the events it makes
        def execute(self, command: object, now: int) -> object:
            result, made = ledger.execute(command, now)
            events.extend(made)
            return result, made

    load_fund(Recording())
    events.extend(ledger.execute(M.RegisterParticipant(
        participant_id="AP-B", name="bench", eligible_fund_ids=["F-1"], max_units_per_order=10,
        max_units_per_day=10**15), NOW)[1])
    return ledger, events
