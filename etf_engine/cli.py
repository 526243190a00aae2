"""The etf-engine command: serve, hash-token, demo, init, verify, audit, signing-key, journal, bench.

    etf-engine serve --config engine.toml
    etf-engine hash-token TOKEN
    etf-engine demo [--keep]
    etf-engine init [DIR]
    etf-engine apply FILE [--dry-run] [--server HOST:PORT]
    etf-engine prices publish --from FILE|- [--every S]
    etf-engine report NAME --server ADDR --fund F [--date D] [--as-of T] [--from D1 --to D2] [--format csv|json]
    etf-engine verify --data-dir DIR | --dsn DSN [--shard S]
    etf-engine audit --data-dir DIR | --dsn DSN [--shard S] [--public-key HEX]
    etf-engine audit --prove SIZE:ROOT --server HOST:PORT [--public-key HEX]
    etf-engine signing-key new FILE | public FILE
    etf-engine journal copy --from DATA_DIR --to DSN [--shard S]
    etf-engine bench --clients 1,64 --json run.json --plot run.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shlex
import shutil
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message_factory import GetMessageClass

from etf_engine import apply as apply_file
from etf_engine import price_file
from etf_engine.api.auth import ISSUER, OBSERVER, PARTICIPANT, hash_token
from etf_engine.bench.run import add_arguments as add_bench_arguments
from etf_engine.bench.run import run as run_bench
from etf_engine.client import EtfClient
from etf_engine.config import DEFAULT_LISTEN, Config, ConfigError, load_config
from etf_engine.journal import JournalError
from etf_engine.journal.sqlite import DataDirInUse
from etf_engine.ledger import make_ledger
from etf_engine.report_csv import REPORTS, report_csv
from etf_engine.report_csv import method as report_method
from etf_engine.snapshot import LedgerState
from etf_engine.table import table

LEDGERS = ("core", "reference", "auto")
LEDGER_HELP = "ledger: core (compiled), reference (pure Python) or auto (core when built, else reference)"


# == serve ==========================================================================================
def cmd_serve(args: argparse.Namespace) -> int:
    from etf_engine.api.server import EngineServer, serve

    logging.getLogger("etf_engine.engine").setLevel(logging.INFO)  # state digests at start and stop
    try:
        config = load_config(args.config) if args.config else Config()
    except ConfigError as e:
        print(f"etf-engine: {e}", file=sys.stderr)
        return 2
    if not config.principals:
        print("etf-engine: WARNING: no [[principals]] configured: every call will be refused "
              "(UNAUTHENTICATED). Add principals to a config file and pass --config.", file=sys.stderr)
    ledger = make_ledger(args.ledger)

    def ready(server: EngineServer) -> None:
        host = config.listen.rpartition(":")[0]
        security = "mutual TLS" if config.tls and config.tls.mutual else "TLS" if config.tls else "plaintext"
        j = config.journal
        journal = (f"journal shard {j.shard!r} in PostgreSQL, {server.engine.role.lower()} "
                   f"{server.engine.node_name}" if j.postgresql else f"journal in {config.data_dir}")
        print(f"etf-engine: listening on {host}:{server.port} ({security}, reflection "
              f"{'on' if config.reflection else 'off'}, {len(config.principals)} principals, {journal})", flush=True)
        if server.http_port is not None:
            web = f"http://{config.http_listen.rpartition(':')[0]}:{server.http_port}"  # type: ignore[union-attr]
            print(f"etf-engine: console {web}/  Connect {web}/etf_engine.v1.<Service>/<Method>  "
                  f"metrics {web}/metrics", flush=True)

    try:
        status = asyncio.run(serve(config, ledger=ledger, on_ready=ready))
    except DataDirInUse as e:  # a configuration mistake: two servers given one data directory
        print(f"etf-engine: {e}", file=sys.stderr)
        return 2
    except (OSError, JournalError) as e:
        print(f"etf-engine: {e}", file=sys.stderr)
        return 1
    if status:
        print("etf-engine: stopped itself (see the log); started again, it recovers from the journal",
              file=sys.stderr, flush=True)
        return status
    print("etf-engine: stopped", flush=True)
    return 0


# == hash-token =====================================================================================
def cmd_hash_token(args: argparse.Namespace) -> int:
    # "-" reads the token from stdin, keeping it out of shell history and process listings.
    token = sys.stdin.readline().rstrip("\r\n") if args.token == "-" else args.token
    if not token:
        print("etf-engine: empty token", file=sys.stderr)
        return 2
    print(hash_token(token))
    return 0


# == demo ===========================================================================================
def cmd_demo(args: argparse.Namespace) -> int:
    from etf_engine.demo import run_demo

    try:
        return run_demo(sys.stdout, args.ledger, keep=args.keep, http_listen=args.http_listen, listen=args.listen,
                        tick_seconds=args.tick_seconds)
    except (OSError, RuntimeError) as e:  # an address in use: one line, not a traceback
        print(f"etf-engine demo: {e} (with --keep it listens on --listen and --http-listen)", file=sys.stderr)
        return 1


# == init ==========================================================================================
INIT_PRINCIPALS = (  # (name, role, participant_id): a second issuer approves what the first registers
    ("issuer-ops", ISSUER, None), ("issuer-checker", ISSUER, None), ("dealer", PARTICIPANT, "AP-1"),
    ("auditor", OBSERVER, None),
)


def cmd_init(args: argparse.Namespace) -> int:
    """A ready config in DIR with fresh tokens (their digests in the file); each token is printed once."""
    folder = Path(args.dir)
    path = folder / "etf.toml"
    if path.exists() and not args.force:
        print(f"etf-engine: {path} exists; it is never overwritten (pass --force to replace it)", file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    tokens = {name: secrets.token_urlsafe(32) for name, _role, _pid in INIT_PRINCIPALS}
    lines = ["# etf-engine config, written by `etf-engine init`. Relative paths are relative to this file.",
             'listen = "127.0.0.1:50051"', 'data_dir = "etf-data"', "reflection = true",
             '# four_eyes = ["PayFee", "ResolveBreak"]  # the default: what one issuer proposes and another approves',
             '# signing_key = "checkpoint.pem"  # signs the journal\'s checkpoints: etf-engine signing-key new FILE',
             "",
             "[http]  # the console, Connect JSON and /metrics", 'listen = "127.0.0.1:8080"']
    for name, role, participant_id in INIT_PRINCIPALS:
        lines += ["", "[[principals]]", f'name = "{name}"', f'role = "{role}"']
        if participant_id:
            lines.append(f'participant_id = "{participant_id}"')
        lines.append(f'token_sha256 = "{hash_token(tokens[name])}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    load_config(path)  # what was written must load
    fund = folder / "fund.toml"  # an example to edit: kept when it exists, --force or not
    kept = fund.exists()
    if not kept:
        dealer = next(pid for _name, _role, pid in INIT_PRINCIPALS if pid)
        fund.write_text(apply_file.example(date.today(), dealer), encoding="utf-8")
        apply_file.load(fund)  # what was written must load
    print(f"wrote {path}{'' if kept else f' and {fund}'}. Tokens, shown this once (the file keeps only their "
          "SHA-256):")
    table(["principal", "role", "token"], [(n, r + (f" ({p})" if p else ""), tokens[n]) for n, r, p in INIT_PRINCIPALS],
          sys.stdout)
    exe = shlex.quote(_executable())
    print(f"\nStart the server:  {exe} serve --config {shlex.quote(str(path.absolute()))}\n"
          "Open the console:  http://127.0.0.1:8080/ (enter a token)\n"
          f"A first fund:      ETF_ENGINE_TOKEN=<issuer-ops token> {exe} apply {shlex.quote(str(fund.absolute()))}"
          f"{' (kept as it was)' if kept else ''}\n"
          "Then its prices:   printf 'BTC,USD,97250.00\\nETH,USD,3412.55\\n' | ETF_ENGINE_TOKEN=<issuer-ops token> "
          f"{exe} prices publish --from -")
    return 0


def _executable() -> str:
    """The etf-engine command as a full path: the one running, else the one beside this Python."""
    running = Path(sys.argv[0])
    if running.name == "etf-engine":
        return str(running.absolute())
    beside = Path(sys.executable).with_name("etf-engine")
    if beside.exists():
        return str(beside.absolute())
    return shutil.which("etf-engine") or f"{sys.executable} -m etf_engine.cli"


# == apply and prices: clients of a running server =================================================
def _add_journal_arguments(parser: argparse.ArgumentParser) -> None:
    """A journal read offline, as verify and audit take it: a data directory or a PostgreSQL shard."""
    parser.add_argument("--data-dir", metavar="DIR", help="the SQLite journal of this data directory")
    parser.add_argument("--dsn", metavar="DSN", help="a PostgreSQL journal (read only: a standby will do)")
    parser.add_argument("--shard", metavar="S", help='the shard of --dsn (default "main")')


def _journal_arguments_refused(args: argparse.Namespace, command: str, choices: str) -> bool:
    """Whether the journal arguments of ``_add_journal_arguments`` are wrong (said on stderr): exactly one
    of ``choices``, and --shard only with --dsn."""
    if (args.data_dir is None) == (args.dsn is None):
        print(f"etf-engine {command}: give exactly one of {choices}", file=sys.stderr)
        return True
    if args.dsn is None and args.shard is not None:
        print(f"etf-engine {command}: --shard goes with --dsn, not --data-dir", file=sys.stderr)
        return True
    return False


def _no_journal_in(data_dir: str, command: str) -> bool:
    """Whether ``data_dir`` holds no journal (said on stderr)."""
    from etf_engine.journal.sqlite import DB_NAME

    if Path(data_dir, DB_NAME).exists():
        return False
    print(f"etf-engine {command}: no journal in {data_dir}", file=sys.stderr)
    return True


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--server and TLS as EtfClient takes them; the token comes from ETF_ENGINE_TOKEN."""
    parser.add_argument("--server", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help="the server's gRPC address (default %(default)s); the token: ETF_ENGINE_TOKEN")
    parser.add_argument("--tls", action="store_true", help="TLS, trusting the system's certificate authorities")
    parser.add_argument("--root-certificates", metavar="PEM", help="TLS, trusting the CA certificates in this file")
    parser.add_argument("--private-key", metavar="PEM", help="mutual TLS: the client's key (with --certificate-chain)")
    parser.add_argument("--certificate-chain", metavar="PEM", help="mutual TLS: the client's certificate chain")


def _server_client(args: argparse.Namespace, command: str,
                   whose: str = "an issuer's token (etf-engine init prints them)") -> EtfClient | None:
    """The client for --server, or None after saying why not (no token: ``whose`` it should be; a
    certificate not read)."""
    token = os.environ.get("ETF_ENGINE_TOKEN", "")
    if not token:
        print(f"etf-engine {command}: set ETF_ENGINE_TOKEN to {whose}", file=sys.stderr)
        return None
    if bool(args.private_key) != bool(args.certificate_chain):
        print(f"etf-engine {command}: --private-key and --certificate-chain go together", file=sys.stderr)
        return None
    pem: dict[str, bytes | None] = {}
    for name in ("root_certificates", "private_key", "certificate_chain"):
        value = getattr(args, name)
        try:
            pem[name] = Path(value).read_bytes() if value else None
        except OSError as e:
            print(f"etf-engine {command}: --{name.replace('_', '-')} {value}: {e.strerror or e}", file=sys.stderr)
            return None
    return EtfClient(args.server, token, tls=args.tls, **pem)


def cmd_apply(args: argparse.Namespace) -> int:
    client = _server_client(args, "apply")
    if client is None:
        return 2
    with client:
        return apply_file.run(Path(args.file), client, target=args.server, dry_run=args.dry_run, out=sys.stdout,
                              err=sys.stderr)


def cmd_prices_publish(args: argparse.Namespace) -> int:
    if args.every is not None and not args.every > 0:
        print("etf-engine prices publish: --every takes a number of seconds above 0", file=sys.stderr)
        return 2
    try:
        text = sys.stdin.read() if args.source == "-" else Path(args.source).read_text(encoding="utf-8")
    except OSError as e:
        print(f"etf-engine prices publish: {args.source}: {e.strerror or e}", file=sys.stderr)
        return 2
    client = _server_client(args, "prices publish")
    if client is None:
        return 2
    with client:
        return price_file.run(client, text, "stdin" if args.source == "-" else args.source, target=args.server,
                              every=args.every, out=sys.stdout, err=sys.stderr)


# == report: a report of a running server, as CSV or JSON =========================================
# option -> the field of the report's request it sets (an option the report's request lacks is refused)
REPORT_OPTIONS = {"--fund": "fund_id", "--date": "dealing_date", "--as-of": "as_of", "--from": "from",
                  "--to": "to", "--closing-price": "closing_price", "--participant": "participant_id"}
REPORT_DATES = ("--date", "--from", "--to")


def cmd_report(args: argparse.Namespace) -> int:
    """One report (SPEC §21) as the server replies it: CSV (report_csv) or the reply in protobuf JSON. Bad
    arguments exit 2 naming the argument; a refusal of the server exits 1 with its code and message."""
    def refuse(message: str) -> int:
        print(f"etf-engine report: {message}", file=sys.stderr)
        return 2

    rpc = report_method(args.name)
    request = GetMessageClass(rpc.input_type)()
    fields = request.DESCRIPTOR.fields_by_name
    given = {option: getattr(args, option.removeprefix("--").replace("-", "_")) for option in REPORT_OPTIONS}
    given = {option: value for option, value in given.items() if value is not None}
    takes = " ".join(o for o, f in REPORT_OPTIONS.items() if f in fields)
    for option, value in given.items():
        field = REPORT_OPTIONS[option]
        if field not in fields:
            return refuse(f"{option} does not apply to {args.name} (it takes {takes})")
        if option in REPORT_DATES and not _iso_date(value):
            return refuse(f"{option} {value!r}: not a date (YYYY-MM-DD)")
        if option == "--as-of":
            try:
                value = price_file.as_of_ms(value, "--as-of")
            except price_file.PriceFileError as e:
                return refuse(str(e))
        setattr(request, field, value)
    for option in ("--date", "--from", "--to"):
        if REPORT_OPTIONS[option] in fields and option not in given:
            return refuse(f"{option} is required for {args.name} (it takes {takes})")
    if "--from" in given and given["--from"] > given["--to"]:
        return refuse(f"--from {given['--from']} is after --to {given['--to']}")
    client = _server_client(args, "report",
                            "an issuer's or observer's token (a participant's: participant-activity)")
    if client is None:
        return 2
    with client:
        client.timeout = 120.0  # a report over a long period reads much of the journal
        try:
            reply = client.report(REPORTS[args.name], request)
        except grpc.RpcError as e:
            print(f"etf-engine report: {e.code().name}: {e.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
    if args.format == "json":
        sys.stdout.write(json_format.MessageToJson(reply, preserving_proto_field_name=True, ensure_ascii=False,
                                                   always_print_fields_with_no_presence=True) + "\n")
    else:
        sys.stdout.write(report_csv(reply))
    return 0


def _iso_date(text: str) -> bool:
    try:
        return len(text) == 10 and date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def cmd_verify(args: argparse.Namespace) -> int:
    """Check every record and the snapshot without serving. It takes no lock (a running server may own
    the directory) and opens SQLite read-only: it changes nothing it reads. On a PostgreSQL shard
    (``--dsn``) it reads in one read-only transaction: no lease, no schema, a standby will do."""
    if _journal_arguments_refused(args, "verify", "--data-dir DIR or --dsn DSN"):
        return 2
    if args.dsn is not None:
        return _verify_shard(args.dsn, args.shard or "main")

    from etf_engine.journal import SqliteJournal
    from etf_engine.journal.verify import verify_journal

    if _no_journal_in(args.data_dir, "verify"):
        return 1
    try:
        journal = SqliteJournal(args.data_dir, lock=False, check=True)
        try:
            verified = verify_journal(journal)
        finally:
            journal.close()
    except JournalError as e:
        print(f"etf-engine verify: {e}", file=sys.stderr)
        return 1
    if journal.torn_tail_frames:
        print(f"torn tail: {journal.torn_tail_frames} WAL frame(s) after the last commit, never acknowledged; "
              "start-up discards them")
    _print_verified(verified.records, verified.state, verified.digest)
    return 0


def _print_verified(records: int, state: LedgerState, digest: str) -> None:
    print(f"records {records}, funds {len(state.funds)}, orders {len(state.orders)}, "
          f"participants {len(state.participants)}, prices {len(state.prices)}")
    print(f"digest {digest}")


def _tool_failed(command: str, error: BaseException) -> int:
    """One line, never a traceback: 2 for what was asked wrongly (bad arguments, a shard or data
    directory that may not be used), 1 for damage or a database that cannot be read."""
    from etf_engine.journal.verify import ToolRefused

    if isinstance(error, ToolRefused | DataDirInUse):
        print(f"etf-engine {command}: {error}", file=sys.stderr)
        return 2
    if isinstance(error, JournalError | OSError):
        print(f"etf-engine {command}: {error}", file=sys.stderr)
        return 1
    first = (str(error).strip().splitlines() or [""])[0]
    print(f"etf-engine {command}: {type(error).__name__}: {first}", file=sys.stderr)
    return 1


def _verify_shard(dsn: str, shard: str) -> int:
    from etf_engine.journal.verify import verify_shard

    try:
        verified = verify_shard(dsn, shard)
    except Exception as e:  # one line, whatever went wrong
        return _tool_failed("verify", e)
    _print_verified(verified.records, verified.state, verified.digest)
    return 0


# == audit (SPEC §21) ===============================================================================
def cmd_audit(args: argparse.Namespace) -> int:
    """Every checkpoint of a data directory or shard recomputed from the records (offline, read only); or,
    with --prove, a server's latest checkpoint checked to extend a root the auditor kept."""
    from etf_engine.audit import AuditFailed
    from etf_engine.signing import SigningKeyError, check_public_key

    try:
        public_key = None if args.public_key is None else check_public_key(args.public_key)
    except SigningKeyError as e:
        print(f"etf-engine audit: --public-key: {e}", file=sys.stderr)
        return 2
    try:
        if args.prove is not None:
            return _audit_prove(args, public_key)
        if _journal_arguments_refused(args, "audit", "--data-dir DIR, --dsn DSN or --prove SIZE:ROOT"):
            return 2
        return _audit_journal(args, public_key)
    except AuditFailed as e:
        print(f"etf-engine audit: FAILED: {e}", file=sys.stderr)
        return 1


def _audit_journal(args: argparse.Namespace, public_key: str | None) -> int:
    from etf_engine.audit import audit_records

    try:
        if args.dsn is not None:
            from etf_engine.journal.postgres import PgJournal
            from etf_engine.journal.verify import check_arguments

            shard = args.shard or "main"
            check_arguments(args.dsn, shard)
            journal: Any = PgJournal(args.dsn, shard, node_name="audit", read_only=True)
        else:
            from etf_engine.journal import SqliteJournal

            shard = ""
            if _no_journal_in(args.data_dir, "audit"):
                return 1
            journal = SqliteJournal(args.data_dir, lock=False, check=False)
        try:
            audited = audit_records(journal.stored_records, shard=shard, public_key=public_key)
        finally:
            journal.close()
    except JournalError as e:
        return _tool_failed("audit", e)
    print(audited.summary())
    return 0


def _audit_prove(args: argparse.Namespace, public_key: str | None) -> int:
    import grpc

    from etf_engine.audit import prove

    size_text, _, root = args.prove.partition(":")
    if not size_text.isdigit() or int(size_text) < 1 or len(root) != 64:
        print(f"etf-engine audit: --prove: expected SIZE:ROOT (a tree size from 1 and its root in 64 hex digits), "
              f"got {args.prove[:100]!r}", file=sys.stderr)
        return 2
    client = _server_client(args, "audit", "a token of any role (etf-engine init prints them)")
    if client is None:
        return 2
    with client:
        try:
            checkpoint = client.get_checkpoint()
            proof = client.get_consistency_proof(int(size_text), checkpoint.tree_size)
        except grpc.RpcError as e:
            print(f"etf-engine audit: {e.code().name}: {e.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 1
    print(prove(int(size_text), root.lower(), checkpoint, list(proof.proof), proof.to_root, shard=checkpoint.shard,
                public_key=public_key))
    return 0


def cmd_signing_key(args: argparse.Namespace) -> int:
    """``new FILE``: a fresh Ed25519 key (PKCS#8 PEM, mode 600, never over a file); ``public FILE``: its
    public key in hex, for auditors (``etf-engine audit --public-key``)."""
    from etf_engine.signing import Signer, SigningKeyError, new_key_file

    try:
        public = new_key_file(args.file) if args.action == "new" else Signer(args.file).public_key
    except SigningKeyError as e:
        print(f"etf-engine signing-key: {str(e).removeprefix('signing_key: ')}", file=sys.stderr)
        return 1
    if args.action == "new":
        print(f"wrote {args.file}; in the config: signing_key = {json.dumps(str(args.file))}", file=sys.stderr)
    print(public)
    return 0


# == journal ========================================================================================
def cmd_journal_copy(args: argparse.Namespace) -> int:
    """A stopped server's whole SQLite journal into an empty PostgreSQL shard, checked before and after."""
    from etf_engine.journal.copy import copy_to_shard

    try:
        copied = copy_to_shard(args.from_dir, args.to, args.shard)
    except Exception as e:  # one line, whatever went wrong
        return _tool_failed("journal copy", e)
    if copied.torn_tail_frames:
        print(f"torn tail: {copied.torn_tail_frames} WAL frame(s) after the last commit in {args.from_dir}, "
              "never acknowledged, discarded")
    if copied.snapshot_seq is not None:
        print(f"snapshot at record {copied.snapshot_seq} copied")
    else:
        print(f"no snapshot in {args.from_dir}: a server on the shard replays every record at start")
    print(f"copied {copied.target.records} records; digest {copied.target.digest}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etf-engine", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the gRPC server and, with [http] listen in the config, the HTTP listener",
        description="Run the gRPC server. With [http] listen in the config (etf-engine init writes it), the "
                    "same process also runs the HTTP listener: the operations console at /, Connect "
                    "(POST /etf_engine.v1.<Service>/<Method>) and /metrics for Prometheus.")
    serve.add_argument("--config", metavar="FILE", help="TOML config (default: 127.0.0.1:50051, ./etf-data)")
    serve.add_argument("--ledger", choices=LEDGERS, default="core", help=LEDGER_HELP)
    serve.set_defaults(func=cmd_serve)

    hash_cmd = sub.add_parser("hash-token", help="print the SHA-256 digest of a token for the config")
    hash_cmd.add_argument("token", help='the token, or "-" to read it from stdin')
    hash_cmd.set_defaults(func=cmd_hash_token)

    demo = sub.add_parser("demo", help="start a throwaway server with a sample Hong Kong fund and walk through it")
    demo.add_argument("--ledger", choices=LEDGERS, default="auto", help=LEDGER_HELP)
    demo.add_argument("--keep", action="store_true", help="then keep the server running, with the console, until "
                                                           "SIGINT or SIGTERM; prints the console URL and tokens once")
    demo.add_argument("--http-listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                      help="with --keep: where the console, Connect and /metrics listen (default %(default)s)")
    demo.add_argument("--listen", default="127.0.0.1:50051", metavar="HOST:PORT",
                      help="with --keep: where gRPC listens (default %(default)s, as README's grpcurl commands say)")
    demo.add_argument("--tick-seconds", type=float, default=3.0, metavar="S",
                      help="with --keep: seconds between the funds' new prices (default %(default)s)")
    demo.set_defaults(func=cmd_demo)

    init = sub.add_parser("init", help="write a ready config with fresh tokens into DIR (etf.toml)")
    init.add_argument("dir", nargs="?", default=".", metavar="DIR", help="created if missing (default: here)")
    init.add_argument("--force", action="store_true", help="replace an existing etf.toml")
    init.set_defaults(func=cmd_init)

    apply_cmd = sub.add_parser("apply", help="create and update assets, custodians, calendars, participants and "
                                             "funds from a TOML file (init writes an example, fund.toml)",
                               description="Make a server hold what a TOML file describes: create what is "
                                           "missing, update what the API can change, and name (changing nothing) "
                                           "a difference it cannot apply. The tables are the requests of "
                                           "engine.proto in its JSON form; see fund.toml, written by init.")
    apply_cmd.add_argument("file", metavar="FILE", help="the TOML file")
    apply_cmd.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    _add_server_arguments(apply_cmd)
    apply_cmd.set_defaults(func=cmd_apply)

    prices = sub.add_parser("prices", help="publish prices to a server")
    prices_sub = prices.add_subparsers(dest="prices_command", required=True)
    publish = prices_sub.add_parser("publish", help="publish the prices of a CSV file: asset,currency,price[,as_of]",
                                    description="Publish price ticks from a CSV file, one a row: "
                                                "asset,currency,price[,as_of].")
    publish.add_argument("--from", dest="source", required=True, metavar="FILE|-",
                         help="rows of asset,currency,price[,as_of] (as_of ISO 8601 or unix ms; default now); "
                              "- reads standard input")
    publish.add_argument("--every", type=float, metavar="S",
                         help="then publish the file's last prices again every S seconds, as of then, until "
                              "interrupted (rehearsals)")
    _add_server_arguments(publish)
    publish.set_defaults(func=cmd_prices_publish)

    report = sub.add_parser("report", help="a report of a fund (SPEC §21) from a server, as CSV or JSON",
                            description="A report of the Reports service as the server replies it: CSV with a "
                                        "header row (the shapes: etf_engine/report_csv.py) or the reply in protobuf "
                                        "JSON. The token: ETF_ENGINE_TOKEN (an issuer's or observer's; a "
                                        "participant's for its own participant-activity).")
    report.add_argument("name", choices=list(REPORTS), metavar="NAME", help=f"one of {', '.join(REPORTS)}")
    report.add_argument("--fund", required=True, metavar="F", help="the fund_id")
    report.add_argument("--date", metavar="D", help="daily: the dealing date (YYYY-MM-DD) of an official NAV")
    report.add_argument("--as-of", metavar="T", help="holdings, staking: as of this time (unix ms or ISO 8601, "
                                                      "UTC without an offset); default now")
    report.add_argument("--from", dest="from", metavar="D1", help="the period's first date (YYYY-MM-DD), inclusive")
    report.add_argument("--to", metavar="D2", help="the period's last date (YYYY-MM-DD), inclusive")
    report.add_argument("--closing-price", metavar="P", help="daily: the exchange's closing price per share, for "
                                                             "premium_discount")
    report.add_argument("--participant", metavar="P", help="participant-activity: one participant_id (default all)")
    report.add_argument("--format", choices=("csv", "json"), default="csv", help="default %(default)s")
    _add_server_arguments(report)
    report.add_argument("--tls-ca", dest="root_certificates", metavar="PEM",
                        help="TLS, trusting the CA certificates in this file (as --root-certificates)")
    report.set_defaults(func=cmd_report)

    verify = sub.add_parser("verify", help="replay a data directory or a PostgreSQL shard offline; print counts "
                                           "and the state digest")
    _add_journal_arguments(verify)
    verify.set_defaults(func=cmd_verify)

    audit = sub.add_parser("audit", help="recompute every checkpoint of a data directory or PostgreSQL shard from its "
                                         "records (offline), or check a server's tree extends a kept root",
                           description="SPEC §21. With --data-dir or --dsn: every record through a fresh Merkle "
                                       "tree; fails naming the first checkpoint whose root or signature the records "
                                       "do not bear out. With --prove SIZE:ROOT --server: the server's latest "
                                       "checkpoint must extend that root (an RFC 9162 consistency proof).")
    _add_journal_arguments(audit)
    audit.add_argument("--public-key", metavar="HEX", help="every checkpoint must be signed by this Ed25519 key "
                                                           "(etf-engine signing-key public)")
    audit.add_argument("--prove", metavar="SIZE:ROOT", help="a tree size and root kept from an earlier checkpoint")
    _add_server_arguments(audit)
    audit.set_defaults(func=cmd_audit)

    signing = sub.add_parser("signing-key", help="the Ed25519 key that signs checkpoints: new FILE, public FILE")
    signing.add_argument("action", choices=("new", "public"))
    signing.add_argument("file", metavar="FILE", help="the key file (PKCS#8 PEM)")
    signing.set_defaults(func=cmd_signing_key)

    journal = sub.add_parser("journal", help="tools for the journal")
    journal_sub = journal.add_subparsers(dest="journal_command", required=True)
    copy = journal_sub.add_parser("copy", help="copy a stopped server's SQLite journal into an empty PostgreSQL "
                                               "shard")
    copy.add_argument("--from", dest="from_dir", required=True, metavar="DATA_DIR",
                      help="the data directory (no server may be running on it)")
    copy.add_argument("--to", required=True, metavar="DSN", help="the PostgreSQL database (read-write)")
    copy.add_argument("--shard", default="main", metavar="S", help='an empty shard (default "main")')
    copy.set_defaults(func=cmd_journal_copy)

    bench = sub.add_parser("bench", help="load a server with concurrent clients; latency and throughput per RPC "
                                         "against the gRPC floor")
    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    parser.description = f"The etf-engine command: {', '.join(sub.choices)}."  # every command, from the parser
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
