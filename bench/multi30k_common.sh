# Shared by the Multi30k benchmarks (bench/bench_multi30k.sh; source it after setting R and OUT): the task and
# data directory, a timeline log, packing results into $OUT while the run goes on, the architectures
# (bench/multi30k_archs.py), and profiling, training and testing architectures through `hat`.
TASK=multi30k.de-en
D=${DATA:-$R/data}
mkdir -p "$R/json" "$R/arch" "$OUT"

log() { echo "[$(date +%T)] $*" | tee -a "$R/timeline.txt"; }

pack() {  # pack ARCHIVE: everything but weights and data, swapped in atomically so a cut call keeps the last one
  tar -czf "$OUT/.tmp.tar.gz" --exclude='*.safetensors' --exclude='data' -C "$R" . 2>/dev/null \
    && mv "$OUT/.tmp.tar.gz" "$OUT/$1"
}

start_packer() {  # start_packer ARCHIVE: pack every 20 s; sets PACKER (wait on your own jobs, not a bare wait)
  (while sleep 20; do pack "$1"; done) &
  PACKER=$!
}

finish() {  # finish ARCHIVE: after the script's own waits, stop the packer, pack once more, show the timeline
  log done
  kill $PACKER 2>/dev/null
  pack "$1"
  cat "$R/timeline.txt"
}

prepare_data() {
  [ -f "$D/dict.de.txt" ] || hat data --task $TASK --from-dir ../shared/data/multi30k/raw --data-dir "$D" --json > "$R/json/data.json"
}

prepare_run() {  # the data (prepared once) and the architectures every script trains from
  log start
  prepare_data || exit 1
  python bench/multi30k_archs.py "$R/arch"
  log "data and architectures ready"
}

profile_archs() {  # HW NAME...: `hat profile` (measured latency) of each architecture
  local hw=$1; shift
  for a in "$@"; do  # moved into place when complete: another job waits for these files to appear
    hat profile "$R/arch/$a.yml" --task $TASK --hw "$hw" --json > "$R/json/.profile-$a.json" \
      && mv "$R/json/.profile-$a.json" "$R/json/profile-$a.json"
  done
  log "latency of $* measured"
}

# RECIPE=FILE.yml adds `--config FILE.yml` (bench/multi30k_recipe_v1.yml: the recipe the recorded runs used).
train_and_test() {  # NAME ARCH.yml UPDATES TOKENS: hat train-sub from scratch, then hat test on test_2016_flickr
  local name=$1 arch=$2 updates=$3 tokens=$4
  hat train-sub --task $TASK --arch "$arch" --data-dir "$D" --save-dir "$R/sub-$name" --max-updates "$updates" \
      --max-tokens "$tokens" --seed 1 ${RECIPE:+--config "$RECIPE"} --json > "$R/json/train-$name.json" 2> "$R/sub-$name.err" \
    && hat test "$R/sub-$name/model" --task $TASK --data-dir "$D" --output "$R/sub-$name.hyp" --json > "$R/json/test-$name.json" 2>> "$R/sub-$name.err"
  log "$name ($updates updates) trained and tested rc=$?"
}
