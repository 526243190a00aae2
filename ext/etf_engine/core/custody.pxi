# Holdings and cash instructions, staking and unbonding, and the one staking-cap/liquidity-buffer check
# shared by redemptions and Stake (SPEC §5 step 6, §6).

cdef void _advance(Ledger self, Fund f, long long now_ms) except *:
    """Release the unbonding lots of fund f that matured by now_ms into available (held: the entry tier).

    A release is tentative until a record changes the lot's holding (_keep_released), as the reference
    releases a holding's lots for good only when an event changes that holding: until then a read at an
    earlier time (a statement's book at its as_of, SPEC §19, say) sees the lots released after it
    unbonding again (_rewind), as the reference, whose lots count as available from their release time
    whenever it reads."""
    cdef FundAsset fa
    cdef Holding h
    cdef long long nxt = LLONG_MAX
    cdef long long at
    if now_ms < f.read_max:
        _rewind(self, f, now_ms)
    if now_ms < f.next_release:
        return
    for fa in f.assets:
        for h in fa.holdings:
            if not h.lots:
                continue
            keep = []
            for lot in h.lots:
                at = lot[0]
                if at <= now_ms:
                    h.unbonding -= lot[1]
                    h.available += lot[1]
                    _enter(f, h, lot[1])
                    fa.liquid = None
                    fa.illiquid -= lot[1]
                    f.read_lots.append((h, lot))
                    if at > f.read_max:
                        f.read_max = at
                else:
                    keep.append(lot)
                    if at < nxt:
                        nxt = at
            h.lots = keep
    f.next_release = nxt


cdef _rewind(Ledger self, Fund f, long long now_ms):
    """Put back the tentatively released lots that mature after now_ms (exactly what their release did:
    no record has changed those holdings since, _keep_released)."""
    cdef Holding h
    cdef FundAsset fa
    cdef long long at
    cdef long long newmax = LLONG_MIN
    keep = []
    for h, lot in f.read_lots:
        at = lot[0]
        if at > now_ms:
            q = lot[1]
            h.available -= q
            h.unbonding += q
            h.lots.append(lot)
            if f.entry == TIER_HOT:
                h.hot -= q
            elif f.entry == TIER_WARM:
                h.warm -= q
            _touch(f, h)
            fa = f.asset_map[h.asset]
            fa.liquid = None
            fa.illiquid += q
            if at < f.next_release:
                f.next_release = at
        else:
            keep.append((h, lot))
            if at > newmax:
                newmax = at
    f.read_lots = keep
    f.read_max = newmax


cdef inline void _keep_released(Fund f, Holding h) except *:
    """A record changes h: the lots released at h by its time are released for good (the reference's
    ``_live``); the tentative releases at the fund's other holdings stay tentative."""
    if f.read_lots:
        _keep_released_at(f, h)


cdef void _keep_released_at(Fund f, Holding h) except *:
    cdef long long at
    cdef long long newmax = LLONG_MIN
    keep = []
    for entry in f.read_lots:
        if (<tuple>entry)[0] is not h:
            keep.append(entry)
            at = (<tuple>entry)[1][0]
            if at > newmax:
                newmax = at
    f.read_lots = keep
    f.read_max = newmax


cdef tuple _target(Ledger self, cmd, long long now_ms):
    """(fund, fund asset, custodian) named by an instruction, validated; the fund's lots matured by now_ms
    released first, so that every check sees them available (etf_engine/ledger.py)."""
    cdef Fund f = _fund(self, cmd.fund_id)
    c = _custodian(self, cmd.custodian_id)
    fa = _fund_asset(self, f, cmd.asset)
    _advance(self, f, now_ms)
    return f, fa, c


cdef object _quantity(Ledger self, FundAsset fa, object text, str field):
    q = parse_scaled(text, field, fa.info.decimals, limit=MAX_QUANTITY)
    if q == 0:
        raise invalid(field, "must be greater than zero")
    return q


def _adjust_holding(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f
    cdef FundAsset fa
    f, fa, c = _target(self, cmd, now_ms)
    delta = parse_scaled(cmd.delta, "delta", fa.info.decimals, signed=True, limit=MAX_QUANTITY)
    if delta == 0:
        raise invalid("delta", "must not be zero")
    if f.reconciles or cmd.break_id:  # SPEC §19: the OPEN break it adjusts for (BREAK_REQUIRED)
        _break_required(self, f, c.custodian_id, fa.info.symbol, cmd.break_id)
    available = _available(self, fa, c)
    if available + delta < 0:
        raise precondition(INSUFFICIENT_LIQUID_BALANCE,
                           f"available {available} at {c.custodian_id} is less than {-delta}")
    _add(available, delta, "delta")
    _emit(self, events, M.HoldingAdjusted(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id,
                                         asset=fa.info.symbol, delta=delta, reason=cmd.reason,
                                         break_id=cmd.break_id))


def _on_holding_adjusted(Ledger self, event):
    _credit(self, event, event.delta)


cdef _credit(Ledger self, event, object delta):
    """available += delta at the event's (fund, custodian, asset); the fund's total moves with it, and held:
    into the entry tier, or out of hot, warm, cold (SPEC §18)."""
    cdef Fund f = self.funds[event.fund_id]
    cdef FundAsset fa = f.asset_map[event.asset]
    cdef Holding h = _holding(self, fa, self.custodians[event.custodian_id])
    _keep_released(f, h)
    h.available += delta
    if delta < 0:
        _leave(f, h, -delta)
    else:
        _enter(f, h, delta)
    fa.liquid = None
    _total_changed(self, fa, delta)


def _adjust_cash(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f = _fund(self, cmd.fund_id)
    delta = parse_scaled(cmd.delta, "delta", MONEY_DP, signed=True, limit=MAX_MONEY)
    if delta == 0:
        raise invalid("delta", "must not be zero")
    if abs(f.cash + delta) > MAX_MONEY:
        raise out_of_range("delta", "cash would exceed 10^28")
    _emit(self, events, M.CashAdjusted(at=now_ms, fund_id=f.fund_id, delta=delta))


def _on_cash(Ledger self, event):
    _cash_changed(self, self.funds[event.fund_id], event.delta)


def _stake(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f
    cdef FundAsset fa
    cdef Custodian c
    f, fa, c = _target(self, cmd, now_ms)
    q = _quantity(self, fa, cmd.quantity, "quantity")
    _basket(self, f, now_ms)
    if not c.licensed(now_ms):
        raise precondition(CUSTODIAN_NOT_LICENSED, f"custodian {c.custodian_id} is not licensed")
    available = _available(self, fa, c)
    if available < q:
        raise precondition(INSUFFICIENT_LIQUID_BALANCE, f"available {available} at {c.custodian_id} < {q}")
    reason = _ratio_breach(f, fa, fa.illiquid + q, _liquid(self, fa, now_ms) - q, fa.total - fa.reserved)
    if reason:
        raise precondition(reason, f"staked would exceed the cap on {fa.info.symbol}" if reason == STAKING_CAP_BREACH
                           else f"liquid {fa.info.symbol} would fall below the buffer")
    _add((<Holding>fa.by_custodian[c.custodian_id]).staked, q, "quantity")  # the range last: SPEC §6's checks first
    _emit(self, events, M.Staked(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id,
                                asset=fa.info.symbol, quantity=q))


cdef str _ratio_breach(Fund f, FundAsset fa, object illiquid, object liquid, object committed):
    """The staking cap and the liquidity buffer of SPEC §5 (6b, 6c) and §6, on the figures an instruction
    would leave: STAKING_CAP_BREACH, LIQUIDITY_BUFFER_BREACH, or "" when both hold. A redemption passes
    (illiquid, liquid - q, committed - q); a Stake (illiquid + q, liquid - q, committed)."""
    if illiquid * FSCALE > fa.cap * committed:
        return STAKING_CAP_BREACH
    if liquid * FSCALE < fa.buffer * committed or liquid < f.min_liquid * fa.qpu:
        return LIQUIDITY_BUFFER_BREACH
    return ""


cdef object _available(Ledger self, FundAsset fa, Custodian c):
    """available at (fund asset, custodian); 0 where the fund never held anything there."""
    h = fa.by_custodian.get(c.custodian_id)
    return 0 if h is None else (<Holding>h).available


cdef Holding _need_staked(Ledger self, FundAsset fa, Custodian c, object q):
    """The holding at c, refused unless at least q of it is staked."""
    h = fa.by_custodian.get(c.custodian_id)
    staked = 0 if h is None else (<Holding>h).staked
    if staked < q:
        raise precondition(INSUFFICIENT_STAKED_BALANCE, f"staked {staked} at {c.custodian_id} < {q}")
    return h


def _on_staked(Ledger self, event):
    cdef Fund f = self.funds[event.fund_id]
    cdef FundAsset fa = f.asset_map[event.asset]
    cdef Holding h = fa.by_custodian[event.custodian_id]
    _keep_released(f, h)
    h.available -= event.quantity
    _leave(f, h, event.quantity)
    fa.liquid = None
    h.staked += event.quantity
    fa.illiquid += event.quantity


def _unstake(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f
    cdef FundAsset fa
    f, fa, c = _target(self, cmd, now_ms)
    q = _quantity(self, fa, cmd.quantity, "quantity")
    h = _need_staked(self, fa, c, q)
    _add((<Holding>h).unbonding, q, "quantity")
    _emit(self, events, M.Unstaked(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id,
                                  asset=fa.info.symbol, quantity=q,
                                  release_at=now_ms + fa.unbonding_seconds * 1000))


def _on_unstaked(Ledger self, event):
    cdef Fund f = self.funds[event.fund_id]
    cdef FundAsset fa = f.asset_map[event.asset]
    cdef Holding h = fa.by_custodian[event.custodian_id]
    _keep_released(f, h)  # before the new lot (released at once with a zero unbonding period: tentatively)
    h.staked -= event.quantity
    h.unbonding += event.quantity
    h.lots.append([event.release_at, event.quantity])
    if event.release_at < f.next_release:
        f.next_release = event.release_at
    _advance(self, f, event.at)  # a zero unbonding period releases at once


def _reward(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f
    cdef FundAsset fa
    f, fa, c = _target(self, cmd, now_ms)
    q = _quantity(self, fa, cmd.quantity, "quantity")
    fee = _staking_fee(fa, q)  # SPEC §17: q is the gross reward; the fund receives the net
    net = q - fee
    _add(_available(self, fa, c), net, "quantity")
    _emit(self, events, M.RewardRecorded(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id,
                                        asset=fa.info.symbol, quantity=net, gross=q, staking_fee=fee, net=net))


def _on_reward(Ledger self, event):
    _credit(self, event, event.quantity)


def _slash(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f
    cdef FundAsset fa
    f, fa, c = _target(self, cmd, now_ms)
    q = _quantity(self, fa, cmd.quantity, "quantity")
    _need_staked(self, fa, c, q)
    _emit(self, events, M.Slashed(at=now_ms, fund_id=f.fund_id, custodian_id=c.custodian_id,
                                 asset=fa.info.symbol, quantity=q))


def _on_slashed(Ledger self, event):
    cdef Fund f = self.funds[event.fund_id]
    cdef FundAsset fa = f.asset_map[event.asset]
    cdef Holding h = fa.by_custodian[event.custodian_id]
    _keep_released(f, h)
    h.staked -= event.quantity
    fa.illiquid -= event.quantity
    _total_changed(self, fa, -event.quantity)
