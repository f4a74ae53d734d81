"""How each sandbox process is started and how to tell it is ready."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from sandbox.layout import HOST, Layout, bytecode_dir, venv_bin

KEEPALIVE_S = 3600


def python_env() -> dict[str, str]:
    """The environment of every Python process the sandbox starts: no warnings in the logs, and bytecode cached.

    Where PYTHONDONTWRITEBYTECODE is set (containers often set it) and the packages were installed without
    compiling them (uv's default), Python compiles every module it imports from source, at every start of every
    service: a third of the CPU that loading an API costs (keystone 2.7 s against 1.7 s, neutron 3.7 s against
    2.4 s). The services write their bytecode to the sandbox's own cache instead (PYTHONPYCACHEPREFIX), not into
    the Python environment, and read it back at the next start."""
    return {"PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(bytecode_dir())}


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None  # ready when this loopback port accepts connections (and answers HTTP)
    ready_url: str | None = None  # an API is ready when this answers with any HTTP status
    # Services that must answer before this one starts (nova-compute reports its resources to placement at
    # start and only retries a minute later).
    after: tuple[str, ...] = ()
    # Off the critical path of `up`: yields the 2 cores to the services a first boot needs.
    nice: int = 0
    # A daemon is ready when RabbitMQ has this queue (its RPC server declared it): a call to it before that is lost.
    ready_queue: str | None = None
    # Forked by the zygote (sandbox/zygote.py) from its preloaded libraries rather than started by exec: Python
    # services that never monkey-patch with eventlet.
    fork: bool = False


def _gunicorn(
    layout: Layout,
    name: str,
    port_name: str,
    module: str,
    env: dict[str, str],
    workers: int = 1,
    tls: bool = False,
    wsgi_args: str = "",
    nice: int = 0,
) -> Service:
    argv = [
        venv_bin("gunicorn"),
        "--workers",
        str(workers),
        "--threads",
        "8",
        "--bind",
        f"{HOST}:{layout.ports[port_name]}",
        # Requests of a 100-server burst can wait on the database; don't let gunicorn kill busy workers.
        "--timeout",
        "300",
        "--graceful-timeout",
        "3",
        # Keep idle connections for an hour: longer than any gap between two requests a client sends on one
        # connection (pollers every 2-10 s, the services' periodic tasks at most every 10 min), so the server
        # never closes a connection a client is about to reuse. With gunicorn's default of 2 s, a client reusing
        # its connection after ~2 s raced the close: the request met a closed socket ("Remote end closed
        # connection without response" / "Connection reset by peer"). nova-scheduler's placement client does not
        # retry that, so it was a lost boot ("No valid host was found"). Idle connections cost a descriptor each,
        # not a thread, and end when their client closes them or exits; room for many (default 1000 a worker).
        "--keep-alive",
        str(KEEPALIVE_S),
        "--worker-connections",
        "4000",
        # nova-api lists ports of ~100 servers from neutron in one query string: gunicorn's default limit
        # (4094 bytes) turns that into 414 and every GET /servers/detail into a 500.
        "--limit-request-line",
        "0",
        "--limit-request-field_size",
        "0",
        "--error-logfile",
        "-",
        "--name",
        f"sandbox-{name}",
        # gunicorn 27 would open a control socket at ~/.gunicorn/gunicorn.ctl, one path for every instance:
        # nothing the sandbox uses, and nothing it may leave outside its own directory.
        "--no-control-socket",
    ]
    if tls:
        argv += ["--certfile", str(layout.tls_cert), "--keyfile", str(layout.tls_key)]
    argv.append("sandbox.wsgi_app:application")
    return Service(
        name,
        argv,
        {**python_env(), **env, "SANDBOX_WSGI_MODULE": module, "SANDBOX_WSGI_ARGS": wsgi_args},
        port=layout.ports[port_name],
        ready_url=layout.url(port_name, "https" if tls else "http", "/"),
        nice=nice,
        fork=True,
    )


def api_services(layout: Layout) -> list[Service]:
    etc = str(layout.etc)
    keystone_env = {"OS_KEYSTONE_CONFIG_FILES": str(layout.etc / "keystone.conf")}
    return [
        _gunicorn(layout, "keystone", "keystone", "keystone.wsgi.api", keystone_env, tls=True),
        _gunicorn(
            layout,
            "placement",
            "placement",
            "placement.wsgi.api",
            {"OS_PLACEMENT_CONFIG_DIR": etc, "OS_PLACEMENT_CONFIG_FILES": "placement.conf"},
        ),
        _gunicorn(
            layout,
            "glance",
            "glance",
            "glance.wsgi.api",
            {"OS_GLANCE_CONFIG_DIR": etc, "OS_GLANCE_CONFIG_FILES": "glance-api.conf"},
        ),
        _gunicorn(
            layout,
            "nova-api",
            "nova-api",
            "nova.wsgi.osapi_compute",
            {"OS_NOVA_CONFIG_DIR": etc, "OS_NOVA_CONFIG_FILES": "nova-api-paste.ini;nova.conf"},
        ),
        _gunicorn(
            layout,
            "neutron",
            "neutron",
            "neutron.wsgi.api",
            {"OS_NEUTRON_CONFIG_DIR": etc, "OS_NEUTRON_CONFIG_FILES": "neutron.conf"},
        ),
        _gunicorn(
            layout,
            "cinder-api",
            "cinder-api",
            "cinder.wsgi.api",
            {},
            wsgi_args=f"--config-file {layout.etc / 'cinder.conf'}",
            nice=10,
        ),
    ]


def keystone_http(layout: Layout) -> Service:
    """Keystone's plain http listener: only for negative tests (R7 must FAIL on plain http), so not started by
    `up` (it cost `up` a Keystone's start, 3-4 CPU s) but by `Sandbox.http_keystone()` for as long as it is used."""
    return _gunicorn(
        layout,
        "keystone-http",
        "keystone-http",
        "keystone.wsgi.api",
        {"OS_KEYSTONE_CONFIG_FILES": str(layout.etc / "keystone.conf")},
    )


def on_demand_services(layout: Layout) -> list[Service]:
    """What `up` does not start; started and stopped around their use."""
    return [keystone_http(layout)]


def daemon_services(layout: Layout) -> list[Service]:
    nova_conf = ["--config-file", str(layout.etc / "nova.conf")]
    cinder_conf = ["--config-file", str(layout.etc / "cinder.conf")]
    guest = {"SANDBOX_GUEST_FILE": str(layout.guest_file)}
    quiet = python_env()
    return [
        # Both build a placement client (a Keystone lookup) at start and exit if that fails.
        # Nova's services run on native threads: forked from the zygote. Cinder's monkey-patch with eventlet first
        # thing: started by exec.
        # All of them once RabbitMQ accepts connections: one that connects before retries after 1, 3, 5... s.
        # nova-compute pings nova-conductor first thing and waits 10 s for the answer before it tries again: it
        # starts once the conductor's queue exists, so that the ping is not lost.
        Service(
            "nova-conductor",
            [venv_bin("nova-conductor"), *nova_conf],
            quiet,
            after=("keystone", "rabbitmq"),
            fork=True,
            ready_queue="conductor",
        ),
        Service(
            "nova-scheduler", [venv_bin("nova-scheduler"), *nova_conf], quiet, after=("keystone", "rabbitmq"), fork=True
        ),
        Service(
            "nova-compute",
            [sys.executable, "-m", "sandbox.nova_compute", *nova_conf],
            {**quiet, **guest},
            after=("keystone", "placement", "rabbitmq", "nova-conductor"),
            fork=True,
        ),
        # Both of Cinder's daemons from one import of Cinder, each forked into a process of its own
        # (sandbox/cinder_daemons.py), listed and stopped as one process group.
        Service(
            "cinder-scheduler+volume",
            [sys.executable, "-m", "sandbox.cinder_daemons", *cinder_conf],
            quiet,
            nice=10,
            after=("rabbitmq",),
        ),
    ]


def zygote(layout: Layout) -> Service:
    """The parent that preloads the libraries every service imports and forks the `fork` services
    (sandbox/zygote.py); ready when its socket exists."""
    return Service("zygote", [sys.executable, "-m", "sandbox.zygote", str(layout.zygote_socket)], python_env())


def real_host_daemons(layout: Layout) -> list[Service]:
    """The real host's virtlogd and libvirtd (sandbox/real_host.py), in the order they start."""
    from sandbox import real_host

    return [Service(name, argv) for name, argv in real_host.daemon_argv(layout).items()]


def real_compute(layout: Layout) -> Service:
    """nova-compute of the real host: Nova's libvirt driver (sandbox/real_compute.py)."""
    conf = ["--config-file", str(layout.etc / "nova.conf"), "--config-file", str(layout.etc / "nova-real.conf")]
    return Service(
        "nova-compute-real",
        [sys.executable, "-m", "sandbox.real_compute", *conf],
        {**python_env(), "SANDBOX_GUEST_BRIDGE": layout.bridge},
        after=("keystone", "placement"),
    )


def mariadb(layout: Layout) -> Service:
    argv = [
        shutil.which("mariadbd") or "/usr/sbin/mariadbd",
        "--no-defaults",
        f"--datadir={layout.mysql_dir}",
        f"--socket={layout.mysql_socket}",
        f"--pid-file={layout.root / 'mysql.pid'}",
        f"--log-error={layout.log / 'mariadb.log'}",
        # Socket only: nothing listens on TCP, so no port can clash and no password is needed.
        "--skip-networking",
        "--skip-log-bin",
        "--skip-name-resolve",
        # A throwaway cloud: durability is not worth an fsync per commit under a burst.
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0",
        "--sync-binlog=0",
        "--innodb-buffer-pool-size=256M",
        "--max-connections=2000",
        "--character-set-server=utf8mb3",
        "--collation-server=utf8mb3_general_ci",
    ]
    if os.geteuid() == 0:
        argv.append("--user=root")
    return Service("mariadb", argv)


def rabbit_env(layout: Layout) -> dict[str, str]:
    base = layout.rabbit_dir
    return {
        "HOME": str(base),  # the Erlang cookie lives here, not in the user's home
        "ERL_EPMD_ADDRESS": HOST,
        "ERL_EPMD_PORT": str(layout.ports["epmd"]),
        "RABBITMQ_NODENAME": "sandbox@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(layout.ports["rabbitmq"]),
        "RABBITMQ_DIST_PORT": str(layout.ports["rabbitmq-dist"]),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(layout.log / "rabbitmq"),
        "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
    }


def rabbit_services(layout: Layout) -> list[Service]:
    base = layout.rabbit_dir
    for sub in ("mnesia", "home"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (layout.log / "rabbitmq").mkdir(parents=True, exist_ok=True)
    (base / "enabled_plugins").write_text("[].\n")  # no management plugin: faster start, fewer ports
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = {HOST}:{layout.ports['rabbitmq']}\nvm_memory_high_watermark.relative = 0.2\n"
    )
    (base / "advanced.config").write_text("[].\n")
    (base / "rabbitmq-env.conf").write_text("")
    env = rabbit_env(layout)
    epmd_argv = [shutil.which("epmd") or "/usr/bin/epmd", "-address", HOST, "-port", str(layout.ports["epmd"])]
    server = shutil.which("rabbitmq-server", path="/usr/lib/rabbitmq/bin") or "/usr/lib/rabbitmq/bin/rabbitmq-server"
    return [
        # Started by us in the foreground so that we own its PID (Erlang would otherwise daemonise its own).
        Service("epmd", epmd_argv, env, port=layout.ports["epmd"]),
        Service("rabbitmq", [server], env, port=layout.ports["rabbitmq"]),
    ]


def http_answers(url: str, cafile) -> bool:
    """Any HTTP status counts: the app is loaded. A bound port alone is not (gunicorn binds before its workers
    import the service, and a service that fails to load still had its port open for a moment)."""
    context = ssl.create_default_context(cafile=str(cafile)) if url.startswith("https") else None
    try:
        urllib.request.urlopen(url, timeout=2, context=context).close()
        return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ssl.SSLError):
        return False


def queue_exists(layout: Layout, queue: str) -> bool:
    """Whether the sandbox's RabbitMQ has this queue (a passive declare: nothing is created)."""
    import kombu
    from amqp.exceptions import NotFound

    try:
        with kombu.Connection(f"amqp://guest:guest@{HOST}:{layout.ports['rabbitmq']}//", connect_timeout=2) as conn:
            conn.channel().queue_declare(queue, passive=True)
            return True
    except NotFound:
        return False
    except OSError:  # not accepting connections yet
        return False


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
