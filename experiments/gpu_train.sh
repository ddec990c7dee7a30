#!/usr/bin/env bash
# Fine-tune a shipped model on a lent GPU: the recipe of `experiment=$EXPERIMENT` (pretrained: the speech
# model; pretrained_speakers: the two-speaker model), from the shipped weights ($INIT), at batch 32, on the training-split subset that experiments/gpu_train_data.py puts in
# .gpu/data (no file of the full test split can reach training, so the test figures scored here stay
# honest). The run stops at STEPS or after MAX_TIME, whichever comes first; what comes back is the best
# checkpoint (validation SI-SDRi), the last one and the metrics, in $OUT.
#
# Here:  ../shared/gpu/bundle.sh && .venv/bin/python experiments/gpu_train_data.py
# There (the `run` tool, carry [".gpu"]):  bash experiments/gpu_train.sh
# A dry run on this CPU:  DEVICE=cpu STEPS=4 BATCH=2 WORKERS=0 PYTHON=.venv/bin/python bash experiments/gpu_train.sh
set -uo pipefail
OUT=${OUT:-experiments/runs/gpu_train}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-4000}
BATCH=${BATCH:-32}
WORKERS=${WORKERS:-10}
MAX_TIME=${MAX_TIME:-00:00:05:30}
PRECISION=${PRECISION:-32-true}
EXPERIMENT=${EXPERIMENT:-pretrained}
TEST_FRACTION=${TEST_FRACTION:-0.01}   # of the subset's speakers: its test split is never used (pretrained_speakers needs 0.02: 2 speakers)
INIT=${INIT:-sepgan/pretrained/sepgan-16k.ckpt}
EXTRA=${EXTRA:-}                       # more overrides, space-separated (e.g. EXTRA="model.mask_frames=3")
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then
    trainer=gpu
    [[ "${PYTHONPATH:-}" == */tmp/site* ]] || { source .gpu/setup.sh || exit 1; }
else
    trainer=cpu
    export PYTHONPATH=$PWD WANDB_MODE=disabled
fi
dir=${RUN_DIR:-.gpu/train}
rm -rf "$dir"
start=$(date +%s)
read -ra extra <<< "$EXTRA"             # split into overrides, never matched against files
"$PYTHON" -m sepgan.train experiment="$EXPERIMENT" trainer=$trainer trainer.precision="$PRECISION" \
    data.root=.gpu/data data.batch_size="$BATCH" data.num_workers="$WORKERS" \
    data.train_examples=$((BATCH * 500)) trainer.max_steps="$STEPS" +trainer.max_time="$MAX_TIME" \
    data.test_fraction="$TEST_FRACTION" init_weights="$INIT" trainer.enable_progress_bar=false callbacks.validation_examples.count=0 \
    hydra.run.dir="$dir" "${extra[@]}" > "$OUT/train.log" 2>&1
code=$?
echo "train: exit $code after $(( $(date +%s) - start )) s" | tee -a "$OUT/train.log"
grep -i "val/si_sdri\|best\|non-finite\|error" "$OUT/train.log" | tail -n 20
best=$(ls -t "$dir"/checkpoints/best-*.ckpt 2>/dev/null | head -1)
[ -n "$best" ] && cp "$best" "$OUT/" && echo "best: $(basename "$best")"
cp "$dir"/checkpoints/last.ckpt "$OUT/" 2>/dev/null
metrics=$(ls "$dir"/csv/metrics.csv "$dir"/*/metrics.csv 2>/dev/null | head -1)
[ -n "$metrics" ] && cp "$metrics" "$OUT/metrics.csv"
exit $code
