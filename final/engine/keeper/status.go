package keeper

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Ended is how a kept container ended, in a file beside its record
// (Handover.StatusFile), written by the keeper as soon as it has reaped
// the container and before it executes the finish. The finish records
// the status itself; the file is for when it cannot: a finish that does
// not start, or refuses (another build), leaves the record saying
// running with no supervisor, and the next command, which recovers it as
// a killed supervisor's, takes the status from here instead of SIGKILL's.
type Ended struct {
	Pid        int       `json:"pid"` // the init's: the run it ended, not an earlier one's
	Status     int       `json:"status"`
	FinishedAt time.Time `json:"finishedAt"`
}

// WriteEnded writes e to path, whole or not at all (write, then rename(2)).
func WriteEnded(path string, e Ended) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ended-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a rename: no such file, nothing done
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Close()
	} else {
		tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadEnded reads what WriteEnded wrote at path.
func ReadEnded(path string) (Ended, error) {
	var e Ended
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, &e)
	}
	return e, err
}
