/*
 * score.c - the batch scoring runner (see score.h). Rows are read in
 * chunks; each chunk is scored by the worker threads (rows split into
 * contiguous ranges, so the output is the same for any thread count) and
 * written in input order.
 */
#include "score.h"

#include <errno.h>
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

/* A chunk holds up to this many rows, and at most about CHUNK_BYTES of
 * feature values, so memory stays bounded for very wide inputs too. */
#define CHUNK_ROWS 8192
#define CHUNK_BYTES (64u << 20)

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
  map->keep_col = tdm__calloc(opt->num_keep + 1, sizeof *map->keep_col);
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
                   map->num_columns == num_features + opt->num_keep;
  for (size_t f = 0; f < num_features; f++) {
    const char *name = tdm_model_feature_name(model, f);
    long c = positional ? -1 : find_column(map, name, opt->in_path, err, &rc);
    if (rc != TDM_OK) return rc;
    if (positional) {
      /* Feature columns are the ones not named by --keep, in order. */
      size_t seen = 0;
      for (size_t k = 0; k < map->num_columns; k++) {
        int kept = 0;
        for (size_t j = 0; j < opt->num_keep; j++)
          if (strcmp(map->header[k], opt->keep[j]) == 0) kept = 1;
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
  for (size_t k = 0; k < opt->num_keep; k++) {
    long c = find_column(map, opt->keep[k], opt->in_path, err, &rc);
    if (rc != TDM_OK) return rc;
    if (c < 0)
      return tdm__fail(err, TDM_ESCHEMA,
                       "%s:%zu: no column \"%s\" to keep (--keep)",
                       opt->in_path, map->header_line, opt->keep[k]);
    map->keep_col[k] = (size_t)c;
  }
  return TDM_OK;
}

/* ---- scoring a chunk on several threads ---- */

typedef struct score_job {
  const tdm_model *model;
  const double *rows;
  double *out;
  size_t begin, end, num_features, width;
  int flags;
} score_job;

static void *score_range(void *arg) {
  score_job *job = arg;
  tdm_model_predict(job->model, job->rows + job->begin * job->num_features,
                    job->end - job->begin, job->flags,
                    job->out + job->begin * job->width);
  return NULL;
}

void tdm__predict_parallel(const tdm_model *model, const double *rows,
                           size_t num_rows, size_t num_features, int flags,
                           double *out, int threads) {
  size_t width = tdm_model_output_width(model, flags);
  if (threads <= 1 || num_rows < 256) {
    tdm_model_predict(model, rows, num_rows, flags, out);
    return;
  }
  score_job jobs[256];
  pthread_t ids[256];
  int started[256] = {0};
  if (threads > 256) threads = 256;
  for (int t = 0; t < threads; t++) {
    jobs[t] = (score_job){model,
                          rows,
                          out,
                          num_rows * (size_t)t / (size_t)threads,
                          num_rows * (size_t)(t + 1) / (size_t)threads,
                          num_features,
                          width,
                          flags};
  }
  for (int t = 1; t < threads; t++)
    started[t] = pthread_create(&ids[t], NULL, score_range, &jobs[t]) == 0;
  score_range(&jobs[0]);
  for (int t = 1; t < threads; t++) {
    if (started[t]) {
      pthread_join(ids[t], NULL);
    } else {
      score_range(&jobs[t]); /* could not start a thread: do it here */
    }
  }
}

/* Writes output bytes and adds them to the output's running SHA-256. */
static int write_out(FILE *fp, tdm__sha256 *hash, const char *data,
                     size_t len) {
  if (len == 0) return TDM_OK;
  if (fwrite(data, 1, len, fp) != len) return TDM_EIO;
  tdm__sha256_update(hash, data, len);
  return TDM_OK;
}

static int write_header(FILE *fp, tdm__sha256 *hash,
                        const tdm__score_options *opt, size_t width,
                        int multiclass_columns) {
  tdm__buf line = {0};
  int rc = TDM_OK;
  for (size_t k = 0; k < opt->num_keep && rc == TDM_OK; k++) {
    rc = tdm__csv_append_field(&line, opt->keep[k], strlen(opt->keep[k]));
    if (rc == TDM_OK) rc = tdm__buf_append(&line, ",", 1);
  }
  if (!multiclass_columns) {
    if (rc == TDM_OK) rc = tdm__buf_printf(&line, "score\n");
  } else {
    for (size_t o = 0; o < width && rc == TDM_OK; o++)
      rc = tdm__buf_printf(&line, o + 1 < width ? "score_%zu," : "score_%zu\n",
                           o);
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

typedef struct chunk {
  double *rows;
  double *out;
  tdm__buf keep_text; /* kept fields, already CSV-encoded with commas */
  size_t *keep_end;   /* end of each row's kept text in keep_text */
  size_t count;
} chunk;

static int flush_chunk(chunk *ch, const tdm_model *model, size_t num_features,
                       int flags, int threads, FILE *fp, tdm__sha256 *hash,
                       tdm__buf *line) {
  size_t width = tdm_model_output_width(model, flags);
  tdm__predict_parallel(model, ch->rows, ch->count, num_features, flags,
                        ch->out, threads);
  line->len = 0;
  size_t keep_start = 0;
  for (size_t r = 0; r < ch->count; r++) {
    if (tdm__buf_append(line, ch->keep_text.data + keep_start,
                        ch->keep_end[r] - keep_start) != TDM_OK)
      return TDM_ENOMEM;
    keep_start = ch->keep_end[r];
    if (tdm__buf_reserve(line, width * 32 + 1) != TDM_OK) return TDM_ENOMEM;
    for (size_t o = 0; o < width; o++) {
      line->len += (size_t)tdm_model_format_value(model, ch->out[r * width + o],
                                                  line->data + line->len);
      line->data[line->len++] = o + 1 < width ? ',' : '\n';
    }
  }
  if (write_out(fp, hash, line->data, line->len) != TDM_OK) return TDM_EIO;
  ch->count = 0;
  ch->keep_text.len = 0;
  return TDM_OK;
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

static void utc_time(time_t t, char buf[32]) {
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * OUT.manifest.json: what went in, what came out, and how: SHA-256 of the
 * model (its version), the input and the output; rows and columns; flags;
 * tandem's version; times and speed. Written atomically after the output.
 */
static int write_manifest(const tdm__score_options *opt, const tdm_model *model,
                          const tdm__score_stats *stats, const char *in_hex,
                          const char *out_hex, size_t width, time_t started_at,
                          tdm_error *err) {
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  char started[32], finished[32];
  utc_time(started_at, started);
  utc_time(time(NULL), finished);
  tdm__buf b = {0};
  int rc =
      tdm__buf_printf(&b,
                      "{\n  \"tandem_version\": \"%s\",\n"
                      "  \"command\": \"score\",\n  \"model\": {\"path\": ",
                      TDM_VERSION);
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
    rc = tdm__buf_printf(&b,
                         ", \"sha256\": \"%s\", \"rows\": %zu, "
                         "\"score_columns\": %zu},\n  \"flags\": "
                         "{\"margin\": %s, \"iterations\": %zu, "
                         "\"threads\": %d, \"shard\": \"%u/%u\", \"keep\": [",
                         out_hex, stats->rows, width,
                         opt->margin ? "true" : "false", opt->iterations,
                         stats->threads, opt->shard_index + 1,
                         opt->shard_count ? opt->shard_count : 1);
  for (size_t k = 0; rc == TDM_OK && k < opt->num_keep; k++) {
    if (k > 0) rc = tdm__buf_append(&b, ", ", 2);
    if (rc == TDM_OK) rc = tdm__json_append_string(&b, opt->keep[k]);
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
  tdm__atomic_file f;
  rc = tdm__atomic_open(&f, path, err);
  if (rc == TDM_OK) {
    if (fwrite(b.data, 1, b.len, f.fp) != b.len) {
      tdm__atomic_abort(&f);
      rc = tdm__fail(err, TDM_EIO, "%s: write failed", path);
    } else {
      rc = tdm__atomic_commit(&f, err);
    }
  }
  tdm__free(path);
  tdm__buf_free(&b);
  return rc;
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
  chunk ch = {0};
  tdm__buf line = {0};
  tdm__atomic_file out = {0};
  int out_open = 0;
  int flags = opt->margin ? TDM_PREDICT_MARGIN : 0;
  int threads = opt->threads;
  if (threads <= 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    threads = cores > 0 ? (int)cores : 1;
  }

  tdm__sha256 in_hash, out_hash;
  tdm__sha256_init(&in_hash);
  tdm__sha256_init(&out_hash);
  time_t started_at = time(NULL);
  stats->threads = threads;
  int rc = tdm_model_load(opt->model_path, &model, err);
  if (rc == TDM_OK && opt->iterations > 0)
    rc = tdm_model_limit_iterations(model, opt->iterations, err);
  if (rc != TDM_OK) goto done;
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  size_t nf = info.num_features;
  size_t width = tdm_model_output_width(model, flags);

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
  rc = read_header(csv, model, opt, &map, err);
  if (rc != TDM_OK) goto done;

  size_t chunk_rows = CHUNK_BYTES / ((nf + width) * sizeof(double));
  if (chunk_rows > CHUNK_ROWS) chunk_rows = CHUNK_ROWS;
  if (chunk_rows == 0) chunk_rows = 1;
  ch.rows = tdm__malloc(chunk_rows * nf * sizeof(double));
  ch.out = tdm__malloc(chunk_rows * width * sizeof(double));
  ch.keep_end = tdm__malloc(chunk_rows * sizeof(size_t));
  if (ch.rows == NULL || ch.out == NULL || ch.keep_end == NULL) {
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    goto done;
  }

  rc = tdm__atomic_open(&out, opt->out_path, err);
  if (rc != TDM_OK) goto done;
  out_open = 1;
  /* One "score" column, or score_0..score_{k-1} for several outputs. */
  int multiclass_columns = width > 1;
  uint64_t input_size = 0;
  int sharded = opt->shard_count > 1;
  if (sharded) {
    struct stat st;
    if (fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode)) {
      rc = tdm__fail(err, TDM_EINVAL, "%s: --shard needs a regular file",
                     opt->in_path);
      goto done;
    }
    input_size = (uint64_t)st.st_size;
  }
  if (opt->shard_index == 0)
    rc = write_header(out.fp, &out_hash, opt, width, multiclass_columns);
  if (rc != TDM_OK) {
    rc = tdm__fail(err, rc, "%s: write failed", opt->out_path);
    goto done;
  }

  tdm__csv_record record;
  for (;;) {
    uint64_t record_start = tdm__csv_offset(csv);
    int got = tdm__csv_next(csv, &record, err);
    if (got < 0) {
      rc = got;
      goto done;
    }
    if (got == 0) break;
    if (sharded) {
      /* Which shard's byte range the record starts in. */
      uint64_t owner = record_start * opt->shard_count / input_size;
      if (owner < opt->shard_index) continue;
      if (owner > opt->shard_index) break;
    }
    /* A blank line is a missing value in a one-column file; in a wider
     * file it cannot be a record, and is skipped. */
    if (record.blank && map.num_columns > 1) continue;
    if (record.count != map.num_columns) {
      rc = tdm__fail(err, TDM_EPARSE,
                     "%s:%zu: %zu fields, but the header has %zu (a ragged "
                     "row)",
                     opt->in_path, record.line, record.count, map.num_columns);
      goto done;
    }
    double *row = ch.rows + ch.count * nf;
    for (size_t f = 0; f < nf; f++) {
      const tdm__csv_field *field = &record.fields[map.feature_col[f]];
      if (tdm__parse_cell_number(field->text, field->len, &row[f]) != 0) {
        rc = tdm__fail(err, TDM_EPARSE,
                       "%s:%zu:%zu: column \"%s\": \"%.64s\" is not a number",
                       opt->in_path, record.line, field->column,
                       map.header[map.feature_col[f]], field->text);
        goto done;
      }
      if (info.float32 && isinf((float)row[f])) {
        /* XGBoost refuses infinite inputs (its DMatrix checks), and a
         * value past float32's range becomes one. */
        rc = tdm__fail(err, TDM_EPARSE,
                       "%s:%zu:%zu: column \"%s\": %.64s is infinite in "
                       "float32, which XGBoost does not accept",
                       opt->in_path, record.line, field->column,
                       map.header[map.feature_col[f]], field->text);
        goto done;
      }
      if (isnan(row[f]) && tdm_model_feature_required(model, f)) {
        rc = tdm__fail(err, TDM_EPARSE,
                       "%s:%zu:%zu: column \"%s\" is missing, and the model "
                       "does not allow a missing value there",
                       opt->in_path, record.line, field->column,
                       map.header[map.feature_col[f]]);
        goto done;
      }
    }
    for (size_t k = 0; k < opt->num_keep; k++) {
      const tdm__csv_field *field = &record.fields[map.keep_col[k]];
      if (tdm__csv_append_field(&ch.keep_text, field->text, field->len) !=
              TDM_OK ||
          tdm__buf_append(&ch.keep_text, ",", 1) != TDM_OK) {
        rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
        goto done;
      }
    }
    ch.keep_end[ch.count] = ch.keep_text.len;
    ch.count++;
    stats->rows++;
    if (ch.count == chunk_rows) {
      progress_show(&bar, stats->rows, tdm__csv_offset(csv), 0);
      rc =
          flush_chunk(&ch, model, nf, flags, threads, out.fp, &out_hash, &line);
      if (rc != TDM_OK) {
        rc = tdm__fail(err, rc, "%s: write failed", opt->out_path);
        goto done;
      }
    }
  }
  rc = flush_chunk(&ch, model, nf, flags, threads, out.fp, &out_hash, &line);
  if (rc != TDM_OK) {
    rc = tdm__fail(err, rc, "%s: write failed", opt->out_path);
    goto done;
  }
  progress_show(&bar, stats->rows, tdm__csv_offset(csv), 1);
  /* A shard stops reading at its range's end; the manifest still names
   * the whole input by its hash. */
  if (sharded && tdm__csv_drain(csv) != TDM_OK) {
    rc = tdm__fail(err, TDM_EIO, "%s: read error", opt->in_path);
    goto done;
  }
  /* The output and its manifest are both complete before either is
   * renamed into place, so a failure leaves the previous pair intact. */
  rc = tdm__atomic_finish(&out, err);
  stats->columns = map.num_columns;
  stats->seconds = elapsed_seconds(&start);
  if (rc == TDM_OK) {
    char in_hex[65], out_hex[65];
    tdm__sha256_final_hex(&in_hash, in_hex);
    tdm__sha256_final_hex(&out_hash, out_hex);
    rc = write_manifest(opt, model, stats, in_hex, out_hex, width, started_at,
                        err);
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
  tdm__buf_free(&line);
  tdm__buf_free(&ch.keep_text);
  tdm__free(ch.rows);
  tdm__free(ch.out);
  tdm__free(ch.keep_end);
  column_map_free(&map);
  tdm__csv_close(csv);
  if (in != NULL) fclose(in);
  tdm_model_free(model);
  return rc;
}
