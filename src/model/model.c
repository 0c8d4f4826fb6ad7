/*
 * model.c - the public model API: loading a file (recognising its format,
 * hashing it for the model version), describing it, scoring rows with the
 * reference evaluator, and formatting scores so they read back exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/core.h"
#include "model.h"

/* A limit that keeps per-row scratch on the stack. */

tdm_model *tdm__model_new(void) {
  tdm_model *model = tdm__calloc(1, sizeof *model);
  if (model == NULL) return NULL;
  tdm__arena_init(&model->arena, 1 << 16);
  pthread_mutex_init(&model->shap_lock, NULL);
  model->library_version = "";
  model->booster = "";
  model->objective = "";
  return model;
}

const tdm__named_link *tdm__find_link(const tdm__named_link *table,
                                      size_t count, const char *name) {
  for (size_t i = 0; i < count; i++)
    if (strcmp(table[i].name, name) == 0) return &table[i];
  return NULL;
}

void tdm_model_free(tdm_model *model) {
  if (model == NULL) return;
  tdm__shap_table_free(model->shap_table);
  pthread_mutex_destroy(&model->shap_lock);
  tdm__arena_free(&model->arena);
  tdm__free(model);
}

/* Skips leading white space to see what kind of document this is. */
static char first_significant_char(const char *data, size_t size) {
  size_t i = 0;
  if (size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) i = 3;
  while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' ||
                      data[i] == '\r'))
    i++;
  return i < size ? data[i] : '\0';
}

/* Parses a JSON model and hands it to the loader its content names:
 * {"format": "tandem-linear", ...} or XGBoost's {"learner": ...}. The
 * document reads `data` in place, and XGBoost's arrays of numbers (most of
 * a large model's bytes) stay packed, so that loading a model costs little
 * more memory than its file. The linear loader reads arrays element by
 * element: its (small) documents are parsed again, unpacked. */
static int load_json_model(tdm_model *model, const char *data, size_t size,
                           const char *name, tdm_error *err) {
  tdm__json_doc doc;
  int flags = TDM__JSON_ALLOW_NAN | TDM__JSON_BORROW;
  int rc = tdm__json_parse(&doc, data, size, name,
                           flags | TDM__JSON_PACK_NUMBERS, err);
  if (rc != TDM_OK) return rc;
  const tdm__json *format = tdm__json_get(doc.root, "format");
  if (format != NULL && format->type == TDM__JSON_STRING &&
      strcmp(format->text, "tandem-linear") == 0) {
    tdm__json_doc_free(&doc);
    rc = tdm__json_parse(&doc, data, size, name, flags, err);
    if (rc != TDM_OK) return rc;
    rc = tdm__linear_load(model, &doc, err);
  } else if (tdm__json_get(doc.root, "learner") != NULL) {
    rc = tdm__xgboost_load(model, &doc, err);
  } else {
    rc = tdm__fail(err, TDM_EUNSUPPORTED,
                   "%s: a JSON document that is neither an XGBoost model (no "
                   "\"learner\") nor a tandem linear model (no \"format\": "
                   "\"tandem-linear\")",
                   name);
  }
  tdm__json_doc_free(&doc);
  return rc;
}

/* Whether a file given as a model is a pipeline file: a YAML mapping with
 * the pipeline's entity: and fields: keys at the start of a line, a
 * mistake worth naming rather than calling the file an unknown format. */
static int looks_like_pipeline(const char *data, size_t size) {
  int entity = 0, fields = 0;
  for (size_t i = 0; i < size; i++) {
    if (i > 0 && data[i - 1] != '\n') continue;
    if (size - i >= 7 && memcmp(data + i, "entity:", 7) == 0) entity = 1;
    if (size - i >= 7 && memcmp(data + i, "fields:", 7) == 0) fields = 1;
  }
  return entity && fields;
}

int tdm_model_load_buffer(const char *data, size_t size, const char *name,
                          tdm_model **out, tdm_error *err) {
  *out = NULL;
  tdm__error_clear(err);
  if (size == 0 || first_significant_char(data, size) == '\0')
    return tdm__fail(err, TDM_EPARSE, "%s: the model file is empty", name);
  tdm_model *model = tdm__model_new();
  if (model == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  tdm__sha256_hex(data, size, model->sha256);
  int rc;
  char first = first_significant_char(data, size);
  if (size > 1 && data[0] == '{' && data[1] != '\0' &&
      strchr("iUIlL$#", data[1]) != NULL) {
    /* UBJSON: an object whose first key starts with a length marker.
     * JSON allows only whitespace, a quote or } there. */
    rc = tdm__fail(err, TDM_EUNSUPPORTED,
                   "%s: an XGBoost model in its binary UBJSON format; tandem "
                   "reads XGBoost's JSON: save it with "
                   "booster.save_model(\"model.json\") (a name ending in "
                   ".json)",
                   name);
  } else if (first == '{') {
    rc = load_json_model(model, data, size, name, err);
  } else if (size >= 4 && strncmp(data, "tree", 4) == 0 &&
             (size == 4 || data[4] == '\n' || data[4] == '\r')) {
    rc = tdm__lightgbm_load(model, data, size, name, err);
  } else {
    rc = tdm__fail(err, TDM_EUNSUPPORTED,
                   "%s: not a model format tandem reads (expected an XGBoost "
                   "JSON model or a LightGBM text model)%s",
                   name,
                   looks_like_pipeline(data, size)
                       ? "; it looks like a pipeline file (entity: and "
                         "fields:): run it with tandem batch or tandem serve, "
                         "and name the model in its model: key"
                       : "");
  }
  if (rc == TDM_OK) rc = tdm__model_validate(model, name, err);
  if (rc == TDM_OK &&
      (tdm__fast_build(model) != TDM_OK || tdm__shap_prepare(model) != TDM_OK))
    rc = tdm__fail(err, TDM_ENOMEM, "%s: out of memory", name);
  if (rc != TDM_OK) {
    tdm_model_free(model);
    return rc;
  }
  *out = model;
  return TDM_OK;
}

int tdm_model_load(const char *path, tdm_model **out, tdm_error *err) {
  char *data;
  size_t size;
  *out = NULL;
  int rc = tdm__read_file(path, &data, &size, err);
  if (rc != TDM_OK) return rc;
  rc = tdm_model_load_buffer(data, size, path, out, err);
  tdm__free(data);
  return rc;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Features are matched to input columns, JSON keys and pipeline features
 * by name: two features with one name would take the same value, which
 * the model was not trained with. */
static int check_unique_feature_names(const tdm_model *model, const char *name,
                                      tdm_error *err) {
  if (!model->has_feature_names || model->num_features < 2) return TDM_OK;
  const char **sorted =
      tdm__malloc(model->num_features * sizeof *sorted);
  if (sorted == NULL) return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", name);
  memcpy(sorted, model->feature_names, model->num_features * sizeof *sorted);
  qsort(sorted, model->num_features, sizeof *sorted, compare_names);
  int rc = TDM_OK;
  for (size_t i = 1; i < model->num_features && rc == TDM_OK; i++)
    if (strcmp(sorted[i - 1], sorted[i]) == 0)
      rc = tdm__fail(err, TDM_EPARSE,
                     "%s: the feature name \"%.64s\" is given to more than "
                     "one feature; each feature needs its own name",
                     name, sorted[i]);
  tdm__free(sorted);
  return rc;
}

/*
 * Walks every tree from its root, refusing indices out of range and nodes
 * reached twice (which would make a cycle or a shared subtree), so the
 * evaluator can follow children without checks. Feature names, when the
 * model has them, must differ.
 */
int tdm__model_validate(tdm_model *model, const char *name, tdm_error *err) {
  if (model->num_outputs == 0 || model->num_outputs > TDM__MAX_OUTPUTS)
    return tdm__fail(err, TDM_EUNSUPPORTED,
                     "%s: %zu outputs per row (tandem supports 1 to %d)", name,
                     model->num_outputs, TDM__MAX_OUTPUTS);
  int names_rc = check_unique_feature_names(model, name, err);
  if (names_rc != TDM_OK) return names_rc;
  unsigned char *seen = tdm__calloc(model->num_nodes ? model->num_nodes : 1, 1);
  uint32_t *stack = tdm__malloc((model->num_nodes + 1) * 2 * sizeof *stack);
  int rc = TDM_OK;
  if (seen == NULL || stack == NULL) {
    rc = tdm__fail(err, TDM_ENOMEM, "%s: out of memory", name);
    goto done;
  }
  for (size_t t = 0; t < model->num_trees && rc == TDM_OK; t++) {
    tdm__tree *tree = &model->trees[t];
    if (tree->output >= model->num_outputs) {
      rc = tdm__fail(err, TDM_EPARSE,
                     "%s: tree %zu adds to output %u, but the model has %zu",
                     name, t, tree->output, model->num_outputs);
      break;
    }
    if (tree->root >= model->num_nodes) {
      rc = tdm__fail(err, TDM_EPARSE, "%s: tree %zu has no nodes", name, t);
      break;
    }
    size_t top = 0;
    uint32_t depth_max = 0;
    stack[top++] = tree->root;
    stack[top++] = 0;
    while (top > 0) {
      uint32_t depth = stack[--top];
      uint32_t index = stack[--top];
      if (seen[index]) {
        rc = tdm__fail(err, TDM_EPARSE,
                       "%s: tree %zu reaches node %u twice (not a tree)", name,
                       t, index - tree->root);
        break;
      }
      seen[index] = 1;
      if (depth > depth_max) depth_max = depth;
      const tdm__node *node = &model->nodes[index];
      if (node->kind == TDM__NODE_LINEAR_LEAF &&
          (size_t)node->linear_begin + node->linear_count >
              model->num_linear_terms) {
        rc = tdm__fail(err, TDM_EPARSE,
                       "%s: tree %zu node %u: linear terms out of range", name,
                       t, index - tree->root);
        break;
      }
      if (node->kind == TDM__NODE_LEAF || node->kind == TDM__NODE_LINEAR_LEAF)
        continue;
      if (node->feature < 0 || (size_t)node->feature >= model->num_features) {
        rc = tdm__fail(err, TDM_EPARSE,
                       "%s: tree %zu node %u splits on feature %d, but the "
                       "model has %zu features",
                       name, t, index - tree->root, node->feature,
                       model->num_features);
        break;
      }
      if (node->left >= model->num_nodes || node->right >= model->num_nodes) {
        rc = tdm__fail(err, TDM_EPARSE,
                       "%s: tree %zu node %u has a child out of range", name, t,
                       index - tree->root);
        break;
      }
      if (node->cat_count > 0 &&
          (size_t)node->cat_begin + node->cat_count > model->num_cat_words) {
        rc = tdm__fail(err, TDM_EPARSE,
                       "%s: tree %zu node %u: category set out of range", name,
                       t, index - tree->root);
        break;
      }
      stack[top++] = node->left;
      stack[top++] = depth + 1;
      stack[top++] = node->right;
      stack[top++] = depth + 1;
    }
    tree->depth = depth_max;
  }
done:
  tdm__free(seen);
  tdm__free(stack);
  return rc;
}

int tdm_model_get_info(const tdm_model *model, tdm_model_info *info) {
  if (model == NULL || info == NULL) return TDM_EINVAL;
  memset(info, 0, sizeof *info);
  info->format = model->format;
  info->format_name = model->format_name;
  info->library_version = model->library_version;
  info->booster = model->booster;
  info->objective = model->objective;
  info->num_features = model->num_features;
  info->num_outputs = model->num_outputs;
  info->num_scores = tdm_model_output_width(model, 0);
  info->num_classes =
      (model->link == TDM__LINK_SOFTMAX || model->link == TDM__LINK_ARGMAX ||
       model->link == TDM__LINK_SIGMOID_EACH)
          ? model->num_outputs
          : 0;
  info->num_trees = model->num_trees;
  info->num_iterations = model->num_iterations;
  info->num_nodes = model->num_nodes;
  for (size_t t = 0; t < model->num_trees; t++) {
    if (model->trees[t].depth > info->max_depth)
      info->max_depth = model->trees[t].depth;
  }
  info->num_categorical_splits = model->num_categorical_splits;
  info->float32 = model->float32;
  memcpy(info->sha256, model->sha256, sizeof info->sha256);
  info->kernel = tdm__fast_kernel(model);
  info->layout_bytes = tdm__fast_bytes(model);
  return TDM_OK;
}

int tdm_model_limit_iterations(tdm_model *model, size_t iterations,
                               tdm_error *err) {
  if (model == NULL || iterations == 0 || iterations > model->num_iterations)
    return tdm__fail(err, TDM_EINVAL,
                     "--iterations must be from 1 to %zu (the model's "
                     "boosting rounds), not %zu",
                     model ? model->num_iterations : 0, iterations);
  model->num_iterations = iterations;
  model->num_trees = iterations * model->trees_per_iteration;
  return TDM_OK;
}

const char *tdm_model_feature_name(const tdm_model *model, size_t i) {
  return i < model->num_features ? model->feature_names[i] : NULL;
}

int tdm_model_feature_required(const tdm_model *model, size_t i) {
  return i < model->num_features && model->feature_required != NULL &&
         model->feature_required[i];
}

const char *tdm_model_feature_type(const tdm_model *model, size_t i) {
  return i < model->num_features ? model->feature_types[i] : NULL;
}

int tdm_model_has_feature_names(const tdm_model *model) {
  return model->has_feature_names;
}

int tdm_model_has_contribs(const tdm_model *model) {
  return model != NULL && model->has_cover;
}

size_t tdm_model_output_width(const tdm_model *model, int flags) {
  if (flags & (TDM_PREDICT_CONTRIBS | TDM_PREDICT_APPROX_CONTRIBS))
    return tdm__contribs_width(model);
  if (flags & TDM_PREDICT_MARGIN) return model->num_outputs;
  return model->link == TDM__LINK_ARGMAX ? 1 : model->num_outputs;
}

int tdm__predict_reference(const tdm_model *model, const double *rows64,
                           const float *rows32, size_t num_rows, int flags,
                           double *out) {
  size_t width = tdm_model_output_width(model, flags);
  size_t k = model->num_outputs, nf = model->num_features;
  double scratch[TDM__MAX_OUTPUTS];
  for (size_t r = 0; r < num_rows; r++) {
    tdm__row row = {rows64 ? rows64 + r * nf : NULL,
                    rows32 ? rows32 + r * nf : NULL};
    double *dest = out + r * width;
    if (flags & TDM_PREDICT_MARGIN) {
      tdm__predict_margin_row(model, row, dest);
    } else if (width == k) {
      /* The link reads margins[o] before writing out[o]: in place is safe. */
      tdm__predict_margin_row(model, row, dest);
      tdm__apply_link(model, dest, dest);
    } else {
      tdm__predict_margin_row(model, row, scratch);
      tdm__apply_link(model, scratch, dest);
    }
  }
  return TDM_OK;
}

static int predict(const tdm_model *model, const double *rows64,
                   const float *rows32, size_t num_rows, int flags,
                   double *out) {
  if (model == NULL ||
      (num_rows > 0 && ((rows64 == NULL && rows32 == NULL) || out == NULL)))
    return TDM_EINVAL;
  if (flags & (TDM_PREDICT_CONTRIBS | TDM_PREDICT_APPROX_CONTRIBS))
    return tdm__contribs(model, rows64, rows32, num_rows, flags, out);
  if (tdm__fast_predict(model, rows64, rows32, num_rows, flags, out))
    return TDM_OK;
  return tdm__predict_reference(model, rows64, rows32, num_rows, flags, out);
}

int tdm_model_predict(const tdm_model *model, const double *rows,
                      size_t num_rows, int flags, double *out) {
  return predict(model, rows, NULL, num_rows, flags, out);
}

int tdm_model_predict_float32(const tdm_model *model, const float *rows,
                              size_t num_rows, int flags, double *out) {
  return predict(model, NULL, rows, num_rows, flags, out);
}

int tdm_model_format_value(const tdm_model *model, double value, char *buf) {
  if (isnan(value)) return snprintf(buf, 32, "nan");
  if (isinf(value)) return snprintf(buf, 32, value > 0 ? "inf" : "-inf");
  /* The shortest of %.Ng that reads back to the same value. */
  if (model->float32) return tdm__float_shortest((float)value, buf);
  for (int digits = 15; digits < 17; digits++) {
    int n = snprintf(buf, 32, "%.*g", digits, value);
    if (strtod(buf, NULL) == value) return n;
  }
  return snprintf(buf, 32, "%.17g", value);
}

const char *const *tdm__model_category_names(const tdm_model *model, size_t f,
                                             size_t *count) {
  if (model->category_names == NULL || f >= model->num_features ||
      model->category_names[f] == NULL) {
    *count = 0;
    return NULL;
  }
  *count = model->num_categories[f];
  return model->category_names[f];
}
