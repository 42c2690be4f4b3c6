#!/usr/bin/env bash
# Multi-GPU training: every GPU of one host, or several hosts with one process each.
#
#   launch/multi_gpu.sh install                                   # pip install requirements.txt + jax[cuda12]
#   launch/multi_gpu.sh run [--gpus=0,1,2,3] -- --config=configs/qsngan_cifar10.py --workdir=runs/q
#   launch/multi_gpu.sh run --num_nodes=2 --node_rank=0 --coordinator=host0:1234 -- --config=... --workdir=/shared/q
#
# One process drives all the GPUs it sees (a 1-D `data` mesh over them); train.batch_size is the global batch. With
# --num_nodes > 1, run the same command on every node with its --node_rank: it sets JAX_COORDINATOR_ADDRESS,
# JAX_NUM_PROCESSES and JAX_PROCESS_ID, so main.py calls jax.distributed.initialize(); --workdir must then be a
# directory shared by all nodes. --dry-run prints what would run.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

[[ $# -ge 1 ]] || usage 1
command="$1"; shift
[[ "$command" == -h || "$command" == --help ]] && usage 0
gpus="" num_nodes=1 node_rank=0 coordinator="" dry_run=0 python="${PYTHON:-python3}"
main_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpus=*) gpus="${1#*=}" ;;
    --num_nodes=*) num_nodes="${1#*=}" ;;
    --node_rank=*) node_rank="${1#*=}" ;;
    --coordinator=*) coordinator="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    -h|--help) usage 0 ;;
    --) shift; main_args=("$@"); break ;;
    *) echo "multi_gpu.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

repo_root="$(cd "$(dirname "$0")/.." && pwd)"

run() {  # Prints the command; runs it unless --dry-run.
  printf '+'; printf ' %q' "$@"; printf '\n'
  [[ "$dry_run" == 1 ]] || "$@"
}

case "$command" in
  install)
    run "$python" -m pip install -U -r "$repo_root/requirements.txt" 'jax[cuda12]'
    ;;
  run)
    [[ ${#main_args[@]} -gt 0 ]] || { echo "multi_gpu.sh run: give main.py's arguments after --" >&2; exit 2; }
    env_vars=()
    [[ -n "$gpus" ]] && env_vars+=("CUDA_VISIBLE_DEVICES=$gpus")
    if [[ "$num_nodes" -gt 1 ]]; then
      [[ -n "$coordinator" ]] || { echo "multi_gpu.sh: --num_nodes=$num_nodes needs --coordinator=host:port" >&2; exit 2; }
      env_vars+=("JAX_COORDINATOR_ADDRESS=$coordinator" "JAX_NUM_PROCESSES=$num_nodes" "JAX_PROCESS_ID=$node_rank")
    fi
    run env "${env_vars[@]}" "$python" "$repo_root/main.py" "${main_args[@]}"
    ;;
  *)
    echo "multi_gpu.sh: unknown command '$command'; use install or run" >&2
    exit 2
    ;;
esac
