// Validates rendered Kubernetes objects (YAML on stdin, as `kubectl kustomize` prints them)
// against the Kubernetes API schemas of the npm package kubernetes-models (and the
// Prometheus operator's, @kubernetes-models/prometheus-operator, for PrometheusRule and
// AlertmanagerConfig). Prints one line per object; exits 1 if any object is invalid or of a
// kind it has no schema for.
// usage: kubectl kustomize daemonset/overlays/sks | node validate.mjs NODE_MODULES_DIR
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const modules = resolve(process.argv[2]);
const yaml = createRequire(join(modules, "noop.js"))("js-yaml");

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const dir = group === "monitoring.coreos.com"
                  ? join(modules, "@kubernetes-models/prometheus-operator", group, version)
                  : join(modules, "kubernetes-models", group, version);
  try {
    return (await import(pathToFileURL(join(dir, `${kind}.js`)).href))[kind] || null;
  } catch (e) {
    if (e.code === "ERR_MODULE_NOT_FOUND") return null;
    throw e;
  }
}

let bad = 0, count = 0;
for (const doc of yaml.loadAll(readFileSync(0, "utf8"))) {
  if (!doc) continue;
  count++;
  const name = `${doc.apiVersion} ${doc.kind}/${doc.metadata && doc.metadata.name}`;
  const Model = await modelFor(doc.apiVersion, doc.kind);
  if (!Model) {
    console.log(`no schema: ${name}`);
    bad++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`valid: ${name}`);
  } catch (e) {
    console.log(`INVALID: ${name}: ${e.message}`);
    bad++;
  }
}
console.log(`${count} objects, ${bad} invalid`);
process.exit(bad === 0 && count > 0 ? 0 : 1);
