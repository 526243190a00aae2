# Input checks shared by every concept: ids, codes, integers in range, fractions, ticks (SPEC §1, §7).
# Each raises the EngineError that names the field; none reads or changes the ledger.

cdef bint valid_id(object s) noexcept:
    cdef Py_UCS4 ch
    if not isinstance(s, str) or not 1 <= len(<str>s) <= 64:
        return False
    for ch in <str>s:
        if not ('a' <= ch <= 'z' or 'A' <= ch <= 'Z' or '0' <= ch <= '9' or ch in "._:-"):
            return False
    return True


cdef bint valid_code(object s, int lo, int hi, bint digits) noexcept:
    """Upper-case symbol of lo..hi characters (digits allowed when ``digits``)."""
    cdef Py_UCS4 ch
    if not isinstance(s, str) or not lo <= len(<str>s) <= hi:
        return False
    for ch in <str>s:
        if not ('A' <= ch <= 'Z' or (digits and '0' <= ch <= '9')):
            return False
    return True


def _need_id(value, str field):
    if not valid_id(value):
        raise invalid(field, f"{value!r} is not 1-64 of [A-Za-z0-9._:-]")


def _need_text(value, str field):
    """A free-text reason or label: a string of at most MAX_REASON characters."""
    if not isinstance(value, str) or len(value) > M.MAX_REASON:
        raise invalid(field, f"must be a text of at most {M.MAX_REASON} characters")


def _need_int(value, str field, lo, hi=None):
    if type(value) is not int:
        raise invalid(field, f"expected an integer, got {value!r}")
    if value < lo:
        raise invalid(field, f"{value} is below {lo}")
    if hi is not None and value > hi:
        raise out_of_range(field, f"{value} exceeds {hi}")


def _fraction(str text, str field):
    value = parse_scaled(text, field, FRACTION_DP)
    if value > FSCALE:
        raise invalid(field, f"{text!r} is above 1")
    return value


def _tick_price(tick, str field, long long now_ms):
    """A §7 tick's price (> 0, at most 10^12) after its as-of time is checked (not ahead of now by more
    than 5 s); ``field`` is ``ticks[i].``. PublishPrices and StrikeNav both take ticks."""
    price = parse_scaled(tick.price, f"{field}price", PRICE_DP, limit=MAX_PRICE)
    if price == 0:
        raise invalid(f"{field}price", "must be greater than zero")
    if type(tick.as_of_unix_ms) is not int or tick.as_of_unix_ms < 0:
        raise invalid(f"{field}as_of_unix_ms", f"{tick.as_of_unix_ms!r} is not a time")
    if tick.as_of_unix_ms > now_ms + M.FUTURE_TOLERANCE_MS:
        raise invalid(f"{field}as_of_unix_ms", "more than 5 s in the future")
    return price


cdef long long _clamp_ms(object seconds):
    ms = seconds * 1000
    return LLONG_MAX if ms > LLONG_MAX else ms


cdef object _add(object value, object delta, str field):
    out = value + delta
    if out > MAX_QUANTITY:
        raise out_of_range(field, "a holding would exceed 10^30 smallest units")
    return out
