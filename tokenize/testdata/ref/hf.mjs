// Reference ids from a Hugging Face tokenizer.json: @huggingface/tokenizers,
// the tokenizer library of transformers.js, with add_special_tokens off (so
// nothing is added, but special-token text in the input becomes its id, as
// Hugging Face always does). Reads JSON lines {"id", "text"} on stdin and
// writes {"id", "ids"} lines on stdout, in order.
//
//     node hf.mjs tokenizer.json < corpus.jsonl > ids.jsonl
import { Tokenizer } from "@huggingface/tokenizers";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

const tok = new Tokenizer(JSON.parse(readFileSync(process.argv[2], "utf8")), {});
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (line.trim() === "") continue;
  const doc = JSON.parse(line);
  const { ids } = tok.encode(doc.text, { add_special_tokens: false });
  process.stdout.write(JSON.stringify({ id: doc.id, ids }) + "\n");
}
