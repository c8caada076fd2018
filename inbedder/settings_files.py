"""Settings files: one YAML mapping plus `--set a.b=value` overrides, validated into a pydantic model.

Every command and spark-submit script that reads a settings file reads it here, so
a bad file, a bad override and a bad field end in the same one-line `ConfigError`
(exit code 2 under the console's failure contract)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from inbedder.errors import ConfigError, validation_problems

Settings = TypeVar("Settings", bound=BaseModel)


def parse_override(item: str) -> tuple[str, object]:
    """`section.field=value`, the value read as YAML (so 3, true, [a, b] work)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected section.field=value")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None


def set_dotted(tree: dict, dotted: str, value: object) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {k} is not a section")
    node[keys[-1]] = value


def read_tree(path: str | Path | None) -> dict:
    """The YAML file's mapping ({} without a file)."""
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not a {type(loaded).__name__}")
    return loaded


def load_settings(model: type[Settings], path: str | Path | None = None, overrides: list[str] | None = None,
                  base: dict | None = None, what: str = "configuration") -> Settings:
    """The file, then `base` (dotted keys from command-line options), then `--set` overrides, validated."""
    tree = read_tree(path)
    for dotted, value in (base or {}).items():
        set_dotted(tree, dotted, value)
    for item in overrides or []:
        set_dotted(tree, *parse_override(item))
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {validation_problems(exc)}") from None
