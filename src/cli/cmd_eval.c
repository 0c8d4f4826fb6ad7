/*
 * cmd_eval.c - `tandem eval`: reads predictions (what `tandem score` or
 * `tandem batch` wrote, CSV or JSON Lines) and labels, matches their rows
 * by position or by an id column, infers or checks the task, and prints the
 * metrics of src/eval/metrics.c as a table or as one JSON object. Every
 * input error names the file and line; the metrics themselves never see a
 * file.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/arena.h"
#include "../core/core.h"
#include "../store/registry.h"
#include "../core/json.h"
#include "../eval/metrics.h"
#include "../io/csv.h"
#include "../pipeline/pipeline.h"
#include "cli.h"

static const char eval_help[] =
    "usage: tandem eval --pred P --labels L [options]\n"
    "       tandem eval --record LIVE_RUN --labels L [options]\n"
    "       tandem eval --pred P --label-col NAME [options]\n"
    "\n"
    "Scores predictions against labels with the metrics of scikit-learn\n"
    "1.2 (same definitions and edge cases; values agree to about 1e-15\n"
    "relative, the difference being only the order of float summation).\n"
    "Files are CSV with a header, or JSON Lines (.jsonl, .ndjson, .json).\n"
    "\n"
    "options:\n"
    "  --pred P          predictions: column 'score', or score_0..score_{k-1}\n"
    "                    (one per class) for multiclass probabilities\n"
    "  --labels L        labels file, with the label column\n"
    "  --label-col NAME  the label column (default 'label'); without\n"
    "                    --labels it is read from P itself\n"
    "  --pred-col NAME   the prediction column NAME, or NAME_0..NAME_{k-1}\n"
    "                    (default 'score')\n"
    "  --id-col NAME     match rows by this column, present in both files;\n"
    "                    without it rows are matched by position\n"
    "  --task T          binary, multiclass or regression. Inferred when\n"
    "                    absent: several score columns: multiclass; labels "
    "all\n"
    "                    0 or 1: binary; otherwise regression\n"
    "  --threshold T     binary: where a score counts as positive (score >= "
    "T;\n"
    "                    repeatable; default 0.5)\n"
    "  --bins N          binary: calibration bins of equal width on [0, 1]\n"
    "                    (default 10)\n"
    "  --json            print one JSON object instead of a table\n"
    "  --record RUN      store the metrics (the JSON form) with run RUN of\n"
    "                    the run registry (an id or unique prefix from\n"
    "                    `tandem runs`), where runs, compare and report\n"
    "                    show them\n"
    "  --registry P      the registry (default: as for tandem score)\n"
    "  --live            P is a decision log (tandem serve --decision-log;\n"
    "                    implied when --record names a live run, whose\n"
    "                    segment is then P when --pred is left out): its\n"
    "                    decisions (not duplicate answers) are joined by\n"
    "                    --id-col (default event_id) with the labels that\n"
    "                    have come; decisions without a label and labels\n"
    "                    of events not in the log are counted, and the\n"
    "                    metrics are split by source (model, batch, default)\n"
    "  --help, -h        show this help\n"
    "\n"
    "binary: roc_auc (roc_auc_score: trapezoids over distinct scores, ties\n"
    "  as one point), average_precision (average_precision_score: the step\n"
    "  sum of (R_n - R_n-1) P_n, no interpolation), log_loss (probabilities\n"
    "  clipped to [eps, 1-eps], eps = 2^-52), brier, ks (max |TPR - FPR|),\n"
    "  per threshold the confusion matrix, precision, recall, f1, accuracy\n"
    "  (an empty denominator gives 0, as sklearn's zero_division), and the\n"
    "  calibration curve (calibration_curve, strategy 'uniform'). roc_auc\n"
    "  and ks are null with one class only; average_precision with no\n"
    "  positive; log_loss, brier and calibration when a score is outside\n"
    "  [0, 1].\n"
    "multiclass: accuracy of the argmax (ties: lowest index), log_loss,\n"
    "  macro_f1 over the classes seen in labels or predictions, and per class\n"
    "  precision, recall, f1.\n"
    "regression: rmse, mse, mae, mape (|p - y| / max(|y|, eps)), r2.\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n";

enum { TASK_AUTO, TASK_BINARY, TASK_MULTICLASS, TASK_REGRESSION };
static const char *const task_names[] = {"auto", "binary", "multiclass",
                                         "regression"};

#define MAX_THRESHOLDS 256
#define MAX_CLASSES 4096

/* ---- reading CSV or JSON Lines by column name ---- */

/* A file read row by row. Columns are the CSV header's names, or the
 * members of the first JSON object. */
typedef struct table {
  const char *path;
  int jsonl;
  FILE *fp;
  tdm__csv *csv;
  char **names;
  size_t num_names;
  size_t line; /* the current record's line */
  tdm__csv_record record;
  tdm__json_doc doc; /* JSON Lines: the current line's document */
  int pending;       /* the first JSON line is parsed and not yet returned */
} table;

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void table_close(table *t) {
  if (t->doc.root != NULL) tdm__json_doc_free(&t->doc);
  tdm__csv_close(t->csv);
  if (t->fp) fclose(t->fp);
  for (size_t i = 0; i < t->num_names; i++) tdm__free(t->names[i]);
  tdm__free(t->names);
  memset(t, 0, sizeof *t);
}

static int add_name(table *t, const char *name, size_t len, tdm_error *err) {
  char **grown = tdm__realloc(t->names, (t->num_names + 1) * sizeof *grown);
  if (grown == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  t->names = grown;
  if ((t->names[t->num_names] = tdm__strndup(name, len)) == NULL)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  t->num_names++;
  return TDM_OK;
}

/* The next non-empty JSON line, parsed into t->doc; it must be an object. */
static int next_json_line(table *t, tdm_error *err) {
  const char *text;
  size_t len, line;
  int rc;
  do {
    rc = tdm__csv_next_line(t->csv, &text, &len, &line, err);
    if (rc <= 0) return rc;
  } while (len == 0 || (len == 1 && text[0] == '\r'));
  if (t->doc.root != NULL) tdm__json_doc_free(&t->doc);
  t->line = line;
  rc = tdm__json_parse_at(&t->doc, text, len, t->path, line, 0, err);
  if (rc != TDM_OK) return rc;
  if (t->doc.root->type != TDM__JSON_OBJECT)
    return tdm__fail(err, TDM_EPARSE,
                     "%s:%zu: each line must be a JSON object, not %s", t->path,
                     line, tdm__json_type_name(t->doc.root));
  return 1;
}

static int table_open(table *t, const char *path, tdm_error *err) {
  memset(t, 0, sizeof *t);
  t->path = path;
  t->jsonl = ends_with(path, ".jsonl") || ends_with(path, ".ndjson") ||
             ends_with(path, ".json");
  t->fp = fopen(path, "rb");
  if (t->fp == NULL)
    return tdm__fail(err, errno == ENOENT ? TDM_ENOTFOUND : TDM_EIO,
                     "%s: cannot open: %s", path, strerror(errno));
  if (tdm__csv_open(&t->csv, t->fp, path) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  int rc;
  if (t->jsonl) {
    rc = next_json_line(t, err);
    if (rc < 0) return rc;
    if (rc == 0)
      return tdm__fail(err, TDM_EPARSE, "%s: the file is empty", path);
    t->pending = 1;
    for (size_t i = 0; i < t->doc.root->count; i++) {
      const char *key = t->doc.root->keys[i];
      if ((rc = add_name(t, key, strlen(key), err)) != TDM_OK) return rc;
    }
    return TDM_OK;
  }
  do {
    rc = tdm__csv_next(t->csv, &t->record, err);
  } while (rc == 1 && t->record.blank);
  if (rc < 0) return rc;
  if (rc == 0)
    return tdm__fail(err, TDM_EPARSE,
                     "%s: the file is empty (expected a header line naming "
                     "the columns)",
                     path);
  t->line = t->record.line;
  for (size_t c = 0; c < t->record.count; c++)
    if ((rc = add_name(t, t->record.fields[c].text, t->record.fields[c].len,
                       err)) != TDM_OK)
      return rc;
  return TDM_OK;
}

/* The index of column `name`, or -1. */
static long table_column(const table *t, const char *name) {
  for (size_t i = 0; i < t->num_names; i++)
    if (strcmp(t->names[i], name) == 0) return (long)i;
  return -1;
}

/* Moves to the next row: 1, 0 at the end, or a negative status. */
static int table_next(table *t, tdm_error *err) {
  if (t->jsonl) {
    if (t->pending) {
      t->pending = 0;
      return 1;
    }
    return next_json_line(t, err);
  }
  /* Blank lines are skipped, except in a one-column file, where a blank
   * line before more rows is a missing value (an error naming it); blank
   * lines at the end are ignored there too. */
  int rc;
  size_t blank_line = 0;
  for (;;) {
    rc = tdm__csv_next(t->csv, &t->record, err);
    if (rc != 1 || !t->record.blank) break;
    if (blank_line == 0) blank_line = t->record.line;
  }
  if (rc <= 0) return rc;
  if (blank_line != 0 && t->num_names == 1)
    return tdm__fail(err, TDM_EPARSE,
                     "%s:%zu:1: %s \"%s\" is missing (a blank line)", t->path,
                     blank_line, "the value of", t->names[0]);
  t->line = t->record.line;
  if (t->record.count != t->num_names)
    return tdm__fail(err, TDM_EPARSE,
                     "%s:%zu: %zu fields, but the header has %zu", t->path,
                     t->line, t->record.count, t->num_names);
  return 1;
}

/* Where column `column` of the current row is, for messages:
 * "file:line:col" (CSV) or "file:line" (JSON Lines). Only formatted when a
 * message needs it: it would otherwise cost more than parsing the row. */
static const char *table_place(const table *t, size_t column, char *buf,
                               size_t size) {
  if (t->jsonl)
    snprintf(buf, size, "%s:%zu", t->path, t->line);
  else
    snprintf(buf, size, "%s:%zu:%zu", t->path, t->line,
             t->record.fields[column].column);
  return buf;
}

/* The current row's text in column `column` (empty for JSON null). */
static int table_field(table *t, size_t column, const char **text, size_t *len,
                       tdm_error *err) {
  if (!t->jsonl) {
    const tdm__csv_field *f = &t->record.fields[column];
    *text = f->text;
    *len = f->len;
    return TDM_OK;
  }
  char place[600];
  const tdm__json *v = tdm__json_get(t->doc.root, t->names[column]);
  if (v == NULL)
    return tdm__fail(err, TDM_EPARSE, "%s: no member \"%s\"",
                     table_place(t, column, place, sizeof place),
                     t->names[column]);
  switch (v->type) {
    case TDM__JSON_NULL:
      *text = "";
      *len = 0;
      break;
    case TDM__JSON_BOOL:
      *text = v->boolean ? "1" : "0";
      *len = 1;
      break;
    case TDM__JSON_NUMBER:
      *text = v->text;
      *len = v->text_len;
      break;
    case TDM__JSON_STRING:
      *text = v->text;
      *len = v->count;
      break;
    default:
      return tdm__fail(err, TDM_EPARSE,
                       "%s: \"%s\" must be a number, a string or null, not %s",
                       table_place(t, column, place, sizeof place),
                       t->names[column], tdm__json_type_name(v));
  }
  return TDM_OK;
}

/* A finite number from column `column` of the current row; `what` says
 * which value it is in messages. */
static int table_number(table *t, size_t column, const char *what, double *out,
                        tdm_error *err) {
  const char *text;
  size_t len;
  char place[600];
  int rc = table_field(t, column, &text, &len, err);
  if (rc != TDM_OK) return rc;
  if (tdm__parse_cell_number(text, len, out) != 0)
    return tdm__fail(err, TDM_EPARSE, "%s: %s \"%s\" is not a number: \"%.*s\"",
                     table_place(t, column, place, sizeof place), what,
                     t->names[column], len > 40 ? 40 : (int)len, text);
  if (isnan(*out))
    return tdm__fail(err, TDM_EPARSE, "%s: %s \"%s\" is missing or NaN",
                     table_place(t, column, place, sizeof place), what,
                     t->names[column]);
  if (!isfinite(*out))
    return tdm__fail(err, TDM_EPARSE, "%s: %s \"%s\" is not finite (%.*s)",
                     table_place(t, column, place, sizeof place), what,
                     t->names[column], len > 40 ? 40 : (int)len, text);
  return TDM_OK;
}

/* ---- the rows read from one file ---- */

typedef struct rows {
  double *values; /* n x width */
  size_t width;
  size_t *lines;
  char **ids; /* in the arena; NULL without --id-col */
  size_t n, cap;
} rows;

static int rows_grow(rows *r, int with_ids, tdm_error *err) {
  if (r->n < r->cap) return TDM_OK;
  size_t cap = r->cap ? r->cap * 2 : 1024;
  double *values = tdm__realloc(r->values, cap * r->width * sizeof *values);
  if (values != NULL) r->values = values;
  size_t *lines = tdm__realloc(r->lines, cap * sizeof *lines);
  if (lines != NULL) r->lines = lines;
  char **ids = with_ids ? tdm__realloc(r->ids, cap * sizeof *ids) : NULL;
  if (ids != NULL) r->ids = ids;
  if (values == NULL || lines == NULL || (with_ids && ids == NULL))
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  r->cap = cap;
  return TDM_OK;
}

static void rows_free(rows *r) {
  tdm__free(r->values);
  tdm__free(r->lines);
  tdm__free(r->ids);
}

/* Reads every row of t: the numbers in `columns` (what[i] names each in
 * messages) and, when id_column >= 0, the id as text. */
static int read_rows(table *t, const size_t *columns, const char *const *what,
                     size_t width, long id_column, tdm__arena *arena, rows *r,
                     tdm_error *err) {
  r->width = width;
  int rc;
  while ((rc = table_next(t, err)) == 1) {
    if ((rc = rows_grow(r, id_column >= 0, err)) != TDM_OK) return rc;
    for (size_t c = 0; c < width; c++) {
      rc = table_number(t, columns[c], what[c], &r->values[r->n * width + c],
                        err);
      if (rc != TDM_OK) return rc;
    }
    if (id_column >= 0) {
      const char *text;
      size_t len;
      char place[600];
      rc = table_field(t, (size_t)id_column, &text, &len, err);
      if (rc != TDM_OK) return rc;
      if (len == 0)
        return tdm__fail(err, TDM_EPARSE, "%s: the id \"%s\" is empty",
                         table_place(t, (size_t)id_column, place, sizeof place),
                         t->names[id_column]);
      if ((r->ids[r->n] = tdm__arena_strndup(arena, text, len)) == NULL)
        return tdm__fail(err, TDM_ENOMEM, "out of memory");
    }
    r->lines[r->n++] = t->line;
  }
  if (rc < 0) return rc;
  if (r->n == 0)
    return tdm__fail(err, TDM_EINVAL, "%s: no rows to evaluate", t->path);
  return TDM_OK;
}

/* ---- matching rows by id ---- */

static char **sort_ids; /* qsort has no context argument */

static int by_id(const void *a, const void *b) {
  return strcmp(sort_ids[*(const size_t *)a], sort_ids[*(const size_t *)b]);
}

/* Indices of r's rows in id order; fails on a repeated id. */
static int sorted_by_id(const rows *r, const char *path, size_t **out,
                        tdm_error *err) {
  size_t *order = tdm__malloc(r->n * sizeof *order);
  if (order == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t i = 0; i < r->n; i++) order[i] = i;
  sort_ids = r->ids;
  qsort(order, r->n, sizeof *order, by_id);
  for (size_t i = 1; i < r->n; i++) {
    if (strcmp(r->ids[order[i - 1]], r->ids[order[i]]) == 0) {
      size_t a = r->lines[order[i - 1]], b = r->lines[order[i]];
      int rc = tdm__fail(err, TDM_EPARSE,
                         "%s:%zu: id \"%s\" appears again (first on line "
                         "%zu)",
                         path, a > b ? a : b, r->ids[order[i]], a < b ? a : b);
      tdm__free(order);
      return rc;
    }
  }
  *out = order;
  return TDM_OK;
}

/* For each prediction row, the index of the label row with the same id.
 * Every id must be in both files exactly once. */
static int match_ids(const rows *pred, const char *pred_path,
                     const rows *labels, const char *labels_path,
                     size_t *label_of, tdm_error *err) {
  size_t *p = NULL, *l = NULL;
  int rc = sorted_by_id(pred, pred_path, &p, err);
  if (rc == TDM_OK) rc = sorted_by_id(labels, labels_path, &l, err);
  size_t i = 0, j = 0;
  while (rc == TDM_OK && (i < pred->n || j < labels->n)) {
    int c = i == pred->n     ? 1
            : j == labels->n ? -1
                             : strcmp(pred->ids[p[i]], labels->ids[l[j]]);
    if (c < 0)
      rc =
          tdm__fail(err, TDM_EPARSE, "%s:%zu: id \"%s\" has no label in %s",
                    pred_path, pred->lines[p[i]], pred->ids[p[i]], labels_path);
    else if (c > 0)
      rc = tdm__fail(err, TDM_EPARSE,
                     "%s:%zu: id \"%s\" has no prediction in %s", labels_path,
                     labels->lines[l[j]], labels->ids[l[j]], pred_path);
    else
      label_of[p[i++]] = l[j++];
  }
  tdm__free(p);
  tdm__free(l);
  return rc;
}

/* ---- output ---- */

static int put_number(tdm__buf *b, double v) {
  if (!isfinite(v)) return tdm__buf_append(b, "null", 4);
  char text[32];
  int n = tdm__format_double(v, text);
  return tdm__buf_append(b, text, (size_t)n);
}

/* "name":value, with a comma before all but the first member. */
static int put_key(tdm__buf *b, const char *key) {
  int rc = TDM_OK;
  if (b->len > 0 && b->data[b->len - 1] != '{' && b->data[b->len - 1] != '[')
    rc = tdm__buf_append(b, ",", 1);
  if (rc == TDM_OK) rc = tdm__json_append_string(b, key);
  if (rc == TDM_OK) rc = tdm__buf_append(b, ":", 1);
  return rc;
}

static int put_num(tdm__buf *b, const char *key, double v) {
  int rc = put_key(b, key);
  return rc == TDM_OK ? put_number(b, v) : rc;
}

static int put_count(tdm__buf *b, const char *key, size_t v) {
  int rc = put_key(b, key);
  return rc == TDM_OK ? tdm__buf_printf(b, "%zu", v) : rc;
}

static int put_str(tdm__buf *b, const char *key, const char *v) {
  int rc = put_key(b, key);
  if (rc != TDM_OK) return rc;
  return v ? tdm__json_append_string(b, v) : tdm__buf_append(b, "null", 4);
}

/* A number for the table: shortest round-trip text, or "null". */
static const char *num_text(double v, char buf[32]) {
  if (!isfinite(v)) return "null";
  tdm__format_double(v, buf);
  return buf;
}

/* Notes say where a value is undefined or set by convention. */
typedef struct notes {
  char **items;
  size_t count;
} notes;

static int note(notes *ns, tdm_error *err, const char *fmt, ...)
    TDM__PRINTF(3, 4);
static int note(notes *ns, tdm_error *err, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  char **grown = tdm__realloc(ns->items, (ns->count + 1) * sizeof *grown);
  if (grown == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  ns->items = grown;
  if ((ns->items[ns->count] = tdm__strdup(text)) == NULL)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  ns->count++;
  return TDM_OK;
}

static void notes_free(notes *ns) {
  for (size_t i = 0; i < ns->count; i++) tdm__free(ns->items[i]);
  tdm__free(ns->items);
}

/* What was evaluated, for the header of either output. */
typedef struct source {
  const char *pred_path, *labels_path, *label_column, *id_column;
  const char *const *score_columns;
  size_t num_score_columns;
} source;

static int put_source(tdm__buf *b, const char *task, size_t count,
                      const source *s) {
  int rc = put_str(b, "task", task);
  if (rc == TDM_OK) rc = put_count(b, "count", count);
  if (rc == TDM_OK) rc = put_str(b, "predictions", s->pred_path);
  if (rc == TDM_OK) rc = put_str(b, "labels", s->labels_path);
  if (rc == TDM_OK) rc = put_str(b, "label_column", s->label_column);
  if (rc == TDM_OK) rc = put_key(b, "score_columns");
  if (rc == TDM_OK) rc = tdm__buf_append(b, "[", 1);
  for (size_t i = 0; rc == TDM_OK && i < s->num_score_columns; i++) {
    if (i > 0) rc = tdm__buf_append(b, ",", 1);
    if (rc == TDM_OK) rc = tdm__json_append_string(b, s->score_columns[i]);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "]", 1);
  if (rc == TDM_OK)
    rc = put_str(b, "matched_by", s->id_column ? "id" : "position");
  if (rc == TDM_OK && s->id_column) rc = put_str(b, "id_column", s->id_column);
  if (rc == TDM_OK) rc = put_str(b, "reference", "scikit-learn 1.2");
  return rc;
}

static int put_notes(tdm__buf *b, const notes *ns) {
  int rc = put_key(b, "notes");
  if (rc == TDM_OK) rc = tdm__buf_append(b, "[", 1);
  for (size_t i = 0; rc == TDM_OK && i < ns->count; i++) {
    if (i > 0) rc = tdm__buf_append(b, ",", 1);
    if (rc == TDM_OK) rc = tdm__json_append_string(b, ns->items[i]);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "]", 1);
  return rc;
}

static void print_header(FILE *out, const char *task, size_t count,
                         const source *s) {
  fprintf(out, "task         %s, %zu rows (%s", task, count, s->pred_path);
  if (s->labels_path) fprintf(out, " with labels from %s", s->labels_path);
  fprintf(out, ", matched by %s)\n", s->id_column ? s->id_column : "position");
}

static void print_notes(FILE *out, const notes *ns) {
  for (size_t i = 0; i < ns->count; i++)
    fprintf(out, "note: %s\n", ns->items[i]);
}

static int binary_notes(const tdm__eval_binary_result *r, notes *ns,
                        tdm_error *err) {
  int rc = TDM_OK;
  if (isnan(r->roc_auc))
    rc = note(ns, err,
              "roc_auc and ks are undefined: the labels hold only one class "
              "(sklearn's roc_auc_score raises ValueError)");
  if (rc == TDM_OK && isnan(r->average_precision))
    rc = note(ns, err,
              "average_precision is undefined: no positive label (sklearn "
              "returns 0 with a warning)");
  if (rc == TDM_OK && !r->probabilities)
    rc = note(ns, err,
              "log_loss, brier and calibration are left out: some scores are "
              "outside [0, 1], so they are not probabilities");
  for (size_t t = 0; rc == TDM_OK && t < r->num_thresholds; t++) {
    const tdm__eval_threshold *m = &r->thresholds[t];
    char buf[32];
    num_text(m->threshold, buf);
    if (m->precision_undefined)
      rc = note(ns, err,
                "threshold %s: no row is predicted positive; precision is "
                "reported as 0 (sklearn's zero_division)",
                buf);
    if (rc == TDM_OK && m->recall_undefined)
      rc = note(ns, err,
                "threshold %s: no positive label; recall is reported as 0 "
                "(sklearn's zero_division)",
                buf);
    if (rc == TDM_OK && m->f1_undefined)
      rc = note(ns, err,
                "threshold %s: precision and recall are both 0; f1 is "
                "reported as 0",
                buf);
  }
  return rc;
}

static int binary_json(const tdm__eval_binary_result *r, const source *s,
                       const notes *ns, tdm__buf *b) {
  int rc = tdm__buf_append(b, "{", 1);
  if (rc == TDM_OK) rc = put_source(b, "binary", r->count, s);
  if (rc == TDM_OK) rc = put_count(b, "positives", r->positives);
  if (rc == TDM_OK) rc = put_count(b, "negatives", r->negatives);
  if (rc == TDM_OK) rc = put_num(b, "base_rate", r->base_rate);
  if (rc == TDM_OK) rc = put_num(b, "roc_auc", r->roc_auc);
  if (rc == TDM_OK) rc = put_num(b, "average_precision", r->average_precision);
  if (rc == TDM_OK) rc = put_num(b, "log_loss", r->log_loss);
  if (rc == TDM_OK) rc = put_num(b, "brier", r->brier);
  if (rc == TDM_OK) rc = put_num(b, "ks", r->ks);
  if (rc == TDM_OK) rc = put_key(b, "thresholds");
  if (rc == TDM_OK) rc = tdm__buf_append(b, "[", 1);
  for (size_t t = 0; rc == TDM_OK && t < r->num_thresholds; t++) {
    const tdm__eval_threshold *m = &r->thresholds[t];
    if (t > 0) rc = tdm__buf_append(b, ",", 1);
    if (rc == TDM_OK) rc = tdm__buf_append(b, "{", 1);
    if (rc == TDM_OK) rc = put_num(b, "threshold", m->threshold);
    if (rc == TDM_OK) rc = put_count(b, "tn", m->tn);
    if (rc == TDM_OK) rc = put_count(b, "fp", m->fp);
    if (rc == TDM_OK) rc = put_count(b, "fn", m->fn);
    if (rc == TDM_OK) rc = put_count(b, "tp", m->tp);
    if (rc == TDM_OK) rc = put_num(b, "precision", m->precision);
    if (rc == TDM_OK) rc = put_num(b, "recall", m->recall);
    if (rc == TDM_OK) rc = put_num(b, "f1", m->f1);
    if (rc == TDM_OK) rc = put_num(b, "accuracy", m->accuracy);
    if (rc == TDM_OK) rc = tdm__buf_append(b, "}", 1);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "]", 1);
  if (rc == TDM_OK) rc = put_key(b, "calibration");
  if (rc == TDM_OK && !r->probabilities) rc = tdm__buf_append(b, "null", 4);
  if (rc == TDM_OK && r->probabilities) {
    rc = tdm__buf_append(b, "{", 1);
    if (rc == TDM_OK) rc = put_str(b, "strategy", "uniform");
    if (rc == TDM_OK) rc = put_count(b, "bins", r->bins_requested);
    if (rc == TDM_OK) rc = put_key(b, "curve");
    if (rc == TDM_OK) rc = tdm__buf_append(b, "[", 1);
    for (size_t i = 0; rc == TDM_OK && i < r->num_bins; i++) {
      const tdm__eval_bin *bin = &r->bins[i];
      if (i > 0) rc = tdm__buf_append(b, ",", 1);
      if (rc == TDM_OK) rc = tdm__buf_append(b, "{", 1);
      if (rc == TDM_OK) rc = put_count(b, "bin", bin->index);
      if (rc == TDM_OK) rc = put_num(b, "lower", bin->lower);
      if (rc == TDM_OK) rc = put_num(b, "upper", bin->upper);
      if (rc == TDM_OK) rc = put_count(b, "count", bin->count);
      if (rc == TDM_OK) rc = put_num(b, "mean_predicted", bin->mean_predicted);
      if (rc == TDM_OK)
        rc = put_num(b, "fraction_positive", bin->fraction_positive);
      if (rc == TDM_OK) rc = tdm__buf_append(b, "}", 1);
    }
    if (rc == TDM_OK) rc = tdm__buf_append(b, "]}", 2);
  }
  if (rc == TDM_OK) rc = put_notes(b, ns);
  if (rc == TDM_OK) rc = tdm__buf_append(b, "}\n", 2);
  return rc;
}

static void binary_table(const tdm__eval_binary_result *r, const source *s,
                         const notes *ns) {
  char a[32], b2[32], c[32], d[32], e[32];
  print_header(stdout, "binary", r->count, s);
  printf("positives    %zu (base rate %s), negatives %zu\n", r->positives,
         num_text(r->base_rate, a), r->negatives);
  printf("roc_auc      %s\n", num_text(r->roc_auc, a));
  printf("avg_prec     %s  (step sum, not trapezoids)\n",
         num_text(r->average_precision, a));
  printf("log_loss     %s\n", num_text(r->log_loss, a));
  printf("brier        %s\n", num_text(r->brier, a));
  printf("ks           %s\n", num_text(r->ks, a));
  printf("\n%-12s %10s %10s %10s %10s %-22s %-22s %-22s %-22s\n", "threshold",
         "tn", "fp", "fn", "tp", "precision", "recall", "f1", "accuracy");
  for (size_t t = 0; t < r->num_thresholds; t++) {
    const tdm__eval_threshold *m = &r->thresholds[t];
    printf("%-12s %10zu %10zu %10zu %10zu %-22s %-22s %-22s %-22s\n",
           num_text(m->threshold, a), m->tn, m->fp, m->fn, m->tp,
           num_text(m->precision, b2), num_text(m->recall, c),
           num_text(m->f1, d), num_text(m->accuracy, e));
  }
  if (r->probabilities) {
    printf("\ncalibration (%zu uniform bins; empty bins left out)\n",
           r->bins_requested);
    printf("%-24s %10s %-22s %-22s\n", "bin", "count", "mean_predicted",
           "fraction_positive");
    for (size_t i = 0; i < r->num_bins; i++) {
      const tdm__eval_bin *bin = &r->bins[i];
      char range[80];
      /* Edges rounded for reading; --json gives them exactly. */
      snprintf(range, sizeof range, "[%.6g, %.6g]", bin->lower, bin->upper);
      printf("%-24s %10zu %-22s %-22s\n", range, bin->count,
             num_text(bin->mean_predicted, c),
             num_text(bin->fraction_positive, d));
    }
  }
  print_notes(stdout, ns);
}

static int multiclass_json(const tdm__eval_multiclass_result *r,
                           const source *s, const notes *ns, tdm__buf *b) {
  int rc = tdm__buf_append(b, "{", 1);
  if (rc == TDM_OK) rc = put_source(b, "multiclass", r->count, s);
  if (rc == TDM_OK) rc = put_count(b, "classes", r->classes);
  if (rc == TDM_OK) rc = put_num(b, "accuracy", r->accuracy);
  if (rc == TDM_OK) rc = put_num(b, "log_loss", r->log_loss);
  if (rc == TDM_OK) rc = put_num(b, "macro_f1", r->macro_f1);
  if (rc == TDM_OK) rc = put_count(b, "macro_classes", r->macro_classes);
  if (rc == TDM_OK) rc = put_key(b, "per_class");
  if (rc == TDM_OK) rc = tdm__buf_append(b, "[", 1);
  for (size_t j = 0; rc == TDM_OK && j < r->classes; j++) {
    const tdm__eval_class *c = &r->per_class[j];
    if (j > 0) rc = tdm__buf_append(b, ",", 1);
    if (rc == TDM_OK) rc = tdm__buf_append(b, "{", 1);
    if (rc == TDM_OK) rc = put_count(b, "class", j);
    if (rc == TDM_OK) rc = put_count(b, "support", c->support);
    if (rc == TDM_OK) rc = put_count(b, "predicted", c->predicted);
    if (rc == TDM_OK) rc = put_count(b, "true_positives", c->true_positives);
    if (rc == TDM_OK) rc = put_num(b, "precision", c->precision);
    if (rc == TDM_OK) rc = put_num(b, "recall", c->recall);
    if (rc == TDM_OK) rc = put_num(b, "f1", c->f1);
    if (rc == TDM_OK) rc = tdm__buf_append(b, "}", 1);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "]", 1);
  if (rc == TDM_OK) rc = put_notes(b, ns);
  if (rc == TDM_OK) rc = tdm__buf_append(b, "}\n", 2);
  return rc;
}

static void multiclass_table(const tdm__eval_multiclass_result *r,
                             const source *s, const notes *ns) {
  char a[32], b[32], c[32];
  print_header(stdout, "multiclass", r->count, s);
  printf("classes      %zu\n", r->classes);
  printf("accuracy     %s\n", num_text(r->accuracy, a));
  printf("log_loss     %s\n", num_text(r->log_loss, a));
  printf("macro_f1     %s  (over %zu classes)\n", num_text(r->macro_f1, a),
         r->macro_classes);
  printf("\n%-8s %10s %10s %-22s %-22s %-22s\n", "class", "support",
         "predicted", "precision", "recall", "f1");
  for (size_t j = 0; j < r->classes; j++) {
    const tdm__eval_class *k = &r->per_class[j];
    printf("%-8zu %10zu %10zu %-22s %-22s %-22s\n", j, k->support, k->predicted,
           num_text(k->precision, a), num_text(k->recall, b),
           num_text(k->f1, c));
  }
  print_notes(stdout, ns);
}

static int regression_json(const tdm__eval_regression_result *r,
                           const source *s, const notes *ns, tdm__buf *b) {
  int rc = tdm__buf_append(b, "{", 1);
  if (rc == TDM_OK) rc = put_source(b, "regression", r->count, s);
  if (rc == TDM_OK) rc = put_num(b, "rmse", r->rmse);
  if (rc == TDM_OK) rc = put_num(b, "mse", r->mse);
  if (rc == TDM_OK) rc = put_num(b, "mae", r->mae);
  if (rc == TDM_OK) rc = put_num(b, "mape", r->mape);
  if (rc == TDM_OK) rc = put_num(b, "r2", r->r2);
  if (rc == TDM_OK) rc = put_notes(b, ns);
  if (rc == TDM_OK) rc = tdm__buf_append(b, "}\n", 2);
  return rc;
}

static void regression_table(const tdm__eval_regression_result *r,
                             const source *s, const notes *ns) {
  char a[32];
  print_header(stdout, "regression", r->count, s);
  printf("rmse         %s\n", num_text(r->rmse, a));
  printf("mse          %s\n", num_text(r->mse, a));
  printf("mae          %s\n", num_text(r->mae, a));
  printf("mape         %s  (a fraction, not percent)\n", num_text(r->mape, a));
  printf("r2           %s\n", num_text(r->r2, a));
  print_notes(stdout, ns);
}

/* ---- the command ---- */

typedef struct eval_options {
  const char *pred_path, *labels_path, *label_column, *pred_column, *id_column;
  const char *record, *registry; /* --record RUN: store the metrics there */
  int task, json;
  int live; /* P is a decision log (a live run's segment) */
  double thresholds[MAX_THRESHOLDS];
  size_t num_thresholds, bins;
} eval_options;

/* The score columns of P: NAME, or NAME_0, NAME_1, ... (a multiclass task
 * prefers the numbered ones). Writes their indices and names. */
static int find_score_columns(const table *t, const eval_options *o,
                              size_t *columns, const char **names,
                              char (*storage)[160], size_t *count,
                              tdm_error *err) {
  const char *base = o->pred_column ? o->pred_column : "score";
  long plain = table_column(t, base);
  size_t numbered = 0;
  while (numbered < MAX_CLASSES) {
    snprintf(storage[numbered], 160, "%s_%zu", base, numbered);
    long c = table_column(t, storage[numbered]);
    if (c < 0) break;
    columns[numbered] = (size_t)c;
    names[numbered] = storage[numbered];
    numbered++;
  }
  if (plain >= 0 && (o->task != TASK_MULTICLASS || numbered == 0)) {
    columns[0] = (size_t)plain;
    names[0] = base;
    *count = 1;
    return TDM_OK;
  }
  if (numbered == 0)
    return tdm__fail(err, TDM_ESCHEMA,
                     "%s: no column \"%s\" (nor %s_0, %s_1, ...); name the "
                     "prediction column with --pred-col",
                     t->path, base, base, base);
  *count = numbered;
  return TDM_OK;
}

/* Whether every label is 0 or 1. */
static int labels_are_binary(const double *labels, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (labels[i] != 0.0 && labels[i] != 1.0) return 0;
  return 1;
}

/* Predictions and labels, read, matched by id or position and checked
 * against the task (given, or inferred here): what evaluate() computes the
 * metrics of, and what tdm__eval_read_binary hands to `tandem report`. */
/* Where a live answer's score came from (a decision log's "source"). */
enum { SOURCE_MODEL, SOURCE_BATCH, SOURCE_DEFAULT, NUM_SOURCES };
static const char *const source_names[NUM_SOURCES] = {"model", "batch",
                                                      "default"};

/* A live run's join of decisions and labels: what was counted beside the
 * rows evaluated. */
typedef struct live_counts {
  size_t decisions;  /* records that are not duplicates */
  size_t duplicates; /* duplicate answers: they repeat a decision */
  size_t unlabeled;  /* decisions with no label (yet) */
  size_t unknown;    /* labels of events the log does not hold */
  size_t no_score[NUM_SOURCES]; /* decisions without a score (default) */
  char unknown_ids[5][64];      /* the first few unknown labels' ids */
} live_counts;

typedef struct inputs {
  const char *names[MAX_CLASSES + 2]; /* the score columns */
  size_t k, n;                        /* score columns, rows */
  int task;
  double *scores; /* n x k */
  double *labels;
  size_t *label_lines;
  unsigned char *sources; /* live: each row's source */
  double *shadow;         /* live: each row's shadow_score, NaN: none */
  live_counts live;
} inputs;

static void inputs_free(inputs *in) {
  tdm__free(in->scores);
  tdm__free(in->labels);
  tdm__free(in->label_lines);
  tdm__free(in->sources);
  tdm__free(in->shadow);
  in->shadow = NULL;
  in->scores = in->labels = NULL;
  in->label_lines = NULL;
  in->sources = NULL;
}

/* Reads o's files into *in (freed with inputs_free; nothing to free on
 * failure); notes about how the columns were read go to ns. */
static int load_inputs(const eval_options *o, inputs *in, notes *ns,
                       tdm_error *err) {
  table pred = {0}, lab = {0};
  rows prows = {0}, lrows = {0};
  tdm__arena arena;
  tdm__arena_init(&arena, 1 << 16);
  size_t columns[MAX_CLASSES + 2];
  const char **names = in->names;
  const char *what[MAX_CLASSES + 2];
  static char storage[MAX_CLASSES][160];
  size_t k = 0, n = 0;
  int task = o->task;
  double *labels = NULL, *scores = NULL;
  size_t *label_lines = NULL, *label_of = NULL;
  const char *label_path = o->labels_path ? o->labels_path : o->pred_path;
  const char *label_column = o->label_column ? o->label_column : "label";

  int rc = table_open(&pred, o->pred_path, err);
  if (rc == TDM_OK)
    rc = find_score_columns(&pred, o, columns, names, storage, &k, err);
  if (rc != TDM_OK) goto done;
  for (size_t i = 0; i < k; i++) what[i] = "score";
  size_t width = k;
  long id_column = -1;
  if (o->labels_path == NULL) { /* the label is a column of P */
    long c = table_column(&pred, label_column);
    if (c < 0) {
      /* Without --labels and --label-col, the help's default (label) was
       * tried: say how to name another column or file. */
      rc = tdm__fail(err, TDM_ESCHEMA,
                     "%s: no label column \"%s\"%s", o->pred_path,
                     label_column,
                     o->label_column != NULL
                         ? ""
                         : "; give --label-col NAME for another column, or "
                           "--labels FILE for labels in their own file");
      goto done;
    }
    columns[width] = (size_t)c;
    what[width++] = "label";
  }
  if (o->id_column) {
    id_column = table_column(&pred, o->id_column);
    if (id_column < 0) {
      rc = tdm__fail(err, TDM_ESCHEMA, "%s: no id column \"%s\"", o->pred_path,
                     o->id_column);
      goto done;
    }
  }
  rc = read_rows(&pred, columns, what, width, id_column, &arena, &prows, err);
  if (rc != TDM_OK) goto done;
  n = prows.n;
  labels = tdm__malloc(n * sizeof *labels);
  label_lines = tdm__malloc(n * sizeof *label_lines);
  scores = tdm__malloc(n * k * sizeof *scores);
  if (labels == NULL || label_lines == NULL || scores == NULL) {
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < n; i++)
    memcpy(scores + i * k, prows.values + i * width, k * sizeof *scores);

  if (o->labels_path == NULL) {
    for (size_t i = 0; i < n; i++) {
      labels[i] = prows.values[i * width + k];
      label_lines[i] = prows.lines[i];
    }
  } else {
    rc = table_open(&lab, o->labels_path, err);
    if (rc != TDM_OK) goto done;
    long c = table_column(&lab, label_column);
    if (c < 0) {
      rc = tdm__fail(err, TDM_ESCHEMA,
                     "%s: no label column \"%s\" (name it with --label-col)",
                     o->labels_path, label_column);
      goto done;
    }
    size_t label_col = (size_t)c;
    const char *label_what = "label";
    long lid = -1;
    if (o->id_column) {
      lid = table_column(&lab, o->id_column);
      if (lid < 0) {
        rc = tdm__fail(err, TDM_ESCHEMA, "%s: no id column \"%s\"",
                       o->labels_path, o->id_column);
        goto done;
      }
    }
    rc = read_rows(&lab, &label_col, &label_what, 1, lid, &arena, &lrows, err);
    if (rc != TDM_OK) goto done;
    label_of = tdm__malloc(n * sizeof *label_of);
    if (label_of == NULL) {
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
      goto done;
    }
    if (o->id_column) {
      rc = match_ids(&prows, o->pred_path, &lrows, o->labels_path, label_of,
                     err);
      if (rc != TDM_OK) goto done;
    } else if (lrows.n != n) {
      /* Name the first row that has no partner. */
      int more_labels = lrows.n > n;
      rc = tdm__fail(err, TDM_EPARSE,
                     "%s:%zu: row %zu has no %s: %s has %zu rows and %s has "
                     "%zu (rows are matched by position; --id-col matches by "
                     "id)",
                     more_labels ? o->labels_path : o->pred_path,
                     more_labels ? lrows.lines[n] : prows.lines[lrows.n],
                     (more_labels ? n : lrows.n) + 1,
                     more_labels ? "prediction" : "label", o->pred_path, n,
                     o->labels_path, lrows.n);
      goto done;
    } else {
      for (size_t i = 0; i < n; i++) label_of[i] = i;
    }
    for (size_t i = 0; i < n; i++) {
      labels[i] = lrows.values[label_of[i]];
      label_lines[i] = lrows.lines[label_of[i]];
    }
  }

  /* The task: given, or inferred from the score columns and labels. */
  if (task == TASK_AUTO)
    task = k > 1                          ? TASK_MULTICLASS
           : labels_are_binary(labels, n) ? TASK_BINARY
                                          : TASK_REGRESSION;
  if (task == TASK_BINARY && k == 2) {
    /* Two probability columns: the second is the positive class. */
    for (size_t i = 0; i < n; i++) scores[i] = scores[i * 2 + 1];
    rc = note(ns, err,
              "binary with two score columns: %s is the positive "
              "class's probability",
              names[1]);
    if (rc != TDM_OK) goto done;
    names[0] = names[1];
    k = 1;
  }
  if ((task == TASK_BINARY || task == TASK_REGRESSION) && k != 1) {
    rc = tdm__fail(err, TDM_ESCHEMA,
                   "%s: --task %s needs one score column, but %zu were found "
                   "(%s .. %s)",
                   o->pred_path, task_names[task], k, names[0], names[k - 1]);
    goto done;
  }
  if (task == TASK_MULTICLASS && k < 2) {
    rc = tdm__fail(err, TDM_ESCHEMA,
                   "%s: --task multiclass needs score columns %s_0, %s_1, ... "
                   "(one per class); found only \"%s\"",
                   o->pred_path, names[0], names[0], names[0]);
    goto done;
  }
  /* Labels are checked here, where their lines are known. */
  for (size_t i = 0; i < n; i++) {
    double y = labels[i];
    if (task == TASK_BINARY && y != 0.0 && y != 1.0) {
      rc = tdm__fail(err, TDM_EPARSE,
                     "%s:%zu: a binary label must be 0 or 1, not %.17g",
                     label_path, label_lines[i], y);
      goto done;
    }
    if (task == TASK_MULTICLASS &&
        !(y >= 0 && y < (double)k && y == floor(y))) {
      rc = tdm__fail(err, TDM_EPARSE,
                     "%s:%zu: a multiclass label must be a class index from "
                     "0 to %zu (one per score column), not %.17g",
                     label_path, label_lines[i], k - 1, y);
      goto done;
    }
  }

done:
  if (rc == TDM_OK) {
    in->k = k;
    in->n = n;
    in->task = task;
    in->scores = scores;
    in->labels = labels;
    in->label_lines = label_lines;
  } else {
    tdm__free(scores);
    tdm__free(labels);
    tdm__free(label_lines);
  }
  tdm__free(label_of);
  rows_free(&prows);
  rows_free(&lrows);
  table_close(&pred);
  table_close(&lab);
  tdm__arena_free(&arena);
  return rc;
}

/* A decision log's records that are not duplicates: id, score, source. */
typedef struct decisions {
  rows r;                 /* values: the score, the shadow_score (NaN:
                             none); ids: event_id */
  unsigned char *sources; /* per row */
  size_t sources_cap;
} decisions;

static int read_decisions(table *t, const char *score_name, tdm__arena *arena,
                          decisions *d, live_counts *lc, tdm_error *err) {
  d->r.width = 2;
  int rc;
  while ((rc = table_next(t, err)) == 1) {
    const tdm__json *root = t->doc.root;
    const tdm__json *dup = tdm__json_get(root, "duplicate");
    const tdm__json *id = tdm__json_get(root, "event_id");
    const tdm__json *from = tdm__json_get(root, "source");
    const tdm__json *score = tdm__json_get(root, score_name);
    if (dup == NULL || dup->type != TDM__JSON_BOOL || id == NULL ||
        from == NULL || from->type != TDM__JSON_STRING)
      return tdm__fail(err, TDM_EPARSE,
                       "%s:%zu: not a decision log record (it needs "
                       "\"duplicate\", \"event_id\" and \"source\")",
                       t->path, t->line);
    if (dup->boolean) {
      lc->duplicates++;
      continue;
    }
    lc->decisions++;
    int which = -1;
    for (int i = 0; i < NUM_SOURCES; i++)
      if (strcmp(from->text, source_names[i]) == 0) which = i;
    if (which < 0)
      return tdm__fail(err, TDM_EPARSE,
                       "%s:%zu: \"source\" is model, batch or default, not "
                       "\"%s\"",
                       t->path, t->line, from->text);
    if (id->type != TDM__JSON_STRING || id->count == 0)
      return tdm__fail(err, TDM_EPARSE,
                       "%s:%zu: \"event_id\" must be a non-empty string (the "
                       "pipeline needs an id: field to join labels)",
                       t->path, t->line);
    if (score == NULL || score->type == TDM__JSON_NULL) {
      lc->no_score[which]++;
      continue;
    }
    double value = NAN;
    if (score->type != TDM__JSON_NUMBER ||
        tdm__parse_cell_number(score->text, score->text_len, &value) != 0 ||
        !isfinite(value))
      return tdm__fail(err, TDM_EPARSE,
                       "%s:%zu: \"%s\" must be a finite number or null",
                       t->path, t->line, score_name);
    if ((rc = rows_grow(&d->r, 1, err)) != TDM_OK) return rc;
    if (d->sources_cap < d->r.cap) {
      unsigned char *grown = tdm__realloc(d->sources, d->r.cap);
      if (grown == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
      d->sources = grown;
      d->sources_cap = d->r.cap;
    }
    const tdm__json *shadow = tdm__json_get(root, "shadow_score");
    double shadow_value = NAN;
    if (shadow != NULL && shadow->type == TDM__JSON_NUMBER &&
        tdm__parse_cell_number(shadow->text, shadow->text_len, &shadow_value) != 0)
      shadow_value = NAN;
    d->r.values[2 * d->r.n] = value;
    d->r.values[2 * d->r.n + 1] = shadow_value;
    d->sources[d->r.n] = (unsigned char)which;
    if ((d->r.ids[d->r.n] = tdm__arena_strndup(arena, id->text, id->count)) == NULL)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
    d->r.lines[d->r.n++] = t->line;
  }
  return rc < 0 ? rc : TDM_OK;
}

/*
 * A live run: the decisions of a decision log joined by event id with
 * labels that may arrive long after them. Unlike two files of the same
 * rows, both sides may hold more than the other: a decision whose label
 * has not come is counted as unlabeled, and a label for an event the log
 * does not hold is counted (and its id named) as unknown, never dropped
 * silently. Only decisions with a score and a label are evaluated.
 */
static int load_live_inputs(const eval_options *o, inputs *in, notes *ns,
                            tdm_error *err) {
  table pred = {0}, lab = {0};
  decisions d = {0};
  rows lrows = {0};
  size_t *p = NULL, *l = NULL;
  tdm__arena arena;
  tdm__arena_init(&arena, 1 << 16);
  live_counts *lc = &in->live;
  const char *label_column = o->label_column ? o->label_column : "label";
  const char *id_column = o->id_column ? o->id_column : "event_id";
  const char *score_name = o->pred_column ? o->pred_column : "score";
  int rc = TDM_OK;
  if (o->labels_path == NULL)
    rc = tdm__fail(err, TDM_EINVAL,
                   "a live run's labels come in their own file: give --labels");
  if (rc == TDM_OK) rc = table_open(&pred, o->pred_path, err);
  if (rc == TDM_OK && !pred.jsonl)
    rc = tdm__fail(err, TDM_EPARSE,
                   "%s: a decision log is JSON Lines (.jsonl), not CSV",
                   o->pred_path);
  if (rc == TDM_OK) rc = read_decisions(&pred, score_name, &arena, &d, lc, err);
  if (rc == TDM_OK) rc = table_open(&lab, o->labels_path, err);
  long label_col = rc == TDM_OK ? table_column(&lab, label_column) : 0;
  long lid = rc == TDM_OK ? table_column(&lab, id_column) : 0;
  if (rc == TDM_OK && (label_col < 0 || lid < 0))
    rc = tdm__fail(err, TDM_ESCHEMA,
                   "%s: no %s column \"%s\" (name it with %s)", o->labels_path,
                   label_col < 0 ? "label" : "id",
                   label_col < 0 ? label_column : id_column,
                   label_col < 0 ? "--label-col" : "--id-col");
  const char *label_what = "label";
  size_t label_column_index = (size_t)label_col;
  if (rc == TDM_OK)
    rc = read_rows(&lab, &label_column_index, &label_what, 1, lid, &arena,
                   &lrows, err);
  if (rc == TDM_OK && d.r.n > 0) rc = sorted_by_id(&d.r, o->pred_path, &p, err);
  if (rc == TDM_OK) rc = sorted_by_id(&lrows, o->labels_path, &l, err);
  size_t cap = d.r.n ? d.r.n : 1;
  if (rc == TDM_OK &&
      ((in->scores = tdm__malloc(cap * sizeof *in->scores)) == NULL ||
       (in->labels = tdm__malloc(cap * sizeof *in->labels)) == NULL ||
       (in->label_lines = tdm__malloc(cap * sizeof *in->label_lines)) == NULL ||
       (in->sources = tdm__malloc(cap)) == NULL ||
       (in->shadow = tdm__malloc(cap * sizeof *in->shadow)) == NULL))
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  size_t i = 0, j = 0, n = 0;
  while (rc == TDM_OK && (i < d.r.n || j < lrows.n)) {
    int c = i == d.r.n    ? 1
            : j == lrows.n ? -1
                           : strcmp(d.r.ids[p[i]], lrows.ids[l[j]]);
    if (c < 0) {
      lc->unlabeled++;
      i++;
    } else if (c > 0) {
      if (lc->unknown < 5)
        snprintf(lc->unknown_ids[lc->unknown], sizeof lc->unknown_ids[0], "%s",
                 lrows.ids[l[j]]);
      lc->unknown++;
      j++;
    } else {
      double y = lrows.values[l[j]];
      if (y != 0.0 && y != 1.0)
        rc = tdm__fail(err, TDM_EPARSE,
                       "%s:%zu: a binary label must be 0 or 1, not %.17g",
                       o->labels_path, lrows.lines[l[j]], y);
      in->scores[n] = d.r.values[2 * p[i]];
      in->shadow[n] = d.r.values[2 * p[i] + 1];
      in->labels[n] = y;
      in->label_lines[n] = lrows.lines[l[j]];
      in->sources[n++] = d.sources[p[i]];
      i++;
      j++;
    }
  }
  if (rc == TDM_OK && n == 0)
    rc = tdm__fail(err, TDM_EINVAL,
                   "%s: none of its %zu decisions has a label in %s (joined "
                   "by %s)",
                   o->pred_path, d.r.n, o->labels_path, id_column);
  if (rc == TDM_OK && lc->unknown > 0)
    rc = note(ns, err,
              "%zu labels are of events this decision log does not hold "
              "(first: %s); they are counted as labels_unknown",
              lc->unknown, lc->unknown_ids[0]);
  if (rc == TDM_OK) {
    in->n = n;
    in->k = 1;
    in->task = TASK_BINARY;
    in->names[0] = score_name;
  }
  tdm__free(p);
  tdm__free(l);
  rows_free(&d.r);
  tdm__free(d.sources);
  rows_free(&lrows);
  table_close(&pred);
  table_close(&lab);
  tdm__arena_free(&arena);
  return rc;
}

/*
 * One member of a live run's metrics: "key": the binary metrics of
 * scores[0..m) against labels (as `tandem eval` prints them for a whole
 * file, less the newline), with "without_score": no_score inside it, and
 * a line for the table (label names the rows in it).
 */
static int binary_member(tdm__buf *b, const char *key, const char *label,
                         const double *scores, const double *labels, size_t m,
                         size_t no_score, const eval_options *o,
                         const source *src, tdm_error *err) {
  int rc = put_key(b, key);
  if (rc != TDM_OK) return rc;
  if (m == 0)
    return tdm__buf_printf(b, "{\"count\":0,\"without_score\":%zu}", no_score);
  double default_threshold = 0.5;
  tdm__eval_binary_result r;
  memset(&r, 0, sizeof r);
  notes none = {0};
  rc = tdm__eval_binary(scores, labels, m,
                        o->num_thresholds ? o->thresholds : &default_threshold,
                        o->num_thresholds ? o->num_thresholds : 1, o->bins, &r,
                        err);
  if (rc == TDM_OK) rc = binary_notes(&r, &none, err);
  if (rc == TDM_OK) rc = binary_json(&r, src, &none, b);
  if (rc == TDM_OK) {
    b->len -= 2; /* its closing "}\n" */
    rc = put_count(b, "without_score", no_score);
    if (rc == TDM_OK) rc = tdm__buf_append(b, "}", 1);
  }
  if (rc == TDM_OK && !o->json) {
    char a[32], c[32];
    printf("%-15s %zu labeled: roc_auc %s, average_precision %s\n", label, m,
           num_text(r.roc_auc, a), num_text(r.average_precision, c));
  }
  tdm__eval_binary_result_free(&r);
  notes_free(&none);
  return rc;
}

/* The "live" member of a live run's metrics: the join's counts, the
 * metrics of each source's rows, and the shadow model's. */
static int live_json(const inputs *in, const eval_options *o, const source *src,
                     tdm__buf *b, tdm_error *err) {
  const live_counts *lc = &in->live;
  if (!o->json)
    printf("\nlive         %zu decisions (and %zu duplicate answers): %zu "
           "labeled, %zu without a label yet, %zu labels of events not in "
           "the log\n",
           lc->decisions, lc->duplicates, in->n, lc->unlabeled, lc->unknown);
  b->len -= 2; /* the object's closing "}\n" */
  int rc = put_key(b, "live");
  if (rc == TDM_OK) rc = tdm__buf_append(b, "{", 1);
  if (rc == TDM_OK) rc = put_count(b, "decisions", lc->decisions);
  if (rc == TDM_OK) rc = put_count(b, "duplicates", lc->duplicates);
  if (rc == TDM_OK) rc = put_count(b, "labeled", in->n);
  if (rc == TDM_OK) rc = put_count(b, "unlabeled", lc->unlabeled);
  if (rc == TDM_OK) rc = put_count(b, "labels_unknown", lc->unknown);
  if (rc == TDM_OK) rc = put_key(b, "labels_unknown_examples");
  if (rc == TDM_OK) rc = tdm__buf_append(b, "[", 1);
  for (size_t i = 0; i < lc->unknown && i < 5 && rc == TDM_OK; i++) {
    if (i > 0) rc = tdm__buf_append(b, ",", 1);
    if (rc == TDM_OK) rc = tdm__json_append_string(b, lc->unknown_ids[i]);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "]", 1);
  if (rc == TDM_OK) rc = put_key(b, "by_source");
  if (rc == TDM_OK) rc = tdm__buf_append(b, "{", 1);
  double *scores = tdm__malloc((in->n ? in->n : 1) * sizeof *scores);
  double *labels = tdm__malloc((in->n ? in->n : 1) * sizeof *labels);
  if (rc == TDM_OK && (scores == NULL || labels == NULL))
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (int s = 0; s < NUM_SOURCES && rc == TDM_OK; s++) {
    size_t m = 0;
    for (size_t i = 0; i < in->n; i++)
      if (in->sources[i] == s) {
        scores[m] = in->scores[i];
        labels[m++] = in->labels[i];
      }
    char label[32];
    snprintf(label, sizeof label, "source %s", source_names[s]);
    if (m > 0 || lc->no_score[s] > 0)
      rc = binary_member(b, source_names[s], label, scores, labels, m,
                         lc->no_score[s], o, src, err);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "}", 1);
  /* The shadow model on the model-answered rows: what the challenger
   * would have scored on the same events (tandem compare --shadow puts
   * it beside by_source.model). */
  size_t m = 0;
  for (size_t i = 0; i < in->n && rc == TDM_OK; i++)
    if (in->sources[i] == SOURCE_MODEL && !isnan(in->shadow[i])) {
      scores[m] = in->shadow[i];
      labels[m++] = in->labels[i];
    }
  if (rc == TDM_OK && m > 0)
    rc = binary_member(b, "shadow", "shadow", scores, labels, m, 0, o, src,
                       err);
  tdm__free(scores);
  tdm__free(labels);
  if (rc == TDM_OK) rc = tdm__buf_append(b, "}}\n", 3);
  if (rc == TDM_ENOMEM && err->status != TDM_ENOMEM)
    tdm__fail(err, rc, "out of memory");
  return rc;
}

int tdm__eval_read_binary(const char *pred_path, const char *labels_path,
                          const char *label_column, const char *id_column,
                          int live, double **scores, double **labels,
                          size_t *n, tdm_error *err) {
  static eval_options o;
  static inputs in;
  memset(&o, 0, sizeof o);
  o.pred_path = pred_path;
  o.labels_path = labels_path;
  o.label_column = label_column;
  o.id_column = id_column;
  o.task = TASK_BINARY;
  o.bins = 10;
  o.live = live;
  memset(&in, 0, sizeof in);
  notes ns = {0};
  int rc = live ? load_live_inputs(&o, &in, &ns, err)
                : load_inputs(&o, &in, &ns, err);
  notes_free(&ns);
  if (rc != TDM_OK) {
    inputs_free(&in);
    return rc;
  }
  tdm__free(in.label_lines);
  tdm__free(in.sources);
  tdm__free(in.shadow);
  *scores = in.scores;
  *labels = in.labels;
  *n = in.n;
  return TDM_OK;
}

static int evaluate(const eval_options *o, tdm_error *err) {
  static inputs in;
  const char *label_column = o->label_column ? o->label_column : "label";
  notes ns = {0};
  tdm__buf out = {0};
  tdm__eval_binary_result br;
  tdm__eval_multiclass_result mr;
  tdm__eval_regression_result rr;
  memset(&br, 0, sizeof br);
  memset(&mr, 0, sizeof mr);
  memset(&in, 0, sizeof in);
  int rc = o->live ? load_live_inputs(o, &in, &ns, err)
                   : load_inputs(o, &in, &ns, err);
  if (rc != TDM_OK) goto done;
  size_t n = in.n, k = in.k;
  int task = in.task;
  double *scores = in.scores, *labels = in.labels;
  const char **names = in.names;

  /* A live run is always joined by id: event_id unless --id-col says. */
  const char *id_column =
      o->live && o->id_column == NULL ? "event_id" : o->id_column;
  source src = {o->pred_path, o->labels_path, label_column,
                id_column,    names,          k};
  if (task == TASK_BINARY) {
    double default_threshold = 0.5;
    rc = tdm__eval_binary(
        scores, labels, n,
        o->num_thresholds ? o->thresholds : &default_threshold,
        o->num_thresholds ? o->num_thresholds : 1, o->bins, &br, err);
    if (rc == TDM_OK) rc = binary_notes(&br, &ns, err);
    if (rc != TDM_OK) goto done;
    rc = binary_json(&br, &src, &ns, &out);
    if (!o->json) binary_table(&br, &src, &ns);
    if (rc == TDM_OK && o->live) {
      rc = live_json(&in, o, &src, &out, err);
      if (rc != TDM_OK) goto done;
    }
  } else if (task == TASK_MULTICLASS) {
    rc = tdm__eval_multiclass(scores, labels, n, k, &mr, err);
    if (rc == TDM_OK && !mr.probabilities)
      rc = note(&ns, err,
                "log_loss is left out: some scores are outside [0, 1], so "
                "they are not probabilities");
    if (rc != TDM_OK) goto done;
    if (o->json || o->record) rc = multiclass_json(&mr, &src, &ns, &out);
    if (!o->json) multiclass_table(&mr, &src, &ns);
  } else {
    rc = tdm__eval_regression(scores, labels, n, &rr, err);
    if (rc == TDM_OK && rr.r2_constant_labels)
      rc = note(&ns, err,
                "the labels are constant: r2 is %s by sklearn's convention "
                "(force_finite)",
                rr.r2 == 1.0 ? "1 (a perfect fit)" : "0");
    if (rc != TDM_OK) goto done;
    if (o->json || o->record) rc = regression_json(&rr, &src, &ns, &out);
    if (!o->json) regression_table(&rr, &src, &ns);
  }
  if (rc != TDM_OK) {
    rc = tdm__fail(err, rc, "out of memory");
    goto done;
  }
  if (o->json && fwrite(out.data, 1, out.len, stdout) != out.len)
    rc =
        tdm__fail(err, TDM_EIO, "cannot write the output: %s", strerror(errno));
  if (rc == TDM_OK && fflush(stdout) != 0)
    rc =
        tdm__fail(err, TDM_EIO, "cannot write the output: %s", strerror(errno));
  if (rc == TDM_OK && o->record != NULL) {
    /* The metrics go with the run in the registry (tandem runs, compare,
     * report show them). */
    char path[4096];
    if (tdm__cli_registry_path(o->registry, path, sizeof path, err) != TDM_OK ||
        tdm__registry_set_metrics(path, o->record, out.data, err) != TDM_OK)
      rc = err->status ? err->status : TDM_EIO;
    else
      fprintf(stderr, "tandem eval: metrics recorded with run %s\n", o->record);
  }
done:
  tdm__eval_binary_result_free(&br);
  tdm__eval_multiclass_result_free(&mr);
  tdm__buf_free(&out);
  notes_free(&ns);
  inputs_free(&in);
  return rc;
}

int tdm__cmd_eval(int argc, char **argv) {
  static const struct option long_options[] = {
      {"pred", required_argument, NULL, 'p'},
      {"labels", required_argument, NULL, 'l'},
      {"label-col", required_argument, NULL, 'L'},
      {"pred-col", required_argument, NULL, 'P'},
      {"id-col", required_argument, NULL, 'I'},
      {"task", required_argument, NULL, 't'},
      {"threshold", required_argument, NULL, 'T'},
      {"bins", required_argument, NULL, 'b'},
      {"json", no_argument, NULL, 'j'},
      {"record", required_argument, NULL, 'r'},
      {"live", no_argument, NULL, 'v'},
      {"registry", required_argument, NULL, 'R'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static eval_options o;
  memset(&o, 0, sizeof o);
  o.bins = 10;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
      case 'p': o.pred_path = optarg; break;
      case 'l': o.labels_path = optarg; break;
      case 'L': o.label_column = optarg; break;
      case 'P': o.pred_column = optarg; break;
      case 'I': o.id_column = optarg; break;
      case 'j': o.json = 1; break;
      case 'r': o.record = optarg; break;
      case 'v': o.live = 1; break;
      case 'R': o.registry = optarg; break;
      case 't': {
        o.task = -1;
        for (int t = TASK_BINARY; t <= TASK_REGRESSION; t++)
          if (strcmp(optarg, task_names[t]) == 0) o.task = t;
        if (o.task < 0)
          return tdm__usage_error("eval",
                                  "unknown task '%s': --task is binary, "
                                  "multiclass or regression",
                                  optarg);
        break;
      }
      case 'T': {
        double t;
        if (tdm__parse_double(optarg, strlen(optarg), &t) != 0 || !isfinite(t))
          return tdm__usage_error(
              "eval", "--threshold must be a number, not '%s'", optarg);
        if (o.num_thresholds == MAX_THRESHOLDS)
          return tdm__usage_error("eval", "at most %d --threshold options",
                                  MAX_THRESHOLDS);
        o.thresholds[o.num_thresholds++] = t;
        break;
      }
      case 'b':
        if (!tdm__parse_count(optarg, 1000000, &o.bins))
          return tdm__usage_error("eval",
                                  "--bins must be a number from 1 to 1000000, "
                                  "not '%s'",
                                  optarg);
        break;
      case 'h': fputs(eval_help, stdout); return TDM_EXIT_OK;
      case ':':
        return tdm__usage_error("eval", "%s needs a value", argv[optind - 1]);
      default:
        return tdm__usage_error("eval", "unknown option '%s'",
                                argv[optind - 1]);
    }
  }
  if (optind < argc)
    return tdm__usage_error("eval", "unexpected argument '%s'", argv[optind]);
  tdm_error err;
  tdm__error_clear(&err);
  /* A run to record into says what it wrote, and whether it was live. */
  tdm__run_record run;
  memset(&run, 0, sizeof run);
  if (o.record != NULL) {
    char path[4096];
    tdm__registry *registry = NULL;
    int rc = tdm__cli_registry_path(o.registry, path, sizeof path, &err);
    if (rc == TDM_OK)
      rc = tdm__registry_open(path, TDM__REGISTRY_READ, &registry, &err);
    if (rc == TDM_OK) rc = tdm__registry_get(registry, o.record, &run, &err);
    tdm__registry_close(registry);
    if (rc != TDM_OK) {
      tdm__run_record_free(&run);
      return tdm__report(rc, &err);
    }
    if (run.command && strcmp(run.command, "live") == 0) o.live = 1;
    if (o.pred_path == NULL) o.pred_path = run.output_path;
  }
  int usage = TDM_OK;
  if (o.pred_path == NULL)
    usage = tdm__usage_error("eval", "--pred is required (or --record RUN, "
                             "to evaluate what the run wrote)");
  else if (o.live && o.labels_path == NULL)
    usage = tdm__usage_error("eval", "a live run's labels come in their own "
                             "file: give --labels L");
  if (usage != TDM_OK) {
    tdm__run_record_free(&run);
    return usage;
  }
  if (o.id_column != NULL && o.labels_path == NULL)
    return tdm__usage_error("eval",
                            "--id-col matches two files; it needs --labels");
  if (o.num_thresholds > 0 && o.task != TASK_AUTO && o.task != TASK_BINARY)
    return tdm__usage_error("eval", "--threshold is for the binary task only");
  int rc = evaluate(&o, &err);
  tdm__run_record_free(&run);
  return rc == TDM_OK ? TDM_EXIT_OK : tdm__report(rc, &err);
}
