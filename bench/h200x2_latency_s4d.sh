#!/usr/bin/env bash
# Fourth session, last call, issue 4: the final `--hw cuda` protocol (4 placements x 10 queued replays) and
# the final predictor (with the decoder depth x width term, chosen on the seed-1 collections) on architectures
# no choice was made on: seed 2 on GPU 0, seed 3 on GPU 1, 300 + 100 samples each, 30 fresh ones retested.
#
#   . bench/device_setup.sh && bash bench/h200x2_latency_s4d.sh
set -uo pipefail
R=${WORK:-/tmp/s4lat}
OUT=${OUT:-$R/out}
. "$(dirname "$0")/multi30k_common.sh"
start_packer latency.tar.gz
log start
for gpu in 0 1; do
  (
    export CUDA_VISIBLE_DEVICES=$gpu
    seed=$((gpu + 2))
    python bench/bench_latency_gpu.py --task multi30k.de-en --hw cuda --train 300 --fresh 100 --repeat 10 --retest 30 --seed $seed \
      --out $R/seed$seed > $R/seed$seed.log 2>&1
    log "seed $seed rc=$?"
  ) &
  eval "GPU$gpu=\$!"
done
wait $GPU0 $GPU1
finish latency.tar.gz
tail -7 $R/seed2.log; tail -7 $R/seed3.log
