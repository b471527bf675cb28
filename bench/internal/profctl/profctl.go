// Package profctl drives bench/profserver's profile control port from a harness.
package profctl

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Start starts a CPU profile of the server into file.
func Start(control, file string) error { return post(control, "/start?file="+url.QueryEscape(file)) }

// Stop stops the running CPU profile.
func Stop(control string) error { return post(control, "/stop") }

// Heap writes a heap profile, taken after a GC, into file.
func Heap(control, file string) error { return post(control, "/heap?file="+url.QueryEscape(file)) }

func post(control, path string) error {
	resp, err := http.Post("http://"+control+path, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("profile control %s: %s: %s", path, resp.Status, b)
	}
	return nil
}
