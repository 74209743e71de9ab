#!/usr/bin/env bash
# Multi30k De-En end to end on one GPU: train-super, then train-sub of the largest and smallest
# SubTransformers and of a plain Transformer of the largest size (the sanity bar), and `hat test` BLEU
# on test_2016_flickr -- also of the largest/smallest SubTransformers *inherited* from the SuperTransformer.
#
#   bash bench/multi30k_train.sh --out bench/out/multi30k
#   STAGES="data super" bash bench/multi30k_train.sh --out DIR   # one stage at a time (training resumes if interrupted)
#   STAGES="sub" ...; STAGES="test" ...                           # (whole pipeline ~10-15 GPU minutes on an H200)
#
# Knobs (env): SUPER_UPDATES (3000), SUB_UPDATES (2000), MAXTOK (8192), STAGES ("data super sub test").
set -euo pipefail
OUT=""
while [[ $# -gt 0 ]]; do case "$1" in --out) OUT="$2"; shift 2;; *) echo "unknown option $1" >&2; exit 2;; esac; done
[[ -n "$OUT" ]] || { echo "usage: bench/multi30k_train.sh --out DIR" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
SUPER_UPDATES=${SUPER_UPDATES:-3000}
SUB_UPDATES=${SUB_UPDATES:-2000}
MAXTOK=${MAXTOK:-8192}
STAGES=${STAGES:-data super sub test}
TASK=multi30k.de-en
DATA=$OUT/data
export HAT_NO_PROGRESS=${HAT_NO_PROGRESS:-1}
has() { [[ " $STAGES " == *" $1 "* ]]; }
timed() {  # timed NAME cmd... : wall seconds into $OUT/times.tsv, JSON into $OUT/NAME.json
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@" > "$OUT/$name.json"
  echo -e "$name\t$(python -c "import time; print(round(time.time() - $t0, 1))")" >> "$OUT/times.tsv"
}

if has data && [[ ! -f "$DATA/dict.de.txt" ]]; then
  timed data hat data --task $TASK --from-dir ../shared/data/multi30k/raw --data-dir "$DATA" --json
fi

python - "$OUT" <<'PY'
import sys
from pathlib import Path
from hat_cli.model import full_config
from hat_cli.space import SearchSpace
out = Path(sys.argv[1]); space = SearchSpace.builtin("multi30k")
space.largest().save_yaml(out / "largest.yml")
space.smallest().save_yaml(out / "smallest.yml")
full_config(space.shape).save_yaml(out / "plain.yml")  # every decoder layer attends to the last encoder layer
PY

if has super; then
  timed super hat train-super --task $TASK --data-dir "$DATA" --save-dir "$OUT/super" \
    --max-updates "$SUPER_UPDATES" --max-tokens "$MAXTOK" --json
fi
if has sub; then
  for arch in largest smallest plain; do
    timed "sub-$arch" hat train-sub --task $TASK --arch "$OUT/$arch.yml" --data-dir "$DATA" --save-dir "$OUT/sub-$arch" \
      --max-updates "$SUB_UPDATES" --max-tokens "$MAXTOK" --json
  done
fi
if has test; then
  for arch in largest smallest; do
    if [[ -d "$OUT/super/model" ]]; then
      timed "test-inherited-$arch" hat test "$OUT/super/model" --arch "$OUT/$arch.yml" \
        --task $TASK --data-dir "$DATA" --output "$OUT/inherited-$arch.hyp" --json
    fi
  done
  for arch in largest smallest plain; do
    if [[ -d "$OUT/sub-$arch/model" ]]; then
      timed "test-sub-$arch" hat test "$OUT/sub-$arch/model" --task $TASK --data-dir "$DATA" --output "$OUT/sub-$arch.hyp" --json
    fi
  done
fi

python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
times = dict(l.split("\t") for l in (out / "times.tsv").read_text().splitlines()) if (out / "times.tsv").exists() else {}
def load(name):
    p = out / f"{name}.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None
lines = [f"{'model':<26} {'updates':>7} {'train s':>8} {'k tok/s':>8} {'valid loss':>10} {'BLEU':>6} {'sacreBLEU':>9} {'test s':>7}"]
rows = [("super (inherited largest)", "super", "test-inherited-largest", "largest"),
        ("super (inherited smallest)", "super", "test-inherited-smallest", "smallest"),
        ("sub largest (scratch)", "sub-largest", "test-sub-largest", None),
        ("sub smallest (scratch)", "sub-smallest", "test-sub-smallest", None),
        ("plain Transformer", "sub-plain", "test-sub-plain", None)]
for label, train, test, key in rows:
    t, s = load(train), load(test)
    if t is None and s is None:
        continue
    vl = (t or {}).get("valid_loss")
    vl = vl.get(key) if isinstance(vl, dict) else vl
    fmt = lambda v, f: format(v, f) if isinstance(v, (int, float)) else "-"
    lines.append(f"{label:<26} {fmt((t or {}).get('updates'), 'd'):>7} {fmt(float(times[train]) if train in times else None, '.0f'):>8} "
                 f"{fmt(((t or {}).get('tokens_per_second') or 0) / 1e3, '.1f'):>8} {fmt(vl, '.3f'):>10} "
                 f"{fmt((s or {}).get('bleu'), '.2f'):>6} {fmt((s or {}).get('sacrebleu'), '.2f'):>9} {fmt(float(times[test]) if test in times else None, '.0f'):>7}")
lines.append("train s / test s: wall seconds of the command on one GPU (= GPU time held), including start-up and validation.")
text = "\n".join(lines)
print(text)
(out / "multi30k.txt").write_text(text + "\n")
PY
