package server

import (
	"encoding/json"
	"net/http"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/rollout"
)

// listPolicies lists the rollout policies: the built-in ones, one per release class.
func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) error {
	out := []api.Policy{}
	for _, name := range rollout.BuiltinNames() {
		p, err := policyDoc(name)
		if err != nil {
			return err
		}
		p.YAML, p.Parsed = "", nil
		out = append(out, p)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// showPolicy shows one policy: its YAML and the policy it parses to.
func (s *Server) showPolicy(w http.ResponseWriter, r *http.Request) error {
	p, err := policyDoc(r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// policyDoc describes a built-in policy.
func policyDoc(name string) (api.Policy, error) {
	p, err := rollout.Builtin(name)
	if err != nil {
		return api.Policy{}, errorf(http.StatusNotFound, "%v", err)
	}
	parsed, err := json.Marshal(p)
	if err != nil {
		return api.Policy{}, err
	}
	text, _ := rollout.BuiltinYAML(name)
	return api.Policy{Name: p.Name, Waves: len(p.Waves), Summary: p.Summary(), Class: name, YAML: string(text), Parsed: parsed}, nil
}
