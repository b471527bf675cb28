// Package bench holds Ferry's benchmark harnesses; see BENCHMARKS.md for the figures and the
// commands that reproduce them.
package bench
