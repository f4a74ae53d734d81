"""Small, valid disk images made in pure Python, for the image upload (R2) and every boot that follows.

Glance inspects uploaded data and rejects a declared `disk_format` that does not match the bytes, so the suite
writes a real qcow2 (version 2, 64 KiB clusters, no backing file, every data cluster allocated) rather than
random bytes. The data is deterministic for a given size, so the checksum is reproducible. The image holds no
operating system: a hypervisor starts it (ACTIVE is all R2 and the burst need), it does not boot an OS.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
from pathlib import Path

CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS
_COPIED = 1 << 63  # QCOW_OFLAG_COPIED: refcount is exactly 1, as every cluster here
_L2_ENTRIES = CLUSTER // 8
_REFCOUNTS_PER_BLOCK = CLUSTER // 2  # 16-bit refcounts (version 2 has no refcount_order)
_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")  # the 72-byte version 2 header
MIB = 1024 * 1024


@dataclass(frozen=True)
class ImageFile:
    path: Path
    disk_format: str
    size: int  # bytes on disk, what Glance reports as `size`
    virtual_size: int
    md5: str  # Glance's legacy `checksum`
    sha512: str  # Glance's `os_hash_value` with the default `os_hash_algo`


def _data(size: int, seed: int) -> bytes:
    # Deterministic, incompressible-looking bytes: the upload measures throughput, not a compressor.
    rng = random.Random(seed)
    chunk = 16 * MIB  # randbytes counts bits in a C int: generate in chunks
    return b"".join(rng.randbytes(min(chunk, size - at)) for at in range(0, size, chunk))


def qcow2_bytes(data_mb: int, virtual_gb: int = 1, seed: int = 2) -> bytes:
    """A qcow2 image whose first `data_mb` MiB of guest disk are allocated with deterministic data."""
    virtual_size = virtual_gb * 1024 * MIB
    data_clusters = data_mb * MIB // CLUSTER
    if data_clusters * CLUSTER > virtual_size:
        raise ValueError("data larger than the virtual size")
    l1_size = -(-virtual_size // (CLUSTER * _L2_ENTRIES))
    l2_tables = max(1, -(-data_clusters // _L2_ENTRIES))
    l1_clusters = max(1, -(-l1_size * 8 // CLUSTER))
    # Layout, one cluster each unless said: header | refcount table | refcount block | L1 | L2s | data.
    refcount_table_off = 1 * CLUSTER
    refcount_block_off = 2 * CLUSTER
    l1_off = 3 * CLUSTER
    l2_off = l1_off + l1_clusters * CLUSTER
    data_off = l2_off + l2_tables * CLUSTER
    total_clusters = data_off // CLUSTER + data_clusters
    if total_clusters > _REFCOUNTS_PER_BLOCK:
        raise ValueError("image too large for one refcount block (2 GiB)")

    header = _HEADER.pack(b"QFI\xfb", 2, 0, 0, CLUSTER_BITS, virtual_size, 0, l1_size, l1_off,
                          refcount_table_off, 1, 0, 0)
    out = bytearray(data_off)
    out[: len(header)] = header
    struct.pack_into(">Q", out, refcount_table_off, refcount_block_off)
    struct.pack_into(f">{total_clusters}H", out, refcount_block_off, *([1] * total_clusters))
    for t in range(l2_tables):
        struct.pack_into(">Q", out, l1_off + 8 * t, (l2_off + t * CLUSTER) | _COPIED)
    for c in range(data_clusters):
        struct.pack_into(">Q", out, l2_off + 8 * c, (data_off + c * CLUSTER) | _COPIED)
    out += _data(data_clusters * CLUSTER, seed)
    return bytes(out)


def raw_bytes(data_mb: int, seed: int = 2) -> bytes:
    # Zero the first sector so no partition-table or filesystem signature can appear by chance.
    body = bytearray(_data(data_mb * MIB, seed))
    body[:512] = bytes(512)
    return bytes(body)


def make_image(directory: Path | str, size_mb: int, disk_format: str = "qcow2",
               name: str = "image") -> ImageFile:
    """Write an image of about `size_mb` MiB into `directory` and return its facts (hashes, sizes)."""
    if disk_format == "qcow2":
        content = qcow2_bytes(size_mb)
        virtual = struct.unpack_from(">Q", content, 24)[0]
    elif disk_format == "raw":
        content = raw_bytes(size_mb)
        virtual = len(content)
    else:
        raise ValueError(f"unsupported disk format {disk_format!r} (qcow2 or raw)")
    path = Path(directory) / f"{name}.{disk_format}"
    path.write_bytes(content)
    return ImageFile(path=path, disk_format=disk_format, size=len(content), virtual_size=virtual,
                     md5=hashlib.md5(content).hexdigest(), sha512=hashlib.sha512(content).hexdigest())
