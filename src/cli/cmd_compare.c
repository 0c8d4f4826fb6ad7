/*
 * cmd_compare.c - `tandem compare RUN_A RUN_B`: puts two recorded runs
 * side by side. Both outputs are found through the run registry and
 * checked against the SHA-256 recorded for them, then read (CSV or JSON
 * Lines) and compared: each run's score distribution, the shift between
 * them (mean delta and the population stability index), the rows whose
 * decision changed, and the difference of their metrics when both have
 * some. Rows are paired by an id column both outputs share (the k-th
 * occurrence of an id with the k-th, since a batch output repeats the id
 * of a duplicate event), else by position.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/core.h"
#include "../core/json.h"
#include "../io/csv.h"
#include "../store/registry.h"
#include "cli.h"

static const char compare_help[] =
    "usage: tandem compare RUN_A RUN_B [options]\n"
    "\n"
    "Compares two recorded runs (ids or unique prefixes, from `tandem runs`)\n"
    "through their outputs, which must still be where the run wrote them and\n"
    "unchanged (their SHA-256 is checked). Prints both runs side by side\n"
    "(a warning when they read different inputs), the score distribution of\n"
    "each (count, mean, standard deviation, min, p1 .. p99, max), the shift\n"
    "from A to B, the rows whose decision changed, and metric deltas when\n"
    "both runs have metrics.\n"
    "\n"
    "Rows are paired by id when both outputs have the same id column (the\n"
    "first column that is not score, decision, duplicate or model_version:\n"
    "the pipeline's id, or score's first --keep column), else by position,\n"
    "which needs equal row counts.\n"
    "\n"
    "The shift: mean delta (B - A), and PSI = sum over bins of\n"
    "(b - a) * ln(b / a), where a and b are the fractions of A's and B's\n"
    "scores in each of 10 bins cut at A's deciles (bin i holds scores above\n"
    "the i-th cut and at or below the next); an empty bin counts as a\n"
    "fraction of 0.0001, so that the logarithm stays finite. Percentiles\n"
    "interpolate linearly between order statistics (numpy's default); the\n"
    "standard deviation is the population one.\n"
    "\n"
    "options:\n"
    "  --registry P    the registry (default as for `tandem runs`)\n"
    "  --examples N    show at most N changed decisions (default 10; 0: none)\n"
    "  --json          one JSON object instead of text\n"
    "  --help          show this help\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n";

/* What an empty PSI bin counts as (see the help above). */
#define PSI_EPSILON 1e-4
#define PSI_BINS 10

/* One run's output, read for comparing. */
typedef struct output {
  const char *path;
  char key_name[256]; /* "" when the output has no id column */
  size_t rows;
  double *scores;    /* NaN where the row has no score */
  size_t *keys;      /* offsets into text; SIZE_MAX: none */
  size_t *decisions; /* offsets into text; SIZE_MAX: none */
  int has_decision;
  tdm__buf text; /* NUL-separated key and decision strings */
} output;

static void output_free(output *o) {
  tdm__free(o->scores);
  tdm__free(o->keys);
  tdm__free(o->decisions);
  tdm__buf_free(&o->text);
}

static const char *text_at(const output *o, size_t offset) {
  return offset == SIZE_MAX ? NULL : o->text.data + offset;
}

/* Columns that are results, not the row's identity. */
static int is_result_column(const char *name) {
  return strcmp(name, "score") == 0 || strncmp(name, "score_", 6) == 0 ||
         strcmp(name, "scores") == 0 || strcmp(name, "decision") == 0 ||
         strcmp(name, "duplicate") == 0 ||
         strcmp(name, "model_version") == 0 || strcmp(name, "features") == 0;
}

static int is_jsonl(const char *path) {
  size_t n = strlen(path);
  return (n >= 6 && strcmp(path + n - 6, ".jsonl") == 0) ||
         (n >= 7 && strcmp(path + n - 7, ".ndjson") == 0);
}

static int add_row(output *o, size_t *cap, tdm_error *err) {
  if (o->rows < *cap) return TDM_OK;
  size_t grown = *cap ? *cap * 2 : 1024;
  double *s = tdm__realloc(o->scores, grown * sizeof *s);
  if (s != NULL) o->scores = s;
  size_t *k = s ? tdm__realloc(o->keys, grown * sizeof *k) : NULL;
  if (k != NULL) o->keys = k;
  size_t *d = k ? tdm__realloc(o->decisions, grown * sizeof *d) : NULL;
  if (d != NULL) o->decisions = d;
  if (d == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  *cap = grown;
  return TDM_OK;
}

/* Keeps a string in o->text; its offset goes to *at. */
static int keep_text(output *o, const char *s, size_t len, size_t *at) {
  *at = o->text.len;
  int rc = tdm__buf_append(&o->text, s, len);
  if (rc == TDM_OK) rc = tdm__buf_append(&o->text, "", 1);
  return rc;
}

static int read_csv_output(output *o, tdm__csv *csv, tdm_error *err) {
  tdm__csv_record rec;
  int got = tdm__csv_next(csv, &rec, err);
  if (got <= 0)
    return got < 0 ? got : tdm__fail(err, TDM_EPARSE, "%s: empty", o->path);
  size_t score_col = SIZE_MAX, decision_col = SIZE_MAX, key_col = SIZE_MAX;
  for (size_t i = 0; i < rec.count; i++) {
    const char *name = rec.fields[i].text;
    if (strcmp(name, "score") == 0) score_col = i;
    if (strcmp(name, "decision") == 0) decision_col = i;
    if (key_col == SIZE_MAX && !is_result_column(name) &&
        strlen(name) < sizeof o->key_name) {
      key_col = i;
      snprintf(o->key_name, sizeof o->key_name, "%s", name);
    }
  }
  if (score_col == SIZE_MAX)
    return tdm__fail(err, TDM_EINVAL,
                     "%s: no 'score' column to compare (a features-only or "
                     "multiclass output)",
                     o->path);
  o->has_decision = decision_col != SIZE_MAX;
  size_t cap = 0;
  while ((got = tdm__csv_next(csv, &rec, err)) > 0) {
    if (rec.blank) continue;
    int rc = add_row(o, &cap, err);
    if (rc != TDM_OK) return rc;
    size_t r = o->rows;
    if (score_col >= rec.count ||
        tdm__parse_cell_number(rec.fields[score_col].text,
                               rec.fields[score_col].len,
                               &o->scores[r]) != 0)
      return tdm__fail(err, TDM_EPARSE, "%s:%zu: the score is not a number",
                       o->path, rec.line);
    o->keys[r] = o->decisions[r] = SIZE_MAX;
    if (key_col < rec.count)
      rc = keep_text(o, rec.fields[key_col].text, rec.fields[key_col].len,
                     &o->keys[r]);
    if (rc == TDM_OK && decision_col < rec.count)
      rc = keep_text(o, rec.fields[decision_col].text,
                     rec.fields[decision_col].len, &o->decisions[r]);
    if (rc != TDM_OK) return tdm__fail(err, TDM_ENOMEM, "out of memory");
    o->rows++;
  }
  return got;
}

static int read_jsonl_output(output *o, tdm__csv *csv, tdm_error *err) {
  const char *line_text;
  size_t len, line, cap = 0;
  int got;
  int first = 1;
  while ((got = tdm__csv_next_line(csv, &line_text, &len, &line, err)) > 0) {
    if (len == 0) continue;
    tdm__json_doc doc;
    int rc = tdm__json_parse_at(&doc, line_text, len, o->path, line,
                                TDM__JSON_ALLOW_NAN, err);
    if (rc != TDM_OK) return rc;
    const tdm__json *root = doc.root;
    if (root->type != TDM__JSON_OBJECT) {
      tdm__json_doc_free(&doc);
      return tdm__fail(err, TDM_EPARSE, "%s:%zu: not a JSON object", o->path,
                       line);
    }
    if (first) {
      /* The first line decides the id member, as a CSV header would. */
      for (size_t i = 0; i < root->count; i++)
        if (!is_result_column(root->keys[i]) &&
            strlen(root->keys[i]) < sizeof o->key_name) {
          snprintf(o->key_name, sizeof o->key_name, "%s", root->keys[i]);
          break;
        }
      o->has_decision = tdm__json_get(root, "decision") != NULL;
      first = 0;
    }
    rc = add_row(o, &cap, err);
    size_t r = o->rows;
    const tdm__json *score = tdm__json_get(root, "score");
    if (rc == TDM_OK &&
        (score == NULL || tdm__json_feature_value(score, &o->scores[r]) != 0))
      rc = tdm__fail(err, TDM_EINVAL, "%s:%zu: no numeric 'score' to compare",
                     o->path, line);
    if (rc == TDM_OK) {
      o->keys[r] = o->decisions[r] = SIZE_MAX;
      const tdm__json *key =
          o->key_name[0] ? tdm__json_get(root, o->key_name) : NULL;
      const tdm__json *decision = tdm__json_get(root, "decision");
      if (key != NULL && key->type == TDM__JSON_STRING)
        rc = keep_text(o, key->text, key->count, &o->keys[r]);
      else if (key != NULL && key->type == TDM__JSON_NUMBER)
        rc = keep_text(o, key->text, key->text_len, &o->keys[r]);
      if (rc == TDM_OK && decision != NULL &&
          decision->type == TDM__JSON_STRING)
        rc = keep_text(o, decision->text, decision->count, &o->decisions[r]);
      if (rc != TDM_OK) rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    }
    tdm__json_doc_free(&doc);
    if (rc != TDM_OK) return rc;
    o->rows++;
  }
  return got;
}

/*
 * Checks that run's output is still there and unchanged, then reads it.
 * Hashing first, in its own pass, means a changed file is reported as
 * changed rather than as whatever parse error the change causes.
 */
static int read_output(const tdm__run_record *run, output *o, tdm_error *err) {
  memset(o, 0, sizeof *o);
  o->path = run->output_path;
  if (o->path == NULL || run->output_sha256 == NULL)
    return tdm__fail(err, TDM_ENOTFOUND, "run %s: no output recorded",
                     run->id);
  FILE *fp = fopen(o->path, "rb");
  if (fp == NULL)
    return tdm__fail(err, TDM_ENOTFOUND, "run %s: output %s is gone: %s",
                     run->id, o->path, strerror(errno));
  tdm__sha256 ctx;
  tdm__sha256_init(&ctx);
  char block[65536];
  size_t n;
  while ((n = fread(block, 1, sizeof block, fp)) > 0)
    tdm__sha256_update(&ctx, block, n);
  char hex[65];
  tdm__sha256_final_hex(&ctx, hex);
  if (ferror(fp)) {
    fclose(fp);
    return tdm__fail(err, TDM_EIO, "run %s: reading output %s failed",
                     run->id, o->path);
  }
  if (strcmp(hex, run->output_sha256) != 0) {
    fclose(fp);
    return tdm__fail(err, TDM_EINVAL,
                     "run %s: output %s changed since the run (SHA-256 %.12s, "
                     "recorded %.12s)",
                     run->id, o->path, hex, run->output_sha256);
  }
  rewind(fp);
  tdm__csv *csv = NULL;
  int rc = tdm__csv_open(&csv, fp, o->path);
  if (rc == TDM_OK) {
    rc = is_jsonl(o->path) ? read_jsonl_output(o, csv, err)
                           : read_csv_output(o, csv, err);
    if (rc > 0) rc = TDM_OK;
  } else {
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  tdm__csv_close(csv);
  fclose(fp);
  if (rc != TDM_OK) output_free(o);
  return rc;
}

/* ---- statistics ---- */

typedef struct distribution {
  size_t count, missing;
  double mean, std, min, max;
  double p[7]; /* p1 p5 p25 p50 p75 p95 p99 */
  double *sorted; /* the scores without NaN, ascending */
} distribution;

static const double percentiles[7] = {0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99};
static const char *const percentile_names[7] = {"p1",  "p5",  "p25", "p50",
                                                "p75", "p95", "p99"};

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The q-quantile of sorted[0..n), interpolating linearly (numpy's default
 * "linear" method: position q * (n - 1)). */
static double quantile(const double *sorted, size_t n, double q) {
  double pos = q * (double)(n - 1);
  size_t lo = (size_t)floor(pos);
  size_t hi = lo + 1 < n ? lo + 1 : lo;
  double frac = pos - (double)lo;
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

static int describe(const output *o, distribution *d, tdm_error *err) {
  memset(d, 0, sizeof *d);
  d->sorted = tdm__malloc((o->rows ? o->rows : 1) * sizeof *d->sorted);
  if (d->sorted == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  double sum = 0;
  for (size_t i = 0; i < o->rows; i++) {
    if (isnan(o->scores[i])) {
      d->missing++;
      continue;
    }
    d->sorted[d->count++] = o->scores[i];
    sum += o->scores[i];
  }
  if (d->count == 0) {
    d->mean = d->std = d->min = d->max = NAN;
    for (int i = 0; i < 7; i++) d->p[i] = NAN;
    return TDM_OK;
  }
  qsort(d->sorted, d->count, sizeof *d->sorted, compare_doubles);
  d->mean = sum / (double)d->count;
  double squares = 0;
  for (size_t i = 0; i < d->count; i++)
    squares += (d->sorted[i] - d->mean) * (d->sorted[i] - d->mean);
  d->std = sqrt(squares / (double)d->count);
  d->min = d->sorted[0];
  d->max = d->sorted[d->count - 1];
  for (int i = 0; i < 7; i++)
    d->p[i] = quantile(d->sorted, d->count, percentiles[i]);
  return TDM_OK;
}

/* Scores at or below each cut, counted per bin: bin i is (cut[i-1], cut[i]]. */
static void bin_counts(const double *sorted, size_t n, const double *cuts,
                       double fractions[PSI_BINS]) {
  size_t below = 0;
  for (int i = 0; i < PSI_BINS; i++) {
    size_t upto = n;
    if (i < PSI_BINS - 1) {
      /* The number of scores <= cuts[i]: an upper bound search. */
      size_t lo = below, hi = n;
      while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] <= cuts[i])
          lo = mid + 1;
        else
          hi = mid;
      }
      upto = lo;
    }
    fractions[i] = (double)(upto - below) / (double)n;
    below = upto;
  }
}

/* PSI of B against A's deciles; NaN when either has no scores. */
static double psi(const distribution *a, const distribution *b) {
  if (a->count == 0 || b->count == 0) return NAN;
  double cuts[PSI_BINS - 1];
  for (int i = 0; i < PSI_BINS - 1; i++)
    cuts[i] = quantile(a->sorted, a->count, (double)(i + 1) / PSI_BINS);
  double fa[PSI_BINS], fb[PSI_BINS];
  bin_counts(a->sorted, a->count, cuts, fa);
  bin_counts(b->sorted, b->count, cuts, fb);
  double total = 0;
  for (int i = 0; i < PSI_BINS; i++) {
    double x = fa[i] > 0 ? fa[i] : PSI_EPSILON;
    double y = fb[i] > 0 ? fb[i] : PSI_EPSILON;
    total += (y - x) * log(y / x);
  }
  return total;
}

/* ---- pairing rows ---- */

typedef struct keyed {
  const char *key;
  size_t row;
  size_t occurrence; /* how many earlier rows have this key */
} keyed;

static int compare_keyed(const void *a, const void *b) {
  const keyed *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  if (c != 0) return c;
  if (x->occurrence != y->occurrence) return x->occurrence < y->occurrence ? -1 : 1;
  return x->row < y->row ? -1 : x->row > y->row;
}

static int compare_key_then_row(const void *a, const void *b) {
  const keyed *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  if (c != 0) return c;
  return x->row < y->row ? -1 : x->row > y->row;
}

/* o's rows sorted by (key, occurrence); NULL when a row has no key. */
static keyed *sorted_keys(const output *o) {
  keyed *k = tdm__malloc((o->rows ? o->rows : 1) * sizeof *k);
  if (k == NULL) return NULL;
  for (size_t i = 0; i < o->rows; i++) {
    k[i].key = text_at(o, o->keys[i]);
    if (k[i].key == NULL) k[i].key = "";
    k[i].row = i;
  }
  qsort(k, o->rows, sizeof *k, compare_key_then_row);
  for (size_t i = 0; i < o->rows; i++)
    k[i].occurrence =
        i > 0 && strcmp(k[i].key, k[i - 1].key) == 0 ? k[i - 1].occurrence + 1
                                                     : 0;
  qsort(k, o->rows, sizeof *k, compare_keyed);
  return k;
}

/*
 * Pairs A's rows with B's: partner[i] is the B row of A's row i, or
 * SIZE_MAX. By key when both outputs have the same id column, else by
 * position. *by_key says which.
 */
static int pair_rows(const output *a, const output *b, size_t *partner,
                     int *by_key, size_t *matched, tdm_error *err) {
  *matched = 0;
  *by_key = a->key_name[0] && strcmp(a->key_name, b->key_name) == 0;
  if (!*by_key) {
    if (a->rows != b->rows)
      return tdm__fail(err, TDM_EINVAL,
                       "the outputs share no id column and have different "
                       "row counts (%zu and %zu): cannot pair their rows",
                       a->rows, b->rows);
    for (size_t i = 0; i < a->rows; i++) partner[i] = i;
    *matched = a->rows;
    return TDM_OK;
  }
  keyed *ka = sorted_keys(a), *kb = sorted_keys(b);
  if (ka == NULL || kb == NULL) {
    tdm__free(ka);
    tdm__free(kb);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < a->rows; i++) partner[i] = SIZE_MAX;
  size_t i = 0, j = 0;
  while (i < a->rows && j < b->rows) {
    int c = strcmp(ka[i].key, kb[j].key);
    if (c == 0)
      c = ka[i].occurrence < kb[j].occurrence
              ? -1
              : ka[i].occurrence > kb[j].occurrence;
    if (c < 0) {
      i++;
    } else if (c > 0) {
      j++;
    } else {
      partner[ka[i].row] = kb[j].row;
      (*matched)++;
      i++;
      j++;
    }
  }
  tdm__free(ka);
  tdm__free(kb);
  return TDM_OK;
}

/* ---- metrics ---- */

/* Appends every number in a JSON object, by its dotted path, to list. */
typedef struct metric {
  char name[256];
  double value;
} metric;

static void flatten(const tdm__json *v, const char *prefix, metric *list,
                    size_t *count, size_t max) {
  for (size_t i = 0; i < v->count && *count < max; i++) {
    char name[256];
    snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "",
             v->keys[i]);
    const tdm__json *item = &v->items[i];
    if (item->type == TDM__JSON_OBJECT) {
      flatten(item, name, list, count, max);
    } else if (item->type == TDM__JSON_NUMBER) {
      snprintf(list[*count].name, sizeof list[*count].name, "%s", name);
      list[*count].value = strtod(item->text, NULL);
      (*count)++;
    }
  }
}

#define MAX_METRICS 256

/* The numeric metrics of a run; 0 when it has none (or they do not parse). */
static size_t read_metrics(const tdm__run_record *run, metric *list) {
  if (run->metrics == NULL) return 0;
  tdm__json_doc doc;
  tdm_error ignored;
  if (tdm__json_parse(&doc, run->metrics, strlen(run->metrics), "metrics",
                      TDM__JSON_ALLOW_NAN, &ignored) != TDM_OK)
    return 0;
  size_t count = 0;
  if (doc.root->type == TDM__JSON_OBJECT)
    flatten(doc.root, "", list, &count, MAX_METRICS);
  tdm__json_doc_free(&doc);
  return count;
}

/* ---- printing ---- */

/* Appends a NUL-terminated string: no byte counts to get wrong. */
static int put(tdm__buf *b, const char *s) {
  return tdm__buf_append(b, s, strlen(s));
}

/* A number for JSON: NaN and infinities are null. */
static int json_number(tdm__buf *b, double v) {
  if (!isfinite(v)) return put(b, "null");
  return tdm__buf_printf(b, "%.17g", v);
}

static int json_distribution(tdm__buf *b, const distribution *d) {
  int rc = tdm__buf_printf(b, "{\"count\": %zu, \"missing\": %zu", d->count,
                           d->missing);
  const char *names[] = {"mean", "std", "min"};
  const double values[] = {d->mean, d->std, d->min};
  for (int i = 0; i < 3 && rc == TDM_OK; i++) {
    rc = tdm__buf_printf(b, ", \"%s\": ", names[i]);
    if (rc == TDM_OK) rc = json_number(b, values[i]);
  }
  for (int i = 0; i < 7 && rc == TDM_OK; i++) {
    rc = tdm__buf_printf(b, ", \"%s\": ", percentile_names[i]);
    if (rc == TDM_OK) rc = json_number(b, d->p[i]);
  }
  if (rc == TDM_OK) rc = tdm__buf_printf(b, ", \"max\": ");
  if (rc == TDM_OK) rc = json_number(b, d->max);
  if (rc == TDM_OK) rc = put(b, "}");
  return rc;
}

typedef struct comparison {
  const tdm__run_record *a, *b;
  const output *oa, *ob;
  distribution da, db;
  double psi, mean_delta;
  int by_key;
  size_t matched;
  const size_t *partner;
  size_t scores_changed;
  double mean_abs_delta; /* over paired rows with both scores */
  int decisions;          /* both outputs have a decision column */
  size_t decisions_compared, decisions_changed;
  size_t examples;        /* how many to show */
  metric *ma, *mb;
  size_t nma, nmb;
} comparison;

static const char *or_dash(const char *s) { return s ? s : "-"; }

static void print_text(const comparison *c) {
  const tdm__run_record *a = c->a, *b = c->b;
  printf("%-10s  %-40s  %s\n", "", "A", "B");
  printf("%-10s  %-40s  %s\n", "run", a->id, b->id);
  printf("%-10s  %-40s  %s\n", "command", or_dash(a->command),
         or_dash(b->command));
  printf("%-10s  %-40s  %s\n", "started", or_dash(a->started_at),
         or_dash(b->started_at));
  printf("%-10s  %-40s  %s\n", "model", or_dash(a->model_version),
         or_dash(b->model_version));
  if (a->pipeline_sha256 || b->pipeline_sha256)
    printf("%-10s  %-40.12s  %.12s\n", "pipeline", or_dash(a->pipeline_sha256),
           or_dash(b->pipeline_sha256));
  printf("%-10s  %-40.12s  %.12s%s\n", "input", or_dash(a->input_sha256),
         or_dash(b->input_sha256),
         a->input_sha256 && b->input_sha256 &&
                 strcmp(a->input_sha256, b->input_sha256) == 0
             ? ""
             : "  (different inputs)");
  printf("%-10s  %-40s  %s\n", "output", c->oa->path, c->ob->path);
  printf("%-10s  %-40zu  %zu\n", "rows", c->oa->rows, c->ob->rows);

  printf("\n%-10s  %14s  %14s  %14s\n", "score", "A", "B", "B - A");
  printf("%-10s  %14zu  %14zu  %14lld\n", "count", c->da.count, c->db.count,
         (long long)c->db.count - (long long)c->da.count);
  const char *names[] = {"mean", "std", "min"};
  const double va[] = {c->da.mean, c->da.std, c->da.min};
  const double vb[] = {c->db.mean, c->db.std, c->db.min};
  for (int i = 0; i < 3; i++)
    printf("%-10s  %14.6g  %14.6g  %+14.6g\n", names[i], va[i], vb[i],
           vb[i] - va[i]);
  for (int i = 0; i < 7; i++)
    printf("%-10s  %14.6g  %14.6g  %+14.6g\n", percentile_names[i],
           c->da.p[i], c->db.p[i], c->db.p[i] - c->da.p[i]);
  printf("%-10s  %14.6g  %14.6g  %+14.6g\n", "max", c->da.max, c->db.max,
         c->db.max - c->da.max);

  printf("\nshift: mean delta %+.6g, PSI %.6f (%d bins at A's deciles)\n",
         c->mean_delta, c->psi, PSI_BINS);
  if (c->by_key)
    printf("paired by %s: %zu rows (%zu only in A, %zu only in B)\n",
           c->oa->key_name, c->matched, c->oa->rows - c->matched,
           c->ob->rows - c->matched);
  else
    printf("paired by position: %zu rows\n", c->matched);
  printf("scores changed: %zu of %zu (mean |B - A| %.6g)\n", c->scores_changed,
         c->matched, c->mean_abs_delta);
  if (c->decisions) {
    printf("decisions changed: %zu of %zu\n", c->decisions_changed,
           c->decisions_compared);
    size_t shown = 0;
    for (size_t i = 0; i < c->oa->rows && shown < c->examples; i++) {
      size_t j = c->partner[i];
      if (j == SIZE_MAX) continue;
      const char *x = text_at(c->oa, c->oa->decisions[i]);
      const char *y = text_at(c->ob, c->ob->decisions[j]);
      if (x == NULL || y == NULL || strcmp(x, y) == 0) continue;
      if (shown++ == 0)
        printf("  %-8s  %-20s  %12s  %-10s  %12s  %s\n", "row",
               c->by_key ? c->oa->key_name : "", "A score", "A decision",
               "B score", "B decision");
      const char *id = c->by_key ? text_at(c->oa, c->oa->keys[i]) : NULL;
      printf("  %-8zu  %-20s  %12.6g  %-10s  %12.6g  %s\n", i + 1,
             id ? id : "", c->oa->scores[i], x, c->ob->scores[j], y);
    }
  }
  if (c->nma > 0 && c->nmb > 0) {
    printf("\n%-24s  %14s  %14s  %14s\n", "metric", "A", "B", "B - A");
    for (size_t i = 0; i < c->nma; i++)
      for (size_t j = 0; j < c->nmb; j++)
        if (strcmp(c->ma[i].name, c->mb[j].name) == 0)
          printf("%-24s  %14.6g  %14.6g  %+14.6g\n", c->ma[i].name,
                 c->ma[i].value, c->mb[j].value,
                 c->mb[j].value - c->ma[i].value);
  }
}

static int json_report(tdm__buf *b, const comparison *c) {
  int same_input = c->a->input_sha256 && c->b->input_sha256 &&
                   strcmp(c->a->input_sha256, c->b->input_sha256) == 0;
  int rc = put(b, "{\"a\": ");
  if (rc == TDM_OK) rc = tdm__run_record_json(b, c->a);
  if (rc == TDM_OK) rc = put(b, ", \"b\": ");
  if (rc == TDM_OK) rc = tdm__run_record_json(b, c->b);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(b, ", \"same_input\": %s, \"scores\": {\"a\": ",
                         same_input ? "true" : "false");
  if (rc == TDM_OK) rc = json_distribution(b, &c->da);
  if (rc == TDM_OK) rc = put(b, ", \"b\": ");
  if (rc == TDM_OK) rc = json_distribution(b, &c->db);
  if (rc == TDM_OK) rc = put(b, "}, \"shift\": {\"mean_delta\": ");
  if (rc == TDM_OK) rc = json_number(b, c->mean_delta);
  if (rc == TDM_OK) rc = put(b, ", \"psi\": ");
  if (rc == TDM_OK) rc = json_number(b, c->psi);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(b,
                         ", \"psi_bins\": %d, \"psi_epsilon\": %g, "
                         "\"scores_changed\": %zu, \"mean_abs_delta\": ",
                         PSI_BINS, PSI_EPSILON, c->scores_changed);
  if (rc == TDM_OK) rc = json_number(b, c->mean_abs_delta);
  if (rc == TDM_OK) rc = put(b, "}, \"pairing\": {\"by\": ");
  if (rc == TDM_OK)
    rc = c->by_key ? tdm__json_append_string(b, c->oa->key_name)
                   : put(b, "\"position\"");
  if (rc == TDM_OK)
    rc = tdm__buf_printf(b,
                         ", \"paired\": %zu, \"only_a\": %zu, \"only_b\": "
                         "%zu}, \"decisions\": ",
                         c->matched, c->oa->rows - c->matched,
                         c->ob->rows - c->matched);
  if (rc == TDM_OK && !c->decisions) rc = put(b, "null");
  if (rc == TDM_OK && c->decisions) {
    rc = tdm__buf_printf(b,
                         "{\"compared\": %zu, \"changed\": %zu, "
                         "\"examples\": [",
                         c->decisions_compared, c->decisions_changed);
    size_t shown = 0;
    for (size_t i = 0; i < c->oa->rows && shown < c->examples && rc == TDM_OK;
         i++) {
      size_t j = c->partner[i];
      if (j == SIZE_MAX) continue;
      const char *x = text_at(c->oa, c->oa->decisions[i]);
      const char *y = text_at(c->ob, c->ob->decisions[j]);
      if (x == NULL || y == NULL || strcmp(x, y) == 0) continue;
      rc = tdm__buf_printf(b, "%s{\"row_a\": %zu, \"row_b\": %zu, \"id\": ",
                           shown++ ? ", " : "", i + 1, j + 1);
      const char *id = c->by_key ? text_at(c->oa, c->oa->keys[i]) : NULL;
      if (rc == TDM_OK)
        rc = id ? tdm__json_append_string(b, id) : put(b, "null");
      if (rc == TDM_OK) rc = put(b, ", \"a_score\": ");
      if (rc == TDM_OK) rc = json_number(b, c->oa->scores[i]);
      if (rc == TDM_OK) rc = put(b, ", \"b_score\": ");
      if (rc == TDM_OK) rc = json_number(b, c->ob->scores[j]);
      if (rc == TDM_OK) rc = put(b, ", \"a_decision\": ");
      if (rc == TDM_OK) rc = tdm__json_append_string(b, x);
      if (rc == TDM_OK) rc = put(b, ", \"b_decision\": ");
      if (rc == TDM_OK) rc = tdm__json_append_string(b, y);
      if (rc == TDM_OK) rc = put(b, "}");
    }
    if (rc == TDM_OK) rc = put(b, "]}");
  }
  if (rc == TDM_OK) rc = put(b, ", \"metrics\": ");
  if (rc == TDM_OK && (c->nma == 0 || c->nmb == 0))
    rc = put(b, "null");
  if (rc == TDM_OK && c->nma > 0 && c->nmb > 0) {
    rc = put(b, "[");
    int first = 1;
    for (size_t i = 0; i < c->nma && rc == TDM_OK; i++)
      for (size_t j = 0; j < c->nmb && rc == TDM_OK; j++) {
        if (strcmp(c->ma[i].name, c->mb[j].name) != 0) continue;
        rc = put(b, first ? "{\"name\": " : ", {\"name\": ");
        first = 0;
        if (rc == TDM_OK) rc = tdm__json_append_string(b, c->ma[i].name);
        if (rc == TDM_OK) rc = put(b, ", \"a\": ");
        if (rc == TDM_OK) rc = json_number(b, c->ma[i].value);
        if (rc == TDM_OK) rc = put(b, ", \"b\": ");
        if (rc == TDM_OK) rc = json_number(b, c->mb[j].value);
        if (rc == TDM_OK) rc = put(b, ", \"delta\": ");
        if (rc == TDM_OK) rc = json_number(b, c->mb[j].value - c->ma[i].value);
        if (rc == TDM_OK) rc = put(b, "}");
      }
    if (rc == TDM_OK) rc = put(b, "]");
  }
  if (rc == TDM_OK) rc = put(b, "}\n");
  return rc;
}

/* Everything the comparison computes from the two outputs. */
static int compare_outputs(comparison *c, size_t *partner, tdm_error *err) {
  int rc = describe(c->oa, &c->da, err);
  if (rc == TDM_OK) rc = describe(c->ob, &c->db, err);
  if (rc != TDM_OK) return rc;
  c->mean_delta = c->db.mean - c->da.mean;
  c->psi = psi(&c->da, &c->db);
  rc = pair_rows(c->oa, c->ob, partner, &c->by_key, &c->matched, err);
  if (rc != TDM_OK) return rc;
  c->partner = partner;
  c->decisions = c->oa->has_decision && c->ob->has_decision;
  double abs_sum = 0;
  size_t both = 0;
  for (size_t i = 0; i < c->oa->rows; i++) {
    size_t j = partner[i];
    if (j == SIZE_MAX) continue;
    double x = c->oa->scores[i], y = c->ob->scores[j];
    if (!isnan(x) && !isnan(y)) {
      abs_sum += fabs(y - x);
      both++;
    }
    if (!(x == y || (isnan(x) && isnan(y)))) c->scores_changed++;
    const char *dx = text_at(c->oa, c->oa->decisions[i]);
    const char *dy = text_at(c->ob, c->ob->decisions[j]);
    if (dx != NULL && dy != NULL) {
      c->decisions_compared++;
      if (strcmp(dx, dy) != 0) c->decisions_changed++;
    }
  }
  c->mean_abs_delta = both ? abs_sum / (double)both : NAN;
  return TDM_OK;
}

int tdm__cmd_compare(int argc, char **argv) {
  static const struct option long_options[] = {
      {"registry", required_argument, NULL, 'r'},
      {"examples", required_argument, NULL, 'e'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *registry = NULL;
  size_t examples = 10;
  int json = 0;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":", long_options, NULL)) != -1) {
    switch (c) {
      case 'r': registry = optarg; break;
      case 'e':
        if (strcmp(optarg, "0") == 0)
          examples = 0;
        else if (!tdm__parse_count(optarg, SIZE_MAX, &examples))
          return tdm__usage_error(
              "compare", "--examples must be a number, not '%s'", optarg);
        break;
      case 'j': json = 1; break;
      case 'h': fputs(compare_help, stdout); return TDM_EXIT_OK;
      case ':':
        return tdm__usage_error("compare", "%s needs a value",
                                argv[optind - 1]);
      default:
        return tdm__usage_error("compare", "unknown option '%s'",
                                argv[optind - 1]);
    }
  }
  if (argc - optind != 2)
    return tdm__usage_error("compare", "give two run ids");

  char path[4096];
  tdm_error err;
  int rc = TDM_OK;
  if (registry != NULL)
    snprintf(path, sizeof path, "%s", registry);
  else
    rc = tdm__registry_default_path(path, sizeof path, &err);
  tdm__registry *reg = NULL;
  if (rc == TDM_OK)
    rc = tdm__registry_open(path, TDM__REGISTRY_READ, &reg, &err);
  tdm__run_record a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  if (rc == TDM_OK) rc = tdm__registry_get(reg, argv[optind], &a, &err);
  if (rc == TDM_OK) rc = tdm__registry_get(reg, argv[optind + 1], &b, &err);
  tdm__registry_close(reg);
  if (rc != TDM_OK) {
    tdm__run_record_free(&a);
    tdm__run_record_free(&b);
    return tdm__report(rc, &err);
  }

  if (!(a.input_sha256 && b.input_sha256 &&
        strcmp(a.input_sha256, b.input_sha256) == 0))
    fprintf(stderr,
            "tandem compare: warning: the runs read different inputs (%.12s "
            "and %.12s)\n",
            or_dash(a.input_sha256), or_dash(b.input_sha256));

  output oa, ob;
  memset(&ob, 0, sizeof ob);
  rc = read_output(&a, &oa, &err);
  if (rc == TDM_OK) {
    rc = read_output(&b, &ob, &err);
    if (rc != TDM_OK) output_free(&oa);
  }
  if (rc != TDM_OK) {
    tdm__run_record_free(&a);
    tdm__run_record_free(&b);
    return tdm__report(rc, &err);
  }

  comparison cmp;
  memset(&cmp, 0, sizeof cmp);
  cmp.a = &a;
  cmp.b = &b;
  cmp.oa = &oa;
  cmp.ob = &ob;
  cmp.examples = examples;
  metric *ma = tdm__calloc(MAX_METRICS, sizeof *ma);
  metric *mb = tdm__calloc(MAX_METRICS, sizeof *mb);
  size_t *partner = tdm__malloc((oa.rows ? oa.rows : 1) * sizeof *partner);
  if (ma == NULL || mb == NULL || partner == NULL)
    rc = tdm__fail(&err, TDM_ENOMEM, "out of memory");
  if (rc == TDM_OK) {
    cmp.ma = ma;
    cmp.mb = mb;
    cmp.nma = read_metrics(&a, ma);
    cmp.nmb = read_metrics(&b, mb);
    rc = compare_outputs(&cmp, partner, &err);
  }
  if (rc == TDM_OK) {
    if (json) {
      tdm__buf out = {0};
      if (json_report(&out, &cmp) == TDM_OK)
        fwrite(out.data, 1, out.len, stdout);
      else
        rc = tdm__fail(&err, TDM_ENOMEM, "out of memory");
      tdm__buf_free(&out);
    } else {
      print_text(&cmp);
    }
  }
  tdm__free(cmp.da.sorted);
  tdm__free(cmp.db.sorted);
  tdm__free(ma);
  tdm__free(mb);
  tdm__free(partner);
  output_free(&oa);
  output_free(&ob);
  tdm__run_record_free(&a);
  tdm__run_record_free(&b);
  return rc == TDM_OK ? TDM_EXIT_OK : tdm__report(rc, &err);
}
