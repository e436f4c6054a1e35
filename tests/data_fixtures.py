"""Tiny raw datasets in the exact published formats, and what each should build into.

Each ``write_*`` writes a fixture under a directory and returns ``Expected``:
the records the builder must keep (name → split, label, identity, colour)
and the inputs it must skip. The formats follow the real files byte for byte
where it matters (header lines, the two-space alignment of
list_attr_celeba.txt, unquoted 2,304-value pixel strings in fer2013.csv).

Also a script, to make the tiny prepared datasets the ``:smoke`` configs read:

    python tests/data_fixtures.py /tmp/jaxmask_fixture
    jaxmask train --config configs/celeba_hair.py:smoke \
        --config.data.data_dir /tmp/jaxmask_fixture/tfds --workdir /tmp/smoke_celeba
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
HAIR = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
SPLIT_OF_PARTITION = {0: "train", 1: "validation", 2: "test"}
FER_COLUMNS = "neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


@dataclasses.dataclass
class Expected:
    records: dict[str, dict]                     # name → {split, label, identity, colour or pixels}
    skipped: set[str] = dataclasses.field(default_factory=set)   # names (substrings) that must be skipped
    filtered: int = 0                            # rows excluded by the dataset's definition

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for record in self.records.values():
            out[record["split"]] = out.get(record["split"], 0) + 1
        return out


def colour_of(i: int) -> tuple[int, int, int]:
    """Distinct, mid-range RGB per index (far from 0/255 so JPEG error cannot clip)."""
    return (40 + (37 * i) % 170, 200 - (23 * i) % 150, 60 + (53 * i) % 140)


# ---------------------------------------------------------------- CelebA

def _celeba_jpeg(path: str, colour, size=(178, 218), mode="RGB") -> None:
    """A solid face colour with a contrasting band in rows the centre crop removes.

    The bands (rows < 16 and >= 208) sit on whole 16-row JPEG blocks so their
    colour cannot bleed into the cropped square (rows 20..197).
    """
    width, height = size
    value = colour if mode == "RGB" else colour[0]
    array = np.empty((height, width) + ((3,) if mode == "RGB" else ()), np.uint8)
    array[...] = value
    if size == (178, 218):
        array[:16] = 255 - np.asarray(value, np.uint8)
        array[208:] = 255 - np.asarray(value, np.uint8)
    Image.fromarray(array).save(path, format="JPEG", quality=95, subsampling=0)


def _attr_line(file_name: str, hair: tuple[str, ...], rng) -> str:
    values = rng.choice([-1, 1], len(CELEBA_ATTRIBUTES))
    for k, name in enumerate(CELEBA_ATTRIBUTES):
        if name in HAIR:
            values[k] = 1 if name in hair else -1
    # The published alignment: each value right-aligned in two characters.
    return file_name + " " + " ".join(f"{v:2d}" for v in values)


def write_celeba(root: str, *, bad: bool = True) -> Expected:
    """40 usable images (24 train / 8 validation / 8 test) + filtered rows, + bad inputs if ``bad``."""
    rng = np.random.default_rng(0)
    image_dir = os.path.join(root, "img_align_celeba")
    os.makedirs(image_dir, exist_ok=True)
    attr, partition, identity = [], [], []
    expected = Expected({})
    number = 0

    def add(hair, part, ident, write_image=True, attr_line=None, **image_kwargs):
        nonlocal number
        number += 1
        name = f"{number:06d}.jpg"
        colour = colour_of(number)
        if write_image:
            _celeba_jpeg(os.path.join(image_dir, name), colour, **image_kwargs)
        attr.append(attr_line or _attr_line(name, hair, rng))
        partition.append(f"{name} {part}")
        identity.append(f"{name} {ident}")
        return name, colour

    for i in range(40):
        part = 0 if i < 24 else (1 if i < 32 else 2)
        label, ident = i % 4, 100 + i % 7
        name, colour = add((HAIR[label],), part, ident)
        expected.records[name] = dict(split=SPLIT_OF_PARTITION[part], label=label, identity=ident, colour=colour)
    for hair in (("Black_Hair", "Blond_Hair"), ("Brown_Hair", "Gray_Hair"), ()):
        add(hair, 0, 7)      # not exactly one hair colour: filtered, not skipped
        expected.filtered += 1
    if bad:
        # A greyscale JPEG and a wrong-size one are converted and resized, not skipped.
        name, colour = add(("Gray_Hair",), 0, 9, mode="L")
        expected.records[name] = dict(split="train", label=3, identity=9, colour=(colour[0],) * 3)
        name, colour = add(("Blond_Hair",), 2, 11, size=(100, 100))
        expected.records[name] = dict(split="test", label=1, identity=11, colour=colour)
        name, _ = add(("Black_Hair",), 0, 5, write_image=False)
        open(os.path.join(image_dir, name), "wb").close()                      # zero bytes
        expected.skipped.add(name)
        name, _ = add(("Brown_Hair",), 1, 5)
        path = os.path.join(image_dir, name)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 3])                         # truncated
        expected.skipped.add(name)
        name, _ = add(("Blond_Hair",), 0, 5, write_image=False)
        open(os.path.join(image_dir, name), "wb").write(b"\xff\xd8 not really a jpeg" * 20)  # corrupt
        expected.skipped.add(name)
        name, _ = add(("Blond_Hair",), 2, 5, write_image=False)               # listed, file missing
        expected.skipped.add(name)
        bad_row = f"{number + 1:06d}.jpg"
        name, _ = add((), 0, 5, attr_line=bad_row + " -1  1  1")              # malformed attribute row
        expected.skipped.add(bad_row)
    with open(os.path.join(root, "list_attr_celeba.txt"), "w") as f:
        f.write(f"{len(attr)}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(attr) + "\n")
    with open(os.path.join(root, "list_eval_partition.txt"), "w") as f:
        f.write("\n".join(partition) + "\n")
    with open(os.path.join(root, "identity_CelebA.txt"), "w") as f:
        f.write("\n".join(identity) + "\n")
    return expected


# ---------------------------------------------------------------- FER+

def fer_pixels(i: int, side: int = 48) -> np.ndarray:
    """A distinct gradient image per row, (side, side) uint8."""
    return ((np.arange(side * side) * 3 + 17 * i) % 256).astype(np.uint8).reshape(side, side)


def write_ferplus(root: str, *, bad: bool = True, emotion_override: dict[int, str] | None = None) -> Expected:
    """40 kept rows (24 train / 8 validation / 8 test) + filtered rows, + bad rows if ``bad``.

    Records' ``pixels`` are the exact 48×48 values. ``skipped`` holds
    ``file:line`` of the rows that must be skipped. ``emotion_override``:
    data row index → emotion text (to inject an out-of-range label).
    """
    os.makedirs(root, exist_ok=True)
    fer, plus = ["emotion,pixels,Usage"], ["Usage,Image name," + FER_COLUMNS]
    expected = Expected({})
    usages = ("Training", "PublicTest", "PrivateTest")
    splits = dict(zip(usages, ("train", "validation", "test")))

    def add(votes, usage, name=None, pixels=None, pixels_text=None, expect=None):
        """Appends one row to both files; returns its line number (the header is line 1)."""
        i = len(fer) - 1
        name = f"fer{i:07d}.png" if name is None else name
        emotion = (emotion_override or {}).get(i, str(i % 7))
        pixels = fer_pixels(i) if pixels is None else pixels
        text = pixels_text if pixels_text is not None else " ".join(map(str, pixels.ravel()))
        fer.append(f"{emotion},{text},{usage}")        # the real file does not quote the pixels
        plus.append(f"{usage},{name}," + ",".join(map(str, votes)))
        if expect is not None:
            expected.records[name] = dict(split=splits[usage], label=expect, identity=-1, pixels=pixels)
        return i + 2

    for i in range(40):
        usage = usages[0] if i < 24 else usages[1] if i < 32 else usages[2]
        label = i % 3
        votes = [0] * 10
        votes[label] = 6            # a clear majority for neutral/happiness/surprise
        votes[3 + i % 5] = 3        # and some votes elsewhere
        votes[8] = 1
        add(votes, usage, expect=label)
    for votes in ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0],     # tie → dropped
                  [1, 2, 1, 6, 0, 0, 0, 0, 0, 0],     # majority sadness → dropped
                  [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],    # NF → dropped
                  [0, 0, 0, 0, 0, 0, 0, 0, 7, 3]):    # unknown → dropped
        add(votes, "Training")
        expected.filtered += 1
    add([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], "Training", name="")    # FER+ left it without a name
    expected.filtered += 1
    if bad:
        # A 64×64 row (wrong size) is resized, not skipped; constant so it resizes exactly.
        add([1, 8, 1, 0, 0, 0, 0, 0, 0, 0], "Training", pixels=np.full((64, 64), 90, np.uint8), expect=1)
        expected.records[list(expected.records)[-1]]["pixels"] = np.full((48, 48), 90, np.uint8)
        line = add([8, 1, 1, 0, 0, 0, 0, 0, 0, 0], "Training", pixels_text=" ".join(["7"] * 2303))
        expected.skipped.add(f"fer2013.csv:{line}")                  # 2,303 pixel values
        line = add([8, 1, 1, 0, 0, 0, 0, 0, 0, 0], "PublicTest", pixels_text="12 abc " + " ".join(["7"] * 2302))
        expected.skipped.add(f"fer2013.csv:{line}")                  # a non-integer pixel
        line = add([0, 9, "x", 0, 0, 0, 0, 0, 0, 0], "Training")
        expected.skipped.add(f"fer2013new.csv:{line}")               # a non-integer vote
    with open(os.path.join(root, "fer2013.csv"), "w") as f:
        f.write("\n".join(fer) + "\n")
    with open(os.path.join(root, "fer2013new.csv"), "w") as f:
        f.write("\n".join(plus) + "\n")
    return expected


# ---------------------------------------------------------------- image folder

def write_image_folder(root: str, *, bad: bool = True) -> Expected:
    """cat/dog folders over three splits, mixed formats/modes/sizes, identities.csv."""
    expected = Expected({})
    identities = ["file,identity"]
    layout = {"train": 10, "validation": 4, "test": 4}
    number = 0
    for split, per_class in layout.items():
        for label, cls in enumerate(("cat", "dog")):
            folder = os.path.join(root, split, cls)
            os.makedirs(folder, exist_ok=True)
            for j in range(per_class):
                number += 1
                colour = colour_of(number)
                kind = number % 4
                if kind == 0:      # RGBA PNG, wider than tall
                    image, ext = Image.new("RGBA", (40, 30), colour + (255,)), "png"
                elif kind == 1:    # greyscale PNG
                    image, ext = Image.new("L", (24, 24), colour[0]), "png"
                    colour = (colour[0],) * 3
                elif kind == 2:    # palette PNG
                    image, ext = Image.new("RGB", (16, 20), colour).convert("P", palette=Image.Palette.ADAPTIVE), "png"
                else:              # JPEG, larger than the output
                    image, ext = Image.new("RGB", (64, 48), colour), "jpg"
                name = f"{split}/{cls}/img{number:03d}.{ext}"
                image.save(os.path.join(root, *name.split("/")))
                identity = number % 5 if j % 2 == 0 else -1
                if identity >= 0:
                    identities.append(f"{name},{identity}")
                expected.records[name] = dict(split=split, label=label, identity=identity, colour=colour)
    if bad:
        open(os.path.join(root, "train", "cat", "empty.png"), "wb").close()
        open(os.path.join(root, "train", "dog", "broken.jpg"), "wb").write(b"garbage" * 30)
        open(os.path.join(root, "train", "dog", "notes.txt"), "w").write("not an image")
        identities.append("train/cat/img001.png,not-a-number")
        expected.skipped.update({"train/cat/empty.png", "train/dog/broken.jpg", "train/dog/notes.txt",
                                 "identities.csv:"})
    with open(os.path.join(root, "identities.csv"), "w") as f:
        f.write("\n".join(identities) + "\n")
    return expected


def build(dataset: str, data_dir, manual_dir="", **params):
    """prepare.prepare with the progress bars off (test output stays readable)."""
    import tensorflow_datasets as tfds
    from jaxmask.data import prepare
    tfds.disable_progress_bar()
    return prepare.prepare(dataset, data_dir=str(data_dir), manual_dir=str(manual_dir), **params)


def read_prepared(data_dir, dataset: str, variant: str, split: str) -> dict[str, dict]:
    """name → decoded record (the pipeline's contract) of every example in a prepared split."""
    from jaxmask.data import pipeline
    source = pipeline.tfds_source(dataset, variant, split, str(data_dir))
    return {source.data_source[i]["name"].decode(): source[i] for i in range(len(source))}


if __name__ == "__main__":
    import sys
    import tensorflow_datasets as tfds
    from jaxmask.data import prepare
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/jaxmask_fixture"
    tfds.disable_progress_bar()
    data_dir = os.path.join(out, "tfds")
    write_celeba(os.path.join(out, "raw", "celeba"), bad=False)
    write_ferplus(os.path.join(out, "raw", "ferplus"), bad=False)
    write_image_folder(os.path.join(out, "raw", "folder"), bad=False)
    # The sizes the :smoke configs read (configs/celeba_hair.py, ferplus.py, image_folder.py).
    for dataset, raw, channels in (("celeba_hair", "celeba", 3), ("ferplus", "ferplus", 1),
                                   ("image_folder", "folder", 3)):
        result = prepare.prepare(dataset, data_dir=data_dir, manual_dir=os.path.join(out, "raw", raw),
                                 image_size=32, channels=channels)
        print(prepare.summary(result))
    print(f"--config.data.data_dir {data_dir}")
