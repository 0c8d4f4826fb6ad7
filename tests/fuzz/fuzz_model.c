/*
 * fuzz_model.c - a libFuzzer harness for the model loader: the input bytes
 * are a model file given to tdm_model_load_buffer, which exercises the
 * JSON parser (including the NaN and Infinity extensions), the XGBoost
 * loader (and any other format recognised from the content) and the
 * validator on arbitrary text. When a file loads, the harness
 * also describes the model and scores a fixed set of awkward rows (missing
 * values, zeros, huge and negative numbers, category-like integers) with
 * and without TDM_PREDICT_MARGIN, so that whatever the loader accepts is
 * also safe to evaluate. It checks the API's promises on the way: a failed
 * load names its status and leaves *out NULL, and a float32 model's scores
 * are exact float32 values that tdm_model_format_value writes so that they
 * read back exactly. Build with `make fuzz`; run with scripts/fuzz.sh over
 * the seeds in tests/fuzz/corpus/xgboost/.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tandem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reports a broken promise of the API and stops, so libFuzzer keeps the
 * input as a crash. */
static void check(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "fuzz_model: check failed: %s\n", what);
  abort();
}

/* Values that each row cycles through: every one of them steers some split
 * of a real model differently (missing, the category range checks, float32
 * overflow, values around 0 and the bitset word boundaries). */
static const double row_values[] = {
    NAN,  0.0,  1e30, -1.0,       0.5,      1.0,   2.0,   3.0,   7.0, 31.0,
    32.0, 33.0, -0.0, 16777216.0, INFINITY, -1e30, 1e-30, 255.0, 4.0, -INFINITY,
};
#define NUM_VALUES (sizeof row_values / sizeof row_values[0])

/* Rows are num_features wide: a model may declare millions of features,
 * which would make every run slow, so wide models score fewer rows. */
#define MAX_CELLS ((size_t)1 << 20)

static void score(const tdm_model *model, size_t num_features) {
  size_t num_rows = NUM_VALUES + 2;
  if (num_features * num_rows > MAX_CELLS) num_rows = 1;
  if (num_features > MAX_CELLS) return;
  double *rows = malloc(num_rows * num_features * sizeof *rows);
  check(rows != NULL, "allocating rows");
  for (size_t r = 0; r < num_rows; r++) {
    for (size_t j = 0; j < num_features; j++) {
      double x;
      if (r == NUM_VALUES) {
        x = NAN; /* a row with every value missing */
      } else if (r == NUM_VALUES + 1) {
        x = (double)(j % 40); /* small category codes */
      } else {
        x = row_values[(r + j) % NUM_VALUES];
      }
      rows[r * num_features + j] = x;
    }
  }
  tdm_model_info info;
  check(tdm_model_get_info(model, &info) == 0, "tdm_model_get_info");
  static const int all_flags[] = {0, TDM_PREDICT_MARGIN};
  for (size_t k = 0; k < sizeof all_flags / sizeof all_flags[0]; k++) {
    int flags = all_flags[k];
    size_t width = tdm_model_output_width(model, flags);
    check(width >= 1, "output width is at least 1");
    double *out = malloc(num_rows * width * sizeof *out);
    check(out != NULL, "allocating outputs");
    check(tdm_model_predict(model, rows, num_rows, flags, out) == 0,
          "tdm_model_predict");
    for (size_t i = 0; i < num_rows * width; i++) {
      double v = out[i];
      char buf[32];
      int n = tdm_model_format_value(model, v, buf);
      check(n > 0 && n < 32, "format_value length");
      if (info.float32 && !isnan(v)) {
        check((double)(float)v == v, "a float32 model scores in float32");
        if (!isinf(v))
          check(strtof(buf, NULL) == (float)v, "format_value reads back");
      }
    }
    free(out);
  }
  free(rows);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char sentinel;
  tdm_model *model = (tdm_model *)(void *)&sentinel; /* must become NULL */
  tdm_error err;
  int rc = tdm_model_load_buffer((const char *)data, size, "fuzz.json", &model,
                                 &err);
  if (rc != 0) {
    check(model == NULL, "a failed load leaves *out NULL");
    check(err.status == rc, "err.status is the returned status");
    check(err.message[0] != '\0', "a failed load has a message");
    check(tdm_strerror(rc) != NULL, "tdm_strerror");
    return 0;
  }
  check(model != NULL, "a successful load returns a model");
  tdm_model_info info;
  check(tdm_model_get_info(model, &info) == 0, "tdm_model_get_info");
  check(info.num_outputs >= 1, "a model has outputs");
  for (size_t j = 0; j < info.num_features && j < 64; j++) {
    check(tdm_model_feature_name(model, j) != NULL, "feature name");
    check(tdm_model_feature_type(model, j) != NULL, "feature type");
  }
  check(tdm_model_feature_name(model, info.num_features) == NULL,
        "no name past the last feature");
  score(model, info.num_features);
  tdm_model_free(model);
  return 0;
}
