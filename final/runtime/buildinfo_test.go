package runtime_test

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/minibox-lab/minibox/final/runtime"
)

// A companion that is running says which build it is (BuildInfo), and
// SameBuild checks it as Companion checks a companion's file: the same
// text passes; another Go, other build settings or text that is no
// build information does not.
func TestSameBuildFromItsText(t *testing.T) {
	mine := runtime.BuildInfo()
	require.NotEmpty(t, mine)
	assert.NoError(t, runtime.SameBuild(mine))

	bi, ok := debug.ReadBuildInfo()
	require.True(t, ok)
	older := strings.Replace(mine, "go\t"+bi.GoVersion+"\n", "go\tgo1.0\n", 1)
	assert.ErrorContains(t, runtime.SameBuild(older), "built by go1.0")

	bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "-tags", Value: "other"})
	assert.ErrorContains(t, runtime.SameBuild(bi.String()), "-tags=other")

	assert.Error(t, runtime.SameBuild("not\ta build"))
}
