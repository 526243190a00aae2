# Four eyes on instructions (SPEC §20): a listed call is checked in full and recorded PENDING
# (ProposeInstruction, made by the engine for an issuer's call), then executed by a different issuer
# principal (ApproveInstruction) against the state then, or withdrawn (RejectInstruction).

cdef object PENDING = M.PENDING
cdef tuple _NOT_PROPOSABLE = (M.ProposeInstruction, M.ApproveInstruction, M.RejectInstruction)


class _Checked(Exception):
    """Raised by _emit while a proposed command runs dry: every check has passed, nothing is applied."""


def _propose(Ledger self, cmd, long long now_ms, list events):
    command = cmd.command
    handler = self._execute.get(type(command))
    if handler is None or isinstance(command, _NOT_PROPOSABLE):
        raise invalid("command", f"{type(command).__name__} cannot be an instruction")
    # Every refusal the command would give now, it gives now: its handler runs until it would emit its
    # first event (each handler checks everything before it emits), and nothing it emits applies.
    self.dry = True
    try:
        handler(self, command, now_ms, [])
    except _Checked:
        pass
    finally:
        self.dry = False
    instruction = M.Instruction(
        instruction_id="INS-%08d" % self.next_instruction_seq, rpc=type(command).__name__,
        request=msgspec.json.encode(command).decode(), status=PENDING, proposed_by=cmd.principal,
        proposed_at=now_ms)
    _emit(self, events, M.InstructionProposed(at=now_ms, instruction=instruction))
    return self.instructions[instruction.instruction_id]


cdef object _instruction(Ledger self, object instruction_id):
    instruction = self.instructions.get(instruction_id)
    if instruction is None:
        raise not_found("instruction", instruction_id)
    return instruction


cdef str _error_text(object error):
    """A refusal as an instruction keeps it: "CODE: message", the reason code that a FAILED_PRECONDITION
    message starts with, else the status code's name."""
    if error.code == FAILED_PRECONDITION:
        return error.message
    return f"{error.code}: {error.message}"


def _approve_instruction(Ledger self, cmd, long long now_ms, list events):
    instruction = _instruction(self, cmd.instruction_id)
    if cmd.principal == instruction.proposed_by:
        raise EngineError(PERMISSION_DENIED, f"four eyes: {quote(cmd.principal)} proposed instruction "
                                             f"{instruction.instruction_id}; another issuer principal must approve it")
    if instruction.status != PENDING:
        raise precondition(M.INSTRUCTION_NOT_PENDING, f"instruction {instruction.instruction_id} is "
                                                      f"{instruction.status}")
    command = msgspec.json.decode(instruction.request, type=getattr(M, instruction.rpc))
    if "approved_by" in type(command).__struct_fields__:  # a command that keeps its approver (ResolveBreak)
        command = _replace(command, approved_by=cmd.principal)
    produced = []
    try:
        self._execute[type(command)](self, command, now_ms, produced)
    except EngineError as error:
        if produced:  # a handler refuses before it emits; anything else would leave half a command applied
            raise
        decided = M.InstructionDecided(at=now_ms, instruction_id=instruction.instruction_id, status=M.FAILED,
                                       decided_by=cmd.principal, error=_error_text(error))
    else:
        proposer = instruction.proposed_by
        for event in produced:
            events.append(_replace(event, proposed_by=proposer))
        decided = M.InstructionDecided(at=now_ms, instruction_id=instruction.instruction_id, status=M.EXECUTED,
                                       decided_by=cmd.principal)
    _emit(self, events, decided)
    return self.instructions[instruction.instruction_id]


def _reject_instruction(Ledger self, cmd, long long now_ms, list events):
    instruction = _instruction(self, cmd.instruction_id)
    _need_text(cmd.reason, "reason")
    if instruction.status != PENDING:
        raise precondition(M.INSTRUCTION_NOT_PENDING, f"instruction {instruction.instruction_id} is "
                                                      f"{instruction.status}")
    _emit(self, events, M.InstructionDecided(at=now_ms, instruction_id=instruction.instruction_id,
                                            status=M.REJECTED, decided_by=cmd.principal, reason=cmd.reason))
    return self.instructions[instruction.instruction_id]


def _on_instruction_proposed(Ledger self, event):
    instruction = event.instruction
    self.instructions[instruction.instruction_id] = instruction
    self.next_instruction_seq = int(instruction.instruction_id[4:]) + 1


def _on_instruction_decided(Ledger self, event):
    instruction = self.instructions[event.instruction_id]
    self.instructions[event.instruction_id] = _replace(
        instruction, status=event.status, decided_by=event.decided_by, decided_at=event.at, error=event.error,
        reason=event.reason)


def list_instructions(Ledger self, str status=""):
    if status and status not in M.INSTRUCTION_STATUSES:
        raise invalid("status", f"{quote(status)} is not PENDING, EXECUTED, FAILED or REJECTED")
    return [self.instructions[k] for k in sorted(self.instructions)
            if not status or self.instructions[k].status == status]
