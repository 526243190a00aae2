"""Orders: SubmitOrder(s), CheckOrder, GetCapacity, the decision, SettleOrder, CancelOrder, events (SPEC §5)."""

from __future__ import annotations

from datetime import date

import msgspec

from etf_engine import calendar as cal_
from etf_engine import model as m
from etf_engine.errors import (
    ALREADY_EXISTS,
    PERMISSION_DENIED,
    EngineError,
    invalid,
    not_found,
    out_of_range,
    precondition,
)
from etf_engine.numbers import MAX_SHARES
from etf_engine.reference.checks import _ID, _bucket, _sorted_ids, _text
from etf_engine.reference.state import Fund


class Orders:
    """Creation and redemption orders, from refusal or decision to settlement or cancellation."""

    # -- SubmitOrder(s): refusals, then a recorded decision ----------------------------------------
    def _submit_order(self, c: m.SubmitOrder, now: int) -> tuple[m.Order, list[m.Event]]:
        return self._record(c.participant_id, c.request, now)

    def _submit_orders(self, c: m.SubmitOrders, now: int) -> tuple[list[m.Order], list[m.Event]]:
        earlier: dict[tuple[str, str], m.OrderRequest] = {}
        for i, request in enumerate(c.requests):
            self._refusal(c.participant_id, request, earlier, f"requests[{i}].")
            earlier.setdefault((c.participant_id, request.client_order_id), request)
        orders, events = [], []
        for request in c.requests:
            order, new = self._record(c.participant_id, request, now)
            orders.append(order)
            events += new
        return orders, events

    def _record(self, participant_id: str, request: m.OrderRequest, now: int) -> tuple[m.Order, list[m.Event]]:
        original = self._refusal(participant_id, request, {})
        if original is not None:
            return self._with_overdue(original, now), []
        order = self._decide(participant_id, request, now, f"ORD-{self.next_order_seq:08d}")
        events = self._commit(m.OrderRecorded(at=now, order=order))
        return self.orders[order.order_id], events

    def _on_order(self, e: m.OrderRecorded) -> None:
        order = e.order
        self.orders[order.order_id] = order
        self.order_keys[(order.participant_id, order.client_order_id)] = order.order_id
        self.funds[order.fund_id].order_ids.append(order.order_id)
        self.next_order_seq += 1
        for leg in order.legs:  # only accepted redemptions have legs
            holding = self._live(order.fund_id, leg.custodian_id, leg.asset, e.at)
            holding.available -= leg.quantity
            holding.reserved += leg.quantity

    def _refusal(self, participant_id: str, r: m.OrderRequest, earlier: dict[tuple[str, str], m.OrderRequest],
                 field: str = "") -> m.Order | None:
        """Raise what SubmitOrder refuses (etf_engine/ledger.py order); return the original order of a repeat.
        ``field`` prefixes every field the request's checks name: ``requests[i].`` for an item of
        SubmitOrders, empty for SubmitOrder and CheckOrder (the core's ``_admit``, message for message)."""
        if r.side not in m.SIDES:
            raise invalid(f"{field}side", f"{r.side!r} is not {' or '.join(m.SIDES)}")
        if type(r.units) is not int or r.units <= 0:
            raise invalid(f"{field}units", f"{r.units!r} must be a positive integer")
        if not isinstance(r.client_order_id, str) or _ID.fullmatch(r.client_order_id) is None:
            raise invalid(f"{field}client_order_id", f"{r.client_order_id!r} is not 1-64 of [A-Za-z0-9._:-]")
        if len(r.payout_wallet_ids) > m.MAX_PAYOUT_WALLETS:
            raise invalid(f"{field}payout_wallet_ids",
                          f"{len(r.payout_wallet_ids)} ids, more than {m.MAX_PAYOUT_WALLETS}")
        for i, wallet_id in enumerate(r.payout_wallet_ids):
            if not isinstance(wallet_id, str) or _ID.fullmatch(wallet_id) is None:
                raise invalid(f"{field}payout_wallet_ids[{i}]", f"{wallet_id!r} is not 1-64 of [A-Za-z0-9._:-]")
        participant = self.participants.get(participant_id)
        if participant is None:
            raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} is not registered")
        key = (participant_id, r.client_order_id)
        # The request is checked against the order its key names: the recorded one, else an earlier
        # item of the same batch (each item "exactly as if submitted alone").
        if key in self.order_keys:
            same = original = self.orders[self.order_keys[key]]
            ids = original.payout_wallet_ids
        else:
            original, same = None, earlier.get(key)
            ids = None if same is None else self._kept_wallets(same)
        if same is not None:
            if (same.fund_id, same.side, same.units) != (r.fund_id, r.side, r.units):
                raise EngineError(ALREADY_EXISTS, f"{field}client_order_id {r.client_order_id!r} "
                                  f"names another order ({same.fund_id} {same.side} {same.units})")
            if ids not in (None, _sorted_ids(r.payout_wallet_ids)):
                raise EngineError(ALREADY_EXISTS, f"{field}client_order_id {r.client_order_id!r} "
                                  f"names an order with other payout_wallet_ids")
        if original is not None:
            return original
        fund = self.funds.get(r.fund_id)
        if fund is None:
            raise not_found(f"{field}fund", r.fund_id)
        if r.fund_id not in participant.eligible_fund_ids:
            raise EngineError(PERMISSION_DENIED,
                              f"{field}participant {participant_id!r} may not deal in {r.fund_id!r}")
        if r.units * fund.terms.creation_unit > MAX_SHARES:
            raise out_of_range(f"{field}units", f"{r.units} units exceed 10^15 shares")
        return None

    def _kept_wallets(self, r: m.OrderRequest) -> tuple[str, ...] | None:
        """The payout wallet ids an order of ``r`` keeps (and is checked for): REDEEM of a fund that
        requires delivery; None otherwise."""
        fund = self.funds.get(r.fund_id)
        if r.side == m.REDEEM and fund is not None and fund.terms.require_delivery:
            return _sorted_ids(r.payout_wallet_ids)
        return None

    def _payout_addresses(self, participant_id: str, fund: Fund, ids: tuple[str, ...]) -> dict[str, str] | None:
        """asset -> address of the payout wallets, or None unless they are one APPROVED wallet of the
        participant for each asset of the fund."""
        found: dict[str, str] = {}
        for wallet_id in ids:
            w = self.wallets.get(wallet_id)
            if (w is None or w.participant_id != participant_id or w.status != m.APPROVED
                    or fund.asset(w.asset) is None or w.asset in found):
                return None
            found[w.asset] = w.address
        return found if len(found) == len(fund.terms.assets) else None

    # -- the decision (SPEC §5 checks 1-6) ---------------------------------------------------------
    def _decide(self, participant_id: str, r: m.OrderRequest, now: int, order_id: str) -> m.Order:
        fund = self.funds[r.fund_id]
        basket = self._basket(fund, now)
        wallets = self._kept_wallets(r)
        reason = self._reason(participant_id, fund, r.side, r.units, now, basket, wallets)
        accepted = reason == ""
        fee = fund.terms.creation_fee if r.side == m.CREATE else fund.terms.redemption_fee
        t = fund.terms
        forward = t.pricing == m.FORWARD
        if forward:  # the cash component waits for the official NAV (StrikeNav)
            basket = msgspec.structs.replace(basket, cash_component=None)
        dealing_date = settlement_date = ""
        if t.calendar_id:
            dealing_date = self._dealing_date(t, now)
            if accepted:
                days = t.create_settlement_days if r.side == m.CREATE else t.redeem_settlement_days
                settlement_date = cal_.add_dealing_days(self.calendars[t.calendar_id],
                                                        date.fromisoformat(dealing_date), days).isoformat()
        legs = self._legs(fund, basket, r.units, now) if accepted and r.side == m.REDEEM else ()
        if wallets is not None and accepted:
            to = self._payout_addresses(participant_id, fund, wallets) or {}
            legs = tuple(msgspec.structs.replace(leg, destination_address=to[leg.asset]) for leg in legs)
        return m.Order(
            payout_wallet_ids=wallets,
            dealing_date=dealing_date, settlement_date=settlement_date, priced=not forward,
            order_id=order_id, client_order_id=r.client_order_id, participant_id=participant_id,
            fund_id=r.fund_id, side=r.side, units=r.units,
            status=m.ACCEPTED if accepted else m.REJECTED, reject_reason=reason, basket=basket,
            deliverables=tuple(m.Line(asset=ln.asset, quantity=r.units * ln.quantity_per_unit) for ln in basket.lines),
            cash_amount=None if basket.cash_component is None else r.units * basket.cash_component,
            fee=fee if accepted else 0,
            legs=legs, created_at=now, updated_at=now,
        )

    def _reason(self, participant_id: str, fund: Fund, side: str, units: int, now: int, basket: m.Basket,
                wallets: tuple[str, ...] | None = None) -> str:
        """The reject reason of SPEC §5 (checks in its order, with §14's after check 5), "" when the
        order is accepted. ``wallets`` None: not checked (GetCapacity assumes approved wallets)."""
        terms, participant = fund.terms, self.participants[participant_id]
        if terms.dealing_status != m.OPEN:
            return m.FUND_SUSPENDED
        if units > participant.max_units_per_order:
            return m.ORDER_LIMIT_EXCEEDED
        if units + self._dealt_today(participant_id, fund, now) > participant.max_units_per_day:
            return m.DAILY_LIMIT_EXCEEDED
        if basket.stale:
            return m.STALE_PRICE
        if side == m.CREATE:
            return "" if self._licensed(terms.creation_custodian_id, now) else m.CUSTODIAN_NOT_LICENSED
        if units * terms.creation_unit > fund.shares - self._pending_redemption_shares(fund):
            return m.INSUFFICIENT_SHARES
        if wallets is not None and self._payout_addresses(participant_id, fund, wallets) is None:
            return m.WALLET_NOT_APPROVED
        for line in basket.lines:  # symbol order
            s = self._sums(fund, line.asset, now)
            q = units * line.quantity_per_unit
            if q > s.liquid:
                return m.INSUFFICIENT_LIQUID_BALANCE
            reason = self._ratio_breach(fund, line.asset, line.quantity_per_unit, s.illiquid, s.liquid - q,
                                        s.committed - q)
            if reason:
                return reason
        return ""

    def _legs(self, fund: Fund, basket: m.Basket, units: int, now: int) -> tuple[m.Leg, ...]:
        priority = fund.terms.custodian_priority
        ranked = list(priority) + sorted(set(self.custodians) - set(priority))
        ranked = [custodian_id for custodian_id in ranked if self._licensed(custodian_id, now)]
        legs = []
        for line in basket.lines:
            left = units * line.quantity_per_unit
            for custodian_id in ranked:
                if self._held_back(fund, custodian_id, line.asset):  # SPEC §19: no leg from a held holding
                    continue
                take = min(self._holding(fund, custodian_id, line.asset).free(now), left)
                if take > 0:
                    legs.append(m.Leg(custodian_id=custodian_id, asset=line.asset, quantity=take))
                    left -= take
        return tuple(legs)

    def _dealt_today(self, participant_id: str, fund: Fund, now: int) -> int:
        """Units the daily limit counts: per dealing date with a calendar, else per UTC day (an order
        is counted by its own dealing date, or by its UTC day when it has none)."""
        today = self._dealing_date(fund.terms, now) if fund.terms.calendar_id else now // m.DAY_MS
        return sum(o.units for o in self._fund_orders(fund)
                   if o.participant_id == participant_id and o.status in (m.ACCEPTED, m.SETTLED)
                   and (o.dealing_date or o.created_at // m.DAY_MS) == today)

    def _pending_redemption_shares(self, fund: Fund) -> int:
        return sum(o.units * o.basket.creation_unit for o in self._fund_orders(fund)
                   if o.side == m.REDEEM and o.status == m.ACCEPTED)

    # -- CheckOrder and GetCapacity ----------------------------------------------------------------
    def check_order(self, participant_id: str, request: m.OrderRequest, now_ms: int) -> m.Order:
        original = self._refusal(participant_id, request, {})
        if original is not None:
            return msgspec.structs.replace(original, order_id="")
        return self._decide(participant_id, request, now_ms, "")

    def get_capacity(self, participant_id: str, fund_id: str, now_ms: int) -> m.Capacity:
        participant = self.participants.get(participant_id)
        if participant is None:
            raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} is not registered")
        fund = self._fund(fund_id)
        if fund_id not in participant.eligible_fund_ids:
            raise EngineError(PERMISSION_DENIED, f"participant {participant_id!r} may not deal in {fund_id!r}")
        basket = self._basket(fund, now_ms)
        create, redeem = (self._capacity(participant, fund, side, now_ms, basket) for side in m.SIDES)
        return m.Capacity(fund_id=fund_id, create=create, redeem=redeem)

    def _capacity(self, participant: m.ParticipantRegistered, fund: Fund, side: str, now: int,
                  basket: m.Basket) -> m.CapacitySide:
        def reason(units: int) -> str:
            return self._reason(participant.participant_id, fund, side, units, now, basket)

        # Every check compares a figure that grows with units against a bound, so acceptance is
        # monotone in units and bisection finds the largest accepted n. SubmitOrder refuses
        # n x creation_unit > 10^15, so n stops there too.
        share_cap = MAX_SHARES // fund.terms.creation_unit
        low, high = 0, min(participant.max_units_per_order, share_cap)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if reason(mid) == "" else (low, mid - 1)
        # at the share limit one more unit is refused outright (OUT_OF_RANGE): no reject reason binds
        return m.CapacitySide(units=low, binding_reason=reason(low + 1) if low < share_cap else "")

    # -- settlement and cancellation ---------------------------------------------------------------
    def _settle_order(self, c: m.SettleOrder, now: int) -> tuple[m.Order, list[m.Event]]:
        order = self._accepted(c.order_id, None)
        if not order.priced:
            raise precondition(m.NOT_PRICED, f"order {order.order_id} waits for the official NAV")
        fund = self.funds[order.fund_id]
        if fund.terms.require_delivery:
            self._check_evidence(order)
        if order.side == m.CREATE:
            custodian_id = fund.terms.creation_custodian_id
            if not self._licensed(custodian_id, now):
                raise precondition(m.CUSTODIAN_NOT_LICENSED, f"creation custodian {custodian_id!r}")
            for line in order.deliverables:
                _bucket(self._holding(fund, custodian_id, line.asset).free(now) + line.quantity, "order_id")
            if fund.shares + order.units * order.basket.creation_unit > MAX_SHARES:
                raise out_of_range("order_id", "shares outstanding would exceed 10^15")
        events = self._commit(m.OrderSettled(at=now, order_id=c.order_id))
        return self.orders[c.order_id], events

    def _on_settled(self, e: m.OrderSettled) -> None:
        order = self.orders[e.order_id]
        fund = self.funds[order.fund_id]
        shares = order.units * order.basket.creation_unit
        if order.side == m.CREATE:
            for line in order.deliverables:
                holding = self._live(order.fund_id, fund.terms.creation_custodian_id, line.asset, e.at)
                holding.available += line.quantity
                holding.enter(line.quantity)
                fund.flow(line.asset, line.quantity)
            fund.cash += order.cash_amount
            fund.shares += shares
        else:
            for leg in order.legs:
                holding = self._live(order.fund_id, leg.custodian_id, leg.asset, e.at)
                holding.reserved -= leg.quantity
                holding.leave(leg.quantity)
                fund.flow(leg.asset, -leg.quantity)
            fund.cash -= order.cash_amount
            fund.shares -= shares
        self.orders[e.order_id] = msgspec.structs.replace(order, status=m.SETTLED, updated_at=e.at)

    def _cancel_order(self, c: m.CancelOrder, now: int) -> tuple[m.Order, list[m.Event]]:
        self.get_order(c.order_id, c.participant_id)
        _text(c.reason, "reason")
        self._accepted(c.order_id, c.participant_id)
        events = self._commit(m.OrderCancelled(at=now, order_id=c.order_id, reason=c.reason))
        return self.orders[c.order_id], events

    def _on_cancelled(self, e: m.OrderCancelled) -> None:
        order = self.orders[e.order_id]
        for leg in order.legs:
            holding = self._live(order.fund_id, leg.custodian_id, leg.asset, e.at)
            holding.reserved -= leg.quantity
            holding.available += leg.quantity
        self.orders[e.order_id] = msgspec.structs.replace(order, status=m.CANCELLED, updated_at=e.at,
                                                          cancel_reason=e.reason)

    def _accepted(self, order_id: str, participant_id: str | None) -> m.Order:
        order = self.get_order(order_id, participant_id)
        if order.status != m.ACCEPTED:
            raise precondition(m.ORDER_NOT_ACCEPTED, f"order {order_id!r} is {order.status}")
        return order

    # -- reads -------------------------------------------------------------------------------------
    def get_order(self, order_id: str, participant_id: str | None = None, now_ms: int | None = None) -> m.Order:
        order = self.orders.get(order_id)
        if order is None or (participant_id is not None and order.participant_id != participant_id):
            raise not_found("order", order_id)
        return self._with_overdue(order, now_ms)

    def list_orders(self, fund_id: str = "", status: str = "", participant_id: str | None = None,
                    now_ms: int | None = None) -> list[m.Order]:
        return [self._with_overdue(o, now_ms) for _, o in sorted(self.orders.items())
                if fund_id in ("", o.fund_id) and status in ("", o.status)
                and participant_id in (None, o.participant_id)]

    def _with_overdue(self, order: m.Order, now: int | None) -> m.Order:
        """The order as read at ``now``: overdue when ACCEPTED past the end of its settlement date in its
        fund's calendar (etf_engine/ledger.py)."""
        calendar_id = self.funds[order.fund_id].terms.calendar_id
        if now is None or order.status != m.ACCEPTED or not order.settlement_date or not calendar_id:
            return order
        end = cal_.day_end_ms(self.calendars[calendar_id], date.fromisoformat(order.settlement_date))
        return msgspec.structs.replace(order, overdue=True) if now >= end else order
