# Wallets under four eyes, deliveries and payouts as settlement evidence (SPEC §14).

def _wallet(Ledger self, wallet_id):
    w = self.wallets.get(wallet_id)
    if w is None:
        raise not_found("wallet", wallet_id)
    return w


def _register_wallet(Ledger self, cmd, long long now_ms, list events):
    if cmd.participant_id not in self.participants:
        raise not_found("participant", cmd.participant_id)
    asset = self.assets.get(cmd.asset)
    if asset is None:
        raise not_found("asset", cmd.asset)
    ADDR.check_address((<Asset>asset).chain, cmd.address, "address")
    _need_text(cmd.label, "label")
    existing = self.live_wallets.get((cmd.participant_id, cmd.asset, cmd.address))
    if existing is not None:
        raise EngineError(ALREADY_EXISTS, f"wallet {existing} of {cmd.participant_id} has this address")
    wallet = Wallet(wallet_id="WAL-%08d" % self.next_wallet_seq, participant_id=cmd.participant_id,
                    asset=cmd.asset, address=cmd.address, label=cmd.label, status=M.PENDING,
                    registered_by=cmd.principal, registered_at=now_ms, updated_at=now_ms)
    _emit(self, events, M.WalletRegistered(at=now_ms, wallet=wallet))
    return self.wallets[wallet.wallet_id]


def _approve_wallet(Ledger self, cmd, long long now_ms, list events):
    w = _wallet(self, cmd.wallet_id)
    if w.status != M.PENDING:
        raise precondition(M.WALLET_NOT_PENDING, f"wallet {w.wallet_id} is {w.status}")
    if cmd.principal == w.registered_by:
        raise EngineError(PERMISSION_DENIED, f"four eyes: {quote(cmd.principal)} registered wallet "
                                             f"{w.wallet_id}; another issuer principal must approve it")
    _emit(self, events, M.WalletApproved(at=now_ms, wallet_id=w.wallet_id, approved_by=cmd.principal))
    return self.wallets[w.wallet_id]


def _revoke_wallet(Ledger self, cmd, long long now_ms, list events):
    w = _wallet(self, cmd.wallet_id)
    _need_text(cmd.reason, "reason")
    if w.status == M.REVOKED:
        raise precondition(WALLET_NOT_APPROVED, f"wallet {w.wallet_id} is already REVOKED")
    _emit(self, events, M.WalletRevoked(at=now_ms, wallet_id=w.wallet_id, revoked_by=cmd.principal,
                                       reason=cmd.reason))
    return self.wallets[w.wallet_id]


def list_wallets(Ledger self, str participant_id=""):
    if participant_id and participant_id not in self.participants:
        raise not_found("participant", participant_id)
    return [self.wallets[k] for k in sorted(self.wallets)
            if not participant_id or self.wallets[k].participant_id == participant_id]


def _on_wallet(Ledger self, event):
    self.wallet_epoch += 1
    w = event.wallet
    self.wallets[w.wallet_id] = w
    if w.status != M.REVOKED:  # a restored wallet may be
        self.live_wallets[(w.participant_id, w.asset, w.address)] = w.wallet_id
    if w.status == APPROVED:
        self.approved[w.wallet_id] = (w.participant_id, w.asset, w.address)
    self.next_wallet_seq = int(w.wallet_id[4:]) + 1


def _on_wallet_approved(Ledger self, event):
    self.wallet_epoch += 1
    w = self.wallets[event.wallet_id]
    self.wallets[w.wallet_id] = _replace(w, status=APPROVED, approved_by=event.approved_by, updated_at=event.at)
    self.approved[w.wallet_id] = (w.participant_id, w.asset, w.address)


def _on_wallet_revoked(Ledger self, event):
    self.wallet_epoch += 1
    w = self.wallets[event.wallet_id]
    self.wallets[w.wallet_id] = _replace(w, status=M.REVOKED, revoked_by=event.revoked_by,
                                         revoke_reason=event.reason, updated_at=event.at)
    del self.live_wallets[(w.participant_id, w.asset, w.address)]
    self.approved.pop(w.wallet_id, None)


cdef object _transfer(Ledger self, object order, object asset, object quantity, object tx_hash):
    """The checked asset (one of the order's), quantity (parsed, > 0) and tx_hash of a transfer."""
    for line in order.deliverables:
        if line.asset == asset:
            break
    else:
        raise invalid("asset", f"{asset!r} is not an asset of order {order.order_id}")
    q = parse_scaled(quantity, "quantity", (<Asset>self.assets[asset]).decimals, limit=MAX_QUANTITY)
    if q == 0:
        raise invalid("quantity", "must be positive")
    ADDR.check_printable(tx_hash, "tx_hash")
    return q


def _qty(Ledger self, asset, quantity):
    """A quantity as the wire writes it (the asset's decimals), for messages."""
    return format_quantity(quantity, (<Asset>self.assets[asset]).decimals)


cdef dict _confirmed(Ledger self, object order):
    """asset -> quantity delivered with at least the asset's min_confirmations."""
    total = {}
    for d in order.deliveries:
        if d.confirmations >= (<Asset>self.assets[d.asset]).min_conf:
            total[d.asset] = total.get(d.asset, 0) + d.quantity
    return total


cdef dict _paid(Ledger self, object order):
    """(custodian_id, asset) -> quantity paid out on the order's payouts."""
    total = {}
    for p in order.payouts:
        key = (p.custodian_id, p.asset)
        total[key] = total.get(key, 0) + p.quantity
    return total


def _record_delivery(Ledger self, cmd, long long now_ms, list events):
    order = _own_order(self, cmd.order_id, None)
    q = _transfer(self, order, cmd.asset, cmd.quantity, cmd.tx_hash)
    ADDR.check_address((<Asset>self.assets[cmd.asset]).chain, cmd.from_address, "from_address")
    _need_int(cmd.confirmations, "confirmations", 0, M.MAX_CONFIRMATIONS)
    if order.status != ACCEPTED or order.side != CREATE:
        raise precondition(M.ORDER_NOT_ACCEPTED, f"order {order.order_id} is a {order.status} {order.side}")
    for known in order.deliveries:
        if known.tx_hash == cmd.tx_hash:
            if (known.asset, known.quantity, known.from_address) != (cmd.asset, q, cmd.from_address):
                raise EngineError(ALREADY_EXISTS, f"tx_hash {quote(cmd.tx_hash)} is recorded with other figures")
            if known.confirmations == cmd.confirmations:
                return _with_overdue(self, order, now_ms)
            delivery = _replace(known, confirmations=cmd.confirmations)
            break
    else:
        wallet_id = self.live_wallets.get((order.participant_id, cmd.asset, cmd.from_address))
        if wallet_id is None or self.wallets[wallet_id].status != APPROVED:
            raise precondition(WALLET_NOT_APPROVED, f"{quote(cmd.from_address)} is not an approved {cmd.asset} "
                                                    f"wallet of {order.participant_id}")
        delivery = M.Delivery(cmd.asset, q, cmd.tx_hash, cmd.from_address, cmd.confirmations, now_ms)
    _emit(self, events, M.DeliveryRecorded(at=now_ms, order_id=order.order_id, delivery=delivery))
    return _with_overdue(self, self.orders[order.order_id], now_ms)


def _on_delivery(Ledger self, event):
    order = self.orders[event.order_id]
    d = event.delivery
    deliveries = list(order.deliveries)
    for i, known in enumerate(deliveries):
        if known.tx_hash == d.tx_hash:
            deliveries[i] = d
            break
    else:
        deliveries.append(d)
    order = _replace(order, deliveries=tuple(deliveries), updated_at=event.at)
    confirmed = _confirmed(self, order)
    excess = []
    for line in order.deliverables:
        over = confirmed.get(line.asset, 0) - line.quantity
        if over > 0:
            excess.append(Line(line.asset, over))
    self.orders[order.order_id] = _replace(order, excess=tuple(excess))


def _record_payout(Ledger self, cmd, long long now_ms, list events):
    order = _own_order(self, cmd.order_id, None)
    _need_id(cmd.custodian_id, "custodian_id")
    q = _transfer(self, order, cmd.asset, cmd.quantity, cmd.tx_hash)
    if order.status != ACCEPTED or order.side != REDEEM:
        raise precondition(M.ORDER_NOT_ACCEPTED, f"order {order.order_id} is a {order.status} {order.side}")
    for leg in order.legs:
        if leg.custodian_id == cmd.custodian_id and leg.asset == cmd.asset:
            break
    else:
        raise invalid("custodian_id", f"order {order.order_id} has no {cmd.asset} leg at {quote(cmd.custodian_id)}")
    for known in order.payouts:
        if known.tx_hash == cmd.tx_hash:
            if (known.custodian_id, known.asset, known.quantity) != (cmd.custodian_id, cmd.asset, q):
                raise EngineError(ALREADY_EXISTS, f"tx_hash {quote(cmd.tx_hash)} is recorded with other figures")
            return _with_overdue(self, order, now_ms)
    paid = _paid(self, order).get((cmd.custodian_id, cmd.asset), 0)
    if paid + q > leg.quantity:
        raise precondition(M.PAYOUT_EXCEEDS_LEG, f"order {order.order_id}: leg {cmd.custodian_id} {cmd.asset} "
                           f"would be paid {_qty(self, cmd.asset, paid + q)} of "
                           f"{_qty(self, cmd.asset, leg.quantity)}")
    payout = M.Payout(cmd.custodian_id, cmd.asset, q, cmd.tx_hash, now_ms)
    _emit(self, events, M.PayoutRecorded(at=now_ms, order_id=order.order_id, payout=payout))
    return _with_overdue(self, self.orders[order.order_id], now_ms)


def _on_payout(Ledger self, event):
    order = self.orders[event.order_id]
    self.orders[order.order_id] = _replace(order, payouts=order.payouts + (event.payout,), updated_at=event.at)
