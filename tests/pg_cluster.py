"""A real PostgreSQL primary and a synchronous standby for tests and benchmarks (SPEC §12).

``PgCluster`` is plain Python: ``with PgCluster() as pg: ...`` or ``pg.start()`` / ``pg.stop()``. The
``pg_cluster`` fixture (scope="session") starts one per test session; call ``pg_cluster.reset()`` at the
start of a test for an empty database ``etf`` on a healthy primary + sync standby.

Topology, as ``start()`` leaves it:
- node "primary": 127.0.0.1:``primary_port``, ``synchronous_standby_names = 's1'``: every commit waits
  until the standby has flushed it, and hangs while no standby is connected;
- node "standby": 127.0.0.1:``standby_port``, made by ``pg_basebackup -R`` with ``application_name=s1``,
  hot standby (read-only queries). Its own ``synchronous_standby_names`` is empty, so once promoted it
  accepts writes alone (nothing replicates from it).
- role ``etf`` (LOGIN, pg_monitor) owns database ``etf``; the superuser is ``postgres``; auth is trust
  on 127.0.0.1 (incl. replication) and the unix sockets in the temp dir.

The node names stay fixed: after ``kill_primary()`` + ``promote_standby()`` the writable server is the
node "standby" (``leader`` says which); ``psql()`` without a port talks to the writable one.

The servers run as the ``postgres`` OS user when we are root (initdb refuses root); their data dirs
and log files (``primary.log``, ``standby.log``) are in one ``/tmp/etf-pg-*`` directory that
``stop()`` removes. Binaries: the newest ``/usr/lib/postgresql/<major>/bin`` (or ``$ETF_PG_BINDIR``).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"
SYNC_NAME = "s1"
START_TIMEOUT = 30.0  # seconds for a server to come up, a standby to be sync, a promotion to finish

INSTALL_HINT = ("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb); "
                ".ci/run installs the postgresql package (apt-get install -y postgresql)")


class PgClusterError(RuntimeError):
    """Something did not come up; the message carries the server log tails."""


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL server bin directory, or None."""
    env = os.environ.get("ETF_PG_BINDIR")
    if env:
        return Path(env) if (Path(env) / "initdb").exists() else None
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        major = Path(initdb).parent.parent.name
        with contextlib.suppress(ValueError):
            found.append((float(major), Path(initdb).parent))
    return max(found)[1] if found else None


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


class PgCluster:
    """A PostgreSQL primary + synchronous standby (``application_name=s1``) on free local ports."""

    def __init__(self, bindir: Path | str | None = None) -> None:
        found = Path(bindir) if bindir else find_bindir()
        if found is None or not (found / "initdb").exists():
            raise FileNotFoundError(INSTALL_HINT)
        self.bindir: Path = found
        self.base: Path | None = None
        self.primary_port = 0
        self.standby_port = 0
        self.leader = "primary"  # the node that accepts writes: "primary", or "standby" once promoted
        self._running = {"primary": False, "standby": False}
        self._started: set[str] = set()  # nodes started at least once since the last build
        self._as_postgres = os.geteuid() == 0
        self._atexit = False

    # ----------------------------------------------------------------------------------- DSNs

    @property
    def dsn(self) -> str:
        """Both hosts, the writable one wins: what an engine's ``[journal] dsn`` looks like."""
        return (f"host={HOST},{HOST} port={self.primary_port},{self.standby_port} dbname=etf user=etf "
                "target_session_attrs=read-write connect_timeout=2")

    @property
    def primary_dsn(self) -> str:
        return f"host={HOST} port={self.primary_port} dbname=etf user=etf connect_timeout=2"

    @property
    def standby_dsn(self) -> str:
        return f"host={HOST} port={self.standby_port} dbname=etf user=etf connect_timeout=2"

    def port(self, which: str) -> int:
        return {"primary": self.primary_port, "standby": self.standby_port}[which]

    # ------------------------------------------------------------------------------- lifecycle

    def start(self) -> PgCluster:
        """initdb + start the primary, create role and database etf, then the sync standby."""
        if self.base is not None:
            raise PgClusterError("already started; stop() first")
        self.base = Path(tempfile.mkdtemp(prefix="etf-pg-"))
        os.chmod(self.base, 0o755)
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        self._build()
        return self

    def rebuild(self) -> None:
        """A new cluster (new ports, empty etf) in the same temp dir, whatever state the old one was in.
        Reuses the first initdb's output, so it takes about 1.5 s."""
        if self.base is None:
            self.start()
            return
        self._stop_servers()
        for name in ("primary", "standby", "primary.log", "standby.log"):
            path = self.base / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        self._build()

    def _build(self) -> None:
        self.leader = "primary"
        self._started = set()
        try:
            self.primary_port, self.standby_port = _free_ports(2)
            self._initdb()
            self._start_node("primary")
            self._bootstrap()
            self._basebackup()
            self._start_node("standby")
            self.wait_sync()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both servers (fast, then immediate) and remove the temp dir. Idempotent."""
        if self.base is None:
            return
        self._stop_servers()
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def _stop_servers(self) -> None:
        for which in ("standby", "primary"):
            datadir = self._datadir(which)
            if (datadir / "postmaster.pid").exists():
                pid = self._postmaster_pid(which)
                if pid and self._alive(pid):
                    r = self._ctl(["stop", "-D", str(datadir), "-m", "fast", "-w", "-t", "15"], check=False)
                    if r.returncode != 0:
                        self._ctl(["stop", "-D", str(datadir), "-m", "immediate", "-w", "-t", "15"], check=False)
                else:
                    self._drop_shm(which)  # a killed postmaster leaves its SysV segment behind
            self._running[which] = False

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def healthy(self) -> bool:
        """The original topology: primary writable, standby in recovery and sync."""
        if self.base is None or self.leader != "primary" or not all(self._running.values()):
            return False
        try:
            if self.psql("SELECT pg_is_in_recovery()", port=self.primary_port, dbname="postgres") != "f":
                return False
            if self.psql("SELECT pg_is_in_recovery()", port=self.standby_port, dbname="postgres") != "t":
                return False
            return self._sync_state() == "sync"
        except Exception:
            return False

    def reset(self) -> None:
        """An empty database etf on a healthy primary + sync standby.

        A stopped standby is started again; any other damage (a killed primary, a promotion, a server
        gone) rebuilds the whole cluster on new ports (``rebuild()``). Waits until the standby has replayed the drop
        and create, so a test may read the standby at once."""
        if self.base is not None and self.leader == "primary" and self._running["primary"]:
            if not self._running["standby"]:
                with contextlib.suppress(PgClusterError):
                    self.start_standby()
        if not self.healthy():
            self.rebuild()
            return
        self.psql("DROP DATABASE IF EXISTS etf WITH (FORCE)", dbname="postgres")
        self.psql("CREATE DATABASE etf OWNER etf", dbname="postgres")
        self.wait_replayed()

    # ---------------------------------------------------------------------------------- faults

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster (a crash); returns once its port refuses connections."""
        pid = self._postmaster_pid("primary")
        if not pid:
            raise PgClusterError("primary has no postmaster.pid")
        children = self._children(pid)
        os.kill(pid, signal.SIGKILL)
        self._running["primary"] = False
        self._wait(lambda: not _port_open(self.primary_port), "the killed primary's port to close", "primary",
                   timeout=10)
        # its backends exit on postmaster death; give them a moment so none still holds a socket
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(self._alive(c) for c in children):
            time.sleep(0.05)

    def promote_standby(self) -> None:
        """``pg_ctl promote`` the standby; returns once it commits a write."""
        self._ctl(["promote", "-D", str(self._datadir("standby")), "-w", "-t", str(int(START_TIMEOUT))],
                  which="standby")

        def writable() -> bool:
            try:
                return self.psql("SELECT pg_is_in_recovery()", port=self.standby_port, dbname="postgres") == "f" \
                    and bool(self.psql("SELECT txid_current()", port=self.standby_port, dbname="postgres"))
            except Exception:
                return False

        self._wait(writable, "the promoted standby to accept writes", "standby")
        self.leader = "standby"

    def stop_standby(self) -> None:
        """Fast stop of the standby; commits on the primary then wait until it is back."""
        self._ctl(["stop", "-D", str(self._datadir("standby")), "-m", "fast", "-w", "-t", str(int(START_TIMEOUT))],
                  which="standby")
        self._running["standby"] = False

    def start_standby(self) -> None:
        """Start the standby again; returns once the primary sees it as sync."""
        self._start_node("standby")
        if self.leader == "primary":
            self.wait_sync()

    # -------------------------------------------------------------------------------- queries

    def psql(self, sql: str, port: int | None = None, dbname: str = "etf", user: str = "postgres") -> str:
        """Run ``sql`` (autocommit; several statements run as one implicit transaction) and return the last
        result as ``psql -At`` would: columns joined by ``|``, rows by newlines, NULL as empty, booleans as t/f.
        ``port`` None: the node that accepts writes."""
        import psycopg

        port = port or self.port(self.leader)
        with psycopg.connect(host=HOST, port=port, dbname=dbname, user=user, connect_timeout=5,
                             autocommit=True) as conn:
            cur = conn.execute(sql.encode())  # bytes: no placeholder parsing, '%' is literal
            rows: list = []
            while True:  # the last result that has rows
                if cur.description:
                    rows = cur.fetchall()
                if not cur.nextset():
                    break
        return "\n".join("|".join(_text(v) for v in row) for row in rows)

    def wait_sync(self, timeout: float = START_TIMEOUT) -> None:
        """Until pg_stat_replication on the primary shows s1 streaming with sync_state 'sync'."""
        self._wait(lambda: self._sync_state() == "sync", f"{SYNC_NAME} to be a sync standby", "standby",
                   timeout=timeout)

    def wait_replayed(self, timeout: float = START_TIMEOUT) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        lsn = self.psql("SELECT pg_current_wal_lsn()", port=self.primary_port, dbname="postgres")

        def replayed() -> bool:
            try:
                return self.psql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn", port=self.standby_port,
                                 dbname="postgres") == "t"
            except Exception:
                return False

        self._wait(replayed, f"the standby to replay up to {lsn}", "standby", timeout=timeout)

    def log_tail(self, which: str, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log of node "primary" or "standby"."""
        if self.base is None:
            return ""
        path = self.base / f"{which}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"({path}: {e})"

    # ------------------------------------------------------------------------------- internals

    def _datadir(self, which: str) -> Path:
        assert self.base is not None
        return self.base / which

    def _run(self, argv: list[str], which: str | None = None, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        kwargs: dict = {}
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            env["HOME"] = pw.pw_dir
        try:
            r = subprocess.run(argv, cwd=self.base, env=env, text=True, capture_output=True, timeout=timeout,
                               start_new_session=True, **kwargs)
        except subprocess.TimeoutExpired as e:
            raise self._error(f"{' '.join(argv)} timed out after {timeout} s", which) from e
        if check and r.returncode != 0:
            raise self._error(f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout}{r.stderr}", which)
        return r

    def _ctl(self, args: list[str], which: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bindir / "pg_ctl"), *args], which=which, check=check)

    def _error(self, what: str, which: str | None) -> PgClusterError:
        parts = [what]
        for w in [which] if which else ["primary", "standby"]:
            parts.append(f"--- {w} log ({self.base}/{w}.log), last lines:\n{self.log_tail(w)}")
        return PgClusterError("\n".join(parts))

    def _wait(self, ok, what: str, which: str | None, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if ok():
                return
            if time.monotonic() > deadline:
                raise self._error(f"timed out after {timeout} s waiting for {what}", which)
            time.sleep(0.05)

    def _initdb(self) -> None:
        assert self.base is not None
        datadir, template = self._datadir("primary"), self.base / "template"
        if not template.exists():  # initdb once per temp dir; a rebuild copies its output
            self._run([str(self.bindir / "initdb"), "-D", str(template), "-U", "postgres", "-A", "trust",
                       "-E", "UTF8", "--locale=C", "--no-sync"], which="primary")
        self._run(["cp", "-a", str(template), str(datadir)], which="primary")
        (datadir / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all all {HOST}/32 trust\n"
            "local replication all trust\n"
            f"host replication all {HOST}/32 trust\n")
        self._append_conf("primary", {
            "listen_addresses": f"'{HOST}'",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "fsync": "on",
            "synchronous_commit": "on",
            "synchronous_standby_names": f"'{SYNC_NAME}'",
            "hot_standby": "on",
            "max_connections": "100",
            "shared_buffers": "32MB",
            "wal_keep_size": "128MB",  # a standby stopped for a while catches up without a slot
            "log_line_prefix": "'%m [%p] %q%a '",
            "log_connections": "off",
        })

    def _append_conf(self, which: str, settings: dict[str, str]) -> None:
        # later lines win over earlier ones (and over what pg_basebackup copied from the primary)
        with open(self._datadir(which) / "postgresql.conf", "a") as f:
            f.write(f"\n# etf-engine tests ({which})\n")
            f.write("".join(f"{k} = {v}\n" for k, v in settings.items()))
            f.write(f"port = {self.port(which)}\nunix_socket_directories = '{self.base}'\n")

    def _start_node(self, which: str) -> None:
        datadir = self._datadir(which)
        for attempt in range(3):
            r = self._ctl(["start", "-D", str(datadir), "-l", str(self.base / f"{which}.log"), "-w",
                           "-t", str(int(START_TIMEOUT))], which=which, check=False)
            if r.returncode == 0:
                self._running[which] = True
                self._started.add(which)
                return
            if attempt < 2 and which not in self._started and "could not bind" in self.log_tail(which, 10):
                # someone took the free port meanwhile: another one (only before its first start, so
                # the DSNs never change under a test)
                new_port = _free_ports(1)[0]
                setattr(self, f"{which}_port", new_port)
                with open(datadir / "postgresql.conf", "a") as f:
                    f.write(f"port = {new_port}\n")
                continue
            break
        raise self._error(f"pg_ctl start ({which}, port {self.port(which)}) exited {r.returncode}:\n"
                          f"{r.stdout}{r.stderr}", which)

    def _bootstrap(self) -> None:
        # local: no standby yet, and with synchronous_standby_names set a sync commit would hang
        import psycopg

        with psycopg.connect(host=HOST, port=self.primary_port, dbname="postgres", user="postgres",
                             connect_timeout=5, autocommit=True, options="-c synchronous_commit=local") as conn:
            for sql in ("CREATE ROLE etf LOGIN", "GRANT pg_monitor TO etf", "CREATE DATABASE etf OWNER etf"):
                conn.execute(sql.encode())

    def _basebackup(self) -> None:
        conninfo = f"host={HOST} port={self.primary_port} user=postgres application_name={SYNC_NAME}"
        self._run([str(self.bindir / "pg_basebackup"), "-d", conninfo, "-D", str(self._datadir("standby")),
                   "-R", "-X", "stream", "-c", "fast", "--no-sync"], which="primary")
        auto = (self._datadir("standby") / "postgresql.auto.conf").read_text()
        if f"application_name={SYNC_NAME}" not in auto:
            raise PgClusterError(f"pg_basebackup -R wrote no application_name={SYNC_NAME}:\n{auto}")
        self._append_conf("standby", {"hot_standby": "on", "synchronous_standby_names": "''"})

    def _sync_state(self) -> str | None:
        try:
            out = self.psql(f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{SYNC_NAME}' "
                            "AND state = 'streaming'", port=self.primary_port, dbname="postgres")
        except Exception:
            return None
        return out or None

    def _postmaster_pid(self, which: str) -> int | None:
        try:
            return int((self._datadir(which) / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    @staticmethod
    def _children(ppid: int) -> list[int]:
        pids = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == str(ppid):
                pids.append(int(stat.split("/")[2]))
        return pids

    def _drop_shm(self, which: str) -> None:
        try:
            lines = (self._datadir(which) / "postmaster.pid").read_text().splitlines()
            shmid = lines[6].split()[1]
        except (OSError, IndexError):
            return
        if shutil.which("ipcrm"):
            subprocess.run(["ipcrm", "-m", shmid], capture_output=True, check=False)


def _text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "t" if v else "f"
    return str(v)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One primary + sync standby for the session; call ``reset()`` first in each test."""
    try:
        cluster = PgCluster()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        cluster.start()
    except PgClusterError as e:
        pytest.fail(f"PostgreSQL test cluster did not come up:\n{e}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
