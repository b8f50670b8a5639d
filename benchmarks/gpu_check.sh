#!/usr/bin/env bash
# GPU check for autolr: the CUDA-marked tests and the overhead benchmark on CUDA, everything saved in OUTDIR.
#
#   bash benchmarks/gpu_check.sh OUTDIR
#
# Run from anywhere inside a copy of the repository on a machine with an NVIDIA GPU. It installs only what is
# missing: torch with CUDA and the test dependencies when `import torch` fails or sees no GPU, otherwise just the
# missing modules (and autolr itself, editable, without dependencies, when it cannot be imported). Budget: about
# 8 minutes (tests <= 4 min, benchmark <= 5 min, both under `timeout`).
#
# OUTDIR receives: summary.txt, nvidia-smi.txt, environment.txt, install.log, pytest.log, overhead.md,
# overhead.json, overhead.log. The exit status is 0 only when every step passed; any failure is named in
# summary.txt and on stderr, and the script goes on with the other steps.
set -u -o pipefail

if [ $# -ne 1 ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUTDIR" >&2
    exit 2
fi
OUTDIR=$1
mkdir -p "$OUTDIR" || { echo "gpu_check: cannot create $OUTDIR" >&2; exit 2; }
OUTDIR=$(cd "$OUTDIR" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
# The lent GPU machines have `python3` (with CUDA PyTorch, scipy, pytest, hypothesis, tqdm) and no network.
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif command -v python3 > /dev/null 2>&1; then PY=python3; else PY=python; fi
SUMMARY="$OUTDIR/summary.txt"
: > "$SUMMARY"
FAILED=()

log() { echo "[gpu_check] $*" | tee -a "$SUMMARY" >&2; }
fail() { FAILED+=("$1"); log "FAILED: $1"; }

log "repository: $ROOT"
log "output: $OUTDIR"
log "started: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"

# -- the machine ----------------------------------------------------------------------------------------------
if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi > "$OUTDIR/nvidia-smi.txt" 2>&1 || fail "nvidia-smi returned an error (see nvidia-smi.txt)"
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv >> "$OUTDIR/nvidia-smi.txt" 2>&1
else
    echo "nvidia-smi not found" > "$OUTDIR/nvidia-smi.txt"
    fail "nvidia-smi not found"
fi

# -- dependencies: install only what is missing ---------------------------------------------------------------
INSTALL_LOG="$OUTDIR/install.log"
: > "$INSTALL_LOG"
pip_install() {
    log "pip install $*"
    "$PY" -m pip install -q "$@" >> "$INSTALL_LOG" 2>&1
}
if ! "$PY" -c "import torch; assert torch.cuda.is_available()" >> "$INSTALL_LOG" 2>&1; then
    log "torch is missing or sees no GPU: installing torch and the test dependencies"
    pip_install torch numpy scipy tqdm wandb pytest hypothesis || fail "pip install torch and dependencies"
    pip_install --no-deps -e . || fail "pip install -e . --no-deps"
else
    missing=()
    for module in numpy scipy tqdm pytest hypothesis; do  # wandb is optional: its tests skip without it
        "$PY" -c "import $module" > /dev/null 2>&1 || missing+=("$module")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        pip_install "${missing[@]}" || fail "pip install ${missing[*]}"
    fi
    if ! PYTHONPATH="$ROOT" "$PY" -c "import autolr" > /dev/null 2>&1; then
        pip_install --no-deps --no-build-isolation -e . || pip_install --no-deps -e . \
            || fail "pip install -e . --no-deps"
    fi
fi
# the working tree comes first, installed or not
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - > "$OUTDIR/environment.txt" 2>&1 << 'EOF'
import platform, sys
import torch
print("python", sys.version.replace("\n", " "))
print("platform", platform.platform())
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("cuda available", torch.cuda.is_available(), "devices", torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    free, total = torch.cuda.mem_get_info(i)
    print(f"device {i}: {p.name}, {p.total_memory / 2**30:.1f} GiB, free {free / 2**30:.1f} GiB, cc {p.major}.{p.minor}")
import autolr
print("autolr", getattr(autolr, "__version__", "?"), autolr.__file__)
EOF
if [ $? -ne 0 ]; then
    fail "environment check (see environment.txt)"
fi
cat "$OUTDIR/environment.txt" >&2
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" > /dev/null 2>&1; then
    fail "torch.cuda.is_available() is False: the CUDA tests would all be skipped"
fi

# -- CUDA-marked tests -----------------------------------------------------------------------------------------
log "pytest -m cuda (timeout 240 s)"
timeout 240 "$PY" -m pytest -m cuda -q -rs -p no:cacheprovider --continue-on-collection-errors tests \
    2>&1 | tee "$OUTDIR/pytest.log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ]; then
    fail "pytest timed out after 240 s (see pytest.log)"
elif [ "$status" -ne 0 ]; then
    fail "pytest exited with $status (see pytest.log)"
fi
if grep -q "needs a CUDA device" "$OUTDIR/pytest.log"; then
    fail "CUDA tests were skipped for lack of a device"
fi

# -- overhead benchmark on CUDA ----------------------------------------------------------------------------------
log "benchmarks/overhead.py --device cuda (timeout 300 s)"
timeout 300 "$PY" benchmarks/overhead.py --device cuda --out "$OUTDIR/overhead.json" \
    > "$OUTDIR/overhead.md" 2> "$OUTDIR/overhead.log"
status=$?
cat "$OUTDIR/overhead.md"
if [ "$status" -eq 124 ]; then
    fail "overhead benchmark timed out after 300 s (see overhead.log)"
elif [ "$status" -ne 0 ]; then
    fail "overhead benchmark exited with $status (see overhead.log)"
    tail -n 30 "$OUTDIR/overhead.log" >&2
fi
if [ ! -s "$OUTDIR/overhead.json" ]; then
    fail "no overhead.json written"
fi

# -- summary ---------------------------------------------------------------------------------------------------
log "finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
if [ ${#FAILED[@]} -gt 0 ]; then
    log "${#FAILED[@]} step(s) failed:"
    for f in "${FAILED[@]}"; do log "  - $f"; done
    exit 1
fi
log "all steps passed"
exit 0
