"""The sweeper: durations, prefix-only selection, age cut-off, dry run, ordered deletion."""

from __future__ import annotations

import argparse
import datetime as dt
from types import SimpleNamespace

import pytest
from fake_openstack import FakeCloud
from helpers.suite import default_sigint

from conformance import cleanup
from conformance.resources import new_run_prefix


def test_parse_duration():
    assert cleanup.parse_duration("90") == dt.timedelta(seconds=90)
    assert cleanup.parse_duration("1h30m") == dt.timedelta(minutes=90)
    assert cleanup.parse_duration("2d") == dt.timedelta(days=2)
    assert cleanup.parse_duration("0s") == dt.timedelta(0)
    for bad in ("", "abc", "1x", "h1"):
        with pytest.raises(argparse.ArgumentTypeError):
            cleanup.parse_duration(bad)


class SweepCloud(FakeCloud):
    project_id = "p1"

    def endpoint(self, service):
        return "http://volume" if service == "block-storage" else None

    def close(self):
        pass


def _populate(cloud, prefix):
    cloud.compute.create_server(f"{prefix}-burst-000")
    cloud.compute.create_server("production-db")  # no prefix: must survive
    cloud.compute.create_server("conformance-but-not-a-run-prefix")
    cloud.compute.create_keypair(f"{prefix}-key")
    cloud.compute.create_keypair("admin-key")
    cloud.network.fips["f1"] = SimpleNamespace(id="f1", description=f"{prefix}-fip")
    cloud.network.fips["f2"] = SimpleNamespace(id="f2", description="")
    cloud.network.groups["g1"] = SimpleNamespace(id="g1", name=f"{prefix}-sg")
    cloud.network.groups["g2"] = SimpleNamespace(id="g2", name="default")
    cloud.block_storage.vols["v1"] = SimpleNamespace(id="v1", name=f"{prefix}-vol", status="available", attachments=[])
    cloud.block_storage.vols["v2"] = SimpleNamespace(id="v2", name=None, status="available", attachments=[])
    cloud.image.imgs["i1"] = SimpleNamespace(id="i1", name=f"{prefix}-image-zuul")
    cloud.image.imgs["i2"] = SimpleNamespace(id="i2", name="ubuntu-noble")


@pytest.fixture
def swept(monkeypatch):
    from conformance import cloud as cloudlayer

    clouds = {}

    def open_cloud(name, region=None, role="zuul", **kw):
        return clouds.setdefault(name, SweepCloud(scope=f"{role}/RegionOne"))

    monkeypatch.setattr(cloudlayer, "open_cloud", open_cloud)
    monkeypatch.setattr(cloudlayer, "check_access", lambda cloud: None)
    monkeypatch.setattr(cloudlayer, "cloud_regions", lambda name: ["RegionOne"])
    return clouds


def _remaining(cloud):
    return (
        {s.name for s in cloud.compute.servers_by_id.values()},
        set(cloud.compute.keypair_map),
        set(cloud.network.fips),
        set(cloud.network.groups),
        set(cloud.block_storage.vols),
        set(cloud.image.imgs),
    )


def test_dry_run_deletes_nothing(swept, capsys):
    prefix = new_run_prefix()
    zuul = swept.setdefault("z", SweepCloud(scope="zuul/RegionOne"))
    _populate(zuul, prefix)
    before = _remaining(zuul)
    assert cleanup.main(["--zuul-cloud", "z", "--ci-cloud", "c", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete" in out and "6 resource(s) would be deleted" in out
    assert "production-db" not in out and "ubuntu-noble" not in out
    assert _remaining(zuul) == before


def test_sweep_deletes_only_prefixed_in_both_projects(swept, capsys):
    prefix = new_run_prefix()
    zuul = swept.setdefault("z", SweepCloud(scope="zuul/RegionOne"))
    ci = swept.setdefault("c", SweepCloud(scope="ci/RegionOne"))
    ci.project_id = "p2"
    _populate(zuul, prefix)
    _populate(ci, prefix)
    assert cleanup.main(["--zuul-cloud", "z", "--ci-cloud", "c", "--timeout", "5"]) == 0
    for cloud in (zuul, ci):
        servers, keys, fips, groups, vols, imgs = _remaining(cloud)
        assert servers == {"production-db", "conformance-but-not-a-run-prefix"}
        assert keys == {"admin-key"} and fips == {"f2"} and groups == {"g2"} and vols == {"v2"}
        assert imgs == {"i2"}
        kinds = [k for k, _ in cloud.order]
        assert kinds.index("server") < kinds.index("volume") < kinds.index("image")
    assert "deleted 12 resource(s)" in capsys.readouterr().out


def test_older_than_keeps_young_runs(swept, capsys):
    old = new_run_prefix(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3))
    young = new_run_prefix()
    zuul = swept.setdefault("z", SweepCloud(scope="zuul/RegionOne"))
    zuul.compute.create_keypair(f"{old}-key")
    zuul.compute.create_keypair(f"{young}-key")
    assert cleanup.main(["--zuul-cloud", "z", "--ci-cloud", "c", "--older-than", "2h"]) == 0
    assert set(zuul.compute.keypair_map) == {f"{young}-key"}
    assert "skipped 1 resource(s)" in capsys.readouterr().out


def test_delete_failure_gives_exit_1(swept, capsys):
    zuul = swept.setdefault("z", SweepCloud(scope="zuul/RegionOne"))
    zuul.compute.create_server(f"{new_run_prefix()}-x")
    zuul.fail_deletes = True
    assert cleanup.main(["--zuul-cloud", "z", "--ci-cloud", "c", "--timeout", "0.2"]) == 1
    assert "FAILED: server" in capsys.readouterr().err


def test_run_option_limits_to_one_run(swept, capsys):
    one, other = new_run_prefix(), new_run_prefix()
    zuul = swept.setdefault("z", SweepCloud(scope="zuul/RegionOne"))
    zuul.compute.create_keypair(f"{one}-key")
    zuul.compute.create_keypair(f"{other}-key")
    assert cleanup.main(["--zuul-cloud", "z", "--ci-cloud", "c", "--run", one]) == 0
    assert set(zuul.compute.keypair_map) == {f"{other}-key"}
    with pytest.raises(SystemExit):
        cleanup.main(["--run", "conformance-bad"])


def test_ctrl_c_while_the_cloud_hangs_is_one_line_and_exit_130(tmp_path):
    """Keystone accepts the connection and never answers; the user presses Ctrl-C: no traceback."""
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
    port = silent.getsockname()[1]
    clouds = tmp_path / "clouds.yaml"
    auth = {
        "auth_url": f"http://127.0.0.1:{port}/v3",
        "username": "u",
        "password": "hunter2-secret",
        "project_name": "p",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    }
    clouds.write_text(
        json.dumps({"clouds": {name: {"auth": auth, "region_name": "R"} for name in ("hang-zuul", "hang-ci")}})
    )  # JSON is YAML
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conformance",
            "cleanup",
            "--zuul-cloud",
            "hang-zuul",
            "--ci-cloud",
            "hang-ci",
            "--dry-run",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    silent.settimeout(60)
    try:
        held, _ = silent.accept()  # it is now waiting on the silent Keystone
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        silent.close()
    held.close()
    assert proc.returncode == 130, err
    assert err.strip() == "python -m conformance cleanup: interrupted"
    assert "Traceback" not in out + err and "hunter2-secret" not in out + err
