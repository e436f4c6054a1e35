"""A masker's own adversaries at the end of training and its model-selection probes (its bundle's
recorded validation metrics), next to which the test-set fresh probes show whether they were strong
enough."""

from __future__ import annotations

from jaxmask.evaluation import common


class Evaluator(common.Evaluator):
    def run(self, row, released):
        metrics = getattr(row.bundle, "metrics", None) or {}
        for key, value in metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key.startswith("accuracy_") and key != "accuracy_revealed":
                yield f"in_training_{key}", float(value)
            elif key.startswith("probe_") or key == "selection_score":   # the model selection's record
                yield f"validation_{key}", float(value)
