"""The study's tables for docs/results.md: per K group, every seed's selected masker beside the Oracle-exact,
and the model selection's record (selected round vs the final round, validation probes).

    python experiments/study_table.py runs/study/hair_k035 runs/study/hair_k050 runs/study/hair_k070
    REPORT=report_final python experiments/study_table.py runs/study/expression_k011   # another report folder
"""

import json
import os
import sys


def fmt(value, digits=3):
    return "–" if value is None else f"{value:.{digits}f}"


def group_table(folder, report="report"):
    results = json.load(open(os.path.join(folder, report, "metrics.json")))
    methods, exp = results["methods"], results["experiment"]
    oracle = methods.get("Oracle-exact", {})
    task_area = oracle.get("revealed_fraction")
    rows = [f"**{exp['task']}, K = {exp['topk_fraction']:g}** (Oracle-exact: revealed {fmt(task_area)}, "
            f"re-ID {fmt(oracle.get('reid_accuracy_retrained'))}, mask alone "
            f"{fmt(oracle.get('task_accuracy_mask_only'))}, hidden {fmt(oracle.get('task_accuracy_hidden_part'))} / "
            f"{fmt(oracle.get('task_accuracy_hidden_part_plain'))}; Original task "
            f"{fmt(methods['Original'].get('task_accuracy_retrained'))}, re-ID "
            f"{fmt(methods['Original'].get('reid_accuracy_retrained'))}; Random-K re-ID "
            f"{fmt(methods.get('Random-K', {}).get('reid_accuracy_retrained'))})", "",
            "| masker (round) | revealed (× task) | recall (per class) | in identity region | mask alone | "
            "hidden ResNet / plain | hidden, none left (n) | task (retrained) | re-ID (retrained) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, model in results["models"].items():
        row = methods[name]
        bins = row.get("task_accuracy_hidden_part_by_hidden_task_pixels") or []
        none_left = f"{fmt(bins[0]['accuracy'], 2)} ({bins[0]['count']})" if bins else "–"
        per_class = "/".join(f"{v:.2f}" for v in row.get("task_region_revealed_per_class", []))
        ratio = row["revealed_fraction"] / task_area if task_area else None
        rows.append(f"| {name} ({model['step']}) | {fmt(row['revealed_fraction'])} ({fmt(ratio, 2)}×) | "
                    f"{fmt(row.get('task_region_revealed'), 2)} ({per_class}) | {fmt(row.get('identity_region_share'))} | "
                    f"{fmt(row.get('task_accuracy_mask_only'))} | {fmt(row.get('task_accuracy_hidden_part'))} / "
                    f"{fmt(row.get('task_accuracy_hidden_part_plain'))} | {none_left} | "
                    f"{fmt(row.get('task_accuracy_retrained'))} | {fmt(row.get('reid_accuracy_retrained'))} |")
    return rows


def selection_table(folders):
    rows = ["| run | selected round: score, revealed, probes release / hidden / mask | final round: score, "
            "revealed, probes release / hidden / mask |", "|---|---|---|"]
    for folder in folders:
        path = os.path.join(folder, "selection.json")
        if not os.path.exists(path):
            continue
        for name, record in json.load(open(path)).items():
            sel, fin = record["selected"] or {}, record["final"] or {}
            cell = lambda r: (f"{r.get('step')}: {fmt(r.get('selection_score'))}, {fmt(r.get('probe_revealed_fraction'))}, "
                              f"{fmt(r.get('probe_utility'), 2)} / {fmt(r.get('probe_hidden'), 2)} / "
                              f"{fmt(r.get('probe_mask'), 2)}")
            rows.append(f"| {os.path.basename(folder)} {name} | {cell(sel)} | {cell(fin)} |")
    return rows


if __name__ == "__main__":
    folders = sys.argv[1:]
    for folder in folders:
        if os.path.exists(os.path.join(folder, os.environ.get("REPORT", "report"), "metrics.json")):
            print("\n".join(group_table(folder, os.environ.get("REPORT", "report"))), end="\n\n")
    print("\n".join(selection_table(folders)))
