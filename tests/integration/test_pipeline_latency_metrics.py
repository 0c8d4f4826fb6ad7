#!/usr/bin/env python3
"""The live pipeline's latency histograms on /metrics (issue 22, item 7):
tandem_pipeline_commit_seconds (each group commit's log write and
fdatasync), tandem_pipeline_snapshot_step_seconds and
tandem_pipeline_request_duration_seconds (each events request, arrival
to answer), on a real `tandem serve --state` taking the fraud example's
events from curl.

Checked against what the test itself knows, not against numbers the
server printed elsewhere: the request histogram counts exactly the events
requests this test sent (new events, duplicates, a body that is not JSON,
a batch), and none of the requests to an unknown pipeline or to other
endpoints; its sum is at most the sum of the wall-clock times curl took
for those requests (the server's part of a request cannot be longer than
the client's); the commit histogram counts what
tandem_state_commits_total counts and sums to
tandem_state_commit_seconds_total; every histogram's buckets never
decrease and end at its _count; promtool accepts the exposition.
"""
import os
import random
import re
import shutil
import subprocess
import time

from common import expect, finish, tmpdir
from serve_util import Server, curl, fraud_example_setup

PIPELINE = 'pipeline="fraud"'


def histogram(text, name):
    """(buckets as [(le, cumulative)], sum, count) of NAME{pipeline="fraud"}."""
    buckets = [(float(le), int(v)) for le, v in re.findall(
        r'^%s_bucket\{%s,le="([^"]+)"\} (\d+)$' % (name, PIPELINE), text, re.M)]
    total = re.search(r'^%s_sum\{%s\} (\S+)$' % (name, PIPELINE), text, re.M)
    count = re.search(r'^%s_count\{%s\} (\d+)$' % (name, PIPELINE), text, re.M)
    if not (buckets and total and count):
        return None
    return buckets, float(total.group(1)), int(count.group(1))


def check_shape(text, name):
    """The histogram's (buckets, sum, count), checked; (None, 0, -1) and a
    failure when it is not on /metrics."""
    found = histogram(text, name)
    expect(found is not None, f"{name} is not on /metrics")
    if found is None:
        return None, 0.0, -1
    buckets, total, count = found
    expect(buckets[-1][0] == float("inf"), f"{name}: no +Inf bucket last")
    expect(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])),
           f"{name}: buckets decrease: {buckets}")
    expect(buckets[-1][1] == count, f"{name}: +Inf {buckets[-1][1]} != count {count}")
    expect(total >= 0, f"{name}: negative sum {total}")
    return buckets, total, count


out = tmpdir()
args, env, _ = fraud_example_setup(out)
rng = random.Random(22)
sent, client_seconds = 0, 0.0
with Server(*args, "--state", os.path.join(out, "state"), env=env) as server:
    def events(body):
        global sent, client_seconds
        started = time.monotonic()
        r = curl(server, "POST", "/v1/pipelines/fraud/events", body)
        client_seconds += time.monotonic() - started
        sent += 1
        return r

    ids = []
    for i in range(40):
        txn = "t%d" % i
        ids.append(txn)
        r = events('{"txn_id":"%s","card_id":"c%06d","ts":"2026-03-31T10:%02d:00Z",'
                   '"amount":%.2f}' % (txn, rng.randint(1, 5), i, rng.random() * 100))
        expect(r.status == 200, f"event {i}: {r}")
    for txn in rng.sample(ids, 5):  # duplicates: answered, nothing applied
        r = events('{"txn_id":"%s","card_id":"c000001","ts":"2026-03-31T11:00:00Z",'
                   '"amount":1}' % txn)
        expect(r.status == 200, f"duplicate {txn}: {r}")
    r = events("{not json")
    expect(r.status == 400, f"a body that is not JSON: {r}")
    r = events('[{"txn_id":"b1","card_id":"c000002","ts":"2026-03-31T12:00:00Z",'
               '"amount":3},{"txn_id":"b2","card_id":"c000003",'
               '"ts":"2026-03-31T12:00:01Z","amount":4}]')
    expect(r.status == 200, f"a batch: {r}")
    # Not events requests of this pipeline: not in its histogram.
    r = curl(server, "POST", "/v1/pipelines/nosuch/events", '{"txn_id":"x"}')
    expect(r.status == 404, f"unknown pipeline: {r}")
    r = curl(server, "GET", "/v1/pipelines/fraud")
    expect(r.status == 200, f"pipeline metadata: {r}")

    text = curl(server, "GET", "/metrics").body
    _, request_sum, request_count = check_shape(
        text, "tandem_pipeline_request_duration_seconds")
    expect(request_count == sent,
           f"request histogram counts {request_count}, the test sent {sent}")
    expect(0 < request_sum <= client_seconds,
           f"request seconds {request_sum} not in (0, {client_seconds}] (curl's)")
    _, commit_sum, commit_count = check_shape(text, "tandem_pipeline_commit_seconds")
    commits = re.search(r'^tandem_state_commits_total\{%s\} (\d+)$' % PIPELINE,
                        text, re.M)
    commit_total = re.search(
        r'^tandem_state_commit_seconds_total\{%s\} (\S+)$' % PIPELINE, text, re.M)
    expect(commits and commit_total, "the commit counters are not on /metrics")
    expect(commit_count == int(commits.group(1)) and commit_count >= 1,
           f"commit histogram {commit_count} != commits {commits.group(1)}")
    expect(abs(commit_sum - float(commit_total.group(1))) <= 1e-6 * max(1, commit_sum),
           f"commit seconds {commit_sum} != {commit_total.group(1)}")
    check_shape(text, "tandem_pipeline_snapshot_step_seconds")
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=text,
                               capture_output=True, text=True)
        # promtool lints too (e.g. counters' names); only errors fail here.
        expect("error" not in (check.stdout + check.stderr).lower(),
               "promtool: " + check.stdout + check.stderr)
print(f"request histogram: {sent} requests; commit histogram matches the "
      "commit counters", flush=True)
finish("test_pipeline_latency_metrics")
