// Fails when src/schema.ts is not what openapi-typescript makes of the
// service's OpenAPI document (the path given, default ../../target/openapi.json).
// `--write` regenerates it instead.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const write = args.includes("--write");
const document = resolve(args.find((a) => !a.startsWith("--")) ?? join(here, "../../../target/openapi.json"));
const checkedIn = join(here, "../src/schema.ts");
const fresh = join(mkdtempSync(join(tmpdir(), "callgate-schema-")), "schema.ts");
execFileSync(join(here, "../node_modules/.bin/openapi-typescript"), [document, "-o", fresh], { stdio: "pipe" });
const generated = readFileSync(fresh, "utf8");
if (write) {
  writeFileSync(checkedIn, generated);
  console.log(`wrote ${checkedIn}`);
} else if (generated !== readFileSync(checkedIn, "utf8")) {
  console.error(`clients/ts/src/schema.ts differs from what ${document} produces;`);
  console.error("regenerate it: cargo run -q -- openapi > target/openapi.json && (cd clients/ts && npm run generate)");
  process.exit(1);
} else {
  console.log("clients/ts/src/schema.ts matches the OpenAPI document");
}
