"""Loading a large XGBoost JSON model: the model must cost at most three
times its file's size in peak memory (the JSON document once kept a value
of ~80 bytes for every number in the file), load exactly (XGBoost itself
loads the same generated file and predicts adversarial rows, which tandem
must match bit for bit), and a damaged file deep inside one of its big
arrays must still be refused with its line:column or JSON pointer, exit
status 2 and no output file.

The model is generated here (seeded): complete trees whose thresholds come
from a small grid, so that rows can sit exactly on a threshold and on its
float32 neighbours."""
import json
import os

import numpy as np
import xgboost as xgb

from common import bits_equal, expect, finish, read_scores, run, \
    tmpdir, write_matrix_csv
from serve_util import Server

out = tmpdir()
rng = np.random.default_rng(2026_12_07)
NUM_FEATURES = 16
NUM_TREES = 160
DEPTH = 10  # 2047 nodes a tree
NODES = 2 ** (DEPTH + 1) - 1
GRID = np.float32(np.arange(-40, 41) / 8.0)


def numbers(values):
    """float32 values in the shortest text that reads back exactly, as
    XGBoost writes them."""
    return "[" + ",".join(str(v) for v in np.asarray(values, np.float32)) + "]"


def integers(values):
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def tree_text(tree_id):
    ids = np.arange(NODES)
    leaf = ids >= NODES // 2
    left = np.where(leaf, -1, 2 * ids + 1)
    right = np.where(leaf, -1, 2 * ids + 2)
    parents = np.where(ids == 0, 2147483647, (ids - 1) // 2)
    feature = np.where(leaf, 0, rng.integers(0, NUM_FEATURES, NODES))
    threshold = rng.choice(GRID, NODES)
    leaf_value = np.float32(rng.normal(0, 0.1, NODES))
    condition = np.where(leaf, leaf_value, threshold)
    default_left = np.where(leaf, 0, rng.integers(0, 2, NODES))
    fields = {
        "base_weights": numbers(rng.normal(0, 1, NODES)),
        "categories": "[]", "categories_nodes": "[]",
        "categories_segments": "[]", "categories_sizes": "[]",
        "default_left": integers(default_left), "id": str(tree_id),
        "left_children": integers(left),
        "loss_changes": numbers(rng.exponential(10, NODES)),
        "parents": integers(parents), "right_children": integers(right),
        "split_conditions": numbers(condition),
        "split_indices": integers(feature),
        "split_type": integers(np.zeros(NODES)),
        "sum_hessian": numbers(rng.uniform(1, 1000, NODES)),
        "tree_param": json.dumps({
            "num_deleted": "0", "num_feature": str(NUM_FEATURES),
            "num_nodes": str(NODES), "size_leaf_vector": "0"}),
    }
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


def model_text():
    trees = ",".join(tree_text(t) for t in range(NUM_TREES))
    names = json.dumps([f"f{i}" for i in range(NUM_FEATURES)])
    types = json.dumps(["float"] * NUM_FEATURES)
    return (
        '{"learner":{"attributes":{},"feature_names":' + names +
        ',"feature_types":' + types +
        ',"gradient_booster":{"model":{"gbtree_model_param":'
        '{"num_parallel_tree":"1","num_trees":"' + str(NUM_TREES) +
        '","size_leaf_vector":"0"},"tree_info":' +
        integers([0] * NUM_TREES) + ',"trees":[' + trees +
        ']},"name":"gbtree"},"learner_model_param":{"base_score":"5E-1",'
        '"boost_from_average":"1","num_class":"0","num_feature":"' +
        str(NUM_FEATURES) + '","num_target":"1"},"objective":{"name":'
        '"reg:squarederror","reg_loss_param":{"scale_pos_weight":"1"}}},'
        '"version":[2,0,3]}')


def peak_memory(model_path):
    """The peak resident bytes of `tandem serve` once it has loaded a model
    and listens, from the kernel's high-water mark of that process
    (VmHWM; wait4's ru_maxrss would start from this Python process's size,
    which the child inherits through fork)."""
    with Server("--model", f"m={model_path}") as server:
        with open(f"/proc/{server.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


text = model_text()
model = os.path.join(out, "large.json")
with open(model, "w") as f:
    f.write(text)
size = len(text)

# Exactness: XGBoost loads the same file and predicts rows on thresholds,
# beside them (float32 neighbours), missing, and anywhere.
rows = 4000
grid_rows = rng.choice(GRID, (rows, NUM_FEATURES))
step = rng.integers(-1, 2, (rows, NUM_FEATURES))
X = np.where(step == 0, grid_rows,
             np.nextafter(grid_rows, np.where(step > 0, np.inf, -np.inf).astype(np.float32))).astype(np.float32)
X[rng.random((rows, NUM_FEATURES)) < 0.1] = np.nan
anywhere = rng.random((rows, NUM_FEATURES)) < 0.1
X[anywhere] = np.float32(rng.normal(0, 4, anywhere.sum()))
X[rng.random((rows, NUM_FEATURES)) < 0.02] = np.float32(-0.0)
names = [f"f{i}" for i in range(NUM_FEATURES)]
data = os.path.join(out, "rows.csv")
write_matrix_csv(data, names, X)
booster = xgb.Booster()
booster.load_model(model)
expected = booster.predict(xgb.DMatrix(X, feature_names=names),
                           output_margin=True)
scores = os.path.join(out, "scores.csv")
run("score", "--model", model, "--in", data, "--out", scores, "--margin")
_, got = read_scores(scores)
if bits_equal(expected, got, "generated large model"):
    print(f"ok {rows} adversarial rows scored as XGBoost scores them "
          f"({NUM_TREES} trees of {NODES} nodes, {size >> 20} MiB)")

# Peak memory of a load, less what the process costs with a tiny model.
tiny = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                    "examples", "credit-risk", "model.json")
if os.environ.get("ASAN_OPTIONS"):
    # A sanitized build keeps shadow memory and red zones around every
    # allocation: its footprint says nothing about the loader's.
    print("skipped the memory check: a sanitized build")
else:
    base = peak_memory(tiny)
    peak = peak_memory(model)
    ratio = (peak - base) / size
    if expect(ratio <= 3.0, f"loading a {size}-byte model took {peak - base} "
              f"bytes beyond the process's own {base} ({ratio:.2f}x the "
              "file)"):
        print(f"ok loading the model takes {ratio:.2f}x its file's size "
              f"beyond the {base >> 20} MiB the server takes with a tiny "
              "model")

# Damage deep inside the big arrays of one tree.
def column_of(offset):
    return offset + 1  # the generated file is one line


def expect_refused(name, bad_text, *wanted):
    path = os.path.join(out, name + ".json")
    with open(path, "w") as f:
        f.write(bad_text)
    result = os.path.join(out, name + ".out.csv")
    proc = run("score", "--model", path, "--in", data, "--out", result,
               check=False)
    ok = expect(proc.returncode == 2,
                f"{name}: exit status {proc.returncode}, expected 2 "
                f"({proc.stderr.strip()})")
    for w in wanted:
        ok &= expect(w in proc.stderr, f"{name}: {w!r} not in "
                     f"{proc.stderr.strip()!r}")
    ok &= expect(not os.path.exists(result), f"{name}: left {result}")
    if ok:
        print(f"ok {name}: {proc.stderr.strip()[:150]}")


tree = NUM_TREES - 3
prefix = f"/learner/gradient_booster/model/trees/{tree}"
# A node deep in the tree: its index in the array is counted here.
deep = 1500
cut = text.index('"split_conditions":[', text.index(f'"id":{tree},'))
expect_refused("truncated_in_array", text[:cut + 400],
               f"truncated_in_array.json:1:{column_of(cut + 400)}:",
               "ends too early")
start = text.index('"split_conditions":[', text.index(f'"id":{tree},'))
values = text[start + len('"split_conditions":['):].split(",", deep + 1)
offset = start + len('"split_conditions":[') + sum(
    len(v) + 1 for v in values[:deep])
old_value = values[deep]
string_inside = text[:offset] + '"x"' + text[offset + len(old_value):]
expect_refused("string_inside_array", string_inside,
               f"{prefix}/split_conditions/{deep}: \"x\" is not a number")
bad_number = text[:offset] + "1.e5" + text[offset + len(old_value):]
expect_refused("bad_number_inside_array", bad_number,
               f"bad_number_inside_array.json:1:{column_of(offset + 2)}:",
               "expected a digit after the decimal point")
# split_indices at an inner node: out of range and not an integer.
start = text.index('"split_indices":[', text.index(f'"id":{tree},'))
values = text[start + len('"split_indices":['):].split(",", 1001)
offset = start + len('"split_indices":[') + sum(len(v) + 1 for v in values[:1000])
for name, new, message in (
        ("index_out_of_range", "99", f"{prefix}/split_indices/1000: 99 is out "
         f"of range (0 to {NUM_FEATURES - 1})"),
        ("index_not_integer", "1.5", f"{prefix}/split_indices/1000: \"1.5\" "
         "is not an integer"),
        ("index_too_large", "123456789012345678901234567890",
         f"{prefix}/split_indices/1000: \"123456789012345678901234567890\" "
         "is not an integer"),
        ("index_is_null", "null", f"{prefix}/split_indices/1000: expected a "
         "number, found null")):
    expect_refused(name, text[:offset] + new + text[offset + len(values[1000]):],
                   message)
# A huge array: two million children where the tree has 2047 nodes.
start = text.index('"left_children":[', text.index(f'"id":{tree},'))
end = text.index("]", start)
huge = ("[" + ",".join(["-1"] * 2_000_000) + "]")
expect_refused("huge_array", text[:start + len('"left_children":')] + huge +
               text[end + 1:], f"{prefix}/left_children: has 2000000 "
               f"elements, expected {NODES}")
finish("model load memory")
