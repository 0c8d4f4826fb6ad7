/*
 * bench_predict.c - tandem's scoring speed against XGBoost's own C API on
 * the same model, the same rows and the same thread count, in one run:
 *   batch:      rows/s scoring a whole matrix (tdm_model_predict split over
 *               threads vs XGBoosterPredictFromDMatrix with nthread)
 *   single row: microseconds per call scoring one row at a time
 *               (tdm_model_predict vs XGBoosterPredictFromDense)
 * Before timing, every output is compared bit for bit; the benchmark
 * refuses to report speed for scores that differ. Prints a table and
 * writes the figures as JSON (--json PATH).
 *
 * A LightGBM model has no peer library linked here: its fast layout is
 * measured against tandem's own reference walk on the same rows and
 * threads (the model loaded twice, one with TANDEM_KERNEL's "reference"),
 * in alternating rounds so that a busy machine slows both alike.
 *
 * usage: bench-predict MODEL.json ROWS.csv [--rows N] [--threads N]
 *                      [--seconds S] [--json PATH]
 */
#include <math.h>
#include <pthread.h>
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
  fprintf(stderr, "bench-predict: %s\n", what);
  exit(1);
}

#define XGB_CHECK(call) \
  if ((call) != 0) die(XGBGetLastError())

/* tandem scores the same float32 matrix XGBoost gets. */
static void tandem_batch(const tdm_model *model, const float *rows32, size_t n,
                         size_t nf, double *out, int threads) {
  bench_predict(model, rows32, n, nf, 0, out, threads);
}

/* CPU seconds used by the process (every thread). */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Rows per CPU second of `model` over the rows, repeated for `seconds`
 * of CPU time: on a shared, busy machine the time the process did not
 * run does not count against either side. */
static double rows_per_cpu_second(const tdm_model *model, const double *rows,
                                  size_t n, size_t nf, double *out,
                                  int threads, double seconds) {
  double t0 = cpu_now();
  size_t reps = 0;
  do {
    tdm__predict_parallel(model, rows, NULL, n, nf, 0, out, threads);
    reps++;
  } while (cpu_now() - t0 < seconds);
  return (double)n * (double)reps / (cpu_now() - t0);
}

/* The LightGBM mode: fast layout vs reference walk, same bits first. */
static int layout_vs_reference(const char *model_path, const double *rows,
                               size_t n, int threads, double seconds) {
  tdm_model *fast, *reference;
  tdm_error err;
  if (tdm_model_load(model_path, &fast, &err) != TDM_OK ||
      tdm_model_load(model_path, &reference, &err) != TDM_OK)
    die(err.message);
  tdm__fast_use_kernel(reference, "reference");
  if (getenv("TANDEM_KERNEL") != NULL)
    tdm__fast_use_kernel(fast, getenv("TANDEM_KERNEL"));
  size_t nf = fast->num_features, width = tdm_model_output_width(fast, 0);
  double *a = malloc(n * width * sizeof *a), *b = malloc(n * width * sizeof *b);
  tdm__predict_parallel(fast, rows, NULL, n, nf, 0, a, threads);
  tdm__predict_parallel(reference, rows, NULL, n, nf, 0, b, threads);
  for (size_t i = 0; i < n * width; i++)
    if (memcmp(&a[i], &b[i], sizeof *a) != 0 && !(isnan(a[i]) && isnan(b[i]))) {
      fprintf(stderr, "value %zu differs: layout %.17g, reference %.17g\n", i,
              a[i], b[i]);
      die("scores differ: not timing");
    }
  double best_fast = 0.0, best_reference = 0.0;
  for (int round = 0; round < 3; round++) {
    double f = rows_per_cpu_second(fast, rows, n, nf, a, threads, seconds / 3);
    double r =
        rows_per_cpu_second(reference, rows, n, nf, b, threads, seconds / 3);
    if (f > best_fast) best_fast = f;
    if (r > best_reference) best_reference = r;
  }
  printf("model %s: %zu trees, %zu features; %zu rows, %d thread(s); kernel "
         "%s, layout %zu bytes\n",
         model_path, fast->num_trees, nf, n, threads, tdm__fast_kernel(fast),
         tdm__fast_bytes(fast));
  printf("%-28s %14s %14s %8s\n", "", "layout", "reference", "ratio");
  printf("%-28s %14.0f %14.0f %7.2fx\n", "rows per CPU s (best of 3)", best_fast,
         best_reference, best_fast / best_reference);
  free(a);
  free(b);
  tdm_model_free(fast);
  tdm_model_free(reference);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3)
    die("usage: bench-predict MODEL.json ROWS.csv [--rows N] "
        "[--threads N] [--seconds S] [--json PATH]");
  const char *model_path = argv[1], *rows_path = argv[2];
  bench_args args = {.rows = 200000, .threads = 1, .seconds = 2.0};
  const char *why;
  if (bench_args_parse(argc, argv, 3, &args, &why) != 0) die(why);
  size_t want_rows = args.rows;
  int threads = args.threads;
  double seconds = args.seconds;
  const char *json_path = args.json_path;

  tdm_model *model;
  tdm_error err;
  if (tdm_model_load(model_path, &model, &err) != TDM_OK) die(err.message);
  /* Kernels are compared with TANDEM_KERNEL=scalar|avx2|avx512. */
  if (getenv("TANDEM_KERNEL") != NULL &&
      tdm_model_use_kernel(model, getenv("TANDEM_KERNEL"), &err) != TDM_OK)
    fprintf(stderr, "bench-predict: %s\n", err.message);
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  size_t nf = info.num_features, width = tdm_model_output_width(model, 0);
  size_t base_rows;
  double *base = bench_read_rows(rows_path, nf, &base_rows, &why);
  if (base == NULL) die(why);
  /* Repeat the sample to the wanted size. */
  size_t n = want_rows;
  double *rows = malloc(n * nf * sizeof *rows);
  float *rows32 = malloc(n * nf * sizeof *rows32);
  for (size_t r = 0; r < n; r++)
    for (size_t f = 0; f < nf; f++) {
      rows[r * nf + f] = base[(r % base_rows) * nf + f];
      rows32[r * nf + f] = (float)rows[r * nf + f];
    }
  if (info.format == TDM_FORMAT_LIGHTGBM_TEXT) {
    tdm_model_free(model);
    int rc = layout_vs_reference(model_path, rows, n, threads, seconds);
    free(base);
    free(rows);
    free(rows32);
    return rc;
  }
  if (!info.float32) die("give an XGBoost or a LightGBM model");

  BoosterHandle booster;
  DMatrixHandle dmat;
  XGB_CHECK(XGBoosterCreate(NULL, 0, &booster));
  XGB_CHECK(XGBoosterLoadModel(booster, model_path));
  char nthread[16];
  snprintf(nthread, sizeof nthread, "%d", threads);
  XGB_CHECK(XGBoosterSetParam(booster, "nthread", nthread));
  XGB_CHECK(XGDMatrixCreateFromMat(rows32, n, nf, NAN, &dmat));
  const char *config =
      "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
      "\"iteration_end\": 0, \"strict_shape\": false}";

  /* Same answers first. */
  double *ours = malloc(n * width * sizeof *ours);
  tandem_batch(model, rows32, n, nf, ours, threads);
  const bst_ulong *shape;
  bst_ulong dim;
  const float *theirs;
  XGB_CHECK(XGBoosterPredictFromDMatrix(booster, dmat, config, &shape, &dim,
                                        &theirs));
  for (size_t i = 0; i < n * width; i++) {
    float a = (float)ours[i];
    if (memcmp(&a, &theirs[i], 4) != 0 && !(isnan(a) && isnan(theirs[i]))) {
      fprintf(stderr, "value %zu differs: tandem %.9g, xgboost %.9g\n", i,
              ours[i], (double)theirs[i]);
      die("scores differ: not timing");
    }
  }

  /* Batch: repeat whole-matrix scoring for about `seconds`. */
  double t0 = now(), tandem_batch_s;
  size_t reps = 0;
  do {
    tandem_batch(model, rows32, n, nf, ours, threads);
    reps++;
  } while (now() - t0 < seconds);
  tandem_batch_s = (now() - t0) / (double)reps;
  /* XGBoost caches a DMatrix's predictions, so each repetition scores a
   * fresh DMatrix; only the prediction call is timed. */
  double xgb_total = 0.0;
  size_t xreps = 0;
  do {
    DMatrixHandle fresh;
    XGB_CHECK(XGDMatrixCreateFromMat(rows32, n, nf, NAN, &fresh));
    double start = now();
    XGB_CHECK(XGBoosterPredictFromDMatrix(booster, fresh, config, &shape, &dim,
                                          &theirs));
    xgb_total += now() - start;
    XGDMatrixFree(fresh);
    xreps++;
  } while (xgb_total < seconds);
  double xgb_dmatrix_s = xgb_total / (double)xreps;
  /* XGBoost's in-place prediction on the dense matrix (no DMatrix). */
  char batch_interface[256];
  snprintf(batch_interface, sizeof batch_interface,
           "{\"data\": [%llu, true], \"shape\": [%zu, %zu], \"typestr\": "
           "\"<f4\", \"version\": 3}",
           (unsigned long long)(uintptr_t)rows32, n, nf);
  const char *inplace_config =
      "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
      "\"iteration_end\": 0, \"strict_shape\": false, \"missing\": NaN, "
      "\"cache_id\": 0}";
  t0 = now();
  xreps = 0;
  do {
    XGB_CHECK(XGBoosterPredictFromDense(booster, batch_interface,
                                        inplace_config, NULL, &shape, &dim,
                                        &theirs));
    xreps++;
  } while (now() - t0 < seconds);
  double xgb_inplace_s = (now() - t0) / (double)xreps;
  /* The ratio is against XGBoost's faster call. */
  double xgb_batch_s =
      xgb_inplace_s < xgb_dmatrix_s ? xgb_inplace_s : xgb_dmatrix_s;

  /* Single row, one call per row, on one thread. */
  XGB_CHECK(XGBoosterSetParam(booster, "nthread", "1"));
  size_t singles = n < 20000 ? n : 20000;
  double one[4096];
  t0 = now();
  size_t calls = 0;
  do {
    for (size_t r = 0; r < singles; r++, calls++)
      tdm_model_predict(model, rows + r * nf, 1, 0, one);
  } while (now() - t0 < seconds);
  double tandem_single_us = (now() - t0) / (double)calls * 1e6;
  char interface[256];
  const char *dense_config =
      "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
      "\"iteration_end\": 0, \"strict_shape\": false, \"missing\": NaN, "
      "\"cache_id\": 0}";
  t0 = now();
  size_t xcalls = 0;
  do {
    for (size_t r = 0; r < singles; r++, xcalls++) {
      snprintf(interface, sizeof interface,
               "{\"data\": [%llu, true], \"shape\": [1, %zu], \"typestr\": "
               "\"<f4\", \"version\": 3}",
               (unsigned long long)(uintptr_t)(rows32 + r * nf), nf);
      XGB_CHECK(XGBoosterPredictFromDense(booster, interface, dense_config,
                                          NULL, &shape, &dim, &theirs));
    }
  } while (now() - t0 < seconds);
  double xgb_single_us = (now() - t0) / (double)xcalls * 1e6;

  double tandem_rps = (double)n / tandem_batch_s,
         xgb_rps = (double)n / xgb_batch_s;
  printf(
      "model %s: %zu trees, %zu features, max depth %zu; %zu rows, %d "
      "thread(s); kernel %s, %zu bytes of layout (%.1f per node)\n",
      model_path, info.num_trees, nf, info.max_depth, n, threads,
      info.kernel, info.layout_bytes,
      (double)info.layout_bytes / (double)info.num_nodes);
  printf("%-28s %14s %14s %8s\n", "", "tandem", "xgboost", "ratio");
  printf("%-28s %14.0f %14.0f %7.2fx\n", "batch rows/s", tandem_rps, xgb_rps,
         tandem_rps / xgb_rps);
  printf("%-28s %14s %14.0f\n", "  xgboost via DMatrix", "",
         (double)n / xgb_dmatrix_s);
  printf("%-28s %14s %14.0f\n", "  xgboost in-place dense", "",
         (double)n / xgb_inplace_s);
  printf("%-28s %14.2f %14.2f %7.2fx\n", "single row us/call (lower)",
         tandem_single_us, xgb_single_us, xgb_single_us / tandem_single_us);
  if (json_path != NULL) {
    FILE *fp = fopen(json_path, "w");
    if (fp == NULL) die("cannot write --json");
    fprintf(fp,
            "{\"model\": \"%s\", \"trees\": %zu, \"features\": %zu, \"rows\": "
            "%zu, \"threads\": %d, \"tandem_batch_rows_per_s\": %.0f, "
            "\"xgboost_batch_rows_per_s\": %.0f, \"batch_ratio\": %.3f, "
            "\"tandem_single_row_us\": %.3f, \"xgboost_single_row_us\": %.3f, "
            "\"single_row_speedup\": %.3f, \"kernel\": \"%s\", "
            "\"model_bytes\": %zu, \"bytes_per_node\": %.2f, "
            "\"max_depth\": %zu}\n",
            model_path, info.num_trees, nf, n, threads, tandem_rps, xgb_rps,
            tandem_rps / xgb_rps, tandem_single_us, xgb_single_us,
            xgb_single_us / tandem_single_us, info.kernel,
            info.layout_bytes,
            (double)info.layout_bytes / (double)info.num_nodes,
            info.max_depth);
    fclose(fp);
  }
  XGDMatrixFree(dmat);
  XGBoosterFree(booster);
  tdm_model_free(model);
  free(base);
  free(rows);
  free(rows32);
  free(ours);
  return 0;
}
