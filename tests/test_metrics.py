"""metrics.jsonl + TensorBoard events (read back without TensorFlow) and the loop's phase timer."""

import glob
import json
import struct

import pytest
from tensorboardX.proto import event_pb2

from jaxmask.metrics import MetricsWriter, PhaseTimer


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every TensorBoard event file in ``logdir`` (TFRecord framing)."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    files = sorted(glob.glob(f"{logdir}/events.out.tfevents.*"))
    assert files, f"no event files in {logdir}"
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4        # length, its crc, payload, payload crc
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_writer_writes_jsonl_and_tensorboard_events(tmp_path):
    with MetricsWriter(str(tmp_path)) as writer:
        writer.write(2, "train", {"predictor_loss": 1.5, "input_fraction": 0.25})
        writer.write(4, "train", {"predictor_loss": 0.5, "input_fraction": 0.125})
        writer.write(4, "validation", {"accuracy_revealed": 0.75})
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0] == {"step": 2, "split": "train", "predictor_loss": 1.5, "input_fraction": 0.25}
    scalars = read_scalars(tmp_path)
    assert scalars["train/predictor_loss"] == [(2, 1.5), (4, 0.5)]
    assert scalars["train/input_fraction"] == [(2, 0.25), (4, 0.125)]
    assert scalars["validation/accuracy_revealed"] == [(4, 0.75)]


def test_writer_without_tensorboard_writes_jsonl_only(tmp_path):
    with MetricsWriter(str(tmp_path), tensorboard=False) as writer:
        writer.write(1, "train", {"loss": 1.0})
    assert (tmp_path / "metrics.jsonl").exists() and not glob.glob(f"{tmp_path}/events.*")


def test_phase_timer_splits_the_window():
    now = [0.0]
    timer = PhaseTimer(clock=lambda: now[0])
    with timer.phase("input"):
        now[0] += 1.0
    with timer.phase("round"):
        now[0] += 2.0
    with timer.phase("input"):
        now[0] += 1.0
    now[0] += 4.0                        # untimed: "other"
    fractions = timer.fractions()
    assert fractions["window_s"] == 8.0
    assert fractions["input_fraction"] == 0.25 and fractions["round_fraction"] == 0.25
    assert fractions["eval_fraction"] == 0.0 and fractions["other_fraction"] == 0.5
    timer.reset()
    assert timer.fractions()["input_fraction"] == 0.0
    with pytest.raises(KeyError, match="unknown phase"):
        with timer.phase("decode"):
            pass
