"""Issue 23's criteria over a study's K groups: every seed's selected masker, the worst seed, the gap.

    python experiments/safety_criteria.py docs/study/safe_hair_k035_metrics.json \
        docs/study/safe_hair_k050_metrics.json docs/study/safe_hair_k070_metrics.json

Prints one markdown row per criterion (values per seed, per K; "met" counts the seeds that meet it and
gives the worst seed's gap), then what a population of the three seeds would have released: the member
with the best validation selection score (the score `jaxmask run` selects by), read from the same
metrics (no new training: a post-hoc estimate, not a trained population).
"""

import json
import sys


def maskers(methods):
    return {name: row for name, row in methods.items() if "validation_selection_score" in row}


def criteria(oracle, original):
    """(name, goal text, value of a row, passes(value))."""
    area = oracle["revealed_fraction"]
    reid_goal = oracle["reid_accuracy_retrained"] + 0.05
    probe_goal = lambda key: oracle[key] + 0.10
    task_goal = original["task_accuracy_retrained"] - 0.03
    return [
        ("re-ID (retrained)", f"≤ Oracle-exact + 0.05 = {reid_goal:.3f}",
         lambda r: r["reid_accuracy_retrained"], lambda v: v <= reid_goal),
        ("reveal in the identity region", "≤ 0.05", lambda r: r["identity_region_share"], lambda v: v <= 0.05),
        ("revealed / task area", "≤ 1.25", lambda r: r["revealed_fraction"] / area, lambda v: v <= 1.25),
        ("reveal in the task region", "≥ 0.80", lambda r: r["task_region_share"], lambda v: v >= 0.80),
        ("recall, worst class", "≥ 0.90", lambda r: min(r["task_region_revealed_per_class"]), lambda v: v >= 0.90),
        ("task (retrained)", f"≥ Original − 0.03 = {task_goal:.3f}",
         lambda r: r["task_accuracy_retrained"], lambda v: v >= task_goal),
        ("label from the mask alone", f"≤ Oracle-exact + 0.10 = {probe_goal('task_accuracy_mask_only'):.3f}",
         lambda r: r["task_accuracy_mask_only"], lambda v: v <= probe_goal("task_accuracy_mask_only")),
        ("label from the hidden part (ResNet)",
         f"≤ Oracle-exact + 0.10 = {probe_goal('task_accuracy_hidden_part'):.3f}",
         lambda r: r["task_accuracy_hidden_part"], lambda v: v <= probe_goal("task_accuracy_hidden_part")),
    ]


def main(paths):
    groups = []
    for path in paths:
        results = json.load(open(path))
        groups.append((results["experiment"]["topk_fraction"], results["methods"]))
    print("| criterion | goal | " + " | ".join(f"K = {k:g} (s0 / s1 / s2)" for k, _ in groups) + " | met |")
    print("|---|---|" + "---|" * len(groups) + "---|")
    first_oracle = groups[0][1]["Oracle-exact"]
    for index, (name, goal, _, _) in enumerate(criteria(first_oracle, groups[0][1]["Original"])):
        cells, met, total, worst = [], 0, 0, None
        for _, methods in groups:
            _, _, value, passes = criteria(methods["Oracle-exact"], methods["Original"])[index]
            values = [value(row) for row in maskers(methods).values()]
            cells.append(" / ".join(f"{v:.3f}" if not passes(v) else f"{v:.3f}✓" for v in values))
            met += sum(passes(v) for v in values)
            total += len(values)
        print(f"| {name} | {goal} | " + " | ".join(cells) + f" | {met} of {total} |")
    print()
    print("A population of the three seeds (post-hoc: the member with the best validation selection score):")
    print()
    for k, methods in groups:
        rows = maskers(methods)
        best = max(rows, key=lambda n: rows[n]["validation_selection_score"])
        checks = criteria(methods["Oracle-exact"], methods["Original"])
        text = ", ".join(f"{name} {value(rows[best]):.3f}{'✓' if passes(value(rows[best])) else ''}"
                         for name, _, value, passes in checks)
        print(f"* K = {k:g}: {best} (score {rows[best]['validation_selection_score']:.3f}): {text}")
    print()
    print("Does validation (what selection reads) order the maskers as the test does? Pairs of maskers of one K "
          "whose order agrees:")
    print()
    pairs = [("validation_probe_identity", "reid_accuracy_retrained", "identity (stronger of probe and adversary) "
              "vs re-ID (retrained)"),
             ("validation_probe_mask", "task_accuracy_mask_only", "mask probe vs label from the mask alone"),
             ("validation_probe_hidden", "task_accuracy_hidden_part", "hidden probe vs label from the hidden part"),
             ("validation_probe_revealed_fraction", "revealed_fraction", "revealed fraction")]
    for val_key, test_key, text in pairs:
        agree = total = 0
        for _, methods in groups:
            rows = list(maskers(methods).values())
            for i in range(len(rows)):
                for j in range(i + 1, len(rows)):
                    total += 1
                    agree += (rows[i][val_key] - rows[j][val_key]) * (rows[i][test_key] - rows[j][test_key]) > 0
        print(f"* {text}: {agree} of {total}")


if __name__ == "__main__":
    main(sys.argv[1:])
