"""The suite's own disk images must pass the format inspection Glance applies (oslo.utils' inspector)."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess

import pytest

from conformance.images import CLUSTER, make_image, qcow2_bytes

format_inspector = pytest.importorskip("oslo_utils.imageutils.format_inspector")


@pytest.mark.parametrize("size_mb", [1, 16, 600])
def test_qcow2_passes_glance_inspection(tmp_path, size_mb):
    image = make_image(tmp_path, size_mb)
    inspector = format_inspector.detect_file_format(str(image.path))
    assert str(inspector) == "qcow2"
    inspector.safety_check()  # no backing file, no data file, sane header: what Glance refuses otherwise
    assert inspector.virtual_size == image.virtual_size >= size_mb * 1024 * 1024
    content = image.path.read_bytes()
    assert image.size == len(content) and image.md5 == hashlib.md5(content).hexdigest()
    assert image.sha512 == hashlib.sha512(content).hexdigest()


def test_qcow2_tables_point_at_the_data():
    content = qcow2_bytes(1)
    magic, version = struct.unpack_from(">4sI", content)
    assert (magic, version) == (b"QFI\xfb", 2)
    l1_offset = struct.unpack_from(">Q", content, 40)[0]
    l2 = struct.unpack_from(">Q", content, l1_offset)[0] & ~(1 << 63)
    first_data = struct.unpack_from(">Q", content, l2)[0] & ~(1 << 63)
    assert first_data % CLUSTER == 0 and first_data + 16 * CLUSTER == len(content)


def test_raw_is_raw_and_deterministic(tmp_path):
    a = make_image(tmp_path / "", 2, disk_format="raw", name="a")
    b = make_image(tmp_path, 2, disk_format="raw", name="b")
    assert str(format_inspector.detect_file_format(str(a.path))) == "raw"
    assert a.md5 == b.md5 and a.size == 2 * 1024 * 1024
    with pytest.raises(ValueError):
        make_image(tmp_path, 1, disk_format="vmdk")


@pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img not installed")
def test_qemu_img_check(tmp_path):
    image = make_image(tmp_path, 3)
    subprocess.run(["qemu-img", "check", str(image.path)], check=True, capture_output=True)


def test_each_xdist_worker_uploads_an_image_of_its_own_name(monkeypatch):
    """A cleanup also deletes what shares a tracked resource's name: two workers' images of one name meant the
    first worker to finish deleted the other's (the demo with -n 2: R2 "Can not find requested image")."""
    from types import SimpleNamespace

    from conformance import images as images_module
    from conformance.resources import Tracker

    names = []

    def fake_upload(cloud, tracker, image_file, timeout_s, suffix=""):
        names.append(tracker.name(f"image-{cloud.role}{suffix}", cloud))
        return SimpleNamespace(scope=cloud.scope)

    monkeypatch.setattr(images_module, "upload_image", fake_upload)
    cloud = SimpleNamespace(role="zuul", scope="zuul/RegionOne", region=None)
    tracker = Tracker("conformance-20261207T000000Z-abcdef")
    for worker in ("gw0", "gw1", None):
        images_module.ImageCache(tracker, image_file=None, timeout_s=1, worker=worker).get(cloud)
    assert len(set(names)) == 3 and names[0].endswith("image-zuul-gw0") and names[2].endswith("image-zuul")
