/*
 * format.c - results as text, the one place outputs are formatted: the CSV
 * header and rows of `tandem batch`, and the JSON object the live endpoint
 * answers (columns, model version, reasons, contributions, features).
 */
#include "pipeline_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "lookup.h"

/* ---- formatting ---- */

int tdm__field_json(const tdm__spec *spec, size_t field, tdm__str text,
                    tdm__buf *out) {
  if (text.data == NULL) return tdm__buf_append(out, "null", 4);
  if (spec->fields[field].type == TDM__FIELD_NUMBER) {
    double v;
    char buf[32];
    if (tdm__parse_double(text.data, text.len, &v) == 0 && isfinite(v)) {
      int n = tdm__format_double(v == 0 ? 0 : v, buf);
      return tdm__buf_append(out, buf, (size_t)n);
    }
    /* A missing number ("NaN") is null in a number column, not a string. */
    if (tdm__parse_double(text.data, text.len, &v) == 0 && isnan(v))
      return tdm__buf_append(out, "null", 4);
  }
  return tdm__json_append_string_n(out, text.data, text.len);
}


/* A number as text: the score as the model writes it (float32 for
 * XGBoost), other numbers as doubles; len 0 for a missing value. */
static int number_text(const tdm__pipeline *p, const column *col, double v,
                       char buf[32]) {
  if (isnan(v) || isinf(v)) return 0;
  if (v == 0) v = 0; /* no "-0" */
  if (col->is_score)
    return tdm_model_format_value(col->is_score == 2 ? p->shadow : p->model, v,
                                  buf);
  return tdm__format_double(v, buf);
}

/* The text of the rule a shadow score would have met (v: the value of
 * the shadow_decision column's slot, a rule index), or NULL for none. */
static const char *shadow_decision(const tdm__pipeline *p, double v) {
  return isnan(v) ? NULL : p->spec->rules[(size_t)v].then;
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
  tdm__pipeline_model_row(p, r->numbers, row);
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

size_t tdm__pipeline_csv_cells(const tdm__pipeline *p) {
  return p->num_columns + 2;
}

void tdm__pipeline_csv_capture(const tdm__pipeline *p, const tdm__result *r,
                               double *cells) {
  for (size_t i = 0; i < p->num_columns; i++) {
    const column *col = &p->columns[i];
    cells[i] = col->kind == COLUMN_NUMBER || col->kind == COLUMN_SHADOW_DECISION
                   ? r->numbers[col->index]
                   : 0;
  }
  cells[p->num_columns] = r->decision;
  cells[p->num_columns + 1] = r->duplicate != 0;
}

int tdm__pipeline_csv_has_reasons(const tdm__pipeline *p) {
  return explains(p);
}

int tdm__pipeline_csv_reasons(const tdm__pipeline *p, const tdm__result *r,
                              tdm__buf *out) {
  return reasons_json(p, r, out);
}

int tdm__pipeline_csv_row(const tdm__pipeline *p, const tdm__str *fields,
                          const double *cells, const tdm__str *reasons,
                          tdm__buf *out) {
  int rc = TDM_OK;
  char buf[32];
  for (size_t i = 0; i < p->num_columns && rc == TDM_OK; i++) {
    const column *col = &p->columns[i];
    if (i > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc != TDM_OK) break;
    if (col->kind == COLUMN_FIELD) {
      tdm__str t = fields[col->index];
      if (t.data != NULL) rc = tdm__csv_append_field(out, t.data, t.len);
    } else if (col->kind == COLUMN_NUMBER) {
      int n = number_text(p, col, cells[i], buf);
      rc = tdm__buf_append(out, buf, (size_t)n);
    } else if (col->kind == COLUMN_SHADOW_DECISION) {
      const char *then = shadow_decision(p, cells[i]);
      if (then != NULL) rc = tdm__csv_append_field(out, then, strlen(then));
    } else if (cells[p->num_columns] >= 0) {
      const char *then = p->spec->rules[(size_t)cells[p->num_columns]].then;
      rc = tdm__csv_append_field(out, then, strlen(then));
    }
  }
  if (rc == TDM_OK && explains(p)) {
    /* The same JSON as the JSON Lines and live answers, as one CSV field. */
    rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK)
      rc = tdm__csv_append_field(out, reasons->data, reasons->len);
  }
  if (rc == TDM_OK && p->id_field != NONE)
    rc = tdm__buf_append(out, cells[p->num_columns + 1] != 0 ? ",1" : ",0", 2);
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
    else if (col->kind == COLUMN_SHADOW_DECISION)
      rc = shadow_decision(p, r->numbers[col->index])
               ? tdm__json_append_string(
                     out, shadow_decision(p, r->numbers[col->index]))
               : tdm__buf_append(out, "null", 4);
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

int tdm__pipeline_decision_record(const tdm__pipeline *p, const tdm__event *ev,
                                  const tdm__result *r, int answer_explain,
                                  int log_explain, const char *answer,
                                  size_t len, tdm__buf *b) {
  b->len = 0;
  int rc = answer_explain == log_explain
               ? tdm__buf_append(b, answer, len)
               : tdm__pipeline_json(p, ev, r, log_explain, b);
  if (rc != TDM_OK) return rc;
  b->len--; /* the answer's closing brace */
  rc = tdm__buf_append(b, ",\"event_id\":", 12);
  if (rc == TDM_OK)
    rc = r->id.data ? tdm__json_append_string_n(b, r->id.data, r->id.len)
                    : tdm__buf_append(b, "null", 4);
  if (rc == TDM_OK) rc = tdm__buf_append(b, ",\"entity\":", 10);
  if (rc == TDM_OK) rc = tdm__json_append_string_n(b, r->entity.data, r->entity.len);
  /* Appended piece by piece, not with tdm__buf_printf: this runs once
   * per live answer, and printf's parsing (twice: once to measure) cost
   * more than the record's bytes (bench/README.md, issue 25). Both times
   * are 24 bytes ("2026-03-01T14:03:07.123Z"). */
  char event_time[32], arrived[32];
  tdm__format_time(r->time_ms, event_time);
  tdm__format_time(tdm__now_ms(), arrived);
  static const char model[] = ",\"source\":\"model\"";
  static const char fresh[] = ",\"duplicate\":false";
  if (rc == TDM_OK) rc = tdm__buf_append(b, ",\"event_time\":\"", 15);
  if (rc == TDM_OK) rc = tdm__buf_append(b, event_time, 24);
  if (rc == TDM_OK) rc = tdm__buf_append(b, "\"", 1);
  if (rc == TDM_OK && r->source == TDM__SOURCE_MODEL)
    rc = tdm__buf_append(b, model, sizeof model - 1);
  if (rc == TDM_OK && !r->duplicate)
    rc = tdm__buf_append(b, fresh, sizeof fresh - 1);
  if (rc == TDM_OK) rc = tdm__buf_append(b, ",\"arrived_at\":\"", 15);
  if (rc == TDM_OK) rc = tdm__buf_append(b, arrived, 24);
  if (rc == TDM_OK) rc = tdm__buf_append(b, "\"", 1);
  return rc;
}
