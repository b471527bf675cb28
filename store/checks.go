package store

import (
	"encoding/json"
	"time"

	"github.com/ferryhq/ferry/api"
)

// Checks, their results and alerts as both backends keep them: a check's spec and a result as
// JSON text (what the server reads back is what it wrote), history buckets keyed by node,
// check, width and start, alerts as rows with times in Unix nanoseconds.

// CheckBucket is one bucket of a check's history on a node, as WriteChecks stores it: a bucket
// of the same node, check, width and start is replaced.
type CheckBucket struct {
	Node  string
	Check string
	api.CheckBucket
}

// MaxAlertList bounds what Alerts returns: the newest, open ones first.
const MaxAlertList = 1000

// AlertCols are the columns ScanAlerts reads, in order.
const AlertCols = `id, node, check_name, state, since, output, acked_by, acked_at, comment, cleared_at`

// ScanAlert reads one row of AlertCols.
func ScanAlert(row interface{ Scan(...any) error }) (api.Alert, error) {
	var a api.Alert
	var since int64
	var acked, cleared *int64
	if err := row.Scan(&a.ID, &a.Node, &a.Check, &a.State, &since, &a.Output, &a.AckedBy, &acked, &a.Comment, &cleared); err != nil {
		return a, err
	}
	a.Since = time.Unix(0, since).UTC()
	a.AckedAt, a.ClearedAt = unixPtr(acked), unixPtr(cleared)
	return a, nil
}

// ScanAlerts reads rows of AlertCols.
func ScanAlerts(rows Rows) ([]api.Alert, error) {
	out := []api.Alert{}
	for rows.Next() {
		a, err := ScanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// AlertArgs are an alert's values for the columns of AlertCols after id.
func AlertArgs(a api.Alert) []any {
	return []any{a.Node, a.Check, a.State, a.Since.UnixNano(), a.Output, a.AckedBy, nanosPtr(a.AckedAt), a.Comment, nanosPtr(a.ClearedAt)}
}

func unixPtr(n *int64) *time.Time {
	if n == nil {
		return nil
	}
	t := time.Unix(0, *n).UTC()
	return &t
}

func nanosPtr(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	n := t.UnixNano()
	return &n
}

// ScanCheckSpecs reads rows of (spec) JSON.
func ScanCheckSpecs(rows Rows) ([]api.CheckSpec, error) {
	out := []api.CheckSpec{}
	for rows.Next() {
		var spec string
		if err := rows.Scan(&spec); err != nil {
			return nil, err
		}
		var c api.CheckSpec
		if err := json.Unmarshal([]byte(spec), &c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ScanCheckResults reads rows of (node, result JSON).
func ScanCheckResults(rows Rows) ([]api.NodeCheck, error) {
	var out []api.NodeCheck
	for rows.Next() {
		var r api.NodeCheck
		var res string
		if err := rows.Scan(&r.Node, &res); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(res), &r.CheckResult); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ScanCheckBuckets reads rows of (start, width, worst, count, perf JSON), start and width in
// seconds.
func ScanCheckBuckets(rows Rows) ([]api.CheckBucket, error) {
	out := []api.CheckBucket{}
	for rows.Next() {
		var b api.CheckBucket
		var start, width int64
		var perf string
		if err := rows.Scan(&start, &width, &b.Worst, &b.Count, &perf); err != nil {
			return nil, err
		}
		b.Start, b.Width = time.Unix(start, 0).UTC(), api.Duration(time.Duration(width)*time.Second)
		if err := json.Unmarshal([]byte(perf), &b.Perf); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// BucketArgs are a bucket's values for (node, check_name, width, start, worst, count, perf).
func BucketArgs(b CheckBucket) []any {
	perf := b.Perf
	if perf == nil {
		perf = []api.PerfStats{}
	}
	return []any{b.Node, b.Check, int64(time.Duration(b.Width) / time.Second), b.Start.Unix(), b.Worst, b.Count, mustJSON(perf)}
}

// ResultJSON is a result as the store keeps it.
func ResultJSON(r api.CheckResult) string { return mustJSON(r) }

// SpecJSON is a check's spec as the store keeps it.
func SpecJSON(c api.CheckSpec) string { return mustJSON(c) }
