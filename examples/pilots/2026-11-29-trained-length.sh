#!/usr/bin/env bash
# Why the pico models ship at 128 tokens (2026-11-29): every training stage reads at most 128
# tokens per text (the teacher's length), so position embeddings 128..511 never receive a gradient
# and keep their random initial values. The releases up to then shipped pico at 256 tokens and
# colbert-pico at 300 document tokens. Measured on judged splits no shipped number is chosen on
# (nfcorpus dev; scifact train), ndcg@10:
#
#   model                                          length   nfcorpus dev   scifact train
#   pico (third release; trained on these queries)    128        0.2351          0.7241
#                                                      256        0.2156          0.6361
#                                                      512        0.2121          0.6267
#   dense pilot, nfcorpus dev held out of training      96        0.2334
#   (the label-teacher pilot of                        128        0.2342
#    2026-11-29-label-teacher.sh)                      160        0.2240
#                                                      192        0.2136
#                                                      256        0.2070
#   colbert-pico (third release), maxsim               128        0.2821          0.7594
#                                                      300        0.2544          0.7283
#   colbert-pico (third release), MUVERA txtai mode    128        0.2639          0.7297
#                                                      300        0.2407          0.6986
#   colbert pilot, dev held out, maxsim                128        0.2607
#                                                      300        0.2322
#   colbert pilot, dev held out, MUVERA txtai mode     128        0.2119
#                                                      300        0.1881
#
# So the shipped length is now the trained length (harness.train.dense_kd.trained_length;
# colbert_kd.set_doc_len). Run from the repository root; the released models are taken from commit
# 5d524a9 (about 15 min on 2 cores).
set -euo pipefail
export HF_HUB_OFFLINE=1
work=$(mktemp -d)
git archive 5d524a9 models/pico models/colbert-pico | tar -x -C "$work"
third="$work/models"

with_doc_length() {  # copy ColBERT folder $1 to $2 with its document length set to $3
  cp -r "$1" "$2"
  python - "$2" "$3" <<'PY'
import json, sys
folder, n = sys.argv[1], int(sys.argv[2])
for name, key, value in (("config_sentence_transformers.json", "document_length", n),
                         ("sentence_bert_config.json", "max_seq_length", n - 1)):
    path = f"{folder}/{name}"
    config = json.load(open(path))
    config[key] = value
    json.dump(config, open(path, "w"), indent=2)
PY
}

score() {  # model, dataset, split [extra harness run options]
  python -m harness run --model "$1" --datasets "$2" --split "$3" "${@:4}" --no-save --no-cache 2>&1 | grep -o 'ndcg@10=[0-9.]*'
}

echo "== released pico at 128 / 256 / 512 tokens"
for n in 128 256 512; do
  echo "pico $n: nfcorpus dev $(score "$third/pico" nfcorpus dev --max-length $n), scifact train $(score "$third/pico" scifact train --max-length $n)"
done

echo "== released colbert-pico at 128 / 300 document tokens"
for n in 128 300; do
  with_doc_length "$third/colbert-pico" "$work/colbert-$n" $n
  for kind in colbert muvera; do
    echo "$kind $n: nfcorpus dev $(score $kind:$work/colbert-$n nfcorpus dev), scifact train $(score $kind:$work/colbert-$n scifact train)"
  done
done

echo "== pilots with the nfcorpus dev queries held out (as in 2026-11-29-label-teacher.sh)"
mkdir "$work/second"
git archive 9ba3fad models/pico | tar -x -C "$work/second"
base="$work/second/models/pico"
pilot=(--set 'data.holdout_splits=["dev"]' --set eval.split=dev --set 'eval.datasets=["nfcorpus"]'
       --set teacher.label_weight=0.5)
python -m harness train --config harness/train/configs/pico-adapted.toml "${pilot[@]}" \
  --set init.from="$base" --set embed.steps=0 --set kl.steps=800 --set eval.after_embed=false \
  --set run.run_dir="$work/run-dense" --out "$work/dense" > /dev/null 2>&1
for n in 96 128 160 192 256; do
  echo "dense pilot $n: nfcorpus dev $(score "$work/dense" nfcorpus dev --max-length $n)"
done
python -m harness train --config harness/train/configs/colbert-pico-adapted.toml "${pilot[@]}" \
  --set model.init_from="$base" --set eval.dense_from="$base" --set kd.steps=800 \
  --set run.run_dir="$work/run-colbert" --out "$work/colbert" > /dev/null 2>&1
for n in 128 300; do
  with_doc_length "$work/colbert" "$work/colbert-pilot-$n" $n
  for kind in colbert muvera; do
    echo "$kind pilot $n: nfcorpus dev $(score $kind:$work/colbert-pilot-$n nfcorpus dev)"
  done
done
rm -rf "$work"
