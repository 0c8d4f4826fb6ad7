#!/usr/bin/env python3
"""End-to-end `tandem score` CSV -> CSV rows/s beside the evaluator's, and
peak RSS, on the benchmark models.

  end_to_end.py MODELS_DIR BENCH_DIR [--rows N] [--big-gb G]

For each model in MODELS_DIR (large, medium, classes; MODELS=a,b picks
others) it writes a CSV of N
rows (the model's sample repeated), runs `build/tandem score` with 1 and 2
threads, and prints rows/s (model load included), the evaluator's rows/s
from BENCH_DIR/predict-NAME-tT.json (written by bench-predict in the same
run) and their ratio, and the command's peak RSS and CPU time (user +
system, from wait4: the figure to compare on a busy machine).
TANDEM=path measures another build (a base commit) with the same script.

--big-gb G also writes a G-gigabyte CSV and scores it with the medium
model, reporting peak RSS: memory must not grow with the input.
"""
import json
import os
import subprocess
import sys
import time

# TANDEM=path measures another build (a base commit) with the same script.
TANDEM = os.environ.get("TANDEM", os.path.join(os.path.dirname(__file__),
                                               "..", "build", "tandem"))


def run(args):
    start = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    if status != 0:
        sys.exit("failed: %s" % " ".join(args))
    run.cpu = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss  # KiB on Linux


def repeat_csv(sample, path, rows=None, size=None):
    with open(sample) as fp:
        header = fp.readline()
        body = fp.read()
    lines = body.count("\n")
    with open(path, "w") as out:
        out.write(header)
        written = 0
        while (rows is not None and written + lines <= rows) or (
                size is not None and out.tell() < size):
            out.write(body)
            written += lines
    return written


def main():
    models_dir, bench_dir = sys.argv[1], sys.argv[2]
    rows = 500000
    big_gb = 0.0
    args = sys.argv[3:]
    for i in range(0, len(args), 2):
        if args[i] == "--rows":
            rows = int(args[i + 1])
        elif args[i] == "--big-gb":
            big_gb = float(args[i + 1])
    results = []
    print("%-8s %7s %9s %14s %14s %7s %10s %8s" % (
        "model", "threads", "rows", "score rows/s", "evaluator", "ratio",
        "peak RSS", "CPU s"))
    names = os.environ.get("MODELS", "large,medium,classes").split(",")
    for name in names:
        model = os.path.join(models_dir, name + ".model.json")
        data = os.path.join(bench_dir, name + ".e2e.csv")
        n = repeat_csv(os.path.join(models_dir, name + ".input.csv"), data,
                       rows=rows)
        for threads in (1, 2):
            out = os.path.join(bench_dir, name + ".e2e.out.csv")
            seconds, rss = run([TANDEM, "score", "--model", model, "--in",
                                data, "--out", out, "--threads",
                                str(threads)])
            evaluator = None
            peer = os.path.join(bench_dir, "predict-%s-t%d.json" % (name,
                                                                  threads))
            if os.path.exists(peer):
                with open(peer) as fp:
                    evaluator = json.load(fp)["tandem_batch_rows_per_s"]
            rate = n / seconds
            ratio = rate / evaluator if evaluator else float("nan")
            print("%-8s %7d %9d %14.0f %14.0f %6.2fx %7.0f MiB %8.2f" % (
                name, threads, n, rate, evaluator or 0, ratio, rss / 1024,
                run.cpu))
            results.append({"model": name, "threads": threads, "rows": n,
                            "score_rows_per_s": rate,
                            "evaluator_rows_per_s": evaluator,
                            "ratio": ratio, "peak_rss_kib": rss,
                            "cpu_s": run.cpu})
            os.unlink(out)
            os.unlink(out + ".manifest.json")
        os.unlink(data)
    if big_gb > 0:
        data = os.path.join(bench_dir, "big.csv")
        n = repeat_csv(os.path.join(models_dir, "medium.input.csv"), data,
                       size=int(big_gb * (1 << 30)))
        size = os.path.getsize(data)
        out = os.path.join(bench_dir, "big.out.csv")
        seconds, rss = run([TANDEM, "score", "--model",
                            os.path.join(models_dir, "medium.model.json"),
                            "--in", data, "--out", out])
        print("big file: %.2f GiB, %d rows, %.1f s, %.0f rows/s, peak RSS "
              "%.0f MiB" % (size / (1 << 30), n, seconds, n / seconds,
                            rss / 1024))
        results.append({"big_file_bytes": size, "rows": n,
                        "seconds": seconds, "peak_rss_kib": rss})
        os.unlink(data)
        os.unlink(out)
        os.unlink(out + ".manifest.json")
    with open(os.path.join(bench_dir, "end_to_end.json"), "w") as fp:
        json.dump(results, fp, indent=1)


if __name__ == "__main__":
    main()
