"""The probes of jaxmask.probes: the oracle, per-class recall, the mask swap, the probe views."""

import numpy as np
import pytest

from jaxmask.evaluation import probes


def regions(n=6, size=8, seed=0):
    rng = np.random.default_rng(seed)
    task = np.zeros((n, size, size), bool)
    for i in range(n):
        rows = rng.integers(1, size)
        task[i, :rows] = True          # a band of 8..56 pixels
    return task


@pytest.mark.parametrize("k", [5, 20, 60])
def test_oracle_is_exact_k_and_covers_the_task_region_when_it_fits(k):
    task = regions()
    h = probes.oracle_indicator(task, k, seed=1)
    assert h.shape == (*task.shape, 1)
    np.testing.assert_array_equal(h.reshape(len(task), -1).sum(1), k)
    revealed = h[..., 0] > 0
    for i in range(len(task)):
        area = task[i].sum()
        inside = (revealed[i] & task[i]).sum()
        assert inside == min(area, k)        # all of the region if it fits, else k of its pixels


@pytest.mark.parametrize("k", [5, 20, 60])
def test_oracle_exact_is_the_task_region_alone_within_the_cap(k):
    task = regions()
    h = probes.oracle_exact_indicator(task, k, seed=1)[..., 0] > 0
    for i in range(len(task)):
        assert h[i].sum() == min(task[i].sum(), k)
        assert not (h[i] & ~task[i]).any()                  # no padding outside the region


def test_hidden_part_accuracy_by_hidden_task_pixels():
    task = np.zeros((5, 8, 8), bool)
    task[:, :4] = True                                        # 32 task pixels each
    h = np.zeros((5, 8, 8, 1), np.float32)
    h[:, :4, :, 0] = 1                                        # all revealed ...
    h[1, 0, 0, 0] = 0                                         # ... but 1 hidden
    h[2, 0, :3, 0] = 0                                        # 3 hidden
    h[3, 0, :, 0] = 0; h[3, 1, :2, 0] = 0                     # 10 hidden
    h[4, :3, :, 0] = 0                                        # 24 hidden
    correct = np.array([True, False, True, True, True])
    bins = probes.by_hidden_task_pixels(correct, task, h)
    assert [(b["low"], b["high"], b["count"]) for b in bins] == [(0, 0, 1), (1, 4, 2), (5, 16, 1), (17, None, 1)]
    assert [b["accuracy"] for b in bins] == [1.0, 0.5, 1.0, 1.0]


def test_per_class_recall():
    task = np.zeros((4, 4, 4), bool)
    task[:, :2] = True                  # 8 task pixels each
    h = np.zeros((4, 4, 4, 1), np.float32)
    h[0, :2, :, 0] = 1                  # class 0: all of it
    h[1, 0, :, 0] = 1                   # class 0: half
    h[2, 3, :, 0] = 1                   # class 1: none
    labels = np.array([0, 0, 1, 1])
    h[3, :2, :2, 0] = 1                 # class 1: a quarter... of 8 = 4 pixels = half
    recall = probes.per_class_recall(h, task, labels, 3)
    assert recall[0] == pytest.approx(0.75) and recall[1] == pytest.approx(0.25)
    assert np.isnan(recall[2])


class LabelFromMask:
    """A fake evaluator that reads the label from where the mask is (a positional code)."""

    def predict(self, images, head):
        return (images.reshape(len(images), -1, images.shape[-1]).sum(-1) > 0).argmax(1)


def test_mask_swap_detects_a_positional_code():
    labels = np.array([0, 1, 2, 3] * 4)
    images = np.ones((16, 2, 2, 1), np.float32)
    masks = np.zeros((16, 2, 2, 1), np.float32)
    masks.reshape(16, -1)[np.arange(16), labels] = 1       # class c reveals pixel c
    swap = probes.mask_swap(LabelFromMask(), images, masks, labels, seed=0)
    assert swap["swap_follows_mask"] == 1.0 and swap["swap_follows_image"] == 0.0
    partners = probes.swap_partners(labels)
    assert (labels[partners] != labels).all()
    assert probes.mask_swap(LabelFromMask(), images, masks, np.zeros(16, int)) == {}


def test_views():
    images = np.full((2, 3, 3, 3), 0.5, np.float32)
    h = np.zeros((2, 3, 3, 1), np.float32)
    h[:, 0] = 1
    hidden = probes.view("hidden", images, h)
    assert hidden.shape == (2, 3, 3, 4)
    np.testing.assert_array_equal(hidden[:, 0, :, :3], 0)          # revealed pixels withheld from it
    np.testing.assert_array_equal(hidden[:, 1:, :, 3], 1)          # its own mask channel: 1 = hidden
    np.testing.assert_array_equal(probes.view("mask", images, h), h)
    with pytest.raises(ValueError, match="probe view"):
        probes.view("pixels", images, h)
