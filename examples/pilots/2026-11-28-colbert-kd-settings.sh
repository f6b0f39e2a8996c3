#!/usr/bin/env bash
# Pilots for a fourth release of models/colbert-pico (2026-11-28, issue 4: the NFCorpus rows).
# Same protocol as 2026-11-28-hybrid-teacher.sh: every arm runs 800 KD steps from the SECOND release
# of the dense pico (commit 9ba3fad) with the hybrid teacher (bm25_weight 0.5), leaves the nfcorpus
# DEV queries out of training and scores nfcorpus DEV, so nothing is chosen on test. The reference
# arm (the third release's settings) scored maxsim / pico top-100 rerank / FDE 0.2413 / 0.2445 / 0.2106
# in that script. Each arm of the first two waves changes ONE KD setting. Arms run two at a time, one thread each.
# Outcome: teacher_scale 5 led; the full model trained with it (34 min) gained maxsim and rerank on
# nfcorpus test but lost the MUVERA txtai-mode row, which scores FDEs by cosine while these pilots'
# FDE column was by inner product, so it was not shipped (models/colbert-pico/README.md). The
# self-check now prints `muvera_fde_cosine` too (the first four waves ran before it existed), and
# it would have caught it: reference 0.2096, teacher_scale 5 0.1328.
# Run from the repository root:  bash examples/pilots/2026-11-28-colbert-kd-settings.sh
# (about 70 min on 2 cores; prints the [eval] lines quoted in the model card).
source "$(dirname "$0")/_colbert_dev_arm.sh"  # $work, $base, arm NAME --set ...

arm teacher_scale_10 --set kd.teacher_scale=10 & arm candidates_8 --set kd.candidates=8 & wait
arm lr_4e-3 --set kd.lr=4e-3 & arm real_query_frac_0.75 --set kd.real_query_frac=0.75 & wait
# third wave, added after the first two (teacher_scale 10 led): a softer teacher still, and the two leaders together
arm teacher_scale_5 --set kd.teacher_scale=5 & arm teacher_scale_10+real_query_frac_0.75 --set kd.teacher_scale=10 --set kd.real_query_frac=0.75 & wait
# fourth wave (teacher_scale 5 led by far, with a lower FDE score): the scale on either side of it
arm teacher_scale_2.5 --set kd.teacher_scale=2.5 & arm teacher_scale_7 --set kd.teacher_scale=7 & wait
# Fifth wave, after the full teacher_scale 5 model lost the cosine-scored MUVERA row. The self-check
# now prints `muvera_fde_cosine`, so a run of this script shows that column for every arm above:
# teacher_scale 5 gives 0.1328 and teacher_scale 10 0.2076 (first measured by rerunning those two
# arms, whose other columns reproduced exactly). Added: the reference arm (the third release's
# settings; cosine FDE 0.2096), and teacher_scale 5 with the FDE-aware term (KL against the cosine of
# FDEs), which is worse on every column (0.2402 / 0.2420 / cosine FDE 0.1649).
arm reference & arm teacher_scale_5+fde_weight_1 --set kd.teacher_scale=5 --set kd.fde_weight=1.0 & wait
# Sixth wave (after the weight average of 2026-11-28-colbert-average.sh did not hold at full length):
# a teacher-scale schedule, soft early and sharp late (kd.teacher_scale_end) and the reverse. The scale
# at the end decides the FDE: 5 -> 20 keeps it (cosine FDE 0.2094) with small gains (maxsim 0.2450,
# rerank 0.2486), 20 -> 5 ruins it (0.1424) and loses maxsim too (0.2179).
arm teacher_scale_5_to_20 --set kd.teacher_scale=5 --set kd.teacher_scale_end=20 & arm teacher_scale_20_to_5 --set kd.teacher_scale=20 --set kd.teacher_scale_end=5 & wait
# Seventh wave: the soft teacher for maxsim with the FDE-aware term given its own sharp target
# (kd.fde_teacher_scale 20). Worse on every column at weight 1 and 3 (maxsim 0.2302 / 0.2148, cosine
# FDE 0.1432 / 0.1626), so the FDE-aware term has now lost in all three forms tried.
arm teacher_scale_5+fde_weight_1+fde_teacher_scale_20 --set kd.teacher_scale=5 --set kd.fde_weight=1.0 --set kd.fde_teacher_scale=20 &
arm teacher_scale_5+fde_weight_3+fde_teacher_scale_20 --set kd.teacher_scale=5 --set kd.fde_weight=3.0 --set kd.fde_teacher_scale=20 & wait
# Eighth wave: soften both sides (teacher_scale 5, student_scale 0.25: the optimum asks for the sharp
# run's maxsim range, with soft distributions). Worse on every column: 0.2305 / 0.2339 / FDE cosine 0.2024.
arm teacher_scale_5+student_scale_0.25 --set kd.teacher_scale=5 --set kd.student_scale=0.25 & wait
rm -rf "$work"
