"""Fixtures of the real-Zuul tests (`tox -e zuul`): one Zuul per session beside the session's sandbox cloud, and
the sandbox registered as a donated cloud the way a donor registers theirs.

The harness's state is in `.zuul-harness/` (ZUUL_HARNESS_DIR overrides) and is kept after the session for its
logs; the next session starts from nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from harness import NODE_HOME, PROJECT, REPO_ROOT, TENANT, ZuulHarness, tox_for_node

# The sandbox, registered like any donated cloud: job cloud-conformance-<CLOUD> from docs/zuul-cloud-example.yaml.
CLOUD = "loopback"
JOB = f"cloud-conformance-{CLOUD}"
EXAMPLE = REPO_ROOT / "docs" / "zuul-cloud-example.yaml"
LAUNCHER_CLOUD = "sandbox-zuul"  # the clouds.yaml entry test nodes boot in: a zuul.conf connection too
_TIMINGS: dict[str, float] = {}  # the session's harness.timings, for the terminal summary


@pytest.fixture(scope="session")
def zuul_harness(sandbox):
    """The running Zuul (tests.zuul.harness.ZuulHarness); stopped at the end of the session, and checked to
    have stopped everything it started."""
    # The zuul project's clouds.yaml entry is the launcher's OpenStack connection of the same name, as a donated
    # cloud's is in OpenDev's zuul.conf (the onboarding draft names it): tests/zuul/test_launcher_node.py.
    launcher_cloud = yaml.safe_load(Path(sandbox.clouds_yaml).read_text())["clouds"][LAUNCHER_CLOUD]
    harness = ZuulHarness(
        Path(os.environ.get("ZUUL_HARNESS_DIR") or REPO_ROOT / ".zuul-harness"),
        openstack_clouds={LAUNCHER_CLOUD: launcher_cloud},
    )
    # What the builds create on the node (this machine), removed at the end when it was not there before.
    for path in (NODE_HOME / "src", NODE_HOME / "zuul-output", NODE_HOME / ".config" / "opendev-conformance"):
        harness.note_node_path(path)
    harness.timings = _TIMINGS
    harness.up()
    try:
        yield harness
    finally:
        table = harness.table.load()
        harness.down()
        (harness.root / "timings.json").write_text(json.dumps(_TIMINGS, indent=1))
        from sandbox.processes import is_alive

        survivors = [name for name, proc in table.items() if is_alive(proc)]
        assert not survivors, f"zuul harness down left processes running: {survivors}"


class _ExampleLoader(yaml.SafeLoader):
    """Reads docs/zuul-cloud-example.yaml, whose secret holds a placeholder under Zuul's !encrypted tag."""


_ExampleLoader.add_constructor("!encrypted/pkcs1-oaep", lambda loader, node: loader.construct_sequence(node))


def cloud_file(secret_stanza: str, cacert: str, variables: dict) -> str:
    """docs/zuul-cloud-example.yaml for CLOUD: the secret zuul-client printed (plus the CA), and the example's
    semaphore, job and project stanzas renamed, with the test's job variables."""
    ca_block = "      cacert: |\n" + "".join(f"        {line}\n" for line in cacert.strip().splitlines())
    stanzas = [s for s in yaml.load(EXAMPLE.read_text(), Loader=_ExampleLoader) if "secret" not in s]
    text = yaml.safe_dump(stanzas, sort_keys=False).replace("cloud-conformance-example", JOB)
    stanzas = yaml.safe_load(text)
    for stanza in stanzas:
        if "job" in stanza:
            stanza["job"]["vars"] = {**stanza["job"].get("vars", {}), **variables}
    return secret_stanza.rstrip("\n") + "\n" + ca_block + "\n" + yaml.safe_dump(stanzas, sort_keys=False)


@pytest.fixture(scope="session")
def secret_values(sandbox) -> tuple[dict, str]:
    """The sandbox's two project entries (without their local cacert path) and its CA's PEM."""
    clouds = yaml.safe_load(Path(sandbox.clouds_yaml).read_text())["clouds"]
    entries = {
        name: {k: v for k, v in clouds[name].items() if k != "cacert"} for name in ("sandbox-zuul", "sandbox-ci")
    }
    return entries, Path(clouds["sandbox-zuul"]["cacert"]).read_text()


@pytest.fixture(scope="session")
def loopback_job(zuul_harness, secret_values, tmp_path_factory) -> str:
    """Register the sandbox as a donated cloud, as a donor would: zuul-client fetches the project's public key
    from zuul-web and encrypts the clouds.yaml; the file goes into the project's zuul.d/."""
    entries, cacert = secret_values
    work = tmp_path_factory.mktemp("secret")
    plain, encrypted = work / "clouds.yaml", work / "secret.yaml"
    plain.write_text(yaml.safe_dump({"clouds": entries}))
    plain.chmod(0o600)
    subprocess.run(
        [
            zuul_harness.bin("zuul-client"),
            "--zuul-url",
            zuul_harness.web_url,
            "encrypt",
            "--tenant",
            TENANT,
            "--project",
            PROJECT,
            "--secret-name",
            JOB,
            "--field-name",
            "clouds_yaml",
            "--infile",
            str(plain),
            "--outfile",
            str(encrypted),
        ],
        check=True,
        capture_output=True,
    )
    plain.unlink()
    variables = {
        "conformance_profile": "sandbox",
        "conformance_zuul_cloud": "sandbox-zuul",
        "conformance_ci_cloud": "sandbox-ci",
        "conformance_regions": ["RegionOne"],
        # A small burst keeps the build short; the sandbox's own tests cover bigger ones. R5/R11 on the fake
        # nodes' emulation: a real guest takes minutes under TCG (test_launcher_node.py runs a job on one).
        "conformance_extra_args": ["--burst-size=3", "--burst-timeout=300", "--probe-image=none"],
        "conformance_tox_executable": tox_for_node(),
    }
    zuul_harness.commit(
        {f"zuul.d/cloud-{CLOUD}.yaml": cloud_file(encrypted.read_text(), cacert, variables)}, f"Add the {CLOUD} cloud"
    )
    zuul_harness.wait_for_job(JOB)
    return JOB


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        figures = ", ".join(f"{name} {value:.1f}" for name, value in _TIMINGS.items())
        terminalreporter.write_line(f"zuul harness timings (s): {figures}")
