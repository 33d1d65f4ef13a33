"""Config errors name the key path, say what was expected and never print a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlkit.config import apply_overrides, load_experiment, read_yaml, resolve
from rlkit.validation import ConfigError

BASE = {
    "algorithm": {"name": "ppo", "n_steps": 16},
    "env": {"id": "CartPole-v1", "num_envs": 2},
    "train": {"total_steps": 1000},
}


def with_(path: str, value) -> dict:
    return apply_overrides(BASE, [f"{path}={value}"])


def error(data, plugins) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(data, plugins)
    return str(info.value)


def test_valid_config_fills_defaults(plugins):
    exp = resolve(BASE, plugins)
    assert exp.algorithm.params.n_steps == 16
    assert exp.algorithm.params.gamma == 0.99
    assert exp.backbone.name == "mlp" and exp.backbone.params.hidden_sizes == [64, 64]
    data = exp.to_data()
    assert data["algorithm"]["name"] == "ppo" and data["train"]["seed"] == 0
    assert resolve(data, plugins).to_data() == data  # the written config round-trips


def test_unknown_key_names_full_path_and_closest_name(plugins):
    msg = error(with_("algorithm.optimizer.lerning_rate", 0.1), plugins)
    assert "algorithm.optimizer.lerning_rate" in msg
    assert "unknown key" in msg
    msg = error(with_("algorithm.n_step", 8), plugins)
    assert "algorithm.n_step" in msg and "Did you mean 'n_steps'" in msg


def test_unknown_section_suggests(plugins):
    msg = error({**BASE, "evaluation": {"every": 5}}, plugins)
    assert "evaluation" in msg and "'eval'" in msg


def test_wrong_type_names_path_and_expectation(plugins):
    msg = error(with_("algorithm.n_steps", "many"), plugins)
    assert msg.startswith("algorithm.n_steps:") and "expected an integer" in msg
    msg = error(with_("algorithm.normalize_advantage", "maybe"), plugins)
    assert "algorithm.normalize_advantage" in msg and "true or false" in msg
    msg = error(with_("backbone.hidden_sizes", "big"), plugins)
    assert "backbone.hidden_sizes" in msg and "expected a list" in msg


def test_out_of_range_names_bound(plugins):
    msg = error(with_("algorithm.gamma", 1.5), plugins)
    assert "algorithm.gamma" in msg and "<= 1.0" in msg
    msg = error(with_("env.num_envs", 0), plugins)
    assert "env.num_envs" in msg and ">= 1" in msg


def test_literal_choice_suggests(plugins):
    msg = error(with_("algorithm.optimizer.name", "adan"), plugins)
    assert "algorithm.optimizer.name" in msg and "'adam'" in msg and "sgd" in msg


def test_unknown_algorithm_lists_available(plugins):
    msg = error(with_("algorithm.name", "ppo2"), plugins)
    assert "algorithm.name" in msg and "'ppo2'" in msg
    for name in ("ppo", "dqn", "qlearning", "sarsa"):
        assert name in msg
    msg = error(with_("backbone.name", "transformer"), plugins)
    assert "backbone.name" in msg and "mlp" in msg


def test_missing_required(plugins):
    msg = error({k: v for k, v in BASE.items() if k != "env"}, plugins)
    assert msg.startswith("env:") and "missing" in msg
    msg = error({**BASE, "train": {}}, plugins)
    assert "train.total_steps" in msg and "missing" in msg


def test_schedule_or_number(plugins):
    exp = resolve(with_("algorithm.clip_coef", "{kind: linear, start: 0.3, end: 0.1}"), plugins)
    assert exp.algorithm.params.clip_coef.start == 0.3
    msg = error(with_("algorithm.clip_coef", "{kind: linear, strat: 0.3}"), plugins)
    assert "algorithm.clip_coef.strat" in msg and "'start'" in msg


def test_overrides_parse_yaml_values():
    data = apply_overrides(BASE, ["train.seed=7", "algorithm.optimizer.lr=1e-3",
                                  "backbone.hidden_sizes=[8, 8]", "eval.target_return=475"])
    assert data["train"]["seed"] == 7
    assert data["backbone"]["hidden_sizes"] == [8, 8]
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        apply_overrides(BASE, ["train.seed"])


def test_yaml_files_are_read_safely(tmp_path: Path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("algorithm: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="evil.yaml"):
        read_yaml(evil)
    broken = tmp_path / "broken.yaml"
    broken.write_text("algorithm: {name: ppo\nenv: x\n")
    with pytest.raises(ConfigError, match=r"broken.yaml \(line \d+"):
        read_yaml(broken)
    with pytest.raises(ConfigError, match="not found"):
        read_yaml(tmp_path / "missing.yaml")


def test_error_message_is_prefixed_with_file(tmp_path: Path, plugins):
    f = tmp_path / "exp.yaml"
    f.write_text(textwrap.dedent("""
        algorithm: {name: ppo, gama: 0.9}
        env: {id: CartPole-v1}
        train: {total_steps: 100}
    """))
    with pytest.raises(ConfigError) as info:
        load_experiment(f, plugins)
    assert str(info.value).startswith(f"{f}: algorithm.gama")


def test_every_shipped_experiment_validates(plugins):
    for path in sorted(Path(__file__).parents[1].joinpath("experiments").glob("*.yaml")):
        load_experiment(path, plugins)


@pytest.mark.slow
def test_cli_prints_config_error_without_traceback(tmp_path: Path):
    f = tmp_path / "bad.yaml"
    f.write_text("algorithm: {name: ppo, n_steps: -3}\nenv: {id: CartPole-v1}\n"
                 "train: {total_steps: 100}\n")
    out = subprocess.run([sys.executable, "-m", "rlkit.cli", "train", str(f)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "algorithm.n_steps" in out.stderr and ">= 1" in out.stderr
    assert "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "rlkit.cli", "train", str(f),
                          "--set", "algorithm.n_steps=4", "--set", "env.id=CartPol-v1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "env.id" in out.stderr and "CartPole-v1" in out.stderr
    assert "Traceback" not in out.stderr


def test_names_from_other_libraries_suggest_ours():
    from rlkit.validation import suggest

    assert suggest("learning_rate", ["name", "lr", "momentum"]) == "lr"
    assert suggest("lerning_rate", ["name", "lr", "momentum"]) == "lr"
    assert suggest("n_envs", ["id", "num_envs"]) == "num_envs"
    assert suggest("clip_range", ["clip_coef", "n_steps"]) == "clip_coef"
    assert suggest("evaluation", ["eval", "exploration", "env"]) == "eval"
    assert suggest("zzz", ["eval", "env"]) is None
