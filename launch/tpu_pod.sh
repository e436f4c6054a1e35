#!/usr/bin/env bash
# Training on a Cloud TPU pod slice: every worker (host) of the slice runs the same
# `jaxmask train`; JAX's distributed runtime finds the other workers from the TPU
# metadata, each worker reads its own shard of the data and the global batch is
# split over every chip of the slice. See docs/scaling.md.
#
#   launch/tpu_pod.sh all                 # create → install → data → train (streams logs) → delete
#   launch/tpu_pod.sh create              # one step at a time:
#   launch/tpu_pod.sh install
#   launch/tpu_pod.sh data
#   launch/tpu_pod.sh train [--config.num_rounds=2000 ...]    # extra arguments go to `jaxmask train`
#   launch/tpu_pod.sh logs                # follow worker 0's log (WORKER=all: every worker's last lines)
#   launch/tpu_pod.sh stop                # stop the run on every worker (SIGTERM: a checkpoint, then exit)
#   launch/tpu_pod.sh delete
#
# Sub-commands:
#   create   create the TPU VM slice TPU_NAME (ACCELERATOR, RUNTIME, ZONE; SPOT=1 for a Spot slice)
#   install  copy this checkout to every worker, install Python PYTHON_VERSION, jaxmask and
#            JAX_SPEC in ~/jaxmask-venv, install gcsfuse and mount BUCKET at MOUNT
#   data     make sure the dataset CONFIG reads is prepared in PREPARED (if not: worker 0 downloads
#            RAW, runs `jaxmask prepare` and uploads the result), then copy it to LOCAL_DATA on
#            every worker (each reads only its shard, but random access wants a local disk)
#   train    start `jaxmask train` on all workers at once (--worker=all), detached, with the
#            workdir MOUNT/runs/RUN_NAME (shared: every worker takes part in the orbax checkpoints;
#            a rerun resumes), then follow worker 0's log until the run ends
#   logs     follow worker 0's log; WORKER=all prints the last lines of every worker's log
#   stop     SIGTERM the run on every worker: JAX's preemption sync makes them save the same
#            round and exit; `train` again resumes
#   delete   delete the slice (the bucket and its runs stay)
#   all      create, install, data, train, then delete (also on failure; KEEP=1 keeps the slice)
#
# Variables (environment):
#   PROJECT         Google Cloud project (default: gcloud's configured project)
#   ZONE            zone with TPU quota (default us-central2-b)
#   TPU_NAME        name of the slice (default jaxmask-pod)
#   ACCELERATOR     slice type: v4-32 = 4 workers x 4 chips, v5litepod-64 = 16 x 4 ... (default v4-32)
#   RUNTIME         TPU VM software version (default tpu-ubuntu2204-base; v5e: v2-alpha-tpuv5-lite)
#   SPOT            1: create a Spot (preemptible) slice (default 0)
#   BUCKET          gs://bucket for data and runs, in the slice's region (required by install/data/train)
#   CONFIG          experiment config, relative to the checkout (default configs/celeba_hair_tpu_pod.py)
#   RAW             raw files of the dataset in the bucket, for `jaxmask prepare --manual_dir`
#                   (default $BUCKET/raw/celeba; see docs/datasets.md for the layouts)
#   PREPARED        prepared tfds data dir in the bucket (default $BUCKET/tfds)
#   LOCAL_DATA      the prepared data on each worker's disk (default /tmp/jaxmask_tfds)
#   MOUNT           where each worker mounts BUCKET with gcsfuse (default /mnt/jaxmask)
#   RUN_NAME        run directory MOUNT/runs/RUN_NAME = BUCKET/runs/RUN_NAME (default celeba_pod)
#   PYTHON_VERSION  Python for the workers' venv (default 3.11)
#   JAX_SPEC        the JAX requirement installed on the workers (default jax[tpu])
#   KEEP            1: `all` keeps the slice at the end (default 0)
#   WORKER          `logs`: 0 (follow) or all (default 0)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROJECT="${PROJECT:-$(gcloud config get-value project 2>/dev/null || true)}"
ZONE="${ZONE:-us-central2-b}"
TPU_NAME="${TPU_NAME:-jaxmask-pod}"
ACCELERATOR="${ACCELERATOR:-v4-32}"
RUNTIME="${RUNTIME:-tpu-ubuntu2204-base}"
SPOT="${SPOT:-0}"
BUCKET="${BUCKET:-}"
CONFIG="${CONFIG:-configs/celeba_hair_tpu_pod.py}"
RAW="${RAW:-$BUCKET/raw/celeba}"
PREPARED="${PREPARED:-$BUCKET/tfds}"
LOCAL_DATA="${LOCAL_DATA:-/tmp/jaxmask_tfds}"
MOUNT="${MOUNT:-/mnt/jaxmask}"
RUN_NAME="${RUN_NAME:-celeba_pod}"
PYTHON_VERSION="${PYTHON_VERSION:-3.11}"
JAX_SPEC="${JAX_SPEC:-jax[tpu]}"
KEEP="${KEEP:-0}"
WORKER="${WORKER:-0}"

# Paths on the workers, expanded by their shell.
# shellcheck disable=SC2016
REMOTE_REPO='$HOME/jaxmask' REMOTE_VENV='$HOME/jaxmask-venv' REMOTE_RUN='$HOME/jaxmask_train'

die() { echo "tpu_pod.sh: $*" >&2; exit 2; }
need_bucket() { [[ "$BUCKET" == gs://* ]] || die "set BUCKET=gs://your-bucket (data and runs live there)"; }

tpu() {  # gcloud compute tpus tpu-vm <verb> TPU_NAME <args...>
  local verb="$1"; shift
  gcloud compute tpus tpu-vm "$verb" "$TPU_NAME" --zone="$ZONE" ${PROJECT:+--project="$PROJECT"} "$@"
}

on_workers() {  # on_workers <worker: all | 0 | ...> <bash script run on each worker>
  tpu ssh --worker="$1" --command="$2"
}

q() { printf '%q' "$1"; }                  # one value, quoted for the workers' shell

cmd_create() {
  local spot=()
  if [[ "$SPOT" == 1 ]]; then spot=(--spot); fi
  tpu create --accelerator-type="$ACCELERATOR" --version="$RUNTIME" ${spot[@]+"${spot[@]}"}
}

cmd_install() {
  need_bucket
  local archive
  archive="$(mktemp -d)/jaxmask.tar.gz"
  # The checkout as it is (committed or not), without ignored files.
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard | tar --null -czf "$archive" -T -)
  gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:jaxmask.tar.gz" --worker=all \
    --zone="$ZONE" ${PROJECT:+--project="$PROJECT"}
  on_workers all "set -euo pipefail
    rm -rf $REMOTE_REPO && mkdir -p $REMOTE_REPO && tar -xzf \$HOME/jaxmask.tar.gz -C $REMOTE_REPO
    command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh
    export PATH=\"\$HOME/.local/bin:\$PATH\"
    uv venv --python $(q "$PYTHON_VERSION") --allow-existing $REMOTE_VENV
    uv pip install --python $REMOTE_VENV/bin/python -e $REMOTE_REPO $(q "$JAX_SPEC")
    if ! command -v gcsfuse >/dev/null; then
      curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null
      echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" |
        sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null
      sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse
    fi
    sudo mkdir -p $(q "$MOUNT") && sudo chown \"\$USER\" $(q "$MOUNT")
    # orbax commits a checkpoint by renaming its directory: gcsfuse needs --rename-dir-limit for that.
    mountpoint -q $(q "$MOUNT") || gcsfuse --implicit-dirs --rename-dir-limit=1000000 $(q "${BUCKET#gs://}") $(q "$MOUNT")
    $REMOTE_VENV/bin/python -c 'import jax, jaxmask; print(\"jax\", jax.__version__)'"
}

cmd_data() {
  need_bucket
  # Worker 0 prepares the dataset once, unless the bucket already has it.
  on_workers 0 "set -euo pipefail
    source $REMOTE_VENV/bin/activate && cd $REMOTE_REPO
    mkdir -p $(q "$LOCAL_DATA")
    gcloud storage rsync --recursive $(q "$PREPARED") $(q "$LOCAL_DATA") 2>/dev/null || true
    if ! jaxmask prepare --config $(q "$CONFIG") --data_dir $(q "$LOCAL_DATA"); then
      echo 'not prepared yet: preparing from $RAW'
      mkdir -p /tmp/jaxmask_raw && gcloud storage rsync --recursive $(q "$RAW") /tmp/jaxmask_raw
      jaxmask prepare --config $(q "$CONFIG") --manual_dir /tmp/jaxmask_raw --data_dir $(q "$LOCAL_DATA")
      gcloud storage rsync --recursive $(q "$LOCAL_DATA") $(q "$PREPARED")
    fi"
  on_workers all "set -euo pipefail
    mkdir -p $(q "$LOCAL_DATA") && gcloud storage rsync --recursive $(q "$PREPARED") $(q "$LOCAL_DATA")"
}

cmd_train() {
  need_bucket
  local extra=""
  for arg in "$@"; do extra+=" $(q "$arg")"; done
  # Detached (nohup): a dropped ssh connection does not stop the run. --distributed=on:
  # JAX reads the slice's workers from the TPU metadata. Only process 0 logs INFO.
  on_workers all "set -euo pipefail
    source $REMOTE_VENV/bin/activate && cd $REMOTE_REPO
    mountpoint -q $(q "$MOUNT") || gcsfuse --implicit-dirs --rename-dir-limit=1000000 $(q "${BUCKET#gs://}") $(q "$MOUNT")
    rm -f $REMOTE_RUN.status
    nohup bash -c 'jaxmask train --config $(q "$CONFIG") --workdir $(q "$MOUNT/runs/$RUN_NAME") \
        --config.data.data_dir $(q "$LOCAL_DATA") --distributed=on$extra &
      echo \$! > $REMOTE_RUN.pid; wait \$!; echo \$? > $REMOTE_RUN.status' \
      > $REMOTE_RUN.log 2>&1 < /dev/null &
    echo \"worker \$(hostname): started, log $REMOTE_RUN.log\""
  WORKER=0 cmd_logs
  on_workers all "test \"\$(cat $REMOTE_RUN.status 2>/dev/null)\" = 0" ||
    die "the run failed on some worker: WORKER=all launch/tpu_pod.sh logs"
}

cmd_logs() {
  if [[ "$WORKER" == all ]]; then
    on_workers all "echo \"== \$(hostname)\"; tail -n 30 $REMOTE_RUN.log"
  else
    # Follow until the run's status file appears (the run ended, either way).
    on_workers "$WORKER" "tail -n +1 -f $REMOTE_RUN.log & tail_pid=\$!
      while [ ! -e $REMOTE_RUN.status ]; do sleep 10; done; sleep 2; kill \$tail_pid
      echo \"exit status \$(cat $REMOTE_RUN.status)\""
  fi
}

cmd_stop() {
  on_workers all "kill -TERM \$(cat $REMOTE_RUN.pid) 2>/dev/null || true"
}

cmd_delete() {
  tpu delete --quiet
}

cmd_all() {
  if [[ "$KEEP" != 1 ]]; then trap cmd_delete EXIT; fi
  cmd_create
  cmd_install
  cmd_data
  cmd_train "$@"
}

[[ $# -ge 1 ]] || { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'; exit 2; }
command="$1"; shift
case "$command" in
  create|install|data|train|logs|stop|delete|all) "cmd_$command" "$@" ;;
  *) die "unknown sub-command $command (create, install, data, train, logs, stop, delete, all)" ;;
esac
