/*
 * pipeline.c - compiles a pipeline spec (fields, features, model, rules,
 * outputs) into slots and steps, and runs one event through them. This is
 * the one code path of every runner: batch, the live endpoint and replay
 * all call tdm__pipeline_process and format with tdm__pipeline_json or
 * tdm__pipeline_csv_row.
 *
 * Every value of an event lives in a slot: numbers (numeric fields, event
 * times in epoch seconds, category codes, features, the score) and strings
 * (string and category fields). Expressions read slots by index. Features
 * run in three stages: expressions the aggregations need (their inputs
 * and `where` filters), then all aggregations at once (one call into the
 * entity's window state), then the expressions that read aggregations.
 */
#include "pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "../io/csv.h"
#include "../io/events.h"
#include "../model/model.h"
#include "lookup.h"

#define NONE SIZE_MAX

/* How an output column gets its value. */
typedef enum column_kind {
  COLUMN_FIELD = 1, /* the event's own text */
  COLUMN_NUMBER,    /* a number slot (a feature, the score) */
  COLUMN_DECISION,
} column_kind;

typedef struct column {
  const char *name;
  column_kind kind;
  size_t index; /* field index or number slot */
  int is_score;
} column;

typedef struct field_slots {
  size_t number, string; /* NONE when the field has no such slot */
} field_slots;

typedef struct step {
  tdm__expr *expr;
  size_t slot;
} step;

struct tdm__pipeline {
  tdm__spec *spec;
  tdm_model *model;
  tdm_model_info info;
  char version[13];
  size_t num_numbers, num_strings;
  field_slots *fields;
  size_t *feature_slot; /* per spec feature */
  size_t score_slot;
  size_t entity_field, time_field, id_field; /* id: NONE without one */
  /* Stage 1 and 3 expressions, in dependency order. */
  step *pre, *post;
  size_t num_pre, num_post;
  /* Stage 2: the window aggregations. */
  tdm__window_spec *window;
  size_t num_aggs;
  size_t *agg_slot;          /* where each aggregate's value goes */
  size_t *agg_number_inputs; /* number slot of each number input */
  size_t *agg_string_inputs; /* string slot of each string input */
  size_t num_agg_numbers, num_agg_strings;
  tdm__expr **filters;
  size_t num_filters;
  /* The model's inputs: number slot per model feature. */
  size_t *model_inputs;
  /* Decision rules (NULL when: always). */
  tdm__expr **rules;
  column *columns;
  size_t num_columns;
  int64_t ttl_ms;
  int features_only;
  /* Lookups and tables (src/pipeline/lookup.c, src/store/table.c). */
  tdm__lookups *lookups;
  tdm__tables *tables;
  tdm__lookup_mode lookup_mode;
  size_t **materialize_slots; /* per materialize spec: slot per column */
};

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
static int check_categories(compiler *c, size_t field, size_t feature) {
  const tdm__spec *spec = c->spec;
  const tdm__field_spec *f = &spec->fields[field];
  size_t count;
  const char *const *names =
      tdm__model_category_names(c->p->model, feature, &count);
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

static int load_model(compiler *c) {
  tdm__pipeline *p = c->p;
  const tdm__spec *spec = c->spec;
  tdm_error model_err;
  if (spec->model_path == NULL)
    return tdm__spec_fail(spec, (tdm__mark){1, 1, TDM__STYLE_PLAIN},
                          TDM_EPARSE, c->err,
                          "the pipeline has no model: add model: FILE, or run "
                          "tandem batch --features-only to write the "
                          "training data for one");
  int rc = tdm_model_load(spec->model_path, &p->model, &model_err);
  if (rc != TDM_OK)
    return tdm__spec_fail(spec, spec->model_mark, rc, c->err, "model: %s",
                          model_err.message);
  tdm_model_get_info(p->model, &p->info);
  memcpy(p->version, p->info.sha256, 12);
  p->version[12] = '\0';
  if (tdm_model_output_width(p->model, 0) != 1)
    return tdm__spec_fail(spec, spec->model_mark, TDM_EUNSUPPORTED, c->err,
                          "model: a pipeline's model must give one score per "
                          "event (binary or regression); this one gives %zu",
                          tdm_model_output_width(p->model, 0));
  if (!tdm_model_has_feature_names(p->model))
    return tdm__spec_fail(spec, spec->model_mark, TDM_ESCHEMA, c->err,
                          "model: the model has no feature names, so the "
                          "pipeline cannot match its features to them");
  size_t nf = p->info.num_features;
  p->model_inputs = tdm__calloc(nf + 1, sizeof(size_t));
  if (p->model_inputs == NULL) return tdm__fail(c->err, TDM_ENOMEM, "out of memory");
  /* Every missing feature is named at once: a model trained on another
   * version of the pipeline usually lacks several, and fixing them one
   * run at a time is slow. */
  tdm__buf missing = {0};
  size_t num_missing = 0;
  for (size_t f = 0; f < nf; f++) {
    const char *want = tdm_model_feature_name(p->model, f);
    size_t len = strlen(want);
    size_t i = find_feature(spec, want, len);
    size_t field = find_field(spec, want, len);
    if (i != NONE) {
      p->model_inputs[f] = p->feature_slot[i];
    } else if (field != NONE && p->fields[field].number != NONE) {
      p->model_inputs[f] = p->fields[field].number;
      rc = check_categories(c, field, f);
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
    rc = tdm__spec_fail(spec, spec->model_mark, TDM_ESCHEMA, c->err,
                        "model: %zu of the model's %zu features %s not a "
                        "feature or numeric field of the pipeline: %.*s "
                        "(add them to features: or fields:, or use the model "
                        "trained on this pipeline)",
                        num_missing, nf, num_missing == 1 ? "is" : "are",
                        (int)missing.len, missing.data);
    tdm__buf_free(&missing);
    return rc;
  }
  if (spec->explain_reasons > 0 && !tdm_model_has_contribs(p->model))
    return tdm__spec_fail(spec, spec->explain_mark, TDM_EUNSUPPORTED, c->err,
                          "explain: the model cannot give contributions (its "
                          "file holds no node covers, or it is a linear "
                          "model)");
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
  p->columns = tdm__calloc(
      spec->num_outputs + spec->num_fields + spec->num_features + 6,
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
  if (spec->num_outputs > 0) {
    for (size_t i = 0; i < spec->num_outputs; i++) {
      int rc = add_column(c, spec->outputs[i], spec->output_marks[i]);
      if (rc != TDM_OK) return rc;
    }
    return TDM_OK;
  }
  /* By default: the id, the entity, the time, the score and the decision. */
  int rc = TDM_OK;
  if (spec->id != NULL) rc = add_column(c, spec->id, none);
  if (rc == TDM_OK) rc = add_column(c, spec->entity, none);
  if (rc == TDM_OK) rc = add_column(c, spec->time, none);
  if (rc == TDM_OK) rc = add_column(c, "score", none);
  if (rc == TDM_OK && spec->num_rules > 0) rc = add_column(c, "decision", none);
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
  tdm__spec_free(p->spec);
  tdm__free(p);
}

const tdm__spec *tdm__pipeline_spec(const tdm__pipeline *p) { return p->spec; }
const tdm_model *tdm__pipeline_model(const tdm__pipeline *p) { return p->model; }
const char *tdm__pipeline_model_version(const tdm__pipeline *p) {
  return p->version;
}

int tdm__pipeline_open_tables(tdm__pipeline *p, const char *store,
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
  return tdm__tables_open(store, 1, &p->tables, err);
}

tdm__tables *tdm__pipeline_tables(const tdm__pipeline *p) { return p->tables; }

const size_t *tdm__pipeline_materialize_slots(const tdm__pipeline *p,
                                              size_t m) {
  return p->materialize_slots[m];
}

size_t tdm__pipeline_feature_slot(const tdm__pipeline *p, size_t feature) {
  return p->feature_slot[feature];
}

/* ---- entity state ---- */

/* A remembered event id and the values of its first result: the numbers
 * and the id share one block (numbers first), of `cap` bytes. */
typedef struct seen_id {
  char *id;
  size_t id_len, cap;
  uint64_t id_hash; /* so a lookup reads the id's block only on a match */
  int64_t time_ms;
  int decision;
  double *numbers;
} seen_id;

typedef struct entry {
  char *key; /* NULL: an empty bucket; key_inline when the key fits */
  size_t key_len;
  /* Short keys (card, user and account ids) live in the entry itself, so
   * a lookup compares them without reading another cache line. */
  char key_inline[16];
  uint64_t hash;
  tdm__entity *entity;
  seen_id *ids;
  size_t num_ids, cap_ids;
  uint64_t tag; /* the runner's: e.g. the log position of its last event */
  int dirty;    /* changed since the last tdm__state_map_take_dirty */
  unsigned idle_rounds; /* evict calls since an event last touched it */
  double *last; /* the last result's numbers (maps that keep them) */
} entry;

struct tdm__state_map {
  const tdm__pipeline *p;
  entry *buckets;
  size_t cap, count;
  int keep_last;
  int64_t newest; /* the latest event time applied through this map */
  int64_t clock_ms; /* the runner's clock for max_future (INT64_MAX: none) */
  tdm__state_loader load; /* brings back entities not in memory */
  void *load_ctx;
};

/* The map's own hash (seed 0; runners partition with other seeds). */
static uint64_t hash_bytes(const char *s, size_t len) {
  return tdm__hash_bytes(s, len, 0);
}

int tdm__state_map_new(const tdm__pipeline *p, tdm__state_map **out) {
  tdm__state_map *map = tdm__calloc(1, sizeof *map);
  if (map == NULL) return TDM_ENOMEM;
  map->p = p;
  map->cap = 1024;
  map->newest = INT64_MIN;
  map->clock_ms = INT64_MAX;
  map->buckets = tdm__calloc(map->cap, sizeof *map->buckets);
  if (map->buckets == NULL) {
    tdm__free(map);
    return TDM_ENOMEM;
  }
  *out = map;
  return TDM_OK;
}

static void entry_clear(entry *e) {
  for (size_t i = 0; i < e->num_ids; i++) tdm__free(e->ids[i].numbers);
  tdm__free(e->ids);
  tdm__free(e->last);
  tdm__entity_free(e->entity);
  if (e->key != e->key_inline) tdm__free(e->key);
  memset(e, 0, sizeof *e);
}

/* Moves entry src to the empty bucket dst (src's bucket is then stale). */
static void entry_move(entry *dst, const entry *src) {
  *dst = *src;
  if (src->key == src->key_inline) dst->key = dst->key_inline;
}

void tdm__state_map_free(tdm__state_map *map) {
  if (map == NULL) return;
  for (size_t i = 0; i < map->cap; i++)
    if (map->buckets[i].key != NULL) entry_clear(&map->buckets[i]);
  tdm__free(map->buckets);
  tdm__free(map);
}

size_t tdm__state_map_entities(const tdm__state_map *map) {
  return map->count;
}

static int grow(tdm__state_map *map) {
  size_t cap = map->cap * 2;
  entry *buckets = tdm__calloc(cap, sizeof *buckets);
  if (buckets == NULL) return TDM_ENOMEM;
  for (size_t i = 0; i < map->cap; i++) {
    entry *e = &map->buckets[i];
    if (e->key == NULL) continue;
    size_t at = e->hash & (cap - 1);
    while (buckets[at].key != NULL) at = (at + 1) & (cap - 1);
    entry_move(&buckets[at], e);
  }
  tdm__free(map->buckets);
  map->buckets = buckets;
  map->cap = cap;
  return TDM_OK;
}

/* The entry of an entity, created empty when new. */
static int find_entry(tdm__state_map *map, const tdm__str *key, entry **out) {
  uint64_t h = hash_bytes(key->data, key->len);
  size_t at = h & (map->cap - 1);
  while (map->buckets[at].key != NULL) {
    entry *e = &map->buckets[at];
    if (e->hash == h && e->key_len == key->len &&
        memcmp(e->key, key->data, key->len) == 0) {
      *out = e;
      return TDM_OK;
    }
    at = (at + 1) & (map->cap - 1);
  }
  if ((map->count + 1) * 4 > map->cap * 3) {
    if (grow(map) != TDM_OK) return TDM_ENOMEM;
    return find_entry(map, key, out);
  }
  entry *e = &map->buckets[at];
  if (key->len < sizeof e->key_inline) {
    memcpy(e->key_inline, key->data, key->len);
    e->key_inline[key->len] = '\0';
    e->key = e->key_inline;
  } else if ((e->key = tdm__strndup(key->data, key->len)) == NULL) {
    return TDM_ENOMEM;
  }
  if (tdm__entity_new(map->p->window, &e->entity) != TDM_OK) {
    if (e->key != e->key_inline) tdm__free(e->key);
    e->key = NULL;
    return TDM_ENOMEM;
  }
  e->key_len = key->len;
  e->hash = h;
  map->count++;
  *out = e;
  return TDM_OK;
}

/* Rebuilds the table, without the entities that are saved and have been
 * idle for more than `rounds` calls when `evicting` (else keeping all), so
 * that probe chains have no holes. Returns how many were dropped; on out
 * of memory, drops none. */
static size_t rebuild(tdm__state_map *map, int evicting, unsigned rounds) {
  entry *buckets = tdm__calloc(map->cap, sizeof *buckets);
  if (buckets == NULL) return 0;
  size_t dropped = 0;
  for (size_t i = 0; i < map->cap; i++) {
    entry *e = &map->buckets[i];
    if (e->key == NULL) continue;
    if (evicting && !e->dirty && ++e->idle_rounds > rounds) {
      entry_clear(e);
      map->count--;
      dropped++;
      continue;
    }
    size_t at = e->hash & (map->cap - 1);
    while (buckets[at].key != NULL) at = (at + 1) & (map->cap - 1);
    entry_move(&buckets[at], e);
  }
  tdm__free(map->buckets);
  map->buckets = buckets;
  return dropped;
}

/* Gives s a block for the numbers and the id (reusing s's block when it
 * is large enough) and copies the id in. */
static int id_block(const tdm__pipeline *p, seen_id *s, const char *id,
                    size_t id_len) {
  size_t need = p->num_numbers * sizeof(double) + id_len + 1;
  if (s->numbers == NULL || s->cap < need) {
    double *block = tdm__realloc(s->numbers, need);
    if (block == NULL) return TDM_ENOMEM;
    s->numbers = block;
    s->cap = need;
  }
  s->id = (char *)(s->numbers + p->num_numbers);
  memcpy(s->id, id, id_len);
  s->id[id_len] = '\0';
  s->id_len = id_len;
  s->id_hash = hash_bytes(id, id_len);
  return TDM_OK;
}

/* An entry's bytes: u32 window length, the window state, u32 id count,
 * then per id: u32 length, the id, i64 time, i32 decision and the result's
 * number slots (doubles), all little-endian as the machine writes them. */
static int put_bytes(tdm__buf *out, const void *data, size_t n) {
  return tdm__buf_append(out, data, n);
}

static const entry *lookup_entry(const tdm__state_map *map,
                                 const tdm__str *key) {
  uint64_t h = hash_bytes(key->data, key->len);
  size_t at = h & (map->cap - 1);
  while (map->buckets[at].key != NULL) {
    const entry *e = &map->buckets[at];
    if (e->hash == h && e->key_len == key->len &&
        memcmp(e->key, key->data, key->len) == 0)
      return e;
    at = (at + 1) & (map->cap - 1);
  }
  return NULL;
}

int tdm__state_map_encode(tdm__state_map *map, tdm__str key, tdm__buf *out) {
  const tdm__pipeline *p = map->p;
  const entry *e = lookup_entry(map, &key);
  if (e == NULL) return TDM_ENOTFOUND;
  size_t start = out->len;
  uint32_t len32 = 0;
  int rc = put_bytes(out, &len32, 4);
  if (rc == TDM_OK) rc = tdm__entity_encode(p->window, e->entity, out);
  if (rc == TDM_OK) {
    len32 = (uint32_t)(out->len - start - 4);
    memcpy(out->data + start, &len32, 4);
    uint32_t n = (uint32_t)e->num_ids;
    rc = put_bytes(out, &n, 4);
  }
  for (size_t i = 0; i < e->num_ids && rc == TDM_OK; i++) {
    const seen_id *s = &e->ids[i];
    uint32_t id_len = (uint32_t)s->id_len;
    int32_t decision = s->decision;
    rc = put_bytes(out, &id_len, 4);
    if (rc == TDM_OK) rc = put_bytes(out, s->id, s->id_len);
    if (rc == TDM_OK) rc = put_bytes(out, &s->time_ms, 8);
    if (rc == TDM_OK) rc = put_bytes(out, &decision, 4);
    if (rc == TDM_OK)
      rc = put_bytes(out, s->numbers, p->num_numbers * sizeof(double));
  }
  if (rc != TDM_OK) out->len = start;
  return rc;
}

typedef struct cursor {
  const unsigned char *p, *end;
} cursor;

static int take(cursor *c, void *dst, size_t n) {
  if ((size_t)(c->end - c->p) < n) return -1;
  memcpy(dst, c->p, n);
  c->p += n;
  return 0;
}

int tdm__state_map_restore(tdm__state_map *map, tdm__str key, uint64_t tag,
                           const void *data, size_t len, tdm_error *err) {
  const tdm__pipeline *p = map->p;
  if (lookup_entry(map, &key) != NULL)
    return tdm__fail(err, TDM_EINVAL, "entity \"%.*s\" is already loaded",
                     (int)key.len, key.data);
  cursor c = {data, (const unsigned char *)data + len};
  uint32_t window_len;
  if (take(&c, &window_len, 4) != 0 || window_len > (size_t)(c.end - c.p))
    return tdm__fail(err, TDM_EPARSE, "entity \"%.*s\": truncated state",
                     (int)key.len, key.data);
  tdm__entity *entity;
  int rc = tdm__entity_decode(p->window, c.p, window_len, &entity, err);
  if (rc != TDM_OK) return rc;
  c.p += window_len;
  entry *e;
  if (find_entry(map, &key, &e) != TDM_OK) {
    tdm__entity_free(entity);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  tdm__entity_free(e->entity);
  e->entity = entity;
  e->tag = tag;
  uint32_t n;
  rc = take(&c, &n, 4) == 0 ? TDM_OK : TDM_EPARSE;
  size_t record = 4 + 8 + 4 + p->num_numbers * sizeof(double);
  if (rc == TDM_OK && (size_t)n > (size_t)(c.end - c.p) / record) rc = TDM_EPARSE;
  if (rc == TDM_OK && n > 0) {
    e->ids = tdm__calloc(n, sizeof *e->ids);
    if (e->ids == NULL) rc = TDM_ENOMEM;
    e->cap_ids = n;
  }
  for (uint32_t i = 0; i < n && rc == TDM_OK; i++) {
    seen_id *s = &e->ids[i];
    uint32_t id_len;
    int32_t decision;
    if (take(&c, &id_len, 4) != 0 || id_len > (size_t)(c.end - c.p)) {
      rc = TDM_EPARSE;
      break;
    }
    if (id_block(p, s, (const char *)c.p, id_len) != TDM_OK) {
      rc = TDM_ENOMEM;
      break;
    }
    c.p += id_len;
    s->id_len = id_len;
    e->num_ids++;
    if (take(&c, &s->time_ms, 8) != 0 || take(&c, &decision, 4) != 0 ||
        take(&c, s->numbers, p->num_numbers * sizeof(double)) != 0 ||
        s->time_ms < -TDM__WINDOW_TIME_LIMIT ||
        s->time_ms > TDM__WINDOW_TIME_LIMIT || decision < -1 ||
        decision >= (int32_t)p->spec->num_rules) {
      rc = TDM_EPARSE;
      break;
    }
    s->decision = decision;
  }
  if (rc == TDM_OK && c.p != c.end) rc = TDM_EPARSE;
  if (rc != TDM_OK) {
    /* Leave the map as it was: drop the half-restored entity. */
    entry_clear(e);
    map->count--;
    rebuild(map, 0, 0); /* close the hole in its probe chain */
    if (rc == TDM_ENOMEM) return tdm__fail(err, rc, "out of memory");
    return tdm__fail(err, TDM_EPARSE,
                     "entity \"%.*s\": corrupt state (ids)", (int)key.len,
                     key.data);
  }
  return TDM_OK;
}

void tdm__state_map_set_tag(tdm__state_map *map, tdm__str key, uint64_t tag) {
  entry *e = (entry *)lookup_entry(map, &key);
  if (e != NULL) e->tag = tag;
}

/* Removes entity key (if present), closing the gap in its probe chain by
 * moving later entries of the chain back (linear probing's deletion). */
void tdm__state_map_forget(tdm__state_map *map, tdm__str key) {
  entry *e = (entry *)lookup_entry(map, &key);
  if (e == NULL) return;
  size_t mask = map->cap - 1, hole = (size_t)(e - map->buckets);
  entry_clear(e);
  map->count--;
  for (size_t at = (hole + 1) & mask; map->buckets[at].key != NULL;
       at = (at + 1) & mask) {
    size_t home = map->buckets[at].hash & mask;
    /* The entry may fill the hole only if its home is not in (hole, at]. */
    int stays = hole <= at ? (home > hole && home <= at)
                           : (home > hole || home <= at);
    if (stays) continue;
    entry_move(&map->buckets[hole], &map->buckets[at]);
    memset(&map->buckets[at], 0, sizeof map->buckets[at]);
    hole = at;
  }
}

void tdm__state_map_mark_all_dirty(tdm__state_map *map) {
  for (size_t i = 0; i < map->cap; i++)
    if (map->buckets[i].key != NULL) map->buckets[i].dirty = 1;
}

void tdm__state_map_mark_dirty(tdm__state_map *map, tdm__str key) {
  entry *e = (entry *)lookup_entry(map, &key);
  if (e != NULL) e->dirty = 1;
}

uint64_t tdm__state_map_tag(const tdm__state_map *map, tdm__str key) {
  const entry *e = lookup_entry(map, &key);
  return e ? e->tag : 0;
}

int tdm__state_map_take_dirty(tdm__state_map *map,
                              int (*fn)(void *ctx, tdm__str key, uint64_t tag,
                                        const void *state, size_t len),
                              void *ctx) {
  tdm__buf b = {0};
  int rc = TDM_OK;
  for (size_t i = 0; i < map->cap && rc == TDM_OK; i++) {
    entry *e = &map->buckets[i];
    if (e->key == NULL || !e->dirty) continue;
    tdm__str key = {e->key, e->key_len};
    b.len = 0;
    rc = tdm__state_map_encode(map, key, &b);
    if (rc == TDM_OK) rc = fn(ctx, key, e->tag, b.data, b.len);
    if (rc == TDM_OK) e->dirty = 0;
  }
  tdm__buf_free(&b);
  return rc;
}

void tdm__state_map_set_loader(tdm__state_map *map, tdm__state_loader load,
                               void *ctx) {
  map->load = load;
  map->load_ctx = ctx;
}

size_t tdm__state_map_evict(tdm__state_map *map, unsigned rounds) {
  /* Only an entity that can be brought back may leave: dropping state
   * that a later event of the entity would read changes its answers. */
  if (map->load == NULL) return 0;
  return rebuild(map, 1, rounds);
}

void tdm__state_map_set_clock(tdm__state_map *map, int64_t now_ms) {
  map->clock_ms = now_ms;
}

int64_t tdm__state_map_newest(const tdm__state_map *map) {
  return map->newest;
}

void tdm__state_map_keep_last(tdm__state_map *map) { map->keep_last = 1; }

int tdm__state_map_each_last(const tdm__state_map *map,
                             int (*fn)(void *ctx, tdm__str key,
                                       const double *numbers),
                             void *ctx) {
  for (size_t i = 0; i < map->cap; i++) {
    const entry *e = &map->buckets[i];
    if (e->key == NULL || e->last == NULL) continue;
    int rc = fn(ctx, (tdm__str){e->key, e->key_len}, e->last);
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}

/* ---- one event ---- */

int tdm__result_init(const tdm__pipeline *p, tdm__result *r) {
  memset(r, 0, sizeof *r);
  r->number_store = tdm__calloc(p->num_numbers + 1, sizeof(double));
  r->string_store = tdm__calloc(p->num_strings + 1, sizeof(tdm__str));
  r->row = tdm__calloc(p->info.num_features + 1, sizeof(double));
  r->agg_out = tdm__calloc(p->num_aggs + 1, sizeof(double));
  r->filters = tdm__calloc(p->num_filters + 1, 1);
  r->agg_numbers = tdm__calloc(p->num_agg_numbers + 1, sizeof(double));
  r->agg_strings = tdm__calloc(p->num_agg_strings + 1, sizeof(tdm__str));
  if (!r->number_store || !r->string_store || !r->row || !r->agg_out ||
      !r->filters || !r->agg_numbers || !r->agg_strings) {
    tdm__result_free(r);
    return TDM_ENOMEM;
  }
  r->numbers = r->number_store;
  r->strings = r->string_store;
  if (p->lookups != NULL && p->tables != NULL) {
    tdm_error err;
    int rc = tdm__lookup_reader_new(p->lookups, p->tables, p->lookup_mode,
                                    &r->lookup, &err);
    if (rc != TDM_OK) {
      tdm__result_free(r);
      return rc;
    }
  }
  return TDM_OK;
}

void tdm__result_free(tdm__result *r) {
  if (r == NULL) return;
  tdm__free(r->number_store);
  tdm__free(r->string_store);
  tdm__free(r->row);
  tdm__free(r->agg_out);
  tdm__free(r->filters);
  tdm__free(r->agg_numbers);
  tdm__free(r->agg_strings);
  tdm__buf_free(&r->key);
  tdm__lookup_reader_free(r->lookup);
  memset(r, 0, sizeof *r);
}

int tdm__pipeline_entity(const tdm__pipeline *p, const tdm__event *ev,
                         tdm__str *entity, tdm_error *err) {
  *entity = ev->fields[p->entity_field];
  if (entity->data == NULL || entity->len == 0)
    return tdm__fail(err, TDM_ESCHEMA, "field \"%s\" (the entity) is missing",
                     p->spec->entity);
  if (entity->len > TDM__MAX_KEY_BYTES)
    return tdm__fail(err, TDM_ESCHEMA,
                     "field \"%s\" (the entity) is %zu bytes long; an entity "
                     "key has at most %d",
                     p->spec->entity, entity->len, TDM__MAX_KEY_BYTES);
  if (p->id_field != NONE && ev->fields[p->id_field].len > TDM__MAX_KEY_BYTES)
    return tdm__fail(err, TDM_ESCHEMA,
                     "field \"%s\" (the event id) is %zu bytes long; an id "
                     "has at most %d",
                     p->spec->id, ev->fields[p->id_field].len,
                     TDM__MAX_KEY_BYTES);
  return TDM_OK;
}

/* Field texts to slots; errors name the field. */
static int read_fields(const tdm__pipeline *p, const tdm__event *ev,
                       tdm__result *r, tdm_error *err) {
  const tdm__spec *spec = p->spec;
  for (size_t i = 0; i < spec->num_fields; i++) {
    const tdm__field_spec *f = &spec->fields[i];
    tdm__str text = ev->fields[i];
    int present = text.data != NULL && text.len > 0;
    if (!present && (f->required || i == p->time_field))
      return tdm__fail(err, TDM_ESCHEMA, "field \"%s\" is missing", f->name);
    size_t n = p->fields[i].number, s = p->fields[i].string;
    if (s != NONE) r->string_store[s] = present ? text : (tdm__str){NULL, 0};
    if (n == NONE) continue;
    double value = NAN;
    if (present) {
      switch (f->type) {
        case TDM__FIELD_NUMBER:
          if (tdm__parse_double(text.data, text.len, &value) != 0 ||
              isinf(value))
            return tdm__fail(err, TDM_EPARSE,
                             "field \"%s\": \"%.*s\" is not a number",
                             f->name, (int)(text.len > 64 ? 64 : text.len),
                             text.data);
          /* "NaN" is how files and requests spell a missing number. */
          if (isnan(value) && f->required)
            return tdm__fail(err, TDM_ESCHEMA,
                             "field \"%s\" is missing (\"%.*s\" is a missing "
                             "number)",
                             f->name, (int)(text.len > 64 ? 64 : text.len),
                             text.data);
          break;
        case TDM__FIELD_TIME: {
          int64_t ms;
          if (tdm__parse_time(text.data, text.len, f->unit, &ms) != 0)
            return tdm__fail(err, TDM_EPARSE,
                             "field \"%s\": \"%.*s\" is not a time (RFC 3339 "
                             "like 2026-03-01T14:03:07Z, or epoch %s)",
                             f->name, (int)(text.len > 64 ? 64 : text.len),
                             text.data,
                             f->unit == TDM__TIME_MILLISECONDS ? "milliseconds"
                                                               : "seconds");
          if (i == p->time_field) r->time_ms = ms;
          value = (double)ms / 1000.0;
          break;
        }
        default: /* a category: its index */
          for (size_t k = 0; k < f->num_values; k++)
            if (f->value_lens[k] == text.len &&
                memcmp(f->values[k], text.data, text.len) == 0) {
              value = (double)k;
              break;
            }
          /* An unknown category scored as missing changed scores with no
           * sign; it is invalid unless the pipeline says otherwise. */
          if (isnan(value) && !f->unknown_missing)
            return tdm__fail(err, TDM_ESCHEMA,
                             "field \"%s\": \"%.*s\" is not one of its "
                             "%zu values (\"%s\" ... \"%s\"): add it to "
                             "values in the model's category order, or "
                             "declare the field unknown: missing to score it "
                             "as missing",
                             f->name, (int)(text.len > 64 ? 64 : text.len),
                             text.data, f->num_values, f->values[0],
                             f->values[f->num_values - 1]);
          break;
      }
    }
    r->number_store[n] = value;
  }
  return TDM_OK;
}

static void run_steps(const step *steps, size_t n, double *numbers,
                      const tdm__expr_values *values) {
  for (size_t i = 0; i < n; i++)
    numbers[steps[i].slot] = tdm__expr_eval(steps[i].expr, values);
}

/* The remembered id: seen at most `dedupe` before the entity's newest
 * event. (Older ids may linger in the list until the next id is
 * remembered; they count as forgotten all the same, so the answer does not
 * depend on when the list was last pruned.) */
static seen_id *find_id(const tdm__pipeline *p, entry *e, const tdm__str *id) {
  uint64_t h = hash_bytes(id->data, id->len);
  int64_t newest = tdm__entity_max_time(e->entity);
  for (size_t i = e->num_ids; i-- > 0;)
    if (e->ids[i].id_hash == h && e->ids[i].id_len == id->len &&
        memcmp(e->ids[i].id, id->data, id->len) == 0 &&
        (newest == INT64_MIN ||
         newest - e->ids[i].time_ms <= p->spec->dedupe_ms))
      return &e->ids[i];
  return NULL;
}

/* Remembers an id's result; forgets ids older than the dedupe horizon,
 * reusing one of their blocks for the new id (so a steady stream of ids
 * allocates nothing). */
static int remember_id(const tdm__pipeline *p, entry *e, const tdm__str *id,
                       const tdm__result *r) {
  int64_t newest = tdm__entity_max_time(e->entity);
  size_t keep = 0;
  seen_id spare = {0};
  for (size_t i = 0; i < e->num_ids; i++) {
    if (newest - e->ids[i].time_ms > p->spec->dedupe_ms) {
      if (spare.numbers == NULL)
        spare = e->ids[i];
      else
        tdm__free(e->ids[i].numbers);
    } else {
      e->ids[keep++] = e->ids[i];
    }
  }
  e->num_ids = keep;
  if (e->num_ids == e->cap_ids) {
    size_t cap = e->cap_ids ? e->cap_ids * 2 : 4;
    seen_id *ids = tdm__realloc(e->ids, cap * sizeof *ids);
    if (ids == NULL) {
      tdm__free(spare.numbers);
      return TDM_ENOMEM;
    }
    e->ids = ids;
    e->cap_ids = cap;
  }
  seen_id *s = &e->ids[e->num_ids];
  *s = spare;
  if (id_block(p, s, id->data, id->len) != TDM_OK) {
    tdm__free(s->numbers);
    return TDM_ENOMEM;
  }
  s->time_ms = r->time_ms;
  s->decision = r->decision;
  memcpy(s->numbers, r->numbers, p->num_numbers * sizeof(double));
  e->num_ids++;
  return TDM_OK;
}

static int decide(const tdm__pipeline *p, const tdm__expr_values *values) {
  for (size_t i = 0; i < p->spec->num_rules; i++) {
    if (p->rules[i] == NULL) return (int)i;
    double v = tdm__expr_eval(p->rules[i], values);
    if (v != 0 && !isnan(v)) return (int)i;
  }
  return -1;
}

int tdm__pipeline_fallback(const tdm__pipeline *p, const tdm__event *ev,
                           double score, uint64_t version, int64_t as_of_ms,
                           tdm__result *r, tdm_error *err) {
  r->duplicate = 0;
  r->numbers = r->number_store;
  r->decision = -1;
  int rc = tdm__pipeline_entity(p, ev, &r->entity, err);
  if (rc == TDM_OK) rc = read_fields(p, ev, r, err);
  if (rc != TDM_OK) return rc;
  r->id = p->id_field != NONE ? ev->fields[p->id_field] : (tdm__str){NULL, 0};
  for (size_t i = 0; i < p->spec->num_features; i++)
    r->number_store[p->feature_slot[i]] = NAN;
  r->number_store[p->score_slot] = version ? score : NAN;
  r->score = version ? score : NAN;
  r->source = version ? TDM__SOURCE_BATCH : TDM__SOURCE_DEFAULT;
  r->fallback_version = version;
  r->fallback_as_of_ms = as_of_ms;
  if (version) {
    tdm__expr_values values = {r->number_store, r->string_store, r->time_ms};
    r->decision = decide(p, &values);
  }
  return TDM_OK;
}

/* The model's input row from a result's number slots. A feature that is
 * infinite (log(0)) goes to the model as missing: tree models take no
 * infinity. The formatter rebuilds the row this way for explanations, so
 * a duplicate's reasons come from the numbers it repeats. */
static void model_row(const tdm__pipeline *p, const double *numbers,
                      double *row) {
  size_t nf = p->features_only ? 0 : p->info.num_features;
  for (size_t f = 0; f < nf; f++) {
    double v = numbers[p->model_inputs[f]];
    row[f] = isinf(v) || (p->info.float32 && isinf((float)v)) ? NAN : v;
  }
}

int tdm__pipeline_process(const tdm__pipeline *p, tdm__state_map *map,
                          const tdm__event *ev, tdm__result *r,
                          tdm_error *err) {
  r->duplicate = 0;
  r->source = TDM__SOURCE_MODEL;
  r->numbers = r->number_store;
  r->decision = -1;
  int rc = tdm__pipeline_entity(p, ev, &r->entity, err);
  if (rc != TDM_OK) return rc;
  r->id = p->id_field != NONE ? ev->fields[p->id_field] : (tdm__str){NULL, 0};
  if (r->id.data != NULL && r->id.len == 0) r->id.data = NULL;
  rc = read_fields(p, ev, r, err);
  if (rc != TDM_OK) return rc;
  if (r->time_ms > map->clock_ms &&
      r->time_ms - map->clock_ms > p->spec->max_future_ms) {
    /* The clock's reading stays out of the message: replay compares the
     * message its batch side writes with the live one, a moment apart. */
    char at[32];
    tdm__format_time(r->time_ms, at);
    return tdm__fail(err, TDM_EFUTURE,
                     "future: field \"%s\": %s is more than state.max_future "
                     "(%lld s) ahead of the runner's clock",
                     p->spec->time, at,
                     (long long)(p->spec->max_future_ms / 1000));
  }
  entry *e;
  if (map->load != NULL && lookup_entry(map, &r->entity) == NULL) {
    rc = map->load(map->load_ctx, map, r->entity, err);
    if (rc != TDM_OK && rc != TDM_ENOTFOUND) return rc;
  }
  if (find_entry(map, &r->entity, &e) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  e->idle_rounds = 0;
  if (r->id.data != NULL) {
    const seen_id *seen = find_id(p, e, &r->id);
    if (seen != NULL) {
      r->duplicate = 1;
      r->numbers = seen->numbers;
      r->decision = seen->decision;
      r->score = seen->numbers[p->score_slot];
      return TDM_OK;
    }
  }
  /* Checked after the duplicates: an id still remembered answers as the
   * duplicate it is, whatever its time. */
  int64_t newest = tdm__entity_max_time(e->entity);
  if (p->id_field != NONE && !p->spec->late_apply && newest != INT64_MIN &&
      newest - r->time_ms > p->spec->dedupe_ms) {
    char at[32], last[32];
    tdm__format_time(r->time_ms, at);
    tdm__format_time(newest, last);
    return tdm__fail(err, TDM_ETOOLATE,
                     "too_late: field \"%s\": %s is more than state.dedupe "
                     "(%lld s) before the entity's newest event (%s), too "
                     "old to be checked for duplicates (state.late: apply "
                     "applies it)",
                     p->spec->time, at, (long long)(p->spec->dedupe_ms / 1000),
                     last);
  }
  double *numbers = r->number_store;
  tdm__expr_values values = {numbers, r->string_store, r->time_ms};
  /* Lookups first: values batch runs left in tables. */
  if (r->lookup != NULL) {
    rc = tdm__lookup_fill(r->lookup, r->entity, r->time_ms, numbers, err);
    if (rc != TDM_OK) return rc;
  }
  /* Stage 1: what the aggregations read. */
  run_steps(p->pre, p->num_pre, numbers, &values);
  for (size_t i = 0; i < p->num_filters; i++) {
    double v = tdm__expr_eval(p->filters[i], &values);
    r->filters[i] = v != 0 && !isnan(v);
  }
  for (size_t i = 0; i < p->num_agg_numbers; i++)
    r->agg_numbers[i] = numbers[p->agg_number_inputs[i]];
  for (size_t i = 0; i < p->num_agg_strings; i++)
    r->agg_strings[i] = r->string_store[p->agg_string_inputs[i]];
  /* Stage 2: the window state (the only step that changes state). */
  tdm__window_event wev = {r->time_ms, r->agg_numbers, r->agg_strings,
                           r->filters};
  rc = tdm__entity_apply(p->window, e->entity, &wev, r->agg_out);
  if (rc == TDM_ENOMEM) return tdm__fail(err, rc, "out of memory");
  if (rc != TDM_OK)
    return tdm__fail(err, TDM_EPARSE, "field \"%s\": the time is out of range",
                     p->spec->time);
  for (size_t i = 0; i < p->num_aggs; i++) numbers[p->agg_slot[i]] = r->agg_out[i];
  /* Stage 3: expressions of aggregations, then the model. */
  run_steps(p->post, p->num_post, numbers, &values);
  model_row(p, numbers, r->row);
  double score = NAN;
  if (!p->features_only &&
      tdm_model_predict(p->model, r->row, 1, 0, &score) != TDM_OK)
    score = NAN;
  numbers[p->score_slot] = score;
  r->score = score;
  r->decision = p->features_only ? -1 : decide(p, &values);
  e->dirty = 1;
  if (r->time_ms > map->newest) map->newest = r->time_ms;
  if (map->keep_last) {
    if (e->last == NULL &&
        (e->last = tdm__malloc((p->num_numbers + 1) * sizeof(double))) == NULL)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
    memcpy(e->last, numbers, p->num_numbers * sizeof(double));
  }
  if (r->id.data != NULL && remember_id(p, e, &r->id, r) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  return TDM_OK;
}

const char *tdm__pipeline_reject_reason(int status) {
  switch (status) {
    case TDM_ETOOLATE: return "too_late";
    case TDM_EFUTURE: return "future";
    default: return "invalid";
  }
}

int tdm__pipeline_error_json(int status, const char *message, tdm__buf *out) {
  int rc = tdm__buf_append(out, "{\"error\":", 9);
  if (rc == TDM_OK) rc = tdm__json_append_string(out, message);
  if (rc == TDM_OK && (status == TDM_ETOOLATE || status == TDM_EFUTURE))
    rc = tdm__buf_printf(out, ",\"reason\":\"%s\"",
                         tdm__pipeline_reject_reason(status));
  if (rc == TDM_OK) rc = tdm__buf_append(out, "}", 1);
  return rc;
}

/* ---- formatting ---- */

/* Writes the integer r with `decimals` digits after a point. */
static int fixed_text(int64_t r, int decimals, char buf[32]) {
  char digits[24];
  int n = 0, negative = r < 0;
  uint64_t u = negative ? (uint64_t)0 - (uint64_t)r : (uint64_t)r;
  do {
    digits[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u > 0);
  while (n <= decimals) digits[n++] = '0';
  int len = 0;
  if (negative) buf[len++] = '-';
  for (int i = n - 1; i >= 0; i--) {
    buf[len++] = digits[i];
    if (i == decimals && decimals > 0) buf[len++] = '.';
  }
  buf[len] = '\0';
  return len;
}

int tdm__format_double(double value, char buf[32]) {
  static const double powers[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
  /* Counts, amounts and sums have few decimals: the smallest k for which
   * round(v * 10^k) / 10^k gives v back is the shortest text. Both sides
   * are exact doubles below 2^53, so the division is correctly rounded,
   * just as reading the text back would be. */
  if (fabs(value) < 1e9) {
    for (int k = 0; k < 7; k++) {
      double scaled = nearbyint(value * powers[k]);
      if (fabs(scaled) < 9007199254740992.0 && scaled / powers[k] == value)
        return fixed_text((int64_t)scaled, k, buf);
    }
  }
  /* The rest: the shortest of 15 to 17 significant digits that reads
   * back. */
  for (int digits = 15; digits < 17; digits++) {
    int n = snprintf(buf, 32, "%.*g", digits, value);
    double back;
    if (tdm__parse_double(buf, (size_t)n, &back) == 0 && back == value)
      return n;
  }
  return snprintf(buf, 32, "%.17g", value);
}

/* A number as text: the score as the model writes it (float32 for
 * XGBoost), other numbers as doubles; len 0 for a missing value. */
static int number_text(const tdm__pipeline *p, const column *col, double v,
                       char buf[32]) {
  if (isnan(v) || isinf(v)) return 0;
  if (v == 0) v = 0; /* no "-0" */
  return col->is_score ? tdm_model_format_value(p->model, v, buf)
                       : tdm__format_double(v, buf);
}

static int json_number(const tdm__pipeline *p, const column *col, double v,
                       tdm__buf *out) {
  char buf[32];
  int n = number_text(p, col, v, buf);
  if (n == 0) return tdm__buf_append(out, "null", 4);
  return tdm__buf_append(out, buf, (size_t)n);
}

/* Whether results carry reasons (explain: in the spec, with a model). */
static int explains(const tdm__pipeline *p) {
  return p->spec->explain_reasons > 0 && !p->features_only;
}

/*
 * The contributions of a result's score (num_features values, then the
 * bias), computed from the numbers the result holds, so batch, live and a
 * duplicate's answer give the same ones. *out is the caller's to free;
 * NULL (TDM_OK) when the result has no model score to explain.
 */
static int result_contribs(const tdm__pipeline *p, const tdm__result *r,
                           double **out) {
  *out = NULL;
  if (p->features_only || r->source != TDM__SOURCE_MODEL) return TDM_OK;
  size_t nf = p->info.num_features;
  double *buf = tdm__malloc((2 * nf + 1) * sizeof(double));
  if (buf == NULL) return TDM_ENOMEM;
  double *row = buf + nf + 1;
  model_row(p, r->numbers, row);
  int rc = tdm_model_predict(p->model, row, 1, TDM_PREDICT_CONTRIBS, buf);
  if (rc != TDM_OK) {
    tdm__free(buf);
    return rc;
  }
  *out = buf;
  return TDM_OK;
}

typedef struct reason {
  size_t feature;
  double magnitude;
} reason;

/* Larger contributions first; equal ones in the model's feature order, so
 * the order never depends on the sort. */
static int reason_order(const void *a, const void *b) {
  const reason *x = a, *y = b;
  if (x->magnitude != y->magnitude) return x->magnitude > y->magnitude ? -1 : 1;
  return x->feature < y->feature ? -1 : x->feature > y->feature;
}

/*
 * The "reasons" array of one result (explain: in the spec): at most
 * explain_reasons features whose contribution is non-zero and at least
 * min_contribution in absolute value, largest first, each with the
 * feature's name, its value (null when missing), its contribution as the
 * model writes it, and its direction ("up" raises the score). "null"
 * when the result has no model score.
 */
static int reasons_json(const tdm__pipeline *p, const tdm__result *r,
                        tdm__buf *out) {
  double *contribs;
  int rc = result_contribs(p, r, &contribs);
  if (rc != TDM_OK) return rc;
  if (contribs == NULL) return tdm__buf_append(out, "null", 4);
  size_t nf = p->info.num_features, num = 0;
  reason *picked = tdm__malloc((nf + 1) * sizeof *picked);
  if (picked == NULL) {
    tdm__free(contribs);
    return TDM_ENOMEM;
  }
  for (size_t f = 0; f < nf; f++) {
    double m = fabs(contribs[f]);
    if (m != 0 && m >= p->spec->explain_min_contribution)
      picked[num++] = (reason){f, m};
  }
  qsort(picked, num, sizeof *picked, reason_order);
  if (num > p->spec->explain_reasons) num = p->spec->explain_reasons;
  rc = tdm__buf_append(out, "[", 1);
  for (size_t i = 0; i < num && rc == TDM_OK; i++) {
    size_t f = picked[i].feature;
    char buf[32];
    rc = tdm__buf_append(out,
                         i ? ",{\"feature\":" : "{\"feature\":", i ? 12 : 11);
    if (rc == TDM_OK)
      rc = tdm__json_append_string(out, tdm_model_feature_name(p->model, f));
    if (rc == TDM_OK) rc = tdm__buf_append(out, ",\"value\":", 9);
    if (rc == TDM_OK) {
      column plain = {0};
      rc = json_number(p, &plain, r->numbers[p->model_inputs[f]], out);
    }
    int n = tdm_model_format_value(p->model, contribs[f], buf);
    if (rc == TDM_OK)
      rc = tdm__buf_printf(out, ",\"contribution\":%.*s,\"direction\":\"%s\"}",
                           n, buf, contribs[f] > 0 ? "up" : "down");
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "]", 1);
  tdm__free(picked);
  tdm__free(contribs);
  return rc;
}

/* "contribs": every contribution of the score (?explain=contribs), in the
 * model's feature order then the bias, as `tandem score --contribs` writes
 * them in JSON Lines. */
static int contribs_json(const tdm__pipeline *p, const tdm__result *r,
                         tdm__buf *out) {
  double *contribs;
  int rc = result_contribs(p, r, &contribs);
  if (rc != TDM_OK || contribs == NULL) return rc;
  rc = tdm__buf_append(out, ",\"contribs\":[", 13);
  for (size_t f = 0; f <= p->info.num_features && rc == TDM_OK; f++) {
    char buf[32];
    int n = tdm_model_format_value(p->model, contribs[f], buf);
    rc = tdm__buf_printf(out, "%s%.*s", f ? "," : "", n, buf);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "]", 1);
  tdm__free(contribs);
  return rc;
}

int tdm__pipeline_csv_header(const tdm__pipeline *p, tdm__buf *out) {
  int rc = TDM_OK;
  for (size_t i = 0; i < p->num_columns && rc == TDM_OK; i++) {
    if (i > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK)
      rc = tdm__csv_append_field(out, p->columns[i].name,
                                 strlen(p->columns[i].name));
  }
  if (rc == TDM_OK && explains(p)) rc = tdm__buf_append(out, ",reasons", 8);
  if (rc == TDM_OK && p->id_field != NONE)
    rc = tdm__buf_append(out, ",duplicate", 10);
  if (rc == TDM_OK) rc = tdm__buf_append(out, "\n", 1);
  return rc;
}

int tdm__pipeline_csv_row(const tdm__pipeline *p, const tdm__event *ev,
                          const tdm__result *r, tdm__buf *out) {
  int rc = TDM_OK;
  char buf[32];
  for (size_t i = 0; i < p->num_columns && rc == TDM_OK; i++) {
    const column *col = &p->columns[i];
    if (i > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc != TDM_OK) break;
    if (col->kind == COLUMN_FIELD) {
      tdm__str t = ev->fields[col->index];
      if (t.data != NULL) rc = tdm__csv_append_field(out, t.data, t.len);
    } else if (col->kind == COLUMN_NUMBER) {
      int n = number_text(p, col, r->numbers[col->index], buf);
      rc = tdm__buf_append(out, buf, (size_t)n);
    } else if (r->decision >= 0) {
      const char *then = p->spec->rules[r->decision].then;
      rc = tdm__csv_append_field(out, then, strlen(then));
    }
  }
  if (rc == TDM_OK && explains(p)) {
    /* The same JSON as the JSON Lines and live answers, as one CSV field. */
    tdm__buf reasons = {0};
    rc = reasons_json(p, r, &reasons);
    if (rc == TDM_OK) rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK)
      rc = tdm__csv_append_field(out, reasons.data, reasons.len);
    tdm__buf_free(&reasons);
  }
  if (rc == TDM_OK && p->id_field != NONE)
    rc = tdm__buf_append(out, r->duplicate ? ",1" : ",0", 2);
  if (rc == TDM_OK) rc = tdm__buf_append(out, "\n", 1);
  return rc;
}

/* "tables": the version of each looked-up table the event used, its
 * as_of and the event's distance from it in seconds (staleness, in event
 * time, so batch and live write the same). */
static int tables_json(const tdm__pipeline *p, const tdm__result *r,
                       tdm__buf *out) {
  const tdm__lookup_used *used = tdm__lookup_reader_used(r->lookup);
  int rc = tdm__buf_append(out, ",\"tables\":{", 11);
  for (size_t t = 0; t < tdm__lookups_tables(p->lookups) && rc == TDM_OK; t++) {
    if (t > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK)
      rc = tdm__json_append_string(out, tdm__lookups_table(p->lookups, t));
    if (rc != TDM_OK) break;
    if (used[t].version == 0) {
      rc = tdm__buf_printf(out, ":{\"version\":null}");
      continue;
    }
    char as_of[32], age[32];
    tdm__format_time(used[t].as_of_ms, as_of);
    tdm__format_double((double)(r->time_ms - used[t].as_of_ms) / 1000.0, age);
    rc = tdm__buf_printf(out,
                         ":{\"version\":%llu,\"as_of\":\"%s\","
                         "\"staleness_s\":%s}",
                         (unsigned long long)used[t].version, as_of, age);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "}", 1);
  return rc;
}

/* The rest of a fallback answer: where its score came from. */
static int fallback_json(const tdm__pipeline *p, const tdm__result *r,
                         tdm__buf *out) {
  if (r->source == TDM__SOURCE_DEFAULT)
    return tdm__buf_printf(out, ",\"source\":\"default\"}");
  char as_of[32], age[32];
  tdm__format_time(r->fallback_as_of_ms, as_of);
  tdm__format_double((double)(r->time_ms - r->fallback_as_of_ms) / 1000.0,
                     age);
  int rc = tdm__buf_printf(out, ",\"source\":\"batch\",\"fallback\":{\"table\":");
  if (rc == TDM_OK) rc = tdm__json_append_string(out, p->spec->fallback_table);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(out,
                         ",\"version\":%llu,\"as_of\":\"%s\","
                         "\"staleness_s\":%s}}",
                         (unsigned long long)r->fallback_version, as_of, age);
  return rc;
}

int tdm__pipeline_json(const tdm__pipeline *p, const tdm__event *ev,
                       const tdm__result *r, int explain, tdm__buf *out) {
  int rc = tdm__buf_append(out, "{", 1);
  for (size_t i = 0; i < p->num_columns && rc == TDM_OK; i++) {
    const column *col = &p->columns[i];
    if (i > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK) rc = tdm__json_append_string(out, col->name);
    if (rc == TDM_OK) rc = tdm__buf_append(out, ":", 1);
    if (rc != TDM_OK) break;
    if (col->kind == COLUMN_FIELD)
      rc = tdm__field_json(p->spec, col->index, ev->fields[col->index], out);
    else if (col->kind == COLUMN_NUMBER)
      rc = json_number(p, col, r->numbers[col->index], out);
    else if (r->decision >= 0)
      rc = tdm__json_append_string(out, p->spec->rules[r->decision].then);
    else if (r->source == TDM__SOURCE_DEFAULT && p->spec->default_decision)
      rc = tdm__json_append_string(out, p->spec->default_decision);
    else
      rc = tdm__buf_append(out, "null", 4);
  }
  if (rc == TDM_OK && !p->features_only)
    rc = tdm__buf_printf(out, "%s\"model_version\":\"%s\"",
                         p->num_columns ? "," : "", p->version);
  if (rc == TDM_OK && r->source != TDM__SOURCE_MODEL)
    return fallback_json(p, r, out);
  if (rc == TDM_OK && r->lookup != NULL && !r->duplicate)
    rc = tables_json(p, r, out);
  if (rc == TDM_OK && r->duplicate)
    rc = tdm__buf_append(out, ",\"duplicate\":true", 17);
  if (rc == TDM_OK && explains(p)) {
    rc = tdm__buf_append(out, ",\"reasons\":", 11);
    if (rc == TDM_OK) rc = reasons_json(p, r, out);
  }
  if (rc == TDM_OK && (explain & TDM__EXPLAIN_CONTRIBS) && !p->features_only)
    rc = contribs_json(p, r, out);
  if (rc == TDM_OK && (explain & TDM__EXPLAIN_FEATURES)) {
    rc = tdm__buf_append(out, ",\"features\":{", 13);
    column plain = {0};
    for (size_t i = 0; i < p->spec->num_features && rc == TDM_OK; i++) {
      if (i > 0) rc = tdm__buf_append(out, ",", 1);
      if (rc == TDM_OK) rc = tdm__json_append_string(out, p->spec->features[i].name);
      if (rc == TDM_OK) rc = tdm__buf_append(out, ":", 1);
      if (rc == TDM_OK)
        rc = json_number(p, &plain, r->numbers[p->feature_slot[i]], out);
    }
    if (rc == TDM_OK) rc = tdm__buf_append(out, "}", 1);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "}", 1);
  return rc;
}
