"""``image_folder``: a user's own images, one subfolder per class (tfds builder).

Layout (``LAYOUT``): ``root/<split>/<label>/*.{png,jpg,jpeg}`` with split in
train / validation / test (train required) and an optional
``root/identities.csv`` (header ``file,identity``; ``file`` relative to root,
e.g. ``train/cat/001.png``; identity a non-negative integer). Images without
an identity row get identity -1.

The class list is the sorted label folders of ``train`` unless given
explicitly; a label folder in another split that is not in the list is an
error naming it. Every image is converted to the configured channels,
centre-cropped to a square (or squashed, ``crop="none"``) and resized.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re

import tensorflow_datasets as tfds

from jaxmask.data import tfds_builders as common

EXTENSIONS = (".png", ".jpg", ".jpeg")
IDENTITIES_FILE = "identities.csv"
IDENTITY_MAX = 2**31 - 1          # the identity feature is int32

LAYOUT = f"""\
  ROOT/
    train/<label>/*.png|jpg|jpeg        (required; one folder per class)
    validation/<label>/...             (optional)
    test/<label>/...                   (optional)
    {IDENTITIES_FILE}                     (optional) header `file,identity`; rows `train/cat/001.png,17`"""


@dataclasses.dataclass(eq=False, kw_only=True)
class FolderConfig(common.ImageConfig):
    """An image variant plus the class list (needed before generation: ClassLabel names)."""
    classes: tuple[str, ...] = ()


def discover_classes(root: str) -> tuple[str, ...]:
    """Sorted label folder names of ``root/train``; raises naming the layout if there are none."""
    train = os.path.join(root, "train")
    if not os.path.isdir(train):
        raise FileNotFoundError(f"image_folder: missing {train!r}.\nExpected layout:\n{LAYOUT}")
    classes = sorted(e for e in os.listdir(train)
                     if os.path.isdir(os.path.join(train, e)) and not e.startswith("."))
    if not classes:
        raise FileNotFoundError(f"image_folder: {train!r} has no label folders.\nExpected layout:\n{LAYOUT}")
    return tuple(classes)


def make_config(root: str | None = None, image_size: int = 64, channels: int = 3,
                crop: str = "center", classes: tuple[str, ...] = ()) -> FolderConfig:
    """The builder config; ``classes`` empty → discovered from ``root/train``."""
    common.check_image_params(image_size, channels, crop)
    classes = tuple(classes) or discover_classes(root)
    if len(set(classes)) < 2:
        raise ValueError(f"image_folder: only one class ({', '.join(classes)}) under {root}/train: a task "
                         f"needs at least 2 label folders (a single class is learnt without looking).\n"
                         f"Expected layout:\n{LAYOUT}")
    return FolderConfig(name=common.image_config_name(image_size, channels, crop),
                        image_size=int(image_size), channels=int(channels), crop=crop, classes=classes,
                        description=f"classes {', '.join(classes)}; {crop} crop, {image_size}px, {channels}ch")


class ImageFolder(common.JaxmaskBuilder):
    """Class-per-subfolder images with optional identities; ArrayRecord, no TF."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_FILES = ("train",)
    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    def class_names(self) -> tuple[str, ...]:
        return tuple(self.builder_config.classes)

    def _info(self) -> tfds.core.DatasetInfo:
        if not self.builder_config.classes:
            raise ValueError("image_folder needs a FolderConfig with classes: use folder.make_config(root)")
        return self._info_from(__doc__, "")

    def read_identities(self, root: str) -> dict[str, int]:
        """relative file path → identity, from the optional identities.csv."""
        path = os.path.join(root, IDENTITIES_FILE)
        if not os.path.exists(path):
            return {}
        if not os.path.isfile(path):
            raise common.BadInputError(f"{path} is not a file: the optional {IDENTITIES_FILE} must be a CSV file "
                                       f"(or absent).\nExpected layout:\n{LAYOUT}")
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.reader(f))
        if not rows or [c.strip() for c in rows[0]] != ["file", "identity"]:
            raise common.BadInputError(f"{path}: header must be `file,identity`.\nExpected layout:\n{LAYOUT}")
        identities = {}
        for number, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            # ASCII digits only (str.isdigit() also passes '²', which int() refuses), within the int32 feature.
            if len(row) != 2 or not re.fullmatch(r"[0-9]+", row[1].strip()):
                self.skip(f"{IDENTITIES_FILE}:{number}",
                          f"malformed row (want `file,identity` with identity a number 0 … {IDENTITY_MAX}): {row}")
                continue
            if int(row[1]) > IDENTITY_MAX:
                self.skip(f"{IDENTITIES_FILE}:{number}",
                          f"identity {row[1].strip()} is larger than {IDENTITY_MAX} (identities are stored as int32)")
                continue
            identities[row[0].strip().replace(os.sep, "/")] = int(row[1])
        return identities

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        self.check_manual_dir(root)
        classes = self.class_names()
        for entry in sorted(os.listdir(root)):
            if os.path.isdir(os.path.join(root, entry)) and entry not in common.SPLITS:
                raise common.BadInputError(
                    f"{os.path.join(root, entry)!r}: split folders must be {common.SPLITS}.\n"
                    f"Expected layout:\n{LAYOUT}")
        identities = self.read_identities(root)
        candidates = {}
        for split in common.SPLITS:
            split_dir = os.path.join(root, split)
            if not os.path.isdir(split_dir):
                continue
            items = []
            for label in sorted(os.listdir(split_dir)):
                label_dir = os.path.join(split_dir, label)
                if not os.path.isdir(label_dir):
                    self.skip(f"{split}/{label}", "not inside a label folder")
                    continue
                if label not in classes:
                    raise common.BadInputError(
                        f"{label_dir!r}: label {label!r} is not in the class list {list(classes)}")
                for file_name in sorted(os.listdir(label_dir)):
                    relative = f"{split}/{label}/{file_name}"
                    if not file_name.lower().endswith(EXTENSIONS):
                        self.skip(relative, f"not a {'/'.join(EXTENSIONS)} file")
                        continue
                    items.append((relative, classes.index(label), identities.pop(relative, -1)))
            if items:
                candidates[split] = items
        for relative in sorted(identities):
            self.skip(f"{IDENTITIES_FILE}: {relative}", "no such image")
        return {split: self._generate_examples(split, items, root) for split, items in candidates.items()}

    def _generate_examples(self, split, items, root):
        def examples():
            for relative, label, identity in items:
                image = self.load_square(relative, os.path.join(root, *relative.split("/")))
                yield None if image is None else (relative, {
                    "image": image, "label": label, "identity": identity, "name": relative})
        return self.emit(split, examples())
