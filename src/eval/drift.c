/*
 * drift.c - live feature and score histograms against a reference
 * distribution (drift.h). At start the reference output is read once:
 * each column's (feature's, score's) values give 9 cuts at the deciles
 * and the fraction of rows in each of the 10 bins and in the missing bin.
 * Then every applied event adds 1 to one bin per column in its shard's
 * counters; a report sums the shards and computes PSI as `tandem compare`
 * does (src/cli/cmd_compare.c: the same quantiles, the same bins, the
 * same floor for an empty bin).
 */
#include "drift.h"

#include "compare.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/json.h"
#include "../io/csv.h"
#include "../store/registry.h"

/* compare's PSI: 10 bins at the reference's deciles, and what an empty
 * bin's fraction counts as so that the logarithm stays finite. */
#define BINS 10
/* Per column: the 10 bins, then the missing values' bin. */
#define SLOTS (BINS + 1)
#define MISSING BINS

/* One histogrammed value: a feature, or the score. */
typedef struct column {
  char *name;
  size_t slot;             /* its index in tdm__result.numbers; score: unused */
  double cuts[BINS - 1];   /* bin i: above cuts[i-1], at or below cuts[i] */
  double reference[SLOTS]; /* the reference's fraction of rows per bin */
} column;

struct tdm__drift {
  column *columns; /* the features in spec order, then the score */
  size_t num_columns;
  int has_score;
  size_t num_shards;
  /* Per shard, `stride` counters (a whole number of cache lines, so that
   * shards never share one): the events, then SLOTS per column. */
  size_t stride;
  atomic_ullong *counters;
  void *counters_block; /* the allocation, before aligning */
  char *run;            /* the reference run's id; NULL for a file */
  char *path;
  size_t rows;       /* reference rows used */
  size_t duplicates; /* reference rows skipped as duplicates */
};

/* ---- reading the reference ---- */

/* The values read, by column: values[c][row], NaN when missing. */
typedef struct reference_rows {
  double **values;
  size_t count, cap;
} reference_rows;

static int add_row(reference_rows *rows, size_t num_columns, tdm_error *err) {
  if (rows->count < rows->cap) return TDM_OK;
  size_t cap = rows->cap ? rows->cap * 2 : 1024;
  for (size_t c = 0; c < num_columns; c++) {
    double *v = tdm__realloc(rows->values[c], cap * sizeof *v);
    if (v == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
    rows->values[c] = v;
  }
  rows->cap = cap;
  return TDM_OK;
}

static int is_jsonl(const char *path) {
  size_t n = strlen(path);
  return (n >= 6 && strcmp(path + n - 6, ".jsonl") == 0) ||
         (n >= 7 && strcmp(path + n - 7, ".ndjson") == 0);
}

static int is_csv(const char *path) {
  size_t n = strlen(path);
  return n >= 4 && strcmp(path + n - 4, ".csv") == 0;
}

static const char how_to_make[] =
    "make the reference with `tandem batch --explain` (JSON Lines) or "
    "`tandem batch --features-only` (CSV)";

/* JSON Lines with a "features" object per line (`batch --explain`). */
static int read_jsonl(tdm__drift *d, const tdm__spec *spec, tdm__csv *csv,
                      reference_rows *rows, tdm_error *err) {
  const char *text;
  size_t len, line;
  int got, first = 1;
  while ((got = tdm__csv_next_line(csv, &text, &len, &line, err)) > 0) {
    if (len == 0) continue;
    tdm__json_doc doc;
    int rc = tdm__json_parse_at(&doc, text, len, d->path, line,
                                TDM__JSON_ALLOW_NAN, err);
    if (rc != TDM_OK) return rc;
    const tdm__json *root = doc.root;
    const tdm__json *features = tdm__json_get(root, "features");
    const tdm__json *duplicate = tdm__json_get(root, "duplicate");
    const tdm__json *score = tdm__json_get(root, "score");
    if (root->type != TDM__JSON_OBJECT)
      rc = tdm__fail(err, TDM_EPARSE, "%s:%zu: not a JSON object", d->path,
                     line);
    else if (features == NULL || features->type != TDM__JSON_OBJECT)
      rc = tdm__fail(err, TDM_EINVAL,
                     "%s:%zu: the reference has no features (a batch output "
                     "made without --explain?): %s",
                     d->path, line, how_to_make);
    if (rc == TDM_OK && first) {
      /* The first line decides whether there is a score, as a header
       * would. */
      double ignored;
      d->has_score =
          score != NULL && tdm__json_feature_value(score, &ignored) == 0;
      first = 0;
    }
    if (rc == TDM_OK && duplicate != NULL &&
        duplicate->type == TDM__JSON_BOOL && duplicate->boolean) {
      d->duplicates++;
      tdm__json_doc_free(&doc);
      continue;
    }
    if (rc == TDM_OK) rc = add_row(rows, d->num_columns, err);
    for (size_t f = 0; f < spec->num_features && rc == TDM_OK; f++) {
      const tdm__json *v = tdm__json_get(features, spec->features[f].name);
      if (v == NULL)
        rc = tdm__fail(err, TDM_EINVAL,
                       "%s:%zu: the reference has no feature '%s' (made by "
                       "another pipeline?)",
                       d->path, line, spec->features[f].name);
      else if (tdm__json_feature_value(v, &rows->values[f][rows->count]) != 0)
        rc = tdm__fail(err, TDM_EPARSE, "%s:%zu: feature '%s' is not a number",
                       d->path, line, spec->features[f].name);
    }
    if (rc == TDM_OK && d->has_score) {
      double *at = &rows->values[spec->num_features][rows->count];
      if (score == NULL || tdm__json_feature_value(score, at) != 0) *at = NAN;
    }
    tdm__json_doc_free(&doc);
    if (rc != TDM_OK) return rc;
    rows->count++;
  }
  return got;
}

/* CSV with a column per feature (`batch --features-only`). */
static int read_csv(tdm__drift *d, const tdm__spec *spec, tdm__csv *csv,
                    reference_rows *rows, tdm_error *err) {
  tdm__csv_record rec;
  int got = tdm__csv_next(csv, &rec, err);
  if (got <= 0)
    return got < 0 ? got : tdm__fail(err, TDM_EPARSE, "%s: empty", d->path);
  size_t *where = tdm__malloc((d->num_columns + 1) * sizeof *where);
  if (where == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  size_t duplicate_col = SIZE_MAX, found = 0;
  for (size_t c = 0; c < d->num_columns + 1; c++) where[c] = SIZE_MAX;
  for (size_t i = 0; i < rec.count; i++) {
    const char *name = rec.fields[i].text;
    if (strcmp(name, "duplicate") == 0) duplicate_col = i;
    if (strcmp(name, "score") == 0) where[spec->num_features] = i;
    for (size_t f = 0; f < spec->num_features; f++)
      if (where[f] == SIZE_MAX && strcmp(name, spec->features[f].name) == 0) {
        where[f] = i;
        found++;
      }
  }
  int rc = TDM_OK;
  if (found == 0)
    rc = tdm__fail(err, TDM_EINVAL,
                   "%s: the reference has no feature columns (a batch output "
                   "made without --features-only?): %s",
                   d->path, how_to_make);
  for (size_t f = 0; f < spec->num_features && rc == TDM_OK; f++)
    if (where[f] == SIZE_MAX)
      rc = tdm__fail(err, TDM_EINVAL,
                     "%s: the reference has no feature '%s' (made by another "
                     "pipeline?)",
                     d->path, spec->features[f].name);
  d->has_score = where[spec->num_features] != SIZE_MAX;
  while (rc == TDM_OK && (got = tdm__csv_next(csv, &rec, err)) > 0) {
    if (rec.blank) continue;
    if (duplicate_col < rec.count &&
        (strcmp(rec.fields[duplicate_col].text, "1") == 0 ||
         strcmp(rec.fields[duplicate_col].text, "true") == 0)) {
      d->duplicates++;
      continue;
    }
    rc = add_row(rows, d->num_columns, err);
    size_t n = spec->num_features + (size_t)d->has_score;
    for (size_t c = 0; c < n && rc == TDM_OK; c++) {
      size_t col = where[c];
      double *at = &rows->values[c][rows->count];
      if (col >= rec.count) {
        *at = NAN;
      } else if (tdm__parse_cell_number(rec.fields[col].text,
                                        rec.fields[col].len, at) != 0) {
        rc = tdm__fail(
            err, TDM_EPARSE, "%s:%zu: '%s' is not a number", d->path, rec.line,
            c < spec->num_features ? spec->features[c].name : "score");
      }
    }
    if (rc == TDM_OK) rows->count++;
  }
  tdm__free(where);
  return rc != TDM_OK ? rc : got;
}

/* The SHA-256 of a whole file, as 64 hex digits. */
static int file_sha256(FILE *fp, const char *path, char hex[65],
                       tdm_error *err) {
  tdm__sha256 ctx;
  tdm__sha256_init(&ctx);
  char block[65536];
  size_t n;
  while ((n = fread(block, 1, sizeof block, fp)) > 0)
    tdm__sha256_update(&ctx, block, n);
  tdm__sha256_final_hex(&ctx, hex);
  if (ferror(fp)) return tdm__fail(err, TDM_EIO, "reading %s failed", path);
  rewind(fp);
  return TDM_OK;
}

/* Finds the reference's file: the argument itself, or a run's output
 * (which must be unchanged since the run, like compare's). */
static int find_reference(tdm__drift *d, const tdm__drift_source *source,
                          char expected_sha256[65], tdm_error *err) {
  const char *ref = source->reference;
  struct stat st;
  expected_sha256[0] = '\0';
  if (stat(ref, &st) == 0 || strchr(ref, '/') != NULL || is_jsonl(ref) ||
      is_csv(ref)) {
    d->path = tdm__strdup(ref);
    return d->path ? TDM_OK : tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  if (source->registry == NULL)
    return tdm__fail(err, TDM_ENOTFOUND,
                     "--drift-reference %s: not a file, and no run registry "
                     "to look the run up in (set TANDEM_REGISTRY or HOME, or "
                     "give --registry)",
                     ref);
  tdm__registry *reg = NULL;
  int rc = tdm__registry_open(source->registry, TDM__REGISTRY_READ, &reg, err);
  tdm__run_record run;
  memset(&run, 0, sizeof run);
  if (rc == TDM_OK) rc = tdm__registry_get(reg, ref, &run, err);
  tdm__registry_close(reg);
  if (rc == TDM_OK && (run.output_path == NULL || run.output_sha256 == NULL))
    rc = tdm__fail(err, TDM_ENOTFOUND, "run %s: no output recorded", run.id);
  if (rc == TDM_OK) {
    d->run = tdm__strdup(run.id);
    d->path = tdm__strdup(run.output_path);
    snprintf(expected_sha256, 65, "%s", run.output_sha256);
    if (d->run == NULL || d->path == NULL)
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  tdm__run_record_free(&run);
  return rc;
}

/* The bin of a value: missing, or the number of cuts below it (bin i
 * holds the values above cut i - 1 and at or below cut i, as compare's
 * bins do). */
static size_t bin_of(const column *c, double v) {
  if (isnan(v)) return MISSING;
  size_t lo = 0, hi = BINS - 1;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (c->cuts[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Cuts and reference fractions of one column from its values (sorted in
 * place: only the non-missing ones keep their order). */
static void describe_column(column *c, double *values, size_t rows) {
  size_t present = 0;
  for (size_t i = 0; i < rows; i++)
    if (!isnan(values[i])) values[present++] = values[i];
  tdm__sort_doubles(values, present);
  for (int i = 0; i < BINS - 1; i++)
    c->cuts[i] =
        present ? tdm__quantile_sorted(values, present, (double)(i + 1) / BINS) : INFINITY;
  size_t counts[SLOTS] = {0};
  counts[MISSING] = rows - present;
  for (size_t i = 0; i < present; i++) counts[bin_of(c, values[i])]++;
  for (int i = 0; i < SLOTS; i++)
    c->reference[i] = rows ? (double)counts[i] / (double)rows : 0;
}

int tdm__drift_open(const tdm__pipeline *p, const tdm__drift_source *source,
                    size_t num_shards, tdm__drift **out, tdm_error *err) {
  *out = NULL;
  const tdm__spec *spec = tdm__pipeline_spec(p);
  tdm__drift *d = tdm__calloc(1, sizeof *d);
  if (d == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  d->num_shards = num_shards;
  d->num_columns = spec->num_features + 1; /* the score's until known */
  d->columns = tdm__calloc(d->num_columns, sizeof *d->columns);
  reference_rows rows = {0};
  rows.values = tdm__calloc(d->num_columns, sizeof *rows.values);
  int rc = d->columns && rows.values
               ? TDM_OK
               : tdm__fail(err, TDM_ENOMEM, "out of memory");
  char expected[65];
  if (rc == TDM_OK) rc = find_reference(d, source, expected, err);
  FILE *fp = NULL;
  if (rc == TDM_OK && (fp = fopen(d->path, "rb")) == NULL)
    rc = tdm__fail(err, TDM_ENOTFOUND, "%s%s%sthe reference %s: %s",
                   d->run ? "run " : "", d->run ? d->run : "",
                   d->run ? ": " : "", d->path, strerror(errno));
  if (rc == TDM_OK && expected[0]) {
    /* Hashing first, in its own pass, reports a changed file as changed
     * rather than as whatever parse error the change causes. */
    char hex[65];
    rc = file_sha256(fp, d->path, hex, err);
    if (rc == TDM_OK && strcmp(hex, expected) != 0)
      rc = tdm__fail(err, TDM_EINVAL,
                     "run %s: output %s changed since the run (SHA-256 %.12s, "
                     "recorded %.12s)",
                     d->run, d->path, hex, expected);
  }
  tdm__csv *csv = NULL;
  if (rc == TDM_OK && tdm__csv_open(&csv, fp, d->path) != TDM_OK)
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  if (rc == TDM_OK) {
    rc = is_jsonl(d->path) ? read_jsonl(d, spec, csv, &rows, err)
                           : read_csv(d, spec, csv, &rows, err);
    if (rc > 0) rc = TDM_OK;
    if (rc != TDM_OK && rc != TDM_ENOMEM && d->run != NULL && err != NULL) {
      /* Name the run too: the file is only where the run wrote it. */
      char message[sizeof err->message];
      snprintf(message, sizeof message, "%s", err->message);
      tdm__fail(err, rc, "run %s: %s", d->run, message);
    }
  }
  tdm__csv_close(csv);
  if (fp != NULL) fclose(fp);
  if (rc == TDM_OK && rows.count == 0)
    rc = tdm__fail(err, TDM_EINVAL, "%s: the reference has no rows", d->path);
  if (rc == TDM_OK && d->has_score) {
    /* A float32 model's scores are exact floats live; the reference holds
     * them as the shortest text, which reads back to the same float. */
    const tdm_model *model = tdm__pipeline_model(p);
    tdm_model_info info;
    if (model != NULL && tdm_model_get_info(model, &info) == TDM_OK &&
        info.float32)
      for (size_t i = 0; i < rows.count; i++)
        rows.values[spec->num_features][i] =
            (double)(float)rows.values[spec->num_features][i];
  }
  if (rc == TDM_OK) {
    d->rows = rows.count;
    d->num_columns = spec->num_features + (size_t)d->has_score;
    for (size_t c = 0; c < d->num_columns && rc == TDM_OK; c++) {
      column *col = &d->columns[c];
      int is_score = c == spec->num_features;
      col->name = tdm__strdup(is_score ? "score" : spec->features[c].name);
      col->slot = is_score ? SIZE_MAX : tdm__pipeline_feature_slot(p, c);
      if (col->name == NULL) rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
      describe_column(col, rows.values[c], rows.count);
    }
  }
  if (rc == TDM_OK) {
    size_t per_line = 64 / sizeof(atomic_ullong);
    d->stride =
        (1 + d->num_columns * SLOTS + per_line - 1) / per_line * per_line;
    d->counters_block =
        tdm__calloc(d->stride * num_shards + per_line, sizeof(atomic_ullong));
    if (d->counters_block == NULL) {
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    } else {
      uintptr_t at = ((uintptr_t)d->counters_block + 63) & ~(uintptr_t)63;
      d->counters = (atomic_ullong *)at;
      tdm__drift_reset(d);
    }
  }
  for (size_t c = 0; c < spec->num_features + 1 && rows.values; c++)
    tdm__free(rows.values[c]);
  tdm__free(rows.values);
  if (rc != TDM_OK) {
    tdm__drift_free(d);
    return rc;
  }
  *out = d;
  return TDM_OK;
}

void tdm__drift_free(tdm__drift *d) {
  if (d == NULL) return;
  for (size_t c = 0; c < d->num_columns && d->columns; c++)
    tdm__free(d->columns[c].name);
  tdm__free(d->columns);
  tdm__free(d->counters_block);
  tdm__free(d->run);
  tdm__free(d->path);
  tdm__free(d);
}

/* ---- counting ---- */

void tdm__drift_add(tdm__drift *d, size_t shard, const tdm__result *r) {
  atomic_ullong *counts = d->counters + shard * d->stride;
  atomic_fetch_add_explicit(&counts[0], 1, memory_order_relaxed);
  for (size_t c = 0; c < d->num_columns; c++) {
    const column *col = &d->columns[c];
    double v = col->slot == SIZE_MAX ? r->score : r->numbers[col->slot];
    atomic_fetch_add_explicit(&counts[1 + c * SLOTS + bin_of(col, v)], 1,
                              memory_order_relaxed);
  }
}

void tdm__drift_reset(tdm__drift *d) {
  for (size_t i = 0; i < d->stride * d->num_shards; i++)
    atomic_store_explicit(&d->counters[i], 0, memory_order_relaxed);
}

/* The events and each column's bin counts, summed over the shards. */
static unsigned long long live_counts(const tdm__drift *d,
                                      unsigned long long *counts) {
  memset(counts, 0, d->num_columns * SLOTS * sizeof *counts);
  unsigned long long events = 0;
  for (size_t s = 0; s < d->num_shards; s++) {
    atomic_ullong *shard = d->counters + s * d->stride;
    events += atomic_load_explicit(&shard[0], memory_order_relaxed);
    for (size_t i = 0; i < d->num_columns * SLOTS; i++)
      counts[i] += atomic_load_explicit(&shard[1 + i], memory_order_relaxed);
  }
  return events;
}

/* compare's PSI over the bins (missing values' bin included: it adds 0
 * when neither side has any); NaN before any live value. */
static double psi(const column *c, const unsigned long long *counts,
                  unsigned long long total) {
  if (total == 0) return NAN;
  double live[SLOTS];
  for (int i = 0; i < SLOTS; i++)
    live[i] = (double)counts[i] / (double)total;
  return tdm__psi_of_fractions(c->reference, live, SLOTS);
}

/* ---- reports ---- */

/* A number as the pipeline writes it; null when not finite. */
static int json_number(tdm__buf *b, double v) {
  if (!isfinite(v)) return tdm__buf_append(b, "null", 4);
  char text[32];
  int n = tdm__format_double(v == 0 ? 0 : v, text);
  return tdm__buf_append(b, text, (size_t)n);
}

static int json_numbers(tdm__buf *b, const double *v, size_t n) {
  int rc = tdm__buf_append(b, "[", 1);
  for (size_t i = 0; i < n && rc == TDM_OK; i++) {
    if (i > 0) rc = tdm__buf_append(b, ",", 1);
    if (rc == TDM_OK) rc = json_number(b, v[i]);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "]", 1);
  return rc;
}

static int json_column(tdm__buf *b, const column *c,
                       const unsigned long long *counts,
                       unsigned long long total) {
  double live[SLOTS];
  for (int i = 0; i < SLOTS; i++)
    live[i] = total ? (double)counts[i] / (double)total : NAN;
  int rc = tdm__buf_append(b, "{\"edges\":", 9);
  if (rc == TDM_OK) rc = json_numbers(b, c->cuts, BINS - 1);
  if (rc == TDM_OK)
    rc = tdm__buf_append(b, ",\"reference\":{\"fractions\":", 26);
  if (rc == TDM_OK) rc = json_numbers(b, c->reference, BINS);
  if (rc == TDM_OK) rc = tdm__buf_append(b, ",\"missing_fraction\":", 20);
  if (rc == TDM_OK) rc = json_number(b, c->reference[MISSING]);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(b, "},\"live\":{\"count\":%llu,\"counts\":[", total);
  for (int i = 0; i < BINS && rc == TDM_OK; i++)
    rc = tdm__buf_printf(b, "%s%llu", i ? "," : "", counts[i]);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(b,
                         "],\"missing\":%llu,\"fractions\":", counts[MISSING]);
  if (rc == TDM_OK) rc = json_numbers(b, live, BINS);
  if (rc == TDM_OK) rc = tdm__buf_append(b, ",\"missing_fraction\":", 20);
  if (rc == TDM_OK) rc = json_number(b, live[MISSING]);
  if (rc == TDM_OK) rc = tdm__buf_printf(b, "},\"count\":%llu,\"psi\":", total);
  if (rc == TDM_OK) rc = json_number(b, psi(c, counts, total));
  if (rc == TDM_OK) rc = tdm__buf_append(b, "}", 1);
  return rc;
}

int tdm__drift_json(const tdm__drift *d, const char *pipeline, tdm__buf *out) {
  unsigned long long *counts =
      tdm__malloc(d->num_columns * SLOTS * sizeof *counts);
  if (counts == NULL) return TDM_ENOMEM;
  unsigned long long total = live_counts(d, counts);
  int rc = tdm__buf_append(out, "{\"pipeline\":", 12);
  if (rc == TDM_OK) rc = tdm__json_append_string(out, pipeline);
  if (rc == TDM_OK) rc = tdm__buf_append(out, ",\"reference\":{\"run\":", 20);
  if (rc == TDM_OK)
    rc = d->run ? tdm__json_append_string(out, d->run)
                : tdm__buf_append(out, "null", 4);
  if (rc == TDM_OK) rc = tdm__buf_append(out, ",\"path\":", 8);
  if (rc == TDM_OK) rc = tdm__json_append_string(out, d->path);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(out,
                         ",\"rows\":%zu,\"duplicates_skipped\":%zu},"
                         "\"events\":%llu,\"bins\":%d,\"psi_epsilon\":%g,"
                         "\"features\":{",
                         d->rows, d->duplicates, total, BINS, TDM__PSI_EPSILON);
  size_t features = d->num_columns - (size_t)d->has_score;
  for (size_t c = 0; c < features && rc == TDM_OK; c++) {
    if (c > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK) rc = tdm__json_append_string(out, d->columns[c].name);
    if (rc == TDM_OK) rc = tdm__buf_append(out, ":", 1);
    if (rc == TDM_OK)
      rc = json_column(out, &d->columns[c], counts + c * SLOTS, total);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "},\"score\":", 10);
  if (rc == TDM_OK)
    rc = d->has_score ? json_column(out, &d->columns[features],
                                    counts + features * SLOTS, total)
                      : tdm__buf_append(out, "null", 4);
  if (rc == TDM_OK) rc = tdm__buf_append(out, "}", 1);
  tdm__free(counts);
  return rc;
}

int tdm__drift_metrics(const tdm__drift *d, const char *pipeline,
                       tdm__buf *out) {
  unsigned long long *counts =
      tdm__malloc(d->num_columns * SLOTS * sizeof *counts);
  if (counts == NULL) return TDM_ENOMEM;
  unsigned long long total = live_counts(d, counts);
  int rc = tdm__buf_printf(
      out,
      "# HELP tandem_feature_psi Population stability index of a feature's "
      "live values (feature=\"score\": the score) against the drift "
      "reference: 10 bins at its deciles and one for missing values.\n"
      "# TYPE tandem_feature_psi gauge\n");
  for (size_t c = 0; c < d->num_columns && rc == TDM_OK; c++) {
    double v = psi(&d->columns[c], counts + c * SLOTS, total);
    char text[32] = "NaN";
    if (isfinite(v)) tdm__format_double(v == 0 ? 0 : v, text);
    rc = tdm__buf_append(out, "tandem_feature_psi{pipeline=", 28);
    if (rc == TDM_OK) rc = tdm__metrics_append_label(out, pipeline);
    if (rc == TDM_OK) rc = tdm__buf_append(out, ",feature=", 9);
    if (rc == TDM_OK) rc = tdm__metrics_append_label(out, d->columns[c].name);
    if (rc == TDM_OK) rc = tdm__buf_printf(out, "} %s\n", text);
  }
  if (rc == TDM_OK)
    rc = tdm__buf_printf(out,
                         "# HELP tandem_drift_events_total Events counted "
                         "into the live drift histograms.\n"
                         "# TYPE tandem_drift_events_total counter\n"
                         "tandem_drift_events_total{pipeline=");
  if (rc == TDM_OK) rc = tdm__metrics_append_label(out, pipeline);
  if (rc == TDM_OK) rc = tdm__buf_printf(out, "} %llu\n", total);
  tdm__free(counts);
  return rc;
}
