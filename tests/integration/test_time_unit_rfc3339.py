"""A time field with a unit still reads RFC 3339 text.

`unit` says how to read numbers (docs/pipelines.md), yet `{type: time,
unit: s}` rejected every RFC 3339 string. For unit s and ms, seeded events
with RFC 3339 times (offsets Z and +hh:mm, milliseconds) must give the
same features as the same events with the epoch numbers Python's datetime
computes from them, in that unit.
"""
import datetime
import os
import random

from common import expect, finish, tmpdir
from pipeline_util import make_model, read_csv, tandem, write

YAML = """name: units
entity: user
time: ts
fields:
  user: string
  ts: {type: time, unit: UNIT}
  amount: number
features:
  - {name: hour, expr: "hour_of_day()"}
  - {name: since, agg: since_last}
  - {name: total_1h, agg: sum(amount), window: 1h}
model: {path: model.json}
"""


def main():
    work = tmpdir()
    make_model(os.path.join(work, "model.json"), ["hour", "since", "total_1h"], 5)
    rng = random.Random(20)
    base = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
    events = []
    t = base
    for i in range(200):
        t += datetime.timedelta(milliseconds=rng.randrange(1, 900_000))
        zone = datetime.timezone(datetime.timedelta(minutes=rng.choice([0, 60, -330, 540])))
        local = t.astimezone(zone)
        text = local.isoformat(timespec="milliseconds")
        if zone.utcoffset(None) == datetime.timedelta(0) and rng.random() < 0.5:
            text = text.replace("+00:00", "Z")
        ms = (t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) \
            // datetime.timedelta(milliseconds=1)
        events.append((f"u{rng.randrange(4)}", text, ms, rng.randrange(1, 500)))
    for unit, scale in (("s", 1000), ("ms", 1)):
        pipeline = write(os.path.join(work, f"{unit}.yaml"), YAML.replace("UNIT", unit))
        outputs = []
        for kind in ("text", "number"):
            path = os.path.join(work, f"{unit}.{kind}.csv")
            with open(path, "w") as f:
                f.write("user,ts,amount\n")
                for user, text, ms, amount in events:
                    value = text if kind == "text" else repr(ms / scale) if scale > 1 else str(ms)
                    f.write(f"{user},{value},{amount}\n")
            out = os.path.join(work, f"{unit}.{kind}.out.csv")
            proc = tandem("batch", pipeline, "--in", path, "--out", out,
                          "--features-only", "--no-registry", "--strict")
            expect(proc.returncode == 0,
                   f"unit {unit}, {kind} times: exit {proc.returncode}, {proc.stderr.strip()!r}")
            outputs.append(read_csv(out) if proc.returncode == 0 else None)
        if None in outputs:
            continue
        text_rows, number_rows = outputs
        expect(len(text_rows) == len(events), f"unit {unit}: {len(text_rows)} rows")
        for a, b in zip(text_rows, number_rows):
            for name in ("hour", "since", "total_1h"):
                if a[name] != b[name]:
                    expect(False, f"unit {unit}: {name} {a[name]} from text, "
                                  f"{b[name]} from numbers at {a}")
                    break
    finish("time_unit_rfc3339")


if __name__ == "__main__":
    main()
