"""The Reports service (SPEC §21): each report's request checked, its figures gathered from the journal and
computed (etf_engine/reports.py), and formatted as its reply (decimal strings, as every reply).

A report reads states as of a time (``Engine.ledger_as_of``, on a worker thread) and the journal's records of
one fund, chosen by the journal's database (``AsOfReader.select``: the engine's reader of its history store,
the connection reads as of a time use), on a worker thread too; the ledger now is read only briefly, on the
loop, for the fund's terms and the orders a report names (closed orders never change again). Checks,
the first that fails: the caller's own rights (ParticipantActivity), the fund (NOT_FOUND), then the fields
in declaration order (INVALID_ARGUMENT naming the field), then what the fields name (a date without an
official NAV: NOT_FOUND naming ``dealing_date``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import grpc.aio

from etf_engine import model as M
from etf_engine import reports as R
from etf_engine.api import convert
from etf_engine.api.auth import PARTICIPANT, current_principal
from etf_engine.api.servicers import check_fund
from etf_engine.calendar import next_dealing_day, parse_date
from etf_engine.engine import UNAVAILABLE, Engine
from etf_engine.errors import NOT_FOUND, PERMISSION_DENIED, EngineError, invalid, quote
from etf_engine.journal.history import AsOfReader, LedgerAsOf
from etf_engine.journal.records import JournalError
from etf_engine.ledger import Ledger
from etf_engine.numbers import FRACTION_DP, format_fraction, format_money, format_price, format_quantity, format_scaled
from etf_engine.v1 import engine_pb2 as pb
from etf_engine.v1 import engine_pb2_grpc as rpc

Context = grpc.aio.ServicerContext
T = TypeVar("T")


class ReportsServicer(rpc.ReportsServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- what every report needs ----------------------------------------------------------------------
    async def _fund(self, fund_id: str, check: Callable[[Ledger], None] | None = None) -> tuple[M.FundTerms, R.Days]:
        """The fund's terms and days now (NOT_FOUND for an unknown fund); ``check`` runs on the same state."""

        def read(ledger: Ledger, now_ms: int) -> tuple[M.FundTerms, M.CalendarInfo | None]:
            terms = next((t for t in ledger.list_funds() if t.fund_id == fund_id), None)
            if terms is None:
                raise EngineError(NOT_FOUND, f"fund {quote(fund_id)} not found")
            if check is not None:
                check(ledger)
            return terms, ledger.get_calendar(terms.calendar_id) if terms.calendar_id else None

        terms, info = await self.engine.read(read)
        return terms, R.Days.of(info)

    async def _journal(self) -> AsOfReader:
        """The engine's reader of its journal's history store (made at the first read as of a time)."""
        return await asyncio.to_thread(self.engine.history_reader)  # FAILED_PRECONDITION without a journal


    async def _as_of(self, at: int) -> LedgerAsOf | None:
        """The state as of ``at`` (already clamped to now); None before 1970, where nothing was."""
        return await self.engine.ledger_as_of(at) if at >= 0 else None

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except JournalError as e:
            raise EngineError(UNAVAILABLE, f"cannot read the journal: {e}") from e

    async def _orders(self, order_ids: list[str]) -> dict[str, M.Order]:
        """The orders as they are now (a settled or cancelled order never changes again)."""
        return await self.engine.read(lambda ledger, now_ms: {i: ledger.get_order(i) for i in order_ids})

    def _span_seqs(self, reader: AsOfReader, start: int, end: int) -> tuple[int, int]:
        """(after, upto): the records with start <= at <= end."""
        upto = reader.last_seq_before(end + 1, self.engine.applied_seq())
        return reader.last_seq_before(start, upto), upto

    # -- R1 --------------------------------------------------------------------------------------------
    async def DailyReport(self, request: pb.DailyReportRequest, context: Context) -> pb.DailyReportReply:
        fund_id = request.fund_id
        terms, days = await self._fund(fund_id)
        day = parse_date(request.dealing_date, "dealing_date")
        closing_price = R.parse_closing_price(request.closing_price)
        iso = day.isoformat()

        def read(ledger: Ledger, now_ms: int) -> tuple[M.OfficialNav, M.Pcf | None, M.Pcf | None]:
            try:
                nav = ledger.get_official_nav(fund_id, iso)
            except EngineError as e:
                if e.code != NOT_FOUND:
                    raise
                raise EngineError(NOT_FOUND, f"dealing_date: fund {fund_id} has no official NAV for {iso}") from None
            pcf = _pcf(ledger, fund_id, iso)
            following = _pcf(ledger, fund_id, next_dealing_day(days.calendar, day).isoformat())
            return nav, pcf, following if following is not None and following.published_at == nav.struck_at else None

        nav, pcf, next_pcf = await self.engine.read(read)
        now = self.engine.now_ms()
        end_of_date = min(days.end(day), now)
        strike = await self.engine.ledger_as_of(nav.struck_at)
        end = await self.engine.ledger_as_of(end_of_date)
        reader = await self._journal()
        window_from = days.cutoff(days.previous_dealing_day(day), terms.dealing_cutoff)

        def gather() -> tuple[Any, ...]:
            fund = strike.fund_state(fund_id)
            assert fund is not None, "a fund exists at its own strike"
            try:
                open_breaks = end.list_breaks(fund_id, M.OPEN)
                overdue = [o for o in end.open_orders(fund_id) if o.overdue]
            except EngineError:  # not created yet at the end of the date (a strike after its end)
                open_breaks, overdue = [], []
            after = reader.last_seq_before(min(window_from, days.start(day)), end.seq)
            recorded, settled = R.day_records(reader.select, reader.store.name, fund_id, after, end.seq,
                                              days.start(day))
            return fund, strike.get_holdings(fund_id), open_breaks, overdue, recorded, settled

        fund, holdings, open_breaks, overdue, recorded, settled = await self._off_loop(gather)
        orders = await self._orders(sorted({*recorded, *settled}))
        of_date = [orders[i] for i in dict.fromkeys(recorded) if orders[i].dealing_date == iso]
        settled_on_date = [o for i in dict.fromkeys(settled) if (o := orders[i]).fund_id == fund_id
                           and o.status == M.SETTLED and o.updated_at <= end_of_date]
        decimals = self.engine.decimals
        figures = R.daily_figures(nav, decimals, strike_fund=fund, strike_holdings=holdings, pcf=pcf, next_pcf=next_pcf,
                                  orders_of_date=of_date, settled_on_date=settled_on_date, end_of_date=end_of_date,
                                  open_breaks=open_breaks, overdue_orders=overdue, closing_price=closing_price)
        official = convert.official_nav(nav, decimals)
        return pb.DailyReportReply(
            official_nav=official, nav_per_creation_unit=_text(figures.nav_per_creation_unit, format_money),
            cash_component=format_money(figures.cash_component),
            estimated_cash_component=_text(figures.estimated_cash_component, format_money),
            shares_outstanding=nav.shares_outstanding, shares_created=figures.shares_created,
            shares_redeemed=figures.shares_redeemed, orders=[_tally(t) for t in figures.orders],
            fee=format_money(nav.fee), accrued_fees=format_money(nav.accrued_fees),
            ratios=[pb.AssetRatios(asset=r.asset, staking_ratio=convert.ratio_text(r.illiquid, r.committed),
                                   staking_cap=format_fraction(r.staking_cap),
                                   liquid_ratio=convert.ratio_text(r.liquid, r.committed),
                                   liquidity_buffer=format_fraction(r.liquidity_buffer)) for r in figures.ratios],
            storage_breaches=official.storage_breaches,
            open_breaks=[convert.break_record(b, decimals) for b in figures.open_breaks],
            overdue_orders=[convert.order_fields(o, decimals) for o in figures.overdue_orders],
            closing_price=_text(closing_price, _fourth), premium_discount=_text(figures.premium_discount, _fourth))

    # -- R2 --------------------------------------------------------------------------------------------
    async def HoldingsReport(self, request: pb.HoldingsReportRequest, context: Context) -> pb.HoldingsReportReply:
        fund_id = request.fund_id
        _, days = await self._fund(fund_id)
        if request.as_of < 0:
            raise invalid("as_of", f"{request.as_of} is negative: times are unix milliseconds")
        now = self.engine.now_ms()
        at = min(request.as_of, now) if request.as_of else now
        state = await self.engine.ledger_as_of(at)
        decimals = self.engine.decimals

        def gather() -> R.HoldingsFigures:
            try:
                holdings, nav = state.get_holdings(fund_id), state.get_nav(fund_id)
            except EngineError as e:
                if e.code != NOT_FOUND:
                    raise
                raise EngineError(NOT_FOUND, f"as_of: fund {fund_id} did not exist yet at {at}") from None
            fund = state.fund_state(fund_id)
            assert fund is not None
            return R.holdings_figures(holdings, nav, fund, decimals, state.open_orders(fund_id), days)

        figures = await self._off_loop(gather)

        def leg(x: R.OrderLeg) -> pb.OrderLeg:
            return pb.OrderLeg(order_id=x.order_id, participant_id=x.participant_id, custodian_id=x.custodian_id,
                               asset=x.asset, quantity=format_quantity(x.quantity, decimals[x.asset]),
                               settlement_date_ms=x.settlement_date_ms)

        return pb.HoldingsReportReply(
            fund_id=fund_id, as_of=at, nav=_text(figures.nav, format_money),
            lines=[pb.HoldingsReportLine(
                custodian_id=x.custodian_id, asset=x.asset, bucket=x.bucket,
                tier=pb.Tier.Value.Value(x.tier) if x.tier else 0,
                quantity=format_quantity(x.quantity, decimals[x.asset]), price=_text(x.price, format_price),
                value=_text(x.value, format_money), percent_of_nav=_text(x.percent_of_nav, _fourth))
                for x in figures.lines],
            receivable=[leg(x) for x in figures.receivable], payable=[leg(x) for x in figures.payable],
            fee_payable=convert.lines(figures.fee_payable, decimals))

    # -- R3 --------------------------------------------------------------------------------------------
    async def RollForward(self, request: pb.RollForwardRequest, context: Context) -> pb.RollForwardReply:
        fund_id = request.fund_id
        terms, days = await self._fund(fund_id)
        span = R.period(getattr(request, "from"), request.to, days)
        now = self.engine.now_ms()
        opening = await self._as_of(min(span.start - 1, now))
        closing = await self._as_of(min(span.end, now))
        reader = await self._journal()

        def gather() -> tuple[R.Books, R.Books, list[M.Event], list[str], dict[str, str]]:
            opening_open, break_assets = _open_book(opening, fund_id)
            scan = R.FundScan(fund_id, R.ROLL_FORWARD_RECORDS, break_assets)
            events = scan.run(reader.select, reader.store.name, opening.seq if opening else 0,
                              closing.seq if closing else 0)
            closed = R.closed_between(opening_open, scan.accepted(), _open_book(closing, fund_id)[0])
            return _books(opening, fund_id), _books(closing, fund_id), events, closed, scan.break_assets

        opening_books, closing_books, events, closed, break_assets = await self._off_loop(gather)
        orders = await self._orders(closed)
        balances = await self._off_loop(lambda: R.roll_forward(
            [a.asset for a in terms.assets], opening_books, closing_books, events, orders.values(), break_assets))
        decimals = self.engine.decimals

        def amount(item: str, value: int) -> str:
            if item == R.CASH_ITEM:
                return format_money(value)
            if item == R.SHARES_ITEM:
                return str(value)
            return format_quantity(value, decimals[item])

        return pb.RollForwardReply(
            fund_id=fund_id, **{"from": span.first.isoformat(), "to": span.last.isoformat()},
            balances=[pb.RollForwardBalance(
                item=b.item, opening=amount(b.item, b.opening), closing=amount(b.item, b.closing),
                check=amount(b.item, b.check),
                movements=[pb.RollForwardMovement(kind=m.kind, amount=amount(b.item, m.amount), reason=m.reason,
                                                  break_id=m.break_id, at=m.at) for m in b.movements])
                for b in balances])

    # -- R5 --------------------------------------------------------------------------------------------
    async def StakingReport(self, request: pb.StakingReportRequest, context: Context) -> pb.StakingReportReply:
        fund_id = request.fund_id
        terms, days = await self._fund(fund_id)
        span = R.period(getattr(request, "from"), request.to, days)
        if request.as_of < 0:
            raise invalid("as_of", f"{request.as_of} is negative: times are unix milliseconds")
        now = self.engine.now_ms()
        at = min(request.as_of or span.end, now)
        state = await self._as_of(at)
        reader = await self._journal()

        def gather() -> list[R.StakingLine]:
            holdings = fund = None
            if state is not None:
                try:
                    holdings = state.get_holdings(fund_id)
                except EngineError:  # not created yet then
                    pass
                else:
                    fund = state.fund_state(fund_id)
            after, upto = self._span_seqs(reader, span.start, min(span.end, now))
            events = R.FundScan(fund_id, R.STAKING_RECORDS).run(reader.select, reader.store.name, after, upto)
            return R.staking_lines(holdings, fund, [a.asset for a in terms.assets], events)

        lines = await self._off_loop(gather)
        decimals = self.engine.decimals

        def q(value: int, asset: str) -> str:
            return format_quantity(value, decimals[asset])

        return pb.StakingReportReply(fund_id=fund_id, as_of=at, lines=[pb.StakingReportLine(
            asset=x.asset, staked=q(x.staked, x.asset), unbonding=q(x.unbonding, x.asset),
            unbonding_lots=[pb.StakingLot(custodian_id=lot.custodian_id, quantity=q(lot.quantity, x.asset),
                                          release_at=lot.release_at) for lot in x.lots],
            staked_ratio=convert.ratio_text(x.illiquid, x.committed), staking_cap=format_fraction(x.staking_cap),
            rewards_gross=q(x.rewards_gross, x.asset), staking_fees=q(x.staking_fees, x.asset),
            rewards_net=q(x.rewards_net, x.asset), slashed=q(x.slashed, x.asset)) for x in lines])

    # -- R6 --------------------------------------------------------------------------------------------
    async def BreakReport(self, request: pb.BreakReportRequest, context: Context) -> pb.BreakReportReply:
        fund_id = request.fund_id
        _, days = await self._fund(fund_id)
        span = R.period(getattr(request, "from"), request.to, days)
        until = min(span.end, self.engine.now_ms())
        state = await self._as_of(until)

        def gather() -> list[tuple[M.Break, int]]:
            try:
                breaks = state.list_breaks(fund_id) if state is not None else []
            except EngineError:  # not created yet then
                breaks = []
            return R.break_ages(breaks, span, until, days)

        decimals = self.engine.decimals
        return pb.BreakReportReply(fund_id=fund_id, breaks=[
            pb.BreakReportLine(break_record=convert.break_record(b, decimals), age_dealing_days=age)
            for b, age in await self._off_loop(gather)])

    # -- R7 --------------------------------------------------------------------------------------------
    async def ParticipantActivity(self, request: pb.ParticipantActivityRequest,
                                  context: Context) -> pb.ParticipantActivityReply:
        """A participant sees only itself (participant_id empty or its own: PERMISSION_DENIED naming
        participant_id otherwise, checked first) in a fund it is eligible for (PERMISSION_DENIED naming
        fund_id, after NOT_FOUND for an unknown fund); the issuer and observers see every participant, or the
        one named (NOT_FOUND naming participant_id when it is unknown)."""
        principal = current_principal()
        fund_id, participant_id = request.fund_id, request.participant_id
        if principal.role == PARTICIPANT:
            own = principal.participant_id or ""
            if participant_id not in ("", own):
                raise EngineError(PERMISSION_DENIED, f"participant_id: participant {own} may see only its own "
                                                     "activity")
            participant_id = own

        def check(ledger: Ledger) -> None:
            if principal.role == PARTICIPANT:
                check_fund(ledger, principal, fund_id)
            elif participant_id:
                try:
                    ledger.participant_funds(participant_id)
                except EngineError:
                    raise EngineError(NOT_FOUND, f"participant_id: participant {quote(participant_id)} not "
                                                 "found") from None

        _, days = await self._fund(fund_id, check)
        span = R.period(getattr(request, "from"), request.to, days)
        end = min(span.end, self.engine.now_ms())
        reader = await self._journal()

        def gather() -> list[str]:
            after, upto = self._span_seqs(reader, span.start, end)
            scan = R.FundScan(fund_id)
            scan.run(reader.select, reader.store.name, after, upto)
            return list(scan.recorded)

        orders = (await self._orders(await self._off_loop(gather))).values()
        tallies, rejects = R.participant_activity(
            [o for o in orders if participant_id in ("", o.participant_id)], end)
        return pb.ParticipantActivityReply(
            fund_id=fund_id, orders=[_tally(t) for t in tallies],
            rejects=[pb.RejectTally(participant_id=r.participant_id, reason=r.reason, count=r.count) for r in rejects])


def _pcf(ledger: Ledger, fund_id: str, iso: str) -> M.Pcf | None:
    try:
        return ledger.get_pcf(fund_id, iso)
    except EngineError:
        return None


def _open_book(state: LedgerAsOf | None, fund_id: str) -> tuple[list[str], dict[str, str]]:
    """The fund's orders ACCEPTED in ``state`` and its OPEN breaks (break_id -> asset); none before it existed."""
    if state is None:
        return [], {}
    try:
        return ([o.order_id for o in state.open_orders(fund_id)],
                {b.break_id: b.asset for b in state.list_breaks(fund_id, M.OPEN)})
    except EngineError as e:
        if e.code != NOT_FOUND:
            raise
        return [], {}


def _books(state: LedgerAsOf | None, fund_id: str) -> R.Books:
    """The fund's balances in ``state`` (zero before it existed)."""
    if state is None:
        return R.books(None, None)
    try:
        return R.books(state.get_holdings(fund_id), state.get_nav(fund_id))
    except EngineError as e:
        if e.code != NOT_FOUND:
            raise
        return R.books(None, None)


def _tally(t: R.OrderTally) -> pb.OrderTally:
    return pb.OrderTally(participant_id=t.participant_id, side=convert.SIDE_VALUE[t.side],
                         status=convert.STATUS_VALUE[t.status], count=t.count, units=t.units)


def _text(value: int | None, fmt: Callable[[int], str]) -> str:
    return "" if value is None else fmt(value)


def _fourth(value: int) -> str:
    """A 1e-4 figure (a ratio, a percentage, a price per share) with its 4 fraction digits."""
    return format_scaled(value, FRACTION_DP)

