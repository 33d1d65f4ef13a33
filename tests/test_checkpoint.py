"""Checkpoints are atomic, verified by checksum, validated before use and cannot run code."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest
import torch

from rlkit import checkpoint as ckpt
from rlkit.testing import assert_state_equal


def test_round_trip(tmp_path: Path):
    state = {"w": torch.arange(4.0), "meta": {"step": 3, "name": "x", "big": 2**100}}
    path = ckpt.save_atomic(state, tmp_path / "c.pt")
    loaded = ckpt.load(path)
    assert torch.equal(loaded["w"], state["w"]) and loaded["meta"] == state["meta"]


def test_interrupted_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch):
    path = ckpt.save_atomic({"version": 1, "w": torch.zeros(3)}, tmp_path / "latest.pt")

    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # half the bytes reached the disk ...
        raise KeyboardInterrupt  # ... when the process was interrupted

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_atomic({"version": 2, "w": torch.ones(3)}, path)
    monkeypatch.undo()
    assert ckpt.load(path)["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temp files left


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_objects_are_refused(tmp_path: Path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format_version": 1, "agent": Evil()}, f)
    with pytest.raises(ckpt.CheckpointError, match="evil.pt"):
        ckpt.load(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_foreign_files_give_clear_errors(tmp_path: Path):
    path = ckpt.save_atomic({"w": torch.zeros(1000)}, tmp_path / "c.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="c.pt: cannot be loaded"):
        ckpt.load(path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ckpt.CheckpointError, match="not an rlkit checkpoint"):
        ckpt.load(tmp_path / "other.pt")
    with pytest.raises(ckpt.CheckpointError, match="no such run directory"):
        ckpt.find_checkpoint(tmp_path / "nowhere")


# --- checksums ---------------------------------------------------------------------------


def small_state() -> dict:
    return {"agent": {"w": torch.arange(64.0), "steps": torch.ones(3, dtype=torch.int64)},
            "trainer": {"env_steps": 1024, "best": 1.5, "last": [[1.0, 2.0], [10, 11]]},
            "config": {"env": {"id": "CartPole-v1"}}}


def test_a_flipped_byte_inside_tensor_storage_is_refused(tmp_path: Path):
    weights = torch.full((256,), 0.123456789, dtype=torch.float32)
    path = ckpt.save_atomic({"agent": {"w": weights}}, tmp_path / "c.pt")
    data = bytearray(path.read_bytes())
    start = bytes(data).index(weights.numpy().tobytes())  # the weights' storage in the file
    data[start + 517] ^= 0x04  # one bit of one float
    path.write_bytes(data)
    assert not torch.equal(torch.load(path, weights_only=True)["agent"]["w"], weights)  # silent
    with pytest.raises(ckpt.CheckpointError, match=r"c\.pt: checksum mismatch"):
        ckpt.load(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_no_flipped_byte_anywhere_in_the_file_loads_as_different_data(tmp_path: Path):
    state = small_state()
    path = ckpt.save_atomic(state, tmp_path / "c.pt")
    good = ckpt.load(path)
    data = path.read_bytes()
    damaged = tmp_path / "d.pt"
    refused = 0
    for i in range(len(data)):  # every byte of a ~2 KB checkpoint
        flipped = bytearray(data)
        flipped[i] ^= 0x10
        damaged.write_bytes(flipped)
        try:
            loaded = ckpt.load(damaged)
        except ckpt.CheckpointError:
            refused += 1
            continue
        # what loads is exactly what was saved (the byte was framing that changes nothing)
        assert_state_equal(good, loaded, f"byte {i} flipped")
    assert refused > len(data) // 3


def test_checksum_is_stable_through_save_and_load(tmp_path: Path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"views": [base.t(), base[1:, ::2]], "bool": torch.tensor([True, False]),
             "bf16": torch.ones(2, dtype=torch.bfloat16), "empty": torch.zeros(0, 5),
             "scalar": torch.tensor(3), 7: ("tuple", None, -0.0, float("nan"), 2**70),
             "dtype": torch.float16}
    path = ckpt.save_atomic(state, tmp_path / "c.pt")
    loaded = ckpt.load(path)  # verifies the checksum recomputed from the loaded values
    assert loaded["checksum"] == ckpt.checksum(loaded) == ckpt.checksum(
        {"format_version": ckpt.FORMAT_VERSION, **state})
    assert ckpt.checksum({"a": [1]}) != ckpt.checksum({"a": (1,)})  # types count
    assert ckpt.checksum({"a": "1"}) != ckpt.checksum({"a": 1})
    assert ckpt.checksum({"a": torch.zeros(2, 3)}) != ckpt.checksum({"a": torch.zeros(3, 2)})


def test_format_1_checkpoints_load_with_a_warning_and_unknown_formats_are_refused(tmp_path):
    torch.save({"format_version": 1, "w": torch.zeros(2)}, tmp_path / "old.pt")
    with pytest.warns(RuntimeWarning, match=r"old\.pt: .*format 1.*cannot be detected"):
        assert torch.equal(ckpt.load(tmp_path / "old.pt")["w"], torch.zeros(2))
    torch.save({"format_version": 99, "w": torch.zeros(2)}, tmp_path / "new.pt")
    with pytest.raises(ckpt.CheckpointError, match="newer rlkit.*format 99.*upgrade"):
        ckpt.load(tmp_path / "new.pt")
    torch.save({"format_version": 2, "w": torch.zeros(2)}, tmp_path / "bare.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"bare\.pt: its checksum entry is missing"):
        ckpt.load(tmp_path / "bare.pt")


# --- temporary files ---------------------------------------------------------------------


@pytest.mark.parametrize("fail", ["torch.save", "fsync", "fchmod"])
def test_save_atomic_leaves_no_temporary_file_on_any_error(tmp_path: Path, monkeypatch, fail):
    ckpt.save_atomic({"w": torch.zeros(3)}, tmp_path / "latest.pt")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    target = {"torch.save": (torch, "save"), "fsync": (os, "fsync"),
              "fchmod": (os, "fchmod")}[fail]
    monkeypatch.setattr(*target, disk_full)
    with pytest.raises(OSError, match="No space"):
        ckpt.save_atomic({"w": torch.ones(3)}, tmp_path / "latest.pt")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]
    assert torch.equal(ckpt.load(tmp_path / "latest.pt")["w"], torch.zeros(3))


def test_stale_temporary_files_are_removed_but_a_live_writers_file_is_kept(tmp_path: Path):
    import fcntl

    stale = tmp_path / ".latest.pt.k3j2h1ab.tmp"  # left by a writer killed mid-write
    link = tmp_path / ".step_000000001024.pt.link"  # left by older rlkit versions
    live = tmp_path / ".latest.pt.zz9y8x7w.tmp"  # being written by a running trainer
    fresh = tmp_path / ".latest.pt.aaaa1111.tmp"  # just created, not locked yet
    for p in (stale, link, live, fresh):
        p.write_bytes(b"partial checkpoint")
    old = time.time() - 60
    for p in (stale, link, live):
        os.utime(p, (old, old))
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    with live.open("rb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)  # what save_atomic holds while writing
        removed = ckpt.clean_temporary_files(tmp_path)
    assert sorted(removed) == sorted([stale, link])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, fresh.name,
                                                                 other.name])


def test_keep_link_replaces_an_older_file_without_a_temporary_name(tmp_path: Path):
    latest = ckpt.save_atomic({"w": torch.ones(2)}, tmp_path / "latest.pt")
    keep = tmp_path / "step_000000000064.pt"
    keep.write_bytes(b"an older checkpoint of the same step")
    ckpt.keep_link(latest, keep)
    assert os.path.samefile(latest, keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", keep.name]


# --- validating a run checkpoint ---------------------------------------------------------


def run_state() -> dict:
    return {"config": {"algorithm": {"name": "ppo"}}, "agent": {"w": torch.zeros(2)},
            "status": "running", "env": {"prev_done": torch.zeros(2)}, "obs": torch.zeros(2, 4),
            "rng": {"torch": torch.zeros(8, dtype=torch.uint8), "numpy": ["MT19937", 0, 0, 0, 0.0],
                    "python": [3, [0], None]},
            "trainer": {"env_steps": 64, "evaluations": 1, "wall_time_s": 1.5,
                        "last_eval_step": 64, "best_eval": 9.0, "last_eval": [[9.0], [9]],
                        "episode_stats": {}}}


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("agent"), r"agent: required field is missing"),
    (lambda s: s.pop("trainer"), r"trainer: required field is missing"),
    (lambda s: s.pop("rng"), r"rng: required field is missing"),
    (lambda s: s["trainer"].update(env_steps="lots"),
     r"trainer\.env_steps: expected a whole number >= 0, got str 'lots'"),
    (lambda s: s["trainer"].update(env_steps=-5), r"trainer\.env_steps: .*got int -5"),
    (lambda s: s["trainer"].update(env_steps=True), r"trainer\.env_steps: .*got bool"),
    (lambda s: s["trainer"].update(wall_time_s=float("nan")), r"trainer\.wall_time_s"),
    (lambda s: s["trainer"].update(last_eval=[[1.0], []]), r"trainer\.last_eval"),
    (lambda s: s.update(obs=None), r"obs: expected a tensor"),
    (lambda s: s.update(config=["not", "a", "mapping"]), r"config: expected a mapping"),
])
def test_a_damaged_run_checkpoint_is_named_with_its_first_bad_field(damage, message):
    state = run_state()
    ckpt.validate_run_state(state, "run/checkpoints/latest.pt", resume=True)  # intact: fine
    damage(state)
    with pytest.raises(ckpt.CheckpointError, match=r"^run/checkpoints/latest\.pt: " + message):
        ckpt.validate_run_state(state, "run/checkpoints/latest.pt", resume=True)


def test_evaluating_needs_only_the_config_and_the_agent():
    state = run_state()
    del state["trainer"], state["rng"]
    ckpt.validate_run_state(state, "c.pt")  # an agent to evaluate is all there is to check


def test_every_torch_load_in_rlkit_refuses_pickled_objects():
    import ast

    import rlkit

    calls = []
    for source in Path(rlkit.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "torch"):
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                           and k.value.value is True for k in node.keywords)
                calls.append((f"{source.name}:{node.lineno}", safe))
    assert calls, "no torch.load found: the scan is broken"
    assert all(safe for _, safe in calls), [where for where, safe in calls if not safe]
