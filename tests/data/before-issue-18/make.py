"""Run on the checkout before issue 18: a data directory with a snapshot and records after it (README.md)."""

import asyncio
import sys
from pathlib import Path

from benchmarks.conftest import CUSTODIANS, NOW, load_fund
from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.journal.records import state_digest
from etf_engine.journal.sqlite import SqliteJournal


class Recording:
    """The ledger, each command's events journaled as they are made."""

    def __init__(self, ledger: Ledger, journal: SqliteJournal) -> None:
        self.ledger, self.journal = ledger, journal

    def execute(self, command, now):
        result, events = self.ledger.execute(command, now)
        asyncio.run(self.journal.append(events))
        return result, events

    def __getattr__(self, name):
        return getattr(self.ledger, name)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    journal, ledger = SqliteJournal(out), Ledger()
    rec = Recording(ledger, journal)
    load_fund(rec)
    load_fund(rec, "F-2", calendar=True, pricing=M.FORWARD, delivery=True)

    def submit(side: str, units: int, key: str) -> M.Order:
        request = M.OrderRequest(fund_id="F-1", side=side, units=units, client_order_id=key)
        return rec.execute(M.SubmitOrder(participant_id="AP-1", request=request), NOW)[0]

    created, redeemed, cancelled = submit("CREATE", 2, "c1"), submit("REDEEM", 3, "r1"), submit("REDEEM", 1, "r2")
    rec.execute(M.SettleOrder(order_id=created.order_id), NOW + 1)
    rec.execute(M.CancelOrder(order_id=cancelled.order_id, participant_id="AP-1", reason="changed my mind"), NOW + 2)
    rec.execute(M.Unstake(fund_id="F-1", custodian_id=CUSTODIANS[-1], asset="ETH", quantity="1"), NOW + 3)
    journal.write_snapshot(ledger.state(journal.last_at))
    print("snapshot at seq", journal.last_seq)
    rec.execute(M.SettleOrder(order_id=redeemed.order_id), NOW + 4)
    submit("REDEEM", 999_999, "too-big")
    tick = M.PriceTick(asset="BTC", currency="HKD", price="512345.12345678", as_of_unix_ms=NOW + 5)
    rec.execute(M.PublishPrices(ticks=[tick]), NOW + 5)
    journal.close()
    print("records", journal.last_seq, "digest", state_digest(ledger.state(NOW + 5)))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
