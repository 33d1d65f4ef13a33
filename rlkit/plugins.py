"""Finding plugins: one :class:`Plugins` session per run, loading the ``rlkit`` entry points.

There is no module-global plugin manager: rlkit is embedded in other programs and may run
several times in one process, so every run builds its own session::

    plugins = Plugins.load()
    spec = plugins.algorithm("ppo")

A plugin module may say which plugin API it is written for (``RLKIT_PLUGIN_API = "1.0"``);
one that needs another major, or a higher minor than :data:`rlkit.PLUGIN_API`, is reported and
skipped like a plugin that fails to import.

Environment variables:

``RLKIT_DISABLE_PLUGIN_AUTOLOAD=1``
    load only rlkit's own default plugins (and those named in ``RLKIT_PLUGINS``).
``RLKIT_PLUGINS=name,name``
    an allowlist: only entry points whose name (or distribution name) is listed are loaded,
    besides rlkit's own defaults. Names compare as PEP 503 normalises them, so
    ``rlkit_reinforce`` matches ``rlkit-reinforce``.
``RLKIT_TRACE_HOOKS=1``
    print every hook call and its result to stderr.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from rlkit import hookspecs
from rlkit.errors import PluginError
from rlkit.specs import AlgorithmSpec, BackboneSpec, ComponentSpec, ExplorationSpec, RunnerSpec
from rlkit.validation import hint_for

ENTRY_POINT_GROUP = "rlkit"
DEFAULT_DISTRIBUTION = "rlkit"
LOCAL = "<local>"
API_ATTRIBUTE = "RLKIT_PLUGIN_API"
"""The module attribute in which a plugin says which plugin API (``"major.minor"``) it needs."""


class UnknownNameError(KeyError):
    """A name (algorithm, backbone, ...) that no plugin registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


@dataclass(frozen=True)
class Provider:
    """Where a registration came from."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        if self.distribution == LOCAL:
            return f"plugin {self.plugin!r} (registered in code)"
        return f"{self.distribution} {self.version} (entry point {self.plugin!r})"


@dataclass(frozen=True)
class EnvEntry:
    """An environment id registered through ``register_envs``."""

    id: str
    description: str = ""


@dataclass(frozen=True)
class WrapperEntry:
    """A gymnasium wrapper a plugin vouches for through ``register_wrappers``.

    :param name: its ``"package.module:Class"`` reference (what ``env.wrappers`` names).
    """

    name: str
    description: str = ""


@dataclass(frozen=True)
class FailedPlugin:
    name: str
    distribution: str
    error: str


@dataclass
class Plugins:
    """A plugin session: a pluggy manager plus everything the plugins registered."""

    pm: pluggy.PluginManager
    algorithms: dict[str, tuple[AlgorithmSpec, Provider]] = field(default_factory=dict)
    backbones: dict[str, tuple[BackboneSpec, Provider]] = field(default_factory=dict)
    envs: dict[str, tuple[EnvEntry, Provider]] = field(default_factory=dict)
    wrappers: dict[str, tuple[WrapperEntry, Provider]] = field(default_factory=dict)
    exploration: dict[str, tuple[ExplorationSpec, Provider]] = field(default_factory=dict)
    runners: dict[str, tuple[RunnerSpec, Provider]] = field(default_factory=dict)
    failed: list[FailedPlugin] = field(default_factory=list)
    providers: dict[str, Provider] = field(default_factory=dict)

    # --- construction ------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        *,
        extra: Iterable[tuple[str, object]] = (),
        autoload: bool | None = None,
        allow: Iterable[str] | None = None,
    ) -> Plugins:
        """Build a session from the ``rlkit`` entry points plus ``extra`` (name, plugin) pairs.

        :param extra: plugins registered in code (tests, embedding programs).
        :param autoload: load third-party entry points; default from
            ``RLKIT_DISABLE_PLUGIN_AUTOLOAD``.
        :param allow: allowlist of entry-point or distribution names; default from
            ``RLKIT_PLUGINS``.
        """
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        if os.environ.get("RLKIT_TRACE_HOOKS"):
            pm.trace.root.setwriter(lambda msg: sys.stderr.write(f"[rlkit hooks] {msg}"))
            pm.enable_tracing()
        session = cls(pm=pm)
        if autoload is None:
            autoload = not _truthy(os.environ.get("RLKIT_DISABLE_PLUGIN_AUTOLOAD"))
        allow_source = "the allowlist passed to Plugins.load"
        if allow is None:
            env_allow = os.environ.get("RLKIT_PLUGINS")
            allow = [a.strip() for a in env_allow.split(",") if a.strip()] if env_allow else None
            allow_source = "RLKIT_PLUGINS"
        allowed = {_canonical(a): a for a in allow} if allow is not None else None
        entry_points = _entry_points()
        for ep in entry_points:
            dist = ep.dist.name if ep.dist is not None else LOCAL
            version = ep.dist.version if ep.dist is not None else ""
            is_default = _canonical(dist) == DEFAULT_DISTRIBUTION
            if not is_default:
                listed = allowed is not None and bool(_names_of(ep, dist) & allowed.keys())
                if allowed is not None and not listed:
                    continue
                if not autoload and not listed:
                    continue
            session._load_entry_point(ep, dist, version, is_default=is_default)
        if allowed:
            _warn_unmatched(allowed, entry_points, allow_source)
        for name, plugin in extra:
            session.add(name, plugin)
        session.collect()
        return session

    def _load_entry_point(
        self, ep: metadata.EntryPoint, dist: str, version: str, *, is_default: bool = False
    ) -> None:
        if self.pm.has_plugin(ep.name):
            other = self.providers[ep.name]
            raise PluginError(
                f"two plugins are named {ep.name!r}: one from {other}, one from {dist} "
                f"{version}. Uninstall one of them or rename its entry point."
            )
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole session down
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self._skip(ep.name, dist, version, detail)
            return
        provider = Provider(ep.name, dist, version)
        problem = plugin_api_problem(_plugin_module(ep, plugin), dist)
        if problem is not None:
            if is_default:
                raise PluginError(f"{provider}: {problem}")
            self._skip(ep.name, dist, version, problem)
            return
        problem = self._register(plugin, provider)
        if problem is None:
            return
        if is_default:  # rlkit's own plugins must never be silently missing
            raise PluginError(f"{provider} has an invalid hook implementation: {problem}")
        self._skip(ep.name, dist, version, f"invalid hook implementation: {problem}")

    def _skip(self, name: str, dist: str, version: str, detail: str) -> None:
        self.failed.append(FailedPlugin(name, f"{dist} {version}", detail))
        warnings.warn(
            f"rlkit plugin {name!r} from {dist} {version} failed to load and was "
            f"skipped: {detail.rstrip('.')}. Reinstall or fix that package, or exclude it with "
            f"RLKIT_PLUGINS=<names to keep>.",
            RuntimeWarning,
            stacklevel=4,  # warn <- _skip <- _load_entry_point <- load <- the caller
        )

    def _register(self, plugin: object, provider: Provider) -> str | None:
        """Register with pluggy, which checks each hook implementation against its spec.

        :returns: ``None``, or why pluggy rejected the plugin (which is then left out entirely).
        """
        try:
            self.pm.register(plugin, name=provider.plugin)
        except pluggy.PluginValidationError as exc:
            # pluggy keeps what it registered before the bad implementation; take it all back
            if self.pm.has_plugin(provider.plugin):
                self.pm.unregister(name=provider.plugin)
            return _validation_detail(self.pm, plugin, exc)
        self.providers[provider.plugin] = provider
        return None

    def add(self, name: str, plugin: object) -> None:
        """Register a plugin object in code (before :meth:`collect`)."""
        if self.pm.has_plugin(name):
            raise PluginError(
                f"a plugin named {name!r} is already registered ({self.providers[name]})"
            )
        provider = Provider(name, LOCAL, "")
        problem = self._register(plugin, provider)
        if problem is not None:
            raise PluginError(f"{provider} has an invalid hook implementation: {problem}")

    def collect(self) -> None:
        """Check hook implementations and run the registration hooks."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(self._unknown_hooks_message() or str(exc)) from None
        self._collect("register_algorithms", self.algorithms, _spec_register(AlgorithmSpec))
        self._collect("register_backbones", self.backbones, _spec_register(BackboneSpec))
        self._collect("register_exploration", self.exploration, _spec_register(ExplorationSpec))
        self._collect("register_runners", self.runners, _runner_register)
        self._collect("register_envs", self.envs, _env_register)
        self._collect("register_wrappers", self.wrappers, _wrapper_register)

    def _collect(
        self,
        hook_name: str,
        table: dict[str, Any],
        make: Callable[..., Any],
    ) -> None:
        # Call each implementation on its own, in registration order, so every registration
        # knows its provider and a clash names the first provider before the newcomer.
        for impl in self._impls(hook_name):
            provider = self._provider(impl.plugin_name)

            def register(*args: Any, _provider: Provider = provider, **kwargs: Any) -> None:
                try:
                    entry = make(*args, **kwargs)
                except TypeError as exc:
                    raise PluginError(
                        f"{_provider} called register() in {hook_name} wrongly: {exc}. "
                        f"See docs/plugins.md#{hook_name} for the signature."
                    ) from None
                if isinstance(entry, ComponentSpec):
                    entry.origin = str(_provider)
                key = entry.id if isinstance(entry, EnvEntry) else entry.name
                if key in table:
                    _, other = table[key]
                    raise PluginError(
                        f"{hook_name}: the name {key!r} is registered twice, by {other} and by "
                        f"{_provider}. Uninstall one of them, or disable one with RLKIT_PLUGINS."
                    )
                table[key] = (entry, _provider)

            try:
                impl.function(**{arg: register for arg in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"{provider} failed in {hook_name}: {exc!r}") from exc

    def _provider(self, plugin_name: str) -> Provider:
        return self.providers.get(plugin_name, Provider(plugin_name, LOCAL, ""))

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        """``hook_name``'s implementations in the order their plugins were registered.

        pluggy calls the most recently registered first (and reorders by ``tryfirst`` and
        ``trylast``); registrations must not depend on that.
        """
        order = {name: i for i, (name, _) in enumerate(self.pm.list_name_plugin())}
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        return sorted(impls, key=lambda impl: order.get(impl.plugin_name, len(order)))

    def callers_by_plugin(self, hook_name: str) -> list[tuple[Provider, Callable[..., Any]]]:
        """``hook_name`` split by plugin, in registration order: each implementing plugin's
        provider and a hook caller that runs only that plugin (traced like any hook call).

        For hooks whose effects must be attributed to a plugin, such as ``register_commands``.
        """
        plugins = dict(self.pm.list_name_plugin())
        names = dict.fromkeys(impl.plugin_name for impl in self._impls(hook_name))
        return [
            (
                self._provider(name),
                self.pm.subset_hook_caller(
                    hook_name, [p for n, p in plugins.items() if n != name and p is not None]
                ),
            )
            for name in names
        ]

    def _unknown_hooks_message(self) -> str:
        """What ``check_pending`` found: each unknown hook, its provider and the likely hook."""
        callers = {n: c for n, c in vars(self.pm.hook).items() if not n.startswith("_")}
        known = sorted(n for n, c in callers.items() if c.has_spec())
        problems = [
            f"unknown hook {name!r} in {self._provider(impl.plugin_name)}.{hint_for(name, known)}"
            for name, caller in callers.items()
            if not caller.has_spec()
            for impl in caller.get_hookimpls()
            if not impl.optionalhook
        ]
        if not problems:
            return ""
        return (
            " ".join(problems)
            + " Hook names are listed in docs/plugins.md; check the spelling, or mark a hook "
            "that is not rlkit's with @hookimpl(optionalhook=True)."
        )

    # --- lookup --------------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        """Lifecycle hooks, e.g. ``plugins.hook.run_started(run=info)``."""
        return self.pm.hook

    def algorithm(self, name: str) -> AlgorithmSpec:
        return _lookup(self.algorithms, name, "algorithm", "algorithm.name")

    def backbone(self, name: str) -> BackboneSpec:
        return _lookup(self.backbones, name, "backbone", "backbone.name")

    def exploration_spec(self, name: str) -> ExplorationSpec:
        return _lookup(self.exploration, name, "exploration strategy", "exploration.name")

    def runner_for(self, algorithm: str) -> RunnerSpec | None:
        for spec, _ in self.runners.values():
            if algorithm in spec.algorithms:
                return spec
        return None

    def versions(self) -> dict[str, str]:
        """``{entry point: "distribution version"}`` for every loaded plugin (the manifest)."""
        return {
            name: (p.distribution if not p.version else f"{p.distribution} {p.version}")
            for name, p in sorted(self.providers.items())
        }


def plugin_api_problem(module: object, distribution: str) -> str | None:
    """Why a plugin module's ``RLKIT_PLUGIN_API`` rules it out for this rlkit, or ``None``.

    A plugin made for API ``M.m`` works with an rlkit that provides the same major ``M`` and a
    minor of at least ``m`` (:data:`rlkit.PLUGIN_API`). A module without the attribute makes
    no claim and is loaded.
    """
    from rlkit import PLUGIN_API, __version__

    needed = getattr(module, API_ATTRIBUTE, None)
    if needed is None:
        return None
    name = getattr(module, "__name__", repr(module))
    parsed = parse_plugin_api(needed)
    if parsed is None:
        return (f"{API_ATTRIBUTE} = {needed!r} in {name} is not a plugin API version; it must "
                f"be a \"major.minor\" string such as \"{PLUGIN_API}\" (the version this "
                f"rlkit {__version__} provides)")
    major, minor = parsed
    have_major, have_minor = _provided_api()
    if major == have_major and minor <= have_minor:
        return None
    text = f"{major}.{minor}"
    if major < have_major:
        return (f"needs rlkit plugin API {text}, this rlkit {__version__} provides "
                f"{PLUGIN_API}: install a release of {distribution} made for plugin API "
                f"{have_major}.x, or an older rlkit that provides {major}.x")
    return (f"needs rlkit plugin API {text}, this rlkit {__version__} provides {PLUGIN_API}: "
            f"upgrade rlkit (pip install -U rlkit) or install a release of {distribution} "
            f"made for plugin API {have_major}.x")


def parse_plugin_api(value: object) -> tuple[int, int] | None:
    """``"1.0"`` -> ``(1, 0)``; ``None`` for anything that is not a ``"major.minor"`` string."""
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", value)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def _provided_api() -> tuple[int, int]:
    from rlkit import PLUGIN_API

    parsed = parse_plugin_api(PLUGIN_API)
    assert parsed is not None, PLUGIN_API
    return parsed


def _plugin_module(ep: metadata.EntryPoint, plugin: object) -> object:
    """The module an entry point names (``pkg.mod`` or ``pkg.mod:attr``): where a plugin
    declares ``RLKIT_PLUGIN_API``."""
    if inspect.ismodule(plugin):
        return plugin
    return sys.modules.get(ep.module, plugin)


def recorded_providers(manifest: Mapping[str, Any], section: str, name: str,
                       loaded: Collection[str]) -> list[str]:
    """The plugins a run's ``manifest.json`` says may have provided ``section`` ``name``
    (``"algorithm"``, ``"backbone"`` or ``"exploration"``), as ``"distribution version"``.

    The plugin its ``components`` entry names, where the run recorded one; else the recorded
    plugin whose entry-point name is ``name``; else every recorded plugin not in ``loaded``
    (the entry-point names of this session). Plugins registered in code are left out: no
    package installs them.
    """
    plugins = manifest.get("plugins")
    if not isinstance(plugins, Mapping):
        return []
    recorded = {str(k): str(v) for k, v in plugins.items() if not str(v).startswith(LOCAL)}
    components = manifest.get("components")
    component = components.get(section) if isinstance(components, Mapping) else None
    if (isinstance(component, Mapping) and component.get("name") == name
            and component.get("plugin") in recorded):
        return [recorded[str(component["plugin"])]]
    missing = {k: v for k, v in recorded.items() if k not in loaded}
    if name in missing:
        return [missing[name]]
    return sorted(set(missing.values()))


def not_installed_message(section: str, name: str, providers: Sequence[str]) -> str:
    """``"algorithm 'x' is not installed; this run was trained with pkg 1.0 (manifest.json):
    pip install pkg==1.0"``, for ``providers`` from :func:`recorded_providers`."""
    kind = "exploration strategy" if section == "exploration" else section
    pins = " ".join(_pin(p) for p in providers)
    if len(providers) == 1:
        return (f"{kind} {name!r} is not installed; this run was trained with {providers[0]} "
                f"(manifest.json): pip install {pins}")
    return (f"{kind} {name!r} is not installed; this run was trained with plugins that are "
            f"not installed now, one of which provided it: {', '.join(providers)} "
            f"(manifest.json): pip install {pins}")


def _pin(entry: str) -> str:
    """``"pkg 1.0"`` -> ``"pkg==1.0"`` (a distribution without a version stays as it is)."""
    dist, _, version = entry.rpartition(" ")
    return f"{dist}=={version}" if dist else entry


def _lookup(table: dict[str, tuple[Any, Provider]], name: str, kind: str, key: str) -> Any:
    if name in table:
        return table[name][0]
    available = ", ".join(sorted(table)) or "none"
    close = difflib.get_close_matches(name, list(table), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(
        f"{key}: unknown {kind} {name!r}.{hint} Available: {available}. "
        f"`rlkit plugins` lists what is installed."
    )


def _spec_register(spec_cls: type[ComponentSpec]) -> Callable[..., ComponentSpec]:
    """The ``register`` of algorithms, backbones and exploration controllers.

    ``config`` and ``build`` are objects (checked now) or ``"module:attribute"`` references
    (checked when first used; see :mod:`rlkit.specs`).
    """

    def make(name: str, config: type | str, build: Callable[..., Any] | str, *,
             description: str = "") -> ComponentSpec:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, got {name!r}")
        if isinstance(build, str):
            _check_reference(build, "build")
        elif not callable(build):
            raise TypeError(f"build must be callable, got {build!r}")
        if isinstance(config, str):
            _check_reference(config, "config")
        else:
            from dataclasses import is_dataclass

            if not (isinstance(config, type) and is_dataclass(config)):
                raise TypeError(f"config must be a dataclass type, got {config!r}")
        if not isinstance(description, str):
            raise TypeError(f"description must be a string, got {description!r}")
        return spec_cls(name=name, config=config, build=build, description=description)

    return make


def _check_reference(reference: str, what: str) -> None:
    module, sep, attr = reference.partition(":")
    if not (sep and module and attr):
        raise TypeError(f"{what} must be an object or a 'package.module:attribute' reference, "
                        f"got {reference!r}")


def _runner_register(
    name: str, run: Callable[..., Any], *, algorithms: Iterable[str], description: str = ""
) -> RunnerSpec:
    return RunnerSpec(
        name=name, algorithms=tuple(algorithms), run=run, description=description
    )


def _env_register(env_id: str, *, description: str = "", **kwargs: Any) -> EnvEntry:
    import gymnasium as gym  # only where a plugin registers envs

    if env_id not in gym.registry:
        gym.register(id=env_id, **kwargs)
    return EnvEntry(env_id, description)


def _wrapper_register(wrapper: type | str, *, description: str = "") -> WrapperEntry:
    if isinstance(wrapper, str):
        _check_reference(wrapper, "wrapper")
        return WrapperEntry(wrapper, description)
    import gymnasium as gym  # the plugin that passes a class has imported it already

    if not (isinstance(wrapper, type) and issubclass(wrapper, gym.Wrapper)):
        raise TypeError(f"wrapper must be a subclass of gymnasium.Wrapper or a "
                        f"'package.module:Class' reference, got {wrapper!r}")
    doc = (wrapper.__doc__ or "").strip()
    return WrapperEntry(f"{wrapper.__module__}:{wrapper.__qualname__}",
                        description or (doc.splitlines()[0] if doc else ""))


def _canonical(name: str) -> str:
    """A distribution or entry-point name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _names_of(ep: metadata.EntryPoint, dist: str) -> set[str]:
    """The canonical names by which the allowlist can select an entry point."""
    return {_canonical(ep.name), _canonical(dist)}


def _warn_unmatched(
    allowed: dict[str, str], entry_points: Sequence[metadata.EntryPoint], source: str
) -> None:
    """Warn about allowlisted names that match no installed entry point (a likely typo)."""
    by_dist: dict[str, list[str]] = {}
    matched: set[str] = set()
    for ep in entry_points:
        dist = ep.dist.name if ep.dist is not None else LOCAL
        version = ep.dist.version if ep.dist is not None else ""
        by_dist.setdefault(f"{dist} {version}".strip(), []).append(ep.name)
        matched |= _names_of(ep, dist)
    unmatched = [name for key, name in allowed.items() if key not in matched]
    if not unmatched:
        return
    installed = "; ".join(
        f"{dist} (entry points: {', '.join(sorted(names))})"
        for dist, names in sorted(by_dist.items())
    )
    names = ", ".join(repr(n) for n in unmatched)
    warnings.warn(
        f"{source} names {names}, which {'matches' if len(unmatched) == 1 else 'match'} no "
        f"installed rlkit plugin (by entry-point or "
        f"distribution name). Installed: {installed or 'none'}.",
        RuntimeWarning,
        stacklevel=3,
    )


def _validation_detail(
    pm: pluggy.PluginManager, plugin: object, exc: pluggy.PluginValidationError
) -> str:
    """Say which argument of which hook implementation the hook does not have, if that is what
    pluggy rejected; otherwise pluggy's own message on one line."""
    for attr in dir(plugin):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            continue
        hook_name = opts.get("specname") or attr
        caller = getattr(pm.hook, hook_name, None)
        spec = caller.spec if caller is not None else None
        if spec is None:
            continue
        try:
            params = inspect.signature(getattr(plugin, attr)).parameters.values()
        except (TypeError, ValueError):
            continue
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        unknown = [
            p.name for p in params
            if p.kind in positional and p.default is p.empty and p.name not in spec.argnames
        ]
        if unknown:
            hints = "".join(hint_for(a, spec.argnames) for a in unknown)
            return (
                f"{hook_name}() takes {', '.join(repr(a) for a in unknown)}, which the hook "
                f"does not pass.{hints} The hook passes: {', '.join(spec.argnames)} "
                f"(see docs/plugins.md#{hook_name})."
            )
    return " ".join(str(exc).split())


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("0", "false", "no", "")


def _entry_points() -> list[metadata.EntryPoint]:
    """The ``rlkit`` entry points in load order: rlkit's own first, then the others by name."""
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)

    def order(ep: metadata.EntryPoint) -> tuple[bool, str, str]:
        dist = ep.dist.name if ep.dist is not None else LOCAL
        return (_canonical(dist) != DEFAULT_DISTRIBUTION, ep.name, ep.value)

    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in sorted(eps, key=order):
        dist = ep.dist.name if ep.dist is not None else ""
        if (ep.name, dist) in seen:  # the same distribution found twice on sys.path
            continue
        seen.add((ep.name, dist))
        unique.append(ep)
    return unique
