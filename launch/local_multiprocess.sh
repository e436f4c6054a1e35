#!/usr/bin/env bash
# Multi-host training on one machine: NUM_PROCESSES `jaxmask train` processes on
# 127.0.0.1, each with DEVICES_PER_PROCESS CPU devices, joined by JAX's distributed
# runtime (jax.distributed, gloo CPU collectives). The same code path as a TPU pod
# or a GPU cluster: per-process input shards, global batches over all devices,
# process 0 logs, every process takes part in checkpoints. See docs/scaling.md.
#
#   launch/local_multiprocess.sh                        # 2 processes x 2 devices, smoke config
#   NUM_PROCESSES=4 DEVICES_PER_PROCESS=1 launch/local_multiprocess.sh --config.num_rounds=20
#   launch/local_multiprocess.sh --config configs/synth_hair.py --workdir /tmp/mp_run
#
# Arguments are passed to every `jaxmask train` (after the defaults below, so they win).
# Variables (environment):
#   NUM_PROCESSES        processes to start (default 2)
#   DEVICES_PER_PROCESS  CPU devices per process, XLA --xla_force_host_platform_device_count (default 2)
#   PORT                 coordinator port of process 0 on 127.0.0.1 (default 12355)
#   CONFIG               experiment config (default configs/synth_hair.py:smoke)
#   WORKDIR              training directory shared by all processes (default /tmp/jaxmask/local_multiprocess)
#   LOG_DIR              one log per process: process_<i>.log (default $WORKDIR/logs)
#   JAXMASK              the jaxmask command (default: jaxmask, or python -m jaxmask.cli if not on PATH)
# Process 0's log streams to the terminal; the exit status is non-zero if any
# process fails (the others are then stopped). The global batch
# (--config.batch_size) must divide by NUM_PROCESSES * DEVICES_PER_PROCESS.
set -euo pipefail

NUM_PROCESSES="${NUM_PROCESSES:-2}"
DEVICES_PER_PROCESS="${DEVICES_PER_PROCESS:-2}"
PORT="${PORT:-12355}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONFIG="${CONFIG:-$REPO/configs/synth_hair.py:smoke}"
WORKDIR="${WORKDIR:-/tmp/jaxmask/local_multiprocess}"
LOG_DIR="${LOG_DIR:-$WORKDIR/logs}"
if [[ -z "${JAXMASK:-}" ]]; then
  if command -v jaxmask >/dev/null; then JAXMASK="jaxmask"; else JAXMASK="python -m jaxmask.cli"; fi
fi
read -r -a jaxmask_command <<<"$JAXMASK"

mkdir -p "$LOG_DIR"
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM

echo "starting $NUM_PROCESSES processes x $DEVICES_PER_PROCESS CPU devices, coordinator 127.0.0.1:$PORT, logs in $LOG_DIR"
for ((i = 0; i < NUM_PROCESSES; i++)); do
  JAX_PLATFORMS=cpu \
  XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$DEVICES_PER_PROCESS" \
    "${jaxmask_command[@]}" train --config "$CONFIG" --workdir "$WORKDIR" \
      --coordinator_address "127.0.0.1:$PORT" --num_processes "$NUM_PROCESSES" --process_id "$i" \
      "$@" >"$LOG_DIR/process_$i.log" 2>&1 &
  pids+=("$!")
done

tail -n +1 -f "$LOG_DIR/process_0.log" &
tail_pid=$!

# The first failure stops the others: they would wait for it at the next collective.
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}" && [[ "$status" == 0 ]]; then
    echo "process $i failed: see $LOG_DIR/process_$i.log; stopping the others" >&2
    status=1
    stop_all
  fi
done
kill "$tail_pid" 2>/dev/null || true
exit "$status"
