// The anchor of BenchmarkGPT2Encode: tiktoken (Rust core as WASM), gpt2
// encode_ordinary, one thread, on the same files. Prints go-test benchmark
// lines so that make bench's table takes them in:
//   node bench.mjs DIR   (DIR holds english.jsonl and code.jsonl)
import { get_encoding } from "tiktoken";
import { readFileSync } from "node:fs";

const dir = process.argv[2];
const enc = get_encoding("gpt2");
for (const name of ["english", "code"]) {
  const texts = readFileSync(`${dir}/${name}.jsonl`, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l).text);
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, "utf8"), 0);
  let tokens = 0;
  const t0 = process.hrtime.bigint();
  for (const t of texts) tokens += enc.encode_ordinary(t).length;
  const ns = Number(process.hrtime.bigint() - t0);
  const s = ns / 1e9;
  console.log(`BenchmarkGPT2Anchor/${name}-1\t1\t${ns} ns/op\t${(bytes / 1e6 / s).toFixed(2)} MB/s\t${(tokens / s).toFixed(0)} tok/s`);
}
enc.free();
