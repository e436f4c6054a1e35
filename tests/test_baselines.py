"""Every release has the documented shape, values and revealed fraction (jaxmask/baselines.py)."""

import numpy as np
import pytest

from jaxmask import baselines, evaluate
from jaxmask.export import export_masker, load_masker
from jaxmask.build import build_method
from test_evaluate import random_masker_state

B, H, W, C = 3, 32, 32, 3
BOX = (0.53, 0.5, 0.5)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((B, H, W, C)).astype(np.float32)


def box_area(box=BOX, height=H, width=W):
    top, left, bottom, right = baselines.box_pixels(height, width, box)
    return (bottom - top) * (right - left) / (height * width)


def check_release(released, revealed, images):
    assert released.shape == images.shape and released.dtype == np.float32
    assert revealed.shape == images.shape[:3] + (1,) and revealed.dtype == np.float32
    assert set(np.unique(revealed)) <= {0.0, 1.0}
    assert released.min() >= 0 and released.max() <= 1
    # Revealed pixels carry the original values, bit for bit.
    np.testing.assert_array_equal(np.where(revealed > 0, released, 0), np.where(revealed > 0, images, 0))


def test_box_pixels_centre_size_and_clipping():
    assert baselines.box_pixels(32, 32, (0.5, 0.5, 0.5)) == (8, 8, 24, 24)
    assert baselines.box_pixels(32, 32, (0.53, 0.5, 0.5)) == (9, 8, 25, 24)
    assert baselines.box_pixels(32, 32, (0.95, 0.05, 0.5)) == (16, 0, 32, 16)   # clipped, size kept
    assert baselines.box_pixels(64, 32, (0.5, 0.5, 1.0)) == (0, 0, 64, 32)
    with pytest.raises(ValueError, match="side"):
        baselines.box_pixels(32, 32, (0.5, 0.5, 0.0))


def test_original(images):
    released, revealed = baselines.original(images)
    check_release(released, revealed, images)
    assert revealed.mean() == 1.0


def test_block_blacks_out_the_box(images):
    released, revealed = baselines.block(images, BOX)
    check_release(released, revealed, images)
    assert revealed.mean() == pytest.approx(1 - box_area())
    top, left, bottom, right = baselines.box_pixels(H, W, BOX)
    assert not released[:, top:bottom, left:right].any()


def test_gaussian_blur_changes_only_the_box(images):
    released, revealed = baselines.gaussian_blur(images, BOX, kernel_size=9)
    check_release(released, revealed, images)
    assert revealed.mean() == pytest.approx(1 - box_area())
    top, left, bottom, right = baselines.box_pixels(H, W, BOX)
    inside, original = released[:, top:bottom, left:right], images[:, top:bottom, left:right]
    assert inside.std() < 0.5 * original.std()       # noise is smoothed away
    # The kernel is normalised: a constant image stays constant.
    flat = np.full((1, H, W, C), 0.3, np.float32)
    np.testing.assert_allclose(baselines.gaussian_blur(flat, BOX, 9)[0], flat, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        baselines.gaussian_blur(images, BOX, kernel_size=4)


def test_gaussian_kernel():
    kernel = baselines.gaussian_kernel(9)
    assert kernel.shape == (9,) and kernel.sum() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(kernel, kernel[::-1])
    assert kernel.argmax() == 4
    assert baselines.gaussian_kernel(9, sigma=100).std() < kernel.std()   # wide sigma ~ box filter


def test_random_k_reveals_exactly_k(images):
    release = baselines.RandomK(0.25, seed=3)
    released, revealed = release(images)
    check_release(released, revealed, images)
    np.testing.assert_array_equal(revealed.sum((1, 2, 3)), 256)
    assert not np.array_equal(revealed[0], revealed[1])           # independent per image
    np.testing.assert_array_equal(release.reset()(images)[1], revealed)   # replayable
    assert not np.array_equal(release(images)[1], revealed)       # fresh draws per call
    # k = round(K·H·W), as the maskers reveal.
    _, odd = baselines.RandomK(0.1)(images)
    np.testing.assert_array_equal(odd.sum((1, 2, 3)), round(0.1 * H * W))


def test_standard_releases_in_table_order(images):
    releases = baselines.standard(evaluate.get_config(), 0.25)
    assert list(releases) == ["Original", "Block", "Gaussian Blur", "Random-K"]
    for release in releases.values():
        check_release(*release(images), images)


@pytest.mark.parametrize("reveal", ["exact", "cap"])
def test_masker_release_reveals_k_under_its_rule(smoke_config, tmp_path, images, reveal):
    """An exact bundle reveals k pixels per image, a cap bundle at most k; both at an overriding K."""
    if reveal == "exact":
        smoke_config.game = "realx"        # the minimal game plays under a cap only
    smoke_config.reveal = reveal
    method = build_method(smoke_config)
    state = random_masker_state(smoke_config)
    bundle = load_masker(export_masker(state, smoke_config, str(tmp_path / "bundle"), step=0))
    check = np.testing.assert_array_equal if reveal == "exact" else (lambda a, k: np.testing.assert_array_less(a, k + 1))
    released, revealed = baselines.masker(bundle)(images)
    check_release(released, revealed, images)
    check(revealed.sum((1, 2, 3)), method.reveal.k)
    _, revealed = baselines.masker(bundle, topk_fraction=0.05)(images)
    check(revealed.sum((1, 2, 3)), round(0.05 * H * W))
