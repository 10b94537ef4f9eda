package cli

import (
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/minibox-lab/minibox/internal/stagediff"
	"github.com/minibox-lab/minibox/internal/stages"
)

func newDiffCmd(s *streams) *cobra.Command {
	return &cobra.Command{
		Use:   "diff N [M]",
		Short: "Show what stage N adds over stage N-1 (or M over N)",
		Long: `Show what a stage adds: a unified diff of the stage folders in your working
tree, coloured in a terminal, and a one-line summary of files and lines
added and removed.

Each stage is the previous one copied forward plus exactly one mechanism, so
minibox diff 2 shows namespaces and nothing else. The first stage has nothing
before it: minibox diff 1 shows it whole, every file as new.`,
		Example: `  minibox diff 1       # 01-chroot whole, every line added
  minibox diff 2       # 01-chroot → 02-namespaces
  minibox diff 1 3     # 01-chroot → 03-cgroups`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			nums := make([]int, len(args))
			for i, a := range args {
				n, err := strconv.Atoi(a)
				if err != nil {
					return fmt.Errorf("diff: expected stage numbers, got %q", a)
				}
				nums[i] = n
			}
			cwd, _ := os.Getwd()
			src, err := stages.FindSource(cwd)
			if err != nil {
				return err
			}
			newer, err := stages.Find(src, nums[len(nums)-1])
			if err != nil {
				return err
			}
			older, err := olderStage(src, nums, newer)
			if err != nil {
				return err
			}
			// The first stage has nothing before it: it is shown whole,
			// every file as new (older.Dir is "").
			diffs, err := stagediff.Diff(older.Dir, newer.Dir, older.Name, newer.Name)
			if err != nil {
				return err
			}
			stagediff.Print(s.out, diffs, isTerminal(s.out))
			return nil
		},
	}
}

// olderStage is the stage to diff against: the first number given, else
// the stage before newer; for the first stage, a zero Stage (no folder).
func olderStage(src string, nums []int, newer stages.Stage) (stages.Stage, error) {
	if len(nums) == 2 {
		return stages.Find(src, nums[0])
	}
	all, err := stages.List(src)
	if err != nil {
		return stages.Stage{}, err
	}
	var prev *stages.Stage
	for i := range all {
		if all[i].Number < newer.Number {
			prev = &all[i]
		}
	}
	if prev == nil {
		return stages.Stage{}, nil
	}
	return *prev, nil
}
