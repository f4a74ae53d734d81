"""The sandbox's real guest image: Debian bookworm built with diskimage-builder (DIB), cached by its inputs.

    image = ensure_image(say=print)    # builds once (about 2 minutes), then returns the cached build at once
    image.image, image.kernel, image.initrd, image.cmdline

The build runs DIB (from PyPI, in its own venv under the cache) with the project's element
(sandbox/guest_image/elements/sandbox-guest) and the shims this machine kind needs (sandbox/guest_image/shims:
no device-mapper, no sudo policy). Next to the qcow2 it keeps the guest's kernel and initramfs for a direct kernel
boot: Nova boots an image whose Glance properties name `kernel_id`, `ramdisk_id` and `os_command_line` without
SeaBIOS and GRUB, which under QEMU TCG saves about 90 s per boot.

Cache (beside the sandbox's own cache dir, see sandbox.layout.cache_root):

    <cache>/guest-image/
        dib-venv/          diskimage-builder DIB_VERSION, made on the first build
        dib-cache/         DIB's download cache (debootstrap tarball): a rebuild is quicker
        <key>/             one complete build: sandbox-guest.qcow2, .vmlinuz, .initrd, manifest.json, build.log
        <key>.staging/     a build under way, or one that failed (its build.log says why)
        tmp/               DIB's work dirs while it builds (DIB_NO_TMPFS: on disk)
        build.lock         held by the build under way

The key is a digest of everything that goes into a build (the element's and the shims' files, the DIB version,
the release, the DIB_* settings, the kernel command line); the newest two keys are kept. Nothing here needs DIB
to import: `image_status()` works on any machine.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.layout import cache_root
from sandbox.waiting import SandboxError

DIB_VERSION = "3.43.0"
RELEASE = "bookworm"
# Bump when the build changes in a way the element, the shims and the settings don't show.
IMAGE_FORMAT = "1"
NAME = "sandbox-guest"
ELEMENTS = ("debian-minimal", NAME)  # the distro element, then ours (its element-deps bring the rest)
ROOT_LABEL = "cloudimg-rootfs"
# Direct kernel boot: root by label (the initramfs finds it), the console on the serial port Nova logs.
CMDLINE = f"root=LABEL={ROOT_LABEL} ro console=ttyS0 no_timer_check"

HERE = Path(__file__).resolve().parent / "guest_image"
ELEMENTS_DIR = HERE / "elements"
SHIMS_DIR = HERE / "shims"

KEY_PATTERN = re.compile(r"^[0-9a-f]{16}$")
STAGING_SUFFIX = ".staging"
MANIFEST = "manifest.json"
LOG = "build.log"
HEARTBEAT_S = 30.0
# DIB's phases as its output announces them: "Running hooks from /tmp/.../root.d" (outside the chroot),
# "dib-run-parts Running /tmp/in_target.d/install.d/..." (inside), its block-device steps, the conversion.
PHASE_PATTERNS = (
    (re.compile(r"(?:Running hooks from \S*/|in_target\.d/)([a-z-]+\.d)\b"), None),
    (re.compile(r"diskimage_builder\.block_device"), "block-device"),
    (re.compile(r"Converting image using qemu-img convert"), "qcow2 conversion"),
)
BUILD_DIR_PATTERN = re.compile(r"Building in (\S+)")

# A sane PATH for DIB (not the caller's: tox or pyenv shims must not stand in for the venv's python3).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Build prerequisites: program -> the apt package that has it.
PREREQUISITE_PROGRAMS = {
    "debootstrap": "debootstrap",
    "qemu-img": "qemu-utils",
    "partx": "util-linux",
    "losetup": "util-linux",
    "mkfs.ext4": "e2fsprogs",
    "chroot": "coreutils",
}
SYSTEM_PYTHON = "/usr/bin/python3"
MAPPER = Path("/dev/mapper")
DEBIAN_SUITES = {
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "sid",
    "stable",
    "oldstable",
    "testing",
    "unstable",
}


class GuestImageError(SandboxError):
    """One line for the user: what failed and where its log is."""


@dataclass(frozen=True)
class GuestImage:
    """A complete build: paths of its artifacts and its manifest."""

    key: str
    directory: Path
    image: Path  # the qcow2 disk image
    kernel: Path  # for a direct kernel boot (Glance kernel_id)
    initrd: Path  # (Glance ramdisk_id)
    cmdline: str  # (Glance os_command_line)
    manifest: dict = field(repr=False)
    built_now: bool = False  # True when this call built it, False when it came from the cache

    @property
    def build_seconds(self) -> float:
        return float(self.manifest.get("build_seconds", 0.0))


@dataclass(frozen=True)
class ImageStatus:
    state: str  # "built", "absent" or "incomplete" (a staging dir: a build under way, failed or interrupted)
    key: str
    directory: Path  # where the build for this key is (or would be)
    building: bool = False  # a build holds the cache's lock now
    size_bytes: int = 0  # of the three artifacts together
    age_seconds: float | None = None
    manifest: dict | None = field(default=None, repr=False)

    @property
    def built(self) -> bool:
        return self.state == "built"

    @property
    def image(self) -> Path | None:
        return self.directory / self.manifest["files"]["image"]["name"] if self.manifest else None


# ---- where, and under which key ------------------------------------------------------------------------------
def cache_dir() -> Path:
    """`guest-image` beside the sandbox's cache dir (SANDBOX_CACHE_DIR moves both)."""
    return cache_root().parent / "guest-image"


def dib_venv() -> Path:
    return cache_dir() / "dib-venv"


def host_mirrors(paths: list[Path] | None = None) -> tuple[str | None, str | None]:
    """(Debian mirror, security mirror) from the host's apt sources (deb822 .sources and one-line .list files)."""
    if paths is None:
        etc = Path("/etc/apt")
        paths = [
            etc / "sources.list",
            *sorted((etc / "sources.list.d").glob("*.list")),
            *sorted((etc / "sources.list.d").glob("*.sources")),
        ]
    entries: list[tuple[str, list[str]]] = []  # (uri, suites)
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[0].isspace():
                        continue
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip()
                if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                    for uri in fields.get("uris", "").split():
                        entries.append((uri, fields.get("suites", "").split()))
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], [words[2]]))
    mirror = security = None
    for uri, suites in entries:
        for suite in suites:
            base = suite.split("/")[0].split("-")[0]
            if base not in DEBIAN_SUITES:
                continue  # not a Debian archive (a vendor's repository)
            if suite.endswith("-security") or "/updates" in suite:
                security = security or uri
            elif "-" not in suite:
                mirror = mirror or uri
    return mirror, security


def dib_settings() -> dict[str, str]:
    """The DIB_* variables a build exports; part of the cache key. The mirrors come from the host's apt sources
    (DIB_DISTRIBUTION_MIRROR / DIB_DEBIAN_SECURITY_MIRROR in the environment override them)."""
    mirror, security = host_mirrors()
    return {
        "DIB_RELEASE": RELEASE,
        "DIB_DISTRIBUTION_MIRROR": os.environ.get("DIB_DISTRIBUTION_MIRROR")
        or mirror
        or "http://deb.debian.org/debian",
        "DIB_DEBIAN_SECURITY_MIRROR": os.environ.get("DIB_DEBIAN_SECURITY_MIRROR")
        or security
        or "http://deb.debian.org/debian-security",
        # ConfigDrive first (Nova's force_config_drive), the metadata service as the fallback
        "DIB_CLOUD_INIT_DATASOURCES": "ConfigDrive, OpenStack",
        # no stale eth0/eth1 DHCP stanzas: cloud-init writes the NIC's config from network_data.json
        "DIB_APT_MINIMAL_CREATE_INTERFACES": "0",
        # builds on disk, not in a tmpfs the size of the image
        "DIB_NO_TMPFS": "1",
        # a GRUB boot (an image without kernel_id) shows no menu
        "DIB_GRUB_TIMEOUT": "0",
        # no open-iscsi (DIB's base element installs it for baremetal deploys)
        "DIB_SKIP_BASE_PACKAGE_INSTALL": "1",
    }


def _tree_digest(digest, root: Path) -> None:
    """Every file's path, mode and content; not the documentation (DIB does not read it)."""
    for path in sorted(
        p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith("README")
    ):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(path.read_bytes() + b"\0")


def cache_key(
    elements_dir: Path = ELEMENTS_DIR, shims_dir: Path = SHIMS_DIR, settings: dict[str, str] | None = None
) -> str:
    """Identity of a build: what goes into it (file contents and modes, not their times)."""
    digest = hashlib.sha256(f"{IMAGE_FORMAT}\0{DIB_VERSION}\0{RELEASE}\0{' '.join(ELEMENTS)}\0{CMDLINE}\0".encode())
    _tree_digest(digest, elements_dir)
    digest.update(b"\0shims\0")
    _tree_digest(digest, shims_dir)
    for name, value in sorted((settings if settings is not None else dib_settings()).items()):
        digest.update(f"{name}={value}\0".encode())
    return digest.hexdigest()[:16]


# ---- status ----------------------------------------------------------------------------------------------------
def _load_complete(directory: Path) -> dict | None:
    """The manifest of a complete build dir, or None if anything it lists is missing or of another size."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        for entry in manifest["files"].values():
            if (directory / entry["name"]).stat().st_size != entry["size"]:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest


def _build_running() -> bool:
    lock = cache_dir() / "build.lock"
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def image_status(key: str | None = None) -> ImageStatus:
    """Whether the image for the current inputs (or for `key`) is built; never builds."""
    key = key or cache_key()
    directory = cache_dir() / key
    building = _build_running()
    manifest = _load_complete(directory) if directory.is_dir() else None
    if manifest is not None:
        size = sum(entry["size"] for entry in manifest["files"].values())
        age = time.time() - (directory / MANIFEST).stat().st_mtime
        return ImageStatus("built", key, directory, building, size, age, manifest)
    staging = directory.with_name(key + STAGING_SUFFIX)
    if directory.exists() or staging.exists():
        return ImageStatus("incomplete", key, directory if directory.exists() else staging, building)
    return ImageStatus("absent", key, directory, building)


# ---- prerequisites ---------------------------------------------------------------------------------------------
def missing_prerequisites() -> list[tuple[str, str]]:
    """(what, apt package) for everything a build needs that this machine lacks."""
    path = os.environ.get("PATH", "") + ":" + SYSTEM_PATH
    missing = [
        (program, package) for program, package in PREREQUISITE_PROGRAMS.items() if not shutil.which(program, path=path)
    ]
    if _venv_ready():
        return missing
    if not Path(SYSTEM_PYTHON).exists():
        missing.append((SYSTEM_PYTHON, "python3"))
    elif subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip, venv"], capture_output=True).returncode != 0:
        missing.append(("python3 -m venv", "python3-venv"))
    return missing


def prerequisites_message(missing: list[tuple[str, str]]) -> str:
    packages = sorted({package for _, package in missing})
    return (
        f"guest image: missing build prerequisites: apt packages {' '.join(packages)} "
        f"(for {', '.join(what for what, _ in missing)}); run `bash sandbox/prereqs.sh` as root"
    )


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise GuestImageError(
            "guest image: building needs root (diskimage-builder mounts file systems, chroots "
            "and attaches loop devices); run `python -m sandbox image build` as root"
        )
    missing = missing_prerequisites()
    if missing:
        raise GuestImageError(prerequisites_message(missing))


# ---- build -----------------------------------------------------------------------------------------------------
def ensure_image(say: Callable[[str], None] = print) -> GuestImage:
    """The guest image for the current inputs: from the cache, or built now (about 2 minutes on an idle 2-core
    machine, more on a busy one; a line per DIB phase, and at least one every 30 s)."""
    key = cache_key()
    found = _from_cache(key)
    if found is not None:
        return found
    check_prerequisites()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(root, say):
        found = _from_cache(key)  # another process may have built it while we waited for the lock
        if found is not None:
            return found
        return _build(key, say)


def _from_cache(key: str) -> GuestImage | None:
    directory = cache_dir() / key
    manifest = _load_complete(directory) if directory.is_dir() else None
    if manifest is None:
        return None
    files = manifest["files"]
    return GuestImage(
        key,
        directory,
        directory / files["image"]["name"],
        directory / files["kernel"]["name"],
        directory / files["initrd"]["name"],
        manifest["cmdline"],
        manifest,
    )


@contextmanager
def _build_lock(root: Path, say: Callable[[str], None]) -> Iterator[None]:
    with open(root / "build.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("guest image: another build is running; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clean_env() -> dict[str, str]:
    """The caller's environment without what would steer pip or DIB elsewhere (tox's constraints, a venv,
    TMPDIR, which must not reach chroot'ed commands)."""
    drop = ("PIP_", "UV_", "PYTHON", "VIRTUAL_ENV", "TMPDIR", "DIB_", "ELEMENTS_PATH")
    return {name: value for name, value in os.environ.items() if not name.startswith(drop)}


def _venv_ready() -> bool:
    python = dib_venv() / "bin" / "python"
    if not (dib_venv() / "bin" / "disk-image-create").exists():
        return False
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('diskimage-builder'))"],
        capture_output=True,
        text=True,
    )
    return result.returncode == 0 and result.stdout.strip() == DIB_VERSION


def _ensure_venv(say: Callable[[str], None]) -> None:
    """DIB in its own venv on Debian's python3 (its scripts run outside any tox or pyenv environment). A venv
    left half-made by an interrupted install does not pass _venv_ready and is made again."""
    if _venv_ready():
        return
    venv = dib_venv()
    say(f"guest image: installing diskimage-builder {DIB_VERSION} from PyPI into {venv}")
    shutil.rmtree(venv, ignore_errors=True)
    for argv in (
        [SYSTEM_PYTHON, "-m", "venv", str(venv)],
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            f"diskimage-builder=={DIB_VERSION}",
        ],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, env=_clean_env(), stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
            raise GuestImageError(f"guest image: {' '.join(argv[:3])} failed (exit {result.returncode}): {tail}")
    if not _venv_ready():
        raise GuestImageError(f"guest image: diskimage-builder {DIB_VERSION} is not usable in {venv}")


def _dib_command(output: Path) -> list[str]:
    return [
        "nice",
        "-n",
        "10",
        str(dib_venv() / "bin" / "disk-image-create"),
        "-t",
        "qcow2",
        "--root-label",
        ROOT_LABEL,
        "-o",
        str(output),
        *ELEMENTS,
    ]


def _build(key: str, say: Callable[[str], None]) -> GuestImage:
    root = cache_dir()
    started = time.monotonic()
    _ensure_venv(say)
    final = root / key
    staging = root / (key + STAGING_SUFFIX)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)  # an incomplete one (files missing)
    staging.mkdir(parents=True)
    log = staging / LOG
    settings = dib_settings()
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {
        **_clean_env(),
        **settings,
        "PATH": f"{SHIMS_DIR}:{dib_venv() / 'bin'}:{SYSTEM_PATH}",
        "ELEMENTS_PATH": str(ELEMENTS_DIR),
        "DIB_IMAGE_CACHE": str(root / "dib-cache"),
        "TMP_DIR": str(tmp),  # DIB's work dirs (dib_build.*, dib_image.*), where leftovers can be found
        "LANG": "C.UTF-8",
    }
    say(
        f"guest image: building {key} with diskimage-builder {DIB_VERSION}: debian {RELEASE} from "
        f"{settings['DIB_DISTRIBUTION_MIRROR']} (security {settings['DIB_DEBIAN_SECURITY_MIRROR']}), "
        f"elements {' '.join(ELEMENTS)}; about 2 minutes; log: {log}"
    )
    output = staging / NAME
    mapper_before = {path.name for path in MAPPER.iterdir()} if MAPPER.is_dir() else None
    code, seen_build_dirs = _run_dib(_dib_command(output), env, log, say, started)
    _release_leftovers(tmp, seen_build_dirs, mapper_before, say)
    elapsed = time.monotonic() - started
    if code != 0:
        tail = " | ".join(line.strip() for line in log.read_text(errors="replace").splitlines()[-4:])
        raise GuestImageError(
            f"guest image: build failed (diskimage-builder exit {code}) after {elapsed:.0f}s; "
            f"log: {log}; last lines: {tail}"
        )
    files = {
        "image": output.with_suffix(".qcow2"),
        "kernel": output.with_suffix(".vmlinuz"),
        "initrd": output.with_suffix(".initrd"),
    }
    absent = [str(path) for path in files.values() if not path.exists()]
    if absent:
        raise GuestImageError(f"guest image: diskimage-builder ended without {', '.join(absent)}; log: {log}")
    manifest = {
        "format": IMAGE_FORMAT,
        "key": key,
        "files": {
            role: {"name": path.name, "size": path.stat().st_size, "sha256": _sha256(path)}
            for role, path in files.items()
        },
        "image_format": "qcow2",
        "virtual_size": _virtual_size(files["image"]),
        "kernel_version": _kernel_version(files["kernel"]),
        "cmdline": CMDLINE,
        "root_label": ROOT_LABEL,
        "dib_version": DIB_VERSION,
        "release": RELEASE,
        "elements": list(ELEMENTS),
        "settings": settings,
        "build_seconds": round(elapsed, 1),
        "build_date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    staging.rename(final)
    _prune(root, keep=key)
    say(
        f"guest image: built {key} in {elapsed:.0f}s: {files['image'].name} "
        f"{manifest['files']['image']['size'] / 2**20:.0f} MiB (virtual {manifest['virtual_size'] / 2**30:.2f} GiB), "
        f"kernel {manifest['kernel_version'] or '?'}"
    )
    image = _from_cache(key)
    assert image is not None
    return dataclasses.replace(image, built_now=True)


def _run_dib(
    argv: list[str], env: dict[str, str], log: Path, say: Callable[[str], None], started: float
) -> tuple[int, list[str]]:
    """Run DIB with its output into `log`; one line per phase, and a line at least every HEARTBEAT_S seconds."""
    lines: queue.Queue[str | None] = queue.Queue()
    build_dirs: list[str] = []
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=log.parent
        )

        def pump() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                out.write(raw)
                out.flush()
                lines.put(raw.decode(errors="replace").rstrip())
            lines.put(None)

        reader = threading.Thread(target=pump, name="dib-output", daemon=True)
        reader.start()
        phase, last, last_said = "start", "", time.monotonic()
        try:
            while True:
                try:
                    line = lines.get(timeout=max(0.1, HEARTBEAT_S - (time.monotonic() - last_said)))
                except queue.Empty:
                    line = ""
                if line is None:
                    break
                now = time.monotonic()
                if line:
                    last = line
                    match = BUILD_DIR_PATTERN.search(line)
                    if match:
                        build_dirs.append(match.group(1))
                    new_phase = _phase(line) or phase
                    if new_phase != phase:
                        phase = new_phase
                        say(f"guest image: [{now - started:4.0f}s] {phase}")
                        last_said = now
                        continue
                if now - last_said >= HEARTBEAT_S:
                    say(f"guest image: [{now - started:4.0f}s] still in {phase}: {_short(last)}")
                    last_said = now
        except BaseException:  # Ctrl-C: DIB got it too (same process group) and cleans up after itself
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
        code = process.wait()
        reader.join(timeout=10)
    return code, build_dirs


def _phase(line: str) -> str | None:
    for pattern, name in PHASE_PATTERNS:
        match = pattern.search(line)
        if match:
            return name or match.group(1)
    return None


def _short(line: str, width: int = 100) -> str:
    # DIB prefixes its lines with a timestamp ("2025-01-01 12:00:00.000 | ...")
    line = re.sub(r"^\S+ \S+ \| ", "", line).strip()
    return line if len(line) <= width else line[: width - 3] + "..."


def _release_leftovers(
    tmp: Path, build_dirs: list[str], mapper_before: set[str] | None, say: Callable[[str], None]
) -> None:
    """After DIB: no loop device, /dev/mapper entry or work dir of ours may stay (DIB cleans up after itself,
    unless it was killed). grub-install in the chroot, which sees the host's /dev, makes /dev/mapper/control
    through libdevmapper even where the kernel has no device-mapper; the kpartx shim makes /dev/mapper."""
    try:
        loops = subprocess.run(
            ["losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE"], capture_output=True, text=True
        ).stdout.splitlines()
    except OSError:
        loops = []
    for row in loops:
        name, _, backing = row.partition(" ")
        if backing.startswith(str(tmp)) or any(backing.startswith(d) for d in build_dirs):
            say(f"guest image: detaching the build's leftover {name} ({backing})")
            for link in Path("/dev/mapper").glob(Path(name).name + "p*"):
                link.unlink(missing_ok=True)
            subprocess.run(["partx", "-d", name], capture_output=True)
            subprocess.run(["losetup", "-d", name], capture_output=True)
    if MAPPER.is_dir():
        no_device_mapper = "device-mapper" not in Path("/proc/misc").read_text()
        for entry in MAPPER.iterdir():
            if mapper_before is not None and entry.name in mapper_before:
                continue
            ours = entry.is_symlink() and re.fullmatch(r"loop\d+p\d+", entry.name) is not None
            if ours or (entry.name == "control" and no_device_mapper):
                entry.unlink(missing_ok=True)
        if mapper_before is None and not any(MAPPER.iterdir()):
            MAPPER.rmdir()
    mounts = Path("/proc/mounts").read_text().split("\n")
    if any(f" {tmp}/" in line for line in mounts):
        say(f"guest image: file systems are still mounted under {tmp}; left in place (unmount them by hand)")
        return
    for entry in tmp.iterdir() if tmp.exists() else []:
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def _prune(root: Path, keep: str, count: int = 2) -> None:
    """Keep the newest `count` complete builds (`keep` among them) and no staging dir of another key."""
    builds = sorted(
        (p for p in root.iterdir() if p.is_dir() and KEY_PATTERN.match(p.name) and p.name != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in builds[count - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
    for staging in root.glob("*" + STAGING_SUFFIX):
        if KEY_PATTERN.match(staging.name[: -len(STAGING_SUFFIX)]):
            shutil.rmtree(staging, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _virtual_size(image: Path) -> int:
    result = subprocess.run(["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True)
    try:
        return int(json.loads(result.stdout)["virtual-size"])
    except (ValueError, KeyError):
        return 0


def _kernel_version(kernel: Path) -> str:
    """The version string of an x86 bzImage (its setup header points at it), e.g. 6.1.0-57-cloud-amd64."""
    try:
        with open(kernel, "rb") as handle:
            header = handle.read(0x10000)
            offset = int.from_bytes(header[0x20E:0x210], "little") + 0x200
            if header[0x202:0x206] != b"HdrS" or offset >= len(header):
                return ""
            return header[offset : offset + 128].split(b"\0")[0].split(b" ")[0].decode(errors="replace")
    except OSError:
        return ""
