#!/bin/bash
# Device check + recipe sweep, selected on validation only. Run on the GPU machine from the repo root after
# `python tools/sweep/pack.py`, with .gpupack and .whl (monai + pydicom wheels) carried. Results: $OUT/sweep.tgz
# .whl: python -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl monai==1.6.1 pydicom==3.0.2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
T=/tmp/work; mkdir -p $T/runs $T/logs
nvidia-smi --query-gpu=name,memory.total --format=csv | tee $T/logs/gpu.txt
python3 -c "import torch, monai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'monai', monai.__version__)" | tee -a $T/logs/gpu.txt
# 1) CUDA path on the bundled sample: train (bf16 autocast), predict, evaluate
t0=$(date +%s)
( LUNGXRAY_CACHE=/tmp/c-check python3 -m lungxray train --data examples/radiography-sample --config configs/xrnet.toml \
    --epochs 3 --image-size 96 --device cuda --amp --out $T/runs/cuda-check \
  && python3 -m lungxray predict examples/radiography-sample/COVID/images --model $T/runs/cuda-check --device cuda --out $T/runs/cuda-pred \
  && LUNGXRAY_CACHE=/tmp/c-check python3 -m lungxray evaluate $T/runs/cuda-check --data examples/radiography-sample --out $T/runs/cuda-eval ) > $T/logs/cuda-check.log 2>&1
echo "cuda check rc=$? in $(( $(date +%s) - t0 )) s"; tail -4 $T/logs/cuda-check.log
run() {  # name timeout args...
  local name=$1 limit=$2; shift 2
  LUNGXRAY_CACHE=/tmp/c-$name timeout $limit python3 -m lungxray train --data .gpupack/data --split .gpupack/split.csv \
    --config configs/xrnet-224.toml --device cuda --amp --set threads=3 --out $T/runs/$name "$@" > $T/logs/$name.log 2>&1
  echo "$name rc=$? $(tail -1 $T/runs/$name/history.csv 2>/dev/null)"
}
pack() { (cd $T && tar czf $OUT/sweep.tgz logs runs/*/history.csv runs/*/config.json runs/*/summary.json runs/cuda-pred 2>/dev/null); }
W1=${W1:-260}; W2=${W2:-230}
t0=$(date +%s)
run s192-e40 $W1 --image-size 192 --epochs 40 &
run s192-e68 $W1 --image-size 192 --epochs 68 &
run s160-e98 $W1 --image-size 160 --epochs 98 &
run s192-e68-lr5 $W1 --image-size 192 --epochs 68 --lr 5e-3 &
run s192-e68-seed1 $W1 --image-size 192 --epochs 68 --seed 1 &
wait; echo "wave 1 $(( $(date +%s) - t0 )) s"; pack
t0=$(date +%s)
run s192-e68-ls10 $W2 --image-size 192 --epochs 68 --set label_smoothing=0.1 &
run s192-e68-aug $W2 --image-size 192 --epochs 68 --set aug_rotate=10 --set aug_shift=0.08 --set aug_zoom=0.12 --set aug_shear=0.05 --set aug_intensity=0.15 &
run s192-e68-wd10 $W2 --image-size 192 --epochs 68 --set weight_decay=0.1 &
run s192-e68-b64 $W2 --image-size 192 --epochs 68 --batch-size 64 --lr 4e-3 &
run s192-e100 $W2 --image-size 192 --epochs 100 &
wait; echo "wave 2 $(( $(date +%s) - t0 )) s"; pack
