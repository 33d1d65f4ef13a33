"""Policy distillation: a smaller student learns to act as a trained teacher does.

:func:`distill` builds the student an experiment file describes (any built-in algorithm with a
feed-forward backbone: ``ppo``/``a2c`` with ``backbone.hidden_sizes: [16]``, ``dqn``,
``ddpg``/``td3``) and trains its network supervised on the teacher's labels::

    result = distill("runs/ppo-CartPole-v1-20261124-221500", "student.yaml", steps=20000)
    result.run_dir, result.summary["final_eval_return_mean"]

**From the states the student visits** (DAgger, Ross et al., 2011,
https://arxiv.org/abs/1011.0686): the student acts in its own envs (``epsilon``: a uniformly
random action with that probability, discrete actions; ``noise``: Gaussian noise of that
fraction of the half range, continuous actions), every visited state is labelled by the
teacher and kept in an aggregate dataset of the last ``dataset_size`` states, and after each
rollout of ``rollout_steps`` steps per env the student takes ``epochs`` passes' worth of
minibatch gradient steps over it. States a teacher-driven rollout would never reach -- where
the student's own mistakes lead -- are labelled too, so the student learns to recover.

**The loss**, with its own Adam optimizer (the student agent's optimizer is left fresh):

* discrete actions: cross-entropy between the student's output (logits, or a Q network's
  values read as logits) and the teacher's greedy action;
* continuous actions: squared difference between the student's and the teacher's action, as
  a fraction of the action range;
* plus, where both are actor-critics, ``value_coef`` times the squared difference of their
  values ``V(s)`` (both divided by the spread of the teacher's values in the minibatch), so
  the student's critic is ready for fine-tuning with its own algorithm.

**The run directory** is made by the trainer (:class:`~rlkit.loop.Trainer`) from the student's
experiment, and the checkpoint is the trainer's own, so ``rlkit eval``, ``rlkit export``,
:func:`~rlkit.deploy.policy.load_policy` and ``rlkit finetune`` take it as any other run.
Evaluation follows the student's ``eval`` section (every ``eval.every`` env steps, an early
stop at ``eval.target_return``); the final evaluation is repeated for the teacher with the
same seed, and ``summary.json`` adds ``distillation``: the teacher, its return on those
episodes, the fraction the student keeps (where the teacher's return is positive) and both
networks' parameter counts.

The student's env section must give the observations and actions the teacher was trained
on (the same spaces; an error says which differs). Recurrent backbones are not distilled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlkit.deploy.compress import acting_modules
from rlkit.deploy.policy import FAMILIES
from rlkit.validation import ConfigError

if TYPE_CHECKING:
    from rlkit.config import Experiment
    from rlkit.loop import Trainer
    from rlkit.plugins import Plugins

__all__ = ["DistillResult", "Network", "count_parameters", "distill"]


@dataclass
class DistillResult:
    """What :func:`distill` did.

    :param run_dir: the student's run directory.
    :param summary: its ``summary.json``.
    :param teacher_parameters: parameters of the teacher's acting network.
    :param student_parameters: parameters of the student's acting network.
    """

    run_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    teacher_parameters: int = 0
    student_parameters: int = 0


class Network:
    """One agent's network as distillation sees it: the policy output and value for a batch
    of observations, the action that output means, the parameters to train.

    :param agent: a built-in agent with a feed-forward backbone.
    :param algorithm: its registered name (which says where its network is).
    :param action_space: one action's space.
    :param who: ``teacher`` or ``student``, for messages.
    """

    def __init__(self, agent: Any, algorithm: str, action_space: gym.Space[Any],
                 who: str) -> None:
        family = FAMILIES.get(algorithm)
        if family in (None, "table"):
            known = ", ".join(n for n, f in FAMILIES.items() if f != "table")
            raise ConfigError(f"distill: the {who}'s algorithm {algorithm!r} has no network "
                              f"rlkit can distill; use one of {known}.", key="algorithm.name")
        self.family = family
        self.agent = agent
        self.acting = acting_modules(agent, algorithm)
        if any(getattr(m, "recurrent", False) is True for m in self.acting.values()):
            raise ConfigError(f"distill: the {who} has a recurrent backbone; distillation "
                              f"labels single states, so it needs feed-forward backbones (mlp, "
                              f"cnn) on both sides.", key="backbone.name")
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.start = int(action_space.start) if isinstance(  # type: ignore[attr-defined]
            action_space, gym.spaces.Discrete) else 0
        if isinstance(action_space, gym.spaces.Box):
            device = next(iter(self.parameters())).device
            self.low = torch.as_tensor(action_space.low, device=device).reshape(-1)
            self.high = torch.as_tensor(action_space.high, device=device).reshape(-1)

    @property
    def has_value(self) -> bool:
        return self.family == "actor_critic"

    def parameters(self) -> list[nn.Parameter]:
        """What the student trains: every parameter of its policy (and value) network."""
        if self.family == "actor_critic":
            return list(self.agent.model.parameters())
        return [p for m in self.acting.values() for p in m.parameters()]

    def outputs(self, obs: Tensor) -> tuple[Tensor, Tensor | None]:
        """The policy output (logits, Q-values, Gaussian mean, pre-``tanh``) and ``V(obs)``."""
        if self.family == "actor_critic":
            out, value = self.agent.model(obs)
            return out, value
        if self.family == "q_network":
            return self.agent.q(obs), None
        actor = self.agent.actor
        return actor.head(actor.backbone(obs)), None

    def action(self, out: Tensor) -> Tensor:
        """The action ``out`` stands for: discrete, the greedy index (without the space's
        start); continuous, in the env's units (differentiable; PPO's mean unclipped)."""
        if self.discrete:
            return out.argmax(dim=-1)
        if self.family == "actor":
            return self.low + (torch.tanh(out) + 1.0) * 0.5 * (self.high - self.low)
        return out

    def env_action(self, out: Tensor) -> Tensor:
        """What the env gets for ``out``."""
        action = self.action(out)
        if self.discrete:
            return action + self.start if self.start else action
        return torch.maximum(torch.minimum(action, self.high), self.low)


def count_parameters(modules: dict[str, nn.Module]) -> int:
    """Parameters of the acting network (shared modules counted once)."""
    seen: set[int] = set()
    total = 0
    for module in modules.values():
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


@dataclass(kw_only=True)
class Settings:
    """The supervised loop's settings (see the module docstring)."""

    steps: int
    epsilon: float = 0.05
    noise: float = 0.1
    rollout_steps: int = 16
    epochs: int = 4
    batch_size: int = 256
    lr: float = 1e-3
    value_coef: float = 0.5
    dataset_size: int = 50_000


def distill(
    teacher: str | Path,
    student: str | Path,
    steps: int | None = None,
    *,
    overrides: Sequence[str] = (),
    run_dir: str | Path | None = None,
    plugins: Plugins | None = None,
    progress: bool = False,
    epsilon: float = 0.05,
    noise: float = 0.1,
    lr: float = 1e-3,
    batch_size: int = 256,
    epochs: int = 4,
    rollout_steps: int = 16,
    value_coef: float = 0.5,
    dataset_size: int = 50_000,
    trust_config: bool = False,
) -> DistillResult:
    """Train the student ``student`` (an experiment file) to act as the trained ``teacher``
    does; see the module docstring.

    :param teacher: the teacher's run directory (its newest checkpoint that loads) or
        checkpoint file.
    :param student: the student's experiment file.
    :param steps: env steps of the student's rollouts (default: its ``train.total_steps``).
    :param overrides: ``key.path=value`` settings for the student's experiment.
    :param run_dir: the student's run directory (default: ``run.dir/<generated name>``).
    :param progress: show a progress bar (or progress lines off a terminal).
    :param epsilon: discrete actions: the probability of a random action while rolling out.
    :param noise: continuous actions: Gaussian noise, as a fraction of the half range.
    :param lr: the supervised optimizer's (Adam) learning rate.
    :param batch_size: states per gradient step.
    :param epochs: passes' worth of gradient steps per rollout (over the rollout's size).
    :param rollout_steps: steps per env between two rounds of gradient steps.
    :param value_coef: the weight of the value loss (actor-critics on both sides).
    :param dataset_size: the aggregate dataset keeps the most recent this many states.
    :param trust_config: load a teacher whose stored config imports modules or uses wrappers
        that neither gymnasium nor a plugin provides (only for runs you trust).
    :raises ConfigError: spaces that differ, a recurrent backbone, an algorithm without a
        known network, settings out of range.
    :raises CheckpointError: no checkpoint in ``teacher``, or a damaged one.
    """
    from rlkit.config import load_experiment
    from rlkit.loop import Trainer, load_agent
    from rlkit.plugins import Plugins

    plugins = plugins if plugins is not None else Plugins.load()
    if steps is not None and steps >= 1:  # the run's budget, as its config.yaml records it
        overrides = [*overrides, f"train.total_steps={steps}"]  # (_check refuses the others)
    experiment = load_experiment(student, plugins, overrides)
    settings = Settings(steps=steps if steps is not None else experiment.train.total_steps,
                        epsilon=epsilon, noise=noise, rollout_steps=rollout_steps,
                        epochs=epochs, batch_size=batch_size, lr=lr, value_coef=value_coef,
                        dataset_size=dataset_size)
    _check(settings)
    teacher_agent, teacher_experiment = load_agent(teacher, plugins,
                                                   device=experiment.train.device,
                                                   trust_config=trust_config)
    teacher_spaces = _spaces(teacher_experiment)
    _check_spaces(teacher_spaces, _spaces(experiment), teacher_experiment, experiment)
    t_net = Network(teacher_agent, teacher_experiment.algorithm.name, teacher_spaces[1],
                    "teacher")
    if FAMILIES.get(experiment.algorithm.name) in (None, "table"):  # before a run dir exists
        Network(None, experiment.algorithm.name, teacher_spaces[1], "student")
    trainer = Trainer(experiment, plugins, run_dir=None if run_dir is None else Path(run_dir),
                      progress=progress)
    try:
        s_net = Network(trainer.agent, experiment.algorithm.name,
                        trainer.env.single_action_space, "student")
    except ConfigError:
        trainer.env.close()
        trainer._eval_env.close()
        raise
    for module in t_net.acting.values():
        module.eval()
    source = str(teacher_experiment.source or teacher)
    trainer.transferred.append(f"distilling {source} ({teacher_experiment.algorithm.name}, "
                               f"{count_parameters(t_net.acting):,} parameters) into "
                               f"{experiment.algorithm.name} ({count_parameters(s_net.acting):,}"
                               f" parameters)")
    summary = _Loop(trainer, t_net, s_net, settings, source).run()
    return DistillResult(run_dir=trainer.run_dir, summary=summary,
                         teacher_parameters=summary["distillation"]["teacher_parameters"],
                         student_parameters=summary["distillation"]["student_parameters"])


def _check(settings: Settings) -> None:
    problems = []
    if settings.steps < 1:
        problems.append(f"--steps must be at least 1 (got {settings.steps})")
    if not 0.0 <= settings.epsilon <= 1.0:
        problems.append(f"epsilon must lie in [0, 1] (got {settings.epsilon})")
    if settings.noise < 0.0:
        problems.append(f"noise must be at least 0 (got {settings.noise})")
    for name in ("rollout_steps", "epochs", "batch_size", "dataset_size"):
        if getattr(settings, name) < 1:
            problems.append(f"{name} must be at least 1 (got {getattr(settings, name)})")
    if settings.lr <= 0.0 or settings.value_coef < 0.0:
        problems.append("lr must be positive and value_coef at least 0")
    if problems:
        raise ConfigError("distill: " + "; ".join(problems) + ".")


def _spaces(experiment: Experiment) -> tuple[gym.Space[Any], gym.Space[Any]]:
    """The spaces of one copy of ``experiment``'s env (what its agent was built for)."""
    from rlkit.environments import make_env
    from rlkit.loop import env_options

    env = make_env(env_options(experiment, for_eval=True), num_envs=1)
    try:
        return env.single_observation_space, env.single_action_space
    finally:
        env.close()


def _check_spaces(teacher: tuple[gym.Space[Any], gym.Space[Any]],
                  student: tuple[gym.Space[Any], gym.Space[Any]], teacher_experiment: Experiment,
                  experiment: Experiment) -> None:
    for what, t, s in (("observation", teacher[0], student[0]),
                       ("action", teacher[1], student[1])):
        if t != s:
            raise ConfigError(
                f"distill: the student's {what} space {s} (env.id {experiment.env.id!r} in "
                f"{experiment.source}) differs from the teacher's {t} (env.id "
                f"{teacher_experiment.env.id!r} in {teacher_experiment.source}); the student "
                f"learns the teacher's actions for the same observations, so use the teacher's "
                f"env section (id, kwargs, wrappers) in the student's file.", key="env.id",
                source=str(experiment.source))


def _sync_targets(agent: Any) -> None:
    """Target networks (``q_target``, ``actor_target``) start as copies of the networks the
    student learned, as after a fresh build, so that fine-tuning it starts consistent."""
    for name in ("q", "actor"):
        online, target = getattr(agent, name, None), getattr(agent, f"{name}_target", None)
        if isinstance(online, nn.Module) and isinstance(target, nn.Module):
            target.load_state_dict(online.state_dict())


class _Loop:
    """The DAgger loop: roll out the student, label with the teacher, fit, evaluate."""

    def __init__(self, trainer: Trainer, teacher: Network, student: Network,
                 settings: Settings, source: str) -> None:
        self.trainer, self.teacher, self.student, self.s = trainer, teacher, student, settings
        self.source = source
        self.params = student.parameters()
        self.optimizer = torch.optim.Adam(self.params, lr=settings.lr)
        self.values = teacher.has_value and student.has_value
        self.device = trainer.device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(trainer.experiment.train.seed)
        env = trainer.env
        obs_space = env.single_observation_space
        shape = tuple(obs_space.shape or ())
        capacity = settings.dataset_size
        from rlkit.environments import _torch_dtype

        self.obs = torch.zeros((capacity, *shape), dtype=_torch_dtype(obs_space),
                               device=self.device)
        act_shape = () if student.discrete else (int(student.low.numel()),)
        self.labels = torch.zeros((capacity, *act_shape), device=self.device,
                                  dtype=torch.long if student.discrete else torch.float32)
        self.label_values = torch.zeros(capacity, device=self.device)
        self.size = self.cursor = 0

    def run(self) -> dict[str, Any]:
        """Distil inside the trainer's own loop (:meth:`Trainer.custom_loop`): its logging,
        Ctrl-C and crash checkpoints, final evaluation and ``summary.json``."""
        self.trainer.summary_extra["distillation"] = self._report(None)
        return self.trainer.custom_loop(self._train)

    def _report(self, teacher_eval: float | None) -> dict[str, Any]:
        s, last = self.s, self.trainer.last_eval
        student_return = None if last is None else last.mean
        return {
            "teacher": self.source,
            "teacher_eval_return_mean": teacher_eval,
            # a ratio of returns means "kept" only where the teacher's return is positive
            "retained": (student_return / teacher_eval if teacher_eval is not None and
                         teacher_eval > 0 and student_return is not None else None),
            "teacher_parameters": count_parameters(self.teacher.acting),
            "student_parameters": count_parameters(self.student.acting),
            "settings": {k: getattr(s, k) for k in s.__dataclass_fields__},
        }

    def _train(self, logger: Any, limit: int, stop_at_target: bool) -> None:
        """The loop body: rounds of rollouts and fitting until ``limit``, the target or a
        stop; then, once done, the final evaluation beside the teacher's on its episodes."""
        trainer, s = self.trainer, self.s
        exp = trainer.experiment
        env = trainer.env
        n = env.num_envs
        obs = trainer.obs if trainer.obs is not None else env.reset(seed=exp.train.seed)
        every = exp.eval.every
        next_eval = every if every else math.inf
        rollout = s.rollout_steps * n
        grad_steps = max(1, math.ceil(rollout / s.batch_size)) * s.epochs
        started, done_steps = time.perf_counter(), trainer.env_steps
        try:
            while trainer.env_steps < limit and not trainer.stop_requested:
                with trainer.stepping():
                    with torch.no_grad():
                        for _ in range(s.rollout_steps):
                            action = self._label_and_act(obs)
                            step = env.step(action)
                            trainer.stats.record(step.reward, step.terminated, step.truncated,
                                                 step.valid)
                            obs = trainer.obs = step.obs
                            trainer.env_steps += n
                    metrics = {k: 0.0 for k in ("distill/loss", "distill/policy_loss",
                                                "distill/value_loss", "distill/agreement")}
                    for _ in range(grad_steps):
                        for key, value in self._fit().items():
                            metrics[key] += value / grad_steps
                metrics["distill/dataset_size"] = float(self.size)
                logger.scalars(metrics, trainer.env_steps)
                rollout_metrics, _ = trainer.stats.drain()
                if rollout_metrics:
                    logger.last_return = rollout_metrics["rollout/ep_return_mean"]
                sps = (trainer.env_steps - done_steps) / max(time.perf_counter() - started,
                                                             1e-9)
                rollout_metrics["time/steps_per_second"] = sps
                logger.scalars(rollout_metrics, trainer.env_steps)
                logger.advance(trainer.env_steps, sps)
                if trainer.env_steps >= next_eval:
                    next_eval = (trainer.env_steps // every + 1) * every
                    _sync_targets(self.student.agent)
                    trainer.evaluate(logger)
                    if stop_at_target and trainer.target_reached:
                        break
        finally:
            _sync_targets(self.student.agent)  # the checkpoint holds the student as trained
        if trainer.stop_requested:
            return
        seed = exp.train.seed * 7919 + 1_000_003 + trainer.evaluations
        if trainer.last_eval_step != trainer.env_steps or trainer.last_eval is None:
            trainer.evaluate(logger)
        else:
            seed -= 1  # the last evaluation was the final one
        trainer.summary_extra["distillation"] = self._report(self._evaluate_teacher(seed))

    def _label_and_act(self, obs: Tensor) -> Tensor:
        """Store ``obs`` with the teacher's labels; the student's exploring action."""
        t_out, t_value = self.teacher.outputs(obs)
        label = self.teacher.action(t_out)
        if not self.student.discrete:
            label = torch.maximum(torch.minimum(label, self.student.high), self.student.low)
        n = obs.shape[0]
        rows = (torch.arange(n, device=self.device) + self.cursor) % self.s.dataset_size
        self.obs[rows] = obs
        self.labels[rows] = label.reshape(self.labels[rows].shape).to(self.labels.dtype)
        if t_value is not None:
            self.label_values[rows] = t_value.float()
        self.cursor = (self.cursor + n) % self.s.dataset_size
        self.size = min(self.size + n, self.s.dataset_size)
        s_out, _ = self.student.outputs(obs)
        action = self.student.env_action(s_out)
        if self.student.discrete:
            if self.s.epsilon > 0.0:
                n_actions = s_out.shape[-1]
                explore = torch.rand(n, generator=self.generator,
                                     device=self.device) < self.s.epsilon
                random = torch.randint(n_actions, (n,), generator=self.generator,
                                       device=self.device) + self.student.start
                action = torch.where(explore, random, action)
            return action
        if self.s.noise > 0.0:
            half = (self.student.high - self.student.low) * 0.5
            z = torch.randn(action.shape, generator=self.generator, device=self.device)
            action = action + z * self.s.noise * half
            action = torch.maximum(torch.minimum(action, self.student.high), self.student.low)
        return action

    def _fit(self) -> dict[str, float]:
        """One minibatch gradient step on the aggregate dataset."""
        rows = torch.randint(self.size, (min(self.s.batch_size, self.size),),
                             generator=self.generator, device=self.device)
        obs, labels = self.obs[rows], self.labels[rows]
        out, value = self.student.outputs(obs)
        if self.student.discrete:
            policy_loss = F.cross_entropy(out, labels)
            agreement = (out.argmax(dim=-1) == labels).float().mean()
        else:
            span = (self.student.high - self.student.low).clamp_min(1e-6)
            diff = (self.student.action(out) - labels) / span
            policy_loss = diff.pow(2).mean()
            agreement = (diff.abs().amax(dim=-1) < 0.05).float().mean()
        loss = policy_loss
        value_loss = torch.zeros(())
        if self.values and value is not None and self.s.value_coef > 0.0:
            target = self.label_values[rows]
            scale = target.std().clamp_min(1.0) if target.numel() > 1 else torch.ones(())
            value_loss = F.mse_loss(value / scale, target / scale)
            loss = loss + self.s.value_coef * value_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"distill/loss": loss.item(), "distill/policy_loss": policy_loss.item(),
                "distill/value_loss": value_loss.item(), "distill/agreement": agreement.item()}

    def _evaluate_teacher(self, seed: int) -> float | None:
        """The teacher's mean return on the episodes of the student's final evaluation."""
        from rlkit.evaluation import evaluate

        trainer = self.trainer
        exp = trainer.experiment
        try:
            result = evaluate(self.teacher.agent, trainer._eval_env, episodes=exp.eval.episodes,
                              seed=seed, deterministic=exp.eval.deterministic)
        except Exception:  # a teacher that cannot act in these envs: the figure is left out
            return None
        return result.mean
