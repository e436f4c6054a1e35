"""``jaxmask mask --model BUNDLE --input IN --output OUT``: mask a folder of images.

    jaxmask mask --model /tmp/jaxmask/hair_masker --input photos/ --output released/
    jaxmask mask --model BUNDLE --input IN --output OUT --values soft --save_masks --topk_fraction 0.3

Folder in, folder out: sub-folders and file names are kept; any size and mode
(RGB, RGBA, grey, 16-bit, …). The mask is computed at the model's resolution
and applied, nearest-neighbour upsampled, at the original one. Unreadable
files are skipped and listed, and the exit status is 1 if any failed.
Existing outputs are kept unless --overwrite. Details: jaxmask/masking.py.
"""

from __future__ import annotations

import sys

from absl import flags


def define_flags() -> None:
    flags.DEFINE_string("model", None, "masker bundle directory (from `jaxmask export`)", required=True)
    flags.DEFINE_string("input", None, "folder of images (read recursively)", required=True)
    flags.DEFINE_string("output", None, "folder to write the masked images to", required=True)
    flags.DEFINE_enum("values", None, ["binary", "soft"],
                      "binary: release h*x; soft: m*h*x (default: the mode the masker was trained with)")
    flags.DEFINE_float("topk_fraction", None, "reveal this fraction of pixels instead of the trained K")
    flags.DEFINE_integer("batch_size", 32, "images per masker call")
    flags.DEFINE_bool("save_masks", False, "also write each applied mask as <name>.mask.png beside it")
    flags.DEFINE_bool("overwrite", False, "replace existing outputs (default: keep them)")
    flags.DEFINE_bool("progress", True, "show a progress line on stderr")
    flags.DEFINE_integer("max_pixels", None, "refuse larger images (default: Pillow's decompression "
                         "bomb limit, PIL.Image.MAX_IMAGE_PIXELS)")
    for name in ("topk_fraction", "batch_size", "save_masks", "max_pixels"):
        flags.DEFINE_alias(name.replace("_", "-"), name)


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    import jaxmask
    from jaxmask import masking
    FLAGS = flags.FLAGS
    if FLAGS.topk_fraction is not None and not 0 < FLAGS.topk_fraction <= 1:
        raise SystemExit(f"jaxmask mask: error: --topk_fraction={FLAGS.topk_fraction} must lie in (0, 1]")
    try:
        bundle = jaxmask.load_masker(FLAGS.model)
        report = masking.mask_folder(
            bundle, FLAGS.input, FLAGS.output, values=FLAGS.values, topk_fraction=FLAGS.topk_fraction,
            batch_size=FLAGS.batch_size, save_masks=FLAGS.save_masks, overwrite=FLAGS.overwrite,
            max_pixels=FLAGS.max_pixels, progress=FLAGS.progress)
    except (FileNotFoundError, ValueError) as error:
        print(f"jaxmask mask: error: {error}", file=sys.stderr)
        raise SystemExit(1)
    print(report.summary())
    if report.failed:
        raise SystemExit(1)
