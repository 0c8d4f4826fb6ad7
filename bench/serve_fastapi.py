"""serve_fastapi.py - the Python peer of bench/bench_serve.py: a FastAPI +
XGBoost server answering the same Open Inference Protocol (KServe v2)
request as `tandem serve`, the way such a server is usually written.

  BENCH_FASTAPI_MODELS=NAME=PATH[,NAME=PATH...] \
    python3 -m uvicorn --app-dir bench serve_fastapi:app --workers N ...

POST /v2/models/NAME/infer takes {"inputs":[{"name":..., "shape":[R,F],
"data":[...]}]} (row-major, null for missing) and answers the same
outputs as tandem: "score" (the model's prediction) and "margin", each
FP32 [R,1], for binary and regression models. GET /v2/health/ready says
when the models are loaded. Every worker process loads its own Booster
with nthread=1 (the workers are the parallelism). Only the benchmark's
needs are handled: one input tensor holding every feature.
"""
import json
import os

import numpy as np
import xgboost as xgb
from fastapi import FastAPI, HTTPException, Request, Response

app = FastAPI()
boosters = {}

for spec in os.environ.get("BENCH_FASTAPI_MODELS", "").split(","):
    if spec:
        name, path = spec.split("=", 1)
        booster = xgb.Booster(model_file=path)
        booster.set_param({"nthread": 1})
        boosters[name] = booster


@app.get("/v2/health/ready")
async def ready():
    return {"ready": bool(boosters)}


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    booster = boosters.get(name)
    if booster is None:
        raise HTTPException(status_code=404, detail="no model " + name)
    body = json.loads(await request.body())
    tensor = body["inputs"][0]
    rows, cols = tensor["shape"]
    x = np.array([np.nan if v is None else v for v in tensor["data"]],
                 dtype=np.float32).reshape(rows, cols)
    score = booster.inplace_predict(x)
    margin = booster.inplace_predict(x, predict_type="margin")
    result = {
        "model_name": name,
        "outputs": [
            {"name": "score", "datatype": "FP32", "shape": [rows, 1],
             "data": score.astype(np.float32).tolist()},
            {"name": "margin", "datatype": "FP32", "shape": [rows, 1],
             "data": margin.astype(np.float32).tolist()},
        ],
    }
    return Response(json.dumps(result, separators=(",", ":")),
                    media_type="application/json")
