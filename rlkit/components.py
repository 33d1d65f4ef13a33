"""Components named inside other components' hyperparameters.

A recurrent backbone runs on top of a feed-forward one, which the experiment file names like
any backbone, one level down::

    backbone: {name: lstm, hidden_size: 128, encoder: {name: cnn, channels: [16]}}

A hyperparameter field annotated :class:`BackboneChoice` takes such a mapping. While an
experiment is validated (:func:`rlkit.config.resolve`) the plugin session's backbones are in
reach through :func:`backbone_lookup`, so the nested name is checked against what is
installed and its parameters against that backbone's own dataclass, with errors that name the
full key path (``backbone.encoder.channels: ...``). Torch-free: validation never imports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from rlkit.validation import ConfigError, describe, from_data, hint_for, quote, to_data

if TYPE_CHECKING:
    from rlkit.specs import BackboneSpec

__all__ = ["BackboneChoice", "backbone_lookup"]

_BACKBONES: ContextVar[Mapping[str, BackboneSpec] | None] = ContextVar("rlkit_backbones",
                                                                       default=None)


@contextlib.contextmanager
def backbone_lookup(backbones: Mapping[str, BackboneSpec]) -> Iterator[None]:
    """Make ``backbones`` (registered name -> spec) the table nested backbone names are looked
    up in, for the duration of the ``with`` block (one plugin session's, never a global)."""
    token = _BACKBONES.set(backbones)
    try:
        yield
    finally:
        _BACKBONES.reset(token)


class BackboneChoice:
    """A backbone named in another component's hyperparameters: its registered name, its
    validated parameters and how to build it.

    :param name: the registered backbone name (``mlp``, ``cnn``, a plugin's).
    :param params: its hyperparameter dataclass instance.
    :param spec: the registration that builds it.
    """

    def __init__(self, name: str, params: Any, spec: BackboneSpec) -> None:
        self.name = name
        self.params = params
        self.spec = spec

    def __repr__(self) -> str:
        return f"BackboneChoice(name={self.name!r}, params={self.params!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, BackboneChoice) and other.name == self.name
                and other.params == self.params)

    __hash__ = None  # type: ignore[assignment]

    def build(self, observation_space: Any) -> Any:
        """The backbone module for ``observation_space``."""
        return self.spec.build(self.params, observation_space)

    def __config_data__(self) -> dict[str, Any]:
        return {"name": self.name, **to_data(self.params)}

    @classmethod
    def __config_coerce__(cls, value: Any, path: str) -> BackboneChoice:
        table = _BACKBONES.get()
        if table is None:
            raise ConfigError(f"{path}: a nested backbone can only be validated as part of an "
                              f"experiment (rlkit.config.resolve), where the installed "
                              f"backbones are known.", key=path)
        if isinstance(value, str):
            value = {"name": value}
        names = sorted(table)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a backbone, a mapping with a 'name' key (one of "
                              f"{', '.join(names)}), got {describe(value)}.", key=path)
        name = value.get("name")
        if not isinstance(name, str):
            state = "is missing" if name is None else f"must be a string, got {describe(name)}"
            raise ConfigError(f"{path}.name: {state}; give one of: {', '.join(names)}.",
                              key=f"{path}.name")
        spec = table.get(name)
        if spec is None:
            raise ConfigError(f"{path}.name: unknown backbone {quote(name)}.{hint_for(name, names)}"
                              f" Available: {', '.join(names)}.", key=f"{path}.name")
        params: Any = from_data(spec.config, {k: v for k, v in value.items() if k != "name"}, path)
        return cls(spec.name, params, spec)
