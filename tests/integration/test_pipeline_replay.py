"""Batch and real time agree, and acknowledged state survives kill -9.

(a) `tandem replay` finds zero differences between a live `tandem serve
    PIPELINE` (from empty state) and the batch result, for a random stream
    with late events, repeated ids and invalid events, sending 1 and 32
    events per request, from CSV and from JSON Lines.
(b) A server with another model, or another window, makes replay exit 1
    and print the difference.
(c) kill -9: events go one at a time (http.client, keep-alive) to `tandem
    serve PIPELINE --state DIR`; another thread SIGKILLs the server at a
    random moment while requests are in flight; the server restarts on the
    same DIR and the client resends from the first event not acknowledged
    (that one may have been applied before the kill: then it must answer
    "duplicate": true with the original values). Three kills per run, two
    runs. Every final answer equals, byte for byte, `tandem batch
    --explain` of the same file; after each restart, events acknowledged
    before the kill answer as duplicates with their original values.
"""
import http.client
import json
import os
import random
import re
import signal
import threading
import time

from common import expect, fail, finish, tmpdir
from pipeline_util import (FRAUD_COLUMNS, fraud_events, fraud_pipeline, read_jsonl,
                           read_lines, tandem, write, write_csv, write_jsonl)
from serve_util import Server

out = tmpdir()
pipeline = fraud_pipeline(out)
# The same pipeline with another model, and with another window.
other_model = os.path.join(out, "other")
os.mkdir(other_model)
fraud_pipeline(other_model, model_seed=7)
other_window = os.path.join(out, "window")
os.mkdir(other_window)
write(os.path.join(other_window, "pipeline.yaml"),
      open(pipeline).read().replace("{name: n_10m, agg: count, window: 10m}",
                                    "{name: n_10m, agg: count, window: 9m}"))
os.symlink(os.path.join(out, "model.json"), os.path.join(other_window, "model.json"))


def replay(server, src, *flags, yaml=pipeline):
    return tandem("replay", yaml, "--in", src, "--url", server.url, *flags,
                  timeout=600)


# ---- (a) zero differences ----
events = fraud_events(seed=21, n=2000, entities=25, invalid=0.03)
csv_in = write_csv(os.path.join(out, "events.csv"), FRAUD_COLUMNS, events)
jsonl_in = write_jsonl(os.path.join(out, "events.jsonl"), FRAUD_COLUMNS, events,
                       numbers=("amount",))
for src, flags in ((csv_in, ("--batch", "1")), (csv_in, ("--batch", "32")),
                   (jsonl_in, ("--batch", "7")), (csv_in, ())):
    with Server(pipeline) as server:
        r = replay(server, src, *flags)
        expect(r.returncode == 0 and " 0 differences" in r.stderr,
               f"replay {os.path.basename(src)} {flags}: exit {r.returncode}: "
               f"{r.stderr[-3000:]}")
        expect(f"{len(events)} events" in r.stderr, f"replay count: {r.stderr}")
        print("(a)", os.path.basename(src), *flags, "->", r.stderr.strip(), flush=True)

# ---- (b) a different server is caught ----
for directory, what in ((other_model, "another model"), (other_window, "another window")):
    with Server(os.path.join(directory, "pipeline.yaml")) as server:
        r = replay(server, csv_in, "--batch", "16")
        # Each difference names the member that differs: "  score: batch
        # 0.25, live 0.5" (test_serve_messages checks which members).
        expect(r.returncode == 1 and "difference at line" in r.stderr
               and re.search(r"\n  [a-z_.\[\]0-9]+: batch .+, live .+\n", r.stderr)
               and " 0 differences" not in r.stderr,
               f"replay against {what}: exit {r.returncode}: {r.stderr[-2000:]}")
        print("(b)", what, "->", r.stderr.strip().splitlines()[-1], flush=True)

# ---- (c) kill -9 ----
DUP = ',"duplicate":true'


def as_duplicate(answer):
    """The answer a repeat of an event gets: the original's, marked."""
    if DUP in answer:
        return answer
    i = answer.index(',"features":')
    return answer[:i] + DUP + answer[i:]


def expected_answers(src):
    """Per event of SRC: (status, body) as `tandem batch --explain` says the
    live endpoint must answer it."""
    dst = os.path.join(out, os.path.basename(src) + ".expected.jsonl")
    r = tandem("batch", pipeline, "--in", src, "--out", dst, "--explain")
    expect(r.returncode == 0, f"batch --explain: {r.stderr}")
    lines = iter(l.decode() for l in read_lines(dst))
    rejects = {}
    if os.path.exists(dst + ".rejects.jsonl"):
        rejects = {r["line"]: r["error"] for r in read_jsonl(dst + ".rejects.jsonl")}
    header = not src.endswith(".jsonl")
    answers = []
    i = 0
    while True:
        line = i + 1 + header
        if line in rejects:
            answers.append((400, json.dumps({"error": rejects[line]}, separators=(",", ":"))))
        else:
            nxt = next(lines, None)
            if nxt is None:
                break
            answers.append((200, nxt))
        i += 1
    return answers


class Client:
    def __init__(self, server):
        self.server = server
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def post(self, body):
        """(status, text), or None when the server went away."""
        try:
            self.conn.request("POST", "/v1/pipelines/fraud/events?explain=features",
                              body=body, headers={"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            return resp.status, resp.read().decode()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            return None


def event_bodies(src):
    with open(src) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def kill_run(seed, n, kills):
    rng = random.Random(seed)
    evs = fraud_events(seed=seed, n=n, entities=12, invalid=0.03, duplicates=0.05)
    src = write_jsonl(os.path.join(out, f"kill{seed}.jsonl"), FRAUD_COLUMNS, evs,
                      numbers=("amount",))
    want = expected_answers(src)
    bodies = event_bodies(src)
    expect(len(want) == len(bodies) == n, f"kill run {seed}: {len(want)} expected "
           f"answers, {len(bodies)} events")
    state = os.path.join(out, f"state{seed}")
    points = sorted(rng.sample(range(20, n - 20), kills))
    answers = [None] * n
    acked = [0]  # events acknowledged so far
    server = Server(pipeline, "--state", state)
    client = Client(server)
    i = 0
    restarts = 0
    killed_at = []
    in_flight_applied = [0]
    while i < n:
        killer = None
        if len(killed_at) < len(points):
            target = points[len(killed_at)]
            proc = server.proc

            def kill_later(target=target, proc=proc):
                while acked[0] < target and proc.poll() is None:
                    time.sleep(0.0005)
                time.sleep(rng.uniform(0, 0.004))
                proc.send_signal(signal.SIGKILL)
            killer = threading.Thread(target=kill_later)
            killer.start()
        lost = None
        while i < n:
            got = client.post(bodies[i])
            if got is None:
                lost = i
                break
            answers[i] = got
            i += 1
            acked[0] = i
        if killer is None:
            break
        killer.join()
        server.proc.wait()
        expect(server.proc.returncode == -signal.SIGKILL,
               f"kill run {seed}: server exit {server.proc.returncode}")
        if lost is None:
            # The kill came after the last event: nothing was in flight.
            killed_at.append(n)
            break
        killed_at.append(lost)
        restarts += 1
        server = Server(pipeline, "--state", state)
        client = Client(server)
        # Acknowledged before the kill: a repeat is a duplicate with the
        # original's answer (the last few, and one further back).
        for j in sorted({k for k in (lost - 1, lost - 2, lost - 5, lost // 2) if k >= 0}):
            status, body = want[j]
            if status != 200:
                continue
            again = client.post(bodies[j])
            expect(again == (200, as_duplicate(body)),
                   f"kill run {seed}: event {j + 1} acknowledged before kill "
                   f"{restarts} answers {again}, expected {as_duplicate(body)}")
        # The event in flight: applied or not, it answers the same values.
        got = client.post(bodies[lost])
        status, body = want[lost]
        if got is not None and status == 200 and got[1] == as_duplicate(body) != body:
            in_flight_applied[0] += 1
        if got is not None and status == 200 and got[1] != body:
            expect(got == (200, as_duplicate(body)),
                   f"kill run {seed}: event {lost + 1}, in flight at kill "
                   f"{restarts}: {got}, expected {body} (or it marked duplicate)")
            got = (got[0], body)  # the original was lost with the kill
        answers[lost] = got
        i = lost + 1
        acked[0] = i
    server.stop()
    differences = 0
    for j, (got, w) in enumerate(zip(answers, want)):
        if got != w:
            differences += 1
            if differences <= 5:
                fail(f"kill run {seed}: event {j + 1}: live {got}, batch {w}")
    print(f"(c) run {seed}: {n} events, killed at {killed_at}, {restarts} restarts, "
          f"{in_flight_applied[0]} in-flight events found applied after the restart, "
          f"{differences} differences", flush=True)
    expect(restarts >= 1, f"kill run {seed}: no kill landed mid-stream")
    return differences


kill_run(seed=31, n=700, kills=3)
kill_run(seed=32, n=500, kills=2)

finish("test_pipeline_replay")
