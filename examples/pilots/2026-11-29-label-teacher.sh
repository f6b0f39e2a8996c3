#!/usr/bin/env bash
# Pilot of a label-aware teacher (teacher.label_weight), 2026-11-29. NOT shipped.
# Teacher score + 0.5 where the document is a known positive of the training query (judged
# relevant in train/dev, or a pseudo-query's source document). Same protocol as
# 2026-11-28-hybrid-teacher.sh: continue the SECOND release of the dense pico (commit 9ba3fad) for
# 800 steps with the nfcorpus DEV queries held out, and score nfcorpus DEV (nothing chosen on test).
# Baselines (that script, label_weight 0): dense 0.2046; colbert maxsim / pico + rerank / FDE by
# inner product / by cosine 0.2413 / 0.2445 / 0.2106 / 0.2096.
# Measured: dense 0.2070 (+0.0024, within noise); colbert 0.2322 / 0.2424 / 0.1910 / 0.1881 (worse
# on every column): the labels make the nearly one-hot targets sharper still.
# Run from the repository root (about 10 min on 2 cores; prints the [eval] lines).
set -euo pipefail
export HF_HUB_OFFLINE=1
work=$(mktemp -d)
git archive 9ba3fad models/pico | tar -x -C "$work"
base="$work/models/pico"
pilot=(--set 'data.holdout_splits=["dev"]' --set eval.split=dev --set 'eval.datasets=["nfcorpus"]'
       --set teacher.label_weight=0.5)

echo "== dense: 800 more KL steps, teacher.label_weight=0.5"
python -m harness train --config harness/train/configs/pico-adapted.toml "${pilot[@]}" \
  --set init.from="$base" --set embed.steps=0 --set kl.steps=800 --set eval.after_embed=false \
  --set run.run_dir="$work/run-dense" --out "$work/dense" 2>&1 | grep '^\[eval\]'

echo "== colbert: 800 KD steps from the dense pico, teacher.label_weight=0.5"
python -m harness train --config harness/train/configs/colbert-pico-adapted.toml "${pilot[@]}" \
  --set model.init_from="$base" --set eval.dense_from="$base" --set kd.steps=800 \
  --set run.run_dir="$work/run-colbert" --out "$work/colbert" 2>&1 | grep '^\[eval\]'
rm -rf "$work"
