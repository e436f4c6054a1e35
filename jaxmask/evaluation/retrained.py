"""The retrained protocol: the evaluator and attacker fine-tuned on each row's released training
images (an adaptive adversary that also knows the originals); and, on probed rows, the mask swap
read by that fine-tuned evaluator."""

from __future__ import annotations

from jaxmask.evaluation import probes
from jaxmask.evaluation import common
from jaxmask.evaluation.common import accuracies, train_network


class Evaluator(common.Evaluator):
    def run(self, row, released):
        context = self.context
        if not row.fine_tune:       # the originals: the original protocol is the retrained one
            tuned = context.network
        else:
            tuned = train_network(released.train, context.train_labels, context,
                                  f"evaluator + attacker retrained on {row.name}", init=context.network)
            if context.eval_config.mask_swap and row.name in context.probed:
                yield from probes.mask_swap(tuned, context.test["image"], released.test_revealed,
                                            context.test["label"], context.eval_config.seed).items()
        for key, value in accuracies(tuned, released.test, context.test, context.heads).items():
            yield f"{key}_retrained", value
