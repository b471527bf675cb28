package notify

import (
	"fmt"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/rollout"
)

// Compose writes the email of a rollout.notify event: a subject and a plain-text body that say
// which rollout, release and wave, what is asked of which sites, and the command that answers.
// release is APP@VERSION ("" when the rollout is gone).
func Compose(p api.RolloutNotify, release string) (subject, body string) {
	what := fmt.Sprintf("rollout %d", p.ID)
	if release != "" {
		what += " of " + release
	}
	sites := strings.Join(p.Sites, ", ")
	var ask, answer string
	switch p.Kind {
	case rollout.ActAckRequest, rollout.ActAckRemind, rollout.ActAckEscalate:
		ask = fmt.Sprintf("Ferry's %s is about to move wave %q, which includes your site (%s). It waits for each site to acknowledge before it starts.", what, p.Wave, sites)
		answer = "To acknowledge, run:"
		for _, s := range p.Sites {
			answer += fmt.Sprintf("\n\n    ferry rollout ack %d --site %s", p.ID, s)
		}
	case rollout.ActFeedback, rollout.ActFeedRemind:
		ask = fmt.Sprintf("Ferry's %s has reached your site (%s) in wave %q. Please tell us how it runs: a bad report halts the rollout.", what, sites, p.Wave)
		answer = "To report, run one of:"
		for _, s := range p.Sites {
			answer += fmt.Sprintf("\n\n    ferry rollout report %d --site %s --good \"runs fine\"\n    ferry rollout report %d --site %s --bad \"WHAT IS WRONG\"", p.ID, s, p.ID, s)
		}
	default:
		ask = fmt.Sprintf("Ferry's %s asks your site (%s) for %s in wave %q.", what, sites, p.Kind, p.Wave)
		answer = fmt.Sprintf("See: ferry rollout status %d", p.ID)
	}
	prefix, title := "", "acknowledge"
	switch p.Kind {
	case rollout.ActAckRemind, rollout.ActFeedRemind:
		prefix = "Reminder: "
	case rollout.ActAckEscalate:
		prefix = "Escalation: "
		ask = "Your site has not acknowledged in time. " + ask
	}
	if p.Kind == rollout.ActFeedback || p.Kind == rollout.ActFeedRemind {
		title = "report on"
	}
	subject = fmt.Sprintf("%s%s %s, wave %s (sites %s)", prefix, title, what, p.Wave, sites)
	body = ask + "\n\n" + answer + "\n\nStatus: ferry rollout status " + fmt.Sprint(p.ID) + "\n\n-- \nSent by Ferry to the contacts of " + sites + ".\n"
	return oneLine(subject), body
}

// oneLine replaces line breaks and other control characters, which would end a mail header.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
