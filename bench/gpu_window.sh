#!/usr/bin/env bash
# One accelerator window in one call: the training-iteration benchmark, then QSNGAN-32 and SNGAN-32 (paper
# configs) trained for the same wall-time budget each on cifar10_train10k, 5,000 samples from each.
# (Interim driver, written before bench/device_check.py existed.)
#
# Prepare here (once):
#   echo /.whl/ >> .git/info/exclude; echo /.devdata/ >> .git/info/exclude
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl ml-collections==1.1.0 clu==0.0.12
#   mkdir -p .devdata && cp ../shared/data/cifar10/cifar10_train10k.npz .devdata/
# Fire (device tool): run(command="bash bench/gpu_window.sh", carry=[".whl", ".devdata"], timeout_s=570)
# Smoke on the CPU: BENCH=0 MINUTES=0.05 SAMPLES=500 OUT=/tmp/gw EXTRA="--config.model.g_width=8 --config.model.d_width=8" bash bench/gpu_window.sh
# Then evaluate the returned samples here: python bench/eval_samples.py <dir with *_samples.npz>
set -u
MINUTES=${MINUTES:-1.5}
SAMPLES=${SAMPLES:-5000}
OUT=${OUT:?set OUT}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
if [ -d .whl ] && ! $PY -c 'import ml_collections, clu' 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
exec > >(tee "$OUT/log.txt") 2>&1
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
$PY -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'

if [ "${BENCH:-1}" = 1 ]; then
echo "== train_step: QSNGAN-32 / SNGAN-32, batch 64, n_critic 1 and 5, sampling at batch 1000"
timeout 200 $PY bench/train_step.py --n_critic=1 --sample_batch=1000 --json="$OUT/train_step_nc1.json"
timeout 120 $PY bench/train_step.py --n_critic=5 --json="$OUT/train_step_nc5.json"
fi

for model in qsngan sngan; do
  echo "== $model: paper config, ${MINUTES} min of training"
  flags=(--config="configs/${model}_cifar10.py" --workdir="/tmp/gw/$model"
         --config.data.source=npz:.devdata/cifar10_train10k.npz --config.train.time_budget_minutes="$MINUTES"
         --config.train.num_steps=1000000 --config.checkpoint.every_steps=1000000
         --config.sample.every_steps=1000000 --config.eval.every_steps=0 --config.train.tensorboard=False ${EXTRA:-})
  timeout 240 $PY main.py "${flags[@]}" --mode=train
  timeout 90 $PY main.py "${flags[@]}" --mode=sample --config.sample.num_images="$SAMPLES"
  cp "/tmp/gw/$model/samples.npz" "$OUT/${model}_samples.npz"
  cp "/tmp/gw/$model/samples.png" "$OUT/${model}_samples.png"
  tail -n 3 "/tmp/gw/$model/metrics.jsonl"
done
date -u
