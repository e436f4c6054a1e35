"""Model selection without ground truth (jaxmask.selection): the score and the fresh validation probes."""

import types

import numpy as np
import pytest

from jaxmask import selection


def test_score_rewards_utility_and_punishes_leaks_and_area():
    chance_probes = {"utility": 1.0, "hidden": 0.25, "mask": 0.25}
    assert selection.score(chance_probes, 0.25, 4) == pytest.approx(0.75)       # the module doc's example
    # Below chance is no credit (max(0, ·)); every leak and every revealed pixel costs.
    assert selection.score({**chance_probes, "hidden": 0.1}, 0.25, 4) == pytest.approx(0.75)
    assert selection.score({**chance_probes, "hidden": 1.0}, 0.25, 4) == pytest.approx(-0.25)
    assert selection.score({**chance_probes, "mask": 0.625}, 0.25, 4) == pytest.approx(0.25)
    assert selection.score(chance_probes, 0.5, 4) < selection.score(chance_probes, 0.25, 4)
    assert selection.score({**chance_probes, "utility": 0.25}, 0.25, 4) == pytest.approx(-0.25)


def test_utility_floor_ranks_an_empty_reveal_below_a_useful_one():
    """Revealing nothing leaks nothing: without the floor the empty reveal wins; with it, usefulness first."""
    empty = ({"utility": 0.25, "hidden": 0.25, "mask": 0.25}, 0.01)      # task at chance, no leak
    useful = ({"utility": 0.99, "hidden": 0.70, "mask": 0.70}, 0.30)     # the task, and leaks
    assert selection.score(*empty, 4) > selection.score(*useful, 4)
    floor = 0.95
    assert selection.score(*useful, 4, floor) == selection.score(*useful, 4)   # eligible: unchanged
    assert selection.score(*useful, 4, floor) > selection.score(*empty, 4, floor)
    # Among ineligible checkpoints the more useful one wins, and each is below every eligible one.
    weak = ({"utility": 0.60, "hidden": 0.90, "mask": 0.90}, 0.9)
    assert selection.score(*empty, 4, floor) < selection.score(*weak, 4, floor) < -3
    worst_eligible = selection.score({"utility": floor, "hidden": 1.0, "mask": 1.0}, 1.0, 4, floor)
    assert selection.score({"utility": floor - 1e-6, "hidden": 0.25, "mask": 0.25}, 0.0, 4, floor) < worst_eligible


def test_validation_probes_read_a_label_written_into_the_mask():
    """A reveal whose mask says the label is caught by the mask probe; one that ignores it is not."""
    rng = np.random.default_rng(0)
    n, size = 400, 8
    labels = rng.integers(0, 2, n)
    images = rng.random((n, size, size, 3)).astype(np.float32)
    coded = np.zeros((n, size, size, 1), np.float32)
    coded[labels == 0, :4] = 1                       # label 0: top half; label 1: bottom half
    coded[labels == 1, 4:] = 1
    fixed = np.zeros_like(coded)
    fixed[:, :4] = 1
    settings = types.SimpleNamespace(probe_widths=(8,), probe_epochs=4, probe_batch_size=20)
    leak = selection.validation_probes(images, labels, coded, 2, settings)
    clean = selection.validation_probes(images, labels, fixed, 2, settings)
    assert leak["mask"] >= 0.95 and clean["mask"] <= 0.65
    with pytest.raises(ValueError, match="two halves"):
        selection.validation_probes(images[:30], labels[:30], coded[:30], 2, settings)


@pytest.mark.parametrize("flag, value", [("data.num_validation", 31), ("selection.max_images", 20),
                                         ("selection.probe_batch_size", 33)])
def test_a_validation_split_too_small_for_the_selection_probes_is_refused_before_training(flag, value):
    """Every way to leave the probes less than one batch per half: a ConfigError naming the fix."""
    from conftest import load_config
    from jaxmask.validation import ConfigError, check_training_config
    config = load_config("synth_hair", "smoke")           # num_validation 64, probe batch 16
    check_training_config(config)
    section, field = flag.split(".")
    config[section][field] = value
    with pytest.raises(ConfigError, match=r"probe_batch_size=\d+ validation images.*num_validation"):
        check_training_config(config)
    config.selection.probe_epochs = None                  # selection off: nothing to refuse
    check_training_config(config)
