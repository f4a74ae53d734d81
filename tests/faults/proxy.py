"""The fault proxy as tests use it: mitmdump with the fault addon, as an HTTP proxy in front of a cloud's
plain-http service endpoints on loopback.

    with FaultProxy(workdir, services={"127.0.0.1:13774": "compute", ...}) as proxy:
        proxy.set_rules([{"service": "compute", "action": "status", "status": 503, "rate": 0.1}], seed=14)
        subprocess.run([...the suite...], env={**os.environ, **proxy.client_env()})
        proxy.stats()["rules"]                     # what each rule matched and injected

The suite's process goes through it by the standard proxy variables (`HTTP_PROXY`, honoured by requests and so
by keystoneauth and openstacksdk): only that process sees the faults, never the services talking to each other
nor the tests' own admin connections, and the cloud's catalog stays as it is. https endpoints (the sandbox's
Keystone) are reached directly: no TLS interception, so R7 sees the real certificate.

mitmproxy 11 cannot be installed beside the sandbox's services (its pins clash with keystone's), so mitmdump
runs from a virtualenv of its own, built on first use from `requirements.txt` (pinned) into
`~/.cache/opendev-conformance/faultproxy/` (`FAULTPROXY_CACHE_DIR`), or taken from `FAULTPROXY_MITMDUMP`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.faults.rules import FaultPlan

HERE = Path(__file__).resolve().parent
ADDON = HERE / "addon.py"
REQUIREMENTS = HERE / "requirements.txt"
LOOPBACK = "127.0.0.1"
# The project's constraints must not reach mitmproxy's own environment: they pin the services' versions.
_INSTALL_ENV_DROP = ("UV_CONSTRAINT", "PIP_CONSTRAINT", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")


class FaultProxyError(Exception):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("FAULTPROXY_CACHE_DIR") or Path.home() / ".cache" / "opendev-conformance" / "faultproxy")


def mitmdump_path() -> Path:
    """mitmdump of the fault proxy's own virtualenv, built once per pinned requirements and Python."""
    override = os.environ.get("FAULTPROXY_MITMDUMP")
    if override:
        return Path(override)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    venv = cache_dir() / f"mitmproxy-{digest}"
    mitmdump, complete = venv / "bin" / "mitmdump", venv / ".complete"
    if complete.exists():
        return mitmdump
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test sessions may want it at once: one builds it
        if not complete.exists():
            shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted install
            _install(venv)
            complete.write_text(REQUIREMENTS.read_text())
    return mitmdump


def _install(venv: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in _INSTALL_ENV_DROP}
    uv = shutil.which("uv")
    if uv:
        steps = [
            [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
            [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "-r", str(REQUIREMENTS)],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
        ]
    for step in steps:
        done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise FaultProxyError(f"installing mitmproxy failed: {' '.join(step)}\n{done.stderr[-2000:]}")


def services_from_catalog(catalog: list[dict], interface: str = "public") -> dict[str, str]:
    """`{"127.0.0.1:13774": "compute", ...}` for the catalog's plain-http loopback endpoints."""
    services = {}
    for service in catalog or []:
        for endpoint in service.get("endpoints", []):
            url = urlsplit(endpoint.get("url", ""))
            if endpoint.get("interface") == interface and url.scheme == "http" and url.hostname == LOOPBACK:
                services[f"{url.hostname}:{url.port or 80}"] = service.get("type", "")
    return services


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class FaultProxy:
    """One mitmdump process with the fault addon, listening on a free loopback port."""

    def __init__(self, workdir: Path, services: dict[str, str]):
        self.workdir = Path(workdir)
        self.services = dict(services)
        self.rules_path = self.workdir / "rules.json"
        self.stats_path = self.workdir / "stats.json"
        self.log_path = self.workdir / "mitmdump.log"
        self.port: int | None = None
        self._process: subprocess.Popen | None = None
        self._written_at = 0.0

    # ---- lifecycle ---------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> FaultProxy:
        mitmdump = mitmdump_path()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.set_rules([])
        self.stats_path.unlink(missing_ok=True)
        self.port = _free_port()
        argv = [
            str(mitmdump),
            "--listen-host",
            LOOPBACK,
            "--listen-port",
            str(self.port),
            "-s",
            str(ADDON),
            "--set",
            f"faults_rules={self.rules_path}",
            "--set",
            f"faults_stats={self.stats_path}",
            "--set",
            f"confdir={self.workdir / 'mitmproxy'}",
            "--set",
            "termlog_verbosity=warn",
            "--set",
            "flow_detail=0",
        ]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self._process.poll() is not None:
                raise FaultProxyError(f"mitmdump exited ({self._process.returncode}): {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise FaultProxyError(f"mitmdump not listening after {timeout_s:.0f} s: {self._log_tail()}")
            time.sleep(0.2)
        return self

    def _ready(self) -> bool:
        if not self.stats().get("ready"):
            return False
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), timeout=1):
            return True
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)  # its own session: mitmdump and nothing else
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    # ---- rules and what they did -------------------------------------------------------------------------
    def set_rules(self, rules: list[dict], seed: int = 0) -> None:
        """Replace the rules (validated here first); their windows count from now; counters start at 0."""
        self._written_at = time.time()
        data = {"seed": seed, "written_at": self._written_at, "services": self.services, "rules": rules}
        FaultPlan(data)  # a bad rule is the test's mistake: raise here, not in the proxy
        tmp = self.rules_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.rules_path)

    def clear(self) -> None:
        self.set_rules([])

    def stats(self) -> dict:
        """The addon's counters: {"written_at", "requests": {service: n}, "rules": {name: {matched, injected}},
        "injected"} (of the current rules once the proxy has seen a request since they were set)."""
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {}

    def injected(self, rule: str) -> int:
        stats = self.stats()
        if stats.get("written_at") != self._written_at:
            return 0  # the proxy has not seen a request under the current rules yet
        return int(stats.get("rules", {}).get(rule, {}).get("injected", 0))

    # ---- how a client goes through it --------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment for a process whose http calls go through the proxy (https ones go direct)."""
        return {
            "HTTP_PROXY": self.url,
            "http_proxy": self.url,
            "HTTPS_PROXY": "",
            "https_proxy": "",
            "NO_PROXY": "",
            "no_proxy": "",
        }
