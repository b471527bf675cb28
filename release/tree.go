package release

import (
	"archive/tar"
	"errors"
	"fmt"
	"path"
	"strings"
)

// A symlink is only safe to unpack if it points inside the bundle where it really resolves:
// through the other symlinks of the bundle, as the kernel follows them, not as its target reads
// on its own ("up" → "../..", then "out" → "up/../etc", is lexically inside and really not). A
// tree holds the shape of a bundle so its links can be followed once all of it is known: a
// later link can change where an earlier one points ("x" → "d/..", then "d" → ".").

// maxHops is how many symlinks one resolution may follow, as on Linux (more is ELOOP).
const maxHops = 40

// A tree is the names of a bundle: the root, the entries and the directories they imply.
type tree struct {
	root  node
	nodes int // besides the root
	max   int
	links []*node // symlinks, in bundle order
}

// implied is the type of a directory no entry names, only the names under it.
const implied = 0

type node struct {
	parent *node
	kids   map[string]*node
	name   string // the entry name, for errors
	typ    byte   // tar type, or implied
	target string // of a symlink

	// Where a symlink resolves, once known: the deepest node of the tree on the way and how
	// many names below it the bundle does not hold, after following hops symlinks.
	state int // unresolved, resolving or resolved
	at    *node
	depth int
	hops  int
}

const (
	unresolved = iota
	resolving
	resolved
)

func newTree(maxNodes int) *tree {
	return &tree{root: node{name: ".", typ: tar.TypeDir}, max: maxNodes}
}

// add records the entry name (clean and relative). Refused: an entry under a symlink or a
// file, which would be written wherever that leads; a second entry of a name; and a file or
// link where earlier entries made a directory.
func (t *tree) add(name string, typ byte, target string) error {
	dir := &t.root
	for i := 0; ; i++ {
		switch dir.typ {
		case tar.TypeDir, implied:
		case tar.TypeSymlink:
			return fmt.Errorf("bundle entry %q is under %q, which is a symlink", name, dir.name)
		default:
			return fmt.Errorf("bundle entry %q is under %q, which is not a directory", name, dir.name)
		}
		j := strings.IndexByte(name[i:], '/')
		if j < 0 {
			break
		}
		i += j
		var err error
		if dir, err = t.child(dir, name[:i]); err != nil {
			return err
		}
	}
	n, err := t.child(dir, name)
	if err != nil {
		return err
	}
	switch {
	case n.typ != implied:
		return fmt.Errorf("bundle entry %q appears twice", name)
	case n.kids != nil && typ != tar.TypeDir:
		return fmt.Errorf("bundle entry %q is not a directory, but earlier entries are under it", name)
	}
	n.typ, n.target = typ, target
	if typ == tar.TypeSymlink {
		t.links = append(t.links, n)
	}
	return nil
}

// child returns the node of name in dir, making it as an implied directory if it is new.
func (t *tree) child(dir *node, name string) (*node, error) {
	base := path.Base(name)
	if n := dir.kids[base]; n != nil {
		return n, nil
	}
	if t.nodes++; t.nodes > t.max {
		return nil, fmt.Errorf("bundle has more than %d entries", t.max)
	}
	n := &node{parent: dir, name: name}
	if dir.kids == nil {
		dir.kids = map[string]*node{}
	}
	dir.kids[base] = n
	return n, nil
}

// typeOf returns the tar type of the entry name, or implied if there is none.
func (t *tree) typeOf(name string) byte {
	n := &t.root
	for _, part := range strings.Split(name, "/") {
		if n = n.kids[part]; n == nil {
			return implied
		}
	}
	return n.typ
}

// checkLinks refuses a bundle with a symlink that resolves outside it, through a loop, or
// through more than maxHops symlinks. Call it once all entries are added.
func (t *tree) checkLinks() error {
	for _, l := range t.links {
		if err := resolve(l, 0); err != nil {
			return fmt.Errorf("bundle entry %q is a symlink to %q, which %v", l.name, l.target, err)
		}
	}
	return nil
}

var (
	errOutside = errors.New("resolves outside the bundle")
	errLoop    = errors.New("resolves through a loop of symlinks")
	errHops    = fmt.Errorf("resolves through more than %d symlinks", maxHops)
)

// resolve follows the symlink l component by component, substituting each symlink on the way
// by where it resolves (worked out once, so a bundle of many links costs no more than the
// length of their targets). nest is how many links are being resolved around this one.
func resolve(l *node, nest int) error {
	switch {
	case l.state == resolved:
		return nil
	case l.state == resolving:
		return errLoop
	case nest >= maxHops:
		// Each link around this one adds at least a hop: stop before the stack gets deep.
		return errHops
	case path.IsAbs(l.target):
		return errOutside
	}
	l.state = resolving
	at, depth, hops := l.parent, 0, 1
	for rest := l.target; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, "/")
		switch {
		case part == "" || part == ".":
		case part == ".." && depth > 0:
			depth--
		case part == "..":
			if at.parent == nil {
				return errOutside
			}
			at = at.parent
		case depth > 0 || at.kids[part] == nil:
			// A name the bundle does not hold has nothing under it either, so only ".." can
			// lead back.
			depth++
		case at.kids[part].typ == tar.TypeSymlink:
			n := at.kids[part]
			if err := resolve(n, nest+1); err != nil {
				return err
			}
			at, depth, hops = n.at, n.depth, hops+n.hops
			if hops > maxHops {
				return errHops
			}
		default:
			at = at.kids[part]
		}
	}
	l.state, l.at, l.depth, l.hops = resolved, at, depth, hops
	return nil
}
