#!/usr/bin/env bash
# Pilots for the fourth release of models/colbert-pico (2026-11-28, issue 4): a weight-space average
# ("model soup", `[average]` in the config, harness/train/soup.py) of the sharp-teacher run (the third
# release's settings, kd.teacher_scale 20) and the soft-teacher run (kd.teacher_scale 5). Alone, the soft
# teacher gains maxsim but its FDEs rank badly by cosine (2026-11-28-colbert-kd-settings.sh).
# Same protocol as that script: 800 KD steps from the SECOND release of the dense pico (commit 9ba3fad),
# the nfcorpus DEV queries left out of training and scored, so nothing is chosen on test.
# The first call trains both members side by side; the later calls --resume them (their checkpoints say
# they are done) and only average with another weight and self-check. Each prints the [eval] line:
# maxsim / pico top-100 rerank / FDE by inner product / FDE by cosine / cosine FDE top-100 rerank.
# Run from the repository root:  bash harness/train/pilots/2026-11-28-colbert-average.sh  (about 20 min)
set -euo pipefail
export HF_HUB_OFFLINE=1
work=$(mktemp -d)
git archive 9ba3fad models/pico | tar -x -C "$work"
base="$work/models/pico"

average() {  # average WEIGHT_ON_THE_SOFT_TEACHER [--resume]
  local w=$1; shift
  python -m harness train --config harness/train/configs/colbert-pico.toml \
    --set 'data.holdout_splits=["dev"]' --set eval.split=dev --set 'eval.datasets=["nfcorpus"]' \
    --set model.init_from="$base" --set eval.dense_from="$base" --set kd.steps=800 \
    --set run.threads=1 --set run.run_dir="$work/run" --out "$work/average-$w" \
    --set 'average.members=[[], ["kd.teacher_scale=5.0"]]' \
    --set "average.weights=[$(python -c "print(round(1 - $w, 6))"), $w]" "$@" > "$work/average-$w.log" 2>&1
  echo "== weight $w on teacher_scale 5"; grep '^\[eval\]' "$work/average-$w.log"
}

average 0.5
for w in 0.0 0.3 0.6 0.7 1.0; do average $w --resume; done
rm -rf "$work"
