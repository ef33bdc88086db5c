#!/usr/bin/env bash
# One device call that measures everything docs/performance.md asks for on a GPU.
# Run it after the data is unpacked to ~/kd (see ../shared/data/README.md), e.g.
#   tar xzf .data/cifar10-part2.tar.gz -C ~/kd && bash scripts/gpu_measure.sh ~/kd
# Writes bench JSON lines and the new run records (tar) to $OUT (or ./gpu-results).
set -uo pipefail
DATA=${1:-$HOME/kd}
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 KDLIB_CACHE_DIR=${KDLIB_CACHE_DIR:-/tmp/kdlib-cache}
pip install -q --no-deps -e . >/dev/null 2>&1 || export PYTHONPATH=$PWD
kd() { python -m kdlib "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
kd data prepare --dataset cifar10 --data-dir "$DATA"
CK=../shared/data/reference-checkpoints
[ -d "$CK" ] || CK=.data/reference-checkpoints
{
  kd bench --method kd --device cuda --ablate --compile
  kd bench --method kd --device cuda --no-compile
  kd bench --method uda --device cuda --compile
  kd bench --method nokd --teacher none --device cuda --compile
} 2>&1 | tee "$OUT/bench.txt"
grep '^{' "$OUT/bench.txt" > "$OUT/bench.jsonl"
if [ -f "$CK/resnet26_cifar10.pth" ]; then
  kd eval --model resnet26 --checkpoint "$CK/resnet26_cifar10.pth" --data-dir "$DATA" \
    --device cuda | tee "$OUT/eval.json"
fi
tar czf "$OUT/runs.tgz" runs 2>/dev/null || true
