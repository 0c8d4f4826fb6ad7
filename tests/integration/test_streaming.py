#!/usr/bin/env python3
"""Streaming I/O of `tandem score`: byte-identical output for every thread
count on inputs spanning many chunks; JSON Lines in and out giving the
same scores as CSV; quoted CSV records (with newlines) across chunk and
worker boundaries; errors naming the line, with no output left behind."""
import hashlib
import json
import os
import sys
import tempfile

import numpy as np

from common import FIXTURES, expect, failures, run

XGB = os.path.join(FIXTURES, "xgboost")


def sha(path):
    with open(path, "rb") as fp:
        return hashlib.sha256(fp.read()).hexdigest()


def repeated_csv(src, dst, times, extra=None):
    """The fixture's rows repeated, with an id column (and an optional
    quoted text column whose values hold commas, quotes and newlines)."""
    with open(src) as fp:
        header = fp.readline().rstrip("\n")
        rows = [line.rstrip("\n") for line in fp]
    with open(dst, "w") as out:
        out.write("id," + header + (",note" if extra else "") + "\n")
        n = 0
        for _ in range(times):
            for row in rows:
                note = ""
                if extra:
                    note = ',"line one\nline ""two"", with comma"' if n % 7 == 0 else ",plain"
                out.write("%d,%s%s\n" % (n, row, note))
                n += 1
    return n


def determinism(tmp):
    model = os.path.join(XGB, "synth_multiclass4.model.json")
    data = os.path.join(tmp, "many.csv")
    # About 20 MB: several 8 MB chunks, each cut among the workers.
    n = repeated_csv(os.path.join(XGB, "synth_multiclass4.input.csv"), data, 60,
                     extra=True)
    hashes = set()
    for threads in (1, 2, 3, 5):
        out = os.path.join(tmp, "many.t%d.csv" % threads)
        run("score", "--model", model, "--in", data, "--out", out,
            "--threads", threads, "--keep", "id", "--keep", "note")
        hashes.add(sha(out))
        with open(out + ".manifest.json") as fp:
            manifest = json.load(fp)
        expect(manifest["output"]["rows"] == n,
               "manifest rows %s, expected %d" % (manifest["output"]["rows"], n))
        expect(manifest["output"]["sha256"] == sha(out),
               "the manifest's output hash is the file's")
    expect(len(hashes) == 1,
           "outputs differ between thread counts: %d distinct" % len(hashes))
    # The kept text survives quoting, commas and newlines.
    import csv
    with open(os.path.join(tmp, "many.t1.csv"), newline="") as fp:
        rows = list(csv.reader(fp))
    expect(rows[1][1] == 'line one\nline "two", with comma',
           "quoted field kept: %r" % rows[1][1])
    expect(len(rows) == n + 1, "%d output rows, expected %d" % (len(rows) - 1, n))
    print("ok %d rows, byte-identical for 1, 2, 3 and 5 threads" % n)
    return data, model


def jsonl(tmp):
    for name in ("credit_data_binary", "synth_multiclass4", "lending_club_cat"):
        model = os.path.join(XGB, name + ".model.json")
        src = os.path.join(XGB, name + ".input.csv")
        import csv
        with open(src) as fp:
            rows = list(csv.DictReader(fp))
        jl = os.path.join(tmp, name + ".jsonl")
        with open(jl, "w") as fp:
            for i, row in enumerate(rows):
                obj = {"id": "r%d" % i}
                for k, v in row.items():
                    if v == "":
                        # Missing: null, the string "NaN", or absent.
                        if i % 3 == 0:
                            obj[k] = None
                        elif i % 3 == 1:
                            obj[k] = "NaN"
                    else:
                        obj[k] = float(v)
                fp.write(json.dumps(obj) + "\n")
                if i % 50 == 0:
                    fp.write("\n")  # blank lines are skipped
        csv_out = os.path.join(tmp, name + ".out.csv")
        run("score", "--model", model, "--in", src, "--out", csv_out)
        for out_name in (name + ".from-jsonl.csv", name + ".out.jsonl"):
            out = os.path.join(tmp, out_name)
            run("score", "--model", model, "--in", jl, "--out", out,
                "--keep", "id", "--threads", 2)
            with open(csv_out) as fp:
                want = [line.rstrip("\n") for line in fp][1:]
            with open(out) as fp:
                lines = [line.rstrip("\n") for line in fp]
            if out.endswith(".jsonl"):
                got = []
                for i, line in enumerate(lines):
                    obj = json.loads(line)
                    expect(obj["id"] == "r%d" % i, "id echoed")
                    scores = obj["score"] if "score" in obj else obj["scores"]
                    scores = scores if isinstance(scores, list) else [scores]
                    got.append(",".join(repr(s) for s in scores))
                want = [",".join(repr(float(x)) for x in w.split(",")) for w in want]
            else:
                got = [line.split(",", 1)[1] for line in lines[1:]]
            expect(got == want, "%s: JSON Lines scores equal CSV scores" % out_name)
        print("ok %s: JSON Lines in and out give the CSV scores" % name)


def errors(tmp, data, model):
    cases = [
        ("not-object.jsonl", '{"x0": 1}\n[1, 2]\n', ":2: each line must be a JSON object"),
        ("bad-value.jsonl", '{"x0": 1}\n{"x0": "high"}\n', ':2:8: column "x0": "high" is not a number'),
        ("syntax.jsonl", '{"x0": 1}\n{"x0": 1,}\n', ":2:10:"),
        ("twice.jsonl", '{"x0": 1}\n{"x0": 1, "x0": 2}\n', ':2:17: "x0" appears twice'),
        ("no-features.jsonl", '{"x0": 1}\n{"X0": 1}\n', ":2: the line has none of the model's features"),
        ("bad-cell.csv", None, ""),
    ]
    model = os.path.join(XGB, "synth_multiclass4.model.json")
    with open(os.path.join(XGB, "synth_multiclass4.input.csv")) as fp:
        header = fp.readline().strip().split(",")
    for name, text, message in cases:
        path = os.path.join(tmp, name)
        if text is None:
            # A bad cell far into a multi-chunk file: the message names its
            # line, counted across chunks and quoted newlines.
            with open(data) as fp:
                lines = fp.read().split("\n")
            # find the line number of the last record's start
            body = "\n".join(lines[:-1])
            text = body + "\n" + "999999," + ",".join(["oops"] * len(header)) + ",x\n"
            line = body.count("\n") + 2
            message = ":%d:8: column \"%s\": \"oops\" is not a number" % (line, header[0])
        else:
            text = text.replace("x0", header[0])
            message = message.replace("x0", header[0])
        with open(path, "w") as fp:
            fp.write(text)
        out = os.path.join(tmp, name + ".out" + (".jsonl" if name.endswith("l") else ".csv"))
        proc = run("score", "--model", model, "--in", path, "--out", out,
                   "--threads", 2, check=False)
        expect(proc.returncode == 2, "%s: exit %d" % (name, proc.returncode))
        expect(message in proc.stderr, "%s: %r not in %r" % (name, message, proc.stderr))
        expect(not os.path.exists(out), "%s: no output left" % name)
        print("ok %s: %s" % (name, proc.stderr.strip()[:100]))


def unclosed_quote(tmp):
    """An unclosed quote early in a big file: a clear error naming where the
    record starts, not the whole file pulled into memory."""
    model = os.path.join(XGB, "credit_data_binary.model.json")
    src = os.path.join(XGB, "credit_data_binary.input.csv")
    with open(src) as fp:
        header = fp.readline()
        row = fp.readline()
    path = os.path.join(tmp, "unclosed.csv")
    with open(path, "w") as fp:
        fp.write(header + row + '"' + row)
        block = row * 100000
        while fp.tell() < 300 << 20:
            fp.write(block)
    out = os.path.join(tmp, "unclosed.out.csv")
    proc = run("score", "--model", model, "--in", path, "--out", out,
               check=False)
    expect(proc.returncode == 2, "unclosed quote: exit %d" % proc.returncode)
    expect(":3: a record longer than 256 MiB starts here" in proc.stderr,
           "unclosed quote: %r" % proc.stderr)
    expect(not os.path.exists(out), "unclosed quote: no output left")
    print("ok unclosed quote: %s" % proc.stderr.strip())
    os.unlink(path)


def main():
    with tempfile.TemporaryDirectory(prefix="tandem-stream-") as tmp:
        data, model = determinism(tmp)
        jsonl(tmp)
        errors(tmp, data, model)
        unclosed_quote(tmp)
    if failures:
        sys.exit("streaming: %d failure(s)" % len(failures))
    print("streaming: all passed")


if __name__ == "__main__":
    main()
