// Command kstatus prints what sigs.k8s.io/cli-utils' kstatus (the library behind Flux's health
// checks and `kubectl wait`-style readiness in cli-utils) concludes about Kubernetes objects.
//
// It reads one JSON object or a List (what `kubectl get -o json` prints) from stdin and writes
// one line per object: `<name> <Status> <message>`. idbind's tests use it to prove that the
// statuses the operator writes mean to GitOps tools what they are meant to mean.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	// apimachinery's json keeps integers int64 (encoding/json would make them float64, which
	// kstatus rejects for metadata.generation and status.observedGeneration).
	var obj map[string]interface{}
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("stdin is not a JSON object: %w", err)
	}
	u := &unstructured.Unstructured{Object: obj}
	objects := []unstructured.Unstructured{*u}
	// `kubectl get -o json` of several objects prints a List (kind "List" or "<Kind>List").
	if u.IsList() {
		list, err := u.ToList()
		if err != nil {
			return fmt.Errorf("reading the list: %w", err)
		}
		objects = list.Items
	}
	for i := range objects {
		res, err := status.Compute(&objects[i])
		if err != nil {
			// Compute fails only on malformed objects; that is an error, not a status.
			return fmt.Errorf("%s: %w", objects[i].GetName(), err)
		}
		fmt.Fprintf(out, "%s %s %s\n", objects[i].GetName(), res.Status, res.Message)
	}
	return nil
}
