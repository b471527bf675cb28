//go:build !linux

package server

import "net"

// Elsewhere than Linux each agent stream reads its connection on a goroutine of its own.

type pollConn struct{}

func pollable(c net.Conn) net.Conn { return c }

func takeOver(net.Conn) *pollConn { return nil }

func (*pollConn) unsent() int { return -1 }

func (*pollConn) newTurn() {}

type poller struct{}

func newPoller(func(*agentStream)) (*poller, error) { return nil, nil }

func (p *poller) add(*agentStream) error     { return nil }
func (p *poller) finished(*agentStream) bool { return false }
func (p *poller) remove(*agentStream)        {}
func (p *poller) stop()                      {}
