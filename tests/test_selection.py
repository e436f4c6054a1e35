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
    assert selection.score(*empty, 4, floor) < selection.score(*weak, 4, floor) < -8
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
    from jaxmask.build import check_training_config
    from jaxmask.config_checks import ConfigError
    config = load_config("synth_hair", "smoke")           # num_validation 64, probe batch 16
    check_training_config(config)
    section, field = flag.split(".")
    config[section][field] = value
    with pytest.raises(ConfigError, match=r"probe_batch_size=\d+ validation images.*num_validation"):
        check_training_config(config)
    config.selection.probe_epochs = None                  # selection off: nothing to refuse
    check_training_config(config)


def _replay(records, margin, original, num_classes):
    ranking = selection.Ranking(num_classes, margin, original if margin is not None else None)
    kept = None
    for step, utility, hidden, mask, fraction in records:
        if ranking.update({"utility": utility, "hidden": hidden, "mask": mask}, fraction)["selected"]:
            kept = step
    return kept


# The validation probes of the study's expression K = 0.11 seed 2 run (utility, hidden, mask, revealed);
# the same probe read the original images at 0.37 (3 classes).
EXPRESSION = [(20, 0.362, 0.362, 0.362, 0.109), (40, 0.376, 0.352, 0.352, 0.070), (60, 0.436, 0.436, 0.456, 0.054),
              (80, 0.610, 0.470, 0.592, 0.077), (100, 0.772, 0.746, 0.786, 0.104)]


def test_the_running_floor_replaces_an_empty_reveal_by_the_useful_round():
    """Online, round by round: without a floor the near-empty round 40 is kept; with the running floor
    (the best release probe so far, not only the originals' weak 0.37) the last, useful round is."""
    assert _replay(EXPRESSION, None, None, 3) == 40
    assert _replay(EXPRESSION, 0.05, 0.37, 3) == 100
    # The floor only rises: a later, less useful round does not displace the kept one ...
    assert _replay(EXPRESSION + [(120, 0.50, 0.34, 0.34, 0.02)], 0.05, 0.37, 3) == 100
    # ... while among rounds of equal use the one that leaks less still wins.
    hair = [(20, 0.99, 0.80, 0.80, 0.3), (40, 0.99, 0.50, 0.55, 0.3), (60, 0.98, 0.70, 0.70, 0.3)]
    assert _replay(hair, 0.05, 1.0, 4) == 40


def test_a_resumed_ranking_rescores_the_kept_checkpoint():
    kept = ({"utility": 0.376, "hidden": 0.352, "mask": 0.352}, 0.07)
    ranking = selection.Ranking(3, 0.05, 0.37, kept)
    assert ranking.update({"utility": 0.772, "hidden": 0.746, "mask": 0.786}, 0.104)["selected"] == 1.0
    assert ranking.update({"utility": 0.376, "hidden": 0.352, "mask": 0.352}, 0.07)["selected"] == 0.0
