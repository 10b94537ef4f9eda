package cli

// pull, images and rmi: docker's commands on the engine's image store
// (final/image), in the data root that stage 06 uses too.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/minibox-lab/minibox/final/image"
	"github.com/minibox-lab/minibox/internal/cleanup"
)

// ImageInUse says whether a container in the data root uses the image with
// this id (12 hex digits): rmi refuses to remove it without -f. The engine
// sets it; until then no image is in use.
var ImageInUse = func(dataRoot, id string) bool { return false }

// dataRootFlag adds --root to cmd, the data root: $MINIBOX_ROOT, else
// /var/lib/minibox (as `minibox cleanup` and the stages decide).
func dataRootFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "root", "", "data root `DIR` (default $MINIBOX_ROOT, else "+cleanup.DefaultDataRoot+")")
}

func newPullCmd(s *streams) *cobra.Command {
	var root string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "pull [--insecure] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Long: `Download an image from a registry into the data root's image store
($ROOT/images, an OCI image layout) and unpack its layers ($ROOT/layers).
NAME is docker's: busybox is docker.io/library/busybox:latest. Every digest
is checked (manifest, config, layers, the layers' diff_ids). Plain HTTP is
used for this machine (localhost, 127.0.0.0/8, ::1) or with --insecure;
any other registry is spoken to over HTTPS. Ctrl-C leaves no image.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := image.Open(cleanup.DataRoot(root))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			img, err := store.Pull(ctx, args[0], image.PullOptions{Insecure: insecure, Progress: s.out, Terminal: isTerminal(s.out)})
			if err != nil {
				if ctx.Err() != nil {
					return &exitError{code: 130, err: fmt.Errorf("pull %s: interrupted; no image was stored", args[0])}
				}
				return err
			}
			fmt.Fprintln(s.out, img.Name)
			return nil
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP (and any certificate) for a registry not on this machine")
	dataRootFlag(cmd, &root)
	return cmd
}

func newImagesCmd(s *streams) *cobra.Command {
	var root, format string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "images [-q] [--format json]",
		Short: "List the images in the store",
		Long: `List the images of the data root's store, newest first, as docker images
does: REPOSITORY, TAG, IMAGE ID (12 hex digits of the config's digest),
CREATED and SIZE (what a pull downloads: config and compressed layers).
An image kept for its containers after rmi -f shows as <none> <none>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "" && format != "json" && format != "table" {
				return &exitError{code: 1, err: fmt.Errorf("--format %q: expected json or table", format)}
			}
			store, err := image.Open(cleanup.DataRoot(root))
			if err != nil {
				return err
			}
			list, err := store.List()
			if err != nil {
				return err
			}
			switch {
			case quiet:
				printImageIDs(s.out, list)
			case format == "json":
				return printImagesJSON(s.out, list, time.Now())
			default:
				printImagesTable(s.out, list, time.Now())
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only image ids")
	cmd.Flags().StringVar(&format, "format", "", "json: one JSON object per image, as docker --format json")
	dataRootFlag(cmd, &root)
	return cmd
}

// repoTag is an image's REPOSITORY and TAG columns.
func repoTag(img *image.Image) (string, string) {
	if img.Name == "" {
		return "<none>", "<none>"
	}
	return image.SplitName(img.Name)
}

// created is the CREATED column: "5 minutes ago".
func created(img *image.Image, now time.Time) string {
	if img.Created().IsZero() {
		return "N/A"
	}
	return humanDuration(now.Sub(img.Created())) + " ago"
}

func printImagesTable(w io.Writer, list []*image.Image, now time.Time) {
	tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0) // docker's table
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
	for _, img := range list {
		repo, tag := repoTag(img)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo, tag, img.ID, created(img, now), image.HumanSize(img.Size))
	}
	tw.Flush()
}

// printImageIDs prints each image's id once (an image with two names has
// one id: rmi $(minibox images -q) removes each once).
func printImageIDs(w io.Writer, list []*image.Image) {
	seen := map[string]bool{}
	for _, img := range list {
		if !seen[img.ID] {
			seen[img.ID] = true
			fmt.Fprintln(w, img.ID)
		}
	}
}

// imageJSON is one line of images --format json, docker's fields.
type imageJSON struct {
	Containers   string
	CreatedAt    string
	CreatedSince string
	Digest       string
	ID           string
	Repository   string
	SharedSize   string
	Size         string
	Tag          string
	UniqueSize   string
	VirtualSize  string
}

func printImagesJSON(w io.Writer, list []*image.Image, now time.Time) error {
	enc := json.NewEncoder(w)
	for _, img := range list {
		repo, tag := repoTag(img)
		createdAt := ""
		if !img.Created().IsZero() {
			createdAt = img.Created().Format("2006-01-02 15:04:05 -0700 MST")
		}
		row := imageJSON{
			Containers: "N/A", CreatedAt: createdAt, CreatedSince: created(img, now),
			Digest: img.Digest.String(), ID: img.ID, Repository: repo, SharedSize: "N/A",
			Size: image.HumanSize(img.Size), Tag: tag, UniqueSize: "N/A", VirtualSize: image.HumanSize(img.Size),
		}
		if err := enc.Encode(row); err != nil {
			return err
		}
	}
	return nil
}

func newRmiCmd(s *streams) *cobra.Command {
	var root string
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi [-f] IMAGE...",
		Short: "Remove images",
		Long: `Remove images, as docker rmi does: by name only that name goes, and the
image with its last name; by id (or sha256 digest) every name goes (several
only with -f). The image's blobs and unpacked layers go unless another
image uses them. An image a container uses is refused; with -f it is only
untagged and kept, unnamed, while containers use it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := cleanup.DataRoot(root)
			store, err := image.Open(dir)
			if err != nil {
				return err
			}
			inUse := func(id string) bool { return ImageInUse(dir, id) }
			failed := 0
			for _, ref := range args {
				rm, err := store.RemoveReport(ref, force, inUse)
				for _, name := range rm.Untagged {
					fmt.Fprintf(s.out, "Untagged: %s\n", image.FamiliarName(name))
				}
				for _, d := range rm.Deleted {
					fmt.Fprintf(s.out, "Deleted: %s\n", d)
				}
				if err != nil {
					failed++
					if errors.Is(err, image.ErrNotFound) {
						err = fmt.Errorf("no such image: %s", ref)
					}
					fmt.Fprintln(s.err, "minibox: rmi:", err)
				}
			}
			if failed > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove every name of an image given by id; untag an image containers use")
	dataRootFlag(cmd, &root)
	return cmd
}

// humanDuration is docker's (go-units) duration: "About a minute",
// "3 hours", "2 weeks".
func humanDuration(d time.Duration) string {
	seconds := int(d.Seconds())
	minutes := int(d.Minutes())
	hours := int(d.Hours() + 0.5)
	switch {
	case seconds < 1:
		return "Less than a second"
	case seconds == 1:
		return "1 second"
	case seconds < 60:
		return fmt.Sprintf("%d seconds", seconds)
	case minutes == 1:
		return "About a minute"
	case minutes < 60:
		return fmt.Sprintf("%d minutes", minutes)
	case hours == 1:
		return "About an hour"
	case hours < 48:
		return fmt.Sprintf("%d hours", hours)
	case hours < 24*7*2:
		return fmt.Sprintf("%d days", hours/24)
	case hours < 24*30*2:
		return fmt.Sprintf("%d weeks", hours/24/7)
	case hours < 24*365*2:
		return fmt.Sprintf("%d months", hours/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}
