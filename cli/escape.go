package cli

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// safe makes s harmless to print on a terminal: every character that could steer the terminal
// or reorder what the reader sees is replaced by a visible strconv.Quote-style escape.
//
//   - C0 controls and DEL: \t, \n, \r and the like by name, the rest as \x1b
//   - C1 controls (U+0080–U+009F) and bytes that are not UTF-8: \u009b, \x9b
//   - bidi overrides, embeddings, isolates and marks (U+202A–U+202E, U+2066–U+2069,
//     U+200E, U+200F, U+061C) and the line and paragraph separators U+2028, U+2029: \u202e
//
// Everything else, backslashes included, is left as is, so ordinary text prints unchanged.
// Server-supplied text shown in table form goes through safe (see table and printf); JSON
// output does not, encoding/json quotes it.
func safe(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f {
		i++
	}
	if i == len(s) {
		return s // plain printable ASCII: the common case
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r):
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\u202e', '\n'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// unsafeRune reports whether r is one of the characters safe escapes.
func unsafeRune(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, 0x80 <= r && r <= 0x9f:
		return true
	case 0x202a <= r && r <= 0x202e, 0x2066 <= r && r <= 0x2069:
		return true
	case r == 0x200e, r == 0x200f, r == 0x061c, r == 0x2028, r == 0x2029:
		return true
	}
	return false
}

// printf is fmt.Fprintf to stdout for the one-line messages of table output: the format is
// ours, and every string or error argument, which may come from the server, goes through safe.
// Other arguments (numbers, booleans) are printed as given.
func (e *env) printf(format string, args ...any) {
	clean := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			clean[i] = safe(v)
		case error:
			clean[i] = safe(v.Error())
		default:
			clean[i] = a
		}
	}
	fmt.Fprintf(e.stdout, format, clean...)
}
