package store

import "time"

// ProbeRecord is a stored mesh probe. Doc is the probe package's document (JSON), which the
// store keeps whole; State and Open repeat what the engine needs to find its work without
// reading it.
type ProbeRecord struct {
	ID        int64
	Doc       []byte
	State     string
	Open      bool // the engine still works through it
	CreatedAt time.Time
	CreatedBy string
	UpdatedAt time.Time
}

// MaxProbeList bounds Probes.
const MaxProbeList = 100

// ProbeCols are the columns a probe is read from, on either backend.
const ProbeCols = `id, doc, state, open, created_at, created_by, updated_at`

// ScanProbe reads one row of ProbeCols, created_at and updated_at as the backend's columns
// hold them (T), which when turns into times.
func ScanProbe[T any](row interface{ Scan(...any) error }, when func(T) time.Time) (ProbeRecord, error) {
	var p ProbeRecord
	var doc string
	var created, updated T
	if err := row.Scan(&p.ID, &doc, &p.State, &p.Open, &created, &p.CreatedBy, &updated); err != nil {
		return p, err
	}
	p.Doc, p.CreatedAt, p.UpdatedAt = []byte(doc), when(created), when(updated)
	return p, nil
}

// ScanProbes reads rows as ScanProbe does.
func ScanProbes[T any](rows Rows, when func(T) time.Time) ([]ProbeRecord, error) {
	var out []ProbeRecord
	for rows.Next() {
		p, err := ScanProbe(rows, when)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
