"""Decimal text in and out of `tandem score`, checked against Python.

A one-feature identity linear model (intercept 0, coefficient 1) scores
each row as 0 + 1 * x, which is x itself in double arithmetic (a negative
zero becomes +0), so the output column is the parsed input written back
as text. About a million generated decimals go through it: random
doubles (uniform bits, subnormals included) in their shortest, 17-digit
and exponent forms; the exact midpoints between neighbouring doubles
written out in full, cut to 17-20 digits and nudged one unit either way;
long mantissas (20 to 800 digits) with exponents to +-400; leading zeros,
signs, the largest and smallest doubles, overflow to inf and underflow
to 0. Python's float() (correctly rounded) is the reference for the
value, and the text must be what docs/evaluator.md says a double score is
written as: the shortest of %.15g, %.16g and %.17g that reads back.
"""
import os
import random
import struct
from decimal import Decimal, getcontext

from common import expect, finish, run, tmpdir

getcontext().prec = 1200
rng = random.Random(22)
out = tmpdir()


def random_double():
    while True:
        (d,) = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))
        if d == d and abs(d) != float("inf"):
            return d


def next_up(d):
    """The double just above |d| (d finite, not the largest)."""
    (bits,) = struct.unpack("<Q", struct.pack("<d", abs(d)))
    return struct.unpack("<d", struct.pack("<Q", bits + 1))[0]


def nudge(text, delta):
    """text with the last digit of its mantissa moved by delta, when that
    needs no carry (else text unchanged)."""
    mantissa, e, exponent = text.partition("e")
    digit = int(mantissa[-1]) + delta
    if not mantissa[-1].isdigit() or not 0 <= digit <= 9:
        return text
    return mantissa[:-1] + str(digit) + e + exponent


def exact_midpoint(d):
    """The exact decimal midpoint between |d| and the next double up (a
    Decimal: with 1200 digits of precision the sum and halving are
    exact)."""
    a = Decimal(abs(d))
    b = Decimal(next_up(d))
    return (a + b) / 2


def cut(value, digits):
    """value (a Decimal) written with `digits` significant digits,
    truncated (not rounded), in exponent form."""
    _, ds, exponent = value.as_tuple()
    ds = "".join(map(str, ds))
    e = exponent + len(ds) - 1
    kept = ds[:digits]
    return f"{kept[0]}.{kept[1:] or '0'}e{e}"


def full(value):
    _, ds, exponent = value.as_tuple()
    return "".join(map(str, ds)) + f"e{exponent}"


def long_mantissa():
    digits = rng.choice([rng.randint(20, 40), rng.randint(30, 800)])
    text = "".join(rng.choice("0123456789") for _ in range(digits))
    point = rng.randint(0, digits)
    if rng.random() < 0.5:
        text = text[:point] + "." + text[point:]
        if text.startswith("."):
            text = "0" + text
        if text.endswith("."):
            text += "0"
    text = "0" * rng.randint(0, 3) + text
    if rng.random() < 0.7:
        text += "e%d" % rng.randint(-400, 400)
    return rng.choice(["", "-", "+"]) + text


texts = []
for _ in range(250000):
    d = random_double()
    texts.append(repr(d))
    texts.append("%.17g" % d)
    texts.append(("%.*E" % (rng.randint(0, 20), d)))
    # Doubles a CSV is made of: a few digits, scaled to ordinary sizes.
    x = rng.uniform(-1e6, 1e6) / 10 ** rng.randint(0, 12)
    texts.append("%.*f" % (rng.randint(0, 17), x))
for _ in range(40000):
    d = random_double()
    if abs(d) == 1.7976931348623157e308:
        continue
    mid = exact_midpoint(d)
    texts.append(full(mid))
    c = cut(mid, rng.randint(17, 20))
    texts += [c, nudge(c, 1), nudge(c, -1)]
for _ in range(40000):
    texts.append(long_mantissa())
texts += [
    "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308",
    "179769313486231580793728971405301e276", "2.2250738585072014e-308",
    "2.2250738585072013e-308", "2.225073858507201e-308", "4.9406564584124654e-324",
    "2.4703282292062328e-324", "2.4703282292062327e-324", "1e-400", "-1e-400",
    "1e400", "-1e400", "9999999999999999999e-343", "1000000000000000000e289",
    "1e-342", "1e308", "1e-22", "9007199254740993e-22", "9007199254740993",
    "18446744073709551615e-10", "18446744073709551616", "1234567890123456789e100",
    "0", "-0", "+0", "0.0", "000.000e5", "-0e-400", "00012.5000", "1e0", "1E+2",
    "0.1", "0.2", "0.30000000000000004", "123456789012345678901234567890",
]

in_path = os.path.join(out, "in.csv")
with open(in_path, "w") as f:
    f.write("x\n" + "\n".join(texts) + "\n")
model = os.path.join(out, "identity.json")
with open(model, "w") as f:
    f.write('{"format": "tandem-linear", "link": "identity", "intercept": 0, '
            '"coefficients": {"x": 1}}')


def written(v):
    """A double score as text: the shortest %.15g/%.16g/%.17g that reads
    back; infinities as inf and -inf."""
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    for digits in (15, 16):
        text = "%.*g" % (digits, v)
        if float(text) == v:
            return text
    return "%.17g" % v


for threads in (1, 2):
    out_path = os.path.join(out, f"out{threads}.csv")
    run("score", "--model", model, "--in", in_path, "--out", out_path,
        "--threads", threads)
    with open(out_path) as f:
        got = f.read().split("\n")
    expect(got[0] == "score", f"header {got[0]!r}")
    got = got[1:]
    if got and got[-1] == "":
        got.pop()
    expect(len(got) == len(texts), f"{len(got)} scores for {len(texts)} rows")
    bad = 0
    for text, line in zip(texts, got):
        want = written(0.0 + 1.0 * float(text))
        if line != want:
            bad += 1
            if bad <= 5:
                expect(False, f"threads {threads}: {text[:80]!r} scored "
                       f"{line!r}, Python says {want!r}")
    expect(bad == 0, f"threads {threads}: {bad} of {len(texts)} values differ")

finish("test_number_text")
