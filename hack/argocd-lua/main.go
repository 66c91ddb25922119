// Command argocd-lua evaluates Argo CD resource health checks exactly as an Argo CD v2 application controller
// does: it loads the argocd-cm ConfigMap through argo-cd's own settings manager (so the health script and its
// `useOpenLibs` flag are read the way Argo CD reads them) and runs it with argo-cd's util/lua package
// (gopher-lua, SkipOpenLibs unless useOpenLibs: only base, table, package and a safe os library).
//
// Input on stdin, one JSON document:
//
//	{"configMap": {...argocd-cm...}, "objects": [{...}, ...]}      health through argocd-cm (GetResourceHealth)
//	{"script": "...lua...", "useOpenLibs": false, "objects": [...]} one script on each object (ExecuteHealthLua)
//
// Output on stdout: a JSON list, one entry per object: {"status": ..., "message": ...} or {"error": "..."}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/argoproj/argo-cd/v2/util/lua"
	"github.com/argoproj/argo-cd/v2/util/settings"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
)

const namespace = "argocd"

type request struct {
	ConfigMap   *corev1.ConfigMap        `json:"configMap"`
	Script      string                   `json:"script"`
	UseOpenLibs bool                     `json:"useOpenLibs"`
	Objects     []map[string]interface{} `json:"objects"`
}

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail(fmt.Errorf("reading the request: %w", err))
	}
	var overrides lua.ResourceHealthOverrides
	if req.ConfigMap != nil {
		var err error
		if overrides, err = overridesFrom(req.ConfigMap); err != nil {
			fail(err)
		}
	}
	out := make([]result, 0, len(req.Objects))
	for _, o := range req.Objects {
		out = append(out, evaluate(&unstructured.Unstructured{Object: o}, req, overrides))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

// overridesFrom reads argocd-cm with Argo CD's settings manager over an in-memory clientset.
func overridesFrom(cm *corev1.ConfigMap) (lua.ResourceHealthOverrides, error) {
	cm = cm.DeepCopy()
	cm.Namespace = namespace
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels["app.kubernetes.io/part-of"] = "argocd"
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "argocd-secret", Namespace: namespace,
			Labels: map[string]string{"app.kubernetes.io/part-of": "argocd"}},
		Data: map[string][]byte{"server.secretkey": []byte("unused")},
	}
	mgr := settings.NewSettingsManager(context.Background(), fake.NewSimpleClientset(cm, secret), namespace)
	ov, err := mgr.GetResourceOverrides()
	if err != nil {
		return nil, fmt.Errorf("argocd-cm: %w", err)
	}
	return lua.ResourceHealthOverrides(ov), nil
}

func evaluate(obj *unstructured.Unstructured, req request, overrides lua.ResourceHealthOverrides) result {
	if overrides != nil {
		hs, err := overrides.GetResourceHealth(obj)
		if err != nil {
			return result{Error: err.Error()}
		}
		if hs == nil {
			return result{Error: "no health check configured for " + obj.GroupVersionKind().GroupKind().String()}
		}
		return result{Status: string(hs.Status), Message: hs.Message}
	}
	hs, err := lua.VM{UseOpenLibs: req.UseOpenLibs}.ExecuteHealthLua(obj, req.Script)
	if err != nil {
		return result{Error: err.Error()}
	}
	return result{Status: string(hs.Status), Message: hs.Message}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "argocd-lua:", err)
	os.Exit(2)
}
