"""Float32 scores as text, checked against exact arithmetic in Python.

XGBoost models score in float32, and docs/evaluator.md says a float32
score is written as the shortest %.Ng, N from 6 to 9, that reads back
to the same float32. The test writes XGBoost models (reg:squarederror,
base_score 0) whose one tree sends the row with x = i + 0.5 to leaf i,
each leaf a float32 of random bits (every exponent equally likely,
subnormals included), so the score of row i is leaf i exactly; tandem
score's text for it must be the reference's. The reference decides
"reads back" with fractions: a decimal reads back to f when it lies
strictly between the midpoints to f's neighbours, or on one of them
when f's last mantissa bit is 0 (round half to even).
"""
import json
import os
import random
import struct
from fractions import Fraction

from common import expect, finish, run, tmpdir, xgboost_regression_model

rng = random.Random(2207)
out = tmpdir()
DEPTH = 14
LEAVES = 1 << DEPTH
MODELS = 6


def f32(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def random_float32():
    while True:
        bits = rng.getrandbits(32)
        if (bits >> 23) & 0xFF != 0xFF:  # finite
            return bits


def reads_back(text, bits):
    """Whether strtof(text) is the float32 with these bits (finite, and
    not the largest: its upper neighbour's midpoint is then infinity's
    rounding edge, which the random leaves almost never reach)."""
    q = Fraction(text)
    f = Fraction(f32(bits))
    sign = -1 if bits >> 31 else 1
    magnitude = bits & 0x7FFFFFFF
    up = Fraction(f32(magnitude + 1)) * sign if magnitude < 0x7F7FFFFF else None
    down = (Fraction(f32(magnitude - 1)) * sign if magnitude > 0
            else -Fraction(f32(1)) * sign)
    lo, hi = sorted([(f + down) / 2, (f + up) / 2 if up is not None else f * 2])
    if lo < q < hi:
        return True
    return (q == lo or q == hi) and bits % 2 == 0


def expected_text(bits):
    value = f32(bits)
    if value == 0:
        value = 0.0  # 0 + (-0) is +0 in the score's sum
        bits = 0
    for digits in range(6, 10):
        text = "%.*g" % (digits, value)
        if reads_back(text, bits):
            return text
    raise AssertionError("9 digits always read back")


def tree(leaves):
    """One tree over feature 0 whose row x = i + 0.5 reaches leaf i."""
    left, right, cond, parents, split = [], [], [], [], []

    def node(lo, hi, parent):
        index = len(left)
        left.append(-1), right.append(-1), cond.append(0.0)
        parents.append(parent), split.append(0)
        if hi - lo == 1:
            cond[index] = f32(leaves[lo])
            return index
        mid = (lo + hi) // 2
        cond[index] = float(mid)
        left[index] = node(lo, mid, index)
        right[index] = node(mid, hi, index)
        return index

    node(0, len(leaves), 2147483647)
    n = len(left)
    return {
        "base_weights": cond, "categories": [], "categories_nodes": [],
        "categories_segments": [], "categories_sizes": [],
        "default_left": [0] * n, "id": 0, "left_children": left,
        "loss_changes": [0.0] * n, "parents": parents,
        "right_children": right, "split_conditions": cond,
        "split_indices": split, "split_type": [0] * n,
        "sum_hessian": [1.0] * n,
        "tree_param": {"num_deleted": "0", "num_feature": "1",
                       "num_nodes": str(n), "size_leaf_vector": "0"},
    }


def model(leaves):
    return xgboost_regression_model([tree(leaves)], ["x"])


in_path = os.path.join(out, "rows.csv")
with open(in_path, "w") as f:
    f.write("x\n" + "".join("%d.5\n" % i for i in range(LEAVES)))
total = bad = 0
for m in range(MODELS):
    leaves = [random_float32() for _ in range(LEAVES)]
    # Values near both ends of the range and near powers of two.
    leaves[:6] = [0x00000001, 0x80000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFE,
                  0x3F800000 + m]
    path = os.path.join(out, f"m{m}.json")
    with open(path, "w") as f:
        json.dump(model(leaves), f)
    out_path = os.path.join(out, f"out{m}.csv")
    run("score", "--model", path, "--in", in_path, "--out", out_path,
        "--threads", 2)
    with open(out_path) as f:
        got = f.read().split("\n")[1:LEAVES + 1]
    expect(len(got) == LEAVES, f"model {m}: {len(got)} scores")
    for bits, text in zip(leaves, got):
        total += 1
        want = expected_text(bits)
        if text != want:
            bad += 1
            if bad <= 5:
                expect(False, f"float32 {f32(bits)!r} (bits {bits:#010x}) "
                       f"written {text!r}, want {want!r}")
expect(bad == 0, f"{bad} of {total} float32 scores written differently")
finish("test_float32_text")
