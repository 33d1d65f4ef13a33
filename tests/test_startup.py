"""Start-up: the listing commands never import torch, lazy registrations resolve to the right
objects, Ctrl-C during start-up never prints a traceback, the listing fits narrow terminals.

The timings themselves are measured in ``benchmarks/startup.py``, not asserted here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlkit.errors import PluginError
from rlkit.hookspecs import hookimpl
from rlkit.plugins import Plugins
from rlkit.specs import _first_line

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("torch", "matplotlib", "tensorboard", "rlkit.algorithms.ppo", "rlkit.loop")


def _modules_after(argv: list[str], columns: int = 100) -> tuple[list[str], str]:
    """Run ``rlkit.cli.main(argv)`` in a fresh interpreter; the heavy modules it imported."""
    code = (
        "import json, sys\n"
        "from rlkit.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]), "
        "file=sys.stderr)\n"
    )
    env = dict(os.environ, COLUMNS=str(columns))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60, cwd=ROOT)
    code, heavy = json.loads(proc.stderr.strip().splitlines()[-1])
    assert code == 0, proc.stderr
    return heavy, proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["plugins"], ["plugins", "--json"],
                                  ["train", "--help"]])
def test_listing_and_help_import_neither_torch_nor_an_algorithm(argv):
    heavy, _ = _modules_after(argv)
    assert heavy == [], f"rlkit {' '.join(argv)} imported {heavy}"


@pytest.mark.slow
@pytest.mark.parametrize("columns", [40, 80])
def test_plugin_listing_never_cuts_a_name_in_a_narrow_terminal(columns, plugins):
    _, out = _modules_after(["plugins"], columns=columns)
    names = [*plugins.algorithms, *plugins.backbones, *plugins.envs, *plugins.exploration]
    assert "rlkit/MountainCarContinuous-v0" in names
    for name in names:
        assert name in out, f"{name!r} is cut or missing at {columns} columns:\n{out}"
    assert "…" not in out


def test_built_in_registrations_resolve_to_their_objects_and_docstrings(plugins):
    from rlkit.algorithms import dqn, ppo, tabular
    from rlkit.backbones import cnn, mlp

    expected = {
        ("algorithm", "ppo"): (ppo.PPOConfig, ppo.build_ppo),
        ("algorithm", "dqn"): (dqn.DQNConfig, dqn.build_dqn),
        ("algorithm", "qlearning"): (tabular.QLearningConfig, tabular.build_qlearning),
        ("algorithm", "sarsa"): (tabular.SarsaConfig, tabular.build_sarsa),
        ("backbone", "mlp"): (mlp.MLPConfig, mlp.build_mlp),
        ("backbone", "cnn"): (cnn.CNNConfig, cnn.build_cnn),
    }
    tables = {"algorithm": plugins.algorithms, "backbone": plugins.backbones}
    for (kind, name), (config, build) in expected.items():
        spec, _ = tables[kind][name]
        assert (spec.config, spec.build) == (config, build), name
        # the description written in the registration is the config's docstring, kept in step
        assert spec.description == _first_line(config.__doc__), name


@dataclass
class _Params:
    """Lazy test algorithm."""

    x: int = 1


class _LazyPlugin:
    @staticmethod
    @hookimpl
    def register_algorithms(register):
        register("lazy_ok", f"{__name__}:_Params", f"{__name__}:_build")
        register("lazy_missing", f"{__name__}:_Nope", f"{__name__}:_build",
                 description="refers to nothing")
        register("lazy_not_a_dataclass", f"{__name__}:_build", f"{__name__}:_build",
                 description="config is a function")


def _build(params, ctx):
    return None


def test_a_lazy_registration_is_resolved_on_first_use_and_a_bad_one_names_its_plugin():
    plugins = Plugins.load(extra=[("lazy", _LazyPlugin)], autoload=False)
    ok = plugins.algorithm("lazy_ok")
    assert ok.config is _Params and ok.build is _build
    assert ok.description == "Lazy test algorithm."
    assert plugins.algorithm("lazy_missing").description == "refers to nothing"
    with pytest.raises(PluginError, match=r"algorithm 'lazy_missing' registered by plugin "
                                          r"'lazy'.*cannot load '\S*test_startup:_Nope'"):
        _ = plugins.algorithm("lazy_missing").config
    with pytest.raises(PluginError, match="lazy_not_a_dataclass.*must be a dataclass type"):
        _ = plugins.algorithm("lazy_not_a_dataclass").config


def test_a_malformed_reference_is_refused_at_registration():
    class Sloppy:
        @staticmethod
        @hookimpl
        def register_algorithms(register):
            register("sloppy", "no_colon_here", "tests.test_startup:_build")

    with pytest.raises(PluginError, match="'package.module:attribute' reference"):
        Plugins.load(extra=[("sloppy", Sloppy)], autoload=False)


@pytest.mark.slow
def test_ctrl_c_during_start_up_prints_no_traceback(tmp_path):
    """SIGINT at moments spread over start-up (imports, plugin loading, config, env and agent
    building) and the first training steps: never a traceback, always the interrupt's status."""
    env = dict(os.environ, COLUMNS="100")
    for i, delay in enumerate((0.3, 0.5, 0.7, 0.9, 1.2, 1.6)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlkit.cli", "train", "experiments/cartpole.yaml",
             "--no-progress", "--run-dir", str(tmp_path / f"run{i}")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, f"SIGINT after {delay} s:\n{err}"
        # 130, or ended by the signal itself (-2), as a shell reports Ctrl-C
        assert proc.returncode in (130, -signal.SIGINT), (
            f"SIGINT after {delay} s: exit {proc.returncode}\n{err}")
        assert "interrupted" in err.lower(), err
