// Package release holds what a Ferry release is: the bundle manifest (ferry.yaml), its strict
// parser, and versions — semver with an optional Debian-style epoch — with their ordering.
package release

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/mod/semver"
)

// Version is a release version: an epoch (0 when absent) and a semantic version.
type Version struct {
	Epoch  uint32
	Semver string // MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], without a leading v
}

var semverRE = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?` +
	`(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$`)

// ParseVersion parses "1.4.0", "1.4.0-rc.1" or, with an epoch, "2:1.4.0". An epoch lets an old
// version be published again as a newer release ("downgrade by upgrading").
func ParseVersion(s string) (Version, error) {
	var v Version
	rest := s
	if e, after, ok := strings.Cut(s, ":"); ok {
		n, err := strconv.ParseUint(e, 10, 32)
		if err != nil || (len(e) > 1 && e[0] == '0') {
			return v, fmt.Errorf("invalid version %q: the epoch before ':' must be a whole number", s)
		}
		v.Epoch, rest = uint32(n), after
	}
	if len(rest) > 128 || !semverRE.MatchString(rest) {
		return v, fmt.Errorf("invalid version %q: want semantic version MAJOR.MINOR.PATCH, optionally with -prerelease, +build and an EPOCH: prefix", s)
	}
	v.Semver = rest
	return v, nil
}

// String renders the version as it was written, with the epoch only when it is not 0.
func (v Version) String() string {
	if v.Epoch == 0 {
		return v.Semver
	}
	return strconv.FormatUint(uint64(v.Epoch), 10) + ":" + v.Semver
}

// Compare orders versions by epoch, then by semantic-version precedence (build metadata is
// ignored, as semver says). It returns -1, 0 or +1.
func (v Version) Compare(w Version) int {
	switch {
	case v.Epoch < w.Epoch:
		return -1
	case v.Epoch > w.Epoch:
		return 1
	}
	return semver.Compare("v"+v.Semver, "v"+w.Semver)
}
