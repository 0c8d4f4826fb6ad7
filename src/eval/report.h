/*
 * report.h - `tandem report`'s HTML: one self-contained page (inline CSS
 * and inline SVG, no script, no network, no external font) about one run
 * or two: a summary with a verdict first, then who ran what on which
 * files, the score histograms, each run's decision counts, and when
 * labels or recorded metrics exist, ROC, precision-recall and calibration
 * plots with the metric table, confusion matrices, cumulative gain and
 * lift; for two runs also the comparison of src/eval/compare.c
 * (distributions, PSI, changed decisions, metric deltas, and the PSI of
 * each feature when both runs kept their features with --explain). Each
 * part of the page is a <section> with an id. Everything here only formats data
 * computed elsewhere: metrics.c computes every metric and curve point,
 * compare.c every comparison. Every string from data is HTML-escaped.
 */
#ifndef TDM_EVAL_REPORT_H
#define TDM_EVAL_REPORT_H

#include <stddef.h>

#include "../core/core.h"
#include "../store/registry.h"
#include "compare.h"
#include "metrics.h"

/* The ROC and PR curves are drawn from at most this many points (the first
 * and last kept exactly), so that the page stays small for any row count. */
#define TDM__REPORT_MAX_CURVE_POINTS 500

/* How a run was evaluated, when it was. */
typedef struct tdm__report_evaluation {
  /* Binary metrics: computed from labels, or read back from the metrics
   * JSON that `tandem eval --record` stored. NULL when neither. */
  const tdm__eval_binary_result *binary;
  /* The ROC/PR points (metrics.c); NULL when only stored metrics exist. */
  const tdm__eval_curve_point *curve;
  size_t curve_count;
  const char *source; /* says where the labels or metrics came from */
} tdm__report_evaluation;

typedef struct tdm__report_run {
  const tdm__run_record *run;
  const tdm__run_output *output;
  const tdm__score_distribution *distribution;
  tdm__report_evaluation evaluation;
} tdm__report_run;

typedef struct tdm__report_page {
  tdm__report_run runs[2];
  size_t num_runs;                   /* 1 or 2 */
  const tdm__comparison *comparison; /* with two runs */
  const char *generated_at;          /* RFC 3339 UTC */
  int log_scale; /* the score histogram's share axis in powers of ten */
} tdm__report_page;

/*
 * Appends the whole HTML page for r to out. Fails only with TDM_ENOMEM
 * (out then holds a partial page, which the caller discards).
 */
int tdm__report_html(const tdm__report_page *r, tdm__buf *out, tdm_error *err);

/*
 * Reads binary metrics back from the JSON form of `tandem eval` (a run's
 * stored metrics) into *out, which tdm__eval_binary_result_free releases.
 * *found is 0 (and there is nothing to free) when json is not that form:
 * another task, or metrics set by other means.
 */
int tdm__report_metrics_from_json(const char *json,
                                  tdm__eval_binary_result *out, int *found,
                                  tdm_error *err);

#endif /* TDM_EVAL_REPORT_H */
