"""Helpers for tests that run `tandem stream`: librdkafka's mock cluster
(build/mock-kafka) with the topics a test names, and kcat, the real and
independent Kafka client that produces the input and reads the output."""
import os
import subprocess

from common import ROOT, TANDEM, expect

MOCK = os.environ.get("MOCK_KAFKA",
                      os.path.join(os.path.dirname(TANDEM), "mock-kafka"))
if not os.path.exists(MOCK):
    MOCK = os.path.join(ROOT, "build", "mock-kafka")


class MockCluster:
    """A mock cluster of 3 brokers with TOPICS ("name:partitions"); use as
    a context manager. `brokers` is the bootstrap list."""

    def __init__(self, topics):
        self.proc = subprocess.Popen([MOCK, *sum((["-t", t] for t in topics), [])],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.brokers = self.proc.stdout.readline().strip()
        expect(self.brokers.count(",") == 2, f"mock-kafka printed {self.brokers!r}")

    def produce(self, topic, lines):
        """LINES are (key, payload) pairs; '|' separates them for kcat."""
        data = "".join(f"{k}|{v}\n" for k, v in lines)
        r = subprocess.run(["kcat", "-P", "-b", self.brokers, "-t", topic,
                            "-K", "|"], input=data, text=True,
                           capture_output=True, timeout=60)
        expect(r.returncode == 0, f"kcat -P {topic}: {r.stderr}")

    def consume(self, topic):
        """Every message of TOPIC as (partition, offset, key, value), in
        partition and offset order."""
        r = subprocess.run(["kcat", "-C", "-b", self.brokers, "-t", topic,
                            "-e", "-q", "-f", "%p\t%o\t%k\t%s\n"],
                           capture_output=True, text=True, timeout=60)
        expect(r.returncode == 0, f"kcat -C {topic}: {r.stderr}")
        rows = []
        for line in r.stdout.split("\n"):
            if line:
                p, o, k, v = line.split("\t", 3)
                rows.append((int(p), int(o), k, v))
        return sorted(rows)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
