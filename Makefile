# Cairn — the commands a person (and CI) runs. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/operator:$(CURDIR)

.PHONY: help setup lint test unit chaos dev-cluster dev-cluster-down demo crds dockerfiles images bench ui-screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: ## install what is missing: Debian packages, Kubernetes (built once per version), KWOK, Helm, .venv
	@bash hack/setup.sh

lint: setup ## ruff, mypy --strict, and the layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The suites side by side: TEST_WORKERS pytest-xdist workers, each with a cluster and a PostgreSQL of
# its own (harness slots); two measured fastest on the 2-core CI machine (three: 3 min slower, the
# workers then compete for the CPU). Lint runs beside the pure tests and the harness lifecycle test
# (which needs the machine to itself: no other harness), which run in two workers that start no
# cluster; its output is shown after them. PYTEST_ARGS (e.g. -m faults, -k queue) go to the cluster
# suites.
TEST_WORKERS ?= 2
LINT_LOG := .cairn/lint.log
# No cluster, no database: the domain, the CLI's rendering, the chart rendered by helm template.
PURE_TESTS := tests/unit tests/chart/test_render.py tests/chart/test_argocd.py tests/chart/test_images.py
ALONE_TESTS := tests/integration/test_harness_lifecycle.py
# The long chaos run: `make chaos`, never in CI (which runs a representative share: tests/e2e/test_faults.py).
CHAOS_TESTS := tests/chaos
test: setup ## everything CI runs: lint, then every test against real clusters and PostgreSQL
	@mkdir -p $(dir $(LINT_LOG))
	@$(MAKE) --no-print-directory lint > $(LINT_LOG) 2>&1 & lint=$$!; \
	$(PY) -m pytest -n 2 --dist loadscope --no-loadscope-reorder $(ALONE_TESTS) $(PURE_TESTS); \
	pure=$$?; wait $$lint; linted=$$?; cat $(LINT_LOG); \
	if [ $$linted -ne 0 ]; then echo "lint failed (exit $$linted)"; fi; \
	[ $$linted -eq 0 ] && [ $$pure -eq 0 ]
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder \
		$(addprefix --ignore=,$(ALONE_TESTS) $(PURE_TESTS) $(CHAOS_TESTS)) $(PYTEST_ARGS)

chaos: setup ## over 1,000 faults at every fault point, then 200 runs x 20 steps with the API restarted every 10 s (~30 min; never in CI)
	$(PY) -m pytest -p no:xdist $(CHAOS_TESTS) $(PYTEST_ARGS)

unit: setup ## the pure tests only (no cluster, no database)
	$(PY) -m pytest $(PURE_TESTS) $(PYTEST_ARGS)

dev-cluster: setup ## start a local cluster (2 real nodes) and PostgreSQL for you to use with kubectl
	$(PY) -m harness up

dev-cluster-down: ## stop it and remove everything it made
	$(PY) -m harness down

crds: ## regenerate crds/ from the pydantic models in operator/cairn/api
	$(PY) -m cairn.api.crd crds
	$(PY) -m cairn.api.crd charts/cairn/files/crds

dockerfiles: ## regenerate images/*/Dockerfile from the image recipes in harness/images.py
	$(PY) -m harness.dockerfiles

bench: setup ## the benchmarks beside their baselines (about 25 minutes; never in CI): table + bench/results/*.json
	$(PY) -m bench $(BENCH_ARGS)

ui-screenshots: setup ## the dashboard's browser tests, keeping their screenshots in docs/ui/ (about 4 minutes)
	CAIRN_UI_SCREENSHOTS=$(CURDIR)/docs/ui $(PY) -m pytest -p no:xdist tests/e2e/test_ui.py $(PYTEST_ARGS)

demo: setup ## the main job: a run killed mid-way resumes from its last completed step, on a local cluster
	$(PY) hack/demo.py
