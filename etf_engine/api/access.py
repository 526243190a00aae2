"""Who may call what (SPEC §8, §10, §16), read from the proto, where each RPC declares it once.

Every method of engine.proto carries ``option (etf_engine.v1.access) = {...}`` (access.proto): the
roles it admits, what a participant reaches through it and whether it needs ``test_clock``. From the
generated descriptors come, at import, ``RULES`` ("/package.Service/Method" -> ``Rule``): the role
table of gRPC and Connect (``auth.ACCESS``), the scope the command servicers apply and README's table
of who may call what (``markdown_table``). A method without the option is left out of ``RULES``,
so that it is refused to every role: access fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.descriptor_pb2 import MethodOptions

from etf_engine.v1 import access_pb2
from etf_engine.v1 import engine_pb2 as pb

_Access = access_pb2.Access
ROLE_ORDER = ("issuer", "observer", "participant")  # as README and SPEC list them
# participant_scope values, by their names in access.proto
AS_ITSELF, OWN_ORDERS, ELIGIBLE_FUNDS, OWN_WALLETS, NO_FUND_DATA = (
    "AS_ITSELF", "OWN_ORDERS", "ELIGIBLE_FUNDS", "OWN_WALLETS", "NO_FUND_DATA")
SCOPE_TEXT = {
    AS_ITSELF: "a participant, for itself",
    OWN_ORDERS: "a participant: its own orders",
    ELIGIBLE_FUNDS: "a participant: the funds it is eligible for",
    OWN_WALLETS: "a participant: its own wallets",
    NO_FUND_DATA: "a participant",
}


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]  # "issuer", "participant", "observer"
    participant_scope: str  # "" exactly when participants are not admitted
    test_clock_only: bool = False


def rule_of(options: MethodOptions) -> Rule | None:
    """The rule a method's options declare; None without the option (refused to everyone)."""
    if not options.HasExtension(access_pb2.access):
        return None
    access = options.Extensions[access_pb2.access]
    if _Access.ROLE_UNSPECIFIED in access.roles:
        raise ValueError("access: ROLE_UNSPECIFIED is not a role")
    roles = frozenset(_Access.Role.Name(r).lower() for r in access.roles)
    scope = _Access.ParticipantScope.Name(access.participant_scope) if access.participant_scope else ""
    if ("participant" in roles) != bool(scope):
        raise ValueError("access: participant_scope is given exactly when roles hold PARTICIPANT")
    return Rule(roles, scope, access.test_clock_only)


def rules(services: Iterable[ServiceDescriptor]) -> dict[str, Rule]:
    """"/package.Service/Method" -> its Rule, for every method that declares one."""
    table = {}
    for service in services:
        for method in service.methods:
            rule = rule_of(method.GetOptions())
            if rule is not None:
                table[f"/{service.full_name}/{method.name}"] = rule
    return table


RULES: dict[str, Rule] = rules(pb.DESCRIPTOR.services_by_name.values())


def who(rule: Rule) -> str:
    """The "who" column of README's table for one rule."""
    if rule.roles == frozenset(ROLE_ORDER) and rule.participant_scope == NO_FUND_DATA:
        text = "every role"
    else:
        parts = [", ".join(r for r in ROLE_ORDER if r in rule.roles and r != "participant")]
        if rule.participant_scope:
            parts.append(SCOPE_TEXT[rule.participant_scope])
        text = "; ".join(p for p in parts if p)
    return text + (" (only with `test_clock = true`)" if rule.test_clock_only else "")


def markdown_table(table: Mapping[str, Rule] = RULES) -> str:
    """README's table of who may call what: one row per service and rule, the RPCs in proto order."""
    rows: dict[tuple[str, Rule], list[str]] = {}
    for path, rule in table.items():
        service, method = path.rsplit("/", 2)[-2:]
        rows.setdefault((service.rsplit(".", 1)[-1], rule), []).append(method)
    lines = ["| service | RPCs | who |", "|---|---|---|"]
    lines += [f"| `{service}` | {', '.join(methods)} | {who(rule)} |" for (service, rule), methods in rows.items()]
    return "\n".join(lines) + "\n"
