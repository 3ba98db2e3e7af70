#!/usr/bin/env bash
# Device check, on a machine the workplace's `device` tool lends (bundle: scripts/device_check/prepare.sh):
#   1. the tests marked `cuda` (tests/test_devices.py), with the device image's torch/transformers/peft;
#   2. bench/engine_device.py on a random model of the default base model's shape: 64 briefs in batches of 128
#      rows (the engine's default), then 256 briefs in one batch of 512.
# Each step runs whatever the one before it did; logs and JSON go to $OUT (default /tmp/devcheck-out).
# Locally (a dry run on the CPU): SITE=0 MARK="not cuda" BRIEFS=2 TOKENS=8 BIG_BRIEFS=2 PY=.venv/bin/python
#   COPYDESK_DEVICE=cpu scripts/device_check/run.sh
set -u
cd "$(dirname "$0")/../.."
HERE=scripts/device_check
OUT=${OUT:-/tmp/devcheck-out}; mkdir -p "$OUT"
MARK=${MARK:-cuda}; BRIEFS=${BRIEFS:-64}; TOKENS=${TOKENS:-256}; BIG_BRIEFS=${BIG_BRIEFS:-256}; PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
lscpu | grep -E "Model name" | tee -a "$OUT/gpu.txt"
D=/tmp/dc; mkdir -p $D
tar -C $D -xJf .devcheck/site.tar.xz && tar -C $D -xJf .devcheck/files.tar.xz
SITE_PATH=$D/site:; [ "${SITE:-1}" = 1 ] || SITE_PATH=
export PYTHONPATH=$SITE_PATH$PWD/$HERE:$PWD/$HERE/stubs:$PWD
export DEVCHECK_MINILM=$D/minilm-random DEVCHECK_TOKENIZER=$D/smollm2-tokenizer
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
$PY -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/gpu.txt"
$PY $HERE/make_minilm.py $D/minilm $D/minilm-random > "$OUT/setup.log" 2>&1
echo "== tests"; date +%T
timeout 300 $PY -m pytest -p devcheck_plugin tests/test_devices.py -m "$MARK" -v -rA -p no:cacheprovider > "$OUT/pytest.log" 2>&1
echo "pytest rc $?"; tail -25 "$OUT/pytest.log"
echo "== bench"; date +%T
$PY $HERE/make_random_model.py $D/rand135m $D/styles $D/smollm2-tokenizer >> "$OUT/setup.log" 2>&1 || tail "$OUT/setup.log"
export COPYDESK_MODEL=$D/rand135m COPYDESK_STYLES_DIR=$D/styles COPYDESK_HOME=$D/home
timeout 200 $PY bench/engine_device.py --briefs "$BRIEFS" --new-tokens "$TOKENS" --naive-briefs 2 --repeats 3 \
    --json "$OUT/bench_default.json" > "$OUT/bench_default.log" 2>&1
echo "bench rc $?"; tail -32 "$OUT/bench_default.log"
date +%T
timeout 150 $PY bench/engine_device.py --briefs "$BIG_BRIEFS" --new-tokens "$TOKENS" --naive-briefs 1 \
    --batch-size $((BIG_BRIEFS * 2)) --repeats 1 --json "$OUT/bench_big.json" > "$OUT/bench_big.log" 2>&1
echo "bench big rc $?"; tail -32 "$OUT/bench_big.log"
date +%T
