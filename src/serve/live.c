/*
 * live.c - the live runner of a pipeline (live.h). A request's events are
 * parsed with the same event reader as batch's JSON Lines, processed one
 * by one under their entity shard's lock, and formatted with the same
 * function that writes batch's JSON Lines output.
 *
 * Durability: after processing an event, the entity's encoded state is
 * queued for the committer thread while the shard lock is still held (so
 * two updates of one entity are queued in the order they happened). The
 * committer writes everything queued in one LMDB transaction, synced, and
 * then wakes the requests waiting for it. A request answers only when the
 * commit holding its last update is done.
 */
#include "live.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../core/json.h"
#include "../io/events.h"
#include "../pipeline/pipeline.h"
#include "../store/store.h"

#define NUM_SHARDS 64

typedef struct shard {
  pthread_mutex_t lock;
  tdm__state_map *map;
  tdm__result result;
} shard;

/* Updates waiting for the committer: keys and values packed in one
 * buffer, with their offsets. */
typedef struct pending {
  tdm__buf bytes;
  size_t *offsets; /* per update: key offset, key length, value length */
  size_t count, cap;
} pending;

struct tdm__live {
  tdm__pipeline *p;
  shard shards[NUM_SHARDS];
  tdm__store *store;
  /* group commit */
  pthread_mutex_t commit_lock;
  pthread_cond_t commit_wanted, commit_done;
  pending queue, writing;
  uint64_t queued_gen;    /* the generation updates queued now will get */
  uint64_t committed_gen; /* every generation <= this is durable */
  uint64_t failed_gen;    /* the newest generation that failed to commit */
  int stopping;
  pthread_t committer;
  int committer_running;
  /* counters */
  atomic_ullong events, rejected, duplicates, requests, commits;
  atomic_ullong commit_ns_total;
};

static uint64_t key_hash(tdm__str key) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < key.len; i++) {
    h ^= (unsigned char)key.data[i];
    h *= 1099511628211ull;
  }
  return h ^ (h >> 31);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- group commit ---- */

static void *commit_loop(void *arg) {
  tdm__live *live = arg;
  pthread_mutex_lock(&live->commit_lock);
  for (;;) {
    while (live->queue.count == 0 && !live->stopping)
      pthread_cond_wait(&live->commit_wanted, &live->commit_lock);
    if (live->queue.count == 0 && live->stopping) break;
    /* Take the queue; requests arriving now join the next generation. */
    pending batch = live->queue;
    live->queue = live->writing;
    live->queue.bytes.len = 0;
    live->queue.count = 0;
    uint64_t gen = live->queued_gen++;
    pthread_mutex_unlock(&live->commit_lock);

    tdm__store_put *puts = tdm__malloc((batch.count + 1) * sizeof *puts);
    int ok = puts != NULL;
    uint64_t started = now_ns();
    if (ok) {
      for (size_t i = 0; i < batch.count; i++) {
        size_t at = batch.offsets[3 * i], klen = batch.offsets[3 * i + 1];
        puts[i] = (tdm__store_put){batch.bytes.data + at, klen,
                                   batch.bytes.data + at + klen,
                                   batch.offsets[3 * i + 2]};
      }
      tdm_error err;
      ok = tdm__store_put_all(live->store, puts, batch.count, &err) == TDM_OK;
      if (!ok) fprintf(stderr, "tandem serve: state: %s\n", err.message);
    }
    tdm__free(puts);
    atomic_fetch_add(&live->commits, 1);
    atomic_fetch_add(&live->commit_ns_total, now_ns() - started);

    pthread_mutex_lock(&live->commit_lock);
    live->writing = batch;
    if (!ok) live->failed_gen = gen;
    live->committed_gen = gen;
    pthread_cond_broadcast(&live->commit_done);
  }
  pthread_mutex_unlock(&live->commit_lock);
  return NULL;
}

/* Queues an entity's state; returns the generation to wait for. Called
 * with the entity's shard locked. */
static int queue_state(tdm__live *live, shard *sh, tdm__str key,
                       uint64_t *gen) {
  pthread_mutex_lock(&live->commit_lock);
  pending *q = &live->queue;
  int rc = TDM_OK;
  if (q->count == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 256;
    size_t *offsets = tdm__realloc(q->offsets, cap * 3 * sizeof(size_t));
    if (offsets == NULL) rc = TDM_ENOMEM;
    else {
      q->offsets = offsets;
      q->cap = cap;
    }
  }
  size_t at = q->bytes.len;
  if (rc == TDM_OK) rc = tdm__buf_append(&q->bytes, key.data, key.len);
  if (rc == TDM_OK) rc = tdm__state_map_encode(sh->map, key, &q->bytes);
  if (rc == TDM_OK) {
    q->offsets[3 * q->count] = at;
    q->offsets[3 * q->count + 1] = key.len;
    q->offsets[3 * q->count + 2] = q->bytes.len - at - key.len;
    q->count++;
    *gen = live->queued_gen;
    pthread_cond_signal(&live->commit_wanted);
  } else {
    q->bytes.len = at;
  }
  pthread_mutex_unlock(&live->commit_lock);
  return rc;
}

/* Waits until generation gen is on disk; TDM_EIO if it failed. */
static int wait_durable(tdm__live *live, uint64_t gen) {
  pthread_mutex_lock(&live->commit_lock);
  while (live->committed_gen < gen || live->committed_gen == UINT64_MAX)
    pthread_cond_wait(&live->commit_done, &live->commit_lock);
  int failed = live->failed_gen != 0 && live->failed_gen >= gen;
  pthread_mutex_unlock(&live->commit_lock);
  return failed ? TDM_EIO : TDM_OK;
}

/* ---- restoring ---- */

static int restore_one(void *ctx, const void *key, size_t key_len,
                       const void *value, size_t value_len) {
  tdm__live *live = ctx;
  tdm__str k = {key, key_len};
  shard *sh = &live->shards[key_hash(k) % NUM_SHARDS];
  tdm_error err;
  int rc = tdm__state_map_restore(sh->map, k, value, value_len, &err);
  if (rc != TDM_OK)
    fprintf(stderr, "tandem serve: state of \"%.*s\": %s\n", (int)key_len,
            (const char *)key, err.message);
  return rc;
}

/* ---- open, close ---- */

int tdm__live_open(const char *pipeline_path, const char *state_dir,
                   tdm__live **out, tdm_error *err) {
  *out = NULL;
  tdm__live *live = tdm__calloc(1, sizeof *live);
  if (live == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  pthread_mutex_init(&live->commit_lock, NULL);
  pthread_cond_init(&live->commit_wanted, NULL);
  pthread_cond_init(&live->commit_done, NULL);
  live->queued_gen = 1;
  for (int i = 0; i < NUM_SHARDS; i++) pthread_mutex_init(&live->shards[i].lock, NULL);
  int rc = tdm__pipeline_load(pipeline_path, 0, &live->p, err);
  for (int i = 0; i < NUM_SHARDS && rc == TDM_OK; i++) {
    if (tdm__state_map_new(live->p, &live->shards[i].map) != TDM_OK ||
        tdm__result_init(live->p, &live->shards[i].result) != TDM_OK)
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  if (rc == TDM_OK && state_dir != NULL) {
    rc = tdm__store_open(state_dir, tdm__pipeline_spec(live->p)->name,
                         &live->store, err);
    if (rc == TDM_OK) {
      rc = tdm__store_each(live->store, restore_one, live, err);
      if (rc != TDM_OK && err->message[0] == '\0')
        tdm__fail(err, rc, "%s: the saved state does not fit this pipeline",
                  state_dir);
      else if (rc != TDM_OK)
        rc = tdm__fail(err, rc,
                       "%s: cannot restore the saved state (was it written "
                       "by another version of the pipeline?)",
                       state_dir);
    }
    if (rc == TDM_OK) {
      if (pthread_create(&live->committer, NULL, commit_loop, live) != 0)
        rc = tdm__fail(err, TDM_ENOMEM, "cannot start the commit thread");
      else
        live->committer_running = 1;
    }
  }
  if (rc != TDM_OK) {
    tdm__live_close(live);
    return rc;
  }
  *out = live;
  return TDM_OK;
}

void tdm__live_close(tdm__live *live) {
  if (live == NULL) return;
  if (live->committer_running) {
    pthread_mutex_lock(&live->commit_lock);
    live->stopping = 1;
    pthread_cond_signal(&live->commit_wanted);
    pthread_mutex_unlock(&live->commit_lock);
    pthread_join(live->committer, NULL);
  }
  for (int i = 0; i < NUM_SHARDS; i++) {
    tdm__state_map_free(live->shards[i].map);
    tdm__result_free(&live->shards[i].result);
    pthread_mutex_destroy(&live->shards[i].lock);
  }
  tdm__buf_free(&live->queue.bytes);
  tdm__free(live->queue.offsets);
  tdm__buf_free(&live->writing.bytes);
  tdm__free(live->writing.offsets);
  tdm__store_close(live->store);
  tdm__pipeline_free(live->p);
  pthread_mutex_destroy(&live->commit_lock);
  pthread_cond_destroy(&live->commit_wanted);
  pthread_cond_destroy(&live->commit_done);
  tdm__free(live);
}

const char *tdm__live_name(const tdm__live *live) {
  return tdm__pipeline_spec(live->p)->name;
}

/* ---- events ---- */

static void error_body(tdm__buf *out, const char *message) {
  tdm__buf_append(out, "{\"error\":", 9);
  tdm__json_append_string(out, message);
  tdm__buf_append(out, "}", 1);
}

/* One event: processed under its shard's lock, its result appended to
 * out. *gen is raised to the generation its state update joined. */
static int one_event(tdm__live *live, const tdm__json_doc *doc,
                     const tdm__json *object, int with_features,
                     tdm__buf *out, uint64_t *gen, tdm_error *err) {
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  tdm__str fields[spec->num_fields + 1];
  int rc = tdm__event_from_json(spec, doc, object, NULL, fields, err);
  tdm__event ev = {fields};
  tdm__str entity;
  if (rc == TDM_OK) rc = tdm__pipeline_entity(live->p, &ev, &entity, err);
  if (rc != TDM_OK) return rc;
  shard *sh = &live->shards[key_hash(entity) % NUM_SHARDS];
  pthread_mutex_lock(&sh->lock);
  rc = tdm__pipeline_process(live->p, sh->map, &ev, &sh->result, err);
  if (rc == TDM_OK) {
    rc = tdm__pipeline_json(live->p, &ev, &sh->result, with_features, out);
    if (rc == TDM_OK && live->store != NULL && !sh->result.duplicate) {
      uint64_t g;
      rc = queue_state(live, sh, entity, &g);
      if (rc == TDM_OK && g > *gen) *gen = g;
    }
    if (rc != TDM_OK) tdm__fail(err, rc, "out of memory");
    if (sh->result.duplicate) atomic_fetch_add(&live->duplicates, 1);
  }
  pthread_mutex_unlock(&sh->lock);
  return rc;
}

void tdm__live_events(tdm__live *live, const char *body, size_t len,
                      int with_features, tdm__buf *out, unsigned *status) {
  atomic_fetch_add(&live->requests, 1);
  tdm__json_doc doc;
  tdm_error err;
  *status = 200;
  if (tdm__json_parse(&doc, body, len, "request", 0, &err) != TDM_OK) {
    *status = err.status == TDM_ENOMEM ? 500 : 400;
    error_body(out, err.message);
    return;
  }
  uint64_t gen = 0;
  const tdm__json *root = doc.root;
  if (root->type == TDM__JSON_ARRAY) {
    tdm__buf_append(out, "[", 1);
    for (size_t i = 0; i < root->count; i++) {
      if (i > 0) tdm__buf_append(out, ",", 1);
      size_t mark = out->len;
      int rc = one_event(live, &doc, &root->items[i], with_features, out, &gen,
                         &err);
      atomic_fetch_add(&live->events, 1);
      if (rc != TDM_OK) {
        out->len = mark;
        error_body(out, err.message);
        atomic_fetch_add(&live->rejected, 1);
        if (rc == TDM_ENOMEM) *status = 500;
      }
    }
    tdm__buf_append(out, "]", 1);
  } else {
    int rc = one_event(live, &doc, root, with_features, out, &gen, &err);
    atomic_fetch_add(&live->events, 1);
    if (rc != TDM_OK) {
      atomic_fetch_add(&live->rejected, 1);
      out->len = 0;
      *status = rc == TDM_ENOMEM ? 500 : 400;
      error_body(out, err.message);
    }
  }
  tdm__json_doc_free(&doc);
  if (gen > 0 && wait_durable(live, gen) != TDM_OK) {
    out->len = 0;
    *status = 500;
    error_body(out, "the state could not be written to disk; the events "
                    "may not be applied after a restart");
  }
}

int tdm__live_metadata(const tdm__live *live, tdm__buf *out) {
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  int rc = tdm__buf_append(out, "{\"name\":", 8);
  if (rc == TDM_OK) rc = tdm__json_append_string(out, spec->name);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(out, ",\"model_version\":\"%s\",\"entity\":",
                         tdm__pipeline_model_version(live->p));
  if (rc == TDM_OK) rc = tdm__json_append_string(out, spec->entity);
  if (rc == TDM_OK) rc = tdm__buf_append(out, ",\"time\":", 8);
  if (rc == TDM_OK) rc = tdm__json_append_string(out, spec->time);
  if (rc == TDM_OK) rc = tdm__buf_append(out, ",\"features\":[", 13);
  for (size_t i = 0; i < spec->num_features && rc == TDM_OK; i++) {
    if (i > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK) rc = tdm__json_append_string(out, spec->features[i].name);
  }
  if (rc == TDM_OK)
    rc = tdm__buf_printf(out, "],\"durable\":%s}",
                         live->store ? "true" : "false");
  return rc;
}

int tdm__live_metrics(tdm__live *live, tdm__buf *out) {
  const char *name = tdm__live_name(live);
  size_t entities = 0;
  for (int i = 0; i < NUM_SHARDS; i++) {
    pthread_mutex_lock(&live->shards[i].lock);
    entities += tdm__state_map_entities(live->shards[i].map);
    pthread_mutex_unlock(&live->shards[i].lock);
  }
  return tdm__buf_printf(
      out,
      "# HELP tandem_pipeline_events_total Events received by the live "
      "endpoint, by outcome.\n"
      "# TYPE tandem_pipeline_events_total counter\n"
      "tandem_pipeline_events_total{pipeline=\"%s\",outcome=\"scored\"} %llu\n"
      "tandem_pipeline_events_total{pipeline=\"%s\",outcome=\"duplicate\"} "
      "%llu\n"
      "tandem_pipeline_events_total{pipeline=\"%s\",outcome=\"rejected\"} "
      "%llu\n"
      "# HELP tandem_pipeline_requests_total Requests to the events "
      "endpoint.\n"
      "# TYPE tandem_pipeline_requests_total counter\n"
      "tandem_pipeline_requests_total{pipeline=\"%s\"} %llu\n"
      "# HELP tandem_pipeline_entities Entities with state in memory.\n"
      "# TYPE tandem_pipeline_entities gauge\n"
      "tandem_pipeline_entities{pipeline=\"%s\"} %zu\n"
      "# HELP tandem_state_commits_total Group commits of state to LMDB.\n"
      "# TYPE tandem_state_commits_total counter\n"
      "tandem_state_commits_total{pipeline=\"%s\"} %llu\n"
      "# HELP tandem_state_commit_seconds_total Time spent committing state.\n"
      "# TYPE tandem_state_commit_seconds_total counter\n"
      "tandem_state_commit_seconds_total{pipeline=\"%s\"} %.9f\n",
      name,
      (unsigned long long)(atomic_load(&live->events) -
                           atomic_load(&live->rejected) -
                           atomic_load(&live->duplicates)),
      name, (unsigned long long)atomic_load(&live->duplicates), name,
      (unsigned long long)atomic_load(&live->rejected), name,
      (unsigned long long)atomic_load(&live->requests), name, entities, name,
      (unsigned long long)atomic_load(&live->commits), name,
      (double)atomic_load(&live->commit_ns_total) * 1e-9);
}
