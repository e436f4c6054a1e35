"""Evaluation metrics, the evaluator/attacker networks, the report, and the expression config."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import load_config
from jaxmask import config_checks, evaluate, report
from jaxmask.commands import evaluate as evaluate_command
from jaxmask.data import pipeline, synthetic
from jaxmask.evaluation import common, networks
from jaxmask.export import export_masker, load_masker
from jaxmask.build import build_method


def random_masker_state(config, seed=0):
    """An untrained masker's variables, drawn on the host (compiling an init takes seconds on CPU)."""
    masker = build_method(config).players.masker
    shape = (1, config.image_size, config.image_size, config.channels)
    abstract = jax.eval_shape(lambda: masker.init(jax.random.key(0), jax.numpy.zeros(shape), train=False))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name in ("mean", "bias"):
            return np.zeros(leaf.shape, leaf.dtype)
        if name in ("var", "scale"):
            return np.ones(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1])) or 1
        return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)

    return {"masker": jax.tree_util.tree_map_with_path(draw, abstract)}


@pytest.fixture(scope="module")
def untrained_bundle(tmp_path_factory):
    config = load_config("synth_hair", "smoke")
    state = random_masker_state(config)
    return load_masker(export_masker(state, config, str(tmp_path_factory.mktemp("m") / "masker"), step=0))


def tiny_eval_config():
    eval_config = evaluate.get_config()
    net = eval_config.network
    net.widths, net.epochs, net.retrain_epochs, net.batch_size = (8, 8), 1, 1, 32
    eval_config.k_sweep = (0.1, 0.25)
    eval_config.grid_examples = 3
    eval_config.mask_only = True
    eval_config.hidden_part = True
    eval_config.batch_size = 64
    return eval_config


def test_mask_quality_counts_revealed_pixels_per_region():
    revealed = np.zeros((2, 4, 4, 1), np.float32)
    revealed[:, 0, :] = 1                          # top row: 4 pixels per image
    task = np.zeros((2, 4, 4), bool)
    task[:, 0, :3] = True                          # 3 of them in the task region
    identity = np.zeros((2, 4, 4), bool)
    identity[:, 0, 3] = True
    identity[:, 3, :] = True                       # 1 in the identity region
    quality = common.mask_quality(revealed, task, identity)
    assert quality == {"revealed_fraction": 0.25, "task_region_share": 0.75, "task_region_revealed": 1.0,
                       "identity_region_share": 0.25}
    assert common.mask_quality(revealed) == {"revealed_fraction": 0.25}
    revealed[1, 1, 0] = 1                          # a capped reveal: 4 and 5 pixels
    assert common.mask_quality(revealed) == {"revealed_fraction": 9 / 32, "revealed_fraction_min": 0.25,
                                               "revealed_fraction_max": 5 / 16}


def test_task_region_revealed_is_the_mean_per_image_recall():
    task = np.zeros((2, 4, 4), bool)
    task[0, :2] = True                             # image 0: 8 task pixels
    task[1, 0, :2] = True                          # image 1: 2 task pixels
    revealed = np.zeros((2, 4, 4, 1), np.float32)
    revealed[0, 0] = 1                             # 4 of 8 revealed
    revealed[1, 0, 0] = 1                          # 1 of 2 revealed
    revealed[1, 3, 3] = 1                          # outside the region: no effect on recall
    assert common.mask_quality(revealed, task)["task_region_revealed"] == pytest.approx(0.5)
    # Not pooled over images: image 1's single pixel counts as much as image 0's four.
    revealed[1, 0, 1] = 1
    assert common.mask_quality(revealed, task)["task_region_revealed"] == pytest.approx(0.75)
    # Everything revealed (Original) or exactly the task region revealed: recall 1.
    everything = np.ones((2, 4, 4, 1), np.float32)
    assert common.mask_quality(everything, task)["task_region_revealed"] == 1.0
    exact = common.mask_quality(task[..., None].astype(np.float32), task)
    assert exact["task_region_revealed"] == 1.0 and exact["task_region_share"] == 1.0
    # Images without a task region are left out of the mean.
    task[1] = False
    assert common.mask_quality(np.zeros_like(revealed), task)["task_region_revealed"] == 0.0
    assert common.mask_quality(everything, task)["task_region_revealed"] == 1.0


def test_cosine_similarity_and_standard_error():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(common.cosine_similarity(a, b), [1.0, -1.0, 0.0])
    assert common.standard_error(0.5, 100) == pytest.approx(0.05)


def test_load_split_gives_arrays_with_regions(smoke_config):
    split = pipeline.load_split(smoke_config, "test", limit=10)
    assert split["image"].shape == (10, 32, 32, 3) and split["image"].dtype == np.float32
    assert 0 <= split["image"].min() and split["image"].max() <= 1
    assert split["label"].shape == split["identity"].shape == (10,)
    assert split["task_mask"].shape == split["identity_mask"].shape == (10, 32, 32)


def test_eval_net_learns_two_heads_and_embeds():
    """Head "a": image brightness; head "b": a red tint (independent of "a")."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 256), rng.integers(0, 2, 256)
    images = np.where(a[:, None, None, None] == 1, 0.6, 0.3) + 0.05 * rng.standard_normal((256, 16, 16, 3))
    images[..., 0] += np.where(b == 1, 0.3, 0.0)[:, None, None]
    images = images.astype(np.float32)
    labels, classes = {"a": a, "b": b}, {"a": 2, "b": 2}
    lines = []
    net = networks.train_classifier(images, labels, num_classes=classes, widths=(8, 8), epochs=10,
                                      batch_size=32, learning_rate=5e-3, progress=lines.append)
    assert len(lines) == 10 and "epoch 10/10" in lines[-1]
    accuracies = net.accuracies(images, labels)
    assert accuracies["a"] >= 0.95 and accuracies["b"] >= 0.95, accuracies
    assert net.accuracy(images, a, "a") == accuracies["a"]
    assert net.embed(images[:5]).shape == (5, 8)
    # Fine-tuning starts from the given parameters.
    tuned = networks.train_classifier(images, labels, num_classes=classes, widths=(8, 8), epochs=1,
                                        batch_size=32, init_params=net.params)
    assert tuned.accuracies(images, labels)["a"] >= 0.95
    with pytest.raises(ValueError, match="labels must lie"):
        networks.train_classifier(images, {"a": a + 5}, num_classes={"a": 2}, epochs=1)


def test_evaluate_and_report_end_to_end(smoke_config, untrained_bundle, tmp_path):
    method = build_method(smoke_config)
    lines = []
    results = evaluate.evaluate(smoke_config, {"Ours": untrained_bundle}, tiny_eval_config(), lines.append)
    assert any("evaluator + attacker (originals): epoch 1/1" in line for line in lines)
    assert any("retrained on Ours: epoch 1/1" in line for line in lines)
    methods = results["methods"]
    assert list(methods) == ["Original", "Block", "Gaussian Blur", "Random-K", "Oracle", "Oracle-exact", "Ours"]
    n_test = smoke_config.data.num_test
    for name, row in methods.items():
        assert row["n_test"] == n_test
        for key in ("task_accuracy", "task_accuracy_retrained", "reid_accuracy",
                    "reid_accuracy_retrained", "face_similarity"):
            assert 0 <= row[key] <= 1 + 1e-6, (name, key)
    assert methods["Original"]["face_similarity"] == pytest.approx(1.0)
    assert "task_accuracy_mask_only" in methods["Ours"] and "reid_accuracy_mask_only" in methods["Oracle"]
    assert "task_accuracy_mask_only" not in methods["Random-K"]          # eval.probe_random_k is off
    assert "task_accuracy_mask_only" not in methods["Block"]
    assert any("hidden-part (plain CNN) probe on Ours: epoch 1/1" in line for line in lines)
    for name in ("Oracle", "Ours"):
        for key in ("task_accuracy_hidden_part", "reid_accuracy_hidden_part", "task_accuracy_hidden_part_plain",
                    "task_accuracy_mask_only", "swap_follows_image", "swap_follows_mask"):
            assert 0 <= methods[name][key] <= 1, (name, key)
        assert len(methods[name]["task_region_revealed_per_class"]) == smoke_config.num_classes
    # The Oracle reveals exactly k, all of each task region that fits in k; the Oracle-exact the
    # task region alone (hair: about a quarter of the image, within the default cap K = 0.5).
    assert methods["Oracle"]["revealed_fraction"] == method.reveal.k / 32 ** 2
    assert methods["Oracle-exact"]["task_region_revealed"] == 1.0 and methods["Oracle-exact"]["task_region_share"] == 1.0
    assert methods["Oracle-exact"]["revealed_fraction"] < methods["Oracle"]["revealed_fraction"]
    bins = methods["Oracle-exact"]["task_accuracy_hidden_part_by_hidden_task_pixels"]
    assert bins[0]["low"] == 0 and bins[0]["count"] == n_test    # no task pixel hidden in any test image
    assert methods["Oracle"]["task_region_revealed"] > methods["Random-K"]["task_region_revealed"] + 0.3
    assert "task_accuracy_hidden_part" not in methods["Original"]
    assert methods["Original"]["revealed_fraction"] == 1.0
    assert methods["Original"]["task_region_revealed"] == 1.0
    for name, row in methods.items():
        assert 0 <= row["task_region_revealed"] <= 1, name
    # Random-K reveals about K of the task region.
    assert methods["Random-K"]["task_region_revealed"] == pytest.approx(method.reveal.k / 32 ** 2, abs=0.05)
    assert methods["Random-K"]["revealed_fraction"] == method.reveal.k / 32 ** 2
    assert methods["Ours"]["revealed_fraction"] <= method.reveal.k / 32 ** 2        # the default reveal: K a cap
    assert [p["topk_fraction"] for p in results["k_sweep"]["Ours"]] == [0.1, 0.25]
    assert results["k_sweep"]["Random-K"][0]["revealed_fraction"] == pytest.approx(0.1, abs=1e-3)

    paths = report.write_report(str(tmp_path / "report"), results)
    text = open(paths["report"]).read()
    for name in methods:
        assert f"| {name} |" in text
    assert "Face similarity" in text and "Task accuracy" in text and f"| {n_test} |" in text
    assert "Task region revealed" in text and "Task acc. from hidden part" in text
    assert "hidden_part" in results["protocol"]
    assert "| minimal | yes | binary | straight-through | yes | cap |" in text   # the ablation table's mode columns
    assert "## Probes" in text and "| Oracle |" in text
    assert "| model selection (its identity term) |" in text
    saved = json.load(open(paths["metrics"]))
    assert saved["methods"]["Ours"]["n_test"] == n_test and "examples" not in saved
    assert os.path.getsize(paths["grid"]) > 1000
    if paths["plot"] is not None:
        assert os.path.getsize(paths["plot"]) > 1000


def test_report_says_how_selection_chose_each_masker_and_its_identity_term():
    cell = report.selection_cell
    assert cell(evaluate.selection_record(None)).startswith("none: not a selected bundle")
    assert cell(evaluate.selection_record({"step": 7, "accuracy_revealed": 0.9})).startswith("none")
    no_identities = cell(evaluate.selection_record({"selection_score": 0.25, "probe_mask": 0.3}))
    assert "validation score 0.250" in no_identities and "no identity labels" in no_identities
    both = cell(evaluate.selection_record({"selection_score": -0.1, "probe_identity": 0.115,
                                           "probe_identity_fresh": 0.082, "accuracy_identity": 0.115}))
    assert "0.115, the stronger of a fresh probe (0.082) and the game's identity adversary (0.115)" in both
    fresh_only = cell(evaluate.selection_record({"selection_score": 0.0, "probe_identity": 0.2,
                                                 "probe_identity_fresh": 0.2}))
    assert "0.200 (a fresh probe)" in fresh_only


def test_parse_and_check_models(untrained_bundle):
    assert evaluate_command.parse_models(["A=/x,B=/y", "C D=/z"]) == {"A": "/x", "B": "/y", "C D": "/z"}
    for bad in (["A"], ["A=/x,A=/y"], ["=/x"]):
        with pytest.raises(ValueError):
            evaluate_command.parse_models(bad)
    expression = load_config("synth_expression", "smoke")
    evaluate.check_models(load_config("synth_hair", "smoke"), {"Ours": untrained_bundle})
    with pytest.raises(ValueError, match="task='hair'"):
        evaluate.check_models(expression, {"Ours": untrained_bundle})


def test_expression_config_measures_the_mouth_area():
    config = load_config("synth_expression")
    hair = load_config("synth_hair")
    spec = synthetic.SynthFacesSpec(task="expression", image_size=config.image_size)
    assert (config.task, config.num_classes) == ("expression", 3)
    largest = synthetic.task_region_fraction(spec, statistic="max")
    assert largest <= config.topk_fraction < largest + 0.01          # every mouth region fits in k
    assert synthetic.task_region_fraction(spec) < largest <= 0.14
    changed = {k for k in hair if hair[k] != config[k]}
    # And neither the opening nor the identity adversary: the mouth is not found with them (the config says why).
    assert changed == {"task", "num_classes", "topk_fraction", "opening", "adversary"}
    assert config.opening is None and hair.opening == 3
    assert {k for k in hair.adversary if hair.adversary[k] != config.adversary[k]} == {"identity_widths"}
    assert tuple(config.adversary.identity_widths) == ()
    assert load_config("synth_expression", "smoke").batch_size == load_config("synth_hair", "smoke").batch_size


def test_earring_config_is_the_small_region_task_at_a_loose_cap():
    config = load_config("synth_earring")
    hair = load_config("synth_hair")
    mean = synthetic.task_region_fraction(synthetic.SynthFacesSpec(task="earring", image_size=config.image_size))
    assert mean <= 0.02                                                # the label sits in ≤ 2% of the pixels
    assert config.topk_fraction == pytest.approx(8 * mean, abs=0.005)  # K = 8× its mean area
    # And no opening: a disc of 7–16 pixels holds few 3×3 squares, and was not found through them.
    assert {k for k in hair if hair[k] != config[k]} == {"task", "topk_fraction", "opening"}
    assert config.opening is None


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["synth_hair", "synth_expression"])
def test_attacker_and_evaluator_learn_synthfaces_originals(experiment):
    """The privacy numbers mean something only if the attacker can tell the identities apart
    (and the utility numbers only if the evaluator can do the task): the default settings of
    the evaluation, on original images (~1-2 min each on 2 CPU cores)."""
    config = load_config(experiment)
    train, test = pipeline.load_split(config, "train"), pipeline.load_split(config, "test", 1000)
    settings = evaluate.get_config().network
    heads = {"label": config.num_classes, "identity": config.data.num_identities}
    network = networks.train_classifier(
        train["image"], {head: train[head] for head in heads}, num_classes=heads,
        widths=tuple(settings.widths), epochs=settings.epochs, batch_size=settings.batch_size,
        learning_rate=settings.learning_rate)
    accuracy = network.accuracies(test["image"], {head: test[head] for head in heads})
    print(f"{experiment} originals: re-identification {accuracy['identity']:.3f} (chance 0.05), "
          f"task {accuracy['label']:.3f}")
    assert accuracy["identity"] >= 0.8
    assert accuracy["label"] >= 0.9


def test_probe_releases_picks_the_probed_rows_and_names_unknown_ones(smoke_config):
    """Which rows are probed follows from each row's flags, never from its name; a name the evaluation
    does not release is refused by the eval checks (config_checks), before any work, on every path."""
    from jaxmask.evaluation import rows
    config = evaluate.get_config()
    task = np.zeros((4, 8, 8), bool)
    task[:, :2] = True
    split = {"task_mask": task}
    table = lambda: [*rows.baseline_rows(config, 0.25), *rows.oracle_rows(split, split, 16, 0),
                     *rows.masker_rows({"Non-adversarial": None, "Ours": None})]
    assert [row.name for row in table()] == ["Original", "Block", "Gaussian Blur", "Random-K", "Oracle",
                                             "Oracle-exact", "Non-adversarial", "Ours"]
    assert rows.probed(config, table()) == {"Ours", "Non-adversarial", "Oracle", "Oracle-exact"}
    config.probe_random_k = True
    assert "Random-K" in rows.probed(config, table())
    config.probe_releases = ("Ours",)
    assert rows.probed(config, table()) == {"Ours"}
    for bad in (("Ourz",), ("Original",)):
        config.probe_releases = bad
        with pytest.raises(ValueError, match="probe_releases"):
            config_checks.check_eval_config(config, smoke_config, ["Non-adversarial", "Ours"])
        with pytest.raises(ValueError, match="probe_releases"):     # the Python API checks them too
            evaluate.evaluate(smoke_config, {}, config, progress=None)
