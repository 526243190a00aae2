"""SPEC §19 (reconciliation with the custodians' statements) with the decisions of etf_engine/ledger.py
("Reconciliation (SPEC §19)", "Four eyes (SPEC §20)"): each rule made to fire and probed at its boundary,
on both ledgers (the ``ledger`` fixture: "core" and "reference").

The world is conftest's sample (F1: 1000 shares, 10 BTC + 100 ETH at CUS-A, created now, so its coins
sit in HOT; prices at NOW; F2 holds nothing). Statements are recorded with the command's ``book`` None
(the ledger's own state at ``as_of``) and an ``as_of`` no earlier than the last record, as the engine
does, except where a test gives the book explicitly. ``delivering`` switches F1 to ``require_delivery``
and gives AP-1 approved wallets, so that deliveries and payouts (what is in flight, SPEC §19 TIMING) can
be recorded. Expected figures are exact integers worked out by hand (smallest units). Every refusal goes
through ``Desk.refused`` (the state is unchanged after it) and the events replay into the same state.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from conftest import F1, F2, NOW, Desk, btc, eth, plain, sample

from etf_engine import model as m
from etf_engine.errors import (
    ALREADY_EXISTS,
    FAILED_PRECONDITION,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OUT_OF_RANGE,
    PERMISSION_DENIED,
    EngineError,
)
from etf_engine.model import (
    ACCEPTED,
    AVAILABLE,
    BREAK_NOT_OPEN,
    BREAK_REQUIRED,
    CHAIN,
    COLD,
    CREATE,
    CUSTODIAN,
    EXECUTED,
    FAILED,
    HOT,
    INSUFFICIENT_LIQUID_BALANCE,
    INSUFFICIENT_STAKED_BALANCE,
    INSUFFICIENT_TIER_BALANCE,
    OPEN,
    PENDING,
    REDEEM,
    REJECTED,
    RESOLVED,
    STAKED,
    TIMING,
    UNBONDING,
    UNEXPLAINED,
    WARM,
)
from etf_engine.snapshot import LedgerState

pytestmark = pytest.mark.unit

replace = msgspec.structs.replace
ALICE, BOB, CAROL = "alice", "bob", "carol"
OPS, OPS2 = "ops", "ops-2"
BTC_A = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"  # BIP-173 P2WPKH
ETH_A = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55
ADDRESS = {"BTC": BTC_A, "ETH": ETH_A}
LATER = NOW + 60_000  # when most statements are recorded: opened_at differs from as_of (NOW)
RELEASE = NOW + 3_600_000  # a BTC lot unstaked at NOW is released then (the sample's unbonding_seconds)


# -- commands ------------------------------------------------------------------------------------
def line(asset: str, quantity: str, bucket: str = AVAILABLE, tier: str = "") -> m.StatementLineSpec:
    return m.StatementLineSpec(asset=asset, bucket=bucket, quantity=quantity, tier=tier)


def statement(reference: str, lines: list[m.StatementLineSpec], as_of: int = NOW, *, custodian: str = "CUS-A",
              fund: str = F1, source: str = CUSTODIAN, book: m.StatementBook | None = None) -> m.RecordStatement:
    return m.RecordStatement(fund_id=fund, custodian_id=custodian, as_of=as_of, source=source, reference=reference,
                             lines=list(lines), book=book)


def record(desk: Desk, reference: str, lines: list[m.StatementLineSpec], as_of: int = NOW, **kw: Any
           ) -> m.StatementResult:
    return desk.run(statement(reference, lines, as_of, **kw))


def resolve(break_id: str, adjustment: str = "0", comment: str = "", principal: str = "") -> m.ResolveBreak:
    return m.ResolveBreak(break_id=break_id, adjustment=adjustment, comment=comment, principal=principal)


def adjust(delta: str, break_id: str = "", custodian: str = "CUS-A", asset: str = "BTC",
           fund: str = F1) -> m.AdjustHolding:
    return m.AdjustHolding(fund_id=fund, custodian_id=custodian, asset=asset, delta=delta, reason="recon",
                           break_id=break_id)


def sweep(from_tier: str, to_tier: str, quantity: str, asset: str = "BTC", custodian: str = "CUS-A") -> m.Sweep:
    return m.Sweep(fund_id=F1, custodian_id=custodian, asset=asset, quantity=quantity, from_tier=from_tier,
                   to_tier=to_tier)


def execute(desk: Desk, command: Any, now: int | None = None) -> tuple[Any, list[m.Event]]:
    """Desk.run, returning the events of this call as well."""
    at = desk.now if now is None else now
    result, events = desk.ledger.execute(command, at)
    desk.events += events
    desk.ledger.check_invariants(at)
    return result, events


def bid(n: int) -> str:
    return f"BRK-{n:08d}"


def brk(n: int, asset: str, book: int, stated: int, *, bucket: str = AVAILABLE, tier: str = "",
        classification: str = UNEXPLAINED, reference: str = "ST-1", fund: str = F1, custodian: str = "CUS-A",
        as_of: int = NOW, opened_at: int = LATER, order_ids: tuple[str, ...] = (),
        tx_hashes: tuple[str, ...] = ()) -> m.Break:
    """An OPEN break as SPEC §19 describes it: difference = book - statement."""
    return m.Break(break_id=bid(n), fund_id=fund, custodian_id=custodian, asset=asset, bucket=bucket, tier=tier,
                   as_of=as_of, book=book, statement=stated, difference=book - stated,
                   classification=classification, status=OPEN, opened_at=opened_at, reference=reference,
                   order_ids=order_ids, tx_hashes=tx_hashes)


# -- reads ---------------------------------------------------------------------------------------
def holding(desk: Desk, custodian: str = "CUS-A", asset: str = "BTC", fund: str = F1) -> m.HoldingRow:
    rows = desk.ledger.get_holdings(fund, desk.now).holdings
    return next(h for h in rows if (h.custodian_id, h.asset) == (custodian, asset))


def tiers(desk: Desk, custodian: str = "CUS-A", asset: str = "BTC", fund: str = F1) -> tuple[int, int, int]:
    """(cold, warm, hot) of a holding, checked to add up to held = available + reserved."""
    h = holding(desk, custodian, asset, fund)
    t = h.tiers
    assert t.cold + t.warm + t.hot == h.available + h.reserved
    return t.cold, t.warm, t.hot


def figures(desk: Desk, custodian: str = "CUS-A", asset: str = "BTC", fund: str = F1) -> tuple[int, int, int, int]:
    """(available, reserved, staked, unbonding) of a holding."""
    h = holding(desk, custodian, asset, fund)
    return h.available, h.reserved, h.staked, h.unbonding


def replays(desk: Desk) -> None:
    assert desk.replayed_state() == desk.state()


def agreeing_sample(desk: Desk) -> list[m.StatementLineSpec]:
    return [line("BTC", "10"), line("ETH", "100")]


# -- worlds --------------------------------------------------------------------------------------
def staking(ledger, **kw) -> Desk:
    """The sample with 2 BTC staked at CUS-A and 1 of them unstaked at NOW (released at RELEASE): CUS-A holds
    BTC available 8, staked 1, unbonding 1."""
    desk = sample(ledger, btc_terms={"staking_cap": "0.5"}, **kw)
    desk.stake("CUS-A", "BTC", "2")
    desk.unstake("CUS-A", "BTC", "1")
    assert figures(desk) == (btc("8"), 0, btc("1"), btc("1"))
    return desk


def tiered(ledger, **kw) -> Desk:
    """The sample with CUS-A's 10 BTC swept to cold 6, warm 2, hot 2."""
    desk = sample(ledger, **kw)
    desk.run(sweep(HOT, COLD, "6"))
    desk.run(sweep(HOT, WARM, "2"))
    assert tiers(desk) == (btc("6"), btc("2"), btc("2"))
    return desk


def wallet(desk: Desk, asset: str) -> str:
    wallet_id = desk.run(m.RegisterWallet(participant_id="AP-1", asset=asset, address=ADDRESS[asset],
                                          principal=OPS)).wallet_id
    desk.run(m.ApproveWallet(wallet_id=wallet_id, principal=OPS2))
    return wallet_id


def delivering(ledger, **kw) -> tuple[Desk, list[str]]:
    desk = sample(ledger, require_delivery=True, **kw)
    return desk, [wallet(desk, "BTC"), wallet(desk, "ETH")]


def create(desk: Desk, n: int = 1) -> m.Order:
    order = desk.order(CREATE, n)
    assert order.status == ACCEPTED
    return order


def redeem(desk: Desk, wallets: list[str], n: int = 1) -> m.Order:
    request = replace(desk.request(REDEEM, n), payout_wallet_ids=list(wallets))
    order = desk.run(m.SubmitOrder(participant_id="AP-1", request=request))
    assert order.status == ACCEPTED, order.reject_reason
    return order


def deliver(desk: Desk, order_id: str, asset: str, quantity: str, tx: str, confirmations: int = 1) -> None:
    desk.run(m.RecordDelivery(order_id=order_id, asset=asset, quantity=quantity, tx_hash=tx,
                              from_address=ADDRESS[asset], confirmations=confirmations))


def pay(desk: Desk, order_id: str, custodian: str, asset: str, quantity: str, tx: str) -> None:
    desk.run(m.RecordPayout(order_id=order_id, custodian_id=custodian, asset=asset, quantity=quantity, tx_hash=tx))


def legs(order: m.Order) -> set[tuple[str, str, int]]:
    return {(leg.custodian_id, leg.asset, leg.quantity) for leg in order.legs}


# == comparing with the book =========================================================================
def test_an_agreeing_statement_opens_nothing(ledger):
    desk = staking(ledger)
    redemption = desk.order(REDEEM, 1)  # reserves 1 BTC and 10 ETH at CUS-A: reserved counts as AVAILABLE
    assert redemption.status == ACCEPTED
    assert figures(desk) == (btc("7"), btc("1"), btc("1"), btc("1"))
    desk.now = LATER
    lines = [line("ETH", "100"), line("BTC", "1", UNBONDING), line("BTC", "8.00000000"), line("BTC", "1", STAKED)]
    result, events = execute(desk, statement("ST-1", lines, source=CHAIN))
    assert result == m.StatementResult(opened=[], resolved=[])
    stored = (m.StatementLine(asset="BTC", bucket=AVAILABLE, tier="", quantity=btc("8")),
              m.StatementLine(asset="BTC", bucket=STAKED, tier="", quantity=btc("1")),
              m.StatementLine(asset="BTC", bucket=UNBONDING, tier="", quantity=btc("1")),
              m.StatementLine(asset="ETH", bucket=AVAILABLE, tier="", quantity=eth("100")))
    assert events == [m.StatementRecorded(at=LATER, fund_id=F1, custodian_id="CUS-A", as_of=NOW, source=CHAIN,
                                          reference="ST-1", lines=stored)]
    state = ledger.state(desk.now)
    assert state.statements == [m.Statement(fund_id=F1, custodian_id="CUS-A", as_of=NOW, source=CHAIN,
                                             reference="ST-1", lines=stored, recorded_at=LATER)]
    assert (state.breaks, state.next_break_seq) == ([], 1)
    assert ledger.list_breaks() == ledger.list_breaks(F1) == []
    assert figures(desk) == (btc("7"), btc("1"), btc("1"), btc("1"))  # a statement moves nothing
    replays(desk)


def test_a_custodian_holding_nothing_agrees_with_an_empty_statement(ledger):
    desk = sample(ledger)
    desk.now = LATER
    assert record(desk, "ST-B", [], custodian="CUS-B") == m.StatementResult(opened=[], resolved=[])
    assert record(desk, "ST-B0", [line("BTC", "0"), line("ETH", "0", STAKED)], custodian="CUS-B").opened == []
    assert ledger.list_breaks() == []
    replays(desk)


def test_a_differing_available_line_opens_an_unexplained_break(ledger):
    desk = sample(ledger)
    desk.now = LATER
    lines = [line("BTC", "9.99999999"), line("ETH", "100.000000000000000001")]
    result, events = execute(desk, statement("ST-1", lines))
    opened = [brk(1, "BTC", btc("10"), btc("9.99999999")), brk(2, "ETH", eth("100"), eth("100") + 1)]
    assert (opened[0].difference, opened[1].difference) == (1, -1)  # one satoshi, one wei
    assert result == m.StatementResult(opened=opened, resolved=[])
    assert len(events) == 1 and events[0].opened == tuple(opened) and events[0].resolved == ()
    assert [ledger.get_break(b.break_id) for b in opened] == opened
    assert ledger.list_breaks(F1) == ledger.list_breaks(F1, OPEN) == ledger.state(desk.now).breaks == opened
    assert ledger.state(desk.now).next_break_seq == 3
    assert figures(desk) == (btc("10"), 0, 0, 0)  # the book is not changed by a break
    replays(desk)


def test_an_omitted_asset_counts_as_zero_in_every_bucket_the_book_holds(ledger):
    desk = staking(ledger)
    desk.now = LATER
    result = record(desk, "ST-1", [line("ETH", "100")])
    assert result.opened == [
        brk(1, "BTC", btc("8"), 0),
        brk(2, "BTC", btc("1"), 0, bucket=STAKED),
        brk(3, "BTC", btc("1"), 0, bucket=UNBONDING),
    ]
    # an empty statement: every (asset, bucket) the book holds, in key order
    assert [(b.asset, b.bucket, b.tier, b.book, b.statement) for b in record(desk, "ST-2", []).opened] == [
        ("BTC", AVAILABLE, "", btc("8"), 0), ("BTC", STAKED, "", btc("1"), 0), ("BTC", UNBONDING, "", btc("1"), 0),
        ("ETH", AVAILABLE, "", eth("100"), 0)]
    replays(desk)


def test_an_omitted_bucket_of_a_stated_asset_counts_as_zero(ledger):
    desk = staking(ledger)
    desk.now = LATER
    result = record(desk, "ST-1", [line("BTC", "8"), line("ETH", "100")])
    assert result.opened == [brk(1, "BTC", btc("1"), 0, bucket=STAKED), brk(2, "BTC", btc("1"), 0, bucket=UNBONDING)]
    replays(desk)


def test_a_line_for_something_the_book_does_not_hold(ledger):
    desk = sample(ledger)
    desk.now = LATER
    result = record(desk, "ST-1", [line("BTC", "0.5", STAKED), line("ETH", "1", UNBONDING)], custodian="CUS-B")
    assert result.opened == [
        brk(1, "BTC", 0, btc("0.5"), bucket=STAKED, custodian="CUS-B"),
        brk(2, "ETH", 0, eth("1"), bucket=UNBONDING, custodian="CUS-B"),
    ]
    # a fund holding nothing at all
    assert record(desk, "ST-F2", [line("BTC", "0.00000001")], fund=F2).opened == [
        brk(3, "BTC", 0, 1, fund=F2, reference="ST-F2")]
    replays(desk)


def test_tiered_lines_are_compared_with_their_tier_only(ledger):
    desk = tiered(ledger)
    desk.now = LATER
    # cold and warm stated, hot not: nothing is compared but those two (the untiered BTC key is named)
    assert record(desk, "ST-1", [line("BTC", "6", tier=COLD), line("BTC", "2", tier=WARM),
                                 line("ETH", "100")]).opened == []
    # one unit off in cold: the cold key alone breaks
    assert record(desk, "ST-2", [line("BTC", "5.99999999", tier=COLD), line("ETH", "100")]).opened == [
        brk(1, "BTC", btc("6"), btc("5.99999999"), tier=COLD, reference="ST-2")]
    # an untiered line and a tiered one of the same asset and bucket are two keys
    assert record(desk, "ST-3", [line("BTC", "10"), line("BTC", "3", tier=HOT), line("ETH", "100")]).opened == [
        brk(2, "BTC", btc("2"), btc("3"), tier=HOT, reference="ST-3")]
    # a tier the book holds nothing in agrees with 0 and breaks with anything else
    assert record(desk, "ST-4", [line("ETH", "0", tier=COLD), line("BTC", "10")]).opened == []
    assert record(desk, "ST-5", [line("ETH", "1", tier=WARM), line("BTC", "10")]).opened == [
        brk(3, "ETH", 0, eth("1"), tier=WARM, reference="ST-5")]
    # a statement naming only ETH's tiers still compares BTC (omitted) as 0
    assert record(desk, "ST-6", [line("ETH", "100", tier=HOT)]).opened == [brk(4, "BTC", btc("10"), 0,
                                                                               reference="ST-6")]
    replays(desk)


def test_staked_and_unbonding_lines(ledger):
    desk = staking(ledger)
    desk.now = LATER
    result = record(desk, "ST-1", [line("BTC", "8"), line("BTC", "1.5", STAKED), line("BTC", "0", UNBONDING),
                                   line("ETH", "100")])
    assert result.opened == [brk(1, "BTC", btc("1"), btc("1.5"), bucket=STAKED),
                             brk(2, "BTC", btc("1"), 0, bucket=UNBONDING)]
    replays(desk)


def test_the_book_at_as_of_sees_a_lot_released_at_that_instant(ledger):
    desk = staking(ledger)
    desk.now = RELEASE + 1_000
    before = [line("BTC", "8"), line("BTC", "1", STAKED), line("BTC", "1", UNBONDING), line("ETH", "100")]
    assert record(desk, "ST-1", before, as_of=RELEASE - 1).opened == []  # still unbonding at as_of
    after = [line("BTC", "9"), line("BTC", "1", STAKED), line("ETH", "100")]
    assert record(desk, "ST-2", after, as_of=RELEASE).opened == []  # released: available (in hot)
    stated = [line("BTC", "9", tier=HOT), line("BTC", "1", STAKED), line("BTC", "1", UNBONDING), line("ETH", "100")]
    assert record(desk, "ST-3", stated, as_of=RELEASE).opened == [
        brk(1, "BTC", 0, btc("1"), bucket=UNBONDING, reference="ST-3", as_of=RELEASE, opened_at=RELEASE + 1_000)]
    replays(desk)


def test_statement_book_read(ledger):
    desk = tiered(ledger, btc_terms={"staking_cap": "0.5"})
    desk.stake("CUS-A", "BTC", "2")  # leaves hot, then warm: cold 6, warm 2, hot 0
    desk.unstake("CUS-A", "BTC", "0.5")
    book = ledger.statement_book(F1, "CUS-A", desk.now)
    assert {(b.asset, b.bucket, b.tier): b.quantity for b in book.lines} == {
        ("BTC", AVAILABLE, ""): btc("8"), ("BTC", AVAILABLE, COLD): btc("6"), ("BTC", AVAILABLE, WARM): btc("2"),
        ("BTC", STAKED, ""): btc("1.5"), ("BTC", UNBONDING, ""): btc("0.5"),
        ("ETH", AVAILABLE, ""): eth("100"), ("ETH", AVAILABLE, HOT): eth("100")}
    assert all(b.quantity != 0 for b in book.lines)
    assert [(b.asset, b.bucket) for b in book.lines] == sorted((b.asset, b.bucket) for b in book.lines)
    assert book.in_flight == ()
    assert ledger.statement_book(F1, "CUS-B", desk.now) == m.StatementBook(lines=())


def test_the_ledgers_own_book_is_the_statement_book_read(ledger):
    """A statement given statement_book(now) as its book decides exactly as one whose book is None."""
    lines = [line("BTC", "11", tier=COLD), line("BTC", "7"), line("ETH", "99")]
    results, states = [], []
    for explicit in (False, True):
        desk, _ = delivering(type(ledger)())
        desk.run(sweep(HOT, COLD, "10"))
        order = create(desk)
        deliver(desk, order.order_id, "BTC", "1", "in-btc")
        book = desk.ledger.statement_book(F1, "CUS-A", NOW) if explicit else None
        if explicit:
            assert book.in_flight == (m.InFlight(asset="BTC", quantity=btc("1"), order_ids=(order.order_id,),
                                                 tx_hashes=("in-btc",)),)
        desk.now = LATER
        results.append(record(desk, "ST-1", lines, book=book))
        states.append(desk.state())
        replays(desk)
    assert results[0] == results[1]
    assert states[0] == states[1]
    assert [(b.tier, b.classification) for b in results[0].opened] == [("", UNEXPLAINED), (COLD, UNEXPLAINED),
                                                                       ("", UNEXPLAINED)]


def test_an_explicit_book_is_used_instead_of_the_ledgers_state(ledger):
    desk = sample(ledger)
    desk.now = LATER
    book = m.StatementBook(
        lines=(m.BookLine(asset="BTC", bucket=AVAILABLE, tier="", quantity=btc("7")),
               m.BookLine(asset="BTC", bucket=AVAILABLE, tier=COLD, quantity=btc("3")),
               m.BookLine(asset="BTC", bucket=STAKED, tier="", quantity=btc("2"))),
        in_flight=(m.InFlight(asset="BTC", quantity=btc("2"), order_ids=("ORD-00000042",), tx_hashes=("tx-42",)),))
    # the ledger holds 10 BTC (all hot) and 100 ETH: the book given says otherwise, and it is what counts
    result = record(desk, "ST-1", [line("BTC", "9"), line("BTC", "3", tier=COLD), line("ETH", "100")], book=book)
    assert result.opened == [
        brk(1, "BTC", btc("7"), btc("9"), classification=TIMING, order_ids=("ORD-00000042",), tx_hashes=("tx-42",)),
        brk(2, "BTC", btc("2"), 0, bucket=STAKED),
        brk(3, "ETH", 0, eth("100")),
    ]
    assert figures(desk) == (btc("10"), 0, 0, 0)
    replays(desk)


# == TIMING: what is in flight at as_of ================================================================
@pytest.mark.parametrize(("stated", "classification"), [
    ("11.6", TIMING),  # 10 + 1 (ORD-1) + 0.6 (ORD-2's confirmed tx)
    ("12", UNEXPLAINED),  # the 0.4 below min_confirmations is not in flight
    ("11", UNEXPLAINED),
    ("11.59999999", UNEXPLAINED),
    ("10.6", UNEXPLAINED),
])
def test_timing_with_confirmed_deliveries_on_accepted_creations(ledger, stated, classification):
    desk, _ = delivering(ledger)
    first, second, third = create(desk), create(desk), create(desk)
    deliver(desk, first.order_id, "BTC", "1", "in-btc-1")
    deliver(desk, first.order_id, "ETH", "10", "in-eth-1")
    deliver(desk, second.order_id, "BTC", "0.6", "a", confirmations=1)  # min_confirmations is 1
    deliver(desk, second.order_id, "BTC", "0.4", "b", confirmations=0)
    deliver(desk, third.order_id, "BTC", "0.3", "c", confirmations=0)  # nothing of it in flight: not listed
    desk.now = LATER
    result = record(desk, "ST-1", [line("BTC", stated), line("ETH", "110")])
    timing = classification == TIMING
    assert result.opened == [
        brk(1, "BTC", btc("10"), btc(stated), classification=classification,
            order_ids=(first.order_id, second.order_id) if timing else (),
            tx_hashes=("a", "in-btc-1") if timing else ()),
        brk(2, "ETH", eth("100"), eth("110"), classification=TIMING, order_ids=(first.order_id,),
            tx_hashes=("in-eth-1",)),
    ]
    replays(desk)


def test_timing_counts_a_delivery_once_it_has_its_confirmations(ledger):
    desk, _ = delivering(ledger)
    order = create(desk)
    deliver(desk, order.order_id, "BTC", "1", "in-btc", confirmations=0)
    desk.now = LATER
    # not in flight yet: the book agrees with a statement that does not have it
    assert record(desk, "ST-1", [line("BTC", "10"), line("ETH", "100")]).opened == []
    assert record(desk, "ST-2", [line("BTC", "11"), line("ETH", "100")]).opened == [
        brk(1, "BTC", btc("10"), btc("11"), reference="ST-2")]
    deliver(desk, order.order_id, "BTC", "1", "in-btc", confirmations=1)  # the same tx, now confirmed
    assert record(desk, "ST-3", [line("BTC", "11"), line("ETH", "100")]).opened == [
        brk(2, "BTC", btc("10"), btc("11"), reference="ST-3", classification=TIMING, order_ids=(order.order_id,),
            tx_hashes=("in-btc",))]
    replays(desk)


def test_timing_counts_only_accepted_creations_to_that_custodian(ledger):
    desk, _ = delivering(ledger)
    kept, cancelled = create(desk), create(desk)
    deliver(desk, kept.order_id, "BTC", "1", "in-1")
    deliver(desk, cancelled.order_id, "BTC", "1", "in-2")
    desk.cancel(cancelled.order_id)
    desk.now = LATER
    result = record(desk, "ST-1", [line("BTC", "12"), line("ETH", "100")])
    assert [(b.classification, b.order_ids) for b in result.opened] == [(UNEXPLAINED, ())]
    result = record(desk, "ST-2", [line("BTC", "11"), line("ETH", "100")])
    assert [(b.classification, b.order_ids, b.tx_hashes) for b in result.opened] == [
        (TIMING, (kept.order_id,), ("in-1",))]
    # the creation custodian is CUS-A: nothing is in flight to CUS-B
    assert record(desk, "ST-B", [line("BTC", "1")], custodian="CUS-B").opened == [
        brk(3, "BTC", 0, btc("1"), custodian="CUS-B", reference="ST-B")]
    replays(desk)


def test_timing_applies_to_untiered_available_lines_only(ledger):
    desk, _ = delivering(ledger)
    desk.run(sweep(HOT, COLD, "10"))
    order = create(desk)
    deliver(desk, order.order_id, "BTC", "1", "in-btc")
    desk.now = LATER
    # 11 in cold or in hot is not book + in flight of the tier: UNEXPLAINED
    result = record(desk, "ST-1", [line("BTC", "11", tier=COLD), line("BTC", "1", tier=HOT), line("ETH", "100")])
    assert [(b.tier, b.classification, b.order_ids) for b in result.opened] == [
        (COLD, UNEXPLAINED, ()), (HOT, UNEXPLAINED, ())]
    # staked: 1 stated where the book has 0 and 1 is in flight — not TIMING either
    result = record(desk, "ST-2", [line("BTC", "11"), line("BTC", "1", STAKED), line("ETH", "100")])
    assert [(b.bucket, b.classification) for b in result.opened] == [(AVAILABLE, TIMING), (STAKED, UNEXPLAINED)]
    replays(desk)


def paying(ledger) -> tuple[Desk, list[str], m.Order]:
    """delivering with BTC split over CUS-B (0.5) and CUS-A (9.5): an ACCEPTED 1-unit REDEEM (ORD-00000001)
    has legs CUS-B 0.5 BTC, CUS-A 0.5 BTC and CUS-A 10 ETH."""
    desk, wallets = delivering(ledger, holdings={("CUS-B", "BTC"): "0.5", ("CUS-A", "BTC"): "9.5",
                                                 ("CUS-A", "ETH"): "100"})
    order = redeem(desk, wallets)
    assert legs(order) == {("CUS-B", "BTC", btc("0.5")), ("CUS-A", "BTC", btc("0.5")), ("CUS-A", "ETH", eth("10"))}
    return desk, wallets, order


def test_timing_with_payouts_on_an_accepted_redemptions_legs(ledger):
    desk, _, order = paying(ledger)
    pay(desk, order.order_id, "CUS-A", "BTC", "0.2", "out-a")
    pay(desk, order.order_id, "CUS-B", "BTC", "0.5", "out-b")
    desk.now = LATER
    # CUS-A's book: 9 available + 0.5 reserved; 0.2 of it is paid out on chain
    assert record(desk, "ST-A", [line("BTC", "9.3"), line("ETH", "100")]).opened == [
        brk(1, "BTC", btc("9.5"), btc("9.3"), reference="ST-A", classification=TIMING, order_ids=(order.order_id,),
            tx_hashes=("out-a",))]
    assert record(desk, "ST-B", [line("BTC", "0")], custodian="CUS-B").opened == [
        brk(2, "BTC", btc("0.5"), 0, reference="ST-B", custodian="CUS-B", classification=TIMING,
            order_ids=(order.order_id,), tx_hashes=("out-b",))]
    # not what was paid elsewhere, nor the whole leg
    assert [b.classification for b in record(desk, "ST-A2", [line("BTC", "9"), line("ETH", "100")]).opened] == [
        UNEXPLAINED]
    replays(desk)


def test_timing_sums_deliveries_and_payouts(ledger):
    desk, _, redemption = paying(ledger)
    creation = create(desk)
    pay(desk, redemption.order_id, "CUS-A", "BTC", "0.2", "out-a")
    deliver(desk, creation.order_id, "BTC", "1", "in-1")
    deliver(desk, creation.order_id, "BTC", "0.5", "in-2", confirmations=0)
    desk.now = LATER
    # 9.5 + 1 - 0.2
    assert record(desk, "ST-1", [line("BTC", "10.3"), line("ETH", "100")]).opened == [
        brk(1, "BTC", btc("9.5"), btc("10.3"), classification=TIMING,
            order_ids=(redemption.order_id, creation.order_id), tx_hashes=("in-1", "out-a"))]
    replays(desk)


def test_settled_orders_are_no_longer_in_flight(ledger):
    desk, _, redemption = paying(ledger)
    creation = create(desk)
    for leg in redemption.legs:
        pay(desk, redemption.order_id, leg.custodian_id, leg.asset,
            "0.5" if leg.asset == "BTC" else "10", f"out-{leg.custodian_id}-{leg.asset}")
    deliver(desk, creation.order_id, "BTC", "1", "in-btc")
    deliver(desk, creation.order_id, "ETH", "10", "in-eth")
    desk.settle(redemption.order_id)
    desk.settle(creation.order_id)
    desk.now = LATER
    assert record(desk, "ST-1", [line("BTC", "10"), line("ETH", "100")]).opened == []  # 9 + 1, 90 + 10
    assert record(desk, "ST-B", [line("BTC", "0")], custodian="CUS-B").opened == []
    replays(desk)


# == resolution by a later statement =================================================================
def test_a_timing_break_is_resolved_by_a_later_statement_that_agrees(ledger):
    desk, _ = delivering(ledger)
    order = create(desk)
    deliver(desk, order.order_id, "BTC", "1", "in-btc")
    deliver(desk, order.order_id, "ETH", "10", "in-eth")
    desk.now = LATER
    first = record(desk, "ST-1", [line("BTC", "11"), line("ETH", "110")])
    assert [(b.break_id, b.classification) for b in first.opened] == [(bid(1), TIMING), (bid(2), TIMING)]
    # still in flight: equal to book + in flight is not equal to the book; an agreeing HOT line is another key
    second = record(desk, "ST-2", [line("BTC", "11"), line("BTC", "10", tier=HOT), line("ETH", "110")])
    assert (second.resolved, [(b.break_id, b.classification) for b in second.opened]) == (
        [], [(bid(3), TIMING), (bid(4), TIMING)])
    assert [b.status for b in ledger.list_breaks()] == [OPEN] * 4
    desk.settle(order.order_id)
    desk.now = LATER + 1_000
    result, events = execute(desk, statement("ST-3", [line("BTC", "11"), line("ETH", "110")], as_of=LATER + 500))
    assert result == m.StatementResult(opened=[], resolved=[bid(1), bid(2), bid(3), bid(4)])
    assert events[0].resolved == (bid(1), bid(2), bid(3), bid(4)) and events[0].opened == ()
    for n, b in enumerate(first.opened + second.opened, 1):
        assert ledger.get_break(bid(n)) == replace(b, status=RESOLVED, resolved_at=LATER + 1_000,
                                                   resolved_by_reference="ST-3")
    assert ledger.list_breaks(F1, OPEN) == []
    desk.refused(resolve(bid(1)), FAILED_PRECONDITION, reason=BREAK_NOT_OPEN)
    replays(desk)


def test_a_timing_break_is_resolved_only_by_its_own_key(ledger):
    desk, _ = delivering(ledger)
    order = create(desk)
    deliver(desk, order.order_id, "BTC", "1", "in-btc")
    deliver(desk, order.order_id, "ETH", "10", "in-eth")
    desk.now = LATER
    assert [b.classification for b in record(desk, "ST-1", [line("BTC", "11"), line("ETH", "110")]).opened] == [
        TIMING, TIMING]
    desk.settle(order.order_id)
    # the same asset at another custodian, or in a tier, agreeing: the breaks stay open
    assert record(desk, "ST-B", [line("BTC", "0")], as_of=LATER, custodian="CUS-B").resolved == []
    assert record(desk, "ST-2", [line("BTC", "11", tier=HOT), line("BTC", "0", tier=COLD),
                                 line("ETH", "110", tier=HOT)], as_of=LATER) == m.StatementResult(opened=[],
                                                                                                 resolved=[])
    assert [b.status for b in ledger.list_breaks()] == [OPEN, OPEN]
    replays(desk)


def test_an_unexplained_break_is_not_resolved_by_a_later_statement(ledger):
    desk = sample(ledger)
    desk.now = LATER
    assert record(desk, "ST-1", [line("BTC", "9"), line("ETH", "100")]).opened == [brk(1, "BTC", btc("10"), btc("9"))]
    result = record(desk, "ST-2", agreeing_sample(desk))
    assert result == m.StatementResult(opened=[], resolved=[])
    assert ledger.get_break(bid(1)) == brk(1, "BTC", btc("10"), btc("9"))
    replays(desk)


# == ResolveBreak =====================================================================================
@pytest.mark.parametrize(("lines", "adjustment", "available", "tier_figures"), [
    # the book was right: nothing moves
    ([line("BTC", "9")], "0", "10", ("6", "2", "2")),
    # untiered AVAILABLE leaves held hot first, then warm (SPEC §18)
    ([line("BTC", "7")], "-3", "7", ("6", "1", "0")),
    ([line("BTC", "7.99999999")], "-2.00000001", "7.99999999", ("6", "1.99999999", "0")),
    # and enters hot
    ([line("BTC", "12")], "2", "12", ("6", "2", "4")),
    # a tiered break adjusts its own tier
    ([line("BTC", "5", tier=COLD)], "-1", "9", ("5", "2", "2")),
    ([line("BTC", "7", tier=COLD)], "1", "11", ("7", "2", "2")),
    ([line("BTC", "3", tier=WARM)], "1", "11", ("6", "3", "2")),
    ([line("BTC", "0", tier=WARM)], "-2", "8", ("6", "0", "2")),
    ([line("BTC", "0", tier=HOT)], "-2", "8", ("6", "2", "0")),
])
def test_resolve_break_adjusts_the_available_bucket(ledger, lines, adjustment, available, tier_figures):
    desk = tiered(ledger)
    desk.now = LATER
    opened = record(desk, "ST-1", [*lines, line("ETH", "100")]).opened
    assert len(opened) == 1
    desk.now = LATER + 5_000
    result, events = execute(desk, resolve(bid(1), adjustment, "custodian confirms", principal=ALICE))
    after = replace(opened[0], status=RESOLVED, resolved_at=LATER + 5_000, adjustment=btc(adjustment),
                    comment="custodian confirms", proposed_by=ALICE)
    assert result == after == ledger.get_break(bid(1))
    assert events == [m.BreakResolved(at=LATER + 5_000, break_id=bid(1), adjustment=btc(adjustment),
                                      comment="custodian confirms", proposer=ALICE)]
    assert figures(desk) == (btc(available), 0, 0, 0)
    assert tiers(desk) == tuple(btc(q) for q in tier_figures)
    assert ledger.list_breaks(F1, RESOLVED) == [after] and ledger.list_breaks(F1, OPEN) == []
    replays(desk)


def test_resolve_break_adjusts_staked(ledger):
    desk = staking(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "8"), line("BTC", "0.5", STAKED), line("BTC", "1", UNBONDING),
                          line("ETH", "100")])
    record(desk, "ST-2", [line("BTC", "8"), line("BTC", "3", STAKED), line("BTC", "1", UNBONDING),
                          line("ETH", "100")])
    desk.refused(resolve(bid(1), "-1.00000001"), FAILED_PRECONDITION, reason=INSUFFICIENT_STAKED_BALANCE)
    assert desk.run(resolve(bid(1), "-0.5")).adjustment == -btc("0.5")
    assert figures(desk) == (btc("8"), 0, btc("0.5"), btc("1"))
    assert desk.run(resolve(bid(2), "2.5")).adjustment == btc("2.5")
    assert figures(desk) == (btc("8"), 0, btc("3"), btc("1"))
    assert tiers(desk) == (0, 0, btc("8"))  # staked is not split into tiers
    replays(desk)


def test_resolve_break_to_staked_zero_exactly(ledger):
    desk = staking(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "8"), line("BTC", "0", STAKED), line("BTC", "1", UNBONDING),
                          line("ETH", "100")])
    desk.run(resolve(bid(1), "-1"))
    assert figures(desk) == (btc("8"), 0, 0, btc("1"))
    replays(desk)


@pytest.mark.parametrize("adjustment", ["1", "-1", "0.00000001", "-0.00000001"])
def test_an_unbonding_break_resolves_only_with_zero(ledger, adjustment):
    desk = staking(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "8"), line("BTC", "1", STAKED), line("BTC", "2", UNBONDING),
                          line("ETH", "100")])
    desk.refused(resolve(bid(1), adjustment), INVALID_ARGUMENT, names="adjustment")
    assert desk.run(resolve(bid(1), "0", "the lot is as booked")).status == RESOLVED
    assert figures(desk) == (btc("8"), 0, btc("1"), btc("1"))
    replays(desk)


def test_a_later_statement_resolves_an_unbonding_break(ledger):
    """SPEC §19's precise rules: an UNBONDING break resolves "only with adjustment 0 or by a later
    statement" -- one whose line for the key agrees with the book, as for a TIMING break (ledger.py)."""
    desk = staking(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "8"), line("BTC", "1", STAKED), line("BTC", "2", UNBONDING),
                          line("ETH", "100")])
    assert ledger.get_break(bid(1)).classification == UNEXPLAINED
    still = record(desk, "ST-2", [line("BTC", "8"), line("BTC", "1", STAKED), line("BTC", "2", UNBONDING),
                                  line("ETH", "100")])
    assert (still.resolved, ledger.get_break(bid(1)).status) == ([], OPEN)  # still differs: a new break, not this
    result = record(desk, "ST-3", [line("BTC", "8"), line("BTC", "1", STAKED), line("BTC", "1", UNBONDING),
                                   line("ETH", "100")])
    assert result == m.StatementResult(opened=[], resolved=[bid(1), bid(2)])
    assert (ledger.get_break(bid(1)).status, ledger.get_break(bid(1)).resolved_by_reference) == (RESOLVED, "ST-3")
    replays(desk)


def test_resolve_break_beyond_the_balance_is_refused(ledger):
    desk = tiered(ledger)
    assert desk.order(REDEEM, 1).status == ACCEPTED  # reserves 1 BTC: available 9, reserved 1
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "0"), line("BTC", "0", tier=COLD), line("ETH", "100")])
    assert [(b.tier, b.book) for b in ledger.list_breaks()] == [("", btc("10")), (COLD, btc("6"))]
    # untiered: no more than available (reserved coins are promised)
    desk.refused(resolve(bid(1), "-10"), FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)
    desk.refused(resolve(bid(1), "-9.00000001"), FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)
    # a tier: no more than the tier holds
    desk.refused(resolve(bid(2), "-6.00000001"), FAILED_PRECONDITION, reason=INSUFFICIENT_TIER_BALANCE)
    desk.run(resolve(bid(2), "-6"))
    assert tiers(desk) == (0, btc("2"), btc("2"))
    assert figures(desk) == (btc("3"), btc("1"), 0, 0)
    desk.refused(resolve(bid(1), "-3.00000001"), FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)
    desk.run(resolve(bid(1), "-3"))
    assert figures(desk) == (0, btc("1"), 0, 0)
    assert sum(tiers(desk)) == btc("1")
    replays(desk)


def test_resolve_break_sees_the_lots_released_by_its_time(ledger):
    desk = staking(ledger)
    desk.now = RELEASE
    record(desk, "ST-1", [line("BTC", "0"), line("BTC", "1", STAKED), line("ETH", "100")], as_of=RELEASE)
    assert ledger.get_break(bid(1)).book == btc("9")  # 8 + the lot released at RELEASE
    desk.refused(resolve(bid(1), "-9.00000001"), FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)
    desk.run(resolve(bid(1), "-9"))
    assert figures(desk) == (0, 0, btc("1"), 0)
    replays(desk)


def test_quantities_beyond_ten_to_the_thirty_are_out_of_range(ledger):
    desk = sample(ledger)
    desk.now = LATER
    desk.refused(statement("ST-1", [line("BTC", "10000000000000000000000.00000001")]), OUT_OF_RANGE,
                 names="lines[0].quantity")
    assert record(desk, "ST-1", [line("BTC", "10000000000000000000000"), line("ETH", "100")]).opened == [
        brk(1, "BTC", btc("10"), 10**30)]
    desk.refused(resolve(bid(1), "9999999999999999999990.00000001"), OUT_OF_RANGE, names="adjustment")
    desk.run(resolve(bid(1), "9999999999999999999990"))
    assert figures(desk) == (10**30, 0, 0, 0)
    replays(desk)


def test_resolve_break_of_a_holding_that_holds_nothing(ledger):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-F2", [line("ETH", "0.5")], fund=F2)
    desk.refused(resolve(bid(1), "-0.000000000000000001"), FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)
    desk.run(resolve(bid(1), "0.5"))
    assert figures(desk, asset="ETH", fund=F2) == (eth("0.5"), 0, 0, 0)
    assert tiers(desk, asset="ETH", fund=F2) == (0, 0, eth("0.5"))
    replays(desk)


@pytest.mark.parametrize(("command", "code", "names", "reason"), [
    (resolve("BRK-00000009", "x", "c" * 257), NOT_FOUND, "BRK-00000009", None),
    (resolve("BRK-1"), NOT_FOUND, "BRK-1", None),
    (resolve(bid(1), "0.000000001", "c" * 257), INVALID_ARGUMENT, "adjustment", None),  # BTC has 8 decimals
    (resolve(bid(1), "1e3"), INVALID_ARGUMENT, "adjustment", None),
    (resolve(bid(1), ""), INVALID_ARGUMENT, "adjustment", None),
    (resolve(bid(1), "one"), INVALID_ARGUMENT, "adjustment", None),
    (resolve(bid(1), "0", "c" * 257), INVALID_ARGUMENT, "comment", None),
    (resolve(bid(2), "0.000000000000000001", "ü" * 257), INVALID_ARGUMENT, "comment", None),  # ETH: 18 decimals
])
def test_resolve_break_refusals(ledger, command, code, names, reason):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "9"), line("ETH", "99")])
    desk.refused(command, code, names=names, reason=reason)
    assert [b.status for b in ledger.list_breaks()] == [OPEN, OPEN]


def test_resolve_break_comment_length(ledger):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "9"), line("ETH", "99")])
    assert desk.run(resolve(bid(1), "0", "ü" * 256)).comment == "ü" * 256
    assert desk.run(resolve(bid(2), "0", "")).comment == ""
    replays(desk)


def test_resolve_break_not_open_comes_after_the_fields_and_before_the_rest(ledger):
    desk = staking(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "7"), line("BTC", "1", STAKED), line("BTC", "2", UNBONDING),
                          line("ETH", "100")])
    desk.run(resolve(bid(1), "-1"))
    desk.run(resolve(bid(2), "0"))
    assert [b.status for b in ledger.list_breaks()] == [RESOLVED, RESOLVED]
    desk.refused(resolve(bid(1), "-1"), FAILED_PRECONDITION, reason=BREAK_NOT_OPEN)
    desk.refused(resolve(bid(1), "0"), FAILED_PRECONDITION, reason=BREAK_NOT_OPEN)
    desk.refused(resolve(bid(1), "-100"), FAILED_PRECONDITION, reason=BREAK_NOT_OPEN)  # before the balance
    desk.refused(resolve(bid(2), "1"), FAILED_PRECONDITION, reason=BREAK_NOT_OPEN)  # before UNBONDING's zero
    desk.refused(resolve(bid(1), "0.000000001"), INVALID_ARGUMENT, names="adjustment")  # the fields first
    desk.refused(resolve(bid(1), "0", "c" * 257), INVALID_ARGUMENT, names="comment")
    replays(desk)


# == four eyes ========================================================================================
def test_resolve_break_as_an_instruction_keeps_both_principals(ledger):
    desk = tiered(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "9.5"), line("ETH", "100")])
    command = resolve(bid(1), "-0.5", "custodian's count is right", principal=ALICE)
    instruction = desk.run(m.ProposeInstruction(command=command, principal=ALICE))
    assert (instruction.instruction_id, instruction.rpc, instruction.status, instruction.proposed_by) == (
        "INS-00000001", "ResolveBreak", PENDING, ALICE)
    assert msgspec.json.decode(instruction.request, type=m.ResolveBreak) == command
    assert ledger.get_break(bid(1)).status == OPEN  # a proposal resolves nothing
    assert figures(desk) == (btc("10"), 0, 0, 0)
    desk.refused(m.ApproveInstruction(instruction_id=instruction.instruction_id, principal=ALICE), PERMISSION_DENIED)
    desk.now = LATER + 9_000
    result, events = execute(desk, m.ApproveInstruction(instruction_id=instruction.instruction_id, principal=BOB))
    assert (result.status, result.decided_by) == (EXECUTED, BOB)
    resolved = replace(brk(1, "BTC", btc("10"), btc("9.5")), status=RESOLVED, resolved_at=LATER + 9_000,
                       adjustment=-btc("0.5"), comment="custodian's count is right", proposed_by=ALICE,
                       approved_by=BOB)
    assert ledger.get_break(bid(1)) == resolved
    assert events == [
        m.BreakResolved(at=LATER + 9_000, break_id=bid(1), adjustment=-btc("0.5"),
                        comment="custodian's count is right", proposer=ALICE, approver=BOB, proposed_by=ALICE),
        m.InstructionDecided(at=LATER + 9_000, instruction_id="INS-00000001", status=EXECUTED, decided_by=BOB),
    ]
    assert figures(desk) == (btc("9.5"), 0, 0, 0)
    assert tiers(desk) == (btc("6"), btc("2"), btc("1.5"))
    replays(desk)


def test_a_resolve_break_proposal_is_checked_in_full(ledger):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "9"), line("ETH", "100")])
    desk.run(resolve(bid(1)))

    def propose(command):
        return m.ProposeInstruction(command=command, principal=ALICE)

    desk.refused(propose(resolve(bid(1), principal=ALICE)), FAILED_PRECONDITION, reason=BREAK_NOT_OPEN)
    desk.refused(propose(resolve(bid(7), principal=ALICE)), NOT_FOUND, names=bid(7))
    record(desk, "ST-2", [line("BTC", "9"), line("ETH", "100")])
    desk.refused(propose(resolve(bid(2), "-10.00000001", principal=ALICE)), FAILED_PRECONDITION,
                 reason=INSUFFICIENT_LIQUID_BALANCE)
    assert ledger.list_instructions() == []


def test_a_resolve_break_instruction_fails_when_a_statement_resolved_the_break_first(ledger):
    desk, _ = delivering(ledger)
    order = create(desk)
    deliver(desk, order.order_id, "BTC", "1", "in-btc")
    deliver(desk, order.order_id, "ETH", "10", "in-eth")
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "11"), line("ETH", "110")])
    instruction = desk.run(m.ProposeInstruction(command=resolve(bid(1), principal=ALICE), principal=ALICE))
    desk.settle(order.order_id)
    assert record(desk, "ST-2", [line("BTC", "11"), line("ETH", "110")], as_of=LATER).resolved == [bid(1), bid(2)]
    result = desk.run(m.ApproveInstruction(instruction_id=instruction.instruction_id, principal=CAROL))
    assert result.status == FAILED and result.error.startswith(BREAK_NOT_OPEN)
    assert ledger.get_break(bid(1)).resolved_by_reference == "ST-2"
    assert (ledger.get_break(bid(1)).proposed_by, ledger.get_break(bid(1)).approved_by) == ("", "")
    replays(desk)


# == BREAK_REQUIRED =====================================================================================
def test_adjust_holding_without_a_break_after_the_funds_first_statement(ledger):
    desk = sample(ledger)
    desk.run(adjust("1"))  # no statement yet: a plain adjustment
    desk.now = LATER
    assert record(desk, "ST-B", [], custodian="CUS-B").opened == []  # another custodian's statement
    desk.refused(adjust("1"), FAILED_PRECONDITION, reason=BREAK_REQUIRED)
    desk.refused(adjust("-1", custodian="CUS-A", asset="ETH"), FAILED_PRECONDITION, reason=BREAK_REQUIRED)
    desk.refused(adjust("-12"), FAILED_PRECONDITION, reason=BREAK_REQUIRED)  # before the balance
    desk.refused(adjust("0"), INVALID_ARGUMENT, names="delta")  # after the fields
    desk.refused(adjust("1", custodian="CUS-Z"), NOT_FOUND, names="CUS-Z")
    desk.refused(adjust("1", asset="SOL"), INVALID_ARGUMENT, names="asset")
    # other funds are not reconciled yet
    desk.run(adjust("1", fund=F2))
    desk.run(m.AdjustCash(fund_id=F1, delta="5.00", reason="income"))  # cash is not a holding
    replays(desk)


def test_adjust_holding_with_an_open_breaks_id(ledger):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "10.5"), line("ETH", "100")])
    desk.refused(adjust("-10.00000001", bid(1)), FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)
    desk.run(adjust("0.5", bid(1)))
    assert figures(desk) == (btc("10.5"), 0, 0, 0)
    assert ledger.get_break(bid(1)).status == OPEN  # it does not resolve the break
    desk.run(adjust("-0.25", bid(1)))  # and may be used again while it is open
    assert figures(desk) == (btc("10.25"), 0, 0, 0)
    desk.run(resolve(bid(1), "0.25"))
    desk.refused(adjust("1", bid(1)), FAILED_PRECONDITION, reason=BREAK_REQUIRED)  # resolved now
    assert figures(desk) == (btc("10.5"), 0, 0, 0)
    replays(desk)


def test_adjust_holding_with_another_holdings_break_is_refused(ledger):
    desk = sample(ledger, holdings={("CUS-A", "BTC"): "10", ("CUS-A", "ETH"): "100", ("CUS-B", "BTC"): "1"})
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "9"), line("ETH", "100")])  # BRK-1: F1 CUS-A BTC
    record(desk, "ST-F2", [line("BTC", "1")], fund=F2)  # BRK-2: F2 CUS-A BTC
    record(desk, "ST-2", [line("BTC", "8"), line("ETH", "100")])  # BRK-3: F1 CUS-A BTC, resolved below
    desk.run(resolve(bid(3)))
    for command in (
        adjust("1", bid(1), asset="ETH"),  # another asset
        adjust("1", bid(1), custodian="CUS-B"),  # another custodian
        adjust("1", bid(2)),  # another fund's break on the same custodian and asset
        adjust("1", bid(3)),  # resolved
        adjust("1", bid(9)),  # unknown
        adjust("1", "nonsense"),
        adjust("1", bid(1), fund=F2),  # F2 is reconciled too, and BRK-1 is not its own
    ):
        desk.refused(command, FAILED_PRECONDITION, reason=BREAK_REQUIRED)
    desk.run(adjust("1", bid(2), fund=F2))
    desk.run(adjust("1", bid(1)))
    replays(desk)


def test_adjust_holding_under_four_eyes_needs_its_break_at_proposal_and_at_approval(ledger):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "10.5"), line("ETH", "100")])

    def propose(command):
        return m.ProposeInstruction(command=command, principal=ALICE)

    desk.refused(propose(adjust("0.5")), FAILED_PRECONDITION, reason=BREAK_REQUIRED)
    instruction = desk.run(propose(adjust("0.5", bid(1))))
    desk.run(resolve(bid(1), "0", "book was right after all"))
    result = desk.run(m.ApproveInstruction(instruction_id=instruction.instruction_id, principal=BOB))
    assert result.status == FAILED and result.error.startswith(BREAK_REQUIRED)
    assert figures(desk) == (btc("10"), 0, 0, 0)
    replays(desk)


def test_adjust_holding_with_a_break_id_on_a_fund_without_a_statement(ledger):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "9"), line("ETH", "100")])
    desk.refused(adjust("1", bid(1), fund=F2), FAILED_PRECONDITION, reason=BREAK_REQUIRED)
    desk.refused(adjust("1", bid(5), fund=F2), FAILED_PRECONDITION, reason=BREAK_REQUIRED)
    desk.run(adjust("1", fund=F2))
    replays(desk)


# == RecordStatement refusals ===========================================================================
@pytest.mark.parametrize(("changes", "code", "names"), [
    ({"fund_id": "NOPE", "custodian_id": "CUS-Z", "reference": ""}, NOT_FOUND, "NOPE"),
    ({"custodian_id": "CUS-Z", "reference": ""}, NOT_FOUND, "CUS-Z"),
    ({"reference": "", "as_of": LATER + 1}, INVALID_ARGUMENT, "reference"),
    ({"reference": "x" * 129}, INVALID_ARGUMENT, "reference"),
    ({"reference": "two words"}, INVALID_ARGUMENT, "reference"),
    ({"reference": "r\u00e9f"}, INVALID_ARGUMENT, "reference"),
    ({"reference": "tab\there"}, INVALID_ARGUMENT, "reference"),
    ({"as_of": LATER + 1, "source": "BANK"}, INVALID_ARGUMENT, "as_of"),  # after now
    ({"as_of": -1}, INVALID_ARGUMENT, "as_of"),
    ({"source": "BANK", "lines": [line("SOL", "1")]}, INVALID_ARGUMENT, "source"),
    ({"source": "custodian"}, INVALID_ARGUMENT, "source"),
    ({"source": ""}, INVALID_ARGUMENT, "source"),
    ({"lines": [line("SOL", "1", "RESERVED")]}, INVALID_ARGUMENT, "lines[0].asset"),  # not an asset of F1
    ({"lines": [line("DOGE", "1")]}, INVALID_ARGUMENT, "lines[0].asset"),
    ({"lines": [line("BTC", "10"), line("btc", "1")]}, INVALID_ARGUMENT, "lines[1].asset"),
    ({"lines": [line("BTC", "10"), line("ETH", "1", "RESERVED", "FROZEN")]}, INVALID_ARGUMENT, "lines[1].bucket"),
    ({"lines": [line("BTC", "1", "")]}, INVALID_ARGUMENT, "lines[0].bucket"),
    ({"lines": [line("BTC", "1", "available")]}, INVALID_ARGUMENT, "lines[0].bucket"),
    ({"lines": [line("BTC", "-1", tier="FROZEN")]}, INVALID_ARGUMENT, "lines[0].tier"),
    ({"lines": [line("BTC", "1", tier="cold")]}, INVALID_ARGUMENT, "lines[0].tier"),
    ({"lines": [line("BTC", "-1", STAKED, COLD)]}, INVALID_ARGUMENT, "lines[0].tier"),
    ({"lines": [line("BTC", "1", UNBONDING, HOT)]}, INVALID_ARGUMENT, "lines[0].tier"),
    ({"lines": [line("BTC", "-1")]}, INVALID_ARGUMENT, "lines[0].quantity"),
    ({"lines": [line("BTC", "1.000000001")]}, INVALID_ARGUMENT, "lines[0].quantity"),
    ({"lines": [line("ETH", "1.0000000000000000001")]}, INVALID_ARGUMENT, "lines[0].quantity"),
    ({"lines": [line("BTC", "")]}, INVALID_ARGUMENT, "lines[0].quantity"),
    ({"lines": [line("BTC", "1e3")]}, INVALID_ARGUMENT, "lines[0].quantity"),
    ({"lines": [line("BTC", "+1")]}, INVALID_ARGUMENT, "lines[0].quantity"),
    ({"lines": [line("BTC", "10"), line("ETH", "100"), line("BTC", "9")]}, INVALID_ARGUMENT, "lines[2]"),
    ({"lines": [line("BTC", "1", STAKED), line("BTC", "1", STAKED)]}, INVALID_ARGUMENT, "lines[1]"),
    ({"lines": [line("BTC", "6", tier=COLD), line("BTC", "10"), line("BTC", "6", tier=COLD)]}, INVALID_ARGUMENT,
     "lines[2]"),
])
def test_record_statement_refusals_in_the_contracts_order(ledger, changes, code, names):
    desk = sample(ledger)
    desk.now = LATER
    command = replace(statement("ST-1", agreeing_sample(desk)), **changes)
    error = desk.refused(command, code, names=names)
    assert error.code == code
    assert ledger.state(desk.now).statements == []
    assert desk.run(statement("ST-1", agreeing_sample(desk))).opened == []  # nothing was taken


@pytest.mark.parametrize("reference", ["x" * 128, "~", "ST/2026-01-01#1", "!"])
def test_record_statement_reference_accepted(ledger, reference):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, reference, agreeing_sample(desk))
    assert ledger.state(desk.now).statements[0].reference == reference
    replays(desk)


def test_record_statement_lines_accepted_at_their_edges(ledger):
    desk = sample(ledger)
    desk.now = LATER
    lines = [line("BTC", "0.00000000", STAKED), line("BTC", "10"), line("BTC", "0", tier=COLD),
             line("BTC", "10.00000000", tier=HOT), line("ETH", "100.000000000000000000"), line("ETH", "0", UNBONDING)]
    assert record(desk, "ST-1", lines, as_of=LATER).opened == []  # as_of equal to now
    assert [(s.asset, s.bucket, s.tier, s.quantity) for s in ledger.state(desk.now).statements[0].lines] == [
        ("BTC", AVAILABLE, "", btc("10")), ("BTC", AVAILABLE, COLD, 0), ("BTC", AVAILABLE, HOT, btc("10")),
        ("BTC", STAKED, "", 0), ("ETH", AVAILABLE, "", eth("100")), ("ETH", UNBONDING, "", 0)]
    replays(desk)


def test_record_statement_as_of_against_the_previous_statement(ledger):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-1", agreeing_sample(desk), as_of=NOW + 10)
    desk.refused(statement("ST-2", agreeing_sample(desk), NOW + 9), INVALID_ARGUMENT, names="as_of")
    desk.refused(statement("ST-2", agreeing_sample(desk), NOW + 9, source="BANK"), INVALID_ARGUMENT, names="as_of")
    record(desk, "ST-2", agreeing_sample(desk), as_of=NOW + 10)  # an equal one is accepted
    # another custodian's or another fund's statements do not bound this one
    record(desk, "ST-B", [], as_of=NOW, custodian="CUS-B")
    record(desk, "ST-F2", [], as_of=NOW, fund=F2)
    desk.refused(statement("ST-3", agreeing_sample(desk), NOW + 9), INVALID_ARGUMENT, names="as_of")
    record(desk, "ST-3", agreeing_sample(desk), as_of=NOW + 11)
    by_key = {(s.fund_id, s.custodian_id, s.reference): s.as_of for s in ledger.state(desk.now).statements}
    assert by_key == {(F1, "CUS-A", "ST-1"): NOW + 10, (F1, "CUS-A", "ST-2"): NOW + 10,
                      (F1, "CUS-A", "ST-3"): NOW + 11, (F1, "CUS-B", "ST-B"): NOW, (F2, "CUS-A", "ST-F2"): NOW}
    replays(desk)


def test_record_statement_as_of_not_after_now(ledger):
    desk = sample(ledger)
    desk.now = LATER
    desk.refused(statement("ST-1", agreeing_sample(desk), LATER + 1), INVALID_ARGUMENT, names="as_of")
    record(desk, "ST-1", agreeing_sample(desk), as_of=LATER)
    replays(desk)


def test_the_same_statement_again_is_ignored_even_after_a_later_one(ledger):
    desk = sample(ledger)
    desk.now = LATER
    first = statement("ST-1", [line("ETH", "100"), line("BTC", "9")], NOW)
    opened = desk.run(first).opened
    assert [b.break_id for b in opened] == [bid(1)]
    record(desk, "ST-2", [line("BTC", "9"), line("ETH", "100")], as_of=NOW + 50)
    before = ledger.state(desk.now)
    count = len(desk.events)
    for again in (first,  # the same
                  replace(first, lines=[line("BTC", "9.00000000"), line("ETH", "100.0")]),  # sorted and parsed
                  replace(first, book=m.StatementBook(lines=()))):  # the book is not the statement's content
        result, events = execute(desk, again, now=LATER + 1_000)
        assert result.ignored is True
        assert (result.opened, result.resolved, events) == ([], [], [])
    assert ledger.state(desk.now) == before and len(desk.events) == count
    assert ledger.state(desk.now).next_break_seq == 3  # no id was taken
    replays(desk)


@pytest.mark.parametrize("changes", [
    {"as_of": NOW + 1},
    {"as_of": NOW + 100},  # after the later statement
    {"source": CHAIN},
    {"source": "BANK"},  # a repeat's source is compared, not checked
    {"lines": [line("BTC", "9")]},
    {"lines": [line("BTC", "9"), line("ETH", "100"), line("ETH", "0", STAKED)]},
    {"lines": [line("BTC", "9", tier=COLD), line("ETH", "100")]},
    {"lines": [line("BTC", "9.00000001"), line("ETH", "100")]},
    {"lines": [line("BTC", "9", STAKED), line("ETH", "100")]},
])
def test_the_same_reference_with_other_content_already_exists(ledger, changes):
    desk = sample(ledger)
    desk.now = LATER
    first = statement("ST-1", [line("BTC", "9"), line("ETH", "100")], NOW)
    desk.run(first)
    record(desk, "ST-2", [line("BTC", "9"), line("ETH", "100")], as_of=NOW + 50)
    desk.refused(replace(first, **changes), ALREADY_EXISTS, now=LATER + 1_000)


def test_a_repeated_references_lines_are_checked_first(ledger):
    desk = sample(ledger)
    desk.now = LATER
    first = statement("ST-1", [line("BTC", "9"), line("ETH", "100")], NOW)
    desk.run(first)
    desk.refused(replace(first, lines=[line("BTC", "9"), line("SOL", "1")]), INVALID_ARGUMENT, names="lines[1].asset")
    desk.refused(replace(first, lines=[line("BTC", "9", STAKED, COLD)]), INVALID_ARGUMENT, names="lines[0].tier")
    desk.refused(replace(first, lines=[line("BTC", "9"), line("BTC", "9")]), INVALID_ARGUMENT, names="lines[1]")
    desk.refused(replace(first, as_of=LATER + 1), ALREADY_EXISTS)  # not the as_of check of a new one
    desk.refused(replace(first, reference="", as_of=LATER + 1), INVALID_ARGUMENT, names="reference")


def test_references_are_per_fund_and_custodian(ledger):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "9"), line("ETH", "100")])
    assert record(desk, "ST-1", [line("BTC", "1")], custodian="CUS-B").opened == [
        brk(2, "BTC", 0, btc("1"), custodian="CUS-B")]
    assert record(desk, "ST-1", [], fund=F2).opened == []
    assert len(ledger.state(desk.now).statements) == 3
    replays(desk)


# == hold_redemptions_on_break ==========================================================================
SPLIT = {("CUS-B", "BTC"): "5", ("CUS-B", "ETH"): "50", ("CUS-A", "BTC"): "5", ("CUS-A", "ETH"): "50"}


def test_hold_redemptions_on_break_is_a_fund_term(ledger):
    desk = sample(ledger, hold_redemptions_on_break=True)
    terms = {t.fund_id: t for t in ledger.list_funds()}
    assert (terms[F1].hold_redemptions_on_break, terms[F2].hold_redemptions_on_break) == (True, False)
    desk.update(F1, hold_redemptions_on_break=False)
    desk.update(F2, hold_redemptions_on_break=True)
    terms = {t.fund_id: t for t in ledger.list_funds()}
    assert (terms[F1].hold_redemptions_on_break, terms[F2].hold_redemptions_on_break) == (False, True)
    replays(desk)


@pytest.mark.parametrize("break_line", [line("BTC", "4"), line("BTC", "4", tier=HOT), line("BTC", "6")])
def test_an_unexplained_break_holds_that_custodians_asset(ledger, break_line):
    desk = sample(ledger, holdings=SPLIT, hold_redemptions_on_break=True)
    assert legs(desk.check(REDEEM, 1)) == {("CUS-B", "BTC", btc("1")), ("CUS-B", "ETH", eth("10"))}
    desk.now = LATER
    assert [b.classification for b in record(desk, "ST-B", [break_line, line("ETH", "50")],
                                             custodian="CUS-B").opened] == [UNEXPLAINED]
    # BTC comes from CUS-A alone now; CUS-B still pays ETH
    order = desk.order(REDEEM, 1)
    assert (order.status, legs(order)) == (ACCEPTED, {("CUS-A", "BTC", btc("1")), ("CUS-B", "ETH", eth("10"))})
    assert desk.reason(REDEEM, 4) == ""  # 4 more BTC at CUS-A
    assert legs(desk.check(REDEEM, 4)) == {("CUS-A", "BTC", btc("4")), ("CUS-B", "ETH", eth("40"))}
    assert desk.reason(REDEEM, 5) == INSUFFICIENT_LIQUID_BALANCE
    rejected = desk.order(REDEEM, 5)
    assert (rejected.status, rejected.reject_reason, rejected.legs) == (REJECTED, INSUFFICIENT_LIQUID_BALANCE, ())
    assert ledger.get_capacity("AP-1", F1, desk.now).redeem == m.CapacitySide(
        units=4, binding_reason=INSUFFICIENT_LIQUID_BALANCE)
    # resolved: CUS-B gives BTC again
    desk.run(resolve(bid(1)))
    assert legs(desk.check(REDEEM, 5)) == {("CUS-B", "BTC", btc("5")), ("CUS-B", "ETH", eth("40")),
                                           ("CUS-A", "ETH", eth("10"))}
    replays(desk)


def test_a_held_custodian_with_everything_rejects_the_redemption(ledger):
    desk = sample(ledger, holdings={("CUS-B", "BTC"): "10", ("CUS-A", "ETH"): "100"}, hold_redemptions_on_break=True)
    desk.now = LATER
    record(desk, "ST-B", [line("BTC", "10", STAKED)], custodian="CUS-B")  # a STAKED break on (CUS-B, BTC)
    assert [(b.bucket, b.classification) for b in ledger.list_breaks()] == [(AVAILABLE, UNEXPLAINED),
                                                                              (STAKED, UNEXPLAINED)]
    order = desk.order(REDEEM, 1)
    assert (order.status, order.reject_reason) == (REJECTED, INSUFFICIENT_LIQUID_BALANCE)
    desk.run(resolve(bid(1)))
    assert desk.reason(REDEEM, 1) == INSUFFICIENT_LIQUID_BALANCE  # BRK-2 still holds it
    desk.run(resolve(bid(2)))
    assert desk.reason(REDEEM, 1) == ""
    replays(desk)


def test_without_the_term_a_break_holds_nothing(ledger):
    desk = sample(ledger, holdings=SPLIT)
    desk.now = LATER
    record(desk, "ST-B", [line("BTC", "4"), line("ETH", "50")], custodian="CUS-B")
    assert legs(desk.check(REDEEM, 6)) == {("CUS-B", "BTC", btc("5")), ("CUS-A", "BTC", btc("1")),
                                           ("CUS-B", "ETH", eth("50")), ("CUS-A", "ETH", eth("10"))}
    desk.update(F1, hold_redemptions_on_break=True)
    assert desk.reason(REDEEM, 6) == INSUFFICIENT_LIQUID_BALANCE
    desk.update(F1, hold_redemptions_on_break=False)
    assert desk.reason(REDEEM, 6) == ""
    replays(desk)


def test_another_funds_break_holds_nothing(ledger):
    desk = sample(ledger, holdings=SPLIT, hold_redemptions_on_break=True)
    desk.update(F2, hold_redemptions_on_break=True)
    desk.now = LATER
    record(desk, "ST-F2", [line("BTC", "1")], custodian="CUS-B", fund=F2)
    assert legs(desk.check(REDEEM, 1)) == {("CUS-B", "BTC", btc("1")), ("CUS-B", "ETH", eth("10"))}


@pytest.mark.parametrize(("stated", "classification", "custodian"), [
    ("4", TIMING, "CUS-B"),  # book 5 (4 available + 1 reserved) - 1 paid out: only timing, CUS-B pays
    ("3", UNEXPLAINED, "CUS-A"),
])
def test_a_timing_break_holds_nothing(ledger, stated, classification, custodian):
    desk, wallets = delivering(ledger, holdings=SPLIT, hold_redemptions_on_break=True)
    first = redeem(desk, wallets)
    assert legs(first) == {("CUS-B", "BTC", btc("1")), ("CUS-B", "ETH", eth("10"))}
    pay(desk, first.order_id, "CUS-B", "BTC", "1", "out-1")
    desk.now = LATER
    result = record(desk, "ST-B", [line("BTC", stated), line("ETH", "50")], custodian="CUS-B")
    assert [b.classification for b in result.opened] == [classification]
    second = redeem(desk, wallets, 4)
    assert legs(second) == {(custodian, "BTC", btc("4")), ("CUS-B", "ETH", eth("40"))}
    replays(desk)


# == ids, reads, replay ==================================================================================
def test_break_ids_are_one_global_sequence_across_funds(ledger):
    desk = sample(ledger)
    desk.now = LATER
    ids = [b.break_id for b in record(desk, "ST-1", [line("BTC", "9")]).opened]  # BTC, then ETH omitted
    desk.refused(statement("ST-X", [line("BTC", "-9")]), INVALID_ARGUMENT, names="lines[0].quantity")
    ids += [b.break_id for b in record(desk, "ST-F2", [line("ETH", "1")], fund=F2).opened]
    desk.run(statement("ST-1", [line("BTC", "9")]))  # ignored: takes none
    ids += [b.break_id for b in record(desk, "ST-B", [line("BTC", "1")], custodian="CUS-B").opened]
    ids += [b.break_id for b in record(desk, "ST-2", [line("BTC", "8"), line("ETH", "99")]).opened]
    assert ids == [bid(n) for n in range(1, 7)]
    assert [(b.break_id, b.fund_id, b.custodian_id, b.asset) for b in ledger.list_breaks()] == [
        (bid(1), F1, "CUS-A", "BTC"), (bid(2), F1, "CUS-A", "ETH"), (bid(3), F2, "CUS-A", "ETH"),
        (bid(4), F1, "CUS-B", "BTC"), (bid(5), F1, "CUS-A", "BTC"), (bid(6), F1, "CUS-A", "ETH")]
    assert ledger.state(desk.now).next_break_seq == 7
    assert desk.order(CREATE, 1).order_id == "ORD-00000001"  # orders keep their own sequence
    replays(desk)


def test_list_breaks_and_get_break(ledger):
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "9"), line("ETH", "99")])
    record(desk, "ST-F2", [line("BTC", "1")], fund=F2)
    desk.run(resolve(bid(2)))
    every = ledger.list_breaks()
    assert [b.break_id for b in every] == [bid(1), bid(2), bid(3)]
    assert ledger.list_breaks("", "") == every == ledger.state(desk.now).breaks
    assert [b.break_id for b in ledger.list_breaks(F1)] == [bid(1), bid(2)]
    assert [b.break_id for b in ledger.list_breaks(F1, OPEN)] == [bid(1)]
    assert [b.break_id for b in ledger.list_breaks(F1, RESOLVED)] == [bid(2)]
    assert [b.break_id for b in ledger.list_breaks(F2, RESOLVED)] == []
    assert [b.break_id for b in ledger.list_breaks("", OPEN)] == [bid(1), bid(3)]
    assert [b.break_id for b in ledger.list_breaks("", RESOLVED)] == [bid(2)]
    assert [ledger.get_break(b.break_id) for b in every] == every
    for call, args, code, names in (
        (ledger.list_breaks, ("NOPE",), NOT_FOUND, "NOPE"),
        (ledger.list_breaks, ("NOPE", "BAD"), NOT_FOUND, "NOPE"),
        (ledger.list_breaks, (F1, "open"), INVALID_ARGUMENT, "status"),
        (ledger.list_breaks, ("", "CLOSED"), INVALID_ARGUMENT, "status"),
        (ledger.list_breaks, (F1, "PENDING"), INVALID_ARGUMENT, "status"),
        (ledger.get_break, (bid(4),), NOT_FOUND, bid(4)),
        (ledger.get_break, ("",), NOT_FOUND, None),
    ):
        with pytest.raises(EngineError) as info:
            call(*args)
        assert info.value.code == code, info.value
        if names is not None:
            assert names in info.value.message


def test_replay_carries_statements_and_breaks_and_both_go_on_alike(ledger):
    desk, _ = delivering(ledger, hold_redemptions_on_break=True)
    order = create(desk)
    deliver(desk, order.order_id, "BTC", "1", "in-btc")
    deliver(desk, order.order_id, "ETH", "10", "in-eth")
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "11"), line("ETH", "99")])  # BRK-1 TIMING, BRK-2 UNEXPLAINED (not 110)
    instruction = desk.run(m.ProposeInstruction(command=resolve(bid(2), "-1", "lost", ALICE), principal=ALICE))
    desk.run(m.ApproveInstruction(instruction_id=instruction.instruction_id, principal=BOB))
    desk.settle(order.order_id)  # BTC 11, ETH 109
    assert record(desk, "ST-2", [line("BTC", "11"), line("ETH", "109")], as_of=LATER).resolved == [bid(1)]
    record(desk, "ST-3", [line("BTC", "11", tier=COLD), line("ETH", "109")], as_of=LATER)  # BRK-3
    desk.run(adjust("0.5", bid(3)))
    fresh = type(ledger)()
    for event in desk.events:
        fresh.apply(event)
    assert plain(fresh.state(desk.now)) == desk.state()
    assert fresh.list_breaks() == ledger.list_breaks()
    assert [(b.status, b.classification) for b in ledger.list_breaks()] == [
        (RESOLVED, TIMING), (RESOLVED, UNEXPLAINED), (OPEN, UNEXPLAINED)]
    desk.now += 1
    for each in (ledger, fresh):
        # the same reference is still known; the as_of bound and the break sequence carry on
        assert each.execute(statement("ST-2", [line("BTC", "11"), line("ETH", "109")], LATER), desk.now)[0].ignored
        with pytest.raises(EngineError) as info:
            each.execute(statement("ST-4", [], LATER - 1), desk.now)
        assert info.value.code == INVALID_ARGUMENT
        opened = each.execute(statement("ST-4", [line("BTC", "1")], LATER), desk.now)[0].opened
        assert [b.break_id for b in opened] == [bid(4), bid(5)]
        with pytest.raises(EngineError) as info:
            each.execute(adjust("1"), desk.now)
        assert info.value.message.startswith(BREAK_REQUIRED)
    assert plain(fresh.state(desk.now)) == plain(ledger.state(desk.now))


@pytest.mark.parametrize("stored", [False, True])
def test_snapshot_restore_carries_statements_and_breaks(stored):
    core = pytest.importorskip("etf_engine._core")
    ledger = core.Ledger()
    desk = sample(ledger)
    desk.now = LATER
    record(desk, "ST-1", [line("BTC", "9"), line("ETH", "99")])
    desk.run(resolve(bid(1), "-1", principal=ALICE))
    state = ledger.state(desk.now)
    if stored:  # as a snapshot file holds it
        state = msgspec.json.decode(msgspec.json.encode(state), type=LedgerState)
    restored = type(ledger).restore(state)
    assert plain(restored.state(desk.now)) == desk.state()
    assert restored.list_breaks() == ledger.list_breaks()
    at = desk.now + 1
    again = statement("ST-1", [line("BTC", "9"), line("ETH", "99")])
    assert restored.execute(again, at) == ledger.execute(again, at)
    nxt = statement("ST-2", [line("BTC", "8"), line("ETH", "99")])
    assert restored.execute(nxt, at) == ledger.execute(nxt, at)
    eth_adjustment = adjust("1", bid(2), asset="ETH")  # BRK-00000002 is the ETH break
    assert restored.execute(eth_adjustment, at) == ledger.execute(eth_adjustment, at)
    assert plain(restored.state(at)) == plain(ledger.state(at))
