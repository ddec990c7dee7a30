#!/usr/bin/env bash
# The GPU checks of mixed precision and `--device cuda` (about 2 minutes on an H200; experiments/gpu_session.sh
# runs it beside the other GPU jobs).
#
# Here, from the project root:   ../shared/gpu/bundle.sh          (makes .gpu/: wheels + data, git-ignored)
# On the lent machine (the `run` tool, carry [".gpu"], timeout_s 480):   bash experiments/gpu_check.sh
# Then give the machine back. See ../shared/gpu/README.md.
#
# 1. `experiment=gan trainer=gpu` (generator 300 steps, discriminator 100, adversarial 200, the embedded
#    synthetic set) in fp32, bf16 and fp16 mixed precision, the three at once, once per seed in $SEEDS; for
#    fp16 the loss scale each stage ended with (65536 halves at every step the scaler skips for an overflow,
#    doubles after 2000 clean ones). Before the fix of issue 9, bf16 ended every
#    stage with "nan dB"; now a stage that goes non-finite stops at once and the command exits 1.
#    On an H200 (2026-11-27, SEEDS="1234 1 2 3") fp32 alone spanned 9.07-11.21 dB after the generator,
#    and bf16 and fp16 averaged 0.22 and 0.37 dB behind it (standard error 0.33 dB): this short pipeline
#    shows that each precision trains and stays finite, while experiments/gpu_train.sh with INIT=null
#    compares them on the shipped recipe (README "Mixed precision").
# 2. `sepgan separate --device cuda` on a 20 s file with the shipped model: must run (it failed with "Input
#    type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor) should be the same") and match
#    `--device cpu`; then with --batch-size 4, and with the bf16-trained checkpoint of step 1.
# 3. `sepgan.evaluation.evaluate(..., device="cuda")` (what `sepgan evaluate --device cuda` calls).
#
# What comes back in $OUT: summary.txt (the lines to read, fp16's loss scales among them), each run's log
# tail, results.json and per-stage metrics (<stage>.csv) in <precision>-<seed>/, the first seed's bf16
# generator checkpoint (to score here, on CPU).
#
# A dry run without a GPU (checks the script itself):
#   DEVICE=cpu TRAINER=cpu OMP_NUM_THREADS=1 GAN_ARGS="trainer.max_steps=4 gan.steps.discriminator=4 gan.steps.adversarial=4 gan.val_check_steps=2" \
#   PYTHON=.venv/bin/python bash experiments/gpu_check.sh
set -uo pipefail
OUT=${OUT:-experiments/runs/gpu_check}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
RUN_TIMEOUT=${RUN_TIMEOUT:-240}   # seconds per training run; a run past it is reported, not waited for
TRAINER=${TRAINER:-gpu}
GAN_ARGS=${GAN_ARGS:-}            # extra overrides, e.g. for a dry run: "trainer.max_steps=4 gan.steps.adversarial=4"
SEEDS=${SEEDS:-1234}              # one round of the three precisions per seed, e.g. SEEDS="1234 1 2"
mkdir -p "$OUT" .gpu
summary="$OUT/summary.txt"
say() { echo "$*" | tee -a "$summary"; }
python3() { command "$PYTHON" "$@"; }

if [ "$DEVICE" = cuda ]; then
    # shellcheck disable=SC1091
    [[ "${PYTHONPATH:-}" == */tmp/site* ]] || source .gpu/setup.sh || { say "setup failed: run ../shared/gpu/bundle.sh here first and carry .gpu"; exit 1; }
    say "== $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader), torch $(python3 -c 'import torch; print(torch.__version__)')"
    python3 -c "import torch; print('bf16 native:', torch.cuda.is_bf16_supported(including_emulation=False))" | tee -a "$summary"
else
    export PYTHONPATH=$PWD
fi
python3 -c "from sepgan.training.distributed import mixed_precision as m; print('\${mixed_precision:} picks', m())" | tee -a "$summary"

# ---- 1. training in three precisions, side by side (small models leave the GPU mostly idle) ------------
# Each seed in $SEEDS is one round of the three precisions at once; several seeds tell a precision's gap
# from the spread between seeds.
train_in() {
    local precision=$1 seed=$2 dir=.gpu/runs/$1-$2 start
    rm -rf "$dir"
    start=$(date +%s)
    # shellcheck disable=SC2086
    timeout "$RUN_TIMEOUT" "$PYTHON" -m sepgan.train experiment=gan trainer=$TRAINER trainer.precision="$precision" seed="$seed" $GAN_ARGS \
        data.num_workers=2 trainer.enable_progress_bar=false trainer.enable_model_summary=false \
        callbacks.validation_examples.count=0 hydra.run.dir="$dir" > "$OUT/train_$precision-$seed.log" 2>&1
    echo "== gan $precision seed $seed: exit $? in $(( $(date +%s) - start )) s (124: timed out)" > "$OUT/status_$precision-$seed.txt"
}
for seed in $SEEDS; do
    [ -n "${SKIP_TRAIN:-}" ] && break
    for precision in 32-true bf16-mixed 16-mixed; do train_in $precision "$seed" & done
    wait
    for precision in 32-true bf16-mixed 16-mixed; do
        run=$precision-$seed
        [ -f "$OUT/train_$run.log" ] || continue
        cat "$OUT/status_$run.txt" | tee -a "$summary"
        grep -A8 "^stage " "$OUT/train_$run.log" | tee -a "$summary"
        grep -h "non-finite\|FAILED" "$OUT/train_$run.log" | head -3 | tee -a "$summary"
        mkdir -p "$OUT/$run"
        cp ".gpu/runs/$run/results.json" "$OUT/$run/" 2>/dev/null
        for stage in ".gpu/runs/$run"/*/csv/metrics.csv; do
            [ -f "$stage" ] && cp "$stage" "$OUT/$run/$(basename "$(dirname "$(dirname "$stage")")").csv"
        done
        tail -n 40 "$OUT/train_$run.log" > "$OUT/$run/log_tail.txt"
        rm "$OUT/train_$run.log" "$OUT/status_$run.txt"
    done
done
# fp16: the loss scale each stage's last checkpoint holds (how many steps the scaler skipped)
for seed in $SEEDS; do
    for ckpt in .gpu/runs/16-mixed-"$seed"/*/checkpoints/last.ckpt; do
        [ -f "$ckpt" ] || continue
        python3 -c "import sys, torch; s = torch.load(sys.argv[1], map_location='cpu', weights_only=False).get('MixedPrecision') or {}; print(sys.argv[1], 'loss scale', s.get('scale'))" "$ckpt"
    done
done 2>&1 | grep -v Warning | tee -a "$summary"
read -r first_seed _ <<< "$SEEDS"
bf16_ckpt=$(ls .gpu/runs/bf16-mixed-"$first_seed"/1_generator/checkpoints/best-*.ckpt 2>/dev/null | head -1)
[ -n "$bf16_ckpt" ] && cp "$bf16_ckpt" "$OUT/bf16_generator.ckpt"

# ---- 2. sepgan separate --device cuda ------------------------------------------------------------------
sepgan() { command "$PYTHON" -c "import sys; from sepgan.commands import main; sys.exit(main())" "$@"; }
python3 - <<'PY'
import numpy as np
from sepgan.audio import save_audio
from sepgan.data import synthetic
sr, seconds = 16000, 20.0
mix = synthetic.speech_like(0, 0, sr, seconds) + 0.5 * synthetic.noise("siren", 0, sr, seconds)
save_audio(".gpu/noisy.wav", np.asarray(mix, np.float32) * 0.3, sr, subtype="FLOAT")
PY
for args in "--device $DEVICE" "--device cpu" "--device $DEVICE --batch-size 4"; do
    name=$(echo "$args" | tr -d ' -')
    start=$(date +%s.%N)
    sepgan separate .gpu/noisy.wav -o ".gpu/sep_$name" --quiet --overwrite $args > "$OUT/separate_$name.log" 2>&1
    say "== separate $args: exit $? ($(tail -n 1 "$OUT/separate_$name.log"))"
done
if [ -n "$bf16_ckpt" ]; then
    sepgan separate .gpu/noisy.wav -o .gpu/sep_bf16 --quiet --overwrite --device "$DEVICE" --checkpoint "$bf16_ckpt" \
        > "$OUT/separate_bf16.log" 2>&1
    say "== separate --device cuda, bf16-trained checkpoint: exit $? ($(tail -n 1 "$OUT/separate_bf16.log"))"
fi
DEVICE=$DEVICE python3 - <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import os
import soundfile as sf, numpy as np
d = os.environ["DEVICE"]
cuda, cpu, batched = (sf.read(f".gpu/sep_{n}/noisy.wav")[0] for n in (f"device{d}", "devicecpu", f"device{d}batchsize4"))
print(f"cuda vs cpu: max |diff| {np.abs(cuda - cpu).max():.2e} (peak {np.abs(cpu).max():.2f}); "
      f"cuda batched vs cuda: {np.abs(batched - cuda).max():.2e}")
PY

# ---- 3. evaluation on the GPU ----------------------------------------------------------------------------
DEVICE=$DEVICE python3 - <<'PY' 2>&1 | tail -n 8 | tee -a "$OUT/summary.txt"
import os
from sepgan.evaluation import ConfigMixtures, evaluate
from sepgan.models import load_separator
from sepgan.pretrained import default_checkpoint
model = load_separator(default_checkpoint())
examples = ConfigMixtures([], model.frontend.sample_rate, "test", 8)
report = evaluate(examples, model, methods=("noisy", "model"), metrics=("si_sdr", "si_sdri"), progress=False,
                  device=os.environ["DEVICE"])
print(report.markdown())
print("evaluate: model on", next(model.parameters()).device)
PY
say "== done"
