"""`jaxmask train` end to end on the smoke config, and the non-finite stop."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, load_config
from test_checkpoint import train_env
from test_metrics import read_scalars


def test_cli_train_smoke_writes_metrics(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    # A user's file named like the temporary file config.json was once written through: left alone.
    (workdir / "config.json.tmp").write_text("the user's")
    env = train_env()           # one CPU device, like a laptop; the programs of tests/test_checkpoint.py's runs
    result = subprocess.run(
        [sys.executable, "-m", "jaxmask.cli", "train",
         "--config", os.path.join(REPO, "configs/synth_hair.py:smoke"),
         f"--workdir={workdir}"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "config.json.tmp").read_text() == "the user's" and (workdir / "config.json").is_file()
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    validation = [r for r in records if r["split"] == "validation"]
    assert train and validation
    assert {"predictor_loss", "obfuscator_loss", "predictor_accuracy", "images_per_s"} <= set(train[-1])
    # The default reveal is capped at K = 0.5: at most half of the pixels.
    assert validation[-1]["step"] == 6 and 0 <= validation[-1]["revealed_fraction"] <= 0.5 + 1e-6
    assert "round 6/6" in result.stderr and "time: input=" in result.stderr
    assert "first round (compilation included) took" in result.stderr and "compilation cache " in result.stderr
    # Where each window's time went: fractions of its wall time, summing to one.
    phases = [f"{name}_fraction" for name in ("input", "round", "eval", "checkpoint", "other")]
    for record in train:
        assert all(0.0 <= record[key] <= 1.0 for key in phases), record
        assert sum(record[key] for key in phases) == pytest.approx(1.0)
    # Round 6 evaluated and checkpointed inside its window.
    assert train[-1]["step"] == 6 and train[-1]["eval_fraction"] > 0 and train[-1]["checkpoint_fraction"] > 0
    # The same records as TensorBoard scalars in the workdir, at the same steps.
    scalars = read_scalars(workdir)
    for split, records_of_split in (("train", train), ("validation", validation)):
        for key in set(records_of_split[-1]) - {"step", "split"}:
            assert scalars[f"{split}/{key}"] == [
                (r["step"], pytest.approx(r[key], rel=1e-6)) for r in records_of_split], key
    assert [step for step, _ in scalars["train/input_fraction"]] == [2, 4, 6]
    # Model selection: fresh validation probes at every evaluation; the best-scoring checkpoint's
    # masker is the workdir's selected bundle, with its round and score.
    for record in validation:
        assert {"selection_score", "probe_utility", "probe_hidden", "probe_mask", "selected",
                "probe_utility_original"} <= set(record)
        # The floor: the originals' probe (one per run) or the run's best release probe so far,
        # less the margin; it only rises, and the score follows it.
        assert record["probe_utility_original"] == validation[0]["probe_utility_original"]
        so_far = [r["probe_utility"] for r in validation if r["step"] <= record["step"]]
        assert record["selection_floor"] == pytest.approx(max(record["probe_utility_original"], *so_far) - 0.05)
        assert (record["selection_score"] < -8) == (record["probe_utility"] < record["selection_floor"])
    # The kept bundle is the last round selected (each selection beat the kept one under its floor).
    best = max((r for r in validation if r["selected"]), key=lambda r: r["step"])
    manifest = json.loads((workdir / "selected" / "manifest.json").read_text())
    assert manifest["step"] == best["step"]
    assert manifest["metrics"]["selection_score"] == pytest.approx(best["selection_score"])
    # SynthFaces has identity labels: the score's identity term is the stronger of the fresh re-ID
    # probe and the game's identity adversary, and the report says so.
    from jaxmask import evaluate, report
    selection = evaluate.selection_record(manifest["metrics"])
    assert selection["probe_identity"] == max(selection["probe_identity_fresh"], selection["accuracy_identity"])
    assert "the stronger of a fresh probe" in report.selection_cell(selection)


def test_non_finite_loss_stops_with_the_metric_named(tmp_path):
    from jaxmask import train
    config = load_config("synth_hair", "smoke")
    config.num_devices = 1
    config.predictor_steps = 1      # the loop's check, at half the compile of the smoke round
    config.phi_learning_rate = 1e38     # finite (a NaN rate is refused up front), and Φ's first update overflows
    with pytest.raises(FloatingPointError, match=r"non-finite \w+=nan in the rounds before round 2"):
        train.train_and_evaluate(config, str(tmp_path))
