package cli

import (
	"context"
	"strings"
	"testing"
)

// noEnv is an environment with nothing set.
func noEnv(string) string { return "" }

// A word that names no command is a usage error (exit 2) said in one line, at the root and in
// every group, and an argument error names the verb once.
func TestUnknownCommandsAreUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "frob"}, `ferry: unknown command "frob" for "ferry node"; see ferry node --help`},
		{[]string{"release", "frob", "x"}, `ferry: unknown command "frob" for "ferry release"; see ferry release --help`},
		{[]string{"frobnicate"}, `ferry: unknown command "frobnicate" for "ferry"; see ferry --help`},
		{[]string{"frob"}, `ferry: unknown command "frob" for "ferry"; did you mean probe?`},
		{[]string{"nod", "list"}, `ferry: unknown command "nod" for "ferry"; did you mean node?`},
		{[]string{"completion", "tcsh"}, `ferry: unknown command "tcsh" for "ferry completion"; did you mean bash, zsh or fish?`},
		{[]string{"node", "list", "extra"}, `ferry: node list: takes no arguments, got "extra"`},
		{[]string{"deploy"}, `ferry: deploy: accepts 1 arg(s), received 0`},
		{[]string{"release", "show", "a@1", "b@1"}, `ferry: release show: accepts 1 arg(s), received 2`},
	} {
		out, errOut, code := ferryWith(context.Background(), noEnv, tt.args...)
		if code != 2 || out != "" || errOut != tt.want+"\n" {
			t.Errorf("ferry %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want)
		}
	}
	// A group alone, or with --help, shows its help.
	for _, args := range [][]string{{"node"}, {"node", "--help"}, {"node", "frob", "--help"}, {"help", "node"}} {
		out, errOut, code := ferryWith(context.Background(), noEnv, args...)
		if code != 0 || errOut != "" || !strings.Contains(out, "ferry node [command]") {
			t.Errorf("ferry %s: exit %d, stderr %q, stdout:\n%s", strings.Join(args, " "), code, errOut, out)
		}
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_ferry", "zsh": "#compdef ferry", "fish": "complete -c ferry"} {
		out, errOut, code := ferryWith(context.Background(), noEnv, "completion", shell)
		if code != 0 || errOut != "" || !strings.Contains(out, want) {
			t.Errorf("ferry completion %s: exit %d, stderr %q, script without %q", shell, code, errOut, want)
		}
	}
	// The scripts ask ferry itself for the words.
	out, _, code := ferryWith(context.Background(), noEnv, "__complete", "node", "")
	for _, verb := range []string{"list", "show", "label", "rm"} {
		if code != 0 || !strings.Contains(out, verb+"\t") {
			t.Errorf("completing ferry node: exit %d, no %s in:\n%s", code, verb, out)
		}
	}
}
