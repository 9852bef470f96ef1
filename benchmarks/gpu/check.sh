# GPU check: run on a CUDA machine after benchmarks/gpu/prepare.sh (paths from the repo root).
# Extraction agreement with the CPU and throughput, then every training path on the GPU.
# ONLY=REGEX runs only the steps whose name matches (e.g. ONLY='softmax|pairs').
set -u
export PYTHONUNBUFFERED=1 DEEPHASH_PROGRESS=0 DEEPHASH_CACHE=/tmp/dhcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision, timm, faiss; print(torch.__version__, torchvision.__version__, timm.__version__, faiss.__version__, torch.cuda.is_available())"
dh() { python3 -c "import sys; from deephash.cli import main; sys.exit(main(sys.argv[1:]))" "$@"; }
D=.gpu/cifar-mini; R=/tmp/runs; C="--data-dir $D --device ${DEV:-cuda} --num-workers 8 --tsne-points 0 ${EXTRA:-}"
step() { local name=$1; shift; [[ -n "${ONLY:-}" && ! $name =~ $ONLY ]] && return; local t=$(date +%s.%N); "$@" > $R-$name.log 2>&1; local rc=$?; echo "$name rc=$rc $(python3 -c "print(round($(date +%s.%N)-$t,1))") s"; tail -n 3 $R-$name.log; }
mkdir -p $R
[ "${DEV:-cuda}" = cuda ] && [ -z "${ONLY:-}" ] && timeout 150 python3 benchmarks/gpu/compare.py 2>&1 | tail -n 25
step baseline dh baseline $C --out $R/baseline
step train-frozen dh train $C --out $R/frozen --epochs 5 --batch-classes 10 --batch-samples 8
step train-finetune dh train $C --out $R/finetune --mode finetune --epochs 3 --batch-classes 10 --batch-samples 8
step train-softmax dh train $C --out $R/softmax --loss softmax --epochs 5 --batch-classes 10 --batch-samples 8
step train-softmax-finetune dh train $C --out $R/softmaxft --mode finetune --loss softmax --epochs 2 --batch-classes 10 --batch-samples 8
step train-hard-pairs dh train $C --out $R/pairs --loss contrastive --miner hard-pairs --margin 1.5 --epochs 5 --batch-classes 10 --batch-samples 8
step train-offline-pairs dh train $C --out $R/opairs --loss contrastive --miner offline-pairs --margin 1.5 --epochs 3 --batch-classes 10 --batch-samples 8
step hash-dtsh dh hash $C --out $R/hash --bits 16 48 --epochs 5 --batch-classes 10 --batch-samples 8
step hash-zhuang dh hash $C --out $R/zhuang --method zhuang --bits 32 --epochs 2 --batch-classes 10 --batch-samples 8
step hash-finetune-tta dh hash $C --out $R/hashft --mode finetune --bits 48 --epochs 2 --batch-classes 10 --batch-samples 8 --test-time-flip
step index dh index --checkpoint $R/hash/bits-48/best.pt --data-dir $D --out $R/index --index BFlat --device ${DEV:-cuda}
step search dh search $D/test/cat/$(ls $D/test/cat | head -n 1) --index $R/index -k 5
python3 - <<'PY'
import json, glob, os
rows = {}
for f in sorted(glob.glob("/tmp/runs/**/metrics.json", recursive=True)):
    m = json.load(open(f)); rows[f] = {k: m.get(k) for k in ("map@all", "knn_acc@1", "knn_acc@10", "prec@r2", "triplet_acc", "pair_auc", "classifier_acc", "best_epoch", "frozen_val_map@all", "code_distinct", "code_bit_entropy")}
for f in sorted(glob.glob("/tmp/runs/**/run.json", recursive=True)):
    rows[f] = json.load(open(f))
json.dump(rows, open(os.path.join(os.environ["OUT"], "runs.json"), "w"), indent=1)
print(json.dumps({k: v for k, v in rows.items() if "metrics" in k}, indent=0))
PY
cat $R-*.log > $OUT/logs.txt
grep -h "epoch .*/" $R-*finetune*.log | tail -n 6
