"""The guest image's cache logic (sandbox/guest_image.py) without building anything: the key, the status of a
cache, the prerequisites message, progress and failure lines, and `python -m sandbox image status`."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from sandbox import cli, guest_image

SETTINGS = {"DIB_RELEASE": "bookworm", "DIB_DISTRIBUTION_MIRROR": "http://mirror.example/debian"}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache: SANDBOX_CACHE_DIR in tmp_path, so the guest image's dir is its sibling `guest-image`."""
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(tmp_path / "sandbox"))
    assert guest_image.cache_dir() == tmp_path / "guest-image"
    return tmp_path / "guest-image"


def fake_build(directory: Path, sizes=(300, 200, 100)) -> dict:
    """A complete build's files and manifest, as _build leaves them."""
    directory.mkdir(parents=True)
    files = {}
    roles = (("image", ".qcow2"), ("kernel", ".vmlinuz"), ("initrd", ".initrd"))
    for (role, suffix), size in zip(roles, sizes, strict=True):
        path = directory / f"sandbox-guest{suffix}"
        path.write_bytes(b"x" * size)
        files[role] = {"name": path.name, "size": size, "sha256": "0" * 64}
    manifest = {
        "files": files,
        "cmdline": guest_image.CMDLINE,
        "build_seconds": 321.0,
        "build_date": "2025-01-01T00:00:00Z",
    }
    (directory / guest_image.MANIFEST).write_text(json.dumps(manifest))
    return manifest


# ---- the key ---------------------------------------------------------------------------------------------------
def test_the_key_changes_when_an_element_file_changes_and_not_otherwise(tmp_path):
    elements = tmp_path / "elements"
    shims = tmp_path / "shims"
    shutil.copytree(guest_image.ELEMENTS_DIR, elements)
    shutil.copytree(guest_image.SHIMS_DIR, shims)
    key = guest_image.cache_key(elements, shims, SETTINGS)
    assert guest_image.KEY_PATTERN.match(key)
    assert guest_image.cache_key(elements, shims, dict(SETTINGS)) == key, "the same inputs, the same key"

    script = elements / "sandbox-guest" / "install.d" / "90-sandbox-guest-cloud-init"
    os.utime(script, (1, 1))
    assert guest_image.cache_key(elements, shims, SETTINGS) == key, "a file's time is no input"
    readme = elements / "sandbox-guest" / "README.rst"
    readme.write_text(readme.read_text() + "More words.\n")
    assert guest_image.cache_key(elements, shims, SETTINGS) == key, "nor the element's documentation"

    original = script.read_text()
    script.write_text(original + "\n# changed\n")
    assert guest_image.cache_key(elements, shims, SETTINGS) != key
    script.write_text(original)
    assert guest_image.cache_key(elements, shims, SETTINGS) == key

    script.chmod(0o644)  # DIB skips a hook that is not executable
    assert guest_image.cache_key(elements, shims, SETTINGS) != key
    script.chmod(0o755)

    (elements / "sandbox-guest" / "install.d" / "99-new").write_text("#!/bin/sh\n")
    assert guest_image.cache_key(elements, shims, SETTINGS) != key
    (elements / "sandbox-guest" / "install.d" / "99-new").unlink()

    (shims / "sudo").write_text((shims / "sudo").read_text() + "\n")
    assert guest_image.cache_key(elements, shims, SETTINGS) != key
    shutil.copy2(guest_image.SHIMS_DIR / "sudo", shims / "sudo")
    assert guest_image.cache_key(elements, shims, SETTINGS) == key

    assert guest_image.cache_key(elements, shims, {**SETTINGS, "DIB_RELEASE": "trixie"}) != key


def test_the_settings_take_the_mirrors_from_the_hosts_apt_sources(tmp_path, monkeypatch):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    vendor = tmp_path / "vendor.list"
    vendor.write_text("deb https://packages.example/apt cloud-sdk-bookworm main\n")
    assert guest_image.host_mirrors([vendor, deb822]) == (
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    )
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "# comment\ndeb [arch=amd64] http://old.example/debian bullseye main\n"
        "deb http://old.example/debian-security bullseye-security main\n"
    )
    assert guest_image.host_mirrors([one_line]) == ("http://old.example/debian", "http://old.example/debian-security")
    monkeypatch.setenv("DIB_DISTRIBUTION_MIRROR", "http://override.example/debian")
    assert guest_image.dib_settings()["DIB_DISTRIBUTION_MIRROR"] == "http://override.example/debian"
    assert guest_image.dib_settings()["DIB_NO_TMPFS"] == "1"


# ---- status ----------------------------------------------------------------------------------------------------
def test_status_of_a_missing_a_complete_and_an_incomplete_cache(cache):
    key = "0123456789abcdef"
    status = guest_image.image_status(key)
    assert (status.state, status.built, status.key, status.directory) == ("absent", False, key, cache / key)

    staging = cache / (key + guest_image.STAGING_SUFFIX)
    staging.mkdir(parents=True)
    (staging / guest_image.LOG).write_text("building\n")
    status = guest_image.image_status(key)
    assert (status.state, status.built, status.directory, status.building) == ("incomplete", False, staging, False)

    staging.rename(cache / key)  # a complete dir without its manifest: not built
    assert guest_image.image_status(key).state == "incomplete"
    shutil.rmtree(cache / key)

    manifest = fake_build(cache / key)
    status = guest_image.image_status(key)
    assert status.state == "built" and status.built
    assert status.size_bytes == 600
    assert status.image == cache / key / "sandbox-guest.qcow2"
    assert 0 <= status.age_seconds < 60
    assert status.manifest == manifest

    (cache / key / "sandbox-guest.initrd").write_bytes(b"short")  # truncated: not what the manifest says
    assert guest_image.image_status(key).state == "incomplete"


def test_ensure_image_returns_a_cached_build_without_building(cache, monkeypatch):
    key = guest_image.cache_key()
    fake_build(cache / key)
    monkeypatch.setattr(guest_image, "_build", lambda *args: pytest.fail("built although cached"))
    monkeypatch.setattr(guest_image, "check_prerequisites", lambda: pytest.fail("checked although cached"))
    image = guest_image.ensure_image(say=lambda line: None)
    assert image.key == key and not image.built_now
    assert image.image == cache / key / "sandbox-guest.qcow2"
    assert image.kernel.name == "sandbox-guest.vmlinuz" and image.initrd.name == "sandbox-guest.initrd"
    assert image.cmdline == guest_image.CMDLINE
    assert "root=LABEL=cloudimg-rootfs" in image.cmdline and "console=ttyS0" in image.cmdline
    assert image.build_seconds == 321.0


# ---- prerequisites ---------------------------------------------------------------------------------------------
def test_missing_prerequisites_are_one_line_naming_the_apt_packages(cache, monkeypatch):
    absent = {"debootstrap", "qemu-img"}
    real_which = shutil.which
    monkeypatch.setattr(
        guest_image.shutil,
        "which",
        lambda program, path=None: (
            None if program in absent else real_which(program, path=path) or f"/usr/bin/{program}"
        ),
    )
    monkeypatch.setattr(guest_image, "_venv_ready", lambda: True)
    monkeypatch.setattr(guest_image.os, "geteuid", lambda: 0)
    assert guest_image.missing_prerequisites() == [("debootstrap", "debootstrap"), ("qemu-img", "qemu-utils")]
    with pytest.raises(guest_image.GuestImageError) as raised:
        guest_image.ensure_image(say=lambda line: pytest.fail(f"said {line!r} before checking"))
    message = str(raised.value)
    assert "\n" not in message
    assert "apt packages debootstrap qemu-utils" in message
    assert "bash sandbox/prereqs.sh" in message
    assert not cache.exists(), "nothing is made before the prerequisites are there"


def test_a_build_needs_root(cache, monkeypatch):
    monkeypatch.setattr(guest_image.os, "geteuid", lambda: 1000)
    with pytest.raises(guest_image.GuestImageError, match="needs root"):
        guest_image.check_prerequisites()


# ---- a build, with a stand-in for DIB --------------------------------------------------------------------------
FAKE_DIB = """
import sys, time
from pathlib import Path
output, mode = Path(sys.argv[1]), sys.argv[2]
print("2025-01-01 00:00:00.000 | Building in /nonexistent/dib_build.abc", flush=True)
print("2025-01-01 00:00:00.000 | Running hooks from /tmp/dib_build.abc/hooks/root.d", flush=True)
time.sleep(0.5)
print("2025-01-01 00:00:00.000 | dib-run-parts Running /tmp/in_target.d/install.d/01-package-installs", flush=True)
if mode == "fail":
    print("E: Unable to locate package no-such-package", flush=True)
    sys.exit(7)
for suffix, size in ((".qcow2", 3000), (".vmlinuz", 2000), (".initrd", 1000)):
    output.with_suffix(suffix).write_bytes(b"k" * size)
print("Converting image using qemu-img convert", flush=True)
"""


@pytest.fixture
def fake_dib(cache, monkeypatch):
    monkeypatch.setattr(guest_image, "_ensure_venv", lambda say: None)
    monkeypatch.setattr(guest_image, "check_prerequisites", lambda: None)
    monkeypatch.setattr(guest_image, "HEARTBEAT_S", 0.2)

    def use(mode: str):
        monkeypatch.setattr(
            guest_image, "_dib_command", lambda output: [sys.executable, "-c", FAKE_DIB, str(output), mode]
        )

    return use


def test_a_build_says_each_phase_and_keeps_saying_something(cache, fake_dib):
    fake_dib("ok")
    lines = []
    image = guest_image.ensure_image(say=lines.append)
    text = "\n".join(lines)
    assert "] root.d" in text and "] install.d" in text and "] qcow2 conversion" in text
    assert "still in root.d" in text, "a heartbeat while a phase is silent"
    assert image.built_now and image.image.exists()
    assert image.directory == cache / image.key
    assert not (cache / (image.key + guest_image.STAGING_SUFFIX)).exists()
    manifest = json.loads((image.directory / guest_image.MANIFEST).read_text())
    assert manifest["files"]["kernel"] == {
        "name": "sandbox-guest.vmlinuz",
        "size": 2000,
        "sha256": guest_image._sha256(image.kernel),
    }
    assert manifest["cmdline"] == guest_image.CMDLINE
    assert manifest["dib_version"] == guest_image.DIB_VERSION
    assert manifest["build_seconds"] > 0 and manifest["build_date"].endswith("Z")
    assert (image.directory / guest_image.LOG).read_text().count("Running hooks") == 1
    assert guest_image.image_status().built


def test_a_failed_build_is_one_line_naming_its_log_and_last_lines(cache, fake_dib):
    fake_dib("fail")
    with pytest.raises(guest_image.GuestImageError) as raised:
        guest_image.ensure_image(say=lambda line: None)
    message = str(raised.value)
    key = guest_image.cache_key()
    log = cache / (key + guest_image.STAGING_SUFFIX) / guest_image.LOG
    assert "\n" not in message
    assert "exit 7" in message and str(log) in message
    assert "Unable to locate package no-such-package" in message
    assert guest_image.image_status().state == "incomplete"


def test_only_the_newest_two_builds_are_kept(cache):
    for age, key in enumerate(("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc")):
        fake_build(cache / key)
        os.utime(cache / key, (1000 - age, 1000 - age))  # aaaa... is the newest of the three
    (cache / "dddddddddddddddd.staging").mkdir()
    (cache / "dib-venv").mkdir()
    fake_build(cache / "eeeeeeeeeeeeeeee")
    guest_image._prune(cache, keep="eeeeeeeeeeeeeeee")
    assert sorted(p.name for p in cache.iterdir()) == ["aaaaaaaaaaaaaaaa", "dib-venv", "eeeeeeeeeeeeeeee"]


# ---- the command line ------------------------------------------------------------------------------------------
def test_cli_image_status_exits_3_until_built_then_0(cache, capsys):
    assert cli.main(["image", "status"]) == 3
    assert "not built" in capsys.readouterr().out

    key = guest_image.cache_key()
    (cache / (key + guest_image.STAGING_SUFFIX)).mkdir(parents=True)
    assert cli.main(["image", "status"]) == 3
    assert "failed or was interrupted" in capsys.readouterr().out
    (cache / (key + guest_image.STAGING_SUFFIX)).rmdir()

    fake_build(cache / key)
    assert cli.main(["image", "status"]) == 0
    out = capsys.readouterr().out
    assert f"guest image {key}: built" in out and str(cache / key) in out
