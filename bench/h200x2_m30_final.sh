#!/usr/bin/env bash
# The last call of the third session on a 2 x H200 host, everything with `hat`'s own defaults:
#   GPU 0, issue 7: Multi30k with the new task defaults (dropout 0.1, 3000 updates x 8192 tokens, train-sub's
#          final model = average of the last 4 checkpoints): train-super and its inherited largest/smallest
#          SubTransformers, train-sub of the largest and smallest SubTransformers and of the plain 512-wide
#          6+6 Transformer (seeds 1 and 2), each scored by `hat test` on test_2016_flickr;
#   GPU 1, issue 4: `--hw cuda` latency with the predictor's new decoder-weights term: 600 + 150 samples of
#          the Multi30k space (the first 300 are what a 300-sample collection measures), repeatability and
#          test-retest (bench_latency_gpu.py).
#
#   . bench/device_setup.sh && bash bench/h200x2_m30_final.sh
#
# Results are packed into $OUT/final.tar.gz every 20 s.
set -uo pipefail
R=${WORK:-/tmp/m30final}
OUT=${OUT:-$R/out}
. "$(dirname "$0")/multi30k_common.sh"
start_packer final.tar.gz

defaults_run() {  # NAME ARCH SEED: train-sub with the task defaults, then hat test
  local name=$1 arch=$2 seed=$3 t0=$(date +%s)
  hat train-sub --task $TASK --arch "$R/arch/$arch.yml" --data-dir "$D" --save-dir "$R/sub-$name" --seed "$seed" --json \
      > "$R/json/train-$name.json" 2> "$R/sub-$name.err" \
    && hat test "$R/sub-$name/model" --task $TASK --data-dir "$D" --output "$R/hyp-$name.txt" --json \
      > "$R/json/test-$name.json" 2>> "$R/sub-$name.err"
  log "$name rc=$? in $(( $(date +%s) - t0 )) s"
}

super_run() {  # train-super with the task defaults, then the inherited extremes
  local t0=$(date +%s)
  hat train-super --task $TASK --data-dir "$D" --save-dir "$R/super" --json > "$R/json/train-super.json" 2> "$R/super.err"
  log "super trained rc=$? in $(( $(date +%s) - t0 )) s"
  for a in largest smallest; do
    hat test "$R/super/model" --arch "$R/arch/$a.yml" --task $TASK --data-dir "$D" --output "$R/hyp-inherited-$a.txt" --json \
      > "$R/json/test-inherited-$a.json" 2>> "$R/super.err"
    log "inherited $a tested rc=$?"
  done
}

prepare_run
(
  export CUDA_VISIBLE_DEVICES=1
  python bench/bench_latency_gpu.py --task multi30k.de-en --hw cuda --train 600 --fresh 150 --out $R/latency > $R/latency.log 2>&1
  log "latency rc=$?"
) &
GPU1=$!
(
  export CUDA_VISIBLE_DEVICES=0
  super_run &
  defaults_run largest largest 1 &
  defaults_run smallest smallest 1 &
  defaults_run plain6 plain6 1 &
  defaults_run plain6-seed2 plain6 2 &
  wait
) &
GPU0=$!
wait $GPU0 $GPU1  # not a bare wait: the packer loop never ends
finish final.tar.gz
tail -12 $R/latency.log
