package testdb

// Processes, read from Linux's /proc: a process's state and parent, for Freeze and Thaw.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procStat returns the state letter and the parent pid of process pid, from
// /proc/<pid>/stat ("pid (comm) state ppid ..."; comm may hold spaces and parentheses).
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: cannot read state and parent", pid)
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err
}

// childrenOf returns the processes whose parent is pid, scanning /proc/*/stat.
func childrenOf(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue // not a process
		}
		if _, ppid, err := procStat(p); err == nil && ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids, nil
}

// waitState waits until process pid's state satisfies ok (a process that is gone counts as
// done), for at most stateTimeout.
func waitState(pid int, ok func(state byte) bool) error {
	deadline := time.Now().Add(stateTimeout)
	for {
		s, _, err := procStat(pid)
		if errors.Is(err, os.ErrNotExist) || err == nil && ok(s) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still in state %q after %v (%v)", pid, s, stateTimeout, err)
		}
		time.Sleep(statePoll)
	}
}

// stopped reports whether a process in state s runs no code: stopped by a signal (T), by a
// tracer (t), or exited and not yet reaped (Z, X). A child that exits while its postmaster
// is frozen stays a zombie until Thaw, since only its frozen parent can reap it.
func stopped(s byte) bool { return s == 'T' || s == 't' || s == 'Z' || s == 'X' }
