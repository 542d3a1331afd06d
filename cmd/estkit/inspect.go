package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/estkit/estkit/ingest"
	"github.com/spf13/cobra"
)

type inspectOptions struct {
	doc int64
}

func newInspectCmd(g *globals) *cobra.Command {
	opts := &inspectOptions{}
	cmd := &cobra.Command{
		Use:   "inspect DIR",
		Short: "Summarise a directory of document shards, or print one document with its lineage",
		Example: `  estkit inspect data/owt
  estkit inspect data/owt --json
  estkit inspect data/owt --doc 17 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			m, err := ingest.ReadManifest(dir)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("doc") {
				d, err := ingest.ReadDocument(dir, m, opts.doc)
				if err != nil {
					return err
				}
				if g.json {
					return printJSON(g.stdout, map[string]any{"text": d.Text, "lineage": d.Lineage.JSON()})
				}
				lj, _ := json.MarshalIndent(d.Lineage.JSON(), "", "  ")
				fmt.Fprintf(g.stdout, "lineage: %s\n\n%s\n", lj, d.Text)
				return nil
			}
			if g.json {
				return printJSON(g.stdout, summarize(m, false))
			}
			return printSummary(g.stdout, dir, m)
		},
	}
	cmd.Flags().Int64Var(&opts.doc, "doc", 0, "print document K (0-based, in shard order) with its lineage")
	return cmd
}

// summary is the JSON form of a manifest's summary.
type summary struct {
	Documents    int64                     `json:"documents"`
	TextBytes    int64                     `json:"text_bytes"`
	Read         int64                     `json:"read"`
	Filtered     map[string]int64          `json:"filtered"`
	Rejected     map[string]int64          `json:"rejected"`
	UTF8Repaired int64                     `json:"utf8_repaired"`
	Corpora      map[string]*ingest.Counts `json:"corpora"`
	Shards       int                       `json:"shards"`
	Inputs       int                       `json:"inputs"`
	Key          string                    `json:"key"`
	UpToDate     bool                      `json:"up_to_date,omitempty"`
}

func summarize(m *ingest.Manifest, upToDate bool) summary {
	return summary{Documents: m.Counts.Documents, TextBytes: m.Counts.TextBytes, Read: m.Counts.Read,
		Filtered: m.Counts.Filtered, Rejected: m.Counts.Rejected, UTF8Repaired: m.Counts.UTF8Repaired,
		Corpora: m.Corpora, Shards: len(m.Outputs), Inputs: len(m.Inputs), Key: m.Key, UpToDate: upToDate}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printSummary(w io.Writer, dir string, m *ingest.Manifest) error {
	fmt.Fprintf(w, "%s: %d input files, %d shards, key %s\n\n", dir, len(m.Inputs), len(m.Outputs), m.Key[:12])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "corpus\tread\tdocuments\ttext MB\tfiltered\trejected\t")
	names := make([]string, 0, len(m.Corpora))
	for n := range m.Corpora {
		names = append(names, n)
	}
	sort.Strings(names)
	row := func(name string, c *ingest.Counts) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%s\t%s\t\n", name, c.Read, c.Documents, float64(c.TextBytes)/1e6, reasons(c.Filtered), reasons(c.Rejected))
	}
	for _, n := range names {
		row(n, m.Corpora[n])
	}
	if len(names) > 1 {
		row("total", &m.Counts)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if m.Counts.UTF8Repaired > 0 {
		fmt.Fprintf(w, "\n%d documents had invalid UTF-8 repaired\n", m.Counts.UTF8Repaired)
	}
	if len(m.Rejections) > 0 {
		fmt.Fprintf(w, "\nfirst rejections (of %d; all are listed in %s/manifest.json up to %d):\n", total(m.Counts.Rejected), dir, 1000)
		for i, r := range m.Rejections {
			if i == 5 {
				break
			}
			fmt.Fprintf(w, "  %s\n", r.Error)
		}
	}
	return nil
}

func reasons(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
