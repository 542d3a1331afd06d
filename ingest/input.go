package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/estkit/estkit/internal/durable"
	"github.com/klauspost/compress/zstd"

	"github.com/estkit/estkit/internal/store"
	"golang.org/x/sync/errgroup"
)

// Format names an input format.
type Format string

// The input formats. FormatAuto recognises the others per file from names
// and contents.
const (
	FormatAuto        Format = "auto"
	FormatOWT         Format = "owt"         // OpenWebText tars of xz tars of .txt (any nesting of tar and xz)
	FormatOWTParquet  Format = "owt-parquet" // OpenWebText on Hugging Face: parquet, column text
	FormatSlimPajama  Format = "slimpajama"  // jsonl(.zst): {"text", "meta": {"redpajama_set_name"}}
	FormatStarCoder   Format = "starcoder"   // parquet, column content plus repository columns
	FormatJSONL       Format = "jsonl"       // jsonl, .jsonl.zst, .jsonl.gz with --text-field
	FormatParquet     Format = "parquet"     // parquet with --text-column
	FormatText        Format = "text"        // one .txt file per document
	FormatArrow       Format = "arrow"       // Arrow IPC stream or file (the datasets library's cache), column text
	corpusOpenWebText        = "openwebtext"
	corpusSlimPajama         = "slimpajama"
	corpusStarCoder          = "starcoderdata"
)

// Formats lists every format a user may name, auto first.
var Formats = []Format{FormatAuto, FormatOWT, FormatOWTParquet, FormatSlimPajama, FormatStarCoder, FormatJSONL, FormatParquet, FormatText, FormatArrow}

// ParseFormat validates a format name.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("ingest: %w: format %q (want one of %v)", ErrFormat, s, Formats)
}

// Input is one input file.
type Input struct {
	Root    string // the INPUT argument it was found under
	Path    string // path on disk
	Rel     string // path relative to Root, slash-separated (the base name when Root is the file)
	Size    int64
	ModTime time.Time // with Size, tells a file that changed during the run
	SHA256  string    // hex; filled by hashInputs
	Format  Format    // never FormatAuto once resolved
	Corpus  string
	Lang    string // starcoder: the parent directory's name
	// Revision is the commit of the Hugging Face hub cache snapshot the
	// file was read through (hub.go), "" elsewhere.
	Revision string
	// remote: the input lies in object storage (Root is an s3:// URL);
	// Path is its local copy, "" until fetch downloads it.
	remote *remoteObject
}

var owtInnerName = regexp.MustCompile(`^urlsf_subset\d+-\d+_data\.xz$`)

// Magic numbers of the containers we recognise.
var (
	magicZstd    = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXZ      = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicGzip    = []byte{0x1f, 0x8b}
	magicParquet = []byte("PAR1")
)

// Ignored is an input file skipped during expansion of a directory because it
// is not of the requested format (for example a README beside the data).
type Ignored struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// expandInputs lists the input files under roots in a deterministic order
// (root order, then relative path) and resolves each file's format. It
// refuses, by name, what would make the output lie about its inputs: a
// name that is not valid UTF-8 (the manifest and the shards' lineage
// record names as UTF-8 strings), a file given directly that is not a
// regular file (a FIFO or device cannot be read twice, once to hash and
// once to parse, and /dev/zero never ends), and one file reached twice.
// A root that is an s3:// URL names one object or a prefix of objects
// (input_remote.go), downloaded through rem when first read.
func expandInputs(ctx context.Context, roots []string, o *Options, rem *remoteInputs) ([]*Input, []Ignored, error) {
	var inputs []*Input
	var ignored []Ignored
	seen := map[string]string{}
	ids := map[fileID]string{} // file identity → the path it was first listed by
	hubSeen := false           // a hub cache repository or snapshot among the inputs (for --revision)
	for _, root := range roots {
		if !utf8.ValidString(root) {
			return nil, nil, fmt.Errorf("ingest: %w: input name %q is not valid UTF-8; rename it", ErrInvalidUTF8, root)
		}
		var files []*Input
		var walkIgnored []Ignored
		single := false
		if store.IsURL(root) {
			var err error
			if files, walkIgnored, single, err = rem.list(ctx, root, o); err != nil {
				return nil, nil, err
			}
			ignored = append(ignored, walkIgnored...)
		} else if st, err := os.Stat(root); err != nil {
			return nil, nil, fmt.Errorf("ingest: %w", err)
		} else if !st.IsDir() {
			single = true
			if !st.Mode().IsRegular() {
				return nil, nil, fmt.Errorf("ingest: %w: %s is %s, not a regular file: ingest reads each input twice, to hash and to parse it, and needs a file that holds still",
					ErrFormat, root, durable.Kind(st.Mode()))
			}
			abs, _ := filepath.Abs(root)
			rev, err := rootRevision(root, o)
			if err != nil {
				return nil, nil, fmt.Errorf("ingest: %w", err)
			}
			hubSeen = hubSeen || rev != ""
			files = append(files, &Input{Root: root, Path: root, Rel: filepath.Base(root), Size: st.Size(), ModTime: st.ModTime(),
				Lang: filepath.Base(filepath.Dir(abs)), Revision: rev})
		} else {
			// A root that is a symlink to a folder is walked as that folder.
			walkRoot, err := filepath.EvalSymlinks(root)
			if err != nil {
				return nil, nil, fmt.Errorf("ingest: %w", err)
			}
			outInfo, _ := os.Stat(o.OutDir)
			rootRev, err := rootRevision(root, o)
			if err != nil {
				return nil, nil, fmt.Errorf("ingest: %w", err)
			}
			hubSeen = hubSeen || rootRev != ""
			// the hub cache repositories met, each with its chosen snapshot
			snaps, err := hubRootSnapshot(walkRoot, o)
			if err != nil {
				return nil, nil, fmt.Errorf("ingest: %w", err)
			}
			err = filepath.WalkDir(walkRoot, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				name := d.Name()
				rel, _ := filepath.Rel(walkRoot, p)
				rel = filepath.ToSlash(rel)
				if !utf8.ValidString(rel) {
					return fmt.Errorf("%w: file name %q under %s is not valid UTF-8; rename it", ErrInvalidUTF8, rel, root)
				}
				rev := rootRev
				if d.IsDir() {
					skip, why, err := hubDir(p, rel, o, &snaps)
					if err != nil {
						return err
					}
					if skip {
						walkIgnored = append(walkIgnored, Ignored{Path: rel, Reason: why})
						return filepath.SkipDir
					}
					hubSeen = hubSeen || len(snaps) > 0
				}
				// A file of a chosen snapshot is named by its path in the
				// repository, as on the hub: the commit is in its lineage.
				for _, s := range snaps {
					if inner, ok := strings.CutPrefix(p, s.dir+string(filepath.Separator)); ok {
						rel, rev = path.Join(s.prefix, filepath.ToSlash(inner)), s.commit
						break
					}
				}
				if d.IsDir() && outInfo != nil {
					if info, err := d.Info(); err == nil && os.SameFile(info, outInfo) {
						// The output directory inside an input root is not input.
						walkIgnored = append(walkIgnored, Ignored{Path: rel, Reason: "the output directory"})
						return filepath.SkipDir
					}
				}
				if p != walkRoot && strings.HasPrefix(name, ".") {
					// Hidden files and folders (.git, .cache, .gitattributes)
					// are not data; say so rather than pass them by silently.
					walkIgnored = append(walkIgnored, Ignored{Path: rel, Reason: hiddenReason(p, name)})
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
				if d.IsDir() {
					return nil
				}
				info, err := d.Info()
				if err != nil {
					return err
				}
				if d.Type()&fs.ModeSymlink != 0 {
					// Hugging Face's cache holds data files as symlinks to
					// blobs: follow links to files, not to folders (cycles).
					if info, err = os.Stat(p); err != nil {
						return fmt.Errorf("broken symlink %s: %w", p, err)
					}
					if info.IsDir() {
						walkIgnored = append(walkIgnored, Ignored{Path: rel, Reason: "symlink to a folder (not followed)"})
						return nil
					}
				}
				if !info.Mode().IsRegular() {
					walkIgnored = append(walkIgnored, Ignored{Path: rel, Reason: "not a regular file"})
					return nil
				}
				lang := path.Base(path.Dir(rel))
				if lang == "." {
					abs, _ := filepath.Abs(root)
					lang = filepath.Base(abs)
				}
				files = append(files, &Input{Root: root, Path: p, Rel: rel, Size: info.Size(), ModTime: info.ModTime(), Lang: lang, Revision: rev})
				return nil
			})
			if err != nil {
				if ctx.Err() != nil {
					return nil, nil, ctx.Err()
				}
				return nil, nil, fmt.Errorf("ingest: walk %s: %w", root, err)
			}
			sort.Slice(files, func(i, j int) bool { return files[i].Rel < files[j].Rel })
			ignored = append(ignored, walkIgnored...)
		}
		for _, in := range files {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			f, why, err := resolveFormat(ctx, in, o)
			if err != nil {
				return nil, nil, err
			}
			if f == "" {
				if single {
					return nil, nil, &InputError{File: in.Rel, Err: wrapf(ErrFormat, "%s", why)}
				}
				ignored = append(ignored, Ignored{Path: in.Rel, Reason: why})
				continue
			}
			in.Format = f
			in.Corpus = corpusOf(f, o)
			// The same file twice (named twice, through a symlink, or under
			// nested roots) would be ingested twice: refuse it by name.
			id, err := in.identity()
			if err != nil {
				return nil, nil, fmt.Errorf("ingest: %w", err)
			}
			if prev, ok := ids[id]; ok {
				return nil, nil, fmt.Errorf("ingest: %w: %s and %s are the same file; give each input once", ErrDuplicateInput, prev, in.where())
			}
			ids[id] = in.where()
			if prev, ok := seen[in.Rel]; ok {
				return nil, nil, fmt.Errorf("ingest: input path %s appears under both %s and %s: give roots whose relative paths differ", in.Rel, prev, root)
			}
			seen[in.Rel] = root
			inputs = append(inputs, in)
		}
	}
	if o.Revision != "" && !hubSeen {
		return nil, ignored, fmt.Errorf("ingest: --revision given, but no input is a Hugging Face hub cache repository (a datasets--OWNER--NAME folder with blobs/, refs/ and snapshots/)")
	}
	if len(inputs) == 0 {
		return nil, ignored, fmt.Errorf("ingest: no input files of format %s under %v", o.Format, roots)
	}
	// A filter that no input can apply would silently do nothing.
	has := func(f Format) bool {
		return slices.ContainsFunc(inputs, func(in *Input) bool { return in.Format == f })
	}
	if (len(o.IncludeSets) > 0 || len(o.ExcludeSets) > 0) && !has(FormatSlimPajama) {
		return nil, ignored, fmt.Errorf("ingest: --include-set/--exclude-set given, but no input is SlimPajama (give --format slimpajama if it is)")
	}
	if len(o.Langs) > 0 && !has(FormatStarCoder) {
		return nil, ignored, fmt.Errorf("ingest: --lang given, but no input is StarCoderData (give --format starcoder if it is)")
	}
	return inputs, ignored, nil
}

func corpusOf(f Format, o *Options) string {
	if o.Corpus != "" {
		return o.Corpus
	}
	switch f {
	case FormatOWT, FormatOWTParquet:
		return corpusOpenWebText
	case FormatSlimPajama:
		return corpusSlimPajama
	case FormatStarCoder:
		return corpusStarCoder
	}
	return string(f)
}

// resolveFormat returns the file's format, or "" and a reason when a
// directory walk should pass it by. An explicit format accepts the file
// names that format is released under; auto also reads the file's first
// bytes.
func resolveFormat(ctx context.Context, in *Input, o *Options) (Format, string, error) {
	name := path.Base(in.Rel)
	if why := datasetMetaReason(name); why != "" {
		return "", why, nil
	}
	switch o.Format {
	case FormatOWT:
		if strings.HasSuffix(name, ".xz") || strings.HasSuffix(name, ".tar") {
			return FormatOWT, "", nil
		}
		return "", "not a .xz or .tar file", nil
	case FormatOWTParquet, FormatStarCoder, FormatParquet:
		if strings.HasSuffix(name, ".parquet") {
			return o.Format, "", nil
		}
		return "", "not a .parquet file", nil
	case FormatSlimPajama, FormatJSONL:
		if isJSONLName(name) {
			return o.Format, "", nil
		}
		return "", "not a .jsonl, .jsonl.zst or .jsonl.gz file", nil
	case FormatText:
		if strings.HasSuffix(name, ".txt") {
			return FormatText, "", nil
		}
		return "", "not a .txt file", nil
	case FormatArrow:
		// The datasets library names its cache files cache-HASH.arrow, but
		// the magic decides for a file named otherwise.
		if isArrowName(name) {
			return FormatArrow, "", nil
		}
		if f, _, err := sniffFormat(ctx, in, o); err != nil || f == FormatArrow {
			return f, "", err
		}
		return "", "not an Arrow IPC file or stream (.arrow, .arrows, .feather, .ipc, or their magic)", nil
	}
	return sniffFormat(ctx, in, o)
}

func isJSONLName(name string) bool {
	for _, s := range []string{".jsonl", ".jsonl.zst", ".jsonl.gz", ".json", ".json.zst", ".json.gz", ".ndjson"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// sniffFormat recognises a file from its name and first bytes.
func sniffFormat(ctx context.Context, in *Input, o *Options) (Format, string, error) {
	if err := in.fetch(); err != nil {
		return "", "", err
	}
	f, err := os.Open(in.Path)
	if err != nil {
		return "", "", fmt.Errorf("ingest: %w", err)
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(store.WithContext(ctx, f), head)
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	head = head[:n]
	name := path.Base(in.Rel)
	switch {
	case n == 0:
		// Let the reader of the name's format report the empty file.
		switch {
		case strings.HasSuffix(name, ".parquet"):
			return FormatParquet, "", nil
		case isJSONLName(name):
			return FormatJSONL, "", nil
		case strings.HasSuffix(name, ".xz"), strings.HasSuffix(name, ".tar"):
			return FormatOWT, "", nil
		case strings.HasSuffix(name, ".txt"):
			return FormatText, "", nil
		case isArrowName(name):
			return FormatArrow, "", nil
		}
		return "", "empty file of unknown format", nil
	case sniffArrow(in, head) || isArrowName(name):
		// A damaged file named .arrow is Arrow's reader's to report.
		return FormatArrow, "", nil
	case bytes.HasPrefix(head, magicParquet) || strings.HasSuffix(name, ".parquet"):
		return sniffParquet(in)
	case bytes.HasPrefix(head, magicXZ), owtInnerName.MatchString(name), isTar(head):
		return FormatOWT, "", nil
	case isJSONLName(name) || bytes.HasPrefix(head, magicZstd) || bytes.HasPrefix(head, magicGzip):
		if !isJSONLName(name) {
			return "", "compressed file that is not named .jsonl.zst or .jsonl.gz", nil
		}
		return sniffJSONL(ctx, in, o)
	case strings.HasSuffix(name, ".txt"):
		return FormatText, "", nil
	}
	return "", "unrecognised name and contents", nil
}

func isTar(head []byte) bool {
	return len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar"))
}

// slimPajamaName matches SlimPajama's chunk files
// (train/chunk1/example_train_0.jsonl.zst, validation/.../example_holdout_0...).
var slimPajamaName = regexp.MustCompile(`^example_[a-z]+_\d+\.jsonl(\.zst)?$`)

// sniffBytes bounds the decompressed bytes read to recognise a JSON-lines
// file: detection must not read a file whose first line never ends (a
// symlink to /dev/zero, a zstd bomb) to its end.
const sniffBytes = 1 << 20

// sniffJSONL decides between slimpajama and plain jsonl from the name and
// the first line, and passes by .json files that are not JSON lines (a
// dataset_info.json beside the data). It reads at most sniffBytes of the
// decompressed file: a first line longer than that is taken as plain jsonl
// (SlimPajama's meta field follows its text, so it may lie beyond) when it
// starts like a JSON object.
func sniffJSONL(ctx context.Context, in *Input, o *Options) (Format, string, error) {
	name := path.Base(in.Rel)
	if slimPajamaName.MatchString(name) && o.TextField == "" {
		return FormatSlimPajama, "", nil
	}
	f, err := os.Open(in.Path)
	if err != nil {
		return "", "", fmt.Errorf("ingest: %w", err)
	}
	defer f.Close()
	r, closer, err := decompressor(in.Rel, store.WithContext(ctx, f))
	if err != nil {
		return FormatJSONL, "", nil // the reader reports the fault with its position
	}
	defer closer()
	head, _ := io.ReadAll(io.LimitReader(r, sniffBytes))
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	// The first line that is not blank, and whether it ends within head.
	line, complete := head, false
	for len(line) > 0 {
		l, rest, found := bytes.Cut(line, []byte("\n"))
		if len(bytes.TrimSpace(l)) > 0 || !found {
			line, complete = l, found || len(head) < sniffBytes
			break
		}
		line = rest
	}
	looksObject := bytes.HasPrefix(bytes.TrimSpace(line), []byte("{"))
	var probe struct {
		Meta *struct {
			Set *string `json:"redpajama_set_name"`
		} `json:"meta"`
	}
	isObject := looksObject && (!complete || json.Unmarshal(line, &probe) == nil)
	switch {
	case isObject && probe.Meta != nil && probe.Meta.Set != nil && o.TextField == "":
		return FormatSlimPajama, "", nil
	case !isObject && !strings.Contains(name, ".jsonl") && !strings.HasSuffix(name, ".ndjson"):
		return "", "a .json file whose first line is not a JSON object (not JSON lines)", nil
	}
	return FormatJSONL, "", nil
}

// maxZstdWindow bounds the window a zstd frame may ask the decoder for.
const maxZstdWindow = 128 << 20

// decompressor wraps r by the file name's compression suffix.
func decompressor(name string, r io.Reader) (io.Reader, func(), error) {
	switch {
	case strings.HasSuffix(name, ".zst"):
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1),
			// A frame may declare a window of up to 3.75 TiB that the decoder
			// would allocate; zstd -19 uses 8 MiB and --long=27 128 MiB.
			zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderMaxMemory(1<<34))
		if err != nil {
			return nil, nil, wrapf(ErrCorrupt, "zstd: %v", err)
		}
		return d, d.Close, nil
	case strings.HasSuffix(name, ".gz"):
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, wrapf(ErrCorrupt, "gzip: %v", err)
		}
		g.Multistream(true)
		return g, func() { g.Close() }, nil
	}
	return r, func() {}, nil
}

// fileID identifies a file across the names that reach it; an object by
// its URL.
type fileID struct {
	dev, ino uint64
	url      string
}

// identity is the input's fileID.
func (in *Input) identity() (fileID, error) {
	if in.remote != nil {
		return fileID{url: in.where()}, nil
	}
	return identify(in.Path)
}

// identify returns the identity of the file at p, following symlinks.
func identify(p string) (fileID, error) {
	st, err := os.Stat(p)
	if err != nil {
		return fileID{}, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("stat %s: no device and inode number", p)
	}
	return fileID{dev: uint64(sys.Dev), ino: uint64(sys.Ino)}, nil
}

// hashInputs fills every input's SHA256, reading files concurrently.
func hashInputs(ctx context.Context, inputs []*Input, workers int, onBytes func(int64)) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, in := range inputs {
		g.Go(func() error {
			if err := in.fetch(); err != nil {
				return err
			}
			f, err := os.Open(in.Path)
			if err != nil {
				return fmt.Errorf("ingest: %w", err)
			}
			defer f.Close()
			h := sha256.New()
			buf := make([]byte, 1<<20)
			for {
				if err := ctx.Err(); err != nil {
					return err
				}
				n, err := f.Read(buf)
				h.Write(buf[:n])
				onBytes(int64(n))
				if err == io.EOF {
					break
				}
				if err != nil {
					return fmt.Errorf("ingest: read %s: %w", in.where(), err)
				}
			}
			in.SHA256 = hex.EncodeToString(h.Sum(nil))
			return in.checkUnchanged()
		})
	}
	return g.Wait()
}

// checkUnchanged fails when the open file's size or modification time
// differs from what the listing saw: its hash and lineage would not describe
// the bytes read.
func (in *Input) checkUnchanged() error {
	if in.remote != nil {
		return nil // downloaded in the version listed (store.S3.Download)
	}
	st, err := os.Stat(in.Path)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if st.Size() != in.Size || !st.ModTime().Equal(in.ModTime) {
		return fmt.Errorf("ingest: %s changed while being ingested (size %d → %d, modified %s → %s); run again when it is stable",
			in.Path, in.Size, st.Size(), in.ModTime.Format(time.RFC3339Nano), st.ModTime().Format(time.RFC3339Nano))
	}
	return nil
}
