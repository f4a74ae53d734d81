"""Where the sandbox keeps things and which loopback ports it uses."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REGION = "RegionOne"
HOST = "127.0.0.1"

# Loopback ports; SANDBOX_PORT_OFFSET shifts them all (e.g. to run beside a real service on this machine).
BASE_PORTS = {
    "keystone": 5000,  # https
    "keystone-http": 5001,  # plain http listener, only for negative tests (http Keystone must FAIL R7)
    "glance": 9292,
    "placement": 8778,
    "nova-api": 8774,
    "neutron": 9696,
    "cinder-api": 8776,
    # Not RabbitMQ's defaults: installing the apt package on a systemd machine starts a system broker there.
    # Below the kernel's ephemeral range (32768-60999), as every port here: the Erlang node's own connection to
    # epmd once got 35672 + 2000 as its source port (Linux picks a connection's port near a hash of where it
    # goes), and RabbitMQ could not listen there ("could_not_start_listener"), twice in a row.
    "rabbitmq": 5772,
    "rabbitmq-dist": 5773,
    "epmd": 4469,
}


# Bump when the template's making changes in a way seed.py and the pins don't show (e.g. schema sync steps).
TEMPLATE_FORMAT = "6"  # 6: the public network on the guest net, private subnets without DHCP, the real host mapped

# The real compute host's guests sit on a bridge of this machine in a TEST-NET range (RFC 5737) that is not the
# machine's uplink (192.0.2.0/24 is, on the machines this project runs on): the sandbox's public network. No
# forwarding, no NAT, no route out: the host reaches its own guests, nothing else. A range is on one bridge of
# the machine at a time: a second sandbox with real guests beside the first (CI's Zuul tests beside the project's
# own) takes the other half with SANDBOX_GUEST_NET. Halves of TEST-NET-2 only: TEST-NET-3 (203.0.113.0/24) is
# routed out of these machines (their package mirror answers there), and a bridge holding it cut them off.
GUEST_NETS = ("198.51.100.0/25", "198.51.100.128/25")


@dataclass(frozen=True)
class Layout:
    root: Path  # the state dir: everything of one running sandbox

    @classmethod
    def from_env(cls) -> Layout:
        return cls(Path(os.environ.get("SANDBOX_DIR") or REPO_ROOT / ".sandbox").resolve())

    @property
    def ports(self) -> dict[str, int]:
        offset = int(os.environ.get("SANDBOX_PORT_OFFSET", "0"))
        return {name: port + offset for name, port in BASE_PORTS.items()}

    def url(self, service: str, scheme: str = "http", suffix: str = "") -> str:
        return f"{scheme}://{HOST}:{self.ports[service]}{suffix}"

    @property
    def keystone_url(self) -> str:
        return self.url("keystone", "https", "/v3")

    # files and folders
    etc = property(lambda self: self.root / "etc")
    log = property(lambda self: self.root / "log")
    data = property(lambda self: self.root / "data")
    mysql_dir = property(lambda self: self.root / "data" / "mysql")
    mysql_socket = property(lambda self: self.root / "mysql.sock")
    rabbit_dir = property(lambda self: self.root / "data" / "rabbitmq")
    clouds_yaml = property(lambda self: self.root / "clouds.yaml")
    credentials = property(lambda self: self.root / "credentials.json")
    processes = property(lambda self: self.root / "processes.json")
    guest_file = property(lambda self: self.root / "guest.json")
    zygote_socket = property(lambda self: self.root / "zygote.sock")  # sandbox/zygote.py
    # The real compute host: libvirtd's own /etc, /run, /var/lib, /var/log and /var/cache (bind-mounted in its
    # private mount namespace), the guests' disks, and what `up` decided about it.
    libvirt_dir = property(lambda self: self.root / "data" / "libvirt")
    libvirt_socket = property(lambda self: self.root / "data" / "libvirt" / "run" / "libvirt-sock")
    real_instances = property(lambda self: self.root / "data" / "nova-real" / "instances")
    real_host_file = property(lambda self: self.root / "real-host.json")
    ca_cert = property(lambda self: self.root / "etc" / "ca.pem")
    tls_cert = property(lambda self: self.root / "etc" / "keystone-cert.pem")
    tls_key = property(lambda self: self.root / "etc" / "keystone-key.pem")
    lock = property(lambda self: self.root / "up.lock")

    @property
    def guest_net(self) -> str:
        """The public network's IPv4 range, on the guests' bridge: one of GUEST_NETS (SANDBOX_GUEST_NET)."""
        net = os.environ.get("SANDBOX_GUEST_NET") or GUEST_NETS[0]
        if net not in GUEST_NETS:
            from sandbox.waiting import SandboxError

            raise SandboxError(f"SANDBOX_GUEST_NET={net} is not one of {', '.join(GUEST_NETS)}")
        return net

    @property
    def guest_gateway(self) -> str:
        """The bridge's own address: the range's first."""
        return str(next(ipaddress.ip_network(self.guest_net).hosts()))

    @property
    def bridge(self) -> str:
        """The guests' bridge (an interface name: at most 15 characters)."""
        offset = int(os.environ.get("SANDBOX_PORT_OFFSET", "0"))
        return f"sbxbr{offset}"

    def db_url(self, database: str) -> str:
        # Unix socket only (mariadbd runs with --skip-networking): no TCP port, no password to leak.
        return f"mysql+pymysql://root@/{database}?unix_socket={self.mysql_socket}&charset=utf8"


def venv_bin(program: str) -> str:
    """A console script of the Python environment the sandbox runs in (the services are installed there)."""
    return str(Path(sys.executable).parent / program)


def cache_root() -> Path:
    return Path(os.environ.get("SANDBOX_CACHE_DIR") or Path.home() / ".cache" / "opendev-conformance" / "sandbox")


def bytecode_dir() -> Path:
    """Where the services' Python keeps its compiled bytecode (PYTHONPYCACHEPREFIX): beside the templates, one for
    every sandbox of this user. Python checks each file against its source's size and time, so new pins just
    add files."""
    return cache_root() / "bytecode"


def template_key(layout: Layout) -> str:
    """Identity of a database template: what went into it (pins, sandbox code, state path, ports, guest net)."""
    digest = hashlib.sha256(TEMPLATE_FORMAT.encode())
    for path in (Path(__file__).parent / "seed.py", REPO_ROOT / "constraints.txt"):
        if path.exists():
            digest.update(path.read_bytes())
    digest.update(str(layout.root).encode())
    digest.update(repr(sorted(layout.ports.items())).encode())
    digest.update(layout.guest_net.encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]
