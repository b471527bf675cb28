package store

import "time"

// RolloutRecord is a stored rollout. Plan, Progress and each node's progress are the rollout
// package's documents (JSON), which the store keeps as they are; State, Open and Wake repeat what
// the engine needs to find its work without reading them.
type RolloutRecord struct {
	ID       int64
	App      string
	Version  string
	Policy   string
	Plan     []byte
	Progress []byte
	// Nodes is each node's progress, by node. A read returns every node's; UpdateRollout writes
	// those it is given and keeps the others, so a step writes only the nodes it moved.
	Nodes map[string][]byte
	// Rev grows with every write of the rollout: whoever kept a copy of it knows from Rev
	// alone (Tx.RolloutRev) whether the store still holds that.
	Rev       int64
	State     string
	Open      bool       // the engine still steps it
	Wake      *time.Time // when it wants a step if nothing happens first
	CreatedAt time.Time
	CreatedBy string
	UpdatedAt time.Time
}

// RolloutTerms are what a rollout's assignment carries besides the release: the rollout, its
// attempt, and the wave's verification times (0: the manifest's).
type RolloutTerms struct {
	Rollout, Attempt                int64
	MinHealthyTime, HealthyDeadline time.Duration
}

// MaxRolloutList bounds Rollouts.
const MaxRolloutList = 500
