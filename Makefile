# `make app` and `make test` work on a fresh clone: they create .venv, install, and run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: app test install offline-world world-study bench browser clean-world

# the project itself is installed editable (console scripts cultureclip-train, cultwin-synth, cultwin-import,
# cultureclip-eval, cultureclip-confusions, cultureclip-app); its dependencies come from requirements*.txt
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade -q pip
	$(PY) -m pip install -r requirements-dev.txt
	$(PY) -m pip install --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# Runs the demo: the paper's models when the hub is reachable or they are in the local HF cache; else
# the bundled offline twin world (built on first use). Prints which, and why (demo/app_config.py decides,
# the same function app.py uses).
app: install
	@$(PY) -m demo.app_config || test -f artifacts/world/world.json \
		|| { echo "Building the bundled offline twin world first (make offline-world)"; $(MAKE) offline-world; }
	$(PY) app.py $(ARGS)

# All tests, offline (no hub is ever contacted).
test: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

# The bundled offline twin world: synthesize, pretrain a base, fine-tune, evaluate (deterministic).
# Options go in WORLD_ARGS (e.g. WORLD_ARGS="--preset smoke"); ARGS is for the app.
offline-world: install
	HF_HUB_OFFLINE=1 $(PY) -m world.build $(WORLD_ARGS)

bench: install
	HF_HUB_OFFLINE=1 $(PY) bench/train_step.py
	HF_HUB_OFFLINE=1 $(PY) bench/train_peer.py
	HF_HUB_OFFLINE=1 $(PY) bench/eval_throughput.py
	HF_HUB_OFFLINE=1 $(PY) bench/synth_images.py
	HF_HUB_OFFLINE=1 $(PY) bench/app_latency.py
	HF_HUB_OFFLINE=1 $(PY) bench/weights_detector.py

# Debian's chromium for the real-browser app test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

clean-world:
	rm -rf artifacts/world

# The seeded ablation study on the offline twin world (configs/world/study.yaml -> artifacts/world-study/:
# results.md/csv, diffs.md/csv (paired differences; both per test domain: rendered, and shifted = world.domain), choices.json (what val chose), pareto_val.html/png,
# summary.json); reuses artifacts/world's inputs when built. STUDY_ARGS="--quick" for the smoke-world
# version (configs/world/study_quick.yaml) in minutes; STUDY_ARGS="--grid ingredients" for one grid.
world-study: install
	HF_HUB_OFFLINE=1 $(PY) -m world.study $(STUDY_ARGS)
