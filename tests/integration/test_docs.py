"""Executable documentation: every shell block of README.md and docs/*.md runs.

The test extracts the fenced blocks marked ```sh (or bash, shell) from
README.md and then docs/*.md in name order, and runs each runnable one
with `bash -e -o pipefail` in one fresh temporary directory, in document
order, so a later block sees the files an earlier one wrote (as a reader
following the page would). A block that cannot run here carries the
comment `<!-- not runnable: REASON -->` on the line before its fence; a
marker without a reason is itself a failure, so every skip says why.

The directory looks like a checkout to the blocks: examples/, tests/,
scripts/ and python/ are links to this tree, and build/tandem links to the
binary under test (build/ itself is a real directory, so nothing a block
writes lands in the tree). `tandem` on PATH is the same binary. The
blocks run in a private network namespace (`unshare -rn`) where the
documented localhost:8080 cannot collide with another test's server; if
the machine refuses namespaces they run in the host's.

A ```text block right after a runnable block, preceded by
`<!-- output of the block above -->`, is the output the docs promise: the
block's stdout must equal it, whitespace aside (docs wrap long lines).

`TANDEM_DOCS=FILE.md` limits the run to one file (for editing docs).
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys

from common import ROOT, TANDEM, expect, fail, finish, tmpdir

SHELL_LANGUAGES = {"sh", "bash", "shell"}
NOT_RUNNABLE = re.compile(r"<!--\s*not runnable:\s*(.*?)\s*-->")
OUTPUT_MARK = re.compile(r"<!--\s*output of the block above\s*-->")
# Only stops a block that would hang; no duration is asserted.
BLOCK_TIMEOUT = 120
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


def blocks(path):
    """Yields (line, language, text, marker) for each fenced block of a
    markdown file: marker is the HTML comment on the nearest non-blank line
    before the fence, or None."""
    with open(path) as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, language = m.group(1), m.group(2)
        start = i
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            # A block indented under a list item is indented as a whole.
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line)
            i += 1
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = lines[before].strip() if before >= 0 else ""
        yield start + 1, language, "\n".join(body) + "\n", marker
        i += 1


def make_checkout(work):
    """Makes a directory that looks like a built checkout to the blocks."""
    for name in ("examples", "tests", "scripts", "python", "docs", "deploy"):
        os.symlink(os.path.join(ROOT, name), os.path.join(work, name))
    os.mkdir(os.path.join(work, "build"))
    os.symlink(os.path.abspath(TANDEM), os.path.join(work, "build", "tandem"))
    bin_dir = os.path.join(work, ".bin")
    os.mkdir(bin_dir)
    os.symlink(os.path.abspath(TANDEM), os.path.join(bin_dir, "tandem"))
    return bin_dir


def namespace_prefix():
    """The command prefix that runs a block in a private network namespace
    with loopback up, or [] where the machine refuses one."""
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"],
                           capture_output=True)
    if probe.returncode != 0:
        print("note: no private network namespace; blocks use the host's",
              flush=True)
        return []
    return ["unshare", "-rn", "bash", "-c", 'ip link set lo up && exec "$@"', "--"]


def run_block(prefix, text, work, env):
    """Runs one block in its own session; returns (status, stdout, stderr).
    Output goes to files, not pipes, so a server a block left running
    cannot hold the test open; whatever is left in the block's process
    group when it ends (or times out) is stopped by that group's id."""
    with open(os.path.join(work, ".stdout"), "w+") as out, \
            open(os.path.join(work, ".stderr"), "w+") as err:
        proc = subprocess.Popen(
            prefix + ["bash", "-e", "-o", "pipefail", "-c", text], cwd=work,
            env=env, stdout=out, stderr=err, start_new_session=True)
        try:
            returncode = proc.wait(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            returncode = "nothing: it was stopped after %d s" % BLOCK_TIMEOUT
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        out.seek(0)
        err.seek(0)
        return returncode, out.read(), err.read()


def main():
    files = [os.path.join(ROOT, "README.md")] + sorted(
        glob.glob(os.path.join(ROOT, "docs", "*.md")))
    only = os.environ.get("TANDEM_DOCS")
    if only:
        files = [f for f in files if os.path.relpath(f, ROOT) == only]
        expect(files, f"TANDEM_DOCS={only}: no such markdown file")
    work = tmpdir()
    bin_dir = make_checkout(work)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"],
               HOME=work, TANDEM_REGISTRY=os.path.join(work, "runs.db"))
    prefix = namespace_prefix()
    ran = skipped = 0
    for path in files:
        name = os.path.relpath(path, ROOT)
        last_stdout = None
        for line, language, text, marker in blocks(path):
            where = f"{name}:{line}"
            if OUTPUT_MARK.match(marker) and language == "text":
                if last_stdout is None:
                    fail(f"{where}: an output block follows no block that ran")
                else:
                    squash = lambda s: re.sub(r"\s+", "", s)
                    expect(squash(last_stdout) == squash(text),
                           f"{where}: the block above printed {last_stdout!r}, "
                           f"the docs show {text!r}")
                continue
            last_stdout = None
            if language not in SHELL_LANGUAGES:
                continue
            skip = NOT_RUNNABLE.match(marker)
            if skip:
                expect(skip.group(1), f"{where}: 'not runnable' gives no reason")
                skipped += 1
                continue
            returncode, stdout, stderr = run_block(prefix, text, work, env)
            ran += 1
            if returncode != 0:
                fail(f"{where}: the block exited {returncode}:\n{text}"
                     f"stderr: {stderr.strip()[-2000:]}")
            last_stdout = stdout
    print(f"{ran} blocks ran, {skipped} marked not runnable", flush=True)
    expect(ran > 0 or only, "no runnable block found")
    shutil.rmtree(work, ignore_errors=True)
    finish("docs")


if __name__ == "__main__":
    sys.exit(main())
