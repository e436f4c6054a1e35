"""``celeba_hair``: CelebA faces labelled by hair colour, with identities (tfds builder).

Where the raw files come from: the CelebA project page
(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, "Align&Cropped Images" and
"Anno"/"Eval" folders of its Google Drive / Baidu mirror). CelebA's licence
forbids redistribution, so tfds cannot download it: put the files in a manual
dir (layout in ``LAYOUT``) and run
``jaxmask prepare --dataset celeba_hair --manual_dir DIR --data_dir DIR``.

Definition: images with exactly one of Black_Hair, Blond_Hair, Brown_Hair,
Gray_Hair set (label in that order), the official partition (0 train,
1 validation, 2 test), the CelebA identity kept for the privacy evaluation.
Each aligned 178×218 image is centre-cropped to a square and resized (default
64×64, configurable; see docs/datasets.md for how our counts compare with the
paper's 74,024 / 18,505 / 11,351).
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from jaxmask.data import tfds_builders as common

HAIR_ATTRIBUTES = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
CLASSES = ("black", "blond", "brown", "gray")
PARTITIONS = {"0": "train", "1": "validation", "2": "test"}
ATTR_FILE, PARTITION_FILE, IDENTITY_FILE = (
    "list_attr_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt")
IMAGE_DIR = "img_align_celeba"

LAYOUT = f"""\
  MANUAL_DIR/
    {IMAGE_DIR}/000001.jpg ... 202599.jpg   (the aligned & cropped 178x218 JPEGs)
    {ATTR_FILE}     line 1: image count; line 2: the 40 attribute names;
                            then `000001.jpg -1  1  1 -1 ...` (40 values, 1 or -1)
    {PARTITION_FILE}  `000001.jpg 0` (0 train, 1 validation, 2 test)
    {IDENTITY_FILE}      `000001.jpg 2880` (identity id)
Download: https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped Images, Anno, Eval)."""

CITATION = """@inproceedings{liu2015faceattributes,
  title={Deep Learning Face Attributes in the Wild},
  author={Liu, Ziwei and Luo, Ping and Wang, Xiaogang and Tang, Xiaoou},
  booktitle={Proceedings of International Conference on Computer Vision (ICCV)},
  year={2015}}"""


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


class CelebaHair(common.JaxmaskBuilder):
    """CelebA hair colour (black, blond, brown, gray) with identities; ArrayRecord, no TF."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: exactly-one hair colour, official partition."}
    BUILDER_CONFIGS = [common.make_image_config(64, 3, "center")]
    CLASSES = CLASSES
    MANUAL_FILES = (IMAGE_DIR, ATTR_FILE, PARTITION_FILE, IDENTITY_FILE)
    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    def _info(self) -> tfds.core.DatasetInfo:
        return self._info_from(__doc__, "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html", CITATION)

    # -- metadata ------------------------------------------------------------

    def read_hair_labels(self, path: str) -> dict[str, int | None]:
        """file name → hair class index, or None when not exactly one hair attribute is set."""
        lines = _lines(path)
        name = os.path.basename(path)
        if len(lines) < 2 or not lines[0].strip().isdigit():
            raise common.BadInputError(
                f"{path}: line 1 must be the image count and line 2 the attribute names.\n{LAYOUT}")
        declared, attributes = int(lines[0]), lines[1].split()
        missing = [a for a in HAIR_ATTRIBUTES if a not in attributes]
        if missing:
            raise common.BadInputError(
                f"{path}: line 2 lacks the attribute(s) {missing}; got {attributes[:6]}...\n{LAYOUT}")
        columns = [1 + attributes.index(a) for a in HAIR_ATTRIBUTES]
        labels: dict[str, int | None] = {}
        rows = 0
        for number, line in enumerate(lines[2:], start=3):
            fields = line.split()
            if not fields:
                continue    # blank lines (a trailing newline) are not rows
            rows += 1
            if len(fields) != len(attributes) + 1 or any(v not in ("1", "-1") for v in fields[1:]):
                self.skip(f"{name}:{number}", f"malformed row (want a file name and "
                          f"{len(attributes)} values of 1/-1): {line[:60]!r}")
                continue
            hair = [fields[c] == "1" for c in columns]
            labels[fields[0]] = hair.index(True) if sum(hair) == 1 else None
        if rows != declared:
            self.skip(name, f"line 1 declares {declared} images but the file has {rows} rows")
        return labels

    def read_pairs(self, path: str, allowed: dict[str, str] | None = None) -> dict[str, str]:
        """file name → second column of a `name value` file (partition or identity)."""
        name, pairs = os.path.basename(path), {}
        for number, line in enumerate(_lines(path), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                self.skip(f"{name}:{number}", f"malformed row (want `000001.jpg N`): {line[:60]!r}")
                continue
            if allowed is not None and fields[1] not in allowed:
                # A split outside {0,1,2} means this is not the published file.
                raise common.BadInputError(
                    f"{path}:{number}: partition {fields[1]!r} is not one of "
                    f"{sorted(allowed)} (0 train, 1 validation, 2 test)")
            pairs[fields[0]] = fields[1]
        return pairs

    # -- generation ----------------------------------------------------------

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        self.check_manual_dir(root)
        labels = self.read_hair_labels(os.path.join(root, ATTR_FILE))
        partitions = self.read_pairs(os.path.join(root, PARTITION_FILE), PARTITIONS)
        identities = self.read_pairs(os.path.join(root, IDENTITY_FILE))
        candidates = {split: [] for split in common.SPLITS}
        for file_name, label in labels.items():
            if label is None:
                self.filter("not exactly one of " + "/".join(HAIR_ATTRIBUTES))
                continue
            if file_name not in partitions:
                self.skip(f"{ATTR_FILE}: {file_name}", f"not listed in {PARTITION_FILE}")
                continue
            if file_name not in identities:
                self.skip(f"{ATTR_FILE}: {file_name}", f"not listed in {IDENTITY_FILE}")
                continue
            candidates[PARTITIONS[partitions[file_name]]].append(
                (file_name, label, int(identities[file_name])))
        image_dir = os.path.join(root, IMAGE_DIR)
        return {split: self._generate_examples(split, items, image_dir)
                for split, items in candidates.items() if items}

    def _generate_examples(self, split, items, image_dir):
        def examples():
            for file_name, label, identity in items:
                image = self.load_square(f"{IMAGE_DIR}/{file_name}", os.path.join(image_dir, file_name))
                yield None if image is None else (file_name, {
                    "image": image, "label": label, "identity": identity, "name": file_name})
        return self.emit(split, examples())
