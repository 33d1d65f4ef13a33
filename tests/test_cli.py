"""The ``rlkit`` command line: help that teaches, listings, and errors without tracebacks.

Most tests call :func:`rlkit.cli.main` in-process with the session-wide plugin session; one test
runs the installed console script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest

from rlkit.cli import main
from rlkit.hookspecs import hookimpl
from rlkit.plugins import Plugins

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = ROOT / "experiments" / "cartpole.yaml"
RLKIT_VERSION = metadata.version("rlkit")


def session_with(*extra: tuple[str, object]) -> Plugins:
    """Built-ins plus ``extra``, without third-party plugins installed on this machine."""
    return Plugins.load(extra=extra, autoload=False, allow=[])


# --- help -----------------------------------------------------------------------------------


def test_main_help_exits_0_and_shows_where_to_start(plugins, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"], plugins=plugins)

    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "eval", "plugins"):
        assert command in out
    assert "rlkit train experiments/cartpole.yaml" in out


def test_train_help_exits_0_and_teaches_the_options(plugins, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"], plugins=plugins)

    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--set", "--resume", "--seed", "--device"):
        assert option in out
    assert "examples:" in out and "--set algorithm.optimizer.lr=1e-3" in out


def test_no_command_prints_help_and_exits_2(plugins, capsys):
    assert main([], plugins=plugins) == 2
    assert "Start here:" in capsys.readouterr().out


# --- rlkit plugins ----------------------------------------------------------------------------


def test_plugins_json_lists_the_built_ins_with_distribution_and_version(plugins, capsys):
    assert main(["plugins", "--json"], plugins=plugins) == 0

    listing = json.loads(capsys.readouterr().out)
    rows = {(r["kind"], r["name"]): r for r in listing["registered"]}
    for kind, name in [("algorithm", "ppo"), ("algorithm", "dqn"), ("algorithm", "qlearning"),
                       ("algorithm", "sarsa"), ("backbone", "mlp")]:
        row = rows[(kind, name)]
        assert (row["distribution"], row["version"]) == ("rlkit", RLKIT_VERSION), row
        assert row["description"], f"{name} has no description"
    assert rows[("algorithm", "sarsa")]["entry_point"] == "algorithms"


def test_plugins_table_names_each_provider(plugins, capsys):
    assert main(["plugins"], plugins=plugins) == 0

    out = capsys.readouterr().out
    for name in ("ppo", "dqn", "qlearning", "sarsa", "mlp"):
        assert name in out
    assert f"rlkit {RLKIT_VERSION}" in out


# --- errors -------------------------------------------------------------------------------------


def test_plugins_name_shows_every_setting_with_default_and_meaning(plugins, capsys):
    assert main(["plugins", "ppo", "--json"], plugins=plugins) == 0
    [item] = json.loads(capsys.readouterr().out)
    settings = {k["key"]: k for k in item["settings"]}
    assert item["kind"] == "algorithm" and item["provided_by"].startswith("rlkit")
    assert settings["n_steps"]["default"] == 2048 and "rollout" in settings["n_steps"]["meaning"]
    assert settings["optimizer"]["default"]["name"] == "adam"
    assert main(["plugins", "mlp"], plugins=plugins) == 0
    out = capsys.readouterr().out
    assert "hidden_sizes" in out and "backbone.<key>=<value>" in out


def test_plugins_unknown_name_exits_2_with_a_suggestion(plugins, capsys):
    assert main(["plugins", "ppp"], plugins=plugins) == 2
    err = capsys.readouterr().err
    assert "'ppp'" in err and "Did you mean 'ppo'?" in err and "Traceback" not in err


def test_unknown_config_key_exits_2_with_the_key_path(tmp_path, plugins, capsys):
    experiment = tmp_path / "bad.yaml"
    experiment.write_text("algorithm: {name: ppo, n_step: 8}\nenv: {id: CartPole-v1}\n"
                          "train: {total_steps: 100}\n")

    status = main(["train", str(experiment), "--no-progress"], plugins=plugins)

    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("rlkit: error: ")
    assert "algorithm.n_step" in err and "unknown key" in err and "'n_steps'" in err
    assert "Traceback" not in err


def test_unknown_key_in_an_override_exits_2_with_the_key_path(plugins, capsys):
    status = main(["train", str(CARTPOLE), "--set", "train.totl_steps=10", "--no-progress"],
                  plugins=plugins)

    err = capsys.readouterr().err
    assert status == 2
    assert "train.totl_steps" in err and "Traceback" not in err


def test_train_without_an_experiment_says_what_to_pass(plugins, capsys):
    assert main(["train"], plugins=plugins) == 2
    assert "rlkit train needs an experiment file" in capsys.readouterr().err


def test_eval_of_a_missing_path_exits_2_with_a_clear_message(tmp_path, plugins, capsys):
    missing = tmp_path / "no-such-run"

    status = main(["eval", str(missing)], plugins=plugins)

    err = capsys.readouterr().err
    assert status == 2
    assert f"{missing}: no such run directory or checkpoint file" in err
    assert "Traceback" not in err


# --- embedding: a given session, the caller's warning settings ---------------------------------


class Greeter:
    def __init__(self, command: str = "greet") -> None:
        self.command = command

    @hookimpl
    def register_commands(self, cli):
        cli.add(self.command, help="say hello", run=lambda args: print("hello") or 5)


def test_main_uses_the_session_it_is_given(capsys):
    status = main(["greet"], plugins=session_with(("greeter", Greeter())))

    assert status == 5
    assert capsys.readouterr().out == "hello\n"


def test_main_restores_the_callers_warning_filters_and_printer(plugins, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        filters = list(warnings.filters)
        printer = warnings.showwarning

        assert main(["plugins", "--json"], plugins=plugins) == 0
        with pytest.raises(SystemExit):
            main(["--help"], plugins=plugins)

        assert warnings.filters == filters
        assert warnings.showwarning is printer


def test_main_prints_warnings_as_one_line_while_it_runs(capsys):
    class Warner:
        @hookimpl
        def register_commands(self, cli):
            def run(args):
                warnings.warn("the moon is full", RuntimeWarning, stacklevel=1)
                return 0

            cli.add("warn", help="warn once", run=run)

    assert main(["warn"], plugins=session_with(("warner", Warner()))) == 0
    assert capsys.readouterr().err == "rlkit: warning: the moon is full\n"


# --- conflicting commands -----------------------------------------------------------------------


def test_plugin_command_clashing_with_a_built_in_exits_2_naming_both(capsys):
    status = main(["plugins"], plugins=session_with(("clash", Greeter("train"))))

    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("rlkit: error: the command 'train' is defined twice")
    assert f"by rlkit {RLKIT_VERSION} (built-in command)" in err
    assert "by plugin 'clash' (registered in code)" in err
    assert "Traceback" not in err


def test_two_plugins_adding_the_same_command_exit_2_naming_both(capsys):
    plugins = session_with(("first", Greeter()), ("second", Greeter()))

    status = main(["greet"], plugins=plugins)

    err = capsys.readouterr().err
    assert status == 2
    assert "'greet' is defined twice, by plugin 'first' (registered in code) and by plugin " \
           "'second' (registered in code)" in err


def test_plugin_failing_in_register_commands_exits_2_naming_it(capsys):
    class Broken:
        @hookimpl
        def register_commands(self, cli):
            raise RuntimeError("no commands today")

    status = main(["plugins"], plugins=session_with(("broken", Broken())))

    err = capsys.readouterr().err
    assert status == 2
    assert "plugin 'broken' (registered in code) failed in register_commands" in err
    assert "no commands today" in err


# --- the console script -------------------------------------------------------------------------


@pytest.mark.slow
def test_console_script_runs():
    script = Path(sys.executable).with_name("rlkit")
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RLKIT_PLUGINS", "RLKIT_DISABLE_PLUGIN_AUTOLOAD", "RLKIT_TRACE_HOOKS")}

    result = subprocess.run([str(script), "plugins", "--json"], capture_output=True, text=True,
                            env=env, timeout=120, check=False)

    assert result.returncode == 0, result.stderr
    names = {r["name"] for r in json.loads(result.stdout)["registered"]}
    assert {"ppo", "dqn", "mlp"} <= names
    help_result = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                                 env=env, timeout=120, check=False)
    assert help_result.returncode == 0 and "rlkit train" in help_result.stdout


def test_train_then_eval_a_run_directory_and_a_checkpoint(tmp_path, plugins, capsys):
    run = tmp_path / "run"
    status = main(["train", str(CARTPOLE), "--run-dir", str(run), "--no-progress",
                   "--set", "train.total_steps=512", "--set", "eval.every=0",
                   "--set", "eval.episodes=2", "--set", "env.num_envs=2"], plugins=plugins)
    assert status == 0
    out = capsys.readouterr().out
    assert "final eval return" in out and str(run) in out
    assert f"curves: {run / 'curves.png'}" in out and (run / "curves.png").exists()
    assert (run / "scalars.csv").exists()
    assert main(["eval", str(run), "--episodes", "3", "--json"], plugins=plugins) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 3 and len(result["returns"]) == 3
    checkpoint = run / "checkpoints" / "latest.pt"
    assert main(["eval", str(checkpoint), "--episodes", "2"], plugins=plugins) == 0
    assert "±" in capsys.readouterr().out


# --- runs that end with an error ------------------------------------------------------------

SMALL_RUN = ["--no-progress", "--set", "train.total_steps=512", "--set", "eval.every=0",
             "--set", "eval.episodes=2", "--set", "env.num_envs=2"]


class _StopsTheRun:
    """A plugin whose update_finished hook raises (or calls sys.exit)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    @hookimpl
    def update_finished(self, run, step, metrics):
        raise self.error


def test_a_crashed_run_prints_one_line_with_the_error_and_the_resume_command(
        tmp_path, plugins, capsys, monkeypatch):
    import rlkit.loop

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation env failed to start")

    real = rlkit.loop.evaluate
    monkeypatch.setattr(rlkit.loop, "evaluate", broken)
    run = tmp_path / "run"
    assert main(["train", str(CARTPOLE), "--run-dir", str(run), *SMALL_RUN],
                plugins=plugins) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "RuntimeError: evaluation env failed to start" in err
    assert err.strip().endswith(f"continue with: rlkit train --resume {run}")
    assert json.loads((run / "summary.json").read_text())["status"] == "crashed"

    monkeypatch.setattr(rlkit.loop, "evaluate", real)
    assert main(["train", "--resume", str(run), "--no-progress"], plugins=plugins) == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_a_plugin_hook_under_plugin_errors_stop_exits_2_with_one_line(tmp_path, capsys):
    session = session_with(("stopper", _StopsTheRun(RuntimeError("quota exceeded"))))
    run = tmp_path / "run"
    status = main(["train", str(CARTPOLE), "--run-dir", str(run), *SMALL_RUN,
                   "--set", "train.plugin_errors=stop"], plugins=session)
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "plugin 'stopper'" in err and "update_finished" in err and "quota exceeded" in err
    assert f"rlkit train --resume {run}" in err
    assert (run / "checkpoints" / "latest.pt").exists()


def test_a_plugin_hook_calling_sys_exit_does_not_end_the_run(tmp_path, capsys):
    session = session_with(("quitter", _StopsTheRun(SystemExit(0))))
    run = tmp_path / "run"
    assert main(["train", str(CARTPOLE), "--run-dir", str(run), *SMALL_RUN],
                plugins=session) == 0
    err = capsys.readouterr().err
    assert err.count("rlkit: warning: plugin 'quitter'") == 1 and "sys.exit(0)" in err
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_a_full_disk_exits_2_with_one_line_naming_the_directory(tmp_path, plugins, capsys,
                                                                monkeypatch):
    import errno

    from rlkit import checkpoint as ckpt

    def save(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", save)
    run = tmp_path / "run"
    status = main(["train", str(CARTPOLE), "--run-dir", str(run), *SMALL_RUN,
                   "--set", "train.checkpoint_every=256"], plugins=plugins)
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"no space left on the disk of {run / 'checkpoints'}" in err and "free" in err
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
