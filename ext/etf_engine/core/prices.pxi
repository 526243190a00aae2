# Price ticks: PublishPrices and the prices every fund reads (SPEC §7).

def list_prices(Ledger self):
    cdef Price price
    found = []
    for key in sorted(self.prices):
        price = self.prices[key]
        if price.value is not None:  # a fund's placeholder for a price not published yet
            found.append((key[0], key[1], price.value, price.as_of))
    return found


def _publish(Ledger self, cmd, long long now_ms, list events):
    cdef Price current
    parsed = []
    for i, tick in enumerate(cmd.ticks):
        field = f"ticks[{i}]."
        if tick.asset not in self.assets:
            raise invalid(f"{field}asset", f"unknown asset {tick.asset!r}")
        if not valid_code(tick.currency, 3, 10, False):
            raise invalid(f"{field}currency", f"{tick.currency!r} is not 3-10 of [A-Z]")
        price = _tick_price(tick, field, now_ms)
        parsed.append((tick.asset, tick.currency, price, tick.as_of_unix_ms))
    latest = {}
    applied = 0
    ignored = []
    for i, (asset, currency, price, as_of) in enumerate(parsed):
        key = (asset, currency)
        current = self.prices.get(key)
        newest = latest.get(key, -1 if current is None else current.as_of)
        if as_of <= newest:
            ignored.append(M.IgnoredTick(index=i, asset=asset, currency=currency, as_of_unix_ms=as_of,
                                         current_as_of_unix_ms=newest))
            continue
        latest[key] = as_of
        applied += 1
        _emit(self, events, M.PriceSet(at=now_ms, asset=asset, currency=currency, price=price, as_of=as_of))
    return M.PublishResult(applied=applied, ignored=len(ignored), ignored_ticks=ignored)


def _on_price(Ledger self, event):
    cdef Price p
    cdef FundAsset fa
    cdef Fund f
    key = (event.asset, event.currency)
    p = self.prices.get(key)
    if p is None:
        p = self.prices[key] = Price()
    old = p.value
    for fa in self.watchers.get(key, ()):
        f = fa.fund
        if old is None:
            f.missing_prices -= 1
            f.nav_num += fa.total * event.price * fa.info.factor
        else:
            f.nav_num += fa.total * (event.price - old) * fa.info.factor
        f.basket = None
    p.value = event.price
    p.as_of = event.as_of
