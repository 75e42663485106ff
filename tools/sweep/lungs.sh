#!/bin/bash
# Rank the lung-only input recipes on validation, two seeds per arm, on the GPU machine (issue 13).
# Before: python tools/sweep/pack.py (train + val at 192 px) and the .whl wheels (see sweep.sh); carry .gpupack .whl.
# Round 1 (ROUND=1, the default), all with configs/lungs.toml's training recipe at 192 px, EPOCHS (40) epochs:
#   whole    masks none                  (the whole-image model, for reference)
#   mask     hard mask grown by 4 px, no crop
#   crop     square crop around the lungs + mask grown by 4 px   (the shipped choice)
#   crop-d0  the same crop, mask not grown
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 LUNGXRAY_CACHE=/tmp/cache
T=/tmp/work; mkdir -p $T/runs $T/logs
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $T/logs/gpu.txt
COMMON="--data .gpupack/data --split .gpupack/split.csv --config configs/lungs.toml --device cuda --amp --image-size 192"
t0=$(date +%s)
# One short run fills the shared cache (decoded images + predicted masks) so the arms do not segment 8 times.
python3 -m lungxray train $COMMON --epochs 1 --out $T/runs/warm > $T/logs/warm.log 2>&1
echo "warm rc=$? in $(( $(date +%s) - t0 )) s"
run() {  # name seed args...
  local name=$1 seed=$2; shift 2
  timeout ${LIMIT:-330} python3 -m lungxray train $COMMON --epochs ${EPOCHS:-40} --seed $seed --set threads=2 \
    --out $T/runs/$name-s$seed "$@" > $T/logs/$name-s$seed.log 2>&1
  echo "$name-s$seed rc=$? $(tail -1 $T/runs/$name-s$seed/history.csv 2>/dev/null)"
}
t0=$(date +%s)
if [ "${ROUND:-1}" = 1 ]; then
  for s in 0 1; do
    run whole $s --set masks=none --set lung_crop=false --set mask_dilate=0 &
    run mask $s --set lung_crop=false &
    run crop $s &
    run crop-d0 $s --set mask_dilate=0 &
  done
else  # round 2: the dilated arms again with the faster dilation, equal epochs, plus a third seed of crop
  for s in 0 1 2; do run crop $s & done
  for s in 0 1; do run mask $s --set lung_crop=false & done
fi
wait; echo "arms $(( $(date +%s) - t0 )) s"
python3 tools/sweep/summarize.py $T/runs | tee $OUT/summary.md
(cd $T && tar czf $OUT/lungs-sweep.tgz logs runs/*/history.csv runs/*/config.json)
