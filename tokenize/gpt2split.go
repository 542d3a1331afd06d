package tokenize

import (
	"unicode"
	"unicode/utf8"
)

// GPT-2's pre-tokenizer splits text with the regular expression
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// (tiktoken's r50k_base/gpt2 pattern). Go's regexp has no look-ahead, so this
// is the pattern written out as code, alternative by alternative, with the
// same leftmost-first semantics. \s is Unicode White_Space, which is what
// unicode.IsSpace tests (U+0085 is a space, U+FEFF is not, as in tiktoken);
// \p{L} and \p{N} are unicode.IsLetter and unicode.IsNumber. Bytes that are
// not valid UTF-8 count as U+FFFD, a symbol, and stay in their piece as they
// are.

type charClass uint8

const (
	classOther charClass = iota
	classLetter
	classNumber
	classSpace
)

var asciiClass = func() (t [utf8.RuneSelf]charClass) {
	for c := range t {
		t[c] = classOfRune(rune(c))
	}
	return t
}()

func classOfRune(r rune) charClass {
	switch {
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	case unicode.IsSpace(r):
		return classSpace
	}
	return classOther
}

// classAt returns the class of the character at s[i] and its byte length.
func classAt(s string, i int) (charClass, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	return classOfRune(r), n
}

// gpt2Contraction returns the length of the contraction at s[i]:
// 's|'t|'re|'ve|'m|'ll|'d (case-sensitive in r50k), or 0.
func gpt2Contraction(s string, i int) int {
	if s[i] == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return 2
		case 'r', 'v':
			if i+2 < len(s) && s[i+2] == 'e' {
				return 3
			}
		case 'l':
			if i+2 < len(s) && s[i+2] == 'l' {
				return 3
			}
		}
	}
	return 0
}

// gpt2Piece returns the length of the piece that starts at s[i].
func gpt2Piece(s string, i int) int {
	if n := gpt2Contraction(s, i); n > 0 {
		return n
	}
	// ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional U+0020, then a
	// run of one class.
	// The loops test ASCII bytes in line and call classAt only for other
	// characters: a call per character was a sixth of GPT-2 encoding.
	j := i
	if s[j] == ' ' {
		j++
	}
	if j < len(s) {
		if cl, n := classAt(s, j); cl != classSpace {
			k := j + n
			for k < len(s) {
				if c := s[k]; c < utf8.RuneSelf {
					if asciiClass[c] != cl {
						break
					}
					k++
					continue
				}
				c2, n2 := classAt(s, k)
				if c2 != cl {
					break
				}
				k += n2
			}
			return k - i
		}
	}
	// '\s+(?!\S)' then '\s+': a run of whitespace, less its last character
	// when a non-space follows and the run is longer than one.
	k, last := i, i
	for k < len(s) {
		if c := s[k]; c < utf8.RuneSelf {
			if asciiClass[c] != classSpace {
				break
			}
			last = k
			k++
			continue
		}
		cl, n := classAt(s, k)
		if cl != classSpace {
			break
		}
		last = k
		k += n
	}
	if k < len(s) && last > i {
		return last - i
	}
	return k - i
}
