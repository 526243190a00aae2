"""Funds: assets, custodians, licences, participants, CreateFund/UpdateFund, their events (SPEC §2, §6, §13)."""

from __future__ import annotations

from typing import Any

import msgspec

from etf_engine import addresses
from etf_engine import calendar as cal_
from etf_engine import model as m
from etf_engine.errors import invalid, not_found
from etf_engine.numbers import MAX_CREATION_UNIT, MAX_DECIMALS, MAX_QUANTITY, MAX_SECONDS, MAX_SHARES, parse_scaled
from etf_engine.reference.checks import _CURRENCY, _ID, _SYMBOL, _at_least, _exists, _fraction, _match, _money, _one_of
from etf_engine.reference.state import Fund


class Funds:
    """Assets, custodians, participants and funds: registration, terms, their events and reads."""

    # -- assets and custodians ---------------------------------------------------------------------
    def _register_asset(self, c: m.RegisterAsset, now: int) -> tuple[None, list[m.Event]]:
        _match(_SYMBOL, c.symbol, "symbol")
        _at_least(c.decimals, 0, "decimals", MAX_DECIMALS)
        _at_least(c.min_confirmations, 0, "min_confirmations", m.MAX_CONFIRMATIONS)
        if c.chain:
            _one_of(c.chain, addresses.CHAINS, "chain")
        if c.symbol in self.assets:
            raise _exists("asset", c.symbol)
        return None, self._commit(m.AssetRegistered(at=now, symbol=c.symbol, decimals=c.decimals,
                                                    min_confirmations=c.min_confirmations,
                                                    chain=addresses.chain_of(c.symbol, c.chain)))

    def _on_asset(self, e: m.AssetRegistered) -> None:
        self.assets[e.symbol] = e.decimals
        self.asset_rules[e.symbol] = (e.min_confirmations, addresses.chain_of(e.symbol, e.chain))  # also old records

    def _register_custodian(self, c: m.RegisterCustodian, now: int) -> tuple[None, list[m.Event]]:
        _match(_ID, c.custodian_id, "custodian_id")
        _one_of(c.licence_status, m.LICENCE_STATUSES, "licence_status")
        _at_least(c.licence_expires_at, 0, "licence_expires_at")
        if c.custodian_id in self.custodians:
            raise _exists("custodian", c.custodian_id)
        return None, self._commit(m.CustodianRegistered(at=now, **msgspec.structs.asdict(c)))

    def _on_custodian(self, e: m.CustodianRegistered) -> None:
        self.custodians[e.custodian_id] = e

    def _set_licence(self, c: m.SetCustodianLicence, now: int) -> tuple[None, list[m.Event]]:
        self._custodian(c.custodian_id)
        _one_of(c.licence_status, m.LICENCE_STATUSES, "licence_status")
        _at_least(c.licence_expires_at, 0, "licence_expires_at")
        return None, self._commit(m.LicenceSet(at=now, **msgspec.structs.asdict(c)))

    def _on_licence(self, e: m.LicenceSet) -> None:
        self.custodians[e.custodian_id] = msgspec.structs.replace(
            self.custodians[e.custodian_id], licence_status=e.licence_status,
            licence_expires_at=e.licence_expires_at)

    # -- participants ------------------------------------------------------------------------------
    def _register_participant(self, c: m.RegisterParticipant, now: int) -> tuple[None, list[m.Event]]:
        _match(_ID, c.participant_id, "participant_id")
        for i, fund_id in enumerate(c.eligible_fund_ids):
            _match(_ID, fund_id, f"eligible_fund_ids[{i}]")
        _at_least(c.max_units_per_order, 1, "max_units_per_order", MAX_SHARES)
        _at_least(c.max_units_per_day, 1, "max_units_per_day", MAX_SHARES)
        if c.participant_id in self.participants:
            raise _exists("participant", c.participant_id)
        funds = tuple(sorted(set(c.eligible_fund_ids)))  # a set: order and repeats carry no meaning
        event = m.ParticipantRegistered(
            at=now, participant_id=c.participant_id, name=c.name, eligible_fund_ids=funds,
            max_units_per_order=c.max_units_per_order, max_units_per_day=c.max_units_per_day)
        return None, self._commit(event)

    def _on_participant(self, e: m.ParticipantRegistered) -> None:
        self.participants[e.participant_id] = e

    # -- funds and their terms ---------------------------------------------------------------------
    def _create_fund(self, c: m.CreateFund, now: int) -> tuple[None, list[m.Event]]:
        _match(_ID, c.fund_id, "fund_id")
        terms = {name: self._fund_field(name, getattr(c, name), None) for name in c.__struct_fields__
                 if name not in ("fund_id", "initial_shares_outstanding", *m.DEALING_TERMS, *m.FEE_TERMS,
                                 *m.BOOK_TERMS)}
        shares = _at_least(c.initial_shares_outstanding, 0, "initial_shares_outstanding", MAX_SHARES)
        if c.fund_id in self.funds:
            raise _exists("fund", c.fund_id)
        # the terms of SPEC §13 after the Part I checks (etf_engine/ledger.py)
        terms |= {name: self._fund_field(name, getattr(c, name), None) for name in m.DEALING_TERMS}
        fund_terms = self._with_first_date(m.FundTerms(fund_id=c.fund_id, **terms), None, now)
        fees = {name: self._fee_field(name, getattr(c, name), fund_terms.assets) for name in m.FEE_TERMS}
        fees |= {name: self._fund_field(name, getattr(c, name), None) for name in m.BOOK_TERMS}
        fund_terms = msgspec.structs.replace(fund_terms, **fees)
        self._check_fee_terms(fund_terms)
        return None, self._commit(m.FundCreated(at=now, terms=fund_terms, shares_outstanding=shares,
                                                entry_tier=m.HOT))

    def _on_fund_created(self, e: m.FundCreated) -> None:
        self.funds[e.terms.fund_id] = Fund(terms=e.terms, cash=0, shares=e.shares_outstanding,
                                           initial_shares=e.shares_outstanding, entry_tier=e.entry_tier)

    def _update_fund(self, c: m.UpdateFund, now: int) -> tuple[None, list[m.Event]]:
        fund = self._fund(c.fund_id)
        given = {name: value for name in c.__struct_fields__ if name != "fund_id"
                 and (value := getattr(c, name)) is not None}
        changes = {name: self._fund_field(name, value, fund) for name, value in given.items()
                   if name not in (*m.FEE_TERMS, *m.BOOK_TERMS)}
        if "assets" in changes:
            merged = {a.asset: a for a in fund.terms.assets} | {a.asset: a for a in changes["assets"]}
            changes["assets"] = tuple(merged[a] for a in sorted(merged))
        terms = self._with_first_date(msgspec.structs.replace(fund.terms, **changes), fund.terms, now)
        fees = {name: self._fee_field(name, value, terms.assets) if name in m.FEE_TERMS
                else self._fund_field(name, value, fund)
                for name, value in given.items() if name in (*m.FEE_TERMS, *m.BOOK_TERMS)}
        terms = msgspec.structs.replace(terms, **fees)
        self._check_fee_terms(terms)
        return None, self._commit(m.FundUpdated(at=now, terms=terms))

    def _on_fund_updated(self, e: m.FundUpdated) -> None:
        self.funds[e.terms.fund_id].terms = e.terms

    def _fund_field(self, name: str, value: Any, fund: Fund | None) -> Any:
        """One validated fund field as FundTerms holds it; ``fund`` is None for CreateFund."""
        match name:
            case "base_currency":
                return _match(_CURRENCY, value, name)
            case "creation_unit":
                return _at_least(value, 1, name, MAX_CREATION_UNIT)
            case "creation_custodian_id":
                if fund is None and not value:  # required, not a custodian to look up ('' would be NOT_FOUND)
                    raise invalid(name, "is required: the custodian that receives creations")
                return self._custodian(value).custodian_id
            case "custodian_priority":
                for i, custodian_id in enumerate(value):
                    self._custodian(custodian_id)
                    if custodian_id in value[:i]:
                        raise invalid(f"{name}[{i}]", f"{custodian_id!r} is repeated")
                return tuple(value)
            case "assets":
                return self._asset_terms(value, fund)
            case "dealing_status":
                return _one_of(value, m.DEALING_STATUSES, name)
            case "max_price_age_seconds":
                return _at_least(value, 1, name, MAX_SECONDS)
            case "creation_fee" | "redemption_fee":
                return _money(value, name)
            case "min_liquid_units":
                return _at_least(value, 0, name, MAX_SHARES)
            case "seed_cash_per_unit":
                return _money(value, name, signed=True)
            case "calendar_id":
                return value and self._calendar(value).calendar_id
            case "dealing_cutoff":
                return cal_.parse_cutoff(value, name)
            case "create_settlement_days" | "redeem_settlement_days":
                if type(value) is not int or not 0 <= value <= m.MAX_SETTLEMENT_DAYS:
                    raise invalid(name, f"{value!r} is not 0-{m.MAX_SETTLEMENT_DAYS} dealing days")
                return value
            case "pricing":
                return _one_of(value, m.PRICINGS, name)
            case "require_delivery" | "hold_redemptions_on_break":
                if type(value) is not bool:
                    raise invalid(name, f"{value!r} is not true or false")
                return value
        return value  # name: free text

    def _with_first_date(self, terms: m.FundTerms, old: m.FundTerms | None, now: int) -> m.FundTerms:
        """FORWARD needs a calendar; first_dealing_date is set when the fund gets a (new) calendar."""
        if terms.pricing == m.FORWARD and not terms.calendar_id:
            raise invalid("pricing", "FORWARD pricing needs a calendar_id")
        if not terms.calendar_id:
            first = ""
        elif old is not None and old.calendar_id == terms.calendar_id:
            first = old.first_dealing_date
        else:
            first = self._dealing_date(terms, now)
        return msgspec.structs.replace(terms, first_dealing_date=first)

    def _asset_terms(self, specs: list[m.FundAssetSpec], fund: Fund | None) -> tuple[m.FundAssetTerms, ...]:
        if fund is None and not specs:
            raise invalid("assets", "a fund needs at least one asset")
        terms: dict[str, m.FundAssetTerms] = {}
        for i, spec in enumerate(specs):
            at = f"assets[{i}]"
            if fund is None and spec.asset not in self.assets:
                raise not_found(f"{at}.asset", spec.asset)
            if fund is not None and fund.asset(spec.asset) is None:
                raise invalid(f"{at}.asset", f"{spec.asset!r} is not an asset of the fund")
            if spec.asset in terms:
                raise invalid(f"{at}.asset", f"{spec.asset!r} is repeated")
            terms[spec.asset] = m.FundAssetTerms(
                asset=spec.asset,
                staking_cap=_fraction(spec.staking_cap, f"{at}.staking_cap"),
                liquidity_buffer=_fraction(spec.liquidity_buffer, f"{at}.liquidity_buffer"),
                unbonding_seconds=_at_least(spec.unbonding_seconds, 0, f"{at}.unbonding_seconds", MAX_SECONDS),
                seed_quantity_per_unit=parse_scaled(spec.seed_quantity_per_unit, f"{at}.seed_quantity_per_unit",
                                                    self.assets[spec.asset], limit=MAX_QUANTITY),
                staking_fee_rate=self._staking_fee_rate(spec.staking_fee_rate, f"{at}.staking_fee_rate"),
                min_cold_ratio=_fraction(spec.min_cold_ratio, f"{at}.min_cold_ratio") if spec.min_cold_ratio else None,
            )
        return tuple(terms[a] for a in sorted(terms))

    # -- reads -------------------------------------------------------------------------------------
    def list_funds(self) -> list[m.FundTerms]:
        return [f.terms for _, f in sorted(self.funds.items())]

    def list_participants(self) -> list[m.ParticipantRegistered]:
        return [msgspec.structs.replace(p, at=0) for _, p in sorted(self.participants.items())]  # as the core

    def participant_funds(self, participant_id: str) -> tuple[str, ...]:
        if participant_id not in self.participants:
            raise not_found("participant", participant_id)
        return self.participants[participant_id].eligible_fund_ids
