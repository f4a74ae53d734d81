#!/usr/bin/env bash
# Installs what the sandbox cloud and the project's tests need on a Debian machine (run as root):
#   - RabbitMQ and MariaDB servers from apt (the sandbox starts its own instances, without systemd)
#   - Chromium (headless) for the report's browser test; ssh-keygen and gpg for signing reports; qemu-img to check
#     the suite's own qcow2 image
#   - tox with tox-uv, which build the Python environments (the OpenStack services come from PyPI)
#   - what building the real guest image (`python -m sandbox image build`, diskimage-builder) and booting it under
#     libvirt/QEMU need; the image itself is built on first use, never here
#   - with --zuul (or CONFORMANCE_PREREQS_ZUUL=1): what tests/zuul/ needs for a real Zuul (tests/zuul/prereqs.sh),
#     2.2 GB that the sandbox and the demo never use
set -euo pipefail

with_zuul=${CONFORMANCE_PREREQS_ZUUL:-0}
for arg in "$@"; do
    case "$arg" in
        --zuul) with_zuul=1 ;;
        *) echo "prereqs: unknown argument $arg (usage: bash sandbox/prereqs.sh [--zuul])" >&2; exit 2 ;;
    esac
done

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

# The real guest image and a libvirt/QEMU host for it (sandbox/guest_image.py). fdisk brings sfdisk; kpartx's own
# binary is shadowed by sandbox/guest_image/shims/ where there is no device-mapper; python3-venv for DIB's venv.
guest_packages=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu genisoimage
                debootstrap kpartx squashfs-tools gdisk dosfstools e2fsprogs sudo procps util-linux iproute2 libvirt-dev
                pkg-config fdisk python3-venv)
missing=()
for package in "${guest_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "prereqs: installing ${missing[*]} with apt (guest image, libvirt/QEMU)"
    export DEBIAN_FRONTEND=noninteractive
    # libvirt-daemon-system's postinst would start libvirtd and virtlogd as system services: a policy-rc.d that
    # forbids service starts is kept for the duration of the install (containers have one already; left as found).
    added_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && added_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT  # also when apt fails
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
fi

if ! command -v tox >/dev/null 2>&1 || ! python3 -c "import tox_uv" 2>/dev/null; then
    echo "prereqs: installing tox and tox-uv with pip"
    python3 -m pip install -q "tox>=4.11" "tox-uv>=1" 2>/dev/null \
        || python3 -m pip install -q --break-system-packages "tox>=4.11" "tox-uv>=1"
fi
# The real Zuul the project's Zuul jobs are tested on (tests/zuul/): ZooKeeper, bubblewrap, sshd, Zuul, Ansible
# (2.2 GB, minutes on a fresh machine): only with --zuul (`tox -e zuul`, CI), not for the sandbox or the demo.
if [ "$with_zuul" != 0 ]; then
    bash "$(dirname "$0")/../tests/zuul/prereqs.sh"
fi
echo "prereqs: ready ($(tox --version | head -1 | cut -d' ' -f1-3))"
