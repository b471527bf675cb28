package supervise

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// A process writes its stdout and stderr, interleaved, straight into LogDir/NAME.log: the
// file is the process's own descriptor, opened O_APPEND, so its output never passes through
// the supervisor, and a supervisor that dies breaks nothing. Rotation is copy-truncate: the
// file's last MaxSize bytes are copied to NAME.log.1 (older generations move up one, the
// oldest past Keep is removed) and NAME.log is truncated; the process's next write lands at
// the new end because of O_APPEND. Output written between the copy and the truncation is lost,
// as with logrotate's copytruncate. Each old generation holds at most MaxSize bytes, so a
// process's logs take at most (Keep+1)×MaxSize plus what it writes between two checks.

// logFile returns the path of name's current log file in dir.
func logFile(dir, name string) string { return filepath.Join(dir, name+".log") }

// generation returns the path of name's i-th older log file.
func generation(dir, name string, i int) string { return fmt.Sprintf("%s.%d", logFile(dir, name), i) }

// openLog opens name's log for a new process to write.
func openLog(dir, name string) (*os.File, error) {
	return os.OpenFile(logFile(dir, name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
}

// rotate copy-truncates name's log in dir once it has reached l.MaxSize; it reports whether
// it did.
func rotate(dir, name string, l Logs) (bool, error) {
	live := logFile(dir, name)
	in, err := os.Open(live)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil || fi.Size() < l.MaxSize {
		return false, err
	}
	// Move the generations up; the one past Keep (or past a Keep since lowered) goes.
	for i := maxLogKeep; i >= 1; i-- {
		var err error
		if i >= l.Keep {
			err = os.Remove(generation(dir, name, i))
		} else {
			err = os.Rename(generation(dir, name, i), generation(dir, name, i+1))
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	from := max(0, fi.Size()-l.MaxSize)
	if _, err := in.Seek(from, io.SeekStart); err != nil {
		return false, err
	}
	r := bufio.NewReader(io.LimitReader(in, l.MaxSize))
	if from > 0 {
		// Start the generation at a whole line when one begins soon enough.
		if _, err := r.ReadSlice('\n'); err != nil && !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, io.EOF) {
			return false, err
		}
	}
	tmp := generation(dir, name, 1) + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, generation(dir, name, 1))
	}
	if err != nil {
		os.Remove(tmp)
		return false, err
	}
	return true, os.Truncate(live, 0)
}

// maxTailBytes bounds what one tail reads, across generations.
const maxTailBytes = 1 << 20

// MaxTailLines bounds the lines Tail returns.
const MaxTailLines = 100_000

// tail returns the last n lines of name's logs in dir: from NAME.log, and from the older
// generations when it holds fewer, reading at most maxTailBytes in all.
func tail(dir, name string, n int) ([]byte, error) {
	if n < 1 || n > MaxTailLines {
		return nil, fmt.Errorf("tail of %d lines: want between 1 and %d", n, MaxTailLines)
	}
	var buf []byte
	cut := false // whether buf starts inside a file rather than at its beginning
	for i := 0; i <= maxLogKeep && len(buf) < maxTailBytes; i++ {
		path := logFile(dir, name)
		if i > 0 {
			path = generation(dir, name, i)
		}
		b, whole, err := readEnd(path, maxTailBytes-len(buf))
		if errors.Is(err, fs.ErrNotExist) {
			if i == 0 {
				continue // rotated or not started yet: the older ones may still hold lines
			}
			break
		}
		if err != nil {
			return nil, err
		}
		buf, cut = append(b, buf...), !whole
		if lines(buf) > n {
			break
		}
	}
	out := lastLines(buf, n)
	if cut && len(out) == len(buf) {
		// The first line was read only in part: drop it rather than show half of it.
		if i := bytes.IndexByte(out, '\n'); i >= 0 {
			out = out[i+1:]
		} else {
			out = nil
		}
	}
	return out, nil
}

// readEnd reads at most limit bytes from the end of the file at path, and whether that is the
// whole file.
func readEnd(path string, limit int) (b []byte, whole bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	size := fi.Size()
	from := max(0, size-int64(limit))
	b = make([]byte, size-from)
	n, err := f.ReadAt(b, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	// A file truncated since Stat reads short: what was read is still its end.
	return b[:n], from == 0, nil
}

// lines counts the lines in b; a last line without a newline counts.
func lines(b []byte) int {
	n := bytes.Count(b, []byte{'\n'})
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n++
	}
	return n
}

// lastLines returns the suffix of b that holds its last n lines.
func lastLines(b []byte, n int) []byte {
	if n <= 0 {
		return nil
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end-- // the final newline ends the last line; it does not start another
	}
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}
