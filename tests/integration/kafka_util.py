"""Helpers for the tests of `tandem stream` (test_stream*.py): the mock
Kafka cluster (build/mock-kafka, librdkafka's mock cluster with 3
brokers), kcat as the independent client that produces the events and
reads the results, and the comparison of a stream's outputs with batch's
where a run may go back and repeat outputs."""
import os
import subprocess

from common import ROOT, TANDEM, expect

MOCK = os.environ.get("MOCK_KAFKA",
                      os.path.join(os.path.dirname(TANDEM), "mock-kafka"))
if not os.path.exists(MOCK):
    MOCK = os.path.join(ROOT, "build", "mock-kafka")


class Mock:
    """A running mock cluster with TOPICS ("name:partitions") made."""

    def __init__(self, topics):
        self.proc = subprocess.Popen(
            [MOCK, *sum((["-t", t] for t in topics), [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.brokers = self.proc.stdout.readline().strip()
        expect(self.brokers.count(",") == 2,
               f"mock-kafka printed {self.brokers!r}")

    def command(self, line):
        """One command to the mock (see tests/tools/mock_kafka.c)."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        expect(answer == "ok", f"mock-kafka {line}: {answer}")

    def produce(self, topic, lines):
        """LINES are (key, payload) pairs."""
        kcat_produce(self.brokers, topic, lines)

    def consume(self, topic, *extra):
        """Every message of TOPIC as (partition, offset, key, value)."""
        return kcat_consume(self.brokers, topic, *extra)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


MockCluster = Mock  # the name test_time_torture uses


def kcat_produce(brokers, topic, lines):
    """LINES are (key, payload) pairs; '|' separates them for kcat."""
    data = "".join(f"{k}|{v}\n" for k, v in lines)
    r = subprocess.run(["kcat", "-P", "-b", brokers, "-t", topic, "-K", "|"],
                       input=data, text=True, capture_output=True, timeout=60)
    expect(r.returncode == 0, f"kcat -P {topic}: {r.stderr}")


def kcat_consume(brokers, topic, *extra):
    """Every message of TOPIC as (partition, offset, key, value), in
    partition and offset order. EXTRA: more kcat options (-X ...)."""
    r = subprocess.run(["kcat", "-C", "-b", brokers, "-t", topic, "-e", "-q",
                        *extra, "-f", "%p\t%o\t%k\t%s\n"],
                       capture_output=True, text=True, timeout=60)
    expect(r.returncode == 0, f"kcat -C {topic}: {r.stderr}")
    rows = []
    for line in r.stdout.split("\n"):
        if line:
            p, o, k, v = line.split("\t", 3)
            rows.append((int(p), int(o), k, v))
    return sorted(rows)


def per_entity(rows):
    """The values of ROWS by key, in order."""
    by = {}
    for _, _, k, v in rows:
        by.setdefault(k, []).append(v)
    return by


def strip_duplicate(line):
    flag = ',"duplicate":true}'
    return line[:-len(flag)] + "}" if line.endswith(flag) else line


def matches(want, got):
    """GOT is WANT, where a run may go back to an earlier point and repeat
    outputs exactly (events processed again after a crash). Returns
    (how far into WANT it got, repeats, the first wrong output)."""
    i = repeats = 0
    for g in got:
        if i < len(want) and g == want[i]:
            i += 1
            continue
        back = [j for j in range(i) if want[j] == g]
        if not back:
            return i, repeats, g
        # Back to the latest place it matches: that event again.
        i = back[-1] + 1
        repeats += 1
    return i, repeats, None
