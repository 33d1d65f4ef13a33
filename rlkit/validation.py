"""Turn plain data (parsed YAML) into typed dataclasses, with errors that name the key path.

Hyperparameter dataclasses declare their fields with ordinary type hints; ranges are declared
with :func:`param`::

    @dataclass(kw_only=True)
    class MyConfig:
        gamma: float = param(0.99, ge=0.0, le=1.0)
        '''Discount factor.'''

Supported annotations: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``,
unions of the above and of dataclasses, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]``,
``Any``, nested dataclasses, and types that validate themselves through a
``__config_coerce__(value, path)`` class method (and give their plain data back through
``__config_data__()``), such as :class:`rlkit.components.BackboneChoice`.

Every ``int`` must fit in 64 bits (``-2**63 .. 2**63 - 1``); an integral number written in
scientific notation (``1e5``, which YAML 1.1 reads as a string, or ``1.0e+5``, a float) is
accepted for an ``int``. A ``float`` must be finite. A range given with :func:`param` applies to
a number and to every value of a schedule (its ``start`` and ``end``). Values quoted in errors
are cut to about 80 characters.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import reprlib
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")

_MISSING = dataclasses.MISSING

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
QUOTE_LIMIT = 80
"""Values quoted in error messages are cut to about this many characters."""


class ConfigError(ValueError):
    """A configuration problem; the message names the key path and what is expected.

    :param message: the whole message, starting with the key path where there is one.
    :param key: the key path the problem is at (``algorithm.optimizer.lr``), when known, so
        that a caller can tell which setting (a file's or a ``--set``'s) caused it.
    :param source: the file (or ``--set``) the message already names, when it names one.
    """

    def __init__(self, message: str, *, key: str | None = None,
                 source: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.source = source


class IncompatibleError(ConfigError):
    """A valid setting that does not fit what it is used with (``dqn`` on a Box action space).

    Raised by an algorithm's or backbone's build function. The alternatives it names are
    filtered to the installed ones by :meth:`for_installed` before the message reaches a user.

    :param key: the key path of the setting, e.g. ``algorithm.name``.
    :param problem: what does not fit, as a sentence without the key path.
    :param alternatives: registered names that would fit, best first.
    :param kind: what the alternatives are (``algorithm``), for the message.
    :param installed: the names installed (``None``: not known yet, all alternatives named).
    """

    def __init__(self, key: str, problem: str, *, alternatives: Sequence[str] = (),
                 kind: str = "algorithm", installed: Collection[str] | None = None) -> None:
        self.problem = problem
        self.alternatives = tuple(alternatives)
        self.kind = kind
        self.installed = None if installed is None else frozenset(installed)
        super().__init__(f"{key}: {problem}{self._advice()}", key=key)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, although __init__ differs
        rebuild = functools.partial(IncompatibleError, alternatives=self.alternatives,
                                    kind=self.kind, installed=self.installed)
        return rebuild, (self.key or "", self.problem)

    def for_installed(self, installed: Collection[str]) -> IncompatibleError:
        """The same error, naming only the alternatives in ``installed``."""
        return IncompatibleError(self.key or "", self.problem, alternatives=self.alternatives,
                                 kind=self.kind, installed=installed)

    def _advice(self) -> str:
        if not self.alternatives:
            return "."
        names = [a for a in self.alternatives if self.installed is None or a in self.installed]
        if names:
            return f"; try {' or '.join(names)} instead."
        return (f"; none of the {self.kind}s that would fit ({', '.join(self.alternatives)}) "
                f"is installed (`rlkit plugins` lists what is).")


def in_context(exc: ConfigError, *, key: str,
               installed: Collection[str] | None = None) -> ConfigError:
    """``exc``, raised while building from a validated config, made to read like a validation
    error: with a key path (``key`` unless it names its own) and its alternatives filtered to
    ``installed``. An error that already names its source is returned as it is."""
    if exc.source is not None:
        return exc
    if isinstance(exc, IncompatibleError) and installed is not None:
        exc = exc.for_installed(installed)
    if exc.key is not None:
        return exc
    return ConfigError(f"{key}: {exc}", key=key)


def param(
    default: Any = _MISSING,
    *,
    default_factory: Any = _MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    from_bool: tuple[Any, Any] | None = None,
) -> Any:
    """A dataclass field with a range check applied when the config is validated.

    :param from_bool: ``(value for false, value for true)``: what a YAML boolean given for
        this key means (``nan_check: off`` reads as ``false`` in YAML 1.1).
    """
    meta: dict[str, Any] = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt}.items()
                            if v is not None}
    if from_bool is not None:
        meta["from_bool"] = from_bool
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def from_data(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (a mapping), checking every key and value."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise _error(path, f"expected a mapping of {_type_name(cls)} settings, "
                           f"got {describe(data)}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = key_text(unknown[0])
        hint = hint_for(key, list(fields)) or _hint_elsewhere(key, cls, path)
        valid = ", ".join(fields)
        raise _error(_join(path, key), f"unknown key.{hint} Valid keys here: {valid}.")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in data:
            value = data[name]
            from_bool = f.metadata.get("from_bool")
            if from_bool is not None and isinstance(value, bool):
                value = from_bool[1] if value else from_bool[0]
            value = coerce(hints[name], value, key_path)
            _check_range(value, f.metadata, key_path)
            kwargs[name] = value
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise _error(key_path, f"required key is missing ({_type_name(hints[name])}).")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ checks across fields
        raise _error(path, cut(str(exc), 400)) from None


def _hint_elsewhere(word: str, cls: type, path: str) -> str:
    """`` Did you mean algorithm.optimizer.lr?`` where the key exists one level further in."""
    for where, fields in _nested_fields(cls, path):
        exact = [f for f in fields if f == word]
        best = exact[0] if exact else suggest(word, fields)
        if best:
            return f" Did you mean {_join(where, best)}?"
    return ""


def _nested_fields(cls: type, path: str, depth: int = 2) -> list[tuple[str, list[str]]]:
    """``(key path, field names)`` of the dataclasses nested in ``cls``, nearest first."""
    found: list[tuple[str, list[str]]] = []
    if depth == 0:
        return found
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        tp = hints.get(f.name)
        candidates = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) \
            else (tp,)
        for sub in candidates:
            if (dataclasses.is_dataclass(sub) and isinstance(sub, type)
                    and not getattr(sub, "ranged_values", None)):  # not a schedule's keys
                found.append((_join(path, f.name), [g.name for g in dataclasses.fields(sub)]))
    for where, _ in list(found):
        sub_cls = _field_dataclass(cls, where.rsplit(".", 1)[-1])
        if sub_cls is not None:
            found.extend(_nested_fields(sub_cls, where, depth - 1))
    return found


def _field_dataclass(cls: type, name: str) -> type | None:
    tp = typing.get_type_hints(cls).get(name)
    for sub in (typing.get_args(tp) or (tp,)):
        if dataclasses.is_dataclass(sub) and isinstance(sub, type):
            return sub
    return None


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
    if not word or len(word) > 100:  # nobody misspells a name into a paragraph
        return None
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
        return _coerce_literal(args, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _error(path, f"expected a list, got {describe(value)}.")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _error(path, f"expected a list of {len(args)} items, got {len(value)}.")
            return tuple(coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _error(path, f"expected a mapping, got {describe(value)}.")
        vt = args[1] if len(args) == 2 else Any
        return {key_text(k): coerce(vt, v, _join(path, key_text(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_data(tp, value, path)
    custom = getattr(tp, "__config_coerce__", None)
    if custom is not None:  # a type that validates itself (rlkit.components.BackboneChoice)
        return custom(value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _error(path, f"expected true or false, got {describe(value)}.")
    if tp is int:
        return _coerce_int(value, path)
    if tp is float:
        return _coerce_float(value, path)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _error(path, f"expected a string, got {describe(value)}.")
    if tp is type(None):
        if value is None:
            return None
        raise _error(path, f"expected null, got {describe(value)}.")
    raise _error(path, f"unsupported annotation {tp!r} in the config dataclass.")


_NUMBER = re.compile(r"[+-]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?")
"""A decimal number as YAML 1.1 leaves it a string: ``1e5``, ``3e-4``, ``1.5e3``."""


def _coerce_int(value: Any, path: str) -> int:
    """An ``int`` within 64 bits from an int, an integral float or a ``1e5``-style string."""
    if isinstance(value, bool):
        raise _error(path, f"expected an integer, got {describe(value)}.")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _error(path, f"{value!r} is not an integer; give a whole number.")
        if not value.is_integer():
            raise _error(path, f"expected an integer, got {value!r}, which is not a whole "
                               f"number.")
        number = int(value)  # YAML's 1.0e+5 is a float
    elif isinstance(value, str) and len(value) <= 100 and _NUMBER.fullmatch(value.strip()):
        # YAML 1.1 reads 1e5 (no dot, no exponent sign) as a string
        exact = _decimal(value)
        if exact is None:
            raise _error(path, f"expected an integer, got {describe(value)}.")
        if exact.adjusted() > 18:
            raise _out_of_int64(path, value)
        if exact != exact.to_integral_value():
            raise _error(path, f"expected an integer, got {quote(value)}, which is "
                               f"{_plain(exact)}, not a whole number.")
        number = int(exact)
    else:
        raise _error(path, f"expected an integer, got {describe(value)}.")
    if not INT64_MIN <= number <= INT64_MAX:
        raise _out_of_int64(path, number)
    return number


def _coerce_float(value: Any, path: str) -> float:
    """A finite ``float`` from a number or a ``3e-4``-style string."""
    if isinstance(value, bool):
        raise _error(path, f"expected a number, got {describe(value)}.")
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise _error(path, f"{quote(value)} is too large for a floating-point "
                               f"number.") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _error(path, f"{value!r} is not a finite number; give a finite value.")
        return value
    if isinstance(value, str) and len(value) <= 100 and _NUMBER.fullmatch(value.strip()):
        # YAML 1.1 reads 3e-4 (no dot) as a string
        number = float(value.replace("_", ""))
        if not math.isfinite(number):
            raise _error(path, f"{quote(value)} is too large for a floating-point number.")
        return number
    raise _error(path, f"expected a number, got {describe(value)}.")


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.strip().replace("_", ""))
    except InvalidOperation:
        return None


def _plain(number: Decimal) -> str:
    return format(number, "f") if abs(number.adjusted()) < 30 else str(number)


def _out_of_int64(path: str, value: Any) -> ConfigError:
    return _error(path, f"{quote(value)} is out of range; integers must fit in 64 bits "
                        f"({INT64_MIN:,} to {INT64_MAX:,}).")


def _coerce_literal(args: tuple[Any, ...], value: Any, path: str) -> Any:
    choices = ", ".join(repr(a) for a in args)
    if isinstance(value, bool) and value not in args:
        # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans
        raise _error(path, f"YAML read the unquoted value as the boolean {str(value).lower()} "
                           f"(it does so for yes, no, on, off, true and false); quote it, e.g. "
                           f"{path.rsplit('.', 1)[-1]}: {_quoted_example(args)}. Expected one "
                           f"of: {choices}.")
    if isinstance(value, (str, int, float, type(None))) and value in args:
        return value
    hint = hint_for(value, [str(a) for a in args]) if isinstance(value, str) else ""
    raise _error(path, f"{quote(value)} is not allowed.{hint} Expected one of: {choices}.")


def _quoted_example(args: tuple[Any, ...]) -> str:
    words = [a for a in args if isinstance(a, str)]
    return f"'{words[0]}'" if words else "'...'"


def _coerce_union(args: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None:
        if type(None) in args:
            return None
        raise _error(path, f"a value is required (expected {_union_name(args)}).")
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
    scalar_errors = [e for e in errors if not str(e).startswith(f"{path}: expected ")]
    if scalar_errors:  # e.g. "1.5e3 ... not a whole number", "out of range": more specific
        raise scalar_errors[0]
    raise _error(path, f"expected {_union_name(args)}, got {describe(value)}.")


_CHECKS: dict[str, tuple[Any, str]] = {
    "ge": (lambda v, b: v >= b, ">="),
    "gt": (lambda v, b: v > b, ">"),
    "le": (lambda v, b: v <= b, "<="),
    "lt": (lambda v, b: v < b, "<"),
}


def _check_range(value: Any, meta: Mapping[str, Any], path: str) -> None:
    """Apply ``param``'s range to a number, or to each value of a schedule (start, end)."""
    if not meta:
        return
    ranged = getattr(value, "ranged_values", None)
    if callable(ranged):
        for name, v in ranged().items():
            _check_range(v, meta, _join(path, name))
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    for key, (ok, symbol) in _CHECKS.items():
        if key in meta and not ok(value, meta[key]):
            raise _error(path, f"{quote(value)} is out of range; expected a value "
                               f"{symbol} {meta[key]}.")


def to_data(obj: Any) -> Any:
    """The inverse of :func:`from_data`: dataclasses to plain YAML-safe data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    custom = getattr(obj, "__config_data__", None)
    if custom is not None and not isinstance(obj, type):
        return custom()
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


def _error(path: str, text: str) -> ConfigError:
    """``path: text`` as a :class:`ConfigError` that knows its key path."""
    return ConfigError(f"{_where(path)}: {text}", key=path or None)


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4
_REPR.maxstring = _REPR.maxother = QUOTE_LIMIT
_REPR.maxlong = 40


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters, in bounded time for any value
    (a deeply shared YAML alias bomb, a 10 MB string, an integer of a million digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}<an integer of about {digits:,} digits>"
    if isinstance(value, str):
        return cut(repr(value[: limit + 1]), limit)
    try:
        text = _REPR.repr(value)
    except Exception:  # a broken __repr__ must not hide the config error
        text = f"<{type(value).__name__}>"
    return cut(text, limit)


def cut(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, ending in ``...`` where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> str:
    """``type value`` for messages, e.g. ``str '1e5'``, cut short like :func:`quote`."""
    if value is None:
        return "null"
    return f"{type(value).__name__} {quote(value)}"


def key_text(key: Any) -> str:
    """A mapping key as it appears in a key path, cut short like :func:`quote`."""
    return cut(key) if isinstance(key, str) else quote(key)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _union_name(args: tuple[Any, ...]) -> str:
    return " or ".join(_type_name(a) for a in args if a is not type(None))
