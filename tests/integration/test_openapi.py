"""docs/openapi.yaml, the HTTP API of `tandem serve`, against the running
server (docs/operations.md):

1. The document's paths and methods are exactly the server's routes (the
   route table in src/serve/server.c): a route the document lacks, or a
   documented path the server does not route, fails.
2. A real server (the fraud example's pipeline with a lookup table, a
   drift reference and a refresh schedule; a Triton-style model
   repository with two versions; an admin token) is walked: every
   documented path and method is called with requests that succeed and
   requests that fail. Each answer's status must be one the document
   lists for that operation, the status the test expects, and its body
   must validate (python3-jsonschema, JSON Schema 2020-12) against the
   schema documented for that status; an empty-bodied status must come
   with an empty body. The requests the test sends as valid validate
   against the documented request schemas.
3. Every documented (path, method, status) is exercised, except the few
   listed in NOT_EXERCISED with the reason.
"""
import json
import os
import re

import jsonschema
import yaml

from common import ROOT, expect, finish, tmpdir
from serve_util import Server, curl, fraud_example_setup

DOC = yaml.safe_load(open(os.path.join(ROOT, "docs", "openapi.yaml")))
# Statuses documented but not produced here, with why.
NOT_EXERCISED = {
    ("/v2/repository/index", "post", "403"): "needs a client off the loopback",
    ("/v2/repository/models/{model}/load", "post", "403"): "needs a client off the loopback",
    ("/v2/repository/models/{model}/unload", "post", "403"): "needs a client off the loopback",
    ("/v1/pipelines/{pipeline}/drift", "get", "403"): "needs a client off the loopback",
    ("/v1/pipelines/{pipeline}/events", "post", "503"): "overload (test_serve_operations, test_hostile)",
    ("/v1/pipelines/{pipeline}/events", "post", "504"): "a deadline (test_hybrid)",
}
out = tmpdir()


def template(path):
    return re.sub(r"\{[^}]+\}", "*", path)


# ---- 1. the document's routes are the server's ----
server_c = open(os.path.join(ROOT, "src", "serve", "server.c")).read()
table = server_c[server_c.index("} routes[] = {"):]
table = table[:table.index("};")]
routed = set(re.findall(r'\{"(/[^"]*)", "([A-Z]+)", ROUTE_', table))
documented = {(template(p), m.upper()) for p, item in DOC["paths"].items()
              for m in item if m in ("get", "post", "put", "delete", "patch")}
expect(len(routed) >= 17, f"found {len(routed)} routes in server.c")
expect(routed - documented == set(),
       f"routes missing from docs/openapi.yaml: {sorted(routed - documented)}")
expect(documented - routed == set(),
       f"documented but not routed: {sorted(documented - routed)}")


# ---- helpers: the document's references and schemas ----
def node_ref(ref):
    return ref.lstrip("#/").split("/")


def resolve(node):
    """Follows a component $ref (responses, request bodies)."""
    while isinstance(node, dict) and "$ref" in node:
        target = DOC
        for part in node_ref(node["$ref"]):
            target = target[part]
        node = target
    return node


def validate(schema, value, what):
    """Validates VALUE against a schema of the document (its $refs into
    #/components resolve in the whole document)."""
    resolver = jsonschema.RefResolver("", DOC)
    errors = list(jsonschema.Draft202012Validator(schema, resolver=resolver)
                  .iter_errors(value))
    expect(not errors, f"{what}: " + "; ".join(
        f"at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in errors[:3]))


def match_path(path):
    """The documented path template that PATH (without its query) matches."""
    for p in DOC["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) + "$"
        if re.match(pattern, path):
            # The longest literal match wins (/v2/models/x/ready is not a
            # model named "x/ready": segments never hold a slash).
            return p
    return None


exercised = set()
token_path = os.path.join(out, "token")
with open(token_path, "w") as f:
    f.write("s3cret-token\n")
ADMIN = ("Authorization: Bearer s3cret-token",)


def call(server, method, path, body=None, expect_status=None, headers=(),
         valid_request=False):
    """One request, checked against the document; returns the Response."""
    bare = path.split("?")[0]
    doc_path = match_path(bare)
    if not expect(doc_path is not None, f"{method} {path}: not documented"):
        return None
    operation = DOC["paths"][doc_path].get(method.lower())
    if not expect(operation is not None, f"{method} {doc_path}: not documented"):
        return None
    if valid_request and body is not None:
        request_body = resolve(operation["requestBody"])
        validate(request_body["content"]["application/json"]["schema"],
                 json.loads(body) if isinstance(body, str) else body,
                 f"the test's own {method} {path} request")
    r = curl(server, method, path, body, headers=headers)
    status = str(r.status)
    exercised.add((doc_path, method.lower(), status))
    expect(expect_status is None or r.status == expect_status,
           f"{method} {path}: status {r.status}, expected {expect_status}: "
           f"{r.body[:300]}")
    documented_answer = operation["responses"].get(status)
    if not expect(documented_answer is not None,
                  f"{method} {path}: status {status} is not documented for "
                  f"{method} {doc_path} (documented: {sorted(operation['responses'])})"):
        return r
    answer = resolve(documented_answer)
    content = answer.get("content")
    if content is None:
        expect(r.body == "", f"{method} {path} {status}: documented with no body, "
                             f"got {r.body[:200]!r}")
    elif "application/json" in content:
        expect(r.headers.get("content-type", "").startswith("application/json"),
               f"{method} {path} {status}: Content-Type {r.headers.get('content-type')}")
        try:
            value = json.loads(r.body)
        except ValueError as e:
            fail_text = f"{method} {path} {status}: not JSON ({e}): {r.body[:200]!r}"
            expect(False, fail_text)
            return r
        validate(content["application/json"]["schema"], value,
                 f"{method} {path} {status}")
    else:
        expect(r.body != "", f"{method} {path} {status}: empty body")
    for header in answer.get("headers", {}):
        expect(header.lower() in r.headers,
               f"{method} {path} {status}: no {header} header")
    return r


# ---- 2. a real server, every path, successes and errors ----
args, env, live_csv = fraud_example_setup(
    out, extra='schedule:\n  - {cron: "@every 24h", in: txns.history.csv, '
               'table: card_profile}\n')
repo = os.path.join(out, "repo")
for version in ("1", "2"):
    os.makedirs(os.path.join(repo, "credit", version))
    with open(os.path.join(ROOT, "examples", "credit-risk", "model.json")) as src, \
            open(os.path.join(repo, "credit", version, "model.json"), "w") as dst:
        dst.write(src.read())
ROW = [9, 5, 60, 30, 1, 0, 1, 73, 129, 0, 0, 800, 846]


def infer(rows=1, **extra):
    request = {"inputs": [{"name": "input", "shape": [rows, 13],
                           "datatype": "FP32", "data": ROW * rows}]}
    request.update(extra)
    return json.dumps(request)


def event(txn, ts="2026-03-31T10:00:00Z", **extra):
    e = {"txn_id": txn, "card_id": "c000007", "ts": ts, "amount": 12.5}
    e.update(extra)
    return e


with Server(*args, "--model-repo", repo, "--admin-token-file", token_path,
            "--max-body", "1M", env=env) as s:
    call(s, "GET", "/v2", expect_status=200)
    call(s, "GET", "/v2/health/live", expect_status=200)
    call(s, "GET", "/v2/health/ready", expect_status=200)
    r = call(s, "GET", "/v2/models/credit", expect_status=200)
    expect(r is not None and r.json()["versions"] == ["1", "2"], f"metadata: {r}")
    call(s, "GET", "/v2/models/nope", expect_status=404)
    call(s, "GET", "/v2/models/.hidden", expect_status=400)
    call(s, "GET", "/v2/models/credit/versions/1", expect_status=200)
    call(s, "GET", "/v2/models/credit/versions/9", expect_status=404)
    call(s, "GET", "/v2/models/.x/versions/1", expect_status=400)
    call(s, "GET", "/v2/models/credit/ready", expect_status=200)
    call(s, "GET", "/v2/models/nope/ready", expect_status=404)
    call(s, "GET", "/v2/models/credit/versions/2/ready", expect_status=200)
    call(s, "GET", "/v2/models/credit/versions/9/ready", expect_status=404)
    for prefix in ("/v2/models/credit", "/v2/models/credit/versions/1"):
        r = call(s, "POST", prefix + "/infer",
                 infer(2, id="req-1", parameters={"contribs": True}),
                 expect_status=200, valid_request=True)
        expect(r is not None and [o["name"] for o in r.json()["outputs"]]
               == ["score", "margin", "contribs"], f"outputs: {r}")
        call(s, "POST", prefix + "/infer", infer(outputs=[{"name": "margin"}]),
             expect_status=200, valid_request=True)
        call(s, "POST", prefix + "/infer", '{"inputs": [{"name": "x"}]}',
             expect_status=400)
        call(s, "POST", prefix + "/infer", "{", expect_status=400)
        # A deadline of 1 us has passed by the time the body is parsed.
        call(s, "POST", prefix + "/infer", infer(parameters={"timeout": 1}),
             expect_status=504, valid_request=True)
        call(s, "POST", prefix + "/infer", " " * (1 << 20) + infer(),
             expect_status=413)
    call(s, "POST", "/v2/models/nope/infer", infer(), expect_status=404)
    call(s, "POST", "/v2/models/credit/versions/9/infer", infer(), expect_status=404)

    r = call(s, "POST", "/v2/repository/index", "{}", headers=ADMIN,
             expect_status=200)
    expect(r is not None and len(r.json()) == 2, f"index: {r}")
    call(s, "POST", "/v2/repository/index", "{}", expect_status=401)
    call(s, "POST", "/v2/repository/models/credit/load", "{}", headers=ADMIN,
         expect_status=200)
    call(s, "POST", "/v2/repository/models/zzz/load", "{}", headers=ADMIN,
         expect_status=404)
    call(s, "POST", "/v2/repository/models/.zzz/load", "{}", headers=ADMIN,
         expect_status=400)
    call(s, "POST", "/v2/repository/models/credit/load", "{}", expect_status=401)
    call(s, "POST", "/v2/repository/models/nope/unload", "{}", headers=ADMIN,
         expect_status=404)
    call(s, "POST", "/v2/repository/models/.nope/unload", "{}", headers=ADMIN,
         expect_status=400)
    call(s, "POST", "/v2/repository/models/credit/unload", "{}", expect_status=401)

    call(s, "GET", "/metrics", expect_status=200)
    call(s, "GET", "/v1/pipelines/fraud", expect_status=200)
    call(s, "GET", "/v1/pipelines/nope", expect_status=404)
    call(s, "GET", "/v1/pipelines/.nope", expect_status=400)

    events = "/v1/pipelines/fraud/events"
    call(s, "POST", events, json.dumps(event("t1")), expect_status=200,
         valid_request=True)
    r = call(s, "POST", events + "?explain=features",
             json.dumps([event("t2"), event("t3", ts="not a time"), event("t2"),
                         event("t4", ts="2026-03-29T09:00:00Z")]),
             expect_status=200, valid_request=True)
    if r is not None and r.status == 200:
        answers = r.json()
        expect(len(answers) == 4 and "features" in answers[0]
               and "error" in answers[1] and answers[2].get("duplicate") is True
               and answers[3].get("reason") == "too_late",
               f"an array's answers: {answers}")
    call(s, "POST", events + "?explain=contribs", json.dumps(event("t5")),
         expect_status=200, valid_request=True)
    call(s, "POST", events, json.dumps(event("t6", ts="yesterday")),
         expect_status=400)
    call(s, "POST", events + "?explain=bad", json.dumps(event("t7")),
         expect_status=400)
    call(s, "POST", events, "[1", expect_status=400)
    call(s, "POST", "/v1/pipelines/nope/events", "{}", expect_status=404)
    call(s, "POST", "/v1/pipelines/.nope/events", "{}", expect_status=400)
    call(s, "POST", events, "[" + ",".join(["{}"] * 10001) + "]",
         expect_status=413)
    r = call(s, "GET", "/v1/pipelines/fraud/schedule", expect_status=200)
    expect(r is not None and len(r.json()["schedules"]) == 1, f"schedule: {r}")
    call(s, "GET", "/v1/pipelines/nope/schedule", expect_status=404)
    call(s, "GET", "/v1/pipelines/.nope/schedule", expect_status=400)
    r = call(s, "GET", "/v1/pipelines/fraud/drift", expect_status=200)
    expect(r is not None and r.json()["events"] > 0, f"drift counted events: {r}")
    call(s, "GET", "/v1/pipelines/fraud/drift?reset=1", headers=ADMIN,
         expect_status=200)
    call(s, "GET", "/v1/pipelines/fraud/drift?reset=1", expect_status=401)
    call(s, "GET", "/v1/pipelines/fraud/drift?reset=2", expect_status=400)
    call(s, "GET", "/v1/pipelines/nope/drift", expect_status=404)
    call(s, "GET", "/v1/pipelines/.nope/drift", expect_status=400)

    # Unloaded: not ready, and its infer answers 503 with Retry-After.
    call(s, "POST", "/v2/repository/models/credit/unload", "{}", headers=ADMIN,
         expect_status=200)
    call(s, "GET", "/v2/health/ready", expect_status=400)
    call(s, "GET", "/v2/models/credit/ready", expect_status=400)
    call(s, "GET", "/v2/models/credit/versions/1/ready", expect_status=400)
    call(s, "POST", "/v2/models/credit/infer", infer(), expect_status=503)
    call(s, "POST", "/v2/models/credit/versions/1/infer", infer(), expect_status=503)
    call(s, "POST", "/v2/repository/models/credit/load", "{}", headers=ADMIN,
         expect_status=200)
    call(s, "GET", "/v2/health/ready", expect_status=200)

# ---- 3. every documented status was seen ----
documented_statuses = {(p, m, st) for p, item in DOC["paths"].items()
                       for m, op in item.items() if m in ("get", "post")
                       for st in op["responses"]}
missing = documented_statuses - exercised - set(NOT_EXERCISED)
expect(not missing, f"documented answers never exercised: {sorted(missing)}")
stale = set(NOT_EXERCISED) - documented_statuses
expect(not stale, f"NOT_EXERCISED names undocumented answers: {sorted(stale)}")

finish("test_openapi")
