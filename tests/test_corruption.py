"""The corruption sweep (SPEC §11): one flipped byte anywhere in a data directory is either refused,
naming the file, or provably harmless (the same state digest). Never a silent loss, never a reused id.

The directory is made by the real server: a first session stopped cleanly (its records checkpointed
into the database file, a snapshot written), then a second one under load from concurrent dealers,
killed with SIGKILL (its records still in the WAL). Each case copies that directory, flips one byte
of the WAL, the database file or the snapshot, and then runs both readers on it: ``etf-engine
verify``'s check of every record, and the server's start-up (WAL scan, quick_check, snapshot, replay).

The suite runs CASES cases (well under 30 s); ``ETF_CORRUPTION_CASES=2000 pytest tests/test_corruption.py``
runs a larger sweep.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from etf_engine import model as M
from etf_engine._core import Ledger
from etf_engine.client import EtfClient
from etf_engine.journal import JournalError, SqliteJournal, recover, state_digest, verify
from etf_engine.journal.wal import FRAME_HEADER_BYTES, HEADER_BYTES
from tests.test_crash import ENV, deal, load_fund, start, write_config

CASES = int(os.environ.get("ETF_CORRUPTION_CASES", "120"))
FILES = ("journal.sqlite3-wal", "journal.sqlite3", "snapshot.bin")


def run_server_and_kill(tmp: Path) -> tuple[Path, int]:
    """A data directory as a crash leaves it: checkpointed records, a snapshot, and a WAL of acknowledged
    commits. Returns it and the number of orders acknowledged."""
    config = write_config(tmp)
    acked: dict = {}
    proc, target = start(config)
    load_fund(target)
    with EtfClient(target, "crash-ap-1") as dealer:
        for i in range(40):
            dealer.submit_order("F-1", "CREATE" if i % 2 else "REDEEM", 1, f"first-{i}")
    proc.terminate()  # clean stop: the WAL is checkpointed into the database file, a snapshot is written
    assert proc.wait(timeout=30) == 0
    proc, target = start(config)
    stop = threading.Event()
    dealers = [threading.Thread(target=deal, args=(target, pid, 0, acked, {}, stop)) for pid in ("AP-1", "AP-2")]
    for dealer in dealers:
        dealer.start()
    deadline = time.monotonic() + 20
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    stop.set()
    for dealer in dealers:
        dealer.join(timeout=30)
    time.sleep(1.5)  # the checkpointer notices its server is gone and exits (it never writes SQLite)
    return tmp / "data", len(acked)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, int]]:
    tmp = tmp_path_factory.mktemp("sweep")
    data, acked = run_server_and_kill(tmp)
    pristine = tmp / "pristine"
    shutil.copytree(data, pristine)
    digest, records = read_offline(copy_of(pristine, tmp / "baseline"))
    yield pristine, digest, records


def copy_of(source: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return target


def read_offline(data: Path) -> tuple[str, int]:
    """What ``etf-engine verify`` checks: every record, the snapshot against them."""
    journal = SqliteJournal(data, lock=False, check=True)
    try:
        ledger = verify(journal, Ledger())
        return state_digest(ledger.state(journal.last_at)), journal.last_seq
    finally:
        journal.close()


def start_up(data: Path) -> tuple[str, int]:
    """What the server does at start: owner checks, the snapshot, the records after it."""
    journal = SqliteJournal(data)
    try:
        ledger = recover(journal, Ledger())
        return state_digest(ledger.state(journal.last_at)), journal.last_seq
    finally:
        journal.close()


def offsets(pristine: Path, count: int) -> list[tuple[str, int]]:
    """``count`` (file, offset) cases: the WAL's header and every part of its frame headers, then random
    bytes of each file, the WAL weighted most (it holds the acknowledged commits SQLite could drop)."""
    rng = random.Random(20261203)
    sizes = {name: (pristine / name).stat().st_size for name in FILES}
    frame = FRAME_HEADER_BYTES + 4096
    frames = len(wal_frames(pristine / "journal.sqlite3-wal"))
    sizes["journal.sqlite3-wal"] = HEADER_BYTES + frames * frame  # the log, not the zeros after it
    assert frames > 4, sizes
    cases = [("journal.sqlite3-wal", o) for o in (0, 5, 11, 15, 19, 23, 27, 31)]
    for index in (0, frames // 2, frames - 1):  # first, middle and last frame: each field of its header
        base = HEADER_BYTES + index * frame
        cases += [("journal.sqlite3-wal", base + o) for o in (1, 6, 10, 14, 18, 22, 200)]
    weights = {"journal.sqlite3-wal": 0.5, "journal.sqlite3": 0.35, "snapshot.bin": 0.15}
    while len(cases) < count:
        name = rng.choices(FILES, [weights[f] for f in FILES])[0]
        cases.append((name, rng.randrange(sizes[name])))
    return cases[:count]


def outcome(reader, data: Path) -> tuple[str, object]:
    try:
        return "read", reader(data)
    except JournalError as error:
        return "refused", str(error)


def test_corruption_sweep(crashed: tuple[Path, str, int], tmp_path: Path) -> None:
    pristine, digest, records = crashed
    silent: list[str] = []
    unnamed: list[str] = []
    tally = {"refused": 0, "harmless": 0}
    masks = random.Random(7)
    for name, offset in offsets(pristine, CASES):
        mask = masks.choice((0x01, 0x10, 0x80, 0xFF, masks.randrange(1, 256)))  # one bit, all bits, any
        for reader in (read_offline, start_up):
            case = copy_of(pristine, tmp_path / "case")
            data = bytearray((case / name).read_bytes())
            data[offset] ^= mask
            (case / name).write_bytes(bytes(data))
            kind, result = outcome(reader, case)
            label = f"{reader.__name__} with byte {offset} of {name} XOR {mask:#04x}"
            if kind == "refused":
                tally["refused"] += 1
                if not any(f in str(result) for f in FILES):
                    unnamed.append(f"{label}: {result}")
            elif result == (digest, records):
                tally["harmless"] += 1
            else:
                silent.append(f"{label}: {result[1]} of {records} records, digest {result[0][:12]}")
    assert not silent, f"silent damage in {len(silent)} cases:\n" + "\n".join(silent[:20])
    assert not unnamed, "refusals that name no file:\n" + "\n".join(unnamed[:20])
    assert tally["refused"] > 0 and tally["harmless"] > 0, tally


def test_pristine_directory_reads_whole(crashed: tuple[Path, str, int], tmp_path: Path) -> None:
    """The baseline the sweep compares with: start-up and verify agree, and the WAL held commits."""
    pristine, digest, records = crashed
    assert start_up(copy_of(pristine, tmp_path / "a")) == (digest, records)
    assert records > 150


def test_verify_command_names_the_frame(crashed: tuple[Path, str, int], tmp_path: Path) -> None:
    """The case of the report: a flipped byte in a WAL frame in the middle (SQLite alone would drop
    every later commit): ``etf-engine verify`` exits 1 with one line naming the file and the frame."""
    pristine, _, _ = crashed
    case = copy_of(pristine, tmp_path / "case")
    wal = case / "journal.sqlite3-wal"
    data = bytearray(wal.read_bytes())
    frames = len(wal_frames(wal))
    middle = HEADER_BYTES + (frames // 2) * (FRAME_HEADER_BYTES + 4096) + 100
    data[middle] ^= 0x01
    wal.write_bytes(bytes(data))
    result = subprocess.run([sys.executable, "-m", "etf_engine.cli", "verify", "--data-dir", str(case)],
                            env=ENV, text=True, capture_output=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{wal}" in lines[0] and f"frame {frames // 2 + 1} " in lines[0], lines
    assert wal.read_bytes() == bytes(data)  # verify changed nothing


def wal_frames(wal: Path) -> list[tuple[int, int]]:
    """(offset, commit size) of every complete frame of a WAL's log: up to the first frame without the
    header's salts (the zeros the journal writes the file out with, or an older generation's frames)."""
    data = wal.read_bytes()
    frame = FRAME_HEADER_BYTES + 4096
    found = []
    for o in range(HEADER_BYTES, len(data) - frame + 1, frame):
        if data[o + 8:o + 16] != data[16:24]:
            break
        found.append((o, int.from_bytes(data[o + 4:o + 8], "big")))
    return found


def test_torn_tail_is_discarded_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A commit cut off by a crash (its frames written, its commit frame never): start-up discards it,
    says so in the log and cuts it from the WAL; verify reports it and changes nothing."""
    from tests.test_journal import NOW, commands, run_into

    live = tmp_path / "live"
    journal = SqliteJournal(live)
    ledger = Ledger()
    cmds = commands()
    run_into(journal, ledger, cmds[:-1])
    before = state_digest(ledger.state(journal.last_at)), journal.last_seq
    big = [event for i in range(300) for event in ledger.execute(M.RegisterAsset(symbol=f"A{i:03d}", decimals=2),
                                                                  NOW)[1]]
    asyncio.run(journal.append(big))  # one commit of 300 records: several frames
    crashed = copy_of(live, tmp_path / "crashed")  # as a crash leaves it: the WAL still holds the commits
    journal.close()
    wal = crashed / "journal.sqlite3-wal"
    frames = wal_frames(wal)
    commits = [i for i, (_, size) in enumerate(frames) if size]
    last_start = commits[-2] + 1  # the big commit's first frame
    assert commits[-1] - last_start >= 2, "the big commit should span several frames"
    cut = frames[last_start + 1][0]  # its first frame written, the rest (and the commit frame) never
    wal.write_bytes(wal.read_bytes()[:cut])

    assert read_offline(crashed) == before
    assert wal.stat().st_size == cut  # verify cut nothing
    with caplog.at_level("WARNING", logger="etf_engine.journal.sqlite"):
        owner = SqliteJournal(crashed)
    assert "discarded a torn tail of 1 frame(s)" in caplog.text and str(wal) in caplog.text
    assert wal.stat().st_size == frames[last_start][0]  # cut after the last commit, before SQLite opened it
    assert state_digest(recover(owner, Ledger()).state(owner.last_at)) == before[0]
    owner.close()
    caplog.clear()
    with caplog.at_level("WARNING", logger="etf_engine.journal.sqlite"):
        assert start_up(crashed) == before
    assert "torn tail" not in caplog.text


def test_frame_cut_short_is_a_torn_tail(crashed: tuple[Path, str, int], tmp_path: Path) -> None:
    """The last frame cut in the middle (the disk filled, or power failed, during the last write): that
    commit never returned, so start-up may drop it; every earlier commit is still there."""
    pristine, _, records = crashed
    case = copy_of(pristine, tmp_path / "case")
    wal = case / "journal.sqlite3-wal"
    last_offset, size = wal_frames(wal)[-1]
    assert size, "the WAL of a killed server ends with a commit frame"
    wal.write_bytes(wal.read_bytes()[:last_offset + 1000])
    _, seq = start_up(case)
    assert 0 < records - seq < 50  # the last commit only (one group commit of a few orders)


def test_serve_refuses_a_damaged_wal_in_one_line(crashed: tuple[Path, str, int], tmp_path: Path) -> None:
    """`etf-engine serve` on the same damage: exit 1 before it listens, one line naming file and frame."""
    pristine, _, _ = crashed
    case = copy_of(pristine, tmp_path / "case")
    wal = case / "journal.sqlite3-wal"
    data = bytearray(wal.read_bytes())
    data[HEADER_BYTES + FRAME_HEADER_BYTES + 4096 + 500] ^= 0x40  # the second frame's page
    wal.write_bytes(bytes(data))
    config = tmp_path / "engine.toml"
    config.write_text(f'listen = "127.0.0.1:0"\ndata_dir = "{case}"\n')
    result = subprocess.run([sys.executable, "-m", "etf_engine.cli", "serve", "--config", str(config)], env=ENV,
                            text=True, capture_output=True, timeout=60)
    assert result.returncode == 1 and "listening" not in result.stdout
    lines = [line for line in result.stderr.strip().splitlines() if "WARNING: no [[principals]]" not in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(wal) in lines[0] and "frame 2 " in lines[0] and "refusing to start" in lines[0], lines[0]
    assert wal.read_bytes() == bytes(data)  # the evidence is left as it was found


def test_frame_torn_between_its_two_writes_is_a_torn_tail(crashed: tuple[Path, str, int], tmp_path: Path) -> None:
    """SQLite writes a frame's header, then its page. Killed between the two where the WAL is being
    reused, the last frame has the new header over an older frame's page: a tear, not damage."""
    pristine, _, records = crashed
    case = copy_of(pristine, tmp_path / "case")
    wal = case / "journal.sqlite3-wal"
    data = bytearray(wal.read_bytes())
    frames = wal_frames(wal)
    last, older = frames[-1][0], frames[len(frames) // 3][0]
    data[last + FRAME_HEADER_BYTES:last + FRAME_HEADER_BYTES + 4096] = \
        data[older + FRAME_HEADER_BYTES:older + FRAME_HEADER_BYTES + 4096]
    wal.write_bytes(bytes(data))
    _, seq = read_offline(copy_of(case, tmp_path / "offline"))
    assert 0 < records - seq < 50  # the last commit is gone, every earlier one is there
    assert start_up(case)[1] == seq


@pytest.mark.parametrize("big_endian", [False, True])
def test_one_changed_byte_is_found_exactly(big_endian: bool) -> None:
    """The checksum's algebra finds the changed byte of a frame among its candidates wherever it is,
    whatever the change; a page replaced by other data is not taken for one."""
    from etf_engine.journal.wal import _changed_bytes, wal_checksum

    rng = random.Random(11)
    for _ in range(40):
        frame = bytearray(rng.randbytes(FRAME_HEADER_BYTES + 4096))
        seed = (rng.getrandbits(32), rng.getrandbits(32))
        sums = wal_checksum(bytes(frame[:8]), *seed, big_endian)
        stored = wal_checksum(bytes(frame[FRAME_HEADER_BYTES:]), *sums, big_endian)
        frame[16:24] = stored[0].to_bytes(4, "big") + stored[1].to_bytes(4, "big")
        position = rng.choice([*range(0, 8), *range(16, 24), *range(FRAME_HEADER_BYTES, len(frame))])
        damaged = bytearray(frame)
        damaged[position] ^= rng.randrange(1, 256)
        found_stored = (int.from_bytes(damaged[16:20], "big"), int.from_bytes(damaged[20:24], "big"))
        assert position in _changed_bytes(memoryview(bytes(damaged)), seed, found_stored, big_endian)
        stale = bytes(frame[:FRAME_HEADER_BYTES]) + rng.randbytes(4096)
        assert _changed_bytes(memoryview(stale), seed, stored, big_endian) == []
