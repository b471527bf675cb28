package api

import "time"

// Health of a site (or a node): the worst of what is known about it.
const (
	HealthOK          = "ok"
	HealthWarning     = "warning"
	HealthCritical    = "critical"
	HealthUnreachable = "unreachable" // none of its nodes is up
	HealthUnknown     = "unknown"     // nothing to judge by: a site with no nodes
)

// Status is the fleet at a glance (GET /v1/status, ferry status): each site with its nodes up
// and down and its health, the failing checks, the open alerts and the open rollouts with each
// wave's progress.
type Status struct {
	Time     time.Time    `json:"time"` // when the overview was assembled
	Sites    []SiteStatus `json:"sites"`
	Checks   []CheckState `json:"checks"` // the checks not OK, worst first
	Alerts   int          `json:"alerts"` // open alerts, not acknowledged
	Rollouts []Rollout    `json:"rollouts"`
}

// SiteStatus is one site in the overview, with what a map of the sites needs.
type SiteStatus struct {
	Name   string   `json:"name"`
	Health string   `json:"health"`
	Up     int      `json:"up"`
	Down   int      `json:"down"`
	Tier   int      `json:"tier"`
	Lat    *float64 `json:"lat,omitempty"`
	Lon    *float64 `json:"lon,omitempty"`
}

// CheckState is the latest result of one check on one node.
type CheckState struct {
	Node   string    `json:"node"`
	Site   string    `json:"site"`
	Check  string    `json:"check"`
	State  string    `json:"state"`
	Output string    `json:"output"`
	Time   time.Time `json:"time"`
}
