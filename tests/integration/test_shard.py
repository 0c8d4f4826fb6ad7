"""`tandem score --shard I/N`: the N shard outputs concatenated in order are
the unsharded output byte for byte, for several N (including more shards
than a small file has records), on input with CRLF line ends and quoted
fields that hold commas, quotes and line breaks; each shard's manifest
names the whole input by its SHA-256; bad --shard values are usage errors."""
import hashlib
import json
import os

from common import FIXTURES, expect, finish, run, tmpdir

out = tmpdir()
model = os.path.join(FIXTURES, "xgboost", "credit_data_binary.model.json")
with open(os.path.join(FIXTURES, "xgboost", "credit_data_binary.input.csv")) as f:
    lines = f.read().splitlines()
rows = ["note," + lines[0]]
for i, line in enumerate(lines[1:] * 3):
    note = f'"multi\nline, ""quoted"" {i}"' if i % 7 == 0 else f"n{i}"
    rows.append(note + "," + line)
data = os.path.join(out, "in.csv")
with open(data, "w", newline="") as f:
    f.write("\r\n".join(rows) + "\r\n")
digest = hashlib.sha256(open(data, "rb").read()).hexdigest()

full = os.path.join(out, "full.csv")
run("score", "--model", model, "--in", data, "--out", full, "--keep", "note")
expected = open(full, "rb").read()
for n in (1, 2, 3, 7, 16):
    joined = b""
    total = 0
    for i in range(1, n + 1):
        part = os.path.join(out, f"part{i}.csv")
        run("score", "--model", model, "--in", data, "--out", part, "--keep",
            "note", "--shard", f"{i}/{n}")
        joined += open(part, "rb").read()
        manifest = json.load(open(part + ".manifest.json"))
        total += manifest["output"]["rows"]
        expect(manifest["input"]["sha256"] == digest and
               manifest["flags"]["shard"] == f"{i}/{n}",
               f"shard {i}/{n} manifest: {manifest['input']} {manifest['flags']}")
    if expect(joined == expected and total == len(rows) - 1,
              f"{n} shards concatenated differ from the unsharded output"):
        print(f"ok {n} shards concatenate to the unsharded output ({total} rows)")

tiny = os.path.join(out, "tiny.csv")
with open(tiny, "w") as f:
    f.write("\n".join(lines[:3]) + "\n")
run("score", "--model", model, "--in", tiny, "--out", os.path.join(out, "t.csv"))
joined = b""
for i in range(1, 51):
    part = os.path.join(out, f"tiny{i}.csv")
    run("score", "--model", model, "--in", tiny, "--out", part, "--shard", f"{i}/50")
    joined += open(part, "rb").read()
expect(joined == open(os.path.join(out, "t.csv"), "rb").read(),
       "50 shards of a 2-row file")
print("ok 50 shards of a 2-row file (most of them empty)")

for bad in ("0/3", "4/3", "1/0", "x", "1/2/3", "2/"):
    proc = run("score", "--model", model, "--in", data, "--out",
               os.path.join(out, "bad.csv"), "--shard", bad, check=False)
    expect(proc.returncode == 2 and "--shard must be I/N" in proc.stderr,
           f"--shard {bad}: {proc.returncode} {proc.stderr}")
print("ok bad --shard values are usage errors")
finish("shard")
