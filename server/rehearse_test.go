package server

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
)

func TestRehearseRequestRefusals(t *testing.T) {
	ok := api.RolloutStart{App: "hello", Version: "2.0.0"}
	for _, tc := range []struct {
		req  api.RolloutRehearse
		want string
	}{
		{api.RolloutRehearse{RolloutStart: ok, FailRate: 1.5}, "fail rate 1.5 is not a chance"},
		{api.RolloutRehearse{RolloutStart: ok, OfflineRate: -0.01}, "offline rate -0.01 is not a chance"},
		{api.RolloutRehearse{RolloutStart: ok, InstallTime: api.Duration(-1)}, "install time"},
		{api.RolloutRehearse{RolloutStart: api.RolloutStart{App: "hello"}}, "give the version"},
		{api.RolloutRehearse{RolloutStart: api.RolloutStart{App: "hello", Version: "2.0.0", Policy: "nosuch"}}, "nosuch"},
	} {
		_, _, err := rehearseRequest(tc.req)
		if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an invalid request saying %q", tc.req, err, tc.want)
		}
	}
	if _, o, err := rehearseRequest(api.RolloutRehearse{RolloutStart: ok, FailRate: 1, OfflineRate: 0, Seed: -1 << 63}); err != nil || o.Seed != -1<<63 {
		t.Errorf("a good request: %+v %v", o, err)
	}
}

// Whatever a rehearsal request holds, it is refused as invalid input or gives options a
// rehearsal takes.
func FuzzRehearseRequest(f *testing.F) {
	for _, s := range []string{`{"app":"hello","version":"2.0.0"}`,
		`{"app":"hello","version":"2.0.0","fail_rate":0.05,"offline_rate":0.02,"seed":-7,"install_time":"1m"}`,
		`{"app":"hello","version":"2.0.0","policy":"minor","selector":"site=ams","fail_rate":1e308}`,
		`{"app":"hello","version":"2.0.0","install_time":"-1s"}`, `{"app":"hello","version":"2.0.0","policy_yaml":"name: x\nwaves: [{name: a}]\n"}`,
		`{"fail_rate":"x"}`, `{"seed":1e30}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req api.RolloutRehearse
		if err := decodeJSON(bytes.NewReader(b), &req); err != nil {
			if _, ok := err.(*httpError); !ok {
				t.Fatalf("decode: error %v is not a client error", err)
			}
			return
		}
		_, o, err := rehearseRequest(req)
		if err != nil {
			if !errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("refused with %v, not as invalid input", err)
			}
			return
		}
		if err := o.Check(); err != nil {
			t.Fatalf("accepted options a rehearsal refuses: %v", err)
		}
	})
}
