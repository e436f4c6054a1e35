"""`jaxmask train` end to end on the smoke config, and the non-finite stop."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, load_config


def test_cli_train_smoke_writes_metrics(tmp_path):
    workdir = tmp_path / "run"
    env = {**os.environ, "XLA_FLAGS": ""}           # one CPU device, like a laptop
    result = subprocess.run(
        [sys.executable, "-m", "jaxmask.cli", "train",
         "--config", os.path.join(REPO, "configs/synth_hair.py:smoke"),
         f"--workdir={workdir}"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    validation = [r for r in records if r["split"] == "validation"]
    assert train and validation
    assert {"predictor_loss", "obfuscator_loss", "predictor_accuracy", "images_per_s"} <= set(train[-1])
    assert validation[-1]["step"] == 6 and validation[-1]["revealed_fraction"] == pytest.approx(0.25, abs=1e-3)
    assert "round 6/6" in result.stderr


def test_non_finite_loss_stops_with_the_metric_named(tmp_path):
    from jaxmask import train
    config = load_config("synth_hair", "smoke")
    config.num_devices = 1
    config.phi_learning_rate = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite \w+=nan in the rounds before round 2"):
        train.train_and_evaluate(config, str(tmp_path))
