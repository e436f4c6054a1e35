"""image_folder builder: class-per-subfolder images, mixed formats, identities.csv."""

import os

import numpy as np
import pytest

from data_fixtures import build, read_prepared, write_image_folder
from jaxmask.data import prepare, tfds_builders

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    raw = tmp_path_factory.mktemp("folder_raw")
    expected = write_image_folder(str(raw))
    data_dir = tmp_path_factory.mktemp("tfds")
    result = build("image_folder", data_dir, raw, image_size=16)
    records = {s: read_prepared(data_dir, "image_folder", result.variant, s) for s in SPLITS}
    return raw, expected, result, records


def test_counts_labels_identities_and_colours(folder):
    _, expected, result, records = folder
    assert result.class_names == ("cat", "dog")
    assert result.split_counts == {"train": 20, "validation": 8, "test": 8} == expected.counts()
    assert dict(result.report.counts["validation"]) == {"cat": 4, "dog": 4}
    for split, by_name in records.items():
        assert set(by_name) == {n for n, r in expected.records.items() if r["split"] == split}
        for name, record in by_name.items():
            truth = expected.records[name]
            assert (record["label"], record["identity"]) == (truth["label"], truth["identity"]), name
            # RGBA, greyscale, palette and JPEG inputs of any size: all 16x16 RGB of the right colour.
            assert record["image"].shape == (16, 16, 3)
            assert np.abs(record["image"] * 255 - np.array(truth["colour"])).max() <= 4, name
    identities = [r["identity"] for by_name in records.values() for r in by_name.values()]
    assert -1 in identities and max(identities) == 4


def test_bad_files_and_rows_are_skipped_and_listed(folder):
    _, expected, result, _ = folder
    wheres = [where for where, _ in result.report.skipped]
    assert len(wheres) == len(expected.skipped) == 4
    for name in expected.skipped:
        assert any(w.startswith(name) for w in wheres), name
    assert "skipped bad inputs: 4" in prepare.summary(result)


def test_greyscale_output(folder, tmp_path):
    raw, expected, _, _ = folder
    result = build("image_folder", tmp_path, raw, image_size=8, channels=1)
    records = read_prepared(tmp_path, "image_folder", result.variant, "test")
    for name, record in records.items():
        assert record["image"].shape == (8, 8, 1)


def test_label_folder_outside_the_class_list_is_an_error(tmp_path):
    raw = tmp_path / "raw"
    write_image_folder(str(raw), bad=False)
    os.makedirs(raw / "validation" / "bird")
    with pytest.raises(tfds_builders.BadInputError, match=r"bird.*not in the class list \['cat', 'dog'\]"):
        build("image_folder", tmp_path / "tfds", raw, image_size=8)


def test_unknown_split_folder_and_missing_train(tmp_path):
    raw = tmp_path / "raw"
    write_image_folder(str(raw), bad=False)
    os.rename(raw / "validation", raw / "val")
    with pytest.raises(tfds_builders.BadInputError, match="split folders must be"):
        build("image_folder", tmp_path / "tfds", raw, image_size=8)
    os.rename(raw / "train", raw / "training")
    with pytest.raises(FileNotFoundError, match="train") as error:
        build("image_folder", tmp_path / "tfds", raw, image_size=8)
    assert "Expected layout" in str(error.value)
