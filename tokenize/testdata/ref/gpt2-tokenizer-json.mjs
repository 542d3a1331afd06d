// Builds a Hugging Face tokenizer.json for GPT-2 from the ranks OpenAI's
// tiktoken package ships (encoders/gpt2.json), laid out as the GPT-2
// tokenizer.json on the Hugging Face Hub is: byte-level vocabulary (each byte
// shown as a printable character), merges in rank order, <|endoftext|> as a
// special added token, ByteLevel pre-tokenizer, post-processor and decoder.
//
//     node gpt2-tokenizer-json.mjs > gpt2-tokenizer.json
//
// The merge that makes a token is found by running byte-pair encoding over
// the token's bytes with only the tokens of lower rank: what remains are the
// two parts it was merged from.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const enc = require("tiktoken/encoders/gpt2.json");

const parts = enc.bpe_ranks.split(" ");
if (parts[0] !== "!" || parts[1] !== "0") throw new Error("unexpected bpe_ranks header");
const tokens = parts.slice(2).map((b64) => Buffer.from(b64, "base64"));
const rank = new Map(tokens.map((t, i) => [t.toString("latin1"), i]));

// GPT-2's byte ↔ character table: printable Latin-1 bytes stand for
// themselves, the others for 256, 257, ... in byte order.
const byteChar = new Array(256);
let n = 0;
for (let b = 0; b < 256; b++) {
  const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  byteChar[b] = String.fromCodePoint(printable ? b : 256 + n++);
}
const show = (buf) => Array.from(buf, (b) => byteChar[b]).join("");

function mergedFrom(token, maxRank) {
  let syms = Array.from(token, (b) => Buffer.from([b]));
  for (;;) {
    let best = -1, bestRank = maxRank;
    for (let i = 0; i + 1 < syms.length; i++) {
      const r = rank.get(Buffer.concat([syms[i], syms[i + 1]]).toString("latin1"));
      if (r !== undefined && r < bestRank) { best = i; bestRank = r; }
    }
    if (best < 0) break;
    syms.splice(best, 2, Buffer.concat([syms[best], syms[best + 1]]));
  }
  if (syms.length !== 2) throw new Error(`token of rank ${maxRank} does not split into two parts`);
  return syms;
}

const vocab = {};
const merges = [];
tokens.forEach((t, i) => {
  vocab[show(t)] = i;
  if (t.length > 1) merges.push(mergedFrom(t, i).map(show));
});
const specials = Object.entries(enc.special_tokens);
for (const [text, id] of specials) vocab[text] = id;

const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
const json = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: specials.map(([content, id]) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true,
  })),
  normalizer: null,
  pre_tokenizer: byteLevel,
  post_processor: { ...byteLevel, trim_offsets: false },
  decoder: byteLevel,
  model: {
    type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "",
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
  },
};
process.stdout.write(JSON.stringify(json) + "\n");
