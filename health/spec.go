package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/store"
)

// Bounds of operator checks.
const (
	MaxChecks      = 256 // operator checks on one server
	MaxExecArgs    = 64
	MaxExecArgLen  = 1024
	MaxTargetLen   = 2048 // an HTTP URL, a TCP address, a disk path
	MaxSelectorLen = 1024
	MinInterval    = time.Second
	MaxInterval    = 24 * time.Hour
	MaxTimeout     = 10 * time.Minute
	MaxRetries     = 10
)

var checkName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckName refuses what cannot name an operator check.
func CheckName(name string) error {
	if !checkName.MatchString(name) {
		return fault.Invalid("invalid check name %q: want 1-63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit", truncate(name, 70))
	}
	return nil
}

// CheckSpec refuses an operator check that is malformed or out of bounds, saying what to fix.
func CheckSpec(c api.CheckSpec) error {
	if err := CheckName(c.Name); err != nil {
		return err
	}
	if len(c.Selector) > MaxSelectorLen {
		return fault.Invalid("check %s: selector of %d bytes; at most %d", c.Name, len(c.Selector), MaxSelectorLen)
	}
	if strings.TrimSpace(c.Selector) == "" {
		return fault.Invalid("check %s: give a --selector (e.g. role=mirror); a check applies to the nodes it selects", c.Name)
	}
	if _, err := labels.ParseSelector(c.Selector); err != nil {
		return fault.Invalid("check %s: %v", c.Name, err)
	}
	kinds := 0
	for _, set := range []bool{len(c.Exec) > 0, c.HTTP != "", c.TCP != "", c.Disk != ""} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return fault.Invalid("check %s: give exactly one of --exec, --http, --tcp and --disk (got %d)", c.Name, kinds)
	}
	var err error
	switch {
	case len(c.Exec) > 0:
		err = checkExec(c.Exec)
	case c.HTTP != "":
		err = checkHTTP(c.HTTP)
	case c.TCP != "":
		err = checkTCP(c.TCP)
	default:
		err = checkDisk(c.Disk)
	}
	if err == nil && (c.Warn != "" || c.Crit != "") {
		if c.Disk == "" {
			err = errors.New("--warn and --crit are thresholds of --disk checks")
		} else if err = checkThreshold("warn", c.Warn); err == nil {
			err = checkThreshold("crit", c.Crit)
		}
	}
	if err == nil {
		err = checkTimes(c)
	}
	if err != nil {
		return fault.Invalid("check %s: %v", c.Name, err)
	}
	return nil
}

func checkExec(args []string) error {
	if len(args) > MaxExecArgs {
		return fmt.Errorf("a command line of %d arguments; at most %d", len(args), MaxExecArgs)
	}
	for _, a := range args {
		if len(a) > MaxExecArgLen || !api.Printable(a) {
			return fmt.Errorf("a command-line argument over %d bytes or with control characters", MaxExecArgLen)
		}
	}
	if !path.IsAbs(args[0]) || path.Clean(args[0]) != args[0] {
		return fmt.Errorf("plugin %q is not an absolute, clean path; give it in full (e.g. /usr/lib/nagios/plugins/check_load)", truncate(args[0], 70))
	}
	return nil
}

func checkHTTP(s string) error {
	if len(s) > MaxTargetLen || !api.Printable(s) {
		return fmt.Errorf("URL over %d bytes or with control characters", MaxTargetLen)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("URL %q: want http://HOST/... or https://HOST/...", truncate(s, 70))
	}
	if u.User != nil {
		return errors.New("URL carries a user or password, which every node and viewer would see; drop it")
	}
	return nil
}

func checkTCP(s string) error {
	if len(s) > MaxTargetLen {
		return fmt.Errorf("address over %d bytes", MaxTargetLen)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || !api.Printable(host) || strings.ContainsAny(host, " /") {
		return fmt.Errorf("address %q: want HOST:PORT", truncate(s, 70))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("address %q: port must be 1-65535", truncate(s, 70))
	}
	return nil
}

func checkDisk(p string) error {
	if len(p) > MaxTargetLen || !api.Printable(p) || !path.IsAbs(p) {
		return fmt.Errorf("disk path %q: want an absolute path", truncate(p, 70))
	}
	return nil
}

var sizeUnits = map[string]float64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}

// checkThreshold accepts a disk threshold: empty (the default), a percentage ("10%") or a size
// ("5GiB", "500MB").
func checkThreshold(which, s string) error {
	if s == "" {
		return nil
	}
	if len(s) > 32 {
		return fmt.Errorf("--%s threshold too long", which)
	}
	if num, ok := strings.CutSuffix(s, "%"); ok {
		if v, err := strconv.ParseFloat(num, 64); err == nil && v >= 0 && v <= 100 {
			return nil
		}
		return fmt.Errorf("--%s %q: a percentage is 0%% to 100%%", which, s)
	}
	i := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], s[i:]
	}
	v, err := strconv.ParseFloat(num, 64)
	if _, known := sizeUnits[strings.ToUpper(unit)]; err != nil || !known || v < 0 {
		return fmt.Errorf("--%s %q: want a percentage (10%%) or a size (5GiB, 500MB)", which, s)
	}
	return nil
}

func checkTimes(c api.CheckSpec) error {
	iv, riv, to := time.Duration(c.Interval), time.Duration(c.RetryInterval), time.Duration(c.Timeout)
	if iv != 0 && (iv < MinInterval || iv > MaxInterval) {
		return fmt.Errorf("--interval %s: want %s to %s", iv, MinInterval, MaxInterval)
	}
	if riv != 0 && (riv < MinInterval || riv > MaxInterval) {
		return fmt.Errorf("--retry-interval %s: want %s to %s", riv, MinInterval, MaxInterval)
	}
	if to != 0 && (to < 100*time.Millisecond || to > MaxTimeout) {
		return fmt.Errorf("--timeout %s: want 100ms to %s", to, MaxTimeout)
	}
	if c.Retries < 0 || c.Retries > MaxRetries {
		return fmt.Errorf("--retries %d: want 1 to %d", c.Retries, MaxRetries)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Matching returns the checks whose selector matches a node's labels (inventory.Labels), by
// name, at most api.MaxNodeChecks of them: the checks its desired state holds.
func Matching(checks []Compiled, l labels.Set) []api.CheckSpec {
	var out []api.CheckSpec
	for _, c := range checks {
		if c.Selector.Matches(l) {
			out = append(out, c.Spec)
			if len(out) == api.MaxNodeChecks {
				break
			}
		}
	}
	return out
}

// Compiled is a check with its selector parsed.
type Compiled struct {
	Spec     api.CheckSpec
	Selector labels.Selector
}

// Compile parses the checks' selectors, sorted by name; a check whose stored selector no longer
// parses (it did when it was added) selects nothing.
func Compile(checks []api.CheckSpec) []Compiled {
	out := make([]Compiled, 0, len(checks))
	for _, c := range checks {
		sel, err := labels.ParseSelector(c.Selector)
		if err != nil {
			sel = labels.Selector{{Key: "-", Op: labels.Exists}} // matches no node: "-" is no label key
		}
		out = append(out, Compiled{Spec: c, Selector: sel})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out
}

// AddCheck adds an operator check. The nodes it selects (the up and down ones) get a new
// generation in the same transaction, named in its check.added event: the server's hub, on
// every replica, reads them again from the change feed and gives their agents the new desired
// state.
func (s *Service) AddCheck(ctx context.Context, c api.CheckSpec) (api.CheckSpec, api.Event, error) {
	if err := CheckSpec(c); err != nil {
		return c, api.Event{}, err
	}
	sel, _ := labels.ParseSelector(c.Selector)
	now := s.clk.Now().UTC()
	c.CreatedAt = &now
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return c, api.Event{}, err
	}
	var ev api.Event
	err = s.store.Update(ctx, func(tx store.Tx) error {
		have, err := tx.Checks()
		if err != nil {
			return err
		}
		if len(have) >= MaxChecks {
			return fault.Conflict("%d checks already, the most a server keeps; remove one first", len(have))
		}
		if err := tx.InsertCheck(c); errors.Is(err, store.ErrExists) {
			return fault.Conflict("check %s exists; remove it first to change it", c.Name)
		} else if err != nil {
			return err
		}
		picked := selected(nodes, sel)
		if err := tx.BumpGenerations(picked); err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventCheckAdded, c.Name, api.CheckAdded{Check: c, Nodes: picked}))
		return err
	})
	return c, ev, err
}

// RemoveCheck removes an operator check with its latest results, closing its open alerts; the
// nodes it selected get a new generation, as with AddCheck.
func (s *Service) RemoveCheck(ctx context.Context, name string) ([]api.Event, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	now := s.clk.Now().UTC()
	var evs []api.Event
	err = s.store.Update(ctx, func(tx store.Tx) error {
		evs = nil
		checks, err := tx.Checks()
		if err != nil {
			return err
		}
		var spec *api.CheckSpec
		for i := range checks {
			if checks[i].Name == name {
				spec = &checks[i]
			}
		}
		if spec == nil {
			return fault.NotFound("no check %s; see ferry check list", name)
		}
		if err := tx.DeleteCheck(name); err != nil {
			return err
		}
		sel, _ := labels.ParseSelector(spec.Selector)
		picked := selected(nodes, sel)
		if err := tx.BumpGenerations(picked); err != nil {
			return err
		}
		ev, err := store.AppendOne(tx, api.NewEvent(now, api.EventCheckRemoved, name, api.CheckRemoved{Nodes: picked}))
		if err != nil {
			return err
		}
		cleared, err := ClearAlerts(tx, nil, name, now)
		evs = append(append(evs, ev), cleared...)
		return err
	})
	return evs, err
}

// selected names the nodes, not revoked, that sel matches.
func selected(nodes []api.Node, sel labels.Selector) []string {
	picked := []string{}
	for _, n := range nodes {
		if n.Status != api.StatusRevoked && sel.Matches(inventory.Labels(n)) {
			picked = append(picked, n.Name)
		}
	}
	sort.Strings(picked)
	return picked
}
