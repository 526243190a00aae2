"""The server's TOML config (SPEC §10): listen address, data directory, principals, TLS, reflection.

Unknown keys are errors, not ignored: a misspelt ``client_ca`` must not silently turn mutual TLS
off. Relative paths are taken relative to the config file, so the server finds its files whatever
directory it is started from. Every error names the offending key.

    listen = "127.0.0.1:50051"
    data_dir = "etf-data"
    reflection = true            # grpc.reflection, on by default
    heartbeat_seconds = 15       # StreamNav heartbeat, at most 15 (SPEC §7)
    grace_seconds = 10           # how long calls in flight may finish on SIGTERM
    max_message_bytes = 4194304  # request and reply size bound
    four_eyes = ["PayFee", "ResolveBreak"]  # SPEC §20: Admin RPCs an issuer proposes and another approves
    signing_key = "checkpoint.pem"  # SPEC §21: Ed25519 key that signs checkpoints (etf-engine signing-key new)

    [tls]                        # optional; with client_ca: mutual TLS
    cert = "server.pem"
    key = "server.key"
    client_ca = "ca.pem"

    [[principals]]
    name = "issuer-ops"
    role = "issuer"
    token_sha256 = "…64 hex digits…"   # etf-engine hash-token TOKEN
"""

from __future__ import annotations

import re
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etf_engine.api.auth import PARTICIPANT, ROLES, Principal
from etf_engine.signing import Signer, SigningKeyError

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DATA_DIR = "etf-data"
MAX_HEARTBEAT_SECONDS = 15.0
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    client_ca: Path | None = None  # given: clients must present a certificate signed by it

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


@dataclass(frozen=True)
class JournalConfig:
    """``[journal]`` (SPEC §12): SQLite in data_dir, or a PostgreSQL shard led by one node at a time."""

    backend: str = "sqlite"
    dsn: str = ""
    shard: str = "main"
    lease_seconds: float = 5.0
    node_name: str = ""
    # A commit PostgreSQL has not confirmed within this long (no synchronous standby, a hung network)
    # has an unknown outcome: the server stops rather than wait without end or guess (see README).
    commit_timeout_seconds: float = 30.0

    @property
    def postgresql(self) -> bool:
        return self.backend == "postgresql"


@dataclass(frozen=True)
class Config:
    listen: str = DEFAULT_LISTEN
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    reflection: bool = True
    heartbeat_seconds: float = MAX_HEARTBEAT_SECONDS
    grace_seconds: float = 10.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls: TlsConfig | None = None
    principals: tuple[Principal, ...] = field(default_factory=tuple)
    journal: JournalConfig = field(default_factory=JournalConfig)
    # SPEC §13: Diagnostics.AdvanceClock may move the engine's clock forward (rehearsals, tests only).
    test_clock: bool = False
    # SPEC §15: [http] listen: Connect JSON, /metrics and the console; None: no HTTP listener.
    http_listen: str | None = None
    # SPEC §20: the Admin RPCs that an issuer's call only proposes (a PENDING instruction) and another
    # issuer principal approves. The config's list replaces this default.
    four_eyes: tuple[str, ...] = ("PayFee", "ResolveBreak")
    # SPEC §21: the Ed25519 private key (PKCS#8 PEM) that signs the journal's checkpoints; None: unsigned.
    signing_key: Path | None = None


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_config(data, base_dir=path.resolve().parent, source=str(path))


def parse_config(data: dict[str, Any], *, base_dir: Path, source: str = "config") -> Config:
    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {why}")

    allowed = {"listen", "data_dir", "reflection", "heartbeat_seconds", "grace_seconds", "max_message_bytes",
               "tls", "principals", "journal", "test_clock", "http", "four_eyes", "signing_key"}
    for key in data:
        if key not in allowed:
            raise fail(key, f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def typed(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = data.get(key, default)
        # bool is an int in Python; a number key must not accept true/false.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise fail(key, f"expected {getattr(kind, '__name__', 'a number')}, got {value!r}")
        return value

    listen = typed("listen", str, DEFAULT_LISTEN)
    _check_listen(listen, fail)
    data_dir = base_dir / typed("data_dir", str, DEFAULT_DATA_DIR)
    reflection = typed("reflection", bool, True)
    test_clock = typed("test_clock", bool, False)
    heartbeat = float(typed("heartbeat_seconds", (int, float), MAX_HEARTBEAT_SECONDS))
    if not 0 < heartbeat <= MAX_HEARTBEAT_SECONDS:
        raise fail("heartbeat_seconds", f"must be above 0 and at most {MAX_HEARTBEAT_SECONDS:g} (SPEC §7)")
    grace = float(typed("grace_seconds", (int, float), 10.0))
    if grace < 0:
        raise fail("grace_seconds", "must not be negative")
    max_bytes = typed("max_message_bytes", int, DEFAULT_MAX_MESSAGE_BYTES)
    if not 64 * 1024 <= max_bytes <= 64 * 1024 * 1024:
        raise fail("max_message_bytes", "must be between 65536 and 67108864")

    tls = None
    if "tls" in data:
        tls = _parse_tls(data["tls"], base_dir, fail)
    journal = _parse_journal(data.get("journal", {}), fail)
    http_listen = _parse_http(data.get("http"), fail)
    four_eyes = _parse_four_eyes(data.get("four_eyes"), fail)
    signing_key = None
    if "signing_key" in data:
        signing_key = base_dir / typed("signing_key", str, "")
        try:
            Signer(signing_key)  # a key that cannot sign stops the server here, not at the first strike
        except SigningKeyError as e:
            raise fail("signing_key", str(e).removeprefix("signing_key: ")) from None

    raw = data.get("principals", [])
    if not isinstance(raw, list):
        raise fail("principals", "expected an array of tables ([[principals]])")
    principals = tuple(_parse_principal(i, entry, fail) for i, entry in enumerate(raw))
    seen_names: set[str] = set()
    seen_digests: set[str] = set()
    for i, p in enumerate(principals):
        if p.name in seen_names:
            raise fail(f"principals[{i}].name", f"{p.name!r} is used twice")
        if p.token_sha256 in seen_digests:
            raise fail(f"principals[{i}].token_sha256", "the same token is given to two principals")
        seen_names.add(p.name)
        seen_digests.add(p.token_sha256)
    return Config(listen=listen, data_dir=data_dir, reflection=reflection, heartbeat_seconds=heartbeat,
                  grace_seconds=grace, max_message_bytes=max_bytes, tls=tls, principals=principals,
                  journal=journal, test_clock=test_clock, http_listen=http_listen, four_eyes=four_eyes,
                  signing_key=signing_key)


def _parse_four_eyes(raw: Any, fail: Any) -> tuple[str, ...]:
    """SPEC §20: names of Admin RPCs that change state, but ApproveInstruction and RejectInstruction, which
    decide instructions, and Checkpoint, which moves no value."""
    from etf_engine.api.servicers import DECIDING, DEFAULT_FOUR_EYES, FOUR_EYES_RPCS, NEVER_FOUR_EYES

    if raw is None:
        return DEFAULT_FOUR_EYES
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise fail("four_eyes", f"expected an array of RPC names, e.g. [\"PayFee\", \"AdjustCash\"], got {raw!r}")
    seen: set[str] = set()
    for i, name in enumerate(raw):
        if name in DECIDING:
            raise fail(f"four_eyes[{i}]", f"{name!r} decides instructions; it cannot be one")
        if name in NEVER_FOUR_EYES:
            raise fail(f"four_eyes[{i}]", f"{name!r} moves no value (it journals the Merkle root of the records "
                                          "before it); it is never an instruction")
        if name not in FOUR_EYES_RPCS:
            raise fail(f"four_eyes[{i}]", f"{name!r} is not an Admin RPC that changes state (expected one of "
                                          f"{', '.join(sorted(FOUR_EYES_RPCS))})")
        if name in seen:
            raise fail(f"four_eyes[{i}]", f"{name!r} is listed twice")
        seen.add(name)
    return tuple(raw)


def _parse_http(raw: Any, fail: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise fail("http", "expected a table ([http])")
    for key in raw:
        if key != "listen":
            raise fail(f"http.{key}", "unknown key (expected listen)")
    listen = raw.get("listen")
    if not isinstance(listen, str):
        raise fail("http.listen", f"expected a string host:port, got {listen!r}")
    _check_listen(listen, lambda _key, why: fail("http.listen", why))
    return listen


def _parse_journal(raw: Any, fail: Any) -> JournalConfig:
    if not isinstance(raw, dict):
        raise fail("journal", "expected a table ([journal])")
    keys = {"backend": str, "dsn": str, "shard": str, "lease_seconds": (int, float), "node_name": str,
            "commit_timeout_seconds": (int, float)}
    for key, value in raw.items():
        kind = keys.get(key)
        if kind is None:
            raise fail(f"journal.{key}", f"unknown key (expected one of {', '.join(keys)})")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise fail(f"journal.{key}", f"expected {'a number' if kind is not str else 'a string'}, got {value!r}")
    journal = JournalConfig(**{k: float(v) if keys[k] is not str else v for k, v in raw.items()})
    if journal.backend not in ("sqlite", "postgresql"):
        raise fail("journal.backend", f"{journal.backend!r}: expected \"sqlite\" or \"postgresql\"")
    if journal.postgresql:
        if not journal.dsn:
            raise fail("journal.dsn", "required with backend = \"postgresql\"")
        if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", journal.shard):
            raise fail("journal.shard", f"{journal.shard!r}: 1-64 of [A-Za-z0-9._:-]")
        if not 1 <= journal.lease_seconds <= 600:
            raise fail("journal.lease_seconds", "must be between 1 and 600")
        if journal.commit_timeout_seconds <= 0:
            raise fail("journal.commit_timeout_seconds", "must be above 0")
    return journal


def _check_listen(listen: str, fail: Any) -> None:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise fail("listen", f"{listen!r} is not host:port (e.g. \"127.0.0.1:50051\" or \"[::1]:50051\")")


def _parse_tls(raw: Any, base_dir: Path, fail: Any) -> TlsConfig:
    if not isinstance(raw, dict):
        raise fail("tls", "expected a table ([tls])")
    for key in raw:
        if key not in ("cert", "key", "client_ca"):
            raise fail(f"tls.{key}", "unknown key (expected cert, key, client_ca)")
    paths: dict[str, Path] = {}
    for key in ("cert", "key", "client_ca"):
        if key not in raw:
            if key == "client_ca":
                continue
            raise fail(f"tls.{key}", "missing")
        if not isinstance(raw[key], str) or not raw[key]:
            raise fail(f"tls.{key}", f"expected a file path, got {raw[key]!r}")
        path = base_dir / raw[key]
        if not path.is_file():
            raise fail(f"tls.{key}", f"no such file: {path}")
        paths[key] = path
    _check_tls_material(paths, fail)
    return TlsConfig(cert=paths["cert"], key=paths["key"], client_ca=paths.get("client_ca"))


def _check_tls_material(paths: dict[str, Path], fail: Any) -> None:
    """Load the certificate, key and CA as a TLS server would: grpc reports any mistake in them only as
    "Failed to bind to address", so name the file and the problem here instead."""

    def pem_certificates(key: str) -> None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=str(paths[key]))
        except (ssl.SSLError, OSError) as e:
            why = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
            raise fail(f"tls.{key}", f"{paths[key]} is not a readable PEM certificate ({why})") from None

    pem_certificates("cert")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(paths["cert"], paths["key"])
    except (ssl.SSLError, OSError) as e:
        if "KEY_VALUES_MISMATCH" in str(e):
            raise fail("tls.key", f"{paths['key']} does not match the certificate {paths['cert']}") from None
        why = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
        raise fail("tls.key", f"{paths['key']} is not a readable PEM private key ({why})") from None
    if "client_ca" in paths:
        pem_certificates("client_ca")


def _parse_principal(i: int, raw: Any, fail: Any) -> Principal:
    where = f"principals[{i}]"
    if not isinstance(raw, dict):
        raise fail(where, "expected a table")
    for key in raw:
        if key not in ("name", "role", "token_sha256", "participant_id"):
            raise fail(f"{where}.{key}", "unknown key (expected name, role, token_sha256, participant_id)")
    for key in ("name", "role", "token_sha256"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise fail(f"{where}.{key}", "missing or not a string")
    role = raw["role"]
    if role not in ROLES:
        raise fail(f"{where}.role", f"{role!r} is not one of {', '.join(ROLES)}")
    digest = raw["token_sha256"]
    if not _HEX64.fullmatch(digest):
        raise fail(f"{where}.token_sha256", "expected 64 hex digits (etf-engine hash-token TOKEN prints them)")
    participant_id = raw.get("participant_id")
    if role == PARTICIPANT:
        if not isinstance(participant_id, str) or not _ID.fullmatch(participant_id):
            raise fail(f"{where}.participant_id", "a participant needs its participant_id (1-64 of [A-Za-z0-9._:-])")
    elif participant_id is not None:
        raise fail(f"{where}.participant_id", f"only a participant has one, not a {role}")
    return Principal(name=raw["name"], role=role, token_sha256=digest.lower(), participant_id=participant_id)
