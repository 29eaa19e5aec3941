// Multi-document YAML on stdin → one JSON array on stdout (for tests that read rendered
// manifests in C++). usage: node to-json.mjs NODE_MODULES_DIR
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const yaml = createRequire(join(resolve(process.argv[2]), "noop.js"))("js-yaml");
const docs = yaml.loadAll(readFileSync(0, "utf8")).filter((d) => d);
process.stdout.write(JSON.stringify(docs));
