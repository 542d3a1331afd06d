package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/tokenize"
)

type tokenizeOptions struct {
	tokenizer, input, field string
	bos, eos, special       bool
	count, decode           bool
	workers                 int
}

func newTokenizeCmd(g *globals) *cobra.Command {
	opts := &tokenizeOptions{}
	cmd := &cobra.Command{
		Use:   "tokenize [--input docs.jsonl]",
		Short: "Encode documents to token ids (or decode ids to text)",
		Long: `tokenize encodes JSON-lines documents (--input FILE, or --input - for
standard input) or, without --input, all of standard input as one text, and
prints one JSON line {"id": ..., "ids": [...]} per document in input order.
"id" is copied from the input's "id" field when present, else the line
number. Special-token text such as <|endoftext|> is encoded as plain text
unless --special is given.

A line (or, without --input, all of standard input) may be at most 64 MiB.

Tokenizers: gpt2 (built in, identical to tiktoken's gpt2 encode_ordinary),
or the path of a SentencePiece tokenizer.model (BPE with byte fallback, as
Llama 2's; identical to SentencePiece's encode; --bos adds <s>, --eos </s>).`,
		Example: `  echo "Hello world" | estkit tokenize
  estkit tokenize --input docs.jsonl --field text --eos
  estkit tokenize --input docs.jsonl --count
  estkit tokenize --input docs.jsonl | estkit tokenize --decode --input -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runTokenize(cmd.Context(), g, opts) },
	}
	f := cmd.Flags()
	f.StringVar(&opts.tokenizer, "tokenizer", "gpt2", "tokenizer: gpt2, bytes, or PATH of a Hugging Face tokenizer.json, a SentencePiece tokenizer.model or a directory holding one")
	f.StringVar(&opts.input, "input", "", "JSON-lines input file (- for standard input); without it, standard input is one text")
	f.StringVar(&opts.field, "field", "text", "JSON field holding the text")
	f.BoolVar(&opts.bos, "bos", false, "add the BOS id before each document")
	f.BoolVar(&opts.eos, "eos", false, "add the EOS id after each document (GPT-2: <|endoftext|>)")
	f.BoolVar(&opts.special, "special", false, "recognise special-token text (<|endoftext|>) as its id")
	f.BoolVar(&opts.count, "count", false, "print only token counts and throughput")
	f.BoolVar(&opts.decode, "decode", false, `turn {"ids": [...]} lines back into {"id", "text"} lines`)
	f.IntVarP(&opts.workers, "workers", "j", 0, "encoding goroutines (default: number of CPUs); output does not depend on it")
	cmd.RegisterFlagCompletionFunc("tokenizer", cobra.FixedCompletions([]string{"gpt2", "bytes"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func loadTokenizer(name string) (*tokenize.Tokenizer, error) { return tokenize.Load(name) }

type tokDoc struct {
	id   json.RawMessage
	text string
	ids  []uint32
	file string // for errors: the input and line the document came from
	line int
}

// maxTokenizeLine is the most tokenize reads as one document: a JSON line,
// or all of standard input without --input. It bounds memory on an input
// with no line breaks (/dev/zero, a binary file) and is far above any
// document a tokenizer is given in practice.
const maxTokenizeLine = 64 << 20

func runTokenize(ctx context.Context, g *globals, o *tokenizeOptions) error {
	if err := checkWorkers("tokenize", o.workers); err != nil {
		return err
	}
	tok, err := loadTokenizer(o.tokenizer)
	if err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	name := "standard input"
	if o.input != "" && o.input != "-" {
		f, err := os.Open(o.input)
		if err != nil {
			return err
		}
		defer f.Close()
		in, name = f, o.input
	}
	in = store.WithContext(ctx, in)
	out := bufio.NewWriterSize(g.stdout, 1<<20)
	defer out.Flush()
	stats := &tokStats{start: time.Now()}
	if o.input == "" {
		if o.decode {
			return fmt.Errorf("tokenize: --decode reads JSON lines of ids: give --input FILE, or --input - for standard input")
		}
		b, err := io.ReadAll(io.LimitReader(in, maxTokenizeLine+1))
		if err != nil {
			return fmt.Errorf("tokenize: %s: %w", name, err)
		}
		if len(b) > maxTokenizeLine {
			return fmt.Errorf("tokenize: %s is longer than %d MiB, the most tokenize reads as one text: give JSON lines with --input", name, maxTokenizeLine>>20)
		}
		if err := emitTokens(g, out, tok, o, []tokDoc{{id: json.RawMessage("1"), text: string(b), line: 1}}, stats); err != nil {
			return err
		}
		return printCount(out, o, stats)
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(nil, maxTokenizeLine)
	var batch []tokDoc
	line := 1
	for ; sc.Scan(); line++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(sc.Bytes()) == 0 {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return fmt.Errorf("tokenize: %s: line %d: invalid JSON: %v", name, line, err)
		}
		d := tokDoc{id: m["id"], line: line, file: name}
		if d.id == nil {
			d.id = json.RawMessage(strconv.Itoa(line))
		}
		if o.decode {
			if err := json.Unmarshal(m["ids"], &d.ids); err != nil || m["ids"] == nil {
				return fmt.Errorf("tokenize: %s: line %d: no \"ids\" array", name, line)
			}
		} else if err := json.Unmarshal(m[o.field], &d.text); err != nil || m[o.field] == nil {
			return fmt.Errorf("tokenize: %s: line %d: no string field %q", name, line, o.field)
		}
		batch = append(batch, d)
		if len(batch) == 4096 {
			if err := emitTokens(g, out, tok, o, batch, stats); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := sc.Err(); errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("tokenize: %s: line %d is longer than %d MiB, the most tokenize reads as one line", name, line, maxTokenizeLine>>20)
	} else if err != nil {
		return fmt.Errorf("tokenize: %s: %w", name, err)
	}
	if err := emitTokens(g, out, tok, o, batch, stats); err != nil {
		return err
	}
	return printCount(out, o, stats)
}

// printCount prints the --count summary.
func printCount(out io.Writer, o *tokenizeOptions, stats *tokStats) error {
	if !o.count {
		return nil
	}
	el := time.Since(stats.start).Seconds()
	_, err := fmt.Fprintf(out, "{\"documents\": %d, \"bytes\": %d, \"tokens\": %d, \"seconds\": %.3f, \"mb_per_s\": %.2f, \"tokens_per_s\": %.0f}\n",
		stats.docs, stats.bytes, stats.tokens, el, float64(stats.bytes)/1e6/el, float64(stats.tokens)/el)
	return err
}

type tokStats struct {
	start               time.Time
	docs, bytes, tokens int64
}

func emitTokens(g *globals, out *bufio.Writer, tok *tokenize.Tokenizer, o *tokenizeOptions, docs []tokDoc, st *tokStats) error {
	if o.decode {
		var text bytes.Buffer
		enc := json.NewEncoder(&text)
		enc.SetEscapeHTML(false)
		for _, d := range docs {
			b, err := tok.Decode(d.ids)
			if err != nil {
				return fmt.Errorf("%s: line %d: %w", d.file, d.line, err)
			}
			text.Reset()
			enc.Encode(string(b)) // bytes that are not UTF-8 (a partial character) show as U+FFFD
			fmt.Fprintf(out, "{\"id\": %s, \"text\": %s}\n", d.id, bytes.TrimRight(text.Bytes(), "\n"))
		}
		return nil
	}
	texts := make([]string, len(docs))
	for i, d := range docs {
		texts[i] = d.text
	}
	ids, err := tok.EncodeBatch(texts, tokenize.EncodeOptions{BOS: o.bos, EOS: o.eos, AllowedSpecial: o.special}, o.workers)
	if err != nil {
		return err
	}
	for i, d := range docs {
		st.docs++
		st.bytes += int64(len(d.text))
		st.tokens += int64(len(ids[i]))
		if o.count {
			continue
		}
		out.WriteString("{\"id\": ")
		out.Write(d.id)
		out.WriteString(", \"ids\": [")
		var buf []byte
		for k, id := range ids[i] {
			if k > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendUint(buf, uint64(id), 10)
		}
		out.Write(buf)
		out.WriteString("]}\n")
	}
	return nil
}
