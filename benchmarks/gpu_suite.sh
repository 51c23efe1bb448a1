#!/usr/bin/env bash
# Every GPU measurement of agentq in at most 8 minutes, printed as one table.
#
#   benchmarks/gpu_suite.sh [extra gpu_suite.py options, e.g. --skip large]
#
# Scoring (prefix-shared vs naive vs naive batched, at SmolLM2-135M and at the largest local
# checkpoint that fits), the prefix cache (episodes cached vs uncached, server step rate), and
# server batching against batch size 1. See benchmarks/gpu_suite.py for what each row means.
#
# On a machine without the network, the hub or an HF cache (the lent GPU machine: torch and
# transformers only), run it offline: models get random weights from configs (SmolLM2-135M's
# architecture and --large-config, default Llama-3.2-1B's; timings do not depend on weight
# values) and the cache episodes are synthetic:
#
#   benchmarks/gpu_suite.sh --offline [--large-config llama-3.2-3b]
#
# agentq need not be installed there (gpu_suite.py imports it from this checkout). It needs
# torch, transformers, tokenizers and peft. The server rows (the cache section's server line
# and the server section) also need fastapi, starlette, pydantic, uvicorn and httpx; where
# they are missing those rows read "skipped: missing ...". To measure them there, carry the
# wheels (the device README's `pip download --no-deps --only-binary=:all: --python-version 3.12
# --platform manylinux_2_17_x86_64 ...` recipe into .whl/, then `pip install --no-index
# --no-deps --target /tmp/site .whl/*.whl` and PYTHONPATH=/tmp/site), as pinned in the dev
# environment: fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.4 pydantic-core==2.50.5
# (compiled: the manylinux cp312 wheel) annotated-types==0.8.0 typing-inspection==0.4.5
# annotated-doc==0.0.7 opentelemetry-api==1.45.3 (fastapi 0.165 requires the last two)
# uvicorn==0.55.0, and typing-extensions>=4.16 if the image's is older (h11, click, httpx and
# anyio are in that image already). A few MiB in all, well inside the 64 MiB carry limit.
# The online cache section's real WebShop and tool-use episodes would add bm25s and rapidfuzz
# (compiled) and the smollm2 checkpoint; --offline does without them.
#
# benchmarks/gpu_suite.py --quick runs every section at tiny sizes on the CPU (a smoke test).
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
