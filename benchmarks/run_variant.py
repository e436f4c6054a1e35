"""``jaxmask bench`` with the layer variants of benchmarks/variants.py swapped in.

Measures jaxmask/models.py's layers (``--upsample=dot --pool=reshape``, the
default) against the flax layers it used before:

    python benchmarks/run_variant.py --upsample=conv_transpose --pool=reduce_window \
        --compare_torch --json=/tmp/before.json

XLA flags apply per process: run it under different ``XLA_FLAGS`` /
``JAXMASK_XLA_DEFAULTS=0`` to compare flag sets (benchmarks/cpu_flags.py does).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upsample", default="dot", choices=["conv_transpose", "dot"])
    parser.add_argument("--pool", default="reshape", choices=["reduce_window", "reshape"])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--widths", default="32,64,128,256")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--benchmarks", default="round,masker,topk")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compare_torch", action="store_true")
    parser.add_argument("--torch_variants", default="eager")
    parser.add_argument("--no_check", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from jaxmask import platform
    platform.configure_xla_defaults()
    from jaxmask import bench
    import variants

    widths = tuple(int(w) for w in args.widths.split(","))
    spec = bench.Spec(batch_size=args.batch_size, image_size=args.image_size, dtype=args.dtype,
                      masker_widths=widths, phi_widths=widths, phi_hidden=widths[-1])
    transform = None
    if (args.upsample, args.pool) != ("dot", "reshape"):   # else models.py as it is
        transform = functools.partial(variants.with_variants, upsample=args.upsample, pool=args.pool)
    torch_reference = bench.load_torch_reference() if args.compare_torch else None
    load_before = os.getloadavg()
    run = bench.run_spec(spec, benchmarks=tuple(args.benchmarks.split(",")), warmup=args.warmup,
                         repeats=args.repeats, torch_reference=torch_reference,
                         torch_variants=tuple(args.torch_variants.split(",")),
                         check=not args.no_check, method_transform=transform)
    run["variant"] = {"upsample": args.upsample, "pool": args.pool}
    report = {"environment": {**bench.environment(), "loadavg_before": load_before,
                              "loadavg_after": os.getloadavg()},
              "argv": sys.argv, "runs": [run]}
    print(f"variant upsample={args.upsample} pool={args.pool} "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(bench.format_table(report), flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
