"""Moving learned state between agents: fine-tuning from a trained agent (``init_from``) and
rolling back to the best policy seen in evaluation (``eval.rollback``).

Both rest on one convention every built-in algorithm follows, and third-party ones can: an
agent's ``state_dict()`` stores each network under the name of the agent attribute that holds
it (``"model"`` for ``agent.model``, ``"q"``, ``"actor"``, ``"critics_target"``...), and each
optimizer likewise (``"optimizer"``, ``"actor_optimizer"``...). :func:`learned_parts` finds
them: entries named after an attribute that is an ``nn.Module`` or a tensor (a network or a
table of learned values) or that has ``param_groups`` (an optimizer). Everything else in the
state -- replay buffers, counters, RNG, exploration, recurrent memory -- is left alone.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rlkit import snapshot
from rlkit.optim import load_optimizer_state, restore_optimizer_state
from rlkit.validation import ConfigError

__all__ = ["Rollback", "carry_normalizers", "freeze", "learned_parts", "transfer"]


def learned_parts(agent: Any, state: Mapping[str, Any]) -> dict[str, str]:
    """``{entry: "network" | "optimizer"}`` for the entries of ``state`` (the agent's
    ``state_dict()``) that hold learned parameters or optimizer state."""
    parts: dict[str, str] = {}
    for name in state:
        attr = getattr(agent, name, None)
        if isinstance(attr, (nn.Module, torch.Tensor)):
            parts[name] = "network"
        elif attr is not None and hasattr(attr, "param_groups") and hasattr(attr, "state_dict"):
            parts[name] = "optimizer"
    return parts


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, Mapping):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    return copy.deepcopy(value)


def _load_network(agent: Any, name: str, saved: Any) -> None:
    """Write ``saved`` into the agent's network (or tensor) ``name`` in place -- processes that
    share its memory (A3C's workers) see the change."""
    attr = getattr(agent, name)
    if isinstance(attr, nn.Module):
        attr.load_state_dict(saved)
    else:
        with torch.no_grad():
            attr.copy_(saved)


# --- fine-tuning -------------------------------------------------------------------------------


def transfer(agent: Any, trained: Mapping[str, Any], *, mode: str, optimizer: str, buffer: str,
             backbones: Sequence[nn.Module], source: str) -> list[str]:
    """Load what ``mode`` asks for from ``trained`` (a trained agent's state) into ``agent``
    (freshly built for the new experiment); return one line per part, for the run's log.

    :param mode: ``all`` (every network) or ``backbone`` (only the modules the backbone
        factory built, inside every network; the rest keeps its fresh initialisation).
    :param optimizer: ``keep`` or ``reset``; ``buffer`` likewise (for agents with a buffer).
    :param backbones: the backbone modules built for ``agent``.
    :raises ConfigError: naming ``init_from`` keys and the layers whose shapes differ, and the
        mode that would work.
    """
    fresh = agent.state_dict()
    parts = learned_parts(agent, fresh)
    merged = dict(fresh)
    report: list[str] = []
    mismatched: list[str] = []
    backbone_ids = {id(m) for m in backbones}
    for name, kind in parts.items():
        if kind != "network":
            continue
        if name not in trained:
            raise ConfigError(f"init_from.path: {source} has no {name!r} network; it was "
                              f"trained by a different algorithm.", key="init_from.path")
        new, old = fresh[name], trained[name]
        attr = getattr(agent, name)
        if isinstance(attr, torch.Tensor):  # a table of learned values (tabular methods)
            if mode != "all":
                raise ConfigError("init_from.transfer: 'backbone' needs networks with a backbone; "
                                  "this algorithm learns a table. Use transfer: all.",
                                  key="init_from.transfer")
            if old.shape != new.shape:
                mismatched.append(f"{name} {tuple(old.shape)} -> {tuple(new.shape)}")
            else:
                merged[name] = old
            continue
        prefixes = ([p for p, m in attr.named_modules(remove_duplicate=False)
                     if id(m) in backbone_ids]
                    if mode == "backbone" else [""])
        taken = dict(new)
        count = 0
        for key, value in new.items():
            if not any(key.startswith(f"{p}.") or not p for p in prefixes):
                continue
            if key not in old:
                mismatched.append(f"{name}.{key} (missing in the trained agent)")
                continue
            if old[key].shape != value.shape:
                mismatched.append(f"{name}.{key} {tuple(old[key].shape)} -> "
                                  f"{tuple(value.shape)}")
                continue
            taken[key] = old[key]
            count += 1
        merged[name] = taken
        if count:
            report.append(f"{name}: {count} of {len(new)} tensors transferred")
    if mismatched:
        hint = (" Use init_from.transfer: backbone to transfer only the backbones and train "
                "fresh heads." if mode == "all" else
                " The backbones themselves differ: use the same backbone settings as the "
                "trained run, or train from scratch.")
        shown = ", ".join(mismatched[:6]) + (f" and {len(mismatched) - 6} more"
                                             if len(mismatched) > 6 else "")
        raise ConfigError(f"init_from: the trained agent in {source} does not fit (transfer: "
                          f"{mode}): {shown}.{hint}", key="init_from.transfer")
    if mode != "all":  # target networks start as copies of their (partly transferred) online
        for name in parts:
            online = name.removesuffix("_target")
            if name.endswith("_target") and online in merged and (
                    set(merged[online]) == set(merged[name])):
                merged[name] = dict(merged[online])
    for name, kind in parts.items():
        if kind != "optimizer" or optimizer != "keep":
            continue
        if mode != "all":
            raise ConfigError("init_from.optimizer: keep needs transfer: all (the optimizer's "
                              "state belongs to the trained heads); use optimizer: reset.",
                              key="init_from.optimizer")
        if name not in trained:
            raise ConfigError(f"init_from.optimizer: {source} has no {name!r}; use optimizer: "
                              f"reset.", key="init_from.optimizer")
        merged[name] = trained[name]
        report.append(f"{name}: state kept")
    if buffer == "keep":
        if "buffer" not in fresh:
            raise ConfigError("init_from.buffer: keep -- this algorithm has no buffer to keep; "
                              "use buffer: reset.", key="init_from.buffer")
        merged["buffer"] = _fitting_buffer(fresh["buffer"], trained.get("buffer"), source)
        report.append("buffer: kept")
    agent.load_state_dict(merged)
    return report


def _fitting_buffer(fresh: Any, old: Any, source: str) -> Any:
    """The trained run's replay buffer state, if it fits the new buffer: the same capacity and
    the same shape per transition."""
    if old is None:
        raise ConfigError(f"init_from.buffer: {source} holds no buffer; use buffer: reset.",
                          key="init_from.buffer")
    if not (isinstance(fresh, Mapping) and "capacity" in fresh):
        raise ConfigError("init_from.buffer: keep is for replay buffers (off-policy algorithms); "
                          "this algorithm's buffer holds its own latest rollout. Use buffer: "
                          "reset.", key="init_from.buffer")
    problem = None
    if not isinstance(old, Mapping) or old.get("capacity") != fresh["capacity"]:
        problem = (f"capacity {old.get('capacity') if isinstance(old, Mapping) else None}, "
                   f"this run's {fresh['capacity']}")
    else:
        for key, value in fresh.items():
            other = old.get(key)
            if isinstance(value, torch.Tensor) and (not isinstance(other, torch.Tensor) or
                                                    other.shape[1:] != value.shape[1:]):
                problem = (f"{key!r} of shape {tuple(getattr(other, 'shape', ()))[1:]} per "
                           f"transition, this run's {tuple(value.shape[1:])}")
                break
    if problem is not None:
        raise ConfigError(f"init_from.buffer: the trained run's buffer does not fit this one "
                          f"(its {problem}: buffer_size, num_envs or the spaces differ); use "
                          f"the trained run's sizes, or buffer: reset.", key="init_from.buffer")
    return old


def freeze(backbones: Sequence[nn.Module], frozen: bool) -> None:
    """Stop (or resume) training the backbones: their parameters get no gradient."""
    for module in backbones:
        for p in module.parameters():
            p.requires_grad_(not frozen)
            if frozen:
                p.grad = None


# --- rollback --------------------------------------------------------------------------------


class Rollback:
    """Keeps the agent's networks and optimizers from its best evaluation, and restores them
    when ``patience`` evaluations in a row fall below ``best - max(drop * |best|, min_drop)``.

    A collapse the learner caused (a bad update, a diverging value function) is undone by the
    restore: evaluations recover at once. When the *world* changed, the restored policy
    collapses too; so when ``patience`` more evaluations after a restore are still below the
    bound, the best is forgotten (the environment is not the one it was measured in) and the
    run learns on from where it is -- a rollback is tried once per best, never in a loop.

    :param drop: the relative fall that counts as a collapse.
    :param min_drop: the smallest absolute fall that counts.
    :param patience: collapsed evaluations in a row before restoring.
    """

    def __init__(self, *, drop: float, min_drop: float, patience: int) -> None:
        self.drop, self.min_drop, self.patience = drop, min_drop, patience
        self.best: float | None = None
        self.best_step = -1
        self.saved: dict[str, Any] | None = None
        self.bad = 0
        self.restored = False  # restored since the best was set
        self.events: list[dict[str, Any]] = []

    def threshold(self) -> float | None:
        if self.best is None:
            return None
        return self.best - max(self.drop * abs(self.best), self.min_drop)

    def after_evaluation(self, agent: Any, mean: float, step: int) -> dict[str, Any] | None:
        """Record an evaluation; restore the best state when the collapse has lasted
        ``patience`` evaluations. Returns the rollback event, or None."""
        if self.best is None or mean > self.best:
            self.best, self.best_step, self.bad, self.restored = mean, step, 0, False
            state = agent.state_dict()
            self.saved = {name: _clone(state[name]) for name in learned_parts(agent, state)}
            return None
        limit = self.threshold()
        if limit is None or mean >= limit:
            self.bad = 0
            return None
        self.bad += 1
        if self.bad < self.patience or self.saved is None:
            return None
        self.bad = 0
        if self.restored:  # the best policy fails too: the world changed, not the learner
            event = {"step": step, "eval_return": mean, "best_return": self.best,
                     "best_step": self.best_step, "kind": "reset"}
            self.best, self.best_step, self.saved, self.restored = None, -1, None, False
            self.events.append(event)
            return event
        self.restore(agent)
        self.restored = True
        event = {"step": step, "eval_return": mean, "best_return": self.best,
                 "best_step": self.best_step, "kind": "restore"}
        self.events.append(event)
        return event

    def restore(self, agent: Any) -> None:
        """Write the saved networks and optimizer states into the agent, in place."""
        assert self.saved is not None
        state = agent.state_dict()
        for name, kind in learned_parts(agent, state).items():
            if name not in self.saved:
                continue
            if kind == "network":
                _load_network(agent, name, _clone(self.saved[name]))
            else:
                optimizer = getattr(agent, name)
                try:
                    restore_optimizer_state(optimizer, _clone(self.saved[name]))
                except (ValueError, KeyError, RuntimeError):
                    load_optimizer_state(optimizer, _clone(self.saved[name]))

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "saved": self.saved,
                "bad": self.bad, "restored": self.restored,
                "events": [dict(e) for e in self.events]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = state["best"]
        self.best_step = int(state["best_step"])
        self.saved = state["saved"]
        self.bad = int(state["bad"])
        self.restored = bool(state.get("restored", False))
        self.events = [dict(e) for e in state["events"]]


# --- observation / reward normalisation ------------------------------------------------------

_RMS = re.compile(r"^envs\.(\d+)\.(.*\b(?:obs_rms|return_rms)\..+)$")


def carry_normalizers(env: Any, trained_env: Mapping[str, Any] | None) -> int:
    """Give every sub-env of ``env`` (a gymnasium sync vector env inside a
    :class:`~rlkit.environments.TorchVectorEnv`) the running statistics of the trained run's
    ``NormalizeObservation`` / ``NormalizeReward`` wrappers (those of its first env); return
    how many statistics were set (0: neither run normalises, or the trained run kept no env
    state)."""
    if trained_env is None or not isinstance(trained_env.get("env"), Mapping):
        return 0
    first: dict[str, Any] = {}
    for key, value in trained_env["env"].items():
        match = _RMS.match(key)
        if match and match.group(1) == "0":
            first[match.group(2)] = value
    subs = getattr(env.env, "envs", None)
    if not first or not subs:
        return 0
    state = {f"envs.{i}.{suffix}": value for i in range(len(subs))
             for suffix, value in first.items()}
    snapshot.restore(env.env, state)
    return len(first)
