"""The shared library and the C example (examples/embed) as a user builds
them: `make install PREFIX=...` puts the CLI, tandem.h, both libraries and
tandem.pc in place; the example builds with pkg-config against the
installed library and runs with only it. Checked: the SONAME is versioned,
libtandem.so exports only tdm_ names (every one declared in tandem.h),
and the example's answers to a seeded adversarial stream (late events,
repeated ids, invalid events) are `tandem batch`'s output for the same
JSON Lines, byte for byte, its rejected events the batch's rejects; with
a state directory, the stream split over three runs of the program
answers the same."""
import os
import re
import subprocess
import sys

from common import ROOT, expect, finish, tmpdir
from pipeline_util import (FRAUD_COLUMNS, fraud_events, fraud_pipeline,
                           read_jsonl, read_lines, tandem, write_jsonl)

BUILD = os.path.dirname(os.environ.get("TANDEM", os.path.join(ROOT, "build", "tandem")))


def sh(*args, env=None, check=True):
    proc = subprocess.run(list(map(str, args)), capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited "
                             f"{proc.returncode}: {proc.stderr[-2000:]}")
    return proc


d = tmpdir()
# An install to another prefix first: the second install's tandem.pc must
# name its own prefix (a tandem.pc cached in the build directory pointed
# every later install at the first one's, and the example then built
# against whatever header and library lay there, or none).
earlier = os.path.join(d, "earlier")
sh("make", "-C", ROOT, "-s", f"BUILD={BUILD}", f"PREFIX={earlier}", "install")
prefix = os.path.join(d, "prefix")
sh("make", "-C", ROOT, "-s", f"BUILD={BUILD}", f"PREFIX={prefix}", "install")
pc = open(os.path.join(prefix, "lib", "pkgconfig", "tandem.pc")).read()
expect(f"prefix={prefix}\n" in pc and earlier not in pc,
       f"the installed tandem.pc names another prefix: {pc[:200]!r}")
lib = os.path.join(prefix, "lib")
for path in ("bin/tandem", "include/tandem.h", "lib/libtandem.a",
             "lib/libtandem.so", "lib/libtandem.so.0", "lib/pkgconfig/tandem.pc"):
    expect(os.path.exists(os.path.join(prefix, path)), f"{path} is not installed")

# The SONAME, and only the public names exported.
dynamic = sh("readelf", "-d", os.path.join(lib, "libtandem.so")).stdout
expect("Library soname: [libtandem.so.0]" in dynamic,
       "libtandem.so has no versioned SONAME")
symbols = sh("nm", "-D", "--defined-only", os.path.join(lib, "libtandem.so")).stdout
exported = sorted(line.split()[-1] for line in symbols.splitlines()
                  if line.split()[-2:-1] and line.split()[-2] in "TDBR")
header = open(os.path.join(ROOT, "include", "tandem.h")).read()
declared = set(re.findall(r"TDM_API [^;(]*?\b(tdm_[a-z0-9_]+)\(", header))
expect(exported and all(s.startswith("tdm_") and not s.startswith("tdm__")
                        for s in exported),
       f"non-public symbols exported: {[s for s in exported if not s.startswith('tdm_') or s.startswith('tdm__')][:10]}")
expect(set(exported) == declared,
       f"exported != declared: {sorted(set(exported) ^ declared)}")

# The example, built through pkg-config against the installed library.
env = {"PKG_CONFIG_PATH": os.path.join(lib, "pkgconfig")}
sh("make", "-C", os.path.join(ROOT, "examples", "embed"), "-s", f"OUT={d}",
   env=env)
embed = os.path.join(d, "embed")
needed = sh("readelf", "-d", embed).stdout
expect("libtandem.so.0" in needed, "the example does not link libtandem.so")

yaml = fraud_pipeline(d)
rows = fraud_events(seed=1901, n=500, entities=7, invalid=0.05)
events = write_jsonl(os.path.join(d, "events.jsonl"), FRAUD_COLUMNS, rows,
                     numbers=("amount",))
out = os.path.join(d, "batch.jsonl")
proc = tandem("batch", yaml, "--in", events, "--out", out, "--no-registry")
expect(proc.returncode == 0, proc.stderr)
batch_lines = read_lines(out)
rejects_path = out + ".rejects.jsonl"
if not os.path.exists(rejects_path):
    rejects_path = os.path.join(d, "batch.rejects.jsonl")
rejects = read_jsonl(rejects_path)
expect(len(rejects) > 0, "the stream has no invalid events")

run_env = {"LD_LIBRARY_PATH": lib}


def answers(*args):
    proc = sh(embed, yaml, *args, env=run_env, check=False)
    expect(proc.returncode in (0, 1), f"embed exited {proc.returncode}: "
                                      f"{proc.stderr[-2000:]}")
    return proc.stdout.encode().split(b"\n")[:-1]


def compare(got, what):
    expect(len(got) == len(rows), f"{what}: {len(got)} answers for {len(rows)} events")
    applied = [a for a in got if not a.startswith(b'{"error"')]
    errors = [a for a in got if a.startswith(b'{"error"')]
    expect(applied == batch_lines,
           f"{what}: answers differ from tandem batch's output "
           f"({len(applied)} vs {len(batch_lines)} lines)")
    expect(len(errors) == len(rejects),
           f"{what}: {len(errors)} rejected, batch rejected {len(rejects)}")


compare(answers(events), "in memory")

# Durable: the stream in three runs of the program over one directory.
lines = open(events).read().splitlines(keepends=True)
got = []
for k, part in enumerate((lines[:150], lines[150:320], lines[320:])):
    p = os.path.join(d, f"part{k}.jsonl")
    with open(p, "w") as f:
        f.writelines(part)
    got += answers(p, os.path.join(d, "state"))
compare(got, "durable, three runs")

# A pipeline that does not load: exit 2 and the file:line:column.
bad = os.path.join(d, "bad.yaml")
with open(bad, "w") as f:
    f.write("name: x\nentity: k\n  time: ts\n")
proc = sh(embed, bad, events, env=run_env, check=False)
expect(proc.returncode == 2 and "bad.yaml:" in proc.stderr,
       f"a bad pipeline: exit {proc.returncode}, {proc.stderr!r}")

finish("embedding (libtandem.so, pkg-config, examples/embed)")
