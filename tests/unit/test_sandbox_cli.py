"""`python -m sandbox`'s command line without a cloud: options, what demo passes on to pytest, Ctrl-C."""

from __future__ import annotations

import pytest

from sandbox import real_host


@pytest.mark.parametrize(
    "command, seen",
    [
        (["up", "--no-real-guests"], {"up": False}),
        (["up"], {"up": True}),
        (["demo", "--no-real-guests", "-k", "x"], {"demo": (False, ["-k", "x"])}),
        # What demo does not know goes to pytest: `tox -e demo -- --burst-size 5` (a `--` is dropped).
        (
            ["demo", "--burst-size", "5", "-m", "not dynamic"],
            {"demo": (True, ["--burst-size", "5", "-m", "not dynamic"])},
        ),
        (["demo", "--", "-k", "x"], {"demo": (True, ["-k", "x"])}),
    ],
)
def test_no_real_guests_option_and_demo_arguments(monkeypatch, command, seen):
    from sandbox import cli

    monkeypatch.setenv("SANDBOX_REAL_GUESTS", "1")  # restored after the test
    got = {}
    monkeypatch.setattr(cli, "cmd_up", lambda sb, args: got.setdefault("up", real_host.wanted()) and 0)
    monkeypatch.setattr(
        cli, "cmd_demo", lambda sb, args: got.setdefault("demo", (real_host.wanted(), args.pytest_args)) and 0
    )
    cli.main(command)
    assert got == seen


def test_other_commands_refuse_unknown_arguments(capsys):
    from sandbox import cli

    with pytest.raises(SystemExit) as exited:
        cli.main(["status", "--bogus"])
    assert exited.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, command):
    from sandbox import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, f"cmd_{command}", interrupted)
    assert cli.main([command]) == 130
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith(f"sandbox: {command} interrupted")
    assert "Traceback" not in err


def test_output_into_a_pipe_whose_reader_left_ends_quietly(tmp_path):
    """`python -m sandbox status | head -1`: no BrokenPipeError message, exit 141 as for SIGPIPE."""
    import subprocess
    import sys

    long_status = (
        "from sandbox import cli\n"
        "cli.cmd_status = lambda sb, args: [print('x' * 100) for _ in range(100000)] and 0\n"
        "raise SystemExit(cli.main(['status']))\n"
    )
    env = {"SANDBOX_DIR": str(tmp_path / "sandbox"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-c", long_status], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout.readline().strip() == b"x" * 100
    proc.stdout.close()  # as `head -1` does
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""


@pytest.mark.parametrize(
    ("user_args", "workers"),
    [([], "2"), (["-n", "0"], "0"), (["--burst-size", "5"], "2")],
)
def test_demo_runs_two_checks_at_a_time_unless_told_otherwise(monkeypatch, tmp_path, user_args, workers):
    """R5's real guest boots beside the burst (pytest-xdist -n 2); `demo -n 0` runs the checks one by one."""
    import argparse

    from sandbox import cli

    class Running:
        clouds_yaml = tmp_path / "clouds.yaml"

        def is_running(self):
            return True  # so demo neither starts nor stops a sandbox

    seen = []
    monkeypatch.setattr(cli, "run_child", lambda command, **kwargs: seen.append(command) or 0)
    monkeypatch.setenv("CONFORMANCE_REPORT_DIR", str(tmp_path / "reports"))
    assert cli.cmd_demo(Running(), argparse.Namespace(pytest_args=user_args)) == 0
    command = seen[0]
    last_n = max(i for i, arg in enumerate(command) if arg == "-n")
    assert command[last_n + 1] == workers  # argparse keeps the last -n: the user's wins
    assert command[len(command) - len(user_args) :] == user_args  # the user's arguments come last
