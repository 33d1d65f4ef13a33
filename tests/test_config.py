"""Config errors name the key path, say what was expected and never print a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
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


# --- numbers: scientific notation, 64-bit integers, finite floats ---------------------------


def test_integral_scientific_notation_is_an_integer(plugins):
    # YAML 1.1 reads 1e5 (no dot, no exponent sign) as the string '1e5', 1.0e+5 as a float
    for text in ("1e5", "1.0e+5", "1E5", "100000"):
        exp = resolve(with_("train.total_steps", text), plugins)
        assert exp.train.total_steps == 100_000 and type(exp.train.total_steps) is int
    assert resolve(with_("algorithm.n_steps", "1.5e3"), plugins).algorithm.params.n_steps == 1500


def test_non_integral_numbers_for_integer_keys_say_why(plugins):
    msg = error(with_("train.total_steps", "1.2345e2"), plugins)
    assert msg.startswith("train.total_steps:") and "123.45" in msg and "not a whole number" in msg
    msg = error(with_("algorithm.n_steps", "2.5"), plugins)
    assert "algorithm.n_steps" in msg and "not a whole number" in msg
    assert "not an integer" in error(with_("algorithm.n_steps", ".inf"), plugins)


def test_float_keys_take_numbers_in_any_notation_but_only_finite_ones(plugins):
    exp = resolve(with_("algorithm.optimizer.lr", "3e-4"), plugins)
    assert exp.algorithm.params.optimizer.lr == pytest.approx(3e-4)
    assert "too large" in error(with_("algorithm.gamma", "1e999"), plugins)
    assert "not a finite number" in error(with_("algorithm.vf_coef", ".nan"), plugins)
    msg = error(with_("algorithm.vf_coef", "nan"), plugins)  # the string, not YAML's .nan
    assert "expected a number" in msg


@pytest.mark.parametrize(("key", "value"), [
    ("train.seed", 10**30), ("algorithm.n_steps", 2**63), ("train.total_steps", "1e30"),
    ("eval.every", -(2**63) - 1),
])
def test_integers_beyond_64_bits_are_refused_when_validating(plugins, key, value):
    msg = error(with_(key, value), plugins)
    assert msg.startswith(f"{key}:") and "64 bits" in msg


def test_buffer_size_beyond_64_bits_is_refused(plugins):
    data = {**BASE, "algorithm": {"name": "dqn", "buffer_size": 2**63}}
    assert "algorithm.buffer_size" in error(data, plugins) and "64 bits" in error(data, plugins)


def test_seed_range_is_32_bits(plugins):
    assert resolve(with_("train.seed", 2**32 - 1), plugins).train.seed == 2**32 - 1
    msg = error(with_("train.seed", 2**32), plugins)
    assert "train.seed" in msg and "<= 4294967295" in msg


# --- schedules obey their key's range ---------------------------------------------------------


def test_negative_learning_rate_schedule_end_is_refused(plugins):
    msg = error(with_("algorithm.optimizer.lr", "{kind: linear, start: 3e-4, end: -1e9}"),
                plugins)
    assert msg.startswith("algorithm.optimizer.lr.end:") and ">= 0.0" in msg
    assert "algorithm.optimizer.lr:" in error(with_("algorithm.optimizer.lr", -1), plugins)
    msg = error(with_("algorithm.clip_coef", "{start: -0.2, end: 0.1}"), plugins)
    assert msg.startswith("algorithm.clip_coef.start:")


def test_schedule_range_applies_to_the_values_a_schedule_takes(plugins):
    data = {**BASE, "algorithm": {"name": "sarsa", "learning_rate": {"start": 0.5, "end": 2.0}}}
    assert error(data, plugins).startswith("algorithm.learning_rate.end:")
    # a constant schedule never reaches `end`, so only `start` is checked
    constant = resolve(with_("algorithm.clip_coef", "{kind: constant, start: 0.2, end: -5}"),
                       plugins)
    assert constant.algorithm.params.clip_coef.start == 0.2
    ok = resolve(with_("algorithm.optimizer.lr", "{start: 1e-3, end: 0.0}"), plugins)
    assert ok.algorithm.params.optimizer.lr.end == 0.0  # annealing to zero stays allowed


def test_negative_exploration_schedule_is_refused(plugins):
    data = {**BASE, "algorithm": {"name": "dqn"},
            "exploration": {"name": "schedule", "value": {"start": 1.0, "end": -0.5}}}
    assert error(data, plugins).startswith("exploration.value.end: -0.5 is out of range")


# --- YAML booleans ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "mode"), [("off", "off"), ("no", "off"), ("false", "off"),
                                            ("on", "warn"), ("yes", "warn"), ("'raise'", "raise")])
def test_nan_check_accepts_unquoted_yaml_booleans(plugins, text, mode):
    assert resolve(with_("train.nan_check", text), plugins).train.nan_check == mode


def test_a_boolean_for_a_choice_says_yaml_read_it_and_to_quote_it(plugins):
    msg = error(with_("env.vectorization", "on"), plugins)
    assert msg.startswith("env.vectorization:") and "boolean" in msg and "quote it" in msg
    assert "Did you mean" not in msg


# --- misspelled and misplaced keys ------------------------------------------------------------


def test_key_at_another_level_is_pointed_to(plugins):
    msg = error(with_("algorithm.lerning_rate", 1e-3), plugins)
    assert "algorithm.lerning_rate: unknown key" in msg
    assert "Did you mean algorithm.optimizer.lr?" in msg
    assert "Did you mean algorithm.optimizer.lr?" in error(with_("algorithm.lr", 1e-3), plugins)
    assert "Did you mean 'n_steps'" in error(with_("algorithm.n_step", 8), plugins)


def test_misspelled_component_name_key_is_named(plugins):
    msg = error({**BASE, "algorithm": {"namex": "ppo", "n_steps": 16}}, plugins)
    assert msg.startswith("algorithm.namex: unknown key") and "Did you mean 'name'?" in msg
    msg = error({**BASE, "backbone": {"nmae": "cnn"}}, plugins)
    assert msg.startswith("backbone.nmae: unknown key") and "'name'" in msg
    msg = error({**BASE, "algorithm": {"n_steps": 16}}, plugins)
    assert msg.startswith("algorithm.name: required key is missing") and "ppo" in msg


def test_set_errors_are_not_blamed_on_the_file(tmp_path: Path, plugins):
    f = tmp_path / "exp.yaml"
    f.write_text("algorithm: {name: ppo}\nenv: {id: CartPole-v1}\ntrain: {total_steps: 100}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(f, plugins, ["algorithm.lerning_rate=1e-3"])
    msg = str(info.value)
    assert msg.startswith("--set algorithm.lerning_rate=1e-3: algorithm.lerning_rate")
    assert str(f) not in msg and "Did you mean algorithm.optimizer.lr?" in msg
    with pytest.raises(ConfigError, match=r"^--set algorithm.optimizer=\{lr: -1\}: "):
        load_experiment(f, plugins, ["algorithm.optimizer={lr: -1}"])
    # a file's key that only breaks together with a --set names both
    f.write_text("algorithm: {name: ppo, n_steps: 8}\nenv: {id: CartPole-v1}\n"
                 "train: {total_steps: 100}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(f, plugins, ["algorithm.name=dqn"])
    assert str(info.value).startswith(f"{f} (with --set algorithm.name=dqn): algorithm.n_steps")
    with pytest.raises(ConfigError, match=r"^--set algorithm..n_steps=1: .*key path"):
        apply_overrides(BASE, ["algorithm..n_steps=1"])


# --- reading the file -------------------------------------------------------------------------


def write(tmp_path: Path, content: str | bytes, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


GOOD = "algorithm: {name: ppo}\nenv: {id: CartPole-v1}\ntrain: {total_steps: 100}\n"


def read_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    return str(info.value)


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n  # and another\n"])
def test_empty_file_says_it_is_empty(tmp_path: Path, content: str):
    msg = read_error(write(tmp_path, content))
    assert "the file is empty" in msg and "algorithm:" not in msg


def test_indentation_errors_get_a_sentence_the_line_and_its_text(tmp_path: Path):
    path = write(tmp_path, "algorithm:\n    name: ppo\n  n_steps: 3\nenv: {id: CartPole-v1}\n")
    msg = read_error(path)
    assert msg.startswith(f"{path} (line 3, column 3): not valid YAML:")
    assert "the indentation of line 3 does not match" in msg and "'  n_steps: 3'" in msg
    assert "\n" not in msg
    msg = read_error(write(tmp_path, "algorithm:\n  name: ppo\n   n_steps: 3\n"))
    assert "line 3" in msg and "indented more" in msg and "'   n_steps: 3'" in msg
    msg = read_error(write(tmp_path, "train:\n\ttotal_steps: 3\n"))
    assert "tab" in msg and "line 2" in msg
    msg = read_error(write(tmp_path, "algorithm: {name: ppo\nenv: x\n"))
    assert "opened on line 1 is not closed" in msg


def test_duplicate_keys_and_sections_name_both_lines(tmp_path: Path):
    msg = read_error(write(tmp_path, GOOD + "train:\n  total_steps: 5\n"))
    assert "key 'train' appears twice" in msg and "lines 3 and 4" in msg
    msg = read_error(write(tmp_path, "algorithm:\n  name: ppo\n  n_steps: 1\n  n_steps: 2\n"))
    assert "key 'n_steps' appears twice" in msg and "lines 3 and 4" in msg
    merged = write(tmp_path, "base: &b {n_steps: 8, gamma: 0.9}\nalgorithm:\n  <<: *b\n"
                             "  n_steps: 16\n")
    assert read_yaml(merged)["algorithm"] == {"n_steps": 16, "gamma": 0.9}  # merge keys as ever


def test_encodings(tmp_path: Path, plugins):
    for encoding in ("utf-16", "utf-32", "utf-8-sig"):  # with a byte-order mark: read properly
        assert read_yaml(write(tmp_path, GOOD.encode(encoding))) == read_yaml(write(tmp_path, GOOD))
    msg = read_error(write(tmp_path, GOOD.encode("utf-16-le")))
    assert "NUL byte at offset 1" in msg and "byte-order mark" in msg
    msg = read_error(write(tmp_path, ("# café\n" + GOOD).encode("latin-1")))
    assert "not UTF-8" in msg and "0xe9 at offset 5 (line 1, column 6)" in msg
    msg = read_error(write(tmp_path, GOOD + "run: {name: \x07}\n"))
    assert "(line 4, column 13)" in msg and "U+0007" in msg


def test_deep_nesting_is_one_line_error(tmp_path: Path):
    for text in ("x: " + "[" * 5000 + "]" * 5000 + "\n",
                 "x:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300))):
        msg = read_error(write(tmp_path, GOOD + text))
        assert "nested more than 64 levels" in msg and "\n" not in msg


def bomb(levels: int = 9) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly_and_briefly(tmp_path: Path):
    text = bomb() + GOOD.replace("CartPole-v1}", "CartPole-v1, kwargs: {x: *l8}}")
    assert len(text) < 600
    start = time.perf_counter()
    msg = read_error(write(tmp_path, text))
    assert time.perf_counter() - start < 2.0
    assert "expand to more than 100,000 values" in msg and len(msg) < 400
    msg = read_error(write(tmp_path, GOOD + "run: &r {name: [*r]}\n"))
    assert "cannot be recursive" in msg


def test_values_quoted_in_errors_are_cut_short(plugins):
    shared: list = ["x"] * 9  # shared like an expanded alias bomb: 9**8 leaves
    for _ in range(7):
        shared = [shared] * 9
    for value in (shared, "y" * 1_000_000, 10**5000, {"k" * 10_000: 1}):
        start = time.perf_counter()
        msg = error(with_("train.total_steps", "0") | {"train": {"total_steps": value}}, plugins)
        assert time.perf_counter() - start < 1.0 and len(msg) < 200, msg
    msg = error({**BASE, "x" * 10_000: 1}, plugins)
    assert len(msg) < 300
    msg = error(with_("env.vectorization", "z" * 10_000), plugins)
    assert len(msg) < 300


def test_scalars_python_cannot_hold_are_errors(tmp_path: Path):
    msg = read_error(write(tmp_path, GOOD.replace("100", "9" * 5000)))
    assert "5,000 digits" in msg and len(msg) < 300
    assert "timestamp" in read_error(write(tmp_path, GOOD + "run: {name: 2001-13-45}\n"))
    assert "plain data only" in read_error(write(tmp_path, GOOD + "x: !!python/name:os.system\n"))


def test_set_values_are_read_with_the_same_limits():
    with pytest.raises(ConfigError, match="appears twice"):
        apply_overrides(BASE, ["env.kwargs={a: 1, a: 2}"])
    with pytest.raises(ConfigError, match="nested more than"):
        apply_overrides(BASE, ["env.kwargs=" + "[" * 200 + "]" * 200])
    # text that is not YAML at all is taken as a string, as before
    assert apply_overrides(BASE, ["run.name=a: b: c"])["run"]["name"] == "a: b: c"


# --- errors raised while building -------------------------------------------------------------


def build(experiment, plugins, obs_space, action_space, num_envs: int = 2):
    import torch

    from rlkit.interfaces import EnvSpec
    from rlkit.loop import build_agent

    spec = EnvSpec(observation_space=obs_space, action_space=action_space, num_envs=num_envs)
    return build_agent(experiment, plugins, spec, torch.device("cpu"))


BOX_OBS = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)


def test_build_errors_carry_file_and_key_and_suggest_installed_algorithms(tmp_path, plugins):
    f = write(tmp_path, "algorithm: {name: dqn}\nenv: {id: Pendulum-v1}\n"
                        "train: {total_steps: 100}\n")
    experiment = load_experiment(f, plugins)
    with pytest.raises(ConfigError) as info:
        build(experiment, plugins, BOX_OBS, gym.spaces.Box(-2.0, 2.0, (1,)))
    msg = str(info.value)
    assert msg.startswith(f"{f}: algorithm.name: 'dqn' needs a discrete action space")
    assert "try ppo or ddpg instead" in msg  # both installed, both take Box actions
    experiment = load_experiment(f, plugins, ["algorithm.name=qlearning"])
    with pytest.raises(ConfigError, match=r"^--set algorithm.name=qlearning: algorithm.name: "
                                          r"'qlearning' .* dqn or ppo instead"):
        build(experiment, plugins, BOX_OBS, gym.spaces.Discrete(2))
    cnn = load_experiment(f, plugins, ["algorithm.name=ppo", "backbone.name=cnn"])
    with pytest.raises(ConfigError, match=r"^--set backbone.name=cnn: backbone.name: "):
        build(cnn, plugins, BOX_OBS, gym.spaces.Discrete(2))


def test_alternatives_are_filtered_to_the_installed():
    from rlkit.validation import IncompatibleError

    exc = IncompatibleError("algorithm.name", "'dqn' needs a discrete action space",
                            alternatives=("ppo", "ddpg"))
    assert str(exc.for_installed({"ppo", "dqn"})).endswith("try ppo instead.")
    msg = str(exc.for_installed({"dqn"}))
    assert "none of the algorithms that would fit (ppo, ddpg) is installed" in msg


@pytest.mark.parametrize(("name", "key", "value"), [
    ("ppo", "algorithm.n_steps", 10**12), ("dqn", "algorithm.buffer_size", 2**60),
])
def test_sizes_that_cannot_be_allocated_are_refused_before_allocating(plugins, name, key, value):
    experiment = resolve(apply_overrides({**BASE, "algorithm": {"name": name}},
                                         [f"{key}={value}"]), plugins)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        build(experiment, plugins, BOX_OBS, gym.spaces.Discrete(2))
    msg = str(info.value)
    assert msg.startswith(f"{key}: ") and "would need" in msg and "physical memory" in msg
    assert time.perf_counter() - start < 5.0


def test_tabular_table_too_large_for_memory_is_refused(plugins):
    experiment = resolve({**BASE, "algorithm": {"name": "qlearning"}}, plugins)
    with pytest.raises(ConfigError, match=r"^env.id: a Q table of 1,000,000,000,000 states"):
        build(experiment, plugins, gym.spaces.Discrete(10**12), gym.spaces.Discrete(4))


ALLOCATOR_ERROR = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                   "allocate memory: you tried to allocate 4000000000000 bytes. Error code 12")


def test_networks_too_large_to_allocate_are_a_config_error(plugins, monkeypatch):
    import types

    # the allocator's own failure, without asking this machine for 4 TB
    def huge(params, space):
        raise RuntimeError(ALLOCATOR_ERROR)

    spec, provider = plugins.backbones["mlp"]
    fake = types.SimpleNamespace(name="mlp", config=spec.config, build=huge)
    monkeypatch.setitem(plugins.backbones, "mlp", (fake, provider))
    experiment = resolve(with_("backbone.hidden_sizes", "[1000000, 1000000]"), plugins)
    with pytest.raises(ConfigError, match=r"^algorithm: building 'ppo' with backbone 'mlp' ran "
                                          r"out of memory \(it asked for 3.6 TiB\)"):
        build(experiment, plugins, BOX_OBS, gym.spaces.Discrete(2))


def test_allocation_failures_are_told_from_other_errors():
    import torch

    from rlkit.buffers import allocation_failure

    assert allocation_failure(RuntimeError(ALLOCATOR_ERROR)) == "3.6 TiB"
    assert allocation_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate "
                                                     "2.00 GiB")) == "2.00 GiB"
    assert allocation_failure(MemoryError()) == ""
    assert allocation_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None


def test_storage_bytes_and_allocation_check():
    import torch

    from rlkit.buffers import check_allocation, storage_bytes

    assert storage_bytes(10, [((4,), torch.float32), ((), torch.bool)]) == 10 * 17
    check_allocation(1 << 20, key="algorithm.n_steps", what="a rollout", device="cpu")
    with pytest.raises(ConfigError, match=r"^algorithm.n_steps: a rollout would need 1.0 EiB|"
                                          r"^algorithm.n_steps: a rollout would need"):
        check_allocation(1 << 60, key="algorithm.n_steps", what="a rollout", device="cpu")


def test_cli_reports_set_errors_as_the_set_in_one_line(tmp_path: Path, plugins, capsys):
    from rlkit.cli import main

    f = write(tmp_path, GOOD)
    assert main(["train", str(f), "--set", "algorithm.lerning_rate=1e-3"], plugins=plugins) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlkit: error: --set algorithm.lerning_rate=1e-3: ")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(("text", "set_", "start"), [
    ("env: {id: CartPole-v1, kwargs: {foo: 1}}", None, "{f}: env.kwargs.foo: "),
    ("env: {id: CartPole-v1}", "env.kwargs.foo=1", "--set env.kwargs.foo=1: env.kwargs.foo: "),
    ("env: {id: CartPole-v1, wrappers: [{name: Nope}]}", None, "{f}: env.wrappers[0].name: "),
])
def test_env_build_errors_carry_the_file_or_the_set_and_the_key(tmp_path, plugins, capsys,
                                                                text, set_, start):
    from rlkit.cli import main

    f = write(tmp_path, f"algorithm: {{name: ppo}}\n{text}\ntrain: {{total_steps: 100}}\n")
    args = ["train", str(f), "--run-dir", str(tmp_path / "run")]
    assert main(args + (["--set", set_] if set_ else []), plugins=plugins) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlkit: error: " + start.format(f=f)), err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(("env_id", "vectorization", "n", "memory"), [
    ("CartPole-v1", "sync", 10**11, "would need 186.3 TiB of memory"),  # gymnasium's loop
    ("CartPole-v1", "async", 10**11, "would need 186.3 PiB of memory"),  # a process per env
    # the batched state of 10**14 envs is more than a 64-bit address space maps
    ("rlkit/CartPole-v1", "auto", 10**14, "do not fit in memory (allocating "),
])
def test_too_many_envs_are_refused_at_once_naming_the_file_and_the_key(tmp_path, plugins, capsys,
                                                                       env_id, vectorization,
                                                                       n, memory):
    from rlkit.cli import main

    f = write(tmp_path, f"algorithm: {{name: ppo}}\nenv: {{id: {env_id}, num_envs: {n}, "
                        f"vectorization: {vectorization}}}\ntrain: {{total_steps: 100}}\n")
    start = time.perf_counter()
    assert main(["train", str(f), "--run-dir", str(tmp_path / "run")], plugins=plugins) == 2
    assert time.perf_counter() - start < 5.0  # gymnasium would build envs one by one for hours
    err = capsys.readouterr().err
    assert err.startswith(f"rlkit: error: {f}: env.num_envs: {n:,} envs of "), err
    assert memory in err and "lower num_envs" in err and err.count("\n") == 1


def test_an_evaluation_env_count_that_cannot_fit_names_its_key():
    from rlkit.environments import EnvOptions, make_env

    with pytest.raises(ConfigError, match=r"^eval.num_envs: 100,000,000,000 envs of "):
        make_env(EnvOptions(id="CartPole-v1", num_envs=2, vectorization="sync"),
                 num_envs=10**11)


def test_an_evaluation_env_count_that_cannot_fit_is_refused_before_training(tmp_path, plugins,
                                                                            capsys):
    from rlkit.cli import main

    f = write(tmp_path, "algorithm: {name: ppo}\nenv: {id: CartPole-v1}\n"
                        "train: {total_steps: 100}\neval: {num_envs: 100000000000}\n")
    assert main(["train", str(f), "--run-dir", str(tmp_path / "run")], plugins=plugins) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rlkit: error: {f}: eval.num_envs: 100,000,000,000 envs of "), err
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


@pytest.mark.parametrize("algorithm", ["dqn", "ddpg"])
def test_a_minibatch_larger_than_the_replay_buffer_is_refused(plugins, algorithm):
    env = "CartPole-v1" if algorithm == "dqn" else "Pendulum-v1"
    with pytest.raises(ConfigError, match=r"algorithm: batch_size \(1,099,511,627,776\) is "
                                          r"larger than buffer_size \(1,000\)"):
        resolve({"algorithm": {"name": algorithm, "batch_size": 2**40, "buffer_size": 1000},
                 "env": {"id": env}, "train": {"total_steps": 100}}, plugins)
