"""A real redis-server for the tests of tables in Redis: started on a free
loopback port (its PID kept, stopped by it), over plain TCP or TLS, and a
minimal RESP client (Python's own ssl module for TLS), the independent
reader of what tandem wrote."""
import atexit
import os
import signal
import socket
import subprocess
import sys

from common import expect, wait_until


class Resp:
    """A minimal RESP2 client: the independent reader of what tandem
    wrote."""

    def __init__(self, port, password=None, tls=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls is not None:
            # tls: an ssl.SSLContext that trusts the server's CA.
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.file = self.sock.makefile("rb")
        if password:
            self("AUTH", password)

    def __call__(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        return self.read()

    def read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)

    def close(self):
        self.sock.close()


def answers(port, tls=None):
    """Whether a Redis listens on PORT (one that wants a password says so,
    which is an answer too)."""
    try:
        c = Resp(port, tls=tls)
        try:
            return c("PING") == "PONG"
        except RuntimeError as e:
            return str(e).startswith("NOAUTH")
        finally:
            c.close()
    except OSError:
        return False


class Redis:
    """redis-server on loopback; extra arguments after the defaults. With
    tls (an ssl.SSLContext for the readiness check), PORT is its TLS port,
    it has no plain one, and extra must hold its --tls-* files."""

    def __init__(self, port, *extra, tls=None):
        self.port = port
        ports = (["--port", "0", "--tls-port", str(port)] if tls is not None
                 else ["--port", str(port)])
        self.proc = subprocess.Popen(
            ["redis-server", *ports, "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Stopped by its PID however the test ends, even by an exception.
        atexit.register(self.stop)
        wait_until(lambda: answers(port, tls) or self.proc.poll() is not None,
                   "redis-server answers")
        expect(self.proc.poll() is None, "redis-server started")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_test_hybrid(store, env=None):
    """Every case of test_hybrid.py, run as a child with TANDEM_HYBRID_STORE
    set to STORE (and ENV, os.environ by default): the same checks and
    expected values as on LMDB. Its output is printed indented."""
    here = os.path.dirname(os.path.abspath(__file__))
    child = subprocess.run([sys.executable, os.path.join(here, "test_hybrid.py")],
                           env=dict(env or os.environ, TANDEM_HYBRID_STORE=store),
                           capture_output=True, text=True)
    print(child.stdout.strip().replace("\n", "\n  "), flush=True)
    expect(child.returncode == 0 and "all passed" in child.stdout,
           "test_hybrid on %s: %s%s" % (store, child.stdout[-3000:],
                                        child.stderr[-3000:]))
