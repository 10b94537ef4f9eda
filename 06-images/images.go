package main

// images lists the store's names, as docker images does.

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
	"time"
)

// images prints REPOSITORY, TAG, IMAGE ID, CREATED and SIZE (the bytes of
// its blobs: what a pull downloads), newest first.
func images(args []string) int {
	flags := flag.NewFlagSet("images", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	root := flags.String("root", "", "")
	if flags.Parse(args) != nil || flags.NArg() != 0 {
		fail(2, "images: expected [--root DIR]\n%s", usage)
	}
	s, err := openStore(dataRoot(*root))
	var list []*image
	if err == nil {
		list, err = s.images()
	}
	if err != nil {
		fail(1, "images: %v", err)
	}
	sort.SliceStable(list, func(i, j int) bool { return created(list[i]).After(created(list[j])) })
	w := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
	for _, img := range list {
		repo, tag := shortRepository(img.Name)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", repo, tag, img.ID(), ago(created(img)), humanSize(img.size()))
	}
	w.Flush()
	return 0
}

// images loads every named image.
func (s *store) images() ([]*image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var list []*image
	for _, m := range idx.Manifests {
		img, err := s.loadImage(m.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Annotations[nameAnnotation], err)
		}
		img.Name = m.Annotations[nameAnnotation]
		list = append(list, img)
	}
	return list, nil
}

func (img *image) size() int64 {
	n := img.manifest.Config.Size
	for _, l := range img.manifest.Layers {
		n += l.Size
	}
	return n
}

func created(img *image) time.Time {
	if img.config.Created == nil {
		return time.Time{}
	}
	return *img.config.Created
}

// ago is docker's "5 minutes ago".
func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case t.IsZero():
		return "N/A"
	case d < time.Minute:
		return "Less than a minute ago"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	}
}

// humanSize is docker's 4.3MB (powers of 1000).
func humanSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.3gGB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.3gMB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.3gkB", float64(n)/1e3)
	}
	return fmt.Sprintf("%dB", n)
}
