/*
 * batch.c - `tandem batch`: reads events in chunks, processes each chunk
 * on N worker threads partitioned by entity (worker t owns the entities
 * whose key hashes to t, with its own state map), then writes the chunk's
 * results in input order. Three chunks are in flight at once: while the
 * workers process one, the calling thread reads the next and formats and
 * writes the one before (a CSV row is captured by the worker as the few
 * numbers it needs and formatted here), so reading, the pipeline core and
 * formatting run side by side. Every entity's events go through the
 * pipeline core in file order whatever N is, so the output is the same
 * bytes for every thread count. The output and the reject file appear
 * only when the run succeeds (atomic files), followed by
 * OUT.manifest.json.
 */
#include "batch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/arena.h"
#include "../core/core.h"
#include "../core/json.h"
#include "../io/csv.h"
#include "../io/events.h"
#include "../pipeline/pipeline.h"
#include "../pipeline/state_dir.h"
#include "../store/table.h"
#include "score.h"

#define CHUNK_EVENTS 32768

/* Where one event's outcome went: a worker's buffer slice, or a reason. */
typedef struct outcome {
  int worker; /* -1: not processed (rejected by the reader) */
  int rejected;
  int status; /* a rejected event's status (its reason word) */
  int duplicate;
  /* In the chunk's buffers of that worker: a rejected event's reason, a
   * JSON Lines result, or a CSV row's reasons text (len 0: none). */
  size_t offset, len;
} outcome;

/* How far ahead, in its own events, a worker asks for an entity's state
 * (look_ahead). */
#define AHEAD 2

typedef struct worker {
  const tdm__pipeline *p;
  tdm__state_map *map;
  tdm__result result;
  int index, count, jsonl, explain;
  size_t num_cells; /* per CSV row: tdm__pipeline_csv_cells */
  /* the chunk being processed, and its buffers for this worker */
  const tdm__event_record *records;
  outcome *outcomes;
  const int *owners; /* which worker owns each event */
  double *cells;
  tdm__buf *out, *reasons;
  size_t num_records;
  size_t *mine;   /* the chunk's events this worker owns, in order */
  tdm__str *keys; /* their entities (data NULL: a rejected record) */
  /* look_ahead's entities, by position modulo 4 * AHEAD (NULL: none) */
  const tdm__entity *ahead[4 * AHEAD];
  int failed; /* out of memory */
} worker;

/* Which worker or shard an entity belongs to (a seed of its own). */
static uint64_t key_hash(tdm__str key) {
  return tdm__hash_bytes(key.data, key.len, 1);
}

static int add_reason(worker *w, outcome *o, int status,
                      const char *message) {
  o->worker = w->index;
  o->rejected = 1;
  o->status = status;
  o->offset = w->reasons->len;
  o->len = strlen(message);
  return tdm__buf_append(w->reasons, message, o->len);
}

/* How far ahead, in its own events, a worker asks for an entity's state:
 * the map's bucket 4 * AHEAD events ahead, the entity's structure 3 *,
 * its arrays 2 *, what they point to 1 * (each stage reads what the one
 * before brought in). Far enough for a load from memory to finish, near
 * enough that what came in is still in the cache when the event needs it.
 * A hint only: the answers do not depend on it. */
static void look_ahead(worker *w, size_t k, size_t n) {
  size_t at = k + 4 * AHEAD;
  if (at < n && w->keys[at].data != NULL)
    tdm__state_map_prefetch_bucket(w->map, &w->keys[at]);
  at = k + 3 * AHEAD;
  if (at < n)
    w->ahead[at % (4 * AHEAD)] =
        w->keys[at].data != NULL
            ? tdm__state_map_prefetch_entity(w->map, &w->keys[at])
            : NULL;
  at = k + 2 * AHEAD;
  if (at < n && w->ahead[at % (4 * AHEAD)] != NULL)
    tdm__entity_prefetch(w->ahead[at % (4 * AHEAD)], 0);
  at = k + AHEAD;
  if (at < n && w->ahead[at % (4 * AHEAD)] != NULL)
    tdm__entity_prefetch(w->ahead[at % (4 * AHEAD)], 1);
}

static void *work(void *arg) {
  worker *w = arg;
  w->out->len = 0;
  w->reasons->len = 0;
  tdm_error err;
  /* The worker's own events first, so that it can look ahead of them. */
  size_t n = 0;
  for (size_t i = 0; i < w->num_records; i++) {
    if (w->owners[i] != w->index) continue;
    const tdm__event_record *rec = &w->records[i];
    tdm__event ev = {rec->fields};
    tdm__str entity = {NULL, 0};
    if (rec->problem != NULL ||
        tdm__pipeline_entity(w->p, &ev, &entity, &err) != TDM_OK)
      entity = (tdm__str){NULL, 0};
    w->mine[n] = i;
    w->keys[n++] = entity;
  }
  memset(w->ahead, 0, sizeof w->ahead);
  /* Start the look-ahead's pipeline as if at event -4 * AHEAD. */
  for (size_t k = 0; k < 4 * AHEAD; k++)
    if (k < n && w->keys[k].data != NULL)
      tdm__state_map_prefetch_bucket(w->map, &w->keys[k]);
  for (size_t k = 0; k < n && !w->failed; k++) {
    look_ahead(w, k, n);
    size_t i = w->mine[k];
    const tdm__event_record *rec = &w->records[i];
    outcome *o = &w->outcomes[i];
    tdm__event ev = {rec->fields};
    if (rec->problem != NULL) {
      if (add_reason(w, o, TDM_EPARSE, rec->problem) != TDM_OK) w->failed = 1;
      continue;
    }
    int rc = tdm__pipeline_process(w->p, w->map, &ev, &w->result, &err);
    if (rc == TDM_ENOMEM) {
      w->failed = 1;
      break;
    }
    if (rc != TDM_OK) {
      if (add_reason(w, o, rc, err.message) != TDM_OK) w->failed = 1;
      continue;
    }
    o->worker = w->index;
    o->duplicate = w->result.duplicate;
    o->offset = w->out->len;
    if (w->jsonl) {
      rc = tdm__pipeline_json(w->p, &ev, &w->result, w->explain, w->out);
      if (rc == TDM_OK) rc = tdm__buf_append(w->out, "\n", 1);
    } else {
      tdm__pipeline_csv_capture(w->p, &w->result, &w->cells[i * w->num_cells]);
      if (tdm__pipeline_csv_has_reasons(w->p))
        rc = tdm__pipeline_csv_reasons(w->p, &w->result, w->out);
    }
    if (rc != TDM_OK) w->failed = 1;
    o->len = w->out->len - o->offset;
  }
  return NULL;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int write_all(FILE *fp, tdm__sha256 *hash, const char *data, size_t len,
                     const char *path, tdm_error *err) {
  if (len == 0) return TDM_OK;
  if (hash) tdm__sha256_update(hash, data, len);
  if (fwrite(data, 1, len, fp) != len)
    return tdm__fail(err, TDM_EIO, "%s: write failed", path);
  return TDM_OK;
}

/* One reject: {"line": N, "error": "...", "reason": "too_late",
 * "event": {...}} (the reason word: too_late, future or invalid). */
static int write_reject(FILE *fp, const tdm__spec *spec,
                        const tdm__event_record *rec, int status,
                        const char *reason, size_t reason_len,
                        tdm__buf *line) {
  line->len = 0;
  int rc = tdm__buf_printf(line, "{\"line\":%zu,\"error\":", rec->line);
  if (rc == TDM_OK) rc = tdm__json_append_string_n(line, reason, reason_len);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(line, ",\"reason\":\"%s\"",
                         tdm__pipeline_reject_reason(status));
  if (rc == TDM_OK && rec->text != NULL) {
    rc = tdm__buf_append(line, ",\"record\":", 10);
    if (rc == TDM_OK) rc = tdm__json_append_string_n(line, rec->text, rec->text_len);
  } else if (rc == TDM_OK) {
    rc = tdm__buf_append(line, ",\"event\":", 9);
    if (rc == TDM_OK) rc = tdm__event_to_json(spec, rec->fields, line);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(line, "}\n", 2);
  if (rc != TDM_OK) return rc;
  return fwrite(line->data, 1, line->len, fp) == line->len ? TDM_OK : TDM_EIO;
}

/* Starts the workers on their threads (or, if a thread cannot start,
 * runs its share on the calling thread). */
typedef struct crew {
  pthread_t threads[TDM__MAX_THREADS];
  int started[TDM__MAX_THREADS];
} crew;

static void start_workers(crew *c, worker *workers, int n) {
  for (int t = 0; t < n; t++) {
    c->started[t] = pthread_create(&c->threads[t], NULL, work, &workers[t]) == 0;
    if (!c->started[t]) work(&workers[t]);
  }
}

static void join_workers(crew *c, int n) {
  for (int t = 0; t < n; t++)
    if (c->started[t]) pthread_join(c->threads[t], NULL);
}

static int write_manifest(const tdm__batch_options *opt,
                          const tdm__pipeline *p, const tdm__batch_stats *st,
                          const char *pipeline_hex, const char *in_hex,
                          const char *out_hex, const char *rejects_path,
                          tdm_error *err) {
  tdm_model_info info;
  memset(&info, 0, sizeof info);
  if (tdm__pipeline_model(p) != NULL)
    tdm_model_get_info(tdm__pipeline_model(p), &info);
  char started[32], finished[32];
  tdm__utc_text(st->started_ms, started);
  tdm__utc_text(tdm__now_ms(), finished);
  tdm__buf b = {0};
  int rc = tdm__buf_printf(&b,
                           "{\n  \"tandem_version\": \"%s\",\n  \"command\": "
                           "\"batch\",\n  ",
                           TDM_VERSION);
  if (rc == TDM_OK) rc = tdm__json_append_tags(&b, opt->tags, opt->num_tags);
  if (rc == TDM_OK) rc = tdm__buf_printf(&b, "\"pipeline\": {\"path\": ");
  if (rc == TDM_OK) rc = tdm__json_append_string(&b, opt->pipeline_path);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&b, ", \"sha256\": \"%s\", \"name\": ", pipeline_hex);
  if (rc == TDM_OK) rc = tdm__json_append_string(&b, tdm__pipeline_spec(p)->name);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&b, "},\n  \"model\": %s%s%s,\n  \"input\": {\"path\": ",
                         info.sha256[0] ? "{\"sha256\": \"" : "null",
                         info.sha256, info.sha256[0] ? "\"}" : "");
  if (rc == TDM_OK) rc = tdm__json_append_string(&b, opt->in_path);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&b,
                         ", \"sha256\": \"%s\", \"events\": %zu},\n"
                         "  \"output\": {\"path\": ",
                         in_hex, st->events);
  if (rc == TDM_OK) rc = tdm__json_append_string(&b, opt->out_path);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&b,
                         ", \"sha256\": \"%s\", \"events\": %zu, "
                         "\"duplicates\": %zu},\n  \"rejects\": {\"path\": ",
                         out_hex, st->written, st->duplicates);
  if (rc == TDM_OK)
    rc = st->rejected ? tdm__json_append_string(&b, rejects_path)
                      : tdm__buf_append(&b, "null", 4);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&b, ", \"events\": %zu},\n  \"tables\": [",
                         st->rejected);
  for (size_t i = 0; i < st->num_materialized && rc == TDM_OK; i++) {
    const tdm__batch_materialized *m = &st->materialized[i];
    char as_of[32];
    tdm__format_time(m->as_of_ms, as_of);
    if (i > 0) rc = tdm__buf_append(&b, ", ", 2);
    if (rc == TDM_OK) rc = tdm__buf_append(&b, "{\"table\": ", 10);
    if (rc == TDM_OK) rc = tdm__json_append_string(&b, m->table);
    if (rc == TDM_OK)
      rc = tdm__buf_printf(&b,
                           ", \"version\": %llu, \"rows\": %zu, "
                           "\"as_of\": \"%s\"}",
                           (unsigned long long)m->version, m->rows, as_of);
  }
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&b,
                         "],\n  \"flags\": {\"threads\": %d, "
                         "\"strict\": %s, \"explain\": %s, "
                         "\"features_only\": %s},\n"
                         "  \"started_at\": \"%s\",\n"
                         "  \"finished_at\": \"%s\",\n  \"seconds\": %.6f,\n"
                         "  \"events_per_second\": %.0f\n}\n",
                         st->threads, opt->strict ? "true" : "false",
                         opt->explain ? "true" : "false",
                         opt->features_only ? "true" : "false", started, finished,
                         st->seconds,
                         st->seconds > 0 ? (double)st->events / st->seconds : 0.0);
  char path[4096];
  snprintf(path, sizeof path, "%s.manifest.json", opt->out_path);
  if (rc == TDM_OK)
    rc = tdm__write_file_atomic(path, b.data, b.len, err);
  else
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  tdm__buf_free(&b);
  return rc;
}

/* One chunk of events and what became of each. */
typedef struct chunk {
  tdm__event_record *records;
  outcome *outcomes;
  int *owners; /* the worker of each event (0: rejected by the reader) */
  double *cells; /* CSV: tdm__pipeline_csv_cells per event */
  /* per worker: its results' text (out) and reject reasons */
  tdm__buf *out, *reasons;
  size_t count;
  tdm__arena arena;
  int more; /* 1: the input goes on; 0: this was the end; < 0: an error */
} chunk;

typedef struct run {
  const tdm__batch_options *opt;
  tdm__pipeline *p;
  tdm__event_reader *reader;
  worker *workers;
  int threads;
  size_t num_cells;
  chunk chunks[3];
  tdm__atomic_file out, rejects;
  int out_open, rejects_open;
  tdm__sha256 out_hash;
  tdm__buf line, rows;
  char rejects_path[4096];
} run;

/* Writes one processed chunk in input order (formatting its CSV rows). */
static int write_chunk(run *r, const chunk *ch, tdm__batch_stats *st,
                       tdm_error *err) {
  const tdm__spec *spec = tdm__pipeline_spec(r->p);
  int jsonl = r->workers[0].jsonl;
  tdm__buf *rows = &r->rows;
  rows->len = 0;
  int rc = TDM_OK;
  for (size_t i = 0; i < ch->count && rc == TDM_OK; i++) {
    const outcome *o = &ch->outcomes[i];
    int t = o->worker < 0 ? 0 : o->worker;
    if (o->rejected) {
      const char *reason = ch->reasons[t].data + o->offset;
      if (r->opt->strict)
        return tdm__fail(err, TDM_EPARSE, "%s:%zu: %.*s (--strict)",
                         r->opt->in_path, ch->records[i].line, (int)o->len,
                         reason);
      if (!r->rejects_open) {
        rc = tdm__atomic_open(&r->rejects, r->rejects_path, err);
        if (rc != TDM_OK) return rc;
        r->rejects_open = 1;
      }
      if (write_reject(r->rejects.fp, spec, &ch->records[i], o->status,
                       reason, o->len, &r->line) != TDM_OK)
        return tdm__fail(err, TDM_EIO, "%s: write failed", r->rejects_path);
      st->rejected++;
      continue;
    }
    const char *text = ch->out[t].data + o->offset;
    if (jsonl) {
      rc = tdm__buf_append(rows, text, o->len);
    } else {
      tdm__str reasons = {text, o->len};
      rc = tdm__pipeline_csv_row(r->p, ch->records[i].fields,
                                 &ch->cells[i * r->num_cells], &reasons, rows);
    }
    st->written++;
    st->duplicates += o->duplicate != 0;
  }
  if (rc != TDM_OK) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  return write_all(r->out.fp, &r->out_hash, rows->data, rows->len,
                   r->opt->out_path, err);
}

/* Which worker owns each event of ch: the one its entity hashes to (the
 * first for an event without a valid entity, which it rejects). Worked
 * out once here, on the reading thread, rather than by every worker for
 * every event. */
static void assign_owners(const run *r, chunk *ch) {
  for (size_t i = 0; i < ch->count; i++) {
    const tdm__event_record *rec = &ch->records[i];
    tdm__event ev = {rec->fields};
    tdm__str entity;
    tdm_error err;
    ch->owners[i] = 0;
    if (r->threads > 1 && rec->problem == NULL &&
        tdm__pipeline_entity(r->p, &ev, &entity, &err) == TDM_OK)
      ch->owners[i] = (int)(key_hash(entity) % (uint64_t)r->threads);
  }
}

/* Reads the next chunk of events into ch (its arena starts afresh). */
static void read_chunk(run *r, chunk *ch, tdm_error *err) {
  tdm__arena_free(&ch->arena);
  tdm__arena_init(&ch->arena, 1 << 20);
  ch->count = 0;
  ch->more = 1;
  while (ch->count < CHUNK_EVENTS) {
    ch->more = tdm__event_reader_next(r->reader, &ch->arena,
                                      &ch->records[ch->count], err);
    if (ch->more <= 0) break;
    ch->outcomes[ch->count] = (outcome){.worker = -1};
    ch->count++;
  }
  assign_owners(r, ch);
}

/* Points the workers at chunk ch. */
static void assign(run *r, chunk *ch) {
  for (int t = 0; t < r->threads; t++) {
    worker *w = &r->workers[t];
    w->records = ch->records;
    w->outcomes = ch->outcomes;
    w->owners = ch->owners;
    w->num_records = ch->count;
    w->cells = ch->cells;
    w->out = &ch->out[t];
    w->reasons = &ch->reasons[t];
  }
}

/*
 * The workers process one chunk while this thread reads the next and
 * writes the one before, in input order. A chunk is written only after
 * the workers are done with it, and read into only after it is written.
 */
static int process_all(run *r, tdm__batch_stats *st, tdm_error *err) {
  chunk *done = NULL, *current = &r->chunks[0], *next = &r->chunks[1],
        *spare = &r->chunks[2];
  read_chunk(r, current, err);
  int rc = current->more < 0 ? current->more : TDM_OK;
  while (rc == TDM_OK && current->count > 0) {
    /* Every entity stays in memory for the whole run: batch has no
     * store to move idle ones to, and dropping one would change the
     * answers of its later events (docs/windows.md, "Event time"). */
    assign(r, current);
    crew c;
    start_workers(&c, r->workers, r->threads);
    tdm_error read_err;
    if (current->more > 0)
      read_chunk(r, next, &read_err);
    else
      next->count = 0, next->more = 0;
    int written = TDM_OK;
    if (done != NULL) {
      written = write_chunk(r, done, st, err);
      if (written == TDM_OK) tdm__crash_point("batch-chunk-written");
    }
    join_workers(&c, r->threads);
    rc = written;
    for (int t = 0; t < r->threads && rc == TDM_OK; t++)
      if (r->workers[t].failed) rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    st->events += current->count;
    if (rc == TDM_OK && next->more < 0) {
      *err = read_err;
      rc = next->more;
    }
    chunk *free_slot = done != NULL ? done : spare;
    done = current;
    current = next;
    next = free_slot;
  }
  if (rc == TDM_OK && done != NULL) {
    rc = write_chunk(r, done, st, err);
    if (rc == TDM_OK) tdm__crash_point("batch-chunk-written");
  }
  return rc;
}

static int setup(run *r, tdm_error *err) {
  const tdm__batch_options *opt = r->opt;
  struct stat st;
  int jsonl =
      ends_with(opt->out_path, ".jsonl") || ends_with(opt->out_path, ".ndjson");
  /* The features --explain adds are a JSON object per result; a CSV
   * output has no place for them, and dropping the flag in silence left
   * users with the output they did not ask for. */
  if (opt->explain && !jsonl)
    return tdm__fail(err, TDM_EINVAL,
                     "--explain adds every feature to JSON Lines output, and "
                     "%s is CSV: name the output .jsonl, or use "
                     "--features-only for a CSV of the features",
                     opt->out_path);
  if (opt->save_state != NULL && stat(opt->save_state, &st) == 0)
    return tdm__fail(err, TDM_EINVAL,
                     "%s exists: --save-state writes a new state directory "
                     "(remove it first)",
                     opt->save_state);
  int rc = tdm__pipeline_load(opt->pipeline_path,
                              opt->features_only ? TDM__PIPELINE_FEATURES_ONLY : 0,
                              &r->p, err);
  if (rc != TDM_OK) return rc;
  const tdm__spec *spec = tdm__pipeline_spec(r->p);
  for (size_t i = 0; i < opt->num_materialize; i++) {
    size_t m = 0;
    while (m < spec->num_materialize &&
           strcmp(spec->materialize[m].table, opt->materialize[i]) != 0)
      m++;
    if (m == spec->num_materialize)
      return tdm__fail(err, TDM_EINVAL,
                       "--materialize %s: the pipeline has no such table in "
                       "its materialize: section",
                       opt->materialize[i]);
    const size_t *slots = tdm__pipeline_materialize_slots(r->p, m);
    for (size_t k = 0; k < spec->materialize[m].num_columns; k++)
      if (slots[k] == TDM__NO_SLOT)
        return tdm__fail(err, TDM_EINVAL,
                         "--materialize %s: its column \"%s\" is the score, "
                         "which a --features-only run does not compute",
                         opt->materialize[i],
                         spec->materialize[m].columns[k]);
  }
  if (opt->num_materialize > 0 && opt->store == NULL && spec->store == NULL)
    return tdm__fail(err, TDM_EINVAL,
                     "--materialize needs a store: --store DIR, or store: in "
                     "the pipeline");
  rc = tdm__pipeline_open_tables(r->p, opt->store, opt->store_settings,
                                 TDM__LOOKUP_AT_EVENT_TIME,
                                 err);
  if (rc != TDM_OK) return rc;
  if (opt->in_memory)
    rc = tdm__event_reader_cells(tdm__pipeline_spec(r->p), opt->columns,
                                 opt->num_columns, opt->cells, opt->num_rows,
                                 opt->in_path, &r->reader, err);
  else
    rc = tdm__event_reader_open(opt->in_path, tdm__pipeline_spec(r->p),
                                &r->reader, err);
  if (rc != TDM_OK) return rc;
  int threads = opt->threads;
  if (threads <= 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    threads = cpus > 0 ? (int)cpus : 1;
  }
  if (threads > TDM__MAX_THREADS) threads = TDM__MAX_THREADS;
  r->threads = threads;
  r->workers = tdm__calloc((size_t)threads, sizeof *r->workers);
  if (r->workers == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  r->num_cells = jsonl ? 0 : tdm__pipeline_csv_cells(r->p);
  for (int k = 0; k < 3; k++) {
    chunk *ch = &r->chunks[k];
    tdm__arena_init(&ch->arena, 1 << 20);
    ch->records = tdm__calloc(CHUNK_EVENTS, sizeof *ch->records);
    ch->outcomes = tdm__calloc(CHUNK_EVENTS, sizeof *ch->outcomes);
    ch->owners = tdm__calloc(CHUNK_EVENTS, sizeof *ch->owners);
    ch->cells = tdm__calloc(CHUNK_EVENTS * r->num_cells + 1, sizeof *ch->cells);
    ch->out = tdm__calloc((size_t)threads, sizeof *ch->out);
    ch->reasons = tdm__calloc((size_t)threads, sizeof *ch->reasons);
    if (!ch->records || !ch->outcomes || !ch->owners || !ch->cells ||
        !ch->out || !ch->reasons)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  for (int t = 0; t < threads; t++) {
    worker *w = &r->workers[t];
    w->p = r->p;
    w->mine = tdm__calloc(CHUNK_EVENTS, sizeof *w->mine);
    w->keys = tdm__calloc(CHUNK_EVENTS, sizeof *w->keys);
    if (w->mine == NULL || w->keys == NULL)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
    w->index = t;
    w->count = threads;
    w->jsonl = jsonl;
    w->explain = opt->explain;
    w->num_cells = r->num_cells;
    if (tdm__state_map_new(r->p, &w->map) != TDM_OK)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
    rc = tdm__result_init(r->p, &w->result, err);
    if (rc != TDM_OK) return rc;
    if (opt->num_materialize > 0) tdm__state_map_keep_last(w->map);
    /* One clock for the whole run, so that which events are too far in
     * the future does not depend on how long the run takes. */
    tdm__state_map_set_clock(w->map, opt->now_ms);
  }
  if (opt->rejects_path)
    snprintf(r->rejects_path, sizeof r->rejects_path, "%s", opt->rejects_path);
  else
    snprintf(r->rejects_path, sizeof r->rejects_path, "%s.rejects.jsonl",
             opt->out_path);
  rc = tdm__atomic_open(&r->out, opt->out_path, err);
  if (rc != TDM_OK) return rc;
  r->out_open = 1;
  tdm__sha256_init(&r->out_hash);
  if (!jsonl) {
    tdm__buf header = {0};
    rc = tdm__pipeline_csv_header(r->p, &header);
    if (rc == TDM_OK)
      rc = write_all(r->out.fp, &r->out_hash, header.data, header.len,
                     opt->out_path, err);
    tdm__buf_free(&header);
  }
  return rc;
}

static void teardown(run *r) {
  if (r->out_open) tdm__atomic_abort(&r->out);
  if (r->rejects_open) tdm__atomic_abort(&r->rejects);
  for (int t = 0; r->workers && t < r->threads; t++) {
    tdm__state_map_free(r->workers[t].map);
    tdm__result_free(&r->workers[t].result);
    tdm__free(r->workers[t].mine);
    tdm__free(r->workers[t].keys);
  }
  for (int k = 0; k < 3; k++) {
    chunk *ch = &r->chunks[k];
    for (int t = 0; t < r->threads && ch->out != NULL; t++)
      tdm__buf_free(&ch->out[t]);
    for (int t = 0; t < r->threads && ch->reasons != NULL; t++)
      tdm__buf_free(&ch->reasons[t]);
    tdm__free(ch->out);
    tdm__free(ch->reasons);
    tdm__free(ch->records);
    tdm__free(ch->outcomes);
    tdm__free(ch->owners);
    tdm__free(ch->cells);
    tdm__arena_free(&ch->arena);
  }
  tdm__free(r->workers);
  tdm__buf_free(&r->line);
  tdm__buf_free(&r->rows);
  tdm__event_reader_close(r->reader);
  tdm__pipeline_free(r->p);
}

typedef struct put_ctx {
  tdm__table_writer *writer;
  const size_t *slots;
  size_t n;
  double values[256];
  tdm_error *err;
} put_ctx;

static int put_row(void *ctx, tdm__str key, const double *numbers) {
  put_ctx *c = ctx;
  for (size_t k = 0; k < c->n; k++) c->values[k] = numbers[c->slots[k]];
  return tdm__table_put(c->writer, key.data, key.len, c->values, c->err);
}

/* Writes a version of each --materialize table: per entity, its last
 * event's values of the table's columns. */
static int materialize(run *r, const char *pipeline_hex,
                       tdm__batch_stats *st, tdm_error *err) {
  const tdm__batch_options *opt = r->opt;
  const tdm__spec *spec = tdm__pipeline_spec(r->p);
  int64_t as_of = opt->as_of_ms;
  if (as_of == INT64_MIN)
    for (int t = 0; t < r->threads; t++) {
      int64_t n = tdm__state_map_newest(r->workers[t].map);
      if (n > as_of) as_of = n;
    }
  if (as_of == INT64_MIN) as_of = 0; /* no event: as of the epoch */
  int rc = TDM_OK;
  for (size_t i = 0; i < opt->num_materialize && rc == TDM_OK; i++) {
    size_t m = 0;
    while (strcmp(spec->materialize[m].table, opt->materialize[i]) != 0) m++;
    const tdm__materialize_spec *ms = &spec->materialize[m];
    if (ms->num_columns > 256)
      return tdm__fail(err, TDM_EINVAL, "table %s: too many columns",
                       ms->table);
    put_ctx c = {.slots = tdm__pipeline_materialize_slots(r->p, m),
                 .n = ms->num_columns,
                 .err = err};
    rc = tdm__table_begin(tdm__pipeline_tables(r->p), ms->table,
                          (const char *const *)ms->columns, ms->num_columns,
                          as_of, pipeline_hex, ms->keep, &c.writer, err);
    for (int t = 0; t < r->threads && rc == TDM_OK; t++)
      rc = tdm__state_map_each_last(r->workers[t].map, put_row, &c);
    if (rc != TDM_OK) {
      tdm__table_abort(c.writer);
      break;
    }
    uint64_t version;
    /* The writer's own count: listing the versions after the commit could
     * name another job's newer version, and would load a Redis table. */
    size_t rows = tdm__table_writer_rows(c.writer);
    rc = tdm__table_commit(c.writer, &version, err);
    if (rc == TDM_OK && st->num_materialized < TDM_BATCH_MAX_TABLES) {
      tdm__batch_materialized *done = &st->materialized[st->num_materialized++];
      snprintf(done->table, sizeof done->table, "%s", ms->table);
      done->version = version;
      done->as_of_ms = as_of;
      done->rows = rows;
    }
  }
  return rc;
}

int tdm__batch_run(const tdm__batch_options *opt, tdm__batch_stats *stats,
                   tdm_error *err) {
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  memset(stats, 0, sizeof *stats);
  stats->started_ms = tdm__now_ms();
  run r;
  memset(&r, 0, sizeof r);
  r.opt = opt;
  int state_saved = 0;
  int rc = setup(&r, err);
  if (rc == TDM_OK) {
    stats->threads = r.threads;
    rc = process_all(&r, stats, err);
  }
  if (rc == TDM_OK && opt->save_state != NULL) {
    tdm__state_map *maps[TDM__MAX_THREADS];
    for (int t = 0; t < r.threads; t++) maps[t] = r.workers[t].map;
    rc = tdm__state_dir_save(opt->save_state, tdm__pipeline_spec(r.p)->name,
                             maps, (size_t)r.threads, opt->store_settings, err);
    state_saved = rc == TDM_OK;
    if (state_saved) tdm__crash_point("batch-state-saved");
  }
  char pipeline_hex[65] = "", in_hex[65] = "", out_hex[65] = "";
  if (rc == TDM_OK) {
    char *text;
    size_t len;
    rc = tdm__read_file(opt->pipeline_path, &text, &len, err);
    if (rc == TDM_OK) {
      tdm__sha256_hex(text, len, pipeline_hex);
      tdm__free(text);
    }
    tdm__event_reader_sha256(r.reader, in_hex);
    tdm__sha256 copy = r.out_hash;
    tdm__sha256_final_hex(&copy, out_hex);
  }
  if (rc == TDM_OK && opt->num_materialize > 0) {
    rc = materialize(&r, pipeline_hex, stats, err);
    if (rc == TDM_OK) tdm__crash_point("batch-table-committed");
  }
  if (rc == TDM_OK && r.rejects_open) {
    rc = tdm__atomic_finish(&r.rejects, err);
    if (rc == TDM_OK) tdm__crash_point("batch-rejects-finished");
  }
  /* Both files complete (above) before either is renamed into place. */
  if (rc == TDM_OK) rc = tdm__atomic_commit(&r.out, err);
  if (rc == TDM_OK) tdm__crash_point("batch-output-renamed");
  if (rc == TDM_OK) {
    r.out_open = 0;
    if (r.rejects_open) {
      rc = tdm__atomic_commit(&r.rejects, err); /* already written, synced */
      r.rejects_open = 0;
    } else {
      /* A previous run's reject file would be stale beside this output. */
      unlink(r.rejects_path);
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  stats->seconds = (double)(end.tv_sec - start.tv_sec) +
                   (double)(end.tv_nsec - start.tv_nsec) * 1e-9;
  if (rc == TDM_OK)
    rc = write_manifest(opt, r.p, stats, pipeline_hex, in_hex, out_hex,
                        r.rejects_path, err);
  if (rc == TDM_OK) tdm__crash_point("batch-manifest-written");
  /* The state directory last: it appears only beside a finished run's
   * outputs (a rerun refuses an existing one). */
  if (opt->save_state != NULL && state_saved) {
    if (rc == TDM_OK) {
      rc = tdm__state_dir_publish(opt->save_state, err);
      if (rc == TDM_OK) tdm__crash_point("batch-state-published");
    } else
      tdm__state_dir_discard(opt->save_state);
  }
  teardown(&r);
  return rc;
}
