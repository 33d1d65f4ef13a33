"""Property: however an experiment file is broken, ``rlkit train`` answers with one error line and
exit status 2 -- never a traceback, never a hang.

Files are generated from the shipped experiments/*.yaml: keys dropped, renamed or given values of
the wrong type, integers beyond 64 bits, bytes and re-encodings, deep nesting, duplicated lines,
alias bombs, and random text. Nothing trains: a file that validates is built (env, agent,
buffers, run directory) as ``rlkit train`` would build it, and the example ends where training
would start -- so errors raised while building are held to the same property.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlkit.cli import main

EXPERIMENTS = sorted(Path(__file__).parents[1].joinpath("experiments").glob("*.yaml"))
TEXTS = [p.read_text() for p in EXPERIMENTS]
DATA = [yaml.safe_load(t) for t in TEXTS]

FUZZ = settings(max_examples=120, deadline=3000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Validated(Exception):
    """The file validated and its run was built: the command got as far as training."""


def no_training(self: Any, max_steps: int | None = None) -> dict[str, Any]:
    """Stands in for :meth:`rlkit.loop.Trainer.run`: the run is built, nothing trains."""
    self.env.close()
    raise Validated


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module", autouse=True)
def build_only() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("rlkit.loop.Trainer.run", no_training)
        yield


class Hang(Exception):
    """The command took longer than any validation should."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail an example that hangs instead of hanging the test run (POSIX; elsewhere no limit)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise Hang(f"rlkit train did not answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_train(content: bytes, workdir: Path, plugins: Any, *, may_build: bool = True) -> None:
    """Run ``rlkit train`` on ``content``; it is built (where ``may_build``), or fails with one
    error line, exit 2."""
    path = workdir / "fuzzed.yaml"
    path.write_bytes(content)
    shutil.rmtree(workdir / "run", ignore_errors=True)
    err = io.StringIO()
    try:
        with time_limit(10), contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            status = main(["train", str(path), "--no-progress", "--run-dir",
                           str(workdir / "run")], plugins=plugins)
    except Validated:
        assert may_build, f"built a run from {content.decode()!r}"
        return
    lines = err.getvalue().splitlines()
    errors = [line for line in lines if line.startswith("rlkit: error: ")]
    assert status == 2, err.getvalue()
    assert len(errors) == 1 and lines[-1] == errors[0], err.getvalue()
    assert all(line.startswith("rlkit: ") for line in lines), err.getvalue()
    assert len(errors[0]) < 2000, errors[0][:300]  # values quoted in errors are cut short


# --- strategies -------------------------------------------------------------------------------


def key_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in ``node`` (mappings and list items)."""
    paths = []
    items = node.items() if isinstance(node, dict) else (
        enumerate(node) if isinstance(node, list) else ())
    for key, value in items:
        paths.append((*prefix, key))
        paths.extend(key_paths(value, (*prefix, key)))
    return paths


def get_parent(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


WRONG_VALUES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=2**63 - 2, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e5", "1.5e3", "1.2345e2", "1e999", "-1e9", "off", "on", "nan", "0x10",
                     "10**30", "", "ppo", "cnn", "CartPole-v1", "{kind: linear}"]),
    st.lists(st.integers(min_value=-5, max_value=10**13), max_size=3),
    st.dictionaries(st.sampled_from(["start", "end", "kind", "name", "x"]),
                    st.one_of(st.floats(-1e10, 1e10), st.text(max_size=5)), max_size=3),
)


@st.composite
def mutated_data(draw: st.DrawFn) -> bytes:
    """A shipped experiment with one to three keys dropped, renamed or given a wrong value."""
    import copy

    data = copy.deepcopy(draw(st.sampled_from(DATA)))
    for _ in range(draw(st.integers(1, 3))):
        paths = key_paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = get_parent(data, path)
        key = path[-1]
        action = draw(st.sampled_from(["drop", "rename", "value", "value", "nest"]))
        if action == "drop":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            new = draw(st.one_of(st.text(string.ascii_letters + "_", min_size=1, max_size=12),
                                 st.just(f"{key}x"), st.just(str(key)[:-1] or "k")))
            parent[new] = parent.pop(key)
        elif action == "nest":
            parent[key] = {"name": parent[key]} if draw(st.booleans()) else [parent[key]]
        else:
            parent[key] = draw(WRONG_VALUES)
    return yaml.safe_dump(data, allow_unicode=draw(st.booleans())).encode()


def bomb(levels: int) -> str:
    lines = ["b0: &b0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@st.composite
def mutated_text(draw: st.DrawFn) -> bytes:
    """A shipped experiment's text with bytes, lines or the encoding broken."""
    text = draw(st.sampled_from(TEXTS))
    lines = text.splitlines(keepends=True)
    action = draw(st.sampled_from(["bytes", "cut", "duplicate", "indent", "line", "deep",
                                   "deep_block", "bomb", "encoding", "truncate"]))
    at = draw(st.integers(0, len(lines) - 1))
    if action == "bytes":
        raw = text.encode()
        pos = draw(st.integers(0, len(raw)))
        return raw[:pos] + draw(st.binary(min_size=1, max_size=8)) + raw[pos:]
    if action == "cut":
        end = draw(st.integers(at, len(lines)))
        lines[at:end] = []
    elif action == "duplicate":  # a key or a whole section twice
        end = draw(st.integers(at + 1, min(len(lines), at + 8)))
        lines[end:end] = lines[at:end]
    elif action == "indent":
        shift = draw(st.sampled_from([-4, -2, -1, 1, 2, 3, "\t"]))
        line = lines[at]
        if shift == "\t":
            lines[at] = "\t" + line
        elif isinstance(shift, int) and shift > 0:
            lines[at] = " " * shift + line
        else:
            lines[at] = line[min(-int(shift), len(line) - len(line.lstrip(" "))):]
    elif action == "line":
        lines[at] = draw(st.text(max_size=40)) + "\n"
    elif action == "deep":
        depth = draw(st.integers(50, 3000))
        lines.append("extra: " + "[" * depth + "]" * depth + "\n")
    elif action == "deep_block":
        depth = draw(st.integers(50, 200))
        lines.append("x:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(depth)))
    elif action == "bomb":
        lines.insert(0, bomb(draw(st.integers(5, 9))))
        lines.append("run: {name: *b4}\n")
    elif action == "encoding":
        encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32",
                                         "utf-32-le", "latin-1", "cp1252"]))
        return ("# café €\n" + text).encode(encoding, errors="replace")
    else:  # truncate
        raw = text.encode()
        return raw[: draw(st.integers(0, len(raw)))]
    return "".join(lines).encode()


SIZE_KEYS = [("env", "num_envs"), ("algorithm", "n_steps"), ("algorithm", "buffer_size"),
             ("backbone", "hidden_sizes"), ("backbone", "channels")]


@st.composite
def oversized(draw: st.DrawFn) -> bytes:
    """A shipped experiment with one size set far beyond any machine's memory (but within 64
    bits): each must be refused before anything that large is built or allocated."""
    import copy

    data = copy.deepcopy(draw(st.sampled_from(DATA)))
    present = [(s, k) for s, k in SIZE_KEYS if k in data.get(s, {})] or [("env", "num_envs")]
    section, key = draw(st.sampled_from(present))
    # up to 2**62: a network that large overflows torch's 64-bit size arithmetic, which is
    # reported like any allocation failure
    size = draw(st.integers(min_value=2**40, max_value=2**62))
    if isinstance(data[section].get(key), list):
        data[section][key] = [*data[section][key][:-1], size]
    else:
        data[section][key] = size
    return yaml.safe_dump(data).encode()


# --- the properties ---------------------------------------------------------------------------


@FUZZ
@given(content=mutated_data())
def test_experiments_with_wrong_keys_and_values_fail_cleanly(content, workdir, plugins):
    check_train(content, workdir, plugins)


@FUZZ
@given(content=mutated_text())
def test_experiments_with_broken_text_fail_cleanly(content, workdir, plugins):
    check_train(content, workdir, plugins)


@settings(FUZZ, max_examples=40)
@given(content=oversized())
def test_experiments_with_sizes_beyond_memory_fail_cleanly_before_allocating(content, workdir,
                                                                           plugins):
    check_train(content, workdir, plugins, may_build=False)


@pytest.mark.parametrize("name", ["cartpole", "breakout_ppo"])
def test_a_network_whose_size_overflows_64_bits_fails_cleanly(name, workdir, plugins):
    data = yaml.safe_load((EXPERIMENTS[0].parent / f"{name}.yaml").read_text())
    data["backbone"]["hidden_sizes"] = [2**62]
    check_train(yaml.safe_dump(data).encode(), workdir, plugins, may_build=False)


@settings(FUZZ, max_examples=60)
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_random_files_fail_cleanly(content, workdir, plugins):
    check_train(content, workdir, plugins)


def test_the_stand_in_does_see_valid_files(workdir, plugins):
    """The properties above would pass vacuously if nothing ever reached the trainer."""
    with pytest.raises(Validated):
        main(["train", str(EXPERIMENTS[0]), "--no-progress"], plugins=plugins)
