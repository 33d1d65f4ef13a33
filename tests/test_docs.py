"""The user guide documents every configuration key of every section and built-in plugin."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rlkit.config import _SECTIONS, WrapperConfig
from rlkit.optim import OptimizerConfig
from rlkit.schedules import Schedule

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def documented_keys(heading: str) -> set[str]:
    text = GUIDE.read_text()
    marker = f"\n### {heading}\n"
    assert marker in text, f"docs/guide.md has no '### {heading}' section"
    section = text.split(marker, 1)[1].split("\n### ", 1)[0]
    return {line.split("`")[1] for line in section.splitlines()
            if line.startswith("| `")}


def keys(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


@pytest.mark.parametrize("section", sorted(_SECTIONS))
def test_every_section_key_is_in_the_guide(section):
    missing = keys(_SECTIONS[section]) - documented_keys(section)
    assert not missing, f"docs/guide.md '### {section}' lacks {sorted(missing)}"


def test_every_builtin_plugin_key_is_in_the_guide(plugins):
    headings = {"qlearning": "algorithm: qlearning and sarsa",
                "sarsa": "algorithm: qlearning and sarsa",
                "lstm": "backbone: lstm and gru", "gru": "backbone: lstm and gru",
                "ddpg": "algorithm: ddpg and td3", "td3": "algorithm: ddpg and td3",
                "a2c": "algorithm: a2c and a3c", "a3c": "algorithm: a2c and a3c"}
    for kind, table in (("algorithm", plugins.algorithms), ("backbone", plugins.backbones),
                        ("exploration", plugins.exploration)):
        for name, (spec, provider) in table.items():
            if provider.distribution != "rlkit":
                continue
            heading = headings.get(name, f"{kind}: {name}")
            missing = keys(spec.config) - documented_keys(heading)
            assert not missing, f"docs/guide.md '### {heading}' lacks {sorted(missing)}"


@pytest.mark.parametrize(("heading", "cls"), [("optimizer", OptimizerConfig),
                                              ("schedule", Schedule)])
def test_shared_settings_are_in_the_guide(heading, cls):
    assert not keys(cls) - documented_keys(heading)


def test_wrapper_keys_are_explained():
    text = GUIDE.read_text()
    for key in keys(WrapperConfig):
        assert "{name, kwargs}" in text and key in text
