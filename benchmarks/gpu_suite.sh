#!/usr/bin/env bash
# Every GPU measurement of agentq in at most 8 minutes, printed as one table.
#
#   benchmarks/gpu_suite.sh [extra gpu_suite.py options, e.g. --skip large]
#
# Scoring (prefix-shared vs naive vs naive batched, at SmolLM2-135M and at the largest local
# checkpoint that fits), the prefix cache (episodes cached vs uncached, server step rate), and
# server batching against batch size 1. See benchmarks/gpu_suite.py for what each row means.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi

if ! "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "error: no CUDA device visible to $python (gpu_suite needs a GPU)" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false
# 450 s of measurements inside a hard limit of 480 s (8 minutes), model loading included
status=0
timeout --kill-after=10 480 "$python" "$here/gpu_suite.py" --budget-s 450 "$@" || status=$?
if [[ $status -ne 0 ]]; then
  echo "error: gpu_suite.py exited with status $status (124: over the 8-minute limit)" >&2
  exit "$status"
fi
