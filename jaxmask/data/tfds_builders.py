"""Shared machinery of jaxmask's tfds builders: image policy, skip accounting, base class.

Every builder writes ArrayRecord without TensorFlow: examples hold PIL images
(the ``tfds.features.Image`` feature encodes them to PNG with Pillow), never
numpy arrays, so ``download_and_prepare(file_format="array_record")`` runs on a
TF-free install.

Bad input policy (DESIGN.md §4, documented in docs/datasets.md):

* a missing manual file → ``FileNotFoundError`` naming the file and the layout;
* a corrupt, truncated or zero-byte image, or a malformed metadata row →
  skipped, counted and listed in the ``BuildReport`` (``strict=True``: a
  ``BadInputError`` naming it instead);
* a value outside its closed set (a split, a label) → ``BadInputError`` naming
  the row, always: it means the files are not the published ones;
* greyscale/RGB/palette images are converted to the configured channels and
  images of any size are cropped and resized to the configured square.

A split whose every candidate was skipped is an error (tfds cannot write an
empty split, and an empty split is never what the user wanted).
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import io
import os
import stat
from typing import Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image
from tensorflow_datasets.core import utils as tfds_utils

CROPS = ("center", "none")    # centre square crop | the whole image, squashed
SPLITS = ("train", "validation", "test")


class BadInputError(ValueError):
    """Input that must not be skipped silently: names the file (and row) at fault."""


class BadImage(ValueError):
    """An image file that cannot be decoded; the message is the skip reason."""


@dataclasses.dataclass
class BuildReport:
    """What a build kept, filtered by definition, and skipped as bad input.

    counts:   split → class name → examples written.
    filtered: reason → count, for rows the dataset's definition excludes
              (e.g. CelebA images with two hair colours); not an error.
    skipped:  (file or file:line, reason) for each bad input that was dropped.
    """
    counts: dict[str, collections.Counter] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(collections.Counter))
    filtered: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def split_total(self, split: str) -> int:
        return sum(self.counts[split].values())


# ---------------------------------------------------------------- images

def open_image(source: str | os.PathLike | bytes) -> Image.Image:
    """Fully decoded PIL image from a path or encoded bytes; raises ``BadImage`` with the reason."""
    if isinstance(source, bytes):
        data = source
    else:
        # Only a regular file is read: a folder named like an image is no image, and a FIFO would block.
        kind = os.stat(source).st_mode     # FileNotFoundError (a dangling link too): the caller's "file missing"
        if not stat.S_ISREG(kind):
            raise BadImage("a folder, not an image file" if stat.S_ISDIR(kind) else
                           "not a regular file (a FIFO, socket or device)")
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as error:
            raise BadImage(f"unreadable: {error.strerror}") from None
    if not data:
        raise BadImage("zero-byte file")
    try:
        image = Image.open(io.BytesIO(data))
        frames = getattr(image, "n_frames", 1)
        # open() only reads the header; load() decodes every pixel, which is
        # where truncated files fail (Pillow raises OSError for them).
        image.load()
    except Exception as error:  # Pillow raises many types for bad files
        raise BadImage(f"not a decodable image ({type(error).__name__}: {error})") from None
    if frames > 1:
        raise BadImage(f"{image.format} with {frames} frames: one example is one image, and keeping the first "
                       f"frame would drop {frames - 1}; save the frames as separate files")
    return image


def square_image(image: Image.Image, size: int, channels: int, crop: str = "center") -> Image.Image:
    """PIL image of ``size``×``size`` in mode ``L`` (channels=1) or ``RGB`` (channels=3).

    ``crop="center"`` takes the largest centred square first (no distortion);
    ``"none"`` resizes the whole image (aspect ratio not kept). Colour
    conversion happens before resizing so palette/alpha images resample as
    colours, not indices.
    """
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    image = image.convert("L" if channels == 1 else "RGB")
    if crop == "center":
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        # Pillow's bicubic widens its support when downscaling, so this is antialiased.
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image


def check_image_params(image_size: int, channels: int, crop: str = "center") -> None:
    if not isinstance(image_size, (int, np.integer)) or not 8 <= image_size <= 1024:
        raise ValueError(f"image_size must be an int in [8, 1024], got {image_size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")


def image_config_name(image_size: int, channels: int, crop: str = "center") -> str:
    """The tfds config name of an image variant, e.g. ``64px_3ch`` or ``64px_3ch_none``."""
    return f"{image_size}px_{channels}ch" + ("" if crop == "center" else f"_{crop}")


@dataclasses.dataclass(eq=False, kw_only=True)
class ImageConfig(tfds.core.BuilderConfig):
    """A variant of a real-image dataset: output size, channels and crop."""
    image_size: int = 64
    channels: int = 3
    crop: str = "center"


def make_image_config(image_size: int = 64, channels: int = 3, crop: str = "center") -> ImageConfig:
    check_image_params(image_size, channels, crop)
    return ImageConfig(name=image_config_name(image_size, channels, crop), image_size=int(image_size),
                       channels=int(channels), crop=crop,
                       description=f"{crop} crop, {image_size}x{image_size}, {channels} channel(s)")


# ---------------------------------------------------------------- base builder

class JaxmaskBuilder(tfds.core.GeneratorBasedBuilder):
    """Base of jaxmask's builders: report, strict mode, manual-file checks, common features.

    Subclasses set CLASSES, MANUAL_FILES (paths relative to the manual dir;
    empty for generated data) and MANUAL_DOWNLOAD_INSTRUCTIONS (the layout).
    """

    CLASSES: tuple[str, ...] = ()
    MANUAL_FILES: tuple[str, ...] = ()

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # tfds's own lookup touches `importlib_resources`, which tfds does not
        # declare for Python >= 3.9; the module file is all it needs (it looks
        # for a checksums file next to it; we download nothing).
        return epath.Path(inspect.getfile(cls))

    def __init__(self, *, strict: bool = False, **kwargs):
        self.strict = strict
        self.report = BuildReport()
        super().__init__(**kwargs)

    @classmethod
    def check_manual_dir(cls, manual_dir: str | os.PathLike) -> None:
        """Raises ``FileNotFoundError`` naming the first missing file and the expected layout."""
        for relative in ("", *cls.MANUAL_FILES):
            path = os.path.join(manual_dir, relative)
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"{cls.name}: missing {path!r}.\nExpected layout of the manual dir:\n"
                    f"{cls.MANUAL_DOWNLOAD_INSTRUCTIONS}")

    def class_names(self) -> tuple[str, ...]:
        return tuple(self.CLASSES)

    def _features(self, extra: dict | None = None) -> tfds.features.FeaturesDict:
        size, channels = self.builder_config.image_size, self.builder_config.channels
        return tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, channels), encoding_format="png"),
            "label": tfds.features.ClassLabel(names=list(self.class_names())),
            # -1 where the source has no identity (FER+, unlabelled folders).
            "identity": tfds.features.Scalar(dtype=np.int32),
            # Source file or row, so every example can be traced back.
            "name": tfds.features.Text(),
            **(extra or {}),
        })

    def _info_from(self, description: str, homepage: str, citation: str = "",
                   extra_features: dict | None = None) -> tfds.core.DatasetInfo:
        # DatasetInfo directly: dataset_info_from_configs() expects package
        # metadata files (README/CITATIONS) next to the module.
        return tfds.core.DatasetInfo(builder=self, description=description,
                                     features=self._features(extra_features),
                                     supervised_keys=("image", "label"),
                                     homepage=homepage, citation=citation)

    # -- accounting --------------------------------------------------------

    def skip(self, where: str, reason: str) -> None:
        """Drops a bad input: counted and listed, or an error in strict mode."""
        if self.strict:
            raise BadInputError(f"{where}: {reason} (strict mode: no skipping)")
        self.report.skipped.append((where, reason))

    def filter(self, reason: str) -> None:
        """Counts a row the dataset's definition excludes (not bad input)."""
        self.report.filtered[reason] += 1

    def emit(self, split: str, examples: Iterable[tuple[str, dict] | None]) -> Iterator[tuple[str, dict]]:
        """Yields the non-None (key, example) pairs, counting them per class.

        ``None`` marks a candidate that was skipped; a split left empty is an error.
        """
        names, written = self.class_names(), 0
        for item in examples:
            if item is None:
                continue
            key, example = item
            self.report.counts[split][names[example["label"]]] += 1
            written += 1
            yield key, example
        if written == 0:
            recent = "; ".join(f"{w}: {r}" for w, r in self.report.skipped[-3:])
            raise BadInputError(f"{self.name}: split {split!r} has no usable examples "
                                f"(skipped so far: {len(self.report.skipped)}; last: {recent or 'none'})")

    def load_square(self, where: str, source) -> Image.Image | None:
        """The configured square image from a file/bytes, or None (skip recorded) if it is bad."""
        config = self.builder_config
        try:
            image = open_image(source)
        except FileNotFoundError:
            self.skip(where, "file missing")
            return None
        except BadImage as error:
            self.skip(where, str(error))
            return None
        return square_image(image, config.image_size, config.channels, config.crop)
