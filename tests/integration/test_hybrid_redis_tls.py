"""Tables in Redis over TLS (rediss://, docs/hybrid.md), against Debian's
redis-server with only a TLS port, and certificates made here with the
openssl CLI (a test CA, server certificates signed by it, another CA that
signed nothing of the servers'):

1. Every case of test_hybrid.py on rediss://localhost:P, with the CA from
   TANDEM_REDIS_CA_FILE and the password from TANDEM_REDIS_PASSWORD_FILE
   (the server wants one): the same checks and values as on LMDB.
2. A batch job's materialized version (1500 entities: replies span several
   TLS records) read back over TLS by Python's own ssl module and a RESP
   client written here (not through tandem), and by tandem's lookups in a
   later batch: both equal the counts and sums computed here from the
   events.
3. Refusals, each naming the URL and the cause, never the password, with
   no output file left: a CA that did not sign the server's certificate
   (given, or the system's store when TANDEM_REDIS_CA_FILE is unset);
   a URL host that the certificate does not name (an IP address and a DNS
   name); a plain redis:// server on the rediss:// URL, and a redis:// URL
   on the TLS-only server; a CA file that is
   missing; a client certificate without its key.
4. A server that wants client certificates (--tls-auth-clients yes):
   refused without one, served with TANDEM_REDIS_CERT_FILE and
   TANDEM_REDIS_KEY_FILE.
5. tandem serve reading a table over TLS while its Redis is killed
   (SIGKILL) and restarted: answers come from the version in memory, the
   store shows down, then reconnects over TLS and follows a new version.
"""
import json
import math
import re
import os
import ssl
import struct
import subprocess

from common import TANDEM, expect, finish, free_port, tmpdir, wait_until
from pipeline_util import fmt_time, make_model, write, write_csv
from redis_util import Redis, Resp, run_test_hybrid
from serve_util import Server, curl

out = tmpdir()
PASSWORD = "tls-pa55"


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    expect(r.returncode == 0, f"openssl {args[0]}: {r.stderr}")


def make_ca(name):
    """A self-signed CA: (certificate, key) paths."""
    cert, key = os.path.join(out, name + ".pem"), os.path.join(out, name + ".key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
            cert, "-days", "2", "-subj", "/CN=" + name)
    return cert, key


def make_cert(name, ca, alt_names, usage):
    """A certificate for ALT_NAMES signed by CA: (certificate, key)."""
    cert, key = os.path.join(out, name + ".pem"), os.path.join(out, name + ".key")
    csr, ext = os.path.join(out, name + ".csr"), os.path.join(out, name + ".ext")
    write(ext, "basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n%s" % (
        usage, "subjectAltName=" + alt_names + "\n" if alt_names else ""))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
            "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key


ca = make_ca("test-ca")
other_ca = make_ca("other-ca")
server = make_cert("server", ca, "DNS:localhost", "serverAuth")
wrong_name = make_cert("wrong-name", ca, "DNS:wrong.example", "serverAuth")
client_cert = make_cert("client", ca, "", "clientAuth")

context = ssl.create_default_context(cafile=ca[0])
context.check_hostname = False  # the readiness check of the wrong-name server
context.verify_mode = ssl.CERT_REQUIRED


def tls_args(cert, auth_clients="no"):
    return ["--tls-cert-file", cert[0], "--tls-key-file", cert[1],
            "--tls-ca-cert-file", ca[0], "--tls-auth-clients", auth_clients]


port = free_port()
redis = Redis(port, *tls_args(server), "--requirepass", PASSWORD, tls=context)
URL = "rediss://localhost:%d/0" % port
password_file = write(os.path.join(out, "redis.password"), PASSWORD + "\n")
ENV = dict(os.environ, TANDEM_REDIS_CA_FILE=ca[0],
           TANDEM_REDIS_PASSWORD_FILE=password_file)
for name in ("TANDEM_REDIS_CERT_FILE", "TANDEM_REDIS_KEY_FILE",
             "TANDEM_REDIS_PASSWORD"):
    ENV.pop(name, None)


def run(*args, env=None, **extra):
    return subprocess.run([TANDEM, *args], capture_output=True, text=True,
                          env=dict(env or ENV, **extra), timeout=120)


# ---- 1. every test_hybrid case over TLS ----
run_test_hybrid(URL, ENV)

client = Resp(port, PASSWORD, tls=context)
client("FLUSHALL")

# ---- 2. a materialized version, read back independently ----
YAML = """\
name: tls
entity: card
time: ts
id: txn
store: STORE
fields: {txn: string, card: string, ts: time, amount: number}
features:
  - {name: log_amount, expr: "log1p(amount)"}
  - {name: n_all, agg: count, window: 365d}
  - {name: sum_all, agg: sum(amount), window: 365d}
model: {path: model.json}
materialize:
  - {table: profile, columns: [n_all, sum_all]}
decision:
  - {then: approve}
"""
make_model(os.path.join(out, "model.json"), ["log_amount", "n_all", "sum_all"],
           seed=3)


def pipeline(name, store):
    return write(os.path.join(out, name), YAML.replace("STORE", store))


T0 = 1_767_225_600_000
# Enough entities that a version's rows span several TLS records (16 KiB
# each) in one reply, and the writer sends several batches of rows.
CARDS = 1500
rows = [{"txn": "t%d" % i, "card": "c%d" % (i * 7 % CARDS),
         "ts": fmt_time(T0 + i * 1000), "amount": "%.2f" % (1 + i * 37 % 500)}
        for i in range(3000)]
events = write_csv(os.path.join(out, "events.csv"), ["txn", "card", "ts", "amount"],
                   rows)
expected = {}
for row in rows:
    n, total = expected.get(row["card"], (0, 0.0))
    expected[row["card"]] = (n + 1, total + float(row["amount"]))

p = pipeline("p.yaml", URL)
r = run("batch", p, "--in", events, "--out", os.path.join(out, "a.jsonl"),
        "--materialize", "profile")
expect(r.returncode == 0, f"batch over TLS: {r.stderr}")
current = client("GET", "tandem:table:profile:current")
expect(current == b"1", f"one version visible: {current!r}")
flat = client("HGETALL", "tandem:table:profile:1:rows") or []
got = {flat[i].decode(): struct.unpack("<2d", flat[i + 1])
       for i in range(0, len(flat), 2)}
expect(set(got) == set(expected), f"entities: {sorted(got)} {sorted(expected)}")
for card, (n, total) in expected.items():
    if card in got:
        expect(got[card][0] == n and math.isclose(got[card][1], total, rel_tol=1e-12),
               f"{card}: {got[card]} != {(n, total)}")

# tandem reads the version back over TLS: a lookup in later events.
LOOKUP = """\
name: tls_lookup
entity: card
time: ts
store: STORE
fields: {card: string, ts: time}
features:
  - {name: prior_n, lookup: profile.n_all, default: -1}
  - {name: prior_sum, lookup: profile.sum_all, default: -1}
model: {path: lookup.model.json}
decision:
  - {then: approve}
""".replace("STORE", URL)
make_model(os.path.join(out, "lookup.model.json"), ["prior_n", "prior_sum"], seed=4)
later = write_csv(os.path.join(out, "later.csv"), ["card", "ts"],
                  [{"card": card, "ts": fmt_time(T0 + 86_400_000)}
                   for card in sorted(expected)] +
                  [{"card": "unknown", "ts": fmt_time(T0 + 86_400_000)}])
r = run("batch", write(os.path.join(out, "lookup.yaml"), LOOKUP), "--in", later,
        "--out", os.path.join(out, "lookup.jsonl"), "--explain")
expect(r.returncode == 0, f"lookups over TLS: {r.stderr}")
looked_up = {}
if r.returncode == 0:
    with open(os.path.join(out, "lookup.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            looked_up[row["card"]] = row["features"]
for card, (n, total) in list(expected.items()) + [("unknown", (-1, -1.0))]:
    features = looked_up.get(card, {})
    expect(features.get("prior_n") == n and
           math.isclose(features.get("prior_sum", math.nan), total, rel_tol=1e-12),
           f"lookup of {card}: {features} != {(n, total)}")
print("materialized over TLS: %d rows read back with Python's ssl and by "
      "tandem's lookups" % len(got), flush=True)

# ---- 3. refusals ----
plain_port = free_port()
plain = Redis(plain_port)
wrong_port = free_port()
wrong = Redis(wrong_port, *tls_args(wrong_name), tls=context)
missing = os.path.join(out, "no-such-ca.pem")
cases = [
    ("a CA that did not sign the server's", URL, {"TANDEM_REDIS_CA_FILE": other_ca[0]},
     1, "certificate is not trusted"),
    ("the system's CA store, which lacks the test CA", URL,
     {"TANDEM_REDIS_CA_FILE": ""}, 1, "certificate is not trusted"),
    ("an IP address the certificate does not name",
     "rediss://127.0.0.1:%d/0" % port, {}, 1, "is not for host 127.0.0.1"),
    ("a host name the certificate does not name",
     "rediss://localhost:%d/0" % wrong_port, {}, 1, "is not for host localhost"),
    ("a plain server on the rediss:// URL", "rediss://localhost:%d/0" % plain_port,
     {}, 1, "a plain redis:// server on this port"),
    ("a redis:// URL on the TLS-only server", "redis://localhost:%d/0" % port,
     {}, 1, "use rediss://"),
    ("a missing CA file", URL, {"TANDEM_REDIS_CA_FILE": missing}, 2,
     "TANDEM_REDIS_CA_FILE " + missing),
    ("a client certificate without its key", URL,
     {"TANDEM_REDIS_CERT_FILE": client_cert[0]}, 2, "TANDEM_REDIS_KEY_FILE"),
]
for what, url, extra, code, words in cases:
    target = os.path.join(out, "refused.jsonl")
    r = run("batch", pipeline("refused.yaml", url), "--in", events, "--out", target,
            "--materialize", "profile", **extra)
    expect(r.returncode == code and url + ": " in r.stderr and words in r.stderr and
           PASSWORD not in r.stderr and not os.path.exists(target),
           f"{what}: {r.returncode} {r.stderr}")
    print("refused, %s: %s" % (what, r.stderr.strip().splitlines()[-1]), flush=True)
expect(client("GET", "tandem:table:profile:current") == b"1",
       "the refused runs committed nothing")

# ---- 4. client certificates ----
with_cert = ssl.create_default_context(cafile=ca[0])
with_cert.check_hostname = False
with_cert.load_cert_chain(client_cert[0], client_cert[1])
auth_port = free_port()
auth = Redis(auth_port, *tls_args(server, "yes"), tls=with_cert)
auth_url = "rediss://localhost:%d/0" % auth_port
ap = pipeline("auth.yaml", auth_url)
NO_PASSWORD = {k: v for k, v in ENV.items() if k != "TANDEM_REDIS_PASSWORD_FILE"}
r = run("batch", ap, "--in", events, "--out", os.path.join(out, "no-cert.jsonl"),
        "--materialize", "profile", env=NO_PASSWORD)
expect(r.returncode == 1 and auth_url + ": " in r.stderr and
       "TANDEM_REDIS_CERT_FILE" in r.stderr and not os.path.exists(os.path.join(out, "no-cert.jsonl")),
       f"no client certificate: {r.returncode} {r.stderr}")
print("refused, no client certificate: %s" % r.stderr.strip().splitlines()[-1],
      flush=True)
r = run("batch", ap, "--in", events, "--out", os.path.join(out, "cert.jsonl"),
        "--materialize", "profile", env=NO_PASSWORD,
        TANDEM_REDIS_CERT_FILE=client_cert[0],
        TANDEM_REDIS_KEY_FILE=client_cert[1])
expect(r.returncode == 0, f"with a client certificate: {r.stderr}")
auth_client = Resp(auth_port, tls=with_cert)
expect(auth_client("GET", "tandem:table:profile:current") == b"1" and
       auth_client("HLEN", "tandem:table:profile:1:rows") == len(expected),
       "the client-certificate run committed its rows")
print("client certificate: refused without, served with", flush=True)

# ---- 5. a TLS Redis killed and restarted under tandem serve ----
data_dir = os.path.join(out, "redis-data")
os.makedirs(data_dir)
# Persistence on: the restarted Redis has its data, as in production.
durable = [*tls_args(server), "--appendonly", "yes", "--appendfsync", "always",
           "--dir", data_dir]
durable_port = free_port()
durable_redis = Redis(durable_port, *durable, tls=context)
durable_url = "rediss://localhost:%d/0" % durable_port
dp = pipeline("durable.yaml", durable_url)
r = run("batch", dp, "--in", events, "--out", os.path.join(out, "d1.jsonl"),
        "--materialize", "profile", env=NO_PASSWORD)
expect(r.returncode == 0, f"first version on the durable Redis: {r.stderr}")
lookup_yaml = write(os.path.join(out, "durable-lookup.yaml"),
                    LOOKUP.replace(URL, durable_url))


def store_metric(s, name):
    m = re.search(r'^%s\{pipeline="tls_lookup"\} (\d+)' % name,
                  curl(s, "GET", "/metrics").body, re.M)
    return int(m.group(1)) if m else None


def lookup(s, card="c0"):
    res = curl(s, "POST", "/v1/pipelines/tls_lookup/events?explain=features",
               {"card": card, "ts": fmt_time(T0 + 86_400_000)})
    return res.json() if res.status == 200 else {"status": res.status}


with Server(lookup_yaml, env=NO_PASSWORD) as s:
    first = lookup(s)
    expect(first.get("tables", {}).get("profile", {}).get("version") == 1 and
           first["features"]["prior_n"] == expected["c0"][0],
           f"serve over TLS: {first}")
    expect(store_metric(s, "tandem_table_store_up") == 1, "store up")
    durable_redis.kill()
    wait_until(lambda: store_metric(s, "tandem_table_store_up") == 0,
               "the lost TLS Redis shows")
    during = lookup(s)
    expect(during.get("tables", {}).get("profile", {}).get("version") == 1 and
           during["features"]["prior_n"] == expected["c0"][0],
           f"answered from memory while Redis is down: {during}")
    durable_redis = Redis(durable_port, *durable, tls=context)
    wait_until(lambda: store_metric(s, "tandem_table_store_up") == 1 and
               store_metric(s, "tandem_table_store_reconnects_total") >= 1,
               "reconnected over TLS")
    r = run("batch", dp, "--in", events, "--out", os.path.join(out, "d2.jsonl"),
            "--materialize", "profile", env=NO_PASSWORD)
    expect(r.returncode == 0, f"a new version after the restart: {r.stderr}")
    wait_until(lambda: lookup(s).get("tables", {}).get("profile", {})
               .get("version") == 2, "the server follows the new version")
print("TLS Redis killed and restarted: served from memory, reconnected, "
      "followed version 2", flush=True)

for s in (durable_redis, auth, wrong, plain, redis):
    s.stop()
finish("test_hybrid_redis_tls")
