"""Fresh networks trained from scratch on what a probed row's mask and hidden part say
(``evaluation.probes``: mask only, hidden part with two architectures, by hidden task pixels)."""

from __future__ import annotations

from jaxmask.evaluation import common, probes


class Evaluator(common.Evaluator):
    def __init__(self, context):
        super().__init__(context)
        eval_config = context.eval_config
        wanted = {"mask": eval_config.mask_only, "hidden": eval_config.hidden_part}
        self.probe_list = tuple(p for p in probes.PROBES if wanted[p[2]])

    def run(self, row, released):
        context, eval_config = self.context, self.context.eval_config
        if not self.probe_list or row.name not in context.probed:
            return
        n = len(context.train["label"]) if eval_config.probe_max_train <= 0 else eval_config.probe_max_train
        probe_train = {key: value[:n] for key, value in context.train.items()}
        yield from probes.fresh_network_probes(
            probe_train, context.test, released.train_revealed[:n], released.test_revealed, context.num_classes,
            eval_config.network, eval_config.seed, context.say, row.name, self.probe_list).items()
