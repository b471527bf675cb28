package web

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/overview"
	"github.com/ferryhq/ferry/rollout"
)

// siteView is a site on the overview: its counts, health and place on the map.
type siteView struct {
	api.Site
	Up, Down, Total int
	Health          string
	OnMap           bool
	X, Y, R         float64
}

// liveAge is how old the overview's snapshot of the fleet may be when the fleet changed since:
// a large fleet changes all the time, and reading it whole costs more than a page should.
const liveAge = 2 * time.Second

// siteViews returns the sites with their nodes up and down and their health, by name, from the
// overview's snapshot of the fleet, and the snapshot: one that holds every change up to event
// since at least.
func (h *Handler) siteViews(r *http.Request, since int64) ([]siteView, *overview.Snapshot, error) {
	snap, err := h.cfg.Overview.SnapshotSince(r.Context(), since, liveAge)
	if err != nil {
		return nil, nil, err
	}
	out := make([]siteView, 0, len(snap.Sites))
	for _, s := range snap.Sites {
		v := siteView{Site: api.Site{Name: s.Name, Tier: s.Tier, Lat: s.Lat, Lon: s.Lon}, Up: s.Up, Down: s.Down, Total: s.Up + s.Down, Health: s.Health}
		if s.Lat != nil && s.Lon != nil {
			v.OnMap = true
			v.X, v.Y = project(*s.Lon, *s.Lat)
			v.R = dotRadius(v.Total)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b siteView) int { return cmp.Compare(a.Name, b.Name) })
	return out, snap, nil
}

// mapView is the world map with its dots; the biggest dots are drawn first, so small ones stay
// on top and can be pointed at.
type mapView struct {
	Land  string
	W, H  int
	Sites []siteView
}

func (h *Handler) mapView(sites []siteView) mapView {
	var on []siteView
	for _, s := range sites {
		if s.OnMap {
			on = append(on, s)
		}
	}
	slices.SortStableFunc(on, func(a, b siteView) int { return cmp.Compare(b.R, a.R) })
	return mapView{Land: h.land, W: mapWidth, H: mapHeight, Sites: on}
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	sites, snap, err := h.siteViews(r, 0)
	if err != nil {
		return err
	}
	var active []api.Rollout
	for _, ro := range snap.Rollouts {
		if !finished(ro.State) {
			active = append(active, ro.Rollout)
		}
	}
	h.render(w, r, http.StatusOK, "overview", s, map[string]any{"Fleet": fleetView{h.mapView(sites), sites}, "Rollouts": active, "Since": snap.Event})
	return nil
}

// fleetView is the overview's live part: the map and the sites' table.
type fleetView struct {
	Map   mapView
	Sites []siteView
}

// mapFragment is the overview's live part alone, which the overview fetches again when a node or
// site changes.
func (h *Handler) mapFragment(w http.ResponseWriter, r *http.Request, s *session) error {
	// The page asks with the newest event it heard of, so the map it gets holds it.
	since, err := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	if err != nil || since < 0 {
		since = 0
	}
	sites, _, err := h.siteViews(r, since)
	if err != nil {
		return err
	}
	h.renderFragment(w, "fleet", fleetView{h.mapView(sites), sites})
	return nil
}

// maxFilter bounds a filter typed into a page.
const maxFilter = 256

func (h *Handler) sitePage(w http.ResponseWriter, r *http.Request, s *session) error {
	site, err := h.cfg.Store.Site(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	status, sel, text := q.Get("status"), q.Get("selector"), strings.TrimSpace(q.Get("q"))
	if len(sel) > maxFilter || len(text) > maxFilter {
		return &pageError{http.StatusBadRequest, "A filter is longer than 256 bytes."}
	}
	all, err := h.cfg.Inventory.Select(r.Context(), inventory.Query{Site: site.Name})
	if err != nil {
		return err
	}
	health, err := h.cfg.Health.SiteHealth(r.Context(), site, all)
	if err != nil {
		return err
	}
	var nodes []nodeRow
	var problem string
	picked, err := h.cfg.Inventory.Select(r.Context(), inventory.Query{Site: site.Name, Status: status, Selector: sel})
	if err != nil {
		problem = err.Error() // a mistyped filter: show the page, say why nothing matched
	}
	for _, n := range picked {
		if text != "" && !strings.Contains(strings.ToLower(n.Name+" "+n.Facts.Hostname+" "+labels.Set(n.Labels).String()), strings.ToLower(text)) {
			continue
		}
		nh, err := h.cfg.Health.NodeHealth(r.Context(), n)
		if err != nil {
			return err
		}
		nodes = append(nodes, nodeRow{Node: n, Health: nh})
	}
	up, down := countStatus(all)
	h.render(w, r, http.StatusOK, "site", s, map[string]any{"Site": site, "Health": health, "Up": up, "Down": down,
		"Nodes": nodes, "Total": len(all), "Status": status, "Selector": sel, "Q": text, "Problem": problem})
	return nil
}

// nodeRow is a node in a table, with its health.
type nodeRow struct {
	api.Node
	Health string
}

// checkView is a check on the node page with its history.
type checkView struct {
	Check
	Plot plot
}

// recentEvents is how many of the node's newest events the node page shows.
const recentEvents = 20

// nodeLogs shows an admin the tail of an app's log on a node, fetched from its agent.
func (h *Handler) nodeLogs(w http.ResponseWriter, r *http.Request, s *session) error {
	if s.Role != api.RoleAdmin {
		return &pageError{http.StatusForbidden, "Logs can hold secrets: only an admin token may read them."}
	}
	if h.cfg.Logs == nil {
		return &pageError{http.StatusNotFound, "This server does not fetch logs."}
	}
	h.cfg.Logs(w, r, r.PathValue("name"), r.PathValue("app"))
	return nil
}

func (h *Handler) nodePage(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	n, err := h.cfg.Store.Node(ctx, r.PathValue("name"))
	if err != nil {
		return err
	}
	health, err := h.cfg.Health.NodeHealth(ctx, n)
	if err != nil {
		return err
	}
	checks, err := h.cfg.Health.NodeChecks(ctx, n.Name)
	if err != nil {
		return err
	}
	var cv []checkView
	for _, c := range checks {
		pts, err := h.cfg.Health.CheckHistory(ctx, n.Name, c.Name)
		if err != nil {
			return err
		}
		cv = append(cv, checkView{Check: c, Plot: plotOf([]Series{{Name: c.Name, Unit: c.Unit, Points: pts}})})
	}
	mine, err := h.cfg.Store.SubjectEvents(ctx, n.Name, recentEvents)
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "node", s, map[string]any{"Node": n, "Health": health, "Checks": cv, "Events": mine})
	return nil
}

func (h *Handler) releasesPage(w http.ResponseWriter, r *http.Request, s *session) error {
	rels, err := h.cfg.Store.Releases(r.Context(), "")
	if err != nil {
		return err
	}
	slices.SortStableFunc(rels, func(a, b api.Release) int { return b.CreatedAt.Compare(a.CreatedAt) })
	b, err := h.cfg.Catalog.Bulletin(r.Context(), "", "")
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "releases", s, map[string]any{"Releases": rels, "Bulletin": b})
	return nil
}

func (h *Handler) rolloutsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	list, err := h.cfg.Rollouts.List(r.Context(), "")
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "rollouts", s, map[string]any{"Rollouts": list})
	return nil
}

// rolloutID reads a rollout page's id.
func rolloutID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, &pageError{http.StatusNotFound, "There is no rollout " + r.PathValue("id") + "."}
	}
	return id, nil
}

// rolloutActions are the changes the rollout page offers an admin.
var rolloutActions = []string{rollout.ActionPause, rollout.ActionResume, rollout.ActionApprove, rollout.ActionAbort}

func (h *Handler) rolloutPage(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := rolloutID(r)
	if err != nil {
		return err
	}
	last, err := h.cfg.Store.LastEventID(r.Context()) // before the read: the live stream follows from here
	if err != nil {
		return err
	}
	ro, err := h.cfg.Rollouts.Get(r.Context(), id)
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "rollout", s, map[string]any{"Rollout": ro, "Actions": rolloutActions, "Since": last,
		"Live": !finished(ro.State)})
	return nil
}

// actOnRollout pauses, resumes, approves or aborts a rollout, then shows it again.
func (h *Handler) actOnRollout(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := rolloutID(r)
	if err != nil {
		return err
	}
	action := r.PathValue("action")
	if !slices.Contains(rolloutActions, action) {
		return &pageError{http.StatusNotFound, "There is no rollout action " + action + " here."}
	}
	text := r.PostForm.Get("reason")
	if len(text) > rollout.MaxReportText {
		return &pageError{http.StatusBadRequest, "The reason is too long."}
	}
	if _, _, err := h.cfg.Rollouts.Act(r.Context(), id, action, api.RolloutAction{Text: text}); err != nil {
		return err
	}
	http.Redirect(w, r, "/rollouts/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
	return nil
}

// heatCell is one cell of the mesh matrix: its value and a shade from 0 (best) to 9.
type heatCell struct {
	Text  string
	Shade int
	None  bool
}

func (h *Handler) statsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	checks, err := h.cfg.Health.CheckSeries(r.Context())
	if err != nil {
		return err
	}
	probes, err := h.cfg.Probes.ProbeSeries(r.Context())
	if err != nil {
		return err
	}
	mesh, err := h.cfg.Probes.Mesh(r.Context())
	if err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "stats", s, map[string]any{"Checks": plotOf(checks), "Probes": plotsByUnit(probes),
		"Mesh": mesh, "Heat": heat(mesh)})
	return nil
}

// eventsShown is how many events the events page starts with.
const eventsShown = 100

func (h *Handler) eventsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	last, err := h.cfg.Store.LastEventID(r.Context())
	if err != nil {
		return err
	}
	evs, err := h.cfg.Store.Events(r.Context(), max(0, last-eventsShown), eventsShown)
	if err != nil {
		return err
	}
	slices.Reverse(evs)
	h.render(w, r, http.StatusOK, "events", s, map[string]any{"Events": evs, "Last": last})
	return nil
}

// finished reports whether a rollout in state st will change no more.
func finished(st string) bool {
	return st == rollout.StateCompleted || st == rollout.StateAborted || st == rollout.StateRolledBack
}
