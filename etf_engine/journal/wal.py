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
  log went on, so the bad frame is damage, not a tear; so is a frame whose checksum holds but whose
  salts were changed, and a damaged header with frames after it. The last frame of the log failing
  its checksum is a tear (SQLite writes a frame's header and its page in two writes, so a crash
  between them leaves the new header over an older frame's page) unless exactly one changed byte
  explains the failure: the checksum is linear, so that byte can be found (``_one_changed_byte``).

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


def _frame_name(index: int, frame_size: int) -> str:
    offset = HEADER_BYTES + index * frame_size
    return f"frame {index + 1} (bytes {offset}-{offset + frame_size - 1})"


def scan_wal(path: Path, page_size_hint: int = 0) -> WalScan:
    """Read and check every frame of the WAL at ``path``; JournalError naming the frame on damage."""
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
    end_of_run = complete  # the first frame SQLite will not use
    suspect: tuple[int, int, tuple[int, int], tuple[int, int]] | None = None  # a current frame failing its checksum
    seed = (c0, c1)  # the checksum stored before this frame: a frame is checked from its predecessor's
    prev_current = True  # the previous frame (or the header) has the header's salts
    for index in range(complete):
        offset = HEADER_BYTES + index * frame_size
        _page, commit_size, s1, s2, f0, f1 = _frame.unpack_from(data, offset)
        sums = wal_checksum(view[offset:offset + 8], seed[0], seed[1], big_endian)
        sums = wal_checksum(view[offset + FRAME_HEADER_BYTES:offset + frame_size], sums[0], sums[1], big_endian)
        current = (s1, s2) == (salt1, salt2)
        checks = sums == (f0, f1)
        if end_of_run == complete and current and checks:
            if commit_size:
                keep_frames = index + 1
        else:
            where = _frame_name(index, frame_size)
            if end_of_run == complete:
                end_of_run = index
            if current and (checks or suspect is not None):
                raise _damage(path, _frame_name(end_of_run, frame_size), f"bad checksum or salts, but {where} of "
                              "the same WAL generation follows it")
            if current:
                suspect = (index, offset, seed, (f0, f1))
            elif checks and prev_current:
                raise _damage(path, where, "its checksum holds but its salts differ from the WAL header's")
        seed = (f0, f1)
        prev_current = current
    if suspect is not None:
        # The last frame of the log fails its checksum. A crash between SQLite's two writes of a frame
        # (its header, then its page) leaves the new header over an older frame's page: a torn tail.
        # One changed byte is damage, and shows as a checksum difference that only it explains.
        index, offset, seed, stored = suspect
        changed = _changed_bytes(view[offset:offset + frame_size], seed, stored, big_endian)
        if changed:
            at = (f"byte {offset + changed[0]}" if len(changed) == 1 else
                  f"one of {len(changed)} bytes that give the same sum, the first at byte {offset + changed[0]}")
            raise _damage(path, _frame_name(index, frame_size),
                          f"its checksum fails as one changed byte makes it fail ({at}), not as a torn write")
    keep_bytes = HEADER_BYTES + keep_frames * frame_size if keep_frames else 0
    partial = end_of_run == complete and size > HEADER_BYTES + complete * frame_size
    return WalScan(path, keep_frames, keep_bytes, end_of_run - keep_frames + partial, size)


def _changed_bytes(frame: memoryview, seed: tuple[int, int], stored: tuple[int, int],
                   big_endian: bool) -> list[int]:
    """The offsets in ``frame`` of every byte whose change alone explains why its checksum fails (none
    for a torn write, whose page is another frame's data).

    The checksum is linear modulo 2**32: for the pairs of 32-bit words (x0, x1) it sums,
    (s0, s1) <- A (s0, s1) + B (x0, x1) with A = [[1, 1], [1, 2]] and B = [[1, 0], [1, 1]]. A change d
    of one word of pair j moves the final sum by d * A^(n-1-j) B e, for e the word's unit vector; A and
    B are invertible, so one odd component gives d by a modular inverse. Then d must be a change of
    exactly one byte of the word as stored. A change of a word's high byte is seen only through the low
    bits of the sum, so some changes have more than one candidate (a changed byte of the stored checksum
    is one too).
    """
    computed = wal_checksum(frame[:8], seed[0], seed[1], big_endian)
    computed = wal_checksum(frame[FRAME_HEADER_BYTES:], computed[0], computed[1], big_endian)
    as_stored = struct.pack(">II", *stored)
    as_computed = struct.pack(">II", *computed)
    differing = [k for k in range(8) if as_stored[k] != as_computed[k]]
    found = [16 + differing[0]] if len(differing) == 1 else []
    d0, d1 = (computed[0] - stored[0]) & MASK, (computed[1] - stored[1]) & MASK
    order = ">" if big_endian else "<"
    words = struct.unpack(f"{order}2I", frame[:8]) + struct.unpack(f"{order}{(len(frame) - 24) // 4}I", frame[24:])
    pairs = len(words) // 2
    p = ((1, 0), (0, 1))  # A^(pairs-1-j), from the last pair back
    for j in range(pairs - 1, -1, -1):
        for word, v in ((0, (p[0][0] + p[0][1], p[1][0] + p[1][1])), (1, (p[0][1], p[1][1]))):
            v0, v1 = v[0] & MASK, v[1] & MASK
            if v0 & 1:
                d = d0 * pow(v0, -1, 1 << 32) & MASK
                fits = d * v1 & MASK == d1
            elif v1 & 1:
                d = d1 * pow(v1, -1, 1 << 32) & MASK
                fits = d * v0 & MASK == d0
            else:
                continue
            if not fits:
                continue
            now = words[2 * j + word]
            before = struct.pack(f"{order}I", (now - d) & MASK)
            after = struct.pack(f"{order}I", now)
            bytes_changed = [k for k in range(4) if before[k] != after[k]]
            if len(bytes_changed) == 1:
                position = 4 * (2 * j + word) + bytes_changed[0]
                found.append(position if position < 8 else position + 16)  # header words, then the page
        p = ((p[0][0] + p[0][1], p[0][0] + 2 * p[0][1]), (p[1][0] + p[1][1], p[1][0] + 2 * p[1][1]))
        p = tuple(tuple(x & MASK for x in row) for row in p)  # type: ignore[assignment]
    return sorted(found)


def discard_torn_tail(scan: WalScan) -> None:
    """Cut the WAL after its last commit, durably, so that a later scan never meets the torn frames
    again behind newer ones (they would look like damage)."""
    fd = os.open(scan.path, os.O_RDWR)
    try:
        os.ftruncate(fd, scan.keep_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)
