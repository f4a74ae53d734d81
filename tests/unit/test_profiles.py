"""Profiles: the schema, the extends/override merge, dotted access and the one-line errors."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from conformance.errors import BadInput
from conformance.profiles import deep_merge, load_profile


def write(folder, name, text):
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def donor_data():
    return load_profile("opendev-donor").data


@pytest.fixture
def base(tmp_path, donor_data):
    """A copy of opendev-donor in a temp folder, so children can extend it by name."""
    data = {k: v for k, v in donor_data.items()}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**data, "name": "base"}))
    return tmp_path


def test_opendev_donor_holds_the_seed_numbers():
    profile = load_profile("opendev-donor")
    assert profile.name == "opendev-donor"
    assert (profile["flavor.min_ram_mb"], profile["flavor.min_vcpus"], profile["flavor.min_disk_gb"]) == (
        8192,
        8,
        80,
    )
    assert profile["mirror.min_disk_gb"] == 500
    assert profile["quota.instances"] == 100
    assert profile["keystone.require_https"] is True
    assert profile["non_admin.forbidden_roles"] == ["admin", "manager"]
    assert profile.relaxations == ()


def test_sandbox_extends_donor_and_lists_each_relaxation_with_a_reason():
    donor, sandbox = load_profile("opendev-donor"), load_profile("sandbox")
    assert sandbox.name == "sandbox"
    assert sandbox["keystone.min_days_to_expiry"] == 1
    assert sandbox["public_ip.mode"] == "floating"
    # Everything not overridden comes from the parent, nested keys included.
    assert sandbox["flavor"] == donor["flavor"]
    assert sandbox["keystone.min_tls_version"] == donor["keystone.min_tls_version"]
    assert {r.key for r in sandbox.relaxations} == {
        "public_ip.accept_documentation_ranges",
        "keystone.min_days_to_expiry",
        "probe.bench_mb_per_vcpu",
    }
    assert all(r.reason for r in sandbox.relaxations)
    assert sandbox.sources[0].endswith("sandbox.yaml") and sandbox.sources[1].endswith("opendev-donor.yaml")
    assert sandbox.sha256 != donor.sha256 and len(sandbox.sha256) == 64


def test_deep_merge_child_wins_mappings_merge_lists_replace():
    parent = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "l": [1, 2], "s": "parent"}
    child = {"a": {"y": {"q": 3}, "z": 4}, "l": [9], "s": "child"}
    merged = deep_merge(parent, child)
    assert merged == {"a": {"x": 1, "y": {"p": 1, "q": 3}, "z": 4}, "l": [9], "s": "child"}
    assert parent["a"]["y"]["q"] == 2, "the parent must not be modified"


def test_child_overrides_one_nested_key_and_keeps_the_rest(base):
    path = write(
        base,
        "child",
        """
        extends: base
        name: child
        flavor:
          min_vcpus: 4
        relaxations:
          - key: flavor.min_vcpus
            reason: small lab
    """,
    )
    profile = load_profile(str(path))
    assert profile["flavor.min_vcpus"] == 4
    assert profile["flavor.min_ram_mb"] == 8192
    assert profile.name == "child"
    assert [(r.key, r.reason) for r in profile.relaxations] == [("flavor.min_vcpus", "small lab")]


def test_name_is_not_inherited(base):
    path = write(base, "unnamed", "extends: base\n")
    assert load_profile(str(path)).name == "unnamed"


def test_sha256_is_stable_and_follows_the_data(base):
    one = write(base, "one", "extends: base\nname: x\n")
    two = write(base, "two", "extends: base\nname: x\n")
    three = write(base, "three", "extends: base\nname: x\nquota: {instances: 101}\n")
    assert load_profile(str(one)).sha256 == load_profile(str(two)).sha256
    assert load_profile(str(one)).sha256 != load_profile(str(three)).sha256


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("flavor: {min_rma_mb: 1}", ["flavor.min_rma_mb", "unknown key"]),
        ("flavor: {min_ram_mb: lots}", ["flavor.min_ram_mb", "integer"]),
        ("flavor: {min_ram_mb: 0}", ["flavor.min_ram_mb", "minimum"]),
        ("non_admin: {on_violation: shout}", ["non_admin.on_violation", '"shout"', '"fail"']),
        ("keystone: {min_tls_version: '1.4'}", ["keystone.min_tls_version"]),
        ("projects: {zuul: {services: [compute, compoot]}}", ["projects.zuul.services.1"]),
        ("bogus_section: 1", ["bogus_section", "unknown key"]),
        ("relaxations: [{key: flavor.nope, reason: why}]", ["relaxations.0.key", "flavor.nope"]),
        ("relaxations: [{key: flavor.min_vcpus}]", ["relaxations.0.reason", "required"]),
    ],
)
def test_invalid_profile_names_the_key_and_the_problem(base, body, expected):
    path = write(base, "bad", f"extends: base\nname: bad\n{body}\n")
    with pytest.raises(BadInput) as caught:
        load_profile(str(path))
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_a_base_profile_missing_a_required_section_is_rejected(tmp_path, donor_data):
    data = {k: v for k, v in donor_data.items() if k != "quota"}
    path = tmp_path / "partial.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(BadInput, match=r"quota: required key is missing"):
        load_profile(str(path))


def test_unknown_profile_name_lists_the_known_ones():
    with pytest.raises(BadInput, match=r"unknown profile 'nosuch'.*opendev-donor, sandbox"):
        load_profile("nosuch")


def test_missing_profile_path():
    with pytest.raises(BadInput, match=r"profile file /nonexistent/x.yaml does not exist"):
        load_profile("/nonexistent/x.yaml")


def test_unknown_parent_is_named(base):
    path = write(base, "orphan", "extends: no-such-parent\n")
    with pytest.raises(BadInput, match=r"extends: unknown profile 'no-such-parent'"):
        load_profile(str(path))


def test_extends_loop_is_reported(tmp_path):
    write(tmp_path, "a", "extends: b\n")
    write(tmp_path, "b", "extends: a\n")
    with pytest.raises(BadInput, match=r"extends: loops \(a.yaml -> b.yaml -> a.yaml\)"):
        load_profile(str(tmp_path / "a.yaml"))


def test_invalid_yaml_gives_the_line(tmp_path):
    path = write(tmp_path, "broken", "name: x\nflavor: [unclosed\n")
    with pytest.raises(BadInput, match=r"not valid YAML at line \d+"):
        load_profile(str(path))


def test_profile_dir_override(tmp_path, monkeypatch, donor_data):
    (tmp_path / "elsewhere.yaml").write_text(yaml.safe_dump({**donor_data, "name": "elsewhere"}))
    monkeypatch.setenv("CONFORMANCE_PROFILE_DIR", str(tmp_path))
    assert load_profile("elsewhere").name == "elsewhere"


def test_dotted_access():
    profile = load_profile("opendev-donor")
    assert profile["mirror.flavor.min_vcpus"] == 2
    assert "burst.size" in profile and "burst.nope" not in profile
    assert profile.get("burst.nope", 7) == 7
    with pytest.raises(KeyError, match="burst.nope"):
        profile["burst.nope"]
    assert profile.to_dict()["data"]["quota"]["instances"] == 100
