#!/usr/bin/env node
// Validates rendered Kubernetes objects offline, two ways:
//   1. schema: each object against the JSON schema of its apiVersion/kind (kubernetes-models,
//      @kubernetes-models/prometheus-operator): types, required fields, enums, formats;
//   2. unknown fields: each object as a TypeScript object literal typed with the same package's
//      interface, compiled with tsc --strict. Excess-property checks on nested literals reject any
//      field the API does not have (a typo such as `readOnlyRootFilesytem` passes the schemas,
//      whose objects allow additional properties, but not this).
// An object of a kind with no model is an error (nothing would have checked it).
//
//   node validate.js OBJECTS.json WORK_DIR
// OBJECTS.json: a JSON array of {source, object} (source names the render it came from).
// WORK_DIR: where the generated TypeScript goes; node_modules must be resolvable from it.
// Prints one line per object and per TypeScript error; exits 1 if anything failed.
// Called by deploy/helm/test, with NODE_PATH at the pinned packages (package-lock.json).
"use strict";

const fs = require("fs");
const path = require("path");

// apiVersion -> the module that holds its models.
function modelModule(apiVersion) {
  if (apiVersion.startsWith("monitoring.coreos.com/")) {
    return `@kubernetes-models/prometheus-operator/${apiVersion}`;
  }
  return `kubernetes-models/${apiVersion}`;
}

function loadModel(apiVersion, kind) {
  try {
    const mod = require(`${modelModule(apiVersion)}/${kind}`);
    return mod[kind] || null;
  } catch (e) {
    return null;
  }
}

function main() {
  const [objectsFile, workDir] = process.argv.slice(2);
  if (!objectsFile || !workDir) {
    console.error("usage: validate.js OBJECTS.json WORK_DIR");
    process.exit(2);
  }
  const entries = JSON.parse(fs.readFileSync(objectsFile, "utf8"));
  let failures = 0;
  const imports = new Map();  // module -> Set of interface names
  const literals = [];

  entries.forEach(({ source, object }, index) => {
    const label = `${source}: ${object.kind} ${(object.metadata || {}).name}`;
    const Model = loadModel(object.apiVersion, object.kind);
    if (!Model) {
      console.log(`FAIL ${label}: no model for ${object.apiVersion} ${object.kind}`);
      failures++;
      return;
    }
    const { apiVersion, kind, ...data } = object;
    try {
      new Model(data).validate();
      console.log(`ok   ${label}: schema`);
    } catch (e) {
      console.log(`FAIL ${label}: schema: ${e.message}`);
      failures++;
    }
    const mod = modelModule(apiVersion);
    if (!imports.has(mod)) imports.set(mod, new Set());
    imports.get(mod).add(`I${kind}`);
    literals.push(
        `// ${label}\nexport const object${index}: I${kind} = ${JSON.stringify(object, null, 2)};\n`);
  });

  // The TypeScript check of every object at once.
  const ts = require("typescript");
  const file = path.join(workDir, "rendered_objects.ts");
  const head = [...imports].map(
      ([mod, names]) => `import type { ${[...names].sort().join(", ")} } from "${mod}";`);
  fs.writeFileSync(file, head.join("\n") + "\n\n" + literals.join("\n"));
  const program = ts.createProgram([file], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2020,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
    skipLibCheck: true,
  });
  const diagnostics = ts.getPreEmitDiagnostics(program);
  for (const d of diagnostics) {
    const text = ts.flattenDiagnosticMessageText(d.messageText, "\n");
    if (d.file) {
      const { line } = d.file.getLineAndCharacterOfPosition(d.start);
      // The nearest "// <label>" comment above the error names the object.
      const lines = d.file.text.split("\n").slice(0, line + 1).reverse();
      const owner = (lines.find((l) => l.startsWith("// ")) || "// ?").slice(3);
      console.log(`FAIL ${owner}: unknown field or wrong type (${path.basename(file)}:${line + 1}): ${text}`);
    } else {
      console.log(`FAIL typescript: ${text}`);
    }
  }
  failures += diagnostics.length;
  if (diagnostics.length === 0) {
    console.log(`ok   typescript: ${entries.length} objects, no unknown field (tsc ${ts.version} --strict)`);
  }
  process.exit(failures === 0 ? 0 : 1);
}

main();
