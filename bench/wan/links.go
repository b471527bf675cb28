package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
)

// links are the agents' proxies to the server, one each, in this process.
type links struct {
	o       options
	api     *toxiproxy.ApiServer
	proxies []*toxiproxy.Proxy
	cutting bool
}

// newLinks starts o.agents proxies to upstream, each with latency and bandwidth toxics on both
// directions, in that order.
func newLinks(o options, upstream string) (*links, error) {
	toxics.Register("cut", new(cutToxic))
	// toxiproxy's toxics log through zerolog's global logger when they are moved about.
	zerolog.SetGlobalLevel(zerolog.WarnLevel)
	l := &links{o: o, api: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
	for i := range o.agents {
		p := toxiproxy.NewProxy(l.api, fmt.Sprintf("agent%02d", i), "127.0.0.1:0", upstream)
		if err := p.Start(); err != nil {
			l.stop()
			return nil, err
		}
		l.proxies = append(l.proxies, p)
		for _, dir := range []string{"upstream", "downstream"} {
			if err := l.add(p, toxic{Name: "latency-" + dir, Type: "latency", Stream: dir, Toxicity: 1,
				Attributes: map[string]any{"latency": o.latency.Milliseconds(), "jitter": o.jitter.Milliseconds()}}); err != nil {
				l.stop()
				return nil, err
			}
			if err := l.add(p, toxic{Name: "bandwidth-" + dir, Type: "bandwidth", Stream: dir, Toxicity: 1,
				Attributes: map[string]any{"rate": o.rateKB}}); err != nil {
				l.stop()
				return nil, err
			}
		}
	}
	return l, nil
}

// toxic is a toxic as toxiproxy's API takes it.
type toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float64        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

func (l *links) add(p *toxiproxy.Proxy, t toxic) error {
	b, _ := json.Marshal(t)
	_, err := p.Toxics.AddToxicJson(bytes.NewReader(b))
	return err
}

// addr is the address agent i reaches the server at.
func (l *links) addr(i int) string { return l.proxies[i].Listen }

// setCut adds the cut toxic to every link, or removes it. Adding it draws anew which of the
// connections open then, and of those opened later, are cut.
func (l *links) setCut(on bool) error {
	for _, p := range l.proxies {
		var err error
		if l.cutting {
			err = p.Toxics.RemoveToxic(context.Background(), "cut")
		}
		if err == nil && on {
			err = l.add(p, toxic{Name: "cut", Type: "cut", Stream: "downstream", Toxicity: l.o.cut,
				Attributes: map[string]any{"after": l.o.cutAfter.Milliseconds()}})
		}
		if err != nil {
			return err
		}
	}
	l.cutting = on
	return nil
}

func (l *links) stop() {
	for _, p := range l.proxies {
		p.Stop()
	}
}

// cutToxic closes a connection `after` milliseconds after the first bytes it carries through
// the toxic (since the toxic was added, for a connection open before), passing them until
// then: a link that breaks in the middle of whatever it carries. Its clock starts as
// toxiproxy's reset_peer toxic's does, but reset_peer drops the first chunk and holds back
// everything after it until it resets the connection, so a connection it picks never carries a
// byte. The agent sees the connection end (FIN) where a reset would be an RST; to the agent
// both are a connection cut off.
type cutToxic struct {
	After int64 `json:"after"` // milliseconds
}

func (t *cutToxic) Pipe(stub *toxics.ToxicStub) {
	var deadline <-chan time.Time // until the first chunk
	for {
		select {
		case <-stub.Interrupt:
			return
		case <-deadline:
			stub.Close()
			t.drain(stub)
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if deadline == nil {
				timer := time.NewTimer(time.Duration(t.After) * time.Millisecond)
				defer timer.Stop()
				deadline = timer.C
			}
			select {
			case stub.Output <- c:
			case <-deadline:
				stub.Close()
				t.drain(stub)
				return
			}
		}
	}
}

// drain takes what still comes to a closed stub, so the toxics before it in the chain are not
// left waiting on it, until the link's input ends.
func (t *cutToxic) drain(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				return
			}
		}
	}
}
