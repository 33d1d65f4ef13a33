"""Start-up time of the ``rlkit`` command, against an earlier revision of rlkit and against
Stable-Baselines3, in the same run.

Measured, each in a fresh Python process, trials of all variants alternating:

* ``rlkit --help``, ``rlkit --version``, ``rlkit plugins``: wall time of the whole command;
* ``rlkit train experiments/cartpole.yaml``: process start to the first environment step
  (the moment the ``run_started`` hook fires, just before it; the env is reset and the agent
  built by then) and the whole command on a 1,000-step budget. The command runs as
  ``rlkit.cli.main(argv, plugins=...)`` with a plugin session that adds one probe plugin, whose
  ``run_started`` prints a marker;
* SB3 (the reference): process start to the first environment step of ``PPO("MlpPolicy")`` on
  8 CartPole-v1 envs (``import stable_baselines3``, env and model construction, ``learn``).

The earlier revision (``--before REV``, default ``HEAD``) runs from a ``git worktree`` of that
revision put first on ``PYTHONPATH``, beside a ``rlkit`` distribution record carrying that
revision's entry points (which shadows the installed one, as the first found on the path does).

    python benchmarks/startup.py                         # 7 trials each, before = HEAD
    python benchmarks/startup.py --before ac4180e --trials 11 --out benchmarks/startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cartpole_vs_sb3 import machine

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "cartpole.yaml"
MARKER = "rlkit-startup-probe: first step"

TRAIN_WITH_PROBE = """
import sys
from rlkit.cli import main
from rlkit.hookspecs import hookimpl
from rlkit.plugins import Plugins

class Probe:
    @staticmethod
    @hookimpl
    def run_started():
        print("rlkit-startup-probe: first step", file=sys.stderr, flush=True)

sys.exit(main(sys.argv[1:], plugins=Plugins.load(extra=[("probe", Probe)])))
"""

SB3_FIRST_STEP = """
import sys, time
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

class FirstStep(BaseCallback):
    def _on_step(self):
        print("first-step", flush=True, file=sys.stderr)
        return False

model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=0), n_steps=32, seed=0)
model.learn(total_timesteps=256, callback=FirstStep())
"""


def _timed(cmd: list[str], env: dict[str, str], marker: str | None = None) -> dict[str, float]:
    """Wall time of ``cmd``; with ``marker``, also the time until stderr first contains it.

    It runs in an empty directory: ``python -m``/``-c`` put the working directory first on
    ``sys.path``, which must not pick the checkout over the revision being measured.
    """
    cwd = tempfile.mkdtemp(prefix="rlkit-startup-cwd-")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen: dict[str, float] = {}
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if marker and marker in line and "marker" not in seen:
                seen["marker"] = time.perf_counter() - start

    reader = threading.Thread(target=read)
    reader.start()
    code = proc.wait()
    reader.join()
    total = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{''.join(lines[-20:])}")
    if marker and "marker" not in seen:
        raise RuntimeError(f"{' '.join(cmd)}: never printed {marker!r}")
    return {"total_s": total, **({"first_step_s": seen["marker"]} if marker else {})}


def variants(before: Path | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    """``{name: (python prefix, environment)}`` of the rlkit builds to measure."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    base["COLUMNS"] = "100"
    out = {"now": ([sys.executable, "-m", "rlkit.cli"], dict(base))}
    if before is not None:
        tree = before / "tree"
        env = dict(base, PYTHONPATH=os.pathsep.join(map(str, (before / "dist", tree,
                                                              tree / "envs"))))
        out["before"] = ([sys.executable, "-m", "rlkit.cli"], env)
    return out


def commands(run_dir: Path) -> dict[str, tuple[list[str], str | None]]:
    """``{name: (arguments, marker)}``; a command with a marker runs through the probe."""
    train = ["train", str(EXPERIMENT), "--no-progress", "--set", "train.total_steps=1000",
             "--set", "eval.every=0", "--set", "eval.episodes=1", "--run-dir"]
    return {
        "--help": (["--help"], None),
        "--version": (["--version"], None),
        "plugins": (["plugins"], None),
        "train": ([*train, str(run_dir)], MARKER),
    }


def worktree(rev: str) -> Path:
    """A checkout of ``rev``, with ``dist/rlkit-<version>.dist-info`` holding its entry
    points."""
    import tomllib

    path = Path(tempfile.mkdtemp(prefix="rlkit-before-"))
    subprocess.run(["git", "worktree", "add", "--detach", "-f", str(path / "tree"), rev],
                   cwd=ROOT, check=True, capture_output=True)
    project = tomllib.loads((path / "tree" / "pyproject.toml").read_text())["project"]
    info = path / "dist" / f"rlkit-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: rlkit\n"
                                   f"Version: {project['version']}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["rlkit"].items())
    (info / "entry_points.txt").write_text(f"[rlkit]\n{lines}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="HEAD",
                        help="git revision to compare with ('none': skip)")
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--no-sb3", action="store_true", help="skip the SB3 reference")
    parser.add_argument("--out", type=Path, help="write the raw results as JSON")
    args = parser.parse_args()

    before = None if args.before == "none" else worktree(args.before)
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    try:
        builds = variants(before)
        for trial in range(args.trials):
            for build, (prefix, env) in builds.items():
                with tempfile.TemporaryDirectory(prefix="rlkit-startup-") as tmp:
                    for name, (argv, marker) in commands(Path(tmp) / "run").items():
                        cmd = ([sys.executable, "-c", TRAIN_WITH_PROBE, *argv] if marker
                               else [*prefix, *argv])
                        r = _timed(cmd, env, marker)
                        results.setdefault(build, {}).setdefault(name, []).append(r)
            if not args.no_sb3:
                r = _timed([sys.executable, "-c", SB3_FIRST_STEP], builds["now"][1],
                           "first-step")
                results.setdefault("sb3", {}).setdefault("train", []).append(r)
            print(f"trial {trial + 1}/{args.trials} done", file=sys.stderr)
    finally:
        if before is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(before / "tree")],
                           cwd=ROOT, capture_output=True)

    def med(build: str, name: str, key: str = "total_s") -> float:
        return statistics.median(r[key] for r in results[build][name])

    def spread(build: str, name: str, key: str) -> str:
        xs = [r[key] for r in results[build][name]]
        return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"

    rows = []
    for name, key in [("--help", "total_s"), ("--version", "total_s"), ("plugins", "total_s"),
                      ("train", "first_step_s"), ("train", "total_s")]:
        what = f"rlkit {name}" + (" to first env step" if key == "first_step_s" else
                                  " (1,000 steps, whole command)" if name == "train" else "")
        now = spread("now", name, key)
        row = [what, now]
        if before is not None:
            row += [spread("before", name, key),
                    f"{med('before', name, key) / med('now', name, key):.2f}"]
        if "sb3" in results and name == "train" and key == "first_step_s":
            row += [f"SB3 {spread('sb3', 'train', 'first_step_s')}",
                    f"{med('sb3', 'train', 'first_step_s') / med('now', name, key):.2f}"]
        rows.append(row)
    header = ["command", "now: median (min-max) s"]
    if before is not None:
        header += [f"before ({args.before})", "before / now"]
    if "sb3" in results:
        header += ["reference", "reference / now"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "before": args.before,
                                        "trials": args.trials, "results": results}, indent=1))


if __name__ == "__main__":
    main()
