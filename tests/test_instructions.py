"""SPEC §20 (four eyes on instructions) with the decisions of etf_engine/ledger.py ("Four eyes (SPEC §20)"):
each rule made to fire and probed at its boundary, on both ledgers (the ``ledger`` fixture: "core" and
"reference").

The ledger does not know the config's ``four_eyes`` list: the engine wraps a listed call of an issuer
principal in ``ProposeInstruction(command, principal)``; here the tests do. "alice" proposes, "bob" and
"carol" are other issuer principals. The world is conftest's sample (F1: 10 BTC + 100 ETH at CUS-A, cash
0, 1000 shares); ``accruing`` puts F1 on the HK calendar with a management fee of 0.0365 and strikes
Monday 2026-01-05 at the live prices, which accrues exactly 7,000,000.00 x 0.0365 / 365 = 700.00 to pay.
Every refusal goes through ``Desk.refused`` (the state is unchanged after it) and the events replay into
the same state.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from conftest import F1, F2, NOW, Desk, btc, cents, hk, plain, sample

from etf_engine import model as m
from etf_engine.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, EngineError
from etf_engine.model import (
    CREATE,
    EXECUTED,
    FAILED,
    FEE_EXCEEDS_ACCRUED,
    INSTRUCTION_NOT_PENDING,
    INSUFFICIENT_LIQUID_BALANCE,
    PENDING,
    REJECTED,
)
from etf_engine.snapshot import LedgerState

pytestmark = pytest.mark.unit

replace = msgspec.structs.replace
ALICE, BOB, CAROL = "alice", "bob", "carol"
HK, MON = "HK", "2026-01-05"
ACCRUED_SCALE = 10**26  # state()'s exact accrued fee: units of 10^-26 base currency


# -- helpers -------------------------------------------------------------------------------------


def propose(command: Any, principal: str = ALICE) -> m.ProposeInstruction:
    return m.ProposeInstruction(command=command, principal=principal)


def approve(instruction_id: str, principal: str = BOB) -> m.ApproveInstruction:
    return m.ApproveInstruction(instruction_id=instruction_id, principal=principal)


def reject(instruction_id: str, reason: str = "", principal: str = BOB) -> m.RejectInstruction:
    return m.RejectInstruction(instruction_id=instruction_id, reason=reason, principal=principal)


def cash(delta: str, fund_id: str = F1) -> m.AdjustCash:
    return m.AdjustCash(fund_id=fund_id, delta=delta, reason="income")


def holding(delta: str, asset: str = "BTC", custodian: str = "CUS-A", fund_id: str = F1) -> m.AdjustHolding:
    return m.AdjustHolding(fund_id=fund_id, custodian_id=custodian, asset=asset, delta=delta)


def pay(amount: str, fund_id: str = F1) -> m.PayFee:
    return m.PayFee(fund_id=fund_id, amount=amount)


def execute(desk: Desk, command: Any, now: int | None = None) -> tuple[Any, list[m.Event]]:
    """Desk.run, returning the events of this call as well."""
    at = desk.now if now is None else now
    result, events = desk.ledger.execute(command, at)
    desk.events += events
    desk.ledger.check_invariants(at)
    return result, events


def accruing(ledger) -> Desk:
    """The sample with F1 on HK and a fee of 0.0365 from Monday 09:00, struck Monday: 700.00 accrued."""
    desk = sample(ledger, max_price_age_seconds=40 * 86_400)
    desk.run(m.RegisterCalendar(calendar_id=HK, time_zone="Asia/Hong_Kong"))
    desk.now = hk(MON, "09:00")
    desk.update(F1, calendar_id=HK, management_fee_rate="0.0365")
    desk.now = hk(MON, "16:00")
    ticks = [m.PriceTick(asset=a, currency="HKD", price=p, as_of_unix_ms=desk.now)
             for a, p in (("BTC", "500000"), ("ETH", "20000"))]
    assert desk.run(m.StrikeNav(fund_id=F1, dealing_date=MON, ticks=ticks)).nav.fee == cents("700.00")
    desk.now = hk(MON, "17:00")
    return desk


def accrued(desk: Desk, fund_id: str = F1) -> int:
    """The exact accrued fee in cents (asserting it is a whole number of them)."""
    exact = next(f for f in desk.ledger.state(desk.now).funds if f.terms.fund_id == fund_id).accrued_fees
    assert exact % (ACCRUED_SCALE // 100) == 0
    return exact // (ACCRUED_SCALE // 100)


def without_instructions(state: LedgerState) -> LedgerState:
    return replace(state, instructions=[], next_instruction_seq=1)


# == proposing ====================================================================================
def test_propose_records_a_pending_instruction_and_nothing_else(ledger):
    desk = sample(ledger)
    before = ledger.state(NOW)
    command = cash("1000.00")
    instruction, events = execute(desk, propose(command))
    assert instruction == m.Instruction(instruction_id="INS-00000001", rpc="AdjustCash", request=instruction.request,
                                        status=PENDING, proposed_by=ALICE, proposed_at=NOW)
    assert msgspec.json.decode(instruction.request, type=m.AdjustCash) == command  # the request as JSON
    assert events == [m.InstructionProposed(at=NOW, instruction=instruction)]
    after = ledger.state(NOW)
    assert without_instructions(after) == before  # no cash moved
    assert (after.instructions, after.next_instruction_seq) == ([instruction], 2)
    assert desk.fund_figures() == (0, 1000)
    assert ledger.list_instructions() == ledger.list_instructions(PENDING) == [instruction]
    assert ledger.list_instructions(EXECUTED) == ledger.list_instructions(FAILED) == []
    assert ledger.list_instructions(REJECTED) == []
    assert desk.replayed_state() == desk.state()


def test_propose_pay_fee_checks_it_in_full_and_pays_nothing(ledger):
    desk = accruing(ledger)
    desk.refused(propose(pay("700.01")), FAILED_PRECONDITION, reason=FEE_EXCEEDS_ACCRUED)  # one cent over
    before = ledger.state(desk.now)
    instruction = desk.run(propose(pay("700.00")))
    assert (instruction.instruction_id, instruction.rpc, instruction.status) == ("INS-00000001", "PayFee", PENDING)
    assert msgspec.json.decode(instruction.request, type=m.PayFee) == pay("700.00")
    assert without_instructions(ledger.state(desk.now)) == without_instructions(before)
    assert accrued(desk) == cents("700.00")
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("command", "code", "names", "reason"), [
    (cash("1", fund_id="NOPE"), NOT_FOUND, "NOPE", None),
    (cash("0"), INVALID_ARGUMENT, "delta", None),
    (cash("1.001"), INVALID_ARGUMENT, "delta", None),
    (holding("-10.00000001"), FAILED_PRECONDITION, None, INSUFFICIENT_LIQUID_BALANCE),
    (holding("1", custodian="CUS-Z"), NOT_FOUND, "CUS-Z", None),
    (holding("1", asset="SOL"), INVALID_ARGUMENT, "asset", None),
    (pay("0.01"), FAILED_PRECONDITION, None, FEE_EXCEEDS_ACCRUED),  # nothing accrued
    (pay("-1"), INVALID_ARGUMENT, "amount", None),
    (pay("1", fund_id="NOPE"), NOT_FOUND, "NOPE", None),
    (m.PayFee(fund_id=F1, amount="1", quantity="1"), INVALID_ARGUMENT, "quantity", None),
])
def test_a_refusal_of_the_command_is_given_at_proposal(ledger, command, code, names, reason):
    desk = sample(ledger)
    error = desk.refused(propose(command), code, names=names, reason=reason)
    with pytest.raises(EngineError) as direct:  # the command's own refusal
        ledger.execute(command, desk.now)
    assert error == direct.value
    assert ledger.list_instructions() == []
    assert desk.run(propose(cash("1"))).instruction_id == "INS-00000001"  # no id was taken


def test_a_proposal_is_checked_against_the_state_now_alone(ledger):
    desk = sample(ledger)
    # each of two proposals fits the 10 BTC there are; pending ones reserve nothing
    first = desk.run(propose(holding("-10")))
    second = desk.run(propose(holding("-10"), CAROL))
    assert (first.status, second.status) == (PENDING, PENDING)
    assert desk.rows()[("CUS-A", "BTC")][0] == btc("10")
    desk.refused(propose(holding("-10.00000001")), FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)


# == approving ====================================================================================
def test_approval_by_another_principal_executes_it(ledger):
    desk = sample(ledger)
    instruction = desk.run(propose(cash("1000.00")))
    desk.now = NOW + 60_000
    result, events = execute(desk, approve(instruction.instruction_id, BOB))
    assert result == replace(instruction, status=EXECUTED, decided_by=BOB, decided_at=NOW + 60_000)
    assert events == [
        m.CashAdjusted(at=NOW + 60_000, fund_id=F1, delta=cents("1000.00"), proposed_by=ALICE),
        m.InstructionDecided(at=NOW + 60_000, instruction_id="INS-00000001", status=EXECUTED, decided_by=BOB),
    ]
    assert desk.fund_figures() == (cents("1000.00"), 1000)
    assert ledger.list_instructions(EXECUTED) == ledger.list_instructions() == [result]
    assert ledger.list_instructions(PENDING) == []
    assert desk.replayed_state() == desk.state()


def test_approval_executes_against_the_state_then(ledger):
    desk = sample(ledger)
    instruction = desk.run(propose(holding("-10")))
    desk.adjust("CUS-A", "BTC", "5")  # 15 BTC now
    desk.now = NOW + 1
    result, events = execute(desk, approve(instruction.instruction_id))
    assert result.status == EXECUTED
    assert events[0] == m.HoldingAdjusted(at=NOW + 1, fund_id=F1, custodian_id="CUS-A", asset="BTC",
                                          delta=-btc("10"), proposed_by=ALICE)
    assert isinstance(events[-1], m.InstructionDecided) and len(events) == 2
    assert desk.rows()[("CUS-A", "BTC")][0] == btc("5")
    assert desk.replayed_state() == desk.state()


def test_approving_pay_fee(ledger):
    desk = accruing(ledger)
    nav = desk.nav().nav
    instruction = desk.run(propose(pay("700.00")))
    result, events = execute(desk, approve(instruction.instruction_id, CAROL))
    assert (result.status, result.decided_by, result.error) == (EXECUTED, CAROL, "")
    assert events == [
        m.FeePaid(at=desk.now, fund_id=F1, amount=cents("700.00"), proposed_by=ALICE),
        m.InstructionDecided(at=desk.now, instruction_id=instruction.instruction_id, status=EXECUTED,
                             decided_by=CAROL),
    ]
    assert (accrued(desk), desk.fund_figures()[0], desk.nav().nav) == (0, -cents("700.00"), nav)
    assert desk.replayed_state() == desk.state()


def test_the_proposer_cannot_approve_checked_before_not_pending(ledger):
    desk = sample(ledger)
    instruction_id = desk.run(propose(cash("1"))).instruction_id
    desk.refused(approve(instruction_id, ALICE), PERMISSION_DENIED)
    assert ledger.list_instructions(PENDING)[0].instruction_id == instruction_id
    desk.run(approve(instruction_id, BOB))
    desk.refused(approve(instruction_id, ALICE), PERMISSION_DENIED)  # not "not pending": the proposer first
    desk.refused(approve(instruction_id, BOB), FAILED_PRECONDITION, reason=INSTRUCTION_NOT_PENDING)
    desk.refused(approve(instruction_id, CAROL), FAILED_PRECONDITION, reason=INSTRUCTION_NOT_PENDING)
    desk.refused(reject(instruction_id, "late", ALICE), FAILED_PRECONDITION, reason=INSTRUCTION_NOT_PENDING)
    desk.refused(reject(instruction_id, "late", CAROL), FAILED_PRECONDITION, reason=INSTRUCTION_NOT_PENDING)
    assert desk.fund_figures()[0] == cents("1")  # executed once


def test_unknown_instruction_is_not_found(ledger):
    desk = sample(ledger)
    desk.run(propose(cash("1")))
    for unknown in ("INS-00000002", "INS-99999999"):
        desk.refused(approve(unknown, ALICE), NOT_FOUND, names=unknown)  # before the principal
        desk.refused(approve(unknown, BOB), NOT_FOUND, names=unknown)
        desk.refused(reject(unknown, "x" * 257), NOT_FOUND, names=unknown)  # before the reason


def test_a_stale_instruction_fails_and_the_approval_succeeds(ledger):
    desk = sample(ledger)
    instruction = desk.run(propose(holding("-10")))
    desk.adjust("CUS-A", "BTC", "-0.00000001")  # now the command is refused
    with pytest.raises(EngineError) as direct:
        ledger.execute(holding("-10"), desk.now)
    before = ledger.state(desk.now)
    desk.now = NOW + 5
    result, events = execute(desk, approve(instruction.instruction_id, BOB))
    assert result.status == FAILED
    assert result.error.startswith(INSUFFICIENT_LIQUID_BALANCE) and direct.value.message in result.error
    assert result == replace(instruction, status=FAILED, decided_by=BOB, decided_at=NOW + 5, error=result.error)
    assert events == [m.InstructionDecided(at=NOW + 5, instruction_id=instruction.instruction_id, status=FAILED,
                                           decided_by=BOB, error=result.error)]
    after = ledger.state(desk.now)
    assert replace(after, instructions=before.instructions) == before  # nothing moved
    assert after.instructions == [result]
    assert desk.rows()[("CUS-A", "BTC")][0] == btc("9.99999999")
    assert ledger.list_instructions(FAILED) == [result] and ledger.list_instructions(PENDING) == []
    desk.refused(approve(instruction.instruction_id, CAROL), FAILED_PRECONDITION, reason=INSTRUCTION_NOT_PENDING)
    desk.refused(reject(instruction.instruction_id, "", CAROL), FAILED_PRECONDITION, reason=INSTRUCTION_NOT_PENDING)
    assert desk.replayed_state() == desk.state()


def test_a_stale_pay_fee_fails(ledger):
    desk = accruing(ledger)
    whole = desk.run(propose(pay("700.00")))
    cent = desk.run(propose(pay("0.01"), CAROL))
    assert desk.run(approve(cent.instruction_id, BOB)).status == EXECUTED  # 699.99 left
    result = desk.run(approve(whole.instruction_id, BOB))
    assert (result.status, result.error.startswith(FEE_EXCEEDS_ACCRUED)) == (FAILED, True)
    assert accrued(desk) == cents("699.99")
    assert desk.fund_figures()[0] == -cents("0.01")
    assert desk.replayed_state() == desk.state()


def test_a_failure_without_a_reason_code_keeps_the_status_code(ledger):
    desk = sample(ledger)
    big = "6000000000000000000000000000"  # 6 x 10^27: twice that passes the 10^30 cents money can hold
    instruction = desk.run(propose(cash(big)))
    desk.cash(big)
    with pytest.raises(EngineError) as direct:
        ledger.execute(cash(big), desk.now)
    assert direct.value.code == "OUT_OF_RANGE"
    result = desk.run(approve(instruction.instruction_id))
    assert result.status == FAILED
    assert result.error == f"OUT_OF_RANGE: {direct.value.message}"
    assert desk.replayed_state() == desk.state()


# == rejecting ====================================================================================
@pytest.mark.parametrize("principal", [ALICE, BOB])
def test_reject_by_any_issuer_the_proposer_included(ledger, principal):
    desk = sample(ledger)
    instruction = desk.run(propose(cash("1000.00")))
    before = ledger.state(desk.now)
    desk.now = NOW + 7
    result, events = execute(desk, reject(instruction.instruction_id, "withdrawn: wrong amount", principal))
    assert result == replace(instruction, status=REJECTED, decided_by=principal, decided_at=NOW + 7,
                             reason="withdrawn: wrong amount")
    assert events == [m.InstructionDecided(at=NOW + 7, instruction_id=instruction.instruction_id, status=REJECTED,
                                           decided_by=principal, reason="withdrawn: wrong amount")]
    assert replace(ledger.state(desk.now), instructions=before.instructions) == before
    assert desk.fund_figures()[0] == 0
    assert ledger.list_instructions(REJECTED) == [result]
    desk.refused(approve(instruction.instruction_id, CAROL), FAILED_PRECONDITION, reason=INSTRUCTION_NOT_PENDING)
    desk.refused(approve(instruction.instruction_id, ALICE), PERMISSION_DENIED)
    desk.refused(reject(instruction.instruction_id, "again", ALICE), FAILED_PRECONDITION,
                 reason=INSTRUCTION_NOT_PENDING)
    assert desk.replayed_state() == desk.state()


@pytest.mark.parametrize(("reason", "ok"), [
    ("", True), ("x" * 256, True), ("ü" * 256, True), ("x" * 257, False), ("ü" * 257, False),
])
def test_reject_reason_length(ledger, reason, ok):
    desk = sample(ledger)
    instruction_id = desk.run(propose(cash("1"))).instruction_id
    if ok:
        assert desk.run(reject(instruction_id, reason)).reason == reason
        assert desk.replayed_state() == desk.state()
    else:
        desk.refused(reject(instruction_id, reason), INVALID_ARGUMENT, names="reason")
        desk.run(approve(instruction_id))
        desk.refused(reject(instruction_id, reason), INVALID_ARGUMENT, names="reason")  # before not pending


# == listing and ids ==============================================================================
def four_statuses(desk: Desk) -> list[m.Instruction]:
    """INS-1 EXECUTED, INS-2 FAILED, INS-3 REJECTED, INS-4 PENDING."""
    executed = desk.run(propose(cash("1.00")))
    failed = desk.run(propose(holding("-10"), CAROL))
    rejected = desk.run(propose(cash("2.00", fund_id=F2)))
    desk.run(propose(holding("1", asset="ETH")))  # stays pending
    desk.adjust("CUS-A", "BTC", "-1")
    desk.run(approve(executed.instruction_id))
    desk.run(approve(failed.instruction_id, ALICE))
    desk.run(reject(rejected.instruction_id, "no"))
    return desk.ledger.list_instructions()


def test_list_instructions_filters_by_status(ledger):
    desk = sample(ledger)
    listed = four_statuses(desk)
    assert [(i.instruction_id, i.status) for i in listed] == [
        ("INS-00000001", EXECUTED), ("INS-00000002", FAILED), ("INS-00000003", REJECTED), ("INS-00000004", PENDING)]
    for status, index in ((EXECUTED, 0), (FAILED, 1), (REJECTED, 2), (PENDING, 3)):
        assert ledger.list_instructions(status) == [listed[index]]
    assert ledger.list_instructions("") == listed
    assert ledger.state(desk.now).instructions == listed
    for bad in ("DONE", "pending", "APPROVED", " PENDING"):
        with pytest.raises(EngineError) as info:
            ledger.list_instructions(bad)
        assert (info.value.code, "status" in info.value.message) == (INVALID_ARGUMENT, True)


def test_instruction_ids_are_one_global_sequence(ledger):
    desk = sample(ledger)
    ids = [desk.run(propose(cash("1"))).instruction_id]
    ids.append(desk.run(propose(cash("1", fund_id=F2), BOB)).instruction_id)  # another fund, another proposer
    desk.refused(propose(holding("-11")), FAILED_PRECONDITION, reason=INSUFFICIENT_LIQUID_BALANCE)  # takes none
    desk.run(approve(ids[0]))
    desk.run(reject(ids[1], "", ALICE))
    assert desk.order(CREATE, 1).order_id == "ORD-00000001"  # orders keep their own sequence
    ids.append(desk.run(propose(holding("1", fund_id=F2), CAROL)).instruction_id)
    ids.append(desk.run(propose(cash("-5"))).instruction_id)
    assert ids == ["INS-00000001", "INS-00000002", "INS-00000003", "INS-00000004"]
    assert ledger.state(desk.now).next_instruction_seq == 5
    assert desk.replayed_state() == desk.state()


# == snapshot, restore and replay ==================================================================
def test_replay_carries_instructions_and_the_approval_after_it(ledger):
    desk = sample(ledger)
    four_statuses(desk)
    fresh = type(ledger)()
    for event in desk.events:
        fresh.apply(event)
    assert plain(fresh.state(desk.now)) == desk.state()
    assert fresh.list_instructions() == ledger.list_instructions()
    # both go on alike: the pending one approved, the next id
    desk.now += 1
    for each in (ledger, fresh):
        result, events = each.execute(approve("INS-00000004"), desk.now)
        assert result.status == EXECUTED
        assert events[0] == m.HoldingAdjusted(at=desk.now, fund_id=F1, custodian_id="CUS-A", asset="ETH",
                                              delta=10**18, proposed_by=ALICE)
        assert each.execute(propose(cash("1")), desk.now)[0].instruction_id == "INS-00000005"
    assert plain(fresh.state(desk.now)) == plain(ledger.state(desk.now))


@pytest.mark.parametrize("stored", [False, True])
def test_snapshot_restore_carries_instructions(stored):
    core = pytest.importorskip("etf_engine._core")
    ledger = core.Ledger()
    desk = sample(ledger)
    four_statuses(desk)
    state = ledger.state(desk.now)
    if stored:  # as a snapshot file holds it
        state = msgspec.json.decode(msgspec.json.encode(state), type=LedgerState)
    restored = type(ledger).restore(state)
    assert plain(restored.state(desk.now)) == desk.state()
    assert restored.list_instructions() == ledger.list_instructions()
    assert restored.list_instructions(PENDING) == ledger.list_instructions(PENDING)
    at = desk.now + 1
    assert restored.execute(approve("INS-00000004"), at) == ledger.execute(approve("INS-00000004"), at)
    assert restored.execute(propose(cash("1")), at) == ledger.execute(propose(cash("1")), at)
    assert plain(restored.state(at)) == plain(ledger.state(at))
