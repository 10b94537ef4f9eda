package cli

// push, login, logout, save, load, tag, history and image prune: docker's
// commands for moving images between machines (final/image), and the
// `image` group (image ls, rm, pull, push, …) docker has beside them.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/minibox-lab/minibox/final/image"
	"github.com/minibox-lab/minibox/internal/cleanup"
)

// interruptible is a context Ctrl-C (or SIGTERM, SIGHUP) cancels.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
}

func newPushCmd(s *streams) *cobra.Command {
	var root string
	var insecure, quiet bool
	cmd := &cobra.Command{
		Use:   "push [--insecure] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Long: `Upload an image of the store to the registry its name says
(127.0.0.1:5000/app:v1 goes to 127.0.0.1:5000, as app:v1 in docker's naming
goes to Docker Hub). Blobs the registry has are skipped, blobs another
repository of the same registry has are mounted from there, the others are
uploaded (in chunks when big), the manifest last. Credentials come from
minibox login (docker's config.json).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := image.Open(cleanup.DataRoot(root))
			if err != nil {
				return err
			}
			ctx, stop := interruptible()
			defer stop()
			o := image.PushOptions{Insecure: insecure, Progress: s.out, Terminal: isTerminal(s.out)}
			if quiet {
				o.Progress = nil
			}
			res, err := store.Push(ctx, args[0], o)
			if err != nil {
				if ctx.Err() != nil {
					return &exitError{code: 130, err: fmt.Errorf("push %s: interrupted", args[0])}
				}
				return err
			}
			if quiet {
				fmt.Fprintln(s.out, image.FamiliarName(res.Name))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP (and any certificate) for a registry not on this machine")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress, only the name pushed")
	dataRootFlag(cmd, &root)
	return cmd
}

// defaultRegistry is the registry login and logout speak to without one.
const defaultRegistry = "docker.io"

func newLoginCmd(s *streams) *cobra.Command {
	var user, password string
	var passwordStdin, insecure bool
	cmd := &cobra.Command{
		Use:   "login [-u USER] [-p PASSWORD | --password-stdin] [REGISTRY]",
		Short: "Log in to a registry",
		Long: `Check a user name and password with a registry (Docker Hub without
REGISTRY) and store them, as docker does, in $DOCKER_CONFIG/config.json,
else ~/.docker/config.json ($REGISTRY_AUTH_FILE, podman's, wins when set),
readable by you alone. pull and push use them. Without -u or -p, they are
asked for on the terminal.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			registry := defaultRegistry
			if len(args) == 1 {
				registry = args[0]
			}
			if password != "" {
				if passwordStdin {
					return &exitError{code: 1, err: errors.New("--password and --password-stdin are mutually exclusive")}
				}
				fmt.Fprintln(s.err, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
			}
			creds, err := readCredentials(s, user, password, passwordStdin)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			ctx, stop := interruptible()
			defer stop()
			if err := image.Login(ctx, registry, creds, image.LoginOptions{Insecure: insecure}); err != nil {
				return err
			}
			if err := image.SaveCredentials(registry, creds); err != nil {
				return err
			}
			if path, err := image.ConfigPath(); err == nil {
				fmt.Fprintf(s.err, "WARNING! Your password will be stored unencrypted in %s.\n", path)
			}
			fmt.Fprintln(s.out, "Login Succeeded")
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "user name")
	cmd.Flags().StringVarP(&password, "password", "p", "", "password (visible to other users in ps: prefer --password-stdin)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP (and any certificate) for a registry not on this machine")
	return cmd
}

// readCredentials takes the user name and password from the flags, the
// standard input (--password-stdin) or the terminal.
func readCredentials(s *streams, user, password string, fromStdin bool) (image.Credentials, error) {
	in := bufio.NewReader(s.in)
	if fromStdin {
		if user == "" {
			return image.Credentials{}, errors.New("--password-stdin needs --username")
		}
		data, err := io.ReadAll(io.LimitReader(in, 64<<10))
		if err != nil {
			return image.Credentials{}, err
		}
		password = strings.TrimRight(string(data), "\r\n")
	}
	if user == "" {
		fmt.Fprint(s.out, "Username: ")
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			return image.Credentials{}, errors.New("no user name given")
		}
		user = strings.TrimSpace(line)
	}
	if password == "" && !fromStdin {
		fmt.Fprint(s.out, "Password: ")
		if f, ok := s.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(s.out)
			if err != nil {
				return image.Credentials{}, err
			}
			password = string(b)
		} else {
			line, _ := in.ReadString('\n')
			password = strings.TrimRight(line, "\r\n")
		}
	}
	if user == "" || password == "" {
		return image.Credentials{}, errors.New("a user name and a password are both needed")
	}
	return image.Credentials{Username: user, Password: password}, nil
}

func newLogoutCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "logout [REGISTRY]",
		Short: "Forget the credentials of a registry",
		Long:  `Remove the credentials minibox login stored for REGISTRY (Docker Hub without one).`,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			registry := defaultRegistry
			if len(args) == 1 {
				registry = args[0]
			}
			removed, err := image.RemoveCredentials(registry)
			if err != nil {
				return err
			}
			key := image.RegistryKey(registry)
			if !removed {
				fmt.Fprintf(s.out, "Not logged in to %s\n", key)
				return nil
			}
			fmt.Fprintf(s.out, "Removing login credentials for %s\n", key)
			return nil
		},
	}
}

func newSaveCmd(s *streams) *cobra.Command {
	var root, output, format string
	cmd := &cobra.Command{
		Use:   "save [-o FILE] [--format oci|docker-archive] IMAGE...",
		Short: "Write images to a tar archive",
		Long: `Write images to a tar archive (standard output without -o): an OCI image
layout (skopeo's oci-archive:, umoci), with docker's manifest.json beside it
so that docker load and podman load read it too; --format docker-archive
writes the older docker save layout (uncompressed layer.tar files).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := image.Open(cleanup.DataRoot(root))
			if err != nil {
				return err
			}
			ctx, stop := interruptible()
			defer stop()
			if output == "" || output == "-" {
				if isTerminal(s.out) {
					return &exitError{code: 1, err: errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")}
				}
				return store.Save(ctx, s.out, args, format)
			}
			if err := store.SaveFile(ctx, output, args, format); err != nil {
				if ctx.Err() != nil {
					return &exitError{code: 130, err: fmt.Errorf("save: interrupted; %s not written", output)}
				}
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to `FILE` instead of standard output")
	cmd.Flags().StringVar(&format, "format", image.FormatOCI, "oci or docker-archive")
	dataRootFlag(cmd, &root)
	return cmd
}

func newLoadCmd(s *streams) *cobra.Command {
	var root, input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [-i FILE] [-q]",
		Short: "Read images from a tar archive",
		Long: `Read images from a tar archive (standard input without -i): an OCI image
layout (minibox save, skopeo's oci-archive:), or a docker save archive (old
or new layout, skopeo's docker-archive:), plain or compressed (gzip, zstd). Every blob is checked against its
digest and every layer against its diff_id; the names come last, so a load
that fails names nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := image.Open(cleanup.DataRoot(root))
			if err != nil {
				return err
			}
			in := s.in
			if input != "" && input != "-" {
				f, err := os.Open(input)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			} else if isTerminal(in) {
				return &exitError{code: 1, err: errors.New("requested load from stdin, but stdin is empty: use -i FILE or redirect")}
			}
			ctx, stop := interruptible()
			defer stop()
			res, err := store.Load(ctx, in)
			if err != nil {
				if ctx.Err() != nil {
					return &exitError{code: 130, err: errors.New("load: interrupted; no image was named")}
				}
				return err
			}
			for _, n := range res.Names {
				fmt.Fprintf(s.out, "Loaded image: %s\n", image.FamiliarName(n))
			}
			for _, id := range res.IDs {
				fmt.Fprintf(s.out, "Loaded image ID: %s\n", id)
			}
			_ = quiet // docker's -q hides a progress bar minibox does not draw
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "read from `FILE` instead of standard input")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress (there is none)")
	dataRootFlag(cmd, &root)
	return cmd
}

func newTagCmd(s *streams) *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "tag SOURCE[:TAG] TARGET[:TAG]",
		Short: "Give an image another name",
		Long: `Give the image SOURCE (a name, id or digest) the name TARGET, as docker
tag does: 127.0.0.1:5000/app:v1 names it for a push to 127.0.0.1:5000.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := image.Open(cleanup.DataRoot(root))
			if err != nil {
				return err
			}
			if err := store.Tag(args[0], args[1]); err != nil {
				if errors.Is(err, image.ErrNotFound) {
					return fmt.Errorf("no such image: %s", args[0])
				}
				return err
			}
			return nil
		},
	}
	dataRootFlag(cmd, &root)
	return cmd
}

func newHistoryCmd(s *streams) *cobra.Command {
	var root string
	var noTrunc, quiet bool
	cmd := &cobra.Command{
		Use:   "history [--no-trunc] [-q] IMAGE",
		Short: "Show how an image was made",
		Long: `Show the steps that made an image, newest first, from its config's history
(docker's columns: IMAGE, CREATED, CREATED BY, SIZE, COMMENT). SIZE is the
step's layer as stored (compressed), 0B for a step that made no layer.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := image.Open(cleanup.DataRoot(root))
			if err != nil {
				return err
			}
			hist, err := store.History(args[0])
			if err != nil {
				if errors.Is(err, image.ErrNotFound) {
					return fmt.Errorf("no such image: %s", args[0])
				}
				return err
			}
			printHistory(s.out, hist, noTrunc, quiet, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not shorten CREATED BY")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only image ids")
	dataRootFlag(cmd, &root)
	return cmd
}

// historyWidth is where docker cuts CREATED BY.
const historyWidth = 45

func printHistory(w io.Writer, hist []image.HistoryEntry, noTrunc, quiet bool, now time.Time) {
	if quiet {
		for _, h := range hist {
			fmt.Fprintln(w, h.ID)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tCREATED\tCREATED BY\tSIZE\tCOMMENT")
	for _, h := range hist {
		createdAt := "N/A"
		if !h.Created.IsZero() {
			createdAt = humanDuration(now.Sub(h.Created)) + " ago"
		}
		by := strings.ReplaceAll(h.CreatedBy, "\t", " ")
		if !noTrunc && len([]rune(by)) > historyWidth {
			by = string([]rune(by)[:historyWidth-1]) + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.ID, createdAt, by, image.HumanSize(h.Size), h.Comment)
	}
	tw.Flush()
}

func newImagePruneCmd(s *streams) *cobra.Command {
	var root string
	var all, force bool
	cmd := &cobra.Command{
		Use:   "prune [-a] [-f]",
		Short: "Remove unused images",
		Long: `Remove the dangling images (unnamed ones), or with -a every image no
container uses, then every blob and unpacked layer no image uses any more.
Asks first, unless -f.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !force {
				what := "all dangling images"
				if all {
					what = "all images without at least one container associated to them"
				}
				fmt.Fprintf(s.out, "WARNING! This will remove %s.\nAre you sure you want to continue? [y/N] ", what)
				answer, _ := bufio.NewReader(s.in).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return nil
				}
			}
			dir := cleanup.DataRoot(root)
			store, err := image.Open(dir)
			if err != nil {
				return err
			}
			rep, err := store.Prune(all, func(id string) bool { return ImageInUse(dir, id) })
			if len(rep.Untagged)+len(rep.Deleted) > 0 {
				fmt.Fprintln(s.out, "Deleted Images:")
				for _, n := range rep.Untagged {
					fmt.Fprintf(s.out, "untagged: %s\n", image.FamiliarName(n))
				}
				for _, d := range rep.Deleted {
					fmt.Fprintf(s.out, "deleted: %s\n", d)
				}
				fmt.Fprintln(s.out)
			}
			fmt.Fprintf(s.out, "Total reclaimed space: %s\n", image.HumanSize(rep.Reclaimed))
			return err
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove every image no container uses, not only dangling ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask")
	dataRootFlag(cmd, &root)
	return cmd
}

// newImageCmd is docker's `image` group: the image commands under one
// name (image ls is images, image rm is rmi).
func newImageCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images (image ls, rm, pull, push, tag, history, save, load, prune)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	ls := newImagesCmd(s)
	ls.Use, ls.Aliases = "ls [-q] [--format json]", []string{"list"}
	rm := newRmiCmd(s)
	rm.Use, rm.Aliases = "rm [-f] IMAGE...", []string{"remove"}
	cmd.AddCommand(ls, rm, newPullCmd(s), newPushCmd(s), newTagCmd(s), newHistoryCmd(s),
		newSaveCmd(s), newLoadCmd(s), newImagePruneCmd(s))
	return cmd
}
