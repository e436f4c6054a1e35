"""``jaxmask mask --model BUNDLE --input IN --output OUT``: mask a folder of images.

    jaxmask mask --model /tmp/jaxmask/hair_masker --input photos/ --output released/
    jaxmask mask --model BUNDLE --input IN --output OUT --values soft --save_masks --topk_fraction 0.3
    jaxmask mask --model BUNDLE --input IN --output OUT --fill black     # original formats, hidden = 0

Folder in, folder out: sub-folders are kept; any size and mode (RGB, RGBA,
grey, 16-bit, …). Exactly round(K·H·W) pixels are revealed at each image's
own size. Default release: PNG with an alpha channel (alpha 0 = hidden,
255 = revealed; hidden RGB 0), named <name>.png; ``--fill black`` keeps each
input's name, format and bit depth with hidden pixels black. Every entry
that is not masked (unreadable, not an image, links leaving the input,
FIFOs, name collisions, …) is listed with the reason, and the exit status is
1 if any was. Existing outputs are kept unless --overwrite. Details:
jaxmask/masking.py and jaxmask/release.py.
"""

from __future__ import annotations

# Imports inside functions are for start-up: `--help` and argument errors answer before JAX and the
# training stack load.

import sys

from absl import flags

# What a stop (Ctrl-C, SIGTERM) leaves: every output is written to a temporary name and renamed.
STOPPED = "every output written so far is complete; run the same command again to mask the rest"
PATH_FLAGS = ("model", "input", "output")


def define_flags() -> None:
    flags.DEFINE_string("model", None, "masker bundle directory (from `jaxmask export`)", required=True)
    flags.DEFINE_string("input", None, "folder of images (read recursively)", required=True)
    flags.DEFINE_string("output", None, "folder to write the masked images to", required=True)
    flags.DEFINE_enum("values", None, ["binary", "soft"],
                      "binary: release h*x; soft: m*h*x (default: the mode the masker was trained with)")
    flags.DEFINE_enum("fill", "alpha", ["alpha", "black"],
                      "alpha: PNG with alpha 0 on hidden pixels (<name>.png); black: the input's format "
                      "and name, hidden pixels 0")
    flags.DEFINE_float("topk_fraction", None, "reveal this fraction of pixels instead of the trained K")
    flags.DEFINE_integer("batch_size", 32, "images per masker call")
    flags.DEFINE_bool("save_masks", False, "also write each applied mask as <name>.mask.png beside it")
    flags.DEFINE_bool("overwrite", False, "replace existing outputs (default: keep them)")
    flags.DEFINE_bool("progress", True, "show a progress line on stderr")
    flags.DEFINE_integer("max_pixels", None, "refuse larger images (default: Pillow's decompression "
                         "bomb limit, PIL.Image.MAX_IMAGE_PIXELS); bounds memory (~12 bytes per pixel)")
    flags.DEFINE_enum("follow_symlinks", "inside", ["none", "inside", "all"],
                      "which symlinks to follow: none; inside (default: links that stay inside the input "
                      "folder); all (also links leading outside it)")
    flags.DEFINE_bool("accept_unverified_manifest", False,
                      "use a format-version-1 bundle, whose manifest carries no checksum of its own (an edited "
                      "K or reveal rule could not be detected); re-exporting it is the safe way")
    for name in ("topk_fraction", "batch_size", "save_masks", "max_pixels", "follow_symlinks",
                 "accept_unverified_manifest"):
        flags.DEFINE_alias(name.replace("_", "-"), name)


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"jaxmask mask: error: unexpected arguments {argv[1:]}")
    from jaxmask import export, masking
    FLAGS = flags.FLAGS
    if FLAGS.topk_fraction is not None and not 0 < FLAGS.topk_fraction <= 1:
        raise SystemExit(f"jaxmask mask: error: --topk_fraction={FLAGS.topk_fraction} must lie in (0, 1]")
    if FLAGS.batch_size < 1:
        raise SystemExit(f"jaxmask mask: error: --batch_size={FLAGS.batch_size} must be ≥ 1")
    if FLAGS.max_pixels is not None and FLAGS.max_pixels < 1:
        raise SystemExit(f"jaxmask mask: error: --max_pixels={FLAGS.max_pixels} must be ≥ 1 (or left out: "
                         "Pillow's decompression-bomb limit)")
    try:
        masking.check_folders(FLAGS.input, FLAGS.output)     # before loading anything
        bundle = export.load_masker(FLAGS.model, accept_unverified_manifest=FLAGS.accept_unverified_manifest)
        # Before anything is allocated: what the sizes would ask for, named by their flags.
        masking.check_sizes(bundle, FLAGS.batch_size, FLAGS.max_pixels, FLAGS.values or bundle.values,
                            ("--batch_size", "--max_pixels"))
        report = masking.mask_folder(
            bundle, FLAGS.input, FLAGS.output, values=FLAGS.values, topk_fraction=FLAGS.topk_fraction,
            batch_size=FLAGS.batch_size, save_masks=FLAGS.save_masks, overwrite=FLAGS.overwrite,
            max_pixels=FLAGS.max_pixels, progress=FLAGS.progress, fill=FLAGS.fill,
            follow_symlinks=FLAGS.follow_symlinks != "none", follow_outside=FLAGS.follow_symlinks == "all")
    except (OSError, ValueError) as error:
        print(f"jaxmask mask: error: {error}", file=sys.stderr)
        raise SystemExit(1)
    print(report.summary())
    if report.failed:
        raise SystemExit(1)
