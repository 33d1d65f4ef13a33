"""What the docs promise about set-up and timing is what the repository does and measured.

The set-up installs PyTorch's CPU build from PyTorch's CPU wheel index wherever the docs give it,
and CI runs exactly the README's test command. Every whole-command timing quoted for an
experiment (README, YAML headers) lies within what ``benchmarks/experiment_times.py`` measured,
recorded in ``benchmarks/experiment_times.json``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"
DOCS = [README, ROOT / "docs" / "guide.md", ROOT / "docs" / "plugins.md",
        ROOT / "envs" / "README.md", ROOT / "benchmarks" / "README.md"]


def bash_blocks(path: Path) -> list[list[str]]:
    """The command lines of each ```bash block in ``path``."""
    blocks = re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def setup_block() -> list[str]:
    text = README.read_text()
    section = text.split("\n## Set-up\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block, "README.md's Set-up section has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_installs_torch_from_pytorchs_cpu_index_before_rlkit():
    install, test = setup_block()
    steps = [step.strip() for step in install.split("&&")]
    assert steps[0] == f"pip install torch {CPU_INDEX}", steps[0]
    assert steps[1].startswith("pip install -e ") and steps[2].startswith("rlkit train ")
    assert test == "python -m pytest"


def test_no_doc_installs_torch_any_other_way():
    for path in DOCS:
        for block in bash_blocks(path):
            for line in block:
                for step in line.split("&&"):
                    if re.search(r"pip install\s+['\"]?torch\b", step):
                        assert CPU_INDEX in step, f"{path.relative_to(ROOT)}: {step.strip()}"


def test_ci_runs_exactly_the_readmes_test_command_and_refuses_a_cuda_build():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == setup_block()[1]
    assert any("torch.version.cuda" in line for line in ci)


def test_ci_installs_the_packages_the_readme_installs():
    install, _ = setup_block()
    readme = [step.strip() for step in install.split("&&")][1].removeprefix("pip install ")
    ci = [line.split(" -q ", 1)[1] for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if "pip install" in line and " -e " in line]
    assert ci == [readme]
    assert "-e plugins/rlkit-sb3" in readme  # the plugin whose tests run with rlkit's


def measured() -> dict[str, tuple[float, float]]:
    """Whole-command seconds, (min, max) per experiment, from the committed benchmark."""
    data = json.loads((ROOT / "benchmarks" / "experiment_times.json").read_text())
    times: dict[str, list[float]] = defaultdict(list)
    for result in data["results"]:
        times[result["experiment"]].append(result["command_s"])
    return {name: (min(t), max(t)) for name, t in times.items()}


SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s+seconds")


def quoted_ranges(text: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in SECONDS.findall(" ".join(text.split()))]


@pytest.mark.parametrize("name", sorted(n for n in measured()  # the SB3 reference aside
                                         if (ROOT / "experiments" / f"{n}.yaml").exists()))
def test_an_experiments_quoted_time_is_the_measured_range(name):
    path = ROOT / "experiments" / f"{name}.yaml"
    header = "\n".join(line.lstrip("#") for line in path.read_text().splitlines()
                       if line.startswith("#"))
    ranges = quoted_ranges(header)
    assert len(ranges) == 1, f"{path.name}: one 'A-B seconds' range expected in its header"
    (low, high), (fastest, slowest) = ranges[0], measured()[name]
    # rounded to the second (or half second), never wider or narrower than that
    assert fastest - 1 < low <= fastest + 0.5 and slowest - 0.5 <= high < slowest + 1, (
        f"{path.name} quotes {low:g}-{high:g} s; benchmarks/experiment_times.json measured "
        f"{fastest:.1f}-{slowest:.1f} s")
    assert "benchmarks/RESULTS.md" in header


def test_the_readme_quotes_the_same_ranges_as_the_experiment_files():
    readme = " ".join(README.read_text().split())
    for name, sentence in (("cartpole", "trains PPO on CartPole-v1"),
                           ("cartpole_gpu", "solves CartPole in")):
        header = (ROOT / "experiments" / f"{name}.yaml").read_text()
        expected = quoted_ranges("\n".join(line.lstrip("#") for line in header.splitlines()))
        after = readme.split(sentence, 1)[1][:200]
        assert quoted_ranges(after)[:1] == expected, (name, after)
