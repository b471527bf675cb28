package api

import (
	"unicode"
	"unicode/utf8"
)

// Printable reports whether s is valid UTF-8 without control or bidi characters: text that
// operators read as an agent or another operator wrote it, which must not steer their terminal
// or page.
func Printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return false
		}
	}
	return true
}
