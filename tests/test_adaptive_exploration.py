"""Adaptive exploration: the Page-Hinkley drop detector on synthetic return streams (detection
delay, false alarms, scale invariance), the controller's rise and decay law, exact checkpoint
round trips, and runs through the trainer for dqn (epsilon), ppo (entropy coefficient) and td3
(noise sigma and process)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlkit.config import resolve
from rlkit.exploration.adaptive import AdaptiveExploration, AdaptiveExplorationConfig
from rlkit.exploration.detectors import PageHinkley
from rlkit.exploration.noise import GaussianNoise, OrnsteinUhlenbeckNoise
from rlkit.loop import Trainer
from rlkit.schedules import Schedule
from rlkit.testing import check_exact_resume
from rlkit.validation import ConfigError

# --- the detector ------------------------------------------------------------------------


def alarms_on(stream: np.ndarray, **kwargs: Any) -> list[int]:
    """Indices of the returns at which the detector raised an alarm."""
    detector = PageHinkley(**kwargs)
    return [i for i, x in enumerate(stream) if detector.update(float(x))]


def test_a_halving_of_the_mean_is_detected_within_three_episodes():
    """Mean 100 with noise std 5 (5% of the mean) for 200 episodes, then mean 50: with the
    defaults (delta 0.5, threshold 12, memory 50) every one of 20 seeds alarms within 3
    episodes of the drop (measured: 2 or 3), and never before it."""
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        stream = np.concatenate([rng.normal(100, 5, 200), rng.normal(50, 5, 100)])
        alarms = alarms_on(stream)
        assert alarms, f"seed {seed}: drop not detected"
        assert 200 <= alarms[0] < 203, f"seed {seed}: first alarm at episode {alarms[0]}"


def test_a_two_standard_deviation_drop_is_detected_within_twenty_episodes():
    """A 10% drop with noise std 5% of the mean (2 std): detected within 20 episodes in each
    of 20 seeds (measured: 7 to 17)."""
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        stream = np.concatenate([rng.normal(100, 5, 200), rng.normal(90, 5, 100)])
        alarms = alarms_on(stream)
        assert alarms and 200 <= alarms[0] < 220, f"seed {seed}: alarms {alarms[:3]}"


def test_no_false_alarm_in_200k_episodes_of_stationary_noise():
    """20 seeds x 10,000 episodes of stationary Gaussian returns: 0 alarms (also measured: 0
    in 100 seeds, 1M episodes)."""
    for seed in range(20):
        stream = np.random.default_rng(seed).normal(100, 5, 10_000)
        assert alarms_on(stream) == [], f"seed {seed}"


def test_an_improving_stream_raises_no_alarm():
    """A learning curve (mean rising from 20 to 500 over 2,000 episodes, noise std 20) is not
    a drop."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        stream = np.linspace(20, 500, 2000) + rng.normal(0, 20, 2000)
        assert alarms_on(stream) == []


@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (3.2, -1600.0), (1e-3, 7.0)])
def test_detection_does_not_depend_on_the_scale_of_the_returns(scale, shift):
    """The test runs on standardised returns: shifting and scaling the stream (CartPole's
    0..500, Pendulum's -1,600..0) gives the same alarms."""
    rng = np.random.default_rng(7)
    stream = np.concatenate([rng.normal(100, 5, 300), rng.normal(70, 5, 50),
                             rng.normal(100, 5, 300)])
    reference = alarms_on(stream)
    assert reference and reference[0] >= 300
    assert alarms_on(stream * scale + shift) == reference


def test_a_constant_stream_needs_a_real_dip_to_alarm():
    """Returns that have become constant (500 every episode) do not alarm on a one-point dip:
    the standard deviation is floored at 2% of the observed range."""
    stream = np.concatenate([np.linspace(10, 500, 100), np.full(200, 500.0), [499.0],
                             np.full(50, 500.0)])
    assert alarms_on(stream) == []
    assert alarms_on(np.concatenate([stream, np.full(5, 250.0)]))


def test_the_detector_refuses_non_finite_returns():
    with pytest.raises(ValueError, match="not finite"):
        PageHinkley().update(float("nan"))


# --- the controller ----------------------------------------------------------------------

def controller(**params: Any) -> AdaptiveExploration:
    return AdaptiveExploration(AdaptiveExplorationConfig(**params), total_steps=1_000_000)


def learn_then(controller: AdaptiveExploration, after: list[float], step: int = 1000) -> int:
    """Noise-free returns: 20 episodes at 0 (the worst window) and 400 at 100 (the best, long
    enough for the detector to forget the jump) at env step ``step``, then ``after`` at
    ``2 * step``, which is returned."""
    controller.observe_returns(torch.tensor([0.0] * 20 + [100.0] * 400), step)
    controller.observe_returns(torch.tensor(after), 2 * step)
    return 2 * step


@pytest.mark.parametrize("drop_to", [75.0, 50.0, 10.0])
def test_the_level_rises_in_proportion_to_the_relative_drop(drop_to):
    """best 100, worst 0: a drop to 75 loses a quarter of the progress and adds gain / 4."""
    c = controller(base=0.05, ceiling=1.0, gain=0.4)
    step = learn_then(c, [drop_to] * 3)
    drop = (100.0 - drop_to) / 100.0
    assert c.alarms == 1
    assert c.value(step) == pytest.approx(0.05 + 0.4 * drop)
    m = c.metrics()
    assert m["best_mean"] == 100.0 and m["recent_mean"] == drop_to and m["alarms"] == 1.0
    assert (m["drop_from"], m["drop_to"]) == (100.0, drop_to)


def test_the_rise_stops_at_the_ceiling():
    c = controller(base=0.1, ceiling=0.3, gain=2.0)
    step = learn_then(c, [0.0] * 3)
    assert c.value(step) == pytest.approx(0.3)


def test_the_extra_level_halves_every_decay_steps_while_returns_stay_low():
    c = controller(base=0.05, ceiling=1.0, gain=0.4, decay=5000)
    step = learn_then(c, [50.0] * 3)
    assert c.value(step + 5000) == pytest.approx(0.05 + 0.2 / 2)
    assert c.value(step + 20_000) == pytest.approx(0.05 + 0.2 / 16)


def test_the_extra_level_decays_four_times_faster_once_returns_recover():
    c = controller(base=0.05, ceiling=1.0, gain=0.4, decay=5000, window=5)
    step = learn_then(c, [50.0] * 3, step=100)
    for _ in range(10):  # back at the best
        step += 100
        c.observe_returns(torch.tensor([100.0]), step)
    assert c.half_life == pytest.approx(5000 / 4)
    extra = c.value(step) - 0.05
    assert c.value(step + 1250) - 0.05 == pytest.approx(extra / 2)
    assert c.value(step + 40_000) == pytest.approx(0.05, abs=1e-9)


def test_a_scheduled_base_is_followed_and_never_cut_by_the_ceiling():
    c = AdaptiveExploration(AdaptiveExplorationConfig(
        base=Schedule(kind="linear", start=1.0, end=0.1), ceiling=0.5), total_steps=100_000)
    assert c.value(0) == 1.0 and c.value(100_000) == pytest.approx(0.1)
    learn_then(c, [0.0] * 3, step=10_000)  # a drop while base is still 0.82: no room to rise
    assert c.alarms == 1 and c.value(20_000) == pytest.approx(0.82)
    learn_then(c, [0.0] * 3, step=45_000)  # base 0.1 by now: the ceiling bounds the rise
    assert c.alarms == 2 and c.value(90_000) == pytest.approx(0.5)


def test_a_ceiling_below_the_base_is_refused_with_the_key_path(plugins):
    with pytest.raises(ConfigError, match=r"exploration.*ceiling \(0.05\) is below"):
        resolve({"algorithm": {"name": "dqn"}, "env": {"id": "CartPole-v1"},
                 "train": {"total_steps": 100},
                 "exploration": {"name": "adaptive", "base": 0.1, "ceiling": 0.05}}, plugins)


def test_it_is_the_noise_process_for_ddpg():
    cpu = torch.device("cpu")
    assert isinstance(controller().make_noise(3, 2, cpu), GaussianNoise)
    ou = controller(noise="ornstein_uhlenbeck", theta=0.3, dt=0.05).make_noise(3, 2, cpu)
    assert isinstance(ou, OrnsteinUhlenbeckNoise) and (ou.theta, ou.dt) == (0.3, 0.05)


def test_a_checkpoint_round_trip_gives_identical_subsequent_levels():
    """state_dict -> torch.save -> torch.load(weights_only=True) -> load_state_dict, in the
    middle of a decay after an alarm: the same returns then give exactly the same levels."""
    rng = np.random.default_rng(0)
    stream = np.concatenate([rng.normal(100, 5, 300), rng.normal(40, 5, 40),
                             rng.normal(100, 5, 200)])
    original = controller(decay=3000)
    for i, x in enumerate(stream[:320]):
        original.observe_returns(torch.tensor([x]), (i + 1) * 500)
    assert original.alarms >= 1
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = controller(decay=3000)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for i, x in enumerate(stream[320:], start=320):
        step = (i + 1) * 500
        for c in (original, restored):
            c.observe_returns(torch.tensor([x]), step)
        assert restored.value(step + 250) == original.value(step + 250)
        assert restored.metrics() == original.metrics()


def test_it_is_registered_as_adaptive(plugins):
    assert plugins.exploration_spec("adaptive").config is AdaptiveExplorationConfig


# --- through the trainer -----------------------------------------------------------------

SENSITIVE = {"name": "adaptive", "delta": 0.0, "threshold": 0.5, "memory": 4, "window": 2}
"""A detector that alarms on ordinary noise, so that short runs raise the level."""


def experiment(plugins, tmp_path: Path, algorithm: dict[str, Any], env_id: str,
               exploration: dict[str, Any], steps: int = 512):
    return resolve({
        "algorithm": algorithm,
        "backbone": {"name": "mlp", "hidden_sizes": [32, 32]},
        "exploration": exploration,
        "env": {"id": env_id, "num_envs": 2},
        "train": {"total_steps": steps, "seed": 0, "nan_check": "raise", "log_every": 64,
                  "device": "cpu"},
        "eval": {"every": 0, "episodes": 2},
        "run": {"dir": str(tmp_path)},
    }, plugins)


def explore_scalars(run_dir: Path) -> dict[str, list[float]]:
    """The run's ``explore/...`` scalars by tag, from scalars.csv."""
    found: dict[str, list[float]] = {}
    with (run_dir / "scalars.csv").open() as f:
        for row in csv.DictReader(f):
            if row["tag"].startswith("explore/"):
                found.setdefault(row["tag"], []).append(float(row["value"]))
    return found


DQN = {"name": "dqn", "learning_starts": 64, "train_freq": 16, "gradient_steps": 2,
       "batch_size": 32, "target_update_interval": 50, "buffer_size": 500}


def test_dqn_epsilon_follows_the_controller_and_the_run_logs_it(plugins, tmp_path, capsys):
    exp = experiment(plugins, tmp_path, DQN, "CartPole-v1",
                     {**SENSITIVE, "base": 0.05, "ceiling": 0.6, "gain": 1.0})
    trainer = Trainer(exp, plugins, run_dir=tmp_path / "dqn", progress=False)
    summary = trainer.run()
    assert summary["status"] == "finished"
    assert trainer.agent.exploration_knob == "epsilon"
    assert trainer.agent.epsilon == trainer.exploration.value(trainer.agent.env_steps)
    scalars = explore_scalars(tmp_path / "dqn")
    assert {"explore/level", "explore/statistic", "explore/alarms"} <= set(scalars)
    assert max(scalars["explore/alarms"]) >= 1 and max(scalars["explore/level"]) > 0.05
    assert "exploration raised to" in capsys.readouterr().err


def test_dqn_with_adaptive_exploration_resumes_exactly(plugins, tmp_path):
    exp = experiment(plugins, tmp_path, DQN, "CartPole-v1", {**SENSITIVE, "base": 0.05},
                     steps=600)
    check_exact_resume(exp, plugins, tmp_path)


def test_ppo_entropy_coefficient_follows_the_controller(plugins, tmp_path):
    exp = experiment(plugins, tmp_path,
                     {"name": "ppo", "n_steps": 16, "batch_size": 16, "n_epochs": 1},
                     "CartPole-v1", {**SENSITIVE, "base": 0.0, "ceiling": 0.05, "gain": 0.1},
                     steps=256)
    trainer = Trainer(exp, plugins, run_dir=tmp_path / "ppo", progress=False)
    assert trainer.run()["status"] == "finished"
    assert trainer.agent.exploration_knob == "ent_coef"
    levels = explore_scalars(tmp_path / "ppo")["explore/level"]
    assert levels and all(0.0 <= v <= 0.05 for v in levels)


def test_td3_noise_sigma_and_process_come_from_the_controller(plugins, tmp_path):
    exp = experiment(plugins, tmp_path,
                     {"name": "td3", "learning_starts": 64, "batch_size": 32,
                      "buffer_size": 1000, "train_freq": 16, "gradient_steps": 1},
                     "Pendulum-v1", {"name": "adaptive", "base": 0.1, "ceiling": 0.4,
                                     "noise": "ornstein_uhlenbeck", "theta": 0.2},
                     steps=512)
    trainer = Trainer(exp, plugins, run_dir=tmp_path / "td3", progress=False)
    assert trainer.run()["status"] == "finished"
    agent = trainer.agent
    assert agent.exploration_knob == "noise_sigma"
    assert isinstance(agent.noise, OrnsteinUhlenbeckNoise) and agent.noise.theta == 0.2
    levels = explore_scalars(tmp_path / "td3")["explore/level"]
    assert levels and all(v == pytest.approx(0.1) for v in levels)  # no drop in 512 steps
