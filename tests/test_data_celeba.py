"""celeba_hair builder on a fixture in the published CelebA file formats."""

import os
import shutil

import numpy as np
import pytest

from data_fixtures import build, read_prepared, write_celeba
from jaxmask.data import prepare, tfds_builders


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    raw = tmp_path_factory.mktemp("celeba_raw")
    expected = write_celeba(str(raw))
    data_dir = tmp_path_factory.mktemp("tfds")
    result = build("celeba_hair", data_dir, raw, image_size=32)
    records = {split: read_prepared(data_dir, "celeba_hair", result.variant, split)
               for split in ("train", "validation", "test")}
    return raw, expected, result, records


def test_counts_per_split_and_class(celeba):
    _, expected, result, _ = celeba
    # 24/8/8 clean images + the greyscale one (train) + the 100x100 one (test).
    assert result.split_counts == {"train": 25, "validation": 8, "test": 9} == expected.counts()
    assert dict(result.report.counts["train"]) == {"black": 6, "blond": 6, "brown": 6, "gray": 7}
    assert dict(result.report.counts["test"]) == {"black": 2, "blond": 3, "brown": 2, "gray": 2}
    assert sum(result.report.filtered.values()) == expected.filtered == 3


def test_labels_splits_identities_and_pixels(celeba):
    _, expected, _, records = celeba
    for split, by_name in records.items():
        want = {n for n, r in expected.records.items() if r["split"] == split}
        assert set(by_name) == want
        for name, record in by_name.items():
            truth = expected.records[name]
            assert record["label"] == truth["label"] and record["identity"] == truth["identity"], name
            assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.float32
            # The contrasting bands are outside the centre square: every pixel is the face colour.
            error = np.abs(record["image"] * 255 - np.array(truth["colour"]))
            assert error.max() <= 4, (name, error.max())


def test_bad_inputs_are_skipped_counted_and_listed(celeba):
    _, expected, result, _ = celeba
    skipped = result.report.skipped
    assert len(skipped) == len(expected.skipped) == 5
    for name in expected.skipped:
        assert any(name in f"{where} {reason}" for where, reason in skipped), name
    reasons = " | ".join(reason for _, reason in skipped)
    for fragment in ("zero-byte", "not a decodable image", "file missing", "malformed row"):
        assert fragment in reasons
    text = prepare.summary(result)
    assert "skipped bad inputs: 5" in text and "zero-byte" in text and "black" in text
    listed = open(os.path.join(result.path, prepare.SKIPPED_FILE)).read().splitlines()
    assert len(listed) == 1 + 5


def test_strict_mode_fails_on_the_first_bad_input(celeba, tmp_path):
    raw = celeba[0]
    with pytest.raises(tfds_builders.BadInputError, match=r"list_attr_celeba.txt:\d+: malformed row"):
        build("celeba_hair", tmp_path, raw, image_size=32, strict=True)


def test_crop_none_keeps_the_bands(celeba, tmp_path):
    raw, expected, _, _ = celeba
    result = build("celeba_hair", tmp_path, raw, image_size=16, crop="none")
    assert result.variant == "16px_3ch_none"
    record = read_prepared(tmp_path, "celeba_hair", result.variant, "validation")["000025.jpg"]
    colour = np.array(expected.records["000025.jpg"]["colour"])
    # Squashing the whole 178x218 image keeps the inverted bands at top and bottom.
    assert np.abs(record["image"][0, 8] * 255 - (255 - colour)).max() <= 8
    assert np.abs(record["image"][8, 8] * 255 - colour).max() <= 4


@pytest.fixture
def clean_raw(tmp_path):
    raw = tmp_path / "raw"
    write_celeba(str(raw), bad=False)
    return raw


@pytest.mark.parametrize("missing", ["identity_CelebA.txt", "list_eval_partition.txt", "img_align_celeba"])
def test_missing_manual_file_names_it_and_the_layout(clean_raw, tmp_path, missing):
    path = clean_raw / missing
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(FileNotFoundError, match=missing) as error:
        build("celeba_hair", tmp_path / "tfds", clean_raw, image_size=16)
    assert "Expected layout" in str(error.value) and "list_attr_celeba.txt" in str(error.value)


def test_partition_outside_0_1_2_names_the_row(clean_raw, tmp_path):
    path = clean_raw / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    lines[4] = "000005.jpg 3"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(tfds_builders.BadInputError, match=r"list_eval_partition.txt:5: partition '3'"):
        build("celeba_hair", tmp_path / "tfds", clean_raw, image_size=16)


def test_attribute_header_without_hair_columns_is_an_error(clean_raw, tmp_path):
    path = clean_raw / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace("Gray_Hair", "Grey_Hair")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(tfds_builders.BadInputError, match="Gray_Hair"):
        build("celeba_hair", tmp_path / "tfds", clean_raw, image_size=16)
