package health

import (
	"time"

	"github.com/ferryhq/ferry/api"
)

// The fleet's checks by state over time, for the statistics page: every trendEvery, at a
// flush, how many (node, check) pairs this server knows stand in each hard state. It is kept in
// memory for trendKeep, since the server started: the per-node history is what the store keeps.
const (
	trendEvery = 5 * time.Minute
	trendKeep  = 48 * time.Hour
)

// TrendPoint is the fleet's checks by hard state at one time.
type TrendPoint struct {
	Time   time.Time
	Counts map[string]int // by state: api.CheckOK, …
}

// sampleTrend records the checks by hard state when trendEvery has passed since the last
// sample; s.mu is held.
func (s *Service) sampleTrend(now time.Time) {
	if n := len(s.trend); n > 0 && now.Sub(s.trend[n-1].Time) < trendEvery {
		return
	}
	p := TrendPoint{Time: now, Counts: map[string]int{api.CheckOK: 0, api.CheckWarning: 0, api.CheckCritical: 0, api.CheckUnknown: 0}}
	for _, sr := range s.series {
		if sr.have {
			p.Counts[sr.hardState()]++
		}
	}
	s.trend = append(s.trend, p)
	if drop := len(s.trend) - int(trendKeep/trendEvery); drop > 0 {
		s.trend = append(s.trend[:0:0], s.trend[drop:]...)
	}
}

// Trend returns the fleet's checks by hard state over the last two days (since this server
// started), oldest first.
func (s *Service) Trend() []TrendPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TrendPoint, len(s.trend))
	copy(out, s.trend) // the points' maps are never changed once made
	return out
}
