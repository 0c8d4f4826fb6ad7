"""Feature contributions (`tandem score --contribs`) against the libraries
themselves: every fixture's *.contribs.csv (XGBoost 1.7.4's
pred_contribs, float32, bit for bit) and *.contrib.csv (LightGBM's
pred_contrib, doubles, exactly), and models trained here with
python3-xgboost compared with Booster.predict(pred_contribs=True) and
approx_contribs=True: multiclass (one block per class), categorical
splits, dart, random forests, deep trees, missing values, base scores and
--iterations (iteration_range). The output is byte-identical for 1 and 3
threads, JSON Lines carries the same values as CSV, and bad requests
(a model without covers, --margin with --contribs, Saabas on LightGBM)
fail with a message and no output file."""
import filecmp
import glob
import json
import os

import numpy as np
import xgboost as xgb

from common import (FIXTURES, bits_equal, expect, fail, finish, run,
                    score_fixtures, tmpdir, write_matrix_csv)

out = tmpdir()


def read_csv(path):
    with open(path) as f:
        header = f.readline().rstrip("\n").split(",")
    data = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64,
                         ndmin=2, missing_values="", filling_values=np.nan)
    return header, data


def expected_header(names, classes):
    cols = [f"contrib_{n}" for n in names] + ["contrib_bias"]
    if classes <= 1:
        return cols
    return [f"class_{k}_{c}" for k in range(classes) for c in cols]


# 1. The fixtures: XGBoost's bits, LightGBM's doubles, 1 and 3 threads.
for name, base, kind, path in score_fixtures(
        "xgboost", ".model.json", 8, (("contribs", ["--contribs"]),), out,
        threads=3):
    reference = f"{base}.contribs.csv"
    if not os.path.exists(reference):
        continue
    header, got = read_csv(path)
    want_header, want = read_csv(reference)
    names = want_header[:-1]
    expect(header == expected_header(names, 1),
           f"{name}: header {header[:3]}... is not contrib_<feature>, contrib_bias")
    if bits_equal(want.astype(np.float32), got.astype(np.float32),
                  f"xgboost {name} contribs"):
        print(f"ok xgboost {name}: {got.shape[0]} rows x {got.shape[1]} "
              "contributions bit-identical")

lightgbm_checked = 0
for name, base, kind, path in score_fixtures(
        "lightgbm", ".model.txt", 10, (("contribs", ["--contribs"]),), out,
        threads=3):
    reference = f"{base}.contrib.csv"
    if not os.path.exists(reference):
        continue
    lightgbm_checked += 1
    header, got = read_csv(path)
    want_header, want = read_csv(reference)
    if got.shape != want.shape:
        fail(f"lightgbm {name}: shape {got.shape} != {want.shape}")
        continue
    same = (got.view(np.uint64) == want.view(np.uint64)) | \
        (np.isnan(got) & np.isnan(want))
    if not same.all():
        i = tuple(np.argwhere(~same)[0])
        fail(f"lightgbm {name}: {(~same).sum()} contributions differ; first "
             f"at {i}: LightGBM {want[i]!r}, tandem {got[i]!r}")
    else:
        print(f"ok lightgbm {name}: {got.shape[0]} rows x {got.shape[1]} "
              "contributions exactly LightGBM's")
expect(lightgbm_checked == 9, f"checked {lightgbm_checked} LightGBM contrib "
       "fixtures, expected 9")


# 2. Models trained here.
def make_data(seed, rows, cols, nan_rate, n_cat=0, n_levels=8):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, cols)).astype(np.float32)
    X[:, 0] *= 1000
    X[:, 1] = np.round(X[:, 1] * 3)
    for j in range(cols - n_cat, cols):
        X[:, j] = rng.integers(0, n_levels, size=rows)
    if nan_rate > 0:
        X[rng.random(size=X.shape) < nan_rate] = np.nan
    signal = np.nan_to_num(X[:, 2]) + 0.5 * np.nan_to_num(X[:, 3]) * \
        np.nan_to_num(X[:, 1]) + 0.001 * np.nan_to_num(X[:, 0])
    if n_cat:
        signal += np.where(np.nan_to_num(X[:, cols - 1]) % 2 == 1, 1.0, -0.5)
    return X, signal, rng


def trained(name, params, rounds, X, y, X_test, types=None, iterations=None,
            approx=False):
    kwargs = {}
    if types is not None:
        kwargs = dict(feature_types=types, enable_categorical=True)
    names = [f"x{i}" for i in range(X.shape[1])]
    booster = xgb.train(dict(params, seed=3, nthread=2),
                        xgb.DMatrix(X, label=y, feature_names=names, **kwargs),
                        rounds)
    model = os.path.join(out, name + ".json")
    booster.save_model(model)
    data = os.path.join(out, name + ".csv")
    write_matrix_csv(data, names, X_test)
    dtest = xgb.DMatrix(X_test, feature_names=names, **kwargs)
    extra = {"iteration_range": (0, iterations)} if iterations else {}
    want = booster.predict(dtest, pred_contribs=True, approx_contribs=approx,
                           **extra)
    classes = want.shape[1] if want.ndim == 3 else 1
    want = want.reshape(len(X_test), -1)
    flags = ["--approx-contribs" if approx else "--contribs"]
    if iterations:
        flags += ["--iterations", iterations]
    tag = name + ("_approx" if approx else "") + \
        (f"_it{iterations}" if iterations else "")
    path = os.path.join(out, tag + ".out.csv")
    run("score", "--model", model, "--in", data, "--out", path, "--threads",
        1, *flags)
    header, got = read_csv(path)
    expect(header == expected_header(names, classes),
           f"{name}: header {header[:3]}... expected {classes} class blocks")
    what = f"{name}{' approx' if approx else ''}" \
        f"{f' --iterations {iterations}' if iterations else ''}"
    if bits_equal(want.astype(np.float32), got.astype(np.float32), what):
        print(f"ok {what}: {got.shape[0]} rows x {got.shape[1]} bit-identical")
    # Local accuracy against XGBoost's own margin (not bitwise: a sum in
    # another order), an independent check of the bias column.
    margin = booster.predict(dtest, output_margin=True, **extra)
    sums = got.reshape(len(X_test), classes, -1).sum(axis=2)
    expect(np.allclose(sums, margin.reshape(sums.shape), rtol=1e-3, atol=1e-3),
           f"{what}: contributions do not add up to the margin")
    return model, data, path


X, signal, rng = make_data(31, 1000, 9, nan_rate=0.1)
X_test, _, _ = make_data(32, 300, 9, nan_rate=0.1)
noisy = signal + rng.normal(scale=0.5, size=len(signal))
yb = (noisy > 0).astype(np.float32)
yr = noisy.astype(np.float32)
y4 = np.digitize(noisy, np.quantile(noisy, [0.25, 0.5, 0.75])).astype(np.float32)

trained("binary_d6", {"objective": "binary:logistic", "max_depth": 6}, 40,
        X, yb, X_test)
trained("binary_d6", {"objective": "binary:logistic", "max_depth": 6}, 40,
        X, yb, X_test, approx=True)
trained("regression_deep", {"objective": "reg:squarederror", "max_depth": 12,
                            "eta": 0.1}, 30, X, yr, X_test)
trained("lossguide", {"objective": "reg:squarederror", "tree_method": "hist",
                      "grow_policy": "lossguide", "max_leaves": 40,
                      "max_depth": 0}, 30, X, yr, X_test)
trained("base_score", {"objective": "binary:logistic", "base_score": 0.2,
                       "max_depth": 3}, 20, X, yb, X_test)
trained("poisson", {"objective": "count:poisson", "max_depth": 4}, 20, X,
        np.abs(np.round(yr)).astype(np.float32), X_test)
model, data, path = trained(
    "multiclass", {"objective": "multi:softprob", "num_class": 4,
                   "max_depth": 5}, 25, X, y4, X_test)
trained("multiclass", {"objective": "multi:softprob", "num_class": 4,
                       "max_depth": 5}, 25, X, y4, X_test, iterations=9)
trained("multiclass", {"objective": "multi:softprob", "num_class": 4,
                       "max_depth": 5}, 25, X, y4, X_test, approx=True)
for normalize in ("tree", "forest"):
    trained(f"dart_{normalize}", {"booster": "dart",
                                  "objective": "binary:logistic",
                                  "rate_drop": 0.3, "skip_drop": 0.2,
                                  "normalize_type": normalize,
                                  "max_depth": 4}, 30, X, yb, X_test)
trained("dart_multiclass", {"booster": "dart", "objective": "multi:softprob",
                            "num_class": 4, "rate_drop": 0.2,
                            "max_depth": 3}, 15, X, y4, X_test, iterations=6)
trained("dart_multiclass", {"booster": "dart", "objective": "multi:softprob",
                            "num_class": 4, "rate_drop": 0.2,
                            "max_depth": 3}, 15, X, y4, X_test, approx=True)
trained("random_forest", {"objective": "binary:logistic",
                          "num_parallel_tree": 6, "subsample": 0.7,
                          "colsample_bynode": 0.6, "max_depth": 5}, 3, X, yb,
        X_test, iterations=2)
Xc, signal_c, rng_c = make_data(41, 1000, 8, nan_rate=0.05, n_cat=3,
                                n_levels=12)
Xc_test, _, trng = make_data(42, 300, 8, nan_rate=0.05, n_cat=3, n_levels=12)
cats = Xc_test[:, 5:]
cats[trng.random(cats.shape) < 0.05] = 12   # unseen
cats[trng.random(cats.shape) < 0.02] = -1   # negative
X_test_cat = Xc_test
X_test_cat[:, 5:] = cats
ycb = (signal_c + rng_c.normal(scale=0.5, size=len(signal_c)) > 0) \
    .astype(np.float32)
for onehot in (2, 16):
    trained(f"categorical_{onehot}", {"objective": "binary:logistic",
                                      "tree_method": "hist",
                                      "max_cat_to_onehot": onehot,
                                      "max_depth": 5}, 30, Xc, ycb,
            X_test_cat, types=["q"] * 5 + ["c"] * 3)
    trained(f"categorical_{onehot}", {"objective": "binary:logistic",
                                      "tree_method": "hist",
                                      "max_cat_to_onehot": onehot,
                                      "max_depth": 5}, 30, Xc, ycb,
            X_test_cat, types=["q"] * 5 + ["c"] * 3, approx=True)

# 3. JSON Lines: the same values, one array per class; 1 and 3 threads.
jsonl_in = os.path.join(out, "multi.jsonl")
with open(data) as f:
    names = f.readline().strip().split(",")
    with open(jsonl_in, "w") as w:
        for i, line in enumerate(f):
            fields = line.rstrip("\n").split(",")
            row = {"id": i}
            # The float32 value itself (its double is exact), so JSON and CSV
            # give the model the same input.
            row.update({n: float(np.float32(v)) for n, v in zip(names, fields)
                        if v != ""})
            w.write(json.dumps(row) + "\n")
jsonl_out = os.path.join(out, "multi.out.jsonl")
run("score", "--model", model, "--in", jsonl_in, "--out", jsonl_out,
    "--contribs", "--keep", "id", "--threads", 1)
_, csv_values = read_csv(path)
with open(jsonl_out) as f:
    lines = [json.loads(line) for line in f]
expect(len(lines) == len(csv_values), "JSON Lines: one line per row")
jsonl_values = np.array([np.ravel(line["contribs"]) for line in lines])
expect(all(len(line["contribs"]) == 4 and len(line["contribs"][0]) == 10
           for line in lines), "JSON Lines: 4 arrays of 9 features + bias")
expect(all(line["id"] == i for i, line in enumerate(lines)),
       "JSON Lines: --keep id first, in order")
expect(np.array_equal(jsonl_values.astype(np.float32),
                      csv_values.astype(np.float32)),
       "JSON Lines contributions differ from the CSV's")
again = os.path.join(out, "multi.t3.jsonl")
run("score", "--model", model, "--in", jsonl_in, "--out", again, "--contribs",
    "--keep", "id", "--threads", 3)
expect(filecmp.cmp(jsonl_out, again, shallow=False),
       "JSON Lines contributions differ between 1 and 3 threads")

# 4. Refusals: a message, exit status 2, no output file.
with open(os.path.join(FIXTURES, "xgboost", "credit_data_binary.model.json")) as f:
    doc = json.load(f)
for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
    del tree["sum_hessian"]
bare = os.path.join(out, "bare.json")
with open(bare, "w") as f:
    json.dump(doc, f)
base = os.path.join(FIXTURES, "xgboost", "credit_data_binary")
lgb = os.path.join(FIXTURES, "lightgbm", "credit_data_binary")
cases = [
    (["--model", bare, "--in", base + ".input.csv", "--contribs"],
     "sum_hessian"),
    (["--model", base + ".model.json", "--in", base + ".input.csv",
      "--contribs", "--margin"], "--contribs and --margin"),
    (["--model", lgb + ".model.txt", "--in", lgb + ".input.csv",
      "--approx-contribs"], "LightGBM models have only exact contributions"),
]
for i, (args, message) in enumerate(cases):
    target = os.path.join(out, f"refused{i}.csv")
    proc = run("score", *args, "--out", target, "--no-registry", check=False)
    expect(proc.returncode == 2 and message in proc.stderr,
           f"refusal {i}: exit {proc.returncode}, stderr {proc.stderr.strip()!r}"
           f" (expected 2 and {message!r})")
    expect(not os.path.exists(target), f"refusal {i} left {target}")
# A sum_hessian that does not fit its tree is an error naming it.
for i, (cut, message) in enumerate((
        (lambda h: h[:-1], "trees/3/sum_hessian: has"),
        (lambda h: h[:-1] + ["x"], "trees/3/sum_hessian/"))):
    with open(os.path.join(FIXTURES, "xgboost",
                           "credit_data_binary.model.json")) as f:
        doc = json.load(f)
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][3]
    tree["sum_hessian"] = cut(tree["sum_hessian"])
    broken = os.path.join(out, f"broken{i}.json")
    with open(broken, "w") as f:
        json.dump(doc, f)
    target = os.path.join(out, f"broken{i}.csv")
    proc = run("score", "--model", broken, "--in", base + ".input.csv",
               "--out", target, "--contribs", "--no-registry", check=False)
    expect(proc.returncode == 2 and message in proc.stderr
           and not os.path.exists(target),
           f"broken sum_hessian {i}: exit {proc.returncode}, "
           f"{proc.stderr.strip()!r}")
# A model without covers still scores.
run("score", "--model", bare, "--in", base + ".input.csv", "--out",
    os.path.join(out, "bare.scores.csv"))

# 5. The KServe v2 endpoint: parameters {"contribs": true} adds a
# "contribs" tensor with the library's values; "approx" gives Saabas'.
from serve_util import Server, curl, infer_body, read_csv_text  # noqa: E402

xgb_base = os.path.join(FIXTURES, "xgboost", "lending_club_cat")
lgb_base = os.path.join(FIXTURES, "lightgbm", "synth_multiclass3")
approx_path = os.path.join(out, "multiclass_approx.out.csv")
with Server("--model", f"xgb={xgb_base}.model.json",
            "--model", f"lgb={lgb_base}.model.txt",
            "--model", f"multi={model}", "--model", f"bare={bare}") as server:
    for key, base, reference, float32 in (
            ("xgb", xgb_base, xgb_base + ".contribs.csv", True),
            ("lgb", lgb_base, lgb_base + ".contrib.csv", False)):
        _, rows = read_csv_text(base + ".input.csv")
        rows = rows[:60]
        _, want = read_csv(reference)
        want = want[:60]
        dtype, view = (np.float32, np.uint32) if float32 else \
            (np.float64, np.uint64)
        r = curl(server, "POST", f"/v2/models/{key}/infer",
                 infer_body(rows, "FP32" if float32 else "FP64",
                            parameters={"contribs": True}))
        if not expect(r.status == 200, f"{key}: contribs request answered {r}"):
            continue
        outs = {o["name"]: o for o in r.json()["outputs"]}
        expect(set(outs) == {"score", "margin", "contribs"},
               f"{key}: outputs {sorted(outs)}")
        got = np.array(outs["contribs"]["data"], dtype=dtype).reshape(want.shape)
        classes = 3 if key == "lgb" else 1
        shape = [60, classes, want.shape[1] // classes] if classes > 1 else \
            [60, want.shape[1]]
        expect(outs["contribs"]["shape"] == shape,
               f"{key}: contribs shape {outs['contribs']['shape']} != {shape}")
        same = got.view(view) == want.astype(dtype).view(view)
        if expect(same.all(), f"{key}: {(~same).sum()} served contributions "
                  "differ from the library's"):
            print(f"ok serve {key}: 60 rows' contributions are the library's")
        # One row alone, and a request without the parameter.
        r = curl(server, "POST", f"/v2/models/{key}/infer",
                 infer_body(rows[7:8], parameters={"contribs": True}))
        one = np.array(r.json()["outputs"][2]["data"], dtype=dtype).ravel()
        expect(np.array_equal(one.view(view), want[7].astype(dtype).view(view)),
               f"{key}: row 7 alone explained differently")
        r = curl(server, "POST", f"/v2/models/{key}/infer", infer_body(rows[:2]))
        expect([o["name"] for o in r.json()["outputs"]] == ["score", "margin"],
               f"{key}: contributions without being asked")
    # Saabas on the multiclass model trained above: tandem score's values.
    _, rows = read_csv_text(data)
    _, want = read_csv(approx_path)
    r = curl(server, "POST", "/v2/models/multi/infer",
             infer_body(rows[:40], outputs=[{"name": "score"}],
                        parameters={"contribs": "approx"}))
    outs = r.json()["outputs"] if r.status == 200 else []
    expect([o["name"] for o in outs] == ["score", "contribs"] and
           outs[1]["shape"] == [40, 4, 10] and
           np.array_equal(np.array(outs[1]["data"], dtype=np.float32)
                          .reshape(40, -1).view(np.uint32),
                          want[:40].astype(np.float32).view(np.uint32)),
           f"approx contribs over HTTP differ from tandem score's: {r}")
    # Refusals: 400 naming /parameters/contribs.
    for key, width, value, message in (
            ("xgb", 22, 1, "must be true, false or"),
            ("bare", 13, True, "lacks the trees' covers"),
            ("lgb", 12, "approx", "only exact ones")):
        r = curl(server, "POST", f"/v2/models/{key}/infer",
                 infer_body([[0.0] * width],
                            parameters={"contribs": value}))
        expect(r.status == 400 and "/parameters/contribs" in r.body
               and message in r.body,
               f"{key} contribs={value!r}: answered {r.status} {r.body[:200]}")

finish("test_contribs")
