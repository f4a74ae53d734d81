"""Load a zuul-launcher draft (onboarding/zuul-launcher-provider.yaml) with Zuul's own parsers, offline.

Runs in the Zuul venv (tests/zuul/prereqs.sh):

    python validate_drafts.py [--tenant FILE]... [--clouds-yaml FILE] [--json OUT] DRAFT.yaml...

The draft and the tenant-side `image`/`flavor`/`label` objects it refers to (the files given with --tenant, else
the commented example in the draft) are read as one config project and added to a `model.Layout` by the
scheduler's own code (`TenantParser.parseConfig`, then `_addLayoutItems`): the section/provider parsers,
`ProviderConfig.flattenConfig` (inheritance, label-defaults, the OpenStack driver's provider schema) and
`driver.getProvider`, whose `parseConfig` checks that every label's image and flavor are attached to the
provider. Every `[connection "NAME"]` a section names is registered as zuul.conf would (`driver=openstack`,
`cloud=NAME`), over a clouds.yaml that lists each provider's region (or --clouds-yaml, e.g. the bundle's
onboarding/clouds-public.yaml). Nothing talks to a cloud or to ZooKeeper: the endpoint's ZooKeeper quota cache
is the one piece left out.

Each draft is validated on its own. Prints one line per error and `DRAFT: N provider(s), M error(s)`; exits 1
when any draft has an error. --json writes, per draft, its errors and each provider as the launcher would see it
(flattened labels, flavors, images, resource limits), for tests.
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import sys
import tempfile
from pathlib import Path

import yaml
import zuul.configloader as configloader
import zuul.model as model
import zuul.provider
from zuul.lib.ansible import AnsibleManager
from zuul.lib.connections import ConnectionRegistry

TENANT_MARKER = "# Tenant-side objects this draft refers to"  # conformance.report.onboarding.TENANT_MARKER
PROJECT = "opendev/zuul-providers"  # a config project: sections and providers are trusted configuration


class _NoQuotaCache:
    """Stands in for zuul.zk.quotacache.QuotaCache (a ZooKeeper tree cache the endpoint opens at creation, used
    only at launch time)."""

    def __init__(self, *args, **kwargs):
        pass


def tenant_from_comments(text: str) -> str:
    """The draft's commented example of the tenant-side objects, uncommented."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(TENANT_MARKER):
            block = []
            for item in lines[index + 1 :]:
                if not item.startswith("#   "):
                    break
                block.append(item[4:])
            return "\n".join(block) + "\n"
    return ""


def connections_for(objects: list, clouds_yaml: Path | None, workdir: Path) -> ConnectionRegistry:
    """zuul.conf's `[connection "NAME"] driver=openstack cloud=NAME` for each connection a section names."""
    names = sorted(
        {
            o["section"]["connection"]
            for o in objects
            if isinstance(o, dict) and isinstance(o.get("section"), dict) and o["section"].get("connection")
        }
    )
    regions = sorted(
        {
            str(o["provider"]["region"])
            for o in objects
            if isinstance(o, dict) and isinstance(o.get("provider"), dict) and o["provider"].get("region")
        }
    )
    if clouds_yaml is None:
        clouds_yaml = workdir / "clouds.yaml"
        clouds_yaml.write_text(
            yaml.safe_dump(
                {
                    "clouds": {
                        name: {
                            "auth": {"auth_url": "https://keystone.invalid/v3"},
                            **({"regions": regions} if regions else {}),
                        }
                        for name in names
                    }
                }
            )
        )
    config = configparser.ConfigParser()
    for name in names:
        config[f'connection "{name}"'] = {"driver": "openstack", "cloud": name}
    registry = ConnectionRegistry()
    registry.configure(config, sources=True, triggers=True, reporters=True, providers=True)
    for name in names:
        # zuul.conf's client_config_file reaches openstacksdk as one string, which it reads as a list of file
        # names: give the connection the list itself.
        registry.connections[name].config_files = [str(clouds_yaml)]
    return registry


def _objects(text: str) -> list[dict]:
    """The top-level objects, to find the connections and regions (Zuul's loader reports broken YAML itself)."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    return [o for o in loaded if isinstance(o, dict)] if isinstance(loaded, list) else []


class System:
    system_id = "validate-drafts"


def one_line(error) -> str:
    location = ""
    mark = getattr(error.key, "mark", None)
    context = getattr(error.key, "context", None)
    if context is not None:
        location = f"{context.path}:{mark.line + 1 if mark else '?'}: "
    pointer = re.search(r"The problem appears in the (.*?) stanza", error.error or "")
    where = f" ({' '.join(pointer.group(1).split())} stanza)" if pointer else ""
    return f"{location}{' '.join(str(error.short_error or error.error).split())}{where}"


def describe(provider) -> dict:
    def public(obj) -> dict:
        return {k: v for k, v in vars(obj).items() if not k.startswith("_") and k not in ("config_hash",)}

    return {
        "name": provider.name,
        "section": provider.section,
        "region": provider.region,
        "connection": provider.connection_name,
        "launch_timeout": provider.launch_timeout,
        "resource_limits": provider.resource_limits,
        "labels": {name: public(label) for name, label in provider.labels.items()},
        "flavors": {name: public(flavor) for name, flavor in provider.flavors.items()},
        "images": {name: public(image) for name, image in provider.images.items()},
    }


def validate(draft: Path, tenant_files: list[Path], clouds_yaml: Path | None) -> tuple[list[str], list[dict]]:
    text = draft.read_text()
    sources = [(path, path.read_text()) for path in tenant_files]
    if not tenant_files:
        sources = [(draft.with_name(f"{draft.name}#tenant-objects"), tenant_from_comments(text))]
    sources.append((draft, text))
    zuul.provider.QuotaCache = _NoQuotaCache
    with tempfile.TemporaryDirectory() as work:
        objects = [o for _, body in sources for o in _objects(body)]
        registry = connections_for(objects, clouds_yaml, Path(work))
        context = configloader.ParseContext(registry, None, System(), AnsibleManager())
        errors: list = []
        context.resetErrorContext(configloader.LocalAccumulator(errors))
        unparsed = model.UnparsedConfig()
        for path, body in sources:
            source = model.SourceContext(f"localhost/{PROJECT}", PROJECT, "local", "master", str(path))
            source.trusted = True
            with context.accumulator.catchErrors():
                unparsed.extend(configloader.safe_load_yaml(body, source))
        parser = configloader.TenantParser(registry, None, None, None, None, None, None, None)
        parsed = parser.parseConfig(unparsed, context)
        tenant = model.Tenant("onboarding")
        layout = model.Layout(tenant)
        # What the scheduler does with a tenant's parsed configuration: images, flavors, labels, sections,
        # providers (flattenConfig, driver.getProvider) into the layout; errors go to the accumulator.
        parser._addLayoutItems(layout, tenant, parsed, context)
        errors += layout.loading_errors.errors
        providers = [describe(p) for p in layout.providers.values()]
    problems = [one_line(e) for e in errors if getattr(e, "severity", "error") == "error"]
    warnings = [f"warning: {one_line(e)}" for e in errors if getattr(e, "severity", "error") != "error"]
    return problems + warnings, providers


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tenant",
        action="append",
        type=Path,
        default=[],
        help="a file of tenant-side image/flavor/label objects (default: the draft's commented example)",
    )
    ap.add_argument("--clouds-yaml", type=Path, help="clouds.yaml naming the connection's cloud and its regions")
    ap.add_argument(
        "--json",
        type=Path,
        help="write {draft: {errors, providers}} to this file, each provider as the launcher sees it",
    )
    ap.add_argument("drafts", type=Path, nargs="+", help="draft files, each validated on its own")
    args = ap.parse_args()
    report, failed = {}, False
    for draft in args.drafts:
        lines, providers = validate(draft, args.tenant, args.clouds_yaml)
        errors = [line for line in lines if not line.startswith("warning: ")]
        failed = failed or bool(errors)
        for line in lines:
            print(line)
        print(f"{draft}: {len(providers)} provider(s), {len(errors)} error(s)")
        report[str(draft)] = {
            "errors": errors,
            "warnings": [x for x in lines if x not in errors],
            "providers": providers,
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
