"""Tests for SynthFaces (jaxmask.data.synthetic): contract, determinism, areas and,
most importantly, that task information lives only in the task region and
identity information only outside it (measured with simple probes)."""

import time

import numpy as np
import pytest

from jaxmask.data import synthetic
from jaxmask.data.synthetic import SPLITS, TASK_CLASSES, SynthFacesSource, SynthFacesSpec, generate

NUM_TRAIN, NUM_TEST = 2000, 1000


@pytest.fixture(scope="module", params=["hair", "expression", "earring"])
def data(request):
    spec = SynthFacesSpec(task=request.param)
    return spec, generate(spec, "train", NUM_TRAIN), generate(spec, "test", NUM_TEST)


def region_colour(d, mask):
    """Mean colour and chromaticity of the pixels in `mask`, per image."""
    img = d["image"].astype(np.float32) / 255
    m = mask[..., None]
    mean = (img * m).sum((1, 2)) / np.maximum(m.sum((1, 2)), 1)
    chroma = mean / np.maximum(mean.sum(1, keepdims=True), 1e-6)
    return np.concatenate([mean, chroma], 1)


def mouth_geometry(d, mask):
    """Count and spread of lip-red pixels in `mask` (a mouth-shape probe)."""
    img = d["image"].astype(np.float32)
    red = mask & (img[..., 1] < 0.5 * img[..., 0])
    size = img.shape[1]
    yy, xx = (np.mgrid[:size, :size] / size).astype(np.float32)
    count = red.sum((1, 2))
    w = red / np.maximum(count, 1).astype(np.float32)[:, None, None]
    dy = yy - (w * yy).sum((1, 2))[:, None, None]
    dx = np.abs(xx - (w * xx).sum((1, 2))[:, None, None])
    curvature = (w * dy * (dx - (w * dx).sum((1, 2))[:, None, None])).sum((1, 2))
    spread_y, spread_x = np.sqrt((w * dy ** 2).sum((1, 2))), np.sqrt((w * dx ** 2).sum((1, 2)))
    return np.stack([count / size ** 2, spread_y, spread_x, curvature], 1)


def nearest_class_mean(f_train, y_train, f_test, y_test, num_classes):
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_test = (f_train - mu) / sd, (f_test - mu) / sd
    centroids = np.stack([f_train[y_train == c].mean(0) for c in range(num_classes)])
    pred = ((f_test[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    return float((pred == y_test).mean())


def test_shapes_dtypes_ranges(data):
    spec, train, _ = data
    n, s = NUM_TRAIN, spec.image_size
    assert set(train) == {"image", "label", "identity", "task_mask", "identity_mask"}
    assert train["image"].shape == (n, s, s, 3) and train["image"].dtype == np.uint8
    for key in ("label", "identity"):
        assert train[key].shape == (n,) and train[key].dtype == np.int32
    for key in ("task_mask", "identity_mask"):
        assert train[key].shape == (n, s, s) and train[key].dtype == bool
    assert set(np.unique(train["label"])) == set(range(len(TASK_CLASSES[spec.task])))
    assert set(np.unique(train["identity"])) == set(range(spec.num_identities))
    # Uniform labels and identities, label independent of identity.
    assert np.bincount(train["label"]).min() > 0.8 * n / len(TASK_CLASSES[spec.task])
    table = np.histogram2d(train["identity"], train["label"],
                           bins=(spec.num_identities, len(TASK_CLASSES[spec.task])))[0]
    expected = np.outer(table.sum(1), table.sum(0)) / n
    assert ((table - expected) ** 2 / expected).sum() < 2 * table.size  # chi-square, loose
    assert train["image"].std() > 30  # not blank


def test_masks_disjoint_and_nonempty(data):
    _, train, _ = data
    assert not (train["task_mask"] & train["identity_mask"]).any()
    assert train["task_mask"].any((1, 2)).all() and train["identity_mask"].any((1, 2)).all()


def test_determinism_splits_and_prefix():
    spec = SynthFacesSpec(image_size=32)
    a, b = generate(spec, "train", 300), generate(spec, "train", 300)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    prefix = generate(spec, "train", 100)
    np.testing.assert_array_equal(prefix["image"], a["image"][:100])
    images = [generate(spec, split, 50)["image"] for split in SPLITS]
    for i in range(3):
        for j in range(i):
            assert not np.array_equal(images[i], images[j])
    assert not np.array_equal(generate(SynthFacesSpec(image_size=32, seed=1), "train", 50)["image"],
                              images[0])


def test_identities_shared_across_splits():
    """Identity attributes come from spec.seed only: a probe trained on train
    re-identifies validation faces (already covered on test by the leak test)."""
    spec = SynthFacesSpec()
    train, val = generate(spec, "train", 1000), generate(spec, "validation", 500)
    acc = nearest_class_mean(region_colour(train, train["identity_mask"]), train["identity"],
                             region_colour(val, val["identity_mask"]), val["identity"], 20)
    assert acc > 0.4
    assert set(np.unique(val["identity"])) == set(range(spec.num_identities))


def test_area_fractions():
    hair = synthetic.task_region_fraction(SynthFacesSpec(task="hair"))
    expression = synthetic.task_region_fraction(SynthFacesSpec(task="expression"))
    print(f"\ntask region fraction: hair {hair:.4f}, expression {expression:.4f}")
    assert abs(hair - 0.25) <= 0.04
    assert 0.06 <= expression <= 0.14
    per_image = generate(SynthFacesSpec(task="hair"), "train", 512)["task_mask"].mean((1, 2))
    assert per_image.std() <= 0.03
    # Geometry scales with image size.
    for size in (32, 128):
        assert abs(synthetic.task_region_fraction(SynthFacesSpec(image_size=size), 128) - hair) < 0.01


def test_earring_is_a_small_region_added_to_the_same_images():
    """The small-region task: the hair task's images with an earring of ≤ 2% of the pixels painted on
    (its own random stream, so the hair and expression data sets are unchanged), never on the face."""
    hair = generate(SynthFacesSpec(task="hair"), "train", 600)
    earring = generate(SynthFacesSpec(task="earring"), "train", 600)
    region = earring["task_mask"]
    area = region.mean((1, 2))
    assert area.min() > 0 and area.mean() <= 0.02 and area.max() <= 0.03
    changed = (hair["image"] != earring["image"]).any(-1)
    assert not (changed & ~region).any()                    # every other pixel is the hair task's
    np.testing.assert_array_equal(hair["identity"], earring["identity"])
    assert not (region & earring["identity_mask"]).any()
    assert np.bincount(earring["label"], minlength=4).min() >= 100


def test_task_information_only_in_task_region(data):
    spec, train, test = data
    num_classes = len(TASK_CLASSES[spec.task])
    chance = 1 / num_classes

    def accuracy(probe, inside):
        f = lambda d: probe(d, d["task_mask"] if inside else ~d["task_mask"])
        return nearest_class_mean(f(train), train["label"], f(test), test["label"], num_classes)

    inside = accuracy(mouth_geometry if spec.task == "expression" else region_colour, True)
    # Outside, both probes must fail: neither hair colour nor mouth shape may leak the label.
    outside = max(accuracy(region_colour, False), accuracy(mouth_geometry, False))
    print(f"\n{spec.task}: label probe inside task region {inside:.3f}, outside {outside:.3f}")
    assert inside >= 0.95
    assert outside <= chance + 0.1


def test_identity_information_only_outside_task_region(data):
    spec, train, test = data
    chance = 1 / spec.num_identities

    def accuracy(features):
        return nearest_class_mean(features(train), train["identity"], features(test),
                                  test["identity"], spec.num_identities)

    in_identity = accuracy(lambda d: region_colour(d, d["identity_mask"]))
    in_task = accuracy(lambda d: region_colour(d, d["task_mask"]))

    def mask_shape(d):  # area, centroid, spread and extent of the task mask itself
        m = d["task_mask"].astype(np.float32)
        ys, xs = np.mgrid[:m.shape[1], :m.shape[2]].astype(np.float32)
        area = m.sum((1, 2))
        cy, cx = (m * ys).sum((1, 2)) / area, (m * xs).sum((1, 2)) / area
        sy = np.sqrt((m * (ys - cy[:, None, None]) ** 2).sum((1, 2)) / area)
        sx = np.sqrt((m * (xs - cx[:, None, None]) ** 2).sum((1, 2)) / area)
        width, height = m.any(1).sum(1), m.any(2).sum(1)
        return np.stack([area, cy, cx, sy, sx, width, height], 1)

    in_shape = accuracy(mask_shape)
    print(f"\n{spec.task}: identity probe on identity region {in_identity:.3f}, "
          f"task region pixels {in_task:.3f}, task mask shape {in_shape:.3f} (chance {chance:.3f})")
    assert in_identity >= 10 * chance
    assert in_task <= chance + 0.05
    assert in_shape <= chance + 0.05


def test_generation_speed():
    start = time.perf_counter()
    out = generate(SynthFacesSpec(), "train", 10_000)
    elapsed = time.perf_counter() - start
    print(f"\ngenerated 10,000 64x64 SynthFaces in {elapsed:.2f} s")
    assert out["image"].shape == (10_000, 64, 64, 3)


def test_grain_source():
    grain = pytest.importorskip("grain")
    spec = SynthFacesSpec(task="expression", image_size=32)
    source = SynthFacesSource(spec, "validation", 20)
    assert len(source) == 20
    arrays = generate(spec, "validation", 20)
    record = grain.MapDataset.source(source)[3]
    assert record["image"].dtype == np.float32 and record["image"].shape == (32, 32, 3)
    assert 0.0 <= record["image"].min() and record["image"].max() <= 1.0
    np.testing.assert_allclose(record["image"] * 255, arrays["image"][3], atol=1e-3)
    assert int(record["label"]) == arrays["label"][3] and int(record["identity"]) == arrays["identity"][3]
    np.testing.assert_array_equal(record["task_mask"], arrays["task_mask"][3])
    np.testing.assert_array_equal(record["identity_mask"], arrays["identity_mask"][3])
    batch = grain.MapDataset.source(source).batch(4)[0]
    assert batch["image"].shape == (4, 32, 32, 3)


@pytest.mark.parametrize("kwargs", [dict(task="age"), dict(image_size=16), dict(image_size=300),
                                    dict(num_identities=0), dict(seed=-1)])
def test_spec_validation(kwargs):
    with pytest.raises(ValueError):
        SynthFacesSpec(**kwargs)


def test_bad_split_and_empty():
    with pytest.raises(ValueError, match="split"):
        generate(SynthFacesSpec(), "dev", 4)
    empty = generate(SynthFacesSpec(image_size=32), "test", 0)
    assert empty["image"].shape == (0, 32, 32, 3)
