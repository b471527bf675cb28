package catalog

import (
	"context"
	"sort"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/release"
)

// Channels lists the channels in promotion order, each with its candidate per app and, when
// withHistory, its history.
func (s *Service) Channels(ctx context.Context, withHistory bool) ([]api.Channel, error) {
	chans, err := s.store.Channels(ctx, withHistory)
	if err != nil {
		return nil, err
	}
	return WithCandidates(chans), nil
}

// Channel returns one channel with its candidates and, when withHistory, its history.
func (s *Service) Channel(ctx context.Context, name string, withHistory bool) (api.Channel, error) {
	chans, err := s.Channels(ctx, withHistory)
	if err != nil {
		return api.Channel{}, err
	}
	if i := channelIndex(chans, name); i >= 0 {
		return chans[i], nil
	}
	return api.Channel{}, fault.NotFound("channel %q not found", name)
}

// WithCandidates fills each channel's candidate per app: its highest (epoch, version) release.
// Withdrawn releases are never in a channel, so a channel only ever offers installable ones.
func WithCandidates(chans []api.Channel) []api.Channel {
	for i := range chans {
		if chans[i].Candidates == nil {
			chans[i].Candidates = map[string]string{}
		}
		byApp := map[string][]string{}
		for _, r := range chans[i].Releases {
			app, ver, _ := strings.Cut(r, "@")
			byApp[app] = append(byApp[app], ver)
		}
		for app, vers := range byApp {
			if c := highest(vers); c != "" {
				chans[i].Candidates[app] = c
			}
		}
	}
	return chans
}

// markWithdrawn notes, of the versions of e's app that run somewhere, those withdrawn and why.
func (s *Service) markWithdrawn(ctx context.Context, e *api.BulletinApp) error {
	running := map[string]bool{}
	for _, versions := range e.Sites {
		for v := range versions {
			running[v] = true
		}
	}
	if len(running) == 0 {
		return nil
	}
	rels, err := s.store.Releases(ctx, e.App)
	if err != nil {
		return err
	}
	for _, r := range rels {
		if r.Withdrawn != "" && running[r.Version] {
			if e.Withdrawn == nil {
				e.Withdrawn = map[string]string{}
			}
			e.Withdrawn[r.Version] = r.Withdrawn
		}
	}
	return nil
}

// highest is the highest (epoch, version) of versions: a channel's candidate among the versions
// of one app it holds; "" when there is none.
func highest(versions []string) string {
	var best release.Version
	out := ""
	for _, ver := range versions {
		v, err := release.ParseVersion(ver)
		if err != nil {
			continue
		}
		if out == "" || v.Compare(best) > 0 {
			best, out = v, ver
		}
	}
	return out
}

// Bulletin says, per app (of one app when app is set), each channel's candidate in promotion
// order and, per site, how many nodes run which version. With runs (APP@VERSION) it also lists
// the sites that run that release.
func (s *Service) Bulletin(ctx context.Context, app, runs string) (api.Bulletin, error) {
	var runsVersion string
	if runs != "" {
		a, v, ok := strings.Cut(runs, "@")
		if !ok || a == "" || v == "" {
			return api.Bulletin{}, fault.Invalid("runs must be APP@VERSION, got %q", runs)
		}
		app, runsVersion = a, v
	}
	chans, err := s.Channels(ctx, false)
	if err != nil {
		return api.Bulletin{}, err
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return api.Bulletin{}, err
	}
	apps := map[string]*api.BulletinApp{}
	entry := func(name string) *api.BulletinApp {
		if apps[name] == nil {
			apps[name] = &api.BulletinApp{App: name, Candidates: []api.ChannelCandidate{}, Channels: map[string]string{}, Sites: map[string]map[string]int{}}
		}
		return apps[name]
	}
	for _, c := range chans { // in promotion order
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
		e := apps[n]
		if err := s.markWithdrawn(ctx, e); err != nil {
			return api.Bulletin{}, err
		}
		out.Apps = append(out.Apps, *e)
	}
	if runs != "" {
		out.Runs = runs
		out.RunsSites = []string{}
		if e := apps[app]; e != nil {
			for site, versions := range e.Sites {
				if versions[runsVersion] > 0 {
					out.RunsSites = append(out.RunsSites, site)
				}
			}
		}
		sort.Strings(out.RunsSites)
	}
	return out, nil
}
