"""The plugin layer: discovery through entry points, failures, conflicts, sessions, hooks.

Installed plugins are simulated honestly: a directory with a ``*.dist-info`` folder (METADATA
and entry_points.txt) and the plugin's module, put on ``sys.path`` -- which is all an installed
distribution is to ``importlib.metadata``. One test builds and installs the real example
package, ``plugins/rlkit-reinforce``, with pip.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from rlkit import cli
from rlkit.hookspecs import hookimpl
from rlkit.interfaces import EvalResult, RunInfo
from rlkit.plugins import PluginError, Plugins
from rlkit.validation import field_docs

ROOT = Path(__file__).resolve().parents[1]
REINFORCE = ROOT / "plugins" / "rlkit-reinforce"
BUILT_IN_BACKBONE = "mlp"  # rlkit's own plugins that every session has


def write_dist(site: Path, dist: str, version: str, entry_points: dict[str, str],
               modules: dict[str, str]) -> Path:
    """Lay out an 'installed' distribution in ``site``: dist-info plus top-level modules."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[rlkit]\n{lines}")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return site


def run_python(code: str, pythonpath: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(pythonpath), **env}
    for name in ("RLKIT_PLUGINS", "RLKIT_DISABLE_PLUGIN_AUTOLOAD", "RLKIT_TRACE_HOOKS"):
        if name not in env:
            environ.pop(name, None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environ, timeout=120, check=False)


def load(**kwargs) -> Plugins:
    """A session, ignoring warnings about built-ins other tests are responsible for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return Plugins.load(**kwargs)


@pytest.fixture
def no_plugin_env(monkeypatch):
    for name in ("RLKIT_PLUGINS", "RLKIT_DISABLE_PLUGIN_AUTOLOAD", "RLKIT_TRACE_HOOKS"):
        monkeypatch.delenv(name, raising=False)


# --- a small third-party plugin, "installed" on sys.path ----------------------------------

FAKE_PLUGIN = """
    from dataclasses import dataclass

    from rlkit.hookspecs import hookimpl


    @dataclass(kw_only=True)
    class FakeConfig:
        '''An algorithm from a third-party package.'''

        size: int = 1


    def build(params, ctx):
        raise NotImplementedError


    @hookimpl
    def register_algorithms(register):
        register("fake_algo", FakeConfig, build)
"""


@pytest.fixture
def installed_fake(tmp_path, monkeypatch, no_plugin_env):
    """rlkit-fake-plugin 2.5, entry point ``fake``, on sys.path for this test only."""
    site = write_dist(tmp_path / "site", "rlkit-fake-plugin", "2.5",
                      {"fake": "rlkit_fake_plugin"}, {"rlkit_fake_plugin": FAKE_PLUGIN})
    monkeypatch.syspath_prepend(str(site))  # also invalidates importlib's caches
    yield site
    sys.modules.pop("rlkit_fake_plugin", None)


# --- (a) discovery of a package installed by pip --------------------------------------------


@pytest.mark.slow
def test_pip_installed_package_is_discovered_through_its_entry_point(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REINFORCE, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", "tests"))  # build outside the checkout
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--disable-pip-version-check", "--target", str(target),
         str(source)],
        capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, install.stderr
    version = re.search(r'^version = "(.+)"$', (REINFORCE / "pyproject.toml").read_text(),
                        flags=re.MULTILINE).group(1)

    result = run_python("from rlkit.cli import main; raise SystemExit(main(['plugins', "
                        "'--json']))", target)

    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    rows = {(r["kind"], r["name"]): r for r in listing["registered"]}
    row = rows[("algorithm", "reinforce")]
    assert (row["distribution"], row["version"], row["entry_point"]) == (
        "rlkit-reinforce", version, "reinforce")
    assert row["description"].startswith("REINFORCE")
    assert rows[("backbone", BUILT_IN_BACKBONE)]["distribution"] == "rlkit"
    assert not [f for f in listing["failed"] if f["name"] == "reinforce"]


# --- (b) a broken plugin ----------------------------------------------------------------------


@pytest.mark.slow
def test_broken_plugin_is_reported_by_name_and_skipped(tmp_path):
    site = write_dist(tmp_path, "broken-pkg", "1.0", {"broken": "broken_pkg_mod"},
                      {"broken_pkg_mod": "raise RuntimeError('this plugin cannot start')\n"})
    code = textwrap.dedent("""
        import json
        from rlkit.plugins import Plugins
        p = Plugins.load()
        print(json.dumps({"failed": [vars(f) for f in p.failed],
                          "backbones": {k: v[1].distribution for k, v in p.backbones.items()},
                          "plugins": sorted(p.providers)}))
    """)

    result = run_python(code, site)

    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    broken = [f for f in out["failed"] if f["name"] == "broken"]
    assert broken == [{"name": "broken", "distribution": "broken-pkg 1.0",
                       "error": "RuntimeError: this plugin cannot start"}]
    assert "rlkit plugin 'broken' from broken-pkg 1.0 failed to load" in result.stderr
    assert out["backbones"][BUILT_IN_BACKBONE] == "rlkit"  # the built-ins still load
    assert "broken" not in out["plugins"]


MISSPELLED_ARGUMENT_PLUGIN = """
    from rlkit.hookspecs import hookimpl


    @hookimpl
    def register_algorithms(registr):  # the hook passes `register`
        pass
"""


def test_plugin_with_an_invalid_hook_implementation_is_reported_and_skipped(
        tmp_path, monkeypatch, no_plugin_env):
    site = write_dist(tmp_path / "site", "rlkit-sloppy", "0.2", {"sloppy": "rlkit_sloppy_mod"},
                      {"rlkit_sloppy_mod": MISSPELLED_ARGUMENT_PLUGIN})
    monkeypatch.syspath_prepend(str(site))

    with pytest.warns(RuntimeWarning) as caught:
        plugins = Plugins.load()

    [message] = [str(w.message) for w in caught if "'sloppy'" in str(w.message)]
    assert message.startswith("rlkit plugin 'sloppy' from rlkit-sloppy 0.2 failed to load and "
                              "was skipped: invalid hook implementation: register_algorithms() "
                              "takes 'registr', which the hook does not pass. Did you mean "
                              "'register'?")
    assert ".." not in message

    [failed] = [f for f in plugins.failed if f.name == "sloppy"]
    assert failed.distribution == "rlkit-sloppy 0.2" and "register_algorithms()" in failed.error
    assert not plugins.pm.has_plugin("sloppy") and "sloppy" not in plugins.providers
    assert "ppo" in plugins.algorithms  # everything else still loads
    sys.modules.pop("rlkit_sloppy_mod", None)


def test_built_in_plugin_with_an_invalid_hook_implementation_is_an_error(
        tmp_path, monkeypatch, no_plugin_env):
    # an entry point of the distribution named "rlkit" is one of rlkit's own plugins
    site = write_dist(tmp_path / "site", "rlkit", "0.1.0", {"sloppy_builtin": "rlkit_sloppy_mod"},
                      {"rlkit_sloppy_mod": MISSPELLED_ARGUMENT_PLUGIN})
    monkeypatch.syspath_prepend(str(site))

    with pytest.raises(PluginError) as info:
        Plugins.load()

    assert "rlkit 0.1.0 (entry point 'sloppy_builtin')" in str(info.value)
    assert "'registr'" in str(info.value)
    sys.modules.pop("rlkit_sloppy_mod", None)


# --- (c) duplicate names ------------------------------------------------------------------------


class SecondPPO:
    @hookimpl
    def register_algorithms(self, register: Callable[..., None]) -> None:
        register("ppo", _Params, lambda params, ctx: None)


@dataclass
class _Params:
    """Parameters of a test algorithm."""


def test_duplicate_algorithm_name_is_an_error_naming_both_providers(no_plugin_env):
    with pytest.raises(PluginError) as info:
        load(extra=[("dup", SecondPPO())])
    message = str(info.value)
    assert "'ppo' is registered twice" in message
    original = f"by rlkit {metadata.version('rlkit')} (entry point 'algorithms')"  # the built-in
    newcomer = "by plugin 'dup' (registered in code)"
    assert original in message and newcomer in message
    assert message.index(original) < message.index(newcomer)


SAME_ALGORITHM = """
    from dataclasses import dataclass

    from rlkit.hookspecs import hookimpl


    @dataclass
    class Params:
        '''Parameters.'''


    @hookimpl{marker}
    def register_algorithms(register):
        register("shared_name", Params, lambda params, ctx: None)
"""


@pytest.mark.parametrize("marker", ["", "(tryfirst=True)"])
def test_duplicate_name_across_distributions_names_first_then_newcomer(
        tmp_path, monkeypatch, no_plugin_env, marker):
    site = tmp_path / "site"
    write_dist(site, "rlkit-first", "1.0", {"alpha": "rlkit_first_mod"},
               {"rlkit_first_mod": SAME_ALGORITHM.format(marker="")})
    write_dist(site, "rlkit-second", "2.0", {"beta": "rlkit_second_mod"},
               {"rlkit_second_mod": SAME_ALGORITHM.format(marker=marker)})
    monkeypatch.syspath_prepend(str(site))

    with pytest.raises(PluginError) as info:
        load()

    assert ("register_algorithms: the name 'shared_name' is registered twice, by rlkit-first 1.0 "
            "(entry point 'alpha') and by rlkit-second 2.0 (entry point 'beta')"
            in str(info.value))
    for module in ("rlkit_first_mod", "rlkit_second_mod"):
        sys.modules.pop(module, None)


def test_duplicate_of_a_built_in_names_rlkit_first(tmp_path, monkeypatch, no_plugin_env):
    # "a_ppo" sorts before "algorithms", but rlkit's own plugins are always registered first
    source = SAME_ALGORITHM.format(marker="").replace('"shared_name"', '"ppo"')
    site = write_dist(tmp_path / "site", "my-pkg", "1.0", {"a_ppo": "my_ppo_mod"},
                      {"my_ppo_mod": source})
    monkeypatch.syspath_prepend(str(site))

    with pytest.raises(PluginError) as info:
        load()

    assert (f"the name 'ppo' is registered twice, by rlkit {metadata.version('rlkit')} (entry "
            "point 'algorithms') and by my-pkg 1.0 (entry point 'a_ppo')" in str(info.value))
    sys.modules.pop("my_ppo_mod", None)



def test_duplicate_plugin_name_is_an_error():
    with pytest.raises(PluginError, match="'twin' is already registered"):
        load(extra=[("twin", SecondPPO()), ("twin", object())])


# --- (d) misspelled hook implementations --------------------------------------------------------


class MisspelledHook:
    @hookimpl
    def register_algorithm(self, register):  # the hook is register_algorithms
        register("never", _Params, lambda params, ctx: None)


def test_misspelled_hook_fails_check_pending_with_a_message(no_plugin_env):
    with pytest.raises(PluginError) as info:
        load(extra=[("typo", MisspelledHook())])
    message = str(info.value)
    assert "unknown hook 'register_algorithm' in plugin 'typo'" in message
    assert "Did you mean 'register_algorithms'?" in message
    assert "docs/plugins.md" in message


MISSPELLED_HOOK_PLUGIN = """
    from rlkit.hookspecs import hookimpl


    @hookimpl
    def run_finish(summary):  # the hook is run_finished
        pass
"""


def test_misspelled_hook_error_names_the_distribution_and_the_real_hook(
        tmp_path, monkeypatch, no_plugin_env):
    site = write_dist(tmp_path / "site", "rlkit-typo", "1.4", {"typo": "rlkit_typo_mod"},
                      {"rlkit_typo_mod": MISSPELLED_HOOK_PLUGIN})
    monkeypatch.syspath_prepend(str(site))

    with pytest.raises(PluginError) as info:
        load()

    message = str(info.value)
    assert "unknown hook 'run_finish' in rlkit-typo 1.4 (entry point 'typo')" in message
    assert "Did you mean 'run_finished'?" in message
    sys.modules.pop("rlkit_typo_mod", None)


class MisspelledArgument:
    @hookimpl
    def register_algorithms(self, registr):  # the argument is `register`
        pass


def test_misspelled_hook_argument_is_a_plugin_error(no_plugin_env):
    with pytest.raises(PluginError) as info:
        load(extra=[("typo", MisspelledArgument())])
    message = str(info.value)
    assert "plugin 'typo' (registered in code)" in message
    assert "register_algorithms() takes 'registr'" in message
    assert "Did you mean 'register'?" in message


class HalfValid:
    @hookimpl
    def register_algorithms(self, register):  # valid, and taken by pluggy first
        register("half_valid", _Params, lambda params, ctx: None)

    @hookimpl
    def run_started(self, runn):  # invalid: the argument is `run`
        pass


def test_a_rejected_plugin_leaves_no_hook_implementation_behind(no_plugin_env):
    plugins = load()
    with pytest.raises(PluginError):
        plugins.add("half", HalfValid())
    assert not plugins.pm.has_plugin("half")
    assert all(impl.plugin_name != "half"
               for impl in plugins.pm.hook.register_algorithms.get_hookimpls())


# --- (e) autoload switch and allowlist ----------------------------------------------------------


def test_third_party_plugins_load_by_default(installed_fake):
    plugins = load()
    _, provider = plugins.algorithms["fake_algo"]
    assert (provider.distribution, provider.version, provider.plugin) == (
        "rlkit-fake-plugin", "2.5", "fake")
    assert plugins.versions()["fake"] == "rlkit-fake-plugin 2.5"


def test_disable_autoload_keeps_only_built_ins(installed_fake, monkeypatch):
    monkeypatch.setenv("RLKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins = load()
    assert "fake_algo" not in plugins.algorithms
    assert BUILT_IN_BACKBONE in plugins.backbones
    assert all(p.distribution == "rlkit" for p in plugins.providers.values())


def test_disable_autoload_still_loads_allowlisted_plugins(installed_fake, monkeypatch):
    monkeypatch.setenv("RLKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("RLKIT_PLUGINS", "fake")
    assert "fake_algo" in load().algorithms


@pytest.mark.parametrize("allow, loaded", [
    ("fake", True),                      # by entry-point name
    ("rlkit-fake-plugin", True),         # by distribution name
    ("rlkit_fake_plugin", True),         # names compare as PEP 503 normalises them
    ("RLKIT.Fake__Plugin", True),
    (" other , fake ", True),            # a list, with spaces
    ("other", False),                    # not listed
])
def test_allowlist_selects_third_party_plugins(installed_fake, monkeypatch, allow, loaded):
    monkeypatch.setenv("RLKIT_PLUGINS", allow)
    plugins = load()
    assert ("fake_algo" in plugins.algorithms) is loaded
    assert BUILT_IN_BACKBONE in plugins.backbones  # built-ins are never filtered out


def test_allowlist_argument_compares_names_canonically(installed_fake):
    assert "fake_algo" in load(allow=["Rlkit_Fake-Plugin"], autoload=False).algorithms


def test_allowlisted_name_matching_nothing_installed_is_a_warning(installed_fake, monkeypatch):
    monkeypatch.setenv("RLKIT_PLUGINS", "fake,rlkit-fak-plugin")
    with pytest.warns(RuntimeWarning) as caught:
        plugins = Plugins.load()
    [message] = [str(w.message) for w in caught if "matches no installed" in str(w.message)]
    assert message.startswith("RLKIT_PLUGINS names 'rlkit-fak-plugin', which matches no")
    assert "rlkit-fake-plugin 2.5 (entry points: fake)" in message  # what is installed
    assert f"rlkit {metadata.version('rlkit')} (entry points: " in message
    assert "fake_algo" in plugins.algorithms

    with pytest.warns(RuntimeWarning, match="the allowlist passed to Plugins.load names 'nope'"):
        Plugins.load(allow=["nope"])


def test_allowlist_that_matches_gives_no_warning(installed_fake):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        Plugins.load(allow=["rlkit_fake_plugin", "algorithms"])  # a built-in's name is a match too


def test_load_arguments_override_the_environment(installed_fake, monkeypatch):
    monkeypatch.setenv("RLKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "fake_algo" in load(autoload=True).algorithms
    monkeypatch.delenv("RLKIT_DISABLE_PLUGIN_AUTOLOAD")
    assert "fake_algo" not in load(allow=[]).algorithms


# --- (f) sessions are independent ---------------------------------------------------------------


class Recorder:
    """Registers an algorithm and records every lifecycle hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    @hookimpl
    def register_algorithms(self, register):
        register("session_only", _Params, lambda params, ctx: None)

    @hookimpl
    def run_started(self, run):
        self.calls.append(("run_started", {"run": run}))

    @hookimpl
    def update_finished(self, run, step, metrics):
        self.calls.append(("update_finished", {"run": run, "step": step, "metrics": metrics}))

    @hookimpl
    def evaluation_finished(self, run, step, result):
        self.calls.append(("evaluation_finished", {"run": run, "step": step, "result": result}))

    @hookimpl
    def checkpoint_saved(self, run, path, step):
        self.calls.append(("checkpoint_saved", {"run": run, "path": path, "step": step}))

    @hookimpl
    def run_finished(self, run, summary):
        self.calls.append(("run_finished", {"run": run, "summary": summary}))

    def named(self, name: str) -> list[dict]:
        return [kwargs for hook, kwargs in self.calls if hook == name]


def test_two_sessions_in_one_process_share_no_state(no_plugin_env):
    recorder = Recorder()
    with_plugin = load(extra=[("recorder", recorder)])
    without = load()

    assert with_plugin.pm is not without.pm
    assert "session_only" in with_plugin.algorithms
    assert "session_only" not in without.algorithms
    assert "recorder" not in without.providers
    without.hook.run_finished(run=None, summary={})
    assert recorder.calls == []
    with_plugin.hook.run_finished(run=None, summary={})
    assert [hook for hook, _ in recorder.calls] == ["run_finished"]


# --- (g) lifecycle hooks fire during a run -------------------------------------------------------


def test_lifecycle_hooks_fire_with_sensible_arguments(tmp_path, no_plugin_env):
    from rlkit.loop import Trainer
    from rlkit.testing import experiment_for

    recorder = Recorder()
    plugins = load(extra=[("recorder", recorder)])
    experiment = experiment_for("ppo", env_id="CartPole-v1", plugins=plugins,
                                params={"n_steps": 16, "batch_size": 32, "n_epochs": 1},
                                steps=256, workdir=tmp_path)
    experiment = dataclasses.replace(
        experiment,
        eval=dataclasses.replace(experiment.eval, every=128),
        train=dataclasses.replace(experiment.train, checkpoint_every=128))
    run_dir = tmp_path / "run"

    summary = Trainer(experiment, plugins, run_dir=run_dir, progress=False).run()

    hooks = [hook for hook, _ in recorder.calls]
    assert hooks[0] == "run_started" and hooks[-1] == "run_finished"
    assert hooks.count("run_started") == hooks.count("run_finished") == 1
    run = recorder.named("run_started")[0]["run"]
    assert isinstance(run, RunInfo)
    assert (run.algorithm, run.seed, Path(run.run_dir)) == ("ppo", 0, run_dir)
    assert run.config["algorithm"]["n_steps"] == 16
    assert all(kwargs["run"] is run for _, kwargs in recorder.calls)

    updates = recorder.named("update_finished")
    assert updates, "update_finished never fired"
    assert all(0 < u["step"] <= 256 for u in updates)
    assert [u["step"] for u in updates] == sorted(u["step"] for u in updates)
    assert all(u["metrics"] and all(k.startswith("train/") for k in u["metrics"])
               for u in updates)

    evaluations = recorder.named("evaluation_finished")
    assert [e["step"] for e in evaluations] == [128, 256]
    for e in evaluations:
        assert isinstance(e["result"], EvalResult)
        assert len(e["result"].returns) == experiment.eval.episodes

    checkpoints = recorder.named("checkpoint_saved")
    assert [c["step"] for c in checkpoints][-1] == 256
    assert {128, 256} <= {c["step"] for c in checkpoints}
    assert all(Path(c["path"]).is_file() for c in checkpoints)
    assert Path(checkpoints[-1]["path"]) == run_dir / "checkpoints" / "latest.pt"

    finished = recorder.named("run_finished")[0]["summary"]
    assert finished == summary
    assert finished["status"] == "finished" and finished["env_steps"] == 256
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] == 256


# --- (h) a plugin adds a command ----------------------------------------------------------------

HELLO_COMMAND = """
    from rlkit.hookspecs import hookimpl


    def configure(parser):
        parser.add_argument("who")
        parser.add_argument("--times", type=int, default=1)


    def run(args):
        for _ in range(args.times):
            print(f"hello, {args.who}")
        return 7


    @hookimpl
    def register_commands(cli):
        cli.add("hello", help="greet someone", configure=configure, run=run)
"""


@pytest.fixture
def installed_hello(tmp_path, monkeypatch, no_plugin_env):
    site = write_dist(tmp_path / "site", "rlkit-hello", "0.3", {"hello": "rlkit_hello_cmd"},
                      {"rlkit_hello_cmd": HELLO_COMMAND})
    monkeypatch.syspath_prepend(str(site))
    yield site

    sys.modules.pop("rlkit_hello_cmd", None)


def test_register_commands_adds_a_cli_command(installed_hello, capsys):
    status = cli.main(["hello", "plugins", "--times", "2"])

    assert status == 7
    assert capsys.readouterr().out == "hello, plugins\nhello, plugins\n"


def test_plugin_command_is_listed_in_help(installed_hello, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert re.search(r"hello\s+greet someone", capsys.readouterr().out)


def test_plugin_command_is_absent_when_autoload_is_disabled(installed_hello, monkeypatch,
                                                            capsys):
    monkeypatch.setenv("RLKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(SystemExit) as info:
        cli.main(["hello", "x"])
    assert info.value.code == 2
    assert "invalid choice: 'hello'" in capsys.readouterr().err


# --- (i) a plugin's hyperparameter dataclass documents its fields -------------------------------


@dataclass(kw_only=True)
class BaseParams:
    """Parameters every variant shares."""

    gamma: float = 0.99
    """Discount factor."""

    lr: float = 3e-4
    """Learning rate."""


@dataclass(kw_only=True)
class VariantParams(BaseParams):
    """A variant that adds a field and documents an inherited one anew."""

    lr: float = 1e-3
    """Learning rate of the variant."""

    tau: float = 0.005
    """Target network update rate."""


def test_field_docs_include_inherited_fields():
    assert field_docs(VariantParams) == {
        "gamma": "Discount factor.",
        "lr": "Learning rate of the variant.",
        "tau": "Target network update rate.",
    }
    assert field_docs(BaseParams) == {"gamma": "Discount factor.", "lr": "Learning rate."}
