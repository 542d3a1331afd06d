package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and revision are stamped by the Makefile's builds
// (-ldflags "-X main.version=... -X main.revision=...", from git describe
// --always --dirty and git rev-parse HEAD; "unknown" where git is not
// there). Go's own VCS stamping is off on some machines (-buildvcs=false)
// and absent from builds outside a checkout, so it is only the fallback.
var (
	version  string
	revision string
)

// buildInfo is what estkit --version and estkit version print.
type buildInfo struct {
	Version  string `json:"version"`  // git describe --always --dirty, a module version, or (devel)
	Revision string `json:"revision"` // the commit, -dirty when the tree was modified; unknown when none was recorded
	Go       string `json:"go"`
	Platform string `json:"platform"` // GOOS/GOARCH
}

// currentBuild describes this binary: the stamped version and revision,
// else the module version and VCS revision Go recorded, else unknown.
func currentBuild() buildInfo {
	b := buildInfo{Version: version, Revision: revision, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if b.Version == "" && ok {
		b.Version = bi.Main.Version
	}
	if b.Revision == "" && ok {
		var dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if b.Revision != "" {
			b.Revision += dirty
		}
	}
	if b.Version == "" {
		b.Version = "unknown"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	return b
}

// String is one line of space-separated fields, the same for
// estkit --version and estkit version: "estkit VERSION REVISION GO
// GOOS/GOARCH" (no field holds a space).
func (b buildInfo) String() string {
	return fmt.Sprintf("estkit %s %s %s %s", b.Version, b.Revision, b.Go, b.Platform)
}

// buildVersion is what manifests record as the estkit that wrote them:
// "VERSION REVISION".
func buildVersion() string {
	b := currentBuild()
	return b.Version + " " + b.Revision
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the estkit version, the commit it was built from, and the Go toolchain and platform",
		Long: `version prints one line, "estkit VERSION REVISION GO GOOS/GOARCH", as
estkit --version does (with --json, an object with those fields). make
stamps VERSION (git describe --always --dirty) and REVISION (the commit);
a plain go build leaves Go's own record, or unknown.`,
		Example: `  estkit version
  estkit --json version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b := currentBuild()
			if g.json {
				return printJSON(g.stdout, b)
			}
			_, err := fmt.Fprintln(g.stdout, b)
			return err
		},
	}
}
