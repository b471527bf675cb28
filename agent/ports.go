package agent

import (
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/supervise"
)

// ports gives each named port of m a number: a fixed one as the manifest says, else the one
// the app's port of that name already has (so a port stays the same across agent restarts and
// across releases, and clients need not follow it), else a free one the kernel picks. taken
// holds the ports other apps of this node hold, which are never handed out again; claim says
// whether a port is this agent's to give (see portClaims), so that agents sharing a machine
// never give the same one.
func ports(m *release.Manifest, have map[string]int, taken map[int]bool, claim func(int) bool) (map[string]int, error) {
	out := map[string]int{}
	used := map[int]bool{}
	for _, p := range m.Ports {
		if p.Port != 0 {
			out[p.Name] = p.Port
			used[p.Port] = true
		}
	}
	for _, p := range m.Ports {
		if p.Port != 0 {
			continue
		}
		if n := have[p.Name]; n != 0 && !used[n] && !taken[n] && claim(n) {
			out[p.Name] = n
			used[n] = true
			continue
		}
		n, err := freePort(func(n int) bool { return used[n] || taken[n] || !claim(n) })
		if err != nil {
			return nil, fmt.Errorf("port %s: %w", p.Name, err)
		}
		out[p.Name] = n
		used[n] = true
	}
	return out, nil
}

// freePort asks the kernel for a port free on every address (listening on :0 and closing),
// skipping those avoid refuses.
func freePort(avoid func(int) bool) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return 0, fmt.Errorf("no free port: %w", err)
		}
		n := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !avoid(n) {
			return n, nil
		}
	}
	return 0, fmt.Errorf("no free port after 100 tries")
}

// portVars are the FERRY_PORT_<NAME> variables of a release's ports.
func portVars(ports map[string]int) map[string]string {
	vars := make(map[string]string, len(ports))
	for name, n := range ports {
		vars[release.PortVar(name)] = strconv.Itoa(n)
	}
	return vars
}

// environ is the whole environment a release's processes, hooks and checks get: a PATH, the
// node's name, the app and version, its ports, and extra (a process's own env), sorted so that a process's Spec
// (and with it adoption after an agent restart) does not depend on map order.
func environ(node, app, version string, ports map[string]int, extra map[string]string) ([]string, error) {
	env := map[string]string{"PATH": supervise.DefaultPath, "FERRY_NODE": node, "FERRY_APP": app, "FERRY_VERSION": version}
	vars := portVars(ports)
	for k, v := range vars {
		env[k] = v
	}
	for k, v := range extra {
		x, err := release.Expand(v, vars)
		if err != nil {
			return nil, fmt.Errorf("env %s: %v", k, err)
		}
		env[k] = x
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

// expandAll expands ${FERRY_PORT_X} in each argument.
func expandAll(args []string, vars map[string]string) ([]string, error) {
	out := make([]string, len(args))
	for i, a := range args {
		x, err := release.Expand(a, vars)
		if err != nil {
			return nil, err
		}
		out[i] = x
	}
	return out, nil
}
