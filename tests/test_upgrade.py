"""Data written by the version before SPEC §14 still starts and verifies.

A snapshot stores the ledger's canonical state as that version wrote it: asset rows without
min_confirmations and chain, orders without deliveries, payouts, excess, payout wallets, overdue or
cancel reason, legs without a destination, fund terms without require_delivery, no wallets. The core
restores such a state with the defaults (journaled events decode with the same defaults), and
``verify`` compares a snapshot in its current form, so an old snapshot is not read as damage.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path

import msgspec
import pytest
from conftest import F1, T0, plain, sample

from etf_engine import model as m
from etf_engine.journal.records import Snapshot, read_snapshot_stored, recover, state_digest
from etf_engine.journal.sqlite import SqliteJournal
from etf_engine.journal.verify import current_form, verify_journal
from etf_engine.snapshot import LedgerState

pytestmark = pytest.mark.unit

core = pytest.importorskip("etf_engine._core")
reference = pytest.importorskip("etf_engine.reference")

ORDER_FIELDS_OF_14 = ("payout_wallet_ids", "deliveries", "payouts", "excess", "overdue", "cancel_reason")


def before_14(state: dict) -> dict:
    """``state`` as the version before SPEC §14 wrote it."""
    old = copy.deepcopy(state)
    old["assets"] = [row[:2] for row in old["assets"]]
    del old["wallets"], old["next_wallet_seq"]
    for terms, *_ in old["funds"]:
        del terms["require_delivery"]
    for order in old["orders"]:
        for name in ORDER_FIELDS_OF_14:
            del order[name]
        for leg in order["legs"]:
            del leg["destination_address"]
    return old


def a_ledger_with_history() -> tuple[object, dict]:
    """A core ledger with some history, and its canonical state as plain data."""
    ledger = core.Ledger()
    desk = sample(ledger)
    desk.order(m.CREATE, 2)
    redeemed = desk.order(m.REDEEM, 1)
    assert redeemed.status == m.ACCEPTED and redeemed.legs
    desk.settle(desk.order(m.CREATE, 1).order_id)
    return ledger, plain(ledger.state(T0))


def read_back(state: dict) -> LedgerState:
    """``state`` as a snapshot file holding it decodes."""
    return msgspec.json.decode(msgspec.json.encode(state), type=LedgerState)


def test_an_old_state_restores_to_the_current_one() -> None:
    ledger, state = a_ledger_with_history()
    old = before_14(state)
    assert old != state
    restored = core.Ledger.restore(read_back(old))
    assert plain(restored.state(T0)) == state
    assert restored.get_order("ORD-00000002").legs == ledger.get_order("ORD-00000002").legs


def test_verify_reads_an_old_snapshot_in_its_current_form() -> None:
    ledger, state = a_ledger_with_history()
    assert plain(current_form(ledger, Snapshot(seq=1, at=T0, state=read_back(before_14(state))))) == state


def test_the_restored_ledger_deals_on() -> None:
    _, state = a_ledger_with_history()
    restored = core.Ledger.restore(read_back(before_14(state)))
    order, events = restored.execute(m.SubmitOrder(participant_id="AP-1", request=m.OrderRequest(
        fund_id=F1, side=m.CREATE, units=1, client_order_id="after-upgrade")), T0)
    assert order.status == m.ACCEPTED and order.order_id == f"ORD-{len(state['orders']) + 1:08d}"
    wallet, _ = restored.execute(m.RegisterWallet(participant_id="AP-1", asset="BTC", principal="ops",
                                                  address="bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"), T0)
    assert wallet.wallet_id == "WAL-00000001"


def test_old_records_decode_with_the_defaults() -> None:
    """Records as the version before SPEC §14 journaled them (no principal, chain, confirmations or reason)."""
    decode = msgspec.json.Decoder(m.AnyEvent).decode
    asset = decode(b'{"type":"AssetRegistered","at":5,"symbol":"BTC","decimals":8}')
    assert (asset.principal, asset.min_confirmations, asset.chain) == ("", 1, "")
    cancelled = decode(b'{"type":"OrderCancelled","at":6,"order_id":"ORD-00000001"}')
    assert (cancelled.principal, cancelled.reason) == ("", "")
    for ledger in (core.Ledger(), reference.ReferenceLedger()):
        ledger.apply(asset)
        assert plain(ledger.state(T0))["assets"] == [["BTC", 8, 1, "BITCOIN"]]  # checked as bitcoin, as SPEC §14 says


def test_a_principal_is_journaled_only_when_there_is_one() -> None:
    encode = msgspec.json.encode
    event = m.CashAdjusted(at=7, fund_id=F1, delta=100)
    assert b"principal" not in encode(event)
    assert b'"principal":"ops"' in encode(msgspec.structs.replace(event, principal="ops"))


BEFORE_18 = Path(__file__).parent / "data" / "before-issue-18"
BEFORE_18_DIGEST = "45cf2400a31c2820373dede7bcc3a1c236451e6b89308708ef88d0914d298b53"  # its README
BOOKS_TERMS = ("management_fee_rate", "fee_day_count", "fee_waiver", "fee_payment", "fee_asset", "fee_custodian_id",
               "hold_redemptions_on_break")
BOOKS_NAV = ("fee", "fee_days", "fee_basis", "accrued_fees", "fee_payable", "storage_breaches")


def digest_before_books(state: LedgerState) -> str:
    """The digest of ``state`` as the version before SPEC §17-20 encoded it: the same state without the
    fields the fund's books added, each of which must hold its default (a fund with no fee, its coins
    all cold, no policy set, no statement, no break, no instruction)."""
    plain_state = msgspec.to_builtins(state)
    assert [plain_state.pop(name) for name in ("instructions", "next_instruction_seq", "statements", "breaks",
                                                "next_break_seq")] == [[], 1, [], [], 1]
    for custodian in plain_state["custodians"]:
        assert custodian[5:] == [m.DEFAULT_MIN_COLD_RATIO, m.DEFAULT_MAX_HOT_SECONDS]
        del custodian[5:]
    for fund in plain_state["funds"]:
        assert fund[4:] == [0, [], m.COLD]  # accrued_fees, fee_payable, entry_tier
        del fund[4:]
        for holding in fund[3]:
            assert holding[6:] == [0, 0, None]  # warm, hot, over_since: every coin cold
            del holding[6:]
        terms = fund[0]
        assert [terms.pop(name) for name in BOOKS_TERMS] == [0, m.ACT_365, None, m.CASH, "", "", False]
        for asset in terms["assets"]:
            assert (asset.pop("staking_fee_rate"), asset.pop("min_cold_ratio")) == (0, None)
    for nav in plain_state["official_navs"]:
        assert [nav.pop(name) for name in BOOKS_NAV] == [0, 0, 0, 0, [], []]
    for order in plain_state["orders"]:
        assert order["basket"].pop("accrued_fees") == 0
    return hashlib.sha256(msgspec.json.encode(plain_state)).hexdigest()


def test_a_snapshot_of_positional_lists_restores_to_its_digest() -> None:
    """The snapshot file as the version before the versioned schema wrote it: its state, read through
    etf_engine.snapshot, restores to a ledger whose state has the digest of the state as stored."""
    snapshot, _crc, body = read_snapshot_stored(BEFORE_18 / "snapshot.bin")
    assert snapshot.version == 1 and snapshot.seq == 59
    as_stored = msgspec.json.decode(body)["state"]
    assert isinstance(as_stored["assets"][0], list)  # positional rows, as written then
    restored = core.Ledger.restore(snapshot.state)
    assert digest_before_books(restored.state(snapshot.at)) == state_digest(as_stored)
    assert restored.state(snapshot.at) == snapshot.state  # as read now, with the defaults of what came later


def test_a_data_directory_written_before_verifies_to_the_same_digest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(BEFORE_18, data)
    for check in (verify_journal, lambda j: recover(j, core.Ledger())):
        journal = SqliteJournal(data)
        try:
            result = check(journal)
            state = result.state if check is verify_journal else result.state(journal.last_at)
            assert (journal.last_seq, digest_before_books(state)) == (62, BEFORE_18_DIGEST)
        finally:
            journal.close()
