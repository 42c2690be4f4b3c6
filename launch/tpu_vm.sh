#!/usr/bin/env bash
# Cloud TPU VM / pod slice: create, install, run main.py on every worker, tail logs, delete.
#
#   launch/tpu_vm.sh create  --name=qgan --zone=us-central2-b --type=v4-8 [--version=tpu-ubuntu2204-base] [--spot]
#   launch/tpu_vm.sh install --name=qgan --zone=us-central2-b
#   launch/tpu_vm.sh run     --name=qgan --zone=us-central2-b -- --config=configs/qsngan_cifar10.py --workdir=/mnt/runs/q
#   launch/tpu_vm.sh logs    --name=qgan --zone=us-central2-b [--worker=0]
#   launch/tpu_vm.sh stop    --name=qgan --zone=us-central2-b      # SIGTERM: checkpoint, then exit
#   launch/tpu_vm.sh delete  --name=qgan --zone=us-central2-b
#
# Every command accepts --dry-run (print the gcloud commands, run nothing) and --project=ID. `install` copies this
# checkout to ~/qgan_jax on every worker and installs requirements.txt plus jax[tpu]; `run` starts main.py on every
# worker with the same arguments (QGAN_DISTRIBUTED=1: jax.distributed.initialize() finds the other workers) in the
# background, logging to ~/qgan_jax/train.log. On a multi-worker slice --workdir must be one directory shared by all
# workers (a gcsfuse mount of a bucket, or Filestore NFS): every worker writes its part of each checkpoint there.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

[[ $# -ge 1 ]] || usage 1
command="$1"; shift
[[ "$command" == -h || "$command" == --help ]] && usage 0
name="" zone="" type="v4-8" version="tpu-ubuntu2204-base" project="" spot=0 dry_run=0 worker="all"
main_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --type=*) type="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --worker=*) worker="${1#*=}" ;;
    --spot) spot=1 ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage 0 ;;
    --) shift; main_args=("$@"); break ;;
    *) echo "tpu_vm.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$name" ]] || { echo "tpu_vm.sh: --name=<TPU VM name> is required" >&2; exit 2; }
[[ -n "$zone" ]] || { echo "tpu_vm.sh: --zone=<zone> is required (e.g. us-central2-b)" >&2; exit 2; }

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
remote_dir="qgan_jax"
gcloud_tpu=(gcloud compute tpus tpu-vm)
common=(--zone="$zone")
[[ -n "$project" ]] && common+=(--project="$project")

run() {  # Prints the command; runs it unless --dry-run.
  printf '+'; printf ' %q' "$@"; printf '\n'
  [[ "$dry_run" == 1 ]] || "$@"
}

on_workers() {  # on_workers WORKER COMMAND: the same shell command on every (or one) worker.
  run "${gcloud_tpu[@]}" ssh "$name" "${common[@]}" --worker="$1" --command="$2"
}

case "$command" in
  create)
    extra=()
    [[ "$spot" == 1 ]] && extra+=(--spot)
    run "${gcloud_tpu[@]}" create "$name" "${common[@]}" --accelerator-type="$type" --version="$version" "${extra[@]}"
    ;;
  install)
    archive="${TMPDIR:-/tmp}/qgan_jax_$$.tar.gz"
    run tar -czf "$archive" -C "$repo_root" --exclude=.git --exclude=runs --exclude=__pycache__ .
    run "${gcloud_tpu[@]}" scp "$archive" "$name":qgan_jax.tar.gz "${common[@]}" --worker=all
    on_workers all "mkdir -p ~/$remote_dir && tar -xzf ~/qgan_jax.tar.gz -C ~/$remote_dir && \
cd ~/$remote_dir && python3 -m pip install -q -U pip && python3 -m pip install -q -r requirements.txt 'jax[tpu]'"
    ;;
  run)
    [[ ${#main_args[@]} -gt 0 ]] || { echo "tpu_vm.sh run: give main.py's arguments after --" >&2; exit 2; }
    printf -v quoted ' %q' "${main_args[@]}"
    on_workers all "cd ~/$remote_dir && (QGAN_DISTRIBUTED=1 nohup python3 main.py$quoted > train.log 2>&1 < /dev/null & \
echo \$! > train.pid)"
    ;;
  logs)
    on_workers "$worker" "tail -n 40 ~/$remote_dir/train.log"
    ;;
  stop)
    on_workers all "kill -TERM \$(cat ~/$remote_dir/train.pid) 2> /dev/null || true"
    ;;
  delete)
    run "${gcloud_tpu[@]}" delete "$name" "${common[@]}" --quiet
    ;;
  *)
    echo "tpu_vm.sh: unknown command '$command'; use create, install, run, logs, stop or delete" >&2
    exit 2
    ;;
esac
