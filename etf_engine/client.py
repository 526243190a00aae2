"""A blocking Python client for etf_engine.v1: one typed method per RPC.

Decimal figures go in and come out as strings ("22.72"), never floats. Replies are the generated
protobuf messages (typed by engine_pb2.pyi); enum fields read back with ``side_name`` and
``status_name``. Errors are ``grpc.RpcError`` with the server's status code and details.

Four eyes (SPEC §20): an Admin call listed in the server's ``four_eyes`` is recorded as a pending
instruction instead of acting. The methods that return a whole reply show it (``pending``,
``instruction_id``); those that return what the reply holds (``settle_order`` -> the Order, the
wallet methods -> the Wallet, ...) raise ``PendingInstruction`` instead of returning an empty message.

    with EtfClient("127.0.0.1:50051", token) as c:
        nav = c.get_nav("HK-BTCETH")
        order = c.submit_order("HK-BTCETH", "CREATE", 2, "desk-2025-06-30-001")
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import grpc

from etf_engine.v1 import engine_pb2 as pb
from etf_engine.v1 import engine_pb2_grpc as rpc

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Codes that mean "no answer", so the same request (idempotent by its client_order_id) goes again.
# CANCELLED is among them because this client never cancels its own calls: a server that stops cancels
# the calls that reached it but had not yet been handed to a handler (gRPC's own shutdown), unanswered.
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


class PendingInstruction(Exception):
    """The call was recorded as a PENDING instruction (four eyes, SPEC §20): another issuer principal
    approves it (``approve_instruction``) before it acts."""

    def __init__(self, rpc: str, instruction_id: str) -> None:
        super().__init__(f"{rpc}: recorded as instruction {instruction_id}, pending approval by another issuer")
        self.rpc = rpc
        self.instruction_id = instruction_id


@dataclass(frozen=True)
class FundAssetTerms:
    """One asset of CreateFund / UpdateFund; empty strings take defaults in CreateFund only (and an
    empty staking_fee_rate is 0 in UpdateFund too; an empty min_cold_ratio is the custodian's policy in both)."""

    asset: str
    staking_cap: str = ""
    liquidity_buffer: str = ""
    unbonding_seconds: int = 0
    seed_quantity_per_unit: str = ""
    staking_fee_rate: str = ""  # SPEC §17: the staking provider's share of each reward, in [0, 1)
    min_cold_ratio: str = ""  # SPEC §18: this asset's storage ratio in [0, 1]; "" the custodian's policy

    def message(self) -> pb.FundAsset:
        return pb.FundAsset(asset=self.asset, staking_cap=self.staking_cap, liquidity_buffer=self.liquidity_buffer,
                            unbonding_seconds=self.unbonding_seconds,
                            seed_quantity_per_unit=self.seed_quantity_per_unit, staking_fee_rate=self.staking_fee_rate,
                            min_cold_ratio=self.min_cold_ratio)


@dataclass(frozen=True)
class FeeWaiver:
    """SPEC §17: while a day is on or before ``until`` (ISO date), the first ``nav_limit`` of the fee basis
    is charged at ``rate``. In update_fund, ``FeeWaiver(until="")`` removes the fund's waiver."""

    rate: str = ""
    nav_limit: str = ""
    until: str = ""

    def message(self) -> pb.FeeWaiver:
        return pb.FeeWaiver(rate=self.rate, nav_limit=self.nav_limit, until=self.until)


@dataclass(frozen=True)
class Tick:
    asset: str
    currency: str
    price: str
    as_of_unix_ms: int

    def message(self) -> pb.PriceTick:
        return pb.PriceTick(asset=self.asset, currency=self.currency, price=self.price,
                            as_of_unix_ms=self.as_of_unix_ms)


@dataclass(frozen=True)
class StatementLine:
    """One line of record_statement (SPEC §19): what the custodian holds of ``asset`` in ``bucket``
    (AVAILABLE, STAKED or UNBONDING), in one storage ``tier`` (COLD, WARM, HOT; AVAILABLE only) or, with
    ``tier`` "", the whole bucket."""

    asset: str
    bucket: str
    quantity: str
    tier: str = ""

    def message(self) -> pb.StatementLine:
        return pb.StatementLine(asset=self.asset, bucket=pb.Bucket.Value.Value(self.bucket),
                                tier=tier_value(self.tier) if self.tier else 0, quantity=self.quantity)


@dataclass(frozen=True)
class OrderItem:
    """One item of submit_orders."""

    fund_id: str
    side: str  # "CREATE" or "REDEEM"
    units: int
    client_order_id: str
    payout_wallet_ids: Sequence[str] = ()


class NavStream(Protocol):
    """The iterator StreamNav returns; ``cancel()`` ends it."""

    def __iter__(self) -> Iterator[pb.NavUpdate]: ...

    def __next__(self) -> pb.NavUpdate: ...

    def cancel(self) -> bool: ...


def side_value(side: str) -> int:
    """"CREATE"/"REDEEM" -> the wire value (ValueError for anything else)."""
    return pb.Side.Value.Value(side)


def side_name(value: int) -> str:
    return pb.Side.Value.Name(value)


def status_name(value: int) -> str:
    return pb.OrderStatus.Value.Name(value)


def wallet_status(value: int) -> str:
    return pb.WalletStatus.Value.Name(value)


def instruction_status(value: int) -> str:
    return pb.InstructionStatus.Value.Name(value)


def tier_value(tier: str) -> int:
    """"COLD"/"WARM"/"HOT" -> the wire value (ValueError for anything else)."""
    return pb.Tier.Value.Value(tier)


def bucket_name(value: int) -> str:
    return pb.Bucket.Value.Name(value)


def break_status(value: int) -> str:
    return pb.BreakStatus.Value.Name(value)


def break_classification(value: int) -> str:
    return pb.BreakClassification.Value.Name(value)


def tier_name(value: int) -> str:
    """A tier's name; "" for unspecified (an untiered statement line or break)."""
    return pb.Tier.Value.Name(value) if value else ""


def new_client_order_id() -> str:
    return uuid.uuid4().hex


class EtfClient:
    """Blocking client. ``tls`` is implied by any of the certificate arguments (PEM bytes):
    ``root_certificates`` to trust the server, ``private_key`` + ``certificate_chain`` for mutual TLS."""

    def __init__(
        self,
        target: str,
        token: str,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        timeout: float = 10.0,
        max_attempts: int = 5,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if tls or root_certificates or private_key or certificate_chain:
            credentials = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._admin = rpc.AdminStub(self._channel)
        self._dealing = rpc.DealingStub(self._channel)
        self._valuation = rpc.ValuationStub(self._channel)
        self._diagnostics = rpc.DiagnosticsStub(self._channel)
        self._reports = rpc.ReportsStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> EtfClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: object) -> Any:
        return method(request, metadata=self._metadata, timeout=self.timeout)

    def _acted(self, rpc: str, reply: Any) -> Any:
        """A reply whose content the method returns: PendingInstruction when the call was only proposed."""
        if reply.pending:
            raise PendingInstruction(rpc, reply.instruction_id)
        return reply

    # ------------------------------------------------------------------ Admin
    def register_asset(self, symbol: str, decimals: int, *, min_confirmations: int | None = None,
                       chain: str = "") -> pb.RegisterAssetReply:
        request = pb.RegisterAssetRequest(symbol=symbol, decimals=decimals, chain=chain)
        if min_confirmations is not None:
            request.min_confirmations = min_confirmations
        return self._call(self._admin.RegisterAsset, request)

    def register_custodian(self, custodian_id: str, name: str, licence_number: str, licence_status: str,
                           licence_expires_at: int) -> pb.RegisterCustodianReply:
        return self._call(self._admin.RegisterCustodian, pb.RegisterCustodianRequest(
            custodian_id=custodian_id, name=name, licence_number=licence_number,
            licence_status=pb.LicenceStatus.Value.Value(licence_status), licence_expires_at=licence_expires_at))

    def set_custodian_licence(self, custodian_id: str, licence_status: str,
                              licence_expires_at: int) -> pb.SetCustodianLicenceReply:
        return self._call(self._admin.SetCustodianLicence, pb.SetCustodianLicenceRequest(
            custodian_id=custodian_id, licence_status=pb.LicenceStatus.Value.Value(licence_status),
            licence_expires_at=licence_expires_at))

    def register_participant(self, participant_id: str, name: str, eligible_fund_ids: Sequence[str],
                             max_units_per_order: int, max_units_per_day: int) -> pb.RegisterParticipantReply:
        return self._call(self._admin.RegisterParticipant, pb.RegisterParticipantRequest(
            participant_id=participant_id, name=name, eligible_fund_ids=list(eligible_fund_ids),
            max_units_per_order=max_units_per_order, max_units_per_day=max_units_per_day))

    def create_fund(
        self,
        fund_id: str,
        name: str,
        base_currency: str,
        creation_unit: int,
        creation_custodian_id: str,
        custodian_priority: Sequence[str],
        assets: Sequence[FundAssetTerms],
        *,
        dealing_status: str = "OPEN",
        max_price_age_seconds: int | None = None,
        creation_fee: str = "",
        redemption_fee: str = "",
        min_liquid_units: int = 0,
        seed_cash_per_unit: str = "",
        initial_shares_outstanding: int = 0,
        calendar_id: str = "",
        dealing_cutoff: str = "",
        create_settlement_days: int | None = None,
        redeem_settlement_days: int | None = None,
        pricing: str = "LIVE",
        require_delivery: bool = False,
        management_fee_rate: str = "",
        fee_day_count: str = "ACT_365",
        fee_waiver: FeeWaiver | None = None,
        fee_payment: str = "CASH",
        fee_asset: str = "",
        fee_custodian_id: str = "",
        hold_redemptions_on_break: bool = False,
    ) -> pb.CreateFundReply:
        request = pb.CreateFundRequest(
            fund_id=fund_id, name=name, base_currency=base_currency, creation_unit=creation_unit,
            dealing_status=pb.DealingStatus.Value.Value(dealing_status), creation_fee=creation_fee,
            redemption_fee=redemption_fee, min_liquid_units=min_liquid_units,
            creation_custodian_id=creation_custodian_id, custodian_priority=list(custodian_priority),
            assets=[a.message() for a in assets], seed_cash_per_unit=seed_cash_per_unit,
            initial_shares_outstanding=initial_shares_outstanding, calendar_id=calendar_id,
            dealing_cutoff=dealing_cutoff, pricing=pb.Pricing.Value.Value(pricing), require_delivery=require_delivery,
            management_fee_rate=management_fee_rate, fee_day_count=pb.FeeDayCount.Value.Value(fee_day_count),
            fee_payment=pb.FeePayment.Value.Value(fee_payment), fee_asset=fee_asset,
            fee_custodian_id=fee_custodian_id, hold_redemptions_on_break=hold_redemptions_on_break)
        if fee_waiver is not None:
            request.fee_waiver.CopyFrom(fee_waiver.message())
        for field, value in (("max_price_age_seconds", max_price_age_seconds),
                             ("create_settlement_days", create_settlement_days),
                             ("redeem_settlement_days", redeem_settlement_days)):
            if value is not None:
                setattr(request, field, value)
        return self._call(self._admin.CreateFund, request)

    def update_fund(
        self,
        fund_id: str,
        *,
        name: str | None = None,
        dealing_status: str | None = None,
        max_price_age_seconds: int | None = None,
        creation_fee: str | None = None,
        redemption_fee: str | None = None,
        min_liquid_units: int | None = None,
        creation_custodian_id: str | None = None,
        custodian_priority: Sequence[str] | None = None,
        seed_cash_per_unit: str | None = None,
        assets: Sequence[FundAssetTerms] = (),
        calendar_id: str | None = None,
        dealing_cutoff: str | None = None,
        create_settlement_days: int | None = None,
        redeem_settlement_days: int | None = None,
        pricing: str | None = None,
        require_delivery: bool | None = None,
        management_fee_rate: str | None = None,
        fee_day_count: str | None = None,
        fee_waiver: FeeWaiver | None = None,
        fee_payment: str | None = None,
        fee_asset: str | None = None,
        fee_custodian_id: str | None = None,
        hold_redemptions_on_break: bool | None = None,
    ) -> pb.UpdateFundReply:
        """Only the arguments given change (``fee_waiver=FeeWaiver(until="")`` removes the waiver)."""
        request = pb.UpdateFundRequest(fund_id=fund_id, assets=[a.message() for a in assets])
        for field, value in (("name", name), ("max_price_age_seconds", max_price_age_seconds),
                             ("creation_fee", creation_fee), ("redemption_fee", redemption_fee),
                             ("min_liquid_units", min_liquid_units), ("creation_custodian_id", creation_custodian_id),
                             ("seed_cash_per_unit", seed_cash_per_unit), ("calendar_id", calendar_id),
                             ("dealing_cutoff", dealing_cutoff), ("create_settlement_days", create_settlement_days),
                             ("redeem_settlement_days", redeem_settlement_days),
                             ("require_delivery", require_delivery), ("management_fee_rate", management_fee_rate),
                             ("fee_asset", fee_asset), ("fee_custodian_id", fee_custodian_id),
                             ("hold_redemptions_on_break", hold_redemptions_on_break)):
            if value is not None:
                setattr(request, field, value)
        if dealing_status is not None:
            request.dealing_status = pb.DealingStatus.Value.Value(dealing_status)
        if pricing is not None:
            request.pricing = pb.Pricing.Value.Value(pricing)
        if fee_day_count is not None:
            request.fee_day_count = pb.FeeDayCount.Value.Value(fee_day_count)
        if fee_payment is not None:
            request.fee_payment = pb.FeePayment.Value.Value(fee_payment)
        if fee_waiver is not None:
            request.fee_waiver.CopyFrom(fee_waiver.message())
        if custodian_priority is not None:
            request.custodian_priority.SetInParent()  # present even when empty: clears the priority
            request.custodian_priority.custodian_ids.extend(custodian_priority)
        return self._call(self._admin.UpdateFund, request)

    def adjust_holding(self, fund_id: str, custodian_id: str, asset: str, delta: str,
                       reason: str = "", *, break_id: str = "") -> pb.AdjustHoldingReply:
        """``break_id``: once the fund reconciles with its custodians' statements (SPEC §19), the OPEN break
        of this holding the adjustment is for."""
        return self._call(self._admin.AdjustHolding, pb.AdjustHoldingRequest(
            fund_id=fund_id, custodian_id=custodian_id, asset=asset, delta=delta, reason=reason, break_id=break_id))

    def adjust_cash(self, fund_id: str, delta: str, reason: str = "") -> pb.AdjustCashReply:
        return self._call(self._admin.AdjustCash, pb.AdjustCashRequest(fund_id=fund_id, delta=delta, reason=reason))

    def stake(self, fund_id: str, custodian_id: str, asset: str, quantity: str) -> pb.StakeReply:
        return self._call(self._admin.Stake, pb.StakeRequest(
            fund_id=fund_id, custodian_id=custodian_id, asset=asset, quantity=quantity))

    def unstake(self, fund_id: str, custodian_id: str, asset: str, quantity: str) -> pb.UnstakeReply:
        return self._call(self._admin.Unstake, pb.UnstakeRequest(
            fund_id=fund_id, custodian_id=custodian_id, asset=asset, quantity=quantity))

    def record_staking_reward(self, fund_id: str, custodian_id: str, asset: str,
                              quantity: str) -> pb.RecordStakingRewardReply:
        return self._call(self._admin.RecordStakingReward, pb.RecordStakingRewardRequest(
            fund_id=fund_id, custodian_id=custodian_id, asset=asset, quantity=quantity))

    def record_slashing(self, fund_id: str, custodian_id: str, asset: str,
                        quantity: str) -> pb.RecordSlashingReply:
        return self._call(self._admin.RecordSlashing, pb.RecordSlashingRequest(
            fund_id=fund_id, custodian_id=custodian_id, asset=asset, quantity=quantity))

    def publish_prices(self, ticks: Sequence[Tick]) -> pb.PublishPricesReply:
        return self._call(self._admin.PublishPrices, pb.PublishPricesRequest(ticks=[t.message() for t in ticks]))

    def settle_order(self, order_id: str) -> pb.Order:
        return self._acted("SettleOrder", self._call(self._admin.SettleOrder,
                                                     pb.SettleOrderRequest(order_id=order_id))).order

    def get_holdings(self, fund_id: str, as_of: int = 0) -> pb.Holdings:
        """``as_of``: unix ms, the holdings as they were then (SPEC §21); 0: now."""
        return self._call(self._admin.GetHoldings, pb.GetHoldingsRequest(fund_id=fund_id, as_of=as_of))

    def register_calendar(self, calendar_id: str, time_zone: str, holidays: Sequence[str] = (),
                          weekend_days: Sequence[int] | None = None) -> pb.RegisterCalendarReply:
        """``weekend_days`` None: Saturday and Sunday; an empty sequence: no weekend."""
        request = pb.RegisterCalendarRequest(calendar_id=calendar_id, time_zone=time_zone, holidays=list(holidays))
        if weekend_days is not None:
            request.weekend_days.SetInParent()
            request.weekend_days.days.extend(weekend_days)
        return self._call(self._admin.RegisterCalendar, request)

    def set_holidays(self, calendar_id: str, holidays: Sequence[str]) -> pb.SetHolidaysReply:
        return self._call(self._admin.SetHolidays, pb.SetHolidaysRequest(calendar_id=calendar_id,
                                                                         holidays=list(holidays)))

    def close_dealing_day(self, calendar_id: str, date: str, reason: str = "") -> pb.CloseDealingDayReply:
        return self._call(self._admin.CloseDealingDay, pb.CloseDealingDayRequest(calendar_id=calendar_id, date=date,
                                                                                 reason=reason))

    def get_calendar(self, calendar_id: str) -> pb.Calendar:
        return self._call(self._admin.GetCalendar, pb.GetCalendarRequest(calendar_id=calendar_id))

    def strike_nav(self, fund_id: str, dealing_date: str, ticks: Sequence[Tick]) -> pb.StrikeNavReply:
        return self._call(self._admin.StrikeNav, pb.StrikeNavRequest(
            fund_id=fund_id, dealing_date=dealing_date, ticks=[t.message() for t in ticks]))

    # ------------------------------------------------------------------ Dealing
    def _retrying(self, method: grpc.UnaryUnaryMultiCallable, request: object) -> Any:
        """Retry transient failures with the same request: the client_order_ids make a repeat return
        the order already recorded instead of recording a second one."""
        delay = 0.1
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._call(method, request)
            except grpc.RpcError as e:
                if e.code() not in RETRIED or attempt == self.max_attempts:  # type: ignore[attr-defined]
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def submit_order(self, fund_id: str, side: str, units: int, client_order_id: str | None = None, *,
                     payout_wallet_ids: Sequence[str] = ()) -> pb.Order:
        """Submit one order; without a client_order_id a fresh one is made (and kept across retries)."""
        request = pb.SubmitOrderRequest(fund_id=fund_id, side=side_value(side), units=units,
                                        client_order_id=client_order_id or new_client_order_id(),
                                        payout_wallet_ids=list(payout_wallet_ids))
        return self._retrying(self._dealing.SubmitOrder, request).order

    def submit_orders(self, items: Sequence[OrderItem]) -> list[pb.Order]:
        request = pb.SubmitOrdersRequest(requests=[
            pb.OrderRequest(fund_id=i.fund_id, side=side_value(i.side), units=i.units,
                            client_order_id=i.client_order_id, payout_wallet_ids=list(i.payout_wallet_ids))
            for i in items])
        return list(self._retrying(self._dealing.SubmitOrders, request).orders)

    def check_order(self, fund_id: str, side: str, units: int, client_order_id: str | None = None, *,
                    payout_wallet_ids: Sequence[str] = ()) -> pb.Order:
        return self._call(self._dealing.CheckOrder, pb.CheckOrderRequest(
            fund_id=fund_id, side=side_value(side), units=units,
            client_order_id=client_order_id or new_client_order_id(),
            payout_wallet_ids=list(payout_wallet_ids))).order

    def get_capacity(self, fund_id: str) -> pb.Capacity:
        return self._call(self._dealing.GetCapacity, pb.GetCapacityRequest(fund_id=fund_id))

    def get_order(self, order_id: str) -> pb.Order:
        return self._call(self._dealing.GetOrder, pb.GetOrderRequest(order_id=order_id)).order

    def list_orders(self, fund_id: str = "", status: str = "", page_size: int = 0) -> list[pb.Order]:
        """Every matching order, fetching page after page."""
        status_value = pb.OrderStatus.Value.Value(status) if status else 0
        orders: list[pb.Order] = []
        token = ""
        while True:
            reply = self._call(self._dealing.ListOrders, pb.ListOrdersRequest(
                fund_id=fund_id, status=status_value, page_size=page_size, page_token=token))
            orders.extend(reply.orders)
            token = reply.next_page_token
            if not token:
                return orders

    def cancel_order(self, order_id: str, reason: str = "") -> pb.Order:
        return self._call(self._dealing.CancelOrder, pb.CancelOrderRequest(order_id=order_id, reason=reason)).order

    # ------------------------------------------------------------------ wallets and deliveries (Admin)
    def register_wallet(self, participant_id: str, asset: str, address: str, label: str = "") -> pb.Wallet:
        return self._acted("RegisterWallet", self._call(self._admin.RegisterWallet, pb.RegisterWalletRequest(
            participant_id=participant_id, asset=asset, address=address, label=label))).wallet

    def approve_wallet(self, wallet_id: str) -> pb.Wallet:
        """By an issuer principal other than the one who registered it (four eyes)."""
        return self._acted("ApproveWallet", self._call(self._admin.ApproveWallet,
                                                       pb.ApproveWalletRequest(wallet_id=wallet_id))).wallet

    def revoke_wallet(self, wallet_id: str, reason: str = "") -> pb.Wallet:
        request = pb.RevokeWalletRequest(wallet_id=wallet_id, reason=reason)
        return self._acted("RevokeWallet", self._call(self._admin.RevokeWallet, request)).wallet

    def list_participants(self) -> list[pb.Participant]:
        return list(self._call(self._admin.ListParticipants, pb.ListParticipantsRequest()).participants)

    def list_wallets(self, participant_id: str = "") -> list[pb.Wallet]:
        return list(self._call(self._admin.ListWallets, pb.ListWalletsRequest(participant_id=participant_id)).wallets)

    def record_delivery(self, order_id: str, asset: str, quantity: str, tx_hash: str, from_address: str,
                        confirmations: int) -> pb.Order:
        return self._acted("RecordDelivery", self._call(self._admin.RecordDelivery, pb.RecordDeliveryRequest(
            order_id=order_id, asset=asset, quantity=quantity, tx_hash=tx_hash, from_address=from_address,
            confirmations=confirmations))).order

    def record_payout(self, order_id: str, custodian_id: str, asset: str, quantity: str, tx_hash: str) -> pb.Order:
        return self._acted("RecordPayout", self._call(self._admin.RecordPayout, pb.RecordPayoutRequest(
            order_id=order_id, custodian_id=custodian_id, asset=asset, quantity=quantity, tx_hash=tx_hash))).order

    # ------------------------------------------------------------------ the fund's books (Admin, SPEC §17, §20)
    def pay_fee(self, fund_id: str, amount: str = "", *, asset: str = "", quantity: str = "", tx_hash: str = "",
                to_address: str = "") -> pb.PayFeeReply:
        """Pay the accrued management fee: ``amount`` in cash, or ``asset``/``quantity``/``tx_hash``/
        ``to_address`` in kind out of fee_payable. Under four eyes (the default) the reply is pending, with
        the instruction_id another issuer principal approves."""
        return self._call(self._admin.PayFee, pb.PayFeeRequest(fund_id=fund_id, amount=amount, asset=asset,
                                                               quantity=quantity, tx_hash=tx_hash,
                                                               to_address=to_address))

    def approve_instruction(self, instruction_id: str) -> pb.Instruction:
        """By an issuer principal other than the proposer: executes the call now (EXECUTED, or FAILED with
        ``error`` when the call is refused now)."""
        return self._call(self._admin.ApproveInstruction,
                          pb.ApproveInstructionRequest(instruction_id=instruction_id)).instruction

    def reject_instruction(self, instruction_id: str, reason: str = "") -> pb.Instruction:
        """By any issuer principal, the proposer included (a withdrawal)."""
        return self._call(self._admin.RejectInstruction,
                          pb.RejectInstructionRequest(instruction_id=instruction_id, reason=reason)).instruction

    def list_instructions(self, status: str = "") -> list[pb.Instruction]:
        """Every instruction, or those of one status (PENDING, EXECUTED, FAILED, REJECTED), by id."""
        status_value = pb.InstructionStatus.Value.Value(status) if status else 0
        return list(self._call(self._admin.ListInstructions,
                               pb.ListInstructionsRequest(status=status_value)).instructions)

    # ------------------------------------------------------------------ storage tiers (Admin, SPEC §18)
    def sweep(self, fund_id: str, custodian_id: str, asset: str, quantity: str, from_tier: str,
              to_tier: str) -> pb.SweepReply:
        """Record a move the custodian made of ``quantity`` of ``asset`` between storage tiers (``COLD``,
        ``WARM``, ``HOT``). The reply is pending when the server's four_eyes lists Sweep."""
        return self._call(self._admin.Sweep, pb.SweepRequest(
            fund_id=fund_id, custodian_id=custodian_id, asset=asset, quantity=quantity,
            from_tier=tier_value(from_tier), to_tier=tier_value(to_tier)))

    def set_storage_policy(self, custodian_id: str, min_cold_ratio: str,
                           max_hot_seconds: int = 86_400) -> pb.SetStoragePolicyReply:
        """A custodian's storage policy: the share of held coins to keep cold (a fraction in [0, 1]) and how
        long hot may stay above its allowance before it is idle. Fund assets with a min_cold_ratio of their
        own keep it. The reply is pending when the server's four_eyes lists SetStoragePolicy."""
        return self._call(self._admin.SetStoragePolicy, pb.SetStoragePolicyRequest(
            custodian_id=custodian_id, min_cold_ratio=min_cold_ratio, max_hot_seconds=max_hot_seconds))

    # ------------------------------------------------------------------ reconciliation (Admin, SPEC §19)
    def record_statement(self, fund_id: str, custodian_id: str, as_of: int, reference: str,
                         lines: Sequence[StatementLine], source: str = "CUSTODIAN") -> pb.RecordStatementReply:
        """What ``custodian_id`` (source CUSTODIAN) or a read of the chain (CHAIN) says it holds for the fund at
        ``as_of`` (unix ms), compared with the book then: the breaks it opened and the TIMING ones it resolved
        (``ignored``: the same reference was recorded with the same content before)."""
        return self._call(self._admin.RecordStatement, pb.RecordStatementRequest(
            fund_id=fund_id, custodian_id=custodian_id, as_of=as_of, source=pb.StatementSource.Value.Value(source),
            reference=reference, lines=[line.message() for line in lines]))

    def resolve_break(self, break_id: str, adjustment: str = "0", comment: str = "") -> pb.ResolveBreakReply:
        """Resolve a break with a signed ``adjustment`` of its bucket ("0": the book was right). Under four eyes
        (the default) the reply is pending, with the instruction_id another issuer principal approves; else
        its ``break_record`` is the break, RESOLVED."""
        return self._call(self._admin.ResolveBreak, pb.ResolveBreakRequest(break_id=break_id, adjustment=adjustment,
                                                                           comment=comment))

    def list_breaks(self, fund_id: str = "", status: str = "") -> list[pb.Break]:
        """Every break (of one fund; of one status, OPEN or RESOLVED), by break_id."""
        status_value = pb.BreakStatus.Value.Value(status) if status else 0
        return list(self._call(self._admin.ListBreaks, pb.ListBreaksRequest(fund_id=fund_id,
                                                                            status=status_value)).breaks)

    def get_break(self, break_id: str) -> pb.Break:
        return self._call(self._admin.GetBreak, pb.GetBreakRequest(break_id=break_id))

    # ------------------------------------------------------------------ Valuation
    def get_nav(self, fund_id: str, as_of: int = 0) -> pb.Nav:
        """``as_of``: unix ms, the NAV as it was then (SPEC §21); 0: now."""
        return self._call(self._valuation.GetNav, pb.GetNavRequest(fund_id=fund_id, as_of=as_of))

    def get_basket(self, fund_id: str) -> pb.Basket:
        return self._call(self._valuation.GetBasket, pb.GetBasketRequest(fund_id=fund_id))

    def stream_nav(self, fund_id: str, min_interval_ms: int = 0, timeout: float | None = None) -> NavStream:
        """Updates until cancelled (``cancel()``), the server stops or ``timeout`` passes."""
        return self._valuation.StreamNav(pb.StreamNavRequest(fund_id=fund_id, min_interval_ms=min_interval_ms),
                                         metadata=self._metadata, timeout=timeout)

    def get_official_nav(self, fund_id: str, dealing_date: str) -> pb.OfficialNav:
        return self._call(self._valuation.GetOfficialNav,
                          pb.GetOfficialNavRequest(fund_id=fund_id, dealing_date=dealing_date))

    def list_official_navs(self, fund_id: str, from_date: str = "", to_date: str = "") -> list[pb.OfficialNav]:
        return list(self._call(self._valuation.ListOfficialNavs, pb.ListOfficialNavsRequest(
            fund_id=fund_id, from_date=from_date, to_date=to_date)).navs)

    def get_pcf(self, fund_id: str, dealing_date: str) -> pb.Pcf:
        return self._call(self._valuation.GetPcf, pb.GetPcfRequest(fund_id=fund_id, dealing_date=dealing_date))

    def list_funds(self) -> list[pb.FundSummary]:
        """The funds this principal may read."""
        return list(self._call(self._valuation.ListFunds, pb.ListFundsRequest()).funds)

    # the audit trail (SPEC §21): tree sizes 0 mean the latest checkpoint's
    def checkpoint(self) -> pb.Checkpoint:
        """Journal a checkpoint now (issuer); the latest checkpoint once it is durable."""
        return self._call(self._admin.Checkpoint, pb.CheckpointRequest()).checkpoint

    def get_checkpoint(self, tree_size: int = 0) -> pb.Checkpoint:
        return self._call(self._valuation.GetCheckpoint, pb.GetCheckpointRequest(tree_size=tree_size))

    def get_inclusion_proof(self, seq: int, tree_size: int = 0) -> pb.InclusionProof:
        return self._call(self._valuation.GetInclusionProof, pb.GetInclusionProofRequest(seq=seq, tree_size=tree_size))

    def get_consistency_proof(self, from_size: int, to_size: int = 0) -> pb.ConsistencyProof:
        return self._call(self._valuation.GetConsistencyProof,
                          pb.GetConsistencyProofRequest(from_size=from_size, to_size=to_size))

    def stream_events(self, after_seq: int = 0, timeout: float | None = None) -> Iterator[pb.JournalRecord]:
        """Every journaled record after ``after_seq``, then new ones as they commit, until cancelled
        (``cancel()``), the server stops or ``timeout`` passes. Resume with the last seq seen."""
        return self._valuation.StreamEvents(pb.StreamEventsRequest(after_seq=after_seq), metadata=self._metadata,
                                            timeout=timeout)

    # ------------------------------------------------------------------ Reports (SPEC §21)
    def report(self, rpc_name: str, request: Any) -> Any:
        """A report by its RPC's name (``DailyReport``, ...) and its request message: the reply message."""
        return self._call(getattr(self._reports, rpc_name), request)

    def daily_report(self, fund_id: str, dealing_date: str, closing_price: str = "") -> pb.DailyReportReply:
        return self.report("DailyReport", pb.DailyReportRequest(fund_id=fund_id, dealing_date=dealing_date,
                                                                 closing_price=closing_price))

    def holdings_report(self, fund_id: str, as_of: int = 0) -> pb.HoldingsReportReply:
        return self.report("HoldingsReport", pb.HoldingsReportRequest(fund_id=fund_id, as_of=as_of))

    def roll_forward(self, fund_id: str, from_date: str, to_date: str) -> pb.RollForwardReply:
        return self.report("RollForward", pb.RollForwardRequest(fund_id=fund_id, **{"from": from_date, "to": to_date}))

    def staking_report(self, fund_id: str, from_date: str, to_date: str, as_of: int = 0) -> pb.StakingReportReply:
        return self.report("StakingReport", pb.StakingReportRequest(fund_id=fund_id, as_of=as_of,
                                                                     **{"from": from_date, "to": to_date}))

    def break_report(self, fund_id: str, from_date: str, to_date: str) -> pb.BreakReportReply:
        return self.report("BreakReport", pb.BreakReportRequest(fund_id=fund_id, **{"from": from_date, "to": to_date}))

    def participant_activity(self, fund_id: str, from_date: str, to_date: str,
                             participant_id: str = "") -> pb.ParticipantActivityReply:
        return self.report("ParticipantActivity", pb.ParticipantActivityRequest(
            fund_id=fund_id, participant_id=participant_id, **{"from": from_date, "to": to_date}))

    # ------------------------------------------------------------------ Diagnostics
    def ping(self) -> pb.PingReply:
        return self._call(self._diagnostics.Ping, pb.PingRequest())

    def get_leader(self) -> pb.LeaderInfo:
        return self._call(self._diagnostics.GetLeader, pb.GetLeaderRequest())

    def who_am_i(self) -> pb.WhoAmIReply:
        return self._call(self._diagnostics.WhoAmI, pb.WhoAmIRequest())

    def advance_clock(self, to_unix_ms: int) -> int:
        """The test clock (server config ``test_clock = true``): the engine's time after the advance."""
        return self._call(self._diagnostics.AdvanceClock, pb.AdvanceClockRequest(to_unix_ms=to_unix_ms)).now_unix_ms
