package server

import (
	"net/http"
	"sort"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/release"
)

// withCandidates fills each channel's candidate per app: its highest (epoch, version) release.
// Withdrawn releases are never in a channel, so a channel only ever offers installable ones.
func withCandidates(chans []api.Channel) []api.Channel {
	for i := range chans {
		best := map[string]release.Version{}
		for _, r := range chans[i].Releases {
			app, ver, _ := strings.Cut(r, "@")
			v, err := release.ParseVersion(ver)
			if err != nil {
				continue
			}
			if cur, ok := best[app]; !ok || v.Compare(cur) > 0 {
				best[app] = v
				chans[i].Candidates[app] = ver
			}
		}
	}
	return chans
}

func (s *Server) listChannels(w http.ResponseWriter, r *http.Request) error {
	chans, err := s.store.Channels(r.Context(), false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, withCandidates(chans))
	return nil
}

func (s *Server) showChannel(w http.ResponseWriter, r *http.Request) error {
	return s.writeChannel(w, r, r.PathValue("name"), true, http.StatusOK)
}

// writeChannel answers with one channel, its candidates and, when asked, its history.
func (s *Server) writeChannel(w http.ResponseWriter, r *http.Request, name string, history bool, code int) error {
	chans, err := s.store.Channels(r.Context(), history)
	if err != nil {
		return err
	}
	for _, c := range withCandidates(chans) {
		if c.Name == name {
			writeJSON(w, code, c)
			return nil
		}
	}
	return errorf(http.StatusNotFound, "channel %q not found", name)
}

func (s *Server) createChannel(w http.ResponseWriter, r *http.Request) error {
	var req api.ChannelCreate
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := labels.CheckName("channel name", req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if req.After == "" {
		return errorf(http.StatusBadRequest, "give --after CHANNEL: the channel the new one follows")
	}
	ev, err := s.store.CreateChannel(r.Context(), req, s.clk.Now().UTC())
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	return s.writeChannel(w, r, req.Name, false, http.StatusCreated)
}

func (s *Server) setChannel(w http.ResponseWriter, r *http.Request) error {
	var req api.ChannelSet
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.AllowUnsigned == nil {
		return errorf(http.StatusBadRequest, "nothing to change: give allow_unsigned")
	}
	name := r.PathValue("name")
	ev, err := s.store.SetAllowUnsigned(r.Context(), name, *req.AllowUnsigned, s.clk.Now().UTC())
	if err != nil {
		return err
	}
	if ev.Type != "" {
		s.settle(r.Context(), ev)
	}
	return s.writeChannel(w, r, name, false, http.StatusOK)
}

func (s *Server) promoteRelease(w http.ResponseWriter, r *http.Request) error {
	var req api.Promote
	if err := decode(w, r, &req); err != nil {
		return err
	}
	app, ver := r.PathValue("app"), r.PathValue("version")
	ev, err := s.store.Promote(r.Context(), app, ver, req.To, req.Force, s.clk.Now().UTC())
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	return s.writeRelease(w, r, app, ver)
}

func (s *Server) withdrawRelease(w http.ResponseWriter, r *http.Request) error {
	var req api.Withdraw
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Reason) == "" || len(req.Reason) > 500 {
		return errorf(http.StatusBadRequest, "give --reason: why the release must not be installed (up to 500 characters)")
	}
	app, ver := r.PathValue("app"), r.PathValue("version")
	ev, touched, err := s.store.Withdraw(r.Context(), app, ver, req.Reason, s.clk.Now().UTC())
	if err != nil {
		return err
	}
	_ = touched // the feed refreshes them
	s.settle(r.Context(), ev)
	return s.writeRelease(w, r, app, ver)
}

// republishRelease is "downgrade by upgrading": the old content under EPOCH:VERSION, higher
// than anything with a lower epoch, without uploading the bundle again.
func (s *Server) republishRelease(w http.ResponseWriter, r *http.Request) error {
	var req api.Republish
	if err := decode(w, r, &req); err != nil {
		return err
	}
	app, ver := r.PathValue("app"), r.PathValue("version")
	old, err := release.ParseVersion(ver)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if req.Epoch <= old.Epoch {
		return errorf(http.StatusBadRequest, "--epoch must be greater than %d, the epoch of %s@%s", old.Epoch, app, ver)
	}
	newVer := release.Version{Epoch: req.Epoch, Semver: old.Semver}.String()
	rel, ev, err := s.store.Republish(r.Context(), app, ver, newVer, s.clk.Now().UTC())
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, rel)
	return nil
}

func (s *Server) writeRelease(w http.ResponseWriter, r *http.Request, app, ver string) error {
	rel, err := s.store.Release(r.Context(), app, ver)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rel)
	return nil
}

// bulletin is the release bulletin: per app, each channel's candidate and, per site, how many
// nodes run which version; with ?runs=APP@VER, the sites that run it.
func (s *Server) bulletin(w http.ResponseWriter, r *http.Request) error {
	app := r.URL.Query().Get("app")
	runs := r.URL.Query().Get("runs")
	if runs != "" {
		a, v, ok := strings.Cut(runs, "@")
		if !ok || a == "" || v == "" {
			return errorf(http.StatusBadRequest, "runs must be APP@VERSION, got %q", runs)
		}
		app = a
	}
	chans, err := s.store.Channels(r.Context(), false)
	if err != nil {
		return err
	}
	nodes, err := s.store.Nodes(r.Context())
	if err != nil {
		return err
	}
	apps := map[string]*api.BulletinApp{}
	entry := func(name string) *api.BulletinApp {
		if apps[name] == nil {
			apps[name] = &api.BulletinApp{App: name, Candidates: []api.ChannelCandidate{}, Channels: map[string]string{}, Sites: map[string]map[string]int{}}
		}
		return apps[name]
	}
	for _, c := range withCandidates(chans) { // in promotion order
		for a, v := range c.Candidates {
			if app == "" || a == app {
				e := entry(a)
				e.Candidates = append(e.Candidates, api.ChannelCandidate{Channel: c.Name, Version: v})
				e.Channels[c.Name] = v
			}
		}
	}
	for _, n := range nodes {
		if n.Status == api.StatusRevoked {
			continue
		}
		for _, na := range n.Apps {
			if na.Version == "" || (app != "" && na.App != app) {
				continue
			}
			e := entry(na.App)
			if e.Sites[n.Site] == nil {
				e.Sites[n.Site] = map[string]int{}
			}
			e.Sites[n.Site][na.Version]++
		}
	}
	out := api.Bulletin{Apps: []api.BulletinApp{}}
	names := make([]string, 0, len(apps))
	for n := range apps {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out.Apps = append(out.Apps, *apps[n])
	}
	if runs != "" {
		_, v, _ := strings.Cut(runs, "@")
		out.Runs = runs
		out.RunsSites = []string{}
		if e := apps[app]; e != nil {
			for site, versions := range e.Sites {
				if versions[v] > 0 {
					out.RunsSites = append(out.RunsSites, site)
				}
			}
		}
		sort.Strings(out.RunsSites)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
