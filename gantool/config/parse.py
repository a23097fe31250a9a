"""From text to a checked configuration: config files, ``key=value`` overrides, stored
configurations, and the coercion of strings (and YAML/JSON values) to each option's declared
type."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from gantool.config.checks import validate, validate_model
from gantool.config.schema import SECTIONS, ModelConfig, RunConfig, all_keys
from gantool.errors import ConfigError


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML config file into flat ``section.field`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the user's file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot parse config file {path}: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options")
    return flatten(data)


def parse_set_options(items: list[str]) -> dict[str, str]:
    """Parse ``key=value`` items (what ``gantool train --set`` takes) into overrides."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {item!r} (e.g. train.lr_g=1e-4)")
        out[key.strip()] = value.strip()
    return out


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return ``cfg`` with ``{"section.field" or "field": value}`` applied and validated.

    String values (from the command line) are parsed to the field's type.
    """
    sections = {s: dataclasses.asdict(getattr(cfg, s)) for s in SECTIONS}
    name = cfg.name
    for key, value in overrides.items():
        if key == "name":
            name = str(value)
            continue
        section, fname = resolve_key(key)
        ftype = _field_types(SECTIONS[section])[fname]
        sections[section][fname] = _coerce(value, ftype, key)
    given = {resolve_key(k) for k in overrides if k != "name"}
    if (("model", "d_arch") in given and sections["model"]["d_arch"] == "fastgan"
            and ("train", "loss") not in given and sections["train"]["loss"] == "bce"):
        sections["train"]["loss"] = "hinge"  # the loss a fastgan D is made for, unless named
    table = sections["train"]["batch_sizes"]
    if table and ("train", "batch_size") not in given:
        sections["train"]["batch_size"] = batch_for(table, sections["model"]["resolution"])
    try:
        new = RunConfig(name=name, **{s: SECTIONS[s](**v) for s, v in sections.items()})
    except TypeError as e:
        raise ConfigError(str(e)) from None
    validate(new)
    return new


def run_config(stored: dict[str, Any]) -> RunConfig:
    """The RunConfig of a stored configuration (config.json, a checkpoint's), sections nested
    or keys flat, read and checked as overrides of the defaults."""
    return apply_overrides(RunConfig(), flatten(stored))


def batch_for(table: dict[int, int], resolution: int) -> int:
    """The batch size a resolution -> batch table gives: the entry at the nearest listed
    resolution at or above ``resolution``, or the largest listed one's past the end."""
    above = [r for r in sorted(table) if r >= resolution]
    return table[above[0] if above else max(table)]


def model_config(stored: dict[str, Any]) -> ModelConfig:
    """The ``model`` section of a stored configuration (a checkpoint's), read and checked on its
    own: drawing from a checkpoint does not depend on the training options of the version
    that wrote it. ConfigError for a missing section or an unknown or bad model field."""
    section = stored.get("model") if isinstance(stored, dict) else None
    if not isinstance(section, dict):
        raise ConfigError("the configuration has no model section")
    types_ = _field_types(ModelConfig)
    for key in section:
        if key not in types_:
            raise ConfigError(f"unknown option 'model.{key}' (a newer gantool's model?)")
    m = ModelConfig(**{k: _coerce(v, types_[k], f"model.{k}") for k, v in section.items()})
    validate_model(m)
    return m


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr_g": 1}}`` -> ``{"train.lr_g": 1}``; other keys as they are."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k in SECTIONS and not prefix:
            out.update(flatten(v, f"{k}."))
        else:
            out[key] = v
    return out


def resolve_key(key: str) -> tuple[str, str]:
    """``"train.lr_g"`` or ``"lr_g"`` -> ``("train", "lr_g")``; ConfigError with the nearest
    key for an unknown one."""
    if "." in key:
        section, _, fname = key.partition(".")
        if section in SECTIONS and fname in _field_types(SECTIONS[section]):
            return section, fname
    else:
        owners = [s for s, c in SECTIONS.items() if key in _field_types(c)]
        if len(owners) == 1:
            return owners[0], key
    bare = {k.partition(".")[2]: k for k in all_keys()}
    close = difflib.get_close_matches(key.rpartition(".")[2], list(bare), n=1)
    hint = f" (did you mean {bare[close[0]]!r}?)" if close else ""
    raise ConfigError(f"unknown option {key!r}{hint}; options are section.field, e.g. train.lr_g")


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, ftype: Any, key: str) -> Any:
    """Convert ``value`` (possibly a CLI string) to ``ftype``."""
    origin = typing.get_origin(ftype)
    args = typing.get_args(ftype)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    try:
        if origin is dict:  # "192:128,1024:6" or a mapping; keys and values are ints here
            pairs = ([p.split(":") for p in value.split(",") if p.strip()]
                     if isinstance(value, str) else list(dict(value).items()))
            if any(len(p) != 2 for p in pairs):
                raise ValueError("expected resolution:batch pairs, e.g. 192:128,1024:6")
            return {_coerce(k, args[0], key): _coerce(v, args[1], key) for k, v in pairs}
        if origin is tuple and args[-1] is Ellipsis:  # names: a list, or "a,b,c" ("" none)
            items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
            return tuple(_coerce(v, args[0], key) for v in items)
        if origin is tuple:
            items = value.replace("(", "").replace(")", "").split(",") if isinstance(
                value, str) else list(value)
            if len(items) != len(args):
                raise ValueError(f"expected {len(args)} comma-separated values")
            return tuple(_coerce(v, a, key) for v, a in zip(items, args))
        if ftype is dict:  # a free-form mapping (an imported generator's hyper-parameters)
            if not isinstance(value, dict):
                raise ValueError("expected a mapping")
            return dict(value)
        return _scalar(value, ftype)
    except (ValueError, TypeError, OverflowError) as e:
        raise ConfigError(f"bad value {value!r} for {key}: {e}") from None


def _scalar(value: Any, ftype: type) -> Any:
    """``value`` as a bool, int, float or str; ValueError says what was expected."""
    if ftype is bool:
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if isinstance(value, bool) or isinstance(value, (dict, list)):  # YAML `steps: true`
        raise ValueError(f"expected {'text' if ftype is str else 'a number'}")
    if ftype is int:
        text = str(value).replace("_", "")
        if not (text.isascii() and text.lstrip("+-").isdigit()) and not (
                isinstance(value, float) and value.is_integer()):
            raise ValueError("expected an integer")
        return int(value) if isinstance(value, float) else int(text)
    if ftype is float:
        if isinstance(value, str) and not value.isascii():  # float() reads any script's digits
            raise ValueError("expected a number in digits 0-9")
        number = float(value)
        if not math.isfinite(number):  # nan would pass every range check below
            raise ValueError("expected a finite number")
        return number
    return str(value)
