"""Configuration dataclasses: one declaration gives a setting its default, help text and checks.

A config (:class:`agentq.eval.config.EvalConfig`, :class:`agentq.collect.CollectConfig`, ...)
is a dataclass whose fields are declared with :func:`option`. The command line builds its flags
from those fields (:func:`agentq.cli.config_command`, the way TRL's ``HfArgumentParser`` drives a
parser from dataclass fields with ``metadata={"help": ...}``), a ``--config`` TOML/JSON file
fills the same names (:func:`from_options`), and Python callers construct the dataclass
directly. All three meet the same checks: the config's ``__post_init__`` calls :func:`validate`
(bounds declared on the fields) and adds its own cross-field checks, raising
:class:`~agentq.errors.UserInputError` (one ``error:`` line and exit code 2 in the CLI).

A field may hold a nested config (:func:`nested`): its options are flattened into the parent's
(``EvalConfig.execution.workers`` is the ``--workers`` flag).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast, get_type_hints

from agentq.errors import UserInputError

_KEY = "agentq"
T = TypeVar("T")


def check_number(
    name: str, value: float, *, lo: float | None = None, hi: float | None = None
) -> None:
    """``UserInputError`` unless ``value`` is a finite number within ``[lo, hi]``.

    ``name`` is the option's name; the message names its flag (``max_steps`` -> ``--max-steps``).
    """
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserInputError(f"{flag} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise UserInputError(f"{flag} must be a finite number, not {value}")
    if lo is not None and value < lo:
        raise UserInputError(f"{flag} must be >= {lo}, not {value}")
    if hi is not None and value > hi:
        raise UserInputError(f"{flag} must be <= {hi}, not {value}")


def parse_key_values(options: Any) -> dict[str, Any]:
    """``key=value`` strings (values parsed as JSON when they can be) as a dict.

    A mapping is taken as it is (a TOML table in a config file, a dict from Python).
    """
    if isinstance(options, Mapping):
        return {str(k): v for k, v in options.items()}
    if isinstance(options, str):
        options = [options]
    out: dict[str, Any] = {}
    for item in options:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise UserInputError(f"environment option {item!r} is not key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_config_file(path: Path | None) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict (keys may use - or _)."""
    if path is None:
        return {}
    if not path.exists():
        raise UserInputError(f"config file not found: {path}")
    try:
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except Exception as e:  # malformed config: one line
        raise UserInputError(f"malformed config {path}: {e}") from e
    if not isinstance(data, dict):
        raise UserInputError(f"malformed config {path}: expected a table/object at the top")
    return {k.replace("-", "_"): v for k, v in data.items()}


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    name: str | None = None,
    flags: tuple[str, ...] = (),
    cli_type: Any = None,
    parse: Callable[[Any], Any] | None = None,
    cli_default: Any = dataclasses.MISSING,
    lo: float | None = None,
    hi: float | None = None,
    cli: bool = True,
    argument: bool = False,
    envvar: str | None = None,
) -> Any:
    """A config field: its default, help text and checks (``dataclasses.field`` underneath).

    ``name`` is the option's name on the command line and in config files (default: the
    field's); ``flags`` its flag declarations when they differ from ``--name``. ``cli_type`` is
    the type the command line parses when it differs from the field's (``list[str]`` of
    ``key=value`` for a dict field), ``cli_default`` its default there (default: the field's),
    and ``parse`` turns a command-line or config-file value into the field's value. ``lo``/``hi`` bound a number (each number of a list), checked by
    :func:`validate`. ``cli=False`` keeps a field out of the command line. A list or dict
    default is copied for each instance.
    """
    meta = {
        _KEY: {
            "help": help,
            "name": name,
            "flags": tuple(flags),
            "cli_type": cli_type,
            "parse": parse,
            "cli_default": cli_default,
            "lo": lo,
            "hi": hi,
            "cli": cli,
            "argument": argument,
            "envvar": envvar,
        }
    }
    if isinstance(default, list | dict):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def key_values_option(name: str, *, help: str) -> Any:
    """A ``dict`` field given as repeatable ``--name key=value`` flags (values parsed as JSON
    when they can be, :func:`parse_key_values`), or as a table in a config file."""
    return option(
        {},
        name=name,
        flags=("--" + name.replace("_", "-"),),
        cli_type=list[str],
        cli_default=[],
        parse=parse_key_values,
        help=help,
    )


def nested(factory: Callable[[], Any]) -> Any:
    """A field holding a nested config whose options are flattened into the parent's."""
    return dataclasses.field(default_factory=factory, metadata={_KEY: {"nested": True}})


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a config as the command line and config files see it."""

    name: str
    """Its name on the command line (``--name`` unless ``flags`` says otherwise) and in files."""
    path: tuple[str, ...]
    """Attribute path from the top config (``("execution", "workers")``)."""
    help: str
    flags: tuple[str, ...]
    type: Any
    """The type the command line parses."""
    default: Any
    """The default on the command line."""
    parse: Callable[[Any], Any] | None
    lo: float | None
    hi: float | None
    cli: bool
    argument: bool = False
    """A positional argument on the command line rather than a ``--flag``."""
    envvar: str | None = None
    """An environment variable the command line reads when the flag is not given."""


def options(cls: type) -> list[Option]:
    """The options of config class ``cls``, nested configs flattened, in field order."""
    return list(_options(cls, ()))


def _options(cls: type, prefix: tuple[str, ...]) -> Iterator[Option]:
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_KEY)
        if meta is None:
            continue
        if meta.get("nested"):
            yield from _options(hints[f.name], (*prefix, f.name))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = ...
        if meta["cli_default"] is not dataclasses.MISSING:
            default = meta["cli_default"]
        yield Option(
            name=meta["name"] or f.name,
            path=(*prefix, f.name),
            help=meta["help"],
            flags=meta["flags"],
            type=meta["cli_type"] if meta["cli_type"] is not None else hints[f.name],
            default=default,
            parse=meta["parse"],
            lo=meta["lo"],
            hi=meta["hi"],
            cli=meta["cli"],
            argument=meta.get("argument", False),
            envvar=meta.get("envvar"),
        )


def validate(config: Any) -> None:
    """Check every declared bound of ``config``'s own fields (nested configs check theirs)."""
    for f in dataclasses.fields(config):
        meta = f.metadata.get(_KEY)
        if not meta or meta.get("nested") or (meta["lo"] is None and meta["hi"] is None):
            continue
        value = getattr(config, f.name)
        name = meta["name"] or f.name
        for v in value if isinstance(value, list | tuple) else [value]:
            check_number(name, v, lo=meta["lo"], hi=meta["hi"])


def from_options(cls: type[T], values: Mapping[str, Any], *, source: str = "") -> T:
    """Build config ``cls`` from option names and values (command line, config file, keywords).

    Values pass through each option's ``parse``; a string for a ``Path`` option becomes a
    path. An unknown name is a :class:`UserInputError` (``source`` says where it came from).
    """
    known = {o.name: o for o in options(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        where = f" in {source}" if source else ""
        raise UserInputError(f"unknown option(s){where}: {', '.join(unknown)}")
    tree: dict[str, Any] = {}
    for name, value in values.items():
        o = known[name]
        if o.parse is not None:
            value = o.parse(value)
        elif isinstance(value, str) and o.type in (Path, Path | None):
            value = Path(value)
        node = tree
        for part in o.path[:-1]:
            node = node.setdefault(part, {})
        node[o.path[-1]] = value
    return _build(cls, tree)


def _build(cls: type[T], tree: dict[str, Any]) -> T:
    hints = get_type_hints(cls)
    kwargs = dict(tree)
    fields: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(cast(Any, cls))
    for f in fields:
        meta = f.metadata.get(_KEY) or {}
        if meta.get("nested") and isinstance(kwargs.get(f.name), dict):
            kwargs[f.name] = _build(hints[f.name], kwargs[f.name])
    return cls(**kwargs)


__all__ = [
    "Option",
    "check_number",
    "from_options",
    "key_values_option",
    "load_config_file",
    "nested",
    "option",
    "options",
    "parse_key_values",
    "validate",
]
