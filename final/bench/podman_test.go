package bench

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/minibox-lab/minibox/internal/podmantest"
)

// newPodman pulls image into a podman of its own (internal/podmantest:
// storage, configuration and cgroups apart from the machine's, all
// removed when b ends), or says why podman is left out: not installed, or
// it fails to run a container here.
func newPodman(b *testing.B, image string) (*podmantest.Podman, string) {
	b.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		return nil, "podman is not installed (Debian package podman): its lines are skipped"
	}
	p := podmantest.New(b)
	if out, err := p.Cmd("pull", "--quiet", "--tls-verify=false", image).CombinedOutput(); err != nil {
		b.Fatalf("podman pull: %v\n%s", err, out)
	}
	if out, err := p.Run("--rm", "--network", "none", image, "true").CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("podman fails here, its lines are skipped: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return p, ""
}
