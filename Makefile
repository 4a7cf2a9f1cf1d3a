# idbind — every entry point a developer or CI needs. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CACHE        := $(CURDIR)/.cache
CP_BIN       := $(CACHE)/controlplane/bin
CP_STAMP     := $(CP_BIN)/.built-from
CLUSTER_DIR  := $(CACHE)/cluster
SIM_DIR      := $(CACHE)/sim
KUBECTL      := $(CP_BIN)/kubectl --kubeconfig $(CLUSTER_DIR)/kubeconfig --cache-dir $(CLUSTER_DIR)/kubectl-cache
IDBIND       := $(CURDIR)/target/debug/idbind
DEMO_NS      := idbind-demo

.PHONY: help build controlplane crds test test-rust test-python up down demo clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build the idbind binary (debug)
	cargo build --workspace --bins

# The control plane is rebuilt only when the Go module's pins change.
$(CP_STAMP): controlplane/go.mod controlplane/go.sum
	mkdir -p $(CP_BIN)
	cd controlplane && go build -trimpath -ldflags='-s -w' -o $(CP_BIN)/etcd go.etcd.io/etcd/server/v3
	cd controlplane && go build -trimpath -ldflags='-s -w' -o $(CP_BIN)/ \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
	cat controlplane/go.mod controlplane/go.sum | sha256sum > $@

controlplane: $(CP_STAMP) ## Build etcd, kube-apiserver, kube-controller-manager, kubectl from Go modules into .cache/

crds: ## Regenerate crds/ from the Rust types
	cargo run --quiet --bin idbind -- crd > crds/idbind.dev_workloadidentitybindings.yaml

test: controlplane test-rust test-python ## Run every test (builds the control plane first)

test-rust: controlplane
	cargo test --workspace --no-fail-fast

test-python: build ## Azure's Python SDKs against the simulator
	IDBIND_BIN=$(IDBIND) bash sim/tests/python/run.sh

up: controlplane ## Start the local control plane; kubeconfig at .cache/cluster/kubeconfig
	cargo run --quiet -p idbind-testenv -- up --dir $(CLUSTER_DIR)

down: ## Stop the local control plane and the simulator
	-@if [[ -f $(SIM_DIR)/sim.pid ]]; then kill $$(cat $(SIM_DIR)/sim.pid) 2>/dev/null || true; rm -f $(SIM_DIR)/sim.pid; fi
	cargo run --quiet -p idbind-testenv -- down --dir $(CLUSTER_DIR)

demo: build up ## Control plane + ARM simulator, install the CRD, apply the samples, show them
	-@if [[ -f $(SIM_DIR)/sim.pid ]]; then kill $$(cat $(SIM_DIR)/sim.pid) 2>/dev/null || true; fi
	mkdir -p $(SIM_DIR)
	$(IDBIND) sim --state-dir $(SIM_DIR) --https-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 > $(SIM_DIR)/sim.log 2>&1 & echo $$! > $(SIM_DIR)/sim.pid
	for i in $$(seq 1 100); do [[ -s $(SIM_DIR)/endpoint.json ]] && break; sleep 0.1; done
	@echo "--- ARM simulator:"; cat $(SIM_DIR)/endpoint.json; echo
	$(KUBECTL) apply -f crds/
	$(KUBECTL) wait --for=condition=Established --timeout=60s crd/workloadidentitybindings.idbind.dev
	$(KUBECTL) create namespace $(DEMO_NS) --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) apply -n $(DEMO_NS) -f config/samples/
	$(KUBECTL) get workloadidentitybindings.idbind.dev -n $(DEMO_NS) -o wide
	@echo; echo "The operator is not built yet (issue 4): the bindings are stored, not reconciled."
	@echo "Try: export KUBECONFIG=$(CLUSTER_DIR)/kubeconfig; $(CP_BIN)/kubectl explain wib.spec"

clean: down ## Remove build outputs and caches (the control-plane build too)
	cargo clean
	rm -rf $(CACHE)
