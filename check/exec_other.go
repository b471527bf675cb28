//go:build !unix

package check

import (
	"context"
	"time"
)

// runExec needs process groups: plugins run on Unix only.
func (r *Runner) runExec(context.Context, Spec, time.Duration) Result {
	return Result{State: Unknown, Output: "exec checks need a Unix system"}
}
