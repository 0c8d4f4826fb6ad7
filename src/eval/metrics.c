/*
 * metrics.c - the evaluation metrics of metrics.h: pure functions over
 * arrays, each written to give scikit-learn 1.2's value (the sklearn
 * function is named above each computation). Ranking metrics sort the
 * scores once and walk the groups of equal scores, which is how sklearn's
 * _binary_clf_curve treats ties: one ROC or precision-recall point per
 * distinct score.
 */
#include "metrics.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Neumaier's compensated sum: the error of adding n terms stays about one
 * rounding of the total instead of growing with n, so a mean over ten
 * million rows is as accurate as over ten. */
typedef struct compensated_sum {
  double sum;
  double compensation;
} compensated_sum;

static void sum_add(compensated_sum *s, double x) {
  double t = s->sum + x;
  if (fabs(s->sum) >= fabs(x))
    s->compensation += (s->sum - t) + x;
  else
    s->compensation += (x - t) + s->sum;
  s->sum = t;
}

static double sum_value(const compensated_sum *s) {
  return s->sum + s->compensation;
}

/* sklearn's log_loss clips to [eps, 1 - eps] with eps the float64 machine
 * epsilon (eps="auto"), as np.clip does. */
static double clip_probability(double p) {
  const double lo = DBL_EPSILON, hi = 1.0 - DBL_EPSILON;
  return p < lo ? lo : p > hi ? hi : p;
}

/* Precision, recall and F1 from counts, as precision_recall_fscore_support
 * computes them: an empty denominator gives 0 (zero_division="warn"), and
 * F1 is (1 + beta^2) * p * r / (beta^2 * p + r) with beta = 1, evaluated in
 * that order. */
static void prf(size_t tp, size_t predicted, size_t actual, double *precision,
                double *recall, double *f1) {
  *precision = predicted ? (double)tp / (double)predicted : 0.0;
  *recall = actual ? (double)tp / (double)actual : 0.0;
  double denominator = *precision + *recall;
  *f1 = denominator == 0.0 ? 0.0 : 2.0 * *precision * *recall / denominator;
}

typedef struct scored {
  double score;
  int positive;
} scored;

/* Descending by score; equal scores form one group, in any order. */
static int by_score_descending(const void *a, const void *b) {
  double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
  return (x < y) - (x > y);
}

/* The calibration bin of a probability p: np.searchsorted(edges[1:-1], p)
 * with side="left", i.e. the number of inner edges strictly below p, where
 * edge j is j * (1 / bins) as np.linspace(0, 1, bins + 1) computes it. */
static double bin_edge(size_t j, size_t bins) {
  return j >= bins ? 1.0 : (double)j * (1.0 / (double)bins);
}

static size_t bin_of(double p, size_t bins) {
  double guess = floor(p * (double)bins);
  size_t b = guess <= 0                    ? 0
             : guess >= (double)(bins - 1) ? bins - 1
                                           : (size_t)guess;
  while (b > 0 && !(bin_edge(b, bins) < p)) b--;
  while (b + 1 < bins && bin_edge(b + 1, bins) < p) b++;
  return b;
}

void tdm__eval_binary_result_free(tdm__eval_binary_result *r) {
  if (r == NULL) return;
  tdm__free(r->thresholds);
  tdm__free(r->bins);
  r->thresholds = NULL;
  r->bins = NULL;
}

/* The ranking metrics from one walk over the scores in descending order.
 * After each group of equal scores, (fp, tp) is the next ROC point.
 *   ROC AUC: the trapezoids between consecutive points, summed as integers
 *     (twice each area: dn * (2 tp_before + dp)) and divided once by
 *     2 P N. sklearn's roc_curve drops collinear points first, which does
 *     not change the area, and np.trapz sums the same trapezoids in float.
 *   Average precision: the step function sum over groups of
 *     (R_i - R_{i-1}) * P_i = dp / P * tp / (tp + fp), with no
 *     interpolation between points (average_precision_score).
 *   KS: max |tp / P - fp / N| = max |tp N - fp P| / (P N), in integers.
 * When points is not NULL, every (fp, tp) point goes there too, (0, 0)
 * first, with *num_points their count: tdm__eval_binary_curve. */
static int ranking_metrics(const double *scores, const double *labels, size_t n,
                           tdm__eval_binary_result *out,
                           tdm__eval_curve_point *points, size_t *num_points,
                           tdm_error *err) {
  scored *rows = tdm__malloc(n * sizeof *rows);
  if (rows == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    rows[i].score = scores[i];
    rows[i].positive = labels[i] == 1.0;
  }
  qsort(rows, n, sizeof *rows, by_score_descending);
  uint64_t positives = out->positives, negatives = out->negatives;
  uint64_t tp = 0, fp = 0, twice_area = 0, ks_numerator = 0;
  compensated_sum precision_sum = {0, 0};
  if (points != NULL) {
    points[0].threshold = INFINITY;
    points[0].tp = points[0].fp = 0;
    *num_points = 1;
  }
  for (size_t i = 0; i < n;) {
    size_t j = i;
    uint64_t dp = 0, dn = 0;
    for (; j < n && rows[j].score == rows[i].score; j++) {
      if (rows[j].positive)
        dp++;
      else
        dn++;
    }
    twice_area += dn * (2 * tp + dp);
    tp += dp;
    fp += dn;
    if (dp > 0)
      sum_add(&precision_sum, (double)dp * ((double)tp / (double)(tp + fp)));
    if (points != NULL) {
      tdm__eval_curve_point *point = &points[(*num_points)++];
      point->threshold = rows[i].score;
      point->tp = (size_t)tp;
      point->fp = (size_t)fp;
    }
    uint64_t a = tp * negatives, b = fp * positives;
    uint64_t distance = a > b ? a - b : b - a;
    if (distance > ks_numerator) ks_numerator = distance;
    i = j;
  }
  tdm__free(rows);
  double pn = (double)positives * (double)negatives;
  int both = positives > 0 && negatives > 0;
  out->roc_auc = both ? (double)twice_area / (2.0 * pn) : NAN;
  out->ks = both ? (double)ks_numerator / pn : NAN;
  out->average_precision =
      positives > 0 ? sum_value(&precision_sum) / (double)positives : NAN;
  return TDM_OK;
}

int tdm__eval_binary(const double *scores, const double *labels, size_t n,
                     const double *thresholds, size_t nt, size_t bins,
                     tdm__eval_binary_result *out, tdm_error *err) {
  memset(out, 0, sizeof *out);
  if (n == 0) return tdm__fail(err, TDM_EINVAL, "no rows to evaluate");
  if (bins == 0)
    return tdm__fail(err, TDM_EINVAL, "the calibration needs at least 1 bin");
  out->probabilities = 1;
  for (size_t i = 0; i < n; i++) {
    if (labels[i] != 0.0 && labels[i] != 1.0)
      return tdm__fail(err, TDM_EINVAL,
                       "row %zu: a binary label must be 0 or 1, not %.17g",
                       i + 1, labels[i]);
    if (!isfinite(scores[i]))
      return tdm__fail(err, TDM_EINVAL, "row %zu: the score is %g", i + 1,
                       scores[i]);
    if (labels[i] == 1.0) out->positives++;
    if (!(scores[i] >= 0.0 && scores[i] <= 1.0)) out->probabilities = 0;
  }
  for (size_t t = 0; t < nt; t++)
    if (!isfinite(thresholds[t]))
      return tdm__fail(err, TDM_EINVAL, "threshold %zu is not finite", t + 1);
  out->count = n;
  out->negatives = n - out->positives;
  out->base_rate = (double)out->positives / (double)n;
  out->bins_requested = bins;

  int rc = ranking_metrics(scores, labels, n, out, NULL, NULL, err);
  if (rc != TDM_OK) return rc;

  /* log_loss and brier_score_loss: only for probabilities (sklearn's
   * brier_score_loss refuses others, and log loss of a margin means
   * nothing). log_loss makes the column pair [1 - p, p] from the clipped p
   * and divides both by their float sum before the log. */
  out->log_loss = out->brier = NAN;
  if (out->probabilities) {
    compensated_sum loss = {0, 0}, squares = {0, 0};
    for (size_t i = 0; i < n; i++) {
      double p = clip_probability(scores[i]), q = 1.0 - p, total = q + p;
      sum_add(&loss, -log((labels[i] == 1.0 ? p : q) / total));
      double d = labels[i] - scores[i];
      sum_add(&squares, d * d);
    }
    out->log_loss = sum_value(&loss) / (double)n;
    out->brier = sum_value(&squares) / (double)n;
  }

  out->thresholds = tdm__calloc(nt ? nt : 1, sizeof *out->thresholds);
  if (out->thresholds == NULL) {
    tdm__eval_binary_result_free(out);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  out->num_thresholds = nt;
  for (size_t t = 0; t < nt; t++) {
    tdm__eval_threshold *m = &out->thresholds[t];
    m->threshold = thresholds[t];
    for (size_t i = 0; i < n; i++) {
      int predicted = scores[i] >= thresholds[t], actual = labels[i] == 1.0;
      if (predicted && actual)
        m->tp++;
      else if (predicted)
        m->fp++;
      else if (actual)
        m->fn++;
      else
        m->tn++;
    }
    prf(m->tp, m->tp + m->fp, m->tp + m->fn, &m->precision, &m->recall, &m->f1);
    m->precision_undefined = m->tp + m->fp == 0;
    m->recall_undefined = m->tp + m->fn == 0;
    m->f1_undefined = m->precision + m->recall == 0.0;
    m->accuracy = (double)(m->tp + m->tn) / (double)n;
  }

  /* calibration_curve(strategy="uniform"): per non-empty bin, the mean
   * score and the fraction of positives. */
  if (out->probabilities) {
    size_t *count = tdm__calloc(bins, sizeof *count);
    size_t *positive = tdm__calloc(bins, sizeof *positive);
    compensated_sum *sums = tdm__calloc(bins, sizeof *sums);
    out->bins = tdm__calloc(bins, sizeof *out->bins);
    if (count == NULL || positive == NULL || sums == NULL ||
        out->bins == NULL) {
      tdm__free(count);
      tdm__free(positive);
      tdm__free(sums);
      tdm__eval_binary_result_free(out);
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
      size_t b = bin_of(scores[i], bins);
      count[b]++;
      positive[b] += labels[i] == 1.0;
      sum_add(&sums[b], scores[i]);
    }
    for (size_t b = 0; b < bins; b++) {
      if (count[b] == 0) continue;
      tdm__eval_bin *bin = &out->bins[out->num_bins++];
      bin->index = b;
      bin->lower = bin_edge(b, bins);
      bin->upper = bin_edge(b + 1, bins);
      bin->count = count[b];
      bin->mean_predicted = sum_value(&sums[b]) / (double)count[b];
      bin->fraction_positive = (double)positive[b] / (double)count[b];
    }
    tdm__free(count);
    tdm__free(positive);
    tdm__free(sums);
  }
  return TDM_OK;
}

int tdm__eval_binary_curve(const double *scores, const double *labels, size_t n,
                           tdm__eval_curve_point **points, size_t *count,
                           tdm_error *err) {
  *points = NULL;
  *count = 0;
  if (n == 0) return tdm__fail(err, TDM_EINVAL, "no rows to evaluate");
  tdm__eval_binary_result counts;
  memset(&counts, 0, sizeof counts);
  for (size_t i = 0; i < n; i++) {
    if (labels[i] != 0.0 && labels[i] != 1.0)
      return tdm__fail(err, TDM_EINVAL,
                       "row %zu: a binary label must be 0 or 1, not %.17g",
                       i + 1, labels[i]);
    if (!isfinite(scores[i]))
      return tdm__fail(err, TDM_EINVAL, "row %zu: the score is %g", i + 1,
                       scores[i]);
    if (labels[i] == 1.0) counts.positives++;
  }
  counts.negatives = n - counts.positives;
  tdm__eval_curve_point *list = tdm__malloc((n + 1) * sizeof *list);
  if (list == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  int rc = ranking_metrics(scores, labels, n, &counts, list, count, err);
  if (rc != TDM_OK) {
    tdm__free(list);
    *count = 0;
    return rc;
  }
  *points = list;
  return TDM_OK;
}

void tdm__eval_multiclass_result_free(tdm__eval_multiclass_result *r) {
  if (r == NULL) return;
  tdm__free(r->per_class);
  r->per_class = NULL;
}

int tdm__eval_multiclass(const double *scores, const double *labels, size_t n,
                         size_t k, tdm__eval_multiclass_result *out,
                         tdm_error *err) {
  memset(out, 0, sizeof *out);
  if (n == 0) return tdm__fail(err, TDM_EINVAL, "no rows to evaluate");
  if (k < 2)
    return tdm__fail(err, TDM_EINVAL,
                     "multiclass needs at least 2 score columns, not %zu", k);
  out->probabilities = 1;
  for (size_t i = 0; i < n; i++) {
    double y = labels[i];
    if (!(y >= 0 && y < (double)k && y == floor(y)))
      return tdm__fail(err, TDM_EINVAL,
                       "row %zu: a label must be a class index from 0 to %zu, "
                       "not %.17g",
                       i + 1, k - 1, y);
    for (size_t j = 0; j < k; j++) {
      double s = scores[i * k + j];
      if (!isfinite(s))
        return tdm__fail(err, TDM_EINVAL, "row %zu: score %zu is %g", i + 1, j,
                         s);
      if (!(s >= 0.0 && s <= 1.0)) out->probabilities = 0;
    }
  }
  out->per_class = tdm__calloc(k, sizeof *out->per_class);
  if (out->per_class == NULL)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  out->count = n;
  out->classes = k;
  size_t correct = 0;
  compensated_sum loss = {0, 0};
  for (size_t i = 0; i < n; i++) {
    const double *row = scores + i * k;
    size_t label = (size_t)labels[i], best = 0;
    /* np.argmax: the first index of the largest score. */
    for (size_t j = 1; j < k; j++)
      if (row[j] > row[best]) best = j;
    out->per_class[label].support++;
    out->per_class[best].predicted++;
    if (best == label) {
      correct++;
      out->per_class[label].true_positives++;
    }
    if (out->probabilities) {
      /* log_loss: clip each probability, renormalize the row by its sum. */
      double total = 0;
      for (size_t j = 0; j < k; j++) total += clip_probability(row[j]);
      sum_add(&loss, -log(clip_probability(row[label]) / total));
    }
  }
  out->accuracy = (double)correct / (double)n;
  out->log_loss = out->probabilities ? sum_value(&loss) / (double)n : NAN;
  compensated_sum f1_sum = {0, 0};
  for (size_t j = 0; j < k; j++) {
    tdm__eval_class *c = &out->per_class[j];
    prf(c->true_positives, c->predicted, c->support, &c->precision, &c->recall,
        &c->f1);
    if (c->support > 0 || c->predicted > 0) {
      sum_add(&f1_sum, c->f1);
      out->macro_classes++;
    }
  }
  out->macro_f1 = sum_value(&f1_sum) / (double)out->macro_classes;
  return TDM_OK;
}

int tdm__eval_regression(const double *predictions, const double *labels,
                         size_t n, tdm__eval_regression_result *out,
                         tdm_error *err) {
  memset(out, 0, sizeof *out);
  if (n == 0) return tdm__fail(err, TDM_EINVAL, "no rows to evaluate");
  compensated_sum squares = {0, 0}, absolute = {0, 0}, percentage = {0, 0},
                  label_sum = {0, 0};
  for (size_t i = 0; i < n; i++) {
    double y = labels[i], p = predictions[i];
    if (!isfinite(y))
      return tdm__fail(err, TDM_EINVAL, "row %zu: the label is %g", i + 1, y);
    if (!isfinite(p))
      return tdm__fail(err, TDM_EINVAL, "row %zu: the prediction is %g", i + 1,
                       p);
    double d = y - p;
    sum_add(&squares, d * d);
    sum_add(&absolute, fabs(d));
    /* mean_absolute_percentage_error divides by max(|y|, eps), so a zero
     * label gives a huge but finite term rather than infinity. */
    sum_add(&percentage, fabs(p - y) / fmax(fabs(y), DBL_EPSILON));
    sum_add(&label_sum, y);
  }
  double mean = sum_value(&label_sum) / (double)n;
  compensated_sum spread = {0, 0};
  for (size_t i = 0; i < n; i++) {
    double d = labels[i] - mean;
    sum_add(&spread, d * d);
  }
  double residual = sum_value(&squares), total = sum_value(&spread);
  out->count = n;
  out->mse = residual / (double)n;
  out->rmse = sqrt(out->mse);
  out->mae = sum_value(&absolute) / (double)n;
  out->mape = sum_value(&percentage) / (double)n;
  /* r2_score with force_finite=True: a constant label column gives 1 for
   * a perfect fit and 0 otherwise instead of dividing by zero. */
  out->r2_constant_labels = total == 0.0;
  out->r2 = total != 0.0 ? 1.0 - residual / total : residual == 0.0 ? 1.0 : 0.0;
  return TDM_OK;
}

size_t tdm__eval_curve_at_share(const tdm__eval_curve_point *points,
                                size_t count, size_t part, size_t parts) {
  size_t rows = points[count - 1].tp + points[count - 1].fp;
  for (size_t i = 0; i < count; i++)
    if ((points[i].tp + points[i].fp) * parts >= part * rows) return i;
  return count - 1;
}
