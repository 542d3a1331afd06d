// Command refcorpus writes the tokenizer test corpus as JSON lines
// {"id": ..., "text": ...} on stdout: prose and code from the Go toolchain's
// own tree, and synthetic text covering what tokenizers get wrong (every
// Unicode space, controls, CJK, emoji sequences, combining marks, RTL,
// long runs, contractions in every case, special-token strings, seeded
// random Unicode). The reference ids are computed from it by the scripts in
// tokenize/testdata/ref; `make refs` runs both. Deterministic.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/estkit/estkit/ingest/corpusgen"
)

func main() {
	benchDir := flag.String("bench", "", "write the benchmark texts (english.jsonl, code.jsonl) into this directory instead")
	benchMB := flag.Int64("mb", 20, "MB of text per benchmark file")
	flag.Parse()
	if *benchDir != "" {
		if err := writeBench(*benchDir, *benchMB<<20); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	emit := func(id, text string) {
		if !utf8.ValidString(text) {
			panic("refcorpus: invalid UTF-8 in " + id)
		}
		enc.Encode(map[string]string{"id": id, "text": text})
	}
	texts, err := corpusgen.GoRootTexts(6 << 20)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, t := range texts {
		emit("goroot/"+t.Name, t.Body)
	}
	for _, c := range synthetic() {
		emit(c[0], c[1])
	}
}

func synthetic() [][2]string {
	var out [][2]string
	add := func(id, s string) { out = append(out, [2]string{id, s}) }

	var spaces []rune
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if unicode.IsSpace(r) {
			spaces = append(spaces, r)
		}
	}
	spaces = append(spaces, 0xFEFF, 0x200B, 0x180E, 0x2060)
	for _, r := range spaces {
		s := string(r)
		add(fmt.Sprintf("space/U+%04X", r), "a"+s+"b "+s+s+"c"+s+" d"+s+"\n"+s+"9"+s+s+s+"!"+s)
	}
	var ctl strings.Builder
	for r := rune(0); r < 0x20; r++ {
		ctl.WriteString(string(r) + "x" + string(r) + string(r) + " ")
	}
	for r := rune(0x7F); r <= 0x9F; r++ {
		ctl.WriteString(string(r) + "y " + string(r))
	}
	add("controls", ctl.String())
	add("nul", "a\x00b \x00\x00 c\x00")
	add("crlf", "line one\r\nline two\r\n\r\n  indented\r\n\ttab\r\n")
	add("spaces-long", "x"+strings.Repeat(" ", 10000)+"y"+strings.Repeat(" ", 3)+"\n"+strings.Repeat(" \n", 500))
	add("newlines-long", strings.Repeat("\n", 5000)+"z"+strings.Repeat("\n\n\n ", 300))
	add("digits-long", strings.Repeat("1234567890", 5000)+" "+strings.Repeat("9", 777))
	add("word-long", strings.Repeat("abcdefghij", 2000)+" "+strings.Repeat("é", 3000))
	var contr []string
	for _, c := range []string{"s", "t", "re", "ve", "m", "ll", "d"} {
		for mask := 0; mask < 1<<len(c); mask++ {
			b := []byte(c)
			for i := range b {
				if mask&(1<<i) != 0 {
					b[i] = byte(unicode.ToUpper(rune(b[i])))
				}
			}
			contr = append(contr, "it'"+string(b), "'"+string(b)+"x", " '"+string(b), "''"+string(b))
		}
	}
	add("contractions", strings.Join(contr, " ")+" don’t it’s I'M YOU'RE")
	add("special", "<|endoftext|> a<|endoftext|>b <s> </s> <unk> <|endoftext|><|endoftext|> <|fim_prefix|>")
	var cjk strings.Builder
	for r := rune(0x4E00); r < 0x4E00+400; r += 3 {
		cjk.WriteRune(r)
	}
	cjk.WriteString("。、「」 ")
	for r := rune(0x3041); r < 0x3041+80; r++ {
		cjk.WriteRune(r)
	}
	for r := rune(0xAC00); r < 0xAC00+300; r += 7 {
		cjk.WriteRune(r)
	}
	add("cjk", cjk.String())
	zwj := string([]rune{0x1F468, 0x200D, 0x1F469, 0x200D, 0x1F467, 0x200D, 0x1F466})
	flag := string([]rune{0x1F1EB, 0x1F1F7})
	skin := string([]rune{0x1F44D, 0x1F3FD})
	add("emoji", "family "+zwj+" flag "+flag+skin+" "+string(rune(0x2764))+string(rune(0xFE0F))+" keycap 1"+string([]rune{0xFE0F, 0x20E3}))
	add("combining", "e"+string(rune(0x0301))+" a"+string([]rune{0x0300, 0x0323, 0x0308})+" "+string([]rune{0x0915, 0x094D, 0x0937})+" Z"+strings.Repeat(string(rune(0x0336)), 40))
	var rtl strings.Builder
	for r := rune(0x05D0); r <= 0x05EA; r++ {
		rtl.WriteRune(r)
	}
	rtl.WriteString(" 123 ")
	for r := rune(0x0627); r <= 0x064A; r++ {
		rtl.WriteRune(r)
	}
	rtl.WriteString(string(rune(0x200F)) + "(" + string(rune(0x202E)) + "abc" + string(rune(0x202C)) + ")")
	add("rtl", rtl.String())

	// Seeded random text over many blocks, in runs so that words form.
	rng := rand.New(rand.NewPCG(1, 2))
	blocks := [][2]rune{{0x20, 0x7E}, {0xA0, 0x24F}, {0x370, 0x3FF}, {0x400, 0x4FF}, {0x590, 0x6FF}, {0x900, 0x97F},
		{0xE00, 0xE7F}, {0x1100, 0x11FF}, {0x2000, 0x206F}, {0x20A0, 0x214F}, {0x2190, 0x23FF}, {0x3000, 0x30FF},
		{0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xFF00, 0xFFEF}, {0x1D400, 0x1D7FF}, {0x1F300, 0x1FAFF}}
	for k := 0; k < 300; k++ {
		var b strings.Builder
		for b.Len() < 400 {
			blk := blocks[rng.IntN(len(blocks))]
			for n := 1 + rng.IntN(8); n > 0; n-- {
				r := blk[0] + rune(rng.IntN(int(blk[1]-blk[0]+1)))
				if utf8.ValidRune(r) && !(r >= 0xD800 && r <= 0xDFFF) {
					b.WriteRune(r)
				}
			}
			switch rng.IntN(4) {
			case 0:
				b.WriteByte(' ')
			case 1:
				b.WriteString([]string{"\n", "  ", "\t", "'s ", "123", " \n "}[rng.IntN(6)])
			}
		}
		add(fmt.Sprintf("random/%03d", k), b.String())
	}
	return out
}

// writeBench writes english.jsonl (the prose of GOROOT: Markdown, HTML and
// text files) and code.jsonl (Go sources), each repeated to n bytes, as
// {"id", "text"} lines.
// maxBenchDoc caps a benchmark document: GOROOT holds a few files of
// megabytes, and a corpus of web pages or source files has almost none, so
// those files are cut at line ends into documents of at most this size.
const maxBenchDoc = 64 << 10

// splitLines cuts s after newlines into parts of at most max bytes (a line
// longer than max is a part of its own).
func splitLines(s string, max int) []string {
	var parts []string
	for len(s) > max {
		cut := strings.LastIndexByte(s[:max], '\n') + 1
		if cut == 0 {
			cut = strings.IndexByte(s, '\n') + 1
			if cut == 0 {
				cut = len(s)
			}
		}
		parts = append(parts, s[:cut])
		s = s[cut:]
	}
	if s != "" {
		parts = append(parts, s)
	}
	return parts
}

func writeBench(dir string, n int64) error {
	texts, err := corpusgen.GoRootTexts(1 << 40)
	if err != nil {
		return err
	}
	var prose, code []corpusgen.Text
	for _, t := range texts {
		switch filepath.Ext(t.Name) {
		case ".md", ".html", ".txt":
			prose = append(prose, t)
		case ".go":
			code = append(code, t)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, set := range map[string][]corpusgen.Text{"english.jsonl": prose, "code.jsonl": code} {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		for _, t := range corpusgen.Repeat(set, n) {
			for k, body := range splitLines(t.Body, maxBenchDoc) {
				enc.Encode(map[string]string{"id": fmt.Sprintf("%s#%d", t.Name, k), "text": body})
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}
