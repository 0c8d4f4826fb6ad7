/*
 * pipeline.c - compiles a pipeline spec (fields, features, model, rules,
 * outputs) into slots and steps. Running one event through them is
 * process.c's, the entity state map is state_map.c's, and writing results
 * is format.c's; every runner (batch, the live endpoint, replay) goes
 * through those same files.
 *
 * Every value of an event lives in a slot: numbers (numeric fields, event
 * times in epoch seconds, category codes, features, the score) and strings
 * (string and category fields). Expressions read slots by index. Features
 * run in three stages: expressions the aggregations need (their inputs
 * and `where` filters), then all aggregations at once (one call into the
 * entity's window state), then the expressions that read aggregations.
 */
#include "pipeline_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "../model/model.h"
#include "lookup.h"

/* ---- compiling ---- */

typedef struct compiler {
  tdm__pipeline *p;
  tdm__spec *spec;
  tdm_error *err;
  int allow_score; /* decision rules and outputs may read the score */
} compiler;

static size_t find_field(const tdm__spec *spec, const char *name, size_t len) {
  for (size_t i = 0; i < spec->num_fields; i++)
    if (strlen(spec->fields[i].name) == len &&
        memcmp(spec->fields[i].name, name, len) == 0)
      return i;
  return NONE;
}

static size_t find_feature(const tdm__spec *spec, const char *name,
                           size_t len) {
  for (size_t i = 0; i < spec->num_features; i++)
    if (strlen(spec->features[i].name) == len &&
        memcmp(spec->features[i].name, name, len) == 0)
      return i;
  return NONE;
}

static int lookup(void *ctx, const char *name, size_t len, int *type,
                  size_t *slot) {
  compiler *c = ctx;
  const tdm__pipeline *p = c->p;
  size_t i = find_field(c->spec, name, len);
  if (i != NONE) {
    /* A category field reads as its code; compare its text with ==
     * through the string slot when it has no number slot. */
    if (p->fields[i].number != NONE) {
      *type = TDM__EXPR_NUMBER;
      *slot = p->fields[i].number;
    } else {
      *type = TDM__EXPR_STRING;
      *slot = p->fields[i].string;
    }
    return 0;
  }
  i = find_feature(c->spec, name, len);
  if (i != NONE) {
    *type = TDM__EXPR_NUMBER;
    *slot = p->feature_slot[i];
    return 0;
  }
  if (c->allow_score && len == 5 && memcmp(name, "score", 5) == 0) {
    *type = TDM__EXPR_NUMBER;
    *slot = p->score_slot;
    return 0;
  }
  return -1;
}

/* Compiles text found at mark; errors point into the file. */
static int compile(compiler *c, const char *text, tdm__mark mark,
                   const char *what, tdm__expr **out) {
  tdm__expr_symbols symbols = {c, lookup};
  tdm__expr_error e;
  memset(&e, 0, sizeof e);
  int rc = tdm__expr_compile(text, &symbols, out, &e);
  if (rc == TDM_ENOMEM) return tdm__fail(c->err, rc, "out of memory");
  if (rc != TDM_OK) {
    /* The expression's column, counted from where its text starts (a
     * quoted scalar's quote is one more). */
    tdm__mark at = e.column > 0 ? tdm__spec_mark_in(c->spec, mark, e.column - 1)
                                : mark;
    return tdm__spec_fail(c->spec, at, TDM_EPARSE, c->err, "%s \"%s\": %s",
                          what, text, e.message);
  }
  return TDM_OK;
}

static int assign_slots(compiler *c) {
  tdm__pipeline *p = c->p;
  const tdm__spec *spec = c->spec;
  p->fields = tdm__calloc(spec->num_fields + 1, sizeof *p->fields);
  p->feature_slot = tdm__calloc(spec->num_features + 1, sizeof(size_t));
  if (p->fields == NULL || p->feature_slot == NULL)
    return tdm__fail(c->err, TDM_ENOMEM, "out of memory");
  for (size_t i = 0; i < spec->num_fields; i++) {
    tdm__field_type type = spec->fields[i].type;
    p->fields[i].number = type == TDM__FIELD_STRING ? NONE : p->num_numbers++;
    p->fields[i].string =
        type == TDM__FIELD_STRING || type == TDM__FIELD_CATEGORY
            ? p->num_strings++
            : NONE;
  }
  for (size_t i = 0; i < spec->num_features; i++)
    p->feature_slot[i] = p->num_numbers++;
  p->score_slot = p->num_numbers++;
  p->shadow_slot = spec->shadow_path ? p->num_numbers++ : NONE;
  p->shadow_decision_slot = spec->shadow_path ? p->num_numbers++ : NONE;
  p->entity_field = find_field(spec, spec->entity, strlen(spec->entity));
  p->time_field = find_field(spec, spec->time, strlen(spec->time));
  p->id_field = spec->id ? find_field(spec, spec->id, strlen(spec->id)) : NONE;
  return TDM_OK;
}

/* What each feature reads: compiled expressions and references. */
typedef struct feature_info {
  tdm__expr *expr;   /* expr features */
  tdm__expr *where;  /* aggregations */
  size_t input_feature; /* an aggregation's input, if a feature */
  int state;         /* cycle search: 0 new, 1 on the path, 2 done */
  int after_aggs;    /* reads an aggregation, directly or not */
} feature_info;

static size_t feature_of_slot(const tdm__pipeline *p, size_t n, size_t slot) {
  if (slot < p->feature_slot[0] || n == 0) return NONE;
  size_t i = slot - p->feature_slot[0];
  return i < n ? i : NONE;
}

/* Orders expr features so each comes after what it reads (depth first),
 * and finds cycles. */
static int order_feature(compiler *c, feature_info *info, size_t i,
                         size_t *order, size_t *num_ordered) {
  const tdm__spec *spec = c->spec;
  const tdm__feature_spec *f = &spec->features[i];
  if (info[i].state == 2) return TDM_OK;
  if (info[i].state == 1)
    return tdm__spec_fail(spec, f->mark, TDM_EPARSE, c->err,
                          "feature \"%s\" depends on itself (a cycle)",
                          f->name);
  info[i].state = 1;
  if (f->kind == TDM__FEATURE_AGG) {
    info[i].after_aggs = 1;
  } else if (f->kind == TDM__FEATURE_LOOKUP) {
    /* A leaf, filled from its table before the first stage. */
  } else {
    const size_t *slots;
    size_t n = tdm__expr_refs(info[i].expr, TDM__EXPR_NUMBER, &slots);
    for (size_t k = 0; k < n; k++) {
      size_t j = feature_of_slot(c->p, spec->num_features, slots[k]);
      if (j == NONE) continue;
      int rc = order_feature(c, info, j, order, num_ordered);
      if (rc != TDM_OK) return rc;
      if (info[j].after_aggs) info[i].after_aggs = 1;
    }
    order[(*num_ordered)++] = i;
  }
  info[i].state = 2;
  return TDM_OK;
}

/* An aggregation's input and filter must not need any aggregation. */
static int check_agg_inputs(compiler *c, feature_info *info, size_t i) {
  const tdm__spec *spec = c->spec;
  const tdm__feature_spec *f = &spec->features[i];
  size_t j = info[i].input_feature;
  if (j != NONE && info[j].after_aggs)
    return tdm__spec_fail(spec, f->agg_mark, TDM_EPARSE, c->err,
                          "%s aggregates \"%s\", which is (or reads) an "
                          "aggregation: aggregate fields or expressions of "
                          "fields",
                          f->name, spec->features[j].name);
  if (info[i].where != NULL) {
    const size_t *slots;
    size_t n = tdm__expr_refs(info[i].where, TDM__EXPR_NUMBER, &slots);
    for (size_t k = 0; k < n; k++) {
      size_t w = feature_of_slot(c->p, spec->num_features, slots[k]);
      if (w != NONE && info[w].after_aggs)
        return tdm__spec_fail(spec, f->where_mark, TDM_EPARSE, c->err,
                              "the where of \"%s\" reads \"%s\", which is "
                              "(or reads) an aggregation",
                              f->name, spec->features[w].name);
    }
  }
  return TDM_OK;
}

static int compile_aggs(compiler *c, feature_info *info) {
  tdm__pipeline *p = c->p;
  const tdm__spec *spec = c->spec;
  size_t n = spec->num_features;
  tdm__agg_def *defs = tdm__calloc(n + 1, sizeof *defs);
  p->agg_slot = tdm__calloc(n + 1, sizeof(size_t));
  p->agg_number_inputs = tdm__calloc(n + 1, sizeof(size_t));
  p->agg_string_inputs = tdm__calloc(n + 1, sizeof(size_t));
  p->filters = tdm__calloc(n + 1, sizeof *p->filters);
  int rc = TDM_OK;
  if (defs == NULL || p->agg_slot == NULL || p->agg_number_inputs == NULL ||
      p->agg_string_inputs == NULL || p->filters == NULL)
    rc = tdm__fail(c->err, TDM_ENOMEM, "out of memory");
  int64_t longest = 0;
  int has_all = 0;
  for (size_t i = 0; i < n && rc == TDM_OK; i++) {
    const tdm__feature_spec *f = &spec->features[i];
    if (f->kind != TDM__FEATURE_AGG) continue;
    tdm__agg_def *d = &defs[p->num_aggs];
    d->kind = (tdm__agg_kind)f->agg;
    d->window_ms = f->window_ms;
    d->hop_ms = f->hop_ms;
    d->filter = NONE;
    if (f->window_ms > longest) longest = f->window_ms;
    if (f->window_ms == 0) has_all = 1;
    if (f->agg_input != NULL) {
      size_t len = strlen(f->agg_input);
      size_t field = find_field(spec, f->agg_input, len);
      size_t feature = find_feature(spec, f->agg_input, len);
      info[i].input_feature = feature;
      if (f->agg == TDM__AGG_DISTINCT) {
        /* distinct counts strings: a string field's text, or any other
         * value's canonical text. */
        if (field != NONE && p->fields[field].string != NONE) {
          d->input = p->num_agg_strings;
          p->agg_string_inputs[p->num_agg_strings++] = p->fields[field].string;
        } else {
          rc = tdm__spec_fail(spec, f->agg_mark, TDM_EPARSE, c->err,
                              "distinct(%s): distinct counts the values of a "
                              "string or category field",
                              f->agg_input);
        }
      } else if (field != NONE && p->fields[field].number != NONE) {
        d->input = p->num_agg_numbers;
        p->agg_number_inputs[p->num_agg_numbers++] = p->fields[field].number;
      } else if (feature != NONE && feature != i) {
        d->input = p->num_agg_numbers;
        p->agg_number_inputs[p->num_agg_numbers++] = p->feature_slot[feature];
      } else {
        rc = tdm__spec_fail(spec, f->agg_mark, TDM_EPARSE, c->err,
                            "\"%s\" is not a numeric field or another "
                            "feature",
                            f->agg_input);
      }
    }
    if (rc == TDM_OK && f->where != NULL) {
      rc = compile(c, f->where, f->where_mark, "where", &info[i].where);
      if (rc == TDM_OK) {
        d->filter = p->num_filters;
        p->filters[p->num_filters++] = info[i].where;
      }
    }
    p->agg_slot[p->num_aggs++] = p->feature_slot[i];
  }
  /* Default TTL: 30 days, or the longest window and the lateness; a state
   * idle that long starts over, so dropping it from memory changes no
   * result. */
  int64_t ttl = spec->ttl_ms;
  if (ttl < 0) {
    ttl = longest + spec->lateness_ms;
    if (ttl < 30LL * 86400000) ttl = 30LL * 86400000;
  }
  (void)has_all;
  p->ttl_ms = ttl;
  if (rc == TDM_OK) {
    tdm__window_config config = {
        .aggs = defs,
        .num_aggs = p->num_aggs,
        .num_numbers = p->num_agg_numbers,
        .num_strings = p->num_agg_strings,
        .num_filters = p->num_filters,
        .lateness_ms = spec->lateness_ms,
        .ttl_ms = ttl,
        .max_events = spec->max_events};
    rc = tdm__window_spec_new(&config, &p->window, c->err);
    if (rc != TDM_OK && rc != TDM_ENOMEM)
      rc = tdm__spec_fail(spec, (tdm__mark){0, 0, TDM__STYLE_PLAIN}, TDM_EPARSE, c->err,
                          "features: %s", c->err->message);
  }
  tdm__free(defs);
  return rc;
}

static int compile_features(compiler *c) {
  tdm__pipeline *p = c->p;
  const tdm__spec *spec = c->spec;
  size_t n = spec->num_features;
  feature_info *info = tdm__calloc(n + 1, sizeof *info);
  size_t *order = tdm__calloc(n + 1, sizeof *order);
  p->pre = tdm__calloc(n + 1, sizeof *p->pre);
  p->post = tdm__calloc(n + 1, sizeof *p->post);
  int rc = TDM_OK;
  if (info == NULL || order == NULL || p->pre == NULL || p->post == NULL)
    rc = tdm__fail(c->err, TDM_ENOMEM, "out of memory");
  for (size_t i = 0; i < n && rc == TDM_OK; i++) {
    info[i].input_feature = NONE;
    const tdm__feature_spec *f = &spec->features[i];
    if (f->kind == TDM__FEATURE_EXPR)
      rc = compile(c, f->expr, f->expr_mark, "expr", &info[i].expr);
  }
  if (rc == TDM_OK) rc = compile_aggs(c, info);
  size_t num_ordered = 0;
  for (size_t i = 0; i < n && rc == TDM_OK; i++)
    rc = order_feature(c, info, i, order, &num_ordered);
  for (size_t i = 0; i < n && rc == TDM_OK; i++)
    if (spec->features[i].kind == TDM__FEATURE_AGG)
      rc = check_agg_inputs(c, info, i);
  /* Expressions move into the stages; the rest is freed here. */
  for (size_t k = 0; k < num_ordered && rc == TDM_OK; k++) {
    size_t i = order[k];
    step s = {info[i].expr, p->feature_slot[i]};
    info[i].expr = NULL;
    if (info[i].after_aggs)
      p->post[p->num_post++] = s;
    else
      p->pre[p->num_pre++] = s;
  }
  for (size_t i = 0; info != NULL && i < n; i++) {
    tdm__expr_free(info[i].expr);
    /* Filters belong to p->filters once compiled. */
  }
  tdm__free(info);
  tdm__free(order);
  return rc;
}

/* Appends a missing model feature's name to the list load_model reports,
 * quoted; after the tenth, only "..." (a model of another pipeline can
 * lack hundreds, and the message stays one readable line). */
static int missing_name(tdm__buf *list, size_t count, const char *name) {
  if (count > 11) return TDM_OK;
  if (count > 1 && tdm__buf_append(list, ", ", 2) != TDM_OK) return TDM_ENOMEM;
  if (count == 11) return tdm__buf_append(list, "...", 3);
  if (tdm__buf_append(list, "\"", 1) != TDM_OK ||
      tdm__buf_append(list, name, strlen(name)) != TDM_OK ||
      tdm__buf_append(list, "\"", 1) != TDM_OK)
    return TDM_ENOMEM;
  return TDM_OK;
}

/* A category field that is a model feature as it is must list its values
 * in the model's code order when the model file records the categories
 * (LightGBM's pandas_categorical): another order gives every event the
 * wrong code and changes scores silently. The message gives the model's
 * order to copy. */
static int check_categories(compiler *c, const tdm_model *model, size_t field,
                            size_t feature) {
  const tdm__spec *spec = c->spec;
  const tdm__field_spec *f = &spec->fields[field];
  size_t count;
  const char *const *names =
      tdm__model_category_names(model, feature, &count);
  if (f->type != TDM__FIELD_CATEGORY || names == NULL) return TDM_OK;
  size_t k = 0;
  while (k < f->num_values && k < count && strcmp(f->values[k], names[k]) == 0)
    k++;
  if (k == f->num_values && k == count) return TDM_OK;
  tdm__buf order = {0};
  int rc = TDM_OK;
  for (size_t i = 0; i < count && rc == TDM_OK; i++) {
    if (i > 0) rc = tdm__buf_append(&order, ", ", 2);
    if (rc == TDM_OK) rc = tdm__buf_append(&order, names[i], strlen(names[i]));
  }
  if (rc != TDM_OK) {
    tdm__buf_free(&order);
    return tdm__fail(c->err, TDM_ENOMEM, "out of memory");
  }
  rc = tdm__spec_fail(spec, f->mark, TDM_ESCHEMA, c->err,
                      "category field \"%s\": its values differ from the "
                      "model's categories at position %zu (%s%s%s against "
                      "%s%s%s); the model's order, from its file's "
                      "pandas_categorical, is values: [%.*s]",
                      f->name, k + 1, k < f->num_values ? "\"" : "",
                      k < f->num_values ? f->values[k] : "nothing",
                      k < f->num_values ? "\"" : "", k < count ? "\"" : "",
                      k < count ? names[k] : "nothing", k < count ? "\"" : "",
                      (int)order.len, order.data);
  tdm__buf_free(&order);
  return rc;
}

/*
 * Loads the model at path (the served one, or the shadow: `what` names it
 * in errors, mark is where the spec gives it) and matches its features by
 * name to the pipeline's number slots, into a new *inputs.
 */
static int load_scorer(compiler *c, const char *path, tdm__mark mark,
                       const char *what, tdm_model **model,
                       tdm_model_info *info, size_t **inputs) {
  tdm__pipeline *p = c->p;
  const tdm__spec *spec = c->spec;
  tdm_error model_err;
  int rc = tdm_model_load(path, model, &model_err);
  if (rc != TDM_OK)
    return tdm__spec_fail(spec, mark, rc, c->err, "%s: %s", what,
                          model_err.message);
  tdm_model_get_info(*model, info);
  if (tdm_model_output_width(*model, 0) != 1)
    return tdm__spec_fail(spec, mark, TDM_EUNSUPPORTED, c->err,
                          "%s: a pipeline's model must give one score per "
                          "event (binary or regression); this one gives %zu",
                          what, tdm_model_output_width(*model, 0));
  if (!tdm_model_has_feature_names(*model))
    return tdm__spec_fail(spec, mark, TDM_ESCHEMA, c->err,
                          "%s: the model has no feature names, so the "
                          "pipeline cannot match its features to them",
                          what);
  size_t nf = info->num_features;
  *inputs = tdm__calloc(nf + 1, sizeof(size_t));
  if (*inputs == NULL) return tdm__fail(c->err, TDM_ENOMEM, "out of memory");
  /* Every missing feature is named at once: a model trained on another
   * version of the pipeline usually lacks several, and fixing them one
   * run at a time is slow. */
  tdm__buf missing = {0};
  size_t num_missing = 0;
  for (size_t f = 0; f < nf; f++) {
    const char *want = tdm_model_feature_name(*model, f);
    size_t len = strlen(want);
    size_t i = find_feature(spec, want, len);
    size_t field = find_field(spec, want, len);
    if (i != NONE) {
      (*inputs)[f] = p->feature_slot[i];
    } else if (field != NONE && p->fields[field].number != NONE) {
      (*inputs)[f] = p->fields[field].number;
      rc = check_categories(c, *model, field, f);
      if (rc != TDM_OK) {
        tdm__buf_free(&missing);
        return rc;
      }
    } else {
      num_missing++;
      if (missing_name(&missing, num_missing, want) != TDM_OK) {
        tdm__buf_free(&missing);
        return tdm__fail(c->err, TDM_ENOMEM, "out of memory");
      }
    }
  }
  if (num_missing > 0) {
    rc = tdm__spec_fail(spec, mark, TDM_ESCHEMA, c->err,
                        "%s: %zu of the model's %zu features %s not a "
                        "feature or numeric field of the pipeline: %.*s "
                        "(add them to features: or fields:, or use the model "
                        "trained on this pipeline)",
                        what, num_missing, nf, num_missing == 1 ? "is" : "are",
                        (int)missing.len, missing.data);
    tdm__buf_free(&missing);
    return rc;
  }
  return TDM_OK;
}

static int load_model(compiler *c) {
  tdm__pipeline *p = c->p;
  const tdm__spec *spec = c->spec;
  if (spec->model_path == NULL)
    return tdm__spec_fail(spec, (tdm__mark){1, 1, TDM__STYLE_PLAIN}, TDM_EPARSE,
                          c->err,
                          "the pipeline has no model: add model: FILE, or run "
                          "tandem batch --features-only to write the "
                          "training data for one");
  int rc = load_scorer(c, spec->model_path, spec->model_mark, "model",
                       &p->model, &p->info, &p->model_inputs);
  if (rc != TDM_OK) return rc;
  memcpy(p->version, p->info.sha256, 12);
  p->version[12] = '\0';
  if (rc == TDM_OK && spec->shadow_path != NULL)
    rc = load_scorer(c, spec->shadow_path, spec->shadow_mark, "shadow",
                     &p->shadow, &p->shadow_info, &p->shadow_inputs);
  if (rc != TDM_OK) return rc;
  if (spec->explain_reasons > 0 && !tdm_model_has_contribs(p->model))
    return tdm__spec_fail(spec, spec->explain_mark, TDM_EUNSUPPORTED, c->err,
                          "explain: the model cannot give contributions (its "
                          "file holds no node covers, or it is a linear "
                          "model)");
  /* The contributions' leaf tables are built now rather than by the first
   * answer that needs them, which would wait for them. */
  if (spec->explain_reasons > 0) (void)tdm__shap_table_bytes(p->model);
  return TDM_OK;
}

static int compile_rules(compiler *c) {
  tdm__pipeline *p = c->p;
  const tdm__spec *spec = c->spec;
  p->rules = tdm__calloc(spec->num_rules + 1, sizeof *p->rules);
  if (p->rules == NULL) return tdm__fail(c->err, TDM_ENOMEM, "out of memory");
  c->allow_score = 1;
  for (size_t i = 0; i < spec->num_rules; i++) {
    const tdm__rule_spec *rule = &spec->rules[i];
    if (rule->when == NULL) continue;
    int rc = compile(c, rule->when, rule->when_mark, "when", &p->rules[i]);
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}

static int add_column(compiler *c, const char *name, tdm__mark mark) {
  tdm__pipeline *p = c->p;
  const tdm__spec *spec = c->spec;
  column *col = &p->columns[p->num_columns];
  col->name = name;
  size_t len = strlen(name);
  size_t i;
  if ((i = find_field(spec, name, len)) != NONE) {
    col->kind = COLUMN_FIELD;
    col->index = i;
  } else if ((i = find_feature(spec, name, len)) != NONE) {
    col->kind = COLUMN_NUMBER;
    col->index = p->feature_slot[i];
  } else if (strcmp(name, "score") == 0) {
    col->kind = COLUMN_NUMBER;
    col->index = p->score_slot;
    col->is_score = 1;
  } else if (strcmp(name, "shadow_score") == 0 && p->shadow != NULL) {
    col->kind = COLUMN_NUMBER;
    col->index = p->shadow_slot;
    col->is_score = 2;
  } else if (strcmp(name, "shadow_decision") == 0 && p->shadow != NULL &&
             spec->num_rules > 0) {
    col->kind = COLUMN_SHADOW_DECISION;
    col->index = p->shadow_decision_slot;
  } else if (strcmp(name, "decision") == 0) {
    col->kind = COLUMN_DECISION;
  } else {
    return tdm__spec_fail(spec, mark, TDM_EPARSE, c->err,
                          "output column \"%s\" is not a field, a feature, "
                          "score or decision",
                          name);
  }
  p->num_columns++;
  return TDM_OK;
}

static int compile_outputs(compiler *c) {
  tdm__pipeline *p = c->p;
  const tdm__spec *spec = c->spec;
  p->columns =
      tdm__calloc(spec->num_outputs + spec->num_fields + spec->num_features + 7,
                  sizeof *p->columns);
  if (p->columns == NULL) return tdm__fail(c->err, TDM_ENOMEM, "out of memory");
  tdm__mark none = {0, 0, TDM__STYLE_PLAIN};
  if (p->features_only) {
    /* The keys, every number and category field that is not a key (a
     * model may take a raw field as a feature, and training data must
     * hold it as the model will see it: the number, or the category's
     * index), then every feature. */
    int rc = TDM_OK;
    if (spec->id != NULL) rc = add_column(c, spec->id, none);
    if (rc == TDM_OK) rc = add_column(c, spec->entity, none);
    if (rc == TDM_OK) rc = add_column(c, spec->time, none);
    for (size_t i = 0; i < spec->num_fields && rc == TDM_OK; i++) {
      const tdm__field_spec *f = &spec->fields[i];
      if ((f->type != TDM__FIELD_NUMBER && f->type != TDM__FIELD_CATEGORY) ||
          strcmp(f->name, spec->entity) == 0 ||
          (spec->id != NULL && strcmp(f->name, spec->id) == 0))
        continue;
      rc = add_column(c, f->name, none);
      if (rc == TDM_OK) {
        column *col = &p->columns[p->num_columns - 1];
        col->kind = COLUMN_NUMBER;
        col->index = p->fields[i].number;
      }
    }
    for (size_t i = 0; i < spec->num_features && rc == TDM_OK; i++)
      rc = add_column(c, spec->features[i].name, none);
    return rc;
  }
  int rc = TDM_OK;
  if (spec->num_outputs > 0) {
    for (size_t i = 0; i < spec->num_outputs && rc == TDM_OK; i++)
      rc = add_column(c, spec->outputs[i], spec->output_marks[i]);
  } else {
    /* By default: the id, the entity, the time, the score and the
     * decision. */
    if (spec->id != NULL) rc = add_column(c, spec->id, none);
    if (rc == TDM_OK) rc = add_column(c, spec->entity, none);
    if (rc == TDM_OK) rc = add_column(c, spec->time, none);
    if (rc == TDM_OK) rc = add_column(c, "score", none);
    if (rc == TDM_OK && spec->num_rules > 0)
      rc = add_column(c, "decision", none);
  }
  /* A shadow model's score is always written, last unless output: places
   * it: scoring a challenger is only worth it if its score is kept. */
  int listed = 0, decided = 0;
  for (size_t i = 0; i < p->num_columns; i++) {
    if (p->columns[i].is_score == 2) listed = 1;
    if (p->columns[i].kind == COLUMN_SHADOW_DECISION) decided = 1;
  }
  if (rc == TDM_OK && p->shadow != NULL && !listed)
    rc = add_column(c, "shadow_score", none);
  if (rc == TDM_OK && p->shadow != NULL && spec->num_rules > 0 && !decided)
    rc = add_column(c, "shadow_decision", none);
  return rc;
}


/* Each materialized column is a feature or the score. */
static int compile_materialize(compiler *c) {
  tdm__pipeline *p = c->p;
  const tdm__spec *spec = c->spec;
  if (spec->num_materialize == 0) return TDM_OK;
  p->materialize_slots =
      tdm__calloc(spec->num_materialize, sizeof *p->materialize_slots);
  if (p->materialize_slots == NULL)
    return tdm__fail(c->err, TDM_ENOMEM, "out of memory");
  for (size_t m = 0; m < spec->num_materialize; m++) {
    const tdm__materialize_spec *ms = &spec->materialize[m];
    p->materialize_slots[m] = tdm__calloc(ms->num_columns, sizeof(size_t));
    if (p->materialize_slots[m] == NULL)
      return tdm__fail(c->err, TDM_ENOMEM, "out of memory");
    for (size_t k = 0; k < ms->num_columns; k++) {
      const char *name = ms->columns[k];
      size_t f = find_feature(spec, name, strlen(name));
      if (f != NONE) {
        p->materialize_slots[m][k] = p->feature_slot[f];
      } else if (strcmp(name, "score") == 0) {
        /* A features-only run computes no score; the pipeline still
         * compiles (its features are the training data), and a run that
         * asks for this table is refused where it asks. */
        p->materialize_slots[m][k] =
            p->features_only ? TDM__NO_SLOT : p->score_slot;
      } else {
        return tdm__spec_fail(spec, ms->column_marks[k], TDM_EPARSE, c->err,
                              "materialized column \"%s\" is not a feature "
                              "(or score)",
                              name);
      }
    }
  }
  return TDM_OK;
}

int tdm__pipeline_from_spec(tdm__spec *spec, int flags, tdm__pipeline **out,
                            tdm_error *err) {
  *out = NULL;
  tdm__pipeline *p = tdm__calloc(1, sizeof *p);
  if (p == NULL) {
    tdm__spec_free(spec);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  p->spec = spec;
  p->features_only = (flags & TDM__PIPELINE_FEATURES_ONLY) != 0;
  compiler c = {p, spec, err, 0};
  int rc = assign_slots(&c);
  if (rc == TDM_OK) rc = compile_features(&c);
  if (rc == TDM_OK && !p->features_only) rc = load_model(&c);
  if (rc == TDM_OK) rc = compile_rules(&c);
  if (rc == TDM_OK) rc = compile_outputs(&c);
  if (rc == TDM_OK)
    rc = tdm__lookups_compile(spec, p->feature_slot, &p->lookups, err);
  if (rc == TDM_OK) rc = compile_materialize(&c);
  if (rc != TDM_OK) {
    tdm__pipeline_free(p);
    return rc;
  }
  *out = p;
  return TDM_OK;
}

int tdm__pipeline_load(const char *path, int flags, tdm__pipeline **out,
                       tdm_error *err) {
  tdm__spec *spec;
  *out = NULL;
  int rc = tdm__spec_load(path, &spec, err);
  if (rc != TDM_OK) return rc;
  return tdm__pipeline_from_spec(spec, flags, out, err);
}

void tdm__pipeline_free(tdm__pipeline *p) {
  if (p == NULL) return;
  for (size_t i = 0; i < p->num_pre; i++) tdm__expr_free(p->pre[i].expr);
  for (size_t i = 0; i < p->num_post; i++) tdm__expr_free(p->post[i].expr);
  for (size_t i = 0; i < p->num_filters; i++) tdm__expr_free(p->filters[i]);
  for (size_t i = 0; p->rules && i < p->spec->num_rules; i++)
    tdm__expr_free(p->rules[i]);
  tdm__free(p->pre);
  tdm__free(p->post);
  tdm__free(p->filters);
  tdm__free(p->rules);
  tdm__window_spec_free(p->window);
  tdm__free(p->agg_slot);
  tdm__free(p->agg_number_inputs);
  tdm__free(p->agg_string_inputs);
  tdm__free(p->model_inputs);
  tdm__free(p->columns);
  tdm__free(p->fields);
  tdm__free(p->feature_slot);
  tdm__lookups_free(p->lookups);
  tdm__tables_close(p->tables);
  for (size_t m = 0; p->materialize_slots && m < p->spec->num_materialize; m++)
    tdm__free(p->materialize_slots[m]);
  tdm__free(p->materialize_slots);
  tdm_model_free(p->model);
  tdm__free(p->shadow_inputs);
  tdm_model_free(p->shadow);
  tdm__spec_free(p->spec);
  tdm__free(p);
}

const tdm__spec *tdm__pipeline_spec(const tdm__pipeline *p) { return p->spec; }
const tdm_model *tdm__pipeline_model(const tdm__pipeline *p) { return p->model; }
const char *tdm__pipeline_model_version(const tdm__pipeline *p) {
  return p->version;
}

int tdm__pipeline_open_tables(tdm__pipeline *p, const char *store,
                              const tdm__store_settings *settings,
                              tdm__lookup_mode mode, tdm_error *err) {
  const tdm__spec *spec = p->spec;
  if (store == NULL) store = spec->store;
  int needed = p->lookups != NULL;
  if (store == NULL) {
    if (!needed) return TDM_OK;
    return tdm__spec_fail(spec, (tdm__mark){0, 0, TDM__STYLE_PLAIN},
                          TDM_EINVAL, err,
                          "the pipeline looks up table \"%s\": give its "
                          "store (store: in the pipeline, or --store DIR)",
                          tdm__lookups_table(p->lookups, 0));
  }
  p->lookup_mode = mode;
  return tdm__tables_open(store, 1, settings, &p->tables, err);
}

tdm__tables *tdm__pipeline_tables(const tdm__pipeline *p) { return p->tables; }

const size_t *tdm__pipeline_materialize_slots(const tdm__pipeline *p,
                                              size_t m) {
  return p->materialize_slots[m];
}

size_t tdm__pipeline_feature_slot(const tdm__pipeline *p, size_t feature) {
  return p->feature_slot[feature];
}
