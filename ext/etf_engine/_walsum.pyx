# cython: language_level=3
"""SQLite's WAL checksum (the Fletcher-like sum of https://www.sqlite.org/fileformat.html#checksum_algorithm),
compiled: start-up checks every frame of the WAL, and in pure Python that costs ~0.2 ms per 4 KiB page."""

from libc.stdint cimport uint32_t


def wal_checksum(const unsigned char[:] data, uint32_t s0, uint32_t s1, bint big_endian):
    """(s0, s1) after summing ``data`` (a multiple of 8 bytes) as 32-bit words in the WAL's byte order,
    starting from (s0, s1); arithmetic is modulo 2**32 as in SQLite."""
    cdef Py_ssize_t i, n = data.shape[0]
    cdef uint32_t x0, x1
    if n % 8:
        raise ValueError("WAL checksum input must be a multiple of 8 bytes")
    with nogil:
        i = 0
        while i < n:
            if big_endian:
                x0 = (<uint32_t>data[i] << 24) | (<uint32_t>data[i + 1] << 16) | (<uint32_t>data[i + 2] << 8) | data[i + 3]
                x1 = (<uint32_t>data[i + 4] << 24) | (<uint32_t>data[i + 5] << 16) | (<uint32_t>data[i + 6] << 8) | data[i + 7]
            else:
                x0 = (<uint32_t>data[i + 3] << 24) | (<uint32_t>data[i + 2] << 16) | (<uint32_t>data[i + 1] << 8) | data[i]
                x1 = (<uint32_t>data[i + 7] << 24) | (<uint32_t>data[i + 6] << 16) | (<uint32_t>data[i + 5] << 8) | data[i + 4]
            s0 = s0 + x0 + s1
            s1 = s1 + x1 + s0
            i += 8
    return s0, s1
