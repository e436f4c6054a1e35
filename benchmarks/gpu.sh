#!/usr/bin/env bash
# jaxmask on one GPU: install what the device image lacks, check correctness, time, write $OUT.
#
# Run from the repository root on the device machine (< 6 minutes in all):
#     bash benchmarks/gpu.sh            # writes $OUT/gpu_bench.{json,txt} and $OUT/gpu_env.txt
#
# The image has Python 3.12, jax 0.11 + CUDA, flax, optax, orbax (and usually torch
# with CUDA); it lacks grain, tensorflow_datasets and ml_collections. The bench path
# (jaxmask.bench, benchmarks/gpu_bench.py) imports none of them; only the CLI check at
# the end needs ml_collections (its deps absl-py and PyYAML come with optax and flax).
# Prepare the one wheel on the developer machine, into ./.whl (git-ignored), and carry
# ".whl" with the run:
#
#     rm -rf .whl && mkdir -p .whl
#     /work/venv/bin/pip download --no-deps --only-binary=:all: --dest .whl ml_collections==1.1.0
#     # → .whl/ml_collections-1.1.0-py3-none-any.whl (pure Python; nothing else is needed)
set -uo pipefail

OUT="${OUT:-/tmp/jaxmask_gpu_out}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
REPO="$(pwd)"
START=$(date +%s)
log() { echo "[gpu.sh +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/gpu_env.txt"; }

# 1. Carried wheels (if any) into /tmp/site, then the repository itself.
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
  log "installed: $(ls .whl)"
else
  log "no .whl/*.whl carried: skipping the wheel install (the CLI check may be skipped)"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# Never let a stray preallocation setting or CPU-only platform pin break the run.
unset JAX_PLATFORMS
export XLA_PYTHON_CLIENT_PREALLOCATE=false

# 2. What is there.
{
  date -Is
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  lscpu | grep -m1 'Model name' || true
  python3 - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("jax", "jaxlib", "flax", "optax", "numpy", "ml_collections", "torch"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as e:  # noqa: BLE001 - report and go on
        print(name, "MISSING:", type(e).__name__, e)
import jax
print("devices", jax.devices())
EOF
} 2>&1 | tee -a "$OUT/gpu_env.txt"

# 3. The bench path must not pull in grain or tfds (they are absent here).
python3 - <<'EOF' 2>&1 | tee -a "$OUT/gpu_env.txt"
import sys
import jaxmask.bench  # noqa: F401
bad = [m for m in ("grain", "tensorflow_datasets", "tensorflow") if m in sys.modules]
print("bench path imports:", bad or "no grain/tfds/tensorflow")
sys.exit(1 if bad else 0)
EOF

# 4. Correctness, then timings (budget leaves room for the CLI check and slack).
log "gpu_bench.py start"
timeout 300 python3 benchmarks/gpu_bench.py --out "$OUT" --budget_s 240 \
  --batch_sizes 256,1024 --dtypes float32,bfloat16
STATUS=$?
log "gpu_bench.py exit $STATUS"

# 5. The CLI itself on the device (tiny, only if ml_collections is importable).
if python3 -c 'import ml_collections' 2>/dev/null; then
  timeout 60 python3 -m jaxmask.cli bench --config=configs/synth_hair.py:smoke --image_size=16 \
    --json="$OUT/cli_smoke.json" >> "$OUT/gpu_env.txt" 2>&1
  log "jaxmask bench (CLI smoke) exit $?"
else
  log "ml_collections missing: CLI smoke skipped"
fi
log "done"
exit $STATUS
