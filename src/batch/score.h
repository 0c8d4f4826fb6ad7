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
/* A run: the three files and the public options (tdm_score_options, whose
 * fields include/tandem.h documents), so the CLI, the API and the runner
 * share one definition of what a run can be asked. */
typedef struct tdm__score_options {
  const char *model_path;
  const char *in_path;
  const char *out_path;
  tdm_score_options score;
} tdm__score_options;

typedef tdm_score_stats tdm__score_stats;

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
