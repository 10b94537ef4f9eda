package main

// commit saves a kept container's writable layer as a layer tar that stacks
// on the same layers below, or as an image: its image's layers plus that
// one (docker commit). overlayfs's whiteouts become the OCI format's .wh.
// entries again.

import (
	"archive/tar"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// commit writes kept container ID's upper to OUT.tar and prints its
// digest. The same files always give the same bytes: entries in path
// order, numeric owners, whole seconds, no access or change times.
func commit(args []string) int {
	flags := flag.NewFlagSet("commit", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	root := flags.String("root", "", "")
	verbose := flags.Bool("v", false, "")
	if flags.Parse(args) != nil || flags.NArg() != 2 {
		fail(2, "commit: expected [-v] [--root DIR] ID OUT.tar|NAME[:TAG]\n%s", usage)
	}
	if *verbose {
		os.Setenv(traceEnv, "1")
	}
	id, file := flags.Arg(0), flags.Arg(1)
	if len(id) != 12 || strings.Trim(id, "0123456789abcdef") != "" {
		fail(2, "commit: %q is not a container id (12 hex digits, as --keep printed)", id)
	}
	dir := filepath.Join(dataRoot(*root), "containers", id)
	upper := filepath.Join(dir, "upper")
	// Only a kept container that has ended: a running one could swap a
	// directory of its upper for a symlink while we read it as root.
	if _, err := os.Stat(filepath.Join(dir, "kept")); err != nil {
		fail(1, "commit: no ended container %s kept by --keep (%v)", id, err)
	}
	if !strings.HasSuffix(file, ".tar") {
		return commitImage(dataRoot(*root), dir, file) // ID NAME: an image
	}
	out, err := os.Create(file)
	if err != nil {
		fail(1, "commit: %v", err)
	}
	sum := sha256.New()
	err = writeLayerTar(upper, io.MultiWriter(out, sum))
	if err2 := out.Close(); err == nil {
		err = err2
	}
	if err != nil {
		os.Remove(file)
		fail(1, "commit: %v", err)
	}
	narrate("tar -cf %s -C %s .   # whiteouts as .wh. files", file, upper)
	fmt.Printf("sha256:%x  %s\n", sum.Sum(nil), file)
	return 0
}

// writeLayerTar writes upper's files to w as a layer tar.
func writeLayerTar(upper string, w io.Writer) error {
	tw := tar.NewWriter(w)
	links := map[uint64]string{} // inode → first name: hard links stay links
	err := filepath.WalkDir(upper, func(path string, _ fs.DirEntry, err error) error {
		if err == nil && path != upper {
			err = addToLayer(tw, upper, path, links)
		}
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	return err
}

// commitImage stores the container's layer as a blob and a new image on
// top of the one it ran: the same layers plus this one, the same config
// with one more diff_id and history entry. It prints the new image's id.
func commitImage(root, dir, name string) int {
	data, err := os.ReadFile(filepath.Join(dir, "image"))
	if err != nil {
		fail(1, "commit: container %s did not run from an image alone (no --layer): `%s commit %[1]s OUT.tar` saves its layer", filepath.Base(dir), stage)
	}
	s, err := openStore(root)
	var img *image
	if err == nil {
		img, err = s.loadImage(digest.Digest(data))
	}
	if err != nil {
		fail(1, "commit: %v", err)
	}
	upper := filepath.Join(dir, "upper")
	if err := img.addLayer(s, stage+" commit "+filepath.Base(dir), upper, func(w io.Writer) error { return writeLayerTar(upper, w) }); err != nil {
		fail(1, "commit: %v", err)
	}
	desc, err := s.writeImage(img)
	if err == nil {
		err = s.tag(name, desc)
	}
	if err != nil {
		fail(1, "commit: %v", err)
	}
	fmt.Printf("sha256:%s\n", img.manifest.Config.Digest.Encoded()) // the image id, as docker prints it
	return 0
}

// addLayer stores the tar that write writes (the files of from) as a blob
// and puts it on top of img: one more layer, its diff_id (the same digest:
// the tar is not compressed) and a history entry. Commit and build's COPY,
// ADD and RUN all make their layers so.
func (img *image) addLayer(s *store, createdBy, from string, write func(io.Writer) error) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw)) }()
	defer pr.Close() // a failed putBlob stops the writer
	layer, size, err := s.putBlob(pr, "")
	if err != nil {
		return err
	}
	narrate("tar -cf - -C %s . > %s", from, s.blobPath(layer))
	img.manifest.Layers = append(img.manifest.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: layer, Size: size})
	img.config.RootFS.DiffIDs = append(img.config.RootFS.DiffIDs, layer)
	img.addHistory(createdBy, false)
	return nil
}

// addHistory records one step in the config's history, and when.
func (img *image) addHistory(createdBy string, empty bool) {
	now := time.Now().UTC()
	img.config.Created = &now
	img.config.History = append(img.config.History, ocispec.History{Created: &now, CreatedBy: createdBy, EmptyLayer: empty})
}

// addToLayer writes one file of upper as tar entries.
func addToLayer(tw *tar.Writer, upper, path string, links map[uint64]string) error {
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	name, _ := filepath.Rel(upper, path)
	st := info.Sys().(*syscall.Stat_t)
	if info.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0 { // overlay's whiteout
		return writeHeader(tw, &tar.Header{Name: filepath.Join(filepath.Dir(name), ".wh."+info.Name()), Mode: 0o644, ModTime: info.ModTime()})
	}
	target, _ := os.Readlink(path)
	hdr, err := tar.FileInfoHeader(info, target)
	if err != nil {
		return err
	}
	hdr.Name = name
	if first, seen := links[st.Ino]; seen && info.Mode().IsRegular() {
		hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
	} else if st.Nlink > 1 && info.Mode().IsRegular() {
		links[st.Ino] = name
	}
	if err := writeHeader(tw, hdr); err != nil || !info.IsDir() {
		return copyContent(tw, hdr, path, err)
	}
	opaque := make([]byte, 1) // an opaque directory hides all below it
	if n, _ := unix.Lgetxattr(path, "trusted.overlay.opaque", opaque); n == 1 && opaque[0] == 'y' {
		return writeHeader(tw, &tar.Header{Name: filepath.Join(name, ".wh..wh..opq"), Mode: 0o644, ModTime: info.ModTime()})
	}
	return nil
}

// copyContent writes a regular file's bytes after its header.
func copyContent(tw *tar.Writer, hdr *tar.Header, path string, err error) error {
	if err != nil || hdr.Typeflag != tar.TypeReg {
		return err
	}
	f, err := os.Open(path)
	if err == nil {
		_, err = io.Copy(tw, f)
		f.Close()
	}
	return err
}

// writeHeader leaves out what differs between two commits of the same files.
func writeHeader(tw *tar.Writer, hdr *tar.Header) error {
	hdr.Uname, hdr.Gname, hdr.AccessTime, hdr.ChangeTime = "", "", time.Time{}, time.Time{}
	hdr.ModTime, hdr.Format = hdr.ModTime.Truncate(time.Second), tar.FormatPAX
	return tw.WriteHeader(hdr)
}
