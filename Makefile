# make demo : install into .venv, train DQN on CartPole, evaluate it (printing where the MLflow
#             run is), export it to ONNX, evaluate the ONNX file and play an episode over HTTP
# make test : install into .venv (and Debian's chromium, for the watch page's browser test, when
#             it is missing and apt-get can install it) and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_RUN := cartpole-demo-$(shell date +%Y%m%d-%H%M%S)

.PHONY: install browser demo test clean format

# constraints.txt pins torch to a release whose CPU wheel the development machines keep on
# disk; anywhere else pip fetches the same release from PyPI as usual.
$(BIN)/qagent: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $@

install: $(BIN)/qagent

demo: install
	$(BIN)/qagent train --config cartpole-dqn --seed 0 --run-name $(DEMO_RUN)
	$(BIN)/qagent eval runs/$(DEMO_RUN) --episodes 100
	$(BIN)/qagent export runs/$(DEMO_RUN) -o runs/$(DEMO_RUN)/policy.onnx
	$(BIN)/qagent eval runs/$(DEMO_RUN)/policy.onnx --episodes 100
	$(BIN)/python examples/serve_client.py runs/$(DEMO_RUN)/policy.onnx

# The browser test drives the system's Chromium (no browser download). Without it and without a
# way to install it, that one test is skipped with the reason printed.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "no chromium and no apt-get: the browser test will be skipped"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
		echo "installing Debian's chromium for the watch page's browser test"; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
		|| { $$SUDO apt-get update -q >/dev/null && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
		|| echo "could not install chromium: the browser test will be skipped"; fi

test: install browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs mlflow.db mlruns mlartifacts .pytest_cache .grimp_cache .import_linter_cache

format: install
	$(BIN)/python -m ruff format qagent benchmarks examples tests
	$(BIN)/python -m ruff check --fix qagent benchmarks examples tests
