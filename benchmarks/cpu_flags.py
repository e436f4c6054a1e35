"""A/B of XLA flag sets on CPU, each normalised by PyTorch eager timed in the same process.

    python benchmarks/cpu_flags.py --rounds=2 --batch_size=64 [--upsample=conv_transpose --pool=reduce_window]   # flags: the layers before

XLA flags are fixed per process, so every flag set runs in its own
subprocess (benchmarks/run_variant.py --compare_torch), the sets alternate
(A B C A B C ...) and each reports jaxmask's round speedup over the PyTorch
eager round it alternated with. The speedup, not the raw time, is compared
across processes: it cancels most of the load other processes put on a
shared machine. Re-run this before adding a flag to jaxmask/platform.py.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent

FLAG_SETS = {
    "xla_default": ("0", ""),
    "jaxmask_default": ("1", ""),   # jaxmask.platform's defaults
    "onednn": ("0", "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(FLAG_SETS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--upsample", default="dot")
    parser.add_argument("--pool", default="reshape")
    parser.add_argument("--benchmarks", default="round")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    speedups = {name: [] for name in args.sets.split(",")}
    raw = []
    for _ in range(args.rounds):
        for name in speedups:
            defaults, flags = FLAG_SETS[name]
            env = {**os.environ, "JAXMASK_XLA_DEFAULTS": defaults, "XLA_FLAGS": flags}
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                subprocess.run([sys.executable, str(HERE / "run_variant.py"), "--compare_torch",
                                "--no_check", f"--batch_size={args.batch_size}",
                                f"--upsample={args.upsample}", f"--pool={args.pool}",
                                f"--benchmarks={args.benchmarks}", f"--json={out.name}"],
                               env=env, check=True)
                report = json.loads(pathlib.Path(out.name).read_text())
            run = report["runs"][0]
            speedups[name].append(run["summary"]["speedup_vs_round[torch_eager]"])
            raw.append({"set": name, "xla_flags": report["environment"]["xla_flags"],
                        "summary": run["summary"], "round": run["results"]["round"]})
            print(f"{name:<16} speedup vs torch eager {speedups[name][-1]:.3f}", flush=True)
    print("\nflag set          median speedup vs torch eager (per-process ratios)")
    for name, values in speedups.items():
        print(f"{name:<16} {statistics.median(values):8.3f}   {[round(v, 3) for v in values]}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"speedups": speedups, "runs": raw}, indent=1))


if __name__ == "__main__":
    main()
