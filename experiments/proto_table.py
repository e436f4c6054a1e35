"""The prototype log's table: one row per experiments/proto.py run (its proto.json), for docs/results.md.

    python experiments/proto_table.py runs/proto/*/proto.json
"""

import json
import os
import sys


def main(paths):
    print("| run | game | K | revealed (× task) | recall (worst class) | in identity region | mask alone | "
          "hidden part | task (retrained) | re-ID (retrained) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    oracle = None
    for path in paths:
        report = json.load(open(path))
        ours, config = report["ours"], report["config"]
        task = report["task_region_fraction"]
        oracle = report["oracle_exact"]
        print(f"| {os.path.basename(os.path.dirname(path))} | {config['game']} | {config['topk_fraction']:g} | "
              f"{ours['revealed_fraction']:.3f} ({ours['revealed_fraction'] / task:.2f}×) | "
              f"{ours['task_region_revealed']:.3f} ({min(ours['recall_per_class']):.2f}) | "
              f"{ours['identity_region_share']:.3f} | {ours['mask_probe']:.3f} | {ours['hidden_probe']:.3f} | "
              f"{ours['task_retrained']:.3f} | {ours['reid_retrained']:.3f} |")
    if oracle:
        print(f"| Oracle-exact | – | – | {oracle['revealed_fraction']:.3f} (1.00×) | 1.000 (1.00) | "
              f"{oracle['identity_region_share']:.3f} | {oracle['mask_probe']:.3f} | {oracle['hidden_probe']:.3f} | "
              f"{oracle['task_retrained']:.3f} | {oracle['reid_retrained']:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
