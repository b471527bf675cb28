package web

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The overview's map: Natural Earth's land (world-atlas' TopoJSON, vendored) drawn once, at
// start, as one SVG path in an equirectangular projection; sites are circles over it.
const (
	mapWidth  = 960
	mapHeight = 480
)

// project places a longitude and latitude on the map.
func project(lon, lat float64) (x, y float64) {
	return (lon + 180) / 360 * mapWidth, (90 - lat) / 180 * mapHeight
}

// topology is the part of a TopoJSON document the map reads.
type topology struct {
	Type      string `json:"type"`
	Transform *struct {
		Scale     [2]float64 `json:"scale"`
		Translate [2]float64 `json:"translate"`
	} `json:"transform"`
	Arcs    [][][2]float64 `json:"arcs"`
	Objects map[string]struct {
		Type       string `json:"type"`
		Geometries []struct {
			Type string          `json:"type"`
			Arcs json.RawMessage `json:"arcs"`
		} `json:"geometries"`
	} `json:"objects"`
}

// landPath turns a TopoJSON topology's object into an SVG path ("M…Z" per ring).
func landPath(data []byte, object string) (string, error) {
	var t topology
	if err := json.Unmarshal(data, &t); err != nil {
		return "", fmt.Errorf("world map: %w", err)
	}
	obj, ok := t.Objects[object]
	if t.Type != "Topology" || !ok {
		return "", fmt.Errorf("world map: no object %q in the topology", object)
	}
	// Decode every arc to absolute longitudes and latitudes (quantized arcs are delta-encoded).
	arcs := make([][][2]float64, len(t.Arcs))
	for i, arc := range t.Arcs {
		var x, y float64
		pts := make([][2]float64, len(arc))
		for j, p := range arc {
			if t.Transform != nil {
				x, y = x+p[0], y+p[1]
				pts[j] = [2]float64{x*t.Transform.Scale[0] + t.Transform.Translate[0], y*t.Transform.Scale[1] + t.Transform.Translate[1]}
			} else {
				pts[j] = p
			}
		}
		arcs[i] = pts
	}
	var b strings.Builder
	ring := func(idx []int) error {
		first, lastX := true, 0.0
		for _, i := range idx {
			rev := i < 0
			if rev {
				i = ^i
			}
			if i >= len(arcs) {
				return fmt.Errorf("world map: arc %d of %d", i, len(arcs))
			}
			pts := arcs[i]
			for k := range pts {
				p := pts[k]
				if rev {
					p = pts[len(pts)-1-k]
				}
				if !first && k == 0 {
					continue // an arc starts where the one before it ended
				}
				x, y := project(p[0], p[1])
				// A ring that crosses the antimeridian jumps across the whole map: it goes on as
				// a new subpath there, or its fill would draw a hairline over the sea.
				if first || math.Abs(x-lastX) > mapWidth/2 {
					b.WriteByte('M')
					first = false
				} else {
					b.WriteByte('L')
				}
				lastX = x
				b.WriteString(strconv.FormatFloat(math.Round(x*10)/10, 'f', -1, 64))
				b.WriteByte(' ')
				b.WriteString(strconv.FormatFloat(math.Round(y*10)/10, 'f', -1, 64))
			}
		}
		b.WriteByte('Z')
		return nil
	}
	for _, g := range obj.Geometries {
		var polys [][][]int
		switch g.Type {
		case "Polygon":
			var p [][]int
			if err := json.Unmarshal(g.Arcs, &p); err != nil {
				return "", fmt.Errorf("world map: %w", err)
			}
			polys = [][][]int{p}
		case "MultiPolygon":
			if err := json.Unmarshal(g.Arcs, &polys); err != nil {
				return "", fmt.Errorf("world map: %w", err)
			}
		default:
			continue
		}
		for _, p := range polys {
			for _, r := range p {
				if err := ring(r); err != nil {
					return "", err
				}
			}
		}
	}
	return b.String(), nil
}

// dotRadius sizes a site's dot by its node count: its area grows with the count, within bounds.
func dotRadius(nodes int) float64 {
	r := 4 + 1.6*math.Sqrt(float64(nodes))
	return math.Round(min(r, 22)*10) / 10
}
