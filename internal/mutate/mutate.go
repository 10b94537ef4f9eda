// Package mutate breaks the minibox source on purpose, to prove that a test
// or a lesson notices: it copies the source tree to a scratch directory and
// applies small textual edits (mutations) to the copy, each removing one
// mechanism. The guard test uses it to drop a clone flag, and the mutation
// check to remove what each lesson teaches (docs/mutations.md).
package mutate

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Mutation is one small source edit: in File, the text Old, which must occur
// exactly once, becomes New.
type Mutation struct {
	Name   string // short and unique: "01-no-chdir"
	File   string // relative to the source root, slash-separated: "01-chroot/main.go"
	Old    string // the exact text to replace
	New    string // what replaces it
	Lesson int    // the lesson whose --check must fail on the mutated tree
	Why    string // the mechanism removed, and what the lesson shows of it
}

// treeParts are what building the stages and running the lessons need from
// the source root (final/ is the engine that lesson 7 runs); stageFolder
// matches the stages (01-chroot, …).
var (
	treeParts   = []string{"go.mod", "go.sum", "cmd", "internal", "lessons", "final"}
	stageFolder = regexp.MustCompile(`^[0-9][0-9]-`)
)

// skipped are names never copied, at any depth: version control and build
// output, which nothing in a mutated copy needs.
var skipped = map[string]bool{".git": true, "bin": true}

// Copy copies the parts of the minibox source tree at src that building
// and running the lessons need (go.mod, go.sum, the stage folders, cmd/,
// internal/, lessons/) into dst, which must not exist yet or be empty.
func Copy(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("read the source tree: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	for _, e := range entries {
		if !wanted(e.Name()) {
			continue
		}
		if err := copyPath(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// wanted reports whether a top-level entry of the source tree is copied.
func wanted(name string) bool {
	if skipped[name] {
		return false
	}
	for _, p := range treeParts {
		if name == p {
			return true
		}
	}
	return stageFolder.MatchString(name)
}

// copyPath copies a file, a symbolic link or a directory tree, keeping
// permission bits (a script in testdata stays executable).
func copyPath(src, dst string) error {
	info, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	switch {
	case info.IsDir():
		return copyDir(src, dst, info.Mode().Perm())
	case info.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		if err := os.Symlink(target, dst); err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		return nil
	case info.Mode().IsRegular():
		return copyFile(src, dst, info.Mode().Perm())
	}
	return nil // sockets, pipes, devices: nothing a build reads
}

func copyDir(src, dst string, perm os.FileMode) error {
	if err := os.MkdirAll(dst, perm|0o700); err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	for _, e := range entries {
		if skipped[e.Name()] {
			continue
		}
		if err := copyPath(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, perm os.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("copy %s: %w", src, cerr)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// Apply makes the mutation in the tree at root. It fails unless Old occurs
// exactly once in File: a mutation whose text the stage code no longer
// holds (or holds twice) must fail loudly, not leave the tree unbroken and
// let a check pass for the wrong reason.
func (m Mutation) Apply(root string) error {
	if m.Old == "" || m.Old == m.New {
		return fmt.Errorf("mutation %s: Old must be non-empty and differ from New", m.Name)
	}
	path := filepath.Join(root, filepath.FromSlash(m.File))
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("mutation %s: %w", m.Name, err)
	}
	text := string(data)
	if n := strings.Count(text, m.Old); n != 1 {
		return fmt.Errorf("mutation %s: %q occurs %d times in %s, want exactly once (the stage code changed: update the mutation)", m.Name, m.Old, n, m.File)
	}
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("mutation %s: %w", m.Name, err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(text, m.Old, m.New, 1)), info.Mode().Perm()); err != nil {
		return fmt.Errorf("mutation %s: %w", m.Name, err)
	}
	return nil
}

// ApplyAll applies mutations in order; several may edit one file.
func ApplyAll(root string, ms []Mutation) error {
	for _, m := range ms {
		if err := m.Apply(root); err != nil {
			return err
		}
	}
	return nil
}

// Tree copies the source tree at src into dst and applies ms there: the
// usual first step of a mutation test.
func Tree(src, dst string, ms ...Mutation) error {
	if err := Copy(src, dst); err != nil {
		return err
	}
	return ApplyAll(dst, ms)
}

// cloneflagsField matches a stage's clone flags: `Cloneflags: A | B | C,`
// in its syscall.SysProcAttr literal, up to the comma that ends the field.
var cloneflagsField = regexp.MustCompile(`Cloneflags:[ \t]*([^,\n]+),`)

// WithoutCloneFlag returns the mutation that deletes flag (CLONE_NEWUTS, …)
// from the Cloneflags expression of file (relative to root): the edit a
// student makes in lesson 2's exercise. It is built from the file's own
// text, so a later stage that adds flags still gets the right edit; it
// fails if the file has no single Cloneflags expression naming flag.
func WithoutCloneFlag(root, file, flag string) (Mutation, error) {
	data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
	if err != nil {
		return Mutation{}, fmt.Errorf("remove %s: %w", flag, err)
	}
	fields := cloneflagsField.FindAllStringSubmatch(string(data), -1)
	if len(fields) != 1 {
		return Mutation{}, fmt.Errorf("remove %s: %s has %d Cloneflags expressions, want exactly one", flag, file, len(fields))
	}
	var kept []string
	found := false
	for _, term := range strings.Split(fields[0][1], "|") {
		term = strings.TrimSpace(term)
		if term == flag || strings.HasSuffix(term, "."+flag) {
			found = true
			continue
		}
		kept = append(kept, term)
	}
	if !found {
		return Mutation{}, fmt.Errorf("remove %s: not in the Cloneflags of %s: %s", flag, file, fields[0][0])
	}
	expr := strings.Join(kept, " | ")
	if expr == "" {
		expr = "0"
	}
	return Mutation{
		Name: "without-" + flag,
		File: file,
		Old:  fields[0][0],
		New:  "Cloneflags: " + expr + ",",
		Why:  "the child starts without its new " + flag + " namespace",
	}, nil
}
