"""The test oracle: SPEC.md and the decisions of ``etf_engine.ledger``, literally, in plain Python.

Every valuation is a ``fractions.Fraction``; rounding happens only where SPEC says, half-even. Speed
is not a goal: the Cython core must agree with this ledger figure for figure.

A command with several faults reports the first in this order (``etf_engine.ledger`` leaves it open
outside SubmitOrder): a registration checks its fields in declaration order, then ALREADY_EXISTS for
its id; a command on an existing record looks that record up first (NOT_FOUND), then checks its fields
in declaration order, because a field may need the record (an asset's decimals, a fund's assets).

This module holds ``ReferenceLedger``: its state, the two dispatch tables (command -> handler,
event -> handler, each naming the concept module that holds it) and the lookups every concept uses.
"""

from __future__ import annotations

from typing import Any

from etf_engine import calendar as cal_
from etf_engine import model as m
from etf_engine import snapshot as S
from etf_engine.errors import invalid, not_found
from etf_engine.numbers import ACCRUED_DP
from etf_engine.reference.custody import Custody
from etf_engine.reference.dealing_day import DealingDay
from etf_engine.reference.fees import Fees
from etf_engine.reference.funds import Funds
from etf_engine.reference.instructions import Instructions
from etf_engine.reference.invariants import Invariants
from etf_engine.reference.orders import Orders
from etf_engine.reference.prices import Prices
from etf_engine.reference.reconciliation import Reconciliation
from etf_engine.reference.state import Fund, Holding
from etf_engine.reference.storage import Storage
from etf_engine.reference.valuation import Valuation
from etf_engine.reference.wallets import Wallets


class ReferenceLedger(Funds, Valuation, Prices, Orders, Custody, DealingDay, Wallets, Fees, Instructions, Storage,
                      Reconciliation, Invariants):
    """The state, the dispatch of commands and events to the concepts' handlers, and the lookups they share."""

    def __init__(self) -> None:
        self.assets: dict[str, int] = {}  # symbol -> decimals
        self.custodians: dict[str, m.CustodianRegistered] = {}
        self.participants: dict[str, m.ParticipantRegistered] = {}
        self.prices: dict[tuple[str, str], tuple[int, int]] = {}  # (asset, currency) -> (price, as_of)
        self.funds: dict[str, Fund] = {}
        self.orders: dict[str, m.Order] = {}
        self.order_keys: dict[tuple[str, str], str] = {}  # (participant, client_order_id) -> order_id
        self.next_order_seq = 1
        self.calendars: dict[str, cal_.Calendar] = {}
        self.asset_rules: dict[str, tuple[int, str]] = {}  # symbol -> (min_confirmations, chain)
        self.wallets: dict[str, m.Wallet] = {}
        self.next_wallet_seq = 1
        self.instructions: dict[str, m.Instruction] = {}
        self.storage_policies: dict[str, tuple[int, int]] = {}  # custodian -> (min_cold_ratio, max_hot_seconds)
        self.statements: list[m.Statement] = []  # in recording order
        self.breaks: dict[str, m.Break] = {}
        self.next_break_seq = 1
        self.next_instruction_seq = 1

    def execute(self, command: Any, now_ms: int) -> tuple[Any, list[m.Event]]:
        handler = self._HANDLERS.get(type(command))
        if handler is None:
            raise invalid("command", f"unknown command {type(command).__name__}")
        return handler(self, command, now_ms)

    def apply(self, event: m.Event) -> None:
        self._APPLIERS[type(event)](self, event)
        self._track_idle(event)

    def _commit(self, *events: m.Event) -> list[m.Event]:
        for event in events:
            self.apply(event)
        return list(events)

    # -- lookups shared by the concepts ------------------------------------------------------------
    def _fund(self, fund_id: str) -> Fund:
        if fund_id not in self.funds:
            raise not_found("fund", fund_id)
        return self.funds[fund_id]

    def _custodian(self, custodian_id: str) -> m.CustodianRegistered:
        if custodian_id not in self.custodians:
            raise not_found("custodian", custodian_id)
        return self.custodians[custodian_id]

    def _licensed(self, custodian_id: str, now: int) -> bool:
        c = self.custodians[custodian_id]
        return c.licence_status == m.ACTIVE and now < c.licence_expires_at * 1000

    @staticmethod
    def _holding(fund: Fund, custodian_id: str, asset: str) -> Holding:
        """A holding to read (an empty one if the fund never held the asset there)."""
        return fund.holdings.get((custodian_id, asset), Holding())

    def _live(self, fund_id: str, custodian_id: str, asset: str, at: int) -> Holding:
        """The holding an event changes, created if new, with the lots matured by ``at`` released."""
        fund = self.funds[fund_id]
        holding = fund.holdings.get((custodian_id, asset))
        if holding is None:
            holding = fund.holdings[custodian_id, asset] = self._new_holding(fund)
        holding.release(at)
        return holding

    def _fund_orders(self, fund: Fund) -> list[m.Order]:
        return [self.orders[order_id] for order_id in fund.order_ids]

    # -- the state, as tests compare it with the core's --------------------------------------------
    def state(self, now_ms: int) -> S.LedgerState:
        def rows(fund: Fund) -> list[S.HoldingState]:
            return [S.HoldingState(c, a, h.free(now_ms), h.reserved, h.staked,
                                   sorted((t, q) for t, q in h.lots if t > now_ms), *h.tiers(now_ms)[1:], h.over_since)
                    for (c, a), h in sorted(fund.holdings.items()) if not h.is_empty(now_ms)]

        def accrued_fees(fund: Fund) -> int:
            exact = fund.accrued * 10**ACCRUED_DP
            assert exact.denominator == 1, "an accrued fee is a whole number of 10^-ACCRUED_DP"
            return int(exact)

        funds = [f for _, f in sorted(self.funds.items())]
        return S.LedgerState(
            assets=[S.AssetState(s, d, *self.asset_rules[s]) for s, d in sorted(self.assets.items())],
            custodians=[S.CustodianState(c.custodian_id, c.name, c.licence_number, c.licence_status,
                                         c.licence_expires_at, *self._policy(c.custodian_id))
                        for _, c in sorted(self.custodians.items())],
            participants=[S.ParticipantState(p.participant_id, p.name, list(p.eligible_fund_ids), p.max_units_per_order,
                                             p.max_units_per_day) for _, p in sorted(self.participants.items())],
            prices=[S.PriceState(a, cur, p, as_of) for (a, cur), (p, as_of) in sorted(self.prices.items())],
            funds=[S.FundState(f.terms, f.cash, f.shares, rows(f), accrued_fees(f),
                               sorted((a, q) for a, q in f.fee_payable.items() if q), f.entry_tier) for f in funds],
            orders=[o for _, o in sorted(self.orders.items())],
            next_order_seq=self.next_order_seq,
            calendars=[S.CalendarState(c.calendar_id, c.time_zone, sorted(d.isoformat() for d in c.holidays),
                                       sorted(c.weekend_days),
                                       [(d.isoformat(), r) for d, r in sorted(c.closed.items())])
                       for _, c in sorted(self.calendars.items())],
            official_navs=[n for f in funds for _, n in sorted(f.navs.items())],
            pcfs=[p for f in funds for _, p in sorted(f.pcfs.items())],
            wallets=[w for _, w in sorted(self.wallets.items())],
            next_wallet_seq=self.next_wallet_seq,
            instructions=[i for _, i in sorted(self.instructions.items())],
            next_instruction_seq=self.next_instruction_seq,
            statements=sorted(self.statements, key=lambda s: (s.fund_id, s.custodian_id)),
            breaks=[b for _, b in sorted(self.breaks.items())],
            next_break_seq=self.next_break_seq,
        )

    def _on_clock(self, e: m.ClockAdvanced) -> None:
        return None  # the engine's clock, not the ledger's

    # Exact types: Unstake, RecordStakingReward and RecordSlashing subclass Stake (events likewise).
    _HANDLERS = {
        m.RegisterAsset: Funds._register_asset, m.RegisterCustodian: Funds._register_custodian,
        m.SetCustodianLicence: Funds._set_licence, m.RegisterParticipant: Funds._register_participant,
        m.CreateFund: Funds._create_fund, m.UpdateFund: Funds._update_fund,
        m.AdjustHolding: Custody._adjust_holding, m.AdjustCash: Custody._adjust_cash, m.Stake: Custody._stake,
        m.Unstake: Custody._unstake, m.RecordStakingReward: Custody._record_reward,
        m.RecordSlashing: Custody._record_slashing,
        m.PublishPrices: Prices._publish_prices,
        m.SubmitOrder: Orders._submit_order, m.SubmitOrders: Orders._submit_orders,
        m.SettleOrder: Orders._settle_order, m.CancelOrder: Orders._cancel_order,
        m.RegisterCalendar: DealingDay._register_calendar, m.SetHolidays: DealingDay._set_holidays,
        m.CloseDealingDay: DealingDay._close_day, m.StrikeNav: DealingDay._strike,
        m.RegisterWallet: Wallets._register_wallet, m.ApproveWallet: Wallets._approve_wallet,
        m.RevokeWallet: Wallets._revoke_wallet, m.RecordDelivery: Wallets._record_delivery,
        m.RecordPayout: Wallets._record_payout, m.PayFee: Fees._pay_fee,
        m.ProposeInstruction: Instructions._propose, m.ApproveInstruction: Instructions._approve,
        m.RejectInstruction: Instructions._reject, m.Sweep: Storage._sweep, m.SetStoragePolicy: Storage._set_policy,
        m.RecordStatement: Reconciliation._record_statement, m.ResolveBreak: Reconciliation._resolve_break,
    }
    _APPLIERS = {
        m.AssetRegistered: Funds._on_asset, m.CustodianRegistered: Funds._on_custodian,
        m.LicenceSet: Funds._on_licence, m.ParticipantRegistered: Funds._on_participant,
        m.FundCreated: Funds._on_fund_created, m.FundUpdated: Funds._on_fund_updated,
        m.HoldingAdjusted: Custody._on_holding, m.CashAdjusted: Custody._on_cash, m.Staked: Custody._on_staked,
        m.Unstaked: Custody._on_unstaked, m.RewardRecorded: Custody._on_reward, m.Slashed: Custody._on_slashed,
        m.PriceSet: Prices._on_price,
        m.OrderRecorded: Orders._on_order, m.OrderSettled: Orders._on_settled, m.OrderCancelled: Orders._on_cancelled,
        m.CalendarRegistered: DealingDay._on_calendar, m.HolidaysSet: DealingDay._on_holidays,
        m.DealingDayClosed: DealingDay._on_day_closed, m.NavStruck: DealingDay._on_struck,
        m.WalletRegistered: Wallets._on_wallet, m.WalletApproved: Wallets._on_wallet_approved,
        m.WalletRevoked: Wallets._on_wallet_revoked, m.DeliveryRecorded: Wallets._on_delivery,
        m.PayoutRecorded: Wallets._on_payout, m.FeePaid: Fees._on_fee_paid,
        m.InstructionProposed: Instructions._on_proposed, m.InstructionDecided: Instructions._on_decided,
        m.Swept: Storage._on_swept, m.StoragePolicySet: Storage._on_policy,
        m.StatementRecorded: Reconciliation._on_statement, m.BreakResolved: Reconciliation._on_break_resolved,
        m.ClockAdvanced: _on_clock,
        m.CheckpointRecorded: _on_clock,  # the journal's (SPEC §21), not the ledger's
    }
