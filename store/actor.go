package store

import "context"

// Actor is who caused a change: an operator token, a node, or the server itself. Every event
// a store writes records the actor on its context, so the audit trail needs no parameter
// threaded through each method.
type Actor struct {
	// ID is "token:<id>", "node:<name>" or "system".
	ID string
	// Role is the operator token's role (admin, viewer); empty for nodes and the system.
	Role string
	// Source is the network address the request came from; empty for the system.
	Source string
}

// System is the actor of changes the server makes by itself (the liveness sweep, blob GC).
var System = Actor{ID: "system"}

type actorKey struct{}

// WithActor returns ctx carrying a, for the events written under it.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor ctx carries, or System when none.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok && a.ID != "" {
		return a
	}
	return System
}
