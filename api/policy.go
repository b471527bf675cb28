package api

import "encoding/json"

// Policy is a rollout policy as `ferry rollout policy list|show` present it. A list carries
// Name, Waves and Summary; one policy shown carries also its YAML, exactly what an operator can
// copy into a file, edit and give to --policy, and the policy as parsed, defaults filled in (a
// JSON object with the YAML's fields: name, on_failure, leftover, waves).
type Policy struct {
	Name string `json:"name"`
	// Waves counts the policy's waves.
	Waves int `json:"waves"`
	// Summary says in one line what each wave takes and waits for.
	Summary string `json:"summary"`
	// Class is the release class this policy is the default for, when it is.
	Class  string          `json:"class,omitempty"`
	YAML   string          `json:"yaml,omitempty"`
	Parsed json.RawMessage `json:"parsed,omitempty"`
}
