/*
 * test_eval.c - the evaluation metrics of src/eval/metrics.c on small
 * cases computed by hand: tied scores (one ROC point per distinct score),
 * perfect and inverted classifiers, one class only (ROC AUC undefined),
 * empty input, sklearn's zero_division and log-loss clipping, calibration
 * bin edges as np.linspace places them, multiclass argmax ties, and
 * regression's constant-label and zero-label conventions. A differential
 * test checks ROC AUC against the plain O(P N) pair count (Mann-Whitney).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../src/eval/metrics.h"
#include "test.h"

/* Relative closeness for values computed by hand in decimal. */
static int near(double a, double b) {
  return fabs(a - b) <= 1e-15 * fmax(1.0, fabs(b));
}

#define CHECK_NEAR(actual, expected)                                    \
  do {                                                                  \
    double a_ = (actual), e_ = (expected);                              \
    if (!near(a_, e_)) {                                                \
      fprintf(stderr, "%s:%d: %s is %.17g, expected %.17g\n", __FILE__, \
              __LINE__, #actual, a_, e_);                               \
      return 1;                                                         \
    }                                                                   \
  } while (0)

static const double half = 0.5;

TEST(eval_binary_ties_by_hand) {
  /* Scores 0.9 (+), 0.5 (+ and -), 0.1 (-): the tie is one ROC point, so
   * the curve is (0,0) (0,.5) (.5,1) (1,1): area .375 + .5 = .875. The
   * steps of average precision: recall .5 at precision 1, recall 1 at
   * precision 2/3: (1 + 2/3) / 2 = 5/6. KS: max |TPR - FPR| = .5. */
  double s[] = {0.9, 0.5, 0.5, 0.1}, y[] = {1, 0, 1, 0};
  tdm__eval_binary_result r;
  CHECK_INT(tdm__eval_binary(s, y, 4, &half, 1, 10, &r, NULL), TDM_OK);
  CHECK_NEAR(r.roc_auc, 0.875);
  CHECK_NEAR(r.average_precision, 5.0 / 6.0);
  CHECK_NEAR(r.ks, 0.5);
  CHECK_INT(r.positives, 2);
  CHECK_NEAR(r.base_rate, 0.5);
  /* At 0.5 (score >= 0.5 is positive): tp 2, fp 1, fn 0, tn 1. */
  CHECK_INT(r.thresholds[0].tp, 2);
  CHECK_INT(r.thresholds[0].fp, 1);
  CHECK_INT(r.thresholds[0].fn, 0);
  CHECK_INT(r.thresholds[0].tn, 1);
  CHECK_NEAR(r.thresholds[0].precision, 2.0 / 3.0);
  CHECK_NEAR(r.thresholds[0].recall, 1.0);
  CHECK_NEAR(r.thresholds[0].f1, 0.8);
  CHECK_NEAR(r.thresholds[0].accuracy, 0.75);
  tdm__eval_binary_result_free(&r);

  /* Every score equal: one point, the diagonal, AUC 1/2; AP = the base
   * rate. sklearn's own docstring example gives AUC .75, AP .8333. */
  double flat[] = {0.5, 0.5, 0.5, 0.5};
  CHECK_INT(tdm__eval_binary(flat, y, 4, &half, 1, 10, &r, NULL), TDM_OK);
  CHECK_NEAR(r.roc_auc, 0.5);
  CHECK_NEAR(r.average_precision, 0.5);
  CHECK_NEAR(r.ks, 0.0);
  tdm__eval_binary_result_free(&r);
  double doc_s[] = {0.1, 0.4, 0.35, 0.8}, doc_y[] = {0, 0, 1, 1};
  CHECK_INT(tdm__eval_binary(doc_s, doc_y, 4, &half, 1, 10, &r, NULL), TDM_OK);
  CHECK_NEAR(r.roc_auc, 0.75);
  CHECK_NEAR(r.average_precision, 0.8333333333333333);
  tdm__eval_binary_result_free(&r);
  return 0;
}

TEST(eval_binary_perfect_and_inverted) {
  double s[] = {0.9, 0.8, 0.2, 0.1}, good[] = {1, 1, 0, 0},
         bad[] = {0, 0, 1, 1};
  tdm__eval_binary_result r;
  CHECK_INT(tdm__eval_binary(s, good, 4, &half, 1, 10, &r, NULL), TDM_OK);
  CHECK(r.roc_auc == 1.0 && r.average_precision == 1.0 && r.ks == 1.0);
  CHECK_INT(r.thresholds[0].tp, 2);
  CHECK_INT(r.thresholds[0].tn, 2);
  CHECK(r.thresholds[0].f1 == 1.0 && r.thresholds[0].accuracy == 1.0);
  tdm__eval_binary_result_free(&r);
  /* Inverted: AUC 0 and KS 1 (KS takes |TPR - FPR|). AP: the positives
   * come third and fourth: (1/3 + 2/4) / 2 = 5/12. */
  CHECK_INT(tdm__eval_binary(s, bad, 4, &half, 1, 10, &r, NULL), TDM_OK);
  CHECK(r.roc_auc == 0.0);
  CHECK(r.ks == 1.0);
  CHECK_NEAR(r.average_precision, 5.0 / 12.0);
  CHECK(r.thresholds[0].tp == 0 && r.thresholds[0].f1 == 0.0);
  CHECK(r.thresholds[0].f1_undefined);
  tdm__eval_binary_result_free(&r);
  return 0;
}

TEST(eval_binary_one_class_and_empty) {
  double s[] = {0.2, 0.7, 0.4}, zeros[] = {0, 0, 0}, ones[] = {1, 1, 1};
  tdm__eval_binary_result r;
  /* No positive: ROC AUC, KS and average precision are undefined (NaN);
   * recall's denominator is empty: 0 with the flag. */
  CHECK_INT(tdm__eval_binary(s, zeros, 3, &half, 1, 10, &r, NULL), TDM_OK);
  CHECK(isnan(r.roc_auc) && isnan(r.ks) && isnan(r.average_precision));
  CHECK(!isnan(r.log_loss) && !isnan(r.brier));
  CHECK(r.thresholds[0].recall == 0.0 && r.thresholds[0].recall_undefined);
  tdm__eval_binary_result_free(&r);
  /* No negative: ROC AUC undefined, average precision 1. */
  CHECK_INT(tdm__eval_binary(s, ones, 3, &half, 1, 10, &r, NULL), TDM_OK);
  CHECK(isnan(r.roc_auc) && isnan(r.ks));
  CHECK(r.average_precision == 1.0);
  tdm__eval_binary_result_free(&r);

  tdm_error err;
  CHECK_INT(tdm__eval_binary(s, ones, 0, &half, 1, 10, &r, &err), TDM_EINVAL);
  CHECK_CONTAINS(err.message, "no rows");
  tdm__eval_multiclass_result m;
  CHECK_INT(tdm__eval_multiclass(s, ones, 0, 3, &m, &err), TDM_EINVAL);
  tdm__eval_regression_result g;
  CHECK_INT(tdm__eval_regression(s, ones, 0, &g, &err), TDM_EINVAL);
  /* Bad inputs name the row. */
  double two[] = {0, 2, 1};
  CHECK_INT(tdm__eval_binary(s, two, 3, &half, 1, 10, &r, &err), TDM_EINVAL);
  CHECK_CONTAINS(err.message, "row 2");
  double nan_score[] = {0.1, NAN, 0.3};
  CHECK_INT(tdm__eval_binary(nan_score, ones, 3, &half, 1, 10, &r, &err),
            TDM_EINVAL);
  CHECK_CONTAINS(err.message, "row 2");
  return 0;
}

TEST(eval_binary_zero_division_and_log_loss) {
  double s[] = {0.0, 1.0, 0.5, 0.25}, y[] = {1, 0, 1, 0};
  double thresholds[] = {2.0, 0.0};
  tdm__eval_binary_result r;
  CHECK_INT(tdm__eval_binary(s, y, 4, thresholds, 2, 10, &r, NULL), TDM_OK);
  /* Nothing is >= 2: precision 0 by sklearn's zero_division. */
  CHECK(r.thresholds[0].precision == 0.0 &&
        r.thresholds[0].precision_undefined);
  CHECK(r.thresholds[0].recall == 0.0 && !r.thresholds[0].recall_undefined);
  CHECK(r.thresholds[0].f1 == 0.0);
  CHECK_INT(r.thresholds[0].tn, 2);
  CHECK_INT(r.thresholds[0].fn, 2);
  /* Everything is >= 0. */
  CHECK_INT(r.thresholds[1].tp, 2);
  CHECK_INT(r.thresholds[1].fp, 2);
  CHECK_NEAR(r.thresholds[1].precision, 0.5);
  /* Log loss clips 0 and 1 to eps and 1 - eps: the two confident
   * mistakes cost -log(eps) each (the column 1 - p is 1 - eps, and
   * eps + (1 - eps) sums to 1 exactly), the others log 2 and
   * -log(0.75). */
  double expected = (2 * -log(DBL_EPSILON) + log(2.0) - log(0.75)) / 4;
  CHECK_NEAR(r.log_loss, expected);
  CHECK_NEAR(r.brier, (1 + 1 + 0.25 + 0.0625) / 4);
  tdm__eval_binary_result_free(&r);

  /* Margins (outside [0, 1]) are ranked but not treated as probabilities. */
  double margins[] = {-2.0, 3.0, 0.5, 0.25};
  CHECK_INT(tdm__eval_binary(margins, y, 4, &half, 1, 10, &r, NULL), TDM_OK);
  CHECK(!r.probabilities && isnan(r.log_loss) && isnan(r.brier));
  CHECK_INT(r.num_bins, 0);
  CHECK_NEAR(r.roc_auc, 0.25);
  tdm__eval_binary_result_free(&r);
  return 0;
}

TEST(eval_calibration_bins_as_linspace) {
  /* np.linspace(0, 1, 11)[3] is 3 * 0.1 = 0.30000000000000004, so 0.3
   * lies below it, in bin 2; 0.2 equals edge 2 and searchsorted (side
   * left) puts it in bin 1; 0 and 1 go to the first and last bins. */
  double s[] = {0.3, 0.2, 0.0, 1.0, 0.25}, y[] = {1, 0, 0, 1, 1};
  tdm__eval_binary_result r;
  CHECK_INT(tdm__eval_binary(s, y, 5, &half, 1, 10, &r, NULL), TDM_OK);
  CHECK_INT(r.num_bins, 4);
  CHECK_INT(r.bins[0].index, 0);
  CHECK_INT(r.bins[1].index, 1);
  CHECK_INT(r.bins[1].count, 1);
  CHECK(r.bins[1].mean_predicted == 0.2 && r.bins[1].fraction_positive == 0.0);
  CHECK_INT(r.bins[2].index, 2);
  CHECK_INT(r.bins[2].count, 2);
  CHECK_NEAR(r.bins[2].mean_predicted, 0.275);
  CHECK(r.bins[2].fraction_positive == 1.0);
  CHECK(r.bins[2].upper == 0.30000000000000004);
  CHECK_INT(r.bins[3].index, 9);
  CHECK(r.bins[3].upper == 1.0);
  tdm__eval_binary_result_free(&r);
  /* One bin holds everything. */
  CHECK_INT(tdm__eval_binary(s, y, 5, &half, 1, 1, &r, NULL), TDM_OK);
  CHECK_INT(r.num_bins, 1);
  CHECK_INT(r.bins[0].count, 5);
  CHECK_NEAR(r.bins[0].fraction_positive, 0.6);
  tdm__eval_binary_result_free(&r);
  return 0;
}

TEST(eval_roc_auc_equals_pair_count) {
  /* Differential: ROC AUC is the Mann-Whitney statistic, the fraction of
   * (positive, negative) pairs ranked right, ties counting half. Scores on
   * a coarse grid make many ties. Both sides are exact integers over P N,
   * so they must agree bit for bit. */
  enum { n = 3000 };
  static double s[n], y[n];
  uint64_t state = 12345;
  for (size_t i = 0; i < n; i++) {
    state = state * 6364136223846793005u + 1442695040888963407u;
    s[i] = (double)((state >> 33) % 50) / 49.0;
    state = state * 6364136223846793005u + 1442695040888963407u;
    y[i] = ((state >> 33) % 100) < 30 + 40 * s[i];
  }
  uint64_t twice = 0, positives = 0;
  for (size_t i = 0; i < n; i++) {
    if (y[i] != 1) continue;
    positives++;
    for (size_t j = 0; j < n; j++)
      if (y[j] == 0) twice += s[i] > s[j] ? 2 : s[i] == s[j] ? 1 : 0;
  }
  double pn = (double)positives * (double)(n - positives);
  tdm__eval_binary_result r;
  CHECK_INT(tdm__eval_binary(s, y, n, &half, 1, 10, &r, NULL), TDM_OK);
  CHECK(r.roc_auc == (double)twice / (2.0 * pn));
  CHECK(r.roc_auc > 0.6);
  tdm__eval_binary_result_free(&r);
  return 0;
}

TEST(eval_multiclass_by_hand) {
  /* Row 2 ties classes 0 and 1: np.argmax takes 0. Class 2 never occurs
   * and is never predicted, so the macro mean is over classes 0 and 1. */
  double s[] = {0.7, 0.2, 0.1,  /* label 0, predicted 0 */
                0.4, 0.4, 0.2,  /* label 1, predicted 0 (tie) */
                0.1, 0.8, 0.1,  /* label 1, predicted 1 */
                0.6, 0.3, 0.1}; /* label 0, predicted 0 */
  double y[] = {0, 1, 1, 0};
  tdm__eval_multiclass_result r;
  CHECK_INT(tdm__eval_multiclass(s, y, 4, 3, &r, NULL), TDM_OK);
  CHECK_NEAR(r.accuracy, 0.75);
  CHECK_INT(r.per_class[0].predicted, 3);
  CHECK_NEAR(r.per_class[0].precision, 2.0 / 3.0);
  CHECK_NEAR(r.per_class[0].recall, 1.0);
  CHECK_NEAR(r.per_class[0].f1, 0.8);
  CHECK_NEAR(r.per_class[1].precision, 1.0);
  CHECK_NEAR(r.per_class[1].recall, 0.5);
  CHECK_NEAR(r.per_class[1].f1, 2.0 / 3.0);
  CHECK(r.per_class[2].f1 == 0.0 && r.per_class[2].support == 0);
  CHECK_INT(r.macro_classes, 2);
  CHECK_NEAR(r.macro_f1, (0.8 + 2.0 / 3.0) / 2);
  double expected = -(log(0.7) + log(0.4) + log(0.8) + log(0.6)) / 4;
  CHECK_NEAR(r.log_loss, expected);
  tdm__eval_multiclass_result_free(&r);

  tdm_error err;
  double bad[] = {0, 1, 3, 0};
  CHECK_INT(tdm__eval_multiclass(s, bad, 4, 3, &r, &err), TDM_EINVAL);
  CHECK_CONTAINS(err.message, "row 3");
  double fraction[] = {0, 1, 0.5, 0};
  CHECK_INT(tdm__eval_multiclass(s, fraction, 4, 3, &r, &err), TDM_EINVAL);
  return 0;
}

TEST(eval_regression_by_hand) {
  double p[] = {1.0, 2.0, 4.0, 0.5}, y[] = {1.0, 3.0, 2.0, 0.0};
  tdm__eval_regression_result r;
  CHECK_INT(tdm__eval_regression(p, y, 4, &r, NULL), TDM_OK);
  /* Errors 0, -1, 2, 0.5: MSE (0 + 1 + 4 + .25) / 4; MAE 3.5 / 4. */
  CHECK_NEAR(r.mse, 5.25 / 4);
  CHECK_NEAR(r.rmse, sqrt(5.25 / 4));
  CHECK_NEAR(r.mae, 3.5 / 4);
  /* MAPE divides by max(|y|, eps): the zero label's term is 0.5 / eps. */
  CHECK_NEAR(r.mape, (0 + 1.0 / 3 + 1.0 + 0.5 / DBL_EPSILON) / 4);
  /* R^2: mean 1.5, total sum of squares .25 + 2.25 + .25 + 2.25 = 5. */
  CHECK_NEAR(r.r2, 1 - 5.25 / 5);
  CHECK(!r.r2_constant_labels);

  double flat[] = {2.0, 2.0, 2.0, 2.0};
  CHECK_INT(tdm__eval_regression(p, flat, 4, &r, NULL), TDM_OK);
  CHECK(r.r2_constant_labels && r.r2 == 0.0);
  CHECK_INT(tdm__eval_regression(flat, flat, 4, &r, NULL), TDM_OK);
  CHECK(r.r2_constant_labels && r.r2 == 1.0 && r.mse == 0.0);
  return 0;
}

TEST(eval_compensated_means) {
  /* A million copies of 0.1 and a huge value would lose the small terms
   * in a plain running sum; the compensated mean keeps them. */
  enum { n = 1000001 };
  double *p = malloc(n * sizeof *p), *y = malloc(n * sizeof *y);
  CHECK(p != NULL && y != NULL);
  for (size_t i = 0; i < n; i++) {
    y[i] = 0.0;
    p[i] = 0.1;
  }
  p[0] = 1e8;
  tdm__eval_regression_result r;
  int rc = tdm__eval_regression(p, y, n, &r, NULL);
  double expected = (1e8 + 0.1 * (n - 1)) / n;
  free(p);
  free(y);
  CHECK_INT(rc, TDM_OK);
  CHECK(fabs(r.mae - expected) <= 1e-15 * expected);
  return 0;
}
