package agent

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/ferryhq/ferry/api"
)

// gatherFacts reads what the agent reports about its machine; disk figures are for the
// filesystem holding the data dir.
func gatherFacts(dataDir string) api.Facts {
	f := api.Facts{
		OS:           runtime.GOOS,
		Arch:         runtime.GOARCH,
		CPUs:         runtime.NumCPU(),
		AgentVersion: api.Version,
		Protocol:     api.Protocol,
	}
	f.Hostname, _ = os.Hostname()
	f.MemoryBytes = memTotal()
	var st syscall.Statfs_t
	if syscall.Statfs(dataDir, &st) == nil {
		f.DiskBytes = st.Blocks * uint64(st.Bsize)
		f.DiskFree = st.Bavail * uint64(st.Bsize)
	}
	return f
}

func memTotal() uint64 {
	fh, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// defaultName derives a node name from the hostname: its first label, lower-cased, with
// characters outside the DNS-label alphabet turned into '-'.
func defaultName() string {
	h, _ := os.Hostname()
	h, _, _ = strings.Cut(strings.ToLower(h), ".")
	b := []byte(h)
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '-'
		}
	}
	name := strings.Trim(string(b), "-")
	if len(name) > 63 {
		name = strings.Trim(name[:63], "-")
	}
	if name == "" {
		name = "node"
	}
	return name
}
