// Command k8s validates Kubernetes manifests offline: each YAML document is decoded strictly
// into its k8s.io/api type (an unknown or misspelt field, a wrong type or a duplicate key is
// an error), then printed back as one JSON array of the typed objects, for
// tests/test_deploy.py to check against the service's own settings.
//
//	go run . ../../deploy/kubernetes/*.yaml
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kinds maps apiVersion/kind to a new object of its type; a kind not here is an error.
var kinds = map[string]func() any{
	"apps/v1/Deployment": func() any { return &appsv1.Deployment{} },
	"v1/Service":         func() any { return &corev1.Service{} },
	"v1/ConfigMap":       func() any { return &corev1.ConfigMap{} },
	"v1/Secret":          func() any { return &corev1.Secret{} },
}

func decode(path string, document []byte) (any, error) {
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(document, &meta); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key := meta.APIVersion + "/" + meta.Kind
	newObject, known := kinds[key]
	if !known {
		return nil, fmt.Errorf("%s: unsupported apiVersion/kind %q", path, key)
	}
	object := newObject()
	if err := yaml.UnmarshalStrict(document, object); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, key, err)
	}
	return object, nil
}

func documents(data []byte) [][]byte {
	var found [][]byte
	for _, part := range bytes.Split(data, []byte("\n---")) {
		if strings.TrimSpace(stripComments(string(part))) != "" {
			found = append(found, part)
		}
	}
	return found
}

func stripComments(text string) string {
	var kept []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: k8s MANIFEST.yaml...")
		os.Exit(2)
	}
	var objects []any
	failed := false
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, document := range documents(data) {
			object, err := decode(path, document)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				failed = true
				continue
			}
			objects = append(objects, object)
		}
	}
	if failed {
		os.Exit(1)
	}
	out, err := json.Marshal(objects)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
