"""The suite's real command line as a subprocess, for tests: `run` waits for it, `LiveRun` watches it as it goes
(its output read line by line while it runs, to send a signal at the right moment), and readers of what a run
wrote (results.json, the run prefix in its output)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema

from conformance.resources import Waiter

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = REPO_ROOT / "conformance" / "schemas" / "results.schema.json"
RUN_RE = re.compile(r"\b(conformance-\d{8}T\d{6}Z-[0-9a-f]{6})\b")
LONG = 900.0  # a bound on every wait for a line: the sandbox on a loaded machine is slow, never this slow


def command(
    report_dir: Path, *args: str, profile: str = "sandbox", zuul: str = "sandbox-zuul", ci: str = "sandbox-ci"
) -> list[str]:
    """`python -m pytest --pyargs conformance.checks` as a donor runs it, against the sandbox's two projects."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        "conformance.checks",
        "-p",
        "no:cacheprovider",
        f"--profile={profile}",
        f"--zuul-cloud={zuul}",
        f"--ci-cloud={ci}",
        f"--report-dir={report_dir}",
        *args,
    ]


def environment(clouds_yaml: Path | str, env: dict | None = None) -> dict:
    return {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml), **(env or {})}


def run(
    clouds_yaml: Path | str,
    report_dir: Path,
    *args: str,
    env: dict | None = None,
    timeout: float = 1800,
    cwd: Path = REPO_ROOT,
    wrap: tuple[str, ...] = (),
    **options,
) -> subprocess.CompletedProcess:
    """One run to its end, stdout and stderr captured as text. `wrap`: a command the suite runs under (e.g.
    `python -m sandbox with region-two --`); `options`: profile, zuul, ci (see `command`)."""
    return subprocess.run(
        [*wrap, *command(report_dir, *args, **options)],
        capture_output=True,
        text=True,
        env=environment(clouds_yaml, env),
        timeout=timeout,
        cwd=cwd,
    )


def default_sigint() -> None:
    """preexec_fn of a child a test interrupts: SIGINT as a terminal delivers it, even when the tests themselves
    run with SIGINT ignored (a background job of a non-interactive shell, `nohup ... &`), which the child would
    inherit: Python then installs no KeyboardInterrupt and the signal is lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sweep(clouds_yaml: Path | str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m conformance cleanup` (the sweeper) against the sandbox's two projects, to its end."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance",
            "cleanup",
            "--zuul-cloud",
            "sandbox-zuul",
            "--ci-cloud",
            "sandbox-ci",
            *args,
        ],
        capture_output=True,
        text=True,
        env=environment(clouds_yaml),
        timeout=timeout,
    )


class LiveRun:
    """One run with stdout+stderr on a pipe, read line by line while it runs, in a session of its own (a signal
    sent to it reaches the run only)."""

    def __init__(
        self,
        clouds_yaml: Path | str,
        report_dir: Path,
        *args: str,
        env: dict | None = None,
        cwd: Path = REPO_ROOT,
        **options,
    ):
        self.report_dir = report_dir
        self.proc = subprocess.Popen(
            command(report_dir, *args, **options),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment(clouds_yaml, env),
            cwd=cwd,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def tail(self, count: int = 60) -> str:
        return "\n".join(self.lines[-count:])

    @property
    def prefix(self) -> str | None:
        return run_prefix(self.output)

    def wait_for(self, predicate, what: str, timeout: float = LONG, poll_s: float = 0.3):
        """Poll `predicate` until it returns something truthy; fail, with the output's tail, if the run ends
        first or `timeout` passes."""
        found = {}

        def done() -> bool:
            found["value"] = predicate()
            return bool(found["value"]) or self.proc.poll() is not None

        assert Waiter(timeout).poll(done, poll_s), f"never saw {what}:\n{self.tail()}"
        assert found["value"], f"the run ended before {what}:\n{self.tail()}"
        return found["value"]

    def wait_for_line(self, pattern: str, start: int = 0, timeout: float = LONG) -> re.Match:
        regex = re.compile(pattern)

        def seen():
            return next((m for m in map(regex.search, self.lines[start:]) if m), None)

        return self.wait_for(seen, f"a line matching {pattern!r}", timeout)

    def send(self, sig: int) -> int:
        """Send `sig`; returns the line count at that moment (to look for what follows it)."""
        mark = len(self.lines)
        self.proc.send_signal(sig)
        return mark

    def finish(self, timeout: float = 1800) -> int:
        """Wait for the run's end (killed if it outlives `timeout`); its exit status."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(30)
        return code

    def document(self) -> dict:
        return document(self.report_dir, context=self.tail())

    def verdicts(self) -> dict[tuple[str, str], dict]:
        return verdicts(self.report_dir)


def run_prefix(output: str) -> str | None:
    match = RUN_RE.search(output or "")
    return match.group(1) if match else None


def document(report_dir: Path, context: str = "") -> dict:
    """The newest bundle's results.json under `report_dir`, checked against its schema."""
    files = sorted(Path(report_dir).glob("*/results.json"))
    assert files, f"no results.json under {report_dir}:\n{context}"
    doc = json.loads(files[-1].read_text())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    return doc


def results(report_dir: Path) -> list[dict]:
    return document(report_dir)["results"]


def verdicts(report_dir: Path) -> dict[tuple[str, str], dict]:
    return {(r["requirement"], r["check"]): r for r in results(report_dir)}
