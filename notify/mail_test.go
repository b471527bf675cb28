package notify

import (
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/rollout"
)

// Each kind of request says what is asked and gives the command that answers it, per site.
func TestCompose(t *testing.T) {
	for _, tt := range []struct {
		kind, subject string
		commands      []string
	}{
		{rollout.ActAckRequest, "acknowledge rollout 7 of hello@1.4.0, wave pilot (sites ams, fra)", []string{"ferry rollout ack 7 --site ams", "ferry rollout ack 7 --site fra"}},
		{rollout.ActAckRemind, "Reminder: acknowledge rollout 7 of hello@1.4.0", []string{"ferry rollout ack 7 --site fra"}},
		{rollout.ActAckEscalate, "Escalation: acknowledge rollout 7", []string{"ferry rollout ack 7 --site ams"}},
		{rollout.ActFeedback, "report on rollout 7 of hello@1.4.0, wave pilot", []string{`ferry rollout report 7 --site ams --bad "WHAT IS WRONG"`, `ferry rollout report 7 --site fra --good`}},
		{rollout.ActFeedRemind, "Reminder: report on rollout 7", []string{"ferry rollout report 7 --site fra"}},
	} {
		subject, body := Compose(api.RolloutNotify{ID: 7, Wave: "pilot", Kind: tt.kind, Sites: []string{"ams", "fra"}}, "hello@1.4.0")
		if !strings.HasPrefix(subject, tt.subject) || strings.ContainsAny(subject, "\r\n") {
			t.Errorf("%s: subject %q, want it to start %q", tt.kind, subject, tt.subject)
		}
		for _, c := range append(tt.commands, "ferry rollout status 7") {
			if !strings.Contains(body, c) {
				t.Errorf("%s: body lacks %q:\n%s", tt.kind, c, body)
			}
		}
	}
	if subject, _ := Compose(api.RolloutNotify{ID: 7, Wave: "a\r\nBcc: x@y", Kind: rollout.ActAckRequest, Sites: []string{"ams"}}, ""); strings.ContainsAny(subject, "\r\n") {
		t.Errorf("a line break reached the subject: %q", subject)
	}
}
