"""The onboarding drafts' shape, from made-up results documents (Zuul itself reads them in
tests/zuul/test_onboarding_drafts.py): what R4/R5/R6/R8 measured becomes which setting, the quota headroom, and the
placeholders."""

from __future__ import annotations

import re

import pytest
import yaml

from conformance.report import onboarding

FLOATING = {
    "ipv4": True,
    "ipv6": False,
    "mode": "floating",
    "network": {"id": "n1", "name": "private"},
    "project_networks": ["private", "other"],
}
PROVIDER = {
    "ipv4": True,
    "ipv6": True,
    "mode": "provider",
    "network": {"id": "n2", "name": "provider-net"},
    "project_networks": ["provider-net", "private"],
}


def _result(rid, check, verdict="PASS", region="RegionOne", data=None):
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
    }


def doc(regions: dict[str, dict], *, thresholds=None, burst=None) -> dict:
    results = []
    for region, spec in regions.items():
        flavor = {"name": spec.get("flavor", "ci.standard"), "ram": 8192, "vcpus": 8, "disk": spec.get("disk", 80)}
        results.append(_result("R4", "flavor.test_node", region=region, data={"flavor": flavor}))
        r6 = spec.get("r6", {"ipv4": True, "ipv6": False, "mode": "floating"})
        results.append(
            _result("R6", "public_ip", "PASS" if r6.get("ipv4") or r6.get("ipv6") else "FAIL", region=region, data=r6)
        )
        results.append(_result("R8", "quota.instances", region=region, data={"max_servers": spec.get("max", 200)}))
        if spec.get("probe_image"):
            results.append(_result("R5", "cpu.vcpus", region=region, data={"probe_image": spec["probe_image"]}))
    return {
        "generator": {"version": "0.1.0"},
        "bundle": "donor-20261128T120000Z",
        "profile": {"name": "opendev-donor"},
        "clouds": {"zuul": {"cloud": "donor", "regions": list(regions)}},
        "results": results,
        "burst": burst,
        "profile_thresholds": {"flavor_min_ram_mb": 8192, "flavor_min_disk_gb": 80, **(thresholds or {})},
    }


def objects(d: dict, kind: str) -> list[dict]:
    return [o[kind] for o in onboarding.zuul_launcher(d) if kind in o]


def body(text: str) -> str:
    return text[text.index("\n- ") + 1 :]


def comments(text: str) -> str:
    """The draft's comments as one line (they wrap at 100 columns)."""
    return " ".join(line.strip().lstrip("#").strip() for line in text.splitlines() if line.strip().startswith("#"))


def test_placeholders_are_unique_tokens_in_every_draft():
    values = [p.value for p in onboarding.PLACEHOLDERS]
    assert len({p.key for p in onboarding.PLACEHOLDERS}) == len(values)
    assert not [(a, b) for a in values for b in values if a != b and a in b]
    texts = onboarding.snippets(doc({"RegionOne": {}, "RegionTwo": {"flavor": "ci.large"}}))
    for name in ("zuul-launcher-provider.yaml", "nodepool-provider.yaml"):
        for placeholder in onboarding.PLACEHOLDERS:
            # A plain text replacement hits the placeholder and nothing else.
            whole = re.findall(rf"(?<![\w-]){re.escape(placeholder.value)}(?![\w-])", texts[name])
            assert texts[name].count(placeholder.value) == len(whole), (name, placeholder)
    found = {p.key for p in onboarding.placeholders_in(texts["zuul-launcher-provider.yaml"])}
    assert found == {"label", "flavor", "image", "key-name", "image-id"}


def test_draft_lists_its_placeholders_and_the_tenant_objects():
    text = onboarding.snippets(doc({"RegionOne": {}}))["zuul-launcher-provider.yaml"]
    assert text.startswith("# DRAFT") and "# Check every value by hand" in text
    assert "zuul-launcher, Zuul 14.3.0" in text
    assert '[connection "donor"] driver=openstack cloud=donor' in text
    for placeholder in onboarding.placeholders_in(text):
        assert f"#   {placeholder.value}: {placeholder.meaning}" in text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(onboarding.TENANT_MARKER)) + 1
    block = [line[4:] for line in lines[start:] if line.startswith("#   ")]
    block = block[: next((i for i, line in enumerate(block) if not line.startswith((" ", "-"))), len(block))]
    assert yaml.safe_load("\n".join(block)) == onboarding.tenant_objects()


def test_one_region_one_section_that_providers_reference():
    d = doc({"RegionOne": {}})
    (section,) = objects(d, "section")
    (provider,) = objects(d, "provider")
    assert "abstract" not in section and "parent" not in section
    assert section["connection"] == "donor" and provider["section"] == section["name"]
    assert section["label-defaults"]["key-name"] == onboarding.KEY_NAME.value
    assert section["label-defaults"]["boot-timeout"] == onboarding.BOOT_TIMEOUT_S
    assert section["images"] == [{"name": onboarding.IMAGE.value, "image-id": onboarding.IMAGE_ID.value}]
    assert provider["labels"] == [{"name": onboarding.LABEL.value}]
    assert "flavors" not in provider


def test_two_regions_with_different_flavors_get_a_section_each():
    d = doc({"RegionOne": {"flavor": "ci.standard"}, "RegionTwo": {"flavor": "ci.large"}})
    base, one, two = objects(d, "section")
    assert base["abstract"] is True and "flavors" not in base and base["connection"] == "donor"
    # A Glance ID is per region: each provider names its own (a placeholder here).
    assert "images" not in base
    assert [p["images"] for p in objects(d, "provider")] == [
        [{"name": onboarding.IMAGE.value, "image-id": onboarding.IMAGE_ID.value}]
    ] * 2
    assert (one["parent"], two["parent"]) == (base["name"], base["name"])
    assert one["flavors"][0]["flavor-name"] == "ci.standard" and two["flavors"][0]["flavor-name"] == "ci.large"
    assert [p["section"] for p in objects(d, "provider")] == [one["name"], two["name"]]
    assert all("flavors" not in p for p in objects(d, "provider"))


def test_two_regions_with_different_networks_keep_their_own_label_defaults():
    d = doc({"RegionOne": {"r6": FLOATING}, "RegionTwo": {"r6": PROVIDER}})
    base, one, two = objects(d, "section")
    assert "auto-floating-ip" not in base["label-defaults"]
    assert one["label-defaults"] == {"auto-floating-ip": True, "networks": ["private"]}
    assert two["label-defaults"] == {"auto-floating-ip": False, "networks": ["provider-net"]}
    assert base["flavors"] and "flavors" not in one


@pytest.mark.parametrize(
    "r6, expected",
    [
        ({"ipv4": True, "ipv6": False, "mode": "floating"}, True),
        ({"ipv4": False, "ipv6": True, "mode": "provider"}, False),
        ({"ipv4": False, "ipv6": False, "mode": "provider", "addresses": []}, None),  # R6 failed: Zuul's default
    ],
)
def test_auto_floating_ip_only_from_a_measured_address(r6, expected):
    d = doc({"RegionOne": {"r6": r6}})
    defaults = objects(d, "section")[0]["label-defaults"]
    assert defaults.get("auto-floating-ip") is expected
    nodepool_pool = onboarding.nodepool(d)["providers"][0]["pools"][0]
    assert nodepool_pool.get("auto-floating-ip") is expected
    if expected is None:
        assert "R6 found no public address here" in comments(onboarding.snippets(d)["zuul-launcher-provider.yaml"])


def test_networks_named_only_when_the_project_has_several():
    single = {**FLOATING, "project_networks": ["private"]}
    assert "networks" not in objects(doc({"RegionOne": {"r6": single}}), "section")[0]["label-defaults"]
    assert objects(doc({"RegionOne": {"r6": FLOATING}}), "section")[0]["label-defaults"]["networks"] == ["private"]
    # Without the facts (results from before R6 recorded them) nothing is guessed.
    old = {"ipv4": True, "ipv6": False, "mode": "floating"}
    assert "networks" not in objects(doc({"RegionOne": {"r6": old}}), "section")[0]["label-defaults"]


def test_boot_from_volume_goes_to_label_defaults_with_volume_limits():
    d = doc({"RegionOne": {"disk": 0}})
    (section,) = objects(d, "section")
    assert section["label-defaults"]["boot-from-volume"] is True and section["label-defaults"]["volume-size"] == 80
    assert section["flavors"] == [{"name": onboarding.FLAVOR.value, "flavor-name": "ci.standard"}]
    assert objects(d, "provider")[0]["resource-limits"] == {"instances": 180, "volumes": 180, "volume-gb": 14400}


def test_headroom_comes_from_the_profile():
    assert objects(doc({"RegionOne": {}}), "provider")[0]["resource-limits"]["instances"] == 180  # 200 - 10 %
    d = doc({"RegionOne": {}}, thresholds={"quota_headroom_percent": 25})
    assert objects(d, "provider")[0]["resource-limits"]["instances"] == 150
    text = onboarding.snippets(d)["zuul-launcher-provider.yaml"]
    assert "resource-limits: 25% below the quota R8 measured (200 servers of ci.standard fit" in comments(text)
    assert onboarding.nodepool(d)["providers"][0]["pools"][0]["max-servers"] == 150
    assert onboarding.below_quota(7, 10) == 6 and onboarding.below_quota(1, 10) == 0
    assert onboarding.below_quota(100, 0) == 100


def test_probe_image_id_replaces_the_placeholder():
    image = {"id": "5f0c7a1e-3b8d-4c55-9a55-0d3c1f1e2a77", "name": "ubuntu-24.04"}
    d = doc({"RegionOne": {"probe_image": image}})
    assert objects(d, "section")[0]["images"] == [{"name": onboarding.IMAGE.value, "image-id": image["id"]}]
    texts = onboarding.snippets(d)
    assert onboarding.IMAGE_ID.value not in body(texts["zuul-launcher-provider.yaml"])
    assert "the probe image R5 booted (ubuntu-24.04)" in comments(texts["zuul-launcher-provider.yaml"])
    assert onboarding.nodepool(d)["providers"][0]["cloud-images"] == [
        {"name": onboarding.IMAGE.value, "image-id": image["id"]}
    ]


def test_probe_images_per_region_go_to_the_providers():
    d = doc(
        {
            "RegionOne": {"probe_image": {"id": "a1", "name": "img"}},
            "RegionTwo": {"probe_image": {"id": "b2", "name": "img"}},
        }
    )
    (section,) = objects(d, "section")  # the regions agree on everything else: one section
    assert "images" not in section
    assert [p["images"][0]["image-id"] for p in objects(d, "provider")] == ["a1", "b2"]
    # One Glance for both regions (the same ID): one entry in the section.
    d = doc(
        {
            "RegionOne": {"probe_image": {"id": "a1", "name": "img"}},
            "RegionTwo": {"probe_image": {"id": "a1", "name": "img"}},
        }
    )
    assert objects(d, "section")[0]["images"][0]["image-id"] == "a1"
    assert all("images" not in p for p in objects(d, "provider"))


def test_launch_timeout_covers_the_slowest_burst_node():
    assert objects(doc({"RegionOne": {}}), "section")[0]["launch-timeout"] == 600
    burst = {"max_p95_boot_s": 600, "summary": {"max": 731.2}}
    assert objects(doc({"RegionOne": {}}, burst=burst), "section")[0]["launch-timeout"] == 780


def test_nodepool_draft_has_top_level_labels_and_pool_settings():
    d = doc({"RegionOne": {"r6": PROVIDER, "disk": 0}, "RegionTwo": {"flavor": "ci.large"}})
    config = onboarding.nodepool(d)
    assert config["labels"] == [{"name": onboarding.LABEL.value, "min-ready": 0}]
    one, two = config["providers"]
    assert one["pools"][0]["networks"] == ["provider-net"] and one["pools"][0]["auto-floating-ip"] is False
    assert one["pools"][0]["max-volumes"] == 180 and one["pools"][0]["max-volume-gb"] == 180 * 80
    assert one["pools"][0]["labels"][0]["key-name"] == onboarding.KEY_NAME.value
    assert two["pools"][0]["labels"][0]["flavor-name"] == "ci.large"
    assert {p["launch-timeout"] for p in config["providers"]} == {600}


@pytest.mark.parametrize("seconds, expected", [(None, 300), (63, 300), (200, 420)])
def test_boot_timeout_from_r6s_ssh_handshake(seconds, expected):
    d = doc({"RegionOne": {}})
    if seconds is not None:
        d["results"].append(
            _result(
                "R6",
                "public_ip.reachable",
                data={"seconds": seconds, "probe_image": {"id": "img-r6", "name": "debian"}},
            )
        )
    [section] = objects(d, "section")
    assert section["label-defaults"]["boot-timeout"] == expected
    text = onboarding.snippets(d)["zuul-launcher-provider.yaml"]
    why = "did not measure" if seconds is None else f"{seconds} s"
    assert why in comments(text)
    # R6's probe image (a real image the run booted) fills the image id as R5's would.
    image_id = [i["image-id"] for i in section["images"]]
    assert image_id == (["img-r6"] if seconds is not None else [onboarding.IMAGE_ID.value])
