/*
 * bench_contribs.c - the speed of feature contributions against XGBoost's
 * own C API on the same model, rows and thread count, in one run:
 *   batch:      rows/s of exact contributions over a matrix
 *               (tdm_model_predict_float32 with TDM_PREDICT_CONTRIBS vs
 *               XGBoosterPredictFromDMatrix with type 2, pred_contribs)
 *   single row: microseconds per call explaining one row, beside one
 *               unexplained score (the cost an explanation adds to a live
 *               answer), and XGBoost's contributions of one row
 * Before timing, every contribution (and Saabas' with type 3) is compared
 * bit for bit; the benchmark refuses to time values that differ. The rows
 * are seeded normal values with 5% missing, as bench/make_models.py
 * trains on. Prints a table; --json PATH writes the figures.
 *
 * usage: bench-contribs MODEL.json [--rows N] [--threads N] [--seconds S]
 *                       [--json PATH]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xgboost/c_api.h>

#include "tandem.h"
#include "bench_args.h"
#include "bench_score.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "bench-contribs: %s\n", what);
  exit(1);
}

#define XGB_CHECK(call) \
  if ((call) != 0) die(XGBGetLastError())

static uint64_t seed = 0x853C49E6748FEA9Bull;

static double uniform(void) {
  seed ^= seed << 13;
  seed ^= seed >> 7;
  seed ^= seed << 17;
  return ((double)(seed >> 11) + 0.5) / 9007199254740992.0;
}

/* XGBoost's contributions of `n` rows through a fresh DMatrix (XGBoost
 * caches a DMatrix's predictions); returns the seconds of the call only. */
static double xgboost_contribs(BoosterHandle booster, const float *rows,
                               size_t n, size_t nf, int type,
                               const float **out) {
  DMatrixHandle dmat;
  XGB_CHECK(XGDMatrixCreateFromMat(rows, n, nf, NAN, &dmat));
  char config[160];
  snprintf(config, sizeof config,
           "{\"type\": %d, \"training\": false, \"iteration_begin\": 0, "
           "\"iteration_end\": 0, \"strict_shape\": false}",
           type);
  const bst_ulong *shape;
  bst_ulong dim;
  double start = now();
  XGB_CHECK(
      XGBoosterPredictFromDMatrix(booster, dmat, config, &shape, &dim, out));
  double seconds = now() - start;
  XGDMatrixFree(dmat);
  return seconds;
}

/* Both libraries' contributions of the rows, bit for bit. */
static void compare(const tdm_model *model, BoosterHandle booster,
                    const float *rows, size_t n, size_t nf, int threads,
                    int approx) {
  int flags = TDM_PREDICT_CONTRIBS | (approx ? TDM_PREDICT_APPROX_CONTRIBS : 0);
  size_t width = tdm_model_output_width(model, flags);
  double *ours = malloc(n * width * sizeof *ours);
  const float *theirs;
  bench_predict(model, rows, n, nf, flags, ours, threads);
  xgboost_contribs(booster, rows, n, nf, approx ? 3 : 2, &theirs);
  for (size_t i = 0; i < n * width; i++) {
    float a = (float)ours[i];
    if (memcmp(&a, &theirs[i], 4) != 0) {
      fprintf(stderr, "%s value %zu: tandem %.9g, xgboost %.9g\n",
              approx ? "approx" : "exact", i, ours[i], (double)theirs[i]);
      die("contributions differ: not timing");
    }
  }
  free(ours);
}

int main(int argc, char **argv) {
  if (argc < 2)
    die("usage: bench-contribs MODEL.json [--rows N] [--threads N] "
        "[--seconds S] [--json PATH]");
  const char *model_path = argv[1];
  bench_args args = {.rows = 20000, .threads = 1, .seconds = 2.0};
  const char *why;
  if (bench_args_parse(argc, argv, 2, &args, &why) != 0) die(why);
  size_t n = args.rows;
  int threads = args.threads;
  double seconds = args.seconds;
  const char *json_path = args.json_path;

  tdm_model *model;
  tdm_error err;
  if (tdm_model_load(model_path, &model, &err) != TDM_OK) die(err.message);
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  if (!info.float32) die("the peer is XGBoost: give an XGBoost model");
  size_t nf = info.num_features;
  size_t width = tdm_model_output_width(model, TDM_PREDICT_CONTRIBS);
  float *rows32 = malloc(n * nf * sizeof *rows32);
  double *rows = malloc(n * nf * sizeof *rows);
  for (size_t i = 0; i < n * nf; i++) {
    /* Box-Muller normals; 5% missing. */
    double z = sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform());
    rows32[i] = uniform() < 0.05 ? NAN : (float)z;
    rows[i] = rows32[i];
  }

  BoosterHandle booster;
  XGB_CHECK(XGBoosterCreate(NULL, 0, &booster));
  XGB_CHECK(XGBoosterLoadModel(booster, model_path));
  char nthread[16];
  snprintf(nthread, sizeof nthread, "%d", threads);
  XGB_CHECK(XGBoosterSetParam(booster, "nthread", nthread));
  /* The leaf tables are built by the first request for contributions;
   * built here, outside the timings, and reported on their own. */
  double build_start = now();
  size_t table_bytes = tdm_model_contribs_bytes(model);
  double build_ms = (now() - build_start) * 1e3;
  size_t check_rows = n < 2000 ? n : 2000;
  compare(model, booster, rows32, check_rows, nf, threads, 0);
  compare(model, booster, rows32, check_rows, nf, threads, 1);

  /* Batch rows/s. */
  double *out = malloc(n * width * sizeof *out);
  double t0 = now();
  size_t reps = 0;
  do {
    bench_predict(model, rows32, n, nf, TDM_PREDICT_CONTRIBS, out, threads);
    reps++;
  } while (now() - t0 < seconds);
  double tandem_rps = (double)(n * reps) / (now() - t0);
  double xgb_total = 0.0;
  size_t xreps = 0;
  const float *theirs;
  do {
    xgb_total += xgboost_contribs(booster, rows32, n, nf, 2, &theirs);
    xreps++;
  } while (xgb_total < seconds);
  double xgb_rps = (double)(n * xreps) / xgb_total;

  /* Single rows on one thread: explained, unexplained, XGBoost's. */
  XGB_CHECK(XGBoosterSetParam(booster, "nthread", "1"));
  size_t singles = n < 5000 ? n : 5000;
  double one[4096];
  double *explained = malloc(width * sizeof *explained);
  size_t calls = 0;
  t0 = now();
  do {
    for (size_t r = 0; r < singles; r++, calls++)
      tdm_model_predict(model, rows + r * nf, 1, TDM_PREDICT_CONTRIBS,
                        explained);
  } while (now() - t0 < seconds);
  double explained_us = (now() - t0) / (double)calls * 1e6;
  calls = 0;
  t0 = now();
  do {
    for (size_t r = 0; r < singles; r++, calls++)
      tdm_model_predict(model, rows + r * nf, 1, 0, one);
  } while (now() - t0 < seconds);
  double plain_us = (now() - t0) / (double)calls * 1e6;
  xgb_total = 0.0;
  calls = 0;
  do {
    for (size_t r = 0; r < singles && xgb_total < seconds; r++, calls++)
      xgb_total +=
          xgboost_contribs(booster, rows32 + r * nf, 1, nf, 2, &theirs);
  } while (xgb_total < seconds);
  double xgb_single_us = xgb_total / (double)calls * 1e6;

  printf(
      "model %s: %zu trees, %zu features, max depth %zu; %zu rows, %d "
      "thread(s); contributions bit-identical to XGBoost's (exact and "
      "approx)\n",
      model_path, info.num_trees, nf, info.max_depth, n, threads);
  printf("%-34s %12s %12s %8s\n", "", "tandem", "xgboost", "ratio");
  printf("%-34s %12.0f %12.0f %7.2fx\n", "contribs rows/s", tandem_rps, xgb_rps,
         tandem_rps / xgb_rps);
  printf("%-34s %12.2f %12.2f %7.2fx\n", "one row's contribs us (lower)",
         explained_us, xgb_single_us, xgb_single_us / explained_us);
  printf("%-34s %12.2f %12s %7.1fx\n", "one row's score us (unexplained)",
         plain_us, "", explained_us / plain_us);
  printf("leaf tables: %.1f MiB, built in %.0f ms on the first request\n",
         (double)table_bytes / 1048576.0, build_ms);
  if (json_path != NULL) {
    FILE *fp = fopen(json_path, "w");
    if (fp == NULL) die("cannot write --json");
    fprintf(fp,
            "{\"model\": \"%s\", \"trees\": %zu, \"features\": %zu, "
            "\"max_depth\": %zu, \"rows\": %zu, \"threads\": %d, "
            "\"tandem_contribs_rows_per_s\": %.0f, "
            "\"xgboost_contribs_rows_per_s\": %.0f, \"ratio\": %.3f, "
            "\"tandem_explained_row_us\": %.3f, "
            "\"xgboost_explained_row_us\": %.3f, "
            "\"tandem_unexplained_row_us\": %.3f, \"table_bytes\": %zu, "
            "\"table_build_ms\": %.1f}\n",
            model_path, info.num_trees, nf, info.max_depth, n, threads,
            tandem_rps, xgb_rps, tandem_rps / xgb_rps, explained_us,
            xgb_single_us, plain_us, table_bytes, build_ms);
    fclose(fp);
  }
  XGBoosterFree(booster);
  tdm_model_free(model);
  free(rows32);
  free(rows);
  free(out);
  free(explained);
  return 0;
}
