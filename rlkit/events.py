"""TensorBoard event files for scalars and text, written with TensorBoard's own protobufs.

``torch.utils.tensorboard.SummaryWriter`` imports all of TensorBoard's summary machinery,
TensorFlow's stand-in included (about 0.15-0.25 s of every run's start-up), to write the two
kinds of record a run needs. :class:`EventWriter` writes the same records, framed as TensorBoard
reads them (TFRecord: length, masked CRC-32C of the length, the serialized ``Event``, masked
CRC-32C of the event), with the same file name pattern, and with ``purge_step`` as
``SummaryWriter`` has it: on resume, events an interrupted run wrote after its checkpoint are
hidden by TensorBoard. ``tests/test_events.py`` reads the files back with TensorBoard's own
event reader.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from pathlib import Path
from typing import BinaryIO

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.plugins.text import plugin_data_pb2

__all__ = ["EventWriter", "masked_crc32c"]

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _table()
_UID = itertools.count()


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that TFRecord framing stores after the length and after the data."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class EventWriter:
    """Appends scalar and text events to a new event file in ``log_dir``.

    :param log_dir: the run directory (TensorBoard's ``--logdir`` finds the file there).
    :param purge_step: on resume, the step of the checkpoint: TensorBoard then discards the
        events of earlier files with a step at or above it.
    """

    def __init__(self, log_dir: str | Path, *, purge_step: int | None = None) -> None:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{next(_UID)}")
        self.path = log_dir / name
        self._file: BinaryIO = self.path.open("ab")
        step = purge_step if purge_step is not None else 0
        self._write(event_pb2.Event(wall_time=time.time(), step=step,
                                    file_version="brain.Event:2"))
        if purge_step is not None:
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            self._write(event_pb2.Event(wall_time=time.time(), step=purge_step,
                                        session_log=start))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=tag, simple_value=float(value))])
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def add_text(self, tag: str, text: str, step: int) -> None:
        """Text as TensorBoard's text plugin shows it (under ``tag + "/text_summary"``)."""
        content = plugin_data_pb2.TextPluginData(version=0).SerializeToString()
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text",
                                                               content=content))
        tensor = tensor_pb2.TensorProto(
            dtype="DT_STRING", string_val=[text.encode("utf-8")],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=f"{tag}/text_summary", metadata=metadata, tensor=tensor)])
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def flush(self, *, fsync: bool = False) -> None:
        """Hand what was written to the OS (and, with ``fsync``, to the disk)."""
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def _write(self, event: event_pb2.Event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", masked_crc32c(header)) + data
                         + struct.pack("<I", masked_crc32c(data)))
