"""The bundle's onboarding drafts, read by Zuul 14.3.0's own configuration loader (tests/zuul/validate_drafts.py:
parsers, flattenConfig, the OpenStack driver's schema and getProvider) and by `nodepool config-validate`, offline.

The drafts come from `onboarding.snippets(doc)` over made-up results documents, one per kind of cloud: one region;
two regions whose flavors differ (and two that agree); a flavor without disk (boot from volume); no public
address measured; public addresses on a provider network; floating IPs; a real probe image. Each is validated and
then read back as the launcher sees it. All the drafts go through one validator process (Zuul imports in
seconds, once).
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from harness import HERE, zuul_home

from conformance.profiles import load_profile
from conformance.report import model, onboarding
from conformance.report.sample import FakeSessionResults

ZUUL_PYTHON = zuul_home() / "venv" / "bin" / "python"
NODEPOOL = (
    Path.home()
    / ".cache"
    / "opendev-conformance"
    / "nodepool"
    / f"nodepool-{onboarding.NODEPOOL_VERSION}"
    / "venv"
    / "bin"
    / "nodepool"
)

pytestmark = pytest.mark.skipif(not ZUUL_PYTHON.exists(), reason="Zuul is not installed (tests/zuul/prereqs.sh)")
needs_nodepool = pytest.mark.skipif(not NODEPOOL.exists(), reason="nodepool is not installed (tests/zuul/prereqs.sh)")

FLOATING = {
    "ipv4": True,
    "ipv6": False,
    "mode": "floating",
    "addresses": [
        {"addr": "10.0.0.5", "type": "fixed", "network": "private", "public": False, "version": 4},
        {"addr": "198.51.100.7", "type": "floating", "network": "public", "public": True, "version": 4},
    ],
    "network": {"id": "0a1b", "name": "private"},
    "project_networks": ["private"],
}
PROVIDER = {
    "ipv4": True,
    "ipv6": True,
    "mode": "provider",
    "addresses": [{"addr": "198.51.100.8", "type": "fixed", "network": "provider-net", "public": True, "version": 4}],
    "network": {"id": "2c3d", "name": "provider-net"},
    "project_networks": ["provider-net", "private"],
}
NOTHING = {"ipv4": False, "ipv6": False, "mode": "floating", "addresses": []}
PROBE_IMAGE = {"id": "5f0c7a1e-3b8d-4c55-9a55-0d3c1f1e2a77", "name": "ubuntu-24.04"}


def _result(rid, check, verdict="PASS", *, region="RegionOne", data=None):
    return {
        "requirement": rid,
        "check": check,
        "project": "zuul",
        "region": region,
        "measured": "",
        "threshold": "",
        "verdict": verdict,
        "reason": "",
        "data": data or {},
        "test": f"t::{check}",
    }


def results_doc(regions: dict[str, dict]) -> dict:
    """A results document as the suite writes it (model.build_document over the opendev-donor profile), with
    R4's flavor, R6's public address, R8's quota and R5's probe image per region, as `regions` says."""
    results = []
    for region, spec in regions.items():
        flavor = {"name": spec.get("flavor", "ci.standard"), "ram": 8192, "vcpus": 8, "disk": spec.get("disk", 80)}
        results.append(_result("R4", "flavor.test_node", region=region, data={"flavor": flavor}))
        r6 = spec.get("r6", FLOATING)
        results.append(
            _result(
                "R6",
                "public_ip",
                "PASS" if r6.get("ipv4") or r6.get("ipv6") else "FAIL",
                region=region,
                data={**r6, "flavor": flavor["name"]},
            )
        )
        results.append(
            _result(
                "R8",
                "quota.instances",
                region=region,
                data={"flavor": flavor["name"], "max_servers": spec.get("max_servers", 150)},
            )
        )
        if spec.get("probe_image"):
            results.append(_result("R5", "cpu.vcpus", region=region, data={"probe_image": spec["probe_image"]}))
    session = FakeSessionResults(
        results=results,
        profile=load_profile("opendev-donor"),
        clouds={
            "zuul": {
                "cloud": "donor",
                "auth_url": "https://keystone.example.org/v3",
                "regions": list(regions),
                "project_name": "zuul",
            }
        },
    )
    return model.build_document(session, bundle_name="donor-20261128T120000Z", exit_status=0)


CASES = {
    "one-region": {"RegionOne": {}},
    "two-regions-different-flavors": {"RegionOne": {"flavor": "ci.standard"}, "RegionTwo": {"flavor": "ci.large"}},
    "two-regions-same-flavor": {"RegionOne": {}, "RegionTwo": {}},
    "boot-from-volume": {"RegionOne": {"disk": 0}},
    "no-public-ip": {"RegionOne": {"r6": NOTHING}},
    "provider-network": {"RegionOne": {"r6": PROVIDER}},
    "floating-ip": {"RegionOne": {"r6": FLOATING}},
    "probe-image": {"RegionOne": {"probe_image": PROBE_IMAGE}},
}
SUBSTITUTES = {
    "label": "debian-trixie",
    "flavor": "large",
    "image": "debian-trixie-image",
    "key-name": "zuul-nodes",
    "image-id": "9d2b7f43-1c1e-4b8a-8d7e-2f6f0e4c5b11",
    "flavor-name": "m1.huge",
    "cloud": "other",
}


def _split(text: str) -> tuple[str, list]:
    """The draft's comment header (with the tenant objects) and its objects."""
    body_at = text.index("\n- ") + 1
    return text[:body_at], yaml.safe_load(text[body_at:])


def _with(text: str, change) -> str:
    head, objects = _split(text)
    change(objects)
    return head + yaml.safe_dump(objects, sort_keys=False)


def _flavors_in_provider(objects):
    section = next(o["section"] for o in objects if "section" in o)
    next(o["provider"] for o in objects if "provider" in o)["flavors"] = section.pop("flavors")


def _no_images(objects):
    next(o["section"] for o in objects if "section" in o).pop("images")


# The shape the drafts had before they followed Zuul 14.3.0 (kept to show what Zuul says about it), with the
# tenant objects its placeholders named.
OLD_TENANT = (
    onboarding.TENANT_MARKER + ":\n#   - image: {name: ubuntu-noble, type: cloud}\n"
    "#   - flavor: {name: normal}\n#   - label: {name: ubuntu-noble, image: ubuntu-noble, flavor: normal}\n"
)
OLD_ONE_REGION = (
    OLD_TENANT
    + """\
- section:
    name: donor-base
    abstract: true
    connection: donor
    label-defaults:
      auto-floating-ip: true
      boot-from-volume: true
    flavors:
    - {name: normal, flavor-name: ci.standard, public-ipv4: true, public-ipv6: false, volume-size: 80}
- provider:
    name: donor-regionone
    section: donor-base
    region: RegionOne
    resource-limits: {instances: 150}
    labels:
    - name: ubuntu-noble
"""
)
OLD_TWO_REGIONS = (
    OLD_ONE_REGION
    + """\
- provider:
    name: donor-regiontwo
    section: donor-base
    region: RegionTwo
    resource-limits: {instances: 150}
    flavors:
    - {name: normal, flavor-name: ci.large, public-ipv4: true, public-ipv6: false, volume-size: 80}
    labels:
    - name: ubuntu-noble
"""
)


@pytest.fixture(scope="module")
def drafts(tmp_path_factory) -> dict[str, dict[str, str]]:
    """Case -> {file name under onboarding/: text}, plus the broken variants."""
    out = {name: onboarding.snippets(results_doc(regions)) for name, regions in CASES.items()}
    zuul = out["one-region"]["zuul-launcher-provider.yaml"]
    substituted = zuul
    for placeholder in onboarding.PLACEHOLDERS:
        substituted = substituted.replace(placeholder.value, SUBSTITUTES[placeholder.key])
    out["placeholders-replaced"] = {"zuul-launcher-provider.yaml": substituted}
    out["flavors-in-provider"] = {"zuul-launcher-provider.yaml": _with(zuul, _flavors_in_provider)}
    out["image-missing"] = {"zuul-launcher-provider.yaml": _with(zuul, _no_images)}
    out["old-one-region"] = {"zuul-launcher-provider.yaml": OLD_ONE_REGION}
    out["old-two-regions"] = {"zuul-launcher-provider.yaml": OLD_TWO_REGIONS}
    return out


# `nodepool config-validate` (NodePoolCmd.config_validate: ConfigValidator(path).validate()) over many files in
# one process, with each file's logged errors.
NODEPOOL_BATCH = """
import json, logging, sys, warnings
warnings.simplefilter("ignore")
from nodepool.cmd.config_validator import ConfigValidator

class Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

out = {}
for path in sys.argv[1:]:
    keep = Keep()
    logging.getLogger().addHandler(keep)
    out[path] = {"rc": ConfigValidator(path).validate(), "errors": keep.lines}
    logging.getLogger().removeHandler(keep)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def validated(drafts, tmp_path_factory) -> dict[str, dict]:
    """{"zuul": case -> {errors, providers}, "nodepool": case -> {rc, errors}}: one validate_drafts.py run over
    every case's launcher draft and, beside it, one nodepool run over every case's nodepool draft."""
    folder = tmp_path_factory.mktemp("drafts")
    zuul_paths, nodepool_paths = {}, {}
    for name, files in drafts.items():
        zuul_paths[name] = folder / f"{name}.yaml"
        zuul_paths[name].write_text(files["zuul-launcher-provider.yaml"])
        if "nodepool-provider.yaml" in files:
            nodepool_paths[name] = folder / f"{name}-nodepool.yaml"
            nodepool_paths[name].write_text(files["nodepool-provider.yaml"])
    out = folder / "zuul.json"
    zuul = subprocess.Popen(
        [str(ZUUL_PYTHON), str(HERE / "validate_drafts.py"), "--json", str(out), *map(str, zuul_paths.values())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    nodepool = None
    if NODEPOOL.exists():
        nodepool = subprocess.Popen(
            [str(NODEPOOL.with_name("python")), "-c", NODEPOOL_BATCH, *map(str, nodepool_paths.values())],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    output = zuul.communicate(timeout=300)[0]
    assert out.exists(), output
    report = json.loads(out.read_text())
    result = {"zuul": {name: report[str(path)] for name, path in zuul_paths.items()}, "nodepool": {}}
    if nodepool is not None:
        stdout, stderr = nodepool.communicate(timeout=300)
        assert nodepool.returncode == 0, stderr
        checked = json.loads(stdout)
        result["nodepool"] = {name: checked[str(path)] for name, path in nodepool_paths.items()}
    return result


@pytest.fixture(scope="module")
def zuul_says(validated) -> dict[str, dict]:
    return validated["zuul"]


def _provider(result: dict, region: str = "RegionOne") -> dict:
    return next(p for p in result["providers"] if p["region"] == region)


def _label(result: dict, region: str = "RegionOne") -> dict:
    return _provider(result, region)["labels"][onboarding.LABEL.value]


@pytest.mark.parametrize("case", sorted(CASES))
def test_zuul_accepts_the_draft(zuul_says, case):
    result = zuul_says[case]
    assert result["errors"] == [], result["errors"]
    assert len(result["providers"]) == len(CASES[case])
    for provider in result["providers"]:
        label = provider["labels"][onboarding.LABEL.value]
        assert label["image"] == onboarding.IMAGE.value and label["flavor"] == onboarding.FLAVOR.value
        assert label["key_name"] == onboarding.KEY_NAME.value and label["boot_timeout"] == 300
        assert provider["launch_timeout"] == 600
        # R8's 150 servers, 10 % below (profiles/opendev-donor.yaml quota.headroom_percent)
        assert provider["resource_limits"]["instances"] == 135


def test_one_region_with_floating_ips(zuul_says, drafts):
    label = _label(zuul_says["one-region"])
    assert label["auto_floating_ip"] is True and label["networks"] == [] and label["boot_from_volume"] is False
    assert _provider(zuul_says["one-region"])["flavors"]["normal"]["flavor_name"] == "ci.standard"
    assert _provider(zuul_says["one-region"])["images"][onboarding.IMAGE.value]["image_id"] == "IMAGE-ID"
    text = drafts["one-region"]["zuul-launcher-provider.yaml"]
    assert "zuul-launcher, Zuul 14.3.0" in text and "# Check every value by hand" in text
    section = next(o["section"] for o in _split(text)[1] if "section" in o)
    assert "abstract" not in section  # the providers reference it directly


def test_two_regions_each_get_their_flavor(zuul_says, drafts):
    result = zuul_says["two-regions-different-flavors"]
    assert _provider(result, "RegionOne")["flavors"]["normal"]["flavor_name"] == "ci.standard"
    assert _provider(result, "RegionTwo")["flavors"]["normal"]["flavor_name"] == "ci.large"
    objects = _split(drafts["two-regions-different-flavors"]["zuul-launcher-provider.yaml"])[1]
    sections = {o["section"]["name"]: o["section"] for o in objects if "section" in o}
    base = sections.pop("donor-base")
    assert base["abstract"] is True and "flavors" not in base
    assert {s["parent"] for s in sections.values()} == {"donor-base"}
    providers = [o["provider"] for o in objects if "provider" in o]
    assert all("flavors" not in p for p in providers)
    assert {p["section"] for p in providers} == set(sections)


def test_two_regions_that_agree_share_one_section(drafts):
    objects = _split(drafts["two-regions-same-flavor"]["zuul-launcher-provider.yaml"])[1]
    assert [o["section"]["name"] for o in objects if "section" in o] == ["donor"]
    assert [o["provider"]["section"] for o in objects if "provider" in o] == ["donor", "donor"]


def test_boot_from_volume_is_a_label_setting(zuul_says):
    result = zuul_says["boot-from-volume"]
    label = _label(result)
    assert label["boot_from_volume"] is True and label["volume_size"] == 80
    assert _provider(result)["flavors"]["normal"]["volume_size"] is None
    assert _provider(result)["resource_limits"] == {"instances": 135, "volumes": 135, "volume_gb": 135 * 80}


def test_no_public_address_measured_keeps_zuuls_default(zuul_says, drafts):
    assert "auto-floating-ip" not in drafts["no-public-ip"]["zuul-launcher-provider.yaml"].split("\n- ", 1)[1]
    label = _label(zuul_says["no-public-ip"])
    assert label["auto_floating_ip"] is True and label["networks"] == []


def test_provider_network_turns_floating_ips_off_and_names_the_network(zuul_says):
    label = _label(zuul_says["provider-network"])
    assert label["auto_floating_ip"] is False and label["networks"] == ["provider-net"]


def test_floating_ips_on_the_only_network(zuul_says):
    label = _label(zuul_says["floating-ip"])
    assert label["auto_floating_ip"] is True and label["networks"] == []


def test_probe_image_id_is_the_image_id(zuul_says, drafts):
    image = _provider(zuul_says["probe-image"])["images"][onboarding.IMAGE.value]
    assert image["image_id"] == PROBE_IMAGE["id"] and image["type"] == "cloud"
    assert onboarding.IMAGE_ID not in onboarding.placeholders_in(drafts["probe-image"]["zuul-launcher-provider.yaml"])


def test_the_validator_finds_the_tenant_objects_the_draft_shows():
    assert f'TENANT_MARKER = "{onboarding.TENANT_MARKER}"' in (HERE / "validate_drafts.py").read_text()


def test_placeholders_replace_by_plain_text(zuul_says):
    result = zuul_says["placeholders-replaced"]
    assert result["errors"] == []
    label = result["providers"][0]["labels"]["debian-trixie"]
    assert label["image"] == "debian-trixie-image" and label["flavor"] == "large"
    assert label["key_name"] == "zuul-nodes"
    assert result["providers"][0]["images"]["debian-trixie-image"]["image_id"] == SUBSTITUTES["image-id"]


def test_flavors_in_a_provider_are_refused(zuul_says):
    errors = zuul_says["flavors-in-provider"]["errors"]
    assert len(errors) == 1
    assert errors[0].endswith(
        'Flavor configuration not permitted in Provider, only Section ("donor-regionone" provider stanza)'
    )


def test_a_label_whose_image_is_missing_is_refused(zuul_says):
    errors = zuul_says["image-missing"]["errors"]
    assert len(errors) == 1 and f'Image "{onboarding.IMAGE.value}" is not attached to provider' in errors[0]


def test_the_shape_before_zuul_14_3_is_refused(zuul_says):
    assert [e.split(": ", 1)[1] for e in zuul_says["old-one-region"]["errors"]] == [
        'Image "ubuntu-noble" is not attached to provider ("donor-regionone" provider stanza)'
    ]
    assert [e.split(": ", 1)[1] for e in zuul_says["old-two-regions"]["errors"]] == [
        'Image "ubuntu-noble" is not attached to provider ("donor-regionone" provider stanza)',
        'Flavor configuration not permitted in Provider, only Section ("donor-regiontwo" provider stanza)',
    ]


@needs_nodepool
@pytest.mark.parametrize("case", sorted(CASES))
def test_nodepool_accepts_the_draft(validated, drafts, case):
    assert validated["nodepool"][case] == {"rc": 0, "errors": []}
    config = yaml.safe_load(drafts[case]["nodepool-provider.yaml"])
    assert config["labels"] == [{"name": onboarding.LABEL.value, "min-ready": 0}]
    assert {p["region-name"] for p in config["providers"]} == set(CASES[case])
    assert all(p["pools"][0]["max-servers"] == 135 for p in config["providers"])


@needs_nodepool
def test_nodepool_pool_follows_the_measurements(drafts):
    def pool(case):
        return yaml.safe_load(drafts[case]["nodepool-provider.yaml"])["providers"][0]["pools"][0]

    assert pool("provider-network")["auto-floating-ip"] is False
    assert pool("provider-network")["networks"] == ["provider-net"]
    assert "auto-floating-ip" not in pool("no-public-ip")
    label = pool("boot-from-volume")["labels"][0]
    assert label["boot-from-volume"] is True and label["volume-size"] == 80


@needs_nodepool
def test_nodepool_refuses_a_label_missing_from_the_top_level(drafts, tmp_path):
    config = yaml.safe_load(drafts["one-region"]["nodepool-provider.yaml"])
    broken = copy.deepcopy(config)
    del broken["labels"]
    path = tmp_path / "nodepool.yaml"
    path.write_text(yaml.safe_dump(broken))
    proc = subprocess.run(
        [str(NODEPOOL), "-c", str(path), "config-validate"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1
    assert "label ubuntu-noble in provider donor-regionone not in top-level labels" in proc.stderr
