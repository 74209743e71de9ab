#!/usr/bin/env bash
# Fourth session, issue 4: where does the H200 predictor's remaining error (0.038 ms, 2.2x the reference's
# spread) come from? On a 2 x H200 host, both GPUs measuring the same seeded architectures:
#   GPU 0: 600 + 150 samples of the Multi30k latency space with `--hw cuda`, and every fresh sample measured a
#          second time (test-retest over the whole fresh set, not 20 of it);
#   GPU 1: the same architectures on fresh model instances 5 times (bench_latency_instances.py), then the same
#          600 + 150 collection: a residual that repeats on the other GPU belongs to the architecture.
# GPU clocks, temperature and power are logged once a second.
#
#   . bench/device_setup.sh && bash bench/h200x2_latency_s4.sh
set -uo pipefail
R=${WORK:-/tmp/s4lat}
OUT=${OUT:-$R/out}
. "$(dirname "$0")/multi30k_common.sh"
start_packer latency.tar.gz
nvidia-smi --query-gpu=timestamp,index,clocks.sm,clocks.mem,temperature.gpu,power.draw,utilization.gpu \
  --format=csv -l 1 > "$R/smi.csv" 2>&1 &
SMI=$!
log start
(
  export CUDA_VISIBLE_DEVICES=0
  python bench/bench_latency_gpu.py --task multi30k.de-en --hw cuda --train 600 --fresh 150 --retest 150 --out $R/gpu0 > $R/gpu0.log 2>&1
  log "gpu0 rc=$?"
) &
GPU0=$!
(
  export CUDA_VISIBLE_DEVICES=1
  python bench/bench_latency_instances.py --hw cuda --task multi30k.de-en --archs 12 --times 5 --out $R/inst > $R/inst.log 2>&1
  log "instances rc=$?"
  python bench/bench_latency_gpu.py --task multi30k.de-en --hw cuda --train 600 --fresh 150 --retest 20 --out $R/gpu1 > $R/gpu1.log 2>&1
  log "gpu1 rc=$?"
) &
GPU1=$!
wait $GPU0 $GPU1
kill $SMI 2>/dev/null
finish latency.tar.gz
tail -8 $R/gpu0.log; tail -4 $R/inst.log; tail -8 $R/gpu1.log
