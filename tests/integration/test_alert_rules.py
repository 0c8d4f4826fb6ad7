"""The Prometheus alert rules (deploy/prometheus/tandem-alerts.yml,
docs/operations.md) against promtool and against the real binary:

1. `promtool check rules` accepts the file and `promtool test rules` runs
   its unit tests (deploy/prometheus/tandem-alerts.test.yml), which give
   every alert series that fire it and series that must not.
2. Every alert has a unit test that fires it (an alert without one could
   never be shown to work).
3. Every metric a rule's expression reads is one that a running `tandem
   serve` (the fraud example: a pipeline with a lookup table and a drift
   reference, and a model) or `tandem stream` (on librdkafka's mock
   cluster) exports, with every label the rule matches, groups by or
   names in its annotations, and every exact label value it matches
   (outcome="rejected", source="none", ...): a renamed metric or label
   fails here rather than leaving an alert that never fires.
"""
import os
import re
import signal
import subprocess
import urllib.request

import yaml

import kafka_util
from common import ROOT, TANDEM, expect, finish, tmpdir, wait_until
from pipeline_util import FRAUD_COLUMNS, fraud_events, fraud_pipeline, write_jsonl
from serve_util import Server, curl, fraud_example_setup, infer_body

RULES_DIR = os.path.join(ROOT, "deploy", "prometheus")
RULES = os.path.join(RULES_DIR, "tandem-alerts.yml")
TESTS = os.path.join(RULES_DIR, "tandem-alerts.test.yml")
# Labels Prometheus itself adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
out = tmpdir()

# ---- 1. promtool ----
for args in (["check", "rules", RULES], ["test", "rules", TESTS]):
    proc = subprocess.run(["promtool", *args], capture_output=True, text=True,
                          cwd=RULES_DIR)
    expect(proc.returncode == 0 and "SUCCESS" in proc.stdout,
           f"promtool {' '.join(args)}: {proc.stdout}{proc.stderr}")

rules = [r for g in yaml.safe_load(open(RULES))["groups"] for r in g["rules"]]
alerts = {r["alert"] for r in rules}
expect(len(alerts) == len(rules) and len(rules) >= 9,
       f"{len(rules)} rules, {len(alerts)} distinct alert names")

# ---- 2. every alert has a test where it fires ----
fired = set()
for case in yaml.safe_load(open(TESTS))["tests"]:
    for t in case.get("alert_rule_test", []):
        if t.get("exp_alerts"):
            fired.add(t["alertname"])
expect(alerts == fired, f"alerts without a firing test: {sorted(alerts - fired)}; "
                        f"tests of unknown alerts: {sorted(fired - alerts)}")


def parse_exposition(text):
    """Prometheus text format -> {sample name: {label: set of values}}."""
    found = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? \S+$', line)
        expect(m is not None, f"/metrics line not in the text format: {line!r}")
        if not m:
            continue
        labels = found.setdefault(m.group(1), {})
        for name, value in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                      m.group(3) or ""):
            labels.setdefault(name, set()).add(value)
    return found


# ---- 3a. a real tandem serve: pipeline, tables, drift, a model ----
exported = {}
args, env, live_csv = fraud_example_setup(out)
with Server(*args, "--model",
            "credit=" + os.path.join(ROOT, "examples", "credit-risk", "model.json"),
            env=env) as server:
    r = curl(server, "POST", "/v2/models/credit/infer",
             infer_body([[9, 5, 60, 30, 1, 0, 1, 73, 129, 0, 0, 800, 846]]))
    expect(r.status == 200, f"infer: {r}")
    r = curl(server, "POST", "/v1/pipelines/fraud/events",
             '{"txn_id":"t1","card_id":"c000007","ts":"2026-03-31T10:00:00Z",'
             '"amount":12.5}')
    expect(r.status == 200, f"events: {r}")
    r = curl(server, "GET", "/metrics")
    expect(r.status == 200, f"/metrics: {r}")
    for name, labels in parse_exposition(r.body).items():
        for label, values in labels.items():
            exported.setdefault(name, {}).setdefault(label, set()).update(values)
        exported.setdefault(name, {})

# ---- 3b. a real tandem stream on the mock cluster ----
pipeline = fraud_pipeline(out)
events = fraud_events(seed=5, n=40, entities=4)
jsonl = write_jsonl(os.path.join(out, "events.jsonl"), FRAUD_COLUMNS, events,
                    numbers=("amount",))
with kafka_util.Mock(["in:1", "out:1", "dlq:1", "tandem-fraud-in-changelog:1"]) as mock:
    log_path = os.path.join(out, "stream.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [TANDEM, "stream", pipeline, "--brokers", mock.brokers,
             "--input", "in", "--output", "out", "--dead-letter", "dlq",
             "--commit-interval-ms", "200", "--metrics", "127.0.0.1:0"],
            stdout=log, stderr=log)
    lines = open(jsonl).read().splitlines()
    mock.produce("in", [(e["card"] or "", l) for e, l in zip(events, lines)])
    url = wait_until(lambda: re.search(r"metrics on (\S+)", open(log_path).read()),
                     "tandem stream logs its metrics address")

    def lag_shown():
        text = urllib.request.urlopen(url.group(1), timeout=10).read().decode()
        return text if "tandem_stream_consumer_lag{" in text else None

    text = wait_until(lag_shown, "tandem stream's /metrics shows its lag") if url else ""
    for name, labels in parse_exposition(text or "").items():
        for label, values in labels.items():
            exported.setdefault(name, {}).setdefault(label, set()).update(values)
        exported.setdefault(name, {})
    proc.send_signal(signal.SIGTERM)
    expect(proc.wait(timeout=60) == 0, "tandem stream: exit status on SIGTERM\n"
           + open(log_path).read()[-2000:])

# ---- 3c. the rules read only what was exported ----
METRIC = re.compile(r"\b(tandem_[a-z0-9_]+)\b(\{[^}]*\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
for rule in rules:
    expr = rule["expr"]
    used = METRIC.findall(expr)
    expect(used, f"{rule['alert']}: reads no tandem metric")
    grouped = set()
    for clause in re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
        grouped |= {x.strip() for x in clause.split(",") if x.strip()}
    in_text = set(re.findall(r"\$labels\.([a-zA-Z_]+)",
                             " ".join(rule.get("annotations", {}).values())))
    first = used[0][0]
    for name, matchers in used:
        if not expect(name in exported, f"{rule['alert']}: {name} is not exported "
                      f"by tandem serve or stream"):
            continue
        for label, op, value in MATCHER.findall(matchers or ""):
            if expect(label in exported[name], f"{rule['alert']}: {name} has no "
                      f"label {label} (it has {sorted(exported[name])})") and op == "=":
                expect(value in exported[name][label],
                       f"{rule['alert']}: {name}{{{label}=\"{value}\"}} is never "
                       f"exported (values seen: {sorted(exported[name][label])})")
    # The labels the alert carries come from its first metric.
    for label in (grouped | in_text) - TARGET_LABELS:
        expect(first in exported and label in exported[first],
               f"{rule['alert']}: groups by or names label {label}, which "
               f"{first} does not have")

finish("test_alert_rules")
