#!/usr/bin/env bash
# Issues 12 (point 5) and 22 (item 4): the fully finetuned 48-bit hashing run on the
# `cifar10` protocol, sized for one 10-minute device call. METHOD picks the training: a
# method of `hash --method` (default hashnet: the methods table's best on `cifar10`
# validation, README), or `triplet` for the FaceNet recipe of issue 12. It reads CIFAR-10
# as one packed file (55 MiB, within the 64 MiB a device call carries) and writes
# metrics.json and the log under $OUT.
#
# Here, before the call:   ./run deephash pack ../shared/data/cifar10 .gpu/cifar10.pack
#                          bash benchmarks/gpu/prepare.sh      # wheels the device lacks
# On the device:           bash benchmarks/gpu/finetune_check.sh   (carry .gpu and .whl)
# On the CPU (a dry run):  DEV=cpu EPOCHS=1 PACK=small.pack EXTRA="--image-size 32 ..." bash ...
#
# Variables: METHOD (hashnet), PACK (the packed data set), DEV (cuda), EPOCHS (6),
# BUDGET_S (540: the run is stopped after this many seconds, keeping what it wrote),
# PYTHON (python3), OUT (the folder that comes back), EXTRA (more options, e.g. to shrink
# a dry run).
set -u
PACK=${PACK:-.gpu/cifar10.pack}; DEV=${DEV:-cuda}; EPOCHS=${EPOCHS:-6}; BUDGET_S=${BUDGET_S:-540}
PYTHON=${PYTHON:-python3}; OUT=${OUT:-/tmp/finetune-check}; METHOD=${METHOD:-hashnet}
if [ "$METHOD" = triplet ]; then
  TRAINING="--loss facenet --miner random-hard --train-distance cosine --margin 0.3 --regularizers quantization=0.01"
else
  TRAINING="--method $METHOD --hidden-dims 2048"
fi
export PYTHONUNBUFFERED=1 DEEPHASH_PROGRESS=0
if [ -d .whl ] && ! "$PYTHON" -c "import faiss" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
fi
mkdir -p "$OUT"
[ "$DEV" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout "$BUDGET_S" "$PYTHON" -c "import sys; from deephash.cli import main; sys.exit(main(sys.argv[1:]))" \
  hash --data-dir "$PACK" --device "$DEV" --mode finetune --bits 48 --epochs "$EPOCHS" \
  $TRAINING --test-time-flip --tsne-points 0 \
  --cache-dir "$OUT/cache" --out "$OUT/finetune-48" ${EXTRA:-} > "$OUT/log.txt" 2>&1
rc=$?
echo "finetune rc=$rc"
tail -n 5 "$OUT/log.txt"
rm -rf "$OUT/cache"  # features and exports: not worth carrying back
exit $rc
