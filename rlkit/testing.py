"""Conformance checks for algorithms, for rlkit's own tests and for plugin authors.

Run all of them from a test in your own package::

    from rlkit.testing import check_algorithm

    def test_my_algorithm_conforms(tmp_path):
        check_algorithm("my_algo", env_id="CartPole-v1", params={"n_steps": 16},
                        workdir=tmp_path, steps=256)

The checks, each also callable on its own:

* :func:`check_smoke` -- a short training run finishes and actions lie in the action space;
* :func:`check_save_load` -- ``state_dict`` survives ``torch.save``/``torch.load(weights_only=
  True)`` and a freshly built agent that loads it acts identically; an agent loaded from
  another's live ``state_dict()`` shares no tensors with it;
* :func:`check_determinism` -- two runs with the same config and seed end with identical
  parameters (on the CPU);
* :func:`check_exact_resume` -- a run stopped half-way, checkpointed and resumed ends with
  exactly the parameters of an uninterrupted run;
* :func:`check_episode_starts` -- evaluation (``separate_state``) leaves the training state as
  it was, and ``begin_episodes`` starts exactly the episodes it is told to: after it, the
  masked envs act like a fresh agent's and the others as if it had not been called. Agents
  without per-env state pass trivially; recurrent ones (``backbone={"name": "lstm"}``) are
  checked for real.

Two arguments widen the coverage of any of them:

* ``backbone={"name": "lstm", "hidden_size": 16}`` (of :func:`experiment_for` and
  :func:`check_algorithm`) runs the checks with that backbone, e.g. an algorithm's recurrent
  path, or your own backbone plugin;
* ``env=shifted_actions_env()`` runs them on ``Discrete(3, start=-1)`` actions (Acrobot's
  torques renumbered): an agent must send ``index + space.start`` and learn from the actions
  it is told were taken, which are in the same numbering. An action outside the space raises
  a ``ValueError`` in the env, and an action taken as an index out of range fails in the
  agent's own update.

Each raises ``AssertionError`` with a message naming the algorithm and the check. Experiments
from :func:`experiment_for` turn on ``check_actions`` for envs whose batched constructor takes it
(rlkit's torch-native envs), so an action outside the action space fails the check with a
``ValueError`` instead of being applied.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from gymnasium.envs.registration import load_env_creator

from rlkit.config import Experiment, resolve
from rlkit.environments import make_env
from rlkit.evaluation import evaluate
from rlkit.interfaces import EnvSpec, begin_episodes
from rlkit.loop import Trainer, build_agent, env_options
from rlkit.plugins import Plugins

__all__ = [
    "assert_state_equal",
    "check_algorithm",
    "check_determinism",
    "check_episode_starts",
    "check_exact_resume",
    "check_save_load",
    "check_smoke",
    "experiment_for",
    "shifted_actions_env",
]


def experiment_for(
    algorithm: str,
    *,
    env_id: str,
    plugins: Plugins,
    params: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | None = None,
    steps: int = 512,
    workdir: Path | str = "runs",
    seed: int = 0,
    backbone: Mapping[str, Any] | None = None,
) -> Experiment:
    """A small, validated experiment for ``algorithm`` on ``env_id`` (evaluation off).

    :param algorithm: the registered algorithm name.
    :param env_id: the gymnasium id (``env.id``), overridden by an ``id`` in ``env``.
    :param plugins: the plugin session that provides the algorithm and backbone.
    :param params: the ``algorithm:`` section's settings (small ones keep the checks fast).
    :param env: more of the ``env:`` section (``kwargs``, ``wrappers``...; two envs unless it
        sets ``num_envs``), e.g. :func:`shifted_actions_env`.
    :param steps: ``train.total_steps``.
    :param workdir: where run directories go (``run.dir``).
    :param seed: ``train.seed``.
    :param backbone: the ``backbone:`` section (default: none, so rlkit's default ``mlp``; an
        algorithm that uses no backbone refuses one), e.g. ``{"name": "lstm", "hidden_size":
        16}`` for an algorithm's recurrent path or ``{"name": "yours", ...}`` for a backbone
        plugin.
    """
    data: dict[str, Any] = {
        "algorithm": {"name": algorithm, **(params or {})},
        "env": {"id": env_id, "num_envs": 2, **_with_action_checks(env_id, env)},
        "train": {"total_steps": steps, "seed": seed, "nan_check": "raise", "log_every": 64},
        "eval": {"every": 0, "episodes": 2},
        "run": {"dir": str(workdir)},
    }
    if backbone is not None:
        data["backbone"] = dict(backbone)
    return resolve(data, plugins, source=f"<conformance {algorithm}>")


def shifted_actions_env(start: int = -1, *, env_id: str = "Acrobot-v1") -> dict[str, Any]:
    """An ``env:`` section whose action space is ``Discrete(n, start=start)``: ``env_id``
    (``Discrete(n)`` actions; Acrobot's three torques by default) wrapped in
    :class:`rlkit_envs.wrappers.ShiftDiscreteActions`. Pass it as ``env=`` to
    :func:`experiment_for` or :func:`check_algorithm`.

    :param start: the first action of the space.
    :param env_id: a gymnasium id with a ``Discrete`` action space starting at 0.
    """
    return {"id": env_id, "wrappers": [{"name": "rlkit_envs.wrappers:ShiftDiscreteActions",
                                        "kwargs": {"start": int(start)}}]}


def _with_action_checks(env_id: str, env: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``env`` section with ``kwargs.check_actions: true`` where the env's batched
    constructor takes that argument (unless the section sets it)."""
    section = dict(env or {})
    try:
        entry = gym.spec(str(section.get("id", env_id))).vector_entry_point
        creator = load_env_creator(entry) if isinstance(entry, str) else entry
        takes = creator is not None and "check_actions" in inspect.signature(creator).parameters
    except Exception:  # unregistered here, or no signature: leave the env as it is
        return section
    if takes:
        section["kwargs"] = {"check_actions": True, **(section.get("kwargs") or {})}
    return section


def check_smoke(experiment: Experiment, plugins: Plugins, workdir: Path) -> dict[str, Any]:
    """A short run completes, evaluates and writes its run directory."""
    name = experiment.algorithm.name
    summary = Trainer(experiment, plugins, run_dir=workdir / "smoke", progress=False).run()
    assert summary["status"] in ("finished", "target_reached"), (
        f"{name}: smoke run ended with status {summary['status']!r}")
    assert summary["env_steps"] >= experiment.train.total_steps, f"{name}: run ended early"
    for f in ("config.yaml", "manifest.json", "summary.json", "checkpoints/latest.pt"):
        assert (workdir / "smoke" / f).exists(), f"{name}: smoke run did not write {f}"
    env = make_env(env_options(experiment), num_envs=2)
    agent, _ = build_agent(experiment, plugins, _spec(env), torch.device("cpu"))
    obs = env.reset(seed=0)
    for explore in (True, False):
        actions = agent.act(obs, explore=explore)
        for a in actions.cpu().numpy():
            assert env.single_action_space.contains(a.astype(env.single_action_space.dtype)), (
                f"{name}: act(explore={explore}) returned {a!r}, outside "
                f"{env.single_action_space}")
    return summary


def check_save_load(experiment: Experiment, plugins: Plugins) -> None:
    """state_dict -> bytes -> weights_only load -> fresh agent acts the same."""
    name = experiment.algorithm.name
    env = make_env(env_options(experiment))
    agent, _ = build_agent(experiment, plugins, _spec(env), torch.device("cpu"))
    obs = env.reset(seed=1)
    _drive(agent, env, obs, 64)
    state = agent.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        loaded = torch.load(buffer, weights_only=True)
    except Exception as exc:
        raise AssertionError(f"{name}: state_dict() is not loadable with weights_only=True "
                             f"(it must hold only tensors and plain data): {exc}") from None
    other_seed = dataclasses.replace(experiment, train=dataclasses.replace(experiment.train,
                                                                           seed=12345))
    fresh, _ = build_agent(other_seed, plugins, _spec(env), torch.device("cpu"))
    fresh.load_state_dict(loaded)
    assert_state_equal(agent.state_dict(), fresh.state_dict(), f"{name}: after load_state_dict")
    probe = env.reset(seed=2)
    assert torch.equal(agent.act(probe, explore=False), fresh.act(probe, explore=False)), (
        f"{name}: a loaded agent acts differently from the saved one")
    # Loaded straight from a live agent (no serialisation), the two must stay independent:
    # driven alike, they end alike, and neither moves the other's tensors.
    twin, _ = build_agent(other_seed, plugins, _spec(env), torch.device("cpu"))
    twin.load_state_dict(agent.state_dict())
    twin_env = make_env(env_options(experiment))
    _drive(agent, env, env.reset(seed=3), 64)
    _drive(twin, twin_env, twin_env.reset(seed=3), 64)
    assert_state_equal(agent.state_dict(), twin.state_dict(),
                       f"{name}: an agent loaded from another's in-memory state_dict (they must "
                       f"not share tensors, e.g. optimizer moments)")


def check_determinism(experiment: Experiment, plugins: Plugins, workdir: Path) -> None:
    """Same config and seed -> identical parameters after training (CPU)."""
    name = experiment.algorithm.name
    states = []
    for i in range(2):
        trainer = Trainer(experiment, plugins, run_dir=workdir / f"determinism-{i}",
                          progress=False)
        trainer.run()
        states.append(trainer.agent.state_dict())
    assert_state_equal(states[0], states[1], f"{name}: two runs with the same seed")


def check_exact_resume(experiment: Experiment, plugins: Plugins, workdir: Path) -> None:
    """Stopped half-way and resumed == uninterrupted, to the last bit."""
    name = experiment.algorithm.name
    full = Trainer(experiment, plugins, run_dir=workdir / "uninterrupted", progress=False)
    full.run()
    half = experiment.train.total_steps // 2
    first = Trainer(experiment, plugins, run_dir=workdir / "interrupted", progress=False)
    summary = first.run(max_steps=half)
    assert summary["status"] == "paused", f"{name}: run(max_steps) ended as {summary['status']}"
    # the author's own experiment: its env.imports and wrappers are the author's choice
    resumed = Trainer.resume(workdir / "interrupted", plugins, progress=False,
                             trust_config=True)
    resumed.run()
    assert resumed.env_steps == full.env_steps, (
        f"{name}: resumed run stopped at {resumed.env_steps} env steps, uninterrupted at "
        f"{full.env_steps}")
    assert_state_equal(full.agent.state_dict(), resumed.agent.state_dict(),
                       f"{name}: resumed vs uninterrupted run")


def check_episode_starts(experiment: Experiment, plugins: Plugins) -> None:
    """Evaluation never touches the training state, and ``begin_episodes`` starts exactly the
    episodes in its mask (see the module docstring)."""
    name = experiment.algorithm.name
    env = make_env(env_options(experiment))
    n = env.num_envs
    agent, _ = build_agent(experiment, plugins, _spec(env), torch.device("cpu"))
    _drive(agent, env, env.reset(seed=4), 48)
    agent.act(env.reset(seed=7), explore=False)  # a state mid-episode in every env
    before = agent.state_dict()
    eval_env = make_env(env_options(experiment, for_eval=True), num_envs=3)
    evaluate(agent, eval_env, episodes=3, seed=5)
    assert_state_equal(before, agent.state_dict(),
                       f"{name}: an evaluation changed the training state (evaluation must act "
                       f"inside separate_state, with a state of its own)")
    # Through the state: begin_episodes(mask) then (~mask) is begin_episodes() for all envs,
    # and where starting every episode changes the state (the agent has per-env memory),
    # starting some changes it, but not as much.
    mask = torch.zeros(n, dtype=torch.bool)
    mask[0] = True
    states = []
    for masks in ((None,), (mask,), (mask, ~mask)):
        other, _ = build_agent(experiment, plugins, _spec(env), torch.device("cpu"))
        other.load_state_dict(before)
        for m in masks:
            begin_episodes(other, m)
        states.append(other.state_dict())
    every, some, both = states
    assert_state_equal(every, both, f"{name}: begin_episodes(mask) then begin_episodes(~mask) "
                                    f"differs from begin_episodes() for all envs")
    if not _state_equal(before, every):
        assert not _state_equal(some, before), (
            f"{name}: begin_episodes(mask) left the state as it was, although "
            f"begin_episodes() for all envs changes it (the mask is ignored)")
        assert not _state_equal(some, every), (
            f"{name}: begin_episodes(mask) for one env reset every env's state")
    # A twin in the same state, and a fresh agent with the same weights: after
    # begin_episodes(mask), masked envs must act like the fresh agent, the others like the twin.
    twin, _ = build_agent(experiment, plugins, _spec(env), torch.device("cpu"))
    twin.load_state_dict(agent.state_dict())
    fresh, _ = build_agent(experiment, plugins, _spec(env), torch.device("cpu"))
    fresh.load_state_dict(agent.state_dict())
    begin_episodes(fresh)  # every env starts an episode
    begin_episodes(agent, mask)
    probe = make_env(env_options(experiment))
    obs = probe.reset(seed=6)
    for step in range(8):
        a, b, c = (x.act(obs, explore=False) for x in (agent, twin, fresh))
        assert torch.equal(a[mask], c[mask]), (
            f"{name}: step {step} after begin_episodes(mask): a masked env acts unlike a fresh "
            f"agent's (its state was not reset)")
        assert torch.equal(a[~mask], b[~mask]), (
            f"{name}: step {step} after begin_episodes(mask): an env outside the mask acts "
            f"differently (begin_episodes touched it)")
        obs = probe.step(a).obs


def check_algorithm(
    algorithm: str,
    *,
    env_id: str,
    workdir: Path | str,
    params: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | None = None,
    steps: int = 512,
    plugins: Plugins | None = None,
    backbone: Mapping[str, Any] | None = None,
) -> None:
    """Run every conformance check on ``algorithm``.

    The arguments are those of :func:`experiment_for`, plus ``plugins`` (default:
    :meth:`Plugins.load`).

    :param backbone: the backbone section (default: a small ``mlp``); e.g.
        ``{"name": "lstm", "hidden_size": 16}`` checks an algorithm's recurrent support.
    :param env: more of the ``env:`` section; :func:`shifted_actions_env` checks
        ``Discrete(n, start != 0)`` action spaces.
    """
    plugins = plugins or Plugins.load()
    workdir = Path(workdir)
    experiment = experiment_for(algorithm, env_id=env_id, plugins=plugins, params=params,
                                env=env, steps=steps, workdir=workdir, backbone=backbone)
    check_smoke(experiment, plugins, workdir)
    check_save_load(experiment, plugins)
    check_determinism(experiment, plugins, workdir)
    check_exact_resume(experiment, plugins, workdir)
    check_episode_starts(experiment, plugins)


def assert_state_equal(a: Any, b: Any, where: str, path: str = "") -> None:
    """Recursively compare two state dicts; tensors must be bit-identical."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), (
            f"{where}: {path or 'state'} is a tensor on one side only")
        assert a.shape == b.shape and a.dtype == b.dtype, (
            f"{where}: {path} differs in shape/dtype ({a.shape}, {a.dtype} vs {b.shape}, "
            f"{b.dtype})")
        same = torch.equal(a, b) or (a.is_floating_point() and
                                     torch.equal(torch.nan_to_num(a, 1.0), torch.nan_to_num(b, 1.0))
                                     and torch.equal(a.isnan(), b.isnan()))
        assert same, f"{where}: {path} differs (max abs diff " \
                     f"{(a.double() - b.double()).abs().max().item() if a.numel() else 0})"
        return
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), (
            f"{where}: {path or 'state'} has keys {sorted(map(str, a))} vs "
            f"{sorted(map(str, b)) if isinstance(b, Mapping) else b!r}")
        for k in a:
            assert_state_equal(a[k], b[k], where, f"{path}.{k}" if path else str(k))
        return
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {path} differs"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_state_equal(x, y, where, f"{path}[{i}]")
        return
    assert a == b or (a != a and b != b), f"{where}: {path} differs ({a!r} vs {b!r})"


def _state_equal(a: Any, b: Any) -> bool:
    try:
        assert_state_equal(a, b, "")
    except AssertionError:
        return False
    return True


def _spec(env: Any) -> EnvSpec:
    return EnvSpec(observation_space=env.single_observation_space,
                   action_space=env.single_action_space, num_envs=env.num_envs)


def _drive(agent: Any, env: Any, obs: torch.Tensor, steps: int) -> None:
    from rlkit.interfaces import Transition

    for _ in range(steps):
        action = agent.act(obs)
        step = env.step(action)
        agent.observe(Transition(obs, action, step.reward, step.next_obs, step.terminated,
                                 step.truncated, step.valid))
        agent.update()
        obs = step.obs
