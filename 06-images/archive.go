package main

// save and load carry an image as one file, for a classroom without a
// registry: an OCI image layout in a tar (oci-layout, index.json and the
// blobs), which `skopeo copy oci-archive:FILE …` reads too.

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func save(args []string) int {
	flags := flag.NewFlagSet("save", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	root := flags.String("root", "", "")
	if flags.Parse(args) != nil || flags.NArg() != 2 {
		fail(2, "save: expected [--root DIR] NAME FILE\n%s", usage)
	}
	s, err := openStore(dataRoot(*root))
	var img *image
	if err == nil {
		img, err = s.lookup(flags.Arg(0))
	}
	if err == nil && img.Name == "" {
		err = fmt.Errorf("%s has no name: commit or build it under one first", flags.Arg(0))
	}
	if err == nil {
		err = s.save(img, flags.Arg(1))
	}
	if err != nil {
		fail(1, "save: %v", err)
	}
	fmt.Printf("saved %s (%d layers) to %s\n", img.Name, len(img.manifest.Layers), flags.Arg(1))
	return 0
}

// save writes the layout to a temporary file renamed to file once whole.
func (s *store) save(img *image, file string) error {
	manifest := img.desc
	if strings.Contains(manifest.MediaType, "docker") { // OCI tools want OCI types
		var err error
		if manifest, err = s.toOCI(img); err != nil {
			return err
		}
	}
	_, tag := shortRepository(img.Name)
	manifest.Annotations = map[string]string{nameAnnotation: img.Name, ocispec.AnnotationRefName: tag}
	idx := ocispec.Index{Versioned: ocispecVersioned, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{manifest}}
	index, _ := json.Marshal(idx)
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	blobs := []digest.Digest{manifest.Digest, img.manifest.Config.Digest}
	for _, l := range img.manifest.Layers {
		blobs = append(blobs, l.Digest)
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i] < blobs[j] })

	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+filepath.Base(file))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	go func(sigs <-chan os.Signal) { // Ctrl-C (signals.go): no half file left
		<-sigs
		os.Remove(tmp.Name())
		fail(130, "save: interrupted; %s not written", file)
	}(catchSignals())
	tw := tar.NewWriter(tmp)
	err = addBytes(tw, ocispec.ImageLayoutFile, layout)
	if err == nil {
		err = addBytes(tw, "index.json", index)
	}
	for i := 0; err == nil && i < len(blobs); i++ {
		if i == 0 || blobs[i] != blobs[i-1] {
			err = addBlob(tw, s, blobs[i])
		}
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = tmp.Chmod(0o644) // a file to hand around, not root's alone
	}
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err == nil {
		narrate("tar -cf %s oci-layout index.json blobs/sha256/…   # %d blobs", file, len(blobs))
	}
	return err
}

// toOCI rewrites a Docker schema-2 manifest with OCI media types (the
// same config and layers): a new manifest, with a digest of its own.
func (s *store) toOCI(img *image) (ocispec.Descriptor, error) {
	m := img.manifest
	m.MediaType, m.Config.MediaType = ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig
	m.Layers = append([]ocispec.Descriptor{}, m.Layers...)
	for i := range m.Layers {
		m.Layers[i].MediaType = ociLayerType(m.Layers[i].MediaType) // store.go
	}
	d, size, err := s.putJSON(m)
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: size}, err
}

func addBytes(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func addBlob(tw *tar.Writer, s *store, d digest.Digest) error {
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err == nil {
		err = tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + d.Encoded(), Mode: 0o644, Size: info.Size()})
	}
	if err == nil {
		_, err = io.Copy(tw, f)
	}
	return err
}

func load(args []string) int {
	flags := flag.NewFlagSet("load", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	root := flags.String("root", "", "")
	if flags.Parse(args) != nil || flags.NArg() != 1 {
		fail(2, "load: expected [--root DIR] FILE\n%s", usage)
	}
	s, err := openStore(dataRoot(*root))
	var names []string
	if err == nil {
		names, err = s.load(flags.Arg(0))
	}
	if err != nil {
		fail(1, "load %s: %v", flags.Arg(0), err)
	}
	for _, n := range names {
		fmt.Printf("Loaded image: %s\n", n)
	}
	return 0
}

// load puts every blob of the tar into the store, each checked against
// the digest its name claims, then names the images of its index.json.
func (s *store) load(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var idx ocispec.Index
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar of an OCI layout: %w", err)
		}
		name := path.Clean(hdr.Name)
		switch {
		case name == "index.json":
			err = json.NewDecoder(io.LimitReader(tr, 4<<20)).Decode(&idx)
		case strings.HasPrefix(name, "blobs/sha256/") && hdr.Typeflag == tar.TypeReg:
			d := digest.NewDigestFromEncoded(digest.SHA256, path.Base(name))
			if err = d.Validate(); err == nil {
				_, _, err = s.putBlob(tr, d)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return s.nameLoaded(idx)
}

// nameLoaded names each manifest of a loaded index, after checking that
// the store now has all of its blobs.
func (s *store) nameLoaded(idx ocispec.Index) ([]string, error) {
	var names []string
	for _, m := range idx.Manifests {
		name := m.Annotations[nameAnnotation]
		if name == "" {
			name = m.Annotations[ocispec.AnnotationRefName]
		}
		if name == "" {
			return nil, fmt.Errorf("manifest %s has no name (annotation %s or %s)", m.Digest, nameAnnotation, ocispec.AnnotationRefName)
		}
		img, err := s.loadImage(m.Digest)
		for i := 0; err == nil && i < len(img.manifest.Layers); i++ {
			_, err = os.Stat(s.blobPath(img.manifest.Layers[i].Digest))
		}
		if err == nil {
			err = s.tag(name, ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size})
		}
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", name, err)
		}
		full, _ := normalizeName(name)
		names = append(names, full)
	}
	if len(names) == 0 {
		return nil, errors.New("no image in its index.json")
	}
	return names, nil
}
