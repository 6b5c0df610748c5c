"""Typed, checked settings: one dataclass field per option, the CLI generated from it.

A settings dataclass (a model's config, `TrainConfig`, `FacetObjectives`, `EvalOptions`) declares
each field with `option(default, help, ...)`: its documentation, its command-line spelling and its
allowed range live in one place. `check(obj)` (called from `__post_init__`) refuses a value of the
wrong type or out of range with a one-line `ConfigError` naming the field, its option and what to
pass instead, so a bad `--heads 0` and a checkpoint's `"n_heads": 2.0` fail the same way, before
anything is built. `add_options` writes the argparse options; `from_args` reads them back.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import typing
from typing import Any, Callable

from .errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def option(default: Any = dataclasses.MISSING, help: str = "", *, cli: str | None | bool = True,
           min: float | None = None, max: float | None = None, min_exclusive: bool = False,
           max_exclusive: bool = False, choices: tuple | None = None, pattern: re.Pattern | None = None,
           expect: str | None = None, factory: Callable | None = None, aliases: tuple[str, ...] = (),
           hidden_aliases: tuple[str, ...] = ()) -> Any:
    """A dataclass field with its documentation and checks.

    cli: True = `--field-name`, a string = that flag, False/None = not a command-line option.
    min/max: the allowed range (inclusive unless *_exclusive); choices: allowed values; pattern: a
    regular expression a string must match; expect: how to say what to pass, for the error.
    """
    meta = dict(help=help, cli=cli, min=min, max=max, min_exclusive=min_exclusive, max_exclusive=max_exclusive,
                choices=choices, pattern=pattern, expect=expect, aliases=aliases, hidden_aliases=hidden_aliases)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag(f: dataclasses.Field) -> str | None:
    cli = f.metadata.get("cli", True)
    if cli is True:
        return "--" + f.name.replace("_", "-")
    return cli or None


def _label(f: dataclasses.Field) -> str:
    fl = flag(f)
    return f"{f.name} ({fl})" if fl and fl != "--" + f.name.replace("_", "-") else (fl or f.name)


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _base_type(hint) -> tuple[type, bool]:
    """(the scalar type, whether None is allowed) of a field's annotation."""
    args = typing.get_args(hint)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return _base_type(rest[0])[0], True
    origin = typing.get_origin(hint)
    return (origin or hint), False


def _num(x) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) >= 10_000 else f"{x:g}"


def _range_text(m: dict) -> str:
    if m["min"] is not None and m["max"] is not None and not m["min_exclusive"] and not m["max_exclusive"]:
        return f"from {_num(m['min'])} to {_num(m['max'])}"
    parts = []
    if m["min"] is not None:
        parts.append(f"{'>' if m['min_exclusive'] else '>='} {_num(m['min'])}")
    if m["max"] is not None:
        parts.append(f"{'<' if m['max_exclusive'] else '<='} {_num(m['max'])}")
    return " and ".join(parts)


def check(obj) -> None:
    """Refuse any field of `obj` whose value has the wrong type or lies out of its range."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        value = getattr(obj, f.name)
        kind, nullable = _base_type(hints[f.name])
        m = f.metadata
        if not m:
            continue
        where = _label(f)
        if value is None:
            if nullable:
                continue
            raise ConfigError(f"{where} must be given, got null; pass {m.get('expect') or _what(kind, m)}")
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where} must be a whole number, got {value!r}; pass {_what(kind, m)}")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{where} must be a finite number, got {value!r}; pass {_what(kind, m)}")
        elif kind is str:
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, got {value!r}; pass {m.get('expect') or 'text'}")
        elif kind is tuple:
            if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"{where} must be a list of names, got {value!r}; pass e.g. genre,actor")
        if kind in (int, float) and not _in_range(value, m):
            raise ConfigError(f"{where} must be {_range_text(m)}, got {value!r}; pass {_what(kind, m)}")
        if m.get("choices") is not None and value not in m["choices"]:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, m['choices']))}, got {value!r}")
        if m.get("pattern") is not None and not m["pattern"].match(value):
            raise ConfigError(f"{where}: unknown value {value!r}; pass {m.get('expect') or m['pattern'].pattern}")


def _in_range(value, m: dict) -> bool:
    lo, hi = m.get("min"), m.get("max")
    if lo is not None and (value <= lo if m.get("min_exclusive") else value < lo):
        return False
    if hi is not None and (value >= hi if m.get("max_exclusive") else value > hi):
        return False
    return True


def _what(kind, m: dict) -> str:
    if m.get("expect"):
        return m["expect"]
    noun = "a whole number" if kind is int else "a number"
    rng = _range_text(m)
    return f"{noun} {rng}" if rng else noun


def from_dict(cls, record, where: str):
    """An instance of `cls` from a JSON object; unknown keys and bad values refused in one line."""
    if not isinstance(record, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(record).__name__}")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(record) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(names))})")
    return cls(**record)


# ---- the command line -----------------------------------------------------------------------------

def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_options(parser, cls, skip: tuple[str, ...] = (), note: Callable[[str], str] | None = None,
                seen: set | None = None, only: tuple[str, ...] | None = None) -> None:
    """One argparse option per field of `cls` that has a command-line spelling; defaults stay
    the dataclass's (absent options are left out of the namespace)."""
    hints = _hints(cls)
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else None) for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        fl = flag(f)
        if not fl or f.name in skip or (only is not None and f.name not in only) or (seen is not None and f.name in seen):
            continue
        if seen is not None:
            seen.add(f.name)
        kind, _ = _base_type(hints[f.name])
        m = f.metadata
        text = m.get("help", "") + (note(f.name) if note else "")
        default = defaults[f.name]
        names = [fl, *m.get("aliases", ())]
        if kind is bool:
            if default:
                parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                                    default=argparse.SUPPRESS, help=f"{text} (default: on)")
            else:
                parser.add_argument(*names, dest=f.name, action="store_true", default=argparse.SUPPRESS, help=text)
            for alias in m.get("hidden_aliases", ()):
                parser.add_argument(alias, dest=f.name, action="store_false" if default else "store_true",
                                    default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            continue
        conv = {int: int, float: float, str: str, tuple: _parse_names}.get(kind, str)
        shown = ",".join(default) if isinstance(default, tuple) else default
        suffix = f" (default {shown})" if shown not in (None, "", ()) else ""
        parser.add_argument(*names, dest=f.name, type=conv, default=argparse.SUPPRESS, choices=m.get("choices"),
                            metavar=f.name.upper() if not m.get("choices") else None, help=text + suffix)


def given(namespace, cls) -> dict:
    """The fields of `cls` that were given on the command line."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return {k: v for k, v in vars(namespace).items() if k in names}


def from_args(cls, namespace, **fixed):
    """An instance of `cls` from the options given (dataclass defaults for the rest)."""
    return cls(**{**given(namespace, cls), **fixed})


__all__ = ["option", "check", "from_dict", "add_options", "from_args", "given", "DEVICE_PATTERN"]
