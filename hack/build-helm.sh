#!/usr/bin/env bash
# Builds Helm from the Go module in tools/helm (helm.sh/helm/v3, pinned in its go.mod/go.sum) into
# .cache/tools/helm, as `make controlplane` builds the control plane: no binary is downloaded.
#
# Idempotent: a stamp beside the binary holds the hash of go.mod and go.sum; the build runs again only
# when they change (or the binary is gone). The flags are those of Helm's own Makefile: its version,
# and the Kubernetes version of the client-go it links, which `helm lint` and `helm template` assume
# when they do not talk to a cluster (without it Helm assumes Kubernetes 1.20).
#
# usage: hack/build-helm.sh   (prints the binary's path)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
module=$root/tools/helm
out=$root/.cache/tools/helm
stamp=$out.built-from

want=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -d' ' -f1)
if [[ -x $out && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "Go is required to build Helm (as for the control plane)" >&2; exit 1; }
cd "$module"
helm_version=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go)  # v0.37.0: Kubernetes 1.37
k8s_minor=$(cut -d. -f2 <<< "$client_go")
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
mkdir -p "$(dirname "$out")"
# Built beside the target and renamed over it, so a test that runs the binary meanwhile never sees half
# of one.
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
echo "building Helm $helm_version (Kubernetes 1.$k8s_minor client) into $out" >&2
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp" helm.sh/helm/v3/cmd/helm
chmod 755 "$tmp"
mv -f "$tmp" "$out"
echo "$want" > "$stamp"
echo "$out"
