"""Deploying a policy: ``load_policy`` acts exactly as the trained agent does, and the files
``export_policy`` writes (ONNX, TorchScript, int8) act as ``load_policy`` does.

Every built-in algorithm family and backbone family is trained for a tiny budget (or built and
saved untrained, for the embedded uint8-image agent). Parity is measured on 256 observations
drawn from each observation space (seed 0): discrete actions must be equal, continuous ones
within ``CONTINUOUS_ATOL``; recurrent policies over ``STEPS`` consecutive steps, states too.
int8 files must agree with the float policy on at least ``INT8_AGREEMENT`` of the observations
(discrete: the same action; continuous: within ``INT8_ATOL`` of the action range).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlkit
from rlkit import checkpoint as ckpt
from rlkit.cli import main
from rlkit.deploy.agent import Agent
from rlkit.deploy.export import default_output, export_policy
from rlkit.deploy.policy import Policy, load_policy
from rlkit.errors import CheckpointError, RunError
from rlkit.interfaces import separate_state
from rlkit.loop import Trainer, load_agent
from rlkit.testing import experiment_for
from rlkit.validation import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

BATCH = 256
STEPS = 6
CONTINUOUS_ATOL = 1e-5
"""Largest difference allowed between load_policy's and an exported file's continuous actions
(float32 arithmetic in another order)."""
INT8_AGREEMENT = 0.9
INT8_ATOL = 0.05
"""int8: a continuous action agrees when within this fraction of the action range."""

PPO = {"n_steps": 16, "batch_size": 32, "n_epochs": 1}
FAMILIES: dict[str, dict[str, Any]] = {
    # ppo on CartPole with observations normalised by the env's NormalizeObservation
    "ppo_discrete": {"algorithm": "ppo", "env_id": "CartPole-v1", "params": PPO,
                     "env": {"wrappers": [{"name": "NormalizeObservation"}]}},
    "ppo_box": {"algorithm": "ppo", "env_id": "Pendulum-v1", "params": PPO},
    "dqn": {"algorithm": "dqn", "env_id": "CartPole-v1",
            "params": {"learning_starts": 32, "buffer_size": 256, "batch_size": 16,
                       "target_update_interval": 32}},
    "td3": {"algorithm": "td3", "env_id": "Pendulum-v1",
            "params": {"learning_starts": 32, "buffer_size": 256, "batch_size": 16}},
    "a2c": {"algorithm": "a2c", "env_id": "CartPole-v1", "params": {"n_steps": 8}},
    "qlearning": {"algorithm": "qlearning", "env_id": "FrozenLake-v1", "params": {}},
    "cnn": {"algorithm": "ppo", "env_id": "rlkit/Breakout-v0", "params": PPO,
            "backbone": {"name": "cnn", "channels": [8], "kernel_sizes": [3], "strides": [1],
                         "hidden_sizes": [32]}},
    "lstm": {"algorithm": "ppo", "env_id": "rlkit/CartPoleNoVel-v1",
             "params": {**PPO, "seq_len": 8},
             "backbone": {"name": "lstm", "hidden_size": 16,
                          "encoder": {"name": "mlp", "hidden_sizes": [16]}}},
}
DISCRETE = {"ppo_discrete", "dqn", "a2c", "qlearning", "cnn", "lstm", "uint8_cnn"}


@pytest.fixture(scope="module")
def runs(plugins, tmp_path_factory) -> dict[str, Any]:
    """Each family trained for 64 env steps (2 envs), the Q table then filled with random
    values; the NormalizeObservation wrapper of the normalised run, for reference; and an
    embedded agent on uint8 images, saved untrained with its spaces recorded (no env exists
    for it)."""
    root = tmp_path_factory.mktemp("export-runs")
    out: dict[str, Any] = {}
    for name, spec in FAMILIES.items():
        experiment = experiment_for(spec["algorithm"], env_id=spec["env_id"], plugins=plugins,
                                    params=spec["params"], env=spec.get("env"), steps=64,
                                    workdir=root, backbone=spec.get("backbone"))
        trainer = Trainer(experiment, plugins, run_dir=root / name, progress=False)
        trainer.run()
        out[name] = root / name
        if name == "ppo_discrete":
            out["normalizer"] = trainer.env.env.envs[0]
    # 64 steps of FrozenLake leave the table at zeros (action 0 everywhere): give it values
    latest = root / "qlearning" / "checkpoints" / "latest.pt"
    state = ckpt.load(latest)
    state["agent"]["q"] = torch.randn(state["agent"]["q"].shape,
                                      generator=torch.Generator().manual_seed(0))
    ckpt.save_atomic(state, latest)
    images = gym.spaces.Box(0, 255, (3, 8, 8), np.uint8)
    agent = Agent.from_config(
        {"algorithm": {"name": "dqn", "learning_starts": 1, "buffer_size": 64},
         "backbone": {"name": "cnn", "channels": [4], "kernel_sizes": [3], "strides": [1],
                      "hidden_sizes": [16]},
         "train": {"total_steps": 100}},
        observation_space=images, action_space=gym.spaces.Discrete(3), plugins=plugins)
    out["uint8_cnn"] = agent.save(root / "uint8_cnn" / "agent.pt")
    return out


ALL = [*FAMILIES, "uint8_cnn"]


def observations(policy: Policy, seed: int = 0) -> np.ndarray:
    space = policy.observation_space
    space.seed(seed)
    return np.stack([np.asarray(space.sample()) for _ in range(BATCH)])


def onnx_input(policy: Policy, obs: np.ndarray) -> np.ndarray:
    """What an ONNX consumer feeds: the observation space's dtype (float32 when normalised)."""
    return obs.astype(np.float32 if policy.net.normalized else
                      {torch.float32: np.float32, torch.uint8: np.uint8,
                       torch.int64: np.int64}[policy.obs_dtype])


def roll(act: Any, policy: Policy, obs: np.ndarray) -> tuple[list[Any], list[Any]]:
    """Actions (and states) of ``act`` over STEPS steps: feed-forward policies act on one
    batch; recurrent ones carry the state through STEPS batches (observations rolled)."""
    if not policy.recurrent:
        return [act(obs, None)[0]], []
    state = policy.initial_state(len(obs))
    actions, states = [], []
    for t in range(STEPS):
        action, state = act(np.roll(obs, t, axis=0), state)
        actions.append(action)
        states.append(state)
    return actions, states


def by(policy: Policy) -> Any:
    """``policy`` as ``act(obs, state) -> (action, [next_state])``, like the runners below."""
    return lambda obs, state: policy(obs, state) if policy.recurrent else (policy(obs),)


def as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def compare(name: str, ours: list[Any], theirs: list[Any], what: str) -> float:
    """Max abs difference; discrete actions must be equal."""
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        a, b = as_numpy(a), as_numpy(b)
        assert a.shape == b.shape, f"{name} {what}: shapes {a.shape} and {b.shape}"
        if name in DISCRETE and a.dtype.kind in "iu":
            assert np.array_equal(a, b), f"{name} {what}: {int((a != b).sum())} actions differ"
        else:
            worst = max(worst, float(np.abs(a.astype(np.float64) - b).max()))
    assert worst <= CONTINUOUS_ATOL, f"{name} {what}: max abs difference {worst:.2e}"
    return worst


# --- load_policy acts as the agent --------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_load_policy_acts_as_the_trained_agent(runs, plugins, name):
    policy = load_policy(runs[name], plugins=plugins)
    agent, _ = load_agent(runs[name], plugins)
    obs = observations(policy)
    agent_obs = obs
    if name == "ppo_discrete":  # the agent saw what the wrapper made of them
        wrapper = runs["normalizer"]
        wrapper.update_running_mean = False
        agent_obs = np.stack([wrapper.observation(o) for o in obs])
    with separate_state(agent, len(obs)):  # recurrent: fresh state, like initial_state
        expected = [agent.act(torch.as_tensor(np.roll(agent_obs, t, axis=0)), explore=False)
                    for t in range(STEPS if policy.recurrent else 1)]
    ours, _ = roll(by(policy), policy, obs)
    compare(name, ours, expected, "load_policy vs agent.act")


def test_one_observation_gives_one_action_and_types_follow_the_input(runs, plugins):
    policy = load_policy(runs["ppo_box"], plugins=plugins)
    obs = observations(policy)[:4]
    single = policy(obs[0])
    assert isinstance(single, np.ndarray) and single.shape == (1,)
    batch = policy(torch.as_tensor(obs))
    assert isinstance(batch, torch.Tensor) and batch.shape == (4, 1)
    assert np.allclose(single, batch[0].numpy(), atol=1e-6)  # batch of 1 or 4: other kernels
    assert policy.action_space.contains(single)
    lstm = load_policy(runs["lstm"], plugins=plugins)
    action, state = lstm(observations(lstm)[0])
    assert np.ndim(action) == 0 and state.shape == lstm.state_shape
    assert lstm.initial_state().shape == lstm.state_shape
    assert lstm.initial_state(3, tensor=True).shape == (3, *lstm.state_shape)


def test_stochastic_ppo_samples_reproducibly_and_others_refuse(runs, plugins):
    a = load_policy(runs["ppo_discrete"], plugins=plugins, deterministic=False, seed=3)
    b = load_policy(runs["ppo_discrete"], plugins=plugins, deterministic=False, seed=3)
    obs = observations(a)
    assert np.array_equal(a(obs), b(obs))
    box = load_policy(runs["ppo_box"], plugins=plugins, deterministic=False, seed=0)
    assert box.action_space.contains(box(observations(box)[0]))
    with pytest.raises(ValueError, match="deterministic=False is for ppo"):
        load_policy(runs["dqn"], plugins=plugins, deterministic=False)


def test_no_env_is_built_and_no_optimizer_when_the_spaces_are_known(runs, plugins,
                                                                   monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("built while loading a policy")

    monkeypatch.setattr("rlkit.environments.make_env", refuse)
    monkeypatch.setattr(torch.optim.Optimizer, "__init__", refuse)
    load_policy(runs["uint8_cnn"], plugins=plugins)  # spaces recorded by Agent.save
    load_policy(runs["dqn"], plugins=plugins, observation_space=gym.spaces.Box(-5, 5, (4,)),
                action_space=gym.spaces.Discrete(2))


def test_threads_share_one_policy_and_each_keeps_its_own_state(runs, plugins):
    policy = load_policy(runs["lstm"], plugins=plugins)
    obs = observations(policy)
    serial = [roll(by(policy), policy, np.roll(obs, k, axis=0))[0] for k in range(4)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda k: roll(by(policy), policy,
                                                np.roll(obs, k, axis=0))[0], range(4)))
    for ours, theirs in zip(serial, threaded, strict=True):
        compare("lstm", ours, theirs, "threads")


def test_rlkit_exports_load_policy_lazily():
    assert rlkit.load_policy is load_policy


# --- exported files act as load_policy -------------------------------------------------------


@pytest.fixture(scope="module")
def exported(runs, plugins, tmp_path_factory) -> dict[tuple[str, str], Path]:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("exported")
    files = {}
    for name in ALL:
        for kind, fmt, quantize in (("onnx", "onnx", None), ("torchscript", "torchscript", None),
                                    ("onnx-int8", "onnx", "int8"),
                                    ("torchscript-int8", "torchscript", "int8")):
            if quantize and name == "qlearning":
                continue
            suffix = ".onnx" if fmt == "onnx" else ".pt"
            files[name, kind] = export_policy(runs[name], fmt, root / f"{name}-{kind}{suffix}",
                                              quantize, plugins=plugins)
    return files


def onnx_runner(path: Path) -> Any:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def act(obs: np.ndarray, state: Any) -> tuple[Any, ...]:
        feed = {"obs": obs} if state is None else {"obs": obs, "state": state}
        assert list(feed) == names
        return tuple(session.run(None, feed))

    return act


def script_runner(path: Path) -> Any:
    script = torch.jit.load(str(path))

    def act(obs: np.ndarray, state: Any) -> tuple[Any, ...]:
        x = torch.as_tensor(obs)
        out = script(x) if state is None else script(x, torch.as_tensor(state))
        return tuple(as_numpy(v) for v in out) if isinstance(out, tuple) else (as_numpy(out),)

    return act


@pytest.mark.parametrize("name", ALL)
def test_exported_onnx_and_torchscript_act_as_load_policy(runs, plugins, exported, name):
    policy = load_policy(runs[name], plugins=plugins)
    obs = observations(policy)
    ours, our_states = roll(by(policy),
                            policy, obs)
    run = onnx_runner(exported[name, "onnx"])
    theirs, their_states = roll(lambda o, s: run(onnx_input(policy, o), s), policy, obs)
    worst = compare(name, ours, theirs, "ONNX actions")
    worst = max(worst, compare(name, our_states, their_states, "ONNX states"))
    script = script_runner(exported[name, "torchscript"])
    ts_actions, ts_states = roll(lambda o, s: script(onnx_input(policy, o), s), policy, obs)
    worst = max(worst, compare(name, ours, ts_actions, "TorchScript actions"),
                compare(name, our_states, ts_states, "TorchScript states"))
    print(f"parity {name}: max abs difference {worst:.2e}")


@pytest.mark.parametrize("name", [n for n in ALL if n != "qlearning"])
def test_int8_files_agree_with_the_float_policy_on_most_observations(runs, plugins, exported,
                                                                     name):
    policy = load_policy(runs[name], plugins=plugins)
    obs = observations(policy)
    ours = as_numpy(roll(by(policy),
                         policy, obs)[0][-1])
    agreement = {}
    for kind, act in (("onnx", onnx_runner(exported[name, "onnx-int8"])),
                      ("torchscript", script_runner(exported[name, "torchscript-int8"]))):
        theirs = as_numpy(roll(lambda o, s, act=act: act(onnx_input(policy, o), s), policy,
                               obs)[0][-1])
        if name in DISCRETE:
            agree = float((ours == theirs).mean())
        else:
            space = policy.action_space
            tol = INT8_ATOL * (space.high - space.low)  # type: ignore[attr-defined]
            agree = float((np.abs(ours - theirs) <= tol).all(axis=-1).mean())
            print(f"int8 {name} {kind}: max abs difference {np.abs(ours - theirs).max():.3f}")
        agreement[kind] = agree
        assert agree >= INT8_AGREEMENT, f"{name} int8 {kind}: {agree:.1%} agree"
    print(f"int8 {name}: agreement onnx {agreement['onnx']:.1%}, "
          f"torchscript {agreement['torchscript']:.1%}")


def test_an_onnxruntime_only_consumer_gets_the_same_actions(runs, plugins, exported, tmp_path):
    """A process that imports only onnxruntime and numpy runs every family's ONNX file."""
    jobs = []
    expected = {}
    for name in ALL:
        policy = load_policy(runs[name], plugins=plugins)
        obs = observations(policy, seed=1)
        np.save(tmp_path / f"{name}-obs.npy", onnx_input(policy, obs))
        state = None
        if policy.recurrent:
            state = tmp_path / f"{name}-state.npy"
            np.save(state, policy.initial_state(len(obs)))
            expected[name] = policy(obs, policy.initial_state(len(obs)))[0]
        else:
            expected[name] = policy(obs)
        jobs.append({"name": name, "model": str(exported[name, "onnx"]),
                     "obs": str(tmp_path / f"{name}-obs.npy"),
                     "state": None if state is None else str(state),
                     "out": str(tmp_path / f"{name}-action.npy")})
    consumer = textwrap.dedent("""
        import json, sys
        import numpy as np
        import onnxruntime as ort
        for job in json.loads(sys.argv[1]):
            session = ort.InferenceSession(job["model"], providers=["CPUExecutionProvider"])
            feed = {"obs": np.load(job["obs"])}
            if job["state"]:
                feed["state"] = np.load(job["state"])
            np.save(job["out"], session.run(["action"], feed)[0])
        heavy = [m for m in ("torch", "rlkit", "gymnasium") if m in sys.modules]
        print(json.dumps(heavy))
    """)
    proc = subprocess.run([sys.executable, "-c", consumer, json.dumps(jobs)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    for name in ALL:
        compare(name, [expected[name]], [np.load(tmp_path / f"{name}-action.npy")],
                "onnxruntime-only consumer")


def test_exported_files_describe_their_inputs_and_state(exported):
    import onnx

    model = onnx.load(str(exported["lstm", "onnx"]))
    props = {p.key: p.value for p in model.metadata_props}
    meta = json.loads(props["rlkit"])
    assert props["inputs"] == "obs,state" and props["outputs"] == "action,next_state"
    assert meta["state_shape"] == [1, 2, 16]  # (layers, hidden+cell, hidden_size)
    assert meta["inputs"]["state"]["shape"] == ["batch", 1, 2, 16]
    assert "(batch, 1, 2, 16)" in model.doc_string
    extra = {"rlkit_policy.json": ""}
    torch.jit.load(str(exported["lstm", "torchscript"]), _extra_files=extra)
    assert json.loads(extra["rlkit_policy.json"])["state_shape"] == [1, 2, 16]
    image = json.loads({p.key: p.value for p in onnx.load(
        str(exported["uint8_cnn", "onnx"])).metadata_props}["rlkit"])
    assert image["inputs"]["obs"] == {"shape": ["batch", 3, 8, 8], "dtype": "uint8"}


# --- no env here ---------------------------------------------------------------------------------


def test_load_policy_needs_no_env_when_spaces_are_recorded_or_given(plugins, runs, tmp_path):
    """A run on an env id this process registered, loaded in a process where nobody registers
    it: its checkpoint records the spaces, so it acts as here; a checkpoint without them says
    what to do, and acts with the spaces given."""
    gym.register(id="ExportTestOnly-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv",
                 max_episode_steps=50)
    try:
        experiment = experiment_for("ppo", env_id="ExportTestOnly-v0", plugins=plugins,
                                    params=PPO, steps=32, workdir=tmp_path)
        Trainer(experiment, plugins, run_dir=tmp_path / "custom", progress=False).run()
    finally:
        del gym.registry["ExportTestOnly-v0"]
    state = torch.load(tmp_path / "custom" / "checkpoints" / "latest.pt", weights_only=True)
    assert state["spaces"]["num_envs"] == 2
    del state["spaces"]  # as an older checkpoint
    (tmp_path / "old" / "checkpoints").mkdir(parents=True)
    ckpt.save_atomic(state, tmp_path / "old" / "checkpoints" / "latest.pt")
    obs = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)
    expected = {"custom": load_policy(tmp_path / "custom", plugins=plugins,
                                      observation_space=gym.spaces.Box(-5, 5, (4,)),
                                      action_space=gym.spaces.Discrete(2))(obs).tolist(),
                "embedded": load_policy(runs["uint8_cnn"], plugins=plugins)(
                    np.zeros((2, 3, 8, 8), np.uint8)).tolist()}
    code = textwrap.dedent(f"""
        import json, sys
        import gymnasium as gym, numpy as np
        from rlkit.deploy.policy import load_policy
        from rlkit.validation import ConfigError
        assert "ExportTestOnly-v0" not in gym.registry
        try:
            load_policy({str(tmp_path / "old")!r})
        except ConfigError as exc:
            error = str(exc)
        obs = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)
        custom = load_policy({str(tmp_path / "old")!r},
                             observation_space=gym.spaces.Box(-5, 5, (4,)),
                             action_space=gym.spaces.Discrete(2))(obs).tolist()
        recorded = load_policy({str(tmp_path / "custom")!r})(obs).tolist()
        assert recorded == custom
        embedded = load_policy({str(runs["uint8_cnn"])!r})(np.zeros((2, 3, 8, 8), np.uint8))
        print(json.dumps({{"error": error, "custom": custom, "embedded": embedded.tolist()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env={**os.environ, "RLKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "records no observation and action spaces" in result["error"]
    assert "'ExportTestOnly-v0' cannot be built here" in result["error"]
    assert "observation_space=..., action_space=..." in result["error"]
    assert result["custom"] == expected["custom"]
    assert result["embedded"] == expected["embedded"]


# --- bad inputs ------------------------------------------------------------------------------


def test_a_wrong_observation_or_state_shape_names_the_expected_one(runs, plugins):
    policy = load_policy(runs["ppo_discrete"], plugins=plugins)
    with pytest.raises(ValueError, match=r"shape \(3,\) does not fit this policy: expected "
                                         r"\(4,\) for one observation or \(B, 4\) for a batch"):
        policy(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"expected \(4,\) .* \(B, 4\)"):
        policy(np.zeros((2, 2, 4), np.float32))
    with pytest.raises(TypeError, match="feed-forward policy keeps no state"):
        policy(np.zeros(4, np.float32), np.zeros(3))
    table = load_policy(runs["qlearning"], plugins=plugins)
    with pytest.raises(ValueError, match=r"observation 16 is outside the observation space "
                                         r"Discrete\(16\)"):
        table(np.array([3, 16]))
    lstm = load_policy(runs["lstm"], plugins=plugins)
    with pytest.raises(ValueError, match=r"state of shape \(2, 16\) does not fit: expected "
                                         r"\(5, 1, 2, 16\) for a batch of 5"):
        lstm(np.zeros((5, 2), np.float32), np.zeros((2, 16), np.float32))


def test_a_run_directory_without_checkpoints_is_refused_clearly(plugins, tmp_path, capsys):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no checkpoints/latest.pt in this run directory"):
        load_policy(empty, plugins=plugins)
    assert main(["export", str(empty)], plugins=plugins) == 2
    assert "no checkpoints/latest.pt in this run directory" in capsys.readouterr().err


def test_an_unknown_format_or_quantization_is_refused_clearly(runs, plugins, capsys):
    with pytest.raises(ConfigError, match="unknown format 'tflite'; use one of onnx, "
                                          "torchscript"):
        export_policy(runs["dqn"], "tflite", plugins=plugins)
    with pytest.raises(ConfigError, match="unknown quantization 'int4'"):
        export_policy(runs["dqn"], "onnx", quantize="int4", plugins=plugins)
    with pytest.raises(ConfigError, match="lookup table"):
        export_policy(runs["qlearning"], "onnx", quantize="int8", plugins=plugins)
    with pytest.raises(SystemExit):
        main(["export", str(runs["dqn"]), "--format", "tflite"], plugins=plugins)
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_onnx_missing_says_how_to_install_it(runs, plugins, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(RunError, match=r'needs the onnx package.*pip install -e "\.\[onnx\]"'):
        export_policy(runs["dqn"], "onnx", plugins=plugins)


def test_the_export_command_writes_the_default_file(runs, plugins, capsys):
    pytest.importorskip("onnx")
    assert main(["export", str(runs["a2c"]), "--format", "torchscript"], plugins=plugins) == 0
    path = default_output(runs["a2c"], "torchscript")
    assert path == runs["a2c"] / "policy.torchscript.pt" and path.is_file()
    assert f"wrote {path} (torchscript" in capsys.readouterr().out
    file, _ = ckpt.load_run(runs["a2c"])
    assert default_output(file, "onnx", "int8").name == "latest.policy.int8.onnx"


def test_a_discrete_space_starting_below_zero_keeps_its_offset(plugins, tmp_path):
    """PPO on Discrete(3, start=-1): load_policy, the ONNX file and the agent agree (-1..1)."""
    from rlkit.testing import shifted_actions_env

    experiment = experiment_for("ppo", env_id="Acrobot-v1", plugins=plugins, params=PPO,
                                steps=32, workdir=tmp_path, env=shifted_actions_env(-1))
    trainer = Trainer(experiment, plugins, run_dir=tmp_path / "run", progress=False)
    trainer.run()
    obs = np.random.default_rng(0).uniform(-1, 1, (64, 6)).astype(np.float32)
    expected = trainer.agent.act(torch.as_tensor(obs), explore=False).numpy()
    assert expected.min() >= -1 and expected.max() <= 1
    policy = load_policy(tmp_path / "run", plugins=plugins)
    assert (policy(obs) == expected).all()
    pytest.importorskip("onnxruntime")
    import onnxruntime

    path = export_policy(tmp_path / "run", "onnx", out=tmp_path / "p.onnx")
    session = onnxruntime.InferenceSession(str(path))
    assert (session.run(None, {"obs": obs})[0] == expected).all()
