"""rlkit.PLUGIN_API: a plugin module's RLKIT_PLUGIN_API is checked before it is registered, and
a plugin made for another API is reported and skipped like one that fails to load."""

from __future__ import annotations

import sys
import warnings

import pytest
from test_plugins import write_dist

import rlkit
from rlkit.plugins import Plugins, parse_plugin_api

PLUGIN = """
    from dataclasses import dataclass

    from rlkit.hookspecs import hookimpl

    {declaration}


    @dataclass(kw_only=True)
    class VersionedConfig:
        '''An algorithm from a plugin that may declare its plugin API.'''

        size: int = 1


    def build(params, ctx):
        raise NotImplementedError


    @hookimpl
    def register_algorithms(register):
        register("versioned_algo", VersionedConfig, build)
"""
MODULE = "rlkit_versioned_mod"


@pytest.fixture(autouse=True)
def no_plugin_env(monkeypatch):
    for name in ("RLKIT_PLUGINS", "RLKIT_DISABLE_PLUGIN_AUTOLOAD", "RLKIT_TRACE_HOOKS"):
        monkeypatch.delenv(name, raising=False)
    yield
    sys.modules.pop(MODULE, None)


def _load(tmp_path, monkeypatch, declaration: str) -> tuple[Plugins, list[str]]:
    """Install rlkit-versioned 0.3 (entry point ``versioned``) declaring ``declaration``, load a
    session, and return it with the warnings about that plugin."""
    site = write_dist(tmp_path / "site", "rlkit-versioned", "0.3", {"versioned": MODULE},
                      {MODULE: PLUGIN.format(declaration=declaration)})
    monkeypatch.syspath_prepend(str(site))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugins = Plugins.load()
    return plugins, [str(w.message) for w in caught if "'versioned'" in str(w.message)]


def test_rlkit_provides_a_major_minor_plugin_api():
    assert rlkit.PLUGIN_API == "1.0"
    assert parse_plugin_api(rlkit.PLUGIN_API) == (1, 0)
    assert "PLUGIN_API" in rlkit.__all__


@pytest.mark.parametrize("declaration", ['RLKIT_PLUGIN_API = "1.0"', ""])
def test_a_plugin_for_this_api_or_without_a_claim_loads(tmp_path, monkeypatch, declaration):
    plugins, messages = _load(tmp_path, monkeypatch, declaration)
    assert messages == []
    assert "versioned_algo" in plugins.algorithms
    assert not [f for f in plugins.failed if f.name == "versioned"]


@pytest.mark.parametrize("needed", ["1.99", "2.0"])
def test_a_plugin_for_a_newer_api_is_reported_and_skipped(tmp_path, monkeypatch, needed):
    plugins, messages = _load(tmp_path, monkeypatch, f'RLKIT_PLUGIN_API = "{needed}"')
    expected = (f"needs rlkit plugin API {needed}, this rlkit {rlkit.__version__} provides 1.0: "
                f"upgrade rlkit (pip install -U rlkit) or install a release of rlkit-versioned "
                f"made for plugin API 1.x")
    [message] = messages
    assert message.startswith("rlkit plugin 'versioned' from rlkit-versioned 0.3 failed to load "
                              "and was skipped: " + expected)
    [failed] = [f for f in plugins.failed if f.name == "versioned"]
    assert failed.distribution == "rlkit-versioned 0.3" and failed.error == expected
    assert "versioned_algo" not in plugins.algorithms
    assert not plugins.pm.has_plugin("versioned") and "versioned" not in plugins.providers
    assert "ppo" in plugins.algorithms  # everything else still loads


def test_a_plugin_for_an_older_major_is_skipped(tmp_path, monkeypatch):
    plugins, [message] = _load(tmp_path, monkeypatch, 'RLKIT_PLUGIN_API = "0.9"')
    assert "needs rlkit plugin API 0.9, this rlkit" in message
    assert "install a release of rlkit-versioned made for plugin API 1.x" in message
    assert "versioned_algo" not in plugins.algorithms


@pytest.mark.parametrize("value", ['"abc"', '"1"', "1.0"])
def test_a_malformed_plugin_api_is_a_clear_error_naming_the_plugin(tmp_path, monkeypatch,
                                                                   value):
    plugins, [message] = _load(tmp_path, monkeypatch, f"RLKIT_PLUGIN_API = {value}")
    assert message.startswith("rlkit plugin 'versioned' from rlkit-versioned 0.3 failed to load")
    assert f"RLKIT_PLUGIN_API = {value.replace(chr(34), chr(39))} in {MODULE} is not a plugin " \
           f"API version" in message
    assert '"major.minor"' in message
    [failed] = [f for f in plugins.failed if f.name == "versioned"]
    assert "is not a plugin API version" in failed.error
    assert "versioned_algo" not in plugins.algorithms


def test_parse_plugin_api():
    assert parse_plugin_api("1.0") == (1, 0)
    assert parse_plugin_api("12.34") == (12, 34)
    for bad in ("abc", "1", "1.0.0", "1.x", "", None, 1.0, "-1.0"):
        assert parse_plugin_api(bad) is None
