/*
 * metrics.h - evaluation metrics over plain arrays of predictions and
 * labels, for `tandem eval`: binary classification (ROC AUC, average
 * precision, log loss, Brier score, KS, per-threshold confusion matrices,
 * a uniform calibration curve), multiclass classification (accuracy, log
 * loss, per-class and macro F1) and regression (RMSE, MAE, MAPE, R^2).
 * Every definition follows scikit-learn 1.2 (the function each mirrors is
 * named beside its field), including its edge cases; where sklearn raises
 * (one class only for ROC AUC) the value is NaN and the result says so.
 * No I/O here: the caller reads files and names lines in its messages.
 *
 * Numbers: counts are exact integers; ROC AUC and KS are computed from
 * integer counts and divided once, so they are the correctly rounded exact
 * values; means use compensated (Neumaier) summation. sklearn sums in
 * float64 in its own order (numpy's pairwise sums), so the two agree to
 * about 1e-15 relative, not bit for bit; the tests allow 1e-9.
 */
#ifndef TDM_EVAL_METRICS_H
#define TDM_EVAL_METRICS_H

#include <stddef.h>

#include "../core/core.h"

/* The confusion matrix and its ratios at one threshold: a row is predicted
 * positive when its score is >= the threshold. An empty denominator gives
 * 0, as sklearn's zero_division="warn" does, and sets the *_undefined flag
 * so that the caller can say so. */
typedef struct tdm__eval_threshold {
  double threshold;
  size_t tn, fp, fn, tp;
  double precision;        /* tp / (tp + fp) */
  double recall;           /* tp / (tp + fn) */
  double f1;               /* 2 p r / (p + r), 0 when p + r == 0 */
  double accuracy;         /* (tp + tn) / n */
  int precision_undefined; /* no row predicted positive */
  int recall_undefined;    /* no positive label */
  int f1_undefined;        /* precision + recall == 0 */
} tdm__eval_threshold;

/* One non-empty bin of the calibration curve
 * (sklearn.calibration.calibration_curve, strategy="uniform"). */
typedef struct tdm__eval_bin {
  size_t index;             /* 0 .. bins-1 */
  double lower, upper;      /* edges: np.linspace(0, 1, bins + 1) */
  size_t count;             /* rows in the bin */
  double mean_predicted;    /* prob_pred */
  double fraction_positive; /* prob_true */
} tdm__eval_bin;

typedef struct tdm__eval_binary_result {
  size_t count, positives, negatives;
  double base_rate; /* positives / count */
  /* NaN when undefined: ROC AUC and KS need both classes, average
   * precision needs a positive label. */
  double roc_auc;           /* roc_auc_score */
  double average_precision; /* average_precision_score: step function */
  double ks;                /* max |TPR - FPR| over all thresholds */
  /* NaN unless every score is in [0, 1] (`probabilities`). */
  int probabilities;
  double log_loss; /* log_loss, probabilities clipped to [eps, 1 - eps] */
  double brier;    /* brier_score_loss */
  tdm__eval_threshold *thresholds; /* num_thresholds, in the given order */
  size_t num_thresholds;
  tdm__eval_bin *bins; /* the non-empty ones, in order; none unless
                          `probabilities` */
  size_t num_bins;
  size_t bins_requested;
} tdm__eval_binary_result;

/*
 * Binary metrics of n scores against labels that are each 0 or 1. Scores
 * must be finite; thresholds (nt of them, finite) say where to cut; bins
 * (>= 1) is the calibration curve's number of bins. O(n log n) time
 * (one sort) and O(n) memory. On success *out holds arrays that
 * tdm__eval_binary_result_free releases; on failure there is nothing to
 * free. Fails with TDM_EINVAL when n == 0 or an input is invalid (the
 * message names the 1-based row), TDM_ENOMEM when out of memory.
 */
int tdm__eval_binary(const double *scores, const double *labels, size_t n,
                     const double *thresholds, size_t nt, size_t bins,
                     tdm__eval_binary_result *out, tdm_error *err);
void tdm__eval_binary_result_free(tdm__eval_binary_result *r);

/* One point of the ROC and precision-recall curves: the counts of rows
 * called positive when every row with a score >= threshold is. From them
 * FPR = fp / negatives, TPR = recall = tp / positives and precision =
 * tp / (tp + fp); the last point has tp = positives, fp = negatives. */
typedef struct tdm__eval_curve_point {
  double threshold; /* +infinity for the first point, (0, 0) */
  size_t tp, fp;
} tdm__eval_curve_point;

/*
 * The points of the ROC and precision-recall curves of n finite scores
 * against 0/1 labels: (0, 0) first, then one per distinct score in
 * descending order, as sklearn's _binary_clf_curve (without roc_curve's
 * dropping of collinear points). They come from the same walk that
 * computes ROC AUC, average precision and KS in tdm__eval_binary, so the
 * curves drawn and the numbers printed cannot disagree. On success
 * *points holds *count entries that the caller frees with tdm__free.
 */
int tdm__eval_binary_curve(const double *scores, const double *labels, size_t n,
                           tdm__eval_curve_point **points, size_t *count,
                           tdm_error *err);

/*
 * Cumulative gain at a share of the rows: the index of the first of
 * count curve points (tdm__eval_binary_curve's, highest scores first)
 * whose rows called positive, tp + fp, are at least part/parts of all
 * rows. Ties stay together, so the group can be larger than the share.
 * The gain there is tp / positives and the lift the gain divided by the
 * group's share of the rows.
 */
size_t tdm__eval_curve_at_share(const tdm__eval_curve_point *points,
                                size_t count, size_t part, size_t parts);

/* One class of a multiclass evaluation (precision_recall_fscore_support
 * with average=None). */
typedef struct tdm__eval_class {
  size_t support;   /* rows whose label is this class */
  size_t predicted; /* rows whose argmax is this class */
  size_t true_positives;
  double precision, recall, f1; /* 0 for an empty denominator */
} tdm__eval_class;

typedef struct tdm__eval_multiclass_result {
  size_t count, classes;
  double accuracy;   /* accuracy_score of the argmax (ties: lowest index) */
  int probabilities; /* every score in [0, 1]; else log_loss is NaN */
  double log_loss;   /* log_loss(labels=range(k)): clipped, renormalized */
  /* f1_score(average="macro") without labels=: the mean over the classes
   * that occur in the labels or the predictions. */
  double macro_f1;
  size_t macro_classes;       /* how many classes that mean is over */
  tdm__eval_class *per_class; /* `classes` of them */
} tdm__eval_multiclass_result;

/*
 * Multiclass metrics: `scores` is n x k row-major (k >= 2), one score per
 * class; labels are class indices 0..k-1. The same contract as
 * tdm__eval_binary; free with tdm__eval_multiclass_result_free.
 */
int tdm__eval_multiclass(const double *scores, const double *labels, size_t n,
                         size_t k, tdm__eval_multiclass_result *out,
                         tdm_error *err);
void tdm__eval_multiclass_result_free(tdm__eval_multiclass_result *r);

typedef struct tdm__eval_regression_result {
  size_t count;
  double mse;  /* mean_squared_error */
  double rmse; /* its square root (mean_squared_error(squared=False)) */
  double mae;  /* mean_absolute_error */
  double mape; /* mean_absolute_percentage_error: |p - y| / max(|y|, eps) */
  double r2;   /* r2_score: 1 when y is constant and fitted exactly, 0 when
                  y is constant and not (sklearn's force_finite) */
  int r2_constant_labels; /* the labels have no variance */
} tdm__eval_regression_result;

/* Regression metrics of n finite predictions against finite labels.
 * Allocates nothing. */
int tdm__eval_regression(const double *predictions, const double *labels,
                         size_t n, tdm__eval_regression_result *out,
                         tdm_error *err);

#endif /* TDM_EVAL_METRICS_H */
