# QuantZoo developer entry points. `make demo` and `make test` each install what they need on a fresh
# Debian machine (apt packages, Go-built control plane cached under ~/.cache/quantzoo, a .venv).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
APT_PACKAGES := prometheus jq openssl curl redis-server git
PYTEST_ARGS ?=
SCALE_N ?= 10 100 300

.PHONY: help
help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: system-deps
system-deps: ## Debian packages: promtool (prometheus), jq, openssl, curl, redis-server and git (for Argo CD)
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v git >/dev/null || missing="$$missing git"; \
	for p in jq openssl curl; do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

.PHONY: argocd
argocd: ## build (once, cached by version) Argo CD v2.14.21 and hack/argocd-lua (its health-check Lua) from Go modules
	@bash hack/build-argocd.sh >/dev/null

.PHONY: control-plane
control-plane: ## build (once, cached by version) kube-apiserver, etcd, controller-manager, scheduler, kwok, kubectl, helm
	@bash hack/build-control-plane.sh >/dev/null

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $@

.PHONY: venv
venv: $(STAMP) ## Python virtualenv with the project and its test dependencies

.PHONY: setup
setup: system-deps control-plane argocd venv

.PHONY: lint
lint: venv ## ruff (lint + format) and bandit
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bandit -q --severity-level medium -c pyproject.toml -r api operator/quantzoo_operator engine/quantzoo_engine safety/quantzoo_safety

.PHONY: test
test: setup lint ## the whole suite: unit, real control plane, real helm/promtool/Lua, end-to-end
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: fuzz
fuzz: venv ## long schemathesis run against the engine and safety APIs (FUZZ_EXAMPLES per operation, default 1000)
	QUANTZOO_FUZZ_MAX_EXAMPLES=$(or $(FUZZ_EXAMPLES),1000) $(VENV)/bin/pytest tests/fuzz --timeout=0 $(PYTEST_ARGS)

.PHONY: demo
demo: setup ## local end-to-end demo: control plane, chart, operator, engine, kill switch (KEEP=1 keeps it up)
	$(PY) -m hack.demo $(if $(KEEP),--keep,)

.PHONY: demo-down
demo-down: ## stop a demo left running with KEEP=1
	$(PY) -m hack.demo --down

.PHONY: bench
bench: setup ## benchmarks; figures in bench/results/*.json
	$(PY) -m bench.engine_bench
	$(PY) -m bench.kill_switch_bench
	$(PY) -m bench.scale_bench --n "$(SCALE_N)"

.PHONY: bench-scale
bench-scale: setup ## scale and cost: N TradingSystems (SCALE_N="10 100 300"); bench/results/scale.json
	$(PY) -m bench.scale_bench --n "$(SCALE_N)"

.PHONY: cluster-up
cluster-up: control-plane venv ## start the local control plane in the background; prints `export KUBECONFIG=...`
	@$(PY) -m hack.devcluster.controlplane up --dir .cluster

.PHONY: cluster-down
cluster-down: ## stop the local control plane
	@$(PY) -m hack.devcluster.controlplane down --dir .cluster

.PHONY: clean
clean: cluster-down
	rm -rf .cluster .pytest_cache .ruff_cache
