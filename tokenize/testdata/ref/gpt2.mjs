// Reference GPT-2 ids: OpenAI tiktoken (its Rust core as WASM), encoding
// "gpt2", encode_ordinary. Reads JSON lines {"id", "text"} on stdin and
// writes {"id", "ids"} lines on stdout, in order.
import { get_encoding } from "tiktoken";
import { createInterface } from "node:readline";

const enc = get_encoding("gpt2");
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (line.trim() === "") continue;
  const doc = JSON.parse(line);
  const ids = Array.from(enc.encode_ordinary(doc.text));
  process.stdout.write(JSON.stringify({ id: doc.id, ids }) + "\n");
}
enc.free();
