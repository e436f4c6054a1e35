"""ferplus builder on a fixture in the published fer2013.csv / fer2013new.csv formats."""

import numpy as np
import pytest

from data_fixtures import build, read_prepared, write_ferplus
from jaxmask.data import ferplus, prepare, tfds_builders

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def fer(tmp_path_factory):
    raw = tmp_path_factory.mktemp("fer_raw")
    expected = write_ferplus(str(raw))
    data_dir = tmp_path_factory.mktemp("tfds")
    # 48 px, one channel: the stored pixels are exactly the CSV's.
    result = build("ferplus", data_dir, raw, image_size=48, channels=1)
    records = {s: read_prepared(data_dir, "ferplus", result.variant, s) for s in SPLITS}
    return raw, expected, result, records


def test_majority_vote():
    assert ferplus.majority_vote([6, 0, 0, 3, 0, 0, 0, 0, 1, 0]) == 0
    assert ferplus.majority_vote([0, 2, 5, 0, 0, 0, 0, 0, 0, 3]) == 2
    assert ferplus.majority_vote([5, 5, 0, 0, 0, 0, 0, 0, 0, 0]) is None      # tie
    assert ferplus.majority_vote([0] * 10) is None


def test_counts_labels_splits_and_exact_pixels(fer):
    _, expected, result, records = fer
    assert result.variant == "48px_1ch"
    # 24/8/8 clean rows + the 64x64 row (resized, train).
    assert result.split_counts == {"train": 25, "validation": 8, "test": 8} == expected.counts()
    assert dict(result.report.counts["train"]) == {"neutral": 8, "happiness": 9, "surprise": 8}
    for split, by_name in records.items():
        assert set(by_name) == {n for n, r in expected.records.items() if r["split"] == split}
        for name, record in by_name.items():
            truth = expected.records[name]
            assert record["label"] == truth["label"] and record["identity"] == -1
            assert record["image"].shape == (48, 48, 1)
            np.testing.assert_array_equal(np.rint(record["image"][..., 0] * 255), truth["pixels"])


def test_filtered_and_skipped_rows_are_reported(fer):
    _, expected, result, _ = fer
    filtered = result.report.filtered
    assert sum(filtered.values()) == expected.filtered == 5
    assert filtered["tie for the most votes (no majority)"] == 1
    assert filtered["majority sadness"] == filtered["majority NF"] == filtered["majority unknown"] == 1
    assert {where for where, _ in result.report.skipped} == expected.skipped
    text = prepare.summary(result)
    assert "skipped bad inputs: 3" in text and "not a square image" in text and "tie" in text


def test_three_channels_and_resize(fer, tmp_path):
    raw, expected, _, _ = fer
    result = build("ferplus", tmp_path, raw, image_size=64, channels=3)
    assert result.variant == "64px_3ch"
    records = read_prepared(tmp_path, "ferplus", result.variant, "train")
    for record in records.values():
        image = record["image"]
        assert image.shape == (64, 64, 3)
        np.testing.assert_array_equal(image[..., 0], image[..., 2])      # grey replicated
    constant = [n for n, r in expected.records.items() if (r["pixels"] == 90).all()]
    assert len(constant) == 1
    np.testing.assert_array_equal(np.rint(records[constant[0]]["image"] * 255), 90)


def test_strict_mode_names_the_first_bad_row(fer, tmp_path):
    with pytest.raises(tfds_builders.BadInputError, match=r"fer2013new.csv:\d+: votes"):
        build("ferplus", tmp_path, fer[0], image_size=16, strict=True)


def test_emotion_outside_the_classes_names_the_row(tmp_path):
    write_ferplus(str(tmp_path / "raw"), bad=False, emotion_override={3: "9"})
    with pytest.raises(tfds_builders.BadInputError, match=r"fer2013.csv:5: emotion 9"):
        build("ferplus", tmp_path / "tfds", tmp_path / "raw", image_size=16)


def test_wrong_header_and_missing_file(tmp_path):
    raw = tmp_path / "raw"
    write_ferplus(str(raw), bad=False)
    path = raw / "fer2013.csv"
    path.write_text(path.read_text().replace("emotion,pixels,Usage", "label,pixels,Usage", 1))
    with pytest.raises(tfds_builders.BadInputError, match="fer2013.csv: header must be emotion,pixels,Usage"):
        build("ferplus", tmp_path / "tfds", raw, image_size=16)
    (raw / "fer2013new.csv").unlink()
    with pytest.raises(FileNotFoundError, match="fer2013new.csv") as error:
        build("ferplus", tmp_path / "tfds", raw, image_size=16)
    assert "Expected layout" in str(error.value)
