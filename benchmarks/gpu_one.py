"""One configuration of the GPU benchmark, no correctness checks (gpu_bench.py runs those).

    python3 benchmarks/gpu_one.py --batch_size=1024 --dtype=bfloat16 --json=$OUT/one.json

For finishing a configuration that gpu_bench.py's budget skipped, on a short
device lease: jaxmask vs PyTorch eager (when importable), alternating.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--widths", default="32,64,128,256")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from jaxmask import bench

    widths = tuple(int(w) for w in args.widths.split(","))
    spec = bench.Spec(batch_size=args.batch_size, dtype=args.dtype, image_size=args.image_size,
                      masker_widths=widths, phi_widths=widths, phi_hidden=widths[-1])
    try:
        torch_reference = bench.load_torch_reference()
    except ImportError as e:
        print(f"torch not importable ({e}): PyTorch reference skipped")
        torch_reference = None
    run = bench.run_spec(spec, warmup=2, repeats=5, torch_reference=torch_reference, check=False)
    report = {"environment": bench.environment(), "argv": sys.argv, "runs": [run]}
    print(bench.format_table(report), flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
