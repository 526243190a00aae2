# Reconciliation with the custodians' statements (SPEC §19): RecordStatement compares what a custodian says
# it holds at as_of with the book then (statement_book), per (asset, bucket, tier), and opens a break for
# each difference: TIMING when what is in flight explains it, else UNEXPLAINED. A later statement whose line
# agrees resolves a TIMING break of its key; ResolveBreak (four eyes, SPEC §20) resolves any OPEN break,
# applying its adjustment to the break's bucket. Once a fund has a statement, AdjustHolding names the OPEN
# break it adjusts for (BREAK_REQUIRED). hold_redemptions_on_break keeps a holding with an OPEN UNEXPLAINED
# break out of liquid(a) and the legs: the events keep Holding.held, so the order path reads one flag.

cdef object AVAILABLE = M.AVAILABLE
cdef object STAKED = M.STAKED
cdef object UNBONDING = M.UNBONDING
cdef object TIMING = M.TIMING
cdef object UNEXPLAINED = M.UNEXPLAINED
cdef object BREAK_OPEN = M.OPEN
cdef object RESOLVED = M.RESOLVED
cdef object BookLine = M.BookLine
cdef object InFlight = M.InFlight
cdef object StatementBook = M.StatementBook
cdef object StatementLine = M.StatementLine
cdef object Break = M.Break


# -- the book ---------------------------------------------------------------------------------------------

def statement_book(Ledger self, str fund_id, object custodian_id, long long now_ms):
    """The book of (fund, custodian) at now_ms: per asset (symbol order) AVAILABLE (available + reserved),
    its tiers COLD, HOT, WARM, then STAKED and UNBONDING, where non-zero; and what is in flight."""
    cdef Fund f = _fund(self, fund_id)
    cdef FundAsset fa
    cdef Holding h
    _advance(self, f, now_ms)  # the lots matured by now_ms are available (in the entry tier), the rest unbonding
    lines = []
    for fa in f.assets:
        h = fa.by_custodian.get(custodian_id)
        if h is None:
            continue
        asset = fa.info.symbol
        held = h.available + h.reserved
        cold = held - h.warm - h.hot
        for bucket, tier, q in ((AVAILABLE, "", held), (AVAILABLE, COLD, cold), (AVAILABLE, HOT, h.hot),
                                (AVAILABLE, WARM, h.warm), (STAKED, "", h.staked), (UNBONDING, "", h.unbonding)):
            if q:  # in key order: (asset, bucket, tier)
                lines.append(BookLine(asset=asset, bucket=bucket, tier=tier, quantity=q))
    return StatementBook(lines=tuple(lines), in_flight=_in_flight(self, f, custodian_id))


cdef tuple _in_flight(Ledger self, Fund f, object custodian_id):
    """Per asset of the fund: deliveries with their confirmations on ACCEPTED creations (when the custodian
    is the creation custodian) minus payouts on ACCEPTED redemptions' legs at the custodian; only the assets
    with something in flight, with the orders and tx hashes that sum to it."""
    if not f.open_orders:
        return ()
    found = {}  # asset -> [quantity, order ids, tx hashes]
    creations = f.creation_custodian.custodian_id == custodian_id
    assets = f.asset_map
    for order_id in f.open_orders:  # the ACCEPTED orders
        o = self.orders[order_id]
        if o.side == CREATE:
            if not creations:
                continue
            for d in o.deliveries:
                if d.asset in assets and d.confirmations >= (<Asset>self.assets[d.asset]).min_conf:
                    entry = found.get(d.asset)
                    if entry is None:
                        entry = found[d.asset] = [0, set(), set()]
                    entry[0] += d.quantity
                    entry[1].add(order_id)
                    entry[2].add(d.tx_hash)
        else:
            for p in o.payouts:
                if p.custodian_id == custodian_id and p.asset in assets:
                    entry = found.get(p.asset)
                    if entry is None:
                        entry = found[p.asset] = [0, set(), set()]
                    entry[0] -= p.quantity
                    entry[1].add(order_id)
                    entry[2].add(p.tx_hash)
    return tuple([InFlight(asset=a, quantity=found[a][0], order_ids=tuple(sorted(found[a][1])),
                           tx_hashes=tuple(sorted(found[a][2]))) for a in sorted(found)])


# -- statements -------------------------------------------------------------------------------------------

def _record_statement(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f = _fund(self, cmd.fund_id)
    _custodian(self, cmd.custodian_id)
    ADDR.check_printable(cmd.reference, "reference")
    mine = self.statements.get((f.fund_id, cmd.custodian_id))  # reference -> Statement, in recording order
    known = None if mine is None else mine.get(cmd.reference)
    if known is not None:  # a retry is known by its reference, whatever came since
        lines = _statement_lines(self, f, cmd)
        if known.as_of == cmd.as_of and known.source == cmd.source and known.lines == lines:
            return M.StatementResult(opened=[], resolved=[], ignored=True)
        raise EngineError(ALREADY_EXISTS, f"statement {quote(cmd.reference)} is recorded with other content")
    as_of = cmd.as_of
    if as_of < 0:
        raise invalid("as_of", "must be at least 0")
    if as_of > now_ms:
        raise invalid("as_of", "is in the future")
    if mine:
        last = next(reversed(mine.values())).as_of
        if as_of < last:
            raise invalid("as_of", f"is before the previous statement's ({last})")
    if cmd.source not in M.SOURCES:
        raise invalid("source", f"{quote(cmd.source)} is not CUSTODIAN or CHAIN")
    lines = _statement_lines(self, f, cmd)
    book = cmd.book
    if book is None:
        book = statement_book(self, f.fund_id, cmd.custodian_id, as_of)
    opened, resolved = _compare(self, f, cmd, lines, book, now_ms)
    _emit(self, events, M.StatementRecorded(at=now_ms, fund_id=f.fund_id, custodian_id=cmd.custodian_id, as_of=as_of,
                                           source=cmd.source, reference=cmd.reference, lines=lines,
                                           opened=tuple(opened), resolved=tuple(resolved)))
    return M.StatementResult(opened=opened, resolved=resolved)


cdef tuple _statement_lines(Ledger self, Fund f, object cmd):
    """The lines checked (ledger.py order) and parsed, by (asset, bucket, tier)."""
    cdef FundAsset fa
    found = {}
    for i, spec in enumerate(cmd.lines):
        at = f"lines[{i}]"
        fa = f.asset_map.get(spec.asset)
        if fa is None:
            raise invalid(f"{at}.asset", f"{quote(spec.asset)} is not an asset of fund {quote(f.fund_id)}")
        if spec.bucket not in M.BUCKETS:
            raise invalid(f"{at}.bucket", f"{quote(spec.bucket)} is not AVAILABLE, STAKED or UNBONDING")
        if spec.tier:
            if spec.tier not in M.TIERS:
                raise invalid(f"{at}.tier", f"{quote(spec.tier)} is not COLD, WARM or HOT")
            if spec.bucket != AVAILABLE:
                raise invalid(f"{at}.tier", f"a {spec.bucket} line has no tier")
        q = parse_scaled(spec.quantity, f"{at}.quantity", fa.info.decimals, limit=MAX_QUANTITY)
        key = (spec.asset, spec.bucket, spec.tier)
        if key in found:
            raise invalid(at, f"{'/'.join([k for k in key if k])} is given twice")
        found[key] = StatementLine(asset=spec.asset, bucket=spec.bucket, tier=spec.tier, quantity=q)
    return tuple([found[k] for k in sorted(found)])


cdef tuple _compare(Ledger self, Fund f, object cmd, tuple lines, object book, long long now_ms):
    """(breaks opened, TIMING break ids resolved): every line's key, and every untiered (asset, bucket) the
    book holds that no line names (stated 0), in key order."""
    said = {(x.asset, x.bucket, x.tier): x.quantity for x in lines}
    held = {(x.asset, x.bucket, x.tier): x.quantity for x in book.lines}
    named = {(k[0], k[1]) for k in said}
    keys = set(said)
    for k in held:
        if k[2] == "" and (k[0], k[1]) not in named:
            keys.add(k)
    flights = {x.asset: x for x in book.in_flight}
    custodian_id = cmd.custodian_id
    opened, resolved = [], []
    seq = self.next_break_seq
    for key in sorted(keys):
        asset, bucket, tier = key
        ours, theirs = held.get(key, 0), said.get(key, 0)
        if ours == theirs:  # agrees: resolves the OPEN TIMING and UNBONDING breaks of the key
            ids = f.open_breaks.get((custodian_id, asset))
            if ids:
                for break_id in ids:
                    b = self.breaks[break_id]
                    if b.bucket == bucket and b.tier == tier and (b.classification == TIMING or bucket == UNBONDING):
                        resolved.append(break_id)
            continue
        flight = flights.get(asset)
        timing = bucket == AVAILABLE and tier == "" and flight is not None and theirs == ours + flight.quantity
        opened.append(Break(
            break_id="BRK-%08d" % seq, fund_id=f.fund_id, custodian_id=custodian_id, asset=asset, bucket=bucket,
            tier=tier, as_of=cmd.as_of, book=ours, statement=theirs, difference=ours - theirs,
            classification=TIMING if timing else UNEXPLAINED, status=BREAK_OPEN, opened_at=now_ms,
            reference=cmd.reference, order_ids=flight.order_ids if timing else (),
            tx_hashes=flight.tx_hashes if timing else ()))
        seq += 1
    resolved.sort()
    return opened, resolved


def _on_statement(Ledger self, event):
    cdef Fund f = self.funds[event.fund_id]
    statement = M.Statement(fund_id=event.fund_id, custodian_id=event.custodian_id, as_of=event.as_of,
                            source=event.source, reference=event.reference, lines=event.lines, recorded_at=event.at)
    self.statements.setdefault((event.fund_id, event.custodian_id), {})[event.reference] = statement
    f.reconciles = True
    for b in event.opened:
        self.breaks[b.break_id] = b
        self.next_break_seq += 1
        _break_opened(f, b)
    for break_id in event.resolved:
        b = self.breaks[break_id]
        self.breaks[break_id] = _replace(b, status=RESOLVED, resolved_at=event.at,
                                         resolved_by_reference=event.reference)
        _break_closed(f, b)


# -- the OPEN breaks of a fund, and the holdings they hold back --------------------------------------------

cdef _break_opened(Fund f, object b):
    key = (b.custodian_id, b.asset)
    ids = f.open_breaks.get(key)
    if ids is None:
        f.open_breaks[key] = [b.break_id]
    else:
        ids.append(b.break_id)  # ids come in sequence: the list stays in id order
    if b.classification == UNEXPLAINED:
        n = f.unexplained.get(key, 0)
        f.unexplained[key] = n + 1
        if not n:
            _hold(f, b.custodian_id, b.asset)


cdef _break_closed(Fund f, object b):
    key = (b.custodian_id, b.asset)
    ids = f.open_breaks[key]
    ids.remove(b.break_id)
    if not ids:
        del f.open_breaks[key]
    if b.classification == UNEXPLAINED:
        n = f.unexplained[key] - 1
        if n:
            f.unexplained[key] = n
        else:
            del f.unexplained[key]
            _hold(f, b.custodian_id, b.asset)


cdef inline bint _held(Fund f, object custodian_id, object asset):
    """hold_redemptions_on_break applies to the holding: the term, and an OPEN UNEXPLAINED break on it."""
    return f.hold_on_break and (custodian_id, asset) in f.unexplained


cdef _hold(Fund f, object custodian_id, object asset):
    """Set the holding's flag (when the fund holds the asset there); its asset's liquid(a) is stale on a change."""
    cdef FundAsset fa = f.asset_map.get(asset)
    cdef Holding h
    if fa is None:
        return
    h = fa.by_custodian.get(custodian_id)
    if h is None:
        return  # a holding made later takes its flag then (_holding)
    held = _held(f, custodian_id, asset)
    if h.held != held:
        h.held = held
        fa.liquid = None


cdef _hold_all(Fund f):
    """Every holding's flag (the term changed, or a restore)."""
    cdef FundAsset fa
    cdef Holding h
    for fa in f.assets:
        for h in fa.holdings:
            held = _held(f, h.custodian.custodian_id, h.asset)
            if h.held != held:
                h.held = held
                fa.liquid = None


cdef _break_required(Ledger self, Fund f, object custodian_id, object asset, object break_id):
    """AdjustHolding on a fund with a statement, or naming a break: only against an OPEN break of that
    holding (BREAK_REQUIRED: no plug entries)."""
    ids = f.open_breaks.get((custodian_id, asset))
    if break_id and ids is not None and break_id in ids:
        return
    if break_id:
        detail = f"break {quote(break_id)} is not an OPEN break of {f.fund_id} {custodian_id} {asset}"
    else:
        detail = "the fund reconciles with its custodians' statements: an adjustment names the OPEN break it is for"
    raise precondition(M.BREAK_REQUIRED, detail)


# -- resolving a break --------------------------------------------------------------------------------------

cdef object _break(Ledger self, object break_id):
    b = self.breaks.get(break_id)
    if b is None:
        raise not_found("break", break_id)
    return b


def _resolve_break(Ledger self, cmd, long long now_ms, list events):
    cdef Fund f
    cdef FundAsset fa
    cdef Holding h = None
    b = _break(self, cmd.break_id)
    delta = parse_scaled(cmd.adjustment, "adjustment", (<Asset>self.assets[b.asset]).decimals, signed=True,
                         limit=MAX_QUANTITY)
    _need_text(cmd.comment, "comment")
    if b.status != BREAK_OPEN:
        raise precondition(M.BREAK_NOT_OPEN, f"{b.break_id} is {b.status}")
    if b.bucket == UNBONDING and delta:
        raise invalid("adjustment", "an UNBONDING break resolves only with 0 (or a later statement)")
    f = self.funds[b.fund_id]
    _advance(self, f, now_ms)  # the lots matured by now are available
    fa = f.asset_map.get(b.asset)
    if fa is not None:
        h = fa.by_custodian.get(b.custodian_id)
    if b.bucket == STAKED:
        staked = 0 if h is None else h.staked
        if staked + delta < 0:
            raise precondition(INSUFFICIENT_STAKED_BALANCE, f"staked {staked} at {b.custodian_id}, adjustment {delta}")
        _add(staked, delta, "adjustment")
    elif b.bucket == AVAILABLE:
        if b.tier:
            has = _tier_balance(h, b.tier)
            if has + delta < 0:
                raise precondition(M.INSUFFICIENT_TIER_BALANCE, f"{b.tier} at {b.custodian_id} holds {has}, "
                                                                f"adjustment {delta}")
        available = 0 if h is None else h.available
        if available + delta < 0:
            raise precondition(INSUFFICIENT_LIQUID_BALANCE, f"available {available} at {b.custodian_id}, "
                                                            f"adjustment {delta}")
        _add(available, delta, "adjustment")
    _emit(self, events, M.BreakResolved(at=now_ms, break_id=b.break_id, adjustment=delta, comment=cmd.comment,
                                       proposer=cmd.principal, approver=cmd.approved_by))
    return self.breaks[b.break_id]


def _on_break_resolved(Ledger self, event):
    cdef Fund f
    cdef FundAsset fa
    cdef Holding h
    b = self.breaks[event.break_id]
    f = self.funds[b.fund_id]
    _advance(self, f, event.at)
    q = event.adjustment
    if q:
        fa = f.asset_map[b.asset]
        h = _holding(self, fa, self.custodians[b.custodian_id])
        _keep_released(f, h)
        if b.bucket == STAKED:
            h.staked += q
            fa.illiquid += q
        else:  # AVAILABLE: in the break's tier (cold is the rest), or entering or leaving held as SPEC §18
            h.available += q
            if b.tier == HOT:
                h.hot += q
            elif b.tier == WARM:
                h.warm += q
            elif not b.tier:
                if q > 0:
                    _enter(f, h, q)
                else:
                    _leave(f, h, -q)
            _touch(f, h)
            fa.liquid = None
        _total_changed(self, fa, q)
    self.breaks[b.break_id] = _replace(b, status=RESOLVED, resolved_at=event.at, adjustment=q, comment=event.comment,
                                       proposed_by=event.proposer, approved_by=event.approver)
    _break_closed(f, b)


# -- reads ----------------------------------------------------------------------------------------------------

def list_breaks(Ledger self, str fund_id="", str status=""):
    if fund_id:
        _fund(self, fund_id)
    if status and status not in M.BREAK_STATUSES:
        raise invalid("status", f"{quote(status)} is not OPEN or RESOLVED")
    found = []
    for break_id in sorted(self.breaks):
        b = self.breaks[break_id]
        if (not fund_id or b.fund_id == fund_id) and (not status or b.status == status):
            found.append(b)
    return found


def get_break(Ledger self, break_id):
    return _break(self, break_id)


cdef _restore_books(Ledger ledger, object state):
    """A snapshot's statements and breaks, and what the funds keep of them."""
    cdef Fund f
    for statement in state.statements:  # by fund, custodian, then recording order
        ledger.statements.setdefault((statement.fund_id, statement.custodian_id), {})[statement.reference] = statement
        (<Fund>ledger.funds[statement.fund_id]).reconciles = True
    for b in state.breaks:  # by id
        ledger.breaks[b.break_id] = b
        if b.status == BREAK_OPEN:
            _break_opened(<Fund>ledger.funds[b.fund_id], b)
    ledger.next_break_seq = state.next_break_seq
    for f in ledger.funds.values():
        _hold_all(f)
