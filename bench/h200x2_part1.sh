#!/usr/bin/env bash
# One call on a 2 x H200 host (device kind nvidia-h200-x2), three benchmarks side by side:
#   GPU 0: the CUDA-graph test, then issue 4's fresh-sample latency check with --hw cuda (Multi30k shapes,
#          300 + 100 samples) and the same with --hw cuda-eager (100 + 50) for comparison, then a
#          learning-rate check for Multi30k SubTransformers (plain Transformer, two peak rates at once);
#   GPU 1: issue 8's WMT-scale 30 x 125 search (bench_search_wmt.py);
#   both : issue 7's two-GPU against one-GPU training (bench_ddp.sh).
# Results are packed into $OUT/part1.tar.gz every 20 s (a call cut short keeps what finished).
#
#   . bench/device_setup.sh && bash bench/h200x2_part1.sh
set -uo pipefail
R=/tmp/part1
mkdir -p $R
log() { echo "[$(date +%T)] $*" | tee -a $R/timeline.txt; }
pack() {  # every file under 3 MB but the data (a predictor yes, model weights no), swapped in atomically
  find $R -path "*m30data*" -prune -o -type f -size -3M -print | sed "s|^$R/||" > $R/.files
  tar -czf $OUT/.tmp.tar.gz -C $R -T $R/.files 2>/dev/null && mv $OUT/.tmp.tar.gz $OUT/part1.tar.gz
}
(while sleep 20; do pack; done) &
PACKER=$!

log "start"
hat data --task multi30k.de-en --from-dir ../shared/data/multi30k/raw --data-dir $R/m30data --json > $R/data.json
log "data ready"

(
  export CUDA_VISIBLE_DEVICES=0
  python -m pytest -q -p no:cacheprovider tests/test_latency.py -k cuda > $R/gpu_tests.log 2>&1
  log "gpu tests rc=$?"
  python bench/bench_latency_gpu.py --task multi30k.de-en --hw cuda --out $R/lat_graphs > $R/lat_graphs.log 2>&1
  log "latency graphs rc=$?"
  python bench/bench_latency_gpu.py --task multi30k.de-en --hw cuda-eager --train 100 --fresh 50 --out $R/lat_eager > $R/lat_eager.log 2>&1
  log "latency eager rc=$?"
  python - $R <<'PY'
import sys
from pathlib import Path
from hat_cli.model.transformer import full_config
from hat_cli.model.space import SearchSpace
full_config(SearchSpace.builtin("multi30k").shape).save_yaml(Path(sys.argv[1]) / "plain.yml")
PY
  for lr in 0.001 0.0005; do
    (hat train-sub --task multi30k.de-en --arch $R/plain.yml --data-dir $R/m30data --save-dir $R/lr$lr \
        --max-updates 1500 --max-tokens 8192 --lr $lr --warmup-updates 500 --validate-every 500 --json > $R/lr$lr.json 2> $R/lr$lr.err \
     && hat test $R/lr$lr/model --task multi30k.de-en --data-dir $R/m30data --json > $R/lr$lr.test.json 2>> $R/lr$lr.err) &
  done
  wait
  log "lr check done"
) &
GPU0=$!

(
  export CUDA_VISIBLE_DEVICES=1
  timeout 420 python bench/bench_search_wmt.py --out $R/search_wmt > $R/search_wmt.log 2>&1
  log "wmt search rc=$?"
) &
GPU1=$!
wait $GPU0 $GPU1  # not a bare wait: the packer loop never ends

UPDATES=200 DATA=$R/m30data timeout 200 bash bench/bench_ddp.sh --out $R/ddp > $R/ddp.log 2>&1
log "ddp rc=$?"

kill $PACKER 2>/dev/null
pack
cp $R/timeline.txt $OUT/
