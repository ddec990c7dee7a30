#!/usr/bin/env bash
# Everything one lent GPU session runs, at once (one device call, about 8 minutes; small models leave an
# H100/H200 mostly idle, so the jobs share it):
#   - experiments/gpu_train.sh: fine-tune the shipped speech model (fp32, batch 32, up to MAX_TIME; EXTRA="..."
#     adds overrides to this job only, e.g. EXTRA="data.augment.snr_db=[-5,15]", the range versions 4 and 5
#     were fine-tuned at on the CPU, +0.16 dB on the test split over -5...20: experiments/ABLATION.md; the
#     resampled-recording augmentation that version 5 added is on by default);
#   - with CONTROL="...", the same fine-tune again beside it with these overrides in place of EXTRA (a
#     control: e.g. the shipped network where EXTRA grows it), returned as control_*.ckpt;
#   - with SPEAKERS=1, the same for the shipped two-speaker model (experiment=pretrained_speakers), beside it;
#   - experiments/gpu_check.sh: the GAN pipeline in fp32, bf16 and fp16 for each seed in SEEDS,
#     `separate`/`evaluate` on cuda.
# Capacity grows from the shipped weights through init_weights (README, "Training"): e.g.
#   EXTRA="model.unet.channels=12 data.augment.snr_db=[-5,15] optim.optimizer.lr=3e-4"
# starts a U-Net 1.5 times as wide at every level as exactly the shipped model (the run the CPU cannot
# afford: about 2.25 times the work; experiments/ABLATION.md, "capacity grown into version 5").
# Here first:  ../shared/gpu/bundle.sh && .venv/bin/python experiments/gpu_train_data.py
# There (the `run` tool, carry [".gpu"], timeout_s 540):  bash experiments/gpu_session.sh
# Back in $OUT: each fine-tuned model's best and last separator (no optimizer state), gpu_check's bf16 generator, logs.tgz
# (every log, summary and metrics.csv).
# Score the checkpoints here, on the CPU (README "The shipped model", "Two speakers").
#
# A follow-up call on the still-warm machine (e.g. to finish a run that MAX_TIME cut short) keeps what
# the runs wrote (.gpu/train*, /tmp/site) but not the carried files it is not given again: carry only
# [".gpu/data"] (carrying ".gpu" would replace the run folders), skip setup.sh and
#   export PYTHONPATH=/tmp/site:$PWD WANDB_MODE=disabled
# then repeat gpu_train.sh's command with ckpt_path=.gpu/train/checkpoints/last.ckpt (not `last`, which
# looks under logs/) and a larger +trainer.max_time (the resumed timer counts the time already spent).
#
# The session of 2026-11-26 (H200) ran the speech fine-tuning, the GPU checks and, in place of the
# two-speaker job, the shipped recipe from scratch for 600 steps in fp32 and in bf16 (README "Mixed precision").
# The session of 2026-11-27 (H200) ran this script as it stands, with
# EXTRA="data.augment.snr_db=[-5,15] optim.optimizer.lr=3e-4" (424 s), then on the warm machine the recipe
# from scratch in the three precisions, 1500 steps and 1000 steps with seed=2 (README "Mixed precision");
# 808 s of the 900 s of device time, machine start included.
# A later session that day (H200) ran SEEDS= MAX_TIME=00:00:07:30 STEPS=2500 WORKERS=7 with
# EXTRA="model.unet.channels=12 data.augment.snr_db=[-5,15] optim.optimizer.lr=3e-4" and
# CONTROL="data.augment.snr_db=[-5,15] optim.optimizer.lr=3e-4" (431 s: experiments/ABLATION.md, "A U-Net
# 1.5 times as wide, trained on a GPU"), then SEEDS=1234 bash experiments/gpu_check.sh on the warm machine
# (156 s); 637 s of device time in all, machine start included.
# A session on 2026-11-27 (H200) ran SEEDS= MAX_TIME=00:00:08:00 STEPS=2500 WORKERS=6 SPEAKERS=1 with
# EXTRA="loss.weights.compressed=20 data.augment.snr_db=[-5,15] optim.optimizer.lr=3e-4" and, as CONTROL, a
# second weight of the same term, compressed=50 (533 s; the control with the shipped loss is the run above:
# experiments/ABLATION.md, "A compressed spectral loss"); the two-speaker job reached step 4020 of 5000 and
# was resumed on the warm machine (85 s; README "Two speakers", version 3); 668 s of device time in all.
# A session on 2026-11-28 (H200) ran SEEDS= MAX_TIME=00:00:08:00 STEPS=2500 WORKERS=7 with
# EXTRA="frontend.hop_length=128 model.unet.frame_stack=2 data.augment.snr_db=[-5,15] optim.optimizer.lr=3e-4"
# and CONTROL="data.augment.snr_db=[-5,15] optim.optimizer.lr=3e-4" (429 s), then on the warm machine both
# last.ckpt 1500 steps more at lr 1e-4 through gpu_train.sh with INIT= (242 s); 740 s of device time in all
# (experiments/ABLATION.md, "the finer hop at the coarse hop's cost": stacking kept part of the half hop's
# SI-SDR gain, none of its PESQ or VCTK gain; neither run beat version 8).
# The next lent GPU (as of 2026-11-28, third session): the half hop with a light top level, the only
# half hop near the speed aims (`none`: 1.2-1.4 times version 8's time; in bf16 on the CPU 0.013-0.015, and
# 0.018-0.021 with ONNX Runtime; experiments/model_speed.py), for the steps a GPU gives, beside the plain
# half hop (the only change that gained PESQ and VCTK against its control; on the CPU it levelled off at
# 10.24 dB and PESQ 2.13 on the test split after 2600 steps, and three parts with speed perturbation took it
# to 10.39 and 2.15, experiments/ABLATION.md, "bf16 on the CPU" and "speed perturbation"):
#   EXTRA="frontend.hop_length=128 model.unet.top_block=none data.augment.snr_db=[-5,15] optim.optimizer.lr=3e-4"
#   CONTROL="frontend.hop_length=128 data.augment.snr_db=[-5,15] optim.optimizer.lr=3e-4"
# Two identical CPU fine-tunes landed up to 0.18 dB apart on the test split (ABLATION, "speed perturbation"):
# with no repeats in one session's minutes, read differences under about 0.2 dB between the two runs as noise.
# On the CPU, 1000 steps left a light top level (`conv`) 1.3-1.9 dB below the full one, 2000 steps 0.8-0.9, while
# the half hop's gain over hop 256 held without it (all of its SI-SDR gain, most of its PESQ gain;
# experiments/ABLATION.md, "a lighter full-resolution level"); whether it recovers is what the GPU's steps
# tell. GPU fine-tunes of versions 5-8 have moved them by a few tenths of a dB at most, validation often
# down; they train on the 90 speakers that travel, the CPU runs on all 201.
# As of the fourth session of 2026-11-28: `none` itself, 1000 and 2000 CPU steps from version 8 (bf16), reached 8.42
# and 8.94 dB on its own validation (`conv`: 8.97 and 9.36); with `sepgan export-onnx --int8` it runs at 0.011-0.012 with ONNX Runtime,
# the full half hop at 0.024-0.030 (experiments/ABLATION.md, "int8 convolutions"), so `none` stays the run to make.
# Since the fifth session of 2026-11-28 the shipped model works at a 12 ms hop (versions 9 and 10; experiment=pretrained sets
# frontend.hop_length=192): a fine-tune without a hop override now runs at 12 ms; add frontend.hop_length=256 for
# version 8's frames. At 12 ms, 2000 CPU steps levelled off at 10.20 dB on the test split (ABLATION, "a 12 ms hop"),
# so a GPU's steps at 12 ms (EXTRA="data.augment.snr_db=[-5,15] optim.optimizer.lr=1e-4") are the other run worth making.
# Since 2026-12-07 the shipped model is version 10, trained on 4 s mixtures: 1000 CPU steps of 6 x 4 s gained 0.15 dB
# and 0.05 PESQ on the test split against the same steps on 3 s (ABLATION, "training mixtures as long as the scored
# ones"), and experiment=pretrained now sets data.segment_seconds=4.0, so BATCH=32 here is 128 s of audio a step
# (BATCH=24 keeps the 96 s of the 3 s runs); a second CPU part on 4 s added nothing clear. Version 11 is the mean
# of three CPU fine-tunes of version 10 at 3e-4 (README, "The shipped model"; experiments/average_checkpoints.py):
# fine-tunes with other seeds at that rate, averaged, are what a GPU's steps could try next.
set -uo pipefail
OUT=${OUT:-experiments/runs/gpu_session}
MAX_TIME=${MAX_TIME:-00:00:07:00}
SEEDS=${SEEDS-1234 1 2 3}             # gpu_check.sh: one round of fp32/bf16/fp16 per seed, about 60 s each; SEEDS= skips it
mkdir -p "$OUT"
# shellcheck disable=SC1091
source .gpu/setup.sh || exit 1
OUT=.gpu/out_speech RUN_DIR=.gpu/train WORKERS=${WORKERS:-10} MAX_TIME=$MAX_TIME STEPS=${STEPS:-3500} \
    bash experiments/gpu_train.sh > .gpu/speech.txt 2>&1 &
trained=(speech)
if [ -n "${CONTROL:-}" ]; then       # CONTROL="overrides": the same fine-tune with these overrides in place of EXTRA, beside it
    EXTRA=$CONTROL OUT=.gpu/out_control RUN_DIR=.gpu/train_control WORKERS=${WORKERS:-10} MAX_TIME=$MAX_TIME \
        STEPS=${STEPS:-3500} bash experiments/gpu_train.sh > .gpu/control.txt 2>&1 &
    trained+=(control)
fi
if [ -n "${SPEAKERS:-}" ]; then      # SPEAKERS=1: the two-speaker model too (it competes for the CPU cores)
    EXTRA= OUT=.gpu/out_speakers RUN_DIR=.gpu/train_speakers WORKERS=4 MAX_TIME=$MAX_TIME EXPERIMENT=pretrained_speakers \
        TEST_FRACTION=0.02 INIT=sepgan/pretrained/sepgan-2speakers-8k.ckpt STEPS=5000 \
        bash experiments/gpu_train.sh > .gpu/speakers.txt 2>&1 &
    trained+=(speakers)
fi
[ -n "$SEEDS" ] && OUT=.gpu/check SEEDS=$SEEDS RUN_TIMEOUT=150 bash experiments/gpu_check.sh > .gpu/check.txt 2>&1
wait
cat .gpu/check/summary.txt 2>/dev/null
# The separator alone (sepgan.models.save_separator, no optimizer state): a model grown wider than the
# shipped one would not fit the 16 MiB a returned file may have with its Adam moments.
separator_only() { python3 -c "import sys; from sepgan.models import load_separator as l, save_separator as s; s(l(sys.argv[1]), sys.argv[2])" "$1" "$2"; }
for job in "${trained[@]}"; do
    echo "== fine-tuning, $job:"; cat ".gpu/$job.txt"
    best=$(ls .gpu/out_"$job"/best-*.ckpt 2>/dev/null | head -1)
    [ -n "$best" ] && separator_only "$best" "$OUT/${job}_$(basename "$best")"
    [ -f .gpu/out_"$job"/last.ckpt ] && separator_only .gpu/out_"$job"/last.ckpt "$OUT/${job}_last.ckpt"
done
# Each fine-tuned model on the GPU through the chunked path `sepgan separate` uses, against the CPU.
for ckpt in "$OUT"/*_last.ckpt; do
    [ -f "$ckpt" ] && python3 - "$ckpt" <<'PY' 2>&1 | grep -v Warning
import sys, torch
from sepgan.commands.bench import bench_signal
from sepgan.inference.backends import TorchBackend
from sepgan.inference.chunked import ChunkedSeparator
from sepgan.models import load_separator
signal = bench_signal(20.0)
out = {d: ChunkedSeparator(TorchBackend(load_separator(sys.argv[1]), d)).separate(signal, 16000) for d in ("cuda", "cpu")}
print(f"== {sys.argv[1]}: separate on cuda vs cpu, max |diff| {abs(out['cuda'] - out['cpu']).max():.2e} "
      f"(peak {abs(out['cpu']).max():.2f})")
PY
done
cp .gpu/check/bf16_generator.ckpt "$OUT/" 2>/dev/null
tar czf "$OUT/logs.tgz" --exclude='*.ckpt' .gpu/check .gpu/out_* .gpu/*.txt 2>/dev/null
ls -la "$OUT"
