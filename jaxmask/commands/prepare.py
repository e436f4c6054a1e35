"""``jaxmask prepare``: build a tfds dataset (ArrayRecord) from raw files, then print a summary.

    jaxmask prepare --dataset celeba_hair --manual_dir ~/raw/celeba --data_dir ~/tfds
    jaxmask prepare --dataset ferplus --manual_dir ~/raw/fer --data_dir ~/tfds --image_size 64 --channels 1
    jaxmask prepare --dataset image_folder --manual_dir ~/my_images --data_dir ~/tfds
    jaxmask prepare --config configs/celeba_hair.py --manual_dir ~/raw/celeba   # the variant a config reads

The summary lists examples per split and class, rows the dataset's definition
filters out, and every skipped bad input with the reason (also written to
``skipped.tsv`` beside the data). ``--strict`` turns any skip into an error.
Raw file layouts and sources: docs/datasets.md.
"""

from __future__ import annotations

# Imports inside functions are for start-up: `--help` and argument errors answer before JAX and the
# training stack load.

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
PATH_FLAGS = ("manual_dir", "data_dir")
# Flags that map one-to-one onto prepare.prepare() keyword arguments.
_PARAM_FLAGS = ("dataset", "data_dir", "manual_dir", "image_size", "channels", "crop", "task",
                "num_identities", "seed", "num_train", "num_validation", "num_test", "classes")


def define_flags() -> None:
    from jaxmask.data.prepare import BUILDERS
    flags.DEFINE_enum("dataset", None, sorted(BUILDERS), "dataset to build")
    flags.DEFINE_string("manual_dir", "", "directory with the raw files (layout: docs/datasets.md)")
    flags.DEFINE_string("data_dir", "", "tfds data dir to write to (default: ~/tensorflow_datasets)")
    flags.DEFINE_integer("image_size", 64, "output images are image_size x image_size")
    flags.DEFINE_integer("channels", None, "1 (grey) or 3 (RGB); default: ferplus 1, others 3")
    flags.DEFINE_enum("crop", "center", ["center", "none"],
                      "center: centre square crop before resizing; none: resize the whole image")
    flags.DEFINE_string("task", "hair", "synth_faces: hair | expression")
    flags.DEFINE_integer("num_identities", 20, "synth_faces: number of identities")
    flags.DEFINE_integer("seed", 0, "synth_faces: generation seed")
    flags.DEFINE_integer("num_train", 8000, "synth_faces: train images")
    flags.DEFINE_integer("num_validation", 1000, "synth_faces: validation images")
    flags.DEFINE_integer("num_test", 2000, "synth_faces: test images")
    flags.DEFINE_list("classes", [], "image_folder: class list (default: the folders of train/)")
    flags.DEFINE_bool("strict", False, "fail on the first bad input instead of skipping it")
    flags.DEFINE_bool("overwrite", False, "rebuild even if the variant is already prepared")
    config_flags.DEFINE_config_file(
        "config", None, "optional experiment config: build exactly the variant it reads "
        "(its dataset, image size, channels, data_dir, …); explicit flags still win", lock_config=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jaxmask.data import prepare, tfds_builders
    params = {name: FLAGS[name].value for name in _PARAM_FLAGS}
    if FLAGS.config is not None:
        from_config = prepare.params_for_experiment(FLAGS.config)
        params.update({k: v for k, v in from_config.items() if not FLAGS[k].present})
    if params["dataset"] is None:
        raise app.UsageError("pass --dataset NAME (or --config FILE)")
    params["data_dir"] = params["data_dir"] or prepare.default_data_dir()
    params["classes"] = tuple(params["classes"])
    from jaxmask import config_checks, files
    try:
        config_checks.check_folder_argument(params["data_dir"], "--data_dir")
        if params["manual_dir"]:
            config_checks.check_folder_argument(params["manual_dir"], "--manual_dir")
            files.check_tree(params["manual_dir"], "--manual_dir", depth=1)    # the raw files read by name
        prepare.check_sizes(params["dataset"], params, "--")
        result = prepare.prepare(strict=FLAGS.strict, overwrite=FLAGS.overwrite, **params)
    except (OSError, tfds_builders.BadInputError, ValueError) as error:
        # The message names the file/row and the expected layout; a traceback adds nothing.
        raise SystemExit(f"jaxmask prepare: {error}") from None
    print(prepare.summary(result))
