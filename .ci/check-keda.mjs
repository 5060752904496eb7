// Checks KEDA's custom resources (ScaledObject, TriggerAuthentication) that
// deploy/kubernetes renders, against the schema of the npm package
// @kubernetes-models/keda (generated from KEDA's API types), in two ways:
//   - its JSON-schema validator (`.validate()`): types, formats, enums and
//     required fields;
//   - its TypeScript interfaces, with `tsc --strict`: each resource becomes a
//     typed object literal, so a field the API does not have fails
//     ("Object literal may only specify known properties"). The validator
//     alone lets unknown fields through, and the API server would silently
//     drop them: a misspelt field must fail here.
// Usage: node .ci/check-keda.mjs NPM_DIR RESOURCES_JSON
//   NPM_DIR: where .ci/k8s-npm was installed (npm ci);
//   RESOURCES_JSON: [{"name": "where it comes from", "doc": {...}}, ...].
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [npmDir, input] = process.argv.slice(2).map((p) => resolve(p));
const resources = JSON.parse(readFileSync(input, "utf8"));
const kinds = ["ScaledObject", "TriggerAuthentication"];
const pkg = join(npmDir, "node_modules/@kubernetes-models/keda");
const failures = [];

const models = {};
for (const kind of kinds) {
  const url = pathToFileURL(join(pkg, `keda.sh/v1alpha1/${kind}.js`)).href;
  models[kind] = (await import(url))[kind];
}

// One .mts file per resource, inside NPM_DIR so that the package resolves.
const work = join(npmDir, "check");
rmSync(work, { recursive: true, force: true });
mkdirSync(work);
const files = new Map();
resources.forEach(({ name, doc }, index) => {
  if (doc.apiVersion !== "keda.sh/v1alpha1" || !kinds.includes(doc.kind)) {
    failures.push(`${name}: ${doc.apiVersion} ${doc.kind} is not a KEDA kind this check knows`);
    return;
  }
  try {
    new models[doc.kind](doc).validate();
  } catch (error) {
    const details = (error.details || []).map((d) => `${d.instancePath || "/"} ${d.message}`);
    failures.push(`${name}: ${details.length ? details.join("; ") : error.message}`);
  }
  const file = join(work, `resource${index}.mts`);
  writeFileSync(
    file,
    `import type { I${doc.kind} } from "@kubernetes-models/keda/keda.sh/v1alpha1/${doc.kind}";\n` +
      `export const resource: I${doc.kind} = ${JSON.stringify(doc, null, 2)};\n`,
  );
  files.set(`resource${index}.mts`, name);
});

if (files.size > 0) {
  const tsc = join(npmDir, "node_modules/typescript/bin/tsc");
  const args = ["--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--moduleResolution", "nodenext",
    "--target", "es2022", "--pretty", "false", ...[...files.keys()].map((f) => join(work, f))];
  try {
    execFileSync(process.execPath, [tsc, ...args], { cwd: npmDir, encoding: "utf8" });
  } catch (error) {
    const output = `${error.stdout || ""}${error.stderr || ""}`.trim();
    for (const line of output.split("\n")) {
      const match = line.match(/resource\d+\.mts/);
      failures.push(match ? `${files.get(match[0])}: ${line.slice(line.indexOf(match[0]))}` : line);
    }
    if (!output) failures.push(`tsc failed: ${error.message}`);
  }
}
rmSync(work, { recursive: true, force: true });

if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
const version = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).version;
console.log(`${resources.length} KEDA resources valid (@kubernetes-models/keda ${version}: validator and types)`);
