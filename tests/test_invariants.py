"""check_invariants() in both ledgers: it holds after every command (conftest's Desk checks it on each
run), and each invariant fires, named, on a state that breaks it; `verify` refuses such a journal.

The ledgers cannot be driven into a broken state through their commands (that is the point), so the
states here are forged: an event applied without the command's checks, a snapshot that lies, or (in the
reference, whose records are plain Python) a record changed in place."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from conftest import F1, NOW, sample

from etf_engine import model as m
from etf_engine.errors import INV_CONSERVED, INV_NEGATIVE, INV_RESERVED, INV_SHARES, InvariantBroken
from etf_engine.journal.records import JournalError
from etf_engine.journal.sqlite import SqliteJournal
from etf_engine.journal.verify import verify
from etf_engine.reference import ReferenceLedger

pytestmark = pytest.mark.unit

core = pytest.importorskip("etf_engine._core")


def busy(ledger):
    """The sample fund after creations, a settled and an open redemption, a stake, an unstake and a slash."""
    desk = sample(ledger)
    desk.settle(desk.order(m.CREATE, 2).order_id)
    desk.settle(desk.order(m.REDEEM, 1).order_id)
    desk.order(m.REDEEM, 1)
    desk.order(m.CREATE, 1)
    desk.cancel(desk.order(m.REDEEM, 1).order_id)
    return desk


def broken(ledger, name: str) -> None:
    with pytest.raises(InvariantBroken) as info:
        ledger.check_invariants(NOW)
    assert info.value.name == name and str(info.value).startswith(f"invariant {name!r} broken: fund {F1}")


def test_a_busy_ledger_keeps_every_invariant(ledger) -> None:
    desk = busy(ledger)
    ledger.check_invariants(NOW)
    ledger.check_invariants(NOW + 10**9)  # after every lot has matured
    replayed = type(ledger)()
    for event in desk.events:
        replayed.apply(event)
    replayed.check_invariants(NOW)


def test_a_bucket_below_zero_fires(ledger) -> None:
    busy(ledger)
    ledger.apply(m.HoldingAdjusted(at=NOW, fund_id=F1, custodian_id="CUS-A", asset="BTC", delta=-10**20))
    broken(ledger, INV_NEGATIVE)


def test_a_snapshot_reserving_what_no_order_holds_fires_in_the_core() -> None:
    ledger = core.Ledger()
    busy(ledger)
    state = ledger.state(NOW)
    funds = [msgspec.structs.replace(f, holdings=[msgspec.structs.replace(h, reserved=h.reserved + 1)
                                                  for h in f.holdings]) for f in state.funds]
    restored = core.Ledger.restore(msgspec.structs.replace(state, funds=funds))
    broken(restored, INV_RESERVED)


def test_each_invariant_fires_in_the_reference() -> None:
    for name, damage in [
        (INV_NEGATIVE, lambda fund: setattr(fund.holdings["CUS-A", "BTC"], "staked", -1)),
        (INV_RESERVED, lambda fund: setattr(fund.holdings["CUS-A", "BTC"], "reserved",
                                            fund.holdings["CUS-A", "BTC"].reserved + 1)),
        (INV_CONSERVED, lambda fund: fund.flow("ETH", 1)),
        (INV_SHARES, lambda fund: setattr(fund, "shares", fund.shares + 1)),
    ]:
        ledger = ReferenceLedger()
        busy(ledger)
        ledger.check_invariants(NOW)
        damage(ledger.funds[F1])
        broken(ledger, name)


def test_verify_refuses_a_journal_whose_state_breaks_an_invariant(tmp_path: Path) -> None:
    """Every record checks out (CRC, order, decoding) and applies, yet the state is impossible: verify
    says which invariant and after which record."""
    ledger = core.Ledger()
    desk = busy(ledger)
    journal = SqliteJournal(tmp_path)
    forged = m.HoldingAdjusted(at=NOW, fund_id=F1, custodian_id="CUS-A", asset="BTC", delta=-10**20)
    asyncio.run(journal.append([*desk.events, forged]))
    with pytest.raises(JournalError, match=f"record {len(desk.events) + 1} breaks an invariant "
                                           f"'{INV_NEGATIVE}' broken: fund {F1} CUS-A BTC"):
        verify(journal, core.Ledger())
    journal.close()
