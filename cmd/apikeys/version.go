package main

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// version and commit say which build this is, set by the linker as make build does
// (-ldflags "-X main.version=... -X main.commit=..."); a build without them reports what
// the Go toolchain recorded (its module version; the commit when built with -buildvcs).
var (
	version = ""
	commit  = ""
)

// buildVersion says which build this is: the version, the commit it was built from (with
// "+dirty" when the work tree had changes) and its time, and the Go release, as the Go
// toolchain records them in the binary (go version -m shows the same).
func buildVersion() string {
	v := version
	info, ok := debug.ReadBuildInfo()
	if v == "" && ok && info.Main.Version != "" {
		v = info.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	commit, at := commit, ""
	dirty := false
	if ok && commit == "" {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	parts := []string{}
	if commit != "" {
		hash, suffix, _ := strings.Cut(commit, "+")
		if len(hash) > 12 {
			hash = hash[:12]
		}
		if commit = hash; dirty || suffix == "dirty" {
			commit += "+dirty"
		}
		parts = append(parts, "commit "+commit)
	} else {
		parts = append(parts, "commit unknown")
	}
	if at != "" {
		parts = append(parts, at)
	}
	parts = append(parts, runtime.Version())
	return v + " (" + strings.Join(parts, ", ") + ")"
}
