package store

import "time"

// RolloutRecord is a stored rollout. Plan and Progress are the rollout package's documents
// (JSON), which the store keeps whole; State, Open and Wake repeat what the engine needs to
// find its work without reading them.
type RolloutRecord struct {
	ID        int64
	App       string
	Version   string
	Policy    string
	Plan      []byte
	Progress  []byte
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
