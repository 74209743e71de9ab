#!/usr/bin/env bash
# Two-GPU SuperTransformer training agrees with one GPU at twice the update-freq (issue 7).
#
#   bash bench/bench_ddp.sh --out bench/out/ddp            # on a host with 2 GPUs (Multi30k, prepared offline)
#   DEVICE=cpu UPDATES=12 MAXTOK=300 DATA=/path SPACE=tiny.yml TASK=demo bash bench/bench_ddp.sh --out /tmp/ddp  # CPU smoke test (gloo)
#
# Both runs see exactly the same batches per update (one GPU: update-freq 2F; two GPUs: F each, batches
# split rank::2) and the same dropout masks per batch (the RNG is reseeded per micro-batch from
# seed/update/batch index), so the curves differ only by floating-point summation order.
set -euo pipefail
OUT=""
while [[ $# -gt 0 ]]; do case "$1" in --out) OUT="$2"; shift 2;; *) echo "unknown option $1" >&2; exit 2;; esac; done
[[ -n "$OUT" ]] || { echo "usage: bench/bench_ddp.sh --out DIR" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
TASK=${TASK:-multi30k.de-en}
UPDATES=${UPDATES:-400}
MAXTOK=${MAXTOK:-4096}
FREQ=${FREQ:-1}          # per-GPU update-freq of the 2-GPU run; the 1-GPU run uses 2*FREQ
DEVICE=${DEVICE:-cuda}
SPACE=${SPACE:-}
DATA=${DATA:-$OUT/data}
if [[ ! -f "$DATA/dict.de.txt" && "$TASK" == multi30k.de-en ]]; then
  hat data --task multi30k.de-en --from-dir ../shared/data/multi30k/raw --data-dir "$DATA" --json > "$OUT/data.json"
fi
cat > "$OUT/overrides.yml" <<YML
log-every: 10
warmup-updates: 100
validate-every: 100
save-interval-updates: 100000
YML
COMMON=(train-super --task "$TASK" --data-dir "$DATA" --max-updates "$UPDATES" --max-tokens "$MAXTOK"
        --config "$OUT/overrides.yml" --no-resume --json)
[[ -n "$SPACE" ]] && COMMON+=(--space "$SPACE")
[[ "$DEVICE" == cpu ]] && COMMON+=(--device cpu)
export HAT_NO_PROGRESS=1
rm -rf "$OUT/gpu1" "$OUT/gpu2"
start=$(date +%s.%N)
python -m hat_cli.cli.app "${COMMON[@]}" --save-dir "$OUT/gpu1" --update-freq $((2 * FREQ)) > "$OUT/gpu1.json"
mid=$(date +%s.%N)
python -m torch.distributed.run --standalone --nproc_per_node 2 -m hat_cli.cli.app "${COMMON[@]}" --save-dir "$OUT/gpu2" --update-freq "$FREQ" > "$OUT/gpu2.json"
end=$(date +%s.%N)
python - "$OUT" "$start" "$mid" "$end" <<'PY'
import json, sys
from pathlib import Path
out, start, mid, end = Path(sys.argv[1]), *map(float, sys.argv[2:])
def curve(run):
    rows = [json.loads(l) for l in (out / run / "train_log.jsonl").read_text().splitlines()]
    return {r["updates"]: r for r in rows if r["valid_loss"] is None}, {r["updates"]: r["valid_loss"] for r in rows if r["valid_loss"]}
(t1, v1), (t2, v2) = curve("gpu1"), curve("gpu2")
j1, j2 = json.loads((out / "gpu1.json").read_text()), json.loads((out / "gpu2.json").read_text())
lines = [f"{'update':>6} {'loss 1 GPU':>11} {'loss 2 GPUs':>12} {'|diff|':>9}"]
diffs = []
for u in sorted(set(t1) & set(t2)):
    d = abs(t1[u]["loss"] - t2[u]["loss"]); diffs.append(d)
    lines.append(f"{u:>6} {t1[u]['loss']:>11.4f} {t2[u]['loss']:>12.4f} {d:>9.2e}")
for u in sorted(set(v1) & set(v2)):
    lines.append(f"valid @{u}: 1 GPU {json.dumps({k: round(x, 4) for k, x in v1[u].items()})}  2 GPUs {json.dumps({k: round(x, 4) for k, x in v2[u].items()})}")
lines.append(f"max |diff| of train loss (bits/token): {max(diffs):.2e}; mean {sum(diffs) / len(diffs):.2e}")
from safetensors.torch import load_file
w1, w2 = load_file(str(out / "gpu1/model/model.safetensors")), load_file(str(out / "gpu2/model/model.safetensors"))
wdiff = max(float((w1[k].double() - w2[k].double()).abs().max()) for k in w1)
lines.append(f"max |difference| of final weights: {wdiff:.2e}")
lines.append(f"1 GPU : {j1['tokens_per_second'] / 1e3:.1f}k target tok/s, wall {mid - start:.0f}s (incl. start-up)")
lines.append(f"2 GPUs: {j2['tokens_per_second'] / 1e3:.1f}k target tok/s, wall {end - mid:.0f}s (incl. start-up)")
text = "\n".join(lines)
print(text)
(out / "ddp.txt").write_text(text + "\n")
PY
