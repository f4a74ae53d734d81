#!/usr/bin/env bash
# Installs what the sandbox cloud and the project's tests need on a Debian machine (run as root):
#   - RabbitMQ and MariaDB servers from apt (the sandbox starts its own instances, without systemd)
#   - Chromium (headless) for the report's browser test; ssh-keygen and gpg for signing reports; qemu-img to check
#     the suite's own qcow2 image
#   - tox with tox-uv, which build the Python environments (the OpenStack services come from PyPI)
#   - what tests/zuul/ needs for a real Zuul (tests/zuul/prereqs.sh)
set -euo pipefail

packages=(rabbitmq-server mariadb-server mariadb-client chromium openssh-client gnupg qemu-utils)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "prereqs: installing ${missing[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # The packages' own services are not needed (the sandbox runs private instances on other ports).
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v tox >/dev/null 2>&1 || ! python3 -c "import tox_uv" 2>/dev/null; then
    echo "prereqs: installing tox and tox-uv with pip"
    python3 -m pip install -q "tox>=4.11" "tox-uv>=1" 2>/dev/null \
        || python3 -m pip install -q --break-system-packages "tox>=4.11" "tox-uv>=1"
fi
# The real Zuul the project's Zuul jobs are tested on (tests/zuul/): ZooKeeper, bubblewrap, sshd, Zuul, Ansible
# (2.2 GB; CONFORMANCE_PREREQS_ZUUL=0 skips it where only the sandbox is wanted, e.g. the Zuul check job's node).
if [ "${CONFORMANCE_PREREQS_ZUUL:-1}" != 0 ]; then
    bash "$(dirname "$0")/../tests/zuul/prereqs.sh"
fi
echo "prereqs: ready ($(tox --version | head -1 | cut -d' ' -f1-3))"
