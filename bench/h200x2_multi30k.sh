#!/usr/bin/env bash
# Multi30k De-En on a 2 x H200 host (device kind nvidia-h200-x2), everything through the `hat` CLI:
#   issue 6: the latency/BLEU front -- three searched SubTransformers against plain Transformers;
#   issue 7: train-sub of the largest and smallest SubTransformers, and a plain Transformer of the
#            largest size as the sanity bar, each scored by `hat test` on test_2016_flickr;
#   issue 8: `hat search --hw cuda --verify` at three budgets on the trained SuperTransformer.
#
#   . bench/device_setup.sh && PREDICTOR=runs/h200/cuda.predictor bash bench/h200x2_multi30k.sh
#
# The budgets are the measured latencies of three plain Transformers (full width, 1-3 decoder layers),
# so each searched model and its plain partner share one budget. The latency predictor comes from
# `hat collect-latency --hw cuda` + `hat fit-predictor` on another H200 (bench/bench_latency_gpu.py);
# every searched winner is verified by measurement here. All models: the same updates, batch and
# learning-rate schedule (the task's defaults). GPU 0: SuperTransformer, searches, searched winners,
# largest and smallest; GPU 1: the four plain Transformers. Results are packed into $OUT every 20 s, so a
# call cut short still returns what finished.
set -uo pipefail
R=${WORK:-/tmp/m30}
OUT=${OUT:-$R/out}
PREDICTOR=${PREDICTOR:?set PREDICTOR to a hat fit-predictor output for --hw cuda}
SUPER_UPDATES=${SUPER_UPDATES:-2000}
SUB_UPDATES=${SUB_UPDATES:-2000}
HW=${HW:-cuda}                       # CPU smoke test: HW=cpu SUPER_UPDATES=4 SUB_UPDATES=4 POP=6 ITERS=1 SUB_TOKENS=512 SUPER_TOKENS=512
POP=${POP:-60}
ITERS=${ITERS:-15}
SUB_TOKENS=${SUB_TOKENS:-8192}
SUPER_TOKENS=${SUPER_TOKENS:-16384}
. "$(dirname "$0")/multi30k_common.sh"
start_packer m30.tar.gz

prepare_run

# GPU 1: measure the plain models (their latencies are the budgets), then train all four at once.
(
  export CUDA_VISIBLE_DEVICES=1
  profile_archs $HW plain1 plain2 plain3 plain6 largest smallest
  for a in plain1 plain2 plain3 plain6; do train_and_test $a $R/arch/$a.yml $SUB_UPDATES $SUB_TOKENS & done
  wait
) &
GPU1=$!

# GPU 0: SuperTransformer (the largest and smallest SubTransformers train beside it), searches, winners.
(
  export CUDA_VISIBLE_DEVICES=0
  for a in largest smallest; do train_and_test $a $R/arch/$a.yml $SUB_UPDATES $SUB_TOKENS & done
  hat train-super --task $TASK --data-dir $D --save-dir $R/super --max-updates $SUPER_UPDATES --max-tokens $SUPER_TOKENS \
      --seed 1 ${RECIPE:+--config "$RECIPE"} --json > $R/json/train-super.json 2> $R/super.err
  log "super trained rc=$?"
  while [ ! -f $R/json/profile-plain3.json ]; do sleep 2; done
  for depth in 1 2 3; do
    budget=$(python -c "import json; print(f\"{json.load(open('$R/json/profile-plain$depth.json'))['latency_ms']['total']:.3f}ms\")")
    hat search --task $TASK --hw $HW --latency $budget --supernet $R/super/model --data-dir $D --predictor $PREDICTOR \
        --population $POP --parents $((POP / 5)) --mutations $((2 * POP / 5)) --crossovers $((2 * POP / 5)) --iterations $ITERS --seed 1 \
        --out $R/search-$depth --verify --json > $R/json/search-$depth.json 2> $R/search-$depth.err
    log "search at $budget (plain$depth) rc=$?"
  done
  for depth in 1 2 3; do
    arch=$(python -c "import json; print(json.load(open('$R/json/search-$depth.json'))['config'])") \
      && train_and_test hat$depth $arch $SUB_UPDATES $SUB_TOKENS &
  done
  for a in largest smallest; do
    hat test $R/super/model --arch $R/arch/$a.yml --task $TASK --data-dir $D --json > $R/json/test-inherited-$a.json 2>> $R/super.err
  done
  wait
) &
GPU0=$!
wait $GPU0 $GPU1
log done
kill $PACKER 2>/dev/null
python bench/multi30k_report.py $R --out $R > $R/report.log 2>&1
pack m30.tar.gz
cat $R/report.log
