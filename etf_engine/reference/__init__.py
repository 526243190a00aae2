"""The test oracle, ``ReferenceLedger``: SPEC's rules in plain Python with ``fractions.Fraction``, one module per
concept, named as the compiled core's modules (``ext/etf_engine/core/*.pxi``) so that a rule reads the same in
both side by side: ``checks`` (input checks and helpers several concepts use), ``funds`` (assets, custodians,
participants, fund terms), ``valuation`` (sums, NAV, basket, holdings), ``prices`` (PublishPrices), ``orders``
(SubmitOrder(s), CheckOrder, GetCapacity, the decision, settlement, cancellation), ``custody`` (adjustments,
staking, and the one staking-cap/liquidity-buffer check), ``dealing_day`` (calendars, CloseDealingDay,
StrikeNav, official NAVs, PCFs), ``wallets`` (wallets, deliveries, payouts), and ``ledger`` (the state, the
dispatch of commands and events, the lookups they share, and the order in which a command reports its faults).
Each concept module holds a mixin with that concept's command handlers and event handlers together; ``state``
holds the per-fund records (Fund, Holding), as the core's ``.pxd`` does.
"""

from etf_engine.reference.ledger import ReferenceLedger

__all__ = ["ReferenceLedger"]
