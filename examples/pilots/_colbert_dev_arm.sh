# Sourced by the ColBERT dev-pilot scripts beside it (run them from the repository root). Sets
# $work (a scratch folder) and $base (the SECOND release of the dense pico, commit 9ba3fad), and
# defines `arm NAME --set key=value ...`: 800 KD steps from $base with the nfcorpus DEV queries
# left out of training and scored (nothing is chosen on test), one thread, printing the [eval] lines.
set -euo pipefail
export HF_HUB_OFFLINE=1
work=$(mktemp -d)
git archive 9ba3fad models/pico | tar -x -C "$work"
base="$work/models/pico"

arm() {  # arm NAME --set key=value ...
  local name=$1; shift
  python -m harness train --config harness/train/configs/colbert-pico-adapted.toml \
    --set 'data.holdout_splits=["dev"]' --set eval.split=dev --set 'eval.datasets=["nfcorpus"]' \
    --set model.init_from="$base" --set eval.dense_from="$base" --set kd.steps=800 \
    --set run.threads=1 --set run.run_dir="$work/run-$name" --out "$work/$name" "$@" \
    > "$work/$name.log" 2>&1
  echo "== $name ($*)"; grep '^\[eval\]' "$work/$name.log"
}
