"""Bring the sandbox cloud up and down.

`up` restores pre-synced databases from a template (built once per set of pins, in the user's cache dir),
starts every process on loopback, and returns only when a server boot succeeds. Building the template is the
slow part (schema syncs, initial state through the APIs); it happens on the first `up` of a machine.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

import openstack
import yaml

from sandbox import configs, guest_image, real_host, seed, services, zygote
from sandbox.layout import REGION, Layout, bytecode_dir, cache_root, template_key, venv_bin
from sandbox.processes import ProcessTable, rss_mb
from sandbox.tls import make_ca_and_server_cert
from sandbox.waiting import SandboxError, wait_for

# All on MariaDB: SQLite locks ("database is locked") under concurrent requests, even Keystone's with WAL.
DATABASES = ("keystone", "glance", "nova_api", "nova_cell0", "nova", "placement", "neutron", "cinder")
PYTHON_PACKAGES = ("keystone", "glance", "placement", "nova", "neutron", "cinder", "gunicorn", "pymysql")
# What the template holds besides the MariaDB datadir (paths relative to the state dir).
TEMPLATE_FILES = (
    "data/mysql",
    "data/keystone/fernet",
    "data/keystone/credential",
    "data/glance/images",
    "credentials.json",
)


class AlreadyRunning(SandboxError):
    pass


def missing_prerequisites() -> list[str]:
    """Everything `up` needs that is not installed, each with how to get it."""
    missing = []
    for program, package in (
        ("mariadbd", "mariadb-server"),
        ("mariadb-install-db", "mariadb-server"),
        ("epmd", "rabbitmq-server (erlang)"),
    ):
        if not shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin"):
            missing.append(f"{program} (apt package {package})")
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        missing.append("rabbitmq-server (apt package rabbitmq-server)")
    absent = [name for name in PYTHON_PACKAGES if find_spec(name) is None]
    if absent:
        missing.append(
            f"Python packages {', '.join(absent)} (pip install -e '.[sandbox]' -c constraints.txt,"
            " or use tox -e sandbox)"
        )
    return missing


class Stack:
    def __init__(self, layout: Layout | None = None, say: Callable[[str], None] | None = None):
        self.layout = layout or Layout.from_env()
        self.table = ProcessTable(self.layout.processes)
        self._t0 = time.monotonic()
        self.answered: dict[str, float] = {}  # service -> seconds after start when it first answered
        # What this command started: one of them exiting while we wait is a failed start. Others in the table may
        # be stopped on purpose (`service stop`).
        self._started: set[str] = set()
        self._say = say or (lambda message: print(message, flush=True))

    def say(self, message: str) -> None:
        self._say(f"[{time.monotonic() - self._t0:5.1f}s] {message}")

    # ---- state -----------------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return bool(self.layout.processes.exists() and self.table.running())

    def credentials(self) -> dict[str, str]:
        return json.loads(self.layout.credentials.read_text())

    @contextmanager
    def _exclusive(self):
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with open(self.layout.root.parent / f"{self.layout.root.name}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AlreadyRunning(f"another sandbox command is using {self.layout.root}") from None
            yield

    # ---- up ----------------------------------------------------------------------------------------------------
    def up(self) -> None:
        if self.is_running():
            raise AlreadyRunning(
                f"the sandbox is already running (state in {self.layout.root}); use `status`, or `down` first"
            )
        missing = missing_prerequisites()
        if missing:
            raise SandboxError(
                "missing prerequisites: "
                + "; ".join(missing)
                + ". Run `bash sandbox/prereqs.sh` (as root) for the apt packages."
            )
        busy = [f"{port} ({name})" for name, port in self.layout.ports.items() if services.port_open(port)]
        if busy:
            raise SandboxError(
                f"loopback port(s) already in use: {', '.join(busy)}; stop what uses them or set SANDBOX_PORT_OFFSET"
            )
        with self._exclusive():
            try:
                self._up()
            except BaseException as exc:
                if not isinstance(exc, KeyboardInterrupt):  # Ctrl-C: the command line says it, once
                    self.say(f"start failed; stopping what was started (logs kept in {self.layout.log})")
                self._stop_everything()
                raise

    def _up(self) -> None:
        layout = self.layout
        self._wipe_state(keep_logs=False)
        plan = self._plan_real_host()
        template = cache_root() / template_key(layout)
        with ThreadPoolExecutor(1) as background:
            # The guest image is built once per machine (minutes, mostly downloads and compression): beside the
            # database template when both are missing.
            image_ready = background.submit(self._guest_image, plan)
            if not (template / "complete").exists():
                self.say(f"no database template for this setup yet: building it once in {template} (about 2 minutes)")
                self._build_template(template)
                self.table.stop_all()
                self.answered.clear()
                self._wipe_state(keep_logs=True)
            guest = image_ready.result()
        plan.save(layout)
        self._restore_template(template)
        # Its imports (about a second of CPU) overlap with the configs and MariaDB's start.
        zygote = self._start_zygote()
        passwords = self.credentials()
        configs.render_all(layout, passwords, plan)
        make_ca_and_server_cert(layout.ca_cert, layout.tls_cert, layout.tls_key, "127.0.0.1")
        self._start_infrastructure(plan)
        if zygote:
            self._wait_socket("zygote", layout.zygote_socket)
        # Keystone first and alone: every other service authenticates against it at start, and on 2 cores its
        # import is three times slower when all services import at once. Then everything else at once (the
        # daemons reconnect to RabbitMQ by themselves), except what must wait for another service to answer.
        every = services.api_services(layout) + services.daemon_services(layout)
        if plan.enabled:
            every.append(services.real_compute(layout))
        keystone = every.pop(0)
        self._start(keystone)
        self._wait_ports([keystone.name], timeout=60)
        self._load_keystone_policy(passwords)
        for service in every:
            if not service.after:
                self._start(service)
        for service in every:
            if service.after:
                self._wait_ports(list(service.after), timeout=120)
                self._start(service)
        self._wait_ports([s.name for s in services.api_services(layout)], timeout=120)
        order = sorted(self.answered.items(), key=lambda item: item[1])
        self.say("all APIs answer (first answers: " + ", ".join(f"{name} {at:.1f}s" for name, at in order) + ")")
        self.write_clouds_yaml(passwords)
        self._wait_usable(passwords, plan, guest)

    def _load_keystone_policy(self, passwords: dict[str, str]) -> None:
        """One request that Keystone checks against its policy, before any other service asks it anything.

        Keystone makes its policy enforcer on the first request that needs it, and other threads see the enforcer
        before its rules are registered (keystone.common.rbac_enforcer.enforcer: the attribute is set, then the
        rules registered): a token validation arriving meanwhile was refused (403 on identity:validate_token), and
        the service that asked answered 503 "The Keystone service is temporarily unavailable". With every service
        starting at once, `up` failed so about one time in four."""
        conn = seed.admin_connection(self.layout, passwords["admin"])
        try:
            conn.identity.get("/auth/tokens", headers={"X-Subject-Token": conn.auth_token}).raise_for_status()
        finally:
            conn.close()

    # ---- the real host (sandbox/real_host.py) --------------------------------------------------------------
    def _plan_real_host(self) -> real_host.RealHost:
        """Whether this `up` runs a real guest host, checked before anything starts."""
        if not real_host.wanted():
            return real_host.RealHost(enabled=False, reason="SANDBOX_REAL_GUESTS=0")
        missing = real_host.missing_prerequisites() + [
            f"{what} (apt package {package})" for what, package in guest_image.missing_prerequisites()
        ]
        if missing:
            raise SandboxError(
                "the real guest host needs " + "; ".join(missing) + ". Run `bash sandbox/prereqs.sh`"
                " (as root), or start without real guests: SANDBOX_REAL_GUESTS=0"
            )
        virt_type = "kvm" if real_host.hardware_virtualisation() else "qemu"
        key = guest_image.cache_key()
        return real_host.RealHost(
            enabled=True,
            virt_type=virt_type,
            bridge=self.layout.bridge,
            image={"name": real_host.GLANCE_NAME, "key": key, "ids": real_host.glance_ids(key)},
        )

    def _guest_image(self, plan: real_host.RealHost):
        if not plan.enabled:
            return None
        return guest_image.ensure_image(say=self.say)  # its lines say "guest image: ..." themselves

    def _wait_socket(self, name: str, socket: Path) -> None:
        wait_for(
            lambda: self._check_alive() or socket.exists(),
            timeout=60,
            interval=0.1,
            what=f"{name}'s socket",
            describe=lambda: self._log_tail(f"{name}.out"),
        )

    def _start_real_host_daemons(self, plan: real_host.RealHost) -> None:
        layout = self.layout
        real_host.write_libvirt_config(layout)
        layout.real_instances.mkdir(parents=True, exist_ok=True)
        real_host.create_bridge(layout)
        for service in services.real_host_daemons(layout):
            self._start(service)
            self._wait_socket(service.name, layout.libvirt_dir / "run" / real_host.SOCKETS[service.name])
        self.say(f"libvirtd ready ({plan.virt_type}), guests' bridge {layout.bridge} on {layout.guest_net}")

    def _wipe_state(self, keep_logs: bool) -> None:
        root = self.layout.root
        root.mkdir(parents=True, exist_ok=True)
        for entry in root.iterdir():
            if keep_logs and entry.name == "log":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _restore_template(self, template: Path) -> None:
        for relative in TEMPLATE_FILES:
            source, target = template / relative, self.layout.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            elif source.exists():
                shutil.copy2(source, target)
        self.layout.credentials.chmod(0o600)
        self.say("databases restored from the template")

    def _start(self, service: services.Service):
        self._started.add(service.name)
        return self.table.start(
            service.name,
            service.argv,
            self.layout.log / f"{service.name}.out",
            service.env,
            cwd=self.layout.root,
            nice=service.nice,
            spawn=self._spawn if service.fork else None,
        )

    def _start_zygote(self) -> bool:
        """Start the zygote (sandbox/zygote.py) unless its socket's path is too long for a Unix socket (then every
        service starts by exec)."""
        if len(str(self.layout.zygote_socket).encode()) > 100:
            return False
        self._start(services.zygote(self.layout))
        return True

    def _spawn(self, **request) -> int | None:
        """A process forked by the running zygote; None when there is none (the caller starts it by exec)."""
        if not self.layout.zygote_socket.exists() or "zygote" not in self.table.running():
            return None
        return zygote.spawn(self.layout.zygote_socket, **request)

    def _start_infrastructure(self, plan: real_host.RealHost | None = None) -> None:
        layout = self.layout
        layout.log.mkdir(parents=True, exist_ok=True)
        self._start(services.mariadb(layout))
        if plan is not None and plan.enabled:
            self._start_real_host_daemons(plan)
        for service in services.rabbit_services(layout):
            self._start(service)
            if service.name == "epmd":
                self._wait_ports(["epmd"], timeout=10)
        wait_for(
            layout.mysql_socket.exists,
            timeout=30,
            interval=0.1,
            what="MariaDB's socket",
            describe=lambda: self._log_tail("mariadb.log"),
        )
        self.say("MariaDB ready")

    def _start_apis(self, wait: bool = True) -> None:
        for service in services.api_services(self.layout):
            self._start(service)
        if wait:
            self._wait_ports([s.name for s in services.api_services(self.layout)], timeout=120)

    def _wait_ports(self, names: list[str], timeout: float) -> None:
        """Wait until the named services answer: APIs over HTTP, the others on their port."""
        urls = {
            s.name: s.ready_url for s in services.api_services(self.layout) + services.on_demand_services(self.layout)
        }
        queues = {s.name: s.ready_queue for s in services.daemon_services(self.layout) if s.ready_queue}
        pending = {name: self.layout.ports.get(name) for name in names}

        def answers(name: str, port: int | None) -> bool:
            if urls.get(name):
                return services.http_answers(urls[name], self.layout.ca_cert)
            if queues.get(name):
                return services.queue_exists(self.layout, queues[name])
            return services.port_open(port)

        def all_open() -> bool:
            for name, port in list(pending.items()):
                if answers(name, port):
                    del pending[name]
                    self.answered.setdefault(name, time.monotonic() - self._t0)
            self._check_alive()
            return not pending

        wait_for(
            all_open,
            timeout=timeout,
            interval=0.2,
            what="ports of " + ", ".join(names),
            describe=lambda: "still closed: " + ", ".join(pending),
        )

    def _check_alive(self) -> None:
        """Fail fast, naming the service, when a process we started has exited."""
        # Only what is still in the table: the template build's processes were stopped and the table wiped.
        dead = sorted((self._started & set(self.table.load())) - set(self.table.running()))
        if dead:
            raise SandboxError(f"{dead[0]} exited during start: {self._log_tail(dead[0] + '.out')}")

    def _log_tail(self, name: str, lines: int = 3) -> str:
        path = self.layout.log / name
        if not path.exists():
            return "(no log)"
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])

    # ---- template ------------------------------------------------------------------------------------------------
    def _build_template(self, template: Path) -> None:
        layout = self.layout
        passwords = {
            name: secrets.token_urlsafe(18) for name in ("admin", *configs.SERVICE_USERS, *seed.PROJECT_USERS.values())
        }
        layout.credentials.write_text(json.dumps(passwords))
        layout.credentials.chmod(0o600)
        configs.render_all(layout, passwords)
        make_ca_and_server_cert(layout.ca_cert, layout.tls_cert, layout.tls_key, "127.0.0.1")
        layout.log.mkdir(parents=True, exist_ok=True)
        self._run_step(
            "mariadb-install-db",
            [
                shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db",
                "--no-defaults",
                f"--datadir={layout.mysql_dir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *(["--user=root"] if os.geteuid() == 0 else []),
            ],
        )
        self._start_infrastructure()
        create = "; ".join(f"CREATE DATABASE {db} CHARACTER SET utf8mb3" for db in DATABASES)
        self._run_step("create databases", ["mariadb", f"--socket={layout.mysql_socket}", "-uroot", "-e", create])
        self._sync_schemas(passwords)
        # Map the compute hosts (the fake nodes' and the real one's) into cell1 now (what `nova-manage cell_v2
        # discover_hosts` would do once they register): boots work as soon as nova-compute reports, instead of
        # after the next periodic discovery.
        self._run_step(
            "map compute host",
            [
                "mariadb",
                f"--socket={layout.mysql_socket}",
                "-uroot",
                "nova_api",
                "-e",
                "; ".join(
                    "INSERT INTO host_mappings (created_at, cell_id, host) SELECT NOW(), id, "
                    f"'{host}' FROM cell_mappings WHERE name = 'cell1'"
                    for host in (configs.COMPUTE_HOST, configs.REAL_COMPUTE_HOST)
                ),
            ],
        )
        self.say("schemas synced")
        self._start_apis(wait=True)
        conn = seed.admin_connection(layout, passwords["admin"])
        seed.seed_identity(conn, layout, passwords)
        conn = seed.admin_connection(layout, passwords["admin"])  # a token whose catalog has the new services
        seed.seed_compute_network_volume(conn, layout)
        self._upload_base_image(conn)
        self.say("initial state created (projects, users, flavors, quotas, networks, base image)")
        # A clean shutdown so that the datadir copy is consistent.
        self.table.stop_all(timeout=8)
        staging = template.with_name(template.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        for relative in TEMPLATE_FILES:
            source = layout.root / relative
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            elif source.exists():
                shutil.copy2(source, target)
        (staging / "complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        staging.rename(template)
        # Keep the newest few (one per sandbox dir in use); older ones were made for other pins or code.
        others = sorted(
            (t for t in template.parent.iterdir() if t.is_dir() and t != template and t != bytecode_dir()),
            key=lambda t: t.stat().st_mtime,
            reverse=True,
        )
        for old in others[2:]:
            shutil.rmtree(old, ignore_errors=True)
        self.say("database template saved")

    def _run_step(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.layout.log / f"setup-{name.replace(' ', '-')}.log"
        with open(log, "ab") as out:
            result = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **services.python_env(), **(env or {})},
                cwd=self.layout.root,
            )
        if result.returncode != 0:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
            raise SandboxError(f"{name} failed (exit {result.returncode}): {tail} [log: {log}]")

    def _sync_schemas(self, passwords: dict[str, str]) -> None:
        layout = self.layout
        etc = layout.etc
        keystone = [venv_bin("keystone-manage"), "--config-file", str(etc / "keystone.conf")]
        nova = [venv_bin("nova-manage"), "--config-file", str(etc / "nova.conf")]
        (layout.data / "keystone").mkdir(parents=True, exist_ok=True)
        steps = {
            "keystone": [
                [*keystone, "db_sync"],
                [*keystone, "fernet_setup", "--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())],
                [
                    *keystone,
                    "credential_setup",
                    "--keystone-user",
                    str(os.getuid()),
                    "--keystone-group",
                    str(os.getgid()),
                ],
                [
                    *keystone,
                    "bootstrap",  # the admin password from the environment (below)
                    "--bootstrap-public-url",
                    layout.keystone_url,
                    "--bootstrap-internal-url",
                    layout.keystone_url,
                    "--bootstrap-admin-url",
                    layout.keystone_url,
                    "--bootstrap-region-id",
                    REGION,
                ],
            ],
            "glance": [[venv_bin("glance-manage"), "--config-file", str(etc / "glance-api.conf"), "db_sync"]],
            "placement": [[venv_bin("placement-manage"), "--config-file", str(etc / "placement.conf"), "db", "sync"]],
            "nova": [
                [*nova, "api_db", "sync"],
                [*nova, "cell_v2", "map_cell0", "--database_connection", layout.db_url("nova_cell0")],
                [*nova, "cell_v2", "create_cell", "--name", "cell1", "--verbose"],
                [*nova, "db", "sync"],
            ],
            "neutron": [
                [sys.executable, "-m", "sandbox.neutron_schema", str(etc / "neutron.conf"), layout.db_url("neutron")]
            ],
            "cinder": [[venv_bin("cinder-manage"), "--config-file", str(etc / "cinder.conf"), "db", "sync"]],
        }

        # Not on the command line: a secret there is in every process listing, and a password starting with "-"
        # (secrets.token_urlsafe gives one in 64) was taken for an option ("expected one argument").
        step_env = {"keystone": {"OS_BOOTSTRAP_PASSWORD": passwords["admin"]}}

        def run_chain(name: str) -> None:
            for index, argv in enumerate(steps[name]):
                self._run_step(f"{name}-{index}", argv, step_env.get(name))

        with ThreadPoolExecutor(len(steps)) as pool:
            for future in [pool.submit(run_chain, name) for name in steps]:
                future.result()

    def _upload_guest_image(self, conn, plan: real_host.RealHost, image: guest_image.GuestImage) -> None:
        started = time.monotonic()
        real_host.upload_guest_image(conn, image, plan.image["ids"])
        self.say(f"guest image {plan.image['name']} in Glance ({time.monotonic() - started:.1f}s)")

    def _upload_base_image(self, conn) -> None:
        # A raw image (Glance inspects data: the declared format must match the bytes) for the smoke boot.
        image_file = self.layout.root / "base.img"
        image_file.write_bytes(b"\0" * 1024 * 1024)
        conn.image.create_image(
            name="sandbox-base",
            filename=str(image_file),
            disk_format="raw",
            container_format="bare",
            visibility="public",
            wait=True,
        )
        image_file.unlink()

    # ---- usable ------------------------------------------------------------------------------------------------
    def _wait_usable(
        self,
        passwords: dict[str, str],
        plan: real_host.RealHost | None = None,
        guest: guest_image.GuestImage | None = None,
    ) -> None:
        """Return when a server boots: compute registered, host mapped into the cell, networking binds; and with a
        real host, when it has registered too and the guest image is in Glance."""
        conn = seed.admin_connection(self.layout, passwords["admin"])
        conn.authorize()  # one token, before the threads below share the connection
        real = plan is not None and plan.enabled
        hosts = {configs.COMPUTE_HOST, *([configs.REAL_COMPUTE_HOST] if real else [])}

        def registered():
            # A host counts once its service is up and its node reported resources (a hypervisor).
            self._check_alive()
            up = {s.host for s in conn.compute.services(binary="nova-compute") if s.state == "up"}
            # Microversion 2.53, below 2.88: no uptime, which nova-api asks each compute host for over RPC (what
            # openstacksdk's hypervisors() asks for). Asked before the host consumes its queue (its node records
            # come first), the message is lost and the listing fails after a minute: `up` failed so when the
            # services started fast.
            listing = conn.compute.get("/os-hypervisors/detail", microversion="2.53")
            listing.raise_for_status()
            reported = {(h.get("service") or {}).get("host") for h in listing.json()["hypervisors"]}
            return hosts <= up & reported

        # The first call to each API is slow while the other services still import (the API validates the token,
        # its middleware first authenticates itself): look up what the boot needs while compute registers.
        with ThreadPoolExecutor(4) as pool:
            lookups = [
                pool.submit(conn.image.find_image, "sandbox-base", ignore_missing=False),
                pool.submit(conn.compute.find_flavor, configs.SMALL_FLAVOR["name"], ignore_missing=False),
                pool.submit(conn.network.find_network, seed.PUBLIC_NETWORK_NAME, ignore_missing=False),
            ]
            upload = pool.submit(self._upload_guest_image, conn, plan, guest) if real else None
            wait_for(
                registered,
                timeout=180,
                interval=0.5,
                what="the compute host(s) to register",
                describe=lambda: self._log_tail("nova-compute-real.out" if real else "nova-compute.out"),
            )
            self.say("compute host registered" if not real else "compute hosts registered (fake nodes, real host)")
            image, flavor, network = (lookup.result() for lookup in lookups)
            if upload is not None:
                upload.result()
        deadline = time.monotonic() + 120
        attempt = 0
        while True:  # bounded by the deadline: the host may not be mapped into the cell for a few seconds
            attempt += 1
            started = time.monotonic()
            server = conn.compute.create_server(
                name=f"sandbox-smoke-{attempt}", image_id=image.id, flavor_id=flavor.id, networks=[{"uuid": network.id}]
            )
            try:
                status = conn.compute.wait_for_server(
                    server, status="ACTIVE", failures=["ERROR"], interval=0.5, wait=120
                ).status
            except openstack.exceptions.ResourceFailure:
                status = "ERROR"
            conn.compute.delete_server(server)
            if status == "ACTIVE":
                break
            conn.compute.wait_for_delete(server, interval=0.5, wait=60)
            if time.monotonic() > deadline:
                raise SandboxError(f"no server could boot: last status {status}")
        self.say(f"a server booted in {time.monotonic() - started:.1f}s (attempt {attempt})")

        def volume_backend_known():
            # "up" in the service list is not enough: until cinder-scheduler has the backend's capabilities,
            # every volume create fails with "No valid backend" and the volume goes to error.
            self._check_alive()
            return list(conn.block_storage.backend_pools())

        # While the smoke server is being deleted.
        wait_for(
            volume_backend_known,
            timeout=120,
            interval=0.5,
            what="cinder-scheduler to know the volume backend",
            describe=lambda: self._log_tail("cinder.log"),
        )
        conn.compute.wait_for_delete(server, interval=0.5, wait=60)
        self.say("volume backend known to the scheduler, smoke server deleted: the cloud is usable")

    # ---- clouds.yaml ---------------------------------------------------------------------------------------------
    def write_clouds_yaml(self, passwords: dict[str, str]) -> None:
        layout = self.layout

        def entry(user: str, project: str, auth_url: str, cacert: bool = True) -> dict:
            cloud = {
                "auth": {
                    "auth_url": auth_url,
                    "username": user,
                    "password": passwords[user],
                    "project_name": project,
                    "user_domain_name": "Default",
                    "project_domain_name": "Default",
                },
                "region_name": REGION,
                "identity_api_version": 3,
                "interface": "public",
                # The real guests are reachable over IPv4 only (their bridge carries no IPv6): a client choosing a
                # server's address to connect to (openstacksdk's interface_ip, zuul-launcher's ssh-keyscan) must
                # not prefer its 2001:db8:: address, as OpenDev's clouds.yaml says of a cloud with no IPv6 route.
                "force_ipv4": True,
            }
            if cacert:
                cloud["cacert"] = str(layout.ca_cert)
            return cloud

        zuul_user, ci_user = seed.PROJECT_USERS["zuul"], seed.PROJECT_USERS["ci"]
        clouds = {
            "sandbox-zuul": entry(zuul_user, "zuul", layout.keystone_url),
            "sandbox-ci": entry(ci_user, "ci", layout.keystone_url),
            "sandbox-admin": entry("admin", "admin", layout.keystone_url),
            # Plain http Keystone: only for negative tests (R7 must FAIL on it). It answers only while a
            # `Sandbox.http_keystone()` (`python -m sandbox with keystone-http -- ...`) runs it.
            "sandbox-zuul-http": entry(zuul_user, "zuul", layout.url("keystone-http", suffix="/v3"), cacert=False),
        }
        layout.clouds_yaml.write_text(
            "# Generated by `python -m sandbox up`: the local sandbox cloud. Holds passwords: keep private.\n"
            + yaml.safe_dump({"clouds": clouds}, sort_keys=False)
        )
        layout.clouds_yaml.chmod(0o600)

    # ---- down / status -------------------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop exactly the processes `up` started and remove the state; return what was stopped."""
        if not self.layout.root.exists():
            return []
        stopped = self._stop_everything()
        shutil.rmtree(self.layout.root, ignore_errors=True)
        lock = self.layout.root.parent / f"{self.layout.root.name}.lock"
        lock.unlink(missing_ok=True)
        return stopped

    def _stop_everything(self, timeout: float = 3) -> list[str]:
        """Every process `up` started, then what the real host leaves behind them: the guests' QEMU processes
        (daemons of their own, which outlive libvirtd), their taps and the bridge."""
        # Graceful first, but not for long: the state is thrown away anyway (Cinder's scheduler ignores SIGTERM).
        stopped = self.table.stop_all(timeout=timeout)
        guests = real_host.kill_guests(self.layout)
        removed = real_host.remove_bridge(self.layout)
        if guests or removed:
            self.say(f"real host: stopped {len(guests)} guest(s), removed {', '.join(removed) or 'nothing'}")
        return stopped

    def _recorded(self, name: str):
        proc = self.table.load().get(name)
        if proc is None:
            raise SandboxError(f"no sandbox process named {name!r}")
        return proc

    def stop(self, name: str) -> None:
        """Stop one process; its record stays, so `restart` can start it again."""
        self._recorded(name)
        self.table.stop(name)

    def restart(self, name: str) -> None:
        """Start a process again with the command line and environment it was first started with; an API,
        return once it answers."""
        proc = self._recorded(name)
        self.table.stop(name)
        spec = self._spec(name)
        self._started.add(name)
        self.table.start(
            name,
            proc.argv,
            Path(proc.log),
            proc.env,
            cwd=self.layout.root,
            nice=spec.nice if spec else 0,
            spawn=self._spawn if spec and spec.fork else None,
        )
        if spec and spec.ready_url:
            self._wait_ports([name], timeout=120)

    def _spec(self, name: str) -> services.Service | None:
        every = (
            services.api_services(self.layout)
            + services.daemon_services(self.layout)
            + services.on_demand_services(self.layout)
            + [services.real_compute(self.layout)]
        )
        return next((s for s in every if s.name == name), None)

    def start_on_demand(self, name: str) -> bool:
        """Start a service `up` leaves out (services.on_demand_services) and return once it answers; False when it
        was running already (someone else started it, and will stop it)."""
        spec = next((s for s in services.on_demand_services(self.layout) if s.name == name), None)
        if spec is None:
            raise SandboxError(f"no on-demand sandbox service named {name!r}")
        if not self.is_running():
            raise SandboxError(f"the sandbox is not running (state in {self.layout.root})")
        if name in self.table.running():
            return False
        self._start(spec)
        try:
            self._wait_ports([name], timeout=120)
        except BaseException:
            self.stop_on_demand(name)
            raise
        return True

    def stop_on_demand(self, name: str) -> None:
        """Stop a service started by start_on_demand and drop its record: `status` lists what `up` started."""
        self.table.stop(name)
        self.table.forget(name)

    def status(self) -> list[tuple[str, int, bool, float]]:
        """(name, pid, running, RSS MB) for every process `up` started."""
        running = self.table.running()
        return [
            (name, proc.pid, name in running, rss_mb(proc) if name in running else 0.0)
            for name, proc in self.table.load().items()
        ]
