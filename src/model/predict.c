/*
 * predict.c - the scalar reference evaluator: walks each tree node by node
 * for one row. It is the definition of a correct score; faster evaluators
 * are checked against it. Float32 models (XGBoost) compare and accumulate
 * in float32 in tree order, exactly as XGBoost's CPU predictor does, and
 * use the same sigmoid and softmax arithmetic.
 */
#include <math.h>

#include "model.h"

/* LightGBM's NumericalDecision, 1 to go left. */
static int lgb_numeric_goes_left(const tdm__node *node, double x) {
  if (isnan(x) && node->missing_type != TDM__MISSING_NAN) x = 0.0;
  if ((node->missing_type == TDM__MISSING_ZERO && x == 0.0) ||
      (node->missing_type == TDM__MISSING_NAN && isnan(x)))
    return node->default_left;
  return x <= node->value;
}

static inline double row_value(tdm__row row, int32_t feature) {
  return row.f64 != NULL ? row.f64[feature] : (double)row.f32[feature];
}

uint32_t tdm__next_node(const tdm_model *model, uint32_t index, tdm__row row) {
  const tdm__node *node = &model->nodes[index];
  double x;
  int left;
  switch (node->kind) {
    case TDM__NODE_XGB_NUMERIC:
      x = row_value(row, node->feature);
      left = isnan(x) ? node->default_left : (float)x < (float)node->value;
      break;
    case TDM__NODE_XGB_CATEGORICAL:
      x = row_value(row, node->feature);
      left = isnan(x) ? node->default_left
                      : tdm__xgb_category_goes_left(
                            model->cat_words + node->cat_begin,
                            node->cat_count, (float)x);
      break;
    case TDM__NODE_LGB_NUMERIC:
      x = row_value(row, node->feature);
      if (model->lightgbm_zero) x = tdm__lightgbm_value(x);
      left = lgb_numeric_goes_left(node, x);
      break;
    case TDM__NODE_LGB_CATEGORICAL:
      left = tdm__lgb_category_goes_left(model->cat_words + node->cat_begin,
                                         node->cat_count,
                                         row_value(row, node->feature));
      break;
    default: /* a leaf has no next node */ return index;
  }
  return left ? node->left : node->right;
}

static uint32_t find_leaf(const tdm_model *model, uint32_t index,
                          tdm__row row) {
  while (model->nodes[index].feature >= 0)
    index = tdm__next_node(model, index, row);
  return index;
}

double tdm__leaf_output(const tdm_model *model, const tdm__node *leaf,
                          tdm__row row) {
  if (leaf->kind != TDM__NODE_LINEAR_LEAF) return leaf->value;
  double sum = leaf->linear_const;
  for (uint32_t t = 0; t < leaf->linear_count; t++) {
    double x =
        row_value(row, (int32_t)model->linear_features[leaf->linear_begin + t]);
    if (isnan(x)) {
      if (model->linear_missing == NULL ||
          isnan(model->linear_missing[leaf->linear_begin + t]))
        return leaf->value;
      x = model->linear_missing[leaf->linear_begin + t];
    }
    if (model->lightgbm_zero) x = tdm__lightgbm_value(x);
    sum += model->linear_coeffs[leaf->linear_begin + t] * x;
  }
  return sum;
}

double tdm__tree_leaf_value(const tdm_model *model, const tdm__tree *tree,
                            tdm__row row) {
  return tdm__leaf_output(model, &model->nodes[find_leaf(model, tree->root, row)],
                     row);
}

void tdm__predict_margin_row(const tdm_model *model, tdm__row row,
                             double *margins) {
  size_t k = model->num_outputs;
  for (size_t o = 0; o < k; o++) margins[o] = model->base_margin[o];
  if (model->float32) {
    /* margins[] holds exact float32 values; each sum is rounded to float32
     * so the sequence of additions is XGBoost's. */
    for (size_t t = 0; t < model->num_trees; t++) {
      const tdm__tree *tree = &model->trees[t];
      uint32_t leaf = find_leaf(model, tree->root, row);
      float sum =
          (float)margins[tree->output] + (float)model->nodes[leaf].value;
      margins[tree->output] = sum;
    }
    return;
  }
  for (size_t t = 0; t < model->num_trees; t++) {
    const tdm__tree *tree = &model->trees[t];
    uint32_t leaf = find_leaf(model, tree->root, row);
    margins[tree->output] += tdm__leaf_output(model, &model->nodes[leaf], row);
  }
}

static float sigmoid_float(float x, int clamp) {
  if (clamp) {
    /* XGBoost >= 2.0: x = min(-x, 88.7f); 1 / (expf(x) + 1 + 1e-16f). */
    float e = -x < 88.7f ? -x : 88.7f;
    return 1.0f / (expf(e) + 1.0f + 1e-16f);
  }
  return 1.0f / (1.0f + expf(-x));
}

/* Transforms that are the same in either precision: margins of float32
 * models are exact float32 values, so comparing them as doubles is
 * comparing them as floats. Returns 1 if it handled the link. */
static int link_any_precision(const tdm_model *model, const double *margins,
                              double *out) {
  size_t k = model->num_outputs;
  switch (model->link) {
    case TDM__LINK_IDENTITY:
      for (size_t o = 0; o < k; o++) out[o] = margins[o];
      return 1;
    case TDM__LINK_HINGE:
      for (size_t o = 0; o < k; o++) out[o] = margins[o] > 0.0 ? 1.0 : 0.0;
      return 1;
    case TDM__LINK_ARGMAX: {
      /* The first of equal largest margins, as XGBoost's FindMaxIndex. */
      size_t best = 0;
      for (size_t o = 1; o < k; o++)
        if (margins[o] > margins[best]) best = o;
      out[0] = (double)best;
      return 1;
    }
    default: return 0;
  }
}

/* XGBoost's float32 transforms. */
static void link_float32(const tdm_model *model, const double *margins,
                         double *out) {
  size_t k = model->num_outputs;
  if (model->link == TDM__LINK_SOFTMAX) {
    /* common::Softmax: float max, float exponentials, double sum. */
    float largest = (float)margins[0];
    for (size_t o = 1; o < k; o++) largest = fmaxf((float)margins[o], largest);
    double sum = 0.0;
    for (size_t o = 0; o < k; o++) {
      float e = expf((float)margins[o] - largest);
      out[o] = e;
      sum += e;
    }
    for (size_t o = 0; o < k; o++) out[o] = (float)out[o] / (float)sum;
    return;
  }
  for (size_t o = 0; o < k; o++) {
    float x = (float)margins[o];
    out[o] = model->link == TDM__LINK_EXP
                 ? expf(x)
                 : sigmoid_float(x, model->sigmoid_clamp);
  }
}

/* LightGBM's and the linear models' double transforms. */
static void link_double(const tdm_model *model, const double *margins,
                        double *out) {
  size_t k = model->num_outputs;
  if (model->link == TDM__LINK_SOFTMAX) {
    /* Common::Softmax: max, exp(x - max), sum, divide. */
    double largest = margins[0];
    for (size_t o = 1; o < k; o++)
      if (margins[o] > largest) largest = margins[o];
    double sum = 0.0;
    for (size_t o = 0; o < k; o++) {
      out[o] = exp(margins[o] - largest);
      sum += out[o];
    }
    for (size_t o = 0; o < k; o++) out[o] /= sum;
    return;
  }
  for (size_t o = 0; o < k; o++) {
    double x = margins[o];
    switch (model->link) {
      case TDM__LINK_EXP: out[o] = exp(x); break;
      case TDM__LINK_LOG1P_EXP: out[o] = log1p(exp(x)); break;
      case TDM__LINK_SIGNED_SQUARE:
        out[o] = (x > 0.0 ? 1.0 : x < 0.0 ? -1.0 : 0.0) * x * x;
        break;
      default: /* the sigmoids: 1.0f / (1.0f + std::exp(-sigmoid_ * x)) */
        out[o] = 1.0 / (1.0 + exp(-model->sigmoid_scale * x));
        break;
    }
  }
}

void tdm__apply_link(const tdm_model *model, const double *margins,
                     double *out) {
  if (model->float32) {
    if (!link_any_precision(model, margins, out))
      link_float32(model, margins, out);
    return;
  }
  if (model->average_output && model->num_iterations > 0 &&
      model->link != TDM__LINK_ARGMAX) {
    /* LightGBM averages a random forest's trees in Predict, after the raw
     * score (predict_raw_score gives the plain sum). */
    for (size_t o = 0; o < model->num_outputs; o++)
      out[o] = margins[o] / (double)model->num_iterations;
    margins = out;
  }
  if (!link_any_precision(model, margins, out))
    link_double(model, margins, out);
}
