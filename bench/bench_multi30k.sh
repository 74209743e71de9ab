#!/usr/bin/env bash
# Multi30k De-En end to end on a 2 x H200 host (device kind nvidia-h200-x2), every step a `hat ... --json`
# command: the section "Multi30k De-En on H200s" of bench/RESULTS.md. One experiment per call:
#
#   . bench/device_setup.sh && PREDICTOR=FILE bash bench/bench_multi30k.sh front   # searches at 3 budgets vs plain models
#   . bench/device_setup.sh && bash bench/bench_multi30k.sh widths                 # plain models scaled down by width
#   . bench/device_setup.sh && bash bench/bench_multi30k.sh recipe 1               # train-sub regularisation sweep (2: less)
#   . bench/device_setup.sh && bash bench/bench_multi30k.sh defaults               # the task's defaults, nothing else
#   python bench/multi30k_report.py FRONT_RUN --plain-run WIDTHS_RUN --out DIR     # tables + PNG of the front
#
# front:    GPU 1 measures the plain 512-wide Transformers with 1-3 decoder layers (their latencies are the
#           budgets) and trains them; GPU 0 trains the SuperTransformer, searches at the three budgets with
#           `--verify`, trains the winners from scratch, and the largest and smallest SubTransformers beside.
#           PREDICTOR: a `hat fit-predictor` output for --hw cuda (bench_latency_fresh.py leaves one in OUT/predictor).
# widths:   plain Transformers 384 wide (FFN 2048, 8 heads) and 256 wide (FFN 1024, 4 heads), 1-3 decoder
#           layers, measured and trained like the front's models; the largest SubTransformer again and the
#           plain 512-wide 6+6 for 4000 updates.
# recipe N: five `hat train-sub` runs per GPU side by side, each tested as the average of its last 4 checkpoints
#           and as its best kept checkpoint (and, for N=1, the last); N=1 more regularisation, N=2 less.
# defaults: train-super with its inherited largest/smallest SubTransformers, and train-sub of the largest,
#           smallest and plain 512-wide 6+6 (seeds 1 and 2), all with the task's defaults, on GPU 0.
#
# RECIPE=FILE.yml adds `--config FILE.yml` to front/widths training (bench/multi30k_recipe_v1.yml: the recipe
# of the recorded front, before the Multi30k defaults changed). CPU smoke test of the front: HW=cpu \
# SUPER_UPDATES=4 SUB_UPDATES=4 POP=6 ITERS=1 SUB_TOKENS=512 SUPER_TOKENS=512 PREDICTOR=... bash bench/bench_multi30k.sh front
# Results are packed into $OUT/<experiment>.tar.gz every 20 s, so a call cut short still returns what finished.
set -uo pipefail
EXPERIMENT=${1:?usage: bench_multi30k.sh front|widths|recipe 1|recipe 2|defaults}
R=${WORK:-/tmp/m30-$EXPERIMENT${2:-}}
OUT=${OUT:-$R/out}
HW=${HW:-cuda}
. "$(dirname "$0")/multi30k_common.sh"
start_packer "$EXPERIMENT${2:-}.tar.gz"
prepare_run

on_gpu() {  # GPU COMMAND...: run a function with only that GPU visible
  local gpu=$1; shift
  ( export CUDA_VISIBLE_DEVICES=$gpu; "$@" )
}

# ------------------------------------------------------------------------------------------------ front
front_plain() {
  profile_archs $HW plain1 plain2 plain3 plain6 largest smallest
  for a in plain1 plain2 plain3 plain6; do train_and_test $a $R/arch/$a.yml $SUB_UPDATES $SUB_TOKENS & done
  wait
}

front_search() {
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
}

# ------------------------------------------------------------------------------------------------ widths
widths_measured() {
  profile_archs $HW w384d1 w384d2 w384d3 w256d1 w256d2 w256d3
  for a in w384d2 w384d3 w256d2 w256d3; do train_and_test $a $R/arch/$a.yml 2000 8192 & done
  wait
}

widths_others() {
  train_and_test plain6-4000 $R/arch/plain6.yml 4000 8192 &
  train_and_test largest $R/arch/largest.yml 2000 8192 &
  sleep 40  # the other GPU measures latency first; starting these later keeps the host quiet meanwhile
  for a in w384d1 w256d1; do train_and_test $a $R/arch/$a.yml 2000 8192 & done
  wait
}

# ------------------------------------------------------------------------------------------------ recipe
recipe() {  # NAME key=value...: a YAML of training overrides for one run
  local name=$1; shift
  mkdir -p "$R/recipe"
  : > "$R/recipe/$name.yml"
  for kv in validate-every=500 save-interval-updates=500 keep-last=5 "$@"; do
    echo "${kv%%=*}: ${kv#*=}" >> "$R/recipe/$name.yml"
  done
}

sweep_run() {  # NAME ARCH TOKENS SEED UPDATES: train, then test avg-4 / best (/ last: sweep 1 only)
  local name=$1 arch=$2 tokens=$3 seed=$4 updates=$5
  local common=(--task $TASK --arch "$R/arch/$arch.yml" --data-dir "$D" --save-dir "$R/sub-$name"
                --max-updates "$updates" --max-tokens "$tokens" --seed "$seed" --config "$R/recipe/$name.yml" --json)
  hat train-sub "${common[@]}" > "$R/json/train-$name.json" 2> "$R/sub-$name.err" || { log "$name train failed"; return; }
  log "$name trained"
  local finals="avg4:--average-last=4 best:--final-model=best"
  [[ $SWEEP == 1 ]] && finals="$finals last:--final-model=last"
  for final in $finals; do  # re-running train-sub on a finished run only rewrites its final model
    local tag=${final%%:*} opt=${final#*:}
    hat train-sub "${common[@]}" "$opt" > "$R/json/final-$name-$tag.json" 2>> "$R/sub-$name.err" \
      && hat test "$R/sub-$name/model" --task $TASK --data-dir "$D" --output "$R/hyp-$name-$tag.txt" --json \
           > "$R/json/test-$name-$tag.json" 2>> "$R/sub-$name.err"
    log "$name $tag tested rc=$?"
  done
}

run_all() {  # "NAME:ARCH:TOKENS[:SEED[:UPDATES]] ...", side by side on this process's GPU
  for spec in $1; do
    IFS=: read -r name arch tokens seed updates <<< "$spec"
    sweep_run "$name" "$arch" "$tokens" "${seed:-1}" "${updates:-4000}" &
  done
  wait
}

recipes() {  # the runs of sweep $SWEEP; the task's dropout default was 0.3 then, so each recipe names its dropout
  if [[ $SWEEP == 1 ]]; then  # the 24-27 BLEU of the 512-wide model looked like overfitting: more regularisation
    recipe p6-t4k-d3 dropout=0.3
    recipe p6-t4k-d4 dropout=0.4 activation-dropout=0.1
    recipe p6-t4k-d5 dropout=0.5 attention-dropout=0.2 activation-dropout=0.2
    recipe p6-t8k-d3-seed2 dropout=0.3
    recipe p6-t2k-d3 dropout=0.3
    recipe largest-t4k-d4 dropout=0.4 activation-dropout=0.1
    recipe smallest-t4k-d4 dropout=0.4 activation-dropout=0.1
    recipe p6-t4k-d4-lr1e3 dropout=0.4 activation-dropout=0.1 lr=0.001 warmup-updates=1000
    recipe w256d2-t4k-d4 dropout=0.4 activation-dropout=0.1
    recipe p6-t4k-d3-a2 dropout=0.3 attention-dropout=0.2 activation-dropout=0.2
    GPU0_RUNS="p6-t4k-d3:plain6:4096 p6-t4k-d4:plain6:4096 p6-t4k-d5:plain6:4096 p6-t8k-d3-seed2:plain6:8192:2 p6-t2k-d3:plain6:2048"
    GPU1_RUNS="largest-t4k-d4:largest:4096 smallest-t4k-d4:smallest:4096 p6-t4k-d4-lr1e3:plain6:4096 w256d2-t4k-d4:w256d2:4096 p6-t4k-d3-a2:plain6:4096"
  else  # the first sweep showed the opposite (HAT's width scaling halves the 256-wide models' dropout): less
    recipe p6-t4k-d1 dropout=0.1
    recipe p6-t4k-d2 dropout=0.2
    recipe p6-t8k-d1 dropout=0.1
    recipe p6-t8k-d2 dropout=0.2
    recipe p6-t4k-d2-lr3e4 dropout=0.2 lr=0.0003
    recipe largest-t4k-d2 dropout=0.2
    recipe smallest-t4k-d2 dropout=0.2
    recipe largest-t4k-d1 dropout=0.1
    recipe smallest-t4k-d1 dropout=0.1
    recipe p6-t4k-d0 dropout=0.0 attention-dropout=0.0
    GPU0_RUNS="p6-t4k-d1:plain6:4096 p6-t4k-d2:plain6:4096 p6-t8k-d1:plain6:8192:1:3000 p6-t8k-d2:plain6:8192:1:3000 p6-t4k-d0:plain6:4096"
    GPU1_RUNS="largest-t4k-d2:largest:4096 smallest-t4k-d2:smallest:4096 largest-t4k-d1:largest:4096 smallest-t4k-d1:smallest:4096 p6-t4k-d2-lr3e4:plain6:4096"
  fi
  log "recipes ready"
}

# ------------------------------------------------------------------------------------------------ defaults
defaults_run() {  # NAME ARCH SEED: train-sub with the task defaults, then hat test
  local name=$1 arch=$2 seed=$3 t0=$(date +%s)
  hat train-sub --task $TASK --arch "$R/arch/$arch.yml" --data-dir "$D" --save-dir "$R/sub-$name" --seed "$seed" --json \
      > "$R/json/train-$name.json" 2> "$R/sub-$name.err" \
    && hat test "$R/sub-$name/model" --task $TASK --data-dir "$D" --output "$R/hyp-$name.txt" --json \
      > "$R/json/test-$name.json" 2>> "$R/sub-$name.err"
  log "$name rc=$? in $(( $(date +%s) - t0 )) s"
}

defaults_super() {  # train-super with the task defaults, then the inherited extremes
  local t0=$(date +%s)
  hat train-super --task $TASK --data-dir "$D" --save-dir "$R/super" --json > "$R/json/train-super.json" 2> "$R/super.err"
  log "super trained rc=$? in $(( $(date +%s) - t0 )) s"
  for a in largest smallest; do
    hat test "$R/super/model" --arch "$R/arch/$a.yml" --task $TASK --data-dir "$D" --output "$R/hyp-inherited-$a.txt" --json \
      > "$R/json/test-inherited-$a.json" 2>> "$R/super.err"
    log "inherited $a tested rc=$?"
  done
}

defaults_all() {
  defaults_super &
  defaults_run largest largest 1 &
  defaults_run smallest smallest 1 &
  defaults_run plain6 plain6 1 &
  defaults_run plain6-seed2 plain6 2 &
  wait
}

# ------------------------------------------------------------------------------------------------ the call
case $EXPERIMENT in
  front)
    PREDICTOR=${PREDICTOR:?set PREDICTOR to a hat fit-predictor output for --hw $HW}
    SUPER_UPDATES=${SUPER_UPDATES:-2000} SUB_UPDATES=${SUB_UPDATES:-2000} POP=${POP:-60} ITERS=${ITERS:-15}
    SUB_TOKENS=${SUB_TOKENS:-8192} SUPER_TOKENS=${SUPER_TOKENS:-16384}
    on_gpu 1 front_plain & A=$!
    on_gpu 0 front_search & B=$!
    wait $A $B  # not a bare wait: the packer loop never ends
    python bench/multi30k_report.py $R --out $R > $R/report.log 2>&1
    ;;
  widths)
    on_gpu 1 widths_measured & A=$!
    on_gpu 0 widths_others & B=$!
    wait $A $B
    ;;
  recipe)
    SWEEP=${2:?recipe needs the sweep: 1 (more regularisation) or 2 (less)}
    recipes
    on_gpu 0 run_all "$GPU0_RUNS" & A=$!
    on_gpu 1 run_all "$GPU1_RUNS" & B=$!
    wait $A $B
    ;;
  defaults)
    on_gpu 0 defaults_all
    ;;
  *)
    echo "unknown experiment '$EXPERIMENT'; use front, widths, recipe 1|2 or defaults" >&2
    exit 2
    ;;
esac
finish "$EXPERIMENT${2:-}.tar.gz"
