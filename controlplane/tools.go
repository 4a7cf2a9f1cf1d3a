//go:build tools

// Package controlplane pins the Kubernetes control-plane binaries that the
// idbind test suite runs against. Nothing here is shipped: `make controlplane`
// builds these main packages into an ignored cache folder.
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"

	// The node (`make node`, `make test-node`): a kubelet, the scheduler that binds pods to it and kube-proxy,
	// which routes the kubernetes Service to the API server.
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
