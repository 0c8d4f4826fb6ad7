/*
 * xgboost.c - loads XGBoost's JSON model format (what Booster.save_model
 * writes for a ".json" path, versions 1.x to 3.x) into the internal tree
 * representation: gbtree and dart boosters, every objective's output
 * transform, base_score converted to a margin exactly as XGBoost does
 * (float32 arithmetic), default directions for missing values, categorical
 * splits, tree groups for multiclass, and feature names and types.
 *
 * Numbers are parsed from their decimal text straight to float32 with a
 * correctly rounded parser (strtof), as XGBoost's own JSON reader does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "model.h"

/* How XGBoost turns base_score (output space) into a margin. */
typedef enum margin_rule {
  MARGIN_IDENTITY, /* the value itself */
  MARGIN_LOGIT,    /* -logf(1.0f / base_score - 1.0f) */
  MARGIN_LOG       /* logf(base_score) */
} margin_rule;

typedef struct objective_entry {
  const char *name;
  tdm__link link;
  margin_rule margin;
  int multiclass;
} objective_entry;

/*
 * Every objective XGBoost ships, with its PredTransform and ProbToMargin.
 * (binary:logitraw keeps base_score as the margin: checked against 1.7.4.)
 */
static const objective_entry objectives[] = {
    {"reg:squarederror", TDM__LINK_IDENTITY, MARGIN_IDENTITY, 0},
    {"reg:linear", TDM__LINK_IDENTITY, MARGIN_IDENTITY, 0},
    {"reg:squaredlogerror", TDM__LINK_IDENTITY, MARGIN_IDENTITY, 0},
    {"reg:pseudohubererror", TDM__LINK_IDENTITY, MARGIN_IDENTITY, 0},
    {"reg:absoluteerror", TDM__LINK_IDENTITY, MARGIN_IDENTITY, 0},
    {"reg:quantileerror", TDM__LINK_IDENTITY, MARGIN_IDENTITY, 0},
    {"reg:logistic", TDM__LINK_SIGMOID, MARGIN_LOGIT, 0},
    {"binary:logistic", TDM__LINK_SIGMOID, MARGIN_LOGIT, 0},
    {"binary:logitraw", TDM__LINK_IDENTITY, MARGIN_IDENTITY, 0},
    {"binary:hinge", TDM__LINK_HINGE, MARGIN_IDENTITY, 0},
    {"count:poisson", TDM__LINK_EXP, MARGIN_LOG, 0},
    {"reg:gamma", TDM__LINK_EXP, MARGIN_LOG, 0},
    {"reg:tweedie", TDM__LINK_EXP, MARGIN_LOG, 0},
    {"survival:cox", TDM__LINK_EXP, MARGIN_LOG, 0},
    {"survival:aft", TDM__LINK_EXP, MARGIN_LOG, 0},
    {"multi:softmax", TDM__LINK_ARGMAX, MARGIN_IDENTITY, 1},
    {"multi:softprob", TDM__LINK_SOFTMAX, MARGIN_IDENTITY, 1},
    {"rank:pairwise", TDM__LINK_IDENTITY, MARGIN_IDENTITY, 0},
    {"rank:ndcg", TDM__LINK_IDENTITY, MARGIN_IDENTITY, 0},
    {"rank:map", TDM__LINK_IDENTITY, MARGIN_IDENTITY, 0},
};

typedef struct loader {
  tdm_model *model;
  tdm__json_doc doc;
  tdm_error *err;
  const char *name;
  /* One tree's arrays as numbers, reused from tree to tree: five integer
   * arrays and two float arrays of scratch_nodes elements each. */
  int64_t *ints;
  float *floats;
  size_t scratch_nodes;
} loader;

/* A copy of a document string in the model's arena (the document is
 * freed after loading). */
static const char *keep(loader *ld, const char *text) {
  return tdm__arena_strndup(&ld->model->arena, text, strlen(text));
}

static int fail_at(loader *ld, const tdm__json *v, int status,
                   const char *what) {
  return tdm__json_fail(&ld->doc, v, status, ld->err, "%s", what);
}

/* Member `key` of object `obj`, which must have type `type`. */
static int require(loader *ld, const tdm__json *obj, const char *key,
                   tdm__json_type type, const tdm__json **out) {
  static const char *type_names[] = {"null",     "a boolean", "a number",
                                     "a string", "an array",  "an object"};
  *out = NULL;
  if (obj == NULL || obj->type != TDM__JSON_OBJECT)
    return tdm__json_fail(&ld->doc, obj, TDM_EPARSE, ld->err,
                          "expected an object, found %s",
                          tdm__json_type_name(obj));
  const tdm__json *v = tdm__json_get(obj, key);
  if (v == NULL)
    return tdm__json_fail(&ld->doc, obj, TDM_EPARSE, ld->err,
                          "missing member \"%s\"", key);
  if (v->type != type)
    return tdm__json_fail(&ld->doc, v, TDM_EPARSE, ld->err,
                          "expected %s, found %s", type_names[type],
                          tdm__json_type_name(v));
  *out = v;
  return TDM_OK;
}

/* Fails at v unless lo <= value <= hi. */
static int check_range(loader *ld, const tdm__json *v, int64_t value,
                       int64_t lo, int64_t hi) {
  if (value >= lo && value <= hi) return TDM_OK;
  return tdm__json_fail(&ld->doc, v, TDM_EPARSE, ld->err,
                        "%lld is out of range (%lld to %lld)",
                        (long long)value, (long long)lo, (long long)hi);
}

/* An integer stored as a number or as a string ("num_class": "3"). */
static int get_int(loader *ld, const tdm__json *v, int64_t lo, int64_t hi,
                   int64_t *out) {
  int rc = tdm__json_int64(&ld->doc, v, out, ld->err);
  if (rc != TDM_OK) return rc;
  return check_range(ld, v, *out, lo, hi);
}

/* The same check for element i of array a, read earlier as values[i]. */
static int check_element(loader *ld, const tdm__json *a, size_t i,
                         const int64_t *values, int64_t lo, int64_t hi) {
  if (values[i] >= lo && values[i] <= hi) return TDM_OK;
  tdm__json scratch;
  return check_range(ld, tdm__json_element(&ld->doc, a, i, &scratch),
                     values[i], lo, hi);
}

/* Array a as integers; with `booleans`, JSON booleans count as 0 and 1
 * (old models write default_left as either). A packed array holds numbers
 * only. */
static int int_array(loader *ld, const tdm__json *a, int booleans,
                     int64_t *out) {
  if (!booleans || a->packed)
    return tdm__json_array_int64s(&ld->doc, a, out, ld->err);
  for (size_t i = 0; i < a->count; i++) {
    if (a->items[i].type == TDM__JSON_BOOL) {
      out[i] = a->items[i].boolean;
      continue;
    }
    int rc = tdm__json_int64(&ld->doc, &a->items[i], &out[i], ld->err);
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}

static int optional_int(loader *ld, const tdm__json *obj, const char *key,
                        int64_t fallback, int64_t hi, int64_t *out) {
  const tdm__json *v = tdm__json_get(obj, key);
  if (v == NULL) {
    *out = fallback;
    return TDM_OK;
  }
  return get_int(ld, v, 0, hi, out);
}

static const objective_entry *find_objective(const char *name) {
  for (size_t i = 0; i < sizeof objectives / sizeof objectives[0]; i++) {
    if (strcmp(objectives[i].name, name) == 0) return &objectives[i];
  }
  static const objective_entry ranking = {"rank:*", TDM__LINK_IDENTITY,
                                          MARGIN_IDENTITY, 0};
  if (strncmp(name, "rank:", 5) == 0) return &ranking;
  return NULL;
}

static float margin_from_base_score(margin_rule rule, float base_score) {
  switch (rule) {
    case MARGIN_LOGIT: return -logf(1.0f / base_score - 1.0f);
    case MARGIN_LOG: return logf(base_score);
    case MARGIN_IDENTITY: break;
  }
  return base_score;
}

/*
 * base_score is a string in output space: "5E-1", or since XGBoost 3 a
 * list "[5E-1]" (one value, or one per output).
 */
static int load_base_score(loader *ld, const tdm__json *v, margin_rule rule,
                           const char *objective) {
  tdm_model *model = ld->model;
  float values[1] = {0.5f};
  float *all = NULL;
  size_t count = 1;
  if (v == NULL) {
    all = values;
  } else if (v->type == TDM__JSON_STRING && v->count > 0 && v->text[0] == '[') {
    if (v->text[v->count - 1] != ']' || memchr(v->text, '\0', v->count))
      return fail_at(ld, v, TDM_EPARSE, "malformed base_score list");
    all =
        tdm__arena_alloc(&model->arena, (model->num_outputs + 1) * sizeof *all);
    if (all == NULL) return TDM_ENOMEM;
    count = 0;
    /* Items are parsed in place: "[a,b,...]", each a float32 literal. */
    const char *item = v->text + 1, *stop = v->text + v->count - 1;
    while (item < stop) {
      const char *comma = memchr(item, ',', (size_t)(stop - item));
      const char *item_end = comma ? comma : stop;
      size_t len = (size_t)(item_end - item);
      char number[64];
      if (count >= model->num_outputs)
        return fail_at(ld, v, TDM_EPARSE,
                       "base_score has more values than the model has "
                       "outputs");
      if (len == 0 || len >= sizeof number)
        return fail_at(ld, v, TDM_EPARSE, "base_score is not a number list");
      memcpy(number, item, len);
      number[len] = '\0';
      char *end;
      all[count++] = strtof(number, &end);
      if (*end != '\0')
        return fail_at(ld, v, TDM_EPARSE, "base_score is not a number list");
      item = comma ? comma + 1 : stop;
    }
    if (count != 1 && count != model->num_outputs)
      return fail_at(ld, v, TDM_EPARSE,
                     "base_score needs one value or one per output");
  } else {
    int rc = tdm__json_float(&ld->doc, v, &values[0], ld->err);
    if (rc != TDM_OK) return rc;
    all = values;
  }
  model->base_margin = tdm__arena_alloc(
      &model->arena, model->num_outputs * sizeof *model->base_margin);
  if (model->base_margin == NULL) return TDM_ENOMEM;
  for (size_t o = 0; o < model->num_outputs; o++) {
    float base = all[count == 1 ? 0 : o];
    if (rule == MARGIN_LOGIT && !(base > 0.0f && base < 1.0f))
      return tdm__json_fail(&ld->doc, v, TDM_EPARSE, ld->err,
                            "base_score %g must be in (0, 1) for %s", base,
                            objective);
    if (rule == MARGIN_LOG && !(base > 0.0f))
      return tdm__json_fail(&ld->doc, v, TDM_EPARSE, ld->err,
                            "base_score %g must be positive for %s", base,
                            objective);
    model->base_margin[o] = margin_from_base_score(rule, base);
  }
  return TDM_OK;
}

static int load_features(loader *ld, const tdm__json *learner) {
  tdm_model *model = ld->model;
  size_t n = model->num_features;
  model->feature_names =
      tdm__arena_alloc(&model->arena, (n + 1) * sizeof(char *));
  model->feature_types =
      tdm__arena_alloc(&model->arena, (n + 1) * sizeof(char *));
  if (model->feature_names == NULL || model->feature_types == NULL)
    return TDM_ENOMEM;
  const tdm__json *names = tdm__json_get(learner, "feature_names");
  const tdm__json *types = tdm__json_get(learner, "feature_types");
  if (names != NULL && names->type == TDM__JSON_ARRAY && names->count > 0) {
    if (names->count != n)
      return tdm__json_fail(&ld->doc, names, TDM_EPARSE, ld->err,
                            "%zu feature names for %zu features", names->count,
                            n);
    for (size_t i = 0; i < n; i++) {
      if (names->items[i].type != TDM__JSON_STRING)
        return fail_at(ld, &names->items[i], TDM_EPARSE,
                       "a feature name must be a string");
      model->feature_names[i] = keep(ld, names->items[i].text);
      if (model->feature_names[i] == NULL) return TDM_ENOMEM;
    }
    model->has_feature_names = 1;
  } else {
    /* XGBoost's own names for unnamed features. */
    for (size_t i = 0; i < n; i++) {
      char buf[32];
      snprintf(buf, sizeof buf, "f%zu", i);
      model->feature_names[i] =
          tdm__arena_strndup(&model->arena, buf, strlen(buf));
      if (model->feature_names[i] == NULL) return TDM_ENOMEM;
    }
  }
  for (size_t i = 0; i < n; i++) model->feature_types[i] = "float";
  if (types != NULL && types->type == TDM__JSON_ARRAY && types->count > 0) {
    if (types->count != n)
      return tdm__json_fail(&ld->doc, types, TDM_EPARSE, ld->err,
                            "%zu feature types for %zu features", types->count,
                            n);
    for (size_t i = 0; i < n; i++) {
      if (types->items[i].type != TDM__JSON_STRING)
        return fail_at(ld, &types->items[i], TDM_EPARSE,
                       "a feature type must be a string");
      model->feature_types[i] = keep(ld, types->items[i].text);
      if (model->feature_types[i] == NULL) return TDM_ENOMEM;
    }
  }
  return TDM_OK;
}

/* An array member of a tree with exactly `count` elements. */
static int tree_array(loader *ld, const tdm__json *tree, const char *key,
                      size_t count, const tdm__json **out) {
  int rc = require(ld, tree, key, TDM__JSON_ARRAY, out);
  if (rc != TDM_OK) return rc;
  if ((*out)->count != count)
    return tdm__json_fail(&ld->doc, *out, TDM_EPARSE, ld->err,
                          "has %zu elements, expected %zu (one per node)",
                          (*out)->count, count);
  return TDM_OK;
}

/* Growable array of bitset words shared by every categorical node. */
typedef struct word_vec {
  uint32_t *data;
  size_t len, cap;
} word_vec;

static int word_vec_grow(word_vec *w, size_t extra) {
  if (w->len + extra <= w->cap) return TDM_OK;
  size_t cap = w->cap ? w->cap : 64;
  while (cap < w->len + extra) cap *= 2;
  uint32_t *data = tdm__realloc(w->data, cap * sizeof *data);
  if (data == NULL) return TDM_ENOMEM;
  w->data = data;
  w->cap = cap;
  return TDM_OK;
}

/*
 * Categorical splits: categories_nodes lists the split nodes, and for the
 * i-th of them categories[segments[i] .. segments[i] + sizes[i]) is the set
 * of categories that goes right. Each set becomes a bitset of
 * ceil((max category + 1) / 32) words; a category past its end is not in
 * the set.
 */
static int load_categories(loader *ld, const tdm__json *tree, size_t base,
                           size_t count, word_vec *words) {
  tdm_model *model = ld->model;
  const tdm__json *nodes = tdm__json_get(tree, "categories_nodes");
  if (nodes == NULL || nodes->type != TDM__JSON_ARRAY || nodes->count == 0) {
    for (size_t i = 0; i < count; i++) {
      if (model->nodes[base + i].kind == TDM__NODE_XGB_CATEGORICAL)
        return tdm__json_fail(&ld->doc, tree, TDM_EPARSE, ld->err,
                              "node %zu is categorical but the tree lists no "
                              "categories",
                              i);
    }
    return TDM_OK;
  }
  const tdm__json *segments, *sizes, *cats;
  int rc = require(ld, tree, "categories_segments", TDM__JSON_ARRAY, &segments);
  if (rc == TDM_OK)
    rc = require(ld, tree, "categories_sizes", TDM__JSON_ARRAY, &sizes);
  if (rc == TDM_OK)
    rc = require(ld, tree, "categories", TDM__JSON_ARRAY, &cats);
  if (rc != TDM_OK) return rc;
  if (segments->count != nodes->count || sizes->count != nodes->count)
    return fail_at(ld, nodes, TDM_EPARSE,
                   "categories_nodes, categories_segments and "
                   "categories_sizes differ in length");
  /* The four arrays as integers, in one block: node ids, segments, sizes,
   * then the categories. */
  size_t n = nodes->count;
  int64_t *ids = tdm__malloc((3 * n + cats->count + 1) * sizeof *ids);
  if (ids == NULL) return TDM_ENOMEM;
  int64_t *starts = ids + n, *lengths = starts + n, *values = lengths + n;
  rc = int_array(ld, nodes, 0, ids);
  if (rc == TDM_OK) rc = int_array(ld, segments, 0, starts);
  if (rc == TDM_OK) rc = int_array(ld, sizes, 0, lengths);
  if (rc == TDM_OK) rc = int_array(ld, cats, 0, values);
  for (size_t j = 0; j < n && rc == TDM_OK; j++) {
    rc = check_element(ld, nodes, j, ids, 0, (int64_t)count - 1);
    if (rc == TDM_OK)
      rc = check_element(ld, segments, j, starts, 0, (int64_t)cats->count);
    if (rc == TDM_OK)
      rc = check_element(ld, sizes, j, lengths, 0,
                         (int64_t)cats->count - starts[j]);
    if (rc != TDM_OK) break;
    int64_t node_id = ids[j], segment = starts[j], size = lengths[j];
    tdm__node *node = &model->nodes[base + (size_t)node_id];
    if (node->kind != TDM__NODE_XGB_CATEGORICAL) {
      tdm__json scratch;
      rc = tdm__json_fail(&ld->doc,
                          tdm__json_element(&ld->doc, nodes, j, &scratch),
                          TDM_EPARSE, ld->err,
                          "node %lld has categories but is not a "
                          "categorical split",
                          (long long)node_id);
      break;
    }
    int64_t largest = -1;
    for (int64_t c = segment; c < segment + size && rc == TDM_OK; c++) {
      rc = check_element(ld, cats, (size_t)c, values, 0, (1 << 24) - 1);
      if (values[c] > largest) largest = values[c];
    }
    if (rc != TDM_OK) break;
    size_t num_words = (size_t)(largest + 1 + 31) / 32;
    rc = word_vec_grow(words, num_words);
    if (rc != TDM_OK) break;
    node->cat_begin = (uint32_t)words->len;
    node->cat_count = (uint32_t)num_words;
    /* An empty set has no words, and words->data is still NULL when no
     * set before it had any: NULL + 0 and memset(NULL, ...) are undefined. */
    if (num_words > 0)
      memset(words->data + words->len, 0, num_words * sizeof(uint32_t));
    for (int64_t c = segment; c < segment + size; c++)
      words->data[words->len + (size_t)(values[c] >> 5)] |= 1u
                                                           << (values[c] & 31);
    words->len += num_words;
  }
  tdm__free(ids);
  return rc;
}

/* Translates one tree's parallel arrays into nodes starting at `base`. */
static int load_tree(loader *ld, const tdm__json *tree, size_t base,
                     size_t count, float weight, word_vec *words) {
  tdm_model *model = ld->model;
  const tdm__json *left, *right, *feature, *cond, *dflt;
  int rc = tree_array(ld, tree, "left_children", count, &left);
  if (rc == TDM_OK) rc = tree_array(ld, tree, "right_children", count, &right);
  if (rc == TDM_OK) rc = tree_array(ld, tree, "split_indices", count, &feature);
  if (rc == TDM_OK) rc = tree_array(ld, tree, "split_conditions", count, &cond);
  if (rc == TDM_OK) rc = tree_array(ld, tree, "default_left", count, &dflt);
  if (rc != TDM_OK) return rc;
  const tdm__json *split_type = tdm__json_get(tree, "split_type");
  if (split_type != NULL && split_type->count > 0) {
    rc = tree_array(ld, tree, "split_type", count, &split_type);
    if (rc != TDM_OK) return rc;
  } else {
    split_type = NULL;
  }
  /* TreeSHAP weighs paths by the hessian sums; a model without them
   * scores but has no contributions. */
  const tdm__json *hessian = tdm__json_get(tree, "sum_hessian");
  if (hessian != NULL && hessian->type == TDM__JSON_ARRAY &&
      hessian->count > 0) {
    rc = tree_array(ld, tree, "sum_hessian", count, &hessian);
    if (rc != TDM_OK) return rc;
  } else {
    hessian = NULL;
    model->has_cover = 0;
  }
  /* The arrays as numbers first (each in one pass over its text), then
   * the nodes. Leaves' entries in split_indices, default_left and
   * split_type mean nothing and are not range-checked. */
  int64_t *l = ld->ints, *r = l + count, *f = r + count, *dl = f + count,
          *type = dl + count;
  float *value = ld->floats, *cover = value + count;
  rc = int_array(ld, left, 0, l);
  if (rc == TDM_OK) rc = int_array(ld, right, 0, r);
  if (rc == TDM_OK) rc = int_array(ld, feature, 0, f);
  if (rc == TDM_OK) rc = int_array(ld, dflt, 1, dl);
  if (rc == TDM_OK && split_type != NULL)
    rc = int_array(ld, split_type, 0, type);
  if (rc == TDM_OK)
    rc = tdm__json_array_floats(&ld->doc, cond, value, ld->err);
  if (rc == TDM_OK && hessian != NULL)
    rc = tdm__json_array_floats(&ld->doc, hessian, cover, ld->err);
  if (rc != TDM_OK) return rc;
  for (size_t i = 0; i < count; i++) {
    tdm__node *node = &model->nodes[base + i];
    rc = check_element(ld, left, i, l, -1, (int64_t)count - 1);
    if (rc == TDM_OK)
      rc = check_element(ld, right, i, r, -1, (int64_t)count - 1);
    if (rc != TDM_OK) return rc;
    node->cover = hessian != NULL ? cover[i] : 0.0f;
    if (l[i] == -1) {
      node->kind = TDM__NODE_LEAF;
      node->feature = -1;
      /* dart: XGBoost multiplies each tree's output by its weight in
       * float32; the product is the same whether taken now or later. */
      node->value = value[i] * weight;
      node->unweighted = value[i];
      continue;
    }
    tdm__json scratch;
    if (r[i] == -1)
      return tdm__json_fail(&ld->doc,
                            tdm__json_element(&ld->doc, right, i, &scratch),
                            TDM_EPARSE, ld->err,
                            "node %zu has a left child but no right child", i);
    rc = check_element(ld, feature, i, f, 0, (int64_t)model->num_features - 1);
    if (rc == TDM_OK) rc = check_element(ld, dflt, i, dl, 0, 1);
    if (rc == TDM_OK && split_type != NULL)
      rc = check_element(ld, split_type, i, type, 0, 1);
    if (rc != TDM_OK) return rc;
    int categorical = split_type != NULL && type[i] == 1;
    node->kind =
        categorical ? TDM__NODE_XGB_CATEGORICAL : TDM__NODE_XGB_NUMERIC;
    if (categorical) {
      model->num_categorical_splits++;
    } else if (isnan(value[i])) {
      return fail_at(ld, tdm__json_element(&ld->doc, cond, i, &scratch),
                     TDM_EPARSE, "a numeric split has a NaN threshold");
    }
    node->default_left = (uint8_t)dl[i];
    node->feature = (int32_t)f[i];
    node->left = (uint32_t)(base + (size_t)l[i]);
    node->right = (uint32_t)(base + (size_t)r[i]);
    node->value = value[i];
  }
  return load_categories(ld, tree, base, count, words);
}

static int load_trees(loader *ld, const tdm__json *gbtree_model,
                      const tdm__json *weight_drop) {
  tdm_model *model = ld->model;
  const tdm__json *trees, *tree_info;
  int rc = require(ld, gbtree_model, "trees", TDM__JSON_ARRAY, &trees);
  if (rc == TDM_OK)
    rc = require(ld, gbtree_model, "tree_info", TDM__JSON_ARRAY, &tree_info);
  if (rc != TDM_OK) return rc;
  if (tree_info->count != trees->count)
    return tdm__json_fail(&ld->doc, tree_info, TDM_EPARSE, ld->err,
                          "%zu entries for %zu trees", tree_info->count,
                          trees->count);
  if (weight_drop != NULL && weight_drop->count != trees->count)
    return tdm__json_fail(&ld->doc, weight_drop, TDM_EPARSE, ld->err,
                          "%zu dart weights for %zu trees", weight_drop->count,
                          trees->count);
  /* First pass: count the nodes so they can live in one array. */
  size_t total = 0;
  for (size_t t = 0; t < trees->count; t++) {
    const tdm__json *tree = &trees->items[t], *left;
    rc = require(ld, tree, "left_children", TDM__JSON_ARRAY, &left);
    if (rc != TDM_OK) return rc;
    if (left->count == 0)
      return fail_at(ld, left, TDM_EPARSE, "a tree must have nodes");
    const tdm__json *param = tdm__json_get(tree, "tree_param");
    int64_t leaf_vector = 0, num_nodes = (int64_t)left->count;
    if (param != NULL) {
      rc =
          optional_int(ld, param, "size_leaf_vector", 0, 1 << 20, &leaf_vector);
      if (rc == TDM_OK)
        rc = optional_int(ld, param, "num_nodes", num_nodes, 1 << 30,
                          &num_nodes);
      if (rc != TDM_OK) return rc;
    }
    if ((size_t)num_nodes != left->count)
      return tdm__json_fail(&ld->doc, left, TDM_EPARSE, ld->err,
                            "has %zu elements, expected %lld (one per node)",
                            left->count, (long long)num_nodes);
    if (leaf_vector > 1)
      return fail_at(ld, param, TDM_EUNSUPPORTED,
                     "vector-leaf trees (multi_strategy=multi_output_tree) "
                     "are not supported");
    total += left->count;
    if (left->count > ld->scratch_nodes) ld->scratch_nodes = left->count;
    if (total > UINT32_MAX / 2)
      return fail_at(ld, trees, TDM_EUNSUPPORTED, "too many nodes");
  }
  int64_t parallel = 1;
  const tdm__json *param = tdm__json_get(gbtree_model, "gbtree_model_param");
  if (param != NULL) {
    rc = optional_int(ld, param, "num_parallel_tree", 1, 1 << 20, &parallel);
    if (rc != TDM_OK) return rc;
  }
  model->trees_per_iteration =
      model->num_outputs * (size_t)(parallel > 0 ? parallel : 1);
  model->num_iterations = trees->count / model->trees_per_iteration;
  model->num_trees = trees->count;
  model->num_nodes = total;
  model->trees = tdm__arena_alloc(&model->arena,
                                  (trees->count + 1) * sizeof *model->trees);
  model->nodes =
      tdm__arena_alloc(&model->arena, (total + 1) * sizeof *model->nodes);
  if (model->trees == NULL || model->nodes == NULL) return TDM_ENOMEM;
  /* Scratch for one tree's arrays, and the trees' groups and weights. */
  size_t num_trees = trees->count;
  ld->ints = tdm__malloc((5 * ld->scratch_nodes + num_trees + 1) *
                         sizeof *ld->ints);
  ld->floats = tdm__malloc((2 * ld->scratch_nodes + num_trees + 1) *
                           sizeof *ld->floats);
  if (ld->ints == NULL || ld->floats == NULL) return TDM_ENOMEM;
  int64_t *groups = ld->ints + 5 * ld->scratch_nodes;
  float *weights = ld->floats + 2 * ld->scratch_nodes;
  rc = int_array(ld, tree_info, 0, groups);
  if (rc == TDM_OK && weight_drop != NULL)
    rc = tdm__json_array_floats(&ld->doc, weight_drop, weights, ld->err);
  word_vec words = {0};
  size_t base = 0;
  model->has_cover = 1; /* until a tree lacks sum_hessian */
  for (size_t t = 0; t < num_trees && rc == TDM_OK; t++) {
    const tdm__json *tree = &trees->items[t];
    size_t count = tdm__json_get(tree, "left_children")->count;
    rc = check_element(ld, tree_info, t, groups, 0,
                       (int64_t)model->num_outputs - 1);
    float weight = weight_drop != NULL ? weights[t] : 1.0f;
    if (rc == TDM_OK) rc = load_tree(ld, tree, base, count, weight, &words);
    model->trees[t].weight = weight;
    model->trees[t].root = (uint32_t)base;
    model->trees[t].output = (uint32_t)groups[t];
    model->trees[t].num_nodes = (uint32_t)count;
    base += count;
  }
  if (rc == TDM_OK && words.len > 0) {
    model->cat_words =
        tdm__arena_alloc(&model->arena, words.len * sizeof(uint32_t));
    if (model->cat_words == NULL) {
      rc = TDM_ENOMEM;
    } else {
      memcpy(model->cat_words, words.data, words.len * sizeof(uint32_t));
      model->num_cat_words = words.len;
    }
  }
  tdm__free(words.data);
  return rc;
}

static int load_learner(loader *ld) {
  tdm_model *model = ld->model;
  const tdm__json *root = ld->doc.root, *learner, *param, *objective,
                  *objective_name, *booster, *booster_name;
  int rc = require(ld, root, "learner", TDM__JSON_OBJECT, &learner);
  if (rc != TDM_OK) return rc;

  const tdm__json *version = tdm__json_get(root, "version");
  int major = 1;
  if (version != NULL && version->type == TDM__JSON_ARRAY &&
      version->count == 3) {
    int64_t parts[3];
    rc = int_array(ld, version, 0, parts);
    for (size_t i = 0; i < 3 && rc == TDM_OK; i++)
      rc = check_element(ld, version, i, parts, 0, 1000000);
    if (rc != TDM_OK) return rc;
    char buf[64];
    snprintf(buf, sizeof buf, "%lld.%lld.%lld", (long long)parts[0],
             (long long)parts[1], (long long)parts[2]);
    model->library_version =
        tdm__arena_strndup(&model->arena, buf, strlen(buf));
    if (model->library_version == NULL) return TDM_ENOMEM;
    major = (int)parts[0];
  }
  model->sigmoid_clamp = major >= 2;

  rc = require(ld, learner, "gradient_booster", TDM__JSON_OBJECT, &booster);
  if (rc == TDM_OK)
    rc = require(ld, booster, "name", TDM__JSON_STRING, &booster_name);
  if (rc != TDM_OK) return rc;
  const tdm__json *gbtree_model = NULL, *weight_drop = NULL;
  if (strcmp(booster_name->text, "gbtree") == 0) {
    rc = require(ld, booster, "model", TDM__JSON_OBJECT, &gbtree_model);
    /* XGBoost 3.4 and later save a dart booster as "gbtree" with its
     * weight_drop beside the model. */
    weight_drop = tdm__json_get(booster, "weight_drop");
    if (weight_drop != NULL && weight_drop->type != TDM__JSON_ARRAY)
      return fail_at(ld, weight_drop, TDM_EPARSE, "expected an array");
  } else if (strcmp(booster_name->text, "dart") == 0) {
    const tdm__json *inner;
    rc = require(ld, booster, "gbtree", TDM__JSON_OBJECT, &inner);
    if (rc == TDM_OK)
      rc = require(ld, inner, "model", TDM__JSON_OBJECT, &gbtree_model);
    if (rc == TDM_OK)
      rc = require(ld, booster, "weight_drop", TDM__JSON_ARRAY, &weight_drop);
  } else {
    return tdm__json_fail(&ld->doc, booster_name, TDM_EUNSUPPORTED, ld->err,
                          "booster \"%s\" is not supported (tandem scores "
                          "tree boosters: gbtree and dart)",
                          booster_name->text);
  }
  if (rc != TDM_OK) return rc;
  model->booster = keep(ld, booster_name->text);
  if (model->booster == NULL) return TDM_ENOMEM;

  rc = require(ld, learner, "objective", TDM__JSON_OBJECT, &objective);
  if (rc == TDM_OK)
    rc = require(ld, objective, "name", TDM__JSON_STRING, &objective_name);
  if (rc != TDM_OK) return rc;
  const objective_entry *entry = find_objective(objective_name->text);
  if (entry == NULL)
    return tdm__json_fail(&ld->doc, objective_name, TDM_EUNSUPPORTED, ld->err,
                          "objective \"%s\" is not supported",
                          objective_name->text);
  model->objective = keep(ld, objective_name->text);
  if (model->objective == NULL) return TDM_ENOMEM;
  model->link = entry->link;

  rc = require(ld, learner, "learner_model_param", TDM__JSON_OBJECT, &param);
  if (rc != TDM_OK) return rc;
  const tdm__json *num_feature_value = tdm__json_get(param, "num_feature");
  if (num_feature_value == NULL)
    return fail_at(ld, param, TDM_EPARSE, "missing member \"num_feature\"");
  int64_t num_feature, num_class, num_target;
  rc = get_int(ld, num_feature_value, 1, 1 << 24, &num_feature);
  if (rc == TDM_OK)
    rc = optional_int(ld, param, "num_class", 0, 1 << 20, &num_class);
  if (rc == TDM_OK)
    rc = optional_int(ld, param, "num_target", 1, 1 << 20, &num_target);
  if (rc != TDM_OK) return rc;
  model->num_features = (size_t)num_feature;
  if (entry->multiclass && num_class < 1)
    return tdm__json_fail(&ld->doc, param, TDM_EPARSE, ld->err,
                          "%s needs num_class >= 1", model->objective);
  model->num_outputs = num_class > 0
                           ? (size_t)num_class
                           : (size_t)(num_target > 0 ? num_target : 1);
  if (model->num_outputs > 4096)
    return tdm__json_fail(&ld->doc, param, TDM_EUNSUPPORTED, ld->err,
                          "%zu outputs per row (tandem supports up to 4096)",
                          model->num_outputs);
  rc = load_base_score(ld, tdm__json_get(param, "base_score"), entry->margin,
                       model->objective);
  if (rc == TDM_OK) rc = load_features(ld, learner);
  if (rc == TDM_OK) rc = load_trees(ld, gbtree_model, weight_drop);
  return rc;
}

int tdm__xgboost_load(tdm_model *model, const tdm__json_doc *doc,
                      tdm_error *err) {
  loader ld = {.model = model, .doc = *doc, .err = err, .name = doc->name};
  model->format = TDM_FORMAT_XGBOOST_JSON;
  model->format_name = "xgboost-json";
  model->float32 = 1;
  int rc = load_learner(&ld);
  tdm__free(ld.ints);
  tdm__free(ld.floats);
  if (rc == TDM_ENOMEM && (err == NULL || err->status != TDM_ENOMEM))
    tdm__fail(err, TDM_ENOMEM, "%s: out of memory", doc->name);
  return rc;
}
