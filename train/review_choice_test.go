package train

import (
	"errors"
	"strings"
	"testing"
)

// TestChoiceMessages: a value that is not one of its choices is named as
// the user wrote it (the --config file's key as config.json spells it, or
// the flag), its choices are listed without an empty one, and the message
// says "invalid configuration" once.
func TestChoiceMessages(t *testing.T) {
	for _, c := range []struct {
		set  []string
		want string
	}{
		{[]string{"config", `{"matmul": "fp16"}`}, `key "matmul": "fp16" (want fp32 or bf16)`},
		{[]string{"config", `{"activations": "fp16"}`}, `key "activations": "fp16" (want fp32 or bf16)`},
		{[]string{"config", `{"sample_every": "x"}`}, `key "sample_every": "x" (want step or microbatch)`},
		{[]string{"config", `{"decay": "x"}`}, `key "decay": "x" (want linear or cosine)`},
		{[]string{"config", `{"sampler": {"layer_mode": "x"}}`}, `key "sampler.layer_mode": "x" (want fixed or bernoulli)`},
		{[]string{"config", `{"sampler": {"heads": "x"}}`}, `key "sampler.heads": "x" (want groups or within)`},
		{[]string{"matmul", "fp16"}, `--matmul fp16: want fp32 or bf16`},
		{[]string{"sample-every", "x"}, `--sample-every x: want step or microbatch`},
		{[]string{"layer-mode", "x"}, `--layer-mode x: want fixed or bernoulli`},
	} {
		set := c.set
		if set[0] == "config" {
			set = []string{"config", writeFile(t, "c.json", set[1])}
		}
		_, err := resolve(t, append(set, "data", "d")...)
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) || strings.Count(err.Error(), "invalid configuration") != 1 {
			t.Errorf("%v: %v (want %s, once \"invalid configuration\")", c.set, err, c.want)
		}
	}
}
