/*
 * test_infer.c - unit tests of the Open Inference Protocol (KServe v2)
 * request parser and response writer in src/serve/infer.c, on real fixture
 * models: the matrix and per-feature request forms, missing values, the
 * tensor datatypes, errors that name a JSON pointer (and leave nothing to
 * free), requests that ask for huge shapes, the request's id, timeout and
 * outputs, responses whose numbers must read back as the model's own
 * predictions, the metadata object, and out-of-memory at every allocation.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "../../src/core/core.h"
#include "../../src/core/json.h"
#include "../../src/serve/infer.h"
#include "tandem.h"
#include "test.h"

#define XGB_CREDIT "tests/fixtures/xgboost/credit_data_binary"
#define XGB_MULTI "tests/fixtures/xgboost/synth_multiclass4"
#define LGB_CREDIT "tests/fixtures/lightgbm/credit_data_binary"
#define LGB_MULTI "tests/fixtures/lightgbm/synth_multiclass3"

/* credit_data_binary's 13 features, in model order. */
#define CREDIT_FEATURES 13

/* A linear model (docs/linear-models.md) whose "utilization" may not be
 * missing; "amount" is imputed, "age" falls back to default_missing. */
static const char linear_json[] =
    "{\"format\":\"tandem-linear\",\"link\":\"logit\",\"intercept\":-2.31,"
    "\"coefficients\":{\"amount\":0.00042,\"age\":-0.018,"
    "\"utilization\":1.9},\"missing\":{\"amount\":0.0,"
    "\"utilization\":\"error\"},\"default_missing\":0}";

/* ---- helpers ---- */

static tdm_model *load_fixture(const char *stem) {
  char path[256];
  snprintf(path, sizeof path, "%s.model.%s", stem,
           strstr(stem, "lightgbm") ? "txt" : "json");
  tdm_model *model = NULL;
  tdm_error err;
  if (tdm_model_load(path, &model, &err) != TDM_OK) {
    fprintf(stderr, "loading %s: %s\n", path, err.message);
    return NULL;
  }
  return model;
}

static tdm_model *load_linear(void) {
  tdm_model *model = NULL;
  tdm_error err;
  if (tdm_model_load_buffer(linear_json, strlen(linear_json), "linear.json",
                            &model, &err) != TDM_OK) {
    fprintf(stderr, "loading the linear model: %s\n", err.message);
    return NULL;
  }
  return model;
}

static size_t num_features(const tdm_model *model) {
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  return info.num_features;
}

/*
 * The first n rows of a fixture's input.csv (an empty field is NaN), read
 * with strtof for XGBoost (the values XGBoost used) and strtod for
 * LightGBM. Returns a malloc'd n x nf matrix, or NULL.
 */
static double *read_rows(const char *stem, size_t n, size_t nf) {
  char path[256];
  snprintf(path, sizeof path, "%s.input.csv", stem);
  int float32 = strstr(stem, "xgboost") != NULL;
  FILE *fp = fopen(path, "r");
  if (fp == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    return NULL;
  }
  double *rows = malloc(n * nf * sizeof *rows);
  char line[8192];
  size_t r = 0;
  if (rows == NULL || fgets(line, sizeof line, fp) == NULL) goto fail;
  for (; r < n && fgets(line, sizeof line, fp) != NULL; r++) {
    char *p = line;
    for (size_t j = 0; j < nf; j++) {
      char *end = p + strcspn(p, ",\r\n");
      if (end == p) {
        rows[r * nf + j] = NAN;
      } else {
        char *stop;
        rows[r * nf + j] = float32 ? (double)strtof(p, &stop) : strtod(p, &stop);
        if (stop != end) goto fail;
      }
      if (*end != ',' && j + 1 < nf) goto fail;
      p = end + 1;
    }
  }
  if (r != n) goto fail;
  fclose(fp);
  return rows;
fail:
  fprintf(stderr, "%s: cannot read %zu rows of %zu features\n", path, n, nf);
  fclose(fp);
  free(rows);
  return NULL;
}

static int append_number(tdm__buf *b, double v) {
  if (isnan(v)) return tdm__buf_append(b, "null", 4);
  return tdm__buf_printf(b, "%.17g", v);
}

/* Data of a matrix: flat, or nested as [rows][features]. */
static int append_matrix_data(tdm__buf *b, const double *rows, size_t n,
                              size_t nf, int nested) {
  int rc = tdm__buf_append(b, "[", 1);
  for (size_t r = 0; r < n && rc == TDM_OK; r++) {
    if (r > 0) rc = tdm__buf_append(b, ",", 1);
    if (rc == TDM_OK && nested) rc = tdm__buf_append(b, "[", 1);
    for (size_t j = 0; j < nf && rc == TDM_OK; j++) {
      if (j > 0) rc = tdm__buf_append(b, ",", 1);
      if (rc == TDM_OK) rc = append_number(b, rows[r * nf + j]);
    }
    if (rc == TDM_OK && nested) rc = tdm__buf_append(b, "]", 1);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "]", 1);
  return rc;
}

/* {"inputs":[one tensor [n, nf]]} with `extra` members (",..." or ""). */
static int matrix_request(tdm__buf *b, const double *rows, size_t n, size_t nf,
                          const char *datatype, int nested, const char *extra) {
  int rc = tdm__buf_printf(b,
                           "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
                           "\"%s\",\"shape\":[%zu,%zu],\"data\":",
                           datatype, n, nf);
  if (rc == TDM_OK) rc = append_matrix_data(b, rows, n, nf, nested);
  if (rc == TDM_OK) rc = tdm__buf_printf(b, "}]%s}", extra);
  return rc;
}

/* One tensor per feature, last feature first, [n] or [n, 1] (nested);
 * features whose bit is set in `skip` (of the first 64) are left out. */
static int feature_request(tdm__buf *b, const tdm_model *model,
                           const double *rows, size_t n, int column,
                           uint64_t skip) {
  size_t nf = num_features(model);
  int rc = tdm__buf_append(b, "{\"inputs\":[", 11);
  int first = 1;
  for (size_t k = nf; k-- > 0 && rc == TDM_OK;) {
    if (k < 64 && (skip >> k) & 1) continue;
    rc = tdm__buf_printf(b, "%s{\"name\":", first ? "" : ",");
    first = 0;
    if (rc == TDM_OK)
      rc = tdm__json_append_string(b, tdm_model_feature_name(model, k));
    if (rc == TDM_OK)
      rc = column ? tdm__buf_printf(b,
                                    ",\"datatype\":\"FP64\",\"shape\":[%zu,1],"
                                    "\"data\":[",
                                    n)
                  : tdm__buf_printf(b,
                                    ",\"datatype\":\"FP64\",\"shape\":[%zu],"
                                    "\"data\":[",
                                    n);
    for (size_t r = 0; r < n && rc == TDM_OK; r++) {
      if (r > 0) rc = tdm__buf_append(b, ",", 1);
      if (rc == TDM_OK && column) rc = tdm__buf_append(b, "[", 1);
      if (rc == TDM_OK) rc = append_number(b, rows[r * nf + k]);
      if (rc == TDM_OK && column) rc = tdm__buf_append(b, "]", 1);
    }
    if (rc == TDM_OK) rc = tdm__buf_append(b, "]}", 2);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "]}", 2);
  return rc;
}

/* Equal as values, with NaN equal to NaN. */
static int same(double a, double b) {
  return (isnan(a) && isnan(b)) || a == b;
}

static int parse_ok(const tdm_model *model, const char *body, size_t len,
                    tdm__infer_request *req) {
  tdm_error err = {0};
  int rc = tdm__infer_parse(model, body, len, req, &err);
  if (rc != TDM_OK) {
    fprintf(stderr, "parse failed (%s): %s\n  body: %.300s\n",
            tdm_status_name(rc), err.message, body);
    return 1;
  }
  return 0;
}

static int rows_equal(const tdm__infer_request *req, const double *rows,
                      size_t n, size_t nf) {
  if (req->num_rows != n || req->rows == NULL) {
    fprintf(stderr, "%zu rows, expected %zu\n", req->num_rows, n);
    return 0;
  }
  for (size_t i = 0; i < n * nf; i++) {
    if (!same(req->rows[i], rows[i])) {
      fprintf(stderr, "value %zu (row %zu, feature %zu) is %.17g, expected "
              "%.17g\n", i, i / nf, i % nf, req->rows[i], rows[i]);
      return 0;
    }
  }
  return 1;
}

/*
 * Parses `body` for `model` and checks that it fails with a 400 status
 * (TDM_EPARSE or TDM_ESCHEMA, or exactly `status` when not 0), that the
 * message contains `where` (a JSON pointer "at /x/y:" or "line:col"),
 * and that the request holds nothing afterwards and frees safely.
 */
static int expect_error(const tdm_model *model, const char *body, int status,
                        const char *where) {
  tdm__infer_request req;
  tdm_error err;
  memset(&err, 0, sizeof err);
  int rc = tdm__infer_parse(model, body, strlen(body), &req, &err);
  int bad = 0;
  if (rc == TDM_OK) {
    fprintf(stderr, "accepted, expected an error at %s\n", where);
    tdm__infer_request_free(&req);
    bad = 1;
  } else if (rc != TDM_EPARSE && rc != TDM_ESCHEMA) {
    fprintf(stderr, "status %s, expected TDM_EPARSE or TDM_ESCHEMA: %s\n",
            tdm_status_name(rc), err.message);
    bad = 1;
  } else if (status != 0 && rc != status) {
    fprintf(stderr, "status %s, expected %s: %s\n", tdm_status_name(rc),
            tdm_status_name(status), err.message);
    bad = 1;
  } else if (err.status != rc) {
    fprintf(stderr, "err.status %d, returned %d\n", err.status, rc);
    bad = 1;
  } else if (strstr(err.message, where) == NULL) {
    fprintf(stderr, "message \"%s\" does not name \"%s\"\n", err.message,
            where);
    bad = 1;
  } else if (req.rows != NULL || req.doc.root != NULL) {
    fprintf(stderr, "a failed parse left something in the request\n");
    bad = 1;
  }
  if (rc != TDM_OK) {
    /* The request holds nothing: freeing it (twice) is safe. */
    tdm__infer_request_free(&req);
    tdm__infer_request_free(&req);
  }
  if (bad) fprintf(stderr, "  body: %.400s\n", body);
  return bad;
}

/* Formats into a static buffer (one at a time). */
static const char *text(const char *fmt, ...) TDM__PRINTF(1, 2);
static const char *text(const char *fmt, ...) {
  static char buf[1 << 16];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

/* A credit model request: one tensor with the given datatype, shape and
 * data (JSON text). */
static const char *matrix_body(const char *datatype, const char *shape,
                               const char *data) {
  return text("{\"inputs\":[{\"name\":\"input\",\"datatype\":\"%s\","
              "\"shape\":%s,\"data\":%s}]}",
              datatype, shape, data);
}

/* "[1,2,...,n]" with element `odd` (if < n) replaced by `odd_text`. */
static const char *numbers(size_t n, size_t odd, const char *odd_text) {
  static char buf[1 << 14];
  size_t used = 0;
  buf[used++] = '[';
  for (size_t i = 0; i < n; i++) {
    used += (size_t)snprintf(buf + used, sizeof buf - used, "%s", i ? "," : "");
    if (i == odd)
      used += (size_t)snprintf(buf + used, sizeof buf - used, "%s", odd_text);
    else
      used += (size_t)snprintf(buf + used, sizeof buf - used, "%zu", i + 1);
  }
  snprintf(buf + used, sizeof buf - used, "]");
  return buf;
}

/* The text of a JSON number value as a double: strtof for a float32 model
 * (which must read back exactly), strtod otherwise. */
static double number_value(const tdm__json *v, int float32) {
  char buf[64];
  size_t n = v->text_len < sizeof buf - 1 ? v->text_len : sizeof buf - 1;
  memcpy(buf, v->text, n);
  buf[n] = '\0';
  return float32 ? (double)strtof(buf, NULL) : strtod(buf, NULL);
}

static int shape_is(const tdm__json *shape, long long d0, long long d1) {
  if (shape == NULL || shape->type != TDM__JSON_ARRAY || shape->count != 2)
    return 0;
  int64_t a, b;
  tdm__json_doc none = {0};
  none.name = "shape";
  if (tdm__json_int64(&none, &shape->items[0], &a, NULL) != TDM_OK ||
      tdm__json_int64(&none, &shape->items[1], &b, NULL) != TDM_OK)
    return 0;
  return a == d0 && b == d1;
}

/* Checks one output tensor of a response against the model's values. */
static int check_output(const tdm__json *output, const char *name,
                        const tdm_model *model, const double *expected,
                        size_t n, size_t width) {
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  const tdm__json *v = tdm__json_get(output, "name");
  CHECK(v != NULL && v->type == TDM__JSON_STRING);
  CHECK_STR(v->text, name);
  v = tdm__json_get(output, "datatype");
  CHECK(v != NULL && v->type == TDM__JSON_STRING);
  CHECK_STR(v->text, info.float32 ? "FP32" : "FP64");
  CHECK(shape_is(tdm__json_get(output, "shape"), (long long)n,
                 (long long)width));
  const tdm__json *data = tdm__json_get(output, "data");
  CHECK(data != NULL && data->type == TDM__JSON_ARRAY);
  CHECK_INT(data->count, n * width);
  for (size_t i = 0; i < n * width; i++) {
    const tdm__json *x = &data->items[i];
    double got;
    if (x->type == TDM__JSON_NULL) {
      got = NAN;
      CHECK(!isfinite(expected[i]));
    } else {
      CHECK_INT(x->type, TDM__JSON_NUMBER);
      got = number_value(x, info.float32);
    }
    if (!(same(got, expected[i]) || (!isfinite(expected[i]) && isnan(got)))) {
      fprintf(stderr, "%s value %zu reads back as %.17g, the model gives "
              "%.17g\n", name, i, got, expected[i]);
      return 1;
    }
  }
  return 0;
}

/*
 * Responds to req and checks the response: valid JSON, model_name, the
 * version and id when given, and the wanted outputs (score, then margin)
 * whose numbers read back as tdm_model_predict's on the same rows.
 */
static int check_response(const tdm_model *model, const tdm__infer_request *req,
                          const char *version, const char *id, int wanted) {
  size_t n = req->num_rows;
  size_t sw = tdm_model_output_width(model, 0);
  size_t mw = tdm_model_output_width(model, TDM_PREDICT_MARGIN);
  double *scores = malloc((n * sw + 1) * sizeof *scores);
  double *margins = malloc((n * mw + 1) * sizeof *margins);
  CHECK(scores != NULL && margins != NULL);
  CHECK_INT(tdm_model_predict(model, req->rows, n, 0, scores), TDM_OK);
  CHECK_INT(tdm_model_predict(model, req->rows, n, TDM_PREDICT_MARGIN, margins),
            TDM_OK);

  tdm__buf out = {0};
  CHECK_INT(tdm__infer_respond(model, "credit \"model\"", version, req, &out, NULL),
            TDM_OK);
  CHECK(out.data != NULL);
  tdm__json_doc doc;
  tdm_error err;
  int rc = tdm__json_parse(&doc, out.data, out.len, "response", 0, &err);
  if (rc != TDM_OK) {
    fprintf(stderr, "the response is not JSON: %s\n%.500s\n", err.message,
            out.data);
    return 1;
  }
  int failed = 0;
  const tdm__json *root = doc.root, *v;
  if (root->type != TDM__JSON_OBJECT) failed = 1;
  v = tdm__json_get(root, "model_name");
  if (!failed && (v == NULL || v->type != TDM__JSON_STRING ||
                  strcmp(v->text, "credit \"model\"") != 0)) {
    fprintf(stderr, "model_name is wrong\n");
    failed = 1;
  }
  v = tdm__json_get(root, "model_version");
  if (!failed && (version == NULL ? v != NULL
                                  : (v == NULL || v->type != TDM__JSON_STRING ||
                                     strcmp(v->text, version) != 0))) {
    fprintf(stderr, "model_version is wrong\n");
    failed = 1;
  }
  v = tdm__json_get(root, "id");
  if (!failed && (id == NULL ? v != NULL
                             : (v == NULL || v->type != TDM__JSON_STRING ||
                                strcmp(v->text, id) != 0))) {
    fprintf(stderr, "id is wrong\n");
    failed = 1;
  }
  const tdm__json *outputs = tdm__json_get(root, "outputs");
  size_t want_count = ((wanted & TDM__OUTPUT_SCORE) != 0) +
                      ((wanted & TDM__OUTPUT_MARGIN) != 0);
  if (!failed && (outputs == NULL || outputs->type != TDM__JSON_ARRAY ||
                  outputs->count != want_count)) {
    fprintf(stderr, "outputs: expected %zu tensors\n", want_count);
    failed = 1;
  }
  size_t at = 0;
  if (!failed && (wanted & TDM__OUTPUT_SCORE))
    failed = check_output(&outputs->items[at++], "score", model, scores, n, sw);
  if (!failed && (wanted & TDM__OUTPUT_MARGIN))
    failed = check_output(&outputs->items[at++], "margin", model, margins, n,
                          mw);
  if (failed) fprintf(stderr, "response: %.500s\n", out.data);
  tdm__json_doc_free(&doc);
  tdm__buf_free(&out);
  free(scores);
  free(margins);
  return failed;
}

/* ---- request forms ---- */

TEST(infer_matrix_flat_nested_and_one_row) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  CHECK_INT(num_features(model), CREDIT_FEATURES);
  const size_t n = 7, nf = CREDIT_FEATURES;
  double *rows = read_rows(XGB_CREDIT, n, nf);
  CHECK(rows != NULL);
  for (int nested = 0; nested < 2; nested++) {
    tdm__buf body = {0};
    CHECK_INT(matrix_request(&body, rows, n, nf, "FP32", nested, ""), TDM_OK);
    tdm__infer_request req;
    CHECK(parse_ok(model, body.data, body.len, &req) == 0);
    CHECK(rows_equal(&req, rows, n, nf));
    CHECK(req.id == NULL);
    CHECK_INT(req.timeout_us, -1);
    CHECK_INT(req.outputs, TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN);
    tdm__infer_request_free(&req);
    tdm__infer_request_free(&req); /* twice is safe */
    tdm__buf_free(&body);
  }
  /* A 1-D tensor [features] is one row. */
  {
    tdm__buf body = {0};
    CHECK_INT(tdm__buf_printf(&body,
                              "{\"inputs\":[{\"name\":\"input\",\"datatype\":"
                              "\"FP32\",\"shape\":[13],\"data\":"),
              TDM_OK);
    CHECK_INT(append_matrix_data(&body, rows + 3 * nf, 1, nf, 0), TDM_OK);
    CHECK_INT(tdm__buf_append(&body, "}]}", 3), TDM_OK);
    tdm__infer_request req;
    CHECK(parse_ok(model, body.data, body.len, &req) == 0);
    CHECK(rows_equal(&req, rows + 3 * nf, 1, nf));
    CHECK(check_response(model, &req, NULL, NULL,
                         TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN) == 0);
    tdm__infer_request_free(&req);
    tdm__buf_free(&body);
  }
  /* Zero rows: a valid, empty answer. */
  {
    const char *body = matrix_body("FP32", "[0,13]", "[]");
    tdm__infer_request req;
    CHECK(parse_ok(model, body, strlen(body), &req) == 0);
    CHECK_INT(req.num_rows, 0);
    CHECK(check_response(model, &req, "1", NULL,
                         TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN) == 0);
    tdm__infer_request_free(&req);
  }
  free(rows);
  tdm_model_free(model);
  return 0;
}

TEST(infer_per_feature_tensors) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  const size_t n = 5, nf = CREDIT_FEATURES;
  double *rows = read_rows(XGB_CREDIT, n, nf);
  CHECK(rows != NULL);
  /* Every feature, as [rows] and as [rows, 1], in reverse order. */
  for (int column = 0; column < 2; column++) {
    tdm__buf body = {0};
    CHECK_INT(feature_request(&body, model, rows, n, column, 0), TDM_OK);
    tdm__infer_request req;
    CHECK(parse_ok(model, body.data, body.len, &req) == 0);
    CHECK(rows_equal(&req, rows, n, nf));
    CHECK(check_response(model, &req, NULL, NULL,
                         TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN) == 0);
    tdm__infer_request_free(&req);
    tdm__buf_free(&body);
  }
  /* Absent features are missing (NaN): leave out Seniority (0), Age (3)
   * and Price (12). */
  uint64_t skip = (1u << 0) | (1u << 3) | (1u << 12);
  double *expected = malloc(n * nf * sizeof *expected);
  CHECK(expected != NULL);
  for (size_t i = 0; i < n * nf; i++)
    expected[i] = (skip >> (i % nf)) & 1 ? NAN : rows[i];
  tdm__buf body = {0};
  CHECK_INT(feature_request(&body, model, rows, n, 0, skip), TDM_OK);
  tdm__infer_request req;
  CHECK(parse_ok(model, body.data, body.len, &req) == 0);
  CHECK(rows_equal(&req, expected, n, nf));
  CHECK(check_response(model, &req, NULL, NULL,
                       TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN) == 0);
  tdm__infer_request_free(&req);
  tdm__buf_free(&body);

  /* A single feature tensor is the per-feature form, not a matrix. */
  const char *one = "{\"inputs\":[{\"name\":\"Income\",\"datatype\":\"INT32\","
                    "\"shape\":[2],\"data\":[100,200]}]}";
  CHECK(parse_ok(model, one, strlen(one), &req) == 0);
  CHECK_INT(req.num_rows, 2);
  for (size_t r = 0; r < 2; r++)
    for (size_t j = 0; j < nf; j++)
      CHECK(j == 8 ? req.rows[r * nf + j] == 100.0 * (double)(r + 1)
                   : isnan(req.rows[r * nf + j]));
  tdm__infer_request_free(&req);
  free(expected);
  free(rows);
  tdm_model_free(model);
  return 0;
}

TEST(infer_null_and_nan_string_are_missing) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  const size_t nf = CREDIT_FEATURES;
  const char *body = matrix_body(
      "FP32", "[1,13]", "[null,\"NaN\",3,4,5,6,7,8,9,10,11,12,null]");
  tdm__infer_request req;
  CHECK(parse_ok(model, body, strlen(body), &req) == 0);
  CHECK(isnan(req.rows[0]) && isnan(req.rows[1]) && isnan(req.rows[12]));
  CHECK(req.rows[2] == 3.0);
  CHECK(check_response(model, &req, NULL, NULL,
                       TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN) == 0);
  tdm__infer_request_free(&req);

  body = "{\"inputs\":[{\"name\":\"Age\",\"datatype\":\"FP32\",\"shape\":[3],"
         "\"data\":[null,\"NaN\",30]},{\"name\":\"Debt\",\"datatype\":\"INT8\","
         "\"shape\":[3,1],\"data\":[[null],[1],[\"NaN\"]]}]}";
  CHECK(parse_ok(model, body, strlen(body), &req) == 0);
  CHECK_INT(req.num_rows, 3);
  CHECK(isnan(req.rows[0 * nf + 3]) && isnan(req.rows[1 * nf + 3]));
  CHECK(req.rows[2 * nf + 3] == 30.0);
  CHECK(isnan(req.rows[0 * nf + 10]) && req.rows[1 * nf + 10] == 1.0 &&
        isnan(req.rows[2 * nf + 10]));
  tdm__infer_request_free(&req);
  tdm_model_free(model);
  return 0;
}

TEST(infer_datatypes) {
  tdm_model *xgb = load_fixture(XGB_CREDIT);
  tdm_model *lgb = load_fixture(LGB_CREDIT);
  CHECK(xgb != NULL && lgb != NULL);
  const tdm_model *models[2] = {xgb, lgb};
  for (int m = 0; m < 2; m++) {
    const tdm_model *model = models[m];
    tdm__infer_request req;
    /* FP32 elements are rounded to float32; FP64 elements are kept. */
    const char *body = matrix_body(
        "FP32", "[13]", "[0.1,16777217,1e-46,-2.5,3.4028235e38,6,7,8,9,10,11,12,13]");
    CHECK(parse_ok(model, body, strlen(body), &req) == 0);
    CHECK(req.rows[0] == (double)0.1f);
    CHECK(req.rows[0] != 0.1);
    CHECK(req.rows[1] == 16777216.0);
    CHECK(req.rows[2] == 0.0);
    CHECK(req.rows[3] == -2.5);
    CHECK(req.rows[4] == (double)3.4028235e38f);
    tdm__infer_request_free(&req);
    body = matrix_body("FP64", "[13]",
                       "[0.1,16777217,1e-46,-2.5,5,6,7,8,9,10,11,12,13]");
    CHECK(parse_ok(model, body, strlen(body), &req) == 0);
    CHECK(req.rows[0] == 0.1);
    CHECK(req.rows[1] == 16777217.0);
    CHECK(req.rows[2] == 1e-46);
    tdm__infer_request_free(&req);

    /* Integer types take integers within their range. */
    static const struct {
      const char *type, *ok_low, *ok_high, *bad;
    } ints[] = {
        {"INT8", "-128", "127", "128"},
        {"INT8", "-128", "1e2", "300"},
        {"INT16", "-32768", "32767", "-32769"},
        {"INT32", "-2147483648", "2147483647", "2147483648"},
        {"INT32", "0", "7", "1.5"},
        {"INT64", "-9007199254740992", "9007199254740992", "0.5"},
        {"UINT8", "0", "255", "-1"},
        {"UINT8", "0", "255", "256"},
        {"UINT16", "0", "65535", "65536"},
        {"UINT32", "0", "4294967295", "4294967296"},
        {"UINT64", "0", "18446744073709549568", "-1"},
        {"INT16", "-0", "2", "1e400"},
    };
    for (size_t t = 0; t < sizeof ints / sizeof ints[0]; t++) {
      char data[256];
      snprintf(data, sizeof data, "[%s,%s,null,4,5,6,7,8,9,10,11,12,13]",
               ints[t].ok_low, ints[t].ok_high);
      body = matrix_body(ints[t].type, "[1,13]", data);
      if (parse_ok(model, body, strlen(body), &req) != 0) return 1;
      CHECK(req.rows[0] == strtod(ints[t].ok_low, NULL));
      CHECK(req.rows[1] == strtod(ints[t].ok_high, NULL));
      CHECK(isnan(req.rows[2]));
      tdm__infer_request_free(&req);
      snprintf(data, sizeof data, "[1,2,3,4,5,6,7,8,9,10,11,12,%s]",
               ints[t].bad);
      if (expect_error(model, matrix_body(ints[t].type, "[1,13]", data),
                       TDM_EPARSE, "at /inputs/0/data/12:") != 0) {
        fprintf(stderr, "%s %s\n", ints[t].type, ints[t].bad);
        return 1;
      }
    }
    /* Unsupported datatypes are refused, naming the datatype. */
    static const char *unsupported[] = {"FP16", "BF16", "BYTES", "BOOL",
                                        "fp32", ""};
    for (size_t t = 0; t < sizeof unsupported / sizeof *unsupported; t++)
      CHECK(expect_error(model,
                         matrix_body(unsupported[t], "[1,13]",
                                     numbers(13, 99, "")),
                         TDM_EPARSE, "at /inputs/0/datatype:") == 0);
  }
  tdm_model_free(xgb);
  tdm_model_free(lgb);
  return 0;
}

/* INT64 and UINT64 end at 2^63 - 1 and 2^64 - 1, whose nearest doubles are
 * 2^63 and 2^64: values 2^63 and 2^64 are out of range. */
/*
 * Binary tensor data against JSON data: for every datatype, seeded values
 * of the type (its extremes included) sent as a one-feature tensor in both
 * forms must give the same rows bit for bit, and binary outputs must hold
 * the same values as the JSON answer's. The JSON text of each value is
 * written here from the value itself (integers in decimal, floats with
 * %.17g), independently of the parser's binary decoding.
 */
TEST(infer_binary_matches_json) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  static const struct {
    const char *name;
    size_t size;
    int is_signed, is_float;
  } types[] = {{"INT8", 1, 1, 0},   {"INT16", 2, 1, 0}, {"INT32", 4, 1, 0},
               {"INT64", 8, 1, 0},  {"UINT8", 1, 0, 0}, {"UINT16", 2, 0, 0},
               {"UINT32", 4, 0, 0}, {"UINT64", 8, 0, 0}, {"FP32", 4, 0, 1},
               {"FP64", 8, 0, 1}};
  enum { ROWS = 40 };
  uint64_t seed = 0x9e3779b97f4a7c15u;
  for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
    unsigned char bytes[ROWS * 8];
    char json[ROWS * 32 + 8] = "[";
    size_t used = 1;
    for (size_t i = 0; i < ROWS; i++) {
      seed = seed * 6364136223846793005u + 1442695040888963407u;
      uint64_t bits = seed ^ (seed >> 29);
      size_t size = types[t].size;
      if (size < 8) bits &= ((uint64_t)1 << (8 * size)) - 1;
      /* The type's extremes: 0, all ones, and the sign bit alone. */
      if (i == 0) bits = 0;
      if (i == 1) bits = size < 8 ? ((uint64_t)1 << (8 * size)) - 1 : UINT64_MAX;
      if (i == 2) bits = (uint64_t)1 << (8 * size - 1);
      char text[40];
      if (types[t].is_float) {
        double v;
        if (size == 4) {
          uint32_t narrow = (uint32_t)bits;
          float f;
          memcpy(&f, &narrow, 4);
          if (!isfinite(f)) {
            f = 1.5f;
            memcpy(&narrow, &f, 4);
            bits = narrow;
          }
          v = f;
        } else {
          memcpy(&v, &bits, 8);
          /* XGBoost refuses values infinite in float32. */
          if (!isfinite((float)v)) {
            v = -0.25;
            memcpy(&bits, &v, 8);
          }
        }
        snprintf(text, sizeof text, "%.17g", v);
      } else if (types[t].is_signed) {
        unsigned shift = (unsigned)(64 - 8 * size);
        snprintf(text, sizeof text, "%lld",
                 (long long)((int64_t)(bits << shift) >> shift));
      } else {
        snprintf(text, sizeof text, "%llu", (unsigned long long)bits);
      }
      for (size_t b = 0; b < size; b++)
        bytes[i * size + b] = (unsigned char)(bits >> (8 * b));
      used += (size_t)snprintf(json + used, sizeof json - used, "%s%s",
                               i ? "," : "", text);
    }
    snprintf(json + used, sizeof json - used, "]");
    char body[ROWS * 40 + 512];
    int n = snprintf(body, sizeof body,
                     "{\"inputs\":[{\"name\":\"Income\",\"datatype\":"
                     "\"%s\",\"shape\":[%d],\"data\":%s}]}",
                     types[t].name, ROWS, json);
    tdm__infer_request by_json, by_binary;
    CHECK(parse_ok(model, body, (size_t)n, &by_json) == 0);
    n = snprintf(body, sizeof body,
                 "{\"inputs\":[{\"name\":\"Income\",\"datatype\":\"%s\","
                 "\"shape\":[%d],\"parameters\":{\"binary_data_size\":%zu}}],"
                 "\"parameters\":{\"binary_data_output\":true}}",
                 types[t].name, ROWS, ROWS * types[t].size);
    size_t header = (size_t)n;
    memcpy(body + header, bytes, ROWS * types[t].size);
    tdm_error err = {0};
    int rc = tdm__infer_parse_binary(model, body, header + ROWS * types[t].size,
                                     header, &by_binary, &err);
    if (rc != TDM_OK) fprintf(stderr, "%s: %s\n", types[t].name, err.message);
    CHECK(rc == TDM_OK);
    CHECK(rows_equal(&by_binary, by_json.rows, ROWS, CREDIT_FEATURES));
    /* Binary outputs hold the JSON answer's values. */
    tdm__buf as_json = {0}, as_binary = {0};
    size_t json_size = 0;
    CHECK(tdm__infer_respond(model, "m", NULL, &by_json, &as_json, NULL) ==
          TDM_OK);
    CHECK(tdm__infer_respond(model, "m", NULL, &by_binary, &as_binary,
                             &json_size) == TDM_OK);
    CHECK(json_size + 2 * ROWS * 4 == as_binary.len);
    tdm__json_doc doc;
    CHECK(tdm__json_parse(&doc, as_json.data, as_json.len, "answer", 0, &err) ==
          TDM_OK);
    const tdm__json *outputs = tdm__json_get(doc.root, "outputs");
    for (size_t o = 0; o < 2; o++) {
      const tdm__json *data = tdm__json_get(&outputs->items[o], "data");
      for (size_t i = 0; i < ROWS; i++) {
        float got;
        memcpy(&got, as_binary.data + json_size + (o * ROWS + i) * 4, 4);
        CHECK(strtof(data->items[i].text, NULL) == got);
      }
    }
    tdm__json_doc_free(&doc);
    tdm__buf_free(&as_json);
    tdm__buf_free(&as_binary);
    tdm__infer_request_free(&by_json);
    tdm__infer_request_free(&by_binary);
  }
  tdm_model_free(model);
  return 0;
}

/* A binary [rows, features] request for the credit model, its values
 * float32 (size 4) or double (size 8); returns the body's length and the
 * JSON header's in *header. */
static size_t binary_matrix_body(char *body, size_t cap, const float *values,
                                 size_t rows, size_t size, size_t *header) {
  int n = snprintf(body, cap,
                   "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"%s\","
                   "\"shape\":[%zu,%d],\"parameters\":{\"binary_data_size\":"
                   "%zu}}],\"parameters\":{\"binary_data_output\":true}}",
                   size == 4 ? "FP32" : "FP64", rows, CREDIT_FEATURES,
                   rows * CREDIT_FEATURES * size);
  *header = (size_t)n;
  for (size_t i = 0; i < rows * CREDIT_FEATURES; i++) {
    if (size == 4) {
      memcpy(body + n + 4 * i, &values[i], 4);
    } else {
      double wide = values[i];
      memcpy(body + n + 8 * i, &wide, 8);
    }
  }
  return (size_t)n + rows * CREDIT_FEATURES * size;
}

/*
 * The fast way for FP32 binary rows to a float32 model (the bytes copied
 * as they are, infinities found two values at a time) against the general
 * way, which the same values sent as FP64 take (a double per value): the
 * same rows bit for bit, the same answer byte for byte, and for an
 * infinity at any position, the same message. Little-endian hosts only
 * (the bodies are written in the host's order).
 */
TEST(infer_binary_float32_rows_match_general_path) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  static const uint32_t specials[] = {
      0x7fc00000u, 0x7f800001u, 0xffc00000u, 0xffffffffu, 0x7f7fffffu,
      0xff7fffffu, 0x00000001u, 0x80000000u, 0x00000000u, 0x3f800000u};
  enum { MAX_ROWS = 17 };
  static char body[MAX_ROWS * CREDIT_FEATURES * 8 + 512];
  float values[MAX_ROWS * CREDIT_FEATURES];
  uint64_t seed = 0x2545f4914f6cdd1du;
  static const size_t row_counts[] = {0, 1, 2, 3, 17};
  for (size_t c = 0; c < sizeof row_counts / sizeof row_counts[0]; c++) {
    size_t rows = row_counts[c], n = rows * CREDIT_FEATURES;
    for (size_t i = 0; i < n; i++) {
      seed = seed * 6364136223846793005u + 1442695040888963407u;
      uint32_t bits = (uint32_t)(seed >> 32);
      if (seed % 3 == 0) bits = specials[(seed >> 8) % 10];
      /* Random bits may spell an infinity: those come below. */
      if ((bits & 0x7fffffffu) == 0x7f800000u) bits = 0x40490fdbu;
      memcpy(&values[i], &bits, 4);
    }
    size_t header, len = binary_matrix_body(body, sizeof body, values, rows,
                                            4, &header);
    tdm__infer_request fast, general;
    tdm_error err = {0};
    CHECK_INT(tdm__infer_parse_binary(model, body, len, header, &fast, &err),
              TDM_OK);
    len = binary_matrix_body(body, sizeof body, values, rows, 8, &header);
    CHECK_INT(tdm__infer_parse_binary(model, body, len, header, &general, &err),
              TDM_OK);
    CHECK(fast.rows32 != NULL && fast.rows == NULL);
    CHECK(general.rows != NULL && general.rows32 == NULL);
    for (size_t i = 0; i < n; i++) {
      float narrow = (float)general.rows[i];
      CHECK(memcmp(&fast.rows32[i], &values[i], 4) == 0);
      CHECK(isnan(values[i]) ? isnan(narrow)
                             : memcmp(&narrow, &values[i], 4) == 0);
    }
    tdm__buf a = {0}, b = {0};
    size_t json_a = 0, json_b = 0;
    CHECK_INT(tdm__infer_respond(model, "m", NULL, &fast, &a, &json_a), TDM_OK);
    CHECK_INT(tdm__infer_respond(model, "m", NULL, &general, &b, &json_b),
              TDM_OK);
    CHECK(json_a == json_b && a.len == b.len &&
          memcmp(a.data, b.data, a.len) == 0);
    tdm__buf_free(&a);
    tdm__buf_free(&b);
    tdm__infer_request_free(&fast);
    tdm__infer_request_free(&general);
    /* An infinity at each position, either sign. */
    for (size_t i = 0; i < n; i++) {
      float saved = values[i];
      values[i] = i % 2 ? -INFINITY : INFINITY;
      char message[sizeof err.message];
      len = binary_matrix_body(body, sizeof body, values, rows, 4, &header);
      CHECK_INT(tdm__infer_parse_binary(model, body, len, header, &fast, &err),
                TDM_EPARSE);
      snprintf(message, sizeof message, "%s", err.message);
      len = binary_matrix_body(body, sizeof body, values, rows, 8, &header);
      CHECK_INT(
          tdm__infer_parse_binary(model, body, len, header, &general, &err),
          TDM_EPARSE);
      CHECK_STR(message, err.message);
      char element[48];
      snprintf(element, sizeof element, "binary element %zu is infinite", i);
      CHECK(strstr(message, element) != NULL);
      values[i] = saved;
    }
  }
  tdm_model_free(model);
  return 0;
}

TEST(infer_int64_range_edges) {
  tdm_model *model = load_fixture(LGB_CREDIT);
  CHECK(model != NULL);
  int failed = 0;
  failed |= expect_error(model,
                         matrix_body("INT64", "[1,13]",
                                     numbers(13, 12, "9223372036854775808")),
                         TDM_EPARSE, "at /inputs/0/data/12:");
  failed |= expect_error(model,
                         matrix_body("UINT64", "[1,13]",
                                     numbers(13, 12, "18446744073709551616")),
                         TDM_EPARSE, "at /inputs/0/data/12:");
  /* -2^63 is INT64's minimum. */
  const char *body =
      matrix_body("INT64", "[1,13]", numbers(13, 12, "-9223372036854775808"));
  tdm__infer_request req;
  failed |= parse_ok(model, body, strlen(body), &req);
  if (req.rows != NULL) tdm__infer_request_free(&req);
  tdm_model_free(model);
  return failed;
}

/* ---- errors ---- */

TEST(infer_errors_name_where) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  char flat26[1024], flat25[1024], flat27[1024];
  snprintf(flat26, sizeof flat26, "%s", numbers(26, 99, ""));
  snprintf(flat25, sizeof flat25, "%s", numbers(25, 99, ""));
  snprintf(flat27, sizeof flat27, "%s", numbers(27, 99, ""));
  char nested_bad[1024];
  snprintf(nested_bad, sizeof nested_bad, "[%s,", numbers(13, 99, ""));
  strcat(nested_bad, numbers(13, 3, "\"4\""));
  strcat(nested_bad, "]");
  const char *age = "{\"name\":\"Age\",\"datatype\":\"FP32\",\"shape\":[2],"
                    "\"data\":[30,40]}";
  struct {
    const char *body;
    int status; /* 0: TDM_EPARSE or TDM_ESCHEMA */
    const char *where;
  } cases[96];
  size_t nc = 0;
  static char store[96][2048];
#define CASE(status_, where_, ...)                                   \
  do {                                                               \
    if (nc == sizeof store / sizeof store[0]) return 1;              \
    snprintf(store[nc], sizeof store[nc], __VA_ARGS__);              \
    cases[nc].body = store[nc];                                      \
    cases[nc].status = status_;                                      \
    cases[nc].where = where_;                                        \
    nc++;                                                            \
  } while (0)
  /* Syntax errors name the line and column. */
  CASE(TDM_EPARSE, "request:1:11:", "{\"inputs\":");
  CASE(TDM_EPARSE, "request:2:2:", "{\"inputs\":[]\n}x");
  CASE(TDM_EPARSE, "request: empty document", "%s", "");
  /* The request's shape. */
  CASE(TDM_EPARSE, "at / (the document root):", "[1,2,3]");
  CASE(TDM_EPARSE, "at / (the document root):", "{}");
  CASE(TDM_EPARSE, "at / (the document root):", "{\"id\":\"x\"}");
  CASE(TDM_EPARSE, "at /inputs:", "{\"inputs\":[]}");
  CASE(TDM_EPARSE, "at /inputs:", "{\"inputs\":{}}");
  CASE(TDM_EPARSE, "at /inputs/0:", "{\"inputs\":[1]}");
  CASE(TDM_EPARSE, "at /inputs/1:", "{\"inputs\":[%s,{\"datatype\":\"FP32\"}]}",
       age);
  CASE(TDM_EPARSE, "at /inputs/0:", "{\"inputs\":[{\"name\":3}]}");
  /* Tensor headers. */
  CASE(TDM_ESCHEMA, "at /inputs/0/shape:", "%s",
       matrix_body("FP32", "[2,12]", numbers(24, 99, "")));
  CASE(TDM_ESCHEMA, "at /inputs/0/shape:", "%s",
       matrix_body("FP32", "[1,1,13]", numbers(13, 99, "")));
  CASE(TDM_ESCHEMA, "at /inputs/0/shape:", "%s",
       matrix_body("FP32", "[12]", numbers(12, 99, "")));
  CASE(TDM_ESCHEMA, "at /inputs/0/shape:", "%s",
       matrix_body("FP32", "[13,2]", numbers(26, 99, "")));
  CASE(TDM_EPARSE, "at /inputs/0/shape:", "%s",
       matrix_body("FP32", "[]", "[]"));
  CASE(TDM_EPARSE, "at /inputs/0/shape:", "%s",
       matrix_body("FP32", "[1,1,1,1,1,1,1,1,13]", numbers(13, 99, "")));
  CASE(TDM_EPARSE, "at /inputs/0/shape:", "%s",
       matrix_body("FP32", "13", numbers(13, 99, "")));
  CASE(TDM_EPARSE, "at /inputs/0:",
       "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"data\":[]}]}");
  CASE(TDM_EPARSE, "at /inputs/0/shape/0:", "%s",
       matrix_body("FP32", "[-1,13]", flat26));
  CASE(TDM_EPARSE, "at /inputs/0/shape/1:", "%s",
       matrix_body("FP32", "[2,-13]", flat26));
  CASE(TDM_EPARSE, "at /inputs/0/shape/0:", "%s",
       matrix_body("FP32", "[1.5,13]", flat26));
  CASE(TDM_EPARSE, "at /inputs/0/shape/0:", "%s",
       matrix_body("FP32", "[null,13]", flat26));
  CASE(TDM_EPARSE, "at /inputs/0/shape/0:", "%s",
       matrix_body("FP32", "[\"two\",13]", flat26));
  CASE(TDM_EPARSE, "at /inputs/0/shape/0:", "%s",
       matrix_body("FP32", "[99999999999999999999,13]", flat26));
  CASE(TDM_EPARSE, "at /inputs/0:",
       "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,13],\"data\":[]}]}");
  CASE(TDM_EPARSE, "at /inputs/0:",
       "{\"inputs\":[{\"name\":\"x\",\"datatype\":32,\"shape\":[1,13],"
       "\"data\":[]}]}");
  CASE(TDM_EPARSE, "at /inputs/0:",
       "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,13]}]}");
  CASE(TDM_EPARSE, "at /inputs/0/data:", "%s",
       matrix_body("FP32", "[1,13]", "{\"a\":1}"));
  CASE(TDM_EPARSE, "no Inference-Header-Content-Length header",
       "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,13],"
       "\"parameters\":{\"binary_data_size\":52}}]}");
  /* Element counts and elements. */
  CASE(TDM_EPARSE, "at /inputs/0/data:", "%s",
       matrix_body("FP32", "[2,13]", flat25));
  CASE(TDM_EPARSE, "at /inputs/0/data:", "%s",
       matrix_body("FP32", "[2,13]", flat27));
  CASE(TDM_EPARSE, "at /inputs/0/data:", "%s",
       matrix_body("FP32", "[2,13]", "[]"));
  CASE(TDM_EPARSE, "at /inputs/0/data/12:", "%s",
       matrix_body("FP32", "[1,13]", numbers(13, 12, "\"13\"")));
  CASE(TDM_EPARSE, "at /inputs/0/data/0:", "%s",
       matrix_body("FP32", "[1,13]", numbers(13, 0, "true")));
  CASE(TDM_EPARSE, "at /inputs/0/data/5:", "%s",
       matrix_body("FP64", "[1,13]", numbers(13, 5, "{}")));
  CASE(TDM_EPARSE, "at /inputs/0/data/5:", "%s",
       matrix_body("FP64", "[1,13]", numbers(13, 5, "\"nan\"")));
  CASE(TDM_EPARSE, "at /inputs/0/data/1/3:", "%s",
       matrix_body("FP32", "[2,13]", nested_bad));
  CASE(TDM_EPARSE, "at /inputs/0/data:", "%s",
       matrix_body("FP32", "[1,13]", "[[[[[[[[[1]]]]]]]]]"));
  CASE(TDM_EPARSE, "nested too deeply", "%s",
       matrix_body("FP32", "[0,13]", "[[[[[[[[[1]]]]]]]]]"));
  /* Values past float32: XGBoost refuses infinite inputs. */
  CASE(TDM_EPARSE, "at /inputs/0/data/4:", "%s",
       matrix_body("FP64", "[1,13]", numbers(13, 4, "1e39")));
  CASE(TDM_EPARSE, "at /inputs/0/data/4:", "%s",
       matrix_body("FP64", "[1,13]", numbers(13, 4, "-1e39")));
  CASE(TDM_EPARSE, "does not fit in FP32", "%s",
       matrix_body("FP32", "[1,13]", numbers(13, 4, "1e39")));
  CASE(TDM_EPARSE, "at /inputs/0/data/4:", "%s",
       matrix_body("FP32", "[1,13]", numbers(13, 4, "-3.5e38")));
  CASE(TDM_EPARSE, "at /inputs/0/data/4:", "%s",
       matrix_body("FP64", "[1,13]", numbers(13, 4, "1e400")));
  /* Per-feature tensors. */
  CASE(TDM_ESCHEMA, "at /inputs/1/name:",
       "{\"inputs\":[%s,{\"name\":\"Nope\",\"datatype\":\"FP32\","
       "\"shape\":[2],\"data\":[1,2]}]}",
       age);
  CASE(TDM_ESCHEMA, "at /inputs/0/name:",
       "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[2],"
       "\"data\":[1,2]},%s]}",
       age);
  CASE(TDM_EPARSE, "at /inputs/1/name:", "{\"inputs\":[%s,%s]}", age, age);
  CASE(TDM_ESCHEMA, "at /inputs/1/shape:",
       "{\"inputs\":[%s,{\"name\":\"Debt\",\"datatype\":\"FP32\","
       "\"shape\":[3],\"data\":[1,2,3]}]}",
       age);
  CASE(TDM_ESCHEMA, "at /inputs/1/shape:",
       "{\"inputs\":[%s,{\"name\":\"Debt\",\"datatype\":\"FP32\","
       "\"shape\":[1,2],\"data\":[1,2]}]}",
       age);
  CASE(TDM_ESCHEMA, "at /inputs/0/shape:",
       "{\"inputs\":[{\"name\":\"Debt\",\"datatype\":\"FP32\","
       "\"shape\":[2,13],\"data\":%s}]}",
       flat26);
  CASE(TDM_EPARSE, "at /inputs/1/data:",
       "{\"inputs\":[%s,{\"name\":\"Debt\",\"datatype\":\"FP32\","
       "\"shape\":[2],\"data\":[1,2,3]}]}",
       age);
  CASE(TDM_EPARSE, "at /inputs/1/data/1:",
       "{\"inputs\":[%s,{\"name\":\"Debt\",\"datatype\":\"FP32\","
       "\"shape\":[2],\"data\":[1,\"x\"]}]}",
       age);
  CASE(TDM_EPARSE, "at /inputs/0/shape/0:",
       "{\"inputs\":[{\"name\":\"Debt\",\"datatype\":\"FP32\","
       "\"shape\":[-2],\"data\":[1,2]}]}");
  /* More rows than the limit on values allows for 13 features. */
  CASE(TDM_EPARSE, "at /inputs/0/shape:",
       "{\"inputs\":[{\"name\":\"Debt\",\"datatype\":\"FP32\","
       "\"shape\":[200000000],\"data\":[1,2]}]}");
  /* The request's other members. */
  CASE(TDM_EPARSE, "at /id:", "{\"id\":42,\"inputs\":[%s]}", age);
  CASE(TDM_EPARSE, "at /id:", "{\"id\":null,\"inputs\":[%s]}", age);
  CASE(TDM_EPARSE, "at /parameters:", "{\"parameters\":[],\"inputs\":[%s]}",
       age);
  CASE(TDM_EPARSE, "at /parameters/timeout:",
       "{\"parameters\":{\"timeout\":-1},\"inputs\":[%s]}", age);
  CASE(TDM_EPARSE, "at /parameters/timeout:",
       "{\"parameters\":{\"timeout\":1.5},\"inputs\":[%s]}", age);
  CASE(TDM_EPARSE, "at /parameters/timeout:",
       "{\"parameters\":{\"timeout\":\"soon\"},\"inputs\":[%s]}", age);
  CASE(TDM_EPARSE, "at /parameters/timeout:",
       "{\"parameters\":{\"timeout\":true},\"inputs\":[%s]}", age);
  CASE(TDM_EPARSE, "at /outputs:", "{\"outputs\":{},\"inputs\":[%s]}", age);
  CASE(TDM_EPARSE, "at /outputs/0:", "{\"outputs\":[\"score\"],\"inputs\":[%s]}",
       age);
  CASE(TDM_EPARSE, "at /outputs/1/name:",
       "{\"outputs\":[{\"name\":\"score\"},{\"name\":\"probability\"}],"
       "\"inputs\":[%s]}",
       age);
#undef CASE
  CHECK(nc <= sizeof store / sizeof store[0]);
  int failed = 0;
  for (size_t i = 0; i < nc; i++)
    failed |= expect_error(model, cases[i].body, cases[i].status,
                           cases[i].where);
  /* The message says what is wrong, too. */
  tdm__infer_request req;
  tdm_error err;
  const char *body = matrix_body("FP32", "[2,13]", flat25);
  CHECK(tdm__infer_parse(model, body, strlen(body), &req, &err) != TDM_OK);
  CHECK_CONTAINS(err.message, "has 25 values, but shape [2, 13] needs 26");
  body = "{\"inputs\":[{\"name\":\"Age\",\"datatype\":\"FP32\",\"shape\":[1],"
         "\"data\":[1]},{\"name\":\"Nope\",\"datatype\":\"FP32\",\"shape\":[1],"
         "\"data\":[1]}]}";
  CHECK(tdm__infer_parse(model, body, strlen(body), &req, &err) != TDM_OK);
  CHECK_CONTAINS(err.message, "\"Nope\" is not one of the model's 13 features");
  body = matrix_body("FP64", "[1,13]", numbers(13, 4, "1e39"));
  CHECK(tdm__infer_parse(model, body, strlen(body), &req, &err) != TDM_OK);
  CHECK_CONTAINS(err.message, "feature \"Marital\"");
  CHECK_CONTAINS(err.message, "infinite");
  tdm_model_free(model);
  return failed;
}

/* A body that is a JSON scalar is not a request. A top-level non-empty
 * string has a test of its own, apart from the other errors: the JSON
 * parser took a string root's length for a count of children to adopt. */
TEST(infer_scalar_body_is_an_error) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  static const char *bodies[] = {"1", "null", "true", "\"\"", "\"inputs\"",
                                 " \"x\" "};
  int failed = 0;
  for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
    failed |= expect_error(model, bodies[i], TDM_EPARSE,
                           "at / (the document root):");
  tdm_model_free(model);
  return failed;
}

/* 1e39 is finite in double precision, so a LightGBM model takes it. */
TEST(infer_large_values_in_double_models) {
  tdm_model *model = load_fixture(LGB_CREDIT);
  CHECK(model != NULL);
  const char *body = matrix_body("FP64", "[1,13]", numbers(13, 4, "1e39"));
  tdm__infer_request req;
  CHECK(parse_ok(model, body, strlen(body), &req) == 0);
  CHECK(req.rows[4] == 1e39);
  CHECK(check_response(model, &req, NULL, NULL,
                       TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN) == 0);
  tdm__infer_request_free(&req);
  /* But FP32 data must still fit in float32. */
  CHECK(expect_error(model, matrix_body("FP32", "[1,13]", numbers(13, 4, "1e39")),
                     TDM_EPARSE, "at /inputs/0/data/4:") == 0);
  tdm_model_free(model);
  return 0;
}

static long max_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/*
 * A shape that asks for far more values than the body holds fails before
 * any buffer of that size is allocated or touched: the peak resident size
 * may not grow by more than 64 MiB.
 */
static int fails_small(const tdm_model *model, const char *body,
                       const char *where) {
  long before = max_rss_kb();
  int failed = expect_error(model, body, 0, where);
  long grown = max_rss_kb() - before;
  if (grown > 64 * 1024) {
    fprintf(stderr, "the peak resident size grew by %ld MiB for: %s\n",
            grown / 1024, body);
    failed = 1;
  }
  return failed;
}

TEST(infer_huge_matrix_shape_fails_fast) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  int failed = 0;
  failed |= fails_small(model, matrix_body("FP32", "[4294967296,13]", "[1]"),
                        "at /inputs/0/shape/0:");
  failed |= fails_small(model,
                        matrix_body("FP32", "[9223372036854775807,13]", "[1]"),
                        "at /inputs/0/shape/0:");
  failed |= fails_small(model, matrix_body("FP32", "[100000000,13]", "[1]"),
                        "at /inputs/0/shape/1:");
  /* 20000000 x 13 is within the limit on values, but the data has one. */
  failed |= fails_small(model, matrix_body("FP32", "[20000000,13]", "[1]"),
                        "at /inputs/0/data:");
  failed |= fails_small(model, matrix_body("FP32", "[0,4294967296]", "[]"),
                        "at /inputs/0/shape/1:");
  tdm_model_free(model);
  return failed;
}

TEST(infer_huge_feature_tensor_shape_fails_fast) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  int failed = 0;
  failed |= fails_small(model,
                        "{\"inputs\":[{\"name\":\"Age\",\"datatype\":\"FP32\","
                        "\"shape\":[4294967296],\"data\":[1]}]}",
                        "at /inputs/0/shape/0:");
  /* Within the limit on values, but the data holds one value. */
  failed |= fails_small(model,
                        "{\"inputs\":[{\"name\":\"Age\",\"datatype\":\"FP32\","
                        "\"shape\":[19000000],\"data\":[1]}]}",
                        "at /inputs/0/data:");
  failed |= fails_small(model,
                        "{\"inputs\":[{\"name\":\"Age\",\"datatype\":\"FP32\","
                        "\"shape\":[19000000,1],\"data\":[[1]]}]}",
                        "at /inputs/0/data:");
  tdm_model_free(model);
  return failed;
}

/* ---- the request's id, timeout and outputs ---- */

TEST(infer_id_timeout_and_outputs) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  const size_t n = 3, nf = CREDIT_FEATURES;
  double *rows = read_rows(XGB_CREDIT, n, nf);
  CHECK(rows != NULL);
  static const struct {
    const char *extra;
    const char *id; /* decoded */
    long long timeout;
    int outputs;
  } cases[] = {
      {"", NULL, -1, TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      {",\"id\":\"r-1\"", "r-1", -1, TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      {",\"id\":\"q\\\"uo\\\\te \\u00e9\\n\"", "q\"uo\\te \xc3\xa9\n", -1,
       TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      {",\"id\":\"\"", "", -1, TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      {",\"parameters\":{\"timeout\":250000}", NULL, 250000,
       TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      {",\"parameters\":{\"timeout\":0,\"other\":[1]}", NULL, 0,
       TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      {",\"parameters\":{}", NULL, -1, TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      {",\"parameters\":{\"timeout\":9223372036854775807}", NULL,
       9223372036854775807LL, TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      {",\"outputs\":[{\"name\":\"score\"}]", NULL, -1, TDM__OUTPUT_SCORE},
      {",\"outputs\":[{\"name\":\"margin\",\"parameters\":{}}]", NULL, -1,
       TDM__OUTPUT_MARGIN},
      {",\"outputs\":[{\"name\":\"score\"},{\"name\":\"margin\"}]", NULL, -1,
       TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      /* Asked for in the other order, or twice: the response still lists
       * each once, score first (the model's order). */
      {",\"outputs\":[{\"name\":\"margin\"},{\"name\":\"score\"}]", NULL, -1,
       TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      {",\"outputs\":[{\"name\":\"score\"},{\"name\":\"score\"}]", NULL, -1,
       TDM__OUTPUT_SCORE},
      {",\"outputs\":[]", NULL, -1, TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN},
      {",\"id\":\"all\",\"parameters\":{\"timeout\":1},\"outputs\":[{\"name\":"
       "\"margin\"}]",
       "all", 1, TDM__OUTPUT_MARGIN},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    tdm__buf body = {0};
    CHECK_INT(matrix_request(&body, rows, n, nf, "FP32", c % 2, cases[c].extra),
              TDM_OK);
    tdm__infer_request req;
    if (parse_ok(model, body.data, body.len, &req) != 0) return 1;
    if (cases[c].id == NULL) {
      CHECK(req.id == NULL);
    } else {
      CHECK_STR(req.id, cases[c].id);
    }
    CHECK_INT(req.timeout_us, cases[c].timeout);
    CHECK_INT(req.outputs, cases[c].outputs);
    CHECK(rows_equal(&req, rows, n, nf));
    if (check_response(model, &req, c % 3 ? "v3" : NULL, cases[c].id,
                       cases[c].outputs) != 0) {
      fprintf(stderr, "case %zu: %s\n", c, cases[c].extra);
      return 1;
    }
    tdm__infer_request_free(&req);
    tdm__buf_free(&body);
  }
  free(rows);
  tdm_model_free(model);
  return 0;
}

/* ---- responses ---- */

/* Scores n rows of a fixture's input through a request and checks the
 * response against tdm_model_predict on the same rows. */
static int respond_matches_predict(const char *stem, size_t n) {
  tdm_model *model = load_fixture(stem);
  CHECK(model != NULL);
  size_t nf = num_features(model);
  double *rows = read_rows(stem, n, nf);
  CHECK(rows != NULL);
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  tdm__buf body = {0};
  /* XGBoost's inputs are float32 (FP32 keeps them); LightGBM's doubles. */
  CHECK_INT(matrix_request(&body, rows, n, nf, info.float32 ? "FP32" : "FP64",
                           1, ",\"id\":\"batch\""),
            TDM_OK);
  tdm__infer_request req;
  CHECK(parse_ok(model, body.data, body.len, &req) == 0);
  CHECK(rows_equal(&req, rows, n, nf));
  int failed = check_response(model, &req, "2", "batch",
                              TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN);
  tdm__infer_request_free(&req);
  tdm__buf_free(&body);
  /* The same rows as one tensor per feature. */
  if (!failed) {
    CHECK_INT(feature_request(&body, model, rows, n, 1, 0), TDM_OK);
    CHECK(parse_ok(model, body.data, body.len, &req) == 0);
    CHECK(rows_equal(&req, rows, n, nf));
    failed = check_response(model, &req, NULL, NULL,
                            TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN);
    tdm__infer_request_free(&req);
    tdm__buf_free(&body);
  }
  free(rows);
  tdm_model_free(model);
  if (failed) fprintf(stderr, "model %s\n", stem);
  return failed;
}

TEST(infer_response_matches_predict_xgboost) {
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  CHECK(info.float32);
  tdm_model_free(model);
  /* 20 rows use a buffer on the stack, 200 one on the heap. */
  CHECK(respond_matches_predict(XGB_CREDIT, 20) == 0);
  CHECK(respond_matches_predict(XGB_CREDIT, 200) == 0);
  return 0;
}

TEST(infer_response_matches_predict_multiclass) {
  tdm_model *model = load_fixture(XGB_MULTI);
  CHECK(model != NULL);
  CHECK_INT(tdm_model_output_width(model, 0), 4);
  CHECK_INT(tdm_model_output_width(model, TDM_PREDICT_MARGIN), 4);
  tdm_model_free(model);
  CHECK(respond_matches_predict(XGB_MULTI, 9) == 0);
  CHECK(respond_matches_predict(XGB_MULTI, 100) == 0);
  return 0;
}

TEST(infer_response_matches_predict_lightgbm) {
  tdm_model *model = load_fixture(LGB_CREDIT);
  CHECK(model != NULL);
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  CHECK(!info.float32);
  tdm_model_free(model);
  CHECK(respond_matches_predict(LGB_CREDIT, 30) == 0);
  CHECK(respond_matches_predict(LGB_CREDIT, 150) == 0);
  CHECK(respond_matches_predict(LGB_MULTI, 50) == 0);
  return 0;
}

/* A linear model that refuses missing values of "utilization". */
TEST(infer_linear_required_feature) {
  tdm_model *model = load_linear();
  CHECK(model != NULL);
  CHECK_INT(num_features(model), 3);
  CHECK_STR(tdm_model_feature_name(model, 2), "utilization");
  CHECK_INT(tdm_model_feature_required(model, 2), 1);
  CHECK_INT(tdm_model_feature_required(model, 0), 0);
  tdm__infer_request req;
  /* Matrix: missing amount and age are fine, utilization is not. */
  const char *body =
      "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP64\",\"shape\":[2,3],"
      "\"data\":[[1000,null,0.5],[null,40,0.25]]}]}";
  CHECK(parse_ok(model, body, strlen(body), &req) == 0);
  CHECK(check_response(model, &req, NULL, NULL,
                       TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN) == 0);
  tdm__infer_request_free(&req);
  body = "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP64\",\"shape\":[2,3],"
         "\"data\":[[1000,30,0.5],[2000,40,null]]}]}";
  CHECK(expect_error(model, body, TDM_EPARSE, "at /inputs/0/data/1/2:") == 0);
  tdm_error err;
  CHECK(tdm__infer_parse(model, body, strlen(body), &req, &err) != TDM_OK);
  CHECK_CONTAINS(err.message, "feature \"utilization\" is missing");
  body = "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[3],"
         "\"data\":[1,2,\"NaN\"]}]}";
  CHECK(expect_error(model, body, TDM_EPARSE, "at /inputs/0/data/2:") == 0);
  /* Per feature: utilization given, others absent. */
  body = "{\"inputs\":[{\"name\":\"utilization\",\"datatype\":\"FP32\","
         "\"shape\":[2],\"data\":[0.5,0.75]}]}";
  CHECK(parse_ok(model, body, strlen(body), &req) == 0);
  CHECK(isnan(req.rows[0]) && isnan(req.rows[1]) && req.rows[2] == 0.5);
  CHECK(check_response(model, &req, NULL, NULL,
                       TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN) == 0);
  tdm__infer_request_free(&req);
  /* Per feature without utilization, or with a null in it. */
  body = "{\"inputs\":[{\"name\":\"age\",\"datatype\":\"FP32\",\"shape\":[1],"
         "\"data\":[30]},{\"name\":\"amount\",\"datatype\":\"FP32\","
         "\"shape\":[1],\"data\":[10]}]}";
  CHECK(expect_error(model, body, TDM_ESCHEMA, "at /inputs:") == 0);
  CHECK(tdm__infer_parse(model, body, strlen(body), &req, &err) != TDM_OK);
  CHECK_CONTAINS(err.message, "\"utilization\" has no input");
  body = "{\"inputs\":[{\"name\":\"age\",\"datatype\":\"FP32\",\"shape\":[2],"
         "\"data\":[30,40]},{\"name\":\"utilization\",\"datatype\":\"FP32\","
         "\"shape\":[2,1],\"data\":[[0.1],[null]]}]}";
  CHECK(expect_error(model, body, TDM_EPARSE, "at /inputs/1/data/1/0:") == 0);
  tdm_model_free(model);
  return 0;
}

/* ---- metadata ---- */

static int check_metadata(const char *stem) {
  tdm_model *model = load_fixture(stem);
  CHECK(model != NULL);
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  const char *versions[] = {"1", "2\"x"};
  tdm__buf out = {0};
  CHECK_INT(tdm__infer_metadata(model, "m", versions, 2, &out), TDM_OK);
  tdm__json_doc doc;
  tdm_error err;
  if (tdm__json_parse(&doc, out.data, out.len, "metadata", 0, &err) !=
      TDM_OK) {
    fprintf(stderr, "metadata is not JSON: %s\n%s\n", err.message, out.data);
    return 1;
  }
  const tdm__json *root = doc.root, *v;
  v = tdm__json_get(root, "name");
  CHECK(v != NULL && v->type == TDM__JSON_STRING);
  CHECK_STR(v->text, "m");
  v = tdm__json_get(root, "versions");
  CHECK(v != NULL && v->type == TDM__JSON_ARRAY && v->count == 2);
  CHECK_STR(v->items[0].text, "1");
  CHECK_STR(v->items[1].text, "2\"x");
  v = tdm__json_get(root, "platform");
  CHECK(v != NULL && v->type == TDM__JSON_STRING);
  CHECK_STR(v->text, info.format_name);
  const char *type = info.float32 ? "FP32" : "FP64";
  v = tdm__json_get(root, "inputs");
  CHECK(v != NULL && v->type == TDM__JSON_ARRAY && v->count == 1);
  CHECK_STR(tdm__json_get(&v->items[0], "name")->text, "input");
  CHECK_STR(tdm__json_get(&v->items[0], "datatype")->text, type);
  CHECK(shape_is(tdm__json_get(&v->items[0], "shape"), -1,
                 (long long)info.num_features));
  v = tdm__json_get(root, "outputs");
  CHECK(v != NULL && v->type == TDM__JSON_ARRAY && v->count == 2);
  CHECK_STR(tdm__json_get(&v->items[0], "name")->text, "score");
  CHECK_STR(tdm__json_get(&v->items[0], "datatype")->text, type);
  CHECK(shape_is(tdm__json_get(&v->items[0], "shape"), -1,
                 (long long)tdm_model_output_width(model, 0)));
  CHECK_STR(tdm__json_get(&v->items[1], "name")->text, "margin");
  CHECK(shape_is(tdm__json_get(&v->items[1], "shape"), -1,
                 (long long)tdm_model_output_width(model, TDM_PREDICT_MARGIN)));
  v = tdm__json_get(root, "features");
  CHECK(v != NULL && v->type == TDM__JSON_ARRAY);
  CHECK_INT(v->count, info.num_features);
  for (size_t f = 0; f < info.num_features; f++) {
    CHECK_INT(v->items[f].type, TDM__JSON_STRING);
    CHECK_STR(v->items[f].text, tdm_model_feature_name(model, f));
  }
  tdm__json_doc_free(&doc);
  tdm__buf_free(&out);
  /* No versions: an empty list. */
  CHECK_INT(tdm__infer_metadata(model, "m", NULL, 0, &out), TDM_OK);
  CHECK_CONTAINS(out.data, "\"versions\":[]");
  CHECK(tdm__json_parse(&doc, out.data, out.len, "metadata", 0, &err) ==
        TDM_OK);
  tdm__json_doc_free(&doc);
  tdm__buf_free(&out);
  tdm_model_free(model);
  return 0;
}

TEST(infer_metadata) {
  CHECK(check_metadata(XGB_CREDIT) == 0);
  CHECK(check_metadata(XGB_MULTI) == 0);
  CHECK(check_metadata(LGB_CREDIT) == 0);
  /* The features in the model's order, as in the CSV header. */
  tdm_model *model = load_fixture(XGB_CREDIT);
  CHECK(model != NULL);
  tdm__buf out = {0};
  CHECK_INT(tdm__infer_metadata(model, "credit", NULL, 0, &out), TDM_OK);
  CHECK_CONTAINS(out.data,
                 "\"features\":[\"Seniority\",\"Home\",\"Time\",\"Age\","
                 "\"Marital\",\"Records\",\"Job\",\"Expenses\",\"Income\","
                 "\"Assets\",\"Debt\",\"Amount\",\"Price\"]");
  tdm__buf_free(&out);
  tdm_model_free(model);
  return 0;
}

/* ---- out of memory ---- */

/*
 * Parses and responds with allocation k failing, for k = 0, 1, ... until
 * a run gets through: each run must fail with TDM_ENOMEM (or, for a bad
 * request, its own error) or succeed, and leak nothing (LeakSanitizer
 * checks at exit under the ASan build).
 */
static int out_of_memory_runs(const tdm_model *model, const char *body,
                              size_t len, int expected_status) {
  for (long k = 0; k < 100000; k++) {
    tdm__infer_request req;
    tdm_error err;
    memset(&err, 0, sizeof err);
    tdm__buf out = {0};
    tdm__alloc_fail_after(k);
    int rc = tdm__infer_parse(model, body, len, &req, &err);
    int rc2 = TDM_OK;
    if (rc == TDM_OK) {
      rc2 = tdm__infer_respond(model, "m", "1", &req, &out, NULL);
      tdm__infer_request_free(&req);
    } else {
      tdm__infer_request_free(&req); /* holds nothing: safe */
    }
    int rc3 = TDM_OK;
    tdm__buf meta = {0};
    static const char *const versions[] = {"1"};
    rc3 = tdm__infer_metadata(model, "m", versions, 1, &meta);
    tdm__alloc_fail_after(-1);
    tdm__buf_free(&meta);
    if (rc != TDM_OK) {
      if (rc != TDM_ENOMEM && rc != expected_status) {
        fprintf(stderr, "k=%ld: parse gave %s: %s\n", k, tdm_status_name(rc),
                err.message);
        return 1;
      }
      if (err.status != rc || err.message[0] == '\0') {
        fprintf(stderr, "k=%ld: err does not report %s\n", k,
                tdm_status_name(rc));
        return 1;
      }
      tdm__buf_free(&out);
      if (rc == expected_status && rc3 == TDM_OK) return 0; /* got through */
      continue;
    }
    if (expected_status != TDM_OK) {
      fprintf(stderr, "k=%ld: a bad request was accepted\n", k);
      return 1;
    }
    if (rc2 != TDM_OK && rc2 != TDM_ENOMEM) {
      fprintf(stderr, "k=%ld: respond gave %s\n", k, tdm_status_name(rc2));
      return 1;
    }
    if (rc3 != TDM_OK && rc3 != TDM_ENOMEM) {
      fprintf(stderr, "k=%ld: metadata gave %s\n", k, tdm_status_name(rc3));
      return 1;
    }
    if (rc2 == TDM_OK) {
      tdm__json_doc doc;
      int ok = tdm__json_parse(&doc, out.data, out.len, "response", 0, &err) ==
               TDM_OK;
      if (ok) tdm__json_doc_free(&doc);
      tdm__buf_free(&out);
      if (!ok) {
        fprintf(stderr, "k=%ld: the response is not JSON\n", k);
        return 1;
      }
      if (rc3 == TDM_OK) return 0; /* everything got through */
    }
    tdm__buf_free(&out);
  }
  fprintf(stderr, "never got through\n");
  return 1;
}

TEST(infer_out_of_memory) {
  tdm_model *xgb = load_fixture(XGB_CREDIT);
  tdm_model *multi = load_fixture(XGB_MULTI);
  tdm_model *lgb = load_fixture(LGB_CREDIT);
  CHECK(xgb != NULL && multi != NULL && lgb != NULL);
  const size_t nf = CREDIT_FEATURES;
  double *rows = read_rows(XGB_CREDIT, 40, nf);
  CHECK(rows != NULL);
  int failed = 0;
  tdm__buf body = {0};
  /* A matrix of 40 rows (the heap path of respond), and of 2 rows. */
  CHECK_INT(matrix_request(&body, rows, 40, nf, "FP32", 1,
                           ",\"id\":\"x\",\"outputs\":[{\"name\":\"score\"},"
                           "{\"name\":\"margin\"}]"),
            TDM_OK);
  failed |= out_of_memory_runs(xgb, body.data, body.len, TDM_OK);
  failed |= out_of_memory_runs(lgb, body.data, body.len, TDM_OK);
  tdm__buf_free(&body);
  CHECK_INT(matrix_request(&body, rows, 2, nf, "FP64", 0, ""), TDM_OK);
  failed |= out_of_memory_runs(xgb, body.data, body.len, TDM_OK);
  tdm__buf_free(&body);
  /* Per-feature tensors, some left out. */
  CHECK_INT(feature_request(&body, xgb, rows, 40, 1, 0x55), TDM_OK);
  failed |= out_of_memory_runs(xgb, body.data, body.len, TDM_OK);
  tdm__buf_free(&body);
  /* Multiclass. */
  const char *m = "{\"inputs\":[{\"name\":\"f3\",\"datatype\":\"FP32\","
                  "\"shape\":[30],\"data\":[1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,"
                  "7,8,9,10,1,2,3,4,5,6,7,8,9,10]}]}";
  failed |= out_of_memory_runs(multi, m, strlen(m), TDM_OK);
  /* Bad requests: the error, or TDM_ENOMEM, every time. */
  const char *bad = matrix_body("FP32", "[1,13]", numbers(13, 12, "\"x\""));
  failed |= out_of_memory_runs(xgb, bad, strlen(bad), TDM_EPARSE);
  bad = "{\"inputs\":[{\"name\":\"Age\",\"datatype\":\"FP32\",\"shape\":[2],"
        "\"data\":[1,2]},{\"name\":\"Age\",\"datatype\":\"FP32\","
        "\"shape\":[2],\"data\":[1,2]}]}";
  failed |= out_of_memory_runs(xgb, bad, strlen(bad), TDM_EPARSE);
  bad = "{\"inputs\":[{\"name\":\"Age\",\"datatype\":\"FP32\",\"shape\":[2],"
        "\"data\":[1,2]},{\"name\":\"Debt\",\"datatype\":\"FP32\","
        "\"shape\":[3],\"data\":[1,2,3]}]}";
  failed |= out_of_memory_runs(xgb, bad, strlen(bad), TDM_ESCHEMA);
  bad = "{\"inputs\":[";
  failed |= out_of_memory_runs(xgb, bad, strlen(bad), TDM_EPARSE);
  free(rows);
  tdm_model_free(xgb);
  tdm_model_free(multi);
  tdm_model_free(lgb);
  return failed;
}

/* One generated number's text: the forms clients write (shortest, 17
 * digits, exponents, integers, -0), or, with `bad`, a token a flat array
 * may not hold, to be refused as it always was. */
static void number_text(uint64_t r, char *out, size_t cap, double *value) {
  double d = ldexp((double)(r >> 11) / 0x1p53, (int)(r % 80) - 40);
  if (r & (1u << 7)) d = -d;
  switch ((r >> 8) % 7) {
    case 0: snprintf(out, cap, "%.17g", d); break;
    case 1: snprintf(out, cap, "%.6g", d); break;
    case 2: snprintf(out, cap, "%.12E", d); break;
    case 3: snprintf(out, cap, "%lld", (long long)(d * 1e6)); break;
    case 4: snprintf(out, cap, (r >> 3) % 3 == 0 ? "-0" : (r >> 3) % 3 == 1 ? "null" : "\"NaN\""); break;
    case 5: snprintf(out, cap, "%.3e", d); break;
    default: snprintf(out, cap, "0.%020llu", (unsigned long long)(r >> 3));
  }
  *value = out[0] == 'n' || out[0] == '"' ? NAN : strtod(out, NULL);
}

static const char *const bad_tokens[] = {
    "01", "1.", "+1", ".5", "1e", "1e+", "-", "NaN", "nan", "Infinity",
    "true", "\"x\"", "{}", "[1]", "1 2", "0x10", "1,", "--1", "1e999",
    "nul", "\"NaN", "\"nan\"", "NULL"};

/*
 * Flat "data" arrays are read straight from the text; the same request
 * with the key written "d\u0061ta" (which that reader does not look for)
 * goes the plain way. On generated requests, valid ones and ones with a
 * bad token at a random place, both ways must agree exactly: the rows,
 * or the status and the message (padding keeps every offset the same);
 * valid rows must also be strtod's values (rounded to float32 for FP32).
 * A "data" inside a string must not be touched.
 */
TEST(infer_scanned_data_matches_plain_parse) {
  tdm_model *models[2] = {load_fixture(XGB_CREDIT), load_fixture(LGB_CREDIT)};
  CHECK(models[0] != NULL && models[1] != NULL);
  const size_t nf = CREDIT_FEATURES;
  uint64_t s = 0x853C49E6748FEA9Bull;
  int scanned_ok = 0, refused = 0;
  for (int round = 0; round < 600; round++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    int m = (int)(s % 2);
    const char *type = m == 0 ? "FP32" : "FP64";
    size_t rows = 1 + (s >> 8) % 40, n = rows * nf;
    size_t bad_at = (s >> 16) % 3 == 0 ? (s >> 20) % n : SIZE_MAX;
    double *want = malloc(n * sizeof *want);
    CHECK(want != NULL);
    tdm__buf data = {0};
    for (size_t i = 0; i < n; i++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      char text[64];
      double value;
      number_text(s, text, sizeof text, &value);
      want[i] = m == 0 ? (double)(float)value : value;
      const char *token = i == bad_at
          ? bad_tokens[(s >> 40) % (sizeof bad_tokens / sizeof *bad_tokens)]
          : text;
      static const char *const space[] = {"", " ", "\n  ", "\t"};
      CHECK_INT(tdm__buf_printf(&data, "%s%s%s%s", i ? "," : "",
                                space[(s >> 50) % 4], token,
                                space[(s >> 52) % 4]),
                TDM_OK);
    }
    tdm__buf bodies[2] = {{0}, {0}};
    for (int plain = 0; plain < 2; plain++)
      CHECK_INT(tdm__buf_printf(
                    &bodies[plain],
                    "{\"id\":\"\\\"data\\\": [1, 2]\",\"inputs\":[{\"name\":"
                    "\"x\",\"shape\":[%zu,%zu],\"datatype\":\"%s\",%s:[%s]}]}",
                    rows, nf, type, plain ? "\"d\\u0061ta\"" : "     \"data\"",
                    data.data),
                TDM_OK);
    tdm__infer_request req[2];
    tdm_error err[2];
    int rc[2];
    for (int plain = 0; plain < 2; plain++)
      rc[plain] = tdm__infer_parse(models[m], bodies[plain].data,
                                   bodies[plain].len, &req[plain], &err[plain]);
    if (rc[0] != rc[1] ||
        (rc[0] != TDM_OK && strcmp(err[0].message, err[1].message) != 0)) {
      fprintf(stderr, "scanned: %d %s\nplain: %d %s\n", rc[0],
              rc[0] ? err[0].message : "", rc[1], rc[1] ? err[1].message : "");
      return 1;
    }
    if (rc[0] == TDM_OK) {
      CHECK_INT(req[0].num_rows, rows);
      CHECK(memcmp(req[0].rows, req[1].rows, n * sizeof(double)) == 0);
      if (bad_at == SIZE_MAX) {
        for (size_t i = 0; i < n; i++)
          CHECK(isnan(want[i]) ? isnan(req[0].rows[i])
                               : memcmp(&req[0].rows[i], &want[i],
                                        sizeof want[i]) == 0);
        scanned_ok++;
      }
      CHECK(req[0].id != NULL && req[0].id_len == 14 &&
            memcmp(req[0].id, "\"data\": [1, 2]", 14) == 0);
      tdm__infer_request_free(&req[0]);
      tdm__infer_request_free(&req[1]);
    } else {
      refused++;
    }
    tdm__buf_free(&bodies[0]);
    tdm__buf_free(&bodies[1]);
    tdm__buf_free(&data);
    free(want);
  }
  CHECK(scanned_ok > 300 && refused > 100);
  tdm_model_free(models[0]);
  tdm_model_free(models[1]);
  return 0;
}
