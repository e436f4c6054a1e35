"""Builder registry, experiment-config → tfds-variant naming, ``prepare`` and its summary.

A prepared dataset lives in ``DATA_DIR/<dataset>/<variant>/<version>/``
where the variant names every parameter that changes the records
(``64px_3ch`` for real images; ``hair_32px_20id_seed0_8000-1000-2000`` for
SynthFaces). Training finds the variant from its config with
``variant_for_experiment``; ``jaxmask prepare`` builds it with the same
function, so the two cannot disagree.
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow_datasets as tfds

from jaxmask import arguments, files
from jaxmask.data import celeba, ferplus, folder, synth_tfds
from jaxmask.data import tfds_builders as common

BUILDERS = {"synth_faces": synth_tfds.SynthFaces, "celeba_hair": celeba.CelebaHair,
            "ferplus": ferplus.Ferplus, "image_folder": folder.ImageFolder}
DEFAULT_CHANNELS = {"synth_faces": 3, "celeba_hair": 3, "ferplus": 1, "image_folder": 3}
SKIPPED_FILE = "skipped.tsv"    # full skip list, next to the ArrayRecord files
SOURCE_FILE = "source.json"     # the raw folder and class list a variant was built from


def builder_class(dataset: str) -> type[common.JaxmaskBuilder]:
    if dataset not in BUILDERS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {sorted(BUILDERS)}")
    return BUILDERS[dataset]


def default_data_dir() -> str:
    return os.fspath(tfds.core.constants.DATA_DIR)


def make_builder_config(dataset: str, *, manual_dir: str = "", image_size: int = 64,
                        channels: int | None = None, crop: str = "center", task: str = "hair",
                        num_identities: int = 20, seed: int = 0, num_train: int = 8000,
                        num_validation: int = 1000, num_test: int = 2000,
                        classes: tuple[str, ...] = ()) -> tfds.core.BuilderConfig:
    """The tfds BuilderConfig of one dataset variant (unused parameters are ignored)."""
    builder_class(dataset)
    channels = DEFAULT_CHANNELS[dataset] if channels is None else channels
    if dataset == "synth_faces":
        if channels != 3:
            raise ValueError(f"synth_faces is RGB: channels must be 3, got {channels}")
        return synth_tfds.make_config(task, image_size, num_identities, seed,
                                      num_train, num_validation, num_test)
    if dataset == "image_folder":
        return folder.make_config(manual_dir, image_size, channels, crop, tuple(classes))
    if dataset == "ferplus" and crop != "center":
        raise ValueError("ferplus images are already square: crop must be 'center'")
    return common.make_image_config(image_size, channels, crop)


def variant_for_experiment(config) -> str:
    """The tfds config name an experiment config reads (the default crop for real images)."""
    builder_class(config.dataset)
    if config.dataset == "synth_faces":
        return synth_tfds.config_name(config.task, config.image_size, config.data.num_identities,
                                      config.seed, config.data.num_train, config.data.num_validation,
                                      config.data.num_test)
    return common.image_config_name(config.image_size, config.channels)


def params_for_experiment(config) -> dict:
    """``prepare`` keyword arguments that build the variant ``config`` reads."""
    d = config.data
    return dict(dataset=config.dataset, data_dir=d.data_dir or default_data_dir(), manual_dir=d.manual_dir,
                image_size=config.image_size, channels=config.channels, task=config.task,
                num_identities=d.num_identities, seed=config.seed, num_train=d.num_train,
                num_validation=d.num_validation, num_test=d.num_test)


def prepare_command_for(config, data_dir: str) -> str:
    """The ``jaxmask prepare`` command line that builds what ``config`` reads (for error messages)."""
    args = [f"--dataset {config.dataset}", f"--data_dir {data_dir}", f"--image_size {config.image_size}"]
    if config.dataset == "synth_faces":
        d = config.data
        args += [f"--task {config.task}", f"--num_identities {d.num_identities}", f"--seed {config.seed}",
                 f"--num_train {d.num_train}", f"--num_validation {d.num_validation}",
                 f"--num_test {d.num_test}"]
    else:
        args += [f"--channels {config.channels}", "--manual_dir RAW_FILES_DIR"]
    return "jaxmask prepare " + " ".join(args)


def check_sizes(dataset: str, params: dict, prefix: str = "") -> None:
    """Bounds what a build would hold in memory before it starts: SynthFaces renders each split whole
    (3 bytes of image and 2 of masks per pixel). ``prefix``: '--' where the names are flags."""
    if dataset != "synth_faces":
        return
    size = int(params.get("image_size", 64))
    for split in ("num_train", "num_validation", "num_test"):
        count = params.get(split)
        if count is None:
            continue
        arguments.integer(count, prefix + split, 0)
        arguments.check_bytes(count * size * size * 5, f"{prefix}{split}={count} (SynthFaces renders a split of "
                              f"{size}x{size} images in memory)", f"pass a smaller {prefix}{split}")


def dataset_dir(data_dir: str, dataset: str, variant: str) -> str:
    """Directory holding the ArrayRecord files of a prepared variant (current builder version)."""
    return os.path.join(data_dir, dataset, variant, str(builder_class(dataset).VERSION))


@dataclasses.dataclass
class PrepareResult:
    dataset: str
    variant: str
    path: str                        # the version directory
    split_counts: dict[str, int]
    class_names: tuple[str, ...]
    report: common.BuildReport       # empty when reused
    reused: bool                     # already prepared; nothing was rebuilt


def prepare(dataset: str, *, data_dir: str, manual_dir: str = "", strict: bool = False,
            overwrite: bool = False, **params) -> PrepareResult:
    """Builds ``dataset`` as ArrayRecord under ``data_dir``; returns counts and the bad-input report.

    ``params``: ``make_builder_config`` keyword arguments. Raises
    ``FileNotFoundError`` (missing manual file, naming it and the layout) or
    ``common.BadInputError`` (out-of-set values; any bad input when ``strict``).
    """
    cls = builder_class(dataset)
    if cls.MANUAL_FILES:
        if not manual_dir:
            raise ValueError(f"{dataset} is built from raw files: pass manual_dir.\n"
                             f"Expected layout:\n{cls.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        # The raw files read by name (CSV, attribute lists): a FIFO there would hang the build.
        files.check_tree(manual_dir, "manual_dir", depth=1)
        cls.check_manual_dir(manual_dir)
    check_sizes(dataset, params)
    config = make_builder_config(dataset, manual_dir=manual_dir, **params)
    # tfds refuses a custom config that shares a predefined config's name; the
    # predefined one has the same parameters (the name encodes them all).
    config = cls.builder_configs.get(config.name, config)
    builder = cls(data_dir=data_dir, config=config, strict=strict)
    reused = builder.is_prepared() and not overwrite
    source = _source_record(manual_dir, builder)
    if reused and source is not None:
        _check_same_source(os.path.join(os.fspath(builder.data_dir), SOURCE_FILE), source, dataset)
    if not reused:
        mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
                else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
        # An existing variant's info already names its format: tfds refuses to be told again.
        file_format = None if builder.is_prepared() else "array_record"
        builder.download_and_prepare(
            file_format=file_format,
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir or None, download_mode=mode, try_download_gcs=False))
        _write_skipped(os.path.join(os.fspath(builder.data_dir), SKIPPED_FILE), builder.report)
        if source is not None:
            with open(os.path.join(os.fspath(builder.data_dir), SOURCE_FILE), "w") as f:
                json.dump(source, f, indent=1)
    splits = builder.info.splits
    return PrepareResult(dataset, config.name, os.fspath(builder.data_dir),
                         {name: splits[name].num_examples for name in common.SPLITS if name in splits},
                         builder.class_names(), builder.report, reused)


def _source_record(manual_dir: str, builder) -> dict | None:
    """What a variant built from raw files was built from (None: generated, e.g. synth_faces)."""
    if not manual_dir:
        return None
    return {"manual_dir": os.path.realpath(manual_dir), "classes": list(builder.class_names())}


def _check_same_source(path: str, source: dict, dataset: str) -> None:
    """Refuses to reuse a variant built from another raw folder or class list under the same name."""
    try:
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        recorded = None
    if recorded != source:
        built_from = ("an unrecorded source (an older jaxmask, or a damaged record)" if recorded is None else
                      f"{recorded.get('manual_dir')} with classes {recorded.get('classes')}")
        raise ValueError(f"{dataset} in {os.path.dirname(path)} was prepared from {built_from}, not from "
                         f"{source['manual_dir']} with classes {source['classes']}: pass --overwrite to rebuild "
                         "it from this folder, or another --data_dir to keep both")


def _write_skipped(path: str, report: common.BuildReport) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("where\treason\n")
        f.writelines(f"{where}\t{reason}\n" for where, reason in report.skipped)


def summary(result: PrepareResult, max_listed: int = 50) -> str:
    """Human-readable summary: counts per split and class, filtered rows, skipped inputs and why."""
    lines = [f"{result.dataset}/{result.variant} → {result.path}"]
    if result.reused:
        lines.append("already prepared (pass --overwrite to rebuild); examples per split: "
                     + ", ".join(f"{s} {n}" for s, n in result.split_counts.items()))
        return "\n".join(lines)
    names = result.class_names
    width = max(8, *(len(n) + 1 for n in names))
    lines.append(f"{'split':<12}{'total':>8}" + "".join(f"{n:>{width}}" for n in names))
    for split, total in result.split_counts.items():
        counts = result.report.counts[split]
        lines.append(f"{split:<12}{total:>8}" + "".join(f"{counts[n]:>{width}}" for n in names))
    filtered = result.report.filtered
    if filtered:
        lines.append(f"filtered by the dataset's definition (not bad input): {sum(filtered.values())}")
        lines += [f"  {count:>7}  {reason}" for reason, count in sorted(filtered.items())]
    skipped = result.report.skipped
    lines.append(f"skipped bad inputs: {len(skipped)}"
                 + (f" (all listed in {os.path.join(result.path, SKIPPED_FILE)})" if skipped else ""))
    lines += [f"  {where}: {reason}" for where, reason in skipped[:max_listed]]
    if len(skipped) > max_listed:
        lines.append(f"  ... and {len(skipped) - max_listed} more")
    return "\n".join(lines)
