// Checks the custom resources that deploy/kubernetes renders against npm
// packages of @kubernetes-models generated from their operators' API types:
// KEDA's (ScaledObject, TriggerAuthentication: @kubernetes-models/keda) and
// CloudNativePG's (Cluster: @kubernetes-models/cloudnative-pg). Two ways:
//   - the package's JSON-schema validator (`.validate()`): types, formats,
//     enums and required fields;
//   - its TypeScript interfaces, with `tsc --strict`: each resource becomes a
//     typed object literal, so a field the API does not have fails
//     ("Object literal may only specify known properties"). The validator
//     alone lets unknown fields through, and the API server would silently
//     drop them: a misspelt field must fail here.
// Usage: node .ci/check-models.mjs NPM_DIR RESOURCES_JSON
//   NPM_DIR: where .ci/k8s-npm was installed (npm ci);
//   RESOURCES_JSON: [{"name": "where it comes from", "doc": {...}}, ...].
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

// apiVersion -> the package that models it and the kinds the manifests use.
// A package lays a kind out as <package>/<apiVersion>/<Kind>.
const packages = {
  "keda.sh/v1alpha1": { pkg: "@kubernetes-models/keda", kinds: ["ScaledObject", "TriggerAuthentication"] },
  "postgresql.cnpg.io/v1": { pkg: "@kubernetes-models/cloudnative-pg", kinds: ["Cluster"] },
};

const [npmDir, input] = process.argv.slice(2).map((p) => resolve(p));
const resources = JSON.parse(readFileSync(input, "utf8"));
const failures = [];

const models = {};
for (const [apiVersion, { pkg, kinds }] of Object.entries(packages)) {
  for (const kind of kinds) {
    const url = pathToFileURL(join(npmDir, "node_modules", pkg, apiVersion, `${kind}.js`)).href;
    models[`${apiVersion} ${kind}`] = (await import(url))[kind];
  }
}

// One .mts file per resource, inside NPM_DIR so that the packages resolve.
const work = join(npmDir, "check");
rmSync(work, { recursive: true, force: true });
mkdirSync(work);
const files = new Map();
const used = new Set();
resources.forEach(({ name, doc }, index) => {
  const model = models[`${doc.apiVersion} ${doc.kind}`];
  if (!model) {
    failures.push(`${name}: ${doc.apiVersion} ${doc.kind} is not a kind this check knows (.ci/check-models.mjs)`);
    return;
  }
  const { pkg } = packages[doc.apiVersion];
  used.add(pkg);
  try {
    new model(doc).validate();
  } catch (error) {
    const details = (error.details || []).map((d) => `${d.instancePath || "/"} ${d.message}`);
    failures.push(`${name}: ${details.length ? details.join("; ") : error.message}`);
  }
  const file = join(work, `resource${index}.mts`);
  writeFileSync(
    file,
    `import type { I${doc.kind} } from "${pkg}/${doc.apiVersion}/${doc.kind}";\n` +
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
const versions = [...used].sort().map((pkg) => {
  const version = JSON.parse(readFileSync(join(npmDir, "node_modules", pkg, "package.json"), "utf8")).version;
  return `${pkg} ${version}`;
});
console.log(`${resources.length} custom resources valid (${versions.join(", ")}: validators and types)`);
