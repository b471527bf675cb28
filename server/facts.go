package server

import (
	"net/http"

	"github.com/ferryhq/ferry/api"
)

// Bounds on what an agent may report about its machine. The facts are stored and shown to
// operators as given (ferry node show), so they are held to what real machines report:
// no control characters or escape sequences, nothing longer than a real value can be.
const (
	maxHostname     = 253 // a fully qualified DNS name
	maxPlatform     = 32  // GOOS / GOARCH tokens ("linux", "amd64", "mips64le")
	maxAgentVersion = 64
	maxCPUs         = 1 << 16
)

// validFacts refuses an agent's facts unless every field looks like what a real machine
// reports. An empty string is accepted for any field: an agent may not know it.
//
//   - hostname: up to 253 bytes of ASCII letters, digits, '-', '.' and '_'
//   - os, arch: up to 32 bytes of lower-case letters, digits and '_'
//   - agent_version: up to 64 bytes of printable ASCII without spaces
//   - cpus: 0 to 65536
//
// The byte sizes and protocol are not checked: any value is a number, and the server sets
// the protocol itself.
func validFacts(f api.Facts) error {
	if len(f.Hostname) > maxHostname {
		return errorf(http.StatusBadRequest, "facts: hostname is %d bytes; at most %d", len(f.Hostname), maxHostname)
	}
	if !allBytes(f.Hostname, hostnameByte) {
		return errorf(http.StatusBadRequest, "facts: hostname %.64q has characters other than letters, digits, '-', '.' or '_'", f.Hostname)
	}
	for _, p := range []struct{ name, v string }{{"os", f.OS}, {"arch", f.Arch}} {
		if len(p.v) > maxPlatform {
			return errorf(http.StatusBadRequest, "facts: %s is %d bytes; at most %d", p.name, len(p.v), maxPlatform)
		}
		if !allBytes(p.v, platformByte) {
			return errorf(http.StatusBadRequest, "facts: %s %q has characters other than lower-case letters, digits or '_'", p.name, p.v)
		}
	}
	if len(f.AgentVersion) > maxAgentVersion {
		return errorf(http.StatusBadRequest, "facts: agent_version is %d bytes; at most %d", len(f.AgentVersion), maxAgentVersion)
	}
	if !allBytes(f.AgentVersion, versionByte) {
		return errorf(http.StatusBadRequest, "facts: agent_version %q has characters other than printable ASCII without spaces", f.AgentVersion)
	}
	if f.CPUs < 0 || f.CPUs > maxCPUs {
		return errorf(http.StatusBadRequest, "facts: cpus is %d; want 0 to %d", f.CPUs, maxCPUs)
	}
	return nil
}

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func hostnameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
}

func platformByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_'
}

// versionByte admits printable ASCII except the space: "0.1.0-dev", "v1.2.3+git.abc".
func versionByte(c byte) bool {
	return '!' <= c && c <= '~'
}
