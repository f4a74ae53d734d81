"""The suite's own image: a small, valid disk image made in pure Python, and its upload to Glance (R2), which
every boot that follows uses.

Glance inspects uploaded data and rejects a declared `disk_format` that does not match the bytes, so the suite
writes a real qcow2 (version 2, 64 KiB clusters, no backing file, every data cluster allocated) rather than
random bytes. The data is deterministic for a given size, so the checksum is reproducible. The image holds no
operating system: a hypervisor starts it (ACTIVE is all R2 and the burst need), it does not boot an OS.

    image = upload_image(cloud, tracker, make_image(folder, 64), timeout_s=600)   # UploadedImage, timed
    images = ImageCache(tracker, image_file, timeout_s)   # one upload per project and region per run
    image_id = require_image(images.get(cloud))           # skips the check when the upload failed (R2's FAIL)
"""

from __future__ import annotations

import hashlib
import random
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc
from openstack.image.v2.image import Image

from conformance.cloud import Busy, api_error_text
from conformance.errors import CloudFault, first_line
from conformance.resources import RUN_KEY, Tracker, Waiter

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

    header = _HEADER.pack(
        b"QFI\xfb", 2, 0, 0, CLUSTER_BITS, virtual_size, 0, l1_size, l1_off, refcount_table_off, 1, 0, 0
    )
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


def make_image(directory: Path | str, size_mb: int, disk_format: str = "qcow2", name: str = "image") -> ImageFile:
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
    return ImageFile(
        path=path,
        disk_format=disk_format,
        size=len(content),
        virtual_size=virtual,
        md5=hashlib.md5(content).hexdigest(),
        sha512=hashlib.sha512(content).hexdigest(),
    )


# ------------------------------------------------------------------------------------------------ upload
@dataclass
class UploadedImage:
    scope: str
    id: str | None = None
    name: str = ""
    upload_s: float | None = None
    active_s: float | None = None
    size: int | None = None
    checksum: str | None = None
    os_hash_value: str | None = None
    status: str = ""
    error: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return bool(self.id) and self.status == "active" and not self.error


class ImageCache:
    """One upload per project and region per run, shared by every check that boots (R2 measures it)."""

    def __init__(self, tracker: Tracker, image_file, timeout_s: float, worker: str | None = None):
        self.tracker, self.file, self.timeout_s = tracker, image_file, timeout_s
        # Under xdist each worker uploads its own, named apart: a cleanup also deletes what shares a tracked
        # resource's name (a create retried after a timeout may have been carried out twice), so a worker that
        # finished first deleted the image another worker was about to boot ("Can not find requested image").
        self.suffix = f"-{worker}" if worker else ""
        self._images: dict[str, UploadedImage] = {}

    def get(self, cloud) -> UploadedImage:
        if cloud.scope not in self._images:
            self._images[cloud.scope] = upload_image(cloud, self.tracker, self.file, self.timeout_s, suffix=self.suffix)
        return self._images[cloud.scope]


def require_image(image: UploadedImage) -> str:
    """The image id for a boot; skips the check (cannot decide) when the upload itself failed (R2's FAIL)."""
    if not image.usable:
        pytest.skip(f"no image to boot: the upload failed ({image.error or image.status}; see R2)")
    return image.id


def upload_image(cloud, tracker: Tracker, image_file, timeout_s: float, suffix: str = "") -> UploadedImage:
    """Create, upload and wait for `active`; verify size and hashes against the local file."""
    conn = cloud.conn
    name = tracker.name(f"image-{cloud.role}{suffix}", cloud)
    result = UploadedImage(scope=cloud.scope, name=name)
    item = tracker.intent("image", name, cloud)
    start = time.monotonic()
    try:
        # The record, then the data (two calls, as Glance's API has it): the upload is timed on its own.
        # Unknown attributes become image properties, so the run prefix is both a tag and a property.
        record = Image.new(
            name=name,
            disk_format=image_file.disk_format,
            container_format="bare",
            visibility="private",
            tags=[tracker.prefix],
            **{RUN_KEY: tracker.prefix},
        )
        image = cloud.call(record.create, conn.image)
        item.bind(image)
        result.id = image.id
        upload_start = time.monotonic()
        send_image_data(cloud, image, image_file)
        result.upload_s = time.monotonic() - upload_start
        waiter = Waiter(timeout_s)
        state = {}

        def active() -> bool:
            state["image"] = cloud.call(conn.image.get_image, image.id)
            if state["image"].status in ("killed", "deleted", "deactivated"):
                raise CloudFault(f"image went {state['image'].status}")
            return state["image"].status == "active"

        ok = waiter.poll(active, 1.0)
        image = state.get("image", image)
        result.active_s = time.monotonic() - start
        result.status = image.status
        result.size, result.checksum, result.os_hash_value = image.size, image.checksum, image.hash_value
        if not ok:
            result.error = f"not active after {timeout_s:.0f} s (status {image.status})"
        if result.size != image_file.size:
            result.problems.append(f"size {result.size} != uploaded {image_file.size}")
        if result.checksum and result.checksum != image_file.md5:
            result.problems.append("checksum (md5) differs from the uploaded data")
        algo = getattr(image, "hash_algo", None)
        if result.os_hash_value and algo == "sha512" and result.os_hash_value != image_file.sha512:
            result.problems.append("os_hash_value (sha512) differs from the uploaded data")
        if not (result.checksum or result.os_hash_value):
            result.problems.append("Glance reported neither checksum nor os_hash_value")
    except (CloudFault, os_exc.SDKException, ksa_exc.ClientException, requests.RequestException) as exc:
        # Quoted as the API said it (after the cloud layer's retries); the image, if created, stays tracked.
        result.error = api_error_text(exc) or first_line(exc)
        result.status = result.status or "failed"
    return result


class ImageData:
    """The image file as a request body that can be sent again: every iteration reads it from the start
    (keystoneauth itself re-sends the body once when a connection breaks; a half-read file would send a
    truncated image). Its length gives the request its Content-Length."""

    def __init__(self, path, size: int, chunk: int = MIB):
        self.path, self.size, self.chunk = path, size, chunk

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        with open(self.path, "rb") as data:
            while block := data.read(self.chunk):
                yield block


UPLOAD_IN_PROGRESS = ("saving", "uploading", "importing")


def send_image_data(cloud, image, image_file) -> None:
    """PUT the image data, through the cloud layer's retries: a 429/502/503/504 or a broken connection is
    retried with the data sent again from its start. After a broken attempt Glance may still be undoing it
    (409 while `saving`: retried later) or may have finished it (`active`: done)."""
    conn = cloud.conn

    def once():
        response = image.upload(conn.image, data=ImageData(image_file.path, image_file.size), size=image_file.size)
        if response.status_code < 400:
            return
        if response.status_code == 409:
            status = conn.image.get_image(image.id).status
            if status == "active":
                return
            if status in UPLOAD_IN_PROGRESS:
                raise Busy(response)
        os_exc.raise_from_response(response)

    cloud.call(once)


def mb_per_s(size: int | None, seconds: float | None) -> float | None:
    if not size or not seconds:
        return None
    return round(size / MIB / seconds, 2)
