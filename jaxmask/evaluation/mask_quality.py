"""Where each row reveals: revealed fraction, task / identity region shares, recall (and per class)."""

from __future__ import annotations

from jaxmask.evaluation import probes
from jaxmask.evaluation import common
from jaxmask.evaluation.common import mask_quality


class Evaluator(common.Evaluator):
    def run(self, row, released):
        test = self.context.test
        yield from mask_quality(released.test_revealed, test.get("task_mask"), test.get("identity_mask")).items()
        if "task_mask" in test:
            yield "task_region_revealed_per_class", probes.per_class_recall(
                released.test_revealed, test["task_mask"], test["label"], int(self.context.config.num_classes))
