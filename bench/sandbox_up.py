"""How long `python -m sandbox up` takes with the template restored, where the time goes, and what CPU it costs.

Each round runs `up` then `down` in a state dir of its own (no other sandbox may run on the same ports), and
reads the phases `up` prints ("[ 12.3s] message") and the CPU every service spent until `up` returned. With
`--compare REF`, each round also runs `up` from REF (a git worktree of it, e.g. the commit before a change)
right before the current tree, so both are measured side by side on the same machine state; the last line
gives the ratio of their medians:

    python bench/sandbox_up.py --rounds 3 --compare HEAD~1
    ...
    rounds=3 up_s=28.1 cpu_s=55.0 baseline_up_s=39.0 baseline_cpu_s=70.2 ratio=0.72

The first `up` of a state dir builds the database template (minutes): a warm-up round does that, unmeasured.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox.processes import ProcessTable, cpu_seconds  # noqa: E402

PHASE = re.compile(r"^\[\s*([0-9.]+)s\] (.*)$")


def run_up(tree: Path, state: Path) -> dict:
    """`up` then (after reading CPU) `down`, from `tree`; the wall time, phases and CPU per service."""
    # The services import the sandbox's own modules too (sandbox.wsgi_app, sandbox.nova_compute...) from a state
    # dir as their working directory: PYTHONPATH makes them `tree`'s, not the installed (editable) tree's.
    env = {
        **os.environ,
        "SANDBOX_DIR": str(state),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox", "up"],
        cwd=tree,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wall = time.monotonic() - started
    try:
        if proc.returncode != 0:
            raise SystemExit(f"up failed from {tree} (exit {proc.returncode}):\n{proc.stdout[-2000:]}")
        table = ProcessTable(state / "processes.json").load()
        cpu = {name: cpu_seconds(p) for name, p in table.items()}
    finally:
        subprocess.run(
            [sys.executable, "-m", "sandbox", "down"],
            cwd=tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            check=False,
        )
    phases = [(float(m.group(1)), m.group(2)) for m in map(PHASE.match, proc.stdout.splitlines()) if m]
    return {"wall": wall, "phases": phases, "cpu": cpu}


def show(label: str, result: dict) -> None:
    top = sorted(result["cpu"].items(), key=lambda item: -item[1])
    print(f"  {label}: up {result['wall']:.1f}s, services' CPU {sum(result['cpu'].values()):.1f}s")
    for at, message in result["phases"]:
        print(f"    [{at:5.1f}s] {message}")
    print("    CPU: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in top), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", metavar="REF", help="also measure `up` from this git ref, side by side")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "sandbox-up-bench",
        help="state dir (default: %(default)s); its template is cached, so only the first run "
        "with a given dir builds one",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="sandbox-up-bench-") as tmp:
        state = args.state_dir
        trees = {"current": REPO}
        if args.compare:
            baseline = Path(tmp) / "baseline"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline), args.compare],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            trees = {"baseline": baseline, "current": REPO}
        try:  # every run_up ends with `down`, which removes the state dir
            print("warm-up (builds the template if this state dir has none; not measured)", flush=True)
            run_up(REPO, state)
            results: dict[str, list[dict]] = {name: [] for name in trees}
            for round_no in range(1, args.rounds + 1):
                print(f"round {round_no}/{args.rounds}", flush=True)
                for name, tree in trees.items():
                    results[name].append(run_up(tree, state))
                    show(name, results[name][-1])
        finally:
            if args.compare:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)],
                    check=False,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )

    def medians(name: str) -> tuple[float, float]:
        return (
            statistics.median(r["wall"] for r in results[name]),
            statistics.median(sum(r["cpu"].values()) for r in results[name]),
        )

    up_s, cpu_s = medians("current")
    line = f"rounds={args.rounds} up_s={up_s:.1f} cpu_s={cpu_s:.1f}"
    if args.compare:
        base_up, base_cpu = medians("baseline")
        line += f" baseline_up_s={base_up:.1f} baseline_cpu_s={base_cpu:.1f} ratio={up_s / base_up:.2f}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
