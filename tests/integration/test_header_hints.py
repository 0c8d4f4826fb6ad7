"""A CSV header that lacks the entity or time column says why.

Three mistakes used to give the same "no column" message: a file separated
by semicolons, a header spelling a name in another case, and a file with
no header. Each now exits 2 with the reason and the remedy, and writes no
output. The events are generated from a seed; the expected hint follows
from how the test built the file, not from tandem's output.
"""
import os
import random

from common import ROOT, expect, finish, run, tmpdir

PIPELINE = os.path.join(ROOT, "examples", "fraud", "pipeline.yaml")


def main():
    work = tmpdir()
    pipeline = PIPELINE
    store = os.path.join(work, "tables")
    rng = random.Random(20)
    for trial in range(6):
        rows = [[f"t{i}", f"c{rng.randrange(5)}", str(1_700_000_000 + i * 60),
                 f"{rng.uniform(0, 100):.2f}"] for i in range(rng.randrange(1, 30))]
        names = ["txn_id", "card_id", "ts", "amount"]
        bad = rng.choice(["card_id", "ts"])
        variant = rng.choice([n for n in (bad.upper(), bad.capitalize(), bad.swapcase())
                              if n != bad])
        cases = {
            "semicolons": (";".join(names) + "\n" +
                           "".join(";".join(r) + "\n" for r in rows), "semicolons"),
            "no header": ("".join(",".join(r) + "\n" for r in rows),
                          "must be a header"),
            "case": (",".join(variant if n == bad else n for n in names) + "\n" +
                     "".join(",".join(r) + "\n" for r in rows),
                     f'"{variant}": names are case-sensitive, rename it "{bad}"'),
        }
        for what, (text, hint) in cases.items():
            path = os.path.join(work, f"in{trial}.csv")
            out = os.path.join(work, f"out{trial}.csv")
            with open(path, "w") as f:
                f.write(text)
            proc = run("batch", pipeline, "--in", path, "--out", out,
                       "--store", store, "--no-registry", check=False)
            expect(proc.returncode == 2,
                   f"trial {trial} {what}: exit {proc.returncode}, {proc.stderr!r}")
            expect(hint in proc.stderr,
                   f"trial {trial} {what}: {proc.stderr.strip()!r} lacks {hint!r}")
            expect(not os.path.exists(out), f"trial {trial} {what}: wrote {out}")
    finish("header_hints")


if __name__ == "__main__":
    main()
