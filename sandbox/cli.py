"""`python -m sandbox COMMAND` (also `tox -e sandbox -- COMMAND`)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from sandbox import guest_image, real_host
from sandbox.api import POLICIES, Sandbox
from sandbox.layout import REPO_ROOT
from sandbox.waiting import SandboxError

VARIANT_HELP = (
    """variants (for `with`), each applied for the duration of COMMAND and then restored:
  quota PROJECT NAME=VALUE...      e.g. quota zuul instances=99 (instances, cores, ram, port, floatingip,
                                   gigabytes, volumes)
  flavor NAME=VALUE...             replace the test-node flavor ci.standard, e.g. flavor vcpus=4
  role PROJECT ROLE                grant ROLE (e.g. admin) to the project's user
  no-service TYPE                  remove a service's endpoints from the catalog, e.g. no-service block-storage
  policy SERVICE NAME              """
    + ", ".join(f"{s} {n}" for s, names in POLICIES.items() for n in names)
    + """
  no-external-network              the public network stops being external
  paused SERVICE                   SIGSTOP a service, e.g. paused nova-compute
  guest NAME=VALUE...              guest emulation: cpu_mhz=1200 steal_percent=30
  region-two                       a second region (RegionTwo) with the same services; the clouds.yaml
                                   entries sandbox-zuul and sandbox-ci name both regions
  keystone-http                    Keystone's plain http listener, which the clouds.yaml entry
                                   sandbox-zuul-http uses (`up` does not start it)
"""
)


def _pairs(items: list[str]) -> dict[str, float]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SandboxError(f"expected NAME=VALUE, got {item!r}")
        number = float(value)
        values[key] = int(number) if number.is_integer() else number
    return values


def variant_context(sb: Sandbox, words: list[str]):
    if not words:
        raise SandboxError("which variant? see `python -m sandbox with --help`")
    name, args = words[0], words[1:]
    if name == "quota" and args:
        return sb.quota(args[0], **_pairs(args[1:]))
    if name == "flavor":
        return sb.test_flavor(**_pairs(args))
    if name == "role" and len(args) == 2:
        return sb.role(*args)
    if name == "no-service" and len(args) == 1:
        return sb.without_service(args[0])
    if name == "policy" and len(args) == 2:
        return sb.policy(*args)
    if name == "no-external-network" and not args:
        return sb.without_external_network()
    if name == "paused" and len(args) == 1:
        return sb.paused(args[0])
    if name == "guest":
        return sb.guest(**_pairs(args))
    if name == "region-two" and not args:
        return sb.second_region()
    if name == "keystone-http" and not args:
        return sb.http_keystone()
    raise SandboxError(f"unknown variant or wrong arguments: {' '.join(words)}")


def cmd_up(sb: Sandbox, args) -> int:
    started = time.monotonic()
    sb.up()
    print(f"sandbox up in {time.monotonic() - started:.0f}s; clouds.yaml: {sb.clouds_yaml}", flush=True)
    print(f"  try: OS_CLIENT_CONFIG_FILE={sb.clouds_yaml} openstack --os-cloud sandbox-zuul server list", flush=True)
    return 0


def cmd_down(sb: Sandbox, args) -> int:
    if not sb.is_running() and not sb.layout.root.exists():
        print("sandbox is not running; nothing to stop")
        return 0
    started = time.monotonic()
    stopped = sb.down()
    print(
        f"sandbox down in {time.monotonic() - started:.1f}s: stopped {len(stopped)} processes, removed {sb.layout.root}"
    )
    return 0


def cmd_status(sb: Sandbox, args) -> int:
    rows = sb.status()
    if not rows or not any(running for _, _, running, _ in rows):
        print("sandbox is not running")
        return 3
    total = 0.0
    print(f"{'process':<24} {'pid':>7} {'state':<8} {'rss':>8}")
    for name, pid, running, rss in rows:
        total += rss
        print(f"{name:<24} {pid:>7} {'running' if running else 'EXITED':<8} {rss:>6.0f}MB")
    guests = real_host.guests(sb.layout)
    for guest in guests:
        total += guest["rss_mb"]
        print(
            f"{'guest ' + guest['name']:<32} {guest['state']:<8} {guest['rss_mb']:>6.0f}MB  (Nova instance "
            f"{guest['uuid']})"
        )
    print(f"{'total':<24} {'':>7} {'':<8} {total:>6.0f}MB")
    plan = real_host.RealHost.load(sb.layout)
    if plan.enabled:
        print(
            f"real host: {plan.virt_type} (host {real_host.REAL_COMPUTE_HOST}), guests' bridge {plan.bridge} on "
            f"{sb.layout.guest_net}, {len(guests)} guest(s), image {plan.image['name']} ({plan.image['key']})"
        )
    else:
        print(f"real host: off ({plan.reason})")
    print(f"clouds.yaml: {sb.clouds_yaml}")
    return 0 if all(running for _, _, running, _ in rows) else 1


def cmd_service(sb: Sandbox, args) -> int:
    if args.action == "stop":
        sb.stack.stop(args.name)
    else:
        sb.stack.restart(args.name)
    print(f"{args.name}: {args.action} done")
    return 0


def cmd_with(sb: Sandbox, args) -> int:
    if "--" not in args.rest:
        raise SandboxError("usage: python -m sandbox with VARIANT [ARGS] [+ VARIANT ...] -- COMMAND")
    split = args.rest.index("--")
    variant_words, command = args.rest[:split], args.rest[split + 1 :]
    groups, current = [], []
    for word in variant_words:
        if word == "+":
            groups.append(current)
            current = []
        else:
            current.append(word)
    groups.append(current)
    with ExitStack() as stack:
        for words in groups:
            stack.enter_context(variant_context(sb, words))
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(sb.clouds_yaml)}
        return run_child(command, env=env)


def run_child(command: list[str], **kwargs) -> int:
    """Run a command that handles Ctrl-C itself (the conformance suite stops, deletes what it created and writes
    its report): while it runs, this process ignores SIGINT, which the terminal sends to both, and passes
    SIGTERM on, rather than killing it at once as `subprocess.call` does."""
    # Ignored before the child exists (a Ctrl-C right after it starts must not hit this process's default
    # handler); the child gets the default back before it runs, or Python there would keep ignoring Ctrl-C.
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    try:
        child = subprocess.Popen(command, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_demo(sb: Sandbox, args) -> int:
    """Up, the conformance suite against the sandbox with the sandbox profile, report path, down."""
    started_here = not sb.is_running()
    if started_here:
        cmd_up(sb, args)
    report_root = Path(os.environ.get("CONFORMANCE_REPORT_DIR") or REPO_ROOT / "reports")
    before = set(report_root.glob("*")) if report_root.exists() else set()
    try:
        command = [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "conformance.checks",
            "-p",
            "no:cacheprovider",
            "--profile=sandbox",
            "--zuul-cloud=sandbox-zuul",
            "--ci-cloud=sandbox-ci",
            f"--report-dir={report_root}",
            # Two checks at a time (pytest-xdist), so R5's real guest boots beside the burst: same verdicts, about
            # 40 s less. `demo -n 0` runs them one after the other.
            "-n",
            "2",
            *args.pytest_args,
        ]
        code = run_child(command, env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(sb.clouds_yaml)}, cwd=REPO_ROOT)
    finally:
        if started_here and not os.environ.get("SANDBOX_KEEP"):
            cmd_down(sb, args)
    new = sorted(set(report_root.glob("*")) - before) if report_root.exists() else []
    if new:
        print(f"report: {new[-1]}")
    else:
        print("no report was written (see the output above)")
    return code


def cmd_image_build(sb: Sandbox, args) -> int:
    """Build the real guest image unless the cache has it (sandbox/guest_image.py); print where it is."""
    image = guest_image.ensure_image(say=lambda line: print(line, flush=True))
    how = (
        f"built in {image.build_seconds:.0f}s"
        if image.built_now
        else f"cached (built {image.manifest.get('build_date', '?')} in {image.build_seconds:.0f}s)"
    )
    print(f"guest image {image.key}: {how}")
    print(f"  image:   {image.image} ({image.image.stat().st_size / 2**20:.0f} MiB)")
    print(f"  kernel:  {image.kernel}")
    print(f"  initrd:  {image.initrd}")
    print(f"  cmdline: {image.cmdline}")
    return 0


def cmd_image_status(sb: Sandbox, args) -> int:
    """Exit 0 when the image for the current inputs is built, 3 when not (as `status` for the cloud)."""
    status = guest_image.image_status()
    if status.built:
        age_h = (status.age_seconds or 0) / 3600
        image_mib = status.manifest["files"]["image"]["size"] / 2**20
        print(
            f"guest image {status.key}: built {age_h:.1f} h ago, {image_mib:.0f} MiB "
            f"({status.size_bytes / 2**20:.0f} MiB with kernel and initrd): {status.image}"
        )
        return 0
    if status.state == "incomplete":
        doing = "a build is running" if status.building else "a build failed or was interrupted"
        print(f"guest image {status.key}: not built ({doing}; see {status.directory})")
    else:
        print(
            f"guest image {status.key}: not built (would be in {status.directory}); "
            "`python -m sandbox image build` builds it (about 2 minutes)"
        )
    return 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="A local OpenStack cloud (real Keystone, Glance, Placement, Nova with a fake hypervisor, "
        "Neutron, Cinder) on 127.0.0.1, for trying and testing the conformance suite. "
        "State lives in .sandbox/ (SANDBOX_DIR overrides).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    no_real = dict(
        action="store_true",
        help="fake hypervisor nodes only: no libvirt host, no guest image (also SANDBOX_REAL_GUESTS=0)",
    )
    up = sub.add_parser("up", help="start the cloud; returns when a server boot succeeds")
    up.add_argument("--no-real-guests", **no_real)
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started and remove the state").set_defaults(func=cmd_down)
    sub.add_parser("status", help="what runs, and its memory").set_defaults(func=cmd_status)
    service = sub.add_parser("service", help="stop or start one sandbox process")
    service.add_argument("action", choices=("stop", "start"))
    service.add_argument("name")
    service.set_defaults(func=cmd_service)
    with_ = sub.add_parser(
        "with",
        help="run a command with variant(s) applied, then restore",
        epilog=VARIANT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    with_.add_argument("rest", nargs=argparse.REMAINDER, help="VARIANT [ARGS] [+ VARIANT ...] -- COMMAND")
    with_.set_defaults(func=cmd_with)
    demo = sub.add_parser("demo", help="up, run the conformance suite with the sandbox profile, down")
    demo.add_argument("--no-real-guests", **no_real)
    demo.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
    demo.set_defaults(func=cmd_demo)
    image = sub.add_parser("image", help="the real guest image (Debian, built with diskimage-builder, cached)")
    image_sub = image.add_subparsers(dest="action", required=True)
    image_sub.add_parser("build", help="build it unless cached (about 2 minutes), print its paths").set_defaults(
        func=cmd_image_build
    )
    image_sub.add_parser("status", help="whether it is built: exit 0 if so, 3 if not").set_defaults(
        func=cmd_image_status
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `demo` passes what it does not know on to pytest (`demo --burst-size 5`, `demo -k burst`).
    args, unknown = parser.parse_known_args(argv)
    if args.command == "demo":
        args.pytest_args = [a for a in [*unknown, *args.pytest_args] if a != "--"]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "no_real_guests", False):
        os.environ["SANDBOX_REAL_GUESTS"] = "0"  # read by `up` (sandbox/real_host.py wanted())
    sb = Sandbox()
    try:
        return args.func(sb, args)
    except SandboxError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `status | head`: the reader has gone, so the rest goes nowhere (and says nothing)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell shows a process killed by SIGPIPE
    except Exception as error:  # one line for the user; the services' logs hold the details
        if os.environ.get("SANDBOX_DEBUG"):
            raise
        print(
            f"sandbox: {args.command} failed: {type(error).__name__}: {error} "
            f"(logs: {sb.layout.log}; SANDBOX_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        stopped = "; what it had started is stopped" if args.command in ("up", "demo") else ""
        print(f"sandbox: {args.command} interrupted{stopped}", file=sys.stderr)
        return 130
