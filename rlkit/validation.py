"""Turn plain data (parsed YAML) into typed dataclasses, with errors that name the key path.

Hyperparameter dataclasses declare their fields with ordinary type hints; ranges are declared
with :func:`param`::

    @dataclass(kw_only=True)
    class MyConfig:
        gamma: float = param(0.99, ge=0.0, le=1.0)
        '''Discount factor.'''

Supported annotations: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``,
unions of the above and of dataclasses, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``,
``Any`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")

_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """A configuration problem; the message names the key path and what is expected."""


def param(
    default: Any = _MISSING,
    *,
    default_factory: Any = _MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field with a range check applied when the config is validated."""
    meta = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt}.items() if v is not None}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def from_data(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (a mapping), checking every key and value."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(path)}: expected a mapping of {_type_name(cls)} settings, "
                          f"got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        hint = hint_for(str(key), list(fields))
        valid = ", ".join(fields)
        raise ConfigError(f"{_join(path, str(key))}: unknown key.{hint} Valid keys here: {valid}.")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in data:
            value = coerce(hints[name], data[name], key_path)
            _check_range(value, f.metadata, key_path)
            kwargs[name] = value
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(f"{key_path}: required key is missing ({_type_name(hints[name])}).")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ checks across fields
        raise ConfigError(f"{_where(path)}: {exc}") from None


_SYNONYMS = {
    "learning_rate": "lr", "lr": "learning_rate", "alpha": "learning_rate",
    "lambda": "gae_lambda", "lam": "gae_lambda", "epochs": "n_epochs",
    "clip_range": "clip_coef", "entropy_coef": "ent_coef", "value_coef": "vf_coef",
    "minibatch_size": "batch_size", "num_steps": "n_steps", "timesteps": "total_steps",
    "n_timesteps": "total_steps", "n_envs": "num_envs", "env_id": "id",
}
"""Names other libraries use for the same setting."""


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The valid name a user most likely meant: a prefix/abbreviation match first, then the
    closest spelling (``evaluation`` -> ``eval``, ``lerning_rate`` -> ``learning_rate``), then
    the name other libraries use (``learning_rate`` -> ``lr``, ``n_envs`` -> ``num_envs``)."""
    word_l = word.lower()
    prefix = [c for c in choices if len(c) >= 3 and (word_l.startswith(c.lower())
                                                     or c.lower().startswith(word_l))]
    if prefix:
        return max(prefix, key=len)
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return close[0]
    known = difflib.get_close_matches(word_l, list(_SYNONYMS), n=1, cutoff=0.8)
    if known and _SYNONYMS[known[0]] in choices:
        return _SYNONYMS[known[0]]
    return None


def hint_for(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` Did you mean 'x'?`` or an empty string."""
    best = suggest(word, choices)
    return f" Did you mean {best!r}?" if best else ""


def coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it converted (e.g. int -> float)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        return _coerce_union(args, value, path)
    if origin is Literal:
        if value in args:
            return value
        hint = hint_for(str(value), [str(a) for a in args])
        raise ConfigError(f"{path}: {value!r} is not allowed.{hint} Expected one of: "
                          f"{', '.join(repr(a) for a in args)}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}.")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected a list of {len(args)} items, "
                                  f"got {len(value)}.")
            return tuple(coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}.")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): coerce(vt, v, _join(path, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_data(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {_describe(value)}.")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)  # YAML's 1e5 is a float
        raise ConfigError(f"{path}: expected an integer, got {_describe(value)}.")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {_describe(value)}.")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {_describe(value)}.")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{path}: expected null, got {_describe(value)}.")
    raise ConfigError(f"{path}: unsupported annotation {tp!r} in the config dataclass.")


def _coerce_union(args: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{path}: a value is required (expected {_union_name(args)}).")
    errors = []
    # Scalars first so that 0.001 never tries to become a dataclass.
    ordered = sorted(args, key=lambda a: dataclasses.is_dataclass(a))
    for arg in ordered:
        if arg is type(None):
            continue
        if dataclasses.is_dataclass(arg) and not isinstance(value, Mapping):
            continue
        try:
            return coerce(arg, value, path)
        except ConfigError as exc:
            errors.append(exc)
    mapping_errors = [e for e in errors if isinstance(value, Mapping)]
    if mapping_errors:
        raise mapping_errors[-1]
    raise ConfigError(f"{path}: expected {_union_name(args)}, got {_describe(value)}.")


def _check_range(value: Any, meta: Mapping[str, Any], path: str) -> None:
    if not meta or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    checks = {
        "ge": (lambda v, b: v >= b, ">="),
        "gt": (lambda v, b: v > b, ">"),
        "le": (lambda v, b: v <= b, "<="),
        "lt": (lambda v, b: v < b, "<"),
    }
    for key, (ok, symbol) in checks.items():
        if key in meta and not ok(value, meta[key]):
            raise ConfigError(f"{path}: {value!r} is out of range; expected a value "
                              f"{symbol} {meta[key]}.")


def to_data(obj: Any) -> Any:
    """The inverse of :func:`from_data`: dataclasses to plain YAML-safe data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    return obj


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass's fields (for ``--help`` style listings).

    Base classes are read too, so a subclassed hyperparameter dataclass documents the fields it
    inherits; a subclass's docstring for a field replaces its base's.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object:
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings written in ``cls``'s own class body."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return docs
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _where(path: str) -> str:
    return path or "the config"


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _union_name(args: tuple[Any, ...]) -> str:
    return " or ".join(_type_name(a) for a in args if a is not type(None))
