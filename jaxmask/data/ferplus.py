"""``ferplus``: FER2013 faces with FER+ crowd labels, neutral / happiness / surprise (tfds builder).

Where the raw files come from:

* ``fer2013.csv`` (columns ``emotion,pixels,Usage``; 35,887 rows of 48×48
  grey pixels as 2,304 space-separated values) from the Kaggle "Challenges in
  Representation Learning: Facial Expression Recognition Challenge" data
  (fer2013.tar.gz);
* ``fer2013new.csv`` (``Usage,Image name,neutral,happiness,surprise,sadness,
  anger,disgust,fear,contempt,unknown,NF``: ten annotators' votes per image,
  row-aligned with fer2013.csv) from https://github.com/microsoft/FERPlus.

Neither may be redistributed, so they go in a manual dir (``LAYOUT``).

Definition: the label is the FER+ majority (plurality) vote over the ten vote
columns; a tie for the most votes is dropped (no majority), as are images whose
majority is any other emotion, ``unknown`` or ``NF`` (not a face) and rows FER+
left without an image name. Only neutral, happiness and surprise are kept (the
paper's three classes). Usage gives the split: Training → train, PublicTest →
validation, PrivateTest → test. The 48×48 image is resized to the configured
size and written with 1 or 3 (replicated grey) channels. FER has no identities:
``identity`` is -1.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxmask.data import tfds_builders as common

FER_FILE, FERPLUS_FILE = "fer2013.csv", "fer2013new.csv"
FER_HEADER = ["emotion", "pixels", "Usage"]
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                "fear", "contempt", "unknown", "NF")
FERPLUS_HEADER = ["Usage", "Image name", *VOTE_COLUMNS]
CLASSES = ("neutral", "happiness", "surprise")
USAGE = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
FER_EMOTIONS = 7     # fer2013.csv emotion: 0 angry … 6 neutral (checked, not used)
FER_SIDE = 48

LAYOUT = f"""\
  MANUAL_DIR/
    {FER_FILE}      header `emotion,pixels,Usage`; rows `0,"70 80 82 ... (2304 values)",Training`
    {FERPLUS_FILE}   header `Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF`;
                       rows `Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0`, row i labels row i of {FER_FILE}
Download: fer2013.csv from the Kaggle FER2013 challenge, fer2013new.csv from https://github.com/microsoft/FERPlus."""

CITATION = """@inproceedings{barsoum2016ferplus,
  title={Training Deep Networks for Facial Expression Recognition with Crowd-Sourced Label Distribution},
  author={Barsoum, Emad and Zhang, Cha and Canton Ferrer, Cristian and Zhang, Zhengyou},
  booktitle={ACM International Conference on Multimodal Interaction (ICMI)},
  year={2016}}"""


def majority_vote(votes: list[int]) -> int | None:
    """Index into VOTE_COLUMNS of the most-voted column, or None on a tie or no votes."""
    top = max(votes)
    if top == 0 or votes.count(top) > 1:
        return None
    return votes.index(top)


def _read_csv(path: str, header: list[str]) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f))
    if not rows or [h.strip() for h in rows[0]] != header:
        got = rows[0] if rows else "an empty file"
        raise common.BadInputError(
            f"{path}: header must be {','.join(header)}, got {got}.\nExpected layout:\n{LAYOUT}")
    return rows[1:]


class Ferplus(common.JaxmaskBuilder):
    """FER+ majority labels neutral/happiness/surprise on FER2013 faces; ArrayRecord, no TF."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: plurality vote, ties dropped, 3 classes."}
    BUILDER_CONFIGS = [common.make_image_config(64, 1), common.make_image_config(64, 3)]
    CLASSES = CLASSES
    MANUAL_FILES = (FER_FILE, FERPLUS_FILE)
    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

    def _info(self) -> tfds.core.DatasetInfo:
        return self._info_from(__doc__, "https://github.com/microsoft/FERPlus", CITATION)

    def parse_pixels(self, where: str, text: str) -> np.ndarray | None:
        """(side, side) uint8 from the space-separated pixel string, or None (skip recorded)."""
        try:
            values = np.array(text.split(), dtype=np.int64)
        except ValueError:
            self.skip(where, "pixels are not all integers")
            return None
        side = math.isqrt(values.size)
        # 48×48 is the published size; any other square is resized like a wrong-size image file.
        if values.size == 0 or side * side != values.size:
            self.skip(where, f"{values.size} pixel values is not a square image (want {FER_SIDE ** 2})")
            return None
        if values.min() < 0 or values.max() > 255:
            self.skip(where, "pixel values outside 0..255")
            return None
        return values.astype(np.uint8).reshape(side, side)

    def select(self, number: int, fer_row: list[str], plus_row: list[str]):
        """(split, label, image name, pixel string) for a kept row pair, else None (counted)."""
        where, where_plus = f"{FER_FILE}:{number}", f"{FERPLUS_FILE}:{number}"
        if len(fer_row) != 3 or not fer_row[0].strip().isdigit():
            self.skip(where, f"malformed row (want emotion,pixels,Usage): {str(fer_row)[:60]}")
            return None
        if int(fer_row[0]) >= FER_EMOTIONS:
            raise common.BadInputError(
                f"{where}: emotion {fer_row[0]} is outside the FER2013 classes 0..{FER_EMOTIONS - 1}")
        usage = fer_row[2].strip()
        if usage not in USAGE:
            raise common.BadInputError(f"{where}: Usage {usage!r} is not one of {sorted(USAGE)}")
        if len(plus_row) != len(FERPLUS_HEADER):
            self.skip(where_plus, f"malformed row (want {len(FERPLUS_HEADER)} columns): {str(plus_row)[:60]}")
            return None
        if plus_row[0].strip() != usage:
            # The two files are row-aligned; a different Usage means they are not.
            raise common.BadInputError(
                f"{where_plus}: Usage {plus_row[0]!r} differs from {where}'s {usage!r}: "
                f"the files must be row-aligned (row i of {FERPLUS_FILE} labels row i of {FER_FILE})")
        image_name = plus_row[1].strip()
        if not image_name:
            self.filter("no FER+ image name (FER+ dropped the image)")
            return None
        try:
            votes = [int(v) for v in plus_row[2:]]
        except ValueError:
            votes = [-1]
        if min(votes) < 0:
            self.skip(where_plus, f"votes must be non-negative integers: {plus_row[2:]}")
            return None
        winner = majority_vote(votes)
        if winner is None:
            self.filter("tie for the most votes (no majority)")
            return None
        if VOTE_COLUMNS[winner] not in CLASSES:
            self.filter(f"majority {VOTE_COLUMNS[winner]}")
            return None
        return USAGE[usage], CLASSES.index(VOTE_COLUMNS[winner]), image_name, fer_row[1]

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        self.check_manual_dir(root)
        fer_rows = _read_csv(os.path.join(root, FER_FILE), FER_HEADER)
        plus_rows = _read_csv(os.path.join(root, FERPLUS_FILE), FERPLUS_HEADER)
        if len(fer_rows) != len(plus_rows):
            raise common.BadInputError(
                f"{FER_FILE} has {len(fer_rows)} rows but {FERPLUS_FILE} has {len(plus_rows)}: "
                "they must be the published, row-aligned files")
        candidates = {split: [] for split in common.SPLITS}
        # Line numbers count the header as line 1, as an editor shows them.
        for number, (fer_row, plus_row) in enumerate(zip(fer_rows, plus_rows), start=2):
            selected = self.select(number, fer_row, plus_row)
            if selected is not None:
                split, label, image_name, pixels = selected
                candidates[split].append((number, label, image_name, pixels))
        return {split: self._generate_examples(split, items)
                for split, items in candidates.items() if items}

    def _generate_examples(self, split, items):
        config = self.builder_config

        def examples():
            for number, label, image_name, pixels in items:
                array = self.parse_pixels(f"{FER_FILE}:{number}", pixels)
                if array is None:
                    yield None
                    continue
                image = common.square_image(Image.fromarray(array),
                                            config.image_size, config.channels, config.crop)
                # Keyed by row: unique even if a name repeats.
                yield str(number), {"image": image, "label": label, "identity": -1, "name": image_name}
        return self.emit(split, examples())
