"""A real Zuul for the project's tests, on loopback, started without systemd or containers.

ZooKeeper (Debian's package, TLS only), a private MariaDB (socket only), zuul-scheduler, zuul-executor, zuul-web,
zuul-launcher with one static node (a private sshd on 127.0.0.1 that accepts the executor's key) and a tiny HTTP
server for the build logs. Two local git repositories feed it: `zuul-config` (trusted: the tenant's `base` job and
`periodic` pipeline, the static provider) and `opendev/cloud-conformance` (this project's working tree, with its
zuul.d/ and playbooks/). Every process is recorded by PID and start time and stopped by that record alone.

    harness = ZuulHarness(root)
    harness.up()           # returns when the tenant's layout is loaded and the executor and launcher run
    harness.api("/builds?job_name=...")
    harness.down()         # stops exactly what up started and removes what the builds left on the node

Install: tests/zuul/prereqs.sh (called by `sandbox/prereqs.sh --zuul`). Gotchas it handles are in the comments and in
the reference recipe the lead keeps (shared/reference/zuul-feasibility).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.processes import ProcessTable, rss_mb
from sandbox.waiting import SandboxError, wait_for

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
HOST = "127.0.0.1"
# Outside the sandbox's ranges (5000-9696 and 34369-35673, shifted by up to 5000) and the usual services'.
PORTS = {"zookeeper": 22281, "web": 29000, "logs": 29001, "finger": 27900, "ssh": 22022}
# The executor's job dirs. Ansible's ssh ControlMaster socket is <job dir>/<build uuid>/.ansible/cp/<10 hex>, and
# ssh first binds it under a name 17 characters longer; a Unix socket path holds 107. Under the harness's own
# directory, a checkout path of 14 characters or more (CI's /check/work/main) overflowed it: ssh exited 255 and
# every build ended RETRY_LIMIT, the node "UNREACHABLE". So job dirs get a short path, whatever the checkout's.
BUILDS_PARENT = Path("/var/tmp")
SOCKET_PATH_MAX = 107
CONTROL_SOCKET_TAIL = len("/0123456789abcdef0123456789abcdef/.ansible/cp/0123456789") + len(".0123456789abcdef")
TENANT = "conformance"
PROJECT = "opendev/cloud-conformance"
CONFIG_PROJECT = "zuul-config"
# The static node carries the label a production job would ask for, so the project's jobs need no change.
NODE_LABEL = "ubuntu-noble"
NODE_USER = "root"
NODE_HOME = Path(os.path.expanduser(f"~{NODE_USER}"))
ZOOKEEPER_JARS = [
    "zookeeper.jar",
    "slf4j-simple.jar",
    # Debian's zookeeper.jar manifest leaves these out; without them the TLS (Netty) handshake fails with
    # NoClassDefFoundError io/netty/handler/codec/ByteToMessageDecoder and clients see only an EOF.
    "netty-codec.jar",
    "netty-resolver.jar",
    "netty-transport-native-unix-common.jar",
]
REGISTRY_ENV = re.compile(
    r"^(SSL_CERT_(FILE|DIR)|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|PIP_[A-Z_]+|UV_[A-Z_]+"
    r"|(HTTPS?|NO|ALL)_PROXY|(https?|no|all)_proxy)$"
)
ZUUL_PROCESSES = ("zuul-scheduler", "zuul-executor", "zuul-web", "zuul-launcher")


class HarnessError(SandboxError):
    """A problem with the harness itself, said in one line."""


def zuul_version() -> str:
    """The one Zuul version the project installs (tests/zuul/prereqs.sh holds it)."""
    match = re.search(r"^ZUUL_VERSION=(\S+)$", (HERE / "prereqs.sh").read_text(), re.M)
    assert match, "ZUUL_VERSION missing from tests/zuul/prereqs.sh"
    return match.group(1)


def zuul_home() -> Path:
    """The cached Zuul install: venv/ (zuul, zuul-client) and ansible/ (zuul-manage-ansible)."""
    cache = os.environ.get("CONFORMANCE_ZUUL_CACHE") or Path.home() / ".cache" / "opendev-conformance" / "zuul"
    return Path(cache) / f"zuul-{zuul_version()}"


def missing_prerequisites() -> list[str]:
    home = zuul_home()
    missing = [
        f"{p} (apt)"
        for p in (
            "/usr/share/java/zookeeper.jar",
            "/usr/bin/bwrap",
            "/usr/sbin/sshd",
            "/usr/sbin/mariadbd",
            "/usr/bin/java",
        )
        if not Path(p).exists()
    ]
    for program in ("zuul-scheduler", "zuul-client", "zuul-manage-ansible"):
        if not (home / "venv" / "bin" / program).exists():
            missing.append(f"{home / 'venv' / 'bin' / program}")
    if not (home / "ansible").is_dir():
        missing.append(f"{home / 'ansible'} (zuul-manage-ansible)")
    return missing


def tox_for_node() -> str:
    """An absolute tox the node's non-interactive ssh sessions can run (a pyenv shim needs its shell setup)."""
    tox = shutil.which("tox")
    if not tox:
        raise HarnessError("tox is not on PATH (bash sandbox/prereqs.sh installs it)")
    if "/shims/" in tox and shutil.which("pyenv"):
        tox = subprocess.run(["pyenv", "which", "tox"], capture_output=True, text=True, check=True).stdout.strip()
    return tox


# ---------------------------------------------------------------------------------------------------- certs
def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certs(directory: Path) -> None:
    """A CA, ZooKeeper's server certificate (PEM keystore: cert and key in one file) and Zuul's client one."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    validity = (now - dt.timedelta(minutes=5), now + dt.timedelta(days=2))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("zuul-harness-ca"))
        .issuer_name(_name("zuul-harness-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(validity[0])
            .not_valid_after(validity[1])
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(pem))
        (directory / f"{name}-key.pem").write_bytes(key_pem)
        (directory / f"{name}-key.pem").chmod(0o600)
    keystore = directory / "zookeeper-keystore.pem"
    keystore.write_bytes((directory / "server.pem").read_bytes() + (directory / "server-key.pem").read_bytes())
    keystore.chmod(0o600)


# ------------------------------------------------------------------------------------------------- harness
class ZuulHarness:
    def __init__(self, root: Path, say=print, openstack_clouds: dict | None = None):
        """`openstack_clouds`: clouds.yaml entries (name -> entry) the launcher may boot nodes in, each made a
        zuul.conf connection of the same name (driver openstack), as a donor's cloud is in OpenDev's zuul.conf."""
        self.openstack_clouds = openstack_clouds or {}
        self.root = Path(root).resolve()
        self.home = zuul_home()
        self.venv = self.home / "venv"
        self.table = ProcessTable(self.root / "processes.json")
        self.say = say
        self.timings: dict[str, float] = {}
        self._node_paths_created: list[Path] = []

    # ---- paths
    etc = property(lambda self: self.root / "etc")
    certs = property(lambda self: self.root / "certs")
    git = property(lambda self: self.root / "git")
    logs = property(lambda self: self.root / "logs")
    logserver = property(lambda self: self.root / "logserver")

    @property
    def builds(self) -> Path:
        """The executor's job dir: short (see BUILDS_PARENT) and named after this harness's root."""
        return BUILDS_PARENT / f"zuul-{hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:8]}"

    conf = property(lambda self: self.root / "etc" / "zuul.conf")
    openstack_clouds_yaml = property(lambda self: self.root / "clouds.yaml")  # the Zuul processes' cwd
    project_repo = property(lambda self: self.root / "git" / PROJECT)
    web_url = f"http://{HOST}:{PORTS['web']}"
    log_url = f"http://{HOST}:{PORTS['logs']}"

    def bin(self, program: str) -> str:
        return str(self.venv / "bin" / program)

    # ---- lifecycle
    def up(self) -> None:
        missing = missing_prerequisites()
        if missing:
            raise HarnessError(
                "missing Zuul prerequisites: "
                + "; ".join(missing)
                + ". Run `bash sandbox/prereqs.sh --zuul` (as root)."
            )
        busy = [f"{port} ({name})" for name, port in PORTS.items() if _port_open(port)]
        if busy:
            raise HarnessError(f"loopback port(s) already in use: {', '.join(busy)}")
        if len(str(self.builds)) + CONTROL_SOCKET_TAIL > SOCKET_PATH_MAX:
            raise HarnessError(f"job dir {self.builds} is too long for Ansible's ssh control sockets")
        for old in (self.root, self.builds):  # ZooKeeper caches the layout across restarts: start from nothing
            if old.exists():
                shutil.rmtree(old)
        for d in (self.etc, self.logs, self.logserver, self.builds, self.root / "state", self.root / "run"):
            d.mkdir(parents=True)
        started = time.monotonic()
        try:
            make_certs(self.certs)
            self._start_zookeeper()
            self._start_mariadb()
            self.timings["infrastructure_s"] = time.monotonic() - started
            self._write_repos()
            self._write_config()
            self._start_sshd()
            self._start_zuul()
            self.timings["start_s"] = time.monotonic() - started
        except BaseException:
            self.say(f"zuul harness: start failed; stopping what was started (logs in {self.logs})")
            self.down()
            raise

    def down(self) -> list[str]:
        started = time.monotonic()
        table = self.table.load()
        # Zuul first (they need ZooKeeper and the database to stop cleanly), all at once; then the rest.
        zuul = [p for name, p in table.items() if name in ZUUL_PROCESSES]
        from sandbox.processes import is_alive, stop_processes

        stopped = [p.name for p in zuul if is_alive(p)]
        stop_processes([p for p in zuul if is_alive(p)], timeout=60)
        self._stop_ssh_multiplexers()
        stopped += self.table.stop_all(timeout=30)
        self._remove_node_leftovers()
        shutil.rmtree(self.builds, ignore_errors=True)  # what a build left there; its logs are in logserver/
        self.timings["stop_s"] = time.monotonic() - started
        return stopped

    # ---- infrastructure
    def _start(self, name: str, argv: list[str], env: dict | None = None):
        return self.table.start(name, argv, self.logs / f"{name}.log", env or {}, cwd=self.root)

    def _alive_or_fail(self, *names: str) -> None:
        running = self.table.running()
        for name in names:
            if name not in running:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise HarnessError(f"{name} exited; the end of its log:\n{tail}")

    def _start_zookeeper(self) -> None:
        data = self.root / "zookeeper"
        data.mkdir()
        (data / "zoo.cfg").write_text(
            "\n".join(
                [
                    f"dataDir={data}",
                    "tickTime=2000",
                    # TLS only: no plain clientPort at all.
                    f"secureClientPort={PORTS['zookeeper']}",
                    f"secureClientPortAddress={HOST}",
                    "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
                    f"ssl.keyStore.location={self.certs / 'zookeeper-keystore.pem'}",
                    "ssl.keyStore.type=PEM",
                    f"ssl.trustStore.location={self.certs / 'ca.pem'}",
                    "ssl.trustStore.type=PEM",
                    "admin.enableServer=false",
                    "",
                ]
            )
        )
        classpath = ":".join(f"/usr/share/java/{jar}" for jar in ZOOKEEPER_JARS)
        self._start(
            "zookeeper",
            [
                "java",
                "-Xmx256m",
                "-Dzookeeper.jmx.log4j.disable=true",
                "-cp",
                classpath,
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                str(data / "zoo.cfg"),
            ],
        )
        wait_for(
            lambda: self._alive_or_fail("zookeeper") or self._zookeeper_tls_ok(),
            timeout=60,
            interval=0.3,
            what="ZooKeeper's TLS port",
        )

    def _zookeeper_tls_ok(self) -> bool:
        """A full TLS handshake with Zuul's client certificate (a bare TCP probe makes ZooKeeper log errors)."""
        context = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        context.load_cert_chain(self.certs / "client.pem", self.certs / "client-key.pem")
        try:
            with socket.create_connection((HOST, PORTS["zookeeper"]), timeout=2) as sock:
                with context.wrap_socket(sock, server_hostname=HOST):
                    return True
        except OSError:
            return False

    def _start_mariadb(self) -> None:
        datadir, sock = self.root / "mariadb", self.root / "run" / "mariadb.sock"
        root_user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={datadir}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
                *root_user,
            ],
            check=True,
            capture_output=True,
        )
        # Socket only: nothing listens on TCP, so no port can clash and no password is needed.
        self._start(
            "mariadb",
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={sock}",
                f"--pid-file={self.root / 'run' / 'mariadb.pid'}",
                "--skip-networking",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--performance-schema=OFF",
                "--innodb-flush-log-at-trx-commit=0",
                *root_user,
            ],
        )
        wait_for(
            lambda: self._alive_or_fail("mariadb") or sock.exists(), timeout=60, interval=0.2, what="MariaDB's socket"
        )
        wait_for(
            lambda: (
                subprocess.run(
                    [
                        "mariadb",
                        f"--socket={sock}",
                        "-uroot",
                        "-e",
                        "CREATE DATABASE IF NOT EXISTS zuul CHARACTER SET utf8mb4",
                    ],
                    capture_output=True,
                ).returncode
                == 0
            ),
            timeout=30,
            interval=0.3,
            what="MariaDB to accept the zuul database",
        )

    def _start_sshd(self) -> None:
        """The static node: a private sshd on 127.0.0.1 that accepts only the executor's key."""
        d = self.root / "sshd"
        d.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
        shutil.copy(self.etc / "id_ed25519.pub", d / "authorized_keys")
        registry_env = [
            f'{name}="{value}"'
            for name, value in sorted(os.environ.items())
            if REGISTRY_ENV.match(name) and not name.endswith("_CONSTRAINT")
        ]
        (d / "sshd_config").write_text(
            "\n".join(
                [
                    f"ListenAddress {HOST}",
                    f"Port {PORTS['ssh']}",
                    f"HostKey {d / 'host_key'}",
                    f"PidFile {d / 'sshd.pid'}",
                    f"AuthorizedKeysFile {d / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "Subsystem sftp internal-sftp",
                    # The node is this machine: its sessions reach the package registries as this process does
                    # (a proxy's CA bundle, pip/uv settings), which a plain ssh session's environment would lack.
                    # (One SetEnv line: sshd uses the first line of a keyword.)
                    *([f"SetEnv {' '.join(registry_env)}"] if registry_env else []),
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory (Debian's path)
        self._start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")])
        wait_for(
            lambda: self._alive_or_fail("sshd") or _port_open(PORTS["ssh"]),
            timeout=30,
            interval=0.2,
            what="the node's sshd",
        )

    # ---- repositories
    def _git(self, repo: Path, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=Zuul harness", "-c", "user.email=harness@localhost", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def _init_repo(self, repo: Path, message: str) -> None:
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
        self._git(repo, "add", "-A")
        self._git(repo, "commit", "-q", "-m", message)

    def _write_repos(self) -> None:
        # The project: its working tree as it is now (tracked and new files, not what .gitignore excludes).
        files = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout.split(b"\0")
        for name in filter(None, (f.decode() for f in files)):
            source = REPO_ROOT / name
            if source.is_file():
                target = self.project_repo / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        self._init_repo(self.project_repo, "the working tree under test")
        config = self.git / CONFIG_PROJECT
        shutil.copytree(HERE / "zuul-config", config)
        # The timer is real but fires a day from now: builds in the tests are enqueued through the REST API
        # (an enqueue of a ref the timer has already put in the pipeline would be dropped silently).
        soon = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
        pipelines = config / "zuul.d" / "pipelines.yaml"
        pipelines.write_text(pipelines.read_text().replace("TIMER_SPEC", f"{soon.minute} {soon.hour} * * *"))
        providers = config / "zuul.d" / "static-node.yaml"
        providers.write_text(
            providers.read_text()
            .replace("NODE_LABEL", NODE_LABEL)
            .replace("NODE_USER", NODE_USER)
            .replace("NODE_PORT", str(PORTS["ssh"]))
        )
        self._init_repo(config, "tenant configuration")

    def commit(self, files: dict[str, str | None], message: str) -> str:
        """Commit files into the project's repository (None: remove the file); the git driver's poll picks them
        up."""
        for name, text in files.items():
            path = self.project_repo / name
            if text is None:
                path.unlink(missing_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self._git(self.project_repo, "add", "-A")
        staged = subprocess.run(["git", "-C", str(self.project_repo), "diff", "--cached", "--quiet"])
        if staged.returncode:  # something to commit
            self._git(self.project_repo, "commit", "-q", "-m", message)
        return self._git(self.project_repo, "rev-parse", "HEAD").strip()

    # ---- configuration
    def _write_config(self) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.etc / "id_ed25519")], check=True)
        (self.etc / "main.yaml").write_text(
            yaml.safe_dump(
                [
                    {
                        "tenant": {
                            "name": TENANT,
                            "source": {
                                "local": {
                                    # Config projects are read from `master` unless told: without this
                                    # the layout is silently empty.
                                    "config-projects": [{CONFIG_PROJECT: {"load-branch": "main"}}],
                                    # Untrusted projects load only job classes unless told: the launcher
                                    # tests put a bundle's zuul-launcher draft (sections, providers) and its
                                    # tenant objects in the project.
                                    "untrusted-projects": [{PROJECT: {"include-provider-config": True}}],
                                }
                            },
                        }
                    }
                ],
                sort_keys=False,
            )
        )
        (self.etc / "site-variables.yaml").write_text(
            yaml.safe_dump(
                {
                    "zuul_site_log_dir": str(self.logserver),
                    "zuul_site_log_url": self.log_url,
                }
            )
        )
        self.auth_secret = secrets.token_hex(24)
        run = self.root / "run"
        sections = {
            "zookeeper": {
                "hosts": f"{HOST}:{PORTS['zookeeper']}",
                "tls_ca": self.certs / "ca.pem",
                "tls_cert": self.certs / "client.pem",
                "tls_key": self.certs / "client-key.pem",
                "session_timeout": 40,
            },
            "keystore": {"password": secrets.token_hex(16)},
            "database": {"dburi": f"mysql+pymysql://root@localhost/zuul?unix_socket={run / 'mariadb.sock'}"},
            "scheduler": {
                "tenant_config": self.etc / "main.yaml",
                "state_dir": self.root / "state",
                "command_socket": run / "scheduler.socket",
                "pidfile": run / "scheduler.pid",
            },
            "web": {
                "listen_address": HOST,
                "port": PORTS["web"],
                "root": self.web_url + "/",
                "command_socket": run / "web.socket",
                "pidfile": run / "web.pid",
            },
            "merger": {
                "git_dir": self.root / "merger-git",
                "git_user_email": "zuul@localhost",
                "git_user_name": "Zuul harness",
                "command_socket": run / "merger.socket",
            },
            "executor": {
                "state_dir": self.root / "state",
                "git_dir": self.root / "executor-git",
                "job_dir": self.builds,
                "command_socket": run / "executor.socket",
                "pidfile": run / "executor.pid",
                "finger_port": PORTS["finger"],
                "private_key_file": self.etc / "id_ed25519",
                "default_username": NODE_USER,
                "manage_ansible": "false",
                "ansible_root": self.home / "ansible",
                "variables": self.etc / "site-variables.yaml",
                # The base job's post-run copies the logs there (bubblewrap hides everything else).
                "trusted_rw_paths": self.logserver,
                # A shared 2-core machine: never let the load or memory governor refuse a build.
                "load_multiplier": 100,
                "min_avail_mem": 1,
                "min_avail_hdd": 1,
            },
            "launcher": {"command_socket": run / "launcher.socket", "pidfile": run / "launcher.pid"},
            'connection "local"': {"driver": "git", "baseurl": self.git, "poll_delay": 2},
            'connection "static"': {"driver": "static"},
            # The clouds.yaml is the one openstacksdk finds in the processes' working directory (the harness's
            # root): Zuul 14.3 hands a `client_config_file` (or OS_CLIENT_CONFIG_FILE) string to openstacksdk as
            # its list of files, which reads it character by character, and turns off the environment override.
            **{f'connection "{name}"': {"driver": "openstack", "cloud": name} for name in self.openstack_clouds},
            # For admin tokens (zuul-admin create-auth-token) that the REST enqueue needs.
            "auth zuul_operator": {
                "driver": "HS256",
                "allow_authz_override": "true",
                "realm": "zuul.harness",
                "client_id": "zuul.harness",
                "issuer_id": "zuul_operator",
                "secret": self.auth_secret,
            },
        }
        if self.openstack_clouds:  # the launcher's credentials: created readable by this user only
            fd = os.open(self.openstack_clouds_yaml, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(yaml.safe_dump({"clouds": self.openstack_clouds}))
        self.conf.write_text(
            "".join(
                f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in values.items()) + "\n"
                for name, values in sections.items()
            )
        )
        self.conf.chmod(0o600)

    # ---- Zuul
    def _start_zuul(self) -> None:
        started = time.monotonic()
        for name in ZUUL_PROCESSES:
            self._start(name, [self.bin(name), "-c", str(self.conf), "-f", "-d"])
        self._start(
            "logserver",
            [
                self.bin("python"),
                "-m",
                "http.server",
                "--bind",
                HOST,
                "--directory",
                str(self.logserver),
                str(PORTS["logs"]),
            ],
        )
        wait_for(
            lambda: self._alive_or_fail(*ZUUL_PROCESSES, "logserver") or self._ready(),
            timeout=600,
            interval=1,
            what="Zuul's tenant layout, executor and launcher",
            describe=lambda: str(self._components()),
        )
        self.timings["zuul_ready_s"] = time.monotonic() - started

    def _components(self) -> dict[str, list[str]]:
        try:
            return {kind: [c.get("state") for c in items] for kind, items in self.api("/components").items()}
        except (OSError, ValueError):
            return {}

    def _ready(self) -> bool:
        components = self._components()
        if not all("running" in components.get(kind, []) for kind in ("executor", "launcher", "scheduler")):
            return False
        try:
            return any(p["name"] == "periodic" for p in self.tenant_api("/pipelines"))
        except (OSError, ValueError):
            return False

    # ---- REST API
    def api(self, path: str, data: dict | None = None, token: str | None = None, timeout: float = 30):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            f"{self.web_url}/api{path}",
            method="POST" if data is not None else "GET",
            data=json.dumps(data).encode() if data is not None else None,
            headers=headers,
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)

    def tenant_api(self, path: str, **kwargs):
        return self.api(f"/tenant/{TENANT}{path}", **kwargs)

    def admin_token(self) -> str:
        out = subprocess.run(
            [
                self.bin("zuul-admin"),
                "-c",
                str(self.conf),
                "create-auth-token",
                "--auth-config",
                "zuul_operator",
                "--user",
                "harness",
                "--tenant",
                TENANT,
                "--expires-in",
                "7200",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.strip().removeprefix("Bearer ").strip()

    def wait_for_job(self, name: str, timeout: float = 180) -> dict:
        """Wait until the tenant's layout has the job (after a commit, the git driver polls every 2 s)."""

        def find():
            try:
                return next((j for j in self.tenant_api("/jobs") if j["name"] == name), None)
            except (OSError, ValueError):
                return None

        return wait_for(
            find,
            timeout=timeout,
            interval=1,
            what=f"job {name} in the layout",
            describe=lambda: json.dumps(self.tenant_api("/config-errors"))[:2000],
        )

    def pipeline_idle(self, pipeline: str) -> bool:
        for p in self.tenant_api("/status")["pipelines"]:
            if p["name"] == pipeline:
                return not any(queue["heads"] for queue in p["change_queues"])
        return True

    def run_build(self, job: str, pipeline: str = "periodic", timeout: float = 1800) -> dict:
        """Enqueue the project's main branch in a pipeline through the REST API and wait for the job's build.

        Waits for the pipeline to be idle first: an enqueue of a ref already in it is dropped without a word.
        """
        wait_for(lambda: self.pipeline_idle(pipeline), timeout=timeout, interval=2, what=f"{pipeline} to be idle")
        seen = {b["uuid"] for b in self.tenant_api(f"/builds?job_name={job}&limit=100")}
        self.tenant_api(
            f"/project/{PROJECT}/enqueue",
            token=self.admin_token(),
            data={"pipeline": pipeline, "ref": "refs/heads/main", "oldrev": None, "newrev": None},
        )

        def finished():
            for build in self.tenant_api(f"/builds?job_name={job}&limit=100"):
                if build["uuid"] not in seen and build.get("result"):
                    return build
            return None

        build = wait_for(
            finished,
            timeout=timeout,
            interval=2,
            what=f"a finished build of {job}",
            describe=lambda: json.dumps(self.tenant_api("/status"))[:1500],
        )
        # The builds list is the summary; the build's own record has the artifacts resolved against log_url.
        record = self.tenant_api(f"/build/{build['uuid']}")
        if record.get("result") not in ("SUCCESS", "FAILURE"):
            record["diagnosis"] = self.diagnose(record["uuid"])  # shows in the failing assertion's message
        return record

    def diagnose(self, uuid: str) -> str:
        """Why a build ended without running its playbooks to a verdict (RETRY_LIMIT, NODE_FAILURE, ...): the
        end of its job-output.txt and the executor's error lines for it."""
        output = self.logserver / uuid / "job-output.txt"
        tail = output.read_text(errors="replace")[-3000:] if output.exists() else f"(no {output})"
        log = self.logs / "zuul-executor.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        errors = [
            line
            for line in lines
            if uuid in line and any(w in line for w in ("ERROR", "fatal", "FAILED", "UNREACHABLE", "Traceback"))
        ]
        return f"job-output.txt ends with:\n{tail}\nexecutor errors:\n" + "\n".join(errors[-20:])

    # ---- the node and memory
    def rss_mb(self) -> dict[str, float]:
        """Resident memory per recorded process (with its process group: executor helpers, ansible-playbook)."""
        return {name: rss_mb(proc) for name, proc in self.table.running().items()}

    def _stop_ssh_multiplexers(self) -> None:
        """Ansible's ssh ControlMaster processes (ControlPersist=60s, set by the executor) outlive the executor.
        They are ours when their control socket lies in this harness's builds directory."""
        marker = f"ssh: {self.builds}/"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith(marker):
                try:
                    os.kill(int(entry.name), signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def note_node_path(self, path: Path) -> None:
        """A path on the node the builds create (the workspace, zuul-output): removed at `down` when it was
        absent at `up`."""
        if not path.exists() and path not in self._node_paths_created:
            self._node_paths_created.append(path)

    def _remove_node_leftovers(self) -> None:
        for path in self._node_paths_created:
            shutil.rmtree(path, ignore_errors=True)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def fetch_text(url: str, timeout: float = 30) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8", errors="replace")
