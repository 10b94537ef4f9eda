package image

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A base without history (two layers, no entries): the new layer's entry
// still meets the new layer, the base's get blank ones.
func TestAddHistoryPadsAMissingBase(t *testing.T) {
	cfg := ocispec.Image{RootFS: ocispec.RootFS{DiffIDs: []digest.Digest{"sha256:a", "sha256:b", "sha256:c"}}}
	now := time.Now()
	AddHistory(&cfg, ocispec.History{CreatedBy: "RUN c", Created: &now})
	require.Len(t, cfg.History, 3)
	assert.Equal(t, &now, cfg.History[0].Created, "umoci stat needs a time in each entry")
	assert.Equal(t, "RUN c", cfg.History[2].CreatedBy)
	AddHistory(&cfg, ocispec.History{CreatedBy: "ENV x=1", EmptyLayer: true})
	require.Len(t, cfg.History, 4, "an empty layer's entry needs no padding")
	cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, "sha256:d")
	AddHistory(&cfg, ocispec.History{CreatedBy: "COPY d"})
	require.Len(t, cfg.History, 5, "a base whose history is whole gets nothing more")
}
