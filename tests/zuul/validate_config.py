"""Parse Zuul configuration files with Zuul's own parser, offline (no ZooKeeper, database or scheduler).

Runs in the Zuul venv (tests/zuul/prereqs.sh): `python validate_config.py [--trusted] PATH...` where a PATH is a
YAML file or a zuul.d/ directory. It builds the parse context the scheduler builds and runs the same per-stanza
schemas and parsers over each file, so a misspelled attribute, a wrong type or broken YAML is an error here as it
would be on the real Zuul. What needs a whole layout (an unknown parent job, nodeset or semaphore, a secret that
does not decrypt) is left to the real Zuul of tests/zuul/harness.py, which reports it at /config-errors.
Prints one line per error and `N error(s)`; exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import configparser
import sys
from pathlib import Path

import zuul.configloader as configloader
import zuul.model as model
from zuul.lib.ansible import AnsibleManager
from zuul.lib.connections import ConnectionRegistry


def yaml_files(paths: list[str]) -> list[Path]:
    files = []
    for path in map(Path, paths):
        files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
    return files


def parse_errors(files: list[Path], project: str, trusted: bool) -> list[tuple[Path, str]]:
    # Only the built-in drivers (timer, zuul, ...) exist without a zuul.conf: enough for jobs, projects,
    # semaphores, secrets and timer pipelines.
    connections = ConnectionRegistry()
    connections.configure(configparser.ConfigParser(), sources=True, triggers=True, reporters=True)
    context = configloader.ParseContext(connections, None, None, AnsibleManager())
    parser = configloader.TenantParser(*[None] * 8)
    errors = []
    for path in files:
        source = model.SourceContext(f"localhost/{project}", project, "local", "main", str(path))
        source.trusted = trusted
        found: list = []
        context.resetErrorContext(configloader.LocalAccumulator(found))
        unparsed = model.UnparsedConfig()
        with context.accumulator.catchErrors():
            unparsed.extend(configloader.safe_load_yaml(path.read_text(), source))
        parsed = parser.parseConfig(unparsed, context)
        for name in dir(parsed):
            if name.endswith("_errors"):
                found += getattr(parsed, name)
        errors += [(path, " ".join(str(getattr(e, "error", e)).split())) for e in found]
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trusted", action="store_true", help="parse as a config project (base jobs, pipelines)")
    ap.add_argument("--project", default="opendev/cloud-conformance")
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()
    files = yaml_files(args.paths)
    if not files:
        print(f"no YAML files in {' '.join(args.paths)}")
        return 1
    errors = parse_errors(files, args.project, args.trusted)
    for path, error in errors:
        print(f"{path}: {error}")
    print(f"{len(files)} file(s), {len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
