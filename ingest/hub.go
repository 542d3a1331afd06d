package ingest

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// The Hugging Face hub cache (huggingface_hub's snapshot_download, and so
// the datasets library's downloads) keeps one folder per repository,
// datasets--OWNER--NAME (models--, spaces--), laid out as:
//
//	blobs/SHA             every file's contents, named by its hash
//	refs/main             a ref's commit hash (refs/pr/1, refs/TAG likewise)
//	snapshots/COMMIT/...  the repository's files at that commit: symlinks
//	                      into blobs/ (one blob serves every snapshot that
//	                      holds the same bytes)
//
// A walk of that folder meets every file twice, once as a blob and once
// through a snapshot, and several snapshots hold several versions of the
// dataset. ingest reads one snapshot, through its paths (the blob names say
// nothing about what a file is), and records its commit in each document's
// lineage.

// ErrRevision: a hub cache repository whose revision to read cannot be
// chosen (several snapshots and no ref, or a --revision it does not hold).
// Not a data error: it is refused before anything is read.
var ErrRevision = errors.New("no revision to read")

// hubSnapshot is the snapshot chosen in one hub cache repository.
type hubSnapshot struct {
	repo   string // the repository folder (as walked)
	dir    string // repo/snapshots/COMMIT
	prefix string // the repository's path relative to the walk root, "" when it is the root
	commit string
	how    string // why this snapshot: "refs/main", "--revision v1.0", "the only snapshot"
}

// hubRepoNames are the prefixes huggingface_hub gives a repository's cache
// folder (repo_folder_name).
var hubRepoNames = []string{"datasets--", "models--", "spaces--"}

// isHubRepo reports whether dir is a hub cache repository folder: blobs/
// and snapshots/ folders, and refs/ or a name of huggingface_hub's making
// (so that a folder of the user's that merely has blobs/ and snapshots/ is
// not read as one).
func isHubRepo(dir string) bool {
	isDir := func(name string) bool {
		st, err := os.Stat(filepath.Join(dir, name))
		return err == nil && st.IsDir()
	}
	if !isDir("blobs") || !isDir("snapshots") {
		return false
	}
	base := filepath.Base(dir)
	return isDir("refs") || slices.ContainsFunc(hubRepoNames, func(p string) bool { return strings.HasPrefix(base, p) })
}

// chooseSnapshot picks the snapshot of the hub cache repository repo to
// read: the one --revision names (a ref under refs/, a commit, or a unique
// prefix of one of at least 7 hex digits), else the one refs/main names,
// else the only one. Several snapshots and no ref is refused, naming them:
// reading the newest by modification time would make the output depend on
// the order of downloads.
func chooseSnapshot(repo, revision string) (*hubSnapshot, error) {
	ents, err := os.ReadDir(filepath.Join(repo, "snapshots"))
	if err != nil {
		return nil, err
	}
	var snaps []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			snaps = append(snaps, e.Name())
		}
	}
	s := &hubSnapshot{repo: repo}
	pick := func(commit, how string) (*hubSnapshot, error) {
		if !slices.Contains(snaps, commit) {
			return nil, fmt.Errorf("%w: %s: %s names commit %s, which has no snapshot (snapshots: %s); download it again",
				ErrRevision, repo, how, commit, listOrNone(snaps))
		}
		s.commit, s.how, s.dir = commit, how, filepath.Join(repo, "snapshots", commit)
		return s, nil
	}
	if revision != "" {
		if commit, ok, err := readRef(repo, revision); err != nil {
			return nil, err
		} else if ok {
			return pick(commit, "--revision "+revision+" (refs/"+revision+")")
		}
		if slices.Contains(snaps, revision) {
			return pick(revision, "--revision "+revision)
		}
		var match []string
		if lower := strings.ToLower(revision); isLowerHex(lower) { // commits are lower-case hex; a copied ABCDEF1 means the same
			for _, c := range snaps {
				if strings.HasPrefix(c, lower) {
					match = append(match, c)
				}
			}
		}
		switch {
		case len(match) > 0 && len(revision) < 7:
			return nil, fmt.Errorf("%w: %s: --revision %s is too short to name a commit: give at least 7 hex digits (it begins %s)",
				ErrRevision, repo, revision, strings.Join(match, ", "))
		case len(match) == 1:
			return pick(match[0], "--revision "+revision)
		case len(match) > 1:
			return nil, fmt.Errorf("%w: %s: --revision %s is ambiguous: it begins the commits of %d snapshots (%s): give more of the commit",
				ErrRevision, repo, revision, len(match), strings.Join(match, ", "))
		}
		return nil, fmt.Errorf("%w: %s holds no ref or snapshot %q (refs: %s; snapshots: %s)",
			ErrRevision, repo, revision, listOrNone(refNames(repo)), listOrNone(snaps))
	}
	if commit, ok, err := readRef(repo, "main"); err != nil {
		return nil, err
	} else if ok {
		return pick(commit, "refs/main")
	}
	switch len(snaps) {
	case 0:
		return nil, fmt.Errorf("%w: %s has no snapshots: nothing was downloaded into it", ErrRevision, repo)
	case 1:
		return pick(snaps[0], "the only snapshot")
	}
	return nil, fmt.Errorf("%w: %s has %d snapshots and no refs/main: give --revision with one of %s",
		ErrRevision, repo, len(snaps), strings.Join(snaps, ", "))
}

// readRef returns the commit that refs/NAME of repo holds, and whether the
// ref exists. A name that would leave refs/ is no ref.
func readRef(repo, name string) (string, bool, error) {
	if name == "" || path.Clean(name) != name || strings.HasPrefix(name, "../") || name == ".." || path.IsAbs(name) {
		return "", false, nil
	}
	b, err := os.ReadFile(filepath.Join(repo, "refs", filepath.FromSlash(name)))
	if errors.Is(err, os.ErrNotExist) || isDirErr(repo, name) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", repo, err)
	}
	commit := strings.TrimSpace(string(b))
	if commit == "" || strings.ContainsAny(commit, `/\`) || commit == "." || commit == ".." {
		return "", false, fmt.Errorf("%w: %s: refs/%s holds %q, not a commit hash", ErrRevision, repo, name, commit)
	}
	return commit, true, nil
}

// isDirErr reports whether refs/NAME is a folder (refs/pr), which is no ref.
func isDirErr(repo, name string) bool {
	st, err := os.Stat(filepath.Join(repo, "refs", filepath.FromSlash(name)))
	return err == nil && st.IsDir()
}

// refNames lists repo's refs, slash-separated, for error messages.
func refNames(repo string) []string {
	var out []string
	root := filepath.Join(repo, "refs")
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// snapshotOf returns the hub cache repository and the commit of the
// snapshot that p (a path as given, symlinks unresolved) lies in, or "" and
// "": an INPUT given as snapshots/COMMIT, or as a folder or file in it,
// records its revision too.
func snapshotOf(p string) (repo, commit string) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", ""
	}
	for dir := abs; ; {
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ""
		}
		if filepath.Base(parent) == "snapshots" && isHubRepo(filepath.Dir(parent)) {
			return filepath.Dir(parent), filepath.Base(dir)
		}
		dir = parent
	}
}

// rootRevision is the commit recorded for the inputs under root when root
// lies in a snapshot. A --revision that names another commit is refused:
// the path given and the flag would disagree about what is read.
func rootRevision(root string, o *Options) (string, error) {
	repo, commit := snapshotOf(root)
	if commit == "" || o.Revision == "" {
		return commit, nil
	}
	s, err := chooseSnapshot(repo, o.Revision)
	if err != nil {
		return "", err
	}
	if s.commit != commit {
		return "", fmt.Errorf("%w: %s lies in snapshot %s, but --revision %s names %s: give the repository folder %s with --revision, or the snapshot without it",
			ErrRevision, root, commit, o.Revision, s.commit, repo)
	}
	return commit, nil
}

// hubRootSnapshot chooses the snapshot when the walk root is a hub cache
// repository's snapshots/ folder itself, so that its other revisions are
// passed by as they are when the repository folder is given.
func hubRootSnapshot(walkRoot string, o *Options) ([]*hubSnapshot, error) {
	repo := filepath.Dir(walkRoot)
	if filepath.Base(walkRoot) != "snapshots" || !isHubRepo(repo) {
		return nil, nil
	}
	s, err := chooseSnapshot(repo, o.Revision)
	if err != nil {
		return nil, err
	}
	return []*hubSnapshot{s}, nil
}

// hubDir handles folder p (rel from the walk root) of a walk: within a hub
// cache repository met before, blobs/, refs/ and the snapshots not chosen
// are skipped, with the reason; a hub cache repository itself gets its
// snapshot chosen and added to snaps.
func hubDir(p, rel string, o *Options, snaps *[]*hubSnapshot) (skip bool, why string, err error) {
	parent := filepath.Dir(p)
	for _, s := range *snaps {
		switch {
		case parent == s.repo && filepath.Base(p) == "blobs":
			return true, fmt.Sprintf("Hugging Face hub cache file contents: read through snapshots/%s", s.commit), nil
		case parent == s.repo && filepath.Base(p) == "refs":
			return true, fmt.Sprintf("Hugging Face hub cache refs: snapshot %s read (chosen by %s)", s.commit, s.how), nil
		case filepath.Dir(parent) == s.repo && filepath.Base(parent) == "snapshots" && p != s.dir:
			return true, fmt.Sprintf("Hugging Face hub cache revision not read: %s read (chosen by %s; --revision picks another)", s.commit, s.how), nil
		}
	}
	if !isHubRepo(p) {
		return false, "", nil
	}
	s, err := chooseSnapshot(p, o.Revision)
	if err != nil {
		return false, "", err
	}
	if rel != "." {
		s.prefix = rel
	}
	*snaps = append(*snaps, s)
	return false, "", nil
}

// hiddenReason says why the hidden file or folder p (named name) is passed
// by.
func hiddenReason(p, name string) string {
	if name == ".cache" {
		if st, err := os.Stat(filepath.Join(p, "huggingface")); err == nil && st.IsDir() {
			// huggingface-cli download --local-dir keeps its bookkeeping
			// (one .metadata file per download: commit, etag, time) here.
			return "huggingface-cli download --local-dir metadata, not documents"
		}
	}
	return "hidden"
}

// datasetMetaNames are the files the Hugging Face datasets library and the
// hub keep beside a dataset's data: none holds documents, and a one-line
// JSON one would otherwise be read as JSON lines without a text field.
var datasetMetaNames = []string{
	"dataset_infos.json", // the hub's legacy dataset card metadata
	"dataset_info.json",  // datasets' save_to_disk and cache: features, splits
	"dataset_dict.json",  // datasets' DatasetDict.save_to_disk: the split names
	"state.json",         // datasets' save_to_disk: the split's Arrow files and fingerprint
	"README.md",          // the dataset card
	// .gitattributes (git LFS patterns) is passed by as hidden, as every
	// dot file is.
}

// datasetMetaReason says why a file named name is passed by, or "".
func datasetMetaReason(name string) string {
	if slices.Contains(datasetMetaNames, name) {
		return "Hugging Face dataset metadata (" + name + "), not documents"
	}
	return ""
}
