"""`tandem batch` killed with SIGKILL at chosen steps (docs/reliability.md).

The fraud example pipeline runs over a generated month of transactions
(three chunks of events, with a few invalid rows, so a rejects file is
written). An uninterrupted run gives the reference; then each run is
killed at a named step: the process SIGKILLs itself there
(TANDEM_CRASH_AT, core/clock.c), which the kernel carries out exactly as
an outside `kill -9`, so where the kill lands does not depend on the
speed of the machine. The steps: after the first and second chunks of
output are written, after the state is saved (as DIR.tmp), after the
table version is committed, after the rejects file is complete, after
the output is renamed into place, after the manifest is written and
after the state directory is renamed into place.

- plain batch: the destination names (output, OUT.manifest.json,
  OUT.rejects.jsonl) do not exist after a kill before the output's
  rename; a rerun into the same directory writes an output and rejects
  file byte-identical to the reference's;
- --materialize into a store: the table's versions (`mdb_dump` of the
  store's version records) are the same before and after a killed run
  (one more, whole, when the kill lands after the table's commit); a
  rerun adds exactly one version, with the reference's rows;
- --save-state DIR: DIR does not exist after the kill (it is written as
  DIR.tmp and renamed last of all, after the outputs and the manifest, so
  a kill that lands after that leaves a finished run, whose state must
  equal the reference's); a rerun writes it, with the same content
  (`mdb_dump`) as the reference's;
- the run registry (SQLite) still opens and lists the runs afterwards.

Nothing else may be left next to the output: outputs are written as
unnamed files (O_TMPFILE) and named only when complete. A `tandem serve
--state` killed with SIGKILL is tested in test_pipeline_replay.py
(acknowledged events survive, none is applied twice).
"""
import filecmp
import os
import re
import shutil
import signal
import subprocess
import time

from common import ROOT, TANDEM, expect, finish, tmpdir
from pipeline_util import tandem

PIPELINE = os.path.join(ROOT, "examples", "fraud", "pipeline.yaml")
# The steps each kind of run is killed at (TANDEM_CRASH_AT=NAME[:N]).
POINTS = {
    "plain": ["batch-chunk-written:1", "batch-chunk-written:2",
              "batch-rejects-finished", "batch-output-renamed",
              "batch-manifest-written"],
    "materialize": ["batch-chunk-written:1", "batch-table-committed",
                    "batch-rejects-finished", "batch-output-renamed",
                    "batch-manifest-written"],
    "save-state": ["batch-chunk-written:2", "batch-state-saved",
                   "batch-rejects-finished", "batch-output-renamed",
                   "batch-manifest-written", "batch-state-published"],
}
# Output files are written unnamed (O_TMPFILE, core/file.c) and linked to
# a temporary name only when complete, just before the rename into place:
# a SIGKILL leaves no temporary file (this was a bug: a named mkstemp file
# used to stay behind). A leftover of that shape is counted and fails.
TEMP_LEFTOVER = re.compile(r"^\..*\.tmp\.[A-Za-z0-9]{6}$")

out = tmpdir()
events = os.path.join(out, "events.csv")
gen = subprocess.run(
    ["/usr/bin/python3", os.path.join(ROOT, "examples", "fraud", "generate.py"),
     "--cards", "1500", "--days", "30", "--out", events],
    capture_output=True, text=True)
expect(gen.returncode == 0, "generate: " + gen.stderr)
# A few invalid rows, so that runs write a rejects file.
with open(events) as f:
    lines = f.readlines()
for i in range(1000, len(lines), 20000):
    cells = lines[i].split(",")
    cells[3] = "not-a-number"
    lines[i] = ",".join(cells)
with open(events, "w") as f:
    f.writelines(lines)
print(f"{len(lines) - 1} events", flush=True)

store_ref = os.path.join(out, "store-ref")
registry = os.path.join(out, "registry.db")


def batch_args(directory, store=None, save_state=False, materialize=False):
    args = [TANDEM, "batch", PIPELINE, "--in", events,
            "--out", os.path.join(directory, "scores.csv"), "--threads", "2",
            "--store", store or store_ref, "--registry", registry]
    if materialize:
        args += ["--materialize", "card_profile"]
    if save_state:
        args += ["--save-state", os.path.join(directory, "state")]
    return args


def dump(path, database=None):
    args = ["mdb_dump", "-p"] + (["-s", database] if database else ["-a"]) + [path]
    r = subprocess.run(args, capture_output=True)
    expect(r.returncode == 0, f"mdb_dump {path}: {r.stderr.decode()}")
    # Drop the header: its map size and page counts are not content.
    return r.stdout.split(b"HEADER=END\n", 1)[-1]


def versions(store):
    return re.findall(rb"card_profile\\00(?:\\[0-9a-f]{2}|[^\\\n]){8}\n", dump(store, "versions"))


def fresh(name):
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


# ---- the references (the store gets one version) ----
os.makedirs(store_ref)


def reference(kind, directory, **flags):
    r = subprocess.run(batch_args(directory, **flags), capture_output=True, text=True)
    expect(r.returncode == 0, f"reference {kind} run: " + r.stderr)
    print(f"reference {kind} run: {r.stderr.strip().splitlines()[0]}", flush=True)


reference("materialize", fresh("ref-materialize"), materialize=True)
ref = fresh("ref")
reference("plain", ref)
expect(os.path.exists(os.path.join(ref, "scores.csv.rejects.jsonl")),
       "the reference run has rejects")
ref_state = fresh("ref-state")
reference("save-state", ref_state, save_state=True)
ref_state_dump = dump(os.path.join(ref_state, "state"))
ref_table_rows = dump(store_ref, "rows")

leftovers = []


def check_dir(directory, label, allowed=()):
    """Nothing in DIRECTORY but ALLOWED and known temp leftovers."""
    names = sorted(os.listdir(directory))
    for name in names:
        if name in allowed:
            continue
        if TEMP_LEFTOVER.match(name):
            leftovers.append(f"{label}: {name}")
            os.unlink(os.path.join(directory, name))
        else:
            expect(False, f"{label}: {name} left next to the output")


def killed_run(args, point):
    """Runs ARGS with TANDEM_CRASH_AT=POINT: the process SIGKILLs itself at
    that step. True if it died there."""
    proc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=dict(os.environ, TANDEM_CRASH_AT=point))
    killed = proc.returncode == -signal.SIGKILL and b"crash point reached" in proc.stderr
    expect(killed, f"killed at {point}: exit {proc.returncode}, "
                   f"{proc.stderr.decode()[-500:]}")
    return killed


def same_output(directory, label):
    for name in ("scores.csv", "scores.csv.rejects.jsonl"):
        expect(filecmp.cmp(os.path.join(ref, name), os.path.join(directory, name),
                           shallow=False), f"{label}: {name} differs from the reference")


kills = 0
for kind in ("plain", "materialize", "save-state"):
    for point in POINTS[kind]:
        label = f"{kind} killed at {point}"
        d = fresh("run")
        store = os.path.join(out, "store")
        if kind == "materialize":
            shutil.rmtree(store, ignore_errors=True)
            shutil.copytree(store_ref, store)
            before = versions(store)
        args = batch_args(d, store=store if kind == "materialize" else None,
                          save_state=kind == "save-state",
                          materialize=kind == "materialize")
        was_killed = killed_run(args, point)
        kills += was_killed
        landed_in_commit = False
        if was_killed:
            if kind == "materialize":
                # The table version is committed (atomically, complete) just
                # before the output files are renamed into place: a kill in
                # between leaves a whole new version and no output. Never a
                # partial one.
                now = versions(store)
                landed_in_commit = now != before
                after_commit = POINTS[kind].index(point) >= \
                    POINTS[kind].index("batch-table-committed")
                expect(landed_in_commit == after_commit,
                       f"{label}: a new version {landed_in_commit}, expected "
                       f"{after_commit}")
                expect(now == before or (len(now) == len(before) + 1 and
                                         now[:len(before)] == before),
                       f"{label}: versions before {before}, after {now}")
                expect(dump(store, "rows").count(b"card_profile") ==
                       ref_table_rows.count(b"card_profile") * len(now),
                       f"{label}: every visible version is complete")
                check_dir(store, label + " (store)", allowed=("data.mdb", "lock.mdb"))
            # The state is written as state.tmp and renamed into place:
            # after a kill, state.tmp may remain (the next run removes it).
            # A kill after the outputs were renamed into place (recording
            # the run, exiting) leaves them complete: then they must equal
            # the reference's.
            done = [n for n in ("scores.csv", "scores.csv.rejects.jsonl",
                                "scores.csv.manifest.json", "state")
                    if os.path.exists(os.path.join(d, n))]
            renamed = POINTS[kind].index(point) >= \
                POINTS[kind].index("batch-output-renamed")
            expect(("scores.csv" in done) == renamed,
                   f"{label}: outputs present {done}")
            for name in done:
                if name.startswith("scores.csv") and not name.endswith(".json"):
                    expect(filecmp.cmp(os.path.join(ref, name), os.path.join(d, name),
                                       shallow=False),
                           f"{label}: {name} (finished before the kill) differs")
            check_dir(d, label, allowed=("state.tmp",) + tuple(done)
                      if "scores.csv" in done else ("state.tmp",))
            # The state directory is renamed into place last of all: a kill
            # that leaves it has left every output complete beside it.
            if "state" in done:
                expect("scores.csv.manifest.json" in done,
                       f"{label}: a state directory without the run's manifest")
                expect(dump(os.path.join(d, "state")) == ref_state_dump,
                       f"{label}: the state (finished before the kill) differs")
                shutil.rmtree(os.path.join(d, "state"))  # --save-state refuses it
        else:
            shutil.rmtree(os.path.join(d, "state"), ignore_errors=True)
        if kind == "materialize":
            before_rerun = versions(store)
        # The rerun, into the same directory.
        r = subprocess.run(args, capture_output=True, text=True)
        expect(r.returncode == 0, f"{label}: the rerun failed: {r.stderr}")
        same_output(d, label)
        allowed = ["scores.csv", "scores.csv.manifest.json", "scores.csv.rejects.jsonl"]
        if kind == "materialize":
            after = versions(store)
            expect(len(after) == len(before_rerun) + 1,
                   f"{label}: one version more: {len(before_rerun)} -> {len(after)}")
            expect(dump(store, "rows").count(b"card_profile") ==
                   ref_table_rows.count(b"card_profile") * len(after),
                   f"{label}: each version has the reference's rows")
        if kind == "save-state":
            allowed.append("state")
            expect(dump(os.path.join(d, "state")) == ref_state_dump,
                   f"{label}: the saved state differs from the reference's")
        check_dir(d, label + " (rerun)", allowed=allowed)
    print(f"ok {kind}: killed at {', '.join(POINTS[kind])}", flush=True)

# A crash point that is not NAME or NAME:N (N from 1) is refused at start,
# naming the variable, before anything is written: it used to be taken as
# a point that is never reached (":0", ":x"), so the run went on unkilled.
for bad in ("batch-output-renamed:0", "batch-output-renamed:x", ":3"):
    d = fresh("bad-point")
    r = subprocess.run(batch_args(d), capture_output=True, text=True,
                       env=dict(os.environ, TANDEM_CRASH_AT=bad))
    expect(r.returncode == 2 and f"TANDEM_CRASH_AT={bad}" in r.stderr,
           f"TANDEM_CRASH_AT={bad}: exit {r.returncode}, {r.stderr[-300:]}")
    check_dir(d, f"TANDEM_CRASH_AT={bad}")
print("ok malformed crash points refused", flush=True)

expect(kills == sum(map(len, POINTS.values())),
       f"{kills} runs died at their crash point")
r = tandem("runs", "--registry", registry)
expect(r.returncode == 0 and r.stdout.count("\n") >= 3,
       f"the registry after the kills: {r.returncode} {r.stderr}")
for line in leftovers:
    expect(False, "temporary file left after SIGKILL: " + line)
print(f"{kills} runs killed, {len(leftovers)} temporary files left behind", flush=True)
finish("test_crash")
