#!/usr/bin/env bash
# Installs what the real-Zuul harness (tests/zuul/, `tox -e zuul`) needs on a Debian machine (run as root;
# `sandbox/prereqs.sh --zuul` calls it):
#   - ZooKeeper (the plain `zookeeper` package, not `zookeeperd`: no system service), a Java runtime,
#     bubblewrap (the executor's sandbox) and openssh-server (the private sshd playing the static node)
#   - Zuul from PyPI in its own venv, and the Ansible versions its executor runs (`zuul-manage-ansible`)
#   - nodepool from PyPI in its own venv (`nodepool config-validate` of the onboarding drafts)
# The venv and the Ansible root are cached per Zuul version in $CONFORMANCE_ZUUL_CACHE (default
# ~/.cache/opendev-conformance/zuul); a second run finds them and returns at once.
set -euo pipefail

ZUUL_VERSION=14.3.0
ZUUL_CLIENT_VERSION=14.0.0
cache=${CONFORMANCE_ZUUL_CACHE:-$HOME/.cache/opendev-conformance/zuul}/zuul-$ZUUL_VERSION

packages=(zookeeper default-jre-headless bubblewrap openssh-server openssh-client python3-venv git openssl)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "zuul prereqs: installing ${missing[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    # openssh-server must not start a system sshd on *:22: keep a policy-rc.d that forbids service starts
    # for the duration of the install (containers have one already; it is left as found).
    added_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && added_policy=1
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    [ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

# nodepool in a venv of its own, for `nodepool config-validate` of the bundle's nodepool draft
# (tests/zuul/test_onboarding_drafts.py). Cached per version in $CONFORMANCE_NODEPOOL_CACHE (default
# ~/.cache/opendev-conformance/nodepool). nodepool 11.0.0 imports pkg_resources (gone from setuptools 81) and
# cachetools without requiring either: both are installed beside it.
NODEPOOL_VERSION=11.0.0
nodepool_cache=${CONFORMANCE_NODEPOOL_CACHE:-$HOME/.cache/opendev-conformance/nodepool}/nodepool-$NODEPOOL_VERSION
if ! "$nodepool_cache/venv/bin/python" -W ignore -c "import nodepool.cmd.config_validator, cachetools, pkg_resources" 2>/dev/null; then
    echo "zuul prereqs: installing nodepool $NODEPOOL_VERSION into $nodepool_cache/venv"
    rm -rf "$nodepool_cache/venv"
    mkdir -p "$nodepool_cache"
    nodepool_packages=("nodepool==$NODEPOOL_VERSION" "setuptools<81" "cachetools==8.0.2")
    if command -v uv >/dev/null 2>&1; then
        uv venv -q --seed --python /usr/bin/python3 "$nodepool_cache/venv"
        VIRTUAL_ENV="$nodepool_cache/venv" uv pip install -q "${nodepool_packages[@]}"
    else
        /usr/bin/python3 -m venv "$nodepool_cache/venv"
        "$nodepool_cache/venv/bin/pip" install -q "${nodepool_packages[@]}"
    fi
fi

# Written once the venv and every Ansible validated: later runs skip the checks (which take seconds to minutes).
ready="$cache/ready"
if [ -f "$ready" ] && "$cache/venv/bin/python" -c "import zuul, zuulclient" 2>/dev/null; then
    echo "zuul prereqs: ready (zuul $ZUUL_VERSION in $cache)"
    exit 0
fi

# The venv is built on Debian's /usr/bin/python3: bubblewrap (the executor's sandbox) exposes only /usr, /lib,
# /bin and /sbin, so an interpreter from elsewhere (pyenv) would be invisible to the playbooks.
if ! "$cache/venv/bin/python" -c "import zuul, zuulclient" 2>/dev/null; then
    echo "zuul prereqs: installing zuul $ZUUL_VERSION into $cache/venv"
    rm -rf "$cache/venv"
    mkdir -p "$cache"
    if command -v uv >/dev/null 2>&1; then
        uv venv -q --seed --python /usr/bin/python3 "$cache/venv"
        VIRTUAL_ENV="$cache/venv" uv pip install -q "zuul==$ZUUL_VERSION" "zuul-client==$ZUUL_CLIENT_VERSION"
    else
        /usr/bin/python3 -m venv "$cache/venv"
        "$cache/venv/bin/pip" install -q "zuul==$ZUUL_VERSION" "zuul-client==$ZUUL_CLIENT_VERSION"
    fi
fi

# The executor refuses to start unless every Ansible version it supports validates. (`zuul-manage-ansible
# --validate` exits 0 either way, so ask its library.)
ansible_ok() {
    "$cache/venv/bin/python" - "$cache/ansible" <<'PY' >/dev/null 2>&1
import sys
from zuul.lib.ansible import AnsibleManager
sys.exit(0 if AnsibleManager(runtime_install_root=sys.argv[1]).validate() else 1)
PY
}
if ! ansible_ok && command -v uv >/dev/null 2>&1; then
    # What zuul-manage-ansible does (one venv per Ansible version, with the requirements Zuul lists in its own
    # ansible-config.conf), with uv: in parallel and from uv's cache instead of pip --no-cache-dir, version by
    # version (1.6 GB).
    echo "zuul prereqs: installing Ansible for the executor into $cache/ansible (uv)"
    "$cache/venv/bin/python" - "$cache/ansible" <<'PY'
import configparser, importlib.resources, subprocess, sys
root = sys.argv[1]
config = configparser.ConfigParser()
config.read_string(importlib.resources.files("zuul").joinpath("lib/ansible-config.conf").read_text())
common = config.get("common", "requirements", fallback="").split()
installs = []
for version in (name for name in config.sections() if name != "common"):
    venv = f"{root}/{version}"
    subprocess.run(["uv", "venv", "-q", "--allow-existing", "--python", "/usr/bin/python3", venv], check=True)
    requirements = config.get(version, "requirements").split() + common
    installs.append(subprocess.Popen(["uv", "pip", "install", "-q", "--python", f"{venv}/bin/python", *requirements]))
sys.exit(max(p.wait() for p in installs))
PY
fi
if ! ansible_ok; then
    echo "zuul prereqs: installing Ansible for the executor into $cache/ansible (zuul-manage-ansible)"
    "$cache/venv/bin/zuul-manage-ansible" -r "$cache/ansible"
    ansible_ok || { echo "zuul prereqs: Ansible in $cache/ansible does not validate" >&2; exit 1; }
fi
touch "$ready"
echo "zuul prereqs: ready (zuul $ZUUL_VERSION in $cache)"
