"""The CSV of a report reply (SPEC §21, etf_engine/report_csv.py), from hand-built reply messages: the
header of each shape, every field of every reply in its place, RFC 4180 quoting of commas, quotes and
line breaks in comments and reasons, enums by name, a would-be formula neutralised, the file's name."""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from etf_engine.report_csv import REPORTS, REPORTS_SERVICE, file_name, method, report_csv
from etf_engine.v1 import engine_pb2 as pb

pytestmark = pytest.mark.unit

REPLIES = [pb.DailyReportReply, pb.HoldingsReportReply, pb.RollForwardReply, pb.StakingReportReply,
           pb.BreakReportReply, pb.ParticipantActivityReply]
AWKWARD = 'held back, "per" the custodian\nletter 7, line 2'


def rows(text: str) -> list[list[str]]:
    """The CSV read back (``csv`` is the spreadsheet here), after checking RFC 4180's line ends."""
    assert text.endswith("\r\n")
    table = list(csv.reader(io.StringIO(text, newline="")))
    assert all(len(r) == len(table[0]) for r in table), "every row as wide as the header"
    return table


def records(text: str) -> list[dict[str, str]]:
    header, *body = rows(text)
    return [dict(zip(header, r, strict=True)) for r in body]


# == a reply with every field set, each to a value of its own ======================================
class Filler:
    """Sets every field of a message, recursively, two elements in each list: a string field to
    ``s<n>``, an integer to 1000 + n, a bool to true, an enum to its last value; ``leaves`` keeps every
    (path, text as the CSV must show it)."""

    def __init__(self) -> None:
        self.count = itertools.count(1)
        self.leaves: list[tuple[str, str]] = []

    def fill(self, message: Message, prefix: str = "") -> Message:
        for field in message.DESCRIPTOR.fields:
            name = prefix + field.name
            if field.message_type is not None:
                if field.is_repeated:
                    for i in (1, 2):
                        self.fill(getattr(message, field.name).add(), f"{name}[{i}].")
                else:
                    self.fill(getattr(message, field.name), f"{name}.")
            elif field.is_repeated:
                values = [self.value(field) for _ in (1, 2)]
                getattr(message, field.name).extend(v for v, _text in values)
                self.leaves.append((name, " ".join(text for _v, text in values)))
            else:
                value, text = self.value(field)
                setattr(message, field.name, value)
                self.leaves.append((name, text))
        return message

    def value(self, field: FieldDescriptor) -> tuple[Any, str]:
        n = next(self.count)
        if field.type == FieldDescriptor.TYPE_STRING:
            return f"s{n}", f"s{n}"
        if field.type == FieldDescriptor.TYPE_BOOL:
            return True, "true"
        if field.type == FieldDescriptor.TYPE_ENUM:
            last = field.enum_type.values[-1]
            return last.number, last.name
        return 1000 + n, str(1000 + n)


def filled(reply_type: type[Message]) -> tuple[Message, list[tuple[str, str]]]:
    filler = Filler()
    return filler.fill(reply_type()), filler.leaves


def test_the_reports_are_the_services_rpcs() -> None:
    assert list(REPORTS) == ["daily", "holdings", "roll-forward", "staking", "breaks", "participant-activity"]
    assert sorted(REPORTS.values()) == sorted(m.name for m in REPORTS_SERVICE.methods)
    assert [method(name).output_type.name for name in REPORTS] == [r.DESCRIPTOR.name for r in REPLIES]


@pytest.mark.parametrize("reply_type", REPLIES, ids=lambda r: r.DESCRIPTOR.name)
def test_every_field_of_every_reply_is_in_the_csv(reply_type: type[Message]) -> None:
    reply, leaves = filled(reply_type)
    text = report_csv(reply)
    cells = [cell for row in rows(text)[1:] for cell in row]
    for path, shown in leaves:
        assert shown in cells, (path, shown)
    if reply_type is pb.DailyReportReply:  # one figure a row: each leaf's path and value, once
        figures = [(r["section"], r["item"], r["field"], r["value"]) for r in records(text)]
        assert len(figures) == len(leaves)


def test_an_empty_reply_is_its_header() -> None:
    assert report_csv(pb.ParticipantActivityReply(fund_id="F1")) == \
        "section,fund_id,participant_id,side,status,count,units,reason\r\n"
    assert report_csv(pb.RollForwardReply()) == "fund_id,from,to,item,kind,amount,reason,break_id,at\r\n"
    assert report_csv(pb.DailyReportReply()).startswith(
        "section,item,field,value\r\nsummary,,official_nav.fund_id,\r\n")


# == the shapes ===================================================================================
def test_holdings_lines_then_receivable_payable_and_fee_payable() -> None:
    reply = pb.HoldingsReportReply(
        fund_id="F1", as_of=1_750_000_000_000, nav="27263637.50",
        lines=[pb.HoldingsReportLine(custodian_id="C1", asset="BTC", bucket="AVAILABLE", tier=pb.Tier.COLD,
                                     quantity="150", price="97250", value="14587500.00", percent_of_nav="53.5048"),
               pb.HoldingsReportLine(custodian_id="C1", asset="ETH", bucket="STAKED", quantity="895",
                                     price="3412.55", value="3054232.25", percent_of_nav="11.2026")],
        receivable=[pb.OrderLeg(order_id="ORD-00000001", participant_id="AP-1", asset="BTC", quantity="5",
                                settlement_date_ms=1_750_100_000_000)],
        payable=[pb.OrderLeg(order_id="ORD-00000002", participant_id="AP-2", custodian_id="C2", asset="ETH",
                             quantity="75", settlement_date_ms=1_750_200_000_000)],
        fee_payable=[pb.Line(asset="ETH", quantity="0.125")])
    text = report_csv(reply)
    assert rows(text)[0] == ["section", "fund_id", "as_of", "nav", "custodian_id", "asset", "bucket", "tier",
                             "quantity", "price", "value", "percent_of_nav", "order_id", "participant_id",
                             "settlement_date_ms"]
    assert text.splitlines()[1:] == [
        "lines,F1,1750000000000,27263637.50,C1,BTC,AVAILABLE,COLD,150,97250,14587500.00,53.5048,,,",
        "lines,F1,1750000000000,27263637.50,C1,ETH,STAKED,,895,3412.55,3054232.25,11.2026,,,",  # no tier: empty
        "receivable,F1,1750000000000,27263637.50,,BTC,,,5,,,,ORD-00000001,AP-1,1750100000000",
        "payable,F1,1750000000000,27263637.50,C2,ETH,,,75,,,,ORD-00000002,AP-2,1750200000000",
        "fee_payable,F1,1750000000000,27263637.50,,ETH,,,0.125,,,,,,",
    ]


def test_roll_forward_opening_movements_closing_and_check_per_item() -> None:
    reply = pb.RollForwardReply(fund_id="F1", **{"from": "2025-06-16", "to": "2025-06-17"}, balances=[
        pb.RollForwardBalance(item="BTC", opening="200", closing="205", check="0", movements=[
            pb.RollForwardMovement(kind="contributed", amount="5"),
            pb.RollForwardMovement(kind="redeemed", amount="0")]),
        pb.RollForwardBalance(item="CASH", opening="125000.00", closing="125010.00", check="0", movements=[
            pb.RollForwardMovement(kind="adjustment", amount="10.00", reason=AWKWARD, at=1_750_000_001_000),
            pb.RollForwardMovement(kind="adjustment", amount="-0.00", reason="=1+2", break_id="BRK-00000001")]),
    ])
    table = rows(report_csv(reply))
    assert table[0] == ["fund_id", "from", "to", "item", "kind", "amount", "reason", "break_id", "at"]
    period = ["F1", "2025-06-16", "2025-06-17"]
    assert table[1:] == [
        [*period, "BTC", "opening", "200", "", "", ""],
        [*period, "BTC", "contributed", "5", "", "", "0"],
        [*period, "BTC", "redeemed", "0", "", "", "0"],
        [*period, "BTC", "closing", "205", "", "", ""],
        [*period, "BTC", "check", "0", "", "", ""],
        [*period, "CASH", "opening", "125000.00", "", "", ""],
        [*period, "CASH", "adjustment", "10.00", AWKWARD, "", "1750000001000"],
        [*period, "CASH", "adjustment", "-0.00", "'=1+2", "BRK-00000001", "0"],
        [*period, "CASH", "closing", "125010.00", "", "", ""],
        [*period, "CASH", "check", "0", "", "", ""],
    ]


def test_staking_lines_each_followed_by_its_lots() -> None:
    reply = pb.StakingReportReply(fund_id="F1", as_of=5, lines=[
        pb.StakingReportLine(asset="ETH", staked="895", unbonding="10", staked_ratio="0.2983", staking_cap="0.30",
                             rewards_gross="1.5", staking_fees="0.15", rewards_net="1.35", slashed="0",
                             unbonding_lots=[pb.StakingLot(custodian_id="C1", quantity="4", release_at=7),
                                             pb.StakingLot(custodian_id="C2", quantity="6", release_at=9)]),
        pb.StakingReportLine(asset="SOL", staked="1")])
    got = records(report_csv(reply))
    columns = ("section", "asset", "staked", "custodian_id", "quantity", "release_at")
    assert [tuple(r[c] for c in columns) for r in got] == [
        ("lines", "ETH", "895", "", "", ""), ("lines.unbonding_lots", "ETH", "", "C1", "4", "7"),
        ("lines.unbonding_lots", "ETH", "", "C2", "6", "9"), ("lines", "SOL", "1", "", "", "")]
    assert got[0]["rewards_net"] == "1.35" and got[0]["staked_ratio"] == "0.2983"


def test_breaks_with_their_comments_quoted() -> None:
    reply = pb.BreakReportReply(fund_id="F1", breaks=[pb.BreakReportLine(age_dealing_days=3, break_record=pb.Break(
        break_id="BRK-00000002", fund_id="F1", custodian_id="C1", asset="ETH", bucket=pb.Bucket.STAKED,
        classification=pb.BreakClassification.UNEXPLAINED, status=pb.BreakStatus.RESOLVED, difference="1",
        order_ids=["ORD-00000001", "ORD-00000003"], comment=AWKWARD, adjustment="-1"))])
    text = report_csv(reply)
    assert '"held back, ""per"" the custodian\nletter 7, line 2"' in text  # RFC 4180: quoted, quotes doubled
    [got] = records(text)
    assert got["section"] == "breaks" and got["break_record.comment"] == AWKWARD
    assert (got["break_record.bucket"], got["break_record.tier"], got["break_record.classification"],
            got["break_record.status"]) == ("STAKED", "", "UNEXPLAINED", "RESOLVED")
    assert got["break_record.order_ids"] == "ORD-00000001 ORD-00000003" and got["age_dealing_days"] == "3"
    assert got["break_record.adjustment"] == "-1"  # a number is never neutralised


def test_participant_activity_orders_then_rejects() -> None:
    reply = pb.ParticipantActivityReply(fund_id="F1", orders=[
        pb.OrderTally(participant_id="AP-1", side=pb.Side.CREATE, status=pb.OrderStatus.SETTLED, count=2, units=3),
        pb.OrderTally(participant_id="AP-1", side=pb.Side.REDEEM, status=pb.OrderStatus.REJECTED, count=1, units=40)],
        rejects=[pb.RejectTally(participant_id="AP-1", reason="STAKING_CAP", count=1)])
    assert report_csv(reply).splitlines() == [
        "section,fund_id,participant_id,side,status,count,units,reason",
        "orders,F1,AP-1,CREATE,SETTLED,2,3,", "orders,F1,AP-1,REDEEM,REJECTED,1,40,",
        "rejects,F1,AP-1,,,1,,STAKING_CAP"]


def test_daily_one_figure_a_row_its_lists_as_sections() -> None:
    reply = pb.DailyReportReply(
        official_nav=pb.OfficialNav(fund_id="F1", dealing_date="2025-06-16", nav="27263637.50",
                                    nav_per_share="13.6318", lines=[pb.OfficialNavLine(asset="BTC", quantity="200")]),
        cash_component="-1234.56", shares_created=50_000, closing_price="13.70", premium_discount="0.0050",
        orders=[pb.OrderTally(side=pb.Side.CREATE, status=pb.OrderStatus.ACCEPTED, count=1, units=1)],
        overdue_orders=[pb.Order(order_id="ORD-00000009", client_order_id="+cmd|' /C calc'!A0",
                                 legs=[pb.Leg(custodian_id="C1", asset="BTC", quantity="5")], priced=True)])
    got = {(r["section"], r["item"], r["field"]): r["value"] for r in records(report_csv(reply))}
    assert got[("summary", "", "official_nav.nav_per_share")] == "13.6318"
    assert got[("summary", "", "cash_component")] == "-1234.56"
    assert got[("summary", "", "shares_created")] == "50000"
    assert got[("summary", "", "premium_discount")] == "0.0050"
    assert got[("official_nav.lines", "1", "quantity")] == "200"
    assert (got[("orders", "1", "side")], got[("orders", "1", "status")]) == ("CREATE", "ACCEPTED")
    assert got[("overdue_orders", "1", "legs[1].quantity")] == "5"
    assert got[("overdue_orders", "1", "priced")] == "true" and got[("overdue_orders", "1", "overdue")] == "false"
    assert got[("overdue_orders", "1", "client_order_id")] == "'+cmd|' /C calc'!A0"  # a participant's text


# == cells ========================================================================================
@pytest.mark.parametrize(("text", "shown"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1+1", "'+1+1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("-1+1", "'-1+1"), ("\tx", "'\tx"), ("-12.5", "-12.5"), ("-0.00", "-0.00"), ("12", "12"), ("a=b", "a=b"), ("", ""),
])
def test_a_would_be_formula_is_shown_as_text(text: str, shown: str) -> None:
    [got] = records(report_csv(pb.ParticipantActivityReply(rejects=[pb.RejectTally(reason=text)])))
    assert got["reason"] == shown


def test_line_ends_numbers_and_text() -> None:
    reply = pb.HoldingsReportReply(fund_id="F1", as_of=2**62, nav="0.00",
                                   fee_payable=[pb.Line(asset="ETH", quantity="0.000000000000000001")])
    text = report_csv(reply)
    assert text.count("\r\n") == 2 and "\n" not in text.replace("\r\n", "")
    [got] = records(text)
    assert got["as_of"] == str(2**62) and got["quantity"] == "0.000000000000000001"
    assert report_csv(pb.BreakReportReply(breaks=[pb.BreakReportLine(break_record=pb.Break(comment="日本, ok"))])) \
        .endswith(',"日本, ok",,,0\r\n')


def test_an_enum_value_the_proto_does_not_name_is_its_number() -> None:
    tally = pb.OrderTally()
    tally.ParseFromString(pb.OrderTally(count=1).SerializeToString() + b"\x10\x09")  # side = 9: unknown
    [got] = records(report_csv(pb.ParticipantActivityReply(orders=[tally])))
    assert got["side"] == "9"


# == the file's name ==============================================================================
def test_file_names() -> None:
    assert file_name("daily", pb.DailyReportRequest(fund_id="F1", dealing_date="2025-06-16"),
                     pb.DailyReportReply()) == "daily-F1-2025-06-16.csv"
    period = pb.RollForwardRequest(fund_id="F1", **{"from": "2025-06-16", "to": "2025-06-17"})
    assert file_name("roll-forward", period, pb.RollForwardReply()) == "roll-forward-F1-2025-06-16_2025-06-17.csv"
    assert file_name("holdings", pb.HoldingsReportRequest(fund_id="F1"),
                     pb.HoldingsReportReply(as_of=1_750_000_000_000)) == "holdings-F1-2025-06-15T150640Z.csv"
    assert file_name("holdings", pb.HoldingsReportRequest(fund_id="F1", as_of=1_750_000_000_007),
                     pb.HoldingsReportReply()) == "holdings-F1-2025-06-15T150640.007Z.csv"
    assert file_name("staking", pb.StakingReportRequest(fund_id="F1", as_of=1_750_000_000_000),
                     pb.StakingReportReply(as_of=1_750_000_000_000)) == "staking-F1-2025-06-15T150640Z.csv"
    odd = pb.BreakReportRequest(fund_id='../"F 1"\r\n', **{"from": "2025-06-16", "to": "2025-06-17"})
    assert file_name("breaks", odd, pb.BreakReportReply()) == "breaks-..__F_1___-2025-06-16_2025-06-17.csv"


def test_a_message_without_lists_is_one_row() -> None:
    assert report_csv(pb.Line(asset="BTC", quantity="1")) == "section,asset,quantity\r\n,BTC,1\r\n"


def leaf_paths(descriptor: Descriptor) -> int:
    return sum(leaf_paths(f.message_type) if f.message_type is not None else 1 for f in descriptor.fields)


def test_the_list_shapes_have_a_column_for_each_field() -> None:
    """The columns come from the descriptors: one per scalar field of the reply and of each list's element
    (nested messages flattened), merged by name across lists."""
    for reply_type in (pb.BreakReportReply, pb.StakingReportReply):
        header = rows(report_csv(reply_type()))[0]
        assert len(header) == 1 + leaf_paths(reply_type.DESCRIPTOR), reply_type
