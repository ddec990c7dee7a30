#!/usr/bin/env bash
# Everything one lent GPU session runs, at once (one device call, about 7 minutes; small models leave an
# H100 mostly idle, so the jobs share it):
#   - experiments/gpu_train.sh: fine-tune the shipped separator (fp32, batch 32, up to 5 min 40 s);
#   - the shipped recipe from scratch for 600 steps in fp32 and in bf16 mixed precision (same steps, same
#     data), the issue-9 check of mixed precision on the recipe that once went NaN at step 200;
#   - experiments/gpu_check.sh: the GAN pipeline in fp32, bf16 and fp16, `separate`/`evaluate` on cuda.
# Here first:  ../shared/gpu/bundle.sh && .venv/bin/python experiments/gpu_train_data.py
# There (the `run` tool, carry [".gpu"], timeout_s 540):  bash experiments/gpu_session.sh
# Back in $OUT: the fine-tuned checkpoints and metrics, checks.tgz (every log and summary).
set -uo pipefail
OUT=${OUT:-experiments/runs/gpu_session}
mkdir -p "$OUT"
# shellcheck disable=SC1091
source .gpu/setup.sh || exit 1
OUT=$OUT WORKERS=8 MAX_TIME=${MAX_TIME:-00:00:05:40} bash experiments/gpu_train.sh > "$OUT/main_stdout.txt" 2>&1 &
main=$!
for p in 32-true bf16-mixed; do
    OUT=.gpu/recipe_$p RUN_DIR=.gpu/recipe_run_$p PRECISION=$p INIT=null STEPS=600 BATCH=16 WORKERS=2 \
        MAX_TIME=00:00:04:00 bash experiments/gpu_train.sh > ".gpu/recipe_$p.txt" 2>&1 &
done
OUT=.gpu/check bash experiments/gpu_check.sh > .gpu/check.txt 2>&1
wait
for p in 32-true bf16-mixed; do
    echo "== recipe from scratch, 600 steps, $p:"; grep -A2 "^stage " ".gpu/recipe_$p/train.log"; tail -n 1 ".gpu/recipe_$p/train.log"
done
cat .gpu/check/summary.txt
echo "== fine-tuning the shipped model:"; cat "$OUT/main_stdout.txt"
tar czf "$OUT/checks.tgz" --exclude='*.ckpt' .gpu/check .gpu/recipe_32-true .gpu/recipe_bf16-mixed .gpu/*.txt
ls -la "$OUT"
