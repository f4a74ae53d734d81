"""Profiles: every threshold the checks use, as YAML data validated against a schema.

A profile may `extends:` another (by name or relative path); mappings merge deeply, the child's values win,
lists and scalars replace. The merged data is validated against `schemas/profile.schema.json`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from conformance.errors import BadInput

DEFAULT_PROFILE = "opendev-donor"
_MISSING = object()


def profiles_dir() -> Path:
    """The repository's `profiles/` folder (the package is installed editable), or CONFORMANCE_PROFILE_DIR."""
    override = os.environ.get("CONFORMANCE_PROFILE_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "profiles"


def available_profiles() -> list[str]:
    folder = profiles_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


@dataclass(frozen=True)
class Relaxation:
    key: str
    reason: str


@dataclass(frozen=True)
class Profile:
    """A merged, validated profile. `profile["flavor.min_ram_mb"]` reads a dotted key."""

    name: str
    data: dict[str, Any]
    sources: tuple[str, ...] = ()
    sha256: str = ""
    relaxations: tuple[Relaxation, ...] = field(default=())

    def __getitem__(self, dotted: str) -> Any:
        value = _lookup(self.data, dotted)
        if value is _MISSING:
            raise KeyError(f"profile {self.name!r} has no key {dotted!r}")
        return value

    def get(self, dotted: str, default: Any = None) -> Any:
        value = _lookup(self.data, dotted)
        return default if value is _MISSING else value

    def __contains__(self, dotted: str) -> bool:
        return _lookup(self.data, dotted) is not _MISSING

    def to_dict(self) -> dict[str, Any]:
        """Public description for reports: the merged data, where it came from and its hash."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "sources": list(self.sources),
            "relaxations": [{"key": r.key, "reason": r.reason} for r in self.relaxations],
            "data": copy.deepcopy(self.data),
        }


def _lookup(data: Any, dotted: str) -> Any:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new mapping: `override` on top of `base`; nested mappings merge, anything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve(name_or_path: str, relative_to: Path | None = None) -> Path:
    """A profile file from a name (`sandbox` -> profiles/sandbox.yaml) or a path."""
    text = str(name_or_path)
    looks_like_path = os.sep in text or "/" in text or text.endswith((".yaml", ".yml"))
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_absolute() and relative_to is not None and (relative_to / path).exists():
            path = relative_to / path
        if not path.is_file():
            raise BadInput(f"profile file {text} does not exist")
        return path.resolve()
    for folder in ([relative_to] if relative_to else []) + [profiles_dir()]:
        candidate = folder / f"{text}.yaml"
        if candidate.is_file():
            return candidate.resolve()
    known = ", ".join(available_profiles()) or "none"
    raise BadInput(f"unknown profile {text!r} (known profiles in {profiles_dir()}: {known})")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"profile {path} is not valid YAML{at}: {problem}") from None
    except OSError as exc:
        raise BadInput(f"profile {path} cannot be read: {exc.strerror}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInput(f"profile {path} must be a mapping of keys, not {type(data).__name__}")
    return data


def _load_merged(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], tuple[Path, ...]]:
    if path in chain:
        loop = " -> ".join(p.name for p in (*chain, path))
        raise BadInput(f"profile {chain[0]}: extends: loops ({loop})")
    data = _read(path)
    parent_name = data.pop("extends", None)
    if parent_name is None:
        return data, (*chain, path)
    if not isinstance(parent_name, str) or not parent_name:
        raise BadInput(f"profile {path}: extends: must be a profile name or path")
    try:
        parent_path = resolve(parent_name, relative_to=path.parent)
    except BadInput as exc:
        raise BadInput(f"profile {path}: extends: {exc}") from None
    parent, sources = _load_merged(parent_path, (*chain, path))
    # The parent's own relaxations are not inherited: a child lists what it relaxes against its parent.
    parent.pop("relaxations", None)
    return deep_merge(parent, data), sources


def _schema() -> dict[str, Any]:
    text = resources.files("conformance").joinpath("schemas/profile.schema.json").read_text()
    return json.loads(text)


def _describe(error: jsonschema.ValidationError) -> str:
    """`flavor.min_ram_mb: 'lots' is not of type 'integer'` for one schema error."""
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        key = ".".join(filter(None, [path, unexpected[0] if unexpected else "?"]))
        return f"{key}: unknown key (allowed here: {', '.join(allowed)})"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{'.'.join(filter(None, [path, missing]))}: required key is missing"
    if error.validator == "enum":
        choices = ", ".join(json.dumps(c) for c in error.validator_value)
        return f"{path}: {json.dumps(error.instance)} is not one of {choices}"
    return f"{path or '(top level)'}: {error.message}"


def validate(data: dict[str, Any], source: str = "profile") -> None:
    """Raise BadInput naming the first offending key (schema errors, then relaxations)."""
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        # The deepest error is the most specific one (a oneOf/ref failure reports its cause deeper down).
        error = max(errors, key=lambda e: len(e.absolute_path))
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise BadInput(f"invalid profile {source}: {_describe(error)}{more}")
    for index, relaxation in enumerate(data.get("relaxations", [])):
        key = relaxation["key"]
        if key == "relaxations" or _lookup(data, key) is _MISSING:
            raise BadInput(f"invalid profile {source}: relaxations.{index}.key: {key!r} is not a key of the profile")


def load_profile(name_or_path: str = DEFAULT_PROFILE) -> Profile:
    """Resolve `extends:`, validate, and return the Profile; BadInput names the key and the problem."""
    path = resolve(name_or_path)
    data, chain = _load_merged(path, ())
    data.setdefault("relaxations", [])
    # The name is the profile's own, never inherited from its parent.
    data["name"] = _read(path).get("name") or path.stem
    validate(data, source=str(path))
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return Profile(
        name=data["name"],
        data=data,
        sources=tuple(str(p) for p in chain),
        sha256=hashlib.sha256(canonical.encode()).hexdigest(),
        relaxations=tuple(Relaxation(r["key"], r["reason"]) for r in data["relaxations"]),
    )
