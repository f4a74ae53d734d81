"""Nothing with a run's prefix survives: a normal run, a failing run, and kill -9 mid-burst followed by the
sweeper (SIGINT and SIGTERM at many points: test_interrupted_runs.py). The sweeper never touches a resource
without the prefix."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal

from helpers import suite
from helpers.cloud import burst_servers, leftovers
from helpers.suite import LiveRun, run_prefix, verdicts

from conformance.resources import Waiter, new_run_prefix, prefix_of


def _wait_for_burst(sandbox, proc, at_least=2) -> str:
    servers = []

    def started():
        servers[:] = burst_servers(sandbox)
        return len(servers) >= at_least or proc.poll() is not None

    assert Waiter(240).poll(started, 0.3), "the burst never started"
    assert proc.poll() is None, "the run ended before the burst was under way"
    return prefix_of(servers[0].name)


def test_failing_run_leaves_nothing(sandbox, run_suite, tmp_path):
    """R13 fails (keypairs forbidden) after creating a security group and a server: all deleted."""
    report_dir = tmp_path / "reports"
    with sandbox.policy("nova", "deny-keypairs"):
        proc = run_suite("-k", "nodepool_operations", report_dir=report_dir)
    results = verdicts(report_dir)
    assert proc.returncode != 0 and results[("R13", "ops.keypair")]["verdict"] == "FAIL"
    run = run_prefix(proc.stdout)
    assert run and leftovers(sandbox, run) == []


def test_kill9_mid_burst_then_sweeper(sandbox, tmp_path):
    live = LiveRun(sandbox.clouds_yaml, tmp_path / "reports", "-k", "boot_burst", "--burst-size", "8")
    proc = live.proc
    try:
        run = _wait_for_burst(sandbox, proc, at_least=3)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    Waiter(5).wait(5)  # creates already accepted by nova-api land in its database
    left = leftovers(sandbox, run)
    assert left, "kill -9 should have left the burst's servers (and the image) behind"
    dry = suite.sweep(sandbox.clouds_yaml, "--run", run, "--dry-run")
    assert dry.returncode == 0 and "would delete" in dry.stdout
    assert leftovers(sandbox, run) == left or len(leftovers(sandbox, run)) >= len(left)
    swept = suite.sweep(sandbox.clouds_yaml, "--run", run)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert leftovers(sandbox, run) == []


def test_sweeper_spares_resources_without_prefix(sandbox):
    conn = sandbox.connect("sandbox-zuul")
    plain = f"keep-me-{secrets.token_hex(3)}"
    old_run = new_run_prefix(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    def key():
        public = ed25519.Ed25519PrivateKey.generate().public_key()
        encoding, fmt = serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        return public.public_bytes(encoding, fmt).decode()

    group = conn.network.create_security_group(name=plain, description="not the suite's")
    conn.compute.create_keypair(name=plain, public_key=key())
    conn.compute.create_keypair(name=f"{old_run}-key", public_key=key())
    try:
        # Only runs older than a day: a run going on at the same time is never swept by this test.
        swept = suite.sweep(sandbox.clouds_yaml, "--older-than", "1d")
        assert swept.returncode == 0, swept.stdout + swept.stderr
        assert f"{old_run}-key" in swept.stdout and plain not in swept.stdout
        names = {k.name for k in conn.compute.keypairs()}
        assert plain in names and f"{old_run}-key" not in names
        assert conn.network.find_security_group(plain, ignore_missing=False) is not None
    finally:
        conn.compute.delete_keypair(plain, ignore_missing=True)
        conn.compute.delete_keypair(f"{old_run}-key", ignore_missing=True)
        conn.network.delete_security_group(group, ignore_missing=True)
        conn.close()
