"""`python -m conformance COMMAND`: the suite's tools besides the pytest run itself."""

from __future__ import annotations

import importlib
import sys

# command -> (module, function, one-line help). Imported lazily: each tool has its own dependencies.
COMMANDS = {
    "cleanup": ("conformance.cleanup", "main", "delete leftovers of crashed runs (by run prefix), both projects"),
    "sign": ("conformance.report.cli", "sign_main", "sign a report bundle's manifest (ssh-keygen or gpg)"),
    "verify": ("conformance.report.cli", "verify_main", "verify a report bundle's signature and file hashes"),
    "compare": ("conformance.report.cli", "compare_main", "compare two runs' results per requirement"),
    "fleet": ("conformance.fleet.cli", "main", "a static site of many runs: every cloud and region over time"),
}


def usage() -> str:
    lines = ["usage: python -m conformance COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "The checks themselves run under pytest: tox -e conformance -- [pytest args]"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = COMMANDS[command]
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        return int(function(rest) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (cleanup: what it did not delete stays listed)
        print(f"python -m conformance {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
