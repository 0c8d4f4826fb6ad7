"""`tandem serve --tls-cert --tls-key`: HTTPS with libmicrohttpd and GnuTLS,
checked with curl (a real client that verifies the certificate).

A self-signed certificate for 127.0.0.1 is made at test time with the
openssl CLI. One server serves HTTPS and another plain HTTP, both with the
credit-risk example model: an infer request gives the same status and
body on both; curl refuses the certificate without --cacert; plain HTTP
to the TLS port gets no answer and leaves the server serving; TLS 1.0
and 1.1 are refused, 1.2 and 1.3 agreed (openssl s_client); admin
endpoints keep their rule (loopback, no token needed). Then the refusals:
a certificate without a key (and the reverse), a missing, empty, DER,
non-certificate, encrypted or mismatched file: exit 2 before listening,
with a message naming the file at fault.
"""
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

from common import ROOT, TANDEM, expect, finish, tmpdir
from serve_util import Server, curl, infer_body, read_csv_text

MODEL = os.path.join(ROOT, "examples", "credit-risk", "model.json")
names, rows = read_csv_text(os.path.join(ROOT, "examples", "credit-risk",
                                         "applicants.csv"))
rows = [row[1:] for row in rows]  # applicant_id is not a feature
BODY = infer_body(rows[:50], id="tls-1")

out = tmpdir()


def openssl(*args):
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)}: {proc.stderr}")


def self_signed(name, cn="127.0.0.1"):
    """A self-signed certificate and its unencrypted key, for 127.0.0.1."""
    cert = os.path.join(out, name + ".cert.pem")
    key = os.path.join(out, name + ".key.pem")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=" + cn, "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", key, "-out", cert)
    os.chmod(key, 0o600)
    return cert, key


class TlsServer:
    """`tandem serve` with TLS on a free port; url is https://..."""

    def __init__(self, *args):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="tandem-tls-",
                                               suffix=".log")
        self.proc = subprocess.Popen(
            [TANDEM, "serve", "--listen", "127.0.0.1:0", *map(str, args)],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        address = None
        while time.time() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on https://(\S+)", self.stderr())
            if m:
                address = m.group(1)
                break
            time.sleep(0.02)
        if address is None:
            self.proc.kill()
            raise AssertionError("tandem serve (TLS) did not start: "
                                 + self.stderr())
        self.port = int(address.rsplit(":", 1)[1])
        self.url = f"https://127.0.0.1:{self.port}"

    def stderr(self):
        with open(self.log.name) as f:
            return f.read()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        expect(rc == 0, f"TLS server exited {rc} on SIGTERM; log:\n"
                        + self.stderr()[-2000:])
        self.log.close()


cert, key = self_signed("server")
trust = ("--cacert", cert)

with TlsServer("--model", f"credit={MODEL}", "--tls-cert", cert,
               "--tls-key", key) as tls, \
        Server("--model", f"credit={MODEL}") as plain:
    expect("warning" not in tls.stderr(),
           f"a 0600 key drew a warning: {tls.stderr()}")
    # The same answer over HTTPS as over plain HTTP.
    https = curl(tls, "POST", "/v2/models/credit/infer", BODY, extra=trust)
    http = curl(plain, "POST", "/v2/models/credit/infer", BODY)
    expect(https.status == 200, f"infer over HTTPS: {https}")
    expect(http.status == 200, f"infer over HTTP: {http}")
    expect(https.body == http.body,
           f"HTTPS and HTTP answers differ:\n{https.body[:300]}\n"
           f"{http.body[:300]}")
    expect(len(https.json()["outputs"][0]["data"]) == 50,
           f"infer over HTTPS: 50 scores expected: {https}")
    for path in ("/v2/health/ready", "/v2/models/credit"):
        r = curl(tls, "GET", path, extra=trust)
        expect(r.status == 200, f"GET {path} over HTTPS: {r}")
    r = curl(tls, "GET", "/metrics", extra=trust)
    expect(r.status == 200 and "tandem_" in r.body, f"/metrics over HTTPS: {r}")

    # Admin endpoints: from loopback without a token, as over plain HTTP.
    r = curl(tls, "POST", "/v2/repository/index", "{}", extra=trust)
    expect(r.status == 200 and '"credit"' in r.body,
           f"repository index over HTTPS from loopback: {r}")

    # curl verifies: without the CA it refuses the self-signed certificate.
    r = curl(tls, "GET", "/v2/health/ready")
    expect(r.status == 0, f"curl accepted an untrusted certificate: {r}")

    # Plain HTTP to the TLS port is not answered; the server stays up.
    r = curl(f"http://127.0.0.1:{tls.port}", "GET", "/v2/health/ready")
    expect(r.status == 0, f"plain HTTP to the TLS port was answered: {r}")
    r = curl(f"http://127.0.0.1:{tls.port}", "POST",
             "/v2/models/credit/infer", BODY)
    expect(r.status == 0, f"plain HTTP infer to the TLS port answered: {r}")

    # Concurrent HTTPS clients (each its own handshake), then keep-alive:
    # two requests on one connection.
    results = []

    def client():
        results.append(curl(tls, "POST", "/v2/models/credit/infer", BODY,
                            extra=trust))

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expect(len(results) == 16 and all(r.status == 200 and r.body == http.body
                                      for r in results),
           f"concurrent HTTPS infers: {[r.status for r in results]}")
    proc = subprocess.run(
        ["curl", "-sS", "--cacert", cert, "-o", "/dev/null", "-o", "/dev/null",
         "-w", "%{http_code} %{num_connects}\n",
         tls.url + "/v2/health/ready", tls.url + "/v2/health/live"],
        capture_output=True, text=True)
    expect(proc.stdout.split() == ["200", "1", "200", "0"],
           f"keep-alive over HTTPS (status, new connections): "
           f"{proc.stdout!r} {proc.stderr}")

    # TLS 1.2 and 1.3 only: GnuTLS's defaults would take 1.0 and 1.1 too.
    for version, ok in (("tls1", False), ("tls1_1", False), ("tls1_2", True),
                        ("tls1_3", True)):
        proc = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{tls.port}",
             "-" + version, "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", cert],
            input="", capture_output=True, text=True, timeout=30)
        agreed = re.search(r"Cipher is (\S+)", proc.stdout)
        expect((agreed is not None and agreed.group(1) != "(NONE)") == ok,
               f"{version}: expected {'a' if ok else 'no'} session: "
               f"{agreed and agreed.group(0)}")
    expect(tls.proc.poll() is None, "the TLS server died")


def refused(args, names_file, what):
    """tandem serve with ARGS exits 2 before listening, naming a file."""
    proc = subprocess.run([TANDEM, "serve", "--listen", "127.0.0.1:0",
                           "--model", MODEL, *args],
                          capture_output=True, text=True, timeout=30)
    expect(proc.returncode == 2,
           f"{what}: expected exit 2, got {proc.returncode}: {proc.stderr}")
    expect(names_file in proc.stderr and "listening" not in proc.stderr,
           f"{what}: message does not name {names_file}: {proc.stderr!r}")


other_cert, other_key = self_signed("other")
garbage = os.path.join(out, "garbage.pem")
with open(garbage, "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
            "-----END CERTIFICATE-----\n")
empty = os.path.join(out, "empty.pem")
open(empty, "w").close()
der = os.path.join(out, "server.cert.der")
openssl("x509", "-in", cert, "-outform", "DER", "-out", der)
encrypted = os.path.join(out, "encrypted.key.pem")
openssl("pkey", "-in", key, "-aes256", "-passout", "pass:secret",
        "-out", encrypted)
missing = os.path.join(out, "no-such.pem")

refused(["--tls-cert", cert], "--tls-key", "a certificate without a key")
refused(["--tls-key", key], "--tls-cert", "a key without a certificate")
refused(["--tls-cert", garbage, "--tls-key", key], garbage, "a bad certificate")
refused(["--tls-cert", key, "--tls-key", key], key, "a key as the certificate")
refused(["--tls-cert", empty, "--tls-key", key], empty, "an empty certificate")
refused(["--tls-cert", der, "--tls-key", key], der, "a DER certificate")
refused(["--tls-cert", missing, "--tls-key", key], missing,
        "a missing certificate")
refused(["--tls-cert", cert, "--tls-key", missing], missing, "a missing key")
refused(["--tls-cert", cert, "--tls-key", cert], cert,
        "a certificate as the key")
refused(["--tls-cert", cert, "--tls-key", encrypted], encrypted,
        "an encrypted key")
refused(["--tls-cert", cert, "--tls-key", other_key], other_key,
        "another certificate's key")
if os.geteuid() != 0:  # root reads any file
    unreadable = os.path.join(out, "unreadable.key.pem")
    with open(key) as src, open(unreadable, "w") as dst:
        dst.write(src.read())
    os.chmod(unreadable, 0)
    refused(["--tls-cert", cert, "--tls-key", unreadable], unreadable,
            "an unreadable key")

# A key every user may read still serves, with a warning naming it.
os.chmod(other_key, 0o644)
with TlsServer("--model", MODEL, "--tls-cert", other_cert,
               "--tls-key", other_key) as tls:
    expect("warning" in tls.stderr() and other_key in tls.stderr(),
           f"no warning for a world-readable key: {tls.stderr()!r}")
    r = curl(tls, "GET", "/v2/health/ready", extra=("--cacert", other_cert))
    expect(r.status == 200, f"server with a world-readable key: {r}")

finish("test_tls")
