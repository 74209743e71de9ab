#!/usr/bin/env bash
# Fourth session, second call, issue 4: does pooling several placements of a model per measurement
# (`--instances`) take out the per-instance spread that the first call found (0.034 ms)? On a 2 x H200 host:
#   GPU 0: the new `--hw cuda` default (4 placements x 10 replays): 300 + 100 samples of the Multi30k latency
#          space, the 20x reference, and every fresh sample measured a second time;
#   GPU 1: the CUDA-graph tests; 12 architectures x 5 measurements with 1 placement (20 replays) and with 4
#          (bench_latency_instances.py); then the same 300 + 100 collection with 1 placement x 20 replays.
#
#   . bench/device_setup.sh && bash bench/h200x2_latency_s4b.sh
#
# Run twice in the fourth session: first with 9ddb820's placements but replays timed one by one (a host sync
# after each; that code never landed on its own), then, with WORK=/tmp/s4c, at 9ddb820 (replays queued).
set -uo pipefail
R=${WORK:-/tmp/s4lat}
OUT=${OUT:-$R/out}
. "$(dirname "$0")/multi30k_common.sh"
start_packer latency.tar.gz
log start
(
  export CUDA_VISIBLE_DEVICES=0
  python bench/bench_latency_gpu.py --task multi30k.de-en --hw cuda --train 300 --fresh 100 --retest 100 --out $R/k4 > $R/k4.log 2>&1
  log "k4 rc=$?"
) &
GPU0=$!
(
  export CUDA_VISIBLE_DEVICES=1
  python -m pytest -q tests/test_latency.py -k cuda_graph > $R/pytest.log 2>&1
  log "pytest rc=$?"
  python bench/bench_latency_instances.py --hw cuda --task multi30k.de-en --archs 12 --times 5 --instances 1 --repetitions 20 --out $R/inst_k1 > $R/inst_k1.log 2>&1
  log "instances k1 rc=$?"
  python bench/bench_latency_instances.py --hw cuda --task multi30k.de-en --archs 12 --times 5 --out $R/inst_k4 > $R/inst_k4.log 2>&1
  log "instances k4 rc=$?"
  python bench/bench_latency_gpu.py --task multi30k.de-en --hw cuda --instances 1 --repetitions 20 --train 300 --fresh 100 --retest 100 --out $R/k1 > $R/k1.log 2>&1
  log "k1 rc=$?"
) &
GPU1=$!
wait $GPU0 $GPU1
finish latency.tar.gz
tail -3 $R/pytest.log; tail -2 $R/inst_k1.log; tail -2 $R/inst_k4.log; tail -7 $R/k4.log; tail -7 $R/k1.log
