// Package e2e runs the real ferry binary as child processes — server, agents and CLI — on
// loopback in temp dirs, and kills and restarts them to check what Ferry promises.
package e2e
