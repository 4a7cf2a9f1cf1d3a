#!/usr/bin/env bash
# `make demo`: the local control plane (already started by `make up`), the Azure simulator and the operator
# installed as a real install would be (`kubectl apply -k config/overlays/verification`, run as its pod
# would by hack/operator-as-pod.sh); then the samples, applied and shown converging. Leaves everything
# running; `make down` stops it. Its JSON jobs are in hack/demo.py.
#
# usage: hack/demo.sh   (from `make demo`, which builds and starts what it needs first)
# env:   IDBIND, IDBIND_SIM (the binaries), CACHE (.cache: the control plane's binaries and state, the
#        simulator's and the operator's state), VENV (Azure's Python SDKs, for the workload)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
IDBIND=${IDBIND:-$root/target/debug/idbind}
IDBIND_SIM=${IDBIND_SIM:-$root/target/debug/idbind-sim}
CACHE=${CACHE:-$root/.cache}
VENV=${VENV:-$CACHE/venv}
cluster_dir=$CACHE/cluster
sim_dir=$CACHE/sim
operator_dir=$CACHE/operator
kubectl=("$CACHE/controlplane/bin/kubectl" --kubeconfig "$cluster_dir/kubeconfig" --cache-dir "$cluster_dir/kubectl-cache")
ns=idbind-demo

# The demo's Azure: one subscription, the identities' resource group, two RBAC vaults, and an app the
# operator signs in as (a client secret: the simulator's stand-in for workload identity).
sub=00000000-0000-0000-0000-000000000001
app=11111111-1111-1111-1111-111111111111
secret=demo-secret
# The app's object id, which its Azure roles (hack/demo-azure-rbac.yaml, README's step 3) name.
oid=22222222-2222-2222-2222-222222222222

# Each command is printed before it runs, as make printed the recipe's lines (kc as kubectl).
run() {
  local shown=("$@")
  [[ ${shown[0]} == kc ]] && shown[0]=kubectl
  echo "${shown[*]}"
  "$@"
}
kc() { "${kubectl[@]}" "$@"; }
endpoint() { hack/demo.py endpoint "$sim_dir/endpoint.json" "$1"; }
annotation() { kc get sa -n "$ns" payments -o jsonpath="{.metadata.annotations.azure\.workload\.identity/$1}"; }

for p in "$sim_dir/sim.pid" "$sim_dir/operator.pid"; do
  if [[ -f $p ]]; then kill "$(cat "$p")" 2>/dev/null || true; fi
  rm -f "$p"
done
echo "--- make demo starts afresh: a new control plane (make up) and an empty Azure simulator; a previous"
echo "    demo's bindings, identities and client ids are gone"
run rm -rf "$sim_dir"
run mkdir -p "$sim_dir"

# Azure as the simulator plays it: ARM and Entra (with a Storage account, a Service Bus namespace and a
# container registry for the azureRoles samples), Key Vault's data plane behind a proxy that answers for
# Azure's host names, and Azure's propagation delays (a new federated credential is unusable for 5 s, a role
# assignment takes effect after 10 s; Azure's own take minutes). The operator's app holds exactly the Azure
# roles README's step 3 gives idbind (hack/demo-azure-rbac.yaml): the simulator authorizes every ARM request
# from role assignments, as Azure does.
sim_args=(
  --state-dir "$sim_dir" --https-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --proxy-addr 127.0.0.1:0
  --resource-group "$sub/rg-identities@westeurope" --vault "$sub/rg-shop/kv-shop@rbac"
  --vault "$sub/rg-crypto/kv-crypto@rbac" --vault "$sub/rg-reports/kv-reports@rbac"
  --resource "/subscriptions/$sub/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/shopdata@westeurope"
  --resource "/subscriptions/$sub/resourceGroups/rg-data/providers/Microsoft.ServiceBus/namespaces/shop-bus@westeurope"
  --resource "/subscriptions/$sub/resourceGroups/rg-platform/providers/Microsoft.ContainerRegistry/registries/shopacr@westeurope"
  --secret kv-shop/payments-db-password=correct-horse-battery-staple
  --fic-propagation-ms 5000 --role-propagation-ms 10000
  --app "$app:$secret:$oid" --seed hack/demo-azure-rbac.yaml --trust-ca "$cluster_dir/pki/ca.crt"
)
echo "$IDBIND_SIM ${sim_args[*]} > $sim_dir/sim.log 2>&1 &"
"$IDBIND_SIM" "${sim_args[@]}" > "$sim_dir/sim.log" 2>&1 &
echo $! > "$sim_dir/sim.pid"
for _ in $(seq 1 100); do [[ -s $sim_dir/endpoint.json ]] && break; sleep 0.1; done
echo "--- ARM simulator:"; cat "$sim_dir/endpoint.json"; echo

echo "--- Install: kubectl apply -k config/overlays/verification (config/default: CRDs, namespace, RBAC, ConfigMap,"
echo "    Deployment, Service, PDB; with verification: Ready waits until the workload's token opens its vaults)"
run kc apply -k config/overlays/verification
run kc wait --for=condition=Established --timeout=60s \
  crd/workloadidentitybindings.idbind.dev crd/workloadidentitypolicies.idbind.dev
# The demo's settings go where a real install puts them: the ConfigMap, and a Secret for the client secret
# (the simulator's stand-in for the operator's workload identity).
settings=(
  IDBIND_CLUSTER_NAME=demo IDBIND_OIDC_ISSUER="$(sed -n 's/^ *server: //p' "$cluster_dir/kubeconfig")"
  AZURE_SUBSCRIPTION_ID=$sub AZURE_TENANT_ID="$(endpoint tenantId)" AZURE_CLIENT_ID=$app
  IDBIND_CREDENTIAL=client-secret IDBIND_RESOURCE_GROUP=rg-identities IDBIND_LOCATION=westeurope
  IDBIND_CLOUD=custom IDBIND_ARM_ENDPOINT="$(endpoint https)" IDBIND_AUTHORITY_HOST="$(endpoint authorityHost)"
  IDBIND_CA_FILE="$sim_dir/ca.pem" IDBIND_RESYNC_SECONDS=30 IDBIND_HTTP_ADDR="127.0.0.1:$(hack/demo.py free-port)"
  IDBIND_LOG_FORMAT=text HTTPS_PROXY="$(endpoint proxy)" NO_PROXY=127.0.0.1,localhost
)
run kc -n idbind-system patch configmap idbind-config --type merge -p "$(hack/demo.py config-patch "${settings[@]}")"
echo "kubectl -n idbind-system create secret generic idbind-azure --from-literal=AZURE_CLIENT_SECRET=... | kubectl apply -f -"
kc -n idbind-system create secret generic idbind-azure --from-literal=AZURE_CLIENT_SECRET=$secret \
  --dry-run=client -o yaml | kc apply -f -

echo "--- This control plane has no kubelet, so the Deployment's pods cannot start (it would show 0/2):"
echo "    the demo scales it to 0 and runs the operator as its pod would (its ServiceAccount's token, its"
echo "    ConfigMap, leader election), with hack/operator-as-pod.sh"
run kc -n idbind-system scale deployment idbind --replicas=0
echo "hack/operator-as-pod.sh kubectl > $sim_dir/operator.pid"
IDBIND=$IDBIND STATE_DIR=$operator_dir hack/operator-as-pod.sh "${kubectl[@]}" > "$sim_dir/operator.pid"
kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f -

echo "--- The Secrets Store CSI driver's SecretProviderClass CRD (the tests' copy of it: the driver itself is not"
echo "    installable here) and a class without clientID, for the sample binding orders-csi to fill in"
run kc apply -f tests/fixtures/secretproviderclass-crd.yaml
run kc wait --for=condition=Established --timeout=60s crd/secretproviderclasses.secrets-store.csi.x-k8s.io
run kc apply -n "$ns" -f hack/demo-secret-provider-class.yaml
for sa in orders-api payments reporting reports orders-worker orders-csi; do
  kc create serviceaccount -n "$ns" "$sa" --dry-run=client -o yaml | kc apply -f -
done

echo "--- The samples, and the policy they need (config/samples/team-policy.yaml): a namespace binds nothing"
echo "    until a WorkloadIdentityPolicy selects it"
run kc apply -n "$ns" -f config/samples/
run kc wait -n "$ns" --for=condition=Ready --timeout=120s \
  wib/orders-api wib/payments wib/reports wib/orders-worker wib/orders-csi || {
  tail -30 "$operator_dir/operator.log"
  exit 1
}

echo; echo "--- kubectl get wib (reporting brings its own identity, which no policy lists: PolicyViolation):"
kc get workloadidentitybindings.idbind.dev -n "$ns" -o wide
echo; echo "--- kubectl describe wib payments:"; kc describe -n "$ns" wib payments | sed -n '/^Status:/,$p'
echo; echo "--- ServiceAccount payments:"; kc get sa -n "$ns" payments -o jsonpath='{.metadata.annotations}'; echo
echo; echo "--- SecretProviderClass orders-kv: parameters after idbind wired it (clientID, tenantId added; the rest as written):"
kc get secretproviderclass -n "$ns" orders-kv -o jsonpath='{.spec.parameters}'; echo
echo "--- ConfigMap orders-identity (spec.export), owned by the binding:"
kc get configmap -n "$ns" orders-identity -o jsonpath='{.data}'; echo
echo; echo "--- Leader Lease:"; kc get lease -n idbind-system idbind-leader -o jsonpath='{.spec.holderIdentity}'; echo

echo; echo "--- Azure (simulator state): identities, federated credentials, role assignments"
curl -s --cacert "$sim_dir/ca.pem" "$(endpoint https)/_sim/state" | hack/demo.py state

echo; echo "--- Token exchange: a TokenRequest token for ServiceAccount payments buys an Azure token for its identity"
client_id=$(annotation client-id)
token=$(kc create token -n "$ns" payments --audience api://AzureADTokenExchange)
curl -s --cacert "$sim_dir/ca.pem" "$(endpoint authorityHost)$(endpoint tenantId)/oauth2/v2.0/token" \
  -d grant_type=client_credentials -d client_id="$client_id" -d scope=https://management.azure.com/.default \
  -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer -d client_assertion="$token" \
  | hack/demo.py token

echo; echo "--- A pod of ServiceAccount payments, as the azure-workload-identity webhook sets it up, reads its secret"
echo "    with Azure's SDKs unchanged (WorkloadIdentityCredential + SecretClient, tests/workload/workload.py):"
token_file=$sim_dir/payments.token
kc create token -n "$ns" payments --audience api://AzureADTokenExchange > "$token_file"
hack/demo.py workload "$(annotation client-id)" "$(annotation tenant-id)" "$token_file" \
  | AZURE_AUTHORITY_HOST=https://login.microsoftonline.com/ HTTPS_PROXY="$(endpoint proxy)" \
    REQUESTS_CA_BUNDLE="$sim_dir/ca.pem" "$VENV/bin/python" tests/workload/workload.py

metrics=$(kc -n idbind-system get cm idbind-config -o jsonpath='{.data.IDBIND_HTTP_ADDR}')
echo; echo "--- Metrics (http://$metrics/metrics):"
curl -s "http://$metrics/metrics" | grep -E '^idbind_(reconciles_total|bindings|leader|arm_requests_total)' | sort | head -24
echo; echo "Running: export KUBECONFIG=$cluster_dir/kubeconfig; operator log: $operator_dir/operator.log; stop with: make down"
