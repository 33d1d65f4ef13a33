"""Magnitude pruning of a trained policy, with a short fine-tune that keeps the zeros.

:func:`prune` takes a trained run (or checkpoint), removes the smallest weights of its acting
network and trains on briefly so that the rest make up for them::

    result = prune("runs/ppo-CartPole-v1-20261124-221500", amount=0.5, finetune_steps=20000)
    result.run_dir, result.sparsity      # a normal run directory; 0.5 of the weights are zero

**What is pruned.** The weights (not the biases) of every ``Linear`` and ``Conv`` layer of the
network that chooses actions: an actor-critic's actor backbone and policy head (ppo, a2c;
a3c's workers train out of the masks' reach and are refused), the Q network (dqn), the actor
(ddpg, td3). The critic, target networks and recurrent
cores are left dense. Pruning is global and unstructured: the ``amount`` fraction of these
weights with the smallest absolute value relative to their layer's root mean square, over all
layers together (``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured`` on
those scores), so that a wide layer gives up more than a narrow one, and a layer initialised
at a small scale (an actor-critic's policy head starts at gain 0.01) is not emptied for its
scale alone.

**The fine-tune** is a normal run of the trainer: the trained run's stored config with an
``init_from`` section pointing at it, ``train.total_steps`` set to ``finetune_steps``, and no
early stop at the target return. The masks are computed once, on the trained weights, and made
permanent at once (``prune.remove``: plain ``weight`` tensors with zeros, so every checkpoint
keeps the format that :func:`~rlkit.deploy.policy.load_policy`, ``rlkit eval`` and
``rlkit export`` read). During the fine-tune a gradient hook zeroes the gradient of every
pruned weight (an optimizer that starts fresh then never moves it; rlkit's optimizers update
``param`` tensors in place from ``param.grad``), and after every ``update()`` the masks are
applied again, so that weight decay or a kept optimizer state cannot revive a pruned weight
either. The run directory is a normal one; its ``summary.json`` adds ``pruning``: the amount
asked for, the sparsity reached and the layers.

A fine-tuning run resumed with ``rlkit train --resume`` continues without the masks; prune
again instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune

from rlkit import checkpoint as ckpt
from rlkit.config import apply_overrides, resolve
from rlkit.deploy.policy import FAMILIES
from rlkit.validation import ConfigError

if TYPE_CHECKING:
    from rlkit.plugins import Plugins

__all__ = ["PruneResult", "Pruning", "acting_modules", "prune", "prune_modules", "sparsity"]

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""The layer types whose weights are pruned."""


@dataclass
class PruneResult:
    """What :func:`prune` did.

    :param run_dir: the fine-tuning run's directory.
    :param amount: the fraction of weights asked to be zero.
    :param sparsity: the fraction of the pruned layers' weights that are zero at the end.
    :param layers: ``{layer: sparsity}`` per pruned weight, at the end.
    :param summary: the fine-tuning run's summary (``summary.json``).
    """

    run_dir: Path
    amount: float
    sparsity: float
    layers: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class Pruning:
    """Masks that stay applied while an agent trains: a gradient hook per pruned weight that
    zeroes the pruned entries' gradient, and :meth:`apply` (called after every ``update()``
    once :meth:`attach` wrapped it) that zeroes the entries themselves.

    :param masks: ``{name: (weight, mask)}``, mask 1.0 where the weight is kept.
    """

    def __init__(self, masks: Mapping[str, tuple[nn.Parameter, Tensor]]) -> None:
        self.masks = dict(masks)
        self._handles: list[Any] = []

    def apply(self) -> None:
        """Zero every pruned weight, in place."""
        with torch.no_grad():
            for weight, mask in self.masks.values():
                weight.mul_(mask)

    def attach(self, agent: Any) -> None:
        """Keep the masks applied while ``agent`` learns: gradients of pruned entries are
        zeroed as they are computed, and the masks are applied after each ``agent.update()``."""
        for weight, mask in self.masks.values():
            self._handles.append(weight.register_hook(_masked_gradient(mask)))
        update: Callable[[], dict[str, float]] = agent.update

        def masked_update() -> dict[str, float]:
            metrics = update()
            if metrics:  # the agent learned in this call
                self.apply()
            return metrics

        agent.update = masked_update

    def detach(self, agent: Any) -> None:
        """Remove the hooks and the ``update`` wrapper."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        agent.__dict__.pop("update", None)

    def sparsity(self) -> tuple[float, dict[str, float]]:
        """The fraction of zeros over all pruned weights, and per weight."""
        return sparsity({name: weight for name, (weight, _) in self.masks.items()})


def _masked_gradient(mask: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda grad: grad * mask


def acting_modules(agent: Any, algorithm: str) -> dict[str, nn.Module]:
    """The modules of ``agent`` that choose its actions, by the name they are reached by
    (``model.actor_body``, ``model.policy_head``, ``q``, ``actor``).

    :raises ConfigError: an algorithm whose acting network rlkit does not know (a plugin's,
        or a tabular method's table).
    """
    family = FAMILIES.get(algorithm)
    if family == "actor_critic":
        return {"model.actor_body": agent.model.actor_body,
                "model.policy_head": agent.model.policy_head}
    if family == "q_network":
        return {"q": agent.q}
    if family == "actor":
        return {"actor": agent.actor}
    networks = ", ".join(name for name, f in FAMILIES.items() if f != "table")
    raise ConfigError(f"prune: {algorithm!r} has no acting network that rlkit knows how to "
                      f"prune; pruning works for {networks}.", key="algorithm.name")


def prune_modules(modules: Mapping[str, nn.Module], amount: float) -> Pruning:
    """Prune the ``amount`` fraction of the smallest-magnitude weights of every ``Linear`` and
    ``Conv`` layer inside ``modules``, globally; the masks are made permanent at once
    (``prune.remove``) and returned as a :class:`Pruning` to keep them applied in training.

    :raises ConfigError: ``amount`` outside (0, 1), or no layer to prune.
    """
    _check_amount(amount)
    layers: list[tuple[str, Any]] = []  # (name, a Linear or Conv layer)
    seen: set[int] = set()
    for prefix, module in modules.items():
        for name, layer in module.named_modules():
            if isinstance(layer, PRUNABLE) and id(layer) not in seen:
                seen.add(id(layer))
                layers.append((f"{prefix}.{name}" if name else prefix, layer))
    if not layers:
        raise ConfigError(f"prune: the acting network ({', '.join(modules)}) has no Linear or "
                          f"Conv layer to prune.")
    # each weight's magnitude relative to its layer's root mean square: global, but a layer
    # initialised at a small scale (a policy head, at gain 0.01) is not emptied for it
    with torch.no_grad():
        scores = {(layer, "weight"): layer.weight.abs() / layer.weight.pow(2).mean().sqrt()
                  .clamp_min(1e-12) for _, layer in layers}
    torch_prune.global_unstructured(list(scores), pruning_method=torch_prune.L1Unstructured,
                                    importance_scores=scores, amount=amount)
    masks: dict[str, tuple[nn.Parameter, Tensor]] = {}
    for name, layer in layers:
        mask: Tensor = layer.weight_mask.detach().clone()
        torch_prune.remove(layer, "weight")  # a plain parameter again, zeros included
        weight: nn.Parameter = layer.weight
        masks[f"{name}.weight"] = (weight, mask)
    return Pruning(masks)


def sparsity(weights: Mapping[str, Tensor]) -> tuple[float, dict[str, float]]:
    """The fraction of exact zeros over all ``weights`` together, and per weight."""
    per = {name: float((w == 0).float().mean()) for name, w in weights.items()}
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    return (zeros / total if total else 0.0), per


def prune(
    source: str | Path,
    amount: float = 0.5,
    finetune_steps: int = 20_000,
    out_run_dir: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    plugins: Plugins | None = None,
    progress: bool = False,
) -> PruneResult:
    """Prune a trained agent's acting network and fine-tune it in a new run; see the module
    docstring.

    :param source: a trained run directory (its newest checkpoint that loads) or checkpoint.
    :param amount: the fraction of the acting network's weights set to zero, in (0, 1).
    :param finetune_steps: env steps of the fine-tune (``train.total_steps`` of the new run).
    :param out_run_dir: the new run's directory (default: ``<source run>-pruned<amount %>``
        beside the source run).
    :param overrides: ``key.path=value`` settings for the fine-tuning run, applied last
        (``train.seed=1``, ``algorithm.optimizer.lr=1e-4``, ``eval.episodes=50``).
    :param plugins: the plugin session (default: :meth:`Plugins.load`).
    :param progress: show the trainer's progress bar.
    :raises ConfigError: ``amount`` outside (0, 1), ``finetune_steps`` below 1, an algorithm
        without a known acting network, a bad override.
    :raises CheckpointError: no checkpoint in ``source``, or a damaged one.
    """
    from rlkit.loop import Trainer
    from rlkit.plugins import Plugins

    _check_amount(amount)
    if finetune_steps < 1:
        raise ConfigError(f"prune: --finetune-steps must be at least 1 (got {finetune_steps}); "
                          f"the pruned network is fine-tuned for that many env steps.")
    plugins = plugins if plugins is not None else Plugins.load()
    file, state = ckpt.load_run(source)
    run_dir = Path(out_run_dir) if out_run_dir is not None else _default_run_dir(file, amount)
    experiment = _finetune_experiment(state["config"], file, finetune_steps, overrides, plugins)
    if FAMILIES.get(experiment.algorithm.name) in (None, "table"):
        acting_modules(None, experiment.algorithm.name)  # refused before any env is built
    if plugins.runner_for(experiment.algorithm.name) is not None:
        raise ConfigError(f"prune: {experiment.algorithm.name!r} trains in worker processes "
                          f"of its own, where the pruning masks cannot be kept during the "
                          f"fine-tune. Move it to an a2c run first (rlkit finetune RUN "
                          f"a2c.yaml: the same network), then prune that run.",
                          key="algorithm.name")
    trainer = Trainer(experiment, plugins, run_dir=run_dir, progress=progress)
    pruning = prune_modules(acting_modules(trainer.agent, experiment.algorithm.name), amount)
    pruning.attach(trainer.agent)
    trainer.transferred.append(f"pruned {amount:.0%} of the acting network's weights "
                               f"({len(pruning.masks)} layers, global L1 magnitude)")
    try:
        summary = dict(trainer.run())
    finally:
        pruning.detach(trainer.agent)
    reached, layers = pruning.sparsity()
    summary["pruning"] = {"amount": amount, "sparsity": reached, "layers": layers,
                          "finetune_steps": finetune_steps, "source": str(file)}
    (trainer.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return PruneResult(run_dir=trainer.run_dir, amount=amount, sparsity=reached,
                       layers=layers, summary=summary)


def _check_amount(amount: float) -> None:
    if not 0.0 < amount < 1.0:
        raise ConfigError(f"prune: --amount must lie strictly between 0 and 1 (the fraction of "
                          f"weights set to zero), got {amount}; e.g. --amount 0.5 for half.")


def _default_run_dir(file: Path, amount: float) -> Path:
    run = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    path = base = run.parent / f"{run.name}-pruned{round(amount * 100)}"
    suffix = 1
    while path.exists() and any(path.iterdir()):
        path, suffix = base.with_name(f"{base.name}-{suffix}"), suffix + 1
    return path


def _finetune_experiment(config: Mapping[str, Any], file: Path, steps: int,
                         overrides: Sequence[str], plugins: Plugins) -> Any:
    """The trained run's config as a fine-tune of it: ``init_from`` the checkpoint, the
    budget ``steps``, no early stop, then the user's overrides."""
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v)
                            for k, v in config.items()}
    data.pop("init_from", None)
    data["init_from"] = {"path": str(file)}
    data.setdefault("train", {})["total_steps"] = steps
    data.setdefault("eval", {})["target_return"] = None
    data.get("run", {}).pop("name", None)
    data = apply_overrides(data, overrides)
    try:
        return resolve(data, plugins, source=str(file))
    except ConfigError as exc:
        raise ConfigError(f"prune: the fine-tuning config (from {file}, with "
                          f"{', '.join(overrides) or 'no --set'}): {exc}", key=exc.key) from None
