/*
 * compare.c - what `tandem compare` and `tandem report` compute from two
 * recorded runs: each run's output is found through its registry record,
 * checked against the SHA-256 recorded for it and read (CSV or JSON
 * Lines); then each score distribution, the shift between them (mean
 * delta and the population stability index at A's deciles), the rows
 * whose decision changed (paired by a shared id column, the k-th
 * occurrence of an id with the k-th, else by position) and the numeric
 * metrics recorded for each run. No printing here: the commands format it.
 */
#include "compare.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"
#include "../io/csv.h"

void tdm__run_output_free(tdm__run_output *o) {
  tdm__free(o->scores);
  tdm__free(o->keys);
  tdm__free(o->decisions);
  tdm__free(o->feature_names);
  tdm__free(o->features);
  tdm__buf_free(&o->text);
}

const char *tdm__run_output_text(const tdm__run_output *o, size_t offset) {
  return offset == SIZE_MAX ? NULL : o->text.data + offset;
}

/* Columns that are results, not the row's identity. */
static int is_result_column(const char *name) {
  return strcmp(name, "score") == 0 || strncmp(name, "score_", 6) == 0 ||
         strcmp(name, "scores") == 0 || strcmp(name, "margin") == 0 ||
         strncmp(name, "margin_", 7) == 0 || strcmp(name, "margins") == 0 ||
         strcmp(name, "decision") == 0 || strcmp(name, "duplicate") == 0 ||
         strcmp(name, "model_version") == 0 || strcmp(name, "features") == 0 ||
         strcmp(name, "shadow_score") == 0 ||
         strcmp(name, "shadow_decision") == 0;
}

static int is_jsonl(const char *path) {
  size_t n = strlen(path);
  return (n >= 6 && strcmp(path + n - 6, ".jsonl") == 0) ||
         (n >= 7 && strcmp(path + n - 7, ".ndjson") == 0);
}

static int add_row(tdm__run_output *o, size_t *cap, tdm_error *err) {
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
static int keep_text(tdm__run_output *o, const char *s, size_t len,
                     size_t *at) {
  *at = o->text.len;
  int rc = tdm__buf_append(&o->text, s, len);
  if (rc == TDM_OK) rc = tdm__buf_append(&o->text, "", 1);
  return rc;
}

static int read_csv_output(tdm__run_output *o, tdm__csv *csv, tdm_error *err) {
  tdm__csv_record rec;
  int got = tdm__csv_next(csv, &rec, err);
  if (got <= 0)
    return got < 0 ? got : tdm__fail(err, TDM_EPARSE, "%s: empty", o->path);
  size_t score_col = SIZE_MAX, decision_col = SIZE_MAX, key_col = SIZE_MAX;
  for (size_t i = 0; i < rec.count; i++) {
    const char *name = rec.fields[i].text;
    /* A --margin run's values compare as its scores do. */
    if (strcmp(name, o->score_name) == 0 ||
        (strcmp(o->score_name, "score") == 0 && strcmp(name, "margin") == 0))
      score_col = i;
    if (strcmp(name, o->decision_name) == 0) decision_col = i;
    if (key_col == SIZE_MAX && !is_result_column(name) &&
        strlen(name) < sizeof o->key_name) {
      key_col = i;
      snprintf(o->key_name, sizeof o->key_name, "%s", name);
    }
  }
  if (score_col == SIZE_MAX)
    return tdm__fail(err, TDM_EINVAL,
                     "%s: no '%s' column to compare (%s)", o->path,
                     o->score_name,
                     strcmp(o->score_name, "score") == 0
                         ? "a features-only or multiclass output"
                         : "its pipeline has no shadow: model");
  o->has_decision = decision_col != SIZE_MAX;
  size_t cap = 0;
  while ((got = tdm__csv_next(csv, &rec, err)) > 0) {
    if (rec.blank) continue;
    int rc = add_row(o, &cap, err);
    if (rc != TDM_OK) return rc;
    size_t r = o->rows;
    if (score_col >= rec.count ||
        tdm__parse_cell_number(rec.fields[score_col].text,
                               rec.fields[score_col].len, &o->scores[r]) != 0)
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

/* The first line's "features" object names the features every line is
 * read for. */
static int start_features(tdm__run_output *o, const tdm__json *features) {
  if (features == NULL || features->type != TDM__JSON_OBJECT ||
      features->count == 0)
    return TDM_OK;
  o->feature_names = tdm__malloc(features->count * sizeof *o->feature_names);
  if (o->feature_names == NULL) return TDM_ENOMEM;
  for (size_t i = 0; i < features->count; i++) {
    int rc = keep_text(o, features->keys[i], strlen(features->keys[i]),
                       &o->feature_names[i]);
    if (rc != TDM_OK) return rc;
  }
  o->num_features = features->count;
  return TDM_OK;
}

/* Row r's feature values (NaN: absent, null or not a number); the
 * matrix grows with the row arrays. */
static int keep_features(tdm__run_output *o, size_t r, size_t *rows_held,
                         const tdm__json *features) {
  if (o->num_features == 0) return TDM_OK;
  if (r >= *rows_held) {
    size_t grown_rows = *rows_held ? *rows_held * 2 : 1024;
    double *grown =
        tdm__realloc(o->features, grown_rows * o->num_features * sizeof *grown);
    if (grown == NULL) return TDM_ENOMEM;
    o->features = grown;
    *rows_held = grown_rows;
  }
  double *row = o->features + r * o->num_features;
  for (size_t f = 0; f < o->num_features; f++) {
    const tdm__json *v =
        features && features->type == TDM__JSON_OBJECT
            ? tdm__json_get(features, o->text.data + o->feature_names[f])
            : NULL;
    if (v == NULL || tdm__json_feature_value(v, &row[f]) != 0) row[f] = NAN;
  }
  return TDM_OK;
}

static int read_jsonl_output(tdm__run_output *o, tdm__csv *csv,
                             int with_features, tdm_error *err) {
  const char *line_text;
  size_t len, line, cap = 0, feature_rows = 0;
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
      o->has_decision = tdm__json_get(root, o->decision_name) != NULL;
      if (with_features &&
          start_features(o, tdm__json_get(root, "features")) != TDM_OK) {
        tdm__json_doc_free(&doc);
        return tdm__fail(err, TDM_ENOMEM, "out of memory");
      }
      first = 0;
    }
    rc = add_row(o, &cap, err);
    size_t r = o->rows;
    const tdm__json *score = tdm__json_get(root, o->score_name);
    if (score == NULL && strcmp(o->score_name, "score") == 0)
      score = tdm__json_get(root, "margin");
    if (rc == TDM_OK &&
        (score == NULL || tdm__json_feature_value(score, &o->scores[r]) != 0))
      rc = tdm__fail(err, TDM_EINVAL, "%s:%zu: no numeric '%s' to compare%s",
                     o->path, line, o->score_name,
                     strcmp(o->score_name, "score") == 0
                         ? ""
                         : " (its pipeline has no shadow: model)");
    if (rc == TDM_OK) {
      o->keys[r] = o->decisions[r] = SIZE_MAX;
      const tdm__json *key =
          o->key_name[0] ? tdm__json_get(root, o->key_name) : NULL;
      const tdm__json *decision = tdm__json_get(root, o->decision_name);
      if (key != NULL && key->type == TDM__JSON_STRING)
        rc = keep_text(o, key->text, key->count, &o->keys[r]);
      else if (key != NULL && key->type == TDM__JSON_NUMBER)
        rc = keep_text(o, key->text, key->text_len, &o->keys[r]);
      if (rc == TDM_OK && decision != NULL &&
          decision->type == TDM__JSON_STRING)
        rc = keep_text(o, decision->text, decision->count, &o->decisions[r]);
      if (rc == TDM_OK)
        rc =
            keep_features(o, r, &feature_rows, tdm__json_get(root, "features"));
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
static int read_output(const tdm__run_record *run, const char *score_name,
                       const char *decision_name, int with_features,
                       tdm__run_output *o, tdm_error *err) {
  memset(o, 0, sizeof *o);
  o->score_name = score_name;
  o->decision_name = decision_name;
  o->path = run->output_path;
  if (o->path == NULL || run->output_sha256 == NULL)
    return tdm__fail(err, TDM_ENOTFOUND, "run %s: no output recorded", run->id);
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
    return tdm__fail(err, TDM_EIO, "run %s: reading output %s failed", run->id,
                     o->path);
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
    rc = is_jsonl(o->path) ? read_jsonl_output(o, csv, with_features, err)
                           : read_csv_output(o, csv, err);
    if (rc > 0) rc = TDM_OK;
  } else {
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  tdm__csv_close(csv);
  fclose(fp);
  if (rc != TDM_OK) tdm__run_output_free(o);
  return rc;
}

int tdm__run_output_read(const tdm__run_record *run, int with_features,
                         tdm__run_output *o, tdm_error *err) {
  return read_output(run, "score", "decision", with_features, o, err);
}

static int compare_decision_counts(const void *x, const void *y) {
  const tdm__decision_count *a = x, *b = y;
  if (a->count != b->count) return a->count > b->count ? -1 : 1;
  return strcmp(a->decision, b->decision);
}

static int compare_strings(const void *x, const void *y) {
  return strcmp(*(const char *const *)x, *(const char *const *)y);
}

int tdm__decision_counts(const tdm__run_output *o, tdm__decision_count **out,
                         size_t *n, tdm_error *err) {
  *out = NULL;
  *n = 0;
  if (!o->has_decision || o->rows == 0) return TDM_OK;
  /* Sorting the rows' decisions groups equal ones: O(rows log rows), for
   * any number of distinct decisions. */
  const char **all = tdm__malloc(o->rows * sizeof *all);
  tdm__decision_count *counts = tdm__malloc(o->rows * sizeof *counts);
  if (all == NULL || counts == NULL) {
    tdm__free(all);
    tdm__free(counts);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  size_t m = 0;
  for (size_t i = 0; i < o->rows; i++) {
    const char *d = tdm__run_output_text(o, o->decisions[i]);
    if (d != NULL) all[m++] = d;
  }
  qsort(all, m, sizeof *all, compare_strings);
  size_t k = 0;
  for (size_t i = 0; i < m; i++) {
    if (k > 0 && strcmp(counts[k - 1].decision, all[i]) == 0) {
      counts[k - 1].count++;
    } else {
      counts[k].decision = all[i];
      counts[k].count = 1;
      k++;
    }
  }
  tdm__free(all);
  qsort(counts, k, sizeof *counts, compare_decision_counts);
  *out = counts;
  *n = k;
  return TDM_OK;
}

/* ---- statistics ---- */

static const double percentiles[7] = {0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99};
const char *const tdm__score_percentile_names[7] = {"p1",  "p5",  "p25", "p50",
                                                    "p75", "p95", "p99"};

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

void tdm__sort_doubles(double *values, size_t n) {
  qsort(values, n, sizeof *values, compare_doubles);
}

double tdm__psi_of_fractions(const double *reference, const double *live,
                             size_t n) {
  double total = 0;
  for (size_t i = 0; i < n; i++) {
    double x = reference[i] > 0 ? reference[i] : TDM__PSI_EPSILON;
    double y = live[i] > 0 ? live[i] : TDM__PSI_EPSILON;
    total += (y - x) * log(y / x);
  }
  return total;
}

double tdm__quantile_sorted(const double *sorted, size_t n, double q) {
  double pos = q * (double)(n - 1);
  size_t lo = (size_t)floor(pos);
  size_t hi = lo + 1 < n ? lo + 1 : lo;
  double frac = pos - (double)lo;
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

int tdm__score_describe(const tdm__run_output *o, tdm__score_distribution *d,
                        tdm_error *err) {
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
    d->p[i] = tdm__quantile_sorted(d->sorted, d->count, percentiles[i]);
  return TDM_OK;
}

/* Scores at or below each cut, counted per bin: bin i is (cut[i-1], cut[i]]. */
static void bin_counts(const double *sorted, size_t n, const double *cuts,
                       double fractions[TDM__PSI_BINS]) {
  size_t below = 0;
  for (int i = 0; i < TDM__PSI_BINS; i++) {
    size_t upto = n;
    if (i < TDM__PSI_BINS - 1) {
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
static double psi(const tdm__score_distribution *a,
                  const tdm__score_distribution *b) {
  if (a->count == 0 || b->count == 0) return NAN;
  double cuts[TDM__PSI_BINS - 1];
  for (int i = 0; i < TDM__PSI_BINS - 1; i++)
    cuts[i] = tdm__quantile_sorted(a->sorted, a->count, (double)(i + 1) / TDM__PSI_BINS);
  double fa[TDM__PSI_BINS], fb[TDM__PSI_BINS];
  bin_counts(a->sorted, a->count, cuts, fa);
  bin_counts(b->sorted, b->count, cuts, fb);
  return tdm__psi_of_fractions(fa, fb, TDM__PSI_BINS);
}

/*
 * PSI of B's values of a feature against A's: 10 bins at the deciles of
 * A's present values and an 11th for missing values, each a fraction of
 * all rows (live drift's definition, docs/pipelines.md). NaN when A has
 * no present value or either run no row.
 */
static int feature_psi(const tdm__run_output *a, size_t fa,
                       const tdm__run_output *b, size_t fb, double *out) {
  *out = NAN;
  if (a->rows == 0 || b->rows == 0) return TDM_OK;
  double *sa = tdm__malloc(a->rows * sizeof *sa);
  double *sb = tdm__malloc(b->rows * sizeof *sb);
  if (sa == NULL || sb == NULL) {
    tdm__free(sa);
    tdm__free(sb);
    return TDM_ENOMEM;
  }
  size_t na = 0, nb = 0;
  for (size_t i = 0; i < a->rows; i++) {
    double v = a->features[i * a->num_features + fa];
    if (!isnan(v)) sa[na++] = v;
  }
  for (size_t i = 0; i < b->rows; i++) {
    double v = b->features[i * b->num_features + fb];
    if (!isnan(v)) sb[nb++] = v;
  }
  if (na > 0) {
    tdm__sort_doubles(sa, na);
    tdm__sort_doubles(sb, nb);
    double cuts[TDM__PSI_BINS - 1];
    for (int i = 0; i < TDM__PSI_BINS - 1; i++)
      cuts[i] = tdm__quantile_sorted(sa, na, (double)(i + 1) / TDM__PSI_BINS);
    double fra[TDM__PSI_BINS + 1] = {0}, frb[TDM__PSI_BINS + 1] = {0};
    bin_counts(sa, na, cuts, fra);
    if (nb > 0) bin_counts(sb, nb, cuts, frb);
    /* bin_counts gives fractions of the present values: rescale them to
     * fractions of all rows, and add the missing bin. */
    for (int i = 0; i < TDM__PSI_BINS; i++) {
      fra[i] *= (double)na / (double)a->rows;
      frb[i] *= (double)nb / (double)b->rows;
    }
    fra[TDM__PSI_BINS] = (double)(a->rows - na) / (double)a->rows;
    frb[TDM__PSI_BINS] = (double)(b->rows - nb) / (double)b->rows;
    *out = tdm__psi_of_fractions(fra, frb, TDM__PSI_BINS + 1);
  }
  tdm__free(sa);
  tdm__free(sb);
  return TDM_OK;
}

/* The PSI of each of A's features that B has too. */
static int compare_features(tdm__comparison *c) {
  const tdm__run_output *a = c->oa, *b = c->ob;
  if (a->num_features == 0 || b->num_features == 0) return TDM_OK;
  c->feature_psi = tdm__malloc(a->num_features * sizeof *c->feature_psi);
  c->feature_psi_names =
      tdm__malloc(a->num_features * sizeof *c->feature_psi_names);
  if (c->feature_psi == NULL || c->feature_psi_names == NULL) return TDM_ENOMEM;
  for (size_t fa = 0; fa < a->num_features; fa++) {
    const char *name = tdm__run_output_text(a, a->feature_names[fa]);
    for (size_t fb = 0; fb < b->num_features; fb++) {
      if (strcmp(name, tdm__run_output_text(b, b->feature_names[fb])) != 0)
        continue;
      size_t k = c->num_feature_psi;
      int rc = feature_psi(a, fa, b, fb, &c->feature_psi[k]);
      if (rc != TDM_OK) return rc;
      c->feature_psi_names[k] = name;
      c->num_feature_psi++;
      break;
    }
  }
  return TDM_OK;
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
  if (x->occurrence != y->occurrence)
    return x->occurrence < y->occurrence ? -1 : 1;
  return x->row < y->row ? -1 : x->row > y->row;
}

static int compare_key_then_row(const void *a, const void *b) {
  const keyed *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  if (c != 0) return c;
  return x->row < y->row ? -1 : x->row > y->row;
}

/* o's rows sorted by (key, occurrence); NULL when a row has no key. */
static keyed *sorted_keys(const tdm__run_output *o) {
  keyed *k = tdm__malloc((o->rows ? o->rows : 1) * sizeof *k);
  if (k == NULL) return NULL;
  for (size_t i = 0; i < o->rows; i++) {
    k[i].key = tdm__run_output_text(o, o->keys[i]);
    if (k[i].key == NULL) k[i].key = "";
    k[i].row = i;
  }
  qsort(k, o->rows, sizeof *k, compare_key_then_row);
  for (size_t i = 0; i < o->rows; i++)
    k[i].occurrence = i > 0 && strcmp(k[i].key, k[i - 1].key) == 0
                          ? k[i - 1].occurrence + 1
                          : 0;
  qsort(k, o->rows, sizeof *k, compare_keyed);
  return k;
}

/*
 * Pairs A's rows with B's: partner[i] is the B row of A's row i, or
 * SIZE_MAX. By key when both outputs have the same id column, else by
 * position. *by_key says which.
 */
static int pair_rows(const tdm__run_output *a, const tdm__run_output *b,
                     size_t *partner, int *by_key, size_t *matched,
                     tdm_error *err) {
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
static void flatten(const tdm__json *v, const char *prefix,
                    tdm__compare_metric *list, size_t *count, size_t max) {
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

/* The numeric metrics of a run; 0 when it has none (or they do not parse). */
static size_t read_metrics(const tdm__run_record *run,
                           tdm__compare_metric *list) {
  if (run->metrics == NULL) return 0;
  tdm__json_doc doc;
  tdm_error ignored;
  if (tdm__json_parse(&doc, run->metrics, strlen(run->metrics), "metrics",
                      TDM__JSON_ALLOW_NAN, &ignored) != TDM_OK)
    return 0;
  size_t count = 0;
  if (doc.root->type == TDM__JSON_OBJECT)
    flatten(doc.root, "", list, &count, TDM__COMPARE_MAX_METRICS);
  tdm__json_doc_free(&doc);
  return count;
}

/* Everything the comparison computes from the two outputs. */
static int compare_outputs(tdm__comparison *c, size_t *partner,
                           tdm_error *err) {
  int rc = tdm__score_describe(c->oa, &c->da, err);
  if (rc == TDM_OK) rc = tdm__score_describe(c->ob, &c->db, err);
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
    const char *dx = tdm__run_output_text(c->oa, c->oa->decisions[i]);
    const char *dy = tdm__run_output_text(c->ob, c->ob->decisions[j]);
    if (dx != NULL && dy != NULL) {
      c->decisions_compared++;
      if (strcmp(dx, dy) != 0) c->decisions_changed++;
    }
  }
  c->mean_abs_delta = both ? abs_sum / (double)both : NAN;
  if (compare_features(c) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  return TDM_OK;
}

/* Keeps the metrics whose name starts with prefix, without it. */
static size_t metrics_under(tdm__compare_metric *list, size_t n,
                            const char *prefix) {
  size_t keep = 0, len = strlen(prefix);
  for (size_t i = 0; i < n; i++)
    if (strncmp(list[i].name, prefix, len) == 0) {
      memmove(list[keep].name, list[i].name + len,
              strlen(list[i].name + len) + 1);
      list[keep++].value = list[i].value;
    }
  return keep;
}

/* Compares what A and B wrote in the named columns; with prefixes, only
 * the metrics under them (a shadow's comparison within one run). */
static int compare(const tdm__run_record *a, const tdm__run_record *b,
                   const char *b_score, const char *b_decision,
                   const char *a_metrics, const char *b_metrics,
                   int with_features, size_t examples, tdm__comparison *c,
                   tdm_error *err) {
  memset(c, 0, sizeof *c);
  c->a = a;
  c->b = b;
  c->examples = examples;
  c->oa = &c->output_a;
  c->ob = &c->output_b;
  int rc = tdm__run_output_read(a, with_features, &c->output_a, err);
  if (rc != TDM_OK) return rc;
  rc = read_output(b, b_score, b_decision, with_features, &c->output_b, err);
  if (rc != TDM_OK) {
    tdm__run_output_free(&c->output_a);
    memset(&c->output_a, 0, sizeof c->output_a);
    return rc;
  }
  c->ma = tdm__calloc(TDM__COMPARE_MAX_METRICS, sizeof *c->ma);
  c->mb = tdm__calloc(TDM__COMPARE_MAX_METRICS, sizeof *c->mb);
  c->partner_storage =
      tdm__malloc((c->oa->rows ? c->oa->rows : 1) * sizeof *c->partner_storage);
  if (c->ma == NULL || c->mb == NULL || c->partner_storage == NULL)
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  if (rc == TDM_OK) {
    c->nma = read_metrics(a, c->ma);
    c->nmb = read_metrics(b, c->mb);
    if (a_metrics != NULL) c->nma = metrics_under(c->ma, c->nma, a_metrics);
    if (b_metrics != NULL) c->nmb = metrics_under(c->mb, c->nmb, b_metrics);
    rc = compare_outputs(c, c->partner_storage, err);
  }
  if (rc != TDM_OK) tdm__comparison_free(c);
  return rc;
}

int tdm__compare_runs(const tdm__run_record *a, const tdm__run_record *b,
                      size_t examples, int with_features, tdm__comparison *c,
                      tdm_error *err) {
  return compare(a, b, "score", "decision", NULL, NULL, with_features,
                 examples, c, err);
}

int tdm__compare_shadow(const tdm__run_record *run, size_t examples,
                        tdm__comparison *c, tdm_error *err) {
  return compare(run, run, "shadow_score", "shadow_decision",
                 "live.by_source.model.", "live.shadow.", 0, examples, c,
                 err);
}

void tdm__comparison_free(tdm__comparison *c) {
  if (c == NULL) return;
  tdm__free(c->da.sorted);
  tdm__free(c->db.sorted);
  tdm__free(c->ma);
  tdm__free(c->mb);
  tdm__free(c->partner_storage);
  tdm__free(c->feature_psi);
  tdm__free(c->feature_psi_names);
  tdm__run_output_free(&c->output_a);
  tdm__run_output_free(&c->output_b);
  memset(c, 0, sizeof *c);
}
