package release

import (
	"fmt"
	"regexp"
	"strings"
)

// PortVarPrefix starts the name of the variable that carries a named port.
const PortVarPrefix = "FERRY_PORT_"

// PortVar is the environment variable, and the ${...} reference in commands and checks, that
// carries the port named name: "http" → FERRY_PORT_HTTP, "admin-api" → FERRY_PORT_ADMIN_API.
func PortVar(name string) string {
	return PortVarPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Expand replaces each ${NAME} in s with vars[NAME]; "$${" stands for a literal "${", and a
// '$' before anything but '{' is left as it is ("$HOME", "$$"). A reference to a name vars does
// not hold, a malformed name or an unclosed "${" is an error: the manifest's validation has
// already refused those, so for the agent an error means its vars miss a declared port.
func Expand(s string, vars map[string]string) (string, error) {
	return expand(s, func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	})
}

func expand(s string, lookup func(name string) (string, bool)) (string, error) {
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		if i > 0 && rest[i-1] == '$' {
			b.WriteString(rest[:i-1] + "${")
			rest = rest[i+2:]
			continue
		}
		b.WriteString(rest[:i])
		end := strings.IndexByte(rest[i+2:], '}')
		if end < 0 {
			return "", fmt.Errorf("unclosed ${: close it with }, or write $${ for a literal ${")
		}
		name := rest[i+2 : i+2+end]
		if !varName.MatchString(name) {
			if len(name) > 64 {
				name = name[:64] + "..."
			}
			return "", fmt.Errorf("invalid variable name %q in ${...}: want letters, digits and '_'", name)
		}
		v, ok := lookup(name)
		if !ok {
			return "", fmt.Errorf("unknown variable ${%s}", name)
		}
		b.WriteString(v)
		rest = rest[i+2+end+1:]
	}
}
