"""A parent that imports the libraries every OpenStack service imports, once, then forks each service.

Each Python service of the sandbox spends most of its start importing; a good part of that (oslo.config, oslo.log,
oslo.db and SQLAlchemy, oslo.policy, keystoneauth, keystonemiddleware, WebOb, Routes, Paste, jsonschema,
gunicorn...) is the same in every one. This process imports those once (PRELOAD), then, for each start request,
forks a child that becomes the service without exec: a session of its own (so that `ProcessTable` stops it and
its own children by process group, as any other service), its log as stdout and stderr, its environment, working
directory and niceness, then its program run as `__main__` (a console script such as `gunicorn` or
`nova-conductor` by its path, or `python -m MODULE`).

Only services that never monkey-patch with eventlet are started here: the children inherit these imports
unpatched. Nova's services run with native threads and refuse to start when eventlet was imported before them
(nova.monkey_patch.poison_eventlet), so nothing in PRELOAD may import eventlet (checked at start).

It listens on a Unix socket in the state dir (mode 0600, and only this user's connections are served: it runs
whatever it is asked to), so that `up`, `service start` and `Sandbox.http_keystone()` all start through it; it
lives until `down`, listed by `status` like the services. Protocol: one JSON request line, {"argv", "env", "cwd",
"log", "nice"}; one JSON answer line, {"pid": N} or {"error": "..."}. A sandbox command that cannot reach it starts
the service with exec as before (`spawn` returns None).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import warnings
from pathlib import Path

# In import order; each is imported whole with what it imports. Not oslo.messaging, oslo.service or
# oslo.versionedobjects: they import eventlet.
PRELOAD = (
    "oslo_i18n",
    "oslo_config.cfg",
    "oslo_log.log",
    "oslo_utils.timeutils",
    "oslo_utils.importutils",
    "oslo_utils.uuidutils",
    "oslo_serialization.jsonutils",
    "oslo_context.context",
    "oslo_concurrency.lockutils",
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.mysql",
    "pymysql",
    "oslo_db.sqlalchemy.enginefacade",
    "oslo_db.sqlalchemy.models",
    "oslo_policy.policy",
    "oslo_cache.core",
    "oslo_middleware",
    "keystoneauth1.session",
    "keystoneauth1.loading",
    "keystonemiddleware.auth_token",
    "requests",
    "webob",
    "webob.dec",
    "paste.deploy",
    "routes",
    "jsonschema",
    "stevedore",
    "osprofiler.profiler",
    "cryptography.fernet",
    "netaddr",
    "yaml",
    "jinja2",
    "psutil",
    "gunicorn.app.wsgiapp",
    "setproctitle",
)


def preload() -> list[str]:
    """Import PRELOAD; return what could not be imported (a missing library is the service's business)."""
    missing = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if "eventlet" in sys.modules:
        raise RuntimeError("a preloaded module imported eventlet: Nova's services would refuse to start")
    return missing


def run_program(argv: list[str]) -> None:
    """Run a command line as this process's `__main__`: `PYTHON -m MODULE ARGS`, `PYTHON -c CODE ARGS` or
    `SCRIPT ARGS` (a Python script: the services' console scripts)."""
    import runpy

    if len(argv) >= 3 and argv[1] == "-m":
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    elif len(argv) >= 3 and argv[1] == "-c":
        sys.argv = ["-c", *argv[3:]]
        exec(compile(argv[2], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    else:
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")


def become(request: dict, inherited: list) -> None:
    """In the forked child: become the service the request describes. Never returns."""
    code = 1
    try:
        for sock in inherited:  # the zygote's listening socket and the request's connection
            sock.close()
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        if request.get("nice"):
            os.nice(request["nice"])
        os.environ.clear()
        os.environ.update(request["env"])
        try:
            import setproctitle

            setproctitle.setproctitle(" ".join(request["argv"]))
        except ImportError:
            pass
        run_program(request["argv"])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, (int, type(None))):
            print(exit_.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def reap(_signum=None, _frame=None) -> None:
    """Collect the children that exited (a service that crashed must not stay a zombie while the zygote lives)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


def _answer(conn: socket.socket, answer: dict) -> None:
    conn.sendall((json.dumps(answer) + "\n").encode())


def handle(listener: socket.socket, conn: socket.socket) -> None:
    with conn, conn.makefile("rb") as stream:
        if _peer_uid(conn) != os.getuid():
            _answer(conn, {"error": "not this user's"})
            return
        request = json.loads(stream.readline())
        if threading.active_count() != 1:  # a fork of a threaded process may inherit a held lock
            _answer(conn, {"error": f"{threading.active_count()} threads: will not fork"})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            become(request, [listener, conn])
        _answer(conn, {"pid": pid})


def serve(path: Path) -> None:
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(previous)
    listener.listen(16)
    while True:
        conn, _ = listener.accept()
        try:
            handle(listener, conn)
        except (OSError, ValueError) as error:  # a client that went away or sent garbage: the next one
            print(f"zygote: request failed: {error}", file=sys.stderr, flush=True)


def spawn(
    path: Path,
    argv: list[str],
    log: str,
    env: dict[str, str],
    cwd: str | None = None,
    nice: int = 0,
    timeout: float = 30,
) -> int | None:
    """Ask the zygote at `path` to start a process; its PID, or None when no zygote answers there."""
    request = {"argv": argv, "log": log, "env": env, "cwd": cwd, "nice": nice}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            conn.sendall((json.dumps(request) + "\n").encode())
            with conn.makefile("rb") as stream:
                answer = json.loads(stream.readline() or b"{}")
    except (OSError, ValueError):
        return None
    return answer.get("pid")


def main() -> int:
    warnings.filterwarnings("ignore")
    path = Path(sys.argv[1])
    missing = preload()
    if missing:
        print(f"zygote: not preloaded (not installed): {', '.join(missing)}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGCHLD, reap)
    print(f"zygote: {len(sys.modules)} modules preloaded; listening on {path}", file=sys.stderr, flush=True)
    serve(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
