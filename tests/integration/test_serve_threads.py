"""`tandem serve --threads N` spreads connections over its N threads.

libmicrohttpd's thread pool shares one listening socket, and the first
worker to wake accepted every waiting connection: a client that opened its
connections at once had them all served by one thread (issue 22: at wrk
-c32, one worker did all the work and the other idled). Each thread now
listens on its own SO_REUSEPORT socket and the kernel spreads connections
over them. The test makes that visible without timing anything:

  1. The server is stopped (SIGSTOP) so that no thread accepts; 64
     connections are opened; `ss` (an independent tool) then shows, per
     listening socket on the port, how many connections wait to be
     accepted: there must be N sockets and every one must hold some.
  2. After SIGCONT every connection gets its answer, the same scores.
  3. A second server on the same port is refused (SO_REUSEPORT must not
     let another tandem share the port), naming the port as in use.
"""
import os
import re
import signal
import socket
import subprocess

from common import FIXTURES, TANDEM, expect, finish, wait_until
from raw_http import parse_responses, request
from serve_util import Server, infer_body

MODEL = os.path.join(FIXTURES, "xgboost", "credit_data_binary.model.json")
ROW = [9, 5, 60, 30, 1, 0, 1, 73, 129, 0, 0, 800, 846]
THREADS = 3
CONNECTIONS = 64


def accept_queues(port):
    """Connections waiting in each listening socket on the port, per ss."""
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % port],
                         capture_output=True, text=True, check=True).stdout
    # State Recv-Q Send-Q Local:Port Peer:Port; Recv-Q of a listening
    # socket is its accept queue.
    return [int(line.split()[1]) for line in out.splitlines() if line.strip()]


with Server("--model", "credit=" + MODEL, "--threads", THREADS) as s:
    body = infer_body([ROW]).encode()
    s.signal(signal.SIGSTOP)
    conns = []
    try:
        for _ in range(CONNECTIONS):
            conns.append(socket.create_connection(("127.0.0.1", s.port), timeout=30))
        queues = wait_until(lambda: (lambda q: q if sum(q) == CONNECTIONS else None)(
            accept_queues(s.port)), "ss shows all %d connections queued" % CONNECTIONS)
        expect(queues is not None and len(queues) == THREADS,
               "%d listening sockets on the port, expected one per thread (%d): %r"
               % (len(queues or []), THREADS, queues))
        expect(queues is not None and all(q > 0 for q in queues),
               "connections are not spread over the threads' sockets: %r" % (queues,))
    finally:
        s.signal(signal.SIGCONT)
    answers = set()
    for c in conns:
        c.sendall(request("POST", "/v2/models/credit/infer", body,
                          ["Content-Type: application/json"]))
    for c in conns:
        data = b""
        while True:
            try:
                if len(parse_responses(data)) == 1:
                    break
            except Exception:
                pass
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            data += chunk
        c.close()
        if not expect(data, "a queued connection was closed without an answer"):
            continue
        status, _, payload = parse_responses(data)[0]
        expect(status == 200, "a queued connection answered %d" % status)
        answers.add(re.sub(rb'"model_version":"[^"]*"', b"", payload))
    expect(len(answers) == 1, "queued connections got %d different answers" % len(answers))

    # Another server on the same port is refused.
    proc = subprocess.run([TANDEM, "serve", "--model", "credit=" + MODEL,
                           "--threads", "2", "--listen", "127.0.0.1:%d" % s.port],
                          capture_output=True, text=True, timeout=60)
    expect(proc.returncode != 0 and "in use" in proc.stderr,
           "a second server on port %d: exit %d, %r" % (s.port, proc.returncode,
                                                        proc.stderr[-300:]))

finish("test_serve_threads")
