"""The onboarding draft's real consumer: zuul-launcher boots nodes on the sandbox from a bundle's own
`onboarding/zuul-launcher-provider.yaml`, and a job runs on one.

As a donor would, each test first runs the suite against the sandbox (the checks the draft is written from: R4's
flavor, R6's public addresses, R8's quota), takes the bundle's draft unchanged apart from the placeholders a
tenant fills in (label, flavor and image names, the key pair, the image id when the run booted no probe image),
adds the tenant-side `image`/`flavor`/`label` objects OpenDev's own config would hold and a job asking for that
label, and commits it all to the harness tenant. zuul-launcher's OpenStack connection is the zuul project's
clouds.yaml entry (tests/zuul/conftest.py). While the build runs, a watcher reads the launcher's server from the
sandbox's API as admin (flavor, image, network, boot volume, floating IP, host); afterwards nothing with the
launcher's tags may be left.

- `test_real_node_runs_a_job`: a provider-network run (public addresses without floating IPs) drafts a local-disk
  node; the launcher boots the sandbox's guest image on the real host (QEMU), ssh-keyscans it (host-key checking
  on), and the job runs `uname`, `python3 --version` and counts the vCPUs on it: SUCCESS, its log served.
- `test_boot_from_volume_node_with_floating_ip`: a run with the `flavor disk=0` variant and floating IPs drafts a
  boot-from-volume node; the launcher creates the server with a volume of the drafted size and attaches a
  floating IP. The suite's OS-less image boots on a fake node, which nothing can ssh into: for this test only the
  draft's label-defaults get `host-key-checking: false` (the schema's switch for a launcher that cannot reach its
  nodes), and the build ends RETRY_LIMIT when the executor cannot reach the node, which is the expected end here.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from harness import fetch_text

from conformance.report import onboarding
from sandbox.configs import REAL_COMPUTE_HOST, TEST_NODE_FLAVOR
from sandbox.real_host import GLANCE_NAME

HERE = Path(__file__).resolve().parent
PROVIDER_PROFILE = HERE.parent / "profiles" / "sandbox-provider.yaml"
DRAFT_CHECKS = "test_flavors or test_public_ip or test_quota"
KEY_PAIR = "zuul-harness-executor"
PIPELINE = "launcher"  # the test tenant's pipeline for these jobs (tests/zuul/zuul-config/zuul.d/pipelines.yaml)
NODE_PLAYBOOK = """\
- hosts: all
  tasks:
    - name: What the node is
      shell: |
        uname -a
        python3 --version
        echo "vcpus=$(grep -c ^processor /proc/cpuinfo)"
      register: node_facts
    - name: Show it
      debug:
        var: node_facts.stdout_lines
"""


class ServerWatcher(threading.Thread):
    """Every server the launcher creates in the zuul project (its metadata carries `zuul_node_uuid`), as admin
    sees it, sampled every 2 s while a build runs: the last view of each, with every address and boot volume it
    ever showed (the launcher detaches a floating IP before it deletes the server)."""

    def __init__(self, sandbox, project_id: str):
        super().__init__(daemon=True)
        self.conn, self.project_id, self.stop = sandbox.admin(), project_id, threading.Event()
        self.seen: dict[str, dict] = {}

    def sample(self) -> None:
        for server in self.conn.compute.servers(details=True, all_projects=True, project_id=self.project_id):
            if "zuul_node_uuid" not in (server.metadata or {}):
                continue
            view = {
                "id": server.id,
                "name": server.name,
                "status": server.status,
                "flavor": server.flavor,
                "image": server.image,
                "host": server.compute_host,
                "addresses": server.addresses,
                "metadata": server.metadata,
                "key_name": server.key_name,
                "volumes": [
                    self.conn.block_storage.get_volume(v["id"]).to_dict() for v in server.attached_volumes or []
                ],
            }
            before = self.seen.get(server.id, {})
            for network, addresses in (before.get("addresses") or {}).items():
                kept = view["addresses"].setdefault(network, [])
                kept += [a for a in addresses if a not in kept]
            view["volumes"] += [
                v for v in before.get("volumes", []) if v["id"] not in {known["id"] for known in view["volumes"]}
            ]
            self.seen[server.id] = {**before, **view}

    def run(self):
        while not self.stop.wait(2):
            try:
                self.sample()
            except Exception:  # a server deleted between list and get: the next sample sees the rest
                continue

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


def launcher_leftovers(conn, project_id: str, seen: dict[str, dict]) -> list[str]:
    """What the launcher left in the zuul project: servers with its tags, the boot volumes and floating IPs of
    the servers it made."""
    left = [
        f"server {s.name} {s.id}"
        for s in conn.compute.servers(all_projects=True, project_id=project_id)
        if "zuul_node_uuid" in (s.metadata or {})
    ]
    volumes = {v["id"] for server in seen.values() for v in server["volumes"]}
    left += [
        f"volume {v.id} ({v.status})"
        for v in conn.block_storage.volumes(all_projects=True, project_id=project_id)
        if v.id in volumes
    ]
    addresses = {a["addr"] for server in seen.values() for net in (server["addresses"] or {}).values() for a in net}
    left += [
        f"floating IP {f.floating_ip_address}"
        for f in conn.network.ips(project_id=project_id)
        if f.floating_ip_address in addresses
    ]
    return left


LAUNCHER_FILES = ("zuul.d/launcher-provider.yaml", "zuul.d/launcher-tenant.yaml", "playbooks/launcher-node.yaml")


@pytest.fixture(scope="module", autouse=True)
def launcher_config_removed_afterwards(zuul_harness):
    """The other Zuul tests of the session run without these providers, labels and jobs."""
    yield
    zuul_harness.commit(dict.fromkeys(LAUNCHER_FILES), "Remove the launcher tests' providers and jobs")


@pytest.fixture(scope="module")
def zuul_project(sandbox):
    return sandbox.project_id("zuul")


@pytest.fixture(scope="module")
def key_pair(sandbox, zuul_harness):
    """The executor's public key as a key pair of the zuul project: what the draft's `key-name` names."""
    conn = sandbox.connect("sandbox-zuul")
    public_key = (zuul_harness.etc / "id_ed25519.pub").read_text().strip()
    for stale in [k for k in conn.compute.keypairs() if k.name == KEY_PAIR]:  # an earlier session's, killed
        conn.compute.delete_keypair(stale)  # before its teardown
    pair = conn.compute.create_keypair(name=KEY_PAIR, public_key=public_key)
    yield pair.name
    conn.compute.delete_keypair(pair)


def bundle_draft(run_suite, report_dir: Path, *args: str) -> tuple[str, dict]:
    """Run the checks the draft is written from; the bundle's zuul-launcher draft and its results."""
    proc = run_suite("-k", DRAFT_CHECKS, *args, report_dir=report_dir, timeout=900)
    bundles = sorted(p for p in report_dir.iterdir() if (p / "results.json").exists())
    assert bundles, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = json.loads((bundles[-1] / "results.json").read_text())
    failed = [r for r in results["results"] if r["verdict"] == "FAIL"]
    assert not failed, failed
    return (bundles[-1] / "onboarding" / "zuul-launcher-provider.yaml").read_text(), results


def fill_placeholders(draft: str, values: dict[str, str]) -> str:
    """What a tenant fills in: every placeholder the draft holds must be one the test gives a value for."""
    held = {p.key: p for p in onboarding.placeholders_in(draft)}
    assert set(held) <= set(values), f"the draft holds placeholders the test does not fill: {set(held) - set(values)}"
    for key, placeholder in held.items():
        draft = draft.replace(placeholder.value, values[key])
    assert not onboarding.placeholders_in(draft)
    return draft


def tenant_config(label: str, image: str, flavor: str, job: str) -> str:
    """The tenant-side objects the draft refers to (as OpenDev's config would define them) and a job on the
    label."""
    objects = [
        {"image": {"name": image, "type": "cloud"}},
        {"flavor": {"name": flavor}},
        {"label": {"name": label, "image": image, "flavor": flavor}},
        {
            "job": {
                "name": job,
                "run": "playbooks/launcher-node.yaml",
                "nodeset": {"nodes": [{"name": "node", "label": label}]},
            }
        },
        {"project": {PIPELINE: {"jobs": [job]}}},
    ]
    return yaml.safe_dump(objects, sort_keys=False)


def load_and_build(
    zuul_harness, sandbox, zuul_project, draft: str, label: str, image: str, flavor: str, job: str
) -> tuple[dict, dict[str, dict]]:
    files = dict(zip(LAUNCHER_FILES, (draft, tenant_config(label, image, flavor, job), NODE_PLAYBOOK), strict=True))
    zuul_harness.commit(files, f"Nodes for {job} from the bundle's draft")
    zuul_harness.wait_for_job(job)
    assert zuul_harness.tenant_api("/config-errors") == []
    with ServerWatcher(sandbox, zuul_project) as watcher:
        build = zuul_harness.run_build(job, pipeline=PIPELINE, timeout=1800)
        watcher.sample()
    return build, watcher.seen


def wait_until_nothing_left(sandbox, zuul_project, seen: dict[str, dict], timeout: float = 300) -> list[str]:
    """The launcher deletes a node after its build: wait (bounded) until nothing of it is left."""
    conn = sandbox.admin()
    deadline = time.monotonic() + timeout
    left = launcher_leftovers(conn, zuul_project, seen)
    while left and time.monotonic() < deadline:
        time.sleep(3)
        left = launcher_leftovers(conn, zuul_project, seen)
    return left


def test_real_node_runs_a_job(zuul_harness, sandbox, run_suite, tmp_path, zuul_project, key_pair):
    draft, results = bundle_draft(run_suite, tmp_path / "reports", f"--profile={PROVIDER_PROFILE}")
    guest = next(sandbox.admin().image.images(name=GLANCE_NAME))
    values = {
        "label": "sandbox-real-node",
        "flavor": "sandbox-8gb",
        "image": "sandbox-guest-image",
        "key-name": key_pair,
        "image-id": guest.id,
    }
    filled = fill_placeholders(draft, values)
    drafted = yaml.safe_load(filled)
    # As the run measured it: nodes on the provider network, no floating IP.
    [section] = [o["section"] for o in drafted if "section" in o]
    assert section["label-defaults"]["auto-floating-ip"] is False
    assert section["label-defaults"]["networks"] == ["public"]
    build, servers = load_and_build(
        zuul_harness,
        sandbox,
        zuul_project,
        filled,
        values["label"],
        values["image"],
        values["flavor"],
        "launcher-node-real",
    )
    (zuul_harness.root / "launcher-real-build.json").write_text(
        json.dumps({"build": build, "servers": servers}, indent=1, default=str)
    )
    assert build["result"] == "SUCCESS", build
    [server] = servers.values()
    assert server["flavor"]["original_name"] == TEST_NODE_FLAVOR["name"]
    assert server["image"]["id"] == guest.id
    assert server["host"] == REAL_COMPUTE_HOST
    assert list(server["addresses"]) == ["public"]
    assert server["key_name"] == key_pair
    assert [v for v in server["volumes"]] == []
    output = fetch_text(build["log_url"] + "job-output.txt")
    assert "Linux np" in output and "Python 3." in output
    assert f"vcpus={TEST_NODE_FLAVOR['vcpus']}" in output
    assert wait_until_nothing_left(sandbox, zuul_project, servers) == []


def test_boot_from_volume_node_with_floating_ip(zuul_harness, sandbox, run_suite, tmp_path, zuul_project, key_pair):
    with sandbox.test_flavor(disk=0):
        draft, results = bundle_draft(run_suite, tmp_path / "reports", "--profile=sandbox")
        base = next(sandbox.admin().image.images(name="sandbox-base"))
        values = {
            "label": "sandbox-bfv-node",
            "flavor": "sandbox-8gb-bfv",
            "image": "sandbox-os-less",
            "key-name": key_pair,
            "image-id": base.id,
        }
        filled = fill_placeholders(draft, values)
        drafted = yaml.safe_load(filled)
        [section] = [o["section"] for o in drafted if "section" in o]
        defaults = section["label-defaults"]
        assert defaults["boot-from-volume"] is True and defaults["auto-floating-ip"] is True
        volume_size = defaults["volume-size"]
        # This test only: the fake node has no OS to answer an ssh-keyscan (see the module's docstring).
        defaults["host-key-checking"] = False
        build, servers = load_and_build(
            zuul_harness,
            sandbox,
            zuul_project,
            yaml.safe_dump(drafted, sort_keys=False),
            values["label"],
            values["image"],
            values["flavor"],
            "launcher-node-bfv",
        )
        (zuul_harness.root / "launcher-bfv-build.json").write_text(
            json.dumps({"build": build, "servers": servers}, indent=1, default=str)
        )
        left = wait_until_nothing_left(sandbox, zuul_project, servers)
    assert build["result"] == "RETRY_LIMIT", build  # handed to the build, unreachable: no OS on a fake node
    [server] = servers.values()
    assert server["flavor"]["original_name"] == TEST_NODE_FLAVOR["name"] and server["flavor"]["disk"] == 0
    assert server["host"] != REAL_COMPUTE_HOST
    [volume] = server["volumes"]
    assert volume["size"] == volume_size
    assert volume["volume_image_metadata"]["image_id"] == base.id
    floating = [
        a for addresses in server["addresses"].values() for a in addresses if a.get("OS-EXT-IPS:type") == "floating"
    ]
    assert floating, server["addresses"]
    assert left == []
