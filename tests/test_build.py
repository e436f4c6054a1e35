"""The recipe of a training is built once per process and handed down (jaxmask.build), and the names the
config checks accept are the names the code makes (no second list to drift)."""

import numpy as np
import pytest
from conftest import load_config

from jaxmask import baselines, build, config_checks, evaluate, parallel, train
from jaxmask.evaluation import rows


def test_a_training_and_its_resume_build_the_method_once(tmp_path):
    """Checkpoints, the parallel steps, model selection and resume all receive the recipe: after it is
    built, a training (with a selection, a checkpoint and a resume of a changed config) builds no method
    from the run's config again. The resume's check builds the *saved* config's state once, to compare."""
    config = load_config("synth_hair", "smoke")
    config.num_rounds, config.eval_every, config.checkpoint_every = 1, 1, 1
    # One device, as `jaxmask train` in tests/test_train.py and test_checkpoint.py: the same round
    # program, so the session's compilation cache holds it already (8 fake devices: another compile).
    config.num_devices = 1
    before = build.methods_built()
    recipe = build.from_config(config)
    assert build.methods_built() == before + 1
    train.train_and_evaluate(config, str(tmp_path), recipe=recipe)
    assert build.methods_built() == before + 1
    resumed = config.copy_and_resolve_references()
    resumed.num_rounds = 2
    recipe = build.from_config(resumed)
    train.train_and_evaluate(resumed, str(tmp_path), recipe=recipe)
    assert build.methods_built() == before + 3     # the run's own, and the checkpoint's config once


def test_pmap_steps_reuse_the_recipes_method():
    """pmap gets the same method with its device axis (Method.with_axis_name), not a rebuilt one."""
    config = load_config("synth_hair", "smoke")
    config.parallel = "pmap"
    recipe = build.from_config(config)
    before = build.methods_built()
    compiled = parallel.wrap(recipe)
    assert build.methods_built() == before
    assert compiled.method.axis_name == parallel.AXIS and recipe.method.axis_name is None
    assert compiled.method.players.masker.bn_axis_name == parallel.AXIS
    assert compiled.method.reveal == recipe.method.reveal and compiled.method.adversary == recipe.method.adversary


def test_the_row_names_the_eval_checks_accept_are_the_rows_the_evaluation_makes(smoke_config):
    """`--eval.probe_releases=Oracle-exact` was refused while the evaluation released an Oracle-exact row:
    the checks' names are now the ones the rows are made from."""
    eval_config = evaluate.get_config()
    assert tuple(baselines.standard(eval_config, 0.25)) == config_checks.BASELINE_ROWS
    task = np.zeros((4, 8, 8), bool)
    task[:, :2] = True
    split = {"task_mask": task}
    assert tuple(row.name for row in rows.oracle_rows(split, split, 10, 0)) == config_checks.ORACLE_ROWS
    for name in (*config_checks.ORACLE_ROWS, "Random-K", "Ours"):
        eval_config.probe_releases = (name,)
        config_checks.check_eval_config(eval_config, smoke_config, ["Ours"])
    eval_config.probe_releases = ("Original",)      # the originals are never probed
    with pytest.raises(config_checks.ConfigError, match="Original"):
        config_checks.check_eval_config(eval_config, smoke_config, ["Ours"])


def test_a_saved_config_of_an_older_jaxmask_is_completed_with_the_values_its_run_had(smoke_config):
    """Fields added since a checkpoint was written take their legacy value (what runs before them had);
    a field without one stays missing, and building then names it."""
    saved = json_config(smoke_config)
    del saved["adversary"]["jitter"], saved["adversary"]["plateau"], saved["minimal"]
    completed = config_checks.complete_saved(saved)
    assert completed["adversary"]["jitter"] == 0 and completed["adversary"]["plateau"] is None
    assert completed["minimal"]["judge_objective"] == "uniform" and completed["minimal"]["min_mask_rate"] == 0.01
    import ml_collections
    build.from_config(ml_collections.ConfigDict(completed))
    del saved["num_rounds"]
    with pytest.raises(config_checks.ConfigError, match="config.num_rounds is missing"):
        build.from_config(ml_collections.ConfigDict(config_checks.complete_saved(saved)))


def json_config(config):
    import json
    return json.loads(config.to_json_best_effort())
