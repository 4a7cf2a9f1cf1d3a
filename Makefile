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
IDBIND_SIM   := $(CURDIR)/target/debug/idbind-sim
DEMO_NS      := idbind-demo

.PHONY: help build controlplane node-bin node-images venv helm image crds test test-rust test-python test-node up node down demo clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build the idbind and idbind-sim binaries (debug)
	cargo build --workspace --bins

# The Kubernetes version controlplane/go.mod pins, stamped into the binaries (without it they report
# v0.0.0-master, and a node shows that as its kubelet version).
K8S_VERSION  := $(shell sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\)$$/\1/p' controlplane/go.mod)
K8S_LDFLAGS  := -s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(word 1,$(subst ., ,$(K8S_VERSION:v%=%))) \
	-X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION:v%=%)))

# The control plane is rebuilt only when the Go module's pins change.
$(CP_STAMP): controlplane/go.mod controlplane/go.sum
	mkdir -p $(CP_BIN)
	cd controlplane && go build -trimpath -ldflags='-s -w' -o $(CP_BIN)/etcd go.etcd.io/etcd/server/v3
	cd controlplane && go build -trimpath -ldflags='$(K8S_LDFLAGS)' -o $(CP_BIN)/ \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
	cat controlplane/go.mod controlplane/go.sum | sha256sum > $@

controlplane: $(CP_STAMP) ## Build etcd, kube-apiserver, kube-controller-manager, kubectl from Go modules into .cache/

# The node's Kubernetes parts, from the same module (only `make node` and `make test-node` need them).
NODE_BIN   := $(CACHE)/node/bin
NODE_STAMP := $(NODE_BIN)/.built-from
$(NODE_STAMP): controlplane/go.mod controlplane/go.sum
	mkdir -p $(NODE_BIN)
	cd controlplane && go build -trimpath -ldflags='$(K8S_LDFLAGS)' -o $(NODE_BIN)/ \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
	cat controlplane/go.mod controlplane/go.sum | sha256sum > $@

node-bin: $(NODE_STAMP) ## Build the kubelet, kube-scheduler and kube-proxy from Go modules into .cache/node/bin

node-images: image ## Build the node's images (pause, workload; the operator's renamed) into target/node-images
	hack/node/images.sh

# Azure's official Python SDKs (azure-identity, azure-keyvault-secrets, ...), pinned: the workload the e2e
# tests and the demo run, and the SDK tests of the simulator. Reinstalled only when the pins change; the
# stamp is the one sim/tests/python/run.sh checks.
VENV       := $(CACHE)/venv
VENV_STAMP := $(VENV)/.idbind-sim-requirements
$(VENV_STAMP): sim/tests/python/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	cp $< $@

venv: $(VENV_STAMP) ## Install Azure's Python SDKs into .cache/venv (for the workload in tests and the demo)

# Helm, built from Go modules (tools/helm/go.mod pins helm.sh/helm/v3) into .cache/tools/helm, as the
# control plane is; hack/build-helm.sh rebuilds only when tools/helm/go.mod or go.sum change.
helm: ## Build Helm into .cache/tools/helm (used by tests/helm_chart.rs)
	@hack/build-helm.sh >/dev/null

image: ## Build the OCI image into target/image (layout, oci-archive, digest, SBOM), without a container engine
	hack/image/build.sh

crds: ## Regenerate crds/ (and the Helm chart's copy) from the Rust types
	cargo run --quiet --bin idbind -- crd --out-dir crds
	cp crds/idbind.dev_*.yaml charts/idbind/crds/

test: controlplane test-rust test-python ## Run every test (builds the control plane first)

test-rust: controlplane venv helm image
	IDBIND_PYTHON=$(VENV)/bin/python cargo test --workspace --no-fail-fast

test-python: build venv ## Azure's Python SDKs against the simulator
	IDBIND_SIM_BIN=$(IDBIND_SIM) bash sim/tests/python/run.sh

up: controlplane ## Start the local control plane; kubeconfig at .cache/cluster/kubeconfig
	cargo run --quiet -p idbind-testenv -- up --dir $(CLUSTER_DIR)

# A real node: root only, and it changes the machine until `make down` (CONTRIBUTING.md: "A real node").
NODE_IMAGES := target/node-images/pause.tar target/node-images/idbind.tar target/node-images/workload.tar

node: controlplane node-bin node-images ## As root: the control plane with a real node (containerd, kubelet); `make down` undoes it
	cargo run --quiet -p idbind-testenv -- node --dir $(CLUSTER_DIR) $(NODE_IMAGES)

test-node: controlplane node-bin node-images helm ## As root: the operator (image + chart) and a workload as real pods on a real node
	cargo test --features node-tests --test node

down: ## Stop the local control plane, the simulator and the operator (their logs stay)
	-@for p in $(SIM_DIR)/operator.pid $(SIM_DIR)/sim.pid; do [[ -f $$p ]] && kill $$(cat $$p) 2>/dev/null; rm -f $$p; done
	cargo run --quiet -p idbind-testenv -- down --dir $(CLUSTER_DIR)
	@# The operator's kubeconfig and the demo pod's token file hold tokens: they go; the logs stay for reading.
	rm -f $(OPERATOR_DIR)/kubeconfig $(OPERATOR_DIR)/config.json $(SIM_DIR)/payments.token
	@echo "stopped; logs kept: $(OPERATOR_DIR)/operator.log, $(SIM_DIR)/sim.log, $(CLUSTER_DIR)/logs/"

OPERATOR_DIR := $(CACHE)/operator

demo: build venv up ## Control plane + ARM simulator + operator (installed with kubectl apply -k); apply the samples and show them converge
	IDBIND=$(IDBIND) IDBIND_SIM=$(IDBIND_SIM) CACHE=$(CACHE) VENV=$(VENV) hack/demo.sh

clean: down ## Remove build outputs and caches (the control-plane build too)
	cargo clean
	rm -rf $(CACHE)

# --- Release and GitOps tooling -------------------------------------------------------------

.PHONY: release kstatus

release: ## Build the optimised idbind binary (target/release/idbind); `make image` packages it
	cargo build --release --locked --bin idbind

# kstatus (sigs.k8s.io/cli-utils), the library behind Flux's health checks, as a small CLI the
# tests feed real statuses to. Rebuilt only when its module or source changes; the binary is its
# own stamp, so deleting it also triggers a rebuild.
KSTATUS := $(CACHE)/tools/kstatus
$(KSTATUS): tools/kstatus/go.mod tools/kstatus/go.sum tools/kstatus/main.go
	mkdir -p $(@D)
	cd tools/kstatus && go build -trimpath -ldflags='-s -w' -o $@ .

kstatus: $(KSTATUS) ## Build the kstatus CLI into .cache/tools/kstatus (used by tests/gitops_health.rs)

# --- Benchmark (issue 6) ----------------------------------------------------------------------

.PHONY: bench

BENCH_VENV := $(CACHE)/bench-venv
N          ?= 100 1000 10000
BENCH_ARGS ?=

$(BENCH_VENV)/.installed: bench/requirements.txt
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	cp bench/requirements.txt $@

bench: controlplane $(BENCH_VENV)/.installed ## Benchmark the release operator against ARM's limits (N="100 1000 10000"); writes bench/REPORT.md
	@# Built apart, so the measured operator has the dependency features of the one the Dockerfile builds.
	cargo build --release --bin idbind
	cargo build --release -p idbind-sim --bin idbind-sim
	cargo build --release -p idbind-bench
	$(CURDIR)/target/release/idbind-bench --sizes "$(N)" --idbind target/release/idbind --sim target/release/idbind-sim \
		--python $(BENCH_VENV)/bin/python $(BENCH_ARGS)

# --- Chaos soak (issue 7) ---------------------------------------------------------------------

.PHONY: soak adversarial

SOAK_SECONDS  ?= 600
SOAK_BINDINGS ?= 200

SEEDS ?= 1,2,3,4,5
STEPS ?= 60

adversarial: controlplane ## Tenants and an admin acting at random against the trust model: SEEDS (1,2,3,4,5) × STEPS (60); prints the figures
	ADVERSARIAL_SEEDS=$(SEEDS) ADVERSARIAL_STEPS=$(STEPS) cargo test --test adversarial -- --nocapture

soak: controlplane ## Chaos soak: SOAK_BINDINGS (200) bindings churned for SOAK_SECONDS (600) under faults and restarts; prints the figures (SOAK_SEED=n replays)
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_BINDINGS=$(SOAK_BINDINGS) cargo test --test soak -- --nocapture --test-threads=1
