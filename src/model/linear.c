/*
 * linear.c - loads tandem's linear model format (docs/linear-models.md):
 * linear and logistic regressions, Poisson-style log-linear models and
 * multinomial (softmax) models, with coefficients by feature name and a
 * rule per feature for missing values (impute a value, or refuse the row).
 *
 * A linear model becomes one tree per output whose only node is a linear
 * leaf, so it is scored by the same evaluator as every tree model:
 * intercept + c1*x1 + c2*x2 + ..., in double, in the file's order.
 */
#include <math.h>
#include <string.h>

#include "model.h"

typedef struct link_entry {
  const char *name;
  tdm__link link;
} link_entry;

static const link_entry links[] = {
    {"identity", TDM__LINK_IDENTITY},
    {"logit", TDM__LINK_SIGMOID},
    {"exp", TDM__LINK_EXP},
    {"softmax", TDM__LINK_SOFTMAX},
};

static const char *const known_keys[] = {
    "format",  "version",         "name",
    "link",    "intercept",       "coefficients",
    "missing", "default_missing", "description"};

/* Reads `k` numbers: one number (k == 1) or an array of k. */
static int numbers(const tdm__json_doc *doc, const tdm__json *v, size_t k,
                   double *out, tdm_error *err) {
  if (v->type == TDM__JSON_ARRAY) {
    if (v->count != k)
      return tdm__json_fail(doc, v, TDM_EPARSE, err,
                            "has %zu values, expected %zu (one per class)",
                            v->count, k);
    for (size_t i = 0; i < k; i++) {
      if (v->items[i].type != TDM__JSON_NUMBER)
        return tdm__json_fail(doc, &v->items[i], TDM_EPARSE, err,
                              "expected a number, found %s",
                              tdm__json_type_name(&v->items[i]));
      int rc = tdm__json_double(doc, &v->items[i], &out[i], err);
      if (rc != TDM_OK) return rc;
    }
    return TDM_OK;
  }
  if (v->type != TDM__JSON_NUMBER || k != 1)
    return tdm__json_fail(doc, v, TDM_EPARSE, err,
                          k == 1 ? "expected a number, found %s"
                                 : "expected an array of numbers (one per "
                                   "class), found %s",
                          tdm__json_type_name(v));
  return tdm__json_double(doc, v, out, err);
}

/* A missing-value rule: a number to impute, or "error" (NaN here). */
static int missing_rule(const tdm__json_doc *doc, const tdm__json *v,
                        double *out, tdm_error *err) {
  if (v->type == TDM__JSON_STRING && strcmp(v->text, "error") == 0) {
    *out = NAN;
    return TDM_OK;
  }
  if (v->type == TDM__JSON_NUMBER) return tdm__json_double(doc, v, out, err);
  return tdm__json_fail(doc, v, TDM_EPARSE, err,
                        "expected a number to use for missing values, or "
                        "\"error\"");
}

int tdm__linear_load(tdm_model *model, const tdm__json_doc *doc,
                     tdm_error *err) {
  const tdm__json *root = doc->root;
  model->format = TDM_FORMAT_LINEAR_JSON;
  model->format_name = "tandem-linear";
  model->booster = "linear";
  model->float32 = 0;
  model->sigmoid_scale = 1.0;
  for (size_t i = 0; i < root->count; i++) {
    int known = 0;
    for (size_t j = 0; j < sizeof known_keys / sizeof known_keys[0]; j++)
      if (strcmp(root->keys[i], known_keys[j]) == 0) known = 1;
    if (!known)
      return tdm__json_fail(doc, &root->items[i], TDM_EPARSE, err,
                            "unknown member \"%s\"", root->keys[i]);
  }
  const tdm__json *link = tdm__json_get(root, "link");
  const tdm__json *intercept = tdm__json_get(root, "intercept");
  const tdm__json *coefficients = tdm__json_get(root, "coefficients");
  const tdm__json *missing = tdm__json_get(root, "missing");
  const tdm__json *default_missing = tdm__json_get(root, "default_missing");
  if (link == NULL || link->type != TDM__JSON_STRING)
    return tdm__json_fail(doc, link ? link : root, TDM_EPARSE, err,
                          "\"link\" must be one of identity, logit, exp, "
                          "softmax");
  const link_entry *entry = NULL;
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
    if (strcmp(links[i].name, link->text) == 0) entry = &links[i];
  if (entry == NULL)
    return tdm__json_fail(doc, link, TDM_EPARSE, err,
                          "unknown link \"%s\" (identity, logit, exp or "
                          "softmax)",
                          link->text);
  model->link = entry->link;
  model->objective = entry->link == TDM__LINK_SIGMOID   ? "linear:logit"
                     : entry->link == TDM__LINK_EXP     ? "linear:exp"
                     : entry->link == TDM__LINK_SOFTMAX ? "linear:softmax"
                                                        : "linear:identity";
  if (coefficients == NULL || coefficients->type != TDM__JSON_OBJECT ||
      coefficients->count == 0)
    return tdm__json_fail(doc, coefficients ? coefficients : root, TDM_EPARSE,
                          err,
                          "\"coefficients\" must be an object of feature "
                          "name to coefficient");
  if (intercept == NULL)
    return tdm__json_fail(doc, root, TDM_EPARSE, err,
                          "missing member \"intercept\"");
  size_t k = intercept->type == TDM__JSON_ARRAY ? intercept->count : 1;
  if (entry->link == TDM__LINK_SOFTMAX &&
      (intercept->type != TDM__JSON_ARRAY || k < 2))
    return tdm__json_fail(doc, intercept, TDM_EPARSE, err,
                          "a softmax model needs one intercept per class "
                          "(an array of at least 2)");
  if (entry->link != TDM__LINK_SOFTMAX && intercept->type == TDM__JSON_ARRAY)
    return tdm__json_fail(doc, intercept, TDM_EPARSE, err,
                          "only a softmax model has one intercept per class");
  size_t n = coefficients->count;
  model->num_features = n;
  model->num_outputs = k;
  model->trees_per_iteration = k;
  model->num_iterations = 1;
  tdm__arena *a = &model->arena;
  model->feature_names = tdm__arena_alloc(a, n * sizeof(char *));
  model->feature_types = tdm__arena_alloc(a, n * sizeof(char *));
  model->feature_required = tdm__arena_alloc(a, n);
  model->base_margin = tdm__arena_alloc(a, k * sizeof(double));
  model->trees = tdm__arena_alloc(a, k * sizeof(tdm__tree));
  model->nodes = tdm__arena_alloc(a, k * sizeof(tdm__node));
  model->linear_features = tdm__arena_alloc(a, n * k * sizeof(uint32_t));
  model->linear_coeffs = tdm__arena_alloc(a, n * k * sizeof(double));
  model->linear_missing = tdm__arena_alloc(a, n * k * sizeof(double));
  double *intercepts = tdm__arena_alloc(a, k * sizeof(double));
  double *row = tdm__arena_alloc(a, k * sizeof(double));
  double *impute = tdm__arena_alloc(a, n * sizeof(double));
  if (model->feature_names == NULL || model->feature_types == NULL ||
      model->feature_required == NULL || model->base_margin == NULL ||
      model->trees == NULL || model->nodes == NULL ||
      model->linear_features == NULL || model->linear_coeffs == NULL ||
      model->linear_missing == NULL || intercepts == NULL || row == NULL ||
      impute == NULL)
    return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", doc->name);
  int rc = numbers(doc, intercept, k, intercepts, err);
  if (rc != TDM_OK) return rc;
  double fallback = NAN;
  if (default_missing != NULL &&
      (rc = missing_rule(doc, default_missing, &fallback, err)) != TDM_OK)
    return rc;
  if (missing != NULL && missing->type != TDM__JSON_OBJECT)
    return tdm__json_fail(doc, missing, TDM_EPARSE, err,
                          "\"missing\" must be an object of feature name to "
                          "a value or \"error\"");
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < i; j++)
      if (strcmp(coefficients->keys[i], coefficients->keys[j]) == 0)
        return tdm__json_fail(doc, &coefficients->items[i], TDM_EPARSE, err,
                              "feature \"%s\" appears twice",
                              coefficients->keys[i]);
    model->feature_names[i] = tdm__arena_strndup(a, coefficients->keys[i],
                                                 strlen(coefficients->keys[i]));
    if (model->feature_names[i] == NULL)
      return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", doc->name);
    model->feature_types[i] = "float";
    impute[i] = fallback;
  }
  model->has_feature_names = 1;
  for (size_t m = 0; missing != NULL && m < missing->count; m++) {
    size_t i = 0;
    while (i < n && strcmp(missing->keys[m], model->feature_names[i]) != 0) i++;
    if (i == n)
      return tdm__json_fail(doc, &missing->items[m], TDM_EPARSE, err,
                            "\"%s\" is not a feature of this model (it has no "
                            "coefficient)",
                            missing->keys[m]);
    rc = missing_rule(doc, &missing->items[m], &impute[i], err);
    if (rc != TDM_OK) return rc;
  }
  for (size_t i = 0; i < n; i++) model->feature_required[i] = isnan(impute[i]);
  /* One linear leaf per output, terms in the file's order. */
  for (size_t o = 0; o < k; o++) {
    tdm__node *leaf = &model->nodes[o];
    leaf->kind = TDM__NODE_LINEAR_LEAF;
    leaf->feature = -1;
    leaf->value = NAN; /* a required feature was missing */
    leaf->linear_const = intercepts[o];
    leaf->linear_begin = (uint32_t)(o * n);
    leaf->linear_count = (uint32_t)n;
    model->trees[o].root = (uint32_t)o;
    model->trees[o].output = (uint32_t)o;
    model->trees[o].num_nodes = 1;
  }
  for (size_t i = 0; i < n; i++) {
    rc = numbers(doc, &coefficients->items[i], k, row, err);
    if (rc != TDM_OK) return rc;
    for (size_t o = 0; o < k; o++) {
      model->linear_features[o * n + i] = (uint32_t)i;
      model->linear_coeffs[o * n + i] = row[o];
      model->linear_missing[o * n + i] = impute[i];
    }
  }
  model->num_trees = k;
  model->num_nodes = k;
  model->num_linear_terms = n * k;
  return TDM_OK;
}
