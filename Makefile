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

# The demo's Azure: one subscription, the identities' resource group, two RBAC vaults, and an
# app the operator signs in as (a client secret: the simulator's stand-in for workload identity).
DEMO_SUB     := 00000000-0000-0000-0000-000000000001
DEMO_APP     := 11111111-1111-1111-1111-111111111111
DEMO_SECRET  := demo-secret
# The app's object id, which its Azure roles (hack/demo-azure-rbac.yaml, README's step 3) name.
DEMO_OID     := 22222222-2222-2222-2222-222222222222

EP_JSON       = python3 -c 'import json,sys;print(json.load(open("$(SIM_DIR)/endpoint.json"))[sys.argv[1]])'
OPERATOR_DIR := $(CACHE)/operator

demo: build venv up ## Control plane + ARM simulator + operator (installed with kubectl apply -k); apply the samples and show them converge
	-@for p in $(SIM_DIR)/sim.pid $(SIM_DIR)/operator.pid; do [[ -f $$p ]] && kill $$(cat $$p) 2>/dev/null; rm -f $$p; done
	@echo "--- make demo starts afresh: a new control plane (make up) and an empty Azure simulator; a previous"
	@echo "    demo's bindings, identities and client ids are gone"
	rm -rf $(SIM_DIR) && mkdir -p $(SIM_DIR)
	@# Azure as the simulator plays it: ARM and Entra (with a Storage account, a Service Bus namespace and a
	@# container registry for the azureRoles samples), Key Vault's data plane behind a proxy that answers
	@# for Azure's host names, and Azure's propagation delays (a new federated credential is unusable for
	@# 5 s, a role assignment takes effect after 10 s; Azure's own take minutes). The operator's app holds
	@# exactly the Azure roles README's step 3 gives idbind (hack/demo-azure-rbac.yaml): the simulator
	@# authorizes every ARM request from role assignments, as Azure does.
	$(IDBIND_SIM) --state-dir $(SIM_DIR) --https-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --proxy-addr 127.0.0.1:0 \
		--resource-group $(DEMO_SUB)/rg-identities@westeurope --vault $(DEMO_SUB)/rg-shop/kv-shop@rbac \
		--vault $(DEMO_SUB)/rg-crypto/kv-crypto@rbac --vault $(DEMO_SUB)/rg-reports/kv-reports@rbac \
		--resource /subscriptions/$(DEMO_SUB)/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/shopdata@westeurope \
		--resource /subscriptions/$(DEMO_SUB)/resourceGroups/rg-data/providers/Microsoft.ServiceBus/namespaces/shop-bus@westeurope \
		--resource /subscriptions/$(DEMO_SUB)/resourceGroups/rg-platform/providers/Microsoft.ContainerRegistry/registries/shopacr@westeurope \
		--secret kv-shop/payments-db-password=correct-horse-battery-staple \
		--fic-propagation-ms 5000 --role-propagation-ms 10000 \
		--app $(DEMO_APP):$(DEMO_SECRET):$(DEMO_OID) --seed hack/demo-azure-rbac.yaml --trust-ca $(CLUSTER_DIR)/pki/ca.crt \
		> $(SIM_DIR)/sim.log 2>&1 & echo $$! > $(SIM_DIR)/sim.pid
	for i in $$(seq 1 100); do [[ -s $(SIM_DIR)/endpoint.json ]] && break; sleep 0.1; done
	@echo "--- ARM simulator:"; cat $(SIM_DIR)/endpoint.json; echo
	@echo "--- Install: kubectl apply -k config/overlays/verification (config/default: CRDs, namespace, RBAC, ConfigMap,"
	@echo "    Deployment, Service, PDB; with verification: Ready waits until the workload's token opens its vaults)"
	$(KUBECTL) apply -k config/overlays/verification
	$(KUBECTL) wait --for=condition=Established --timeout=60s crd/workloadidentitybindings.idbind.dev crd/workloadidentitypolicies.idbind.dev
	@# The demo's settings go where a real install puts them: the ConfigMap, and a Secret for the
	@# client secret (the simulator's stand-in for the operator's workload identity).
	$(KUBECTL) -n idbind-system patch configmap idbind-config --type merge -p "$$(python3 -c 'import json,sys; print(json.dumps({"data": dict(a.split("=",1) for a in sys.argv[1:])}))' \
		IDBIND_CLUSTER_NAME=demo IDBIND_OIDC_ISSUER=$$(sed -n 's/^ *server: //p' $(CLUSTER_DIR)/kubeconfig) \
		AZURE_SUBSCRIPTION_ID=$(DEMO_SUB) AZURE_TENANT_ID=$$($(EP_JSON) tenantId) AZURE_CLIENT_ID=$(DEMO_APP) \
		IDBIND_CREDENTIAL=client-secret IDBIND_RESOURCE_GROUP=rg-identities IDBIND_LOCATION=westeurope \
		IDBIND_CLOUD=custom IDBIND_ARM_ENDPOINT=$$($(EP_JSON) https) IDBIND_AUTHORITY_HOST=$$($(EP_JSON) authorityHost) \
		IDBIND_CA_FILE=$(SIM_DIR)/ca.pem IDBIND_RESYNC_SECONDS=30 IDBIND_HTTP_ADDR=127.0.0.1:$$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])') \
		IDBIND_LOG_FORMAT=text HTTPS_PROXY=$$($(EP_JSON) proxy) NO_PROXY=127.0.0.1,localhost)"
	$(KUBECTL) -n idbind-system create secret generic idbind-azure --from-literal=AZURE_CLIENT_SECRET=$(DEMO_SECRET) --dry-run=client -o yaml | $(KUBECTL) apply -f -
	@echo "--- This control plane has no kubelet, so the Deployment's pods cannot start (it would show 0/2):"
	@echo "    the demo scales it to 0 and runs the operator as its pod would (its ServiceAccount's token, its"
	@echo "    ConfigMap, leader election), with hack/operator-as-pod.sh"
	$(KUBECTL) -n idbind-system scale deployment idbind --replicas=0
	IDBIND=$(IDBIND) STATE_DIR=$(OPERATOR_DIR) hack/operator-as-pod.sh $(KUBECTL) > $(SIM_DIR)/operator.pid
	$(KUBECTL) create namespace $(DEMO_NS) --dry-run=client -o yaml | $(KUBECTL) apply -f -
	@echo "--- The Secrets Store CSI driver's SecretProviderClass CRD (the tests' copy of it: the driver itself is not"
	@echo "    installable here) and a class without clientID, for the sample binding orders-csi to fill in"
	$(KUBECTL) apply -f tests/fixtures/secretproviderclass-crd.yaml
	$(KUBECTL) wait --for=condition=Established --timeout=60s crd/secretproviderclasses.secrets-store.csi.x-k8s.io
	$(KUBECTL) apply -n $(DEMO_NS) -f hack/demo-secret-provider-class.yaml
	for sa in orders-api payments reporting reports orders-worker orders-csi; do $(KUBECTL) create serviceaccount -n $(DEMO_NS) $$sa --dry-run=client -o yaml | $(KUBECTL) apply -f -; done
	@echo "--- The samples, and the policy they need (config/samples/team-policy.yaml): a namespace binds nothing"
	@echo "    until a WorkloadIdentityPolicy selects it"
	$(KUBECTL) apply -n $(DEMO_NS) -f config/samples/
	$(KUBECTL) wait -n $(DEMO_NS) --for=condition=Ready --timeout=120s wib/orders-api wib/payments wib/reports wib/orders-worker wib/orders-csi || { tail -30 $(OPERATOR_DIR)/operator.log; exit 1; }
	@echo; echo "--- kubectl get wib (reporting brings its own identity, which no policy lists: PolicyViolation):"
	$(KUBECTL) get workloadidentitybindings.idbind.dev -n $(DEMO_NS) -o wide
	@echo; echo "--- kubectl describe wib payments:"; $(KUBECTL) describe -n $(DEMO_NS) wib payments | sed -n '/^Status:/,$$p'
	@echo; echo "--- ServiceAccount payments:"; $(KUBECTL) get sa -n $(DEMO_NS) payments -o jsonpath='{.metadata.annotations}'; echo
	@echo; echo "--- SecretProviderClass orders-kv: parameters after idbind wired it (clientID, tenantId added; the rest as written):"
	@$(KUBECTL) get secretproviderclass -n $(DEMO_NS) orders-kv -o jsonpath='{.spec.parameters}'; echo
	@echo "--- ConfigMap orders-identity (spec.export), owned by the binding:"
	@$(KUBECTL) get configmap -n $(DEMO_NS) orders-identity -o jsonpath='{.data}'; echo
	@echo; echo "--- Leader Lease:"; $(KUBECTL) get lease -n idbind-system idbind-leader -o jsonpath='{.spec.holderIdentity}'; echo
	@echo; echo "--- Azure (simulator state): identities, federated credentials, role assignments"
	@curl -s --cacert $(SIM_DIR)/ca.pem $$($(EP_JSON) https)/_sim/state | python3 -c 'import json,sys; s=json.load(sys.stdin); \
	[print("identity", i["name"], "clientId", i["clientId"], "tags", i["tags"]) or [print("  fic", f["name"], f["issuer"], f["subject"]) for f in i["federatedIdentityCredentials"].values()] for sub in s["subscriptions"].values() for g in sub["resourceGroups"].values() for i in g["identities"].values()]; \
	[print("roleAssignment", r["name"], r["roleDefinitionGuid"], r["principalType"], r["scope"]) for r in s["roleAssignments"].values()]'
	@echo; echo "--- Token exchange: a TokenRequest token for ServiceAccount payments buys an Azure token for its identity"
	@CID=$$($(KUBECTL) get sa -n $(DEMO_NS) payments -o jsonpath='{.metadata.annotations.azure\.workload\.identity/client-id}'); \
	TOKEN=$$($(KUBECTL) create token -n $(DEMO_NS) payments --audience api://AzureADTokenExchange); \
	curl -s --cacert $(SIM_DIR)/ca.pem "$$($(EP_JSON) authorityHost)$$($(EP_JSON) tenantId)/oauth2/v2.0/token" \
		-d grant_type=client_credentials -d client_id=$$CID -d scope=https://management.azure.com/.default \
		-d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer -d client_assertion=$$TOKEN \
		| python3 -c 'import json,sys; r=json.load(sys.stdin); print("token_type", r.get("token_type"), "expires_in", r.get("expires_in"), "access_token", (r.get("access_token") or "")[:24]+"...", r.get("error",""))'
	@echo; echo "--- A pod of ServiceAccount payments, as the azure-workload-identity webhook sets it up, reads its secret"
	@echo "    with Azure's SDKs unchanged (WorkloadIdentityCredential + SecretClient, tests/workload/workload.py):"
	@TOKEN_FILE=$(SIM_DIR)/payments.token; $(KUBECTL) create token -n $(DEMO_NS) payments --audience api://AzureADTokenExchange > $$TOKEN_FILE; \
	python3 -c 'import json,sys; print(json.dumps(dict(vault_url="https://kv-shop.vault.azure.net", secret="payments-db-password", \
		client_id=sys.argv[1], tenant_id=sys.argv[2], token_file=sys.argv[3])))' \
		"$$($(KUBECTL) get sa -n $(DEMO_NS) payments -o jsonpath='{.metadata.annotations.azure\.workload\.identity/client-id}')" \
		"$$($(KUBECTL) get sa -n $(DEMO_NS) payments -o jsonpath='{.metadata.annotations.azure\.workload\.identity/tenant-id}')" $$TOKEN_FILE \
		| AZURE_AUTHORITY_HOST=https://login.microsoftonline.com/ HTTPS_PROXY=$$($(EP_JSON) proxy) REQUESTS_CA_BUNDLE=$(SIM_DIR)/ca.pem \
		$(VENV)/bin/python tests/workload/workload.py
	@echo; echo "--- Metrics (http://$$($(KUBECTL) -n idbind-system get cm idbind-config -o jsonpath='{.data.IDBIND_HTTP_ADDR}')/metrics):"
	@curl -s http://$$($(KUBECTL) -n idbind-system get cm idbind-config -o jsonpath='{.data.IDBIND_HTTP_ADDR}')/metrics | grep -E '^idbind_(reconciles_total|bindings|leader|arm_requests_total)' | sort | head -24
	@echo; echo "Running: export KUBECONFIG=$(CLUSTER_DIR)/kubeconfig; operator log: $(OPERATOR_DIR)/operator.log; stop with: make down"

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
