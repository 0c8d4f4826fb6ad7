/*
 * score.h - the batch scoring runner behind `tandem score`: reads a
 * feature matrix (CSV with a header, or JSON Lines: one object per line,
 * keys naming features), matches its columns to the model's features by
 * name, scores it in chunks with constant memory, and writes
 * the scores atomically (a temporary file renamed into place at the end).
 */
#ifndef TDM_SCORE_H
#define TDM_SCORE_H

#include <stddef.h>

#include "tandem.h"

#define TDM__MAX_THREADS 256
#define TDM__MAX_KEEP 64

typedef struct tdm__score_options {
  const char *model_path;
  const char *in_path;
  const char *out_path;
  int margin;        /* write margins instead of transformed scores */
  /* Write feature contributions instead of scores: 1 TreeSHAP (XGBoost
   * pred_contribs, LightGBM pred_contrib), 2 Saabas (approx_contribs). */
  int contribs;
  int threads;       /* worker threads; 0 means all cores */
  size_t iterations; /* use only the first N boosting rounds; 0: all */
  /* --shard I/N as shard_index = I - 1 and shard_count = N (0 or 1: the
   * whole input). A shard scores the records whose first byte lies in the
   * I-th of N equal byte ranges of the input; only shard 1 writes the
   * header, so the N outputs concatenated in order are the unsharded
   * output, byte for byte. */
  unsigned shard_index, shard_count;
  const char **keep; /* input columns copied to the output first */
  size_t num_keep;
  const char *const *tags; /* "KEY=VALUE" labels for the run registry */
  size_t num_tags;
  /* The fast evaluator's kernel ("scalar", "avx2", "avx512"; NULL: the
   * widest that pays on this CPU). The CLI sets it from TANDEM_KERNEL. */
  const char *kernel;
  /* 1: exact contributions without the TreeSHAP leaf tables (the lanes
   * and the recursion only; tests). The CLI sets it from
   * TANDEM_SHAP_TABLES=off. The kernel above also picks the lanes'. */
  int shap_no_tables;
} tdm__score_options;

typedef struct tdm__score_stats {
  size_t rows;
  size_t columns;
  int threads; /* worker threads used */
  double seconds;
} tdm__score_stats;

int tdm__score_run(const tdm__score_options *options, tdm__score_stats *stats,
                   tdm_error *err);

/*
 * Scores rows on `threads` threads, each a contiguous range of rows, so the
 * output is the same for any thread count (small inputs stay on the
 * calling thread). Used by the runner and the benchmarks.
 */
void tdm__predict_parallel(const tdm_model *model, const double *rows64,
                           const float *rows32, size_t num_rows,
                           size_t num_features, int flags, double *out,
                           int threads);

#endif /* TDM_SCORE_H */
