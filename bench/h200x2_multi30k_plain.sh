#!/usr/bin/env bash
# Second Multi30k call on a 2 x H200 host (after bench/h200x2_multi30k.sh), everything through `hat`:
#   issue 6: plain Transformers scaled down by *width* as well as depth -- 384 wide (FFN 2048, 8 heads)
#            and 256 wide (FFN 1024, 4 heads), 1-3 decoder layers -- trained exactly like the front's
#            models (2000 updates x 8192 tokens, the task's defaults), measured with --hw cuda;
#   issue 7: the largest SubTransformer again (its first `hat test` used the wrong encoder attention,
#            fixed in modelio), and the plain 512-wide 6+6 Transformer for twice as long (4000 updates).
#
#   . bench/device_setup.sh && bash bench/h200x2_multi30k_plain.sh
#
# Results are packed into $OUT/m30plain.tar.gz every 20 s.
set -uo pipefail
R=${WORK:-/tmp/m30plain}
OUT=${OUT:-$R/out}
. "$(dirname "$0")/multi30k_common.sh"
start_packer m30plain.tar.gz

prepare_run

(
  export CUDA_VISIBLE_DEVICES=1
  profile_archs cuda w384d1 w384d2 w384d3 w256d1 w256d2 w256d3
  for a in w384d2 w384d3 w256d2 w256d3; do train_and_test $a $R/arch/$a.yml 2000 8192 & done
  wait
) &
GPU1=$!
(
  export CUDA_VISIBLE_DEVICES=0
  train_and_test plain6-4000 $R/arch/plain6.yml 4000 8192 &
  train_and_test largest $R/arch/largest.yml 2000 8192 &
  sleep 40  # GPU 1 measures latency first; starting these later keeps the host quiet meanwhile
  for a in w384d1 w256d1; do train_and_test $a $R/arch/$a.yml 2000 8192 & done
  wait
) &
GPU0=$!
wait $GPU0 $GPU1  # not a bare wait: the packer loop never ends
finish m30plain.tar.gz
