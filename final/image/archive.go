package image

// save and load carry images as one tar file, for a machine without a
// registry, grown up from stage 06's (06-images/archive.go).
//
// save writes an OCI image layout (oci-layout, index.json, blobs/sha256/…,
// what `skopeo copy oci-archive:FILE` and umoci read) with docker's
// manifest.json beside it, as `docker save` has written since Docker 25:
// docker, podman and skopeo's docker-archive: read it too. --format
// docker-archive writes the older docker save layout instead
// (manifest.json, <config hex>.json, <diff_id hex>/layer.tar uncompressed).
//
// load reads all of these: an OCI layout tar (skopeo's oci-archive: too),
// a docker save archive old or new. Every blob is hashed on the way in
// (a blob stored under blobs/sha256/HEX must have that digest; the layers
// are unpacked and checked against their diff_ids), and the names are
// written last: a load that fails or is interrupted names nothing.

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/minibox-lab/minibox/internal/lazyregexp"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Save formats.
const (
	FormatOCI           = "oci"            // an OCI layout (+ docker's manifest.json)
	FormatDockerArchive = "docker-archive" // the pre-OCI docker save layout
)

// dockerManifest is one image of docker save's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// savedImage is one image to save and the names it is saved under.
type savedImage struct {
	img      *Image
	manifest []byte // the manifest as saved (OCI media types)
	desc     ocispec.Descriptor
	names    []string // full names
}

// SaveFile saves refs to file, through a temporary file beside it renamed
// once whole: an interrupted save leaves no half archive.
func (s *Store) SaveFile(ctx context.Context, file string, refs []string, format string) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+filepath.Base(file))
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	defer tmp.Close()
	err = s.Save(ctx, tmp, refs, format)
	if err == nil {
		err = tmp.Chmod(0o644) // a file to hand around, not root's alone
	}
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", file, err)
	}
	return nil
}

// Save writes the images refs name to w as a tar, in format (FormatOCI
// if "").
func (s *Store) Save(ctx context.Context, w io.Writer, refs []string, format string) error {
	if format == "" {
		format = FormatOCI
	}
	if format != FormatOCI && format != FormatDockerArchive {
		return fmt.Errorf("save: format %q: expected %s or %s", format, FormatOCI, FormatDockerArchive)
	}
	unlock, err := s.flock(gcLock, unix.LOCK_SH) // no blob goes while it is read
	if err != nil {
		return err
	}
	defer unlock()
	images, err := s.savedImages(refs)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	if format == FormatOCI {
		err = s.writeOCI(ctx, tw, images)
	} else {
		err = s.writeDockerArchive(ctx, tw, images)
	}
	if err == nil {
		err = tw.Close()
	}
	return err
}

// savedImages finds each ref's image, gathering the names of one image
// (saved once, under each of its names given).
func (s *Store) savedImages(refs []string) ([]*savedImage, error) {
	var out []*savedImage
	byDigest := map[digest.Digest]*savedImage{}
	for _, ref := range refs {
		matches, err := s.match(ref)
		if err != nil {
			return nil, fmt.Errorf("save: %w", err)
		}
		d := matches[0].desc.Digest
		si := byDigest[d]
		if si == nil {
			img, err := s.loadImage(d)
			if err != nil {
				return nil, fmt.Errorf("save %s: %w", ref, err)
			}
			si = &savedImage{img: img}
			if si.manifest, si.desc, err = s.ociManifest(img); err != nil {
				return nil, fmt.Errorf("save %s: %w", ref, err)
			}
			byDigest[d] = si
			out = append(out, si)
		}
		for _, m := range matches {
			if m.name != "" && !containsString(si.names, m.name) {
				si.names = append(si.names, m.name)
			}
		}
	}
	return out, nil
}

// ociManifest is img's manifest as saved: the stored bytes when they are
// OCI's, else rewritten with OCI media types (the same config and layers,
// so the same image id; a manifest digest of its own), because umoci and
// other OCI tools refuse Docker's types in an OCI layout.
func (s *Store) ociManifest(img *Image) ([]byte, ocispec.Descriptor, error) {
	data, err := s.readBlob(img.Digest, maxManifest)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	m := img.Manifest
	if m.MediaType == ocispec.MediaTypeImageManifest || m.MediaType == "" { // the field is optional in OCI's
		return data, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: img.Digest, Size: int64(len(data))}, nil
	}
	m.MediaType = ocispec.MediaTypeImageManifest
	m.Config.MediaType = ocispec.MediaTypeImageConfig
	m.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
	for i := range m.Layers {
		m.Layers[i].MediaType = ociLayerType(m.Layers[i].MediaType)
	}
	if data, err = json.Marshal(m); err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return data, ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, nil
}

// writeOCI writes the OCI layout and docker's manifest.json.
func (s *Store) writeOCI(ctx context.Context, tw *tar.Writer, images []*savedImage) error {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	var docker []dockerManifest
	blobs := map[digest.Digest]bool{}
	var order []digest.Digest
	add := func(d digest.Digest) {
		if !blobs[d] {
			blobs[d] = true
			order = append(order, d)
		}
	}
	for _, si := range images {
		if len(si.names) == 0 {
			idx.Manifests = append(idx.Manifests, si.desc)
		}
		dm := dockerManifest{Config: "blobs/sha256/" + si.img.FullID().Encoded()}
		for _, name := range si.names {
			d := si.desc
			_, tag := SplitName(name)
			d.Annotations = map[string]string{NameAnnotation: name, ocispec.AnnotationRefName: tag}
			idx.Manifests = append(idx.Manifests, d)
			if !strings.Contains(name, "@") {
				dm.RepoTags = append(dm.RepoTags, FamiliarName(name))
			}
		}
		add(si.img.FullID())
		for _, l := range si.img.Manifest.Layers {
			dm.Layers = append(dm.Layers, "blobs/sha256/"+l.Digest.Encoded())
			add(l.Digest)
		}
		docker = append(docker, dm)
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	index, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	manifestJSON, err := json.Marshal(docker)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{ocispec.ImageLayoutFile, layout}, {"index.json", index}, {"manifest.json", manifestJSON}} {
		if err := addBytes(tw, f.name, f.data); err != nil {
			return err
		}
	}
	if err := addBytes(tw, "blobs/", nil); err != nil { // directories, as docker writes them
		return err
	}
	if err := addBytes(tw, "blobs/sha256/", nil); err != nil {
		return err
	}
	for _, si := range images {
		if !blobs[si.desc.Digest] {
			blobs[si.desc.Digest] = true
			if err := addBytes(tw, "blobs/sha256/"+si.desc.Digest.Encoded(), si.manifest); err != nil {
				return err
			}
		}
	}
	for _, d := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.addBlob(tw, "blobs/sha256/"+d.Encoded(), d); err != nil {
			return err
		}
	}
	return nil
}

// writeDockerArchive writes docker save's older layout: each layer
// uncompressed as <diff_id hex>/layer.tar, the config as <hex>.json.
func (s *Store) writeDockerArchive(ctx context.Context, tw *tar.Writer, images []*savedImage) error {
	var docker []dockerManifest
	repositories := map[string]map[string]string{}
	written := map[string]bool{}
	for _, si := range images {
		cfg := si.img.FullID().Encoded() + ".json"
		dm := dockerManifest{Config: cfg}
		if !written[cfg] {
			written[cfg] = true
			if err := s.addBlob(tw, cfg, si.img.FullID()); err != nil {
				return err
			}
		}
		for i, l := range si.img.Manifest.Layers {
			name := si.img.Config.RootFS.DiffIDs[i].Encoded() + "/layer.tar"
			dm.Layers = append(dm.Layers, name)
			if written[name] {
				continue
			}
			written[name] = true
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := s.addUncompressed(tw, name, l.Digest, si.img.Config.RootFS.DiffIDs[i]); err != nil {
				return err
			}
		}
		for _, name := range si.names {
			if strings.Contains(name, "@") {
				continue
			}
			familiar := FamiliarName(name)
			dm.RepoTags = append(dm.RepoTags, familiar)
			repo, tag := SplitName(name)
			if repositories[repo] == nil {
				repositories[repo] = map[string]string{}
			}
			top := si.img.Config.RootFS.DiffIDs
			if len(top) > 0 {
				repositories[repo][tag] = top[len(top)-1].Encoded()
			}
		}
		docker = append(docker, dm)
	}
	manifestJSON, err := json.Marshal(docker)
	if err != nil {
		return err
	}
	if err := addBytes(tw, "manifest.json", manifestJSON); err != nil {
		return err
	}
	repos, _ := json.Marshal(repositories)
	return addBytes(tw, "repositories", repos)
}

// addBytes adds a file (a directory if name ends in /).
func addBytes(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}
	if strings.HasSuffix(name, "/") {
		hdr.Mode, hdr.Typeflag = 0o755, tar.TypeDir
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// addBlob adds blob d under name.
func (s *Store) addBlob(tw *tar.Writer, name string, d digest.Digest) error {
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err == nil {
		err = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: info.Size(), Typeflag: tar.TypeReg})
	}
	if err == nil {
		_, err = io.Copy(tw, f)
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	return nil
}

// addUncompressed adds layer blob d decompressed: read once to learn the
// size (a tar header comes first) and check the diff_id, then again.
func (s *Store) addUncompressed(tw *tar.Writer, name string, d, diffID digest.Digest) error {
	var size int64
	err := s.readUncompressed(d, func(r io.Reader) error {
		h := digest.SHA256.Digester()
		n, err := io.Copy(h.Hash(), r)
		if err == nil && h.Digest() != diffID {
			err = fmt.Errorf("%w: the uncompressed layer is %s, the config's diff_id says %s", ErrDigestMismatch, h.Digest(), diffID)
		}
		size = n
		return err
	})
	if err != nil {
		return fmt.Errorf("layer %s: %w", d, err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	return s.readUncompressed(d, func(r io.Reader) error {
		_, err := io.Copy(tw, r)
		return err
	})
}

// readUncompressed gives use the layer blob d decompressed.
func (s *Store) readUncompressed(d digest.Digest, use func(io.Reader) error) error {
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return err
	}
	defer f.Close()
	r, closeDecompressor, err := decompress(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		return err
	}
	defer closeDecompressor()
	return use(r)
}

// LoadResult is what a load named.
type LoadResult struct {
	Names []string        // full names given to the images
	IDs   []digest.Digest // images loaded without a name (docker: "Loaded image ID:")
}

// archiveFile is one file of the tar being loaded: in memory (the JSON
// files) or stored as a blob.
type archiveFile struct {
	data []byte
	blob digest.Digest
	size int64
}

// loader holds what a load read so far.
type loader struct {
	s     *Store
	files map[string]*archiveFile
	links map[string]string // a symbolic link's name -> its target (old docker save shares layers so)
}

// blobName is blobs/sha256/<64 hex>.
var blobName = lazyregexp.New(`^blobs/sha256/[0-9a-f]{64}$`)

// Load reads an image archive from r (an OCI layout tar, skopeo's
// oci-archive, a docker save archive old or new; plain, gzip or zstd)
// into the store. A load that fails names nothing; the blobs it stored
// before failing stay until image prune collects them.
func (s *Store) Load(ctx context.Context, r io.Reader) (LoadResult, error) {
	var res LoadResult
	unlock, err := s.flock(gcLock, unix.LOCK_SH) // prune frees nothing meanwhile
	if err != nil {
		return res, err
	}
	defer unlock()
	l := &loader{s: s, files: map[string]*archiveFile{}, links: map[string]string{}}
	if err := l.read(ctx, r); err != nil {
		return res, fmt.Errorf("load: %w", err)
	}
	type named struct {
		desc  ocispec.Descriptor
		names []string
	}
	var found []named
	if l.files["index.json"] != nil {
		descs, names, err := l.fromIndex()
		if err != nil {
			return res, fmt.Errorf("load: index.json: %w", err)
		}
		for i := range descs {
			found = append(found, named{descs[i], names[i]})
		}
	} else if l.files["manifest.json"] != nil {
		descs, names, err := l.fromDockerManifest()
		if err != nil {
			return res, fmt.Errorf("load: manifest.json: %w", err)
		}
		for i := range descs {
			found = append(found, named{descs[i], names[i]})
		}
	} else {
		return res, errors.New("load: neither index.json (an OCI layout) nor manifest.json (docker save) in the archive")
	}
	if len(found) == 0 {
		return res, errors.New("load: no image in the archive")
	}
	// Every image whole (blobs present, layers unpacked and checked
	// against their diff_ids) before any is named.
	for _, f := range found {
		if err := l.checkImage(ctx, f.desc.Digest); err != nil {
			return res, fmt.Errorf("load: image %s: %w", f.desc.Digest, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	for _, f := range found {
		img, err := s.loadImage(f.desc.Digest)
		if err != nil {
			return res, err
		}
		if len(f.names) == 0 {
			if err := s.addUnnamed(f.desc); err != nil {
				return res, err
			}
			res.IDs = append(res.IDs, img.FullID())
		}
		for _, n := range f.names {
			if err := s.tag(n, f.desc); err != nil {
				return res, err
			}
			res.Names = append(res.Names, n)
		}
	}
	return res, nil
}

// read reads the tar: blobs/sha256/HEX into the store (checked against
// HEX), the small JSON files into memory, any other file (an old docker
// save's layer.tar) into the store under the digest it hashes to.
func (l *loader) read(ctx context.Context, r io.Reader) error {
	// docker load takes a compressed archive too (docker save | gzip).
	stream, closeDecompressor, err := decompress(bufio.NewReaderSize(r, 1<<20))
	if err != nil {
		return err
	}
	defer closeDecompressor()
	tr := tar.NewReader(stream)
	seen := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if !seen {
				return errors.New("an empty archive")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a tar archive of images: %w", err)
		}
		seen = true
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			l.links[name] = path.Join(path.Dir(name), hdr.Linkname)
			continue
		case tar.TypeLink:
			l.links[name] = path.Clean(hdr.Linkname)
			continue
		case tar.TypeReg:
		default:
			continue // directories, and anything else, carry nothing
		}
		if err := l.readFile(tr, name, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

func (l *loader) readFile(r io.Reader, name string, size int64) error {
	if size < 0 || size > maxLayer {
		return fmt.Errorf("size %d out of bounds", size)
	}
	switch {
	case blobName.MatchString(name):
		d := digest.NewDigestFromEncoded(digest.SHA256, path.Base(name))
		if !l.s.hasBlob(d) {
			if err := l.s.putBlob(r, d, size); err != nil {
				return err
			}
		}
		l.files[name] = &archiveFile{blob: d, size: size}
	case (strings.HasSuffix(name, ".json") || name == "repositories" || name == ocispec.ImageLayoutFile) && size <= maxConfig:
		data, err := io.ReadAll(io.LimitReader(r, size))
		if err != nil {
			return err
		}
		l.files[name] = &archiveFile{data: data, size: size}
	default:
		d, err := l.s.putBlobAnyDigest(r, size)
		if err != nil {
			return err
		}
		l.files[name] = &archiveFile{blob: d, size: size}
	}
	return nil
}

// putBlobAnyDigest stores r as the blob it hashes to.
func (s *Store) putBlobAnyDigest(r io.Reader, size int64) (digest.Digest, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "ingest"), "tmp-")
	if err != nil {
		return "", fmt.Errorf("image store: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := digest.SHA256.Digester()
	n, err := io.Copy(io.MultiWriter(tmp, h.Hash()), io.LimitReader(r, size))
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("truncated: %d bytes of %d", n, size)
	}
	d := h.Digest()
	if s.hasBlob(d) {
		return d, nil
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	return d, os.Rename(tmp.Name(), s.blobPath(d))
}

// file is the archive's file name (following links), nil if absent.
func (l *loader) file(name string) *archiveFile {
	name = path.Clean(strings.TrimPrefix(name, "./"))
	for i := 0; i < 8; i++ {
		if f := l.files[name]; f != nil {
			return f
		}
		target, ok := l.links[name]
		if !ok {
			return nil
		}
		name = target
	}
	return nil
}

// blobOf stores the archive's file name as a blob (a JSON file read into
// memory becomes one) and returns its digest and size.
func (l *loader) blobOf(name string) (digest.Digest, int64, error) {
	f := l.file(name)
	if f == nil {
		return "", 0, fmt.Errorf("%s: not in the archive", name)
	}
	if f.blob == "" {
		f.blob = digest.FromBytes(f.data)
		if err := l.s.putBytes(f.data, f.blob); err != nil {
			return "", 0, err
		}
	}
	return f.blob, f.size, nil
}

// fromIndex reads an OCI layout's index.json: its manifests (an index in
// it resolved to this machine's platform) and each one's names (docker's
// io.containerd.image.name, else ref.name when it is a full name, else
// manifest.json's RepoTags for the same config).
func (l *loader) fromIndex() ([]ocispec.Descriptor, [][]string, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(l.files["index.json"].data, &idx); err != nil {
		return nil, nil, err
	}
	repoTags := l.repoTagsByConfig()
	var descs []ocispec.Descriptor
	var names [][]string
	pos := map[digest.Digest]int{}
	for _, d := range idx.Manifests {
		desc, err := l.resolve(d)
		if err != nil {
			return nil, nil, err
		}
		i, ok := pos[desc.Digest]
		if !ok {
			i = len(descs)
			pos[desc.Digest] = i
			descs = append(descs, desc)
			names = append(names, nil)
		}
		name, err := nameOf(d.Annotations)
		if err != nil {
			return nil, nil, err
		}
		if name == "" {
			if img, err := l.s.loadImage(desc.Digest); err == nil {
				for _, t := range repoTags[img.FullID()] {
					if n, err := NormalizeName(t); err == nil && !containsString(names[i], n) {
						names[i] = append(names[i], n)
					}
				}
			}
			continue
		}
		if !containsString(names[i], name) {
			names[i] = append(names[i], name)
		}
	}
	return descs, names, nil
}

// nameOf is the full name an index entry's annotations give, "" if none.
// A ref.name that is only a tag ("latest", as umoci and skopeo write it)
// names nothing.
func nameOf(ann map[string]string) (string, error) {
	if n := ann[NameAnnotation]; n != "" {
		return NormalizeName(n)
	}
	ref := ann[ocispec.AnnotationRefName]
	if ref == "" || !strings.ContainsAny(ref, "/:") {
		return "", nil
	}
	n, err := NormalizeName(ref)
	if err != nil {
		return "", nil // a ref.name that is not an image name (skopeo allows any)
	}
	return n, nil
}

// resolve returns the image manifest d names: d itself, or for an index
// (a multi-platform image) the manifest for this machine's platform.
func (l *loader) resolve(d ocispec.Descriptor) (ocispec.Descriptor, error) {
	if err := checkSHA256(d.Digest); err != nil {
		return d, err
	}
	for depth := 0; ; depth++ {
		data, err := l.s.readBlob(d.Digest, maxManifest)
		if err != nil {
			return d, err
		}
		var probe struct {
			MediaType string          `json:"mediaType"`
			Manifests json.RawMessage `json:"manifests"`
		}
		_ = json.Unmarshal(data, &probe)
		isIndex := probe.MediaType == ocispec.MediaTypeImageIndex || probe.MediaType == mediaTypeDockerList ||
			(probe.MediaType == "" && probe.Manifests != nil)
		if !isIndex {
			m, err := parseManifest(data)
			if err != nil {
				return d, fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			return ocispec.Descriptor{MediaType: orDefault(m.MediaType, ocispec.MediaTypeImageManifest), Digest: d.Digest, Size: int64(len(data))}, nil
		}
		if depth > 0 {
			return d, fmt.Errorf("index %s: an index inside an index", d.Digest)
		}
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			return d, fmt.Errorf("index %s: %w", d.Digest, err)
		}
		if d, err = pickPlatform(idx, runtimeArch(), hostVariant()); err != nil {
			return d, err
		}
	}
}

// repoTagsByConfig reads a docker save's manifest.json (if any): the
// RepoTags of each config.
func (l *loader) repoTagsByConfig() map[digest.Digest][]string {
	out := map[digest.Digest][]string{}
	f := l.files["manifest.json"]
	if f == nil {
		return out
	}
	var list []dockerManifest
	if json.Unmarshal(f.data, &list) != nil {
		return out
	}
	for _, m := range list {
		if d, _, err := l.blobOf(m.Config); err == nil {
			out[d] = append(out[d], m.RepoTags...)
		}
	}
	return out
}

// fromDockerManifest makes an OCI manifest for each image of an old
// docker save's manifest.json: its config and its layer files (each
// one's media type from its magic number: plain tar, gzip or zstd).
func (l *loader) fromDockerManifest() ([]ocispec.Descriptor, [][]string, error) {
	var list []dockerManifest
	if err := json.Unmarshal(l.files["manifest.json"].data, &list); err != nil {
		return nil, nil, err
	}
	var descs []ocispec.Descriptor
	var names [][]string
	for _, dm := range list {
		cfg, cfgSize, err := l.blobOf(dm.Config)
		if err != nil {
			return nil, nil, err
		}
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfg, Size: cfgSize},
			Layers:    []ocispec.Descriptor{},
		}
		for _, layer := range dm.Layers {
			d, size, err := l.blobOf(layer)
			if err != nil {
				return nil, nil, err
			}
			mediaType, err := l.s.layerMediaType(d)
			if err != nil {
				return nil, nil, err
			}
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: size})
		}
		data, err := json.Marshal(m)
		if err != nil {
			return nil, nil, err
		}
		md := digest.FromBytes(data)
		if err := l.s.putBytes(data, md); err != nil {
			return nil, nil, err
		}
		var ns []string
		for _, t := range dm.RepoTags {
			n, err := NormalizeName(t)
			if err != nil {
				return nil, nil, fmt.Errorf("RepoTags: %w", err)
			}
			ns = append(ns, n)
		}
		descs = append(descs, ocispec.Descriptor{MediaType: m.MediaType, Digest: md, Size: int64(len(data))})
		names = append(names, ns)
	}
	return descs, names, nil
}

// layerMediaType is the OCI layer type of blob d, by its magic number.
func (s *Store) layerMediaType(d digest.Digest) (string, error) {
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return "", err
	}
	defer f.Close()
	magic := make([]byte, 4)
	n, _ := io.ReadFull(f, magic)
	magic = magic[:n]
	switch {
	case n >= 2 && magic[0] == gzipMagic[0] && magic[1] == gzipMagic[1]:
		return ocispec.MediaTypeImageLayerGzip, nil
	case n == 4 && string(magic) == string(zstdMagic):
		return ocispec.MediaTypeImageLayerZstd, nil
	}
	return ocispec.MediaTypeImageLayer, nil
}

// checkImage checks that the store has every blob of manifest d, of the
// size the manifest says, and unpacks its layers (checking each against
// its diff_id).
func (l *loader) checkImage(ctx context.Context, d digest.Digest) error {
	img, err := l.s.loadImage(d)
	if err != nil {
		return err
	}
	for i, layer := range img.Manifest.Layers {
		if err := checkLayer(layer); err != nil {
			return err
		}
		if !l.s.hasBlob(layer.Digest) {
			return fmt.Errorf("layer %s: not in the archive", layer.Digest)
		}
		if err := l.s.checkPresentSize(layer); err != nil {
			return err
		}
		if _, err := l.s.unpacked(ctx, layer, img.Config.RootFS.DiffIDs[i]); err != nil {
			return err
		}
	}
	return nil
}

// addUnnamed records manifest desc in index.json without a name (an
// image loaded without one: found by its id, shown as <none>).
func (s *Store) addUnnamed(desc ocispec.Descriptor) error {
	return s.updateIndex(func(idx *ocispec.Index) error {
		for _, m := range idx.Manifests {
			if m.Digest == desc.Digest {
				return nil // it has a name, or is there unnamed already
			}
		}
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size})
		return nil
	})
}

// runtimeArch is this machine's architecture, as images name it.
func runtimeArch() string { return goruntime.GOARCH }
