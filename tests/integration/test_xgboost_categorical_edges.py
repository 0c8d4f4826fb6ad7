"""XGBoost's categorical rule at its edges. Hand-made single-split models
(both default directions, sets inside one bitset word and past it) are
loaded by XGBoost itself, which predicts unusual category values:
unseen, past the bitset, negative, fractional, huge and missing. tandem
must send every one of them the same way."""
import json
import os

import numpy as np
import xgboost as xgb

from common import bits_equal, finish, read_scores, run, tmpdir, \
    write_matrix_csv

out = tmpdir()
values = [0, 1, 3, 4, 5, 31, 32, 33, 40, 63, 64, 100, -1, -0.5, 0.5, 2.5,
          3.99, np.nan, 1e9, 16777215, 16777216, -1e9]


def model_json(default_left, categories):
    tree = {
        "base_weights": [0.0, 0.0, 0.0], "categories": categories,
        "categories_nodes": [0], "categories_segments": [0],
        "categories_sizes": [len(categories)],
        "default_left": [default_left, 0, 0], "id": 0,
        "left_children": [1, -1, -1], "right_children": [2, -1, -1],
        "loss_changes": [0.0, 0.0, 0.0], "parents": [2147483647, 0, 0],
        "split_conditions": [float("nan"), 1.0, 2.0],
        "split_indices": [0, 0, 0], "split_type": [1, 0, 0],
        "sum_hessian": [1.0, 1.0, 1.0],
        "tree_param": {"num_deleted": "0", "num_feature": "1",
                       "num_nodes": "3", "size_leaf_vector": "0"}}
    return {"learner": {
        "attributes": {}, "feature_names": ["c"], "feature_types": ["c"],
        "gradient_booster": {"model": {
            "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "1",
                                   "size_leaf_vector": "0"},
            "tree_info": [0], "trees": [tree]}, "name": "gbtree"},
        "learner_model_param": {"base_score": "0E0", "boost_from_average": "1",
                                "num_class": "0", "num_feature": "1",
                                "num_target": "1"},
        "objective": {"name": "reg:squarederror",
                      "reg_loss_param": {"scale_pos_weight": "1"}}},
        "version": [1, 7, 4]}


X = np.array([[v] for v in values], dtype=np.float32)
data = os.path.join(out, "values.csv")
write_matrix_csv(data, ["c"], X)
for default_left in (0, 1):
    for categories in ([4], [0, 1, 3], [40], [2, 63, 64]):
        name = f"dl{default_left}_" + "_".join(map(str, categories))
        path = os.path.join(out, name + ".json")
        with open(path, "w") as f:
            json.dump(model_json(default_left, categories), f)
        booster = xgb.Booster()
        booster.load_model(path)
        expected = booster.predict(xgb.DMatrix(
            X, feature_names=["c"], feature_types=["c"],
            enable_categorical=True))
        scores = os.path.join(out, name + ".out.csv")
        run("score", "--model", path, "--in", data, "--out", scores)
        _, got = read_scores(scores)
        if bits_equal(expected, got, name):
            print(f"ok {name}: {len(values)} edge values routed as XGBoost does")
finish("xgboost categorical edges")
