"""Loading a run or checkpoint never imports or calls code the user did not choose.

The config stored in a checkpoint may come from anyone. ``rlkit eval``, ``rlkit train --resume``
and ``load_agent`` build the env it describes only from gymnasium's ids and wrappers and the
wrappers plugins registered; its ``env.imports``, a ``module:EnvId`` id and any other wrapper
need ``--trust-config`` (``trust_config=True``). Wrapper names resolve only to subclasses of
``gymnasium.Wrapper``, even in a trusted config.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import yaml

from rlkit import checkpoint as ckpt
from rlkit.cli import main
from rlkit.config import resolve
from rlkit.environments import (
    EnvOptions,
    UntrustedConfigError,
    make_env,
    untrusted_code,
    wrapper_reference,
)
from rlkit.errors import PluginError
from rlkit.hookspecs import hookimpl
from rlkit.loop import Trainer, load_agent
from rlkit.plugins import Plugins
from rlkit.validation import ConfigError

EXPERIMENT: dict[str, Any] = {
    "algorithm": {"name": "ppo", "n_steps": 16, "batch_size": 32, "n_epochs": 1},
    "backbone": {"name": "mlp", "hidden_sizes": [16]},
    "env": {"id": "CartPole-v1", "num_envs": 2},
    "train": {"total_steps": 128, "seed": 0, "log_every": 64},
    "eval": {"every": 0, "episodes": 1},
}


@pytest.fixture(scope="module")
def paused_run(plugins, tmp_path_factory) -> Path:
    """A tiny CartPole run stopped half-way (status ``paused``, so it can be resumed)."""
    run_dir = tmp_path_factory.mktemp("trust") / "run"
    experiment = resolve(EXPERIMENT, plugins)
    summary = Trainer(experiment, plugins, run_dir=run_dir, progress=False).run(max_steps=64)
    assert summary["status"] == "paused"
    return run_dir


@pytest.fixture
def run(paused_run, tmp_path) -> Path:
    """A fresh copy of the paused run for one test to tamper with."""
    return Path(shutil.copytree(paused_run, tmp_path / "run"))


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Write importable modules into a directory on ``sys.path``; forget them afterwards."""
    directory = tmp_path / "modules"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    written: list[str] = []

    def write(source: str) -> str:
        name = f"rlkit_trust_{uuid.uuid4().hex[:8]}"
        (directory / f"{name}.py").write_text(source)
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def marker_module(modules, marker: Path) -> str:
    """A module whose import writes ``marker`` (a stand-in for any side effect)."""
    return modules(f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n")


WRAPPER_SOURCE = '''
import gymnasium as gym


class DoubleReward(gym.RewardWrapper):
    """Doubles every reward."""

    def reward(self, reward):
        return 2 * reward
'''


def tamper(run: Path, **env: Any) -> Path:
    """Rewrite the config stored in the run's latest checkpoint (``env`` keys replaced)."""
    path = ckpt.find_checkpoint(run)
    state = ckpt.load(path)
    state["config"]["env"].update(env)
    ckpt.save_atomic(state, path)
    return path


def cli(args: list[str], plugins: Plugins, capsys) -> tuple[int, str]:
    code = main(args, plugins=plugins)
    return code, capsys.readouterr().err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("rlkit: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- the payload from the fault injection: torch.save called as a wrapper ------------------


def test_eval_refuses_a_stored_callable_wrapper_and_writes_nothing(run, plugins, capsys,
                                                                    tmp_path):
    pwned = tmp_path / "pwned"
    path = tamper(run, wrappers=[{"name": "torch:save", "kwargs": {"f": str(pwned)}}])
    code, err = cli(["eval", str(run), "--episodes", "1", "--device", "cpu"], plugins, capsys)
    line = one_line_error(err)
    assert code == 2 and not pwned.exists()
    assert str(path) in line and "env.wrappers[0].name 'torch:save'" in line
    assert "--trust-config" in line


def test_trusted_config_still_never_calls_a_wrapper_that_is_not_a_wrapper_class(run, plugins,
                                                                                capsys, tmp_path):
    pwned = tmp_path / "pwned"
    tamper(run, wrappers=[{"name": "torch:save", "kwargs": {"f": str(pwned)}}])
    code, err = cli(["eval", str(run), "--episodes", "1", "--device", "cpu", "--trust-config"],
                    plugins, capsys)
    line = one_line_error(err)
    assert code == 2 and not pwned.exists()
    assert "env.wrappers[0].name: 'torch:save' is a function, not a gymnasium wrapper" in line
    with pytest.raises(ConfigError, match="not a gymnasium wrapper"):
        load_agent(run, plugins, trust_config=True)
    assert not pwned.exists()


def test_resume_refuses_a_stored_callable_wrapper_and_writes_nothing(run, plugins, capsys,
                                                                      tmp_path):
    pwned = tmp_path / "pwned"
    tamper(run, wrappers=[{"name": "torch:save", "kwargs": {"f": str(pwned)}}])
    code, err = cli(["train", "--resume", str(run), "--no-progress"], plugins, capsys)
    assert code == 2 and "--trust-config" in one_line_error(err)
    with pytest.raises(UntrustedConfigError, match=r"env\.wrappers\[0\]\.name 'torch:save'"):
        Trainer.resume(run, plugins, progress=False)
    with pytest.raises(ConfigError, match="not a gymnasium wrapper"):
        Trainer.resume(run, plugins, progress=False, trust_config=True)
    assert not pwned.exists()


def test_load_agent_refuses_a_stored_callable_wrapper(run, plugins, tmp_path):
    pwned = tmp_path / "pwned"
    tamper(run, wrappers=[{"name": "torch:save", "kwargs": {"f": str(pwned)}}])
    with pytest.raises(UntrustedConfigError, match=r"trust_config=True"):
        load_agent(run, plugins)
    assert not pwned.exists()


# --- env.imports and module:EnvId ----------------------------------------------------------


def test_stored_imports_are_not_imported_without_consent(run, plugins, capsys, modules,
                                                         tmp_path):
    marker = tmp_path / "imported"
    name = marker_module(modules, marker)
    tamper(run, imports=[name])
    for args in (["eval", str(run), "--episodes", "1", "--device", "cpu"],
                 ["train", "--resume", str(run), "--no-progress"]):
        code, err = cli(args, plugins, capsys)
        assert code == 2 and f"env.imports[0] {name!r}" in one_line_error(err)
    with pytest.raises(UntrustedConfigError, match=r"env\.imports\[0\]"):
        load_agent(run, plugins)
    assert not marker.exists() and name not in sys.modules
    code, err = cli(["eval", str(run), "--episodes", "1", "--device", "cpu", "--trust-config"],
                    plugins, capsys)
    assert code == 0, err
    assert marker.exists() and name in sys.modules


def test_a_stored_module_env_id_is_not_imported_without_consent(run, plugins, capsys, modules,
                                                                tmp_path):
    marker = tmp_path / "imported"
    name = marker_module(modules, marker)
    tamper(run, id=f"{name}:CartPole-v1")
    code, err = cli(["eval", str(run), "--episodes", "1", "--device", "cpu"], plugins, capsys)
    assert code == 2 and f"env.id '{name}:CartPole-v1'" in one_line_error(err)
    assert not marker.exists() and name not in sys.modules
    agent, experiment = load_agent(run, plugins, trust_config=True)
    assert marker.exists() and experiment.env.id == f"{name}:CartPole-v1"


def test_every_untrusted_part_is_named_in_one_message(run, plugins, modules):
    first, second = modules(""), modules(WRAPPER_SOURCE)
    tamper(run, imports=[first], wrappers=[
        {"name": "gymnasium.wrappers.ClipReward", "kwargs": {"max_reward": 1.0}},
        {"name": f"{second}.DoubleReward", "kwargs": {}}])
    with pytest.raises(UntrustedConfigError) as info:
        load_agent(run, plugins)
    message = str(info.value)
    assert "\n" not in message
    assert f"env.imports[0] {first!r}" in message
    assert f"env.wrappers[1].name '{second}.DoubleReward'" in message
    assert "ClipReward" not in message  # gymnasium's own wrappers need no consent


# --- what loads without consent, and what consent allows -----------------------------------


def test_a_wrapper_of_ones_own_loads_with_trust_config(run, plugins, capsys, modules):
    name = modules(WRAPPER_SOURCE)
    tamper(run, imports=[name], wrappers=[{"name": f"{name}:DoubleReward", "kwargs": {}}])
    code, err = cli(["eval", str(run), "--episodes", "1", "--device", "cpu"], plugins, capsys)
    assert code == 2 and f"'{name}:DoubleReward'" in one_line_error(err)
    code, err = cli(["eval", str(run), "--episodes", "1", "--device", "cpu", "--trust-config"],
                    plugins, capsys)
    assert code == 0, err


def test_resume_with_trust_config_continues_the_run(run, plugins, capsys, modules):
    tamper(run, imports=[modules("")])
    code, err = cli(["train", "--resume", str(run), "--no-progress"], plugins, capsys)
    assert code == 2 and "env.imports[0]" in one_line_error(err)
    code, err = cli(["train", "--resume", str(run), "--no-progress", "--trust-config"],
                    plugins, capsys)
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 128


def test_gymnasium_wrappers_load_without_consent(run, plugins):
    for name in ("gymnasium.wrappers.ClipReward", "gymnasium.wrappers:ClipReward", "ClipReward"):
        tamper(run, wrappers=[{"name": name, "kwargs": {"max_reward": 0.5}}])
        agent, experiment = load_agent(run, plugins)
        assert experiment.env.wrappers[0].name == name


def test_plugin_registered_wrappers_load_without_consent(run, plugins, modules, capsys):
    name = modules(WRAPPER_SOURCE)

    class WrapperPlugin:
        @hookimpl
        def register_wrappers(self, register):
            register(f"{name}:DoubleReward", description="doubles rewards")

    session = Plugins.load(extra=[("double_reward", WrapperPlugin())])
    assert f"{name}:DoubleReward" in session.wrappers
    tamper(run, wrappers=[{"name": f"{name}.DoubleReward", "kwargs": {}}])
    with pytest.raises(UntrustedConfigError):
        load_agent(run, plugins)  # a session without that plugin
    code, err = cli(["eval", str(run), "--episodes", "1", "--device", "cpu"], session, capsys)
    assert code == 0, err


def test_registering_something_that_is_not_a_wrapper_is_an_error():
    class BadPlugin:
        @hookimpl
        def register_wrappers(self, register):
            register(dict)

    with pytest.raises(PluginError, match="subclass of gymnasium.Wrapper"):
        Plugins.load(extra=[("bad", BadPlugin())], autoload=False)


def test_registering_a_wrapper_class_keys_it_by_its_module_and_name():
    class Scale(gym.RewardWrapper):
        """Scales rewards."""

    class WrapperPlugin:
        @hookimpl
        def register_wrappers(self, register):
            register(Scale)

    session = Plugins.load(extra=[("scale", WrapperPlugin())], autoload=False)
    reference = f"{__name__}:{Scale.__qualname__}"
    entry, _ = session.wrappers[reference]
    assert entry.description == "Scales rewards."
    options = EnvOptions(id="CartPole-v1", wrappers=((reference, {}),))
    assert untrusted_code(options, session.wrappers) == []
    assert untrusted_code(options) == [f"env.wrappers[0].name {reference!r}"]


# --- a config the user passes is trusted, but wrappers must still be wrappers --------------


def test_own_config_cannot_call_a_non_wrapper_either(plugins, capsys, tmp_path):
    pwned = tmp_path / "pwned"
    with pytest.raises(ConfigError, match="is a function, not a gymnasium wrapper"):
        make_env(EnvOptions(id="CartPole-v1", wrappers=(("torch:save", {"f": str(pwned)}),)))
    with pytest.raises(ConfigError, match="is the class dict, not a gymnasium wrapper"):
        make_env(EnvOptions(id="CartPole-v1", wrappers=(("builtins.dict", {}),)))
    config = tmp_path / "exp.yaml"
    data = {**EXPERIMENT, "env": {"id": "CartPole-v1",
                                  "wrappers": [{"name": "os:remove",
                                                "kwargs": {"path": str(config)}}]},
            "run": {"dir": str(tmp_path / "runs")}}
    config.write_text(yaml.safe_dump(data))
    code, err = cli(["train", str(config), "--no-progress"], plugins, capsys)
    assert code == 2 and "not a gymnasium wrapper" in one_line_error(err)
    assert config.exists() and not pwned.exists()


def test_own_config_may_name_its_own_wrapper_class(modules):
    name = modules(WRAPPER_SOURCE)
    env = make_env(EnvOptions(id="CartPole-v1", wrappers=((f"{name}.DoubleReward", {}),)))
    env.reset(seed=0)
    import torch

    assert float(env.step(torch.zeros(1, dtype=torch.int64)).reward[0]) == 2.0


def test_wrapper_names_have_one_reference_form():
    assert wrapper_reference("pkg.mod.Cls") == wrapper_reference("pkg.mod:Cls") == "pkg.mod:Cls"
    assert wrapper_reference("ClipReward") == "gymnasium.wrappers:ClipReward"


def test_trust_config_goes_with_resume_only(plugins, capsys, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    code, err = cli(["train", str(config), "--trust-config"], plugins, capsys)
    assert code == 2 and "--trust-config goes with --resume" in one_line_error(err)


# --- the commands printed for one's own run that needs consent carry --trust-config -----------

FAILING_WRAPPER_SOURCE = '''
import gymnasium as gym


class FailsAt(gym.Wrapper):
    """Raises once the env has taken ``at`` steps (``at=None``: never)."""

    def __init__(self, env, at=None):
        super().__init__(env)
        self.at, self.steps = at, 0

    def step(self, action):
        self.steps += 1
        if self.at is not None and self.steps > self.at:
            raise RuntimeError("the simulator lost its state")
        return super().step(action)
'''


@pytest.mark.parametrize("at", [None, 40], ids=["finished", "crashed"])
def test_commands_printed_for_a_run_that_needs_consent_pass_trust_config(plugins, capsys,
                                                                        tmp_path, modules, at):
    name = modules(FAILING_WRAPPER_SOURCE)
    config = tmp_path / "exp.yaml"
    run = tmp_path / "run"
    config.write_text(yaml.safe_dump({**EXPERIMENT, "env": {
        "id": "CartPole-v1", "num_envs": 2,
        "wrappers": [{"name": f"{name}:FailsAt", "kwargs": {"at": at}}]}}))
    code = main(["train", str(config), "--run-dir", str(run), "--no-progress"], plugins=plugins)
    out, err = capsys.readouterr()
    if at is None:  # the summary's next step, and the refusal of a finished run
        assert code == 0 and f"next: rlkit eval {run} --trust-config\n" in out, out
        code, err = cli(["train", "--resume", str(run), "--trust-config"], plugins, capsys)
        assert code == 2 and one_line_error(err).endswith(f"rlkit eval {run} --trust-config.")
    else:  # the command that continues a crashed run
        assert code == 1
        assert one_line_error(err).endswith(f"continue with: rlkit train --resume {run} "
                                            f"--trust-config"), err


def test_commands_printed_for_a_run_that_needs_no_consent_do_not_ask_for_it(plugins, capsys,
                                                                           tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"],
                plugins=plugins) == 0
    out = capsys.readouterr().out
    assert f"next: rlkit eval {tmp_path / 'run'}\n" in out and "--trust-config" not in out
