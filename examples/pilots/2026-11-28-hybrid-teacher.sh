#!/usr/bin/env bash
# Pilots behind the third release of models/pico and models/colbert-pico (2026-11-28).
# Every pilot continues from the SECOND release of the dense pico (commit 9ba3fad), leaves the
# nfcorpus DEV queries out of training and scores nfcorpus DEV, so nothing is chosen on test.
# Run from the repository root:  bash examples/pilots/2026-11-28-hybrid-teacher.sh
# (about 35 min on 2 cores; prints the [eval] lines quoted in the model cards).
set -euo pipefail
export HF_HUB_OFFLINE=1
work=$(mktemp -d)
git archive 9ba3fad models/pico | tar -x -C "$work"
base="$work/models/pico"
pilot=(--set 'data.holdout_splits=["dev"]' --set eval.split=dev --set 'eval.datasets=["nfcorpus"]')

echo "== the distillation teacher on held-out judgments (chooses bm25_weight)"
python -m harness.train.quick_eval --datasets nfcorpus --split dev
python -m harness.train.quick_eval --datasets scifact --split train

echo "== starting point: the second-release dense pico on nfcorpus dev"
python - "$base" <<'PY'
import sys
from harness.data import default_data_dir
from harness.train.colbert_kd import _dense_encoder
from harness.train.quick_eval import eval_dense
print(f"[eval] nfcorpus ndcg@10 (dev) = {eval_dense(_dense_encoder(sys.argv[1]), default_data_dir() / 'nfcorpus', split='dev'):.4f}")
PY

for w in 0.0 0.5; do
  echo "== dense: 800 more KL steps, teacher.bm25_weight=$w"
  python -m harness train --config harness/train/configs/pico-adapted.toml "${pilot[@]}" \
    --set init.from="$base" --set embed.steps=0 --set kl.steps=800 --set eval.after_embed=false \
    --set teacher.bm25_weight=$w --set run.run_dir="$work/run-dense-$w" --out "$work/dense-$w" 2>&1 | grep '^\[eval\]'
done

for arm in "0.0 0.0" "0.5 0.0" "0.5 1.0"; do
  set -- $arm
  echo "== colbert: 800 KD steps from the dense pico, teacher.bm25_weight=$1, kd.fde_weight=$2"
  python -m harness train --config harness/train/configs/colbert-pico-adapted.toml "${pilot[@]}" \
    --set model.init_from="$base" --set eval.dense_from="$base" --set kd.steps=800 \
    --set teacher.bm25_weight=$1 --set kd.fde_weight=$2 --set run.run_dir="$work/run-colbert-$1-$2" \
    --out "$work/colbert-$1-$2" 2>&1 | grep '^\[eval\]'
done
rm -rf "$work"
