// Command gofloor checks minibox's Go floor for make lint: go.mod's go line
// is 1.22.x with no toolchain line, and no module in the build list asks for
// a newer Go. Students build with their distribution's Go (Ubuntu 24.04 has
// 1.22); a dependency that raised its go line would make their go command
// download a toolchain, which fails offline, or refuse (GOTOOLCHAIN=local).
//
//	go run ./scripts/gofloor [-max 1.22] [module dir]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	maxGo := flag.String("max", "1.22", "the Go floor: go.mod's go line must be MAX.x, and no dependency's may be above MAX")
	flag.Parse()
	dir := "."
	if flag.NArg() > 0 {
		dir = flag.Arg(0)
	}
	if err := check(dir, *maxGo, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gofloor:", err)
		os.Exit(1)
	}
}

// check runs every check on the module in dir and reports all problems at
// once, so one lint run shows everything to fix.
func check(dir, maxGo string, out io.Writer) error {
	limit, err := parseGoVersion(maxGo)
	if err != nil {
		return fmt.Errorf("-max: %w", err)
	}
	var problems []string
	mainProblems, err := checkGoMod(dir, maxGo, limit)
	if err != nil {
		return err
	}
	problems = append(problems, mainProblems...)
	mods, err := buildList(dir)
	if err != nil {
		return err
	}
	for _, m := range mods {
		v, err := parseGoVersion(m.GoVersion)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %s: go line %q: %v", m.Path, m.Version, m.GoVersion, err))
			continue
		}
		if v.after(limit) {
			problems = append(problems, fmt.Sprintf("%s %s needs go %s (above the floor %s): pin the newest version whose go.mod says go %s or lower", m.Path, m.Version, m.GoVersion, maxGo, maxGo))
		}
	}
	if len(problems) > 0 {
		return errors.New("the Go floor is broken:\n  - " + strings.Join(problems, "\n  - "))
	}
	fmt.Fprintf(out, "go floor %s: go.mod and %d dependencies ok\n", maxGo, len(mods))
	return nil
}

// checkGoMod checks the main module's go and toolchain lines.
func checkGoMod(dir, maxGo string, limit goVersion) ([]string, error) {
	var mod struct {
		Go        string
		Toolchain string
	}
	data, err := goCmd(dir, "mod", "edit", "-json")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &mod); err != nil {
		return nil, fmt.Errorf("read go.mod: %w", err)
	}
	var problems []string
	if v, err := parseGoVersion(mod.Go); err != nil || v.major != limit.major || v.minor != limit.minor {
		problems = append(problems, fmt.Sprintf("go.mod says go %q; the floor is go %s.x (go mod edit -go=%s.0)", mod.Go, maxGo, maxGo))
	}
	if mod.Toolchain != "" {
		problems = append(problems, fmt.Sprintf("go.mod has a toolchain line (%s): it makes an older go download that toolchain, which fails offline (go mod edit -toolchain=none)", mod.Toolchain))
	}
	return problems, nil
}

// module is one row of go list -m.
type module struct {
	Path      string
	Version   string
	GoVersion string // "" when the go.mod has no go line (then it predates 1.12) or was not read
	GoMod     string // "" when the go command did not need this go.mod (pruned module graph)
	Main      bool
}

// buildList returns every dependency in the build list with its go line.
// With a pruned module graph the go command lists some modules without
// reading their go.mod; those are asked for by version (a .mod download,
// cached after the first time).
//
// The go command runs on a scratch copy of go.mod and go.sum (-modfile),
// with -mod=mod: lint changes nothing in the tree, and a dependency that
// asks for a newer Go is listed and named here, where -mod=readonly would
// only say that go.mod needs updates.
func buildList(dir string) ([]module, error) {
	scratch, err := os.MkdirTemp("", "gofloor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	modfile := filepath.Join(scratch, "go.mod")
	if err := copyFile(filepath.Join(dir, "go.mod"), modfile); err != nil {
		return nil, err
	}
	if err := copyFile(filepath.Join(dir, "go.sum"), filepath.Join(scratch, "go.sum")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	flags := []string{"-mod=mod", "-modfile=" + modfile}

	mods, err := listModules(dir, append(flags, "all")...)
	if err != nil {
		return nil, err
	}
	var deps []module
	var unread []string
	for _, m := range mods {
		switch {
		case m.Main:
		case m.GoMod == "":
			unread = append(unread, m.Path+"@"+m.Version)
		default:
			deps = append(deps, m)
		}
	}
	if len(unread) > 0 {
		more, err := listModules(dir, append(flags, unread...)...)
		if err != nil {
			return nil, err
		}
		deps = append(deps, more...)
	}
	return deps, nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

func listModules(dir string, args ...string) ([]module, error) {
	data, err := goCmd(dir, append([]string{"list", "-m", "-json"}, args...)...)
	if err != nil {
		return nil, err
	}
	var mods []module
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var m module
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return mods, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read go list -m output: %w", err)
		}
		mods = append(mods, m)
	}
}

func goCmd(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// goVersion is a go line's version, release candidates counted as their
// release: only major and minor matter for the floor.
type goVersion struct{ major, minor int }

func (v goVersion) after(w goVersion) bool {
	return v.major > w.major || v.major == w.major && v.minor > w.minor
}

// parseGoVersion reads "1.22", "1.22.0", "1.23rc1". "" (a go.mod without
// a go line, written before Go 1.12) is older than any floor.
func parseGoVersion(s string) (goVersion, error) {
	if s == "" {
		return goVersion{1, 0}, nil
	}
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return goVersion{}, fmt.Errorf("not a Go version: %q", s)
	}
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return goVersion{}, fmt.Errorf("not a Go version: %q", s)
	}
	// The minor may carry a pre-release suffix: 1.23rc1.
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(parts[1])
	}
	minor, err := strconv.Atoi(parts[1][:digits])
	if err != nil {
		return goVersion{}, fmt.Errorf("not a Go version: %q", s)
	}
	return goVersion{major, minor}, nil
}
