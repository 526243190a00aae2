"""The servicers of etf_engine.v1: parse a request, hand it to the engine, format the reply.

Command RPCs are served by one generic path, from ``COMMANDS``: an RPC named as a command of
``model.py`` (RegisterAsset -> ``M.RegisterAsset``) converts its request into that command
(``convert.command``), executes it and makes the reply from the result (``convert.reply``). The
fields that come from who calls are set from the principal: ``principal`` always, ``participant_id``
for a participant acting as itself or on its own orders (the method's participant_scope in the
proto). A new command RPC therefore needs nothing here. Reads and streams are written out below.

Four eyes (SPEC §20): an Admin command RPC named in the config's ``four_eyes`` and called by an issuer is
not executed: its command goes to the engine wrapped in ``ProposeInstruction(command, principal)``, which
checks it in full and records it PENDING, and the reply holds only ``instruction_id`` and
``pending = true``. ApproveInstruction and RejectInstruction carry the caller's name as ``principal``,
as every command with that field does.

RecordStatement (SPEC §19) is the one command RPC written out, because its command needs what the ledger
alone cannot give: the book as it stood at the statement's ``as_of`` (``AdminServicer.RecordStatement``).

Authentication, the role table and error mapping live in the interceptor (``auth``); what needs
ledger data (a participant's eligible funds, whose order it is) is checked here, inside the
operation the writer runs, so that the check and the read see the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc.aio
import msgspec
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from etf_engine import model as M
from etf_engine.api import convert
from etf_engine.api.access import AS_ITSELF, OWN_ORDERS, RULES
from etf_engine.api.auth import ISSUER, PARTICIPANT, Principal, current_principal
from etf_engine.engine import ANY_RECORD, Engine
from etf_engine.errors import NOT_FOUND, PERMISSION_DENIED, EngineError, invalid, quote
from etf_engine.ledger import Ledger
from etf_engine.v1 import engine_pb2 as pb
from etf_engine.v1 import engine_pb2_grpc as rpc

Context = grpc.aio.ServicerContext
T = TypeVar("T")
R = TypeVar("R", bound=Message)
INSTRUCTION_STATUS_NAME = {v.number: v.name for v in pb.InstructionStatus.Value.DESCRIPTOR.values if v.number}
BREAK_STATUS_NAME = {v.number: v.name for v in pb.BreakStatus.Value.DESCRIPTOR.values if v.number}
DEFAULT_PAGE = 1000
MAX_PAGE = 5000
EVENTS_PAGE = 500  # StreamEvents reads the journal this many records at a time


def _participant_id(principal: Principal) -> str:
    # The role table lets only participants reach the callers of this; a participant always has an id.
    assert principal.participant_id is not None
    return principal.participant_id


def check_fund(ledger: Ledger, principal: Principal, fund_id: str) -> None:
    """A participant sees only the funds it is eligible for."""
    if principal.role != PARTICIPANT:
        return
    pid = _participant_id(principal)
    try:
        funds = ledger.participant_funds(pid)
    except EngineError:  # not registered (yet): eligible for nothing
        funds = ()
    if fund_id not in funds:
        raise EngineError(PERMISSION_DENIED, f"fund_id: participant {pid} is not eligible for fund {quote(fund_id)}")


def _check_order(principal: Principal, order: M.Order) -> None:
    """A participant sees only its own orders (the issuer and observers see all)."""
    if principal.role == PARTICIPANT and order.participant_id != principal.participant_id:
        raise EngineError(PERMISSION_DENIED, f"order_id: order {order.order_id} belongs to another participant")


def _status_filter(names: dict[int, str], value: int, what: str) -> str:
    """A List RPC's ``status`` filter: its name, "" for every status; INVALID_ARGUMENT for a number that is
    not one (a filter is never passed on to be refused later, as a command's enum is)."""
    if value and value not in names:
        raise invalid("status", f"{value} is not {what}")
    return convert.enum_name(names, value)


def _order_seq(order_id: str) -> int:
    """Order ids are ORD-%08d (ledger.py); the number orders pages, also beyond 8 digits."""
    return int(order_id[4:])


# == command RPCs ===================================================================================
# Command fields that come from who calls, never from the request.
FROM_CALLER: dict[str, Callable[[Principal], Any]] = {
    "principal": lambda p: p.name,  # every command that has the field (who did it: the audit trail)
    "participant_id": lambda p: p.participant_id,  # participant_scope AS_ITSELF or OWN_ORDERS (issuer: None)
}


@dataclass(frozen=True)
class Command:
    type: type[M.Struct]  # the command of model.py the request becomes
    reply: type[Message]  # made from the command's result
    scope: str  # the method's participant_scope: OWN_ORDERS checks that the order is the caller's
    caller: tuple[str, ...]  # its fields set from FROM_CALLER


def _commands(service: ServiceDescriptor) -> dict[str, Command]:
    """RPC name -> Command for every unary RPC of ``service`` named as a command of model.py."""
    table = {}
    for method in service.methods:
        command_type = getattr(M, method.name, None)
        if method.server_streaming or not (isinstance(command_type, type) and issubclass(command_type, M.Struct)):
            continue
        rule = RULES.get(f"/{service.full_name}/{method.name}")
        scope = rule.participant_scope if rule is not None else ""
        caller = tuple(n for n in FROM_CALLER if n in command_type.__struct_fields__ and (
            n != "participant_id" or scope in (AS_ITSELF, OWN_ORDERS)))
        problems = [] if command_type in convert.FIELDS else convert.unconverted(
            GetMessageClass(method.input_type), command_type, caller)
        if problems:
            raise TypeError(f"{method.full_name}: " + "; ".join(problems))
        table[method.name] = Command(command_type, GetMessageClass(method.output_type), scope, caller)
    return table


COMMANDS: dict[str, dict[str, Command]] = {s.name: _commands(s) for s in pb.DESCRIPTOR.services_by_name.values()}

# == four eyes (SPEC §20) ===========================================================================
# The RPCs that decide instructions are never instructions themselves.
DECIDING = frozenset({"ApproveInstruction", "RejectInstruction"})
# What ``four_eyes`` may list: every Admin RPC that changes state (its command RPCs) but those two.
FOUR_EYES_RPCS = frozenset(COMMANDS["Admin"]) - DECIDING
# Checkpoint journals the Merkle root of the records before it (SPEC §21) and moves no value: it is
# never an instruction (a second principal would only delay the root an auditor keeps).
NEVER_FOUR_EYES = frozenset({"Checkpoint"})
DEFAULT_FOUR_EYES = ("PayFee", "ResolveBreak")


def _four_eyes_replies() -> None:
    """Every reply of an RPC four_eyes may list can say "pending": checked when the server starts."""
    missing = [name for name in sorted(FOUR_EYES_RPCS) if not convert.four_eyes_reply(COMMANDS["Admin"][name].reply)]
    if missing:
        raise TypeError("replies without instruction_id and pending (SPEC §20): " + ", ".join(missing))


_four_eyes_replies()


def _serve(name: str, spec: Command) -> Callable[[Any, Message, Context], Awaitable[Message]]:
    async def serve(self: _Servicer, request: Message, context: Context) -> Message:
        principal = current_principal()
        command: Any = convert.command(spec.type, request, {n: FROM_CALLER[n](principal) for n in spec.caller})
        if name in self.four_eyes and principal.role == ISSUER:  # recorded, not executed, until approved
            proposed = await self.engine.execute(M.ProposeInstruction(command=command, principal=principal.name))
            return convert.pending_reply(spec.reply, proposed)
        if spec.scope == OWN_ORDERS:  # checked in the writer's operation, on the state the command meets

            def own(ledger: Ledger, now_ms: int) -> tuple[Any, list[M.Event]]:
                _check_order(principal, ledger.get_order(command.order_id))
                return ledger.execute(command, now_ms)

            result = await self.engine.submit(own)
        else:
            result = await self.engine.execute(command)
        return convert.reply(spec.reply, result, self.engine.decimals)

    serve.__name__ = serve.__qualname__ = name
    return serve


class _Servicer:
    SERVICE = ""  # the proto service: its command RPCs not written out in the class are served generically

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, spec in COMMANDS.get(cls.SERVICE, {}).items():
            if name not in cls.__dict__:
                setattr(cls, name, _serve(name, spec))

    four_eyes: frozenset[str] = frozenset()  # the RPCs of this service recorded as instructions (SPEC §20)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def order(self, o: M.Order) -> dict[str, Any]:
        """``o`` as the fields of an Order inside a reply (convert.order_fields)."""
        return convert.order_fields(o, self.engine.decimals)

    def reply(self, message_type: type[R], value: Any) -> R:
        return convert.reply(message_type, value, self.engine.decimals)


_FROM_THE_JOURNAL = object()  # RecordStatement's first step: records came after as_of, read the book from the journal


class AdminServicer(_Servicer, rpc.AdminServicer):
    SERVICE = "Admin"

    def __init__(self, engine: Engine, four_eyes: Iterable[str] = DEFAULT_FOUR_EYES) -> None:
        """``four_eyes``: the config's list."""
        super().__init__(engine)
        unknown = sorted(set(four_eyes) - FOUR_EYES_RPCS)
        if unknown:
            raise ValueError(f"four_eyes: not an Admin RPC that changes state: {', '.join(unknown)}")
        self.four_eyes = frozenset(four_eyes)

    # -- reconciliation (SPEC §19) ----------------------------------------------------------------------
    async def RecordStatement(
        self, request: pb.RecordStatementRequest, context: Context
    ) -> pb.RecordStatementReply:
        """A statement is compared with the book *at its as_of*, which the command carries as ``book``:

        - no record came after as_of (the engine's latest record is at or before it): the ledger's own state
          is the book then, and the command goes with ``book`` None (the ledger reads it itself at as_of).
          This is decided inside the writer's operation that executes the command, so that no record can
          come in between the decision and the comparison;
        - a record came after as_of: the book is the journal's as of then (``Engine.ledger_as_of``: the
          state right after the last record at or before as_of, read at as_of), and the command carries it.
          Records that come meanwhile are after as_of too (time never goes back), so it stays the book then.

        An as_of the ledger refuses (negative, in the future) goes to it with ``book`` None, to be refused
        in the ledger's order. Under four eyes the proposed command always carries the book (its approval
        comes later, when records will have come after as_of); the ledger's own checks, done at proposal and
        again at approval, are unchanged. Only ``execute`` runs in a writing operation: the book is read in
        reads, where a failure refuses the call instead of stopping the engine."""
        principal = current_principal()
        command: M.RecordStatement = convert.command(M.RecordStatement, request, {})
        fund_id, custodian_id, as_of = command.fund_id, command.custodian_id, command.as_of
        if "RecordStatement" in self.four_eyes and principal.role == ISSUER:

            def book_now(ledger: Ledger, now_ms: int) -> Any:
                if 0 <= as_of < self.engine.last_record_at:
                    return _FROM_THE_JOURNAL
                return ledger.statement_book(fund_id, custodian_id, as_of) if 0 <= as_of <= now_ms else None

            book = await self.engine.read(book_now)
            if book is _FROM_THE_JOURNAL:
                book = await self._journal_book(fund_id, custodian_id, as_of)
            proposed = await self.engine.execute(M.ProposeInstruction(
                command=msgspec.structs.replace(command, book=book), principal=principal.name))
            return convert.pending_reply(pb.RecordStatementReply, proposed)

        def at_once(ledger: Ledger, now_ms: int) -> tuple[Any, list[M.Event]]:
            if 0 <= as_of < self.engine.last_record_at:
                return _FROM_THE_JOURNAL, []
            return ledger.execute(command, now_ms)

        result = await self.engine.submit(at_once)
        if result is _FROM_THE_JOURNAL:
            book = await self._journal_book(fund_id, custodian_id, as_of)
            result = await self.engine.execute(msgspec.structs.replace(command, book=book))
        return self.reply(pb.RecordStatementReply, result)

    async def _journal_book(self, fund_id: str, custodian_id: str, as_of: int) -> M.StatementBook:
        """The book of (fund, custodian) as it stood at ``as_of``, from the journal. A fund unknown now is
        refused first (NOT_FOUND, as the ledger would), without building the past for it; a fund that did not
        exist yet at as_of held nothing then."""
        await self.engine.read(lambda ledger, now_ms: ledger.statement_book(fund_id, custodian_id, now_ms))
        past = await self.engine.ledger_as_of(as_of)
        try:
            return past.statement_book(fund_id, custodian_id)
        except EngineError as e:
            if e.code != NOT_FOUND:
                raise
            return M.StatementBook(lines=())

    async def Checkpoint(self, request: pb.CheckpointRequest, context: Context) -> pb.CheckpointReply:
        """SPEC §21: a checkpoint journaled now (never an instruction: NEVER_FOUR_EYES)."""
        return pb.CheckpointReply(checkpoint=convert.checkpoint(await self.engine.checkpoint()))

    async def ListBreaks(self, request: pb.ListBreaksRequest, context: Context) -> pb.ListBreaksReply:
        fund_id, status = request.fund_id, _status_filter(BREAK_STATUS_NAME, request.status, "a break status")
        found = await self.engine.read(lambda ledger, now_ms: ledger.list_breaks(fund_id, status))
        return self.reply(pb.ListBreaksReply, found)

    async def GetBreak(self, request: pb.GetBreakRequest, context: Context) -> pb.Break:
        break_id = request.break_id
        return convert.break_record(await self.engine.read(lambda ledger, now_ms: ledger.get_break(break_id)),
                                    self.engine.decimals)

    async def ListInstructions(
        self, request: pb.ListInstructionsRequest, context: Context
    ) -> pb.ListInstructionsReply:
        status = _status_filter(INSTRUCTION_STATUS_NAME, request.status, "an instruction status")
        found = await self.engine.read(lambda ledger, now_ms: ledger.list_instructions(status))
        return self.reply(pb.ListInstructionsReply, found)

    async def GetCalendar(self, request: pb.GetCalendarRequest, context: Context) -> pb.Calendar:
        calendar_id = request.calendar_id
        return self.reply(pb.Calendar, await self.engine.read(lambda ledger, now_ms: ledger.get_calendar(calendar_id)))

    async def ListWallets(self, request: pb.ListWalletsRequest, context: Context) -> pb.ListWalletsReply:
        principal = current_principal()
        participant_id = request.participant_id
        if principal.role == PARTICIPANT:
            own = _participant_id(principal)
            if participant_id not in ("", own):
                raise EngineError(PERMISSION_DENIED, f"participant_id: participant {own} may list only its own "
                                                     "wallets")
            participant_id = own
        wallets = await self.engine.read(lambda ledger, now_ms: ledger.list_wallets(participant_id))
        return self.reply(pb.ListWalletsReply, wallets)

    async def ListParticipants(
        self, request: pb.ListParticipantsRequest, context: Context
    ) -> pb.ListParticipantsReply:
        participants = await self.engine.read(lambda ledger, now_ms: ledger.list_participants())
        return self.reply(pb.ListParticipantsReply, participants)

    async def GetHoldings(self, request: pb.GetHoldingsRequest, context: Context) -> pb.Holdings:
        fund_id = request.fund_id
        if request.as_of:  # SPEC §21: the holdings as of then (0: now)
            result = (await self.engine.ledger_as_of(request.as_of)).get_holdings(fund_id)
        else:
            result = await self.engine.read(lambda ledger, now_ms: ledger.get_holdings(fund_id, now_ms))
        return convert.holdings(result, self.engine.decimals)


class DealingServicer(_Servicer, rpc.DealingServicer):
    SERVICE = "Dealing"

    async def CheckOrder(self, request: pb.CheckOrderRequest, context: Context) -> pb.CheckOrderReply:
        pid = _participant_id(current_principal())
        req = convert.order_request(request)
        result = await self.engine.read(lambda ledger, now_ms: ledger.check_order(pid, req, now_ms))
        return pb.CheckOrderReply(order=self.order(result))

    async def GetCapacity(self, request: pb.GetCapacityRequest, context: Context) -> pb.Capacity:
        pid = _participant_id(current_principal())
        fund_id = request.fund_id
        result = await self.engine.read(lambda ledger, now_ms: ledger.get_capacity(pid, fund_id, now_ms))
        return self.reply(pb.Capacity, result)

    async def GetOrder(self, request: pb.GetOrderRequest, context: Context) -> pb.GetOrderReply:
        principal = current_principal()
        order_id = request.order_id

        def read(ledger: Ledger, now_ms: int) -> M.Order:
            order = ledger.get_order(order_id, None, now_ms)
            _check_order(principal, order)
            return order

        return pb.GetOrderReply(order=self.order(await self.engine.read(read)))

    async def ListOrders(self, request: pb.ListOrdersRequest, context: Context) -> pb.ListOrdersReply:
        principal = current_principal()
        if request.page_size < 0:
            raise invalid("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        after = 0
        if request.page_token:
            try:
                after = _order_seq(request.page_token)
            except ValueError:
                raise invalid("page_token", f"{quote(request.page_token)} is not a token this server gave") from None
        status = _status_filter(convert.STATUS_NAME, request.status, "an order status")
        owner = principal.participant_id if principal.role == PARTICIPANT else None
        fund_id = request.fund_id

        def read(ledger: Ledger, now_ms: int) -> tuple[list[M.Order], bool]:
            orders = ledger.list_orders(fund_id, status, owner, now_ms)
            if after:
                orders = [o for o in orders if _order_seq(o.order_id) > after]
            return orders[:size], len(orders) > size

        page, more = await self.engine.read(read)
        return pb.ListOrdersReply(orders=[self.order(o) for o in page],
                                  next_page_token=page[-1].order_id if more else "")


class ValuationServicer(_Servicer, rpc.ValuationServicer):
    SERVICE = "Valuation"

    def __init__(self, engine: Engine, heartbeat_seconds: float = 15.0) -> None:
        super().__init__(engine)
        self.heartbeat_seconds = heartbeat_seconds

    async def _nav(self, principal: Principal, fund_id: str) -> pb.Nav:
        def read(ledger: Ledger, now_ms: int) -> M.Nav:
            nav = ledger.get_nav(fund_id, now_ms)  # NOT_FOUND before PERMISSION_DENIED, as SubmitOrder does
            check_fund(ledger, principal, fund_id)
            return nav

        return convert.nav(await self.engine.read(read), self.engine.decimals)

    async def GetNav(self, request: pb.GetNavRequest, context: Context) -> pb.Nav:
        principal, fund_id = current_principal(), request.fund_id
        if not request.as_of:
            return await self._nav(principal, fund_id)
        # SPEC §21: whoever may read the fund now may read its past. A participant is checked first, on the
        # ledger now, in GetNav's order (an unknown fund NOT_FOUND, then PERMISSION_DENIED): one not eligible
        # learns nothing of the past, nor makes the engine build it. Then the fund as of then (NOT_FOUND if
        # it did not exist yet).
        if principal.role == PARTICIPANT:
            await self._nav(principal, fund_id)
        nav = (await self.engine.ledger_as_of(request.as_of)).get_nav(fund_id)
        return convert.nav(nav, self.engine.decimals)

    async def _fund_read(self, fund_id: str, fn: Callable[[Ledger], T]) -> T:
        """A read of one fund's figures, for every role that may read the fund (as GetNav)."""
        principal = current_principal()

        def read(ledger: Ledger, now_ms: int) -> T:
            try:
                result = fn(ledger)
            except EngineError:
                # Refusals in GetNav's order: an unknown fund NOT_FOUND, then PERMISSION_DENIED, and only then
                # the read's own (a date without a strike is NOT_FOUND): a participant not eligible for the
                # fund learns nothing of its dates.
                if principal.role == PARTICIPANT:
                    ledger.get_nav(fund_id, now_ms)
                    check_fund(ledger, principal, fund_id)
                raise
            check_fund(ledger, principal, fund_id)  # NOT_FOUND before PERMISSION_DENIED, as GetNav
            return result

        return await self.engine.read(read)

    async def GetOfficialNav(self, request: pb.GetOfficialNavRequest, context: Context) -> pb.OfficialNav:
        fund_id, day = request.fund_id, request.dealing_date
        nav = await self._fund_read(fund_id, lambda ledger: ledger.get_official_nav(fund_id, day))
        return convert.official_nav(nav, self.engine.decimals)

    async def ListOfficialNavs(
        self, request: pb.ListOfficialNavsRequest, context: Context
    ) -> pb.ListOfficialNavsReply:
        fund_id, low, high = request.fund_id, request.from_date, request.to_date
        navs = await self._fund_read(fund_id, lambda ledger: ledger.list_official_navs(fund_id, low, high))
        return self.reply(pb.ListOfficialNavsReply, navs)

    async def GetPcf(self, request: pb.GetPcfRequest, context: Context) -> pb.Pcf:
        fund_id, day = request.fund_id, request.dealing_date
        return convert.pcf(await self._fund_read(fund_id, lambda ledger: ledger.get_pcf(fund_id, day)),
                           self.engine.decimals)

    async def GetBasket(self, request: pb.GetBasketRequest, context: Context) -> pb.Basket:
        principal = current_principal()
        fund_id = request.fund_id

        def read(ledger: Ledger, now_ms: int) -> M.Basket:
            result = ledger.get_basket(fund_id, now_ms)
            check_fund(ledger, principal, fund_id)
            return result

        return convert.basket(await self.engine.read(read), self.engine.decimals)

    async def ListFunds(self, request: pb.ListFundsRequest, context: Context) -> pb.ListFundsReply:
        principal = current_principal()

        def read(ledger: Ledger, now_ms: int) -> list[M.FundTerms]:
            funds = ledger.list_funds()
            if principal.role != PARTICIPANT:
                return funds
            try:
                eligible = set(ledger.participant_funds(_participant_id(principal)))
            except EngineError:  # not registered (yet): eligible for nothing
                eligible = set()
            return [t for t in funds if t.fund_id in eligible]

        return self.reply(pb.ListFundsReply, await self.engine.read(read))

    async def StreamEvents(self, request: pb.StreamEventsRequest,
                           context: Context) -> AsyncIterator[pb.JournalRecord]:
        """Every record after after_seq from the journal, in pages; then each new one as its commit
        wakes the stream (and at least every second, for a follower's records). A body is the event's
        JSON with its figures as decimal strings (``convert.EventBodies``)."""
        if request.after_seq < 0:
            raise invalid("after_seq", "must not be negative")
        after, feed = request.after_seq, self.engine.feed
        bodies = convert.EventBodies(self.engine.decimals)  # figures as decimal strings, as in replies
        while not feed.closed:
            seen = feed.version(ANY_RECORD)
            page = await self.engine.records(after, EVENTS_PAGE)
            await self._learn_breaks(bodies, page)
            for r in page:
                yield pb.JournalRecord(seq=r.seq, at=r.at, type=r.type, principal=r.principal, body=bodies.body(r.body))
            if page:
                after = page[-1].seq
            if len(page) < EVENTS_PAGE:
                await feed.wait(ANY_RECORD, seen, 1.0)

    async def _learn_breaks(self, bodies: convert.EventBodies, page: Iterable[Any]) -> None:
        """A BreakResolved body's adjustment is a quantity of its break's asset, which the record does not
        name: the stream learns it from the StatementRecorded that opened the break, or here, from the ledger,
        for a break opened before the stream's first record."""
        wanted = sorted({b for r in page if r.type == "BreakResolved" for b in bodies.unknown_breaks(r.body)})
        if not wanted:
            return

        def read(ledger: Ledger, now_ms: int) -> dict[str, str]:
            found = {}
            for break_id in wanted:
                with contextlib.suppress(EngineError):  # not applied here yet: the body says so
                    found[break_id] = ledger.get_break(break_id).asset
            return found

        bodies.learn_breaks(await self.engine.read(read))

    # -- the audit trail (SPEC §21): every role; the proofs are RFC 9162's, in hex ----------------------
    async def GetCheckpoint(self, request: pb.GetCheckpointRequest, context: Context) -> pb.Checkpoint:
        tree_size = request.tree_size
        return convert.checkpoint(await self.engine.audit(lambda trail, upto: trail.checkpoint(tree_size, upto)))

    async def GetInclusionProof(self, request: pb.GetInclusionProofRequest, context: Context) -> pb.InclusionProof:
        seq, tree_size = request.seq, request.tree_size
        journal = self.engine.journal

        def read(trail: Any, upto: int) -> pb.InclusionProof:
            size, proof, root = trail.inclusion(seq, tree_size, upto)
            leaf = journal.stored_records(seq - 1, 1)[0][2]  # type: ignore[attr-defined]
            return pb.InclusionProof(seq=seq, leaf_index=seq - 1, tree_size=size, leaf=leaf,
                                     proof=[h.hex() for h in proof], root=root.hex())

        return await self.engine.audit(read)

    async def GetConsistencyProof(
        self, request: pb.GetConsistencyProofRequest, context: Context
    ) -> pb.ConsistencyProof:
        from_size, to_size = request.from_size, request.to_size

        def read(trail: Any, upto: int) -> pb.ConsistencyProof:
            size, proof, old, new = trail.consistency(from_size, to_size, upto)
            return pb.ConsistencyProof(from_size=from_size, to_size=size, proof=[h.hex() for h in proof],
                                       from_root=old.hex(), to_root=new.hex())

        return await self.engine.audit(read)

    async def StreamNav(self, request: pb.StreamNavRequest, context: Context) -> AsyncIterator[pb.NavUpdate]:
        """Snapshot, then coalesced changes and heartbeats. The writer only bumps a version: this
        stream fetches the latest NAV itself when it is ready to send, so a slow consumer delays
        nobody but itself and never sees more than one update per interval."""
        if request.min_interval_ms < 0:
            raise invalid("min_interval_ms", "must not be negative")
        principal = current_principal()
        fund_id = request.fund_id
        feed = self.engine.feed
        loop = asyncio.get_running_loop()
        interval = request.min_interval_ms / 1000
        heartbeat = self.heartbeat_seconds

        # Read the version before fetching: a change racing the fetch triggers one more update
        # (at worst a repeat), never a missed one.
        seen = feed.version(fund_id)
        yield pb.NavUpdate(nav=await self._nav(principal, fund_id))
        last_sent = loop.time()
        while not feed.closed:
            due = last_sent + heartbeat
            version = await feed.wait(fund_id, seen, due - loop.time())
            if feed.closed:
                return
            if version == seen:
                if loop.time() < due:
                    continue
                is_heartbeat = True
            else:
                ready = last_sent + interval
                if loop.time() < ready:
                    await feed.sleep(ready - loop.time())
                    if feed.closed:
                        return
                is_heartbeat = False
            seen = feed.version(fund_id)
            yield pb.NavUpdate(nav=await self._nav(principal, fund_id), heartbeat=is_heartbeat)
            last_sent = loop.time()


class DiagnosticsServicer(rpc.DiagnosticsServicer):
    def __init__(self, leader_info: Callable[[], pb.LeaderInfo],
                 advance_clock: Callable[[int], Awaitable[int]], test_clock: bool = False) -> None:
        self._leader_info = leader_info
        self._advance_clock = advance_clock  # refuses unless the config says test_clock = true
        self._test_clock = test_clock

    async def Ping(self, request: pb.PingRequest, context: Context) -> pb.PingReply:
        return pb.PingReply()

    async def GetLeader(self, request: pb.GetLeaderRequest, context: Context) -> pb.LeaderInfo:
        return self._leader_info()

    async def AdvanceClock(self, request: pb.AdvanceClockRequest, context: Context) -> pb.AdvanceClockReply:
        return pb.AdvanceClockReply(now_unix_ms=await self._advance_clock(request.to_unix_ms))

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: Context) -> pb.WhoAmIReply:
        """The caller and what its role may call here, from the one role table (``access.RULES``)."""
        principal = current_principal()
        methods = [path for path, rule in RULES.items()
                   if principal.role in rule.roles and (self._test_clock or not rule.test_clock_only)]
        return pb.WhoAmIReply(principal=principal.name, role=principal.role,
                              participant_id=principal.participant_id or "", methods=methods)
