/*
 * score.c - the batch scoring runner (see score.h). The main thread reads
 * records into chunks; worker threads parse, score and format contiguous
 * ranges of a chunk's rows (so the output is the same for any thread
 * count) while the main thread reads the next chunk; outputs are written
 * in input order. CSV or JSON Lines in, CSV or JSON Lines out.
 */
#include "score.h"

#include <errno.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/core.h"
#include "../core/json.h"
#include "../io/csv.h"
#include "../model/model.h"

/* A worker's batch of rows holds at most about this many feature values'
 * bytes, so memory stays bounded for very wide inputs too. */
#define BATCH_BYTES (16u << 20)

typedef struct column_map {
  size_t header_line; /* the line the header is on */
  char **header;      /* the input's column names */
  size_t num_columns;
  size_t *feature_col; /* input column of each model feature */
  size_t *keep_col;    /* input column of each --keep column */
} column_map;

static void column_map_free(column_map *map) {
  for (size_t i = 0; i < map->num_columns; i++) tdm__free(map->header[i]);
  tdm__free(map->header);
  tdm__free(map->feature_col);
  tdm__free(map->keep_col);
}

/* The index of `name` in the header, or -1; a repeated name is an error. */
static long find_column(const column_map *map, const char *name,
                        const char *path, tdm_error *err, int *rc) {
  long found = -1;
  for (size_t c = 0; c < map->num_columns; c++) {
    if (strcmp(map->header[c], name) != 0) continue;
    if (found >= 0) {
      *rc = tdm__fail(err, TDM_ESCHEMA,
                      "%s:%zu: column \"%s\" appears twice (columns %ld and "
                      "%zu)",
                      path, map->header_line, name, found + 1, c + 1);
      return -1;
    }
    found = (long)c;
  }
  return found;
}

static int read_header(tdm__csv *csv, const tdm_model *model,
                       const tdm__score_options *opt, column_map *map,
                       tdm_error *err) {
  tdm__csv_record record;
  int rc;
  do {
    rc = tdm__csv_next(csv, &record, err);
  } while (rc == 1 && record.blank);
  if (rc < 0) return rc;
  if (rc == 0)
    return tdm__fail(err, TDM_EPARSE,
                     "%s: the file is empty (expected a header line naming "
                     "the columns)",
                     opt->in_path);
  map->header_line = record.line;
  map->header = tdm__calloc(record.count, sizeof *map->header);
  if (map->header != NULL) map->num_columns = record.count;
  size_t num_features;
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  num_features = info.num_features;
  map->feature_col = tdm__calloc(num_features, sizeof *map->feature_col);
  map->keep_col = tdm__calloc(opt->score.num_keep + 1, sizeof *map->keep_col);
  if (map->header == NULL || map->feature_col == NULL || map->keep_col == NULL)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t c = 0; c < record.count; c++) {
    map->header[c] = tdm__strndup(record.fields[c].text, record.fields[c].len);
    if (map->header[c] == NULL)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  rc = TDM_OK;
  /* A model without feature names (XGBoost's f0, f1, ...) may be matched
   * by position when the header does not use those names. */
  int probe_rc = TDM_OK; /* a probe: its errors are not this call's */
  int positional = !tdm_model_has_feature_names(model) &&
                   find_column(map, tdm_model_feature_name(model, 0),
                               opt->in_path, NULL, &probe_rc) < 0 &&
                   probe_rc == TDM_OK &&
                   map->num_columns == num_features + opt->score.num_keep;
  for (size_t f = 0; f < num_features; f++) {
    const char *name = tdm_model_feature_name(model, f);
    long c = positional ? -1 : find_column(map, name, opt->in_path, err, &rc);
    if (rc != TDM_OK) return rc;
    if (positional) {
      /* Feature columns are the ones not named by --keep, in order. */
      size_t seen = 0;
      for (size_t k = 0; k < map->num_columns; k++) {
        int kept = 0;
        for (size_t j = 0; j < opt->score.num_keep; j++)
          if (strcmp(map->header[k], opt->score.keep[j]) == 0) kept = 1;
        if (kept) continue;
        if (seen++ == f) {
          c = (long)k;
          break;
        }
      }
    }
    if (c < 0)
      return tdm__fail(err, TDM_ESCHEMA,
                       "%s:%zu: no column \"%s\", which the model needs "
                       "(feature %zu of %zu)",
                       opt->in_path, map->header_line, name, f + 1,
                       num_features);
    map->feature_col[f] = (size_t)c;
  }
  for (size_t k = 0; k < opt->score.num_keep; k++) {
    long c = find_column(map, opt->score.keep[k], opt->in_path, err, &rc);
    if (rc != TDM_OK) return rc;
    if (c < 0)
      return tdm__fail(err, TDM_ESCHEMA,
                       "%s:%zu: no column \"%s\" to keep (--keep)",
                       opt->in_path, map->header_line, opt->score.keep[k]);
    map->keep_col[k] = (size_t)c;
  }
  return TDM_OK;
}

/* ---- scoring rows on several threads (the benchmarks' entry) ---- */

typedef struct score_job {
  const tdm_model *model;
  const double *rows64;
  const float *rows32;
  double *out;
  size_t begin, end, num_features, width;
  int flags;
} score_job;

static void *score_range(void *arg) {
  score_job *job = arg;
  size_t at = job->begin * job->num_features;
  if (job->rows32 != NULL)
    tdm_model_predict_float32(job->model, job->rows32 + at,
                              job->end - job->begin, job->flags,
                              job->out + job->begin * job->width);
  else
    tdm_model_predict(job->model, job->rows64 + at, job->end - job->begin,
                      job->flags, job->out + job->begin * job->width);
  return NULL;
}

/* Runs fn(&args[t]) for t < n, t > 0 on new threads; a thread that
 * cannot start runs on the caller. */
static void run_threads(void *(*fn)(void *), void *args, size_t arg_size,
                        int n) {
  pthread_t ids[TDM__MAX_THREADS];
  int started[TDM__MAX_THREADS] = {0};
  char *base = args;
  for (int t = 1; t < n; t++)
    started[t] =
        pthread_create(&ids[t], NULL, fn, base + (size_t)t * arg_size) == 0;
  fn(base);
  for (int t = 1; t < n; t++) {
    if (started[t])
      pthread_join(ids[t], NULL);
    else
      fn(base + (size_t)t * arg_size);
  }
}

void tdm__predict_parallel(const tdm_model *model, const double *rows64,
                           const float *rows32, size_t num_rows,
                           size_t num_features, int flags, double *out,
                           int threads) {
  size_t width = tdm_model_output_width(model, flags);
  if (threads > TDM__MAX_THREADS) threads = TDM__MAX_THREADS;
  if (threads < 1 || num_rows < 256) threads = 1;
  score_job jobs[TDM__MAX_THREADS];
  for (int t = 0; t < threads; t++)
    jobs[t] = (score_job){model,
                          rows64,
                          rows32,
                          out,
                          num_rows * (size_t)t / (size_t)threads,
                          num_rows * (size_t)(t + 1) / (size_t)threads,
                          num_features,
                          width,
                          flags};
  run_threads(score_range, jobs, sizeof *jobs, threads);
}

/* Writes output bytes and adds them to the output's running SHA-256. */
static int write_out(FILE *fp, tdm__sha256 *hash, const char *data,
                     size_t len) {
  if (len == 0) return TDM_OK;
  if (fwrite(data, 1, len, fp) != len) return TDM_EIO;
  tdm__sha256_update(hash, data, len);
  return TDM_OK;
}

/* ---- file formats ---- */

typedef enum file_format { FORMAT_CSV, FORMAT_JSONL } file_format;

/* JSON Lines by extension (.jsonl, .ndjson), else CSV. */
static file_format format_of(const char *path) {
  size_t n = strlen(path);
  if ((n >= 6 && strcmp(path + n - 6, ".jsonl") == 0) ||
      (n >= 7 && strcmp(path + n - 7, ".ndjson") == 0))
    return FORMAT_JSONL;
  return FORMAT_CSV;
}

/* The contribution columns: contrib_<feature> per feature, then
 * contrib_bias; a model with several outputs repeats them per output with
 * a class_<k>_ prefix. Each name is one CSV field (quoted if need be). */
static int contrib_header(tdm__buf *line, const tdm_model *model) {
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  size_t outputs = info.num_outputs, features = info.num_features;
  tdm__buf name = {0};
  int rc = TDM_OK;
  for (size_t o = 0; o < outputs && rc == TDM_OK; o++) {
    for (size_t f = 0; f <= features && rc == TDM_OK; f++) {
      name.len = 0;
      if (outputs > 1) rc = tdm__buf_printf(&name, "class_%zu_", o);
      if (rc == TDM_OK)
        rc = tdm__buf_printf(
            &name, "contrib_%s",
            f < features ? tdm_model_feature_name(model, f) : "bias");
      if (rc == TDM_OK) rc = tdm__csv_append_field(line, name.data, name.len);
      if (rc == TDM_OK)
        rc = tdm__buf_append(line, o + 1 < outputs || f < features ? "," : "\n",
                             1);
    }
  }
  tdm__buf_free(&name);
  return rc;
}

/* What an output value is called: "margin" with --margin (a raw margin
 * in a column named score was read as a probability downstream), else
 * "score". */
static const char *output_name(const tdm__score_options *opt) {
  return opt->score.margin ? "margin" : "score";
}

/* The CSV header: --keep columns, then "score" or score_0..score_{k-1}
 * ("margin", margin_0.. with --margin)
 * (or the contribution columns). JSON Lines has none. */
static int write_header(FILE *fp, tdm__sha256 *hash,
                        const tdm__score_options *opt, const tdm_model *model,
                        size_t width) {
  tdm__buf line = {0};
  int rc = TDM_OK;
  for (size_t k = 0; k < opt->score.num_keep && rc == TDM_OK; k++) {
    rc = tdm__csv_append_field(&line, opt->score.keep[k],
                               strlen(opt->score.keep[k]));
    if (rc == TDM_OK) rc = tdm__buf_append(&line, ",", 1);
  }
  if (opt->score.contribs) {
    if (rc == TDM_OK) rc = contrib_header(&line, model);
  } else if (width == 1) {
    if (rc == TDM_OK) rc = tdm__buf_printf(&line, "%s\n", output_name(opt));
  } else {
    for (size_t o = 0; o < width && rc == TDM_OK; o++)
      rc = tdm__buf_printf(&line, o + 1 < width ? "%s_%zu," : "%s_%zu\n",
                           output_name(opt), o);
  }
  if (rc == TDM_OK) rc = write_out(fp, hash, line.data, line.len);
  tdm__buf_free(&line);
  return rc;
}

static double elapsed_seconds(const struct timespec *start) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - start->tv_sec) +
         (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* ---- names to indices (JSON Lines keys) ---- */

typedef struct name_table {
  const char **names; /* by slot; NULL when free */
  size_t *values;
  size_t mask;
} name_table;

static uint64_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int name_table_init(name_table *t, size_t count) {
  size_t cap = 16;
  while (cap < count * 2) cap *= 2;
  t->names = tdm__calloc(cap, sizeof *t->names);
  t->values = tdm__calloc(cap, sizeof *t->values);
  t->mask = cap - 1;
  return t->names && t->values ? TDM_OK : TDM_ENOMEM;
}

/* Adds name -> value unless present; returns the value it maps to. */
static size_t name_table_put(name_table *t, const char *name, size_t value) {
  size_t i = (size_t)name_hash(name) & t->mask;
  while (t->names[i] != NULL) {
    if (strcmp(t->names[i], name) == 0) return t->values[i];
    i = (i + 1) & t->mask;
  }
  t->names[i] = name;
  t->values[i] = value;
  return value;
}

/* The value of name, or SIZE_MAX. */
static size_t name_table_get(const name_table *t, const char *name) {
  size_t i = (size_t)name_hash(name) & t->mask;
  while (t->names[i] != NULL) {
    if (strcmp(t->names[i], name) == 0) return t->values[i];
    i = (i + 1) & t->mask;
  }
  return SIZE_MAX;
}

static void name_table_free(name_table *t) {
  tdm__free(t->names);
  tdm__free(t->values);
}

/* ---- chunks: raw input read by the main thread, worked by workers ---- */

/*
 * The main thread reads the input in blocks of whole records (a chunk)
 * and cuts each into one piece per worker, at record boundaries. Each
 * worker reads the records of its piece (CSV fields or JSON Lines) with
 * its own reader, parses the numbers, scores a batch of rows at a time
 * and formats the output lines. The main thread writes the pieces'
 * output in order, so it does not depend on the thread count, and reads
 * the next chunk while the workers run.
 */
#define CHUNK_RAW_BYTES (8u << 20) /* input read per chunk */
#define BATCH_ROWS 1024            /* rows a worker scores at once */
#define MAX_RECORD_BYTES (256u << 20)

typedef struct scorer scorer;

typedef struct part {
  const scorer *sc;
  char *data; /* this piece of the input (its reader writes into it) */
  size_t len;
  uint64_t offset;   /* of data in the input file */
  size_t first_line; /* the line data starts on */
  double *rows, *scores;
  tdm__buf keep; /* each batch row's kept values, encoded for the output */
  size_t *keep_end;
  /* JSONL: seen[i] == stamp when feature (or kept field) i already
   * appeared in the current line; stamp changes per line. */
  uint32_t *seen;
  uint32_t stamp;
  tdm__buf out; /* the formatted output lines */
  size_t count; /* records scored */
  int past_shard;
  int rc;
  tdm_error err;
} part;

typedef struct chunk {
  tdm__buf raw;
  size_t used;       /* raw bytes of whole records in this chunk */
  uint64_t offset;   /* of raw in the input file */
  size_t first_line; /* the line raw starts on */
  size_t end_line;   /* the line raw[used] is on */
  part parts[TDM__MAX_THREADS];
  int num_parts;
  pthread_t ids[TDM__MAX_THREADS];
  int started[TDM__MAX_THREADS];
  int running;
} chunk;

struct scorer {
  const tdm__score_options *opt;
  const tdm_model *model;
  const column_map *map;
  file_format in_format, out_format;
  size_t nf, width, batch_rows;
  size_t outputs; /* margins per row (contribution groups) */
  int flags, float32, threads;
  /* Whether any feature's categories have names (LightGBM's
   * pandas_categorical): only then is a cell's text looked up by name. */
  int named_categories;
  /* Made at load, read per value: which features may not be missing
   * (NULL when none). */
  unsigned char *required;
  uint64_t input_size; /* for --shard */
  name_table keys;     /* JSONL: feature i -> i, kept column k -> nf + k */
};

static int chunk_alloc(chunk *ch, const scorer *sc) {
  memset(ch, 0, sizeof *ch);
  size_t n = sc->batch_rows;
  int ok = 1;
  for (int t = 0; t < sc->threads && ok; t++) {
    part *p = &ch->parts[t];
    p->rows = tdm__malloc(n * (sc->nf ? sc->nf : 1) * sizeof(double));
    p->scores = tdm__malloc(n * sc->width * sizeof(double));
    p->keep_end = tdm__malloc(n * sizeof(size_t));
    p->seen =
        tdm__calloc(sc->nf + sc->opt->score.num_keep + 1, sizeof *p->seen);
    ok = p->rows && p->scores && p->keep_end && p->seen;
  }
  return ok ? TDM_OK : TDM_ENOMEM;
}

static void chunk_free(chunk *ch) {
  tdm__buf_free(&ch->raw);
  for (int t = 0; t < TDM__MAX_THREADS; t++) {
    tdm__buf_free(&ch->parts[t].keep);
    tdm__buf_free(&ch->parts[t].out);
    tdm__free(ch->parts[t].rows);
    tdm__free(ch->parts[t].scores);
    tdm__free(ch->parts[t].keep_end);
    tdm__free(ch->parts[t].seen);
  }
}

/* A kept value, encoded for the output format. `json` is 1 when text is a
 * JSON literal (a number, true, false, null), 0 for a plain string. */
static int put_kept(part *p, const char *text, size_t len, int json) {
  tdm__buf *b = &p->keep;
  if (p->sc->out_format == FORMAT_CSV) {
    if (json && len == 4 && memcmp(text, "null", 4) == 0) len = 0;
    if (tdm__csv_append_field(b, text, len) != TDM_OK) return TDM_ENOMEM;
    return tdm__buf_append(b, ",", 1);
  }
  if (json) return tdm__buf_append(b, text, len);
  char *copy = tdm__strndup(text, len);
  if (copy == NULL) return TDM_ENOMEM;
  int rc = tdm__json_append_string(b, copy);
  tdm__free(copy);
  return rc;
}

/* For JSON output, each kept value is preceded by its key. */
static int put_kept_key(part *p, size_t k) {
  if (p->sc->out_format == FORMAT_CSV) return TDM_OK;
  tdm__buf *b = &p->keep;
  if (tdm__buf_append(b, k == 0 ? "{" : ",", 1) != TDM_OK) return TDM_ENOMEM;
  if (tdm__json_append_string(b, p->sc->opt->score.keep[k]) != TDM_OK)
    return TDM_ENOMEM;
  return tdm__buf_append(b, ":", 1);
}

/* Checks a parsed feature value as the model needs it. */
static int check_value(part *p, size_t f, double value, size_t line,
                       size_t column, const char *text, size_t len) {
  const scorer *sc = p->sc;
  int problem = tdm__feature_value_problem(sc->model, f, value);
  if (problem == TDM__VALUE_OK) return TDM_OK;
  const char *name = tdm_model_feature_name(sc->model, f);
  if (problem == TDM__VALUE_INFINITE)
    /* XGBoost refuses infinite inputs (its DMatrix checks), and a value
     * past float32's range becomes one. */
    return tdm__fail(&p->err, TDM_EPARSE,
                     "%s:%zu:%zu: column \"%s\": %.*s is infinite in "
                     "float32, which XGBoost does not accept",
                     sc->opt->in_path, line, column, name,
                     (int)(len < 64 ? len : 64), text);
  return tdm__fail(&p->err, TDM_EPARSE,
                   "%s:%zu:%zu: column \"%s\" is missing, and the model does "
                   "not allow a missing value there",
                   sc->opt->in_path, line, column, name);
}

/* Feature f's code for the category named text[0..len), when the model
 * file records its categories' names (LightGBM's pandas_categorical):
 * 1 with *out set, or 0 when the feature has no names or none matches. */
static int category_code(const tdm_model *model, size_t f, const char *text,
                         size_t len, double *out) {
  size_t count;
  const char *const *names = tdm__model_category_names(model, f, &count);
  for (size_t k = 0; k < count; k++)
    if (strlen(names[k]) == len && memcmp(names[k], text, len) == 0) {
      *out = (double)k;
      return 1;
    }
  return 0;
}

/* The error for a text that is neither a number nor, for a categorical
 * feature, one of its categories' names. A categorical feature says how
 * to give it: by name when the model records the names, else by code,
 * with where the codes come from, since guessing them wrong scores every
 * row silently wrong. */
static int not_a_value(part *p, size_t f, size_t line, size_t column,
                       const char *text, size_t len) {
  const scorer *sc = p->sc;
  const char *name = tdm_model_feature_name(sc->model, f);
  int shown = (int)(len < 64 ? len : 64);
  size_t count;
  const char *const *names = tdm__model_category_names(sc->model, f, &count);
  if (names != NULL)
    return tdm__fail(&p->err, TDM_EPARSE,
                     "%s:%zu:%zu: column \"%s\": \"%.*s\" is not one of the "
                     "model's %zu categories (\"%s\" ... \"%s\", from the "
                     "model file's pandas_categorical) nor a category code: "
                     "give a category the model was trained with, or leave "
                     "the field empty for missing",
                     sc->opt->in_path, line, column, name, shown, text, count,
                     count ? names[0] : "", count ? names[count - 1] : "");
  if (strcmp(tdm_model_feature_type(sc->model, f), "c") == 0)
    return tdm__fail(&p->err, TDM_EPARSE,
                     "%s:%zu:%zu: column \"%s\": \"%.*s\" is not a number: "
                     "this categorical feature takes the category's code, "
                     "its position in pandas' cat.categories at training "
                     "(sorted order unless the categories were set), since "
                     "the model file does not record the categories' names "
                     "(docs/models.md, Categories)",
                     sc->opt->in_path, line, column, name, shown, text);
  return tdm__fail(&p->err, TDM_EPARSE,
                   "%s:%zu:%zu: column \"%s\": \"%.*s\" is not a number",
                   sc->opt->in_path, line, column, name, shown, text);
}

/* A JSON value as a feature: a number, null (missing), or the string
 * "NaN" (missing, as JSON has no NaN). */
static int json_feature(part *p, const tdm__json_doc *doc, const tdm__json *v,
                        size_t f, double *out, size_t line) {
  const scorer *sc = p->sc;
  size_t l, column;
  tdm__json_line_col(doc, v->offset, &l, &column);
  if (v->type == TDM__JSON_STRING &&
      category_code(sc->model, f, v->text, v->count, out))
    return TDM_OK;
  if (v->type == TDM__JSON_STRING && tdm__json_feature_value(v, out) != 0)
    return not_a_value(p, f, line, column, v->text, v->count);
  if (tdm__json_feature_value(v, out) != 0) {
    return tdm__fail(&p->err, TDM_EPARSE,
                     "%s:%zu:%zu: \"%s\" must be a number or null, not %s",
                     sc->opt->in_path, line, column,
                     tdm_model_feature_name(sc->model, f),
                     tdm__json_type_name(v));
  }
  return check_value(p, f, *out, line, column, v->text ? v->text : "null",
                     v->text ? v->text_len : 4);
}

static int fill_jsonl_row(part *p, const char *text, size_t len, size_t line,
                          double *row) {
  const scorer *sc = p->sc;
  size_t nk = sc->opt->score.num_keep;
  tdm__json_doc doc;
  int rc =
      tdm__json_parse_at(&doc, text, len, sc->opt->in_path, line, 0, &p->err);
  if (rc != TDM_OK) return rc;
  const tdm__json *obj = doc.root;
  const tdm__json *kept[TDM_SCORE_MAX_KEEP] = {0};
  if (obj->type != TDM__JSON_OBJECT) {
    rc = tdm__fail(&p->err, TDM_EPARSE,
                   "%s:%zu: each line must be a JSON object of features, "
                   "not %s",
                   sc->opt->in_path, line, tdm__json_type_name(obj));
    goto done;
  }
  for (size_t f = 0; f < sc->nf; f++) row[f] = NAN; /* absent: missing */
  if (++p->stamp == 0) { /* wrapped: start the stamps again */
    memset(p->seen, 0, (sc->nf + nk) * sizeof *p->seen);
    p->stamp = 1;
  }
  size_t features_seen = 0;
  for (size_t i = 0; i < obj->count && rc == TDM_OK; i++) {
    size_t idx = name_table_get(&sc->keys, obj->keys[i]);
    if (idx == SIZE_MAX) continue; /* other fields are allowed */
    if (p->seen[idx] == p->stamp) {
      size_t l, column;
      tdm__json_line_col(&doc, obj->items[i].offset, &l, &column);
      rc = tdm__fail(&p->err, TDM_EPARSE,
                     "%s:%zu:%zu: \"%s\" appears twice in the line",
                     sc->opt->in_path, line, column, obj->keys[i]);
      break;
    }
    p->seen[idx] = p->stamp;
    if (idx < sc->nf) {
      features_seen++;
      rc = json_feature(p, &doc, &obj->items[i], idx, &row[idx], line);
    } else {
      kept[idx - sc->nf] = &obj->items[i];
    }
  }
  /* A line that names none of the features is a mistake (a wrong key
   * case, another file), not a row of missing values. */
  if (rc == TDM_OK && features_seen == 0 && sc->nf > 0)
    rc =
        tdm__fail(&p->err, TDM_ESCHEMA,
                  "%s:%zu: the line has none of the model's features (the "
                  "first is \"%s\")",
                  sc->opt->in_path, line, tdm_model_feature_name(sc->model, 0));
  /* A feature that is absent is missing; required ones are checked. */
  for (size_t f = 0; sc->required != NULL && f < sc->nf && rc == TDM_OK; f++)
    rc = check_value(p, f, row[f], line, 1, "", 0);
  for (size_t k = 0; k < nk && rc == TDM_OK; k++) {
    const tdm__json *v = kept[k];
    if (put_kept_key(p, k) != TDM_OK) rc = TDM_ENOMEM;
    if (rc != TDM_OK) break;
    if (v == NULL || v->type == TDM__JSON_NULL) {
      rc = put_kept(p, "null", 4, 1);
    } else if (v->type == TDM__JSON_STRING) {
      rc = put_kept(p, v->text, v->count, 0);
    } else if (v->type == TDM__JSON_NUMBER) {
      rc = put_kept(p, v->text, v->text_len, 1);
    } else if (v->type == TDM__JSON_BOOL) {
      rc = put_kept(p, v->boolean ? "true" : "false", v->boolean ? 4 : 5, 1);
    } else {
      size_t l, column;
      tdm__json_line_col(&doc, v->offset, &l, &column);
      rc = tdm__fail(&p->err, TDM_EPARSE,
                     "%s:%zu:%zu: --keep \"%s\" must be a string, number, "
                     "boolean or null, not %s",
                     sc->opt->in_path, line, column, sc->opt->score.keep[k],
                     tdm__json_type_name(v));
      break;
    }
    if (rc == TDM_ENOMEM) rc = tdm__fail(&p->err, rc, "out of memory");
  }
done:
  tdm__json_doc_free(&doc);
  return rc;
}

/* Appends one row's output line: kept values, then the scores. */
static int format_row(part *p, size_t i, const double *scores) {
  const scorer *sc = p->sc;
  tdm__buf *b = &p->out;
  size_t keep_start = i ? p->keep_end[i - 1] : 0;
  if (tdm__buf_append(b, p->keep.data + keep_start,
                      p->keep_end[i] - keep_start) != TDM_OK ||
      tdm__buf_reserve(b, sc->width * 33 + sc->outputs * 3 + 16) != TDM_OK)
    return TDM_ENOMEM;
  char *at = b->data + b->len;
  int jsonl = sc->out_format == FORMAT_JSONL;
  /* Contributions of a model with several outputs are one array per
   * output in JSON Lines: [[class 0's], [class 1's], ...]. */
  size_t group = sc->opt->score.contribs && sc->outputs > 1 && jsonl
                     ? sc->width / sc->outputs
                     : sc->width;
  if (jsonl) {
    const char *open = sc->opt->score.num_keep ? "," : "{";
    if (sc->opt->score.contribs)
      at += sprintf(
          at, group < sc->width ? "%s\"contribs\":[[" : "%s\"contribs\":[",
          open);
    else
      at += sprintf(at, sc->width == 1 ? "%s\"%s\":" : "%s\"%ss\":[", open,
                    output_name(sc->opt));
  }
  for (size_t o = 0; o < sc->width; o++) {
    at += tdm_model_format_value(sc->model, scores[o], at);
    if (o + 1 < sc->width) {
      if ((o + 1) % group == 0) {
        memcpy(at, "],[", 3);
        at += 3;
      } else {
        *at++ = ',';
      }
    }
  }
  if (jsonl) {
    if (group < sc->width) *at++ = ']';
    if (sc->width > 1 || sc->opt->score.contribs) *at++ = ']';
    *at++ = '}';
  }
  *at++ = '\n';
  b->len = (size_t)(at - b->data);
  return TDM_OK;
}

static int fill_csv_row(part *p, const tdm__csv_record *record, double *row) {
  const scorer *sc = p->sc;
  const column_map *map = sc->map;
  for (size_t f = 0; f < sc->nf; f++) {
    const tdm__csv_field *field = &record->fields[map->feature_col[f]];
    if (sc->named_categories &&
        category_code(sc->model, f, field->text, field->len, &row[f]))
      continue;
    if (tdm__parse_cell_number(field->text, field->len, &row[f]) != 0)
      return not_a_value(p, f, record->line, field->column, field->text,
                         field->len);
    /* The check inline, the message out of line: this runs per cell. */
    if (tdm__feature_value_problem(sc->model, f, row[f]) != TDM__VALUE_OK)
      return check_value(p, f, row[f], record->line, field->column, field->text,
                         field->len);
  }
  for (size_t k = 0; k < sc->opt->score.num_keep; k++) {
    const tdm__csv_field *field = &record->fields[map->keep_col[k]];
    if (put_kept_key(p, k) != TDM_OK ||
        put_kept(p, field->text, field->len, 0) != TDM_OK)
      return tdm__fail(&p->err, TDM_ENOMEM, "out of memory");
  }
  return TDM_OK;
}

/* Scores the batch of rows read so far and formats their lines. */
static int flush_batch(part *p, size_t n) {
  const scorer *sc = p->sc;
  if (n == 0) return TDM_OK;
  /* Scores do not fail; contributions allocate their scratch, and a
   * failure must not write whatever the buffer held. */
  int rc = tdm_model_predict(sc->model, p->rows, n, sc->flags, p->scores);
  if (rc != TDM_OK)
    return tdm__fail(&p->err, rc,
                     rc == TDM_ENOMEM ? "out of memory"
                                      : "the model cannot score "
                                        "this request");
  for (size_t i = 0; i < n; i++)
    if (format_row(p, i, p->scores + i * sc->width) != TDM_OK)
      return tdm__fail(&p->err, TDM_ENOMEM, "out of memory");
  p->keep.len = 0;
  return TDM_OK;
}

/* The next record of a piece: 1 with the row's values filled, 0 at the
 * end of the piece, or an error. Skips blank lines and, with --shard,
 * records outside this shard. */
static int next_record(part *p, tdm__csv *reader, double *row) {
  const scorer *sc = p->sc;
  const tdm__score_options *opt = sc->opt;
  for (;;) {
    uint64_t at = p->offset + tdm__csv_offset(reader);
    tdm__csv_record record;
    const char *text = NULL;
    size_t len = 0, line = 0;
    int got = sc->in_format == FORMAT_CSV
                  ? tdm__csv_next(reader, &record, &p->err)
                  : tdm__csv_next_line(reader, &text, &len, &line, &p->err);
    if (got <= 0) return got;
    if (opt->score.shard_count > 1) {
      uint64_t owner = at * opt->score.shard_count / sc->input_size;
      if (owner < opt->score.shard_index) continue;
      if (owner > opt->score.shard_index) {
        p->past_shard = 1;
        return 0;
      }
    }
    if (sc->in_format == FORMAT_JSONL) {
      /* Blank lines separate nothing in JSON Lines: skipped. */
      size_t i = 0;
      while (i < len && (text[i] == ' ' || text[i] == '\t')) i++;
      if (i == len) continue;
      int rc = fill_jsonl_row(p, text, len, line, row);
      return rc == TDM_OK ? 1 : rc;
    }
    /* A blank line is a missing value in a one-column file; in a wider
     * file it cannot be a record, and is skipped. */
    if (record.blank && sc->map->num_columns > 1) continue;
    if (record.count != sc->map->num_columns)
      return tdm__fail(&p->err, TDM_EPARSE,
                       "%s:%zu: %zu fields, but the header has %zu (a ragged "
                       "row)",
                       opt->in_path, record.line, record.count,
                       sc->map->num_columns);
    int rc = fill_csv_row(p, &record, row);
    return rc == TDM_OK ? 1 : rc;
  }
}

static void *run_part(void *arg) {
  part *p = arg;
  const scorer *sc = p->sc;
  p->rc = TDM_OK;
  p->keep.len = 0;
  p->out.len = 0;
  p->count = 0;
  p->past_shard = 0;
  if (p->len == 0) return NULL;
  /* The reader works on the chunk's own bytes (it cuts the fields in
   * place) instead of copying them through a FILE. */
  tdm__csv *reader = NULL;
  if (tdm__csv_open_memory(&reader, p->data, p->len, sc->opt->in_path) !=
      TDM_OK) {
    p->rc = tdm__fail(&p->err, TDM_ENOMEM, "out of memory");
    return NULL;
  }
  tdm__csv_start_at(reader, p->first_line);
  size_t n = 0;
  for (;;) {
    int got = next_record(p, reader, p->rows + n * sc->nf);
    if (got < 0) {
      p->rc = got;
      break;
    }
    if (got == 1) {
      p->keep_end[n++] = p->keep.len;
      p->count++;
    }
    if (got == 0 || n == sc->batch_rows) {
      p->rc = flush_batch(p, n);
      n = 0;
      if (got == 0 || p->rc != TDM_OK) break;
    }
  }
  tdm__csv_close(reader);
  return NULL;
}

/* Counts newlines in data[0..len). */
static size_t count_lines(const char *data, size_t len) {
  size_t n = 0;
  const char *end = data + len;
  for (const char *at = data; (at = memchr(at, '\n', (size_t)(end - at))); at++)
    n++;
  return n;
}

/*
 * Where the records end in data[0..len): the offset after the last
 * newline that is outside quotes (CSV) or after any newline (JSON Lines),
 * and cut points near each of targets[] likewise. A piece of a chunk
 * always starts at a record's first byte. Returns 0 if no record ends.
 */
static size_t record_ends(const char *data, size_t len, int quotes,
                          const size_t *targets, size_t *cuts, int n) {
  size_t last = 0;
  int next = 0;
  if (!quotes || memchr(data, '"', len) == NULL) {
    while (last < len && data[len - 1 - last] != '\n') last++;
    if (last == len) return 0;
    last = len - last; /* just after the last newline */
    for (int t = 0; t < n; t++) {
      const char *at = targets[t] < last
                           ? memchr(data + targets[t], '\n', last - targets[t])
                           : NULL;
      cuts[t] = at ? (size_t)(at - data) + 1 : last;
    }
    return last;
  }
  int in_quotes = 0;
  for (size_t i = 0; i < len; i++) {
    char c = data[i];
    if (c == '"') {
      in_quotes = !in_quotes;
    } else if (c == '\n' && !in_quotes) {
      last = i + 1;
      while (next < n && targets[next] <= i) cuts[next++] = i + 1;
    }
  }
  for (; next < n; next++) cuts[next] = last;
  for (int t = 0; t < n; t++)
    if (cuts[t] > last) cuts[t] = last;
  return last;
}

/* Starts the workers on a chunk's records; chunk_finish waits for them. */
static void chunk_start(chunk *ch, const scorer *sc) {
  int n = ch->used < (64u << 10) ? 1 : sc->threads;
  size_t targets[TDM__MAX_THREADS], cuts[TDM__MAX_THREADS];
  for (int t = 0; t < n - 1; t++)
    targets[t] = ch->used * (size_t)(t + 1) / (size_t)n;
  record_ends(ch->raw.data, ch->used, sc->in_format == FORMAT_CSV, targets,
              cuts, n - 1);
  ch->num_parts = n;
  size_t begin = 0, line = ch->first_line;
  for (int t = 0; t < n; t++) {
    part *p = &ch->parts[t];
    size_t end = t + 1 < n ? cuts[t] : ch->used;
    if (end < begin) end = begin;
    p->sc = sc;
    p->data = ch->raw.data + begin;
    p->len = end - begin;
    p->offset = ch->offset + begin;
    p->first_line = line;
    line += count_lines(p->data, p->len);
    begin = end;
  }
  ch->end_line = line;
  for (int t = 0; t < n; t++) {
    ch->started[t] =
        pthread_create(&ch->ids[t], NULL, run_part, &ch->parts[t]) == 0;
    if (!ch->started[t]) run_part(&ch->parts[t]); /* no thread: here */
  }
  ch->running = 1;
}

/* Waits for the chunk's workers and writes its output in order. The
 * first error in input order wins. Sets *past_shard when a worker met
 * the end of this run's shard. */
static int chunk_finish(chunk *ch, FILE *fp, tdm__sha256 *hash,
                        const char *out_path, tdm__score_stats *stats,
                        int *past_shard, tdm_error *err) {
  if (!ch->running) return TDM_OK;
  for (int t = 0; t < ch->num_parts; t++)
    if (ch->started[t]) pthread_join(ch->ids[t], NULL);
  ch->running = 0;
  for (int t = 0; t < ch->num_parts; t++) {
    part *p = &ch->parts[t];
    if (p->rc != TDM_OK) {
      *err = p->err;
      return p->rc;
    }
  }
  for (int t = 0; t < ch->num_parts; t++) {
    part *p = &ch->parts[t];
    stats->rows += p->count;
    if (p->past_shard) *past_shard = 1;
    if (write_out(fp, hash, p->out.data, p->out.len) != TDM_OK)
      return tdm__fail(err, TDM_EIO, "%s: write failed: %s", out_path,
                       strerror(errno));
  }
  return TDM_OK;
}

/*
 * Reads the next chunk: the bytes the previous chunk left over (the start
 * of an unfinished record), then the file, until the chunk holds whole
 * records. ch->used is 0 at the end of input.
 */
static int read_chunk(chunk *ch, const chunk *prev, FILE *in, tdm__sha256 *hash,
                      const scorer *sc, int *eof, tdm_error *err) {
  ch->raw.len = 0;
  ch->used = 0;
  ch->offset = prev->offset + prev->used;
  ch->first_line = prev->end_line;
  if (tdm__buf_append(&ch->raw, prev->raw.data + prev->used,
                      prev->raw.len - prev->used) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  size_t want = CHUNK_RAW_BYTES;
  for (;;) {
    if (!*eof) {
      if (tdm__buf_reserve(&ch->raw, want) != TDM_OK)
        return tdm__fail(err, TDM_ENOMEM, "out of memory");
      size_t got = fread(ch->raw.data + ch->raw.len, 1, want, in);
      tdm__sha256_update(hash, ch->raw.data + ch->raw.len, got);
      ch->raw.len += got;
      if (got < want) {
        if (ferror(in))
          return tdm__fail(err, TDM_EIO, "%s: read error: %s", sc->opt->in_path,
                           strerror(errno));
        *eof = 1;
      }
    }
    if (*eof) {
      ch->used = ch->raw.len; /* the last record may lack its newline */
      return TDM_OK;
    }
    ch->used = record_ends(ch->raw.data, ch->raw.len,
                           sc->in_format == FORMAT_CSV, NULL, NULL, 0);
    if (ch->used > 0) return TDM_OK;
    /* One record longer than a block: read more, up to a bound, so an
     * unclosed quote cannot pull a whole file into memory. */
    if (ch->raw.len >= MAX_RECORD_BYTES)
      return tdm__fail(err, TDM_EPARSE,
                       "%s:%zu: a record longer than %u MiB starts here (an "
                       "unclosed '\"'?)",
                       sc->opt->in_path, ch->first_line,
                       MAX_RECORD_BYTES >> 20);
    want *= 2;
  }
}

/*
 * A progress line on stderr when it is a terminal: rows, rows/s, percent
 * of the input read and the time left. Silent otherwise (logs, CI).
 */
typedef struct progress {
  int enabled;
  double input_size;
  struct timespec start, last;
} progress;

static void progress_start(progress *p, FILE *in) {
  memset(p, 0, sizeof *p);
  struct stat st;
  p->enabled = isatty(STDERR_FILENO);
  if (fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode))
    p->input_size = (double)st.st_size;
  clock_gettime(CLOCK_MONOTONIC, &p->start);
  p->last = p->start;
}

static void progress_show(progress *p, size_t rows, size_t offset, int final) {
  if (!p->enabled) return;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double since_last = (double)(now.tv_sec - p->last.tv_sec) +
                      (double)(now.tv_nsec - p->last.tv_nsec) / 1e9;
  if (!final && since_last < 0.2) return;
  p->last = now;
  double elapsed = (double)(now.tv_sec - p->start.tv_sec) +
                   (double)(now.tv_nsec - p->start.tv_nsec) / 1e9;
  double rate = elapsed > 0 ? (double)rows / elapsed : 0;
  if (p->input_size > 0) {
    double done = (double)offset / p->input_size;
    if (done > 1) done = 1;
    double left = done > 0 ? elapsed * (1 - done) / done : 0;
    fprintf(stderr, "\r  %zu rows  %.0f rows/s  %3.0f%%  ETA %.0fs   ", rows,
            rate, done * 100, left);
  } else {
    fprintf(stderr, "\r  %zu rows  %.0f rows/s   ", rows, rate);
  }
  if (final) fputc('\n', stderr);
}

/*
 * OUT.manifest.json: what went in, what came out, and how: SHA-256 of the
 * model (its version), the input and the output; rows and columns; flags;
 * tandem's version; times and speed. Written atomically after the output.
 */
static int write_manifest(const tdm__score_options *opt, const tdm_model *model,
                          const tdm__score_stats *stats, const char *in_hex,
                          const char *out_hex, size_t width, int64_t started_ms,
                          tdm_error *err) {
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  char started[32], finished[32];
  tdm__utc_text(started_ms, started);
  tdm__utc_text(tdm__now_ms(), finished);
  tdm__buf b = {0};
  int rc = tdm__buf_printf(&b,
                           "{\n  \"tandem_version\": \"%s\",\n"
                           "  \"command\": \"score\",\n  ",
                           TDM_VERSION);
  if (rc == TDM_OK)
    rc = tdm__json_append_tags(&b, opt->score.tags, opt->score.num_tags);
  if (rc == TDM_OK) rc = tdm__buf_printf(&b, "\"model\": {\"path\": ");
  if (rc == TDM_OK) rc = tdm__json_append_string(&b, opt->model_path);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&b,
                         ", \"sha256\": \"%s\", \"format\": \"%s\", "
                         "\"objective\": ",
                         info.sha256, info.format_name);
  if (rc == TDM_OK) rc = tdm__json_append_string(&b, info.objective);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(
        &b, ", \"trees\": %zu},\n  \"input\": {\"path\": ", info.num_trees);
  if (rc == TDM_OK) rc = tdm__json_append_string(&b, opt->in_path);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&b,
                         ", \"sha256\": \"%s\", \"rows\": %zu, "
                         "\"columns\": %zu},\n  \"output\": {\"path\": ",
                         in_hex, stats->rows, stats->columns);
  if (rc == TDM_OK) rc = tdm__json_append_string(&b, opt->out_path);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(
        &b,
        ", \"sha256\": \"%s\", \"rows\": %zu, "
        "\"score_columns\": %zu},\n  \"flags\": "
        "{\"margin\": %s, \"contribs\": %s, "
        "\"iterations\": %zu, "
        "\"threads\": %d, \"shard\": \"%u/%u\", \"keep\": [",
        out_hex, stats->rows, width, opt->score.margin ? "true" : "false",
        opt->score.contribs == 2   ? "\"approx\""
        : opt->score.contribs == 1 ? "\"exact\""
                                   : "false",
        opt->score.iterations, stats->threads, opt->score.shard_index + 1,
        opt->score.shard_count ? opt->score.shard_count : 1);
  for (size_t k = 0; rc == TDM_OK && k < opt->score.num_keep; k++) {
    if (k > 0) rc = tdm__buf_append(&b, ", ", 2);
    if (rc == TDM_OK) rc = tdm__json_append_string(&b, opt->score.keep[k]);
  }
  if (rc == TDM_OK)
    rc = tdm__buf_printf(
        &b,
        "]},\n  \"started_at\": \"%s\",\n  \"finished_at\": \"%s\",\n"
        "  \"seconds\": %.6f,\n  \"rows_per_second\": %.0f\n}\n",
        started, finished, stats->seconds,
        stats->seconds > 0 ? (double)stats->rows / stats->seconds : 0.0);
  char *path = tdm__malloc(strlen(opt->out_path) + 32);
  if (rc != TDM_OK || path == NULL) {
    tdm__free(path);
    tdm__buf_free(&b);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  snprintf(path, strlen(opt->out_path) + 32, "%s.manifest.json", opt->out_path);
  rc = tdm__write_file_atomic(path, b.data, b.len, err);
  tdm__free(path);
  tdm__buf_free(&b);
  return rc;
}

/* JSON Lines input: keys name features (and --keep columns). */
static int jsonl_keys(scorer *sc, tdm_error *err) {
  const tdm__score_options *opt = sc->opt;
  if (name_table_init(&sc->keys, sc->nf + opt->score.num_keep) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t f = 0; f < sc->nf; f++) {
    const char *name = tdm_model_feature_name(sc->model, f);
    if (name_table_put(&sc->keys, name, f) != f)
      return tdm__fail(err, TDM_ESCHEMA,
                       "%s: the model names feature \"%s\" twice; JSON "
                       "Lines input needs distinct names",
                       opt->model_path, name);
  }
  for (size_t k = 0; k < opt->score.num_keep; k++) {
    size_t got = name_table_put(&sc->keys, opt->score.keep[k], sc->nf + k);
    if (got != sc->nf + k)
      return tdm__fail(err, TDM_EINVAL,
                       "--keep \"%s\" is %s; keep each field once, and not "
                       "the features",
                       opt->score.keep[k],
                       got < sc->nf ? "a model feature" : "given twice");
  }
  return TDM_OK;
}

int tdm__score_run(const tdm__score_options *opt, tdm__score_stats *stats,
                   tdm_error *err) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  memset(stats, 0, sizeof *stats);
  tdm__error_clear(err);
  tdm_model *model = NULL;
  FILE *in = NULL;
  tdm__csv *csv = NULL;
  column_map map = {0};
  chunk chunks[2];
  memset(chunks, 0, sizeof chunks);
  scorer sc = {0};
  tdm__atomic_file out = {0};
  int out_open = 0;
  int flags = opt->score.margin ? TDM_PREDICT_MARGIN : 0;
  if (opt->score.contribs)
    flags = TDM_PREDICT_CONTRIBS |
            (opt->score.contribs == 2 ? TDM_PREDICT_APPROX_CONTRIBS : 0);
  int threads = opt->score.threads;
  if (threads <= 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    threads = cores > 0 ? (int)cores : 1;
  }
  if (threads > TDM__MAX_THREADS) threads = TDM__MAX_THREADS;

  tdm__sha256 in_hash, out_hash;
  tdm__sha256_init(&in_hash);
  tdm__sha256_init(&out_hash);
  int64_t started_ms = tdm__now_ms();
  stats->threads = threads;
  int rc = TDM_OK;
  if (opt->score.num_keep > TDM_SCORE_MAX_KEEP) {
    rc = tdm__fail(err, TDM_EINVAL, "at most %d --keep columns",
                   TDM_SCORE_MAX_KEEP);
    goto done;
  }
  /* The CLI refuses these as usage errors before calling; the checks here
   * are for the API's callers, whose options no parser has seen. */
  if (opt->score.contribs < 0 || opt->score.contribs > 2 ||
      (opt->score.contribs && opt->score.margin)) {
    rc = tdm__fail(err, TDM_EINVAL,
                   "contribs must be 0, 1 (TreeSHAP) or 2 (Saabas), and "
                   "not with margin (contributions are always in margin "
                   "space)");
    goto done;
  }
  if (opt->score.shard_index >=
      (opt->score.shard_count > 1 ? opt->score.shard_count : 1)) {
    rc = tdm__fail(err, TDM_EINVAL, "shard %u of %u: no such part",
                   opt->score.shard_index, opt->score.shard_count);
    goto done;
  }
  rc = tdm_model_load(opt->model_path, &model, err);
  if (rc == TDM_OK && opt->score.kernel != NULL)
    tdm__fast_use_kernel(model, opt->score.kernel);
  if (rc == TDM_OK && (opt->score.kernel != NULL || opt->score.shap_no_tables))
    tdm__shap_configure(model, opt->score.kernel, !opt->score.shap_no_tables);
  if (rc == TDM_OK && opt->score.iterations > 0)
    rc = tdm_model_limit_iterations(model, opt->score.iterations, err);
  if (rc != TDM_OK) goto done;
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  if (opt->score.contribs && !tdm_model_has_contribs(model)) {
    rc = tdm__fail(err, TDM_EUNSUPPORTED,
                   "%s: --contribs needs the trees' covers (XGBoost's "
                   "sum_hessian, LightGBM's leaf_count and internal_count), "
                   "which this model file does not have",
                   opt->model_path);
    goto done;
  }
  if (opt->score.contribs == 2 && !info.float32) {
    rc = tdm__fail(err, TDM_EUNSUPPORTED,
                   "%s: --approx-contribs is XGBoost's approx_contribs; "
                   "LightGBM models have only exact contributions",
                   opt->model_path);
    goto done;
  }
  sc = (scorer){.opt = opt,
                .model = model,
                .map = &map,
                .in_format = format_of(opt->in_path),
                .out_format = format_of(opt->out_path),
                .nf = info.num_features,
                .width = tdm_model_output_width(model, flags),
                .outputs = info.num_outputs,
                .flags = flags,
                .float32 = info.float32,
                .threads = threads};

  in = fopen(opt->in_path, "rb");
  if (in == NULL) {
    rc = tdm__fail(err, errno == ENOENT ? TDM_ENOTFOUND : TDM_EIO,
                   "%s: cannot open: %s", opt->in_path, strerror(errno));
    goto done;
  }
  rc = tdm__csv_open(&csv, in, opt->in_path);
  if (rc != TDM_OK) {
    rc = tdm__fail(err, rc, "out of memory");
    goto done;
  }
  tdm__csv_hash_into(csv, &in_hash);
  progress bar;
  progress_start(&bar, in);
  if (sc.in_format == FORMAT_CSV)
    rc = read_header(csv, model, opt, &map, err);
  else
    rc = jsonl_keys(&sc, err);
  if (rc != TDM_OK) goto done;

  for (size_t f = 0; f < sc.nf; f++) {
    size_t count;
    if (tdm__model_category_names(model, f, &count) != NULL)
      sc.named_categories = 1;
    if (!tdm_model_feature_required(model, f)) continue;
    if (sc.required == NULL) sc.required = tdm__calloc(sc.nf, 1);
    if (sc.required == NULL) {
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
      goto done;
    }
    sc.required[f] = 1;
  }
  sc.batch_rows = BATCH_BYTES / ((sc.nf + sc.width) * sizeof(double));
  if (sc.batch_rows > BATCH_ROWS) sc.batch_rows = BATCH_ROWS;
  if (sc.batch_rows == 0) sc.batch_rows = 1;
  if (chunk_alloc(&chunks[0], &sc) != TDM_OK ||
      chunk_alloc(&chunks[1], &sc) != TDM_OK) {
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    goto done;
  }

  rc = tdm__atomic_open(&out, opt->out_path, err);
  if (rc != TDM_OK) goto done;
  out_open = 1;
  if (opt->score.shard_count > 1) {
    struct stat st;
    if (fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode)) {
      rc = tdm__fail(err, TDM_EINVAL, "%s: --shard needs a regular file",
                     opt->in_path);
      goto done;
    }
    sc.input_size = (uint64_t)st.st_size;
  }
  if (opt->score.shard_index == 0 && sc.out_format == FORMAT_CSV) {
    rc = write_header(out.fp, &out_hash, opt, model, sc.width);
    if (rc != TDM_OK) {
      rc = rc == TDM_ENOMEM ? tdm__fail(err, rc, "out of memory")
                            : tdm__fail(err, rc, "%s: write failed: %s",
                                        opt->out_path, strerror(errno));
      goto done;
    }
  }

  /* The bytes the header reader read ahead start the first chunk. */
  chunk *prev = &chunks[1];
  {
    const char *rest;
    size_t rest_len, line;
    tdm__csv_take_rest(csv, &rest, &rest_len, &line);
    if (tdm__buf_append(&prev->raw, rest, rest_len) != TDM_OK) {
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
      goto done;
    }
    prev->offset = tdm__csv_offset(csv) - rest_len;
    prev->first_line = line;
    prev->end_line = line;
  }
  /* Read chunk k + 1 while the workers work on chunk k. */
  int eof = 0, past_shard = 0;
  chunk *busy = NULL;
  while (rc == TDM_OK) {
    chunk *ch = prev == &chunks[0] ? &chunks[1] : &chunks[0];
    if (busy == ch) {
      /* Its bytes are still in use: finish it first. */
      rc = chunk_finish(busy, out.fp, &out_hash, opt->out_path, stats,
                        &past_shard, err);
      busy = NULL;
      if (rc != TDM_OK) break;
    }
    int read_rc = past_shard
                      ? TDM_OK
                      : read_chunk(ch, prev, in, &in_hash, &sc, &eof, err);
    if (past_shard) ch->used = 0;
    if (busy != NULL) {
      tdm_error finish_err;
      rc = chunk_finish(busy, out.fp, &out_hash, opt->out_path, stats,
                        &past_shard, &finish_err);
      /* The earlier chunk's error comes first in the input. */
      if (rc != TDM_OK) *err = finish_err;
      busy = NULL;
      progress_show(&bar, stats->rows, (size_t)ch->offset, 0);
    }
    if (rc == TDM_OK) rc = read_rc;
    if (rc != TDM_OK || ch->used == 0) break;
    chunk_start(ch, &sc);
    busy = ch;
    prev = ch;
  }
  if (busy != NULL) {
    tdm_error ignored;
    int ignored_past;
    chunk_finish(busy, out.fp, &out_hash, opt->out_path, stats, &ignored_past,
                 &ignored);
  }
  if (rc != TDM_OK) goto done;
  progress_show(&bar, stats->rows, (size_t)sc.input_size, 1);
  /* A shard stops reading at its range's end; the manifest still names
   * the whole input by its hash. */
  while (!eof) {
    char rest[1 << 16];
    size_t got = fread(rest, 1, sizeof rest, in);
    tdm__sha256_update(&in_hash, rest, got);
    if (got < sizeof rest) {
      if (ferror(in)) {
        rc = tdm__fail(err, TDM_EIO, "%s: read error", opt->in_path);
        goto done;
      }
      eof = 1;
    }
  }
  /* The output and its manifest are both complete before either is
   * renamed into place, so a failure leaves the previous pair intact. */
  rc = tdm__atomic_finish(&out, err);
  stats->columns = sc.in_format == FORMAT_CSV ? map.num_columns : sc.nf;
  stats->seconds = elapsed_seconds(&start);
  if (rc == TDM_OK) {
    char in_hex[65], out_hex[65];
    tdm__sha256_final_hex(&in_hash, in_hex);
    tdm__sha256_final_hex(&out_hash, out_hex);
    rc = write_manifest(opt, model, stats, in_hex, out_hex, sc.width,
                        started_ms, err);
  }
  if (rc == TDM_OK) {
    rc = tdm__atomic_commit(&out, err);
    out_open = 0;
    if (rc != TDM_OK) {
      /* The manifest describes an output that did not appear. */
      char manifest[4096];
      snprintf(manifest, sizeof manifest, "%s.manifest.json", opt->out_path);
      unlink(manifest);
    }
  }

done:
  if (out_open) tdm__atomic_abort(&out);
  if (stats->seconds == 0) stats->seconds = elapsed_seconds(&start);
  chunk_free(&chunks[0]);
  chunk_free(&chunks[1]);
  name_table_free(&sc.keys);
  tdm__free(sc.required);
  column_map_free(&map);
  tdm__csv_close(csv);
  if (in != NULL) fclose(in);
  tdm_model_free(model);
  return rc;
}
