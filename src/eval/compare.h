/*
 * compare.h - two recorded runs put side by side, as `tandem compare`
 * prints them and `tandem report` draws them: each run's output read back
 * through the run registry (and checked against its recorded SHA-256),
 * each score distribution, the shift from A to B (mean delta, PSI at A's
 * deciles), the rows whose decision changed, and the numeric metrics the
 * registry holds for each run. The definitions are spelled out in
 * `tandem compare --help` and docs/runs.md.
 */
#ifndef TDM_EVAL_COMPARE_H
#define TDM_EVAL_COMPARE_H

#include <stddef.h>

#include "../core/core.h"
#include "../store/registry.h"

/* What an empty PSI bin counts as, so that the logarithm stays finite, and
 * how many bins PSI has (cut at A's deciles). */
#define TDM__PSI_EPSILON 1e-4
#define TDM__PSI_BINS 10

/* The q-quantile of sorted[0..n) (n > 0), interpolating linearly between
 * order statistics (numpy's default, position q * (n - 1)). */
double tdm__quantile_sorted(const double *sorted, size_t n, double q);
/* Sorts ascending (NaN-free input). */
void tdm__sort_doubles(double *values, size_t n);
/* PSI of `live` fractions against `reference` fractions over n bins:
 * sum of (l - r) ln(l / r), an empty bin counting as TDM__PSI_EPSILON.
 * The one definition compare and drift share. */
double tdm__psi_of_fractions(const double *reference, const double *live,
                             size_t n);

/* At most this many numeric metrics are read from a run's metrics JSON. */
#define TDM__COMPARE_MAX_METRICS 256

/* One run's output, read back. */
typedef struct tdm__run_output {
  const char *path;   /* the run record's output_path: valid as long as it */
  char key_name[256]; /* "" when the output has no id column */
  size_t rows;
  double *scores;    /* NaN where the row has no score */
  size_t *keys;      /* offsets into text; SIZE_MAX: none */
  size_t *decisions; /* offsets into text; SIZE_MAX: none */
  int has_decision;
  tdm__buf text; /* NUL-separated key and decision strings */
  /* the columns read: "score" and "decision", or a shadow model's */
  const char *score_name, *decision_name;
  /* The features of `tandem batch --explain` JSON Lines output (each
   * line's "features" object, names from the first line): rows x
   * num_features values, NaN where missing. 0 and NULL otherwise. */
  size_t num_features;
  size_t *feature_names; /* offsets into text */
  double *features;
} tdm__run_output;

/*
 * Checks that run's output is still there and unchanged, then reads its
 * score column (and id and decision, when it has them, and with
 * WITH_FEATURES the features of a JSON Lines output: they can be many
 * times the size of the rest, so only callers that use them ask). Fails with
 * TDM_ENOTFOUND naming the file when it is gone, TDM_EINVAL when its
 * SHA-256 changed or it has no score column. Free with
 * tdm__run_output_free; on failure there is nothing to free.
 */
int tdm__run_output_read(const tdm__run_record *run, int with_features,
                         tdm__run_output *o, tdm_error *err);
void tdm__run_output_free(tdm__run_output *o);

/* The string at offset in o->text (a key or a decision); NULL for
 * SIZE_MAX. Valid as long as o. */
const char *tdm__run_output_text(const tdm__run_output *o, size_t offset);

/* How many rows of a run's output carry one decision. */
typedef struct tdm__decision_count {
  const char *decision; /* valid as long as the output */
  size_t count;
} tdm__decision_count;

/*
 * The decisions of o's rows, most frequent first (ties by name); rows
 * without a decision are not counted. *out (tdm__free it) holds *n
 * entries; NULL and 0 when o has no decision column.
 */
int tdm__decision_counts(const tdm__run_output *o, tdm__decision_count **out,
                         size_t *n, tdm_error *err);

/* A score distribution. Percentiles interpolate linearly between order
 * statistics (numpy's default); std is the population one. */
typedef struct tdm__score_distribution {
  size_t count, missing;
  double mean, std, min, max;
  double p[7];    /* p1 p5 p25 p50 p75 p95 p99 */
  double *sorted; /* the scores without NaN, ascending; tdm__free it */
} tdm__score_distribution;

/* "p1", "p5", ... "p99": the names of tdm__score_distribution.p. */
extern const char *const tdm__score_percentile_names[7];

/* Describes o's scores; all NaN when it has none. The caller frees
 * d->sorted with tdm__free. */
int tdm__score_describe(const tdm__run_output *o, tdm__score_distribution *d,
                        tdm_error *err);

/* One numeric metric of a run, by its dotted path in the metrics JSON. */
typedef struct tdm__compare_metric {
  char name[256];
  double value;
} tdm__compare_metric;

typedef struct tdm__comparison {
  const tdm__run_record *a, *b;
  const tdm__run_output *oa, *ob; /* &output_a, &output_b */
  tdm__score_distribution da, db;
  double psi, mean_delta;
  int by_key; /* rows paired by oa->key_name, else by position */
  size_t matched;
  const size_t *partner; /* partner[i]: B's row of A's row i, or SIZE_MAX */
  size_t scores_changed;
  double mean_abs_delta; /* over paired rows with both scores */
  int decisions;         /* both outputs have a decision column */
  size_t decisions_compared, decisions_changed;
  size_t examples; /* how many changed decisions to show */
  tdm__compare_metric *ma, *mb;
  size_t nma, nmb;
  /* With both outputs from `--explain` runs: for each of A's features
   * that B also has, the PSI of B's values against A's (10 bins at A's
   * deciles and one for missing values, as live drift computes it). */
  size_t num_feature_psi;
  const char **feature_psi_names; /* A's names; valid as long as c */
  double *feature_psi;
  /* storage */
  tdm__run_output output_a, output_b;
  size_t *partner_storage;
} tdm__comparison;

/*
 * Reads both runs' outputs and computes everything above into *c, which
 * keeps pointers to a and b (they must outlive it); the per-feature PSI
 * only WITH_FEATURES. On success the caller
 * frees c with tdm__comparison_free; on failure there is nothing to free.
 */
int tdm__compare_runs(const tdm__run_record *a, const tdm__run_record *b,
                      size_t examples, int with_features, tdm__comparison *c,
                      tdm_error *err);
void tdm__comparison_free(tdm__comparison *c);

/*
 * The same within one run whose pipeline has a shadow model (a live
 * run's decision log, or a batch output): A is the served score and
 * decision, B the shadow's (shadow_score, shadow_decision) on the same
 * rows. Metric deltas compare the served model's metrics of the run
 * (live.by_source.model.*, as `tandem eval` stores them for a live run)
 * with the shadow's (live.shadow.*). TDM_EINVAL when the output has no
 * shadow_score.
 */
int tdm__compare_shadow(const tdm__run_record *run, size_t examples,
                        tdm__comparison *c, tdm_error *err);

#endif /* TDM_EVAL_COMPARE_H */
