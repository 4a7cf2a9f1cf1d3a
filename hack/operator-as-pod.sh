#!/usr/bin/env bash
# Runs `idbind run` on this machine the way its pod runs in the cluster, for the local control
# plane (which has no kubelet): signed in with a TokenRequest token of the `idbind`
# ServiceAccount (so the shipped RBAC is what it may do), its settings from the `idbind-config`
# ConfigMap and the optional `idbind-azure` Secret (as envFrom would give them), POD_NAME and
# POD_NAMESPACE as the Downward API would. Starts it in the background and prints its PID.
#
# usage: hack/operator-as-pod.sh <kubectl command...>   (e.g. ".cache/controlplane/bin/kubectl --kubeconfig ...")
# env:   IDBIND (the binary), STATE_DIR (kubeconfig and log go there), NAMESPACE (default idbind-system)
set -euo pipefail
kubectl=("$@")
ns=${NAMESPACE:-idbind-system}
state=${STATE_DIR:?STATE_DIR is required}
mkdir -p "$state"

token=$("${kubectl[@]}" create token idbind -n "$ns" --duration=24h)
server=$("${kubectl[@]}" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$("${kubectl[@]}" config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')
umask 077
cat > "$state/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority: "$ca"}}]
users: [{name: idbind, user: {token: "$token"}}]
contexts: [{name: idbind, context: {cluster: local, user: idbind, namespace: "$ns"}}]
current-context: idbind
KUBECONFIG

# ConfigMap data, then Secret data (base64), as environment assignments, kept in memory (the
# secret never lands on disk); values go into the environment, never through a shell word.
"${kubectl[@]}" get configmap idbind-config -n "$ns" -o json > "$state/config.json"
secret_json=$("${kubectl[@]}" get secret idbind-azure -n "$ns" -o json 2>/dev/null || echo '{}')
env_lines=$(SECRET_JSON=$secret_json python3 - "$state/config.json" <<'PY'
import base64, json, os, sys
env = dict(json.load(open(sys.argv[1])).get("data", {}))
env.update({k: base64.b64decode(v).decode() for k, v in json.loads(os.environ["SECRET_JSON"]).get("data", {}).items()})
for k, v in env.items():
    print(f"{k}={v}")
PY
)
unset secret_json

(
  while IFS='=' read -r key value; do [[ -n $key ]] && export "$key=$value"; done <<< "$env_lines"
  export KUBECONFIG="$state/kubeconfig" POD_NAME=idbind-local-0 POD_NAMESPACE="$ns"
  exec "${IDBIND:?IDBIND is required}" run
) > "$state/operator.log" 2>&1 &
echo $!
