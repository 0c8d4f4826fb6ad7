"""Every error a pipeline file can have is found when it loads: `tandem
batch` exits 2, writes no output, and says FILE:LINE:COL at the offending
node (for an expression, the offending character inside it) and a message
that names the thing at fault. One small YAML file per error; each case
gives where the error must point as (text on the line, text at the
column) and fragments the message must hold."""
import os

from common import expect, finish, tmpdir
from pipeline_util import make_model, tandem, write

out = tmpdir()
make_model(os.path.join(out, "m.json"), ["log_amount", "n_1h"])
events = write(os.path.join(out, "e.csv"),
               "txn,card,ts,amount,merchant\n1,a,2024-01-01T00:00:00Z,10,x\n")

HEAD = """\
name: fraud
entity: card
time: ts
fields:
  card: string
  ts: time
  amount: number
  merchant: string
"""
GOOD_FEATURES = """\
features:
  - name: log_amount
    expr: "log1p(amount)"
  - name: n_1h
    agg: count
    window: 1h
"""
MODEL = "model:\n  path: m.json\n"


def feature(*lines):
    return HEAD + "features:\n" + "".join("    " + l + "\n" if i else "  - " + l + "\n"
                                          for i, l in enumerate(lines)) + MODEL


# (name, yaml, (line text, column text) or None for line 1 column 1,
#  message fragments)
CASES = [
    ("unknown top-level key",
     HEAD + "colour: red\n" + GOOD_FEATURES + MODEL,
     ("colour: red", "colour"), ['unknown key "colour"', "the pipeline", "known:"]),
    ("unknown feature key",
     HEAD + GOOD_FEATURES + "    windw: 1h\n" + MODEL,
     ("windw: 1h", "windw"), ['unknown key "windw"', "a feature", "window"]),
    ("a list where a string is expected",
     HEAD.replace("entity: card", "entity: [card, ts]") + GOOD_FEATURES + MODEL,
     ("entity: [card", ("entity", "[card")), ["entity", "must be a string", "a list"]),
    ("a mapping where a list is expected",
     HEAD + "features: {name: a}\n" + MODEL,
     ("features: {name", ("features", "{name")), ["features must be a list", "a mapping"]),
    ("unknown field type",
     HEAD.replace("amount: number", "amount: integer") + GOOD_FEATURES + MODEL,
     ("amount: integer", "integer"), ['unknown field type "integer"', "number"]),
    ("unknown field type in a mapping",
     HEAD.replace("amount: number", "amount: {type: float}") + GOOD_FEATURES + MODEL,
     ("amount: {type: float}", "float"), ['unknown field type "float"']),
    ("unknown aggregation",
     feature("name: a", "agg: median(amount)", "window: 1h"),
     ("agg: median", "median"), ['unknown aggregation "median"', "known:", "mean(x)"]),
    ("aggregation without its input",
     feature("name: a", "agg: sum", "window: 1h"),
     ("agg: sum", "sum"), ['sum', 'needs the field or feature', 'sum(name)']),
    ("count with an input",
     feature("name: a", "agg: count(amount)", "window: 1h"),
     ("agg: count", "count"), ["count takes no argument"]),
    ("window 1x",
     feature("name: a", "agg: count", "window: 1x"),
     ("window: 1x", "1x"), ['window "1x" is not a duration', "ms, s, m, h, d or w"]),
    ("window -5m",
     feature("name: a", "agg: count", "window: -5m"),
     ("window: -5m", "-5m"), ['window "-5m" is not a duration', "positive"]),
    ("window 0s",
     feature("name: a", "agg: count", "window: 0s"),
     ("window: 0s", "0s"), ['window "0s" is not a duration', "positive"]),
    ("bad hop",
     feature("name: a", "agg: sum(amount)", "window: 1h", "hop: 1y"),
     ("hop: 1y", "1y"), ['hop "1y" is not a duration']),
    ("hop not dividing the window",
     feature("name: a", "agg: sum(amount)", "window: 1h", "hop: 7m"),
     ("hop: 7m", "7m"), ["multiple of hop"]),
    ("hop as long as the window",
     feature("name: a", "agg: sum(amount)", "window: 1h", "hop: 60m"),
     ("hop: 60m", "60m"), ["multiple of hop", "longer"]),
    ("hop with window all",
     feature("name: a", "agg: sum(amount)", "window: all", "hop: 1h"),
     ("hop: 1h", "1h"), ["hop needs a window of fixed length"]),
    ("hop with distinct",
     feature("name: a", "agg: distinct(merchant)", "window: 1h", "hop: 10m"),
     ("hop: 10m", "10m"), ["hop works with count, sum, mean, min, max and stddev only"]),
    ("hop with since_last",
     feature("name: a", "agg: since_last", "window: 1h", "hop: 10m"),
     ("hop: 10m", "10m"), ["hop works with"]),
    ("distinct with window all",
     feature("name: a", "agg: distinct(merchant)", "window: all"),
     ("window: all", "all"), ["distinct needs a window of fixed length"]),
    ("distinct without a window (all)",
     feature("name: a", "agg: distinct(merchant)"),
     ("- name: a", "name"), ["distinct needs a window of fixed length"]),
    ("distinct of a number",
     feature("name: a", "agg: distinct(amount)", "window: 1h"),
     ("agg: distinct", "distinct"), ["distinct(amount)", "string or category"]),
    ("window on an expr feature",
     feature("name: a", 'expr: "amount"', "window: 1h"),
     ("window: 1h", "1h"), ['feature "a" is an expr', "window"]),
    ("both expr and agg",
     feature("name: a", 'expr: "amount"', "agg: count"),
     ("- name: a", "name"), ['feature "a" needs exactly one of expr', "agg"]),
    ("feature without a name",
     feature('expr: "amount"'),
     ('- expr: "amount"', "expr"), ["a feature needs a name"]),
    ("feature name that is not a name",
     feature("name: a-b", 'expr: "amount"'),
     ("name: a-b", "a-b"), ['"a-b" is not a name']),
    ("unknown function (double quotes)",
     feature("name: a", 'expr: "amount + lg(amount)"'),
     ('expr: "amount', "lg("), ['unknown function "lg"', "known: log", "column 10"]),
    ("unknown function (plain scalar)",
     feature("name: a", "expr: amount + lg(amount)"),
     ("expr: amount", "lg("), ['unknown function "lg"']),
    ("unknown function (single quotes, flow mapping)",
     HEAD + "features:\n  - {name: a, expr: 'amount + lg(amount)'}\n" + MODEL,
     ("{name: a, expr:", "lg("), ['unknown function "lg"']),
    ("unknown function in a folded (multi-line) scalar",
     HEAD + "features:\n  - name: a\n    expr: >-\n      amount +\n"
     "      lg(amount)\n" + MODEL,
     ("expr: >-", "lg("), ['unknown function "lg"']),
    ("unknown function after escaped quotes",
     feature("name: a", 'expr: "merchant == \\"x\\" and lg(amount)"'),
     ('expr: "merchant', "lg("), ['unknown function "lg"']),
    ("unknown name in expr",
     feature("name: a", 'expr: "amount * rate"'),
     ('expr: "amount * rate"', "rate"), ['unknown name "rate"', 'expr "amount * rate"']),
    ("unknown name in where",
     feature("name: a", "agg: count", "window: 1h", 'where: "amont > 5"'),
     ('where: "amont', "amont"), ['unknown name "amont"', "where"]),
    ("unknown name in when",
     HEAD + GOOD_FEATURES + MODEL + 'decision:\n  - when: "scor > 0.5"\n    then: block\n',
     ('when: "scor', "scor"), ['unknown name "scor"', "when"]),
    ("score in a feature",
     feature("name: a", 'expr: "score * 2"'),
     ('expr: "score', "score"), ['unknown name "score"']),
    ("type error: string + number",
     feature("name: a", 'expr: "merchant + 1"'),
     ('expr: "merchant', "+ 1"), ["'+' needs numbers", "string"]),
    ("type error: string compared with a number",
     feature("name: a", "expr: \"merchant == 1\""),
     ('expr: "merchant', "== 1"), ["'==' compares a string with a number"]),
    ("expression giving a string",
     feature("name: a", 'expr: "merchant"'),
     ('expr: "merchant"', "merchant"), ["gives a string", "must give a number"]),
    ("undefined feature in agg input",
     feature("name: a", "agg: sum(amount_usd)", "window: 1h"),
     ("agg: sum(amount_usd)", "sum"), ['"amount_usd" is not a numeric field or another feature']),
    ("agg of a string field",
     feature("name: a", "agg: sum(merchant)", "window: 1h"),
     ("agg: sum(merchant)", "sum"), ['"merchant" is not a numeric field']),
    ("agg of an aggregation",
     HEAD + "features:\n  - name: a\n    agg: count\n    window: 1h\n"
     "  - name: b\n    agg: sum(a)\n    window: 1h\n" + MODEL,
     ("agg: sum(a)", "sum"), ['b aggregates "a"', "aggregation"]),
    ("cyclic features a -> b -> a",
     HEAD + 'features:\n  - name: a\n    expr: "b + 1"\n'
     '  - name: b\n    expr: "a * 2"\n' + MODEL,
     ("- name: a", "name"), ['feature "a" depends on itself', "cycle"]),
    ("a feature reading itself",
     feature("name: a", 'expr: "a + 1"'),
     ("- name: a", "name"), ['feature "a" depends on itself']),
    ("a model feature the pipeline does not produce",
     HEAD + "features:\n  - name: log_amount\n    expr: \"log1p(amount)\"\n" + MODEL,
     ("path: m.json", "m.json"), ['1 of the model\'s 2 features is not a feature or numeric field',
      '"n_1h"']),
    ("a model file that does not exist",
     HEAD + GOOD_FEATURES + "model:\n  path: missing.json\n",
     ("path: missing.json", "missing.json"), ["missing.json", "No such file"]),
    ("duplicate feature name",
     HEAD + GOOD_FEATURES + '  - name: n_1h\n    expr: "amount * 2"\n' + MODEL,
     ("- name: n_1h\n    expr", "name"), ['feature "n_1h" is defined twice']),
    ("feature named like a field",
     feature("name: amount", 'expr: "1"'),
     ("- name: amount", "name"), ['feature "amount" has the name of a field']),
    ("duplicate field",
     HEAD + "  card: number\n" + GOOD_FEATURES + MODEL,
     ("  card: number", "card"), ["duplicate key"]),
    ("duplicate key",
     HEAD + "time: ts\n" + GOOD_FEATURES + MODEL,
     ("time: ts\nfeatures", "time"), ["duplicate key"]),
    ("entity not declared as a field",
     HEAD.replace("entity: card", "entity: card_id") + GOOD_FEATURES + MODEL,
     ("entity: card_id", "card_id"), ['entity "card_id" must be one of the fields']),
    ("entity of type time",
     HEAD.replace("entity: card", "entity: ts") + GOOD_FEATURES + MODEL,
     ("entity: ts", "ts"), ['entity "ts"', "a string or a number"]),
    ("time not declared as a field",
     HEAD.replace("time: ts", "time: when") + GOOD_FEATURES + MODEL,
     ("time: when", "when"), ['time "when" must be one of the fields', "of type time"]),
    ("time not of type time",
     HEAD.replace("time: ts", "time: amount") + GOOD_FEATURES + MODEL,
     ("time: amount", "amount"), ['time "amount"', "of type time"]),
    ("id not declared as a field",
     HEAD.replace("time: ts", "time: ts\nid: txn") + GOOD_FEATURES + MODEL,
     ("id: txn", "txn"), ['id "txn" must be one of the fields']),
    ("YAML syntax error: mapping value in a plain scalar",
     HEAD.replace("time: ts", "time: ts: x") + GOOD_FEATURES + MODEL,
     ("time: ts: x", ": x"), ["YAML"]),
    ("YAML syntax error: a token that cannot start",
     HEAD.replace("time: ts", "@time: ts") + GOOD_FEATURES + MODEL,
     ("@time", "@"), ["YAML", "@"]),
    ("YAML syntax error: unclosed flow mapping",
     HEAD.replace("fields:\n  card: string\n  ts: time\n  amount: number\n"
                  "  merchant: string\n",
                  "fields: {card: string, ts: time, amount: number\n")
     + "model: m.json\n",
     None, ["YAML"]),
    ("not a mapping",
     "- name: fraud\n- entity: card\n",
     None, ["the pipeline must be a mapping", "a list"]),
    ("missing name", HEAD.replace("name: fraud\n", "") + GOOD_FEATURES + MODEL,
     None, ['the pipeline needs "name"']),
    ("missing entity", HEAD.replace("entity: card\n", "") + GOOD_FEATURES + MODEL,
     None, ['the pipeline needs "entity"']),
    ("missing time", HEAD.replace("time: ts\n", "") + GOOD_FEATURES + MODEL,
     None, ['the pipeline needs "time"']),
    ("missing fields", "name: fraud\nentity: card\ntime: ts\n" + MODEL,
     None, ['the pipeline needs "fields"']),
    ("missing model", HEAD + GOOD_FEATURES,
     None, ["the pipeline has no model: add model: FILE, or run tandem "
            "batch --features-only"]),
    ("bad output column",
     HEAD + GOOD_FEATURES + MODEL + "output: [card, scroe]\n",
     ("output: [card, scroe]", "scroe"), ['output column "scroe"', "score or decision"]),
    ("output column twice",
     HEAD + GOOD_FEATURES + MODEL + "output: [card, card]\n",
     ("output: [card, card]", "card]"), ['output column "card" is listed twice']),
    ("decision rule without then",
     HEAD + GOOD_FEATURES + MODEL
     + 'decision:\n  - when: "score > 0.5"\n  - then: approve\n',
     ('- when: "score', "when"), ["a decision rule needs then"]),
    ("rule without when not last",
     HEAD + GOOD_FEATURES + MODEL
     + 'decision:\n  - then: approve\n  - when: "score > 0.5"\n    then: block\n',
     ("- then: approve", "then"), ["a rule without when", "only the last rule"]),
    ("unknown rule key",
     HEAD + GOOD_FEATURES + MODEL + "decision:\n  - {if: x, then: block}\n",
     ("{if: x", "if"), ['unknown key "if" in a decision rule']),
    ("category without values",
     HEAD.replace("merchant: string", "merchant: category") + GOOD_FEATURES + MODEL,
     ("merchant: category", "merchant"), ['category field "merchant" needs its values']),
    ("category value twice",
     HEAD.replace("merchant: string", "merchant: {type: category, values: [a, b, a]}")
     + GOOD_FEATURES + MODEL,
     ("values: [a, b, a]", "a]"), ['category "a" is listed twice']),
    ("bad time unit",
     HEAD.replace("ts: time", "ts: {type: time, unit: us}") + GOOD_FEATURES + MODEL,
     ("unit: us", "us"), ["unit is s or ms", '"us"']),
    ("bad lateness",
     HEAD + GOOD_FEATURES + MODEL + "state:\n  lateness: soon\n",
     ("lateness: soon", "soon"), ['lateness "soon" is not a duration']),
    ("bad max_events",
     HEAD + GOOD_FEATURES + MODEL + "state:\n  max_events: 0\n",
     ("max_events: 0", "0"), ["max_events must be a whole number"]),
    ("bad max_future",
     HEAD + GOOD_FEATURES + MODEL + "state:\n  max_future: later\n",
     ("max_future: later", "later"), ['max_future "later" is not a duration']),
    ("bad late policy",
     HEAD + GOOD_FEATURES + MODEL + "state:\n  late: drop\n",
     ("late: drop", "drop"), ['late must be reject or apply, not "drop"']),
    ("unknown state key",
     HEAD + GOOD_FEATURES + MODEL + "state:\n  window: 1h\n",
     ("state:\n  window: 1h", "window"), ['unknown key "window" in state']),
]


def locate(text, where):
    """(line, columns), 1-based, of WHERE = (text that leads to the place,
    text at the place, searched from there); the second may be a pair of
    texts when either place is right (a key or its value)."""
    on, at = where
    start = text.index(on)
    line, cols = None, []
    for a in at if isinstance(at, tuple) else (at,):
        pos = text.index(a, start)
        line = text.count("\n", 0, pos) + 1
        cols.append(pos - (text.rfind("\n", 0, pos) + 1) + 1)
    return line, cols


for name, text, where, fragments in CASES:
    slug = "".join(c if c.isalnum() else "_" for c in name)[:60]
    path = write(os.path.join(out, slug + ".yaml"), text)
    result = os.path.join(out, slug + ".out.csv")
    r = tandem("batch", path, "--in", events, "--out", result)
    message = r.stderr.strip()
    if not expect(r.returncode == 2, f"{name}: exit {r.returncode}, expected 2: {message}"):
        continue
    expect(not os.path.exists(result) and not os.path.exists(result + ".manifest.json"),
           f"{name}: an output file was left behind")
    prefix = f"tandem: {path}:"
    if not expect(message.startswith(prefix),
                  f"{name}: message does not start with {prefix!r}: {message}"):
        continue
    rest = message[len(prefix):]
    lines = text.count("\n") + 1
    try:
        got_line, got_col = (int(x) for x in rest.split(":", 2)[:2])
    except ValueError:
        fail_msg = f"{name}: no LINE:COL after the file name: {message}"
        expect(False, fail_msg)
        continue
    if where is None:
        want_line, want_cols = 1, [1]
        if name.startswith("YAML syntax error: unclosed"):
            # The end of the file or the line after the open brace: any
            # place in the file, but in it.
            want_line, want_cols = got_line, [got_col]
            expect(4 <= got_line <= lines, f"{name}: line {got_line} is not in the "
                   f"file's {lines} lines: {message}")
    else:
        want_line, want_cols = locate(text, where)
    expect(got_line == want_line and got_col in want_cols,
           f"{name}: points at {got_line}:{got_col}, expected {want_line}:"
           f"{'|'.join(map(str, want_cols))}: {message}")
    for fragment in fragments:
        expect(fragment in message, f"{name}: message lacks {fragment!r}: {message}")

# The other commands that load a pipeline report the same error.
bad = os.path.join(out, "unknown_name_in_expr.yaml")
r = tandem("serve", bad, "--listen", "127.0.0.1:0", timeout=30)
expect(r.returncode == 2 and 'unknown name "rate"' in r.stderr
       and f"{bad}:" in r.stderr, f"serve of a bad pipeline: {r.returncode} {r.stderr}")
r = tandem("replay", bad, "--in", events, "--url", "http://127.0.0.1:9", timeout=30)
expect(r.returncode == 2 and 'unknown name "rate"' in r.stderr,
       f"replay of a bad pipeline: {r.returncode} {r.stderr}")
r = tandem("batch", bad, "--in", events, "--out", os.path.join(out, "fo.csv"),
           "--features-only")
expect(r.returncode == 2 and 'unknown name "rate"' in r.stderr,
       f"batch --features-only of a bad pipeline: {r.returncode} {r.stderr}")
# A missing pipeline file: exit 2, the file named.
r = tandem("batch", os.path.join(out, "nope.yaml"), "--in", events,
           "--out", os.path.join(out, "x.csv"))
expect(r.returncode == 2 and "nope.yaml" in r.stderr,
       f"missing pipeline file: {r.returncode} {r.stderr}")

# The good pipeline itself loads (the cases above differ from it only by
# the error they show).
good = write(os.path.join(out, "good.yaml"), HEAD + GOOD_FEATURES + MODEL)
r = tandem("batch", good, "--in", events, "--out", os.path.join(out, "good.csv"))
expect(r.returncode == 0, f"the good pipeline fails: {r.stderr}")

finish("test_pipeline_validation")
