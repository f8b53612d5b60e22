"""Settings from a YAML file plus ``key=value`` overrides, with the same names as the Python API.

Each CLI command declares a dataclass of settings. ``add_config_arguments``
exposes every field as ``--field-name`` and accepts ``--config FILE`` and
positional ``key=value`` overrides; ``build_config`` merges them in the order
defaults < YAML file < ``--flags`` < ``key=value`` and checks types.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

C = TypeVar("C")


def _field_type(cls, f: dataclasses.Field):
    hints = typing.get_type_hints(cls)
    return hints.get(f.name, str)


def _base_types(tp) -> tuple:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return tuple(t for t in typing.get_args(tp) if t is not type(None))
    if origin is typing.Literal:
        return (str,)
    return (origin or tp,)


def coerce(cls, name: str, value: Any) -> Any:
    """Convert a string (CLI) or YAML value to the field's declared type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ConfigError(f"unknown setting {name!r}; known: {', '.join(sorted(fields))}")
    tp = _field_type(cls, fields[name])
    allowed = typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None
    bases = _base_types(tp)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and type(None) in typing.get_args(tp)):
        return None
    out = _convert(name, value, bases)
    if allowed and out not in allowed:
        raise ConfigError(f"setting {name}={out!r}: expected one of {allowed}")
    return out


def _convert(name: str, value: Any, bases: tuple) -> Any:
    for base in bases:
        try:
            if base is bool:
                if isinstance(value, bool):
                    return value
                if str(value).lower() in ("true", "1", "yes", "on"):
                    return True
                if str(value).lower() in ("false", "0", "no", "off"):
                    return False
                continue
            if base in (int, float):
                if isinstance(value, bool):
                    continue
                number = float(value)
                if base is int:
                    if number != int(number):
                        continue
                    return int(number)
                return number
            if base in (list, tuple):
                if isinstance(value, str) and value.lstrip().startswith("["):  # a YAML sequence, e.g. [dpo-100, drsow]
                    import yaml

                    try:
                        value = yaml.safe_load(value)
                    except yaml.YAMLError:
                        continue
                if isinstance(value, (list, tuple)):
                    return list(value)
                return [v.strip() for v in str(value).split(",") if v.strip()]
            if base is dict:
                if isinstance(value, str):  # key=value on the command line: a YAML mapping, e.g. {drsow: [0, 1]}
                    import yaml

                    try:
                        value = yaml.safe_load(value)
                    except yaml.YAMLError:
                        continue
                if isinstance(value, dict):
                    return value
                continue
            if base is str:
                return str(value)
            return value
        except (TypeError, ValueError):
            continue
    raise ConfigError(f"setting {name}={value!r}: expected {' or '.join(b.__name__ for b in bases)}")


def load_yaml(path: str | Path) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level")
    return data


def preset_names() -> list[str]:
    """The presets shipped in ``frugalign/configs`` (``demo``, ``recipe-frugal``, ``study-standard``, ...)."""
    from importlib.resources import files

    return sorted(p.name[:-5] for p in files("frugalign").joinpath("configs").iterdir() if p.name.endswith(".yaml"))


def preset_path(name: str) -> str:
    from importlib.resources import files

    return str(files("frugalign").joinpath("configs", f"{name}.yaml"))


def add_config_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """Expose each field of ``cls`` as ``--name`` plus ``--config`` and ``key=value`` overrides."""
    parser.add_argument("--config", help="YAML file of settings (same names as below)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override any setting, e.g. max_new_tokens=64")
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        doc = (f.metadata or {}).get("help", "")
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg__{f.name}", default=None,
                            metavar="V", help=f"{doc} (default: {default})".strip())


def build_config(cls: type[C], args: argparse.Namespace | None = None, *, preset: dict | None = None,
                 **values) -> C:
    """Defaults < ``preset`` < YAML files and preset names (in order) < flags < ``key=value`` < ``values``."""
    merged: dict[str, Any] = dict(preset or {})
    if args is not None:
        files, pairs = [args.config] if getattr(args, "config", None) else [], []
        for item in getattr(args, "overrides", None) or []:
            if "=" in item:
                pairs.append(item)
            elif item.endswith((".yaml", ".yml")):
                files.append(item)  # `frugalign run CONFIG.yaml key=value ...`
            elif item in preset_names():
                files.append(preset_path(item))  # `frugalign run recipe-frugal key=value ...`
            else:
                raise ConfigError(f"expected key=value, a .yaml file or a preset ({', '.join(preset_names())}), "
                                  f"got {item!r}")
        for path in files:
            merged.update(load_yaml(path))
        for key, value in vars(args).items():
            if key.startswith("cfg__") and value is not None:
                merged[key[5:]] = value
        for item in pairs:
            key, value = item.split("=", 1)
            merged[key.strip().replace("-", "_")] = value
    merged.update(values)
    kwargs = {k: coerce(cls, k, v) for k, v in merged.items()}
    try:
        cfg = cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"missing setting: {e}") from None
    check = getattr(cfg, "validate", None)
    if callable(check):
        check()
    return cfg
