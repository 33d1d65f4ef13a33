"""Advantage actor-critic: A2C (synchronous) and A3C (asynchronous; Mnih et al., 2016,
https://arxiv.org/abs/1602.01783).

Both collect ``n_steps`` steps from their environments, then take **one** gradient step on::

    R_t     = r_t + gamma * R_{t+1}          (R_n = V(s_n) bootstrapped; 0 after termination)
    A_t     = R_t - V(s_t)                    (GAE with gae_lambda = 1; lower it for GAE)
    L       = -mean(A_t * log pi(a_t | s_t)) + vf_coef * 0.5 * mean((V(s_t) - R_t)^2)
              - ent_coef * mean(entropy)

* ``a2c`` -- one learner, ``N`` environments stepped as a batch, one gradient step per
  ``n_steps * N`` env steps. It is driven by the standard loop like every algorithm.
* ``a3c`` -- ``num_workers`` actor-learners, each with its own environments
  (``env.num_envs`` each) and a local copy of the network. After each ``n_steps`` a worker
  computes the gradient on its copy, applies it to the **global** network with the shared
  optimizer (its RMSprop or Adam statistics live in shared memory too), and copies the global
  weights back; workers never wait for each other (lock-free, "Hogwild"), unless ``lock:
  true``. The runner that owns the workers is :mod:`rlkit.runners.a3c` (processes, or Ray
  actors with ``backend: ray``).

How the update is computed: by PPO's machinery (:class:`rlkit.algorithms.ppo.PPO`) with one
epoch over the whole rollout as a single batch. Before any gradient step the probability ratio
``pi / pi_old`` is exactly 1, so the gradient of PPO's clipped surrogate is exactly
``-A_t * grad log pi(a_t | s_t)``, the policy gradient above (``tests/test_a3c.py`` checks it
against a direct implementation). Recurrent backbones (``lstm``, ``gru``: the paper's
A3C-LSTM) therefore work as for PPO: the rollout is one sequence per env from the state stored
at its start.

Determinism: ``a2c``, and ``a3c`` with one worker, give the same result for the same seed and
resume exactly. With several workers the order in which their gradients reach the global
network depends on the operating system's scheduling, so two runs differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rlkit.algorithms.ppo import PPO, PPOConfig
from rlkit.interfaces import BuildContext
from rlkit.optim import OptimizerConfig
from rlkit.validation import param

__all__ = ["A2C", "A2CConfig", "A3CConfig", "build_a2c"]


def _rmsprop() -> OptimizerConfig:
    return OptimizerConfig(name="rmsprop", lr=7e-4, alpha=0.99, eps=1e-5)


@dataclass(kw_only=True)
class A2CConfig:
    """Advantage actor-critic, synchronous: one gradient step per batched n-step rollout."""

    n_steps: int = param(5, ge=1)
    """Steps collected from each environment before each gradient step (the paper's t_max)."""
    gamma: float = param(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    gae_lambda: float = param(1.0, ge=0.0, le=1.0)
    """1: n-step returns, as in the paper; lower: GAE (Schulman et al., 2016)."""
    ent_coef: float = param(0.0, ge=0.0)
    """Entropy bonus coefficient (an ``exploration:`` controller, when configured, sets it)."""
    vf_coef: float = param(0.5, ge=0.0)
    """Weight of the value loss ``0.5 * (V - R)^2`` (SB3's A2C has no 0.5: its vf_coef 0.5 is
    1.0 here)."""
    max_grad_norm: float | None = param(0.5, gt=0.0)
    """Clip the global gradient norm (of each worker's gradient, for a3c) to this."""
    normalize_advantage: bool = False
    """Normalize the advantages of each rollout to zero mean and unit std."""
    share_backbone: bool = False
    """One backbone for policy and value (True, the paper's network) or one each (False)."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (continuous actions)."""
    optimizer: OptimizerConfig = field(default_factory=_rmsprop)
    """Optimizer and learning rate (a number or a schedule); RMSprop as in the paper."""

    def ppo_config(self, num_envs: int) -> PPOConfig:
        """The PPO settings that compute exactly this update (see the module docstring)."""
        return PPOConfig(
            n_steps=self.n_steps, batch_size=max(self.n_steps * num_envs, 2), n_epochs=1,
            gamma=self.gamma, gae_lambda=self.gae_lambda, clip_coef=1.0, clip_vf=None,
            normalize_advantage=self.normalize_advantage and self.n_steps * num_envs > 1,
            ent_coef=self.ent_coef, vf_coef=self.vf_coef, max_grad_norm=self.max_grad_norm,
            target_kl=None, share_backbone=self.share_backbone, log_std_init=self.log_std_init,
            seq_len=None, optimizer=self.optimizer)


@dataclass(kw_only=True)
class A3CConfig(A2CConfig):
    """Asynchronous advantage actor-critic: workers apply their gradients to a shared model."""

    num_workers: int = param(2, ge=1)
    """Actor-learners running at once, each with ``env.num_envs`` environments."""
    backend: Literal["processes", "ray"] = "processes"
    """Where workers run: processes on this machine (torch.multiprocessing, shared memory), or
    Ray actors (``pip install "rlkit[ray]"``; a local Ray or the cluster at ``RAY_ADDRESS``)
    with the global model in a parameter-server actor."""
    lock: bool = False
    """Apply each gradient under a lock (processes); false: lock-free, as in the paper. The
    Ray parameter server applies one gradient at a time either way."""
    on_worker_failure: Literal["restart", "stop"] = "restart"
    """A worker that raises, dies or hangs is restarted (up to max_restarts times, then the run
    stops) or stops the run at once. Either way a checkpoint of the global model is written."""
    max_restarts: int = param(3, ge=0)
    """Restarts allowed per worker before the run stops."""
    worker_timeout: float = param(60.0, gt=0.0)
    """Seconds a worker may go without reporting (or without reaching a hold) before it counts
    as hung: it is killed and handled as a failure."""
    start_method: Literal["spawn", "forkserver", "fork"] = "spawn"
    """How worker processes start (backend processes); spawn is safe everywhere."""
    worker_cpus: float = param(1.0, gt=0.0)
    """CPUs Ray reserves for each worker actor (backend ray; fractions let more workers share
    a CPU)."""


class A2C(PPO):
    """The A2C agent (ask/tell); also each A3C worker's local learner and the A3C global
    agent. See the module docstring for the update."""

    name = "a2c"

    def __init__(self, config: A2CConfig, ctx: BuildContext) -> None:
        self.a2c_config = config
        self.name = "a3c" if isinstance(config, A3CConfig) else "a2c"
        super().__init__(config.ppo_config(ctx.env.num_envs), ctx)
        self.worker_states: list[dict[str, Any] | None] | None = None
        """A3C: each worker's state (envs, RNG, recurrent memory...) at the last hold, kept in
        checkpoints so that a resumed run continues each worker where it was."""

    def update(self) -> dict[str, float]:
        metrics = super().update()
        for key in ("train/approx_kl", "train/clip_fraction", "train/clip_coef"):
            metrics.pop(key, None)  # always 0 (one step from the rollout's policy)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.worker_states is not None:
            state["workers"] = list(self.worker_states)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        workers = state.get("workers")
        self.worker_states = None if workers is None else list(workers)


def build_a2c(params: A2CConfig, ctx: BuildContext) -> A2C:
    """Build an :class:`A2C` agent (the A3C global agent when ``params`` is an
    :class:`A3CConfig`; its workers are started by the ``a3c`` runner)."""
    return A2C(params, ctx)
