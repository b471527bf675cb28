package web

import (
	"fmt"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/labels"
)

// eventLine says in one line what an event about a node did, for the node page: "hello 1.2.0
// installed", "check disk CRITICAL (hard, was OK): …"; the page adds who did it. An event it
// has no words for is named by its type.
func eventLine(e api.Event) string {
	if say, ok := eventLines[e.Type]; ok {
		if line := say(e); line != "" {
			return line
		}
	}
	return e.Type
}

// eventLines words the events whose subject is a node; an unreadable payload says "".
var eventLines = map[string]func(api.Event) string{
	api.EventNodeEnrolled: line(func(p api.NodeEnrolled) string { return "enrolled at site " + p.Site }),
	api.EventNodeUp:       line(func(p api.NodeStatusChanged) string { return "up (was " + p.From + ")" }),
	api.EventNodeDown:     line(func(p api.NodeStatusChanged) string { return "down (was " + p.From + ")" }),
	api.EventNodeRevoked:  line(func(p api.NodeRevoked) string { return strings.TrimSpace("revoked " + p.Reason) }),
	api.EventNodeLabeled:  line(func(p api.NodeLabeled) string { return "labelled " + labels.Set(p.Labels).String() }),
	api.EventAppInstalled: line(func(p api.AppInstalled) string {
		if p.From != "" {
			return fmt.Sprintf("%s %s installed (was %s)", p.App, p.Version, p.From)
		}
		return fmt.Sprintf("%s %s installed", p.App, p.Version)
	}),
	api.EventAppFailed: line(func(p api.AppFailed) string { return fmt.Sprintf("%s %s failed: %s", p.App, p.Version, p.Error) }),
	api.EventAppState: line(func(p api.AppStateChanged) string {
		return strings.TrimSpace(fmt.Sprintf("%s %s %s → %s %s", p.App, p.Version, p.From, p.To, p.Reason))
	}),
	api.EventAppRestarted: line(func(p api.AppRestarted) string { return fmt.Sprintf("%s restarted (%d so far)", p.App, p.Restarts) }),
	api.EventCheckState: line(func(p api.CheckStateChanged) string {
		return fmt.Sprintf("check %s %s (hard, was %s): %s", p.Check, p.To, p.From, p.Output)
	}),
	api.EventCheckFlapping: line(func(p api.CheckFlapping) string {
		if p.Flapping {
			return "check " + p.Check + " started flapping"
		}
		return "check " + p.Check + " stopped flapping, " + p.State
	}),
	api.EventAlertRaised: line(func(p api.AlertRaised) string {
		return fmt.Sprintf("alert %d raised: check %s %s: %s", p.ID, p.Check, p.State, p.Output)
	}),
	api.EventAlertCleared: line(func(p api.AlertCleared) string {
		return fmt.Sprintf("alert %d on check %s cleared (%s)", p.ID, p.Check, p.Reason)
	}),
	api.EventAlertAcked: line(func(p api.AlertAcked) string {
		return strings.TrimSuffix(fmt.Sprintf("alert %d on check %s acknowledged: %s", p.ID, p.Check, p.Comment), ": ")
	}),
}

// line makes a wording of an event from a wording of its payload.
func line[T any](say func(T) string) func(api.Event) string {
	return func(e api.Event) string {
		var p T
		if e.Decode(&p) != nil {
			return ""
		}
		return say(p)
	}
}
