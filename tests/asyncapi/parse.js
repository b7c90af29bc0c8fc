// Parse an AsyncAPI document with the official parser (@asyncapi/parser, pinned in
// package.json) and print its diagnostics as JSON on stdout:
//   {"parser": "3.6.6", "valid": true, "diagnostics": [{"severity": "error", ...}]}
// Usage: node parse.js FILE   (YAML or JSON). Exit 0 when it ran, whatever it found;
// tests/integration/test_asyncapi_parser.py decides what fails.
"use strict";

const fs = require("fs");
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");
const { version } = require("@asyncapi/parser/package.json");

const SEVERITIES = {
  [DiagnosticSeverity.Error]: "error",
  [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "information",
  [DiagnosticSeverity.Hint]: "hint",
};

async function main() {
  const source = fs.readFileSync(process.argv[2], "utf8");
  const { document, diagnostics } = await new Parser().parse(source);
  const report = {
    parser: version,
    valid: document !== undefined,
    diagnostics: diagnostics.map((d) => ({
      severity: SEVERITIES[d.severity] || String(d.severity),
      code: d.code,
      message: d.message,
      path: d.path,
    })),
  };
  process.stdout.write(JSON.stringify(report) + "\n");
}

main().catch((error) => {
  process.stderr.write(String((error && error.stack) || error) + "\n");
  process.exit(2);
});
