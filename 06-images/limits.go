package main

// The limit flags, with docker's names and formats.

import (
	"flag"
	"fmt"
	"math"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

// limits are the resource limits asked for on the command line. Zero means
// the flag was not given: no limit.
type limits struct {
	memory   int64 // bytes (--memory 64m)
	cpuQuota int64 // µs of CPU time per cpuPeriod (--cpus 0.5 → 50000)
	pids     int64 // processes and threads (--pids-limit 20)
}

// cpuPeriod is the length of a CPU accounting period in µs: the kernel's
// default, and what docker uses. --cpus N allows N×cpuPeriod µs per period.
const cpuPeriod = 100000

// addFlags registers --memory, --cpus and --pids-limit on fs.
func (l *limits) addFlags(fs *flag.FlagSet) {
	fs.Func("memory", "", func(s string) (err error) {
		l.memory, err = parseMemory(s)
		return err
	})
	fs.Func("cpus", "", func(s string) (err error) {
		l.cpuQuota, err = parseCPUs(s)
		return err
	})
	fs.Func("pids-limit", "", func(s string) (err error) {
		l.pids, err = strconv.ParseInt(s, 10, 64)
		if err != nil || l.pids < 1 {
			return fmt.Errorf("%q is not a positive whole number (leave out --pids-limit for no limit)", s)
		}
		return nil
	})
}

// memorySize is docker's format: a number, then an optional binary unit,
// case-insensitive: 512k, 64m, 64MB, 1.5g, 1GiB, 100b.
var memorySize = regexp.MustCompile(`(?i)^([0-9]+(?:\.[0-9]+)?) ?(b|[kmg](?:i?b)?)?$`)

// parseMemory turns "64m" into 67108864.
func parseMemory(s string) (int64, error) {
	m := memorySize.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size: use a number with an optional unit b, k, m or g (64m, 1g)", s)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	if unit := strings.ToLower(m[2]); unit != "" {
		n *= map[byte]float64{'b': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30}[unit[0]]
	}
	switch {
	case n >= math.MaxInt64/2:
		return 0, fmt.Errorf("%s is too large", s)
	case n < 1:
		return 0, fmt.Errorf("%s: the limit must be above 0 (leave out --memory for no limit)", s)
	}
	return int64(n), nil
}

// parseCPUs turns "0.5" into a quota of 50000 µs per 100000 µs period.
func parseCPUs(s string) (int64, error) {
	cpus, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(cpus) || math.IsInf(cpus, 0) {
		return 0, fmt.Errorf("%q is not a number of CPUs: use a decimal such as 0.5 or 2", s)
	}
	// The kernel refuses a quota below 1 ms (1000 µs), so 0.01 is the
	// smallest share; more CPUs than the machine has limits nothing.
	if n := runtime.NumCPU(); cpus < 0.01 || cpus > float64(n) {
		return 0, fmt.Errorf("%s: the range is 0.01 to %d, as there are %d CPUs", s, n, n)
	}
	return int64(math.Round(cpus * cpuPeriod)), nil
}
