package image

import (
	"encoding/json"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// HistoryEntry is one line of docker history: a step that made the image.
type HistoryEntry struct {
	// ID is the image's id on its top step, "<missing>" below (as docker
	// shows a pulled image: the steps below have no image of their own).
	ID        string
	Created   time.Time // zero if the config does not say
	CreatedBy string
	// Size is the step's layer blob (as stored: compressed, the size the
	// images command counts); 0 for a step that made no layer.
	Size       int64
	Comment    string
	EmptyLayer bool
}

// History lists the steps that made the image ref, newest first, from its
// config's history (each step that made a layer paired with the next
// layer); an image whose config has no history gets one step per layer.
func (s *Store) History(ref string) ([]HistoryEntry, error) {
	img, err := s.Lookup(ref)
	if err != nil {
		return nil, err
	}
	hist := img.Config.History
	if len(hist) == 0 {
		for range img.Manifest.Layers {
			hist = append(hist, ocispec.History{})
		}
	}
	var out []HistoryEntry
	layer := 0
	for _, h := range hist {
		e := HistoryEntry{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, EmptyLayer: h.EmptyLayer}
		if h.Created != nil {
			e.Created = *h.Created
		}
		if !h.EmptyLayer && layer < len(img.Manifest.Layers) {
			e.Size = img.Manifest.Layers[layer].Size
			layer++
		}
		out = append(out, e)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	if len(out) > 0 {
		out[0].ID = img.ID
	}
	return out, nil
}

// AddHistory appends h to cfg's history, for the layer just added to
// cfg.RootFS.DiffIDs unless h.EmptyLayer. A base image whose history
// names fewer layers than it has (some images have no history at all)
// first gets an entry for each unnamed one, at the bottom: history pairs
// its non-empty entries with the layers in order, and the new entry must
// meet the new layer.
func AddHistory(cfg *ocispec.Image, h ocispec.History) {
	layers := len(cfg.RootFS.DiffIDs)
	if !h.EmptyLayer {
		layers--
	}
	named := 0
	for _, old := range cfg.History {
		if !old.EmptyLayer {
			named++
		}
	}
	if missing := layers - named; missing > 0 {
		pad := make([]ocispec.History, missing)
		for i := range pad {
			pad[i].Created = h.Created // tools (umoci stat) expect a time in each
		}
		cfg.History = append(pad, cfg.History...)
	}
	cfg.History = append(cfg.History, h)
}

// CopyConfig is a deep copy of an image's config (its maps and slices
// too): a build step or a commit changes its copy, never the image's.
func CopyConfig(c ocispec.Image) ocispec.Image {
	data, _ := json.Marshal(c)
	var out ocispec.Image
	_ = json.Unmarshal(data, &out)
	return out
}
