"""Reconciliation: custodians' statements against the book, breaks and their resolution (SPEC §19)."""

from __future__ import annotations

import msgspec

from etf_engine import addresses
from etf_engine import model as m
from etf_engine.errors import ALREADY_EXISTS, EngineError, invalid, not_found, precondition
from etf_engine.numbers import MAX_QUANTITY, parse_scaled
from etf_engine.reference.checks import _at_least, _bucket, _one_of, _text
from etf_engine.reference.state import Fund

Key = tuple[str, str, str]  # (asset, bucket, tier)


class Reconciliation:
    """Statements, the book they are compared with, and the breaks that differences open."""

    # -- the book ----------------------------------------------------------------------------------
    def statement_book(self, fund_id: str, custodian_id: str, now_ms: int) -> m.StatementBook:
        fund = self._fund(fund_id)
        lines, in_flight = [], []
        for a in sorted(t.asset for t in fund.terms.assets):
            h = self._holding(fund, custodian_id, a)
            cold, warm, hot = h.tiers(now_ms)
            for bucket, tier, q in ((m.AVAILABLE, "", h.free(now_ms) + h.reserved), (m.AVAILABLE, m.COLD, cold),
                                    (m.AVAILABLE, m.HOT, hot), (m.AVAILABLE, m.WARM, warm),
                                    (m.STAKED, "", h.staked), (m.UNBONDING, "", h.unbonding(now_ms))):
                if q:
                    lines.append(m.BookLine(asset=a, bucket=bucket, tier=tier, quantity=q))
            flight = self._in_flight(fund, custodian_id, a)
            if flight is not None:
                in_flight.append(flight)
        lines.sort(key=lambda line: (line.asset, line.bucket, line.tier))
        return m.StatementBook(lines=tuple(lines), in_flight=tuple(in_flight))

    def _in_flight(self, fund: Fund, custodian_id: str, asset: str) -> m.InFlight | None:
        """Confirmed deliveries on ACCEPTED creations to the custodian minus payouts on legs of ACCEPTED
        redemptions there, of one asset; None when there are none."""
        quantity, order_ids, tx_hashes = 0, set(), set()
        needed = self.asset_rules[asset][0]
        for o in self._fund_orders(fund):
            if o.status != m.ACCEPTED:
                continue
            if o.side == m.CREATE and fund.terms.creation_custodian_id == custodian_id:
                for d in o.deliveries:
                    if d.asset == asset and d.confirmations >= needed:
                        quantity += d.quantity
                        order_ids.add(o.order_id)
                        tx_hashes.add(d.tx_hash)
            if o.side == m.REDEEM:
                for p in o.payouts:
                    if (p.custodian_id, p.asset) == (custodian_id, asset):
                        quantity -= p.quantity
                        order_ids.add(o.order_id)
                        tx_hashes.add(p.tx_hash)
        if not order_ids:
            return None
        return m.InFlight(asset=asset, quantity=quantity, order_ids=tuple(sorted(order_ids)),
                          tx_hashes=tuple(sorted(tx_hashes)))

    # -- statements ----------------------------------------------------------------------------------
    def _record_statement(self, c: m.RecordStatement, now: int) -> tuple[m.StatementResult, list[m.Event]]:
        fund = self._fund(c.fund_id)
        self._custodian(c.custodian_id)
        addresses.check_printable(c.reference, "reference")
        mine = [s for s in self.statements if (s.fund_id, s.custodian_id) == (c.fund_id, c.custodian_id)]
        known = next((s for s in mine if s.reference == c.reference), None)
        if known is not None:  # a retry is known by its reference, whatever came since
            if (known.as_of, known.source, known.lines) == (c.as_of, c.source, self._statement_lines(fund, c)):
                return m.StatementResult(opened=[], resolved=[], ignored=True), []
            raise EngineError(ALREADY_EXISTS, f"statement {c.reference!r} is recorded with other content")
        _at_least(c.as_of, 0, "as_of")
        if c.as_of > now:
            raise invalid("as_of", "is in the future")
        if mine and c.as_of < mine[-1].as_of:
            raise invalid("as_of", f"is before the previous statement's ({mine[-1].as_of})")
        _one_of(c.source, m.SOURCES, "source")
        lines = self._statement_lines(fund, c)
        book = c.book if c.book is not None else self.statement_book(c.fund_id, c.custodian_id, c.as_of)
        opened, resolved = self._compare(c, lines, book, now)
        event = m.StatementRecorded(at=now, fund_id=c.fund_id, custodian_id=c.custodian_id, as_of=c.as_of,
                                    source=c.source, reference=c.reference, lines=lines, opened=tuple(opened),
                                    resolved=tuple(resolved))
        return m.StatementResult(opened=opened, resolved=resolved), self._commit(event)

    def _statement_lines(self, fund: Fund, c: m.RecordStatement) -> tuple[m.StatementLine, ...]:
        lines: dict[Key, m.StatementLine] = {}
        for i, spec in enumerate(c.lines):
            at = f"lines[{i}]"
            if fund.asset(spec.asset) is None:
                raise invalid(f"{at}.asset", f"{spec.asset!r} is not an asset of fund {c.fund_id!r}")
            _one_of(spec.bucket, m.BUCKETS, f"{at}.bucket")
            if spec.tier:
                _one_of(spec.tier, m.TIERS, f"{at}.tier")
                if spec.bucket != m.AVAILABLE:
                    raise invalid(f"{at}.tier", f"a {spec.bucket} line has no tier")
            quantity = parse_scaled(spec.quantity, f"{at}.quantity", self.assets[spec.asset], limit=MAX_QUANTITY)
            key = (spec.asset, spec.bucket, spec.tier)
            if key in lines:
                raise invalid(at, f"{'/'.join(k for k in key if k)} is given twice")
            lines[key] = m.StatementLine(asset=spec.asset, bucket=spec.bucket, tier=spec.tier, quantity=quantity)
        return tuple(lines[k] for k in sorted(lines))

    def _compare(self, c: m.RecordStatement, lines: tuple[m.StatementLine, ...],
                 book: m.StatementBook, now: int) -> tuple[list[m.Break], list[str]]:
        said = {(ln.asset, ln.bucket, ln.tier): ln.quantity for ln in lines}
        held = {(ln.asset, ln.bucket, ln.tier): ln.quantity for ln in book.lines}
        named = {(a, b) for a, b, _ in said}
        keys = set(said) | {k for k in held if k[2] == "" and k[:2] not in named}
        flights = {f.asset: f for f in book.in_flight}
        opened, resolved = [], []
        seq = self.next_break_seq
        for key in sorted(keys):
            asset, bucket, tier = key
            ours, theirs = held.get(key, 0), said.get(key, 0)
            if ours == theirs:
                resolved += [b.break_id for b in self._open_breaks(c.fund_id, c.custodian_id, asset)
                             if (b.bucket, b.tier) == (bucket, tier)
                             and (b.classification == m.TIMING or bucket == m.UNBONDING)]
                continue
            flight = flights.get(asset)
            timing = (bucket, tier) == (m.AVAILABLE, "") and flight is not None and theirs == ours + flight.quantity
            opened.append(m.Break(
                break_id=f"BRK-{seq:08d}", fund_id=c.fund_id, custodian_id=c.custodian_id, asset=asset, bucket=bucket,
                tier=tier, as_of=c.as_of, book=ours, statement=theirs, difference=ours - theirs,
                classification=m.TIMING if timing else m.UNEXPLAINED, status=m.OPEN, opened_at=now,
                reference=c.reference, order_ids=flight.order_ids if timing else (),
                tx_hashes=flight.tx_hashes if timing else ()))
            seq += 1
        return opened, sorted(resolved)

    def _on_statement(self, e: m.StatementRecorded) -> None:
        self.statements.append(m.Statement(fund_id=e.fund_id, custodian_id=e.custodian_id, as_of=e.as_of,
                                           source=e.source, reference=e.reference, lines=e.lines, recorded_at=e.at))
        for b in e.opened:
            self.breaks[b.break_id] = b
            self.next_break_seq += 1
        for break_id in e.resolved:
            self.breaks[break_id] = msgspec.structs.replace(self.breaks[break_id], status=m.RESOLVED, resolved_at=e.at,
                                                            resolved_by_reference=e.reference)

    def _open_breaks(self, fund_id: str, custodian_id: str, asset: str) -> list[m.Break]:
        return [b for _, b in sorted(self.breaks.items()) if b.status == m.OPEN
                and (b.fund_id, b.custodian_id, b.asset) == (fund_id, custodian_id, asset)]

    # -- resolving a break ---------------------------------------------------------------------------
    def _break(self, break_id: str) -> m.Break:
        if break_id not in self.breaks:
            raise not_found("break", break_id)
        return self.breaks[break_id]

    def _resolve_break(self, c: m.ResolveBreak, now: int) -> tuple[m.Break, list[m.Event]]:
        b = self._break(c.break_id)
        delta = parse_scaled(c.adjustment, "adjustment", self.assets[b.asset], signed=True, limit=MAX_QUANTITY)
        _text(c.comment, "comment")
        if b.status != m.OPEN:
            raise precondition(m.BREAK_NOT_OPEN, f"{b.break_id} is {b.status}")
        if b.bucket == m.UNBONDING and delta:
            raise invalid("adjustment", "an UNBONDING break resolves only with 0 (or a later statement)")
        fund = self.funds[b.fund_id]
        h = self._holding(fund, b.custodian_id, b.asset)
        if b.bucket == m.STAKED:
            if h.staked + delta < 0:
                raise precondition(m.INSUFFICIENT_STAKED_BALANCE, f"staked {h.staked}, adjustment {delta}")
            _bucket(h.staked + delta, "adjustment")
        elif b.bucket == m.AVAILABLE:
            if b.tier:
                has = dict(zip(m.TIERS, h.tiers(now), strict=True))[b.tier]
                if has + delta < 0:
                    raise precondition(m.INSUFFICIENT_TIER_BALANCE, f"{b.tier} holds {has}, adjustment {delta}")
            if h.free(now) + delta < 0:
                raise precondition(m.INSUFFICIENT_LIQUID_BALANCE, f"available {h.free(now)}, adjustment {delta}")
            _bucket(h.free(now) + delta, "adjustment")
        event = m.BreakResolved(at=now, break_id=b.break_id, adjustment=delta, comment=c.comment,
                                proposer=c.principal, approver=c.approved_by)
        events = self._commit(event)
        return self.breaks[b.break_id], events

    def _on_break_resolved(self, e: m.BreakResolved) -> None:
        b = self.breaks[e.break_id]
        fund = self.funds[b.fund_id]
        if e.adjustment:
            h = self._live(b.fund_id, b.custodian_id, b.asset, e.at)
            if b.bucket == m.STAKED:
                h.staked += e.adjustment
            else:
                h.available += e.adjustment
                if b.tier == m.HOT:
                    h.hot += e.adjustment
                elif b.tier == m.WARM:
                    h.warm += e.adjustment
                elif not b.tier:
                    h.enter(e.adjustment) if e.adjustment > 0 else h.leave(-e.adjustment)
            fund.flow(b.asset, e.adjustment)
        self.breaks[e.break_id] = msgspec.structs.replace(
            b, status=m.RESOLVED, resolved_at=e.at, adjustment=e.adjustment, comment=e.comment,
            proposed_by=e.proposer, approved_by=e.approver)

    # -- what breaks change elsewhere ------------------------------------------------------------------
    def _break_required(self, fund: Fund, c: m.AdjustHolding) -> None:
        """AdjustHolding once the fund reconciles: only against an OPEN break of that holding."""
        reconciles = any(s.fund_id == c.fund_id for s in self.statements)
        if not reconciles and not c.break_id:
            return
        if not any(b.break_id == c.break_id for b in self._open_breaks(c.fund_id, c.custodian_id, c.asset)):
            detail = f"break {c.break_id!r} is not an OPEN break of this holding" if c.break_id else \
                "the fund reconciles with its custodians' statements: an adjustment names the break it resolves"
            raise precondition(m.BREAK_REQUIRED, detail)

    def _held_back(self, fund: Fund, custodian_id: str, asset: str) -> bool:
        """hold_redemptions_on_break: an OPEN UNEXPLAINED break keeps the holding out of redemptions."""
        return fund.terms.hold_redemptions_on_break and any(
            b.classification == m.UNEXPLAINED for b in self._open_breaks(fund.terms.fund_id, custodian_id, asset))

    # -- reads -----------------------------------------------------------------------------------------
    def list_breaks(self, fund_id: str = "", status: str = "") -> list[m.Break]:
        if fund_id:
            self._fund(fund_id)
        if status:
            _one_of(status, m.BREAK_STATUSES, "status")
        return [b for _, b in sorted(self.breaks.items())
                if (not fund_id or b.fund_id == fund_id) and (not status or b.status == status)]

    def get_break(self, break_id: str) -> m.Break:
        return self._break(break_id)
