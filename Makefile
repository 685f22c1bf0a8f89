# One venv (.venv/), created and reused by every target.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test bench browser clean gpu-check load-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when a requirements file changes.
$(VENV)/.runtime: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

# 127.0.0.1 only; RESNET_LAB_ADDRESS=0.0.0.0 make run shares it with a token (dashboard/serve.py).
run: $(VENV)/.runtime
	$(BIN)/python dashboard/serve.py --port $(PORT)

# Debian's Chromium for the browser tests; installed when missing and we are root. Without it the
# browser tests skip loudly (and fail under CI=true).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null; \
	  else echo "WARNING: /usr/bin/chromium is missing and cannot be installed here (need root + apt): browser tests will be skipped"; fi; \
	fi

test: $(VENV)/.dev browser
	$(BIN)/python -m pytest

bench: $(VENV)/.dev
	$(BIN)/python bench/train_overhead.py
	$(BIN)/python bench/allocator.py
	$(BIN)/python bench/dashboard_overhead.py
	$(BIN)/python bench/redraw_floor.py
	$(BIN)/python bench/attribution_speed.py
	$(BIN)/python bench/analysis_speed.py
	$(BIN)/python bench/default_start.py
	$(BIN)/python bench/paper_findings.py --parallel 2
	$(BIN)/python bench/why_defaults.py
	$(BIN)/python bench/dashboard_vs_cli.py --starts 3
	$(BIN)/python bench/gpu_throughput.py || true  # refuses (one line, exit 2) without CUDA

# On a machine with CUDA: the tests/gpu suite, the GPU throughput benchmark, the Fig. 6 preset at paper
# scale on a CIFAR-sized stand-in and the calibrated estimate, into gpu-report/gpu-report.txt (or $$OUT).
# Uses the machine's python3 (GPU_PYTHON=...), which already has a CUDA build of torch; see the script.
gpu-check:
	bash bench/gpu_check.sh

# 8 browser sessions against one server with a token: runs ended, hostile requests refused, peak memory,
# p95 page render time (README, "Sharing the dashboard safely"). Minutes; not part of `make test`.
load-test: $(VENV)/.dev browser
	$(BIN)/python bench/load_test.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
