"""Checkpoints are atomic and cannot run code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from rlkit import checkpoint as ckpt


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
