/*
 * lightgbm.c - loads LightGBM's text model format (what save_model and the
 * CLI's task=train write, versions v2 to v4) into the internal tree
 * representation: numerical splits with their missing types, categorical
 * splits as bitsets, linear trees, random-forest averaging, feature names,
 * and each objective's output transform. LightGBM scores in double, so
 * every number is parsed with strtod (correctly rounded) and the model is
 * marked as a float64 model.
 *
 * The file is "key=value" lines: a header, then one block per tree
 * starting "Tree=N", then "end of trees" and sections we do not need
 * (feature importances, parameters).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/core.h"
#include "../core/json.h"
#include "model.h"

typedef struct line_reader {
  const char *data;
  size_t size, pos, line;
  const char *name;
  tdm_error *err;
} line_reader;

/* One "key=value" line; a line without '=' has an empty value. */
typedef struct kv {
  const char *key, *value;
  size_t key_len, value_len, line;
} kv;

/* The next non-empty line, or 0 at the end. */
static int next_line(line_reader *r, kv *out) {
  while (r->pos < r->size) {
    const char *start = r->data + r->pos;
    const char *nl = memchr(start, '\n', r->size - r->pos);
    size_t len = nl ? (size_t)(nl - start) : r->size - r->pos;
    r->pos += len + (nl ? 1 : 0);
    r->line++;
    while (len > 0 && (start[len - 1] == '\r' || start[len - 1] == ' ')) len--;
    if (len == 0) continue;
    const char *eq = memchr(start, '=', len);
    out->key = start;
    out->key_len = eq ? (size_t)(eq - start) : len;
    out->value = eq ? eq + 1 : start + len;
    out->value_len = eq ? len - out->key_len - 1 : 0;
    out->line = r->line;
    return 1;
  }
  return 0;
}

static int key_is(const kv *line, const char *key) {
  return line->key_len == strlen(key) &&
         memcmp(line->key, key, line->key_len) == 0;
}

static int fail_line(line_reader *r, size_t line, int status, const char *fmt,
                     ...) TDM__PRINTF(4, 5);
static int fail_line(line_reader *r, size_t line, int status, const char *fmt,
                     ...) {
  char what[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return tdm__fail(r->err, status, "%s:%zu: %s", r->name, line, what);
}

/* Parses a space-separated list of exactly `count` doubles. */
static int parse_doubles(line_reader *r, const kv *line, size_t count,
                         double *out) {
  char buf[64];
  const char *p = line->value, *end = line->value + line->value_len;
  for (size_t i = 0; i < count; i++) {
    while (p < end && *p == ' ') p++;
    const char *q = p;
    while (q < end && *q != ' ') q++;
    size_t n = (size_t)(q - p);
    if (n == 0)
      return fail_line(r, line->line, TDM_EPARSE,
                       "%.*s has %zu values, expected %zu", (int)line->key_len,
                       line->key, i, count);
    if (n >= sizeof buf)
      return fail_line(r, line->line, TDM_EPARSE, "%.*s: value %zu is too long",
                       (int)line->key_len, line->key, i + 1);
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *stop;
    errno = 0;
    out[i] = strtod(buf, &stop);
    if (*stop != '\0' || stop == buf)
      return fail_line(r, line->line, TDM_EPARSE,
                       "%.*s: value %zu \"%s\" is not a number",
                       (int)line->key_len, line->key, i + 1, buf);
    p = q;
  }
  while (p < end && *p == ' ') p++;
  if (p != end)
    return fail_line(r, line->line, TDM_EPARSE, "%.*s has more than %zu values",
                     (int)line->key_len, line->key, count);
  return TDM_OK;
}

/* Like parse_doubles, for integers in [lo, hi]. */
static int parse_ints(line_reader *r, const kv *line, size_t count, int64_t lo,
                      int64_t hi, int64_t *out) {
  double *tmp = tdm__malloc((count + 1) * sizeof *tmp);
  if (tmp == NULL) return TDM_ENOMEM;
  int rc = parse_doubles(r, line, count, tmp);
  for (size_t i = 0; rc == TDM_OK && i < count; i++) {
    if (tmp[i] != floor(tmp[i]) || tmp[i] < (double)lo || tmp[i] > (double)hi)
      rc = fail_line(r, line->line, TDM_EPARSE,
                     "%.*s: value %zu (%g) must be an integer from %lld to "
                     "%lld",
                     (int)line->key_len, line->key, i + 1, tmp[i],
                     (long long)lo, (long long)hi);
    else
      out[i] = (int64_t)tmp[i];
  }
  tdm__free(tmp);
  return rc;
}

static int parse_int(line_reader *r, const kv *line, int64_t lo, int64_t hi,
                     int64_t *out) {
  return parse_ints(r, line, 1, lo, hi, out);
}

/* Counts the space-separated values on a line. */
static size_t count_values(const kv *line) {
  size_t n = 0;
  const char *p = line->value, *end = line->value + line->value_len;
  while (p < end) {
    while (p < end && *p == ' ') p++;
    if (p == end) break;
    n++;
    while (p < end && *p != ' ') p++;
  }
  return n;
}

/* LightGBM objectives and their ConvertOutput. */
static const tdm__named_link objectives[] = {
    {"binary", TDM__LINK_SIGMOID},
    {"multiclass", TDM__LINK_SOFTMAX},
    {"multiclassova", TDM__LINK_SIGMOID_EACH},
    {"cross_entropy", TDM__LINK_SIGMOID},
    {"xentropy", TDM__LINK_SIGMOID},
    {"cross_entropy_lambda", TDM__LINK_LOG1P_EXP},
    {"xentlambda", TDM__LINK_LOG1P_EXP},
    {"poisson", TDM__LINK_EXP},
    {"gamma", TDM__LINK_EXP},
    {"tweedie", TDM__LINK_EXP},
    {"regression", TDM__LINK_IDENTITY},
    {"regression_l2", TDM__LINK_IDENTITY},
    {"regression_l1", TDM__LINK_IDENTITY},
    {"huber", TDM__LINK_IDENTITY},
    {"fair", TDM__LINK_IDENTITY},
    {"quantile", TDM__LINK_IDENTITY},
    {"mape", TDM__LINK_IDENTITY},
    {"lambdarank", TDM__LINK_IDENTITY},
    {"rank_xendcg", TDM__LINK_IDENTITY},
    {"custom", TDM__LINK_IDENTITY},
};

/* "binary sigmoid:1", "multiclass num_class:3", "regression sqrt". */
static int load_objective(line_reader *r, tdm_model *model, const kv *line) {
  char text[256];
  if (line->value_len >= sizeof text)
    return fail_line(r, line->line, TDM_EPARSE, "objective is too long");
  memcpy(text, line->value, line->value_len);
  text[line->value_len] = '\0';
  char *save = NULL;
  char *name = strtok_r(text, " ", &save);
  if (name == NULL) return TDM_OK;
  const tdm__named_link *entry =
      tdm__find_link(objectives, sizeof objectives / sizeof *objectives, name);
  if (entry == NULL)
    return fail_line(r, line->line, TDM_EUNSUPPORTED,
                     "objective \"%s\" is not supported", name);
  model->link = entry->link;
  model->objective =
      tdm__arena_strndup(&model->arena, line->value, line->value_len);
  if (model->objective == NULL) return TDM_ENOMEM;
  for (char *param = strtok_r(NULL, " ", &save); param != NULL;
       param = strtok_r(NULL, " ", &save)) {
    if (strncmp(param, "sigmoid:", 8) == 0) {
      char *end;
      model->sigmoid_scale = strtod(param + 8, &end);
      if (*end != '\0' || !(model->sigmoid_scale > 0))
        return fail_line(r, line->line, TDM_EPARSE,
                         "objective: bad sigmoid parameter \"%s\"", param);
    } else if (strcmp(param, "sqrt") == 0 &&
               model->link == TDM__LINK_IDENTITY) {
      model->link = TDM__LINK_SIGNED_SQUARE;
    }
  }
  return TDM_OK;
}

/* Growable arrays that collect every tree's pieces. */
typedef struct vec {
  void *data;
  size_t len, cap, elem;
} vec;

static void *vec_push(vec *v, size_t n) {
  if (v->data == NULL || v->len + n > v->cap) {
    size_t cap = v->cap ? v->cap : 256;
    while (cap < v->len + n) cap *= 2;
    void *data = tdm__realloc(v->data, cap * v->elem);
    if (data == NULL) return NULL;
    v->data = data;
    v->cap = cap;
  }
  void *at = (char *)v->data + v->len * v->elem;
  memset(at, 0, n * v->elem);
  v->len += n;
  return at;
}

/* The lines of one "Tree=N" block, by key. */
typedef struct tree_lines {
  kv num_leaves, num_cat, split_feature, threshold, decision_type, left_child,
      right_child, leaf_value, cat_boundaries, cat_threshold, is_linear,
      leaf_const, num_features, leaf_features, leaf_coeff, leaf_count,
      internal_count;
  int have_num_leaves, have_num_cat, have_is_linear;
} tree_lines;

typedef struct builder {
  line_reader *r;
  tdm_model *model;
  vec trees, nodes, words, linear_features, linear_coeffs;
} builder;

static int need(line_reader *r, const kv *line, const char *key,
                size_t tree_line, size_t tree_index) {
  if (line->key == NULL)
    return fail_line(r, tree_line, TDM_EPARSE, "Tree=%zu has no %s line",
                     tree_index, key);
  return TDM_OK;
}

/* Reads a tree's leaf_count and internal_count, TreeSHAP's node weights,
 * into the covers of its nodes (leaves after the inner nodes). A tree
 * without them leaves the model without contributions. */
static int load_counts(builder *b, const tree_lines *t, size_t leaves,
                       tdm__node *nodes) {
  size_t inner = leaves - 1;
  if (t->leaf_count.key == NULL ||
      (inner > 0 && t->internal_count.key == NULL)) {
    b->model->has_cover = 0;
    return TDM_OK;
  }
  double *counts = tdm__malloc((leaves + inner) * sizeof *counts);
  if (counts == NULL) return TDM_ENOMEM;
  int rc = parse_doubles(b->r, &t->leaf_count, leaves, counts + inner);
  if (rc == TDM_OK && inner > 0)
    rc = parse_doubles(b->r, &t->internal_count, inner, counts);
  for (size_t i = 0; rc == TDM_OK && i < leaves + inner; i++)
    nodes[i].cover = counts[i];
  tdm__free(counts);
  return rc;
}

/* Translates one tree block into nodes: internal node i becomes base + i,
 * leaf j becomes base + (num_leaves - 1) + j. */
static int build_tree(builder *b, tree_lines *t, size_t tree_line,
                      size_t tree_index) {
  line_reader *r = b->r;
  tdm_model *model = b->model;
  int64_t num_leaves = 1, num_cat = 0, is_linear = 0;
  int rc = need(r, &t->num_leaves, "num_leaves", tree_line, tree_index);
  /* LightGBM allows at most 131072 leaves. */
  if (rc == TDM_OK) rc = parse_int(r, &t->num_leaves, 1, 131072, &num_leaves);
  if (rc == TDM_OK && t->num_cat.key != NULL)
    rc = parse_int(r, &t->num_cat, 0, 1 << 24, &num_cat);
  if (rc == TDM_OK && t->is_linear.key != NULL)
    rc = parse_int(r, &t->is_linear, 0, 1, &is_linear);
  if (rc == TDM_OK)
    rc = need(r, &t->leaf_value, "leaf_value", tree_line, tree_index);
  /* Check the declared counts against the lines before allocating for
   * them, so a tiny file cannot claim a huge tree. */
  if (rc == TDM_OK && count_values(&t->leaf_value) != (size_t)num_leaves)
    rc = fail_line(r, t->leaf_value.line, TDM_EPARSE,
                   "leaf_value has %zu values, expected num_leaves=%lld",
                   count_values(&t->leaf_value), (long long)num_leaves);
  if (rc == TDM_OK && num_cat > 0 &&
      (t->cat_boundaries.key == NULL ||
       count_values(&t->cat_boundaries) != (size_t)num_cat + 1))
    rc =
        fail_line(r, t->cat_boundaries.key ? t->cat_boundaries.line : tree_line,
                  TDM_EPARSE, "cat_boundaries must have num_cat+1=%lld values",
                  (long long)num_cat + 1);
  if (rc != TDM_OK) return rc;
  size_t leaves = (size_t)num_leaves, inner = leaves - 1;
  size_t base = b->nodes.len;
  if (base + leaves + inner > UINT32_MAX / 2)
    return fail_line(r, tree_line, TDM_EUNSUPPORTED, "too many nodes");
  tdm__tree *tree = vec_push(&b->trees, 1);
  tdm__node *nodes = vec_push(&b->nodes, inner + leaves);
  double *values = tdm__malloc((leaves + 1) * sizeof *values);
  int64_t *ints = tdm__malloc((5 * inner + 1) * sizeof *ints);
  double *thresholds = tdm__malloc((inner + 1) * sizeof *thresholds);
  if (tree == NULL || nodes == NULL || values == NULL || ints == NULL ||
      thresholds == NULL) {
    rc = TDM_ENOMEM;
    goto done;
  }
  nodes = (tdm__node *)b->nodes.data + base; /* after any reallocation */
  tree->root = (uint32_t)base;
  tree->num_nodes = (uint32_t)(inner + leaves);
  rc = parse_doubles(r, &t->leaf_value, leaves, values);
  if (rc != TDM_OK) goto done;
  for (size_t j = 0; j < leaves; j++) {
    nodes[inner + j].kind = TDM__NODE_LEAF;
    nodes[inner + j].feature = -1;
    nodes[inner + j].value = values[j];
    nodes[inner + j].unweighted = values[j];
  }
  tree->weight = 1.0;
  rc = load_counts(b, t, leaves, nodes);
  if (rc != TDM_OK) goto done;
  if (inner > 0) {
    int64_t *feature = ints, *decision = ints + inner, *left = ints + 2 * inner,
            *right = ints + 3 * inner;
    int64_t max_feature = (int64_t)model->num_features - 1;
    if ((rc = need(r, &t->split_feature, "split_feature", tree_line,
                   tree_index)) != TDM_OK ||
        (rc = need(r, &t->threshold, "threshold", tree_line, tree_index)) !=
            TDM_OK ||
        (rc = need(r, &t->decision_type, "decision_type", tree_line,
                   tree_index)) != TDM_OK ||
        (rc = need(r, &t->left_child, "left_child", tree_line, tree_index)) !=
            TDM_OK ||
        (rc = need(r, &t->right_child, "right_child", tree_line, tree_index)) !=
            TDM_OK)
      goto done;
    if ((rc = parse_ints(r, &t->split_feature, inner, 0, max_feature,
                         feature)) != TDM_OK ||
        (rc = parse_doubles(r, &t->threshold, inner, thresholds)) != TDM_OK ||
        (rc = parse_ints(r, &t->decision_type, inner, 0, 15, decision)) !=
            TDM_OK ||
        (rc = parse_ints(r, &t->left_child, inner, -(int64_t)leaves,
                         (int64_t)inner - 1, left)) != TDM_OK ||
        (rc = parse_ints(r, &t->right_child, inner, -(int64_t)leaves,
                         (int64_t)inner - 1, right)) != TDM_OK)
      goto done;
    int64_t *boundaries = NULL;
    size_t num_words = 0;
    uint32_t *words = NULL;
    if (num_cat > 0) {
      if ((rc = need(r, &t->cat_boundaries, "cat_boundaries", tree_line,
                     tree_index)) != TDM_OK ||
          (rc = need(r, &t->cat_threshold, "cat_threshold", tree_line,
                     tree_index)) != TDM_OK)
        goto done;
      num_words = count_values(&t->cat_threshold);
      boundaries = tdm__malloc(((size_t)num_cat + 1) * sizeof *boundaries);
      double *word_values = tdm__malloc((num_words + 1) * sizeof(double));
      words = vec_push(&b->words, num_words);
      if (boundaries == NULL || word_values == NULL || words == NULL) {
        tdm__free(boundaries);
        tdm__free(word_values);
        rc = TDM_ENOMEM;
        goto done;
      }
      rc = parse_ints(r, &t->cat_boundaries, (size_t)num_cat + 1, 0,
                      (int64_t)num_words, boundaries);
      if (rc == TDM_OK)
        rc = parse_doubles(r, &t->cat_threshold, num_words, word_values);
      words = (uint32_t *)b->words.data + (b->words.len - num_words);
      for (size_t w = 0; rc == TDM_OK && w < num_words; w++) {
        if (word_values[w] < 0 || word_values[w] > 4294967295.0 ||
            word_values[w] != floor(word_values[w]))
          rc =
              fail_line(r, t->cat_threshold.line, TDM_EPARSE,
                        "cat_threshold: value %zu is not a 32-bit word", w + 1);
        else
          words[w] = (uint32_t)word_values[w];
      }
      for (int64_t c = 0; rc == TDM_OK && c < num_cat; c++) {
        if (boundaries[c] > boundaries[c + 1])
          rc = fail_line(r, t->cat_boundaries.line, TDM_EPARSE,
                         "cat_boundaries must not decrease");
      }
      tdm__free(word_values);
      if (rc != TDM_OK) {
        tdm__free(boundaries);
        goto done;
      }
    }
    size_t word_base = b->words.len - num_words;
    for (size_t i = 0; i < inner; i++) {
      tdm__node *node = &nodes[i];
      int categorical = decision[i] & 1;
      node->feature = (int32_t)feature[i];
      node->default_left = (decision[i] >> 1) & 1;
      node->missing_type = (uint8_t)((decision[i] >> 2) & 3);
      if (node->missing_type > TDM__MISSING_NAN) {
        tdm__free(boundaries);
        rc = fail_line(r, t->decision_type.line, TDM_EPARSE,
                       "decision_type %lld has an unknown missing type",
                       (long long)decision[i]);
        goto done;
      }
      node->left = (uint32_t)(base + (left[i] >= 0 ? (size_t)left[i]
                                                   : inner + (size_t)~left[i]));
      node->right =
          (uint32_t)(base + (right[i] >= 0 ? (size_t)right[i]
                                           : inner + (size_t)~right[i]));
      if (categorical) {
        double index = thresholds[i];
        if (!(index >= 0 && index < (double)num_cat) || index != floor(index)) {
          tdm__free(boundaries);
          rc = fail_line(r, t->threshold.line, TDM_EPARSE,
                         "threshold %zu of a categorical split must be a "
                         "category set index below num_cat=%lld",
                         i + 1, (long long)num_cat);
          goto done;
        }
        size_t c = (size_t)index;
        node->kind = TDM__NODE_LGB_CATEGORICAL;
        node->cat_begin = (uint32_t)(word_base + (size_t)boundaries[c]);
        node->cat_count = (uint32_t)(boundaries[c + 1] - boundaries[c]);
        model->num_categorical_splits++;
      } else {
        if (isnan(thresholds[i])) {
          tdm__free(boundaries);
          rc = fail_line(r, t->threshold.line, TDM_EPARSE,
                         "threshold %zu is NaN", i + 1);
          goto done;
        }
        node->kind = TDM__NODE_LGB_NUMERIC;
        node->value = thresholds[i];
      }
    }
    tdm__free(boundaries);
  }
  if (is_linear) {
    /* leaf_const per leaf; num_features per leaf; then the features and
     * coefficients of all leaves back to back. */
    if ((rc = need(r, &t->leaf_const, "leaf_const", tree_line, tree_index)) !=
            TDM_OK ||
        (rc = need(r, &t->num_features, "num_features", tree_line,
                   tree_index)) != TDM_OK)
      goto done;
    int64_t *counts = tdm__malloc((leaves + 1) * sizeof *counts);
    if (counts == NULL) {
      rc = TDM_ENOMEM;
      goto done;
    }
    rc = parse_doubles(r, &t->leaf_const, leaves, values);
    if (rc == TDM_OK)
      rc = parse_ints(r, &t->num_features, leaves, 0,
                      (int64_t)model->num_features, counts);
    size_t total = 0;
    for (size_t j = 0; rc == TDM_OK && j < leaves; j++)
      total += (size_t)counts[j];
    if (rc == TDM_OK && total > 0 &&
        ((rc = need(r, &t->leaf_features, "leaf_features", tree_line,
                    tree_index)) != TDM_OK ||
         (rc = need(r, &t->leaf_coeff, "leaf_coeff", tree_line, tree_index)) !=
             TDM_OK)) {
      tdm__free(counts);
      goto done;
    }
    if (rc == TDM_OK && total > 0 &&
        (count_values(&t->leaf_features) != total ||
         count_values(&t->leaf_coeff) != total))
      rc = fail_line(r, t->leaf_features.line, TDM_EPARSE,
                     "leaf_features and leaf_coeff must have %zu values (the "
                     "sum of num_features)",
                     total);
    if (rc != TDM_OK) {
      tdm__free(counts);
      goto done;
    }
    int64_t *features = tdm__malloc((total + 1) * sizeof *features);
    uint32_t *out_features = vec_push(&b->linear_features, total);
    double *out_coeffs = vec_push(&b->linear_coeffs, total);
    if (features == NULL || out_features == NULL || out_coeffs == NULL) {
      tdm__free(counts);
      tdm__free(features);
      rc = TDM_ENOMEM;
      goto done;
    }
    size_t term_base = b->linear_features.len - total;
    out_features = (uint32_t *)b->linear_features.data + term_base;
    out_coeffs = (double *)b->linear_coeffs.data + term_base;
    if (rc == TDM_OK && total > 0)
      rc = parse_ints(r, &t->leaf_features, total, 0,
                      (int64_t)model->num_features - 1, features);
    if (rc == TDM_OK && total > 0)
      rc = parse_doubles(r, &t->leaf_coeff, total, out_coeffs);
    size_t at = 0;
    for (size_t j = 0; rc == TDM_OK && j < leaves; j++) {
      tdm__node *leaf = &nodes[inner + j];
      leaf->kind = TDM__NODE_LINEAR_LEAF;
      leaf->linear_const = values[j];
      leaf->linear_begin = (uint32_t)(term_base + at);
      leaf->linear_count = (uint32_t)counts[j];
      for (int64_t k = 0; k < counts[j]; k++, at++)
        out_features[at] = (uint32_t)features[at];
    }
    tdm__free(counts);
    tdm__free(features);
  }
done:
  tdm__free(values);
  tdm__free(ints);
  tdm__free(thresholds);
  if (rc == TDM_ENOMEM)
    return fail_line(r, tree_line, TDM_ENOMEM, "out of memory");
  return rc;
}

/* Records line `line` under its key in t; unknown keys are ignored. */
static void remember(tree_lines *t, const kv *line) {
  static const struct {
    const char *key;
    size_t offset;
  } keys[] = {
      {"num_leaves", offsetof(tree_lines, num_leaves)},
      {"num_cat", offsetof(tree_lines, num_cat)},
      {"split_feature", offsetof(tree_lines, split_feature)},
      {"threshold", offsetof(tree_lines, threshold)},
      {"decision_type", offsetof(tree_lines, decision_type)},
      {"left_child", offsetof(tree_lines, left_child)},
      {"right_child", offsetof(tree_lines, right_child)},
      {"leaf_value", offsetof(tree_lines, leaf_value)},
      {"cat_boundaries", offsetof(tree_lines, cat_boundaries)},
      {"cat_threshold", offsetof(tree_lines, cat_threshold)},
      {"is_linear", offsetof(tree_lines, is_linear)},
      {"leaf_const", offsetof(tree_lines, leaf_const)},
      {"num_features", offsetof(tree_lines, num_features)},
      {"leaf_features", offsetof(tree_lines, leaf_features)},
      {"leaf_coeff", offsetof(tree_lines, leaf_coeff)},
      {"leaf_count", offsetof(tree_lines, leaf_count)},
      {"internal_count", offsetof(tree_lines, internal_count)},
  };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    if (key_is(line, keys[i].key)) {
      *(kv *)((char *)t + keys[i].offset) = *line;
      return;
    }
  }
}

static int load_feature_names(line_reader *r, tdm_model *model,
                              const kv *line) {
  size_t n = count_values(line);
  if (n != model->num_features)
    return fail_line(r, line->line, TDM_EPARSE,
                     "feature_names has %zu names for %zu features", n,
                     model->num_features);
  const char *p = line->value, *end = line->value + line->value_len;
  for (size_t i = 0; i < n; i++) {
    while (p < end && *p == ' ') p++;
    const char *q = p;
    while (q < end && *q != ' ') q++;
    model->feature_names[i] =
        tdm__arena_strndup(&model->arena, p, (size_t)(q - p));
    if (model->feature_names[i] == NULL) return TDM_ENOMEM;
    p = q;
  }
  model->has_feature_names = 1;
  return TDM_OK;
}

/* The categorical features: those whose feature_infos entry is a list of
 * categories ("-1:0:3") rather than a range ("[0:5]") or "none". */
static size_t categorical_features(const kv *infos, size_t num_features,
                                   unsigned char *is_categorical) {
  const char *p = infos->value, *end = infos->value + infos->value_len;
  size_t f = 0, count = 0;
  while (p < end && f < num_features) {
    while (p < end && *p == ' ') p++;
    const char *start = p;
    while (p < end && *p != ' ') p++;
    size_t len = (size_t)(p - start);
    int categorical = len > 0 && start[0] != '[' &&
                      !(len == 4 && memcmp(start, "none", 4) == 0);
    is_categorical[f++] = (unsigned char)categorical;
    count += (size_t)categorical;
  }
  return f == num_features ? count : 0;
}

/*
 * LightGBM's Python package appends "pandas_categorical:[[...], ...]" to
 * a model trained on a DataFrame: per categorical column, in column
 * order, pandas' cat.categories at training, whose positions are the
 * codes the trees split on. Reading them lets `tandem score` take
 * category names and a pipeline check its `values` against the model.
 * A list that does not fit the model's categorical features is ignored
 * (the codes still score as before), since it names nothing reliably.
 */
static int load_pandas_categorical(line_reader *r, tdm_model *model,
                                   const kv *infos) {
  static const char key[] = "pandas_categorical:";
  const char *found = NULL;
  for (size_t at = r->pos; at + sizeof key - 1 <= r->size;) {
    const char *line = r->data + at;
    const char *nl = memchr(line, '\n', r->size - at);
    size_t len = nl ? (size_t)(nl - line) : r->size - at;
    if (len >= sizeof key - 1 && memcmp(line, key, sizeof key - 1) == 0)
      found = line;
    at += len + 1;
  }
  if (found == NULL || infos->key == NULL) return TDM_OK;
  const char *text = found + sizeof key - 1;
  const char *nl = memchr(text, '\n', (size_t)(r->data + r->size - text));
  size_t len = nl ? (size_t)(nl - text) : (size_t)(r->data + r->size - text);
  unsigned char *is_cat = tdm__calloc(model->num_features + 1, 1);
  if (is_cat == NULL) return TDM_ENOMEM;
  size_t num_cat = categorical_features(infos, model->num_features, is_cat);
  tdm__json_doc doc;
  tdm_error ignored;
  int rc = TDM_OK;
  if (tdm__json_parse(&doc, text, len, r->name, 0, &ignored) != TDM_OK) {
    tdm__free(is_cat);
    return TDM_OK;
  }
  const tdm__json *lists = doc.root;
  int fits =
      lists->type == TDM__JSON_ARRAY && lists->count == num_cat && num_cat > 0;
  for (size_t i = 0; fits && i < lists->count; i++) {
    const tdm__json *list = &lists->items[i];
    fits = list->type == TDM__JSON_ARRAY;
    for (size_t k = 0; fits && k < list->count; k++)
      fits = list->items[k].type == TDM__JSON_STRING ||
             list->items[k].type == TDM__JSON_NUMBER;
  }
  if (fits) {
    model->category_names = tdm__arena_alloc(
        &model->arena, model->num_features * sizeof *model->category_names);
    model->num_categories = tdm__arena_alloc(
        &model->arena, model->num_features * sizeof *model->num_categories);
    if (model->category_names == NULL || model->num_categories == NULL)
      rc = TDM_ENOMEM;
    size_t list_index = 0;
    for (size_t f = 0; rc == TDM_OK && f < model->num_features; f++) {
      model->category_names[f] = NULL;
      model->num_categories[f] = 0;
      if (!is_cat[f]) continue;
      const tdm__json *list = &lists->items[list_index++];
      const char **names =
          tdm__arena_alloc(&model->arena, (list->count + 1) * sizeof *names);
      if (names == NULL) {
        rc = TDM_ENOMEM;
        break;
      }
      for (size_t k = 0; k < list->count && rc == TDM_OK; k++) {
        const tdm__json *item = &list->items[k];
        /* A number category (an integer column) is named by its text. */
        names[k] =
            item->type == TDM__JSON_STRING
                ? tdm__arena_strndup(&model->arena, item->text, item->count)
                : tdm__arena_strndup(&model->arena, item->text, item->text_len);
        if (names[k] == NULL) rc = TDM_ENOMEM;
      }
      model->category_names[f] = names;
      model->num_categories[f] = list->count;
    }
    if (rc != TDM_OK) model->category_names = NULL;
  }
  tdm__json_doc_free(&doc);
  tdm__free(is_cat);
  return rc;
}

static int load_all(line_reader *r, tdm_model *model) {
  kv line;
  if (!next_line(r, &line) || !key_is(&line, "tree"))
    return fail_line(r, r->line ? r->line : 1, TDM_EPARSE,
                     "not a LightGBM model (the first line must be \"tree\")");
  int64_t num_class = 1, per_iteration = 0, max_feature = -1;
  kv names = {0}, infos = {0};
  int rc = TDM_OK, in_tree = 0;
  model->sigmoid_scale = 1.0;
  model->link = TDM__LINK_IDENTITY;
  model->objective = "regression";
  builder b = {.r = r, .model = model};
  b.trees.elem = sizeof(tdm__tree);
  b.nodes.elem = sizeof(tdm__node);
  b.words.elem = sizeof(uint32_t);
  b.linear_features.elem = sizeof(uint32_t);
  b.linear_coeffs.elem = sizeof(double);
  tree_lines tree;
  size_t tree_line = 0, tree_index = 0;
  int ended = 0;
  /* The header. */
  while (rc == TDM_OK && next_line(r, &line)) {
    if (key_is(&line, "version")) {
      model->library_version =
          tdm__arena_strndup(&model->arena, line.value, line.value_len);
      if (model->library_version == NULL) rc = TDM_ENOMEM;
    } else if (key_is(&line, "num_class")) {
      rc = parse_int(r, &line, 1, 4096, &num_class);
    } else if (key_is(&line, "num_tree_per_iteration")) {
      rc = parse_int(r, &line, 1, 1 << 20, &per_iteration);
    } else if (key_is(&line, "max_feature_idx")) {
      rc = parse_int(r, &line, 0, 1 << 24, &max_feature);
    } else if (key_is(&line, "objective")) {
      rc = load_objective(r, model, &line);
    } else if (key_is(&line, "average_output")) {
      model->average_output = 1;
    } else if (key_is(&line, "feature_names")) {
      names = line;
    } else if (key_is(&line, "feature_infos")) {
      infos = line;
    } else if (key_is(&line, "Tree")) {
      in_tree = 1;
      break;
    } else if (key_is(&line, "end of trees")) {
      ended = 1;
      break;
    }
  }
  if (rc != TDM_OK) goto done;
  if (max_feature < 0) {
    rc = fail_line(r, 1, TDM_EPARSE, "the header has no max_feature_idx");
    goto done;
  }
  model->num_features = (size_t)max_feature + 1;
  model->num_outputs = (size_t)num_class;
  model->trees_per_iteration = (size_t)num_class;
  if (per_iteration > 0 && per_iteration != num_class) {
    rc = fail_line(r, 1, TDM_EUNSUPPORTED,
                   "num_tree_per_iteration=%lld differs from num_class=%lld",
                   (long long)per_iteration, (long long)num_class);
    goto done;
  }
  model->feature_names =
      tdm__arena_alloc(&model->arena, model->num_features * sizeof(char *));
  model->feature_types =
      tdm__arena_alloc(&model->arena, model->num_features * sizeof(char *));
  if (model->feature_names == NULL || model->feature_types == NULL) {
    rc = TDM_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < model->num_features; i++) {
    char buf[32];
    snprintf(buf, sizeof buf, "Column_%zu", i); /* LightGBM's default */
    model->feature_names[i] =
        tdm__arena_strndup(&model->arena, buf, strlen(buf));
    if (model->feature_names[i] == NULL) {
      rc = TDM_ENOMEM;
      goto done;
    }
    model->feature_types[i] = "float";
  }
  if (names.key != NULL &&
      (rc = load_feature_names(r, model, &names)) != TDM_OK)
    goto done;
  /* The trees. */
  while (in_tree && rc == TDM_OK) {
    memset(&tree, 0, sizeof tree);
    tree_line = line.line;
    tree_index = b.trees.len;
    int next_tree = 0;
    while (next_line(r, &line)) {
      if (key_is(&line, "Tree")) {
        next_tree = 1;
        break;
      }
      if (key_is(&line, "end of trees")) {
        ended = 1;
        break;
      }
      remember(&tree, &line);
    }
    rc = build_tree(&b, &tree, tree_line, tree_index);
    in_tree = next_tree;
  }
  if (rc == TDM_OK && !ended)
    rc = fail_line(r, r->line, TDM_EPARSE,
                   "the file ends before \"end of trees\" (truncated?)");
  if (rc != TDM_OK) goto done;
  size_t count = b.trees.len;
  if (count % model->trees_per_iteration != 0) {
    rc = fail_line(r, tree_line, TDM_EPARSE,
                   "%zu trees is not a whole number of iterations of %zu",
                   count, model->trees_per_iteration);
    goto done;
  }
  /* Move the collected arrays into the model's arena. */
  model->num_trees = count;
  model->num_nodes = b.nodes.len;
  model->num_cat_words = b.words.len;
  model->num_linear_terms = b.linear_features.len;
  model->trees =
      tdm__arena_alloc(&model->arena, (count + 1) * sizeof(tdm__tree));
  model->nodes =
      tdm__arena_alloc(&model->arena, (b.nodes.len + 1) * sizeof(tdm__node));
  model->cat_words =
      tdm__arena_alloc(&model->arena, (b.words.len + 1) * sizeof(uint32_t));
  model->linear_features = tdm__arena_alloc(
      &model->arena, (b.linear_features.len + 1) * sizeof(uint32_t));
  model->linear_coeffs = tdm__arena_alloc(
      &model->arena, (b.linear_coeffs.len + 1) * sizeof(double));
  model->base_margin =
      tdm__arena_alloc(&model->arena, model->num_outputs * sizeof(double));
  if (model->trees == NULL || model->nodes == NULL ||
      model->cat_words == NULL || model->linear_features == NULL ||
      model->linear_coeffs == NULL || model->base_margin == NULL) {
    rc = TDM_ENOMEM;
    goto done;
  }
  if (count) memcpy(model->trees, b.trees.data, count * sizeof(tdm__tree));
  if (b.nodes.len)
    memcpy(model->nodes, b.nodes.data, b.nodes.len * sizeof(tdm__node));
  if (b.words.len)
    memcpy(model->cat_words, b.words.data, b.words.len * sizeof(uint32_t));
  if (b.linear_features.len) {
    memcpy(model->linear_features, b.linear_features.data,
           b.linear_features.len * sizeof(uint32_t));
    memcpy(model->linear_coeffs, b.linear_coeffs.data,
           b.linear_coeffs.len * sizeof(double));
  }
  for (size_t t = 0; t < count; t++)
    model->trees[t].output = (uint32_t)(t % model->num_outputs);
  model->num_iterations = count / model->trees_per_iteration;
  rc = load_pandas_categorical(r, model, &infos);
done:
  tdm__free(b.trees.data);
  tdm__free(b.nodes.data);
  tdm__free(b.words.data);
  tdm__free(b.linear_features.data);
  tdm__free(b.linear_coeffs.data);
  if (rc == TDM_ENOMEM)
    tdm__fail(r->err, TDM_ENOMEM, "%s: out of memory", r->name);
  return rc;
}

int tdm__lightgbm_load(tdm_model *model, const char *data, size_t size,
                       const char *name, tdm_error *err) {
  line_reader r = {.data = data, .size = size, .name = name, .err = err};
  model->format = TDM_FORMAT_LIGHTGBM_TEXT;
  model->format_name = "lightgbm-text";
  model->booster = "gbdt";
  model->float32 = 0;
  model->lightgbm_zero = 1;
  model->has_cover = 1; /* until a tree lacks its counts */
  int rc = load_all(&r, model);
  if (rc == TDM_OK && model->average_output) model->booster = "rf";
  return rc;
}
