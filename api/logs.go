package api

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/labels"
)

// `ferry logs NODE APP` reads a process's log on its node without opening anything there: the
// operator asks any replica (GET /v1/nodes/{name}/logs), which records a node.logs_requested
// event; the replica holding the node's stream learns of it from the change feed and passes it
// on in a SyncReply; the agent answers with one upload (POST /v1/agent/logs/{id}) that the
// replica asked pipes into the operator's response. An upload whose Content-Type is
// application/json is the agent's refusal, an Error; any other is the log itself.

// EventNodeLogsRequested records that an operator asked to read a node's logs: its payload is
// NodeLogsRequested, its actor who asked, so the event log says who read which logs.
const EventNodeLogsRequested = "node.logs_requested"

// Bounds of a logs request.
const (
	DefaultLogsTail = 100    // lines per process when the request names no number
	MaxLogsTail     = 10_000 // lines per process at most
	// MaxLogsFollow bounds how long one follow lasts: the replica ends it then, and the agent
	// stops uploading; the operator runs ferry logs again.
	MaxLogsFollow = time.Hour
	// LogsBurst and LogsRate bound what one upload may carry: at most LogsBurst bytes (the
	// tail) plus LogsRate bytes per second since it began. Agents send less (MaxLogsTailBytes,
	// then at most LogsRate/2); a replica ends an upload that passes it.
	LogsBurst        = 4 << 20
	LogsRate         = 512 << 10
	MaxLogsTailBytes = 2 << 20
	// LogsAnswerWithin is how long the replica asked waits for the agent's upload to begin.
	LogsAnswerWithin = 10 * time.Second
)

// LogsRequest asks an agent for an app's logs. It travels in the node.logs_requested event and,
// from the replica holding the node's stream, in a SyncReply.
type LogsRequest struct {
	// ID names the request: 32 hex digits, random. The agent uploads to /v1/agent/logs/{ID}.
	ID  string `json:"id"`
	App string `json:"app"`
	// Process names one of the app's processes; empty means all of them, each line prefixed
	// with its process's name when the app has several.
	Process string `json:"process,omitempty"`
	Tail    int    `json:"tail"`
	Follow  bool   `json:"follow,omitempty"`
}

// NodeLogsRequested is the payload of node.logs_requested: the request, and the replica that
// waits for the agent's upload (its id, as replicas report themselves).
type NodeLogsRequested struct {
	LogsRequest
	Replica string `json:"replica"`
}

// Validate checks a request from outside: an operator's query or a frame from a server.
func (r LogsRequest) Validate() error {
	if b, err := hex.DecodeString(r.ID); err != nil || len(b) != 16 || hex.EncodeToString(b) != r.ID {
		return fmt.Errorf("invalid logs request id %q: want 32 lowercase hex digits", r.ID)
	}
	if err := labels.CheckName("app name", r.App); err != nil {
		return err
	}
	if r.Process != "" {
		if err := labels.CheckName("process name", r.Process); err != nil {
			return err
		}
	}
	if r.Tail < 0 || r.Tail > MaxLogsTail {
		return fmt.Errorf("invalid tail %d: want 0 to %d lines", r.Tail, MaxLogsTail)
	}
	return nil
}
