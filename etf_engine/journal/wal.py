"""SQLite's write-ahead log, read frame by frame before SQLite opens it.

SQLite takes the first WAL frame whose checksum or salts do not match as the end of the log and
silently ignores every frame after it, committed or not: one flipped byte in the middle of the WAL
would lose every acknowledged commit after it, and the next order would reuse their ids. So start-up
and ``etf-engine verify`` read the WAL themselves (https://www.sqlite.org/fileformat.html#the_write_ahead_log)
and tell three things apart:

- frames SQLite will use: from the header on, each frame with the header's salts and the cumulative
  checksum, up to the last commit frame among them;
- a torn tail: after the last such commit, frames of a transaction that never got its commit frame,
  or a frame cut short by the end of the file. That commit was never acknowledged (a reply waits for
  the commit's fsync), so it may be discarded;
- damage: anything else that SQLite would drop. A frame of the current generation (the header's
  salts, a checksum that holds from the frame before it) after the first bad frame proves that the
  log went on, so the bad frame is damage, not a tear; so is a complete frame with the header's
  salts and a bad checksum anywhere, a frame whose checksum holds but whose salts were changed, and
  a damaged header with frames after it.

Frames of an older generation (other salts, left behind when SQLite restarted the log from its
beginning) are not part of the log and are ignored, as SQLite ignores them.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from etf_engine.journal.records import JournalError

MAGIC_LE, MAGIC_BE = 0x377F0682, 0x377F0683
FORMAT_VERSION = 3007000
HEADER_BYTES = 32
FRAME_HEADER_BYTES = 24
_header = struct.Struct(">IIIIIIII")
_frame = struct.Struct(">IIIIII")
MASK = 0xFFFFFFFF


def wal_checksum_py(data: bytes | memoryview, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """The checksum in plain Python (~0.2 ms per 4 KiB page): the oracle for the compiled one, and the
    fallback where the extension is not built."""
    if len(data) % 8:
        raise ValueError("WAL checksum input must be a multiple of 8 bytes")
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & MASK
        s1 = (s1 + words[i + 1] + s0) & MASK
    return s0, s1


try:
    from etf_engine.journal._walsum import wal_checksum
except ImportError:  # not built (a source checkout without build_ext): correct, only slower
    wal_checksum = wal_checksum_py


@dataclass(frozen=True)
class WalScan:
    """What the WAL holds. ``keep_bytes``: the length that ends with the last commit SQLite will use."""

    path: Path
    committed_frames: int  # frames up to and including the last valid commit frame
    keep_bytes: int
    torn_frames: int  # frames after it that belong to no commit (complete or cut short)
    file_bytes: int

    @property
    def torn(self) -> bool:
        return self.file_bytes > self.keep_bytes and self.torn_frames > 0


def _damage(path: Path, where: str, what: str) -> JournalError:
    return JournalError(f"journal WAL {path} is damaged at {where}: {what}; refusing to start "
                        "(SQLite would silently drop every commit after it)")


def scan_wal(path: Path, page_size_hint: int = 0, *, live: bool = False) -> WalScan:
    """Read and check every frame of the WAL at ``path``; JournalError naming the frame on damage.
    ``live``: a server may be writing the WAL meanwhile, so the last frame of the current generation
    may be half-written (its header before its page): that one is a tail being written, not damage."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return WalScan(path, 0, 0, 0, 0)
    except OSError as error:
        raise JournalError(f"cannot read journal WAL {path}: {error.strerror or error}") from error
    size = len(data)
    if size < HEADER_BYTES:
        # SQLite writes the header before any frame: a short file holds no commit, only a torn header.
        return WalScan(path, 0, 0, 1 if size else 0, size)
    magic, version, page_size, _ckpt, salt1, salt2, c0, c1 = _header.unpack_from(data, 0)
    big_endian = magic == MAGIC_BE
    header_ok = (magic in (MAGIC_LE, MAGIC_BE) and version == FORMAT_VERSION
                 and 512 <= page_size <= 65536 and page_size & (page_size - 1) == 0
                 and wal_checksum(memoryview(data)[:24], 0, 0, big_endian) == (c0, c1))
    if not header_ok:
        frame_size = FRAME_HEADER_BYTES + (page_size_hint or 4096)
        if size >= HEADER_BYTES + frame_size and any(data[HEADER_BYTES:]):
            raise _damage(path, "its header (bytes 0-31)", "bad magic, version, page size or checksum, "
                          f"with {(size - HEADER_BYTES) // frame_size} frames after it")
        return WalScan(path, 0, 0, 1 if size > HEADER_BYTES else 0, size)
    if page_size_hint and page_size != page_size_hint:
        raise _damage(path, "its header (bytes 0-31)", f"page size {page_size}, but the database's is "
                      f"{page_size_hint}")
    frame_size = FRAME_HEADER_BYTES + page_size
    view = memoryview(data)
    complete = (size - HEADER_BYTES) // frame_size
    keep_frames = 0  # frames up to the last commit SQLite will use
    valid_run = True  # every frame so far passed SQLite's own test
    first_bad = -1
    seed = (c0, c1)  # the checksum stored before this frame: a frame is checked from its predecessor's
    prev_current = True  # the previous frame (or the header) has the header's salts
    for index in range(complete):
        offset = HEADER_BYTES + index * frame_size
        _page, commit_size, s1, s2, f0, f1 = _frame.unpack_from(data, offset)
        sums = wal_checksum(view[offset:offset + 8], seed[0], seed[1], big_endian)
        sums = wal_checksum(view[offset + FRAME_HEADER_BYTES:offset + frame_size], sums[0], sums[1], big_endian)
        current = (s1, s2) == (salt1, salt2)
        checks = sums == (f0, f1)
        where = f"frame {index + 1} (bytes {offset}-{offset + frame_size - 1})"
        if valid_run and current and checks:
            if commit_size:
                keep_frames = index + 1
        else:
            if valid_run:
                valid_run, first_bad = False, index
            if current and checks:
                raise _damage(path, f"frame {first_bad + 1}", f"bad checksum or salts, but {where} and maybe "
                              "more frames of the same WAL generation follow it")
            if current and not live:
                raise _damage(path, where, "checksum mismatch in a complete frame of the current WAL generation")
            if checks and prev_current:
                raise _damage(path, where, "its checksum holds but its salts differ from the WAL header's")
        seed = (f0, f1)
        prev_current = current
    keep_bytes = HEADER_BYTES + keep_frames * frame_size if keep_frames else 0
    end_of_run = first_bad if first_bad >= 0 else complete
    torn = end_of_run - keep_frames + (1 if valid_run and size > HEADER_BYTES + complete * frame_size else 0)
    return WalScan(path, keep_frames, keep_bytes, torn, size)


def discard_torn_tail(scan: WalScan) -> None:
    """Cut the WAL after its last commit, durably, so that a later scan never meets the torn frames
    again behind newer ones (they would look like damage)."""
    fd = os.open(scan.path, os.O_RDWR)
    try:
        os.ftruncate(fd, scan.keep_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)
