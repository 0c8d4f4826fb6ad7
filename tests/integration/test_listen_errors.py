"""`tandem serve` that cannot listen says why and what to do, once.

A port another process holds (a socket this test binds, on a port the
kernel picked) and an address that is not this machine's (192.0.2.1, the
documentation range) each exit 1 with one line that names the address
asked for and the remedy; libmicrohttpd's own "Failed to bind to port 0"
(the port of its options, not the one asked for) no longer shows.
"""
import os
import socket

from common import ROOT, expect, finish, run

MODEL = "credit=" + os.path.join(ROOT, "examples", "credit-risk", "model.json")


def main():
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    cases = [
        (f"127.0.0.1:{port}", ["in use by another process", "--listen"]),
        ("192.0.2.1:8080", ["not an address of this machine", "127.0.0.1"]),
    ]
    for listen, words in cases:
        proc = run("serve", "--model", MODEL, "--listen", listen, check=False)
        lines = proc.stderr.strip().splitlines()
        expect(proc.returncode == 1, f"{listen}: exit {proc.returncode}, {proc.stderr!r}")
        expect(len(lines) == 1 and listen in lines[0] and
               all(w in lines[0] for w in words),
               f"{listen}: {proc.stderr.strip()!r} should be one line with "
               f"{listen} and {words}")
        expect("Failed to bind" not in proc.stderr, f"{listen}: {proc.stderr!r}")
    holder.close()
    finish("listen_errors")


if __name__ == "__main__":
    main()
