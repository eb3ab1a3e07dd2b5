#!/usr/bin/env bash
# GPU check, under 5 minutes on a CUDA machine; installs nothing.
#
#   bash bench/gpu_check.sh                      # print only
#   bash bench/gpu_check.sh --write              # also record the section "gpu_check" in docs/benchmarks.md
#   bash bench/gpu_check.sh --quality 5m,30m     # then charlstm against the tuned transformer on the GPU
#
# 1. what the machine has: nvidia-smi -L, torch's CUDA build and devices;
# 2. the CUDA-marked tests: pytest -m gpu (exit code 5, "no tests collected", is not a failure);
# 3. bench/train_throughput.py on CUDA in fp32, and in bf16 where the GPU has it; prints the tables;
# 4. with --quality BUDGETS: bench/vs_transformer.py --device cuda at each budget on Origin of Species
#    and War and Peace (two runs per corpus and budget: 5m takes ~25 minutes, 30m ~2.2 hours;
#    with --write each is recorded as its own section).
# Needs a CUDA build of torch in .venv (or python3 when there is no .venv): see the README.
set -euo pipefail
cd "$(dirname "$0")/.."

write=0
quality=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --write) write=1 ;;
        --quality) quality="${2:?--quality needs budgets, e.g. 5m,30m}"; shift ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== machine"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L | tee "$tmp/gpus.txt"
else
    echo "nvidia-smi: not found" | tee "$tmp/gpus.txt"
fi
# Exits non-zero, with the reason, when torch cannot use a GPU: nothing below would mean anything.
"$py" - <<'EOF' | tee "$tmp/torch.txt"
import sys

import torch

print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if torch.version.cuda is None:
    sys.exit("gpu_check: this torch is a CPU build; install the CUDA build for your driver (README)")
if not torch.cuda.is_available():
    sys.exit("gpu_check: torch is a CUDA build but sees no GPU (driver, CUDA_VISIBLE_DEVICES?)")
for i in range(torch.cuda.device_count()):
    props = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {props.name}, compute capability {props.major}.{props.minor}, "
          f"{props.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
EOF

echo "== CUDA-marked tests"
set +e
timeout 150 "$py" -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tee "$tmp/pytest.txt"
tests_rc=${PIPESTATUS[0]}
set -e
if [[ $tests_rc -eq 5 ]]; then
    echo "(no CUDA-marked tests collected)"
elif [[ $tests_rc -ne 0 ]]; then
    echo "gpu_check: the CUDA-marked tests failed (exit $tests_rc)" >&2
    exit 1
fi

precisions=(fp32)
if grep -q "bf16 True" "$tmp/torch.txt"; then precisions+=(bf16); fi
for precision in "${precisions[@]}"; do
    echo "== training throughput on CUDA, $precision"
    timeout 60 "$py" bench/train_throughput.py --device cuda --precision "$precision" --rounds 3 --steps 20 \
        --warmup 3 --matmul-size 8192 --markdown-out "$tmp/throughput-$precision.md" --no-write
done

echo
echo "== tables"
for precision in "${precisions[@]}"; do cat "$tmp/throughput-$precision.md"; echo; done

if [[ $write -eq 1 ]]; then
    {
        echo "## GPU check (\`bench/gpu_check.sh\`)"
        echo
        sed 's/^/- /' "$tmp/gpus.txt" "$tmp/torch.txt"
        echo "- \`pytest -m gpu\`: $(tail -n 1 "$tmp/pytest.txt")"
        for precision in "${precisions[@]}"; do
            echo
            sed 's/^## /### /' "$tmp/throughput-$precision.md"  # a sub-section of this one
        done
    } >"$tmp/section.md"
    "$py" - "$tmp/section.md" <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, "bench")
import _report

print(f"wrote {_report.write_section('gpu_check', Path(sys.argv[1]).read_text(encoding='utf-8'))}")
EOF
fi

if [[ -n "$quality" ]]; then
    IFS=, read -r -a budgets <<<"$quality"
    for budget in "${budgets[@]}"; do
        echo "== charlstm against the tuned transformer on CUDA, $budget per run"
        "$py" bench/vs_transformer.py --device cuda --budget "$budget" --corpus species,war_and_peace \
            --interval 3m $([[ $write -eq 1 ]] || echo --no-write)
    done
fi
