"""Four eyes: a listed call recorded as a PENDING instruction, executed when another issuer approves it (SPEC §20)."""

from __future__ import annotations

import copy

import msgspec

from etf_engine import model as m
from etf_engine.errors import FAILED_PRECONDITION, PERMISSION_DENIED, EngineError, invalid, not_found, precondition
from etf_engine.reference.checks import _one_of, _text


def failure(error: EngineError) -> str:
    """A refusal as an instruction keeps it: its reason code (or status code) first."""
    return error.message if error.code == FAILED_PRECONDITION else f"{error.code}: {error.message}"


class Instructions:
    """Instructions under four eyes: proposed, approved (executed or failed) or rejected."""

    def _instruction_of(self, instruction_id: str) -> m.Instruction:
        if instruction_id not in self.instructions:
            raise not_found("instruction", instruction_id)
        return self.instructions[instruction_id]

    def _propose(self, c: m.ProposeInstruction, now: int) -> tuple[m.Instruction, list[m.Event]]:
        if isinstance(c.command, (m.ProposeInstruction, m.ApproveInstruction, m.RejectInstruction)):
            raise invalid("command", f"{type(c.command).__name__} is not an instruction to propose")
        copy.deepcopy(self).execute(c.command, now)  # every check of the call, on a copy: nothing applied here
        instruction = m.Instruction(
            instruction_id=f"INS-{self.next_instruction_seq:08d}", rpc=type(c.command).__name__,
            request=msgspec.json.encode(c.command).decode(), status=m.PENDING, proposed_by=c.principal,
            proposed_at=now)
        events = self._commit(m.InstructionProposed(at=now, instruction=instruction))
        return instruction, events

    def _on_proposed(self, e: m.InstructionProposed) -> None:
        self.instructions[e.instruction.instruction_id] = e.instruction
        self.next_instruction_seq += 1

    def _approve(self, c: m.ApproveInstruction, now: int) -> tuple[m.Instruction, list[m.Event]]:
        instruction = self._instruction_of(c.instruction_id)
        if c.principal == instruction.proposed_by:
            raise EngineError(PERMISSION_DENIED, f"four eyes: {c.principal!r} proposed {c.instruction_id}; "
                                                 "another issuer must approve it")
        self._pending(instruction)
        command = msgspec.json.decode(instruction.request, type=getattr(m, instruction.rpc))
        if "approved_by" in command.__struct_fields__:  # a command that keeps its approver (ResolveBreak)
            command = msgspec.structs.replace(command, approved_by=c.principal)
        try:
            _, produced = self.execute(command, now)
        except EngineError as error:
            events = self._commit(m.InstructionDecided(at=now, instruction_id=c.instruction_id, status=m.FAILED,
                                                       decided_by=c.principal, error=failure(error)))
        else:
            produced = [msgspec.structs.replace(e, proposed_by=instruction.proposed_by) for e in produced]
            events = produced + self._commit(m.InstructionDecided(at=now, instruction_id=c.instruction_id,
                                                                  status=m.EXECUTED, decided_by=c.principal))
        return self.instructions[c.instruction_id], events

    def _reject(self, c: m.RejectInstruction, now: int) -> tuple[m.Instruction, list[m.Event]]:
        instruction = self._instruction_of(c.instruction_id)
        _text(c.reason, "reason")
        self._pending(instruction)
        events = self._commit(m.InstructionDecided(at=now, instruction_id=c.instruction_id, status=m.REJECTED,
                                                   decided_by=c.principal, reason=c.reason))
        return self.instructions[c.instruction_id], events

    @staticmethod
    def _pending(instruction: m.Instruction) -> None:
        if instruction.status != m.PENDING:
            raise precondition(m.INSTRUCTION_NOT_PENDING, f"{instruction.instruction_id} is {instruction.status}")

    def _on_decided(self, e: m.InstructionDecided) -> None:
        self.instructions[e.instruction_id] = msgspec.structs.replace(
            self.instructions[e.instruction_id], status=e.status, decided_by=e.decided_by, decided_at=e.at,
            error=e.error, reason=e.reason)

    def list_instructions(self, status: str = "") -> list[m.Instruction]:
        if status:
            _one_of(status, m.INSTRUCTION_STATUSES, "status")
        return [i for _, i in sorted(self.instructions.items()) if not status or i.status == status]
