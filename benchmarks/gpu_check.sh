#!/usr/bin/env bash
# The GPU path proven and measured in one command (at most 8 minutes on one H100), one table at the end.
#
#   bash benchmarks/gpu_check.sh --prepare    # on a machine with network: the wheels the GPU image lacks
#   bash benchmarks/gpu_check.sh              # on the GPU machine (no network): install offline, then check
#   bash benchmarks/gpu_check.sh --dry-run    # the same steps on the CPU at a tiny size (CI runs this)
#   bash benchmarks/gpu_check.sh --quality    # also: iwae_paper_1layer for 5 minutes, then IW-NLL k=5000
#
# Options: --out DIR (default outputs/gpu-check-<time>; table.txt, table.tsv and every log go there),
#          --wheels DIR (default benchmarks/wheels, git-ignored).
# Parts, each timed and each one row PASS/FAIL with its figure: 1 environment; 2 pytest over the CUDA-only
# tests (no -x: every failure is listed); 3 throughput, CUDA graph on vs off (default MLP <= 0.2 s/epoch,
# conv <= 0.4, iwae_paper_1layer <= 0.5, a hierarchical model, MLP in bf16); 4 CPU->CUDA resume and back;
# 5 a joblib sweep of 4 jobs on the one GPU vs one run alone; 6 (--quality) the IW-NLL after 5 GPU-minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=benchmarks/wheels
OUT=""
DRY=""
QUALITY=""
PREPARE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) PREPARE=1 ;;
    --dry-run) DRY=--dry-run ;;
    --quality) QUALITY=1 ;;
    --out) OUT=$2; shift ;;
    --wheels) WHEELS=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# Beyond an image with torch, torchvision, tensorboard, tqdm, numpy and pytest: what vae-cli and its tests need.
NEEDS=("hydra-core>=1.3,<1.4" "omegaconf>=2.3,<2.4" antlr4-python3-runtime==4.9.3 PyYAML packaging
       "hydra-joblib-launcher>=1.2,<1.3" joblib setuptools wheel)

prepare() {  # pure-Python wheels once; PyYAML's compiled ones for each Python a GPU image may have
  mkdir -p "$WHEELS"
  $PY -m pip wheel --quiet --wheel-dir "$WHEELS" "${NEEDS[@]}" || return 1
  for v in 3.9 3.10 3.11 3.12 3.13; do
    $PY -m pip download --quiet --dest "$WHEELS" --only-binary=:all: --no-deps --python-version "$v" \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 PyYAML google-crc32c || return 1
  done
  # proof that the folder alone installs everything: a throw-away target, no index
  local probe; probe=$(mktemp -d)
  $PY -m pip install --quiet --no-index --find-links "$WHEELS" --target "$probe" hydra-core hydra-joblib-launcher \
    && rm -rf "$probe" && ls "$WHEELS"
}

install_offline() {  # what is missing, from $WHEELS alone; then this checkout, editable, without dependencies
  if ! $PY -c "import hydra, omegaconf, hydra_plugins.hydra_joblib_launcher" 2>/dev/null; then
    [ -d "$WHEELS" ] || { echo "no $WHEELS: run bash benchmarks/gpu_check.sh --prepare where there is network"; return 1; }
    $PY -m pip install --quiet --no-index --find-links "$WHEELS" hydra-core omegaconf hydra-joblib-launcher \
      || $PY -m pip install --quiet --break-system-packages --no-index --find-links "$WHEELS" hydra-core omegaconf \
           hydra-joblib-launcher || return 1
    $PY -m pip install --quiet --no-index --find-links "$WHEELS" google-crc32c \
      || $PY -m pip install --quiet --break-system-packages --no-index --find-links "$WHEELS" google-crc32c \
      || echo "google-crc32c: no wheel for this Python (optional: vae-compare reads TensorBoard files more slowly)"
  fi
  if ! $PY -c "import vae_cli, sys; sys.exit(not vae_cli.__file__.startswith('$PWD'))" 2>/dev/null; then
    $PY -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps -e . \
      || $PY -m pip install --quiet --break-system-packages --no-index --find-links "$WHEELS" --no-deps -e . || return 1
  fi
}

if [ -n "$PREPARE" ]; then
  prepare || { echo "gpu_check.sh --prepare failed" >&2; exit 1; }
  exit 0
fi

OUT=${OUT:-outputs/gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
: > "$OUT/table.tsv"
export VAE_DATA_DIR=${VAE_DATA_DIR:-$OUT/data} HYDRA_FULL_ERROR=1
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$OUT/table.tsv"; }

# part: name, time limit (s), command; a part that dies or runs out of time is a FAIL row (the next one runs)
LIMIT_SCALE=1  # a dry run has no 8-minute budget, and a shared CPU is slow: its limits are 4x
[ -n "$DRY" ] && LIMIT_SCALE=4
part() {
  local name=$1 limit=$(($2 * LIMIT_SCALE)); shift 2
  local start=$SECONDS
  echo "== $name (at most $limit s)"
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 3 "$OUT/$name.log"
  if ! grep -q "^$name	" "$OUT/table.tsv"; then
    row "$name" FAIL "exit $rc$([ $rc = 124 ] && echo ": over the $limit s limit"); see $name.log" $((SECONDS - start))
  fi
}

begin=$SECONDS
step=$SECONDS
if install_offline > "$OUT/install.log" 2>&1; then
  row install PASS "hydra-core, omegaconf, joblib launcher, vae-cli (editable) importable" $((SECONDS - step))
else
  row install FAIL "see install.log: $(tail -n 1 "$OUT/install.log")" $((SECONDS - step))
fi
part env 30 $PY benchmarks/gpu_check.py env --out "$OUT" $DRY

step=$SECONDS
TESTS=(tests/test_cuda_graph.py "tests/test_resume.py::test_the_batch_order_state_is_device_independent")
timeout -k 10 $((150 * LIMIT_SCALE)) $PY -m pytest -q -p no:cacheprovider -rfEs "${TESTS[@]}" > "$OUT/pytest.log" 2>&1
rc=$?
summary=$(tail -n 1 "$OUT/pytest.log" | tr -d '=')
if [ $rc = 0 ] && { [ -n "$DRY" ] || ! grep -q skipped <<< "$summary"; }; then status=PASS; else status=FAIL; fi
row pytest $status "$summary (exit $rc; failures listed in pytest.log)" $((SECONDS - step))
tail -n 1 "$OUT/pytest.log"

part throughput 130 $PY benchmarks/gpu_check.py throughput --out "$OUT" $DRY
part resume 70 $PY benchmarks/gpu_check.py resume --out "$OUT" $DRY
part sweep 90 $PY benchmarks/gpu_check.py sweep --out "$OUT" $DRY
[ -n "$QUALITY" ] && part quality 420 $PY benchmarks/gpu_check.py quality --out "$OUT" $DRY

row total "$(awk -F'\t' '$2 == "FAIL" {n++} END {print n ? "FAIL" : "PASS"}' "$OUT/table.tsv")" \
  "the whole check; output in $OUT" $((SECONDS - begin))
echo
$PY benchmarks/gpu_check.py table --out "$OUT"
