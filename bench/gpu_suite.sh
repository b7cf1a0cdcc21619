#!/usr/bin/env bash
# One prepared GPU run (device machine): training-step (ours; ours vs open_clip_train) and evaluation
# throughput, random-init ViT-B/32.
# Wheels for packages the GPU image lacks are carried in .whl (see README, Performance).
set -u
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 200 python3 bench/train_step.py --model ViT-B-32 --batch 256 --steps 8 --warmup 2 --device cuda --amp bf16 2>&1 | tee "$OUT/train_step.txt"
timeout 300 python3 bench/train_peer.py --model ViT-B-32 --batch 256 --steps 5 --warmup 1 --repeats 3 --device cuda --amp bf16 --workers 8 2>&1 | tee "$OUT/train_peer.txt"
timeout 200 python3 bench/eval_throughput.py --model open_clip:ViT-B-32 --images 2048 --batch-size 256 --num-workers 12 --repeats 2 --device cuda 2>&1 | tee "$OUT/eval_throughput.txt"
