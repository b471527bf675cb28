//go:build unix && !linux

package check

import "errors"

// canPin is false where a child cannot be waited for without reaping it: there the plugin's
// process group is killed on timeout only, not after a normal exit (its id could be reused).
const canPin = false

func waitPinned(int) error { return errors.New("waiting without reaping needs Linux") }
