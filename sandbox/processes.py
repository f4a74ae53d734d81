"""Start, track and stop the sandbox's processes by PID.

Each service starts in its own session (process group), so stopping its leader's group also stops the
children it forked (gunicorn workers, Erlang helpers) and nothing else. The table of what was started is a JSON
file in the state dir, written as each process starts; every entry records the process's start time so a
recycled PID is never mistaken for ours.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox.waiting import wait_for

_table_lock = threading.Lock()


@dataclass
class Process:
    name: str
    pid: int
    start_ticks: int
    argv: list[str]
    log: str
    env: dict[str, str]


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name (state is [0], start time [19]), None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of a process (R, S, T, Z...), None if it is gone."""
    fields = _stat(pid)
    return fields[0] if fields else None


def _start_ticks(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def is_alive(proc: Process) -> bool:
    fields = _stat(proc.pid)
    return bool(fields) and int(fields[19]) == proc.start_ticks and fields[0] != "Z"


class ProcessTable:
    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, Process]:
        if not self.path.exists():
            return {}
        return {name: Process(**entry) for name, entry in json.loads(self.path.read_text()).items()}

    def _save(self, table: dict[str, Process]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({name: asdict(p) for name, p in table.items()}, indent=1))
        tmp.replace(self.path)

    def start(
        self,
        name: str,
        argv: list[str],
        log: Path,
        env: dict[str, str],
        cwd: Path | None = None,
        nice: int = 0,
        spawn: Callable[..., int | None] | None = None,
    ) -> Process:
        """Start a process in a session of its own, its output appended to `log`, and record it. `spawn`
        (sandbox.zygote.spawn's signature without the socket) may start it instead, by fork; when it returns None,
        the process is started by exec."""
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        pid = None
        if spawn is not None:
            pid = spawn(argv=argv, log=str(log), env={**os.environ, **env}, cwd=str(cwd) if cwd else None, nice=nice)
        if pid is None:
            with open(log, "ab") as out:
                pid = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                    cwd=cwd,
                    start_new_session=True,
                    preexec_fn=(lambda: os.nice(nice)) if nice else None,
                ).pid
        proc = Process(name, pid, _start_ticks(pid) or 0, argv, str(log), env)
        with _table_lock:
            table = self.load()
            table[name] = proc
            self._save(table)
        return proc

    def running(self) -> dict[str, Process]:
        return {name: p for name, p in self.load().items() if is_alive(p)}

    def stop(self, name: str, timeout: float = 10.0) -> None:
        """Stop one process. Its record stays: `status` shows it stopped, and it can be started again."""
        proc = self.load().get(name)
        if proc:
            stop_processes([proc], timeout)

    def forget(self, name: str) -> None:
        """Drop a stopped process's record (a process started only for a while: `status` no longer lists it)."""
        with _table_lock:
            table = self.load()
            if table.pop(name, None) is not None:
                self._save(table)

    def stop_all(self, timeout: float = 10.0) -> list[str]:
        """Stop every recorded process (newest first); return the names that were running."""
        table = self.load()
        alive = [p for p in reversed(list(table.values())) if is_alive(p)]
        stop_processes(alive, timeout)
        return [p.name for p in alive]


def _signal_group(proc: Process, sig: int) -> None:
    if not is_alive(proc):
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(proc.pid, sig)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # a zombie is gone, only not yet reaped
                members.append(int(entry.name))
    return members


def stop_processes(procs: list[Process], timeout: float) -> None:
    """SIGTERM every group at once, wait (bounded) for all to go, then SIGKILL whatever is left."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)

    def all_gone() -> bool:
        for proc in procs:  # reap the ones that are our own children (when `up` ran in this process)
            try:
                os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                pass
        return not any(is_alive(p) or group_members(p.pid) for p in procs)

    if not wait_for(all_gone, timeout=timeout, interval=0.1, what="processes to exit", raise_on_timeout=False):
        for proc in procs:
            for pid in group_members(proc.pid) or [proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        wait_for(all_gone, timeout=5, interval=0.1, what="killed processes to exit", raise_on_timeout=False)


def rss_mb(proc: Process) -> float:
    """Resident memory of a process and every other member of its group, in MB."""
    total_kb = 0
    for pid in group_members(proc.pid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def cpu_seconds(proc: Process) -> float:
    """CPU time (user + system) spent so far by a process and the rest of its group, children they reaped
    included."""
    ticks = 0
    for pid in group_members(proc.pid):
        fields = _stat(pid)
        if fields:
            ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")
