"""Wallets, deliveries, payouts: register/approve/revoke, RecordDelivery/Payout, their events (SPEC §14)."""

from __future__ import annotations

import msgspec

from etf_engine import addresses
from etf_engine import model as m
from etf_engine.errors import ALREADY_EXISTS, PERMISSION_DENIED, EngineError, invalid, not_found, precondition, quote
from etf_engine.numbers import format_quantity
from etf_engine.reference.checks import _ID, _at_least, _match, _positive, _text


class Wallets:
    """Dealers' wallets (four eyes) and the on-chain transfers recorded against orders."""

    # -- wallets -----------------------------------------------------------------------------------
    def _wallet(self, wallet_id: str) -> m.Wallet:
        if wallet_id not in self.wallets:
            raise not_found("wallet", wallet_id)
        return self.wallets[wallet_id]

    def _register_wallet(self, c: m.RegisterWallet, now: int) -> tuple[m.Wallet, list[m.Event]]:
        if c.participant_id not in self.participants:
            raise not_found("participant", c.participant_id)
        if c.asset not in self.assets:
            raise not_found("asset", c.asset)
        addresses.check_address(self.asset_rules[c.asset][1], c.address, "address")
        _text(c.label, "label")
        for w in self.wallets.values():
            same = (w.participant_id, w.asset, w.address) == (c.participant_id, c.asset, c.address)
            if same and w.status != m.REVOKED:
                raise EngineError(ALREADY_EXISTS, f"wallet {w.wallet_id} of {c.participant_id} has this address")
        wallet = m.Wallet(wallet_id=f"WAL-{self.next_wallet_seq:08d}", participant_id=c.participant_id, asset=c.asset,
                          address=c.address, label=c.label, status=m.PENDING, registered_by=c.principal,
                          registered_at=now, updated_at=now)
        events = self._commit(m.WalletRegistered(at=now, wallet=wallet))
        return self.wallets[wallet.wallet_id], events

    def _on_wallet(self, e: m.WalletRegistered) -> None:
        self.wallets[e.wallet.wallet_id] = e.wallet
        self.next_wallet_seq += 1

    def _approve_wallet(self, c: m.ApproveWallet, now: int) -> tuple[m.Wallet, list[m.Event]]:
        w = self._wallet(c.wallet_id)
        if w.status != m.PENDING:
            raise precondition(m.WALLET_NOT_PENDING, f"wallet {w.wallet_id} is {w.status}")
        if c.principal == w.registered_by:
            raise EngineError(PERMISSION_DENIED, f"four eyes: wallet {w.wallet_id} was registered by "
                                                 f"{quote(c.principal)}; another issuer principal approves it")
        events = self._commit(m.WalletApproved(at=now, wallet_id=w.wallet_id, approved_by=c.principal))
        return self.wallets[w.wallet_id], events

    def _on_wallet_approved(self, e: m.WalletApproved) -> None:
        self.wallets[e.wallet_id] = msgspec.structs.replace(self.wallets[e.wallet_id], status=m.APPROVED,
                                                            approved_by=e.approved_by, updated_at=e.at)

    def _revoke_wallet(self, c: m.RevokeWallet, now: int) -> tuple[m.Wallet, list[m.Event]]:
        w = self._wallet(c.wallet_id)
        _text(c.reason, "reason")
        if w.status == m.REVOKED:
            raise precondition(m.WALLET_NOT_APPROVED, f"wallet {w.wallet_id} is already REVOKED")
        events = self._commit(m.WalletRevoked(at=now, wallet_id=w.wallet_id, revoked_by=c.principal, reason=c.reason))
        return self.wallets[w.wallet_id], events

    def _on_wallet_revoked(self, e: m.WalletRevoked) -> None:
        self.wallets[e.wallet_id] = msgspec.structs.replace(self.wallets[e.wallet_id], status=m.REVOKED,
                                                            revoked_by=e.revoked_by, revoke_reason=e.reason,
                                                            updated_at=e.at)

    def list_wallets(self, participant_id: str = "") -> list[m.Wallet]:
        if participant_id and participant_id not in self.participants:
            raise not_found("participant", participant_id)
        return [w for _, w in sorted(self.wallets.items()) if participant_id in ("", w.participant_id)]

    # -- deliveries and payouts --------------------------------------------------------------------
    def _tx_fields(self, order: m.Order, asset: str, quantity: str, tx_hash: str) -> int:
        """The asset (one of the order's), quantity and tx_hash of a transfer; the quantity parsed."""
        if asset not in {line.asset for line in order.deliverables}:
            raise invalid("asset", f"{asset!r} is not an asset of order {order.order_id}")
        q = _positive(quantity, "quantity", self.assets[asset])
        addresses.check_printable(tx_hash, "tx_hash")
        return q

    def _record_delivery(self, c: m.RecordDelivery, now: int) -> tuple[m.Order, list[m.Event]]:
        order = self.get_order(c.order_id)
        quantity = self._tx_fields(order, c.asset, c.quantity, c.tx_hash)
        addresses.check_address(self.asset_rules[c.asset][1], c.from_address, "from_address")
        _at_least(c.confirmations, 0, "confirmations", m.MAX_CONFIRMATIONS)
        if order.status != m.ACCEPTED or order.side != m.CREATE:
            raise precondition(m.ORDER_NOT_ACCEPTED, f"order {order.order_id} is a {order.status} {order.side}")
        known = next((d for d in order.deliveries if d.tx_hash == c.tx_hash), None)
        if known is not None:
            if (known.asset, known.quantity, known.from_address) != (c.asset, quantity, c.from_address):
                raise EngineError(ALREADY_EXISTS, f"tx_hash {quote(c.tx_hash)} is recorded with other figures")
            if known.confirmations == c.confirmations:
                return self._with_overdue(order, now), []
            delivery = msgspec.structs.replace(known, confirmations=c.confirmations)
        else:
            if not any(w.participant_id == order.participant_id and w.asset == c.asset and w.address == c.from_address
                       and w.status == m.APPROVED for w in self.wallets.values()):
                raise precondition(m.WALLET_NOT_APPROVED, f"{quote(c.from_address)} is not an approved {c.asset} "
                                                          f"wallet of {order.participant_id}")
            delivery = m.Delivery(asset=c.asset, quantity=quantity, tx_hash=c.tx_hash, from_address=c.from_address,
                                  confirmations=c.confirmations, recorded_at=now)
        events = self._commit(m.DeliveryRecorded(at=now, order_id=order.order_id, delivery=delivery))
        return self._with_overdue(self.orders[order.order_id], now), events

    def _on_delivery(self, e: m.DeliveryRecorded) -> None:
        order = self.orders[e.order_id]
        d = e.delivery
        deliveries = [d if old.tx_hash == d.tx_hash else old for old in order.deliveries]
        if d not in deliveries:
            deliveries.append(d)
        order = msgspec.structs.replace(order, deliveries=tuple(deliveries), updated_at=e.at)
        confirmed = self._confirmed(order)
        excess = tuple(m.Line(asset=line.asset, quantity=confirmed[line.asset] - line.quantity)
                       for line in order.deliverables if confirmed.get(line.asset, 0) > line.quantity)
        self.orders[e.order_id] = msgspec.structs.replace(order, excess=excess)

    def _confirmed(self, order: m.Order) -> dict[str, int]:
        """asset -> quantity delivered with at least the asset's min_confirmations."""
        total: dict[str, int] = {}
        for d in order.deliveries:
            if d.confirmations >= self.asset_rules[d.asset][0]:
                total[d.asset] = total.get(d.asset, 0) + d.quantity
        return total

    def _record_payout(self, c: m.RecordPayout, now: int) -> tuple[m.Order, list[m.Event]]:
        order = self.get_order(c.order_id)
        _match(_ID, c.custodian_id, "custodian_id")
        quantity = self._tx_fields(order, c.asset, c.quantity, c.tx_hash)
        if order.status != m.ACCEPTED or order.side != m.REDEEM:
            raise precondition(m.ORDER_NOT_ACCEPTED, f"order {order.order_id} is a {order.status} {order.side}")
        leg = next((leg for leg in order.legs if (leg.custodian_id, leg.asset) == (c.custodian_id, c.asset)), None)
        if leg is None:
            raise invalid("custodian_id", f"order {order.order_id} has no {c.asset} leg at {quote(c.custodian_id)}")
        known = next((p for p in order.payouts if p.tx_hash == c.tx_hash), None)
        if known is not None:
            if (known.custodian_id, known.asset, known.quantity) != (c.custodian_id, c.asset, quantity):
                raise EngineError(ALREADY_EXISTS, f"tx_hash {quote(c.tx_hash)} is recorded with other figures")
            return self._with_overdue(order, now), []
        paid = self._paid(order, c.custodian_id, c.asset)
        if paid + quantity > leg.quantity:
            raise precondition(m.PAYOUT_EXCEEDS_LEG, f"order {order.order_id}: {c.asset} from {c.custodian_id} would "
                               f"be paid {self._qty(c.asset, paid + quantity)} of {self._qty(c.asset, leg.quantity)}")
        payout = m.Payout(custodian_id=c.custodian_id, asset=c.asset, quantity=quantity, tx_hash=c.tx_hash,
                          recorded_at=now)
        events = self._commit(m.PayoutRecorded(at=now, order_id=order.order_id, payout=payout))
        return self._with_overdue(self.orders[order.order_id], now), events

    def _on_payout(self, e: m.PayoutRecorded) -> None:
        order = self.orders[e.order_id]
        self.orders[e.order_id] = msgspec.structs.replace(order, payouts=(*order.payouts, e.payout), updated_at=e.at)

    @staticmethod
    def _paid(order: m.Order, custodian_id: str, asset: str) -> int:
        return sum(p.quantity for p in order.payouts if (p.custodian_id, p.asset) == (custodian_id, asset))

    # -- the evidence SettleOrder needs ------------------------------------------------------------
    def _check_evidence(self, order: m.Order) -> None:
        """SettleOrder of a fund that requires delivery: every asset delivered, every leg paid."""
        if order.side == m.CREATE:
            confirmed = self._confirmed(order)
            for line in order.deliverables:
                if confirmed.get(line.asset, 0) < line.quantity:
                    raise precondition(m.DELIVERY_INCOMPLETE, f"order {order.order_id}: {line.asset} delivered "
                                       f"{self._qty(line.asset, confirmed.get(line.asset, 0))} of "
                                       f"{self._qty(line.asset, line.quantity)}")
        else:
            for leg in order.legs:
                paid = self._paid(order, leg.custodian_id, leg.asset)
                if paid < leg.quantity:
                    raise precondition(m.PAYOUT_INCOMPLETE, f"order {order.order_id}: {leg.asset} from "
                                       f"{leg.custodian_id} paid {self._qty(leg.asset, paid)} of "
                                       f"{self._qty(leg.asset, leg.quantity)}")

    def _qty(self, asset: str, quantity: int) -> str:
        return format_quantity(quantity, self.assets[asset])
