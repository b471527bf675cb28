package server

import (
	"net"
	"runtime"
)

// workers read and handle agents' frames on a few long-lived goroutines. Reading through TLS,
// decoding a frame, recording it and answering need a deep stack, and a goroutine keeps the
// stack it grew until the collector shrinks it: done on each stream's own goroutine, that work
// left every idle agent holding 8 KiB. Here a handful of workers hold those stacks.
type workers struct {
	jobs chan func([]byte)
	done chan struct{}
}

// workersPerCPU bounds how many frames are handled at once. Most frames are handled in memory;
// the few that write to the store wait for it, so there are many more workers than CPUs: the
// app reports that wait together are written in one transaction (assign's group commit), so a
// burst of them (the hundreds of nodes of a rollout's batch finishing together) takes a few
// transactions with this many workers, where 8 per CPU took one per 16 reports.
const workersPerCPU = 32

func startWorkers() *workers {
	w := &workers{jobs: make(chan func([]byte)), done: make(chan struct{})}
	n := workersPerCPU * runtime.GOMAXPROCS(0)
	exited := make(chan struct{}, n)
	for range n {
		go func() {
			defer func() { exited <- struct{}{} }()
			buf := make([]byte, readBuffer)
			for f := range w.jobs {
				f(buf)
			}
		}()
	}
	go func() {
		for range n {
			<-exited
		}
		close(w.done)
	}()
	return w
}

// readBuffer is each worker's buffer for reading agents' connections: one TLS record.
const readBuffer = 16 << 10

// run runs f on a worker, with the worker's read buffer, and returns when it has. A stream's
// own goroutine calls it, so that the deep stack f needs is a worker's.
func (w *workers) run(f func(buf []byte)) {
	finished := make(chan struct{})
	w.jobs <- func(buf []byte) { defer close(finished); f(buf) }
	<-finished
}

// submit has a worker run f, without waiting for it to finish; it waits while every worker is
// busy.
func (w *workers) submit(f func(buf []byte)) { w.jobs <- f }

// stop ends the workers once every caller of run has returned.
func (w *workers) stop() {
	close(w.jobs)
	<-w.done
}

// pollListener makes the connections it accepts pollable, for the agent streams among them.
type pollListener struct{ net.Listener }

func (l pollListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return pollable(c), nil
}
