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

# The real single node (hack/devcluster/node.py): container runtime, CNI plugins, firewall tools, image builders.
NODE_APT_PACKAGES := containerd runc containernetworking-plugins iptables ipset conntrack mmdebstrap buildah

.PHONY: node-deps
node-deps: ## Debian packages of the real node: containerd, runc, CNI plugins, iptables, ipset, mmdebstrap, buildah
	@missing=""; \
	for p in $(NODE_APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

.PHONY: node-images
node-images: node-deps control-plane ## build (once, cached by input hash) CoreDNS, kube-router, pause and the QuantZoo image
	@bash hack/build-node.sh >/dev/null
	@bash hack/build-image.sh all >/dev/null

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
setup: system-deps node-deps control-plane argocd venv

.PHONY: lint
lint: venv ## ruff (lint + format) and bandit
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bandit -q --severity-level medium -c pyproject.toml -r api operator/quantzoo_operator engine/quantzoo_engine safety/quantzoo_safety

# The node's images are built before pytest starts, never inside the first test that starts the node: on a
# cold machine that build (about 5 min) ran under that test's timeout, and the killed demo left its cluster.
.PHONY: test
test: setup node-images lint ## the whole suite: unit, real control plane, real node and pods, helm/promtool/Lua, end-to-end
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: fuzz
fuzz: venv ## long schemathesis run against the engine and safety APIs (FUZZ_EXAMPLES per operation, default 1000)
	QUANTZOO_FUZZ_MAX_EXAMPLES=$(or $(FUZZ_EXAMPLES),1000) $(VENV)/bin/pytest tests/fuzz --timeout=0 $(PYTEST_ARGS)

.PHONY: demo
demo: setup node-images ## end-to-end demo on real pods: real node, chart, operator/engine/safety pods, kill switch (KEEP=1 keeps it up)
	$(PY) -m hack.demo $(if $(KEEP),--keep,)

.PHONY: demo-down
demo-down: ## stop a demo left running with KEEP=1
	$(PY) -m hack.demo --down

.PHONY: bench
bench: setup ## benchmarks; figures in bench/results/*.json
	$(PY) -m bench.engine_bench
	$(PY) -m bench.kill_switch_bench
	$(PY) -m bench.kill_switch_bench --cpu-burner
	$(PY) -m bench.kill_switch_realpods_bench
	$(PY) -m bench.strategy_isolation_bench
	$(PY) -m bench.account_limits_bench
	$(PY) -m bench.scale_bench --n "$(SCALE_N)"

.PHONY: bench-backtest
bench-backtest: venv ## backtest speed against backtrader and NautilusTrader (installs the bench extra)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench.backtest_bench

.PHONY: bench-scale
bench-scale: setup ## scale and cost: N TradingSystems (SCALE_N="10 100 300"); bench/results/scale.json
	$(PY) -m bench.scale_bench --n "$(SCALE_N)"

.PHONY: cluster-up
cluster-up: control-plane venv ## start the local control plane in the background (REAL=1: with a real node); prints `export KUBECONFIG=...`
ifeq ($(REAL),1)
	@$(MAKE) -s node-images
	@$(PY) -m hack.devcluster.node up --dir .cluster-node
else
	@$(PY) -m hack.devcluster.controlplane up --dir .cluster
endif

.PHONY: cluster-down
cluster-down: ## stop the local control plane (and a real node started with REAL=1)
	@$(PY) -m hack.devcluster.controlplane down --dir .cluster
	@if [ -d .cluster-node ]; then $(PY) -m hack.devcluster.node down --dir .cluster-node; fi

.PHONY: clean
clean: cluster-down
	rm -rf .cluster .cluster-node .pytest_cache .ruff_cache
