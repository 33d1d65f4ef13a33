"""rlkit's event files read back with TensorBoard's own reader, as torch's SummaryWriter's are."""

from __future__ import annotations

import time

import pytest

from rlkit.events import EventWriter, masked_crc32c

accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(log_dir):
    acc = accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0},
                                       purge_orphaned_data=True)
    acc.Reload()
    return acc


def test_crc32c_matches_the_published_check_value():
    # CRC-32C of b"123456789" is 0xE3069283 (RFC 3720); the mask is TFRecord's
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_scalars_and_text_read_back_like_summary_writers(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    writer = EventWriter(ours)
    reference = SummaryWriter(log_dir=str(theirs))
    for w in (writer, reference):
        w.add_text("config", "```\nalgorithm: ppo\n```", 0)
        for step in range(0, 50, 5):
            w.add_scalar("rollout/ep_return_mean", step * 1.5, step)
            w.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.close()
    reference.close()
    a, b = _read(ours), _read(theirs)
    assert a.Tags()["scalars"] == b.Tags()["scalars"]
    assert a.Tags()["tensors"] == b.Tags()["tensors"] == ["config/text_summary"]
    for tag in b.Tags()["scalars"]:
        assert [(e.step, e.value) for e in a.Scalars(tag)] == [
            (e.step, e.value) for e in b.Scalars(tag)]
    text = a.Tensors("config/text_summary")[0].tensor_proto
    assert text == b.Tensors("config/text_summary")[0].tensor_proto
    assert a.SummaryMetadata("config/text_summary").plugin_data.plugin_name == "text"


def test_purge_step_hides_what_an_interrupted_run_wrote_after_its_checkpoint(tmp_path):
    first = EventWriter(tmp_path)
    for step in range(0, 100, 10):
        first.add_scalar("eval/return_mean", float(step), step)
    first.close()
    time.sleep(1.1)  # a later file name, as a resumed run's is
    resumed = EventWriter(tmp_path, purge_step=50)
    for step in range(50, 80, 10):
        resumed.add_scalar("eval/return_mean", step + 0.5, step)
    resumed.close()
    points = [(e.step, e.value) for e in _read(tmp_path).Scalars("eval/return_mean")]
    assert points == [(0, 0.0), (10, 10.0), (20, 20.0), (30, 30.0), (40, 40.0),
                      (50, 50.5), (60, 60.5), (70, 70.5)]


def test_a_flipped_byte_is_caught_by_the_record_checksum(tmp_path):
    writer = EventWriter(tmp_path)
    writer.add_scalar("x", 1.0, 0)
    writer.close()
    data = bytearray(writer.path.read_bytes())
    data[-6] ^= 0xFF  # inside the last event's payload
    writer.path.write_bytes(bytes(data))
    from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow

    reader = pywrap_tensorflow.PyRecordReader_New(str(writer.path), 0)
    reader.GetNext()  # the file_version event is intact
    with pytest.raises(errors.DataLossError):
        reader.GetNext()
