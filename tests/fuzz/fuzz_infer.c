/*
 * fuzz_infer.c - a libFuzzer harness for the Open Inference Protocol
 * (KServe v2) request parser and response writer (src/serve/infer.c): the
 * input bytes are an inference request body, parsed for each of two small
 * models built once from JSON embedded here, both with features a, b, c
 * and d: an XGBoost binary:logistic model (float32, so values past
 * float32's range are refused) and a tandem-linear softmax model over three
 * classes (double precision, FP64 output) on which d may not be missing.
 *
 * It checks the API's promises: a failed parse returns a 400 status
 * (TDM_EPARSE or TDM_ESCHEMA) with a message, and leaves nothing in the
 * request; a parsed request has rows the model accepts (no infinite value
 * for the XGBoost model, no missing d for the linear one); and the
 * response is JSON whose outputs have the requested names, the model's
 * datatype and shape, and numbers that read back as tdm_model_predict's.
 * Each input is parsed twice: as a whole JSON body, and in the binary
 * tensor data extension's form with the JSON header ending after its last
 * '}' (the bytes after it are binary data); binary outputs must hold the
 * same values as JSON ones would.
 * Build with `make fuzz`; run with scripts/fuzz.sh over the seeds in
 * tests/fuzz/corpus/infer/.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/core.h"
#include "../../src/core/json.h"
#include "../../src/serve/infer.h"
#include "tandem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "fuzz_infer: check failed: %s\n", what);
  abort();
}

/* One tree: a < 0.5 (missing goes left) ? (c < 1 ? -0.5 : 0.75) : 0.25. */
static const char xgboost_json[] =
    "{\"learner\":{\"attributes\":{},\"feature_names\":[\"a\",\"b\",\"c\","
    "\"d\"],\"feature_types\":[\"float\",\"float\",\"float\",\"float\"],"
    "\"gradient_booster\":{\"name\":\"gbtree\",\"model\":{"
    "\"gbtree_model_param\":{\"num_parallel_tree\":\"1\",\"num_trees\":\"1\"},"
    "\"tree_info\":[0],\"trees\":[{\"base_weights\":[0,0,0,0,0],"
    "\"categories\":[],\"categories_nodes\":[],\"categories_segments\":[],"
    "\"categories_sizes\":[],\"default_left\":[1,0,0,0,0],\"id\":0,"
    "\"left_children\":[1,3,-1,-1,-1],\"right_children\":[2,4,-1,-1,-1],"
    "\"split_conditions\":[5E-1,1E0,2.5E-1,-5E-1,7.5E-1],"
    "\"split_indices\":[0,2,0,0,0],\"split_type\":[0,0,0,0,0],"
    "\"tree_param\":{\"num_deleted\":\"0\",\"num_feature\":\"4\","
    "\"num_nodes\":\"5\",\"size_leaf_vector\":\"0\"}}]}},"
    "\"learner_model_param\":{\"base_score\":\"5E-1\",\"num_class\":\"0\","
    "\"num_feature\":\"4\",\"num_target\":\"1\"},"
    "\"objective\":{\"name\":\"binary:logistic\"}},\"version\":[1,7,4]}";

static const char linear_json[] =
    "{\"format\":\"tandem-linear\",\"link\":\"softmax\","
    "\"intercept\":[0.1,-0.2,0.3],\"coefficients\":{\"a\":[1,2,3],"
    "\"b\":[-1,0.5,2e-3],\"c\":[0,1,-1],\"d\":[0.5,0.25,-0.125]},"
    "\"missing\":{\"d\":\"error\"},\"default_missing\":0}";

#define NUM_MODELS 2
static tdm_model *models[NUM_MODELS];

/* A model name that needs escaping in JSON. */
static const char model_name[] = "m\"\\\n";

static tdm__json_doc parse_json(const char *text, size_t len,
                                const char *what) {
  tdm__json_doc doc;
  tdm_error err;
  if (tdm__json_parse(&doc, text, len, what, 0, &err) != TDM_OK) {
    fprintf(stderr, "fuzz_infer: %s\n%.2000s\n", err.message, text);
    check(0, "the output is JSON");
  }
  return doc;
}

static void load_models(void) {
  static const char *const sources[NUM_MODELS] = {xgboost_json, linear_json};
  for (int m = 0; m < NUM_MODELS; m++) {
    tdm_error err;
    if (tdm_model_load_buffer(sources[m], strlen(sources[m]), "model.json",
                              &models[m], &err) != TDM_OK) {
      fprintf(stderr, "fuzz_infer: model %d: %s\n", m, err.message);
      abort();
    }
    tdm_model_info info;
    tdm_model_get_info(models[m], &info);
    check(info.num_features == 4, "the models have 4 features");
    /* The metadata is JSON too. */
    const char *versions[] = {"1", "x\"y"};
    tdm__buf meta = {0};
    check(tdm__infer_metadata(models[m], model_name, versions, 2, &meta) ==
              TDM_OK,
          "tdm__infer_metadata");
    tdm__json_doc doc = parse_json(meta.data, meta.len, "metadata");
    tdm__json_doc_free(&doc);
    tdm__buf_free(&meta);
  }
  check(tdm_model_feature_required(models[1], 3), "d is required");
}

static int64_t int_value(const tdm__json *v) {
  tdm__json_doc none = {0};
  none.name = "response";
  int64_t n = -1;
  check(tdm__json_int64(&none, v, &n, NULL) == TDM_OK, "an integer");
  return n;
}

/* The response's binary data, read by check_output in order. */
typedef struct binary_cursor {
  const char *data;
  size_t size, used;
} binary_cursor;

/* Checks one output tensor of the response against the model's values. */
static void check_output(const tdm_model *model, const tdm__json *output,
                         const char *name, const double *expected, size_t n,
                         size_t width, binary_cursor *binary) {
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  const tdm__json *v = tdm__json_get(output, "name");
  check(v != NULL && v->type == TDM__JSON_STRING && strcmp(v->text, name) == 0,
        "output name");
  v = tdm__json_get(output, "datatype");
  check(v != NULL && v->type == TDM__JSON_STRING &&
            strcmp(v->text, info.float32 ? "FP32" : "FP64") == 0,
        "output datatype");
  v = tdm__json_get(output, "shape");
  check(v != NULL && v->type == TDM__JSON_ARRAY && v->count == 2 &&
            int_value(&v->items[0]) == (int64_t)n &&
            int_value(&v->items[1]) == (int64_t)width,
        "output shape");
  const tdm__json *size =
      tdm__json_get(tdm__json_get(output, "parameters"), "binary_data_size");
  if (size != NULL) {
    size_t element = info.float32 ? 4 : 8;
    check(int_value(size) == (int64_t)(n * width * element),
          "binary_data_size is the values' bytes");
    check(binary->size - binary->used >= n * width * element,
          "the binary data holds the output");
    for (size_t i = 0; i < n * width; i++) {
      const char *p = binary->data + binary->used + i * element;
      double got;
      if (info.float32) {
        float f;
        memcpy(&f, p, sizeof f);
        got = f;
      } else {
        memcpy(&got, p, sizeof got);
      }
      check(got == expected[i] || (isnan(got) && isnan(expected[i])),
            "binary output values are the model's");
    }
    binary->used += n * width * element;
    return;
  }
  const tdm__json *data = tdm__json_get(output, "data");
  check(data != NULL && data->type == TDM__JSON_ARRAY &&
            data->count == n * width,
        "output data has rows x width values");
  for (size_t i = 0; i < n * width; i++) {
    const tdm__json *x = &data->items[i];
    if (x->type == TDM__JSON_NULL) {
      check(!isfinite(expected[i]), "null only for a value JSON cannot hold");
      continue;
    }
    check(x->type == TDM__JSON_NUMBER, "output values are numbers");
    char buf[64];
    check(x->text_len < sizeof buf, "a short number");
    memcpy(buf, x->text, x->text_len);
    buf[x->text_len] = '\0';
    double got = info.float32 ? (double)strtof(buf, NULL) : strtod(buf, NULL);
    check(got == expected[i], "output values read back as the model's");
  }
}

/* Responds to a parsed request and checks the response. */
static void respond(const tdm_model *model, const tdm__infer_request *req) {
  size_t n = req->num_rows;
  size_t sw = tdm_model_output_width(model, 0);
  size_t mw = tdm_model_output_width(model, TDM_PREDICT_MARGIN);
  tdm__buf out = {0};
  size_t json_size = 0;
  int rc = tdm__infer_respond(model, model_name, "7", req, &out, &json_size);
  check(rc == TDM_OK, "tdm__infer_respond");
  check(json_size <= out.len, "the JSON header is inside the response");
  /* A request of zero rows asks for binary outputs of zero bytes. */
  check(json_size == out.len || req->binary_outputs != 0,
        "binary data follows the header only when asked for");
  binary_cursor binary = {out.data + json_size, out.len - json_size, 0};
  tdm__json_doc doc = parse_json(out.data, json_size, "response");
  const tdm__json *root = doc.root;
  check(root->type == TDM__JSON_OBJECT, "the response is an object");
  const tdm__json *v = tdm__json_get(root, "model_name");
  check(v != NULL && v->type == TDM__JSON_STRING &&
            strcmp(v->text, model_name) == 0,
        "model_name");
  v = tdm__json_get(root, "id");
  if (req->id == NULL)
    check(v == NULL, "no id unless the request has one");
  else
    check(v != NULL && v->type == TDM__JSON_STRING &&
              strcmp(v->text, req->id) == 0,
          "the id is echoed");
  const tdm__json *outputs = tdm__json_get(root, "outputs");
  int score = (req->outputs & TDM__OUTPUT_SCORE) != 0;
  int margin = (req->outputs & TDM__OUTPUT_MARGIN) != 0;
  check(outputs != NULL && outputs->type == TDM__JSON_ARRAY &&
            outputs->count == (size_t)(score + margin),
        "one output tensor per requested output");
  /* Compare with the model's own predictions (bounded work per input). */
  if (n <= 4096) {
    double *scores = malloc((n * sw + 1) * sizeof *scores);
    double *margins = malloc((n * mw + 1) * sizeof *margins);
    check(scores != NULL && margins != NULL, "malloc");
    /* FP32 rows taken as they are (rows32) are checked against the model's
     * double path on the same values, which every float32 converts to
     * exactly: the fast path must answer what the general one would. */
    const double *rows = req->rows;
    double *widened = NULL;
    if (req->rows32 != NULL) {
      size_t count = n * 4; /* both models have 4 features */
      widened = malloc((count + 1) * sizeof *widened);
      check(widened != NULL, "malloc");
      for (size_t i = 0; i < count; i++) widened[i] = req->rows32[i];
      rows = widened;
    }
    check(tdm_model_predict(model, rows, n, 0, scores) == TDM_OK,
          "tdm_model_predict");
    check(tdm_model_predict(model, rows, n, TDM_PREDICT_MARGIN, margins) ==
              TDM_OK,
          "tdm_model_predict (margin)");
    free(widened);
    size_t at = 0;
    if (score)
      check_output(model, &outputs->items[at++], "score", scores, n, sw,
                   &binary);
    if (margin)
      check_output(model, &outputs->items[at++], "margin", margins, n, mw,
                   &binary);
    check(binary.used == binary.size, "every binary byte is an output's");
    free(scores);
    free(margins);
  }
  tdm__json_doc_free(&doc);
  tdm__buf_free(&out);
}

static void parse_for(int m, const char *body, size_t size, size_t json_size) {
  const tdm_model *model = models[m];
  tdm__infer_request req;
  tdm_error err;
  memset(&err, 0, sizeof err);
  int rc = tdm__infer_parse_binary(model, body, size, json_size, &req, &err);
  if (rc != TDM_OK) {
    check(rc == TDM_EPARSE || rc == TDM_ESCHEMA,
          "a bad request is TDM_EPARSE or TDM_ESCHEMA");
    check(err.status == rc, "err.status is the returned status");
    check(err.message[0] != '\0', "a failed parse has a message");
    check(strncmp(err.message, "request", 7) == 0,
          "the message names the request");
    check(req.rows == NULL && req.rows32 == NULL && req.doc.root == NULL,
          "a failed parse leaves nothing to free");
    tdm__infer_request_free(&req); /* and freeing it is safe */
    return;
  }
  check(req.doc.root != NULL, "a parsed request keeps its document");
  check((req.rows != NULL) != (req.rows32 != NULL),
        "a parsed request has its rows in exactly one of rows and rows32");
  check(req.rows32 == NULL || m == 0,
        "only a float32 model takes FP32 rows as they are");
  check(req.outputs != 0 &&
            (req.outputs & ~(TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN)) == 0,
        "outputs are score and/or margin");
  check(req.timeout_us >= -1, "timeout is -1 or not negative");
  size_t nf = 4;
  check(req.num_rows <= ((size_t)1 << 28) / nf, "rows are bounded");
  for (size_t i = 0; i < req.num_rows * nf; i++) {
    double x = req.rows != NULL ? req.rows[i] : req.rows32[i];
    if (m == 0) check(!isinf((float)x), "no infinite float32 input");
    if (m == 1 && i % nf == 3) check(!isnan(x), "d is never missing");
  }
  respond(model, &req);
  tdm__infer_request_free(&req);
  check(req.rows == NULL && req.rows32 == NULL && req.doc.root == NULL,
        "free clears the request");
  tdm__infer_request_free(&req); /* twice is safe */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (models[0] == NULL) load_models();
  size_t json_size = size;
  while (json_size > 0 && data[json_size - 1] != '}') json_size--;
  for (int m = 0; m < NUM_MODELS; m++) {
    parse_for(m, (const char *)data, size, SIZE_MAX);
    parse_for(m, (const char *)data, size, json_size);
  }
  return 0;
}
