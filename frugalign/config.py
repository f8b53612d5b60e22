"""Settings from a YAML file plus ``key=value`` overrides, with the same names as the Python API.

Each CLI command declares a dataclass of settings. ``add_config_arguments``
exposes every field as ``--field-name`` and accepts ``--config FILE`` and
positional ``key=value`` overrides; ``build_config`` merges them in the order
defaults < YAML file < ``--flags`` < ``key=value`` and checks types.

A field declared with :func:`block` holds a nested settings dataclass (the
recipe's ``train`` block is a :class:`~frugalign.train.TrainSettings`): its
fields are ``train.lr=6e-4`` on the command line, ``--train.lr``, or a
``train:`` mapping in YAML. Names a block's fields had when they were
top-level settings (``lr=6e-4``) still work, with a one-line note.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Sequence
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


def coerce(cls, name: str, value: Any, *, prefix: str = "") -> Any:
    """Convert a string (CLI) or YAML value to the field's declared type (``prefix``: the block, for messages)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        known = ", ".join(prefix + k for k in sorted(fields))
        raise ConfigError(f"unknown setting {prefix + name!r}; known: {known}")
    tp = _field_type(cls, fields[name])
    allowed = typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None
    bases = _base_types(tp)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and type(None) in typing.get_args(tp)):
        return None
    out = _convert(prefix + name, value, bases)
    if allowed and out not in allowed:
        raise ConfigError(f"setting {prefix + name}={out!r}: expected one of {allowed}")
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
                value = _mapping(value)
                if isinstance(value, dict):
                    return value
                continue
            if base is str:
                return str(value)
            return value
        except (TypeError, ValueError):
            continue
    raise ConfigError(f"setting {name}={value!r}: expected {' or '.join(b.__name__ for b in bases)}")


def _mapping(value: Any) -> Any:
    """A YAML mapping given as a string on the command line (``{drsow: [0, 1]}``) as a dict; else ``value``."""
    if not isinstance(value, str):
        return value
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


# ---------------------------------------------------------------- nested blocks


def block(cls: type, help: str, *, legacy: Sequence[str] = (), prefix: str = "", **defaults) -> Any:
    """A field holding a nested settings block, ``cls(**defaults)`` unless set.

    ``defaults`` are this holder's own defaults for the block (the recipe trains a
    LoRA with ``lr=2e-4``, the training command a full model). ``legacy``: the
    block's fields that were top-level settings of the holder, once named
    ``prefix + field`` (``judge_lr`` for ``judge.lr``).
    """
    return dataclasses.field(default_factory=functools.partial(cls, **defaults),
                             metadata={"help": help, "block": cls, "legacy": {prefix + n: n for n in legacy}})


@functools.cache
def blocks(cls) -> dict[str, dataclasses.Field]:
    """The block fields of settings class ``cls`` by name."""
    return {f.name: f for f in dataclasses.fields(cls) if (f.metadata or {}).get("block")}


@functools.cache
def legacy_names(cls) -> dict[str, str]:
    """Old top-level name -> ``block.field`` for every block of ``cls``."""
    return {old: f"{name}.{new}" for name, f in blocks(cls).items() for old, new in f.metadata["legacy"].items()}


_NOTED: set[str] = set()


def _note_legacy(old: str, new: str) -> None:
    if old not in _NOTED:  # once per name and process: a preset or a long sweep must not repeat it
        _NOTED.add(old)
        print(f"frugalign: note: setting {old!r} is now {new!r}; the old name still works", file=sys.stderr)


def _block_values(name: str, value: Any) -> dict:
    """A whole block given at once: a mapping (YAML, Python), its YAML text or an instance."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    value = _mapping(value)
    if not isinstance(value, dict):
        raise ConfigError(f"setting {name}={value!r}: expected a mapping of its settings, e.g. {name}.NAME=VALUE")
    return value


def normalize(cls, values: dict, into: dict | None = None, *, note: bool = True) -> dict:
    """``values`` with every key a top-level or ``block.field`` name: block mappings spread, old names renamed
    (``note``: with a one-line note, for settings a person wrote)."""
    into = {} if into is None else into
    nested, legacy = blocks(cls), legacy_names(cls)
    for key, value in values.items():
        if key in nested:
            for sub, v in _block_values(key, value).items():
                into[f"{key}.{sub}"] = v
        elif key in legacy:
            if note:
                _note_legacy(key, legacy[key])
            into[legacy[key]] = value
        else:
            into[key] = value
    return into


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _assemble(cls, values: dict, base=None):
    """An instance of ``cls`` (or ``base`` updated) from normalized ``values``, each converted to its type."""
    nested = blocks(cls)
    top: dict[str, Any] = {}
    inner: dict[str, dict] = {}
    for key, value in values.items():
        head, dot, sub = key.partition(".")
        if not dot:
            top[key] = coerce(cls, key, value)
        elif head in nested:
            inner.setdefault(head, {})[sub] = coerce(nested[head].metadata["block"], sub, value, prefix=head + ".")
        else:
            coerce(cls, head, None)  # the unknown-setting error
            raise ConfigError(f"setting {key!r}: {head!r} has no nested settings")
    for head, sub in inner.items():
        start = getattr(base, head) if base is not None else _default(nested[head])
        top[head] = dataclasses.replace(start, **sub)
    if base is not None:
        return dataclasses.replace(base, **top)
    try:
        return cls(**top)
    except TypeError as e:
        raise ConfigError(f"missing setting: {e}") from None


def updated(cfg: C, values: dict) -> C:
    """``cfg`` with ``values`` applied (any name :func:`build_config` takes), as a new instance."""
    return _assemble(type(cfg), normalize(type(cfg), values), base=cfg)


def settle_blocks(obj) -> None:
    """For ``__post_init__``: a block given as a mapping (Python callers, ``asdict`` round trips) becomes the block."""
    for name, f in blocks(type(obj)).items():
        value = getattr(obj, name)
        if isinstance(value, dict):
            values = normalize(f.metadata["block"], value)
            setattr(obj, name, _assemble(f.metadata["block"], values, base=_default(f)))


def flat_settings(cfg, *, legacy: bool = False) -> dict:
    """Every setting of ``cfg`` by its command-line name, a block's fields as ``block.field``.

    ``legacy``: a block field that was once a top-level setting goes by that old
    name, as stage keys and committed study summaries know it.
    """
    old = {new: o for o, new in legacy_names(type(cfg)).items()} if legacy else {}
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name not in blocks(type(cfg)):
            out[f.name] = value
            continue
        for sub in dataclasses.fields(value):
            name = f"{f.name}.{sub.name}"
            out[old.get(name, name)] = getattr(value, sub.name)
    return out


# ---------------------------------------------------------------- files, presets, the command line


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


def _flag(parser, name: str, f: dataclasses.Field, default) -> None:
    doc = (f.metadata or {}).get("help", "")
    parser.add_argument(f"--{name.replace('_', '-')}", dest=f"cfg__{name}", default=None, metavar="V",
                        help=f"{doc} (default: {default})".strip())


def add_config_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """Expose each field of ``cls`` as ``--name`` (a block's as ``--block.name``) plus ``--config`` and ``key=value``."""
    parser.add_argument("--config", help="YAML file of settings (same names as below)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="override any setting, e.g. max_new_tokens=64")
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        if f.name not in blocks(cls):
            _flag(parser, f.name, f, _default(f))
            continue
        inner, group = _default(f), parser.add_argument_group(f"{f.name}.* settings", f.metadata.get("help"))
        for sub in dataclasses.fields(inner):
            _flag(group, f"{f.name}.{sub.name}", sub, getattr(inner, sub.name))
    for old in legacy_names(cls):  # the old flat flags keep working, unlisted
        parser.add_argument(f"--{old.replace('_', '-')}", dest=f"cfg__{old}", default=None, help=argparse.SUPPRESS)


def _sources(args: argparse.Namespace) -> list[dict]:
    """The settings ``args`` carries, lowest precedence first: YAML files and presets, --flags, key=value."""
    files, pairs = [args.config] if getattr(args, "config", None) else [], {}
    for item in getattr(args, "overrides", None) or []:
        if "=" in item:
            key, value = item.split("=", 1)
            pairs[key.strip().replace("-", "_")] = value
        elif item.endswith((".yaml", ".yml")):
            files.append(item)  # `frugalign run CONFIG.yaml key=value ...`
        elif item in preset_names():
            files.append(preset_path(item))  # `frugalign run recipe-frugal key=value ...`
        else:
            raise ConfigError(f"expected key=value, a .yaml file or a preset ({', '.join(preset_names())}), "
                              f"got {item!r}")
    flags = {key[5:]: value for key, value in vars(args).items() if key.startswith("cfg__") and value is not None}
    return [load_yaml(path) for path in files] + [flags, pairs]


def build_config(cls: type[C], args: argparse.Namespace | None = None, *, preset: dict | None = None,
                 **values) -> C:
    """Defaults < ``preset`` < YAML files and preset names (in order) < flags < ``key=value`` < ``values``."""
    merged: dict[str, Any] = {}
    for source in [preset or {}, *(_sources(args) if args is not None else []), values]:
        normalize(cls, source, merged)  # per source, so a later `train.lr` beats an earlier `train: {lr: ...}`
    cfg = _assemble(cls, merged)
    check = getattr(cfg, "validate", None)
    if callable(check):
        check()
    return cfg
