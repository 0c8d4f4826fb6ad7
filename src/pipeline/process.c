/*
 * process.c - one event through a compiled pipeline: read its fields into
 * slots, run the features against its entity's state, score, decide, and
 * remember its id. tdm__pipeline_process is the one function every runner
 * calls per event; the deadline fallback and the rejected event's answer
 * live here too.
 */
#include "pipeline_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "lookup.h"

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
        default: /* a category: its index, or missing when unknown */
          for (size_t k = 0; k < f->num_values; k++)
            if (f->value_lens[k] == text.len &&
                memcmp(f->values[k], text.data, text.len) == 0) {
              value = (double)k;
              break;
            }
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
  if (tdm__seen_id_block(p, s, id->data, id->len) != TDM_OK) {
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
void tdm__pipeline_model_row(const tdm__pipeline *p, const double *numbers,
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
  if (map->load != NULL &&
      tdm__state_map_lookup_entry(map, &r->entity) == NULL) {
    rc = map->load(map->load_ctx, map, r->entity, err);
    if (rc != TDM_OK && rc != TDM_ENOTFOUND) return rc;
  }
  if (tdm__state_map_find_entry(map, &r->entity, &e) != TDM_OK)
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
  tdm__pipeline_model_row(p, numbers, r->row);
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
