#!/bin/bash
# Rank recipes for the shipped lung-only model on validation, three seeds per arm, on the lent GPU machine
# (issue 13, session 8). Every arm costs what configs/lungs-prog.toml costs on two CPU cores (<= 60 min), so the
# winner can be retrained by the documented CPU command.
# Before, here: python tools/sweep/pack.py --size 224 --quality 95 --lung-view configs/lungs-prog.toml
#   (train + val as the model sees them: lung crop, 4-px dilated mask; test left out), and the .whl wheels
#   (monai + pydicom, see sweep.sh). Carry .gpupack and .whl. The arms train on the packed views with masks = "none".
#   prog     configs/lungs-prog.toml (the shipped recipe)
#   prog46   configs/lungs-prog46.toml (46 epochs, the first 28 at 128 px)
#   aug      the shipped recipe with stronger augmentation (rotate 15, shift 0.10, zoom 0.20, shear 0.10, intensity 0.25)
#   wd       the shipped recipe with weight decay 0.10 instead of 0.05
# First the CUDA tests (tests/test_device_path.py), then the 12 runs at once (16 CPU cores, one GPU).
# ROUND=2: no tests; seeds 3-5 of prog and wd, and seeds 0-2 of lr2 (lr 2e-3) and lr5 (lr 5e-3).
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 LUNGXRAY_CACHE=/tmp/cache
T=/tmp/work; mkdir -p $T/runs $T/logs
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $T/logs/gpu.txt
t0=$(date +%s)
if [ "${ROUND:-1}" = 1 ]; then  # the CUDA path must work before anything is ranked on it
  timeout ${TEST_LIMIT:-90} python3 -m pytest -q -p no:cacheprovider tests/test_device_path.py 2>&1 | tail -3 \
    | tee $T/logs/cuda-tests.txt || { echo "CUDA tests failed: nothing ranked"; exit 1; }
  echo "cuda tests in $(( $(date +%s) - t0 )) s"
fi
t0=$(date +%s)
python3 -c "from lungxray.data.api import load_split; load_split('.gpupack/data', '.gpupack/split.csv', size=(224, 224), progress=False)"
echo "cache filled in $(( $(date +%s) - t0 )) s"
NOMASK="--set masks=none --set lung_crop=false --set mask_dilate=0"
run() {  # name seed config args...
  local name=$1 seed=$2 config=$3; shift 3
  timeout ${LIMIT:-400} python3 -m lungxray train --data .gpupack/data --split .gpupack/split.csv --config $config \
    --device cuda --amp --seed $seed --set threads=1 --set calibrate=false $NOMASK \
    --out $T/runs/$name-s$seed "$@" > $T/logs/$name-s$seed.log 2>&1
  echo "$name-s$seed rc=$? $(tail -1 $T/runs/$name-s$seed/history.csv 2>/dev/null)"
}
t0=$(date +%s)
if [ "${ROUND:-1}" = 1 ]; then
  for s in 0 1 2; do
    run prog $s configs/lungs-prog.toml &
    run prog46 $s configs/lungs-prog46.toml &
    run aug $s configs/lungs-prog.toml --set aug_rotate=15 --set aug_shift=0.10 --set aug_zoom=0.20 \
      --set aug_shear=0.10 --set aug_intensity=0.25 &
    run wd $s configs/lungs-prog.toml --set weight_decay=0.10 &
  done
else
  for s in 3 4 5; do
    run prog $s configs/lungs-prog.toml &
    run wd $s configs/lungs-prog.toml --set weight_decay=0.10 &
  done
  for s in 0 1 2; do
    run lr2 $s configs/lungs-prog.toml --set lr=2e-3 &
    run lr5 $s configs/lungs-prog.toml --set lr=5e-3 &
  done
fi
wait; echo "arms $(( $(date +%s) - t0 )) s"
python3 tools/sweep/summarize.py $T/runs | tee $OUT/summary.md
(cd $T && tar czf $OUT/lungs-prog-sweep.tgz logs runs/*/history.csv runs/*/config.json)
