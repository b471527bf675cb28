package rollout

import (
	"embed"
	"fmt"
	"slices"
	"strings"

	"github.com/ferryhq/ferry/release"
)

// The built-in policies are YAML files in the binary, so that what `ferry rollout policy show`
// prints is exactly a file an operator can copy, edit and give to --policy.
//
//go:embed policies/*.yaml
var builtinFS embed.FS

// BuiltinNames are the built-in policies, named after the classes of release they are the
// default for (seeds/002): minor, major, breaking.
func BuiltinNames() []string {
	return []string{release.ClassMinor, release.ClassMajor, release.ClassBreaking}
}

// BuiltinYAML is the text of a built-in policy; false when there is none of that name.
func BuiltinYAML(name string) ([]byte, bool) {
	if !isBuiltin(name) {
		return nil, false
	}
	b, err := builtinFS.ReadFile("policies/" + name + ".yaml")
	if err != nil {
		panic(err) // embedded: present by construction, and a test reads every one
	}
	return b, true
}

func isBuiltin(name string) bool { return slices.Contains(BuiltinNames(), name) }

// Builtin parses a built-in policy.
func Builtin(name string) (*Policy, error) {
	b, ok := BuiltinYAML(name)
	if !ok {
		return nil, fmt.Errorf("no built-in policy %q: the built-in policies are %s", name, strings.Join(BuiltinNames(), ", "))
	}
	return ParsePolicy("policy "+name, b)
}

// ForClass is the default policy of a release of the class (release.ClassMinor, …).
func ForClass(class string) (*Policy, error) {
	if !isBuiltin(class) {
		return nil, fmt.Errorf("release class %q has no default policy: want %s", class, strings.Join(BuiltinNames(), ", "))
	}
	return Builtin(class)
}
