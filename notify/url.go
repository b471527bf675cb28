package notify

import (
	"net/url"
	"strings"

	"github.com/ferryhq/ferry/fault"
)

// MaxURLLen bounds a webhook's URL.
const MaxURLLen = 2048

// CheckURL returns a webhook's URL when it is one the server may post to: absolute http or
// https, with a host, no credentials (they would show in every listing and log; put a token in
// the path or use the signing secret) and no fragment; at most MaxURLLen bytes, without spaces
// or control characters.
func CheckURL(s string) (string, error) {
	if err := checkLen("webhook URL", s, MaxURLLen); err != nil {
		return "", err
	}
	if s == "" {
		return "", fault.Invalid("a webhook needs a URL: https://HOST/PATH")
	}
	if strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return "", fault.Invalid("webhook URL %q holds a space or a control character", truncate(s, 80))
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fault.Invalid("invalid webhook URL %q: %v", truncate(s, 80), unwrapURLError(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fault.Invalid("invalid webhook URL %q: want an http:// or https:// URL", truncate(s, 80))
	case u.Host == "" || u.Hostname() == "":
		return "", fault.Invalid("invalid webhook URL %q: it names no host", truncate(s, 80))
	case u.User != nil:
		return "", fault.Invalid("webhook URL %s carries credentials; leave them out (receivers check the X-Ferry-Signature-256 header instead)", u.Redacted())
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "", fault.Invalid("invalid webhook URL %q: a fragment (#…) is never sent; leave it out", truncate(s, 80))
	case u.Opaque != "":
		return "", fault.Invalid("invalid webhook URL %q: want http://HOST/PATH", truncate(s, 80))
	}
	return s, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
