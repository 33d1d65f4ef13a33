"""A run whose algorithm came from a plugin that is not installed now: ``load_agent``,
``Trainer.resume`` and ``rlkit eval`` name the distribution and version the run's
``manifest.json`` recorded, and the ``pip install`` that brings it back."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from rlkit import cli
from rlkit.loop import Trainer, load_agent
from rlkit.plugins import Plugins
from rlkit.testing import experiment_for
from rlkit.validation import ConfigError

# An "installed" distribution (dist-info + module on sys.path) whose algorithm is rlkit's PPO
# under another name.
PLUGIN = """
    from rlkit.hookspecs import hookimpl


    @hookimpl
    def register_algorithms(register):
        register("walker", "rlkit.algorithms.ppo:PPOConfig", "rlkit.algorithms.ppo:build_ppo",
                 description="PPO under another name")
"""
EXPECTED = ("algorithm 'walker' is not installed; this run was trained with rlkit-walker "
            "0.3.0 (manifest.json): pip install rlkit-walker==0.3.0")


@pytest.fixture
def trained_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A finished run of ``walker`` from rlkit-walker 0.3.0 (entry point ``walk``), which is
    uninstalled again before the test body runs."""
    for name in ("RLKIT_PLUGINS", "RLKIT_DISABLE_PLUGIN_AUTOLOAD", "RLKIT_TRACE_HOOKS"):
        monkeypatch.delenv(name, raising=False)
    site = tmp_path / "site"
    info = site / "rlkit_walker-0.3.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rlkit-walker\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text("[rlkit]\nwalk = rlkit_walker\n")
    (site / "rlkit_walker.py").write_text(textwrap.dedent(PLUGIN))
    with monkeypatch.context() as installed:
        installed.syspath_prepend(str(site))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            plugins = Plugins.load()
        assert "walker" in plugins.algorithms
        experiment = experiment_for("walker", env_id="CartPole-v1", plugins=plugins, steps=32,
                                    workdir=tmp_path / "runs",
                                    params={"n_steps": 8, "batch_size": 16, "n_epochs": 1})
        run_dir = tmp_path / "runs" / "walker-run"
        Trainer(experiment, plugins, run_dir=run_dir, progress=False).run(max_steps=16)
    sys.modules.pop("rlkit_walker", None)
    return run_dir


def without_walker() -> Plugins:
    return Plugins.load(autoload=False)  # rlkit's own plugins only


def test_the_manifest_records_which_plugin_provided_each_component(trained_run):
    manifest = json.loads((trained_run / "manifest.json").read_text())
    assert manifest["plugins"]["walk"] == "rlkit-walker 0.3.0"
    assert manifest["components"]["algorithm"] == {"name": "walker", "plugin": "walk"}
    assert manifest["components"]["backbone"]["name"] == "mlp"


def test_load_agent_names_the_distribution_and_version_to_install(trained_run):
    with pytest.raises(ConfigError) as info:
        load_agent(trained_run, without_walker())
    message = str(info.value)
    assert EXPECTED in message
    assert message.startswith(str(trained_run / "checkpoints" / "latest.pt"))
    assert "algorithm.name: " in message


def test_resume_names_the_distribution_and_version_to_install(trained_run):
    with pytest.raises(ConfigError, match=EXPECTED.replace("(", r"\(").replace(")", r"\)")):
        Trainer.resume(trained_run, without_walker(), progress=False)


def test_rlkit_eval_prints_it_in_one_line(trained_run, capsys):
    status = cli.main(["eval", str(trained_run), "--episodes", "1"], plugins=without_walker())
    assert status == 2
    assert EXPECTED in capsys.readouterr().err


def test_a_manifest_without_components_is_matched_by_entry_point(trained_run):
    # runs written before the manifest recorded components: the plugins missing now
    path = trained_run / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["components"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError) as info:
        load_agent(trained_run, without_walker())
    # every third-party plugin of the training session that is missing now is named (other
    # installed plugins, such as rlkit-sb3, may be among them)
    message = " ".join(str(info.value).split())
    assert re.search(r"rlkit-walker 0\.3\.0(, [^()]+)? \(manifest\.json\): pip install "
                     r"([^ ]+ )*rlkit-walker==0\.3\.0", message), message


def test_without_a_manifest_the_error_lists_what_is_installed(trained_run):
    (trained_run / "manifest.json").unlink()
    with pytest.raises(ConfigError) as info:
        load_agent(trained_run, without_walker())
    message = str(info.value)
    assert "unknown algorithm 'walker'" in message and "pip install" not in message
