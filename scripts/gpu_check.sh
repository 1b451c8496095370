#!/usr/bin/env bash
# One prepared check for a lent GPU machine (about 9 minutes), run from anywhere:
#
#   OUT=/some/folder bash scripts/gpu_check.sh
#
# 1. makes a venv (python3.11, `pip install -e .`) unless $GPU_CHECK_VENV already
#    imports two4two, dubfiv, torch and bpy;
# 2. renders: scripts/bench_render.py --device cpu,cuda,optix --n-images 32 at 128 px,
#    128 samples (images/s per device, time split, GPU images against the CPU's)
#    -> $OUT/bench_render.txt;
# 3. trains the paper's model (config/model.toml) for $GPU_CHECK_STEPS steps on a
#    rendered dataset if data/ has one, else on a fake 128-px one
#    (dubfiv.testing.write_fake_two4two): fp32 to half way, then --resume to the end;
#    then the same with --amp. Prints samples/s and peak memory per run, checks that
#    the loss falls and that the resumed run continues where the first part stopped
#    -> $OUT/train_summary.txt (+ train_*.log, train_*.json).
# Each stage gets a share of $GPU_CHECK_BUDGET_S (training runs past it are stopped
# with SIGTERM, which the trainer answers with a checkpoint). PASS/FAIL/WARN/SKIP lines go to
# $OUT/checks.txt; the exit status is 1 if any check failed.
#
# Settings (environment):
#   OUT                       output folder (default ./gpu_check_out)
#   GPU_CHECK_DEVICE          training device, cuda or cpu (default cuda; cpu = dry run)
#   GPU_CHECK_STEPS           training steps per run (default 300)
#   GPU_CHECK_BATCH           batch size (default: the config's, 40)
#   GPU_CHECK_CONFIG          experiment TOML (default config/model.toml)
#   GPU_CHECK_RENDER_DEVICES  default cpu,cuda,optix
#   GPU_CHECK_RENDER_ARGS     default "--n-images 32 --resolution 128 --samples 128"
#   GPU_CHECK_EXPECT_GPU      1: an unavailable GPU render device fails (default: 1
#                             unless GPU_CHECK_DEVICE=cpu)
#   GPU_CHECK_VENV            default .venv
#   GPU_CHECK_BUDGET_S        default 540
#   GPU_CHECK_SKIP            "render" and/or "train"
#   GPU_CHECK_WORK            scratch folder for data and runs (default: mktemp -d)
# Dry run on a CPU machine:
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_STEPS=2 GPU_CHECK_BATCH=4 \
#   GPU_CHECK_CONFIG=config/small_model.toml \
#   GPU_CHECK_RENDER_ARGS="--n-images 2 --samples 8 --resolution 32 --processes 1" \
#   OUT=/tmp/gpu_check_out bash scripts/gpu_check.sh

set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
OUT=${OUT:-$REPO/gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEVICE=${GPU_CHECK_DEVICE:-cuda}
STEPS=${GPU_CHECK_STEPS:-300}
BATCH=${GPU_CHECK_BATCH:-0}
CONFIG=${GPU_CHECK_CONFIG:-config/model.toml}
RENDER_DEVICES=${GPU_CHECK_RENDER_DEVICES:-cpu,cuda,optix}
RENDER_ARGS=${GPU_CHECK_RENDER_ARGS:---n-images 32 --resolution 128 --samples 128}
if [[ $DEVICE == cpu ]]; then EXPECT_GPU=${GPU_CHECK_EXPECT_GPU:-0}; else EXPECT_GPU=${GPU_CHECK_EXPECT_GPU:-1}; fi
VENV=${GPU_CHECK_VENV:-.venv}
BUDGET=${GPU_CHECK_BUDGET_S:-540}
SKIP=${GPU_CHECK_SKIP:-}
WORK=${GPU_CHECK_WORK:-$(mktemp -d)}
mkdir -p "$WORK"
PY=$REPO/$VENV/bin/python
[[ $VENV == /* ]] && PY=$VENV/bin/python
: > "$OUT/checks.txt"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

left() { echo $((BUDGET - SECONDS)); }
# share K: seconds for the next of K remaining runs, keeping RESERVE seconds for later stages
share() { local k=$1 reserve=${2:-0} s; s=$(( ($(left) - reserve - 10) / k )); ((s < 30)) && s=30; echo "$s"; }
check() {  # check PASS|FAIL|SKIP text
    echo "$1 $2" | tee -a "$OUT/checks.txt"
}
stage() { echo; echo "=== $* ($(date +%T), ${SECONDS}s of ${BUDGET}s)"; }

stage "machine"
{
    date; uname -a; echo "cores: $(nproc)"; free -g | head -2
    if command -v nvidia-smi >/dev/null; then nvidia-smi -L; nvidia-smi; else echo "no nvidia-smi"; fi
} 2>&1 | tee "$OUT/env.txt"

stage "venv $VENV"
if "$PY" -c "import two4two, dubfiv, torch, bpy" 2>/dev/null; then
    echo "reusing $VENV"
else
    python3.11 -m venv "${VENV}" && timeout 300 "$(dirname "$PY")/pip" install -e . \
        > "$OUT/pip_install.txt" 2>&1
    echo "pip install exit status $? (log: pip_install.txt)"; tail -3 "$OUT/pip_install.txt"
fi
if ! "$PY" -c "import two4two, dubfiv, torch, bpy"; then
    check FAIL "venv: two4two, dubfiv, torch, bpy do not import"
    exit 1
fi
export PATH="$(dirname "$PY"):$PATH"
"$PY" - <<'EOF' | tee -a "$OUT/env.txt"
import torch
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF

# ------------------------------------------------------------------ render benchmark
if [[ $SKIP != *render* ]]; then
    stage "render benchmark: --device $RENDER_DEVICES $RENDER_ARGS"
    reserve=0; [[ $SKIP != *train* ]] && reserve=240
    # shellcheck disable=SC2086  # RENDER_ARGS are several words
    timeout -s INT -k 30 "$(share 1 $reserve)" "$PY" -u scripts/bench_render.py \
        --device "$RENDER_DEVICES" $RENDER_ARGS 2>&1 | tee "$OUT/bench_render.txt"
    rc=${PIPESTATUS[0]}
    if ((rc == 0)); then check PASS "bench_render.py finished"; else check FAIL "bench_render.py exit status $rc"; fi
    for dev in ${RENDER_DEVICES//,/ }; do
        if ! grep -Eq "^ *$dev +" "$OUT/bench_render.txt"; then
            check FAIL "render on $dev: no row (bench_render.py stopped before it?)"
        elif grep -Eq "^ *$dev +[A-Z/]+ +[0-9]+ +[0-9]+ +[0-9.]+" "$OUT/bench_render.txt"; then
            check PASS "render on $dev: $(grep -E "^ *$dev +[A-Z/]+ +[0-9]" "$OUT/bench_render.txt" | awk '{print $2", "$3" worker(s), "$5" img/s"}' | tr '\n' ';')"
        elif [[ $dev == cpu || $EXPECT_GPU == 1 ]]; then
            check FAIL "render on $dev: $(grep -E "^ *$dev .*unavailable" "$OUT/bench_render.txt" | head -1 | tr -s ' ' | sed 's/^ //')"
        else
            check SKIP "render on $dev (no GPU expected): $(grep -E "^ *$dev .*unavailable" "$OUT/bench_render.txt" | head -1 | tr -s ' ' | sed 's/^ //')"
        fi
    done
    sed -n "/^Images against the CPU's/,/^|diff|/p" "$OUT/bench_render.txt" \
        | grep -E '^ *[a-z]+ +[0-9.]+ +[0-9]+ +[0-9.]+%' | tr -s ' ' | sed 's/^ //' \
        | while read -r dev mean peak mask; do
            check INFO "$dev vs CPU images: mean |diff| $mean, max |diff| $peak (0..255), mask differs $mask"
        done
fi

# ------------------------------------------------------------------ training
write_helpers() {
cat > "$WORK/prepare.py" <<'EOF'
"""Write the short experiment TOML (and a fake dataset if data/ has no rendered one)."""
import dataclasses
import sys
from pathlib import Path

from dubfiv import config as cfg
from dubfiv.testing import write_fake_two4two

src, dst, work, steps, batch = sys.argv[1], sys.argv[2], Path(sys.argv[3]), *map(int, sys.argv[4:6])
experiment = cfg.load_experiment(src)
t = experiment.train
batch = batch or t.batch_size
size = experiment.model.image_size
root = Path(t.dataset_dir) / t.dataset
if all((root / s / "parameters.jsonl").is_file() for s in ("train", "validation")):
    dataset_dir, dataset, n_train = t.dataset_dir, t.dataset, 10**9
    print(f"dataset: rendered {root}")
else:
    dataset_dir, dataset, n_train = str(work / "data"), f"fake{size}", 1024
    write_fake_two4two(Path(dataset_dir) / dataset, {"train": n_train, "validation": 64,
                                                     "test": 16}, image_size=size)
    print(f"dataset: fake {size}-px images in {dataset_dir}/{dataset} (no rendered {root})")
samples = steps * batch
schedule = dataclasses.replace(t.optimizer.schedule, fade_in_steps=max(1, samples // 10))
train = dataclasses.replace(
    t, dataset=dataset, dataset_dir=dataset_dir, n_train_samples=samples, batch_size=batch,
    n_init_samples=min(t.n_init_samples, n_train), val_every_samples=0, n_val_samples=64,
    checkpoint_every_samples=0, sample_every_samples=0, logger="none",
    optimizer=dataclasses.replace(t.optimizer, schedule=schedule))
experiment = dataclasses.replace(experiment, train=train, marker="gpu_check")
cfg.validate(experiment)
cfg.save_experiment(experiment, dst)
print(f"experiment: {src} with {steps} steps of batch {batch}, warm-up "
      f"{schedule.fade_in_steps} samples, validation on 64 images at the end -> {dst}")
EOF
cat > "$WORK/probe.py" <<'EOF'
"""Run dubfiv_train in this process; record step times and peak memory to a JSON file."""
import json
import resource
import sys
import time

import torch

from dubfiv.cli import train as cli
from dubfiv.train import trainer as trainer_module

label, result, *argv = sys.argv[1:]
stamps: list = []
after_step = trainer_module.Trainer._after_step


def timed_after_step(self, stats, bar):  # the step's loss is read back (synchronised) here
    after_step(self, stats, bar)
    stamps.append((self.step, time.perf_counter(), self.config.train.batch_size))


trainer_module.Trainer._after_step = timed_after_step
start = time.perf_counter()
try:
    rc = cli.main(argv)
except SystemExit as exit_:
    rc = exit_.code if isinstance(exit_.code, int) else 1
record = {"label": label, "argv": argv, "rc": rc, "wall_s": time.perf_counter() - start,
          "steps": [s for s, _, _ in stamps], "times": [t for _, t, _ in stamps],
          "batch": stamps[0][2] if stamps else 0}
if torch.cuda.is_available() and torch.cuda.is_initialized():
    record["peak"] = ("cuda max allocated", torch.cuda.max_memory_allocated() / 2**30)
    record["reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
else:
    record["peak"] = ("process max RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
with open(result, "w") as f:
    json.dump(record, f)
sys.exit(rc)
EOF
cat > "$WORK/summary.py" <<'EOF'
"""Table of the training runs and the PASS/FAIL checks (loss falls, resume continues)."""
import json
import math
import statistics
import sys
from pathlib import Path

from dubfiv.checkpoint import load_checkpoint

out, checks, n_steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
runs = {label: (json.loads((out / f"train_{label}.json").read_text())
                if (out / f"train_{label}.json").is_file() else None)
        for label in ("fp32_part1", "fp32_resume", "amp")}
lines, verdicts = [], []
lines.append(f"{'run':<12} {'rc':>4} {'steps':>11} {'samples/s':>10} {'overall':>8} "
             f"{'wall s':>7}  peak memory")
for label, r in runs.items():
    if r is None:
        lines.append(f"{label:<12} no result (killed before it finished?)")
        continue
    steps, times, batch = r["steps"], r["times"], r["batch"]
    gaps = [b - a for a, b in zip(times[3:], times[4:])]  # skip the first steps (warm-up)
    median = batch / statistics.median(gaps) if gaps else float("nan")
    overall = (batch * (len(times) - 1) / (times[-1] - times[0])) if len(times) > 1 else float("nan")
    span = f"{steps[0]}..{steps[-1]}" if steps else "-"
    lines.append(f"{label:<12} {r['rc']:>4} {span:>11} {median:>10.2f} {overall:>8.2f} "
                 f"{r['wall_s']:>7.1f}  {r['peak'][0]} {r['peak'][1]:.2f} GiB")
lines.append("samples/s: batch / median step time (steps 4+); overall: over all timed steps "
             "(with checkpoints and validation); wall s: the whole command (start-up, init).")


def loss_falls(name: str, run_dir: Path) -> None:
    path = run_dir / "models" / "models.torch"
    if not path.is_file():
        verdicts.append(("FAIL", f"{name}: no checkpoint in {run_dir}"))
        return
    state = load_checkpoint(path)
    losses = [rec["loss"] for rec in state["history"]["train"]]
    lines.append(f"{name}: {len(losses)} loss records, step {state['step']} of {n_steps}; "
                 f"loss {' '.join(f'{x:.3f}' for x in losses[:3])} ... "
                 f"{' '.join(f'{x:.3f}' for x in losses[-3:])}")
    if not all(math.isfinite(x) for x in losses):
        verdicts.append(("FAIL", f"{name}: non-finite loss"))
    elif len(losses) < 4:
        verdicts.append(("SKIP", f"{name}: loss falls (only {len(losses)} records)"))
    else:
        q = len(losses) // 4
        first, last = statistics.mean(losses[:q]), statistics.mean(losses[-q:])
        verdicts.append(("PASS" if last < first else "FAIL",
                         f"{name}: loss falls (mean of first quarter {first:.4f}, "
                         f"last quarter {last:.4f})"))
    if state["step"] != n_steps:
        verdicts.append(("WARN", f"{name}: stopped at step {state['step']} of {n_steps} "
                                 "(time budget; lower GPU_CHECK_STEPS)"))


for name, base in (("fp32 (resumed once)", "fp32"), ("amp", "amp")):
    dirs = sorted(p for p in Path(sys.argv[4], "runs", base).glob("*") if p.is_dir())
    if dirs:
        loss_falls(name, dirs[-1])
    else:
        verdicts.append(("FAIL", f"{name}: no run directory"))
first, second = runs["fp32_part1"], runs["fp32_resume"]
if first and second and first["steps"] and second["steps"]:
    ok = second["steps"][0] == first["steps"][-1] + 1 and second["rc"] in (0, 143)
    verdicts.append(("PASS" if ok else "FAIL",
                     f"resume: part 1 ended at step {first['steps'][-1]}, the resumed run "
                     f"went on from step {second['steps'][0]} to {second['steps'][-1]} "
                     f"(exit status {second['rc']})"))
else:
    verdicts.append(("FAIL", "resume: a part of the fp32 run has no timed steps"))
for label, r in runs.items():
    if r is not None and r["rc"] == 143:
        verdicts.append(("WARN", f"{label}: stopped by SIGTERM (time budget), checkpoint kept"))
    elif r is not None and r["rc"] != 0:
        verdicts.append(("FAIL", f"{label}: dubfiv_train exit status {r['rc']}"))
print("\n".join(lines))
with checks.open("a") as f:
    for verdict, text in verdicts:
        print(f"{verdict} {text}")
        f.write(f"{verdict} {text}\n")
EOF
}

train_run() {  # train_run LABEL SECONDS dubfiv_train-args...
    local label=$1 seconds=$2; shift 2
    echo "--- $label (at most ${seconds}s): dubfiv_train $*"
    timeout -s TERM -k 60 "$seconds" "$PY" "$WORK/probe.py" "$label" "$OUT/train_$label.json" "$@"
    echo "--- $label exit status $?"
}

if [[ $SKIP != *train* ]]; then
    stage "training: $CONFIG, $STEPS steps on $DEVICE"
    write_helpers
    if ! "$PY" "$WORK/prepare.py" "$CONFIG" "$WORK/experiment.toml" "$WORK" "$STEPS" "$BATCH"; then
        check FAIL "training: preparing the experiment failed"
    else
        cp "$WORK/experiment.toml" "$OUT/train_experiment.toml"
        batch=$("$PY" -c "import sys; from dubfiv import config as c; print(c.load_experiment(sys.argv[1]).train.batch_size)" "$WORK/experiment.toml")
        half=$(( (STEPS / 2) * batch )); ((half < batch)) && half=$batch
        common=(--device "$DEVICE" --quiet)
        train_run fp32_part1 "$(share 3)" --experiment "$WORK/experiment.toml" \
            --output_base_dir "$WORK/runs/fp32" --stop_after_samples "$half" "${common[@]}"
        run_dir=$(find "$WORK/runs/fp32" -mindepth 1 -maxdepth 1 -type d | sort | tail -1)
        if [[ -n $run_dir ]]; then
            train_run fp32_resume "$(share 2)" --resume "$run_dir" "${common[@]}"
            cp "$run_dir/train.log" "$OUT/train_fp32.log" 2>/dev/null
        fi
        train_run amp "$(share 1)" --experiment "$WORK/experiment.toml" \
            --output_base_dir "$WORK/runs/amp" --amp "${common[@]}"
        amp_dir=$(find "$WORK/runs/amp" -mindepth 1 -maxdepth 1 -type d | sort | tail -1)
        [[ -n $amp_dir ]] && cp "$amp_dir/train.log" "$OUT/train_amp.log" 2>/dev/null
        stage "training summary"
        "$PY" "$WORK/summary.py" "$OUT" "$OUT/checks.txt" "$STEPS" "$WORK" | tee "$OUT/train_summary.txt"
    fi
fi

stage "checks"
cat "$OUT/checks.txt"
echo "outputs in $OUT; scratch in $WORK; ${SECONDS}s"
if grep -q '^FAIL' "$OUT/checks.txt"; then exit 1; fi
exit 0
