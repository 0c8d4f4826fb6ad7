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

static const tdm__named_link links[] = {
    {"identity", TDM__LINK_IDENTITY},
    {"logit", TDM__LINK_SIGMOID},
    {"exp", TDM__LINK_EXP},
    {"softmax", TDM__LINK_SOFTMAX},
};

static const char *const known_keys[] = {
    "format",      "version",      "name",    "link",
    "intercept",   "coefficients", "missing", "default_missing",
    "description", "bins"};

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

/*
 * A scorecard's binned feature: bins [-inf, e1), [e1, e2), ..., [en, inf)
 * worth points[0..n], and missing values worth `missing` points (or an
 * error). It becomes a tree: a root that sends NaN right (to the missing
 * leaf) and everything else left into a chain of splits "x < e_i", written
 * as LightGBM's "x <= t" with t the double just below e_i.
 */
static int load_bin_tree(tdm_model *model, const tdm__json_doc *doc,
                         const tdm__json *bin, size_t feature, double impute,
                         tdm_error *err) {
  if (bin->type != TDM__JSON_OBJECT)
    return tdm__json_fail(doc, bin, TDM_EPARSE, err,
                          "expected {\"edges\": [...], \"points\": [...]}");
  for (size_t i = 0; i < bin->count; i++) {
    if (strcmp(bin->keys[i], "edges") != 0 &&
        strcmp(bin->keys[i], "points") != 0 &&
        strcmp(bin->keys[i], "missing") != 0)
      return tdm__json_fail(doc, &bin->items[i], TDM_EPARSE, err,
                            "unknown member \"%s\"", bin->keys[i]);
  }
  const tdm__json *edges = tdm__json_get(bin, "edges");
  const tdm__json *points = tdm__json_get(bin, "points");
  const tdm__json *missing = tdm__json_get(bin, "missing");
  size_t n = edges->count;
  if (points == NULL || points->type != TDM__JSON_ARRAY ||
      points->count != n + 1)
    return tdm__json_fail(doc, points ? points : bin, TDM_EPARSE, err,
                          "\"points\" must have %zu numbers (one more than "
                          "the edges)",
                          n + 1);
  tdm__node *nodes = model->nodes + model->num_nodes;
  tdm__node *root = &nodes[0], *missing_leaf = &nodes[1];
  tdm__node *chain = &nodes[2], *leaves = &nodes[2 + n];
  uint32_t base = (uint32_t)model->num_nodes;
  for (size_t i = 0; i <= n; i++) {
    int rc = tdm__json_double(doc, &points->items[i], &leaves[i].value, err);
    if (rc != TDM_OK) return rc;
    leaves[i].kind = TDM__NODE_LEAF;
    leaves[i].feature = -1;
  }
  double previous = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    double edge;
    int rc = tdm__json_double(doc, &edges->items[i], &edge, err);
    if (rc != TDM_OK) return rc;
    if (!(edge > previous) || isinf(edge))
      return tdm__json_fail(doc, &edges->items[i], TDM_EPARSE, err,
                            "edges must be finite and increasing");
    previous = edge;
    chain[i].kind = TDM__NODE_LGB_NUMERIC;
    chain[i].missing_type = TDM__MISSING_NONE;
    chain[i].feature = (int32_t)feature;
    chain[i].value = nextafter(edge, -INFINITY);
    chain[i].left = base + 2 + (uint32_t)(n + i);
    chain[i].right =
        i + 1 < n ? base + 2 + (uint32_t)(i + 1) : base + 2 + (uint32_t)(2 * n);
  }
  root->kind = TDM__NODE_LGB_NUMERIC;
  root->missing_type = TDM__MISSING_NAN;
  root->default_left = 0;
  root->feature = (int32_t)feature;
  root->value = INFINITY;
  root->left = base + 2;
  root->right = base + 1;
  missing_leaf->kind = TDM__NODE_LEAF;
  missing_leaf->feature = -1;
  double missing_points = NAN;
  if (missing != NULL) {
    int rc = missing_rule(doc, missing, &missing_points, err);
    if (rc != TDM_OK) return rc;
  } else if (!isnan(impute)) {
    /* The feature's imputed value falls in one of the bins. */
    size_t i = 0;
    while (i < n && !(impute <= chain[i].value)) i++;
    missing_points = leaves[i].value;
  }
  missing_leaf->value = missing_points;
  if (isnan(missing_points)) model->feature_required[feature] = 1;
  tdm__tree *tree = &model->trees[model->num_trees++];
  tree->root = base;
  tree->output = 0;
  tree->num_nodes = (uint32_t)(2 * n + 3);
  model->num_nodes += 2 * n + 3;
  return TDM_OK;
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
  const tdm__named_link *entry =
      tdm__find_link(links, sizeof links / sizeof *links, link->text);
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
  const tdm__json *bins = tdm__json_get(root, "bins");
  if (bins != NULL && bins->type != TDM__JSON_OBJECT)
    return tdm__json_fail(doc, bins, TDM_EPARSE, err,
                          "\"bins\" must be an object of feature name to "
                          "{\"edges\": [...], \"points\": [...]}");
  if (bins != NULL && bins->count > 0 && k > 1)
    return tdm__json_fail(doc, bins, TDM_EPARSE, err,
                          "a softmax model cannot have bins");
  size_t num_bins = bins ? bins->count : 0;
  size_t num_coef = coefficients->count;
  /* Features: the coefficients' names, then binned features not among
   * them, each in the file's order. */
  size_t n = num_coef;
  for (size_t b = 0; b < num_bins; b++) {
    if (tdm__json_get(coefficients, bins->keys[b]) == NULL) n++;
  }
  /* Nodes: one linear leaf per output; per binned feature a root that
   * separates missing values, a chain of one split per edge, one leaf per
   * bin and one for missing values. */
  size_t num_nodes = k, num_trees = k + num_bins;
  for (size_t b = 0; b < num_bins; b++) {
    const tdm__json *edges = tdm__json_get(&bins->items[b], "edges");
    if (edges == NULL || edges->type != TDM__JSON_ARRAY || edges->count == 0 ||
        edges->count > 100000)
      return tdm__json_fail(doc, edges ? edges : &bins->items[b], TDM_EPARSE,
                            err,
                            "\"edges\" must be an array of 1 or more "
                            "increasing numbers");
    num_nodes += 2 * edges->count + 3;
  }
  model->num_features = n;
  model->num_outputs = k;
  model->trees_per_iteration = num_trees;
  model->num_iterations = 1;
  tdm__arena *a = &model->arena;
  model->feature_names = tdm__arena_alloc(a, n * sizeof(char *));
  model->feature_types = tdm__arena_alloc(a, n * sizeof(char *));
  model->feature_required = tdm__arena_alloc(a, n);
  model->base_margin = tdm__arena_alloc(a, k * sizeof(double));
  model->trees = tdm__arena_alloc(a, num_trees * sizeof(tdm__tree));
  model->nodes = tdm__arena_alloc(a, num_nodes * sizeof(tdm__node));
  model->linear_features = tdm__arena_alloc(a, num_coef * k * sizeof(uint32_t));
  model->linear_coeffs = tdm__arena_alloc(a, num_coef * k * sizeof(double));
  model->linear_missing = tdm__arena_alloc(a, num_coef * k * sizeof(double));
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
  size_t next = 0;
  for (size_t i = 0; i < num_coef + num_bins; i++) {
    const char *name =
        i < num_coef ? coefficients->keys[i] : bins->keys[i - num_coef];
    const tdm__json *where =
        i < num_coef ? &coefficients->items[i] : &bins->items[i - num_coef];
    size_t seen = 0;
    while (seen < next && strcmp(model->feature_names[seen], name) != 0) seen++;
    if (seen < next) {
      if (i < num_coef || seen >= num_coef)
        return tdm__json_fail(doc, where, TDM_EPARSE, err,
                              "feature \"%s\" appears twice", name);
      continue; /* a binned feature that also has a coefficient */
    }
    model->feature_names[next] = tdm__arena_strndup(a, name, strlen(name));
    if (model->feature_names[next] == NULL)
      return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", doc->name);
    model->feature_types[next] = "float";
    impute[next] = fallback;
    next++;
  }
  model->has_feature_names = 1;
  for (size_t m = 0; missing != NULL && m < missing->count; m++) {
    size_t i = 0;
    while (i < n && strcmp(missing->keys[m], model->feature_names[i]) != 0) i++;
    if (i == n)
      return tdm__json_fail(doc, &missing->items[m], TDM_EPARSE, err,
                            "\"%s\" is not a feature of this model",
                            missing->keys[m]);
    rc = missing_rule(doc, &missing->items[m], &impute[i], err);
    if (rc != TDM_OK) return rc;
  }
  for (size_t i = 0; i < num_coef; i++)
    model->feature_required[i] = isnan(impute[i]);
  /* One linear leaf per output, terms in the file's order. */
  for (size_t o = 0; o < k; o++) {
    tdm__node *leaf = &model->nodes[o];
    leaf->kind = TDM__NODE_LINEAR_LEAF;
    leaf->feature = -1;
    leaf->value = NAN; /* a required feature was missing */
    leaf->linear_const = intercepts[o];
    leaf->linear_begin = (uint32_t)(o * num_coef);
    leaf->linear_count = (uint32_t)num_coef;
    model->trees[o].root = (uint32_t)o;
    model->trees[o].output = (uint32_t)o;
    model->trees[o].num_nodes = 1;
  }
  for (size_t i = 0; i < num_coef; i++) {
    rc = numbers(doc, &coefficients->items[i], k, row, err);
    if (rc != TDM_OK) return rc;
    for (size_t o = 0; o < k; o++) {
      model->linear_features[o * num_coef + i] = (uint32_t)i;
      model->linear_coeffs[o * num_coef + i] = row[o];
      model->linear_missing[o * num_coef + i] = impute[i];
    }
  }
  model->num_trees = k;
  model->num_nodes = k;
  model->num_linear_terms = num_coef * k;
  for (size_t b = 0; b < num_bins; b++) {
    size_t f = 0;
    while (strcmp(model->feature_names[f], bins->keys[b]) != 0) f++;
    rc = load_bin_tree(model, doc, &bins->items[b], f, impute[f], err);
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}
