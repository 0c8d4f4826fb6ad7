/*
 * live.c - the live runner of a pipeline (live.h). A request's events are
 * parsed with the same event reader as batch's JSON Lines, processed one
 * by one under their entity shard's lock, and formatted with the same
 * function that writes batch's JSON Lines output.
 *
 * Durability: an applied event is appended to a write-ahead log (its
 * fields, under a sequence number; src/store/wal.c) while its entity's
 * shard lock is still held, so each entity's log records are in the order
 * its events were applied. The committer thread appends every queued
 * record in one write and one fdatasync, then wakes the requests waiting
 * for it (their connections are suspended, not their threads): a request
 * answers only once its events are on disk. Every 10 s (or 1M events)
 * the committer starts a snapshot round by starting a new log segment;
 * the snapshot thread then writes, a few shards per LMDB transaction, the
 * changed entities' states into LMDB (each tagged with the sequence
 * number of its last event), and moves the entities idle for IDLE_ROUNDS
 * rounds out of memory (they stay in LMDB, and their next event loads
 * them back); when every shard is done, the segments before the round's
 * go. The rounds have their own thread because an LMDB commit syncs the
 * disk twice: taken between two group commits, as they once were, each
 * step held every waiting answer for tens of milliseconds. A restart
 * loads the states and replays the log through the same pipeline core,
 * skipping for each entity what its state already holds, which rebuilds
 * exactly the state the server had (processing is deterministic). A log record is one event (a few hundred bytes), where
 * an entity's state can be kilobytes: that is why the log, not the state,
 * is what each acknowledgement waits for. With a decision log, each
 * commit's decision records are one more record of the same write (see
 * the committer), so the answers still wait for one sync.
 */
#include "live.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../core/json.h"
#include "../eval/drift.h"
#include "../io/events.h"
#include "../pipeline/pipeline.h"
#include "../pipeline/state_dir.h"
#include "../store/decision_log.h"
#include "../store/store.h"
#include "../store/table.h"
#include "../store/wal.h"
#include "metrics.h"
#include "schedule.h"

#define NUM_SHARDS 64

typedef struct shard {
  pthread_mutex_t lock;
  struct tdm__live *live;
  tdm__state_map *map;
  tdm__buf loaded; /* the bytes of the last entity loaded from LMDB */
  tdm__buf record;  /* the decision log record being made */
  tdm__result result;
  tdm__table_reader *fallback; /* reads the deadline fallback's table */
  uint64_t fallback_refreshed_ns;
} shard;

/* Log entries waiting for the committer: keys (8-byte big-endian
 * sequence numbers) and values (encoded events) packed in one buffer. */
typedef struct pending {
  tdm__buf bytes;
  size_t *offsets; /* per entry: offset, value length */
  size_t count, cap;
  tdm__buf decisions; /* decision log records: one more log record */
} pending;

/* A snapshot round writes the changed states of every shard, a few
 * shards per LMDB transaction so that no shard's lock is held for long and
 * no transaction grows with the number of shards, then deletes the log up
 * to where the round began. Rounds start about every 10 s, or after this
 * many logged events. */
#define SNAPSHOT_NS 10000000000ull
#define SNAPSHOT_EVENTS 1000000
#define SHARDS_PER_STEP 4
/* An entity that no event touched for this many rounds (about 20 s) leaves
 * memory once its state is in LMDB. Nothing is lost: its next event loads
 * it back, so this bounds memory by the entities active lately, never by
 * anything another entity's events do. */
#define IDLE_ROUNDS 2
/* A request waiting for its generation to be durable. */
typedef struct waiter {
  uint64_t gen;
  void (*fn)(void *arg, int ok);
  void *arg;
} waiter;

struct tdm__live {
  tdm__pipeline *p;
  tdm__scheduler *scheduler;
  waiter *waiters; /* under commit_lock */
  size_t num_waiters, cap_waiters;
  shard shards[NUM_SHARDS];
  tdm__store *store;
  char *state_dir; /* where store lives (for errors of entities loaded) */
  /* group commit */
  pthread_mutex_t commit_lock;
  pthread_cond_t commit_wanted, commit_done;
  pending queue, writing;
  uint64_t queued_gen;    /* the generation updates queued now will get */
  uint64_t committed_gen; /* every generation <= this is durable */
  uint64_t failed_gen;    /* the first generation that failed to commit */
  uint64_t next_seq;      /* the log position of the next applied event */
  uint64_t last_snapshot_ns;
  uint64_t logged_since_snapshot;
  /* snapshot rounds: the committer begins one (under commit_lock), the
   * snapshot thread carries it out and ends it */
  int round_active;        /* a snapshot round is under way */
  uint64_t round_segment;  /* the log segment begun with the round */
  /* The snapshot thread also makes the log's next segment ahead
   * (tdm__wal_prepare), so that a rotation in the committer, at a round's
   * start or when a segment is full, creates and syncs nothing. */
  int spare_wanted;        /* the committer found no next segment made */
  int spare_failed;        /* making it failed: not asked again this round */
  pthread_cond_t round_wanted;
  tdm__wal *wal;
  int stopping;
  pthread_t committer, snapshotter;
  int committer_running, snapshotter_running;
  atomic_int warned_stale;
  /* counters */
  atomic_ullong fallback_batch, fallback_default, fallback_none;
  atomic_ullong events, rejected, duplicates, requests, commits;
  atomic_ullong commit_ns_total;
  /* Where an answer's time goes with durable state: each group commit's
   * log write and fdatasync, each snapshot step (the snapshot thread's,
   * beside the commits), and each events request from its arrival to its
   * answer (tdm__live_record_request). */
  tdm__histogram commit_seconds, snapshot_seconds, request_seconds;
  tdm__drift *drift; /* --drift-reference: NULL without */
  tdm__decision_log *decisions; /* --decision-log: NULL without */
  /* Decision records replayed from the log, for the decision log. */
  tdm__decision_redo *redo;
  size_t num_redo, cap_redo;
  tdm__buf redo_bytes;
  int decision_explain;         /* what the log's records carry */
  char *pipeline_path;
  /* The clock state.max_future is measured from: INT64_MIN reads the wall
   * clock per event (the server); an embedding program may fix it. */
  int64_t fixed_now_ms;
};

/* Which worker or shard an entity belongs to (a seed of its own). */
static uint64_t key_hash(tdm__str key) {
  return tdm__hash_bytes(key.data, key.len, 2);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- group commit ---- */

/* The sequence numbers of the log's decision records: the generation
 * with the top bit set, which no event's sequence number has. Their value
 * is where the records go in the decision log (segment and offset, each
 * 8 bytes big-endian), then the records. */
#define DECISIONS_TAG (1ull << 63)
#define DECISIONS_WHERE 16

static void put_u64_be(unsigned char out[8], uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    out[i] = (unsigned char)(v & 0xff);
    v >>= 8;
  }
}

static uint64_t get_u64_be(const unsigned char in[8]) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | in[i];
  return v;
}

/* Appends one batch of events to the log, and its decision records
 * (framed: NULL when none) as one more record, synced: what the answers
 * of its generation wait for. */
static int write_log(tdm__live *live, const pending *batch,
                     const tdm__buf *framed, uint64_t gen, tdm_error *err) {
  tdm__wal_record *records =
      tdm__malloc((batch->count + 1) * sizeof *records);
  if (records == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t i = 0; i < batch->count; i++) {
    const unsigned char *at =
        (const unsigned char *)batch->bytes.data + batch->offsets[2 * i];
    records[i] = (tdm__wal_record){get_u64_be(at), at + 8,
                                   batch->offsets[2 * i + 1]};
  }
  size_t n = batch->count;
  if (framed != NULL)
    records[n++] = (tdm__wal_record){DECISIONS_TAG | gen, framed->data,
                                     framed->len};
  int rc = tdm__wal_append(live->wal, records, n, err);
  tdm__free(records);
  return rc;
}

/* Writes the changed states of shards [first, end) to LMDB, and deletes
 * the idle entities it drops from memory, in one transaction. */
static int write_snapshot(tdm__live *live, unsigned first, unsigned end,
                          tdm_error *err) {
  tdm__state_writes writes = {0};
  int rc = TDM_OK;
  for (unsigned i = first; i < end && rc == TDM_OK; i++) {
    shard *sh = &live->shards[i];
    pthread_mutex_lock(&sh->lock);
    /* Idle entities already saved leave memory (not the store: their next
     * event loads them), then the changed ones are saved. */
    tdm__state_map_evict(sh->map, IDLE_ROUNDS);
    rc = tdm__state_writes_take(&writes, sh->map);
    pthread_mutex_unlock(&sh->lock);
  }
  if (rc == TDM_ENOMEM) tdm__fail(err, rc, "out of memory");
  if (rc == TDM_OK) rc = tdm__state_writes_flush(&writes, live->store, err);
  if (rc != TDM_OK) {
    /* Mark the changed entities dirty again for the next round. */
    for (size_t i = 0; i < writes.count; i++) {
      if (writes.items[i].del) continue;
      tdm__str key = tdm__state_write_key(&writes, i);
      shard *sh = &live->shards[key_hash(key) % NUM_SHARDS];
      pthread_mutex_lock(&sh->lock);
      tdm__state_map_mark_dirty(sh->map, key);
      pthread_mutex_unlock(&sh->lock);
    }
  }
  tdm__state_writes_free(&writes);
  return rc;
}

static void *commit_loop(void *arg) {
  tdm__live *live = arg;
  pthread_mutex_lock(&live->commit_lock);
  for (;;) {
    while (live->queue.count == 0 && live->queue.decisions.len == 0 &&
           !live->stopping)
      pthread_cond_wait(&live->commit_wanted, &live->commit_lock);
    if (live->queue.count == 0 && live->queue.decisions.len == 0 &&
        live->stopping)
      break;
    /* Take the queue; requests arriving now join the next generation. */
    pending batch = live->queue;
    live->queue = live->writing;
    live->queue.bytes.len = 0;
    live->queue.count = 0;
    live->queue.decisions.len = 0;
    uint64_t gen = live->queued_gen++;
    live->logged_since_snapshot += batch.count;
    uint64_t started = now_ns();
    int round_begins =
        !live->round_active &&
        (live->logged_since_snapshot >= SNAPSHOT_EVENTS ||
         started - live->last_snapshot_ns >= SNAPSHOT_NS);
    pthread_mutex_unlock(&live->commit_lock);

    /* 1. The log, with the commit's decision records as one more
     * record: once it is synced, the answers may go. The records then go
     * to their reserved place in the decision log's segment, unsynced,
     * after the answers are on their way (their write is no part of any
     * answer's wait); a restart writes them again from the log
     * (decision_log.h), so one sync makes both the events and their
     * decisions durable, and a decision is logged exactly when its event
     * is. */
    tdm_error err;
    int ok = 1;
    const tdm__buf *framed = NULL;
    uint64_t offset = 0;
    if (batch.decisions.len > 0) {
      uint64_t decision_segment = 0;
      ok = tdm__decision_log_reserve(live->decisions,
                                     batch.decisions.len - DECISIONS_WHERE,
                                     &decision_segment, &offset,
                                     &err) == TDM_OK;
      if (!ok) fprintf(stderr, "tandem serve: decision log: %s\n", err.message);
      unsigned char *where = (unsigned char *)batch.decisions.data;
      put_u64_be(where, decision_segment);
      put_u64_be(where + 8, offset);
      framed = &batch.decisions;
    }
    if (ok && (batch.count > 0 || framed != NULL)) {
      ok = write_log(live, &batch, framed, gen, &err) == TDM_OK;
      if (!ok) fprintf(stderr, "tandem serve: log: %s\n", err.message);
    }
    if (ok && framed != NULL) tdm__crash_point("serve-decisions-logged");
    uint64_t committed = now_ns();
    int spare_wanted = ok && !tdm__wal_has_spare(live->wal);
    atomic_fetch_add(&live->commits, 1);
    atomic_fetch_add(&live->commit_ns_total, committed - started);
    tdm__histogram_observe_ns(&live->commit_seconds, committed - started);

    pthread_mutex_lock(&live->commit_lock);
    if (spare_wanted && !live->spare_failed && !live->spare_wanted) {
      live->spare_wanted = 1;
      pthread_cond_signal(&live->round_wanted);
    }
    if (!ok && live->failed_gen == 0) live->failed_gen = gen;
    live->committed_gen = gen;
    pthread_cond_broadcast(&live->commit_done);
    /* Wake the suspended requests of this generation (and earlier). */
    size_t keep = 0;
    for (size_t i = 0; i < live->num_waiters; i++) {
      waiter w = live->waiters[i];
      if (w.gen <= gen)
        w.fn(w.arg, !(live->failed_gen != 0 && live->failed_gen <= w.gen));
      else
        live->waiters[keep++] = w;
    }
    live->num_waiters = keep;
    pthread_mutex_unlock(&live->commit_lock);

    /* The batch's buffers are still the committer's own (requests queue
     * into live->queue, the other pair) until the next commit takes them
     * back. A write that fails leaves the records in the write-ahead log
     * only: the decision log then refuses later commits and keeps the
     * segment open for the restart to write them again (decision_log.h). */
    if (ok && framed != NULL) {
      tdm__crash_point("serve-decisions-answered");
      if (tdm__decision_log_write_at(
              live->decisions, offset, batch.decisions.data + DECISIONS_WHERE,
              batch.decisions.len - DECISIONS_WHERE, &err) != TDM_OK)
        fprintf(stderr, "tandem serve: decision log: %s\n", err.message);
    }
    live->writing = batch;

    /* 2. A snapshot round begins with a new log segment: events after
     * this point go there, and once the snapshot thread has saved every
     * shard's states, the older segments go. The rotation is the
     * committer's, between two appends; the states are the snapshot
     * thread's. */
    if (ok && round_begins) {
      uint64_t segment;
      if (tdm__wal_rotate(live->wal, &segment, &err) == TDM_OK) {
        pthread_mutex_lock(&live->commit_lock);
        live->round_active = 1;
        live->spare_failed = 0;
        live->round_segment = segment;
        live->logged_since_snapshot = 0;
        live->last_snapshot_ns = started;
        pthread_cond_signal(&live->round_wanted);
        pthread_mutex_unlock(&live->commit_lock);
      } else {
        fprintf(stderr, "tandem serve: log: %s\n", err.message);
      }
    }
    pthread_mutex_lock(&live->commit_lock);
  }
  pthread_mutex_unlock(&live->commit_lock);
  return NULL;
}

/* Makes the log's next segment when the committer asked for it; called
 * with commit_lock held, which it releases while it works. */
static void prepare_spare(tdm__live *live) {
  if (!live->spare_wanted) return;
  live->spare_wanted = 0;
  pthread_mutex_unlock(&live->commit_lock);
  tdm_error err;
  int ok = tdm__wal_prepare(live->wal, &err) == TDM_OK;
  if (!ok) fprintf(stderr, "tandem serve: log: %s\n", err.message);
  pthread_mutex_lock(&live->commit_lock);
  if (!ok) live->spare_failed = 1;
}

/* The snapshot thread: carries out each round the committer begins, a few
 * shards per LMDB transaction, while commits go on, and makes the log's
 * next segment whenever the committer has used it. A step that fails
 * ends the round without deleting any log (its entities are marked dirty
 * again), and the next round, about SNAPSHOT_NS later, saves them. */
static void *snapshot_loop(void *arg) {
  tdm__live *live = arg;
  pthread_mutex_lock(&live->commit_lock);
  for (;;) {
    while (!live->round_active && !live->spare_wanted && !live->stopping)
      pthread_cond_wait(&live->round_wanted, &live->commit_lock);
    if (live->stopping) break;
    prepare_spare(live);
    if (!live->round_active) continue;
    uint64_t segment = live->round_segment;
    pthread_mutex_unlock(&live->commit_lock);

    tdm_error err;
    int ok = 1;
    for (unsigned first = 0; first < NUM_SHARDS && ok; first += SHARDS_PER_STEP) {
      pthread_mutex_lock(&live->commit_lock);
      prepare_spare(live);
      int stopping = live->stopping;
      pthread_mutex_unlock(&live->commit_lock);
      if (stopping) {
        ok = 0;
        break;
      }
      unsigned end = first + SHARDS_PER_STEP < NUM_SHARDS
                         ? first + SHARDS_PER_STEP
                         : NUM_SHARDS;
      uint64_t step_started = now_ns();
      ok = write_snapshot(live, first, end, &err) == TDM_OK;
      tdm__histogram_observe_ns(&live->snapshot_seconds,
                                now_ns() - step_started);
      if (!ok) fprintf(stderr, "tandem serve: state: %s\n", err.message);
    }
    /* The decision records in the segments dropped must be on disk in the
     * decision log first. */
    if (ok && ((live->decisions != NULL &&
                tdm__decision_log_sync(live->decisions, &err) != TDM_OK) ||
               tdm__wal_drop_before(live->wal, segment, &err) != TDM_OK))
      fprintf(stderr, "tandem serve: log: %s\n", err.message);
    pthread_mutex_lock(&live->commit_lock);
    live->round_active = 0;
  }
  pthread_mutex_unlock(&live->commit_lock);
  return NULL;
}

/* Ends a decision record with its log position (0: the answer applied
 * nothing) and appends it to out. */
static int end_record(const tdm__buf *record, uint64_t seq, tdm__buf *out) {
  int rc = tdm__buf_append(out, record->data, record->len);
  if (rc == TDM_OK) rc = tdm__buf_append_uint(out, seq);
  if (rc == TDM_OK) rc = tdm__buf_append(out, "}\n", 2);
  return rc;
}

/* Appends a decision record to a commit's records (pending.decisions),
 * which begin with DECISIONS_WHERE bytes of room for where they go in the
 * decision log: the committer fills them in and writes the buffer to the
 * write-ahead log as it is, with no copy. Called with commit_lock held. */
static int queue_decision(pending *q, const tdm__buf *record, uint64_t seq) {
  static const char room[DECISIONS_WHERE] = {0};
  int rc = q->decisions.len == 0
               ? tdm__buf_append(&q->decisions, room, DECISIONS_WHERE)
               : TDM_OK;
  return rc == TDM_OK ? end_record(record, seq, &q->decisions) : rc;
}

/* Queues the decision record of an answer that applied nothing (a
 * duplicate, a fallback) for the next group commit; returns the generation
 * to wait for. */
static int queue_record(tdm__live *live, const tdm__buf *record,
                        uint64_t *gen) {
  pthread_mutex_lock(&live->commit_lock);
  size_t at = live->queue.decisions.len;
  int rc = queue_decision(&live->queue, record, 0);
  if (rc == TDM_OK) {
    *gen = live->queued_gen;
    pthread_cond_signal(&live->commit_wanted);
  } else {
    live->queue.decisions.len = at;
  }
  pthread_mutex_unlock(&live->commit_lock);
  return rc;
}

/* Logs an applied event, and its decision record when there is one
 * (record NULL: none); returns the generation to wait for. Called with
 * the entity's shard locked, so the entity's log order is its order. */
static int log_event(tdm__live *live, shard *sh, tdm__str entity,
                     const tdm__str *fields, const tdm__buf *record,
                     uint64_t *gen) {
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  pthread_mutex_lock(&live->commit_lock);
  pending *q = &live->queue;
  int rc = TDM_OK;
  if (q->count == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 256;
    size_t *offsets = tdm__realloc(q->offsets, cap * 2 * sizeof(size_t));
    if (offsets == NULL) rc = TDM_ENOMEM;
    else {
      q->offsets = offsets;
      q->cap = cap;
    }
  }
  size_t at = q->bytes.len;
  uint64_t seq = live->next_seq;
  unsigned char key[8];
  put_u64_be(key, seq);
  if (rc == TDM_OK) rc = tdm__buf_append(&q->bytes, key, 8);
  if (rc == TDM_OK) rc = tdm__event_encode(spec, fields, &q->bytes);
  size_t decisions_at = q->decisions.len;
  if (rc == TDM_OK && record != NULL) rc = queue_decision(q, record, seq);
  if (rc == TDM_OK) {
    q->offsets[2 * q->count] = at;
    q->offsets[2 * q->count + 1] = q->bytes.len - at - 8;
    q->count++;
    live->next_seq++;
    tdm__state_map_set_tag(sh->map, entity, seq);
    *gen = live->queued_gen;
    pthread_cond_signal(&live->commit_wanted);
  } else {
    q->bytes.len = at;
    q->decisions.len = decisions_at;
  }
  pthread_mutex_unlock(&live->commit_lock);
  return rc;
}

/* Waits until generation gen is on disk; TDM_EIO if it failed. */
static int wait_durable(tdm__live *live, uint64_t gen) {
  pthread_mutex_lock(&live->commit_lock);
  while (live->committed_gen < gen)
    pthread_cond_wait(&live->commit_done, &live->commit_lock);
  int failed = live->failed_gen != 0 && live->failed_gen <= gen;
  pthread_mutex_unlock(&live->commit_lock);
  return failed ? TDM_EIO : TDM_OK;
}

/* ---- restoring ---- */

/* The loader of a shard's map: an entity that left memory comes back from
 * LMDB. Called with the shard locked. */
static int load_entity(void *ctx, tdm__state_map *map, tdm__str key,
                       tdm_error *err) {
  shard *sh = ctx;
  return tdm__state_dir_load(sh->live->store, sh->live->state_dir, map, key,
                             &sh->loaded, err);
}

static tdm__state_map *shard_map(void *ctx, tdm__str key) {
  tdm__live *live = ctx;
  return live->shards[key_hash(key) % NUM_SHARDS].map;
}

/* Replays one logged event unless its entity's state already has it. */
static int replay_logged(void *ctx, uint64_t seq, const void *value,
                         size_t value_len) {
  tdm__live *live = ctx;
  if (seq & DECISIONS_TAG) {
    /* Decision records: kept for the decision log, which writes them
     * again into its open segment when it opens. */
    if (value_len < DECISIONS_WHERE) return TDM_EPARSE;
    if (live->num_redo == live->cap_redo) {
      size_t cap = live->cap_redo ? live->cap_redo * 2 : 64;
      tdm__decision_redo *grown =
          tdm__realloc(live->redo, cap * sizeof *grown);
      if (grown == NULL) return TDM_ENOMEM;
      live->redo = grown;
      live->cap_redo = cap;
    }
    size_t at = live->redo_bytes.len;
    if (tdm__buf_append(&live->redo_bytes,
                        (const char *)value + DECISIONS_WHERE,
                        value_len - DECISIONS_WHERE) != TDM_OK)
      return TDM_ENOMEM;
    /* data holds the offset into redo_bytes until the log opens (the
     * buffer may still move). */
    live->redo[live->num_redo++] = (tdm__decision_redo){
        get_u64_be(value), get_u64_be((const unsigned char *)value + 8),
        (const char *)(uintptr_t)at, value_len - DECISIONS_WHERE};
    return TDM_OK;
  }
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  tdm__str fields[spec->num_fields + 1];
  if (tdm__event_decode(spec, value, value_len, fields) != TDM_OK)
    return TDM_EPARSE;
  tdm__event ev = {fields};
  tdm__str entity;
  tdm_error err;
  if (tdm__pipeline_entity(live->p, &ev, &entity, &err) != TDM_OK) {
    /* A log written before a limit (an entity key or id of at most
     * TDM__MAX_KEY_BYTES) can hold an event this version refuses. */
    fprintf(stderr, "tandem serve: logged event %llu: %s\n",
            (unsigned long long)seq, err.message);
    return TDM_EPARSE;
  }
  shard *sh = &live->shards[key_hash(entity) % NUM_SHARDS];
  if (seq >= live->next_seq) live->next_seq = seq + 1;
  if (tdm__state_map_tag(sh->map, entity) >= seq) return TDM_OK;
  int rc = tdm__pipeline_process(live->p, sh->map, &ev, &sh->result, &err);
  if (rc != TDM_OK) {
    fprintf(stderr, "tandem serve: logged event %llu: %s\n",
            (unsigned long long)seq, err.message);
    return rc;
  }
  tdm__state_map_set_tag(sh->map, entity, seq);
  return TDM_OK;
}

/* ---- open, close ---- */

static int load_tables(tdm__live *live, tdm_error *err);

int tdm__live_open(const char *pipeline_path, const char *state_dir,
                   const char *store, const tdm__store_settings *settings,
                   tdm__live **out, tdm_error *err) {
  *out = NULL;
  tdm__live *live = tdm__calloc(1, sizeof *live);
  if (live == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  pthread_mutex_init(&live->commit_lock, NULL);
  pthread_cond_init(&live->commit_wanted, NULL);
  pthread_cond_init(&live->commit_done, NULL);
  pthread_cond_init(&live->round_wanted, NULL);
  live->queued_gen = 1;
  live->next_seq = 1;
  live->fixed_now_ms = INT64_MIN;
  for (int i = 0; i < NUM_SHARDS; i++) pthread_mutex_init(&live->shards[i].lock, NULL);
  live->pipeline_path = tdm__strdup(pipeline_path);
  int rc = live->pipeline_path
               ? tdm__pipeline_load(pipeline_path, 0, &live->p, err)
               : tdm__fail(err, TDM_ENOMEM, "out of memory");
  if (rc == TDM_OK)
    rc = tdm__pipeline_open_tables(live->p, store, settings,
                                   TDM__LOOKUP_FOLLOW, err);
  if (rc == TDM_OK) rc = load_tables(live, err);
  if (rc == TDM_OK)
    rc = tdm__scheduler_start(pipeline_path, tdm__pipeline_spec(live->p),
                              store, settings ? settings->scratch_dir : NULL,
                              &live->scheduler, err);
  for (int i = 0; i < NUM_SHARDS && rc == TDM_OK; i++) {
    if (tdm__state_map_new(live->p, &live->shards[i].map) != TDM_OK)
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    else
      rc = tdm__result_init(live->p, &live->shards[i].result, err);
  }
  if (rc == TDM_OK && state_dir != NULL) {
    const char *name = tdm__pipeline_spec(live->p)->name;
    uint64_t max_tag = 0;
    live->state_dir = tdm__strdup(state_dir);
    rc = live->state_dir ? tdm__state_dir_open(state_dir, name, settings,
                                               &live->store, err)
                         : tdm__fail(err, TDM_ENOMEM, "out of memory");
    if (rc == TDM_OK) rc = tdm__wal_open(state_dir, name, &live->wal, err);
    if (rc == TDM_OK)
      rc = tdm__state_dir_restore(live->store, state_dir, shard_map, live,
                                  &max_tag, err);
    if (max_tag >= live->next_seq) live->next_seq = max_tag + 1;
    if (rc == TDM_OK) rc = tdm__wal_replay(live->wal, replay_logged, live, err);
    for (int i = 0; i < NUM_SHARDS && rc == TDM_OK; i++) {
      live->shards[i].live = live;
      tdm__state_map_set_loader(live->shards[i].map, load_entity,
                                &live->shards[i]);
    }
    live->last_snapshot_ns = now_ns();
    live->spare_wanted = 1; /* the first segment's successor */
    if (rc == TDM_OK) {
      if (pthread_create(&live->committer, NULL, commit_loop, live) != 0)
        rc = tdm__fail(err, TDM_ENOMEM, "cannot start the commit thread");
      else
        live->committer_running = 1;
    }
    if (rc == TDM_OK) {
      if (pthread_create(&live->snapshotter, NULL, snapshot_loop, live) != 0)
        rc = tdm__fail(err, TDM_ENOMEM, "cannot start the snapshot thread");
      else
        live->snapshotter_running = 1;
    }
  }
  if (rc != TDM_OK) {
    tdm__live_close(live);
    return rc;
  }
  *out = live;
  return TDM_OK;
}

void tdm__live_set_clock(tdm__live *live, int64_t now_ms) {
  live->fixed_now_ms = now_ms;
}

void tdm__live_close(tdm__live *live) {
  if (live == NULL) return;
  tdm__scheduler_stop(live->scheduler);
  if (live->committer_running || live->snapshotter_running) {
    pthread_mutex_lock(&live->commit_lock);
    live->stopping = 1;
    pthread_cond_signal(&live->commit_wanted);
    pthread_cond_signal(&live->round_wanted);
    pthread_mutex_unlock(&live->commit_lock);
    if (live->committer_running) pthread_join(live->committer, NULL);
    /* A round under way stops at its next step; the store and the
     * decision log below are closed only after it. */
    if (live->snapshotter_running) pthread_join(live->snapshotter, NULL);
  }
  /* After the committer: every queued record is written. */
  tdm__decision_log_close(live->decisions);
  tdm__free(live->pipeline_path);
  for (int i = 0; i < NUM_SHARDS; i++) {
    tdm__state_map_free(live->shards[i].map);
    tdm__result_free(&live->shards[i].result);
    tdm__table_reader_free(live->shards[i].fallback);
    tdm__buf_free(&live->shards[i].loaded);
    tdm__buf_free(&live->shards[i].record);
    pthread_mutex_destroy(&live->shards[i].lock);
  }
  tdm__free(live->waiters);
  tdm__buf_free(&live->queue.bytes);
  tdm__free(live->queue.offsets);
  tdm__buf_free(&live->writing.bytes);
  tdm__buf_free(&live->queue.decisions);
  tdm__free(live->redo);
  tdm__buf_free(&live->redo_bytes);
  tdm__buf_free(&live->writing.decisions);
  tdm__free(live->writing.offsets);
  tdm__store_close(live->store);
  tdm__free(live->state_dir);
  tdm__wal_close(live->wal);
  tdm__drift_free(live->drift);
  tdm__pipeline_free(live->p);
  pthread_mutex_destroy(&live->commit_lock);
  pthread_cond_destroy(&live->commit_wanted);
  pthread_cond_destroy(&live->commit_done);
  pthread_cond_destroy(&live->round_wanted);
  tdm__free(live);
}

const char *tdm__live_name(const tdm__live *live) {
  return tdm__pipeline_spec(live->p)->name;
}

int tdm__live_watch_drift(tdm__live *live, const char *reference,
                          const char *registry, tdm_error *err) {
  tdm__drift_source source = {reference, registry};
  return tdm__drift_open(live->p, &source, NUM_SHARDS, &live->drift, err);
}

tdm__drift *tdm__live_drift(const tdm__live *live) { return live->drift; }

int tdm__live_log_decisions(tdm__live *live, const char *dir,
                            uint64_t max_bytes, int64_t max_ms, int explain,
                            const char *registry, tdm_error *err) {
  tdm_model_info info;
  memset(&info, 0, sizeof info);
  if (tdm__pipeline_model(live->p) != NULL)
    tdm_model_get_info(tdm__pipeline_model(live->p), &info);
  tdm__decision_log_options opt = {
      .dir = dir,
      .pipeline_path = live->pipeline_path,
      .pipeline_name = tdm__live_name(live),
      .model_sha256 = info.sha256,
      .runner = "serve",
      .registry = registry,
      .max_bytes = max_bytes,
      .max_ms = max_ms,
  };
  live->decision_explain = explain;
  for (size_t i = 0; i < live->num_redo; i++)
    live->redo[i].data = live->redo_bytes.data + (uintptr_t)live->redo[i].data;
  int rc = tdm__decision_log_open(&opt, live->redo, live->num_redo,
                                  &live->decisions, err);
  tdm__free(live->redo);
  tdm__buf_free(&live->redo_bytes);
  live->redo = NULL;
  live->num_redo = live->cap_redo = 0;
  return rc;
}

/* ---- events ---- */

/* One event: processed under its shard's lock, its result appended to
 * out. *gen is raised to the generation its state update joined. */
/* A request's event: its fields (pointing into doc; fields has room for
 * every field), its entity and the shard that owns it. */
static int read_event(tdm__live *live, const tdm__json_doc *doc,
                      const tdm__json *object, tdm__str *fields,
                      tdm__str *entity, shard **sh, tdm_error *err) {
  int rc = tdm__event_from_json(tdm__pipeline_spec(live->p), doc, object, NULL,
                                fields, err);
  tdm__event ev = {fields};
  if (rc == TDM_OK) rc = tdm__pipeline_entity(live->p, &ev, entity, err);
  if (rc == TDM_OK) *sh = &live->shards[key_hash(*entity) % NUM_SHARDS];
  return rc;
}

int tdm__live_can_fall_back(const tdm__live *live) {
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  return spec->deadline_ms > 0 &&
         ((spec->fallback_table && tdm__pipeline_tables(live->p)) ||
          spec->default_decision);
}

/* The entity's last batch score, from the newest version of the fallback
 * table (*version 0: none). Called with the shard locked. */
static int batch_score(tdm__live *live, shard *sh, tdm__str entity,
                       double *score, uint64_t *version, int64_t *as_of,
                       tdm_error *err) {
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  tdm__tables *tables = tdm__pipeline_tables(live->p);
  *version = 0;
  if (spec->fallback_table == NULL || tables == NULL) return TDM_OK;
  uint64_t now = now_ns();
  int rc = TDM_OK;
  if (sh->fallback == NULL) {
    rc = tdm__table_reader_new(tables, &sh->fallback, err);
    sh->fallback_refreshed_ns = now;
  } else if (now - sh->fallback_refreshed_ns > 1000000000u) {
    rc = tdm__table_reader_refresh(sh->fallback, err);
    sh->fallback_refreshed_ns = now;
  }
  if (rc != TDM_OK) return rc;
  const tdm__table_version *v;
  rc = tdm__table_reader_pick(sh->fallback, spec->fallback_table, INT64_MAX, &v,
                              err);
  if (rc == TDM_ENOTFOUND) return TDM_OK;
  if (rc != TDM_OK) return rc;
  size_t column = tdm__table_version_column(v, spec->fallback_column);
  int found = 0;
  rc = tdm__table_get(sh->fallback, spec->fallback_table, v->version,
                      entity.data, entity.len, &column, 1, score, &found, err);
  if (rc == TDM_OK && found && !isnan(*score)) {
    *version = v->version;
    *as_of = v->as_of_ms;
  }
  return rc == TDM_ENOTFOUND ? TDM_OK : rc;
}

/* The decision log's record of an answer (answer[0..len) is what the
 * client gets) into sh->record, less its log_seq's value and closing
 * brace (tdm__pipeline_decision_record). */
static int make_record(tdm__live *live, shard *sh, const tdm__event *ev,
                       int explain, const char *answer, size_t len) {
  int rc = tdm__pipeline_decision_record(live->p, ev, &sh->result, explain,
                                         live->decision_explain, answer, len,
                                         &sh->record);
  return rc == TDM_OK ? tdm__buf_append(&sh->record, ",\"log_seq\":", 11) : rc;
}

/*
 * Records an answer: an applied event goes to the write-ahead log (with
 * --state) and its decision record with it, in one group commit; an
 * answer that applied nothing (a duplicate, a fallback) logs only its
 * decision record. Without --state a record is written at once, not
 * synced. *gen is raised to the generation to wait for. Called with the
 * shard locked.
 */
static int record_answer(tdm__live *live, shard *sh, const tdm__event *ev,
                         tdm__str entity, int applied, int explain,
                         const tdm__buf *out, size_t mark, uint64_t *gen,
                         tdm_error *err) {
  int rc = TDM_OK;
  const tdm__buf *record = NULL;
  if (live->decisions != NULL) {
    rc = make_record(live, sh, ev, explain, out->data + mark, out->len - mark);
    record = &sh->record;
  }
  uint64_t g = 0;
  if (rc == TDM_OK && live->store != NULL && applied)
    rc = log_event(live, sh, entity, ev->fields, record, &g);
  else if (rc == TDM_OK && live->store != NULL && record != NULL)
    rc = queue_record(live, record, &g);
  else if (rc == TDM_OK && record != NULL) {
    rc = tdm__buf_append(&sh->record, "0}\n", 3);
    if (rc == TDM_OK)
      return tdm__decision_log_append(live->decisions, sh->record.data,
                                      sh->record.len, err);
  }
  if (rc != TDM_OK) return tdm__fail(err, rc, "out of memory");
  if (g > *gen) *gen = g;
  return TDM_OK;
}

/* One event answered by the deadline fallback: not applied. TDM_EINVAL
 * when there is neither a batch score nor a default decision. */
static int fallback_event(tdm__live *live, const tdm__json_doc *doc,
                          const tdm__json *object, tdm__buf *out,
                          uint64_t *gen, tdm_error *err) {
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  tdm__str fields[spec->num_fields + 1];
  tdm__event ev = {fields};
  tdm__str entity;
  shard *sh;
  int rc = read_event(live, doc, object, fields, &entity, &sh, err);
  if (rc != TDM_OK) return rc;
  pthread_mutex_lock(&sh->lock);
  double score = NAN;
  uint64_t version = 0;
  int64_t as_of = 0;
  rc = batch_score(live, sh, entity, &score, &version, &as_of, err);
  if (rc == TDM_OK && version == 0 && spec->default_decision == NULL) {
    atomic_fetch_add(&live->fallback_none, 1);
    rc = tdm__fail(err, TDM_EINVAL,
                   "the deadline (%lld ms) passed before the event could be "
                   "processed, and the entity has no batch score",
                   (long long)spec->deadline_ms);
  }
  if (rc == TDM_OK)
    rc = tdm__pipeline_fallback(live->p, &ev, score, version, as_of,
                                &sh->result, err);
  if (rc == TDM_OK) {
    atomic_fetch_add(version ? &live->fallback_batch : &live->fallback_default,
                     1);
    size_t mark = out->len;
    rc = tdm__pipeline_json(live->p, &ev, &sh->result, 0, out);
    if (rc != TDM_OK) tdm__fail(err, rc, "out of memory");
    if (rc == TDM_OK)
      rc = record_answer(live, sh, &ev, entity, 0, 0, out, mark, gen, err);
  }
  pthread_mutex_unlock(&sh->lock);
  return rc;
}

static int one_event(tdm__live *live, const tdm__json_doc *doc,
                     const tdm__json *object, int with_features,
                     tdm__buf *out, uint64_t *gen, tdm_error *err) {
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  tdm__str fields[spec->num_fields + 1];
  tdm__event ev = {fields};
  tdm__str entity;
  shard *sh;
  int rc = read_event(live, doc, object, fields, &entity, &sh, err);
  if (rc != TDM_OK) return rc;
  pthread_mutex_lock(&sh->lock);
  tdm__state_map_set_clock(sh->map, live->fixed_now_ms == INT64_MIN
                                         ? tdm__now_ms()
                                         : live->fixed_now_ms);
  rc = tdm__pipeline_process(live->p, sh->map, &ev, &sh->result, err);
  if (rc == TDM_OK) {
    size_t mark = out->len;
    rc = tdm__pipeline_json(live->p, &ev, &sh->result, with_features, out);
    if (rc != TDM_OK) tdm__fail(err, rc, "out of memory");
    if (rc == TDM_OK)
      rc = record_answer(live, sh, &ev, entity, !sh->result.duplicate,
                         with_features, out, mark, gen, err);
    if (sh->result.duplicate) atomic_fetch_add(&live->duplicates, 1);
    if (rc == TDM_OK && live->drift != NULL && !sh->result.duplicate)
      tdm__drift_add(live->drift, (size_t)(sh - live->shards), &sh->result);
  }
  pthread_mutex_unlock(&sh->lock);
  return rc;
}

void tdm__live_durability_failed(tdm__buf *out, unsigned *status) {
  out->len = 0;
  *status = 500;
  tdm__pipeline_error_json(TDM_EIO,
                           "the state could not be written to disk; the "
                           "events may not be applied after a restart",
                           out);
}

int tdm__live_when_durable(tdm__live *live, uint64_t gen,
                           void (*fn)(void *arg, int ok), void *arg) {
  pthread_mutex_lock(&live->commit_lock);
  int done = live->committed_gen >= gen;
  if (!done) {
    if (live->num_waiters == live->cap_waiters) {
      size_t cap = live->cap_waiters ? live->cap_waiters * 2 : 64;
      waiter *w = tdm__realloc(live->waiters, cap * sizeof *w);
      if (w == NULL) {
        /* No room to wait asynchronously: wait here. */
        pthread_mutex_unlock(&live->commit_lock);
        fn(arg, wait_durable(live, gen) == TDM_OK);
        return 0;
      }
      live->waiters = w;
      live->cap_waiters = cap;
    }
    live->waiters[live->num_waiters++] = (waiter){gen, fn, arg};
  }
  pthread_mutex_unlock(&live->commit_lock);
  return done;
}

void tdm__live_events(tdm__live *live, const char *body, size_t len,
                      int with_features, tdm__buf *out, unsigned *status) {
  uint64_t gen;
  tdm__live_events_async(live, body, len, with_features, 0, 0, out, status,
                         &gen);
  if (gen > 0 && wait_durable(live, gen) != TDM_OK)
    tdm__live_durability_failed(out, status);
}

void tdm__live_events_async(tdm__live *live, const char *body, size_t len,
                            int with_features, uint64_t waited_us,
                            int overloaded, tdm__buf *out, unsigned *status,
                            uint64_t *gen_out) {
  *gen_out = 0;
  atomic_fetch_add(&live->requests, 1);
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  /* Past the deadline already, or no room: the fallback answers. */
  int fall_back = tdm__live_can_fall_back(live) &&
                  (overloaded || waited_us >= (uint64_t)spec->deadline_ms * 1000);
  tdm__json_doc doc;
  tdm_error err;
  *status = 200;
  if (tdm__json_parse(&doc, body, len, "request", 0, &err) != TDM_OK) {
    *status = err.status == TDM_ENOMEM ? 500 : 400;
    tdm__pipeline_error_json(err.status, err.message, out);
    return;
  }
  uint64_t gen = 0;
  const tdm__json *root = doc.root;
  if (root->type == TDM__JSON_ARRAY &&
      root->count > TDM__MAX_EVENTS_PER_REQUEST) {
    char message[160];
    snprintf(message, sizeof message,
             "an array of %zu events; a request carries at most %d (send "
             "the rest in further requests)",
             root->count, TDM__MAX_EVENTS_PER_REQUEST);
    *status = 413;
    tdm__pipeline_error_json(TDM_EINVAL, message, out);
  } else if (root->type == TDM__JSON_ARRAY) {
    tdm__buf_append(out, "[", 1);
    for (size_t i = 0; i < root->count; i++) {
      if (i > 0) tdm__buf_append(out, ",", 1);
      size_t mark = out->len;
      int rc = fall_back
                   ? fallback_event(live, &doc, &root->items[i], out, &gen,
                                    &err)
                   : one_event(live, &doc, &root->items[i], with_features, out,
                               &gen, &err);
      atomic_fetch_add(&live->events, 1);
      if (rc != TDM_OK) {
        out->len = mark;
        tdm__pipeline_error_json(rc, err.message, out);
        atomic_fetch_add(&live->rejected, 1);
        if (rc == TDM_ENOMEM) *status = 500;
      }
    }
    tdm__buf_append(out, "]", 1);
  } else {
    int rc = fall_back ? fallback_event(live, &doc, root, out, &gen, &err)
                       : one_event(live, &doc, root, with_features, out, &gen,
                                   &err);
    atomic_fetch_add(&live->events, 1);
    if (rc != TDM_OK) {
      atomic_fetch_add(&live->rejected, 1);
      out->len = 0;
      *status = rc == TDM_ENOMEM                  ? 500
                : rc == TDM_EINVAL && fall_back     ? 504
                : rc == TDM_ETOOLATE || rc == TDM_EFUTURE ? 422
                                                    : 400;
      tdm__pipeline_error_json(rc, err.message, out);
    }
  }
  tdm__json_doc_free(&doc);
  *gen_out = gen;
}

int tdm__live_schedule(tdm__live *live, tdm__buf *out) {
  if (live->scheduler == NULL)
    return tdm__buf_append(out, "{\"schedules\":[]}", 16);
  return tdm__scheduler_status(live->scheduler, out);
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

/* The tables the pipeline reads: its lookups', its fallback's and those
 * its tables: section names. */
static size_t tables_read(const tdm__live *live, const char **names,
                          size_t max) {
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  size_t n = 0;
  for (size_t i = 0; i < spec->num_features; i++)
    if (spec->features[i].kind == TDM__FEATURE_LOOKUP && n < max)
      names[n++] = spec->features[i].table;
  if (spec->fallback_table && n < max) names[n++] = spec->fallback_table;
  for (size_t i = 0; i < spec->num_tables && n < max; i++)
    names[n++] = spec->tables[i].table;
  /* Each once. */
  size_t unique = 0;
  for (size_t i = 0; i < n; i++) {
    size_t j = 0;
    while (j < unique && strcmp(names[j], names[i]) != 0) j++;
    if (j == unique) names[unique++] = names[i];
  }
  return unique;
}

/* Lists every table the server reads once at start. For a Redis store
 * this loads them and has them followed from then on, so that neither a
 * request (the deadline fallback's table) nor a readiness probe (a table
 * with max_staleness only) is the first to wait on Redis, and a store that
 * cannot be read is an error at start. */
static int load_tables(tdm__live *live, tdm_error *err) {
  tdm__tables *tables = tdm__pipeline_tables(live->p);
  if (tables == NULL) return TDM_OK;
  const char *names[64];
  size_t n = tables_read(live, names, 64);
  int rc = TDM_OK;
  for (size_t i = 0; i < n && rc == TDM_OK; i++) {
    tdm__table_version *versions = NULL;
    size_t count = 0;
    rc = tdm__tables_versions(tables, names[i], &versions, &count, err);
    tdm__table_versions_free(versions, count);
  }
  return rc;
}

/* A table's newest version and its age in seconds (wall clock); version
 * 0 when it has none. */
static void table_age(const tdm__live *live, const char *table,
                      uint64_t *version, double *age_s) {
  tdm__tables *tables = tdm__pipeline_tables(live->p);
  tdm__table_version *versions = NULL;
  size_t count = 0;
  tdm_error err;
  *version = 0;
  *age_s = INFINITY;
  if (tables != NULL &&
      tdm__tables_versions(tables, table, &versions, &count, &err) == TDM_OK &&
      count > 0) {
    *version = versions[0].version;
    *age_s = (double)(tdm__now_ms() - versions[0].as_of_ms) / 1000.0;
  }
  tdm__table_versions_free(versions, count);
}

int tdm__live_ready(tdm__live *live) {
  const tdm__spec *spec = tdm__pipeline_spec(live->p);
  int ready = 1;
  for (size_t i = 0; i < spec->num_tables; i++) {
    const tdm__table_spec *t = &spec->tables[i];
    if (t->max_staleness_ms == 0) continue;
    uint64_t version;
    double age;
    table_age(live, t->table, &version, &age);
    int stale = age * 1000.0 > (double)t->max_staleness_ms;
    if (stale && t->fail_ready) ready = 0;
    if (stale && !t->fail_ready && !atomic_exchange(&live->warned_stale, 1))
      fprintf(stderr,
              "tandem serve: warning: table %s is older than its "
              "max_staleness (%s)\n",
              t->table, version ? "its newest version is too old" : "no version");
    if (!stale && !t->fail_ready) atomic_store(&live->warned_stale, 0);
  }
  return ready;
}

void tdm__live_record_request(tdm__live *live, uint64_t ns) {
  tdm__histogram_observe_ns(&live->request_seconds, ns);
}

/* The three latency histograms of the live endpoint (see struct
 * tdm__live), appended after tdm__live_metrics' counters. */
static int latency_metrics(tdm__live *live, tdm__buf *out) {
  static const struct {
    const char *name, *help;
  } families[] = {
      {"tandem_pipeline_commit_seconds",
       "Each group commit's log write and fdatasync (what every answer with "
       "durable state waits for)."},
      {"tandem_pipeline_snapshot_step_seconds",
       "Each snapshot step: a few shards' changed states written to LMDB "
       "by the snapshot thread, beside the group commits."},
      {"tandem_pipeline_request_duration_seconds",
       "Events requests, from arrival (headers read) to the answer queued, "
       "the durable wait included."},
  };
  const tdm__histogram *histograms[] = {
      &live->commit_seconds, &live->snapshot_seconds, &live->request_seconds};
  char labels[160];
  snprintf(labels, sizeof labels, "pipeline=\"%s\"", tdm__live_name(live));
  int rc = TDM_OK;
  for (size_t f = 0; f < sizeof families / sizeof families[0] && rc == TDM_OK;
       f++) {
    rc = tdm__buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n",
                         families[f].name, families[f].help, families[f].name);
    if (rc == TDM_OK)
      rc = tdm__histogram_render_seconds(out, families[f].name, labels,
                                         histograms[f]);
  }
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
  int rc = tdm__buf_printf(
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
      "# HELP tandem_pipeline_fallbacks_total Events answered by the "
      "deadline fallback, by source (batch: the last batch score; default: "
      "the default decision; none: 504).\n"
      "# TYPE tandem_pipeline_fallbacks_total counter\n"
      "tandem_pipeline_fallbacks_total{pipeline=\"%s\",source=\"batch\"} %llu\n"
      "tandem_pipeline_fallbacks_total{pipeline=\"%s\",source=\"default\"} "
      "%llu\n"
      "tandem_pipeline_fallbacks_total{pipeline=\"%s\",source=\"none\"} %llu\n"
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
      (unsigned long long)atomic_load(&live->fallback_batch), name,
      (unsigned long long)atomic_load(&live->fallback_default), name,
      (unsigned long long)atomic_load(&live->fallback_none), name,
      (unsigned long long)atomic_load(&live->commits), name,
      (double)atomic_load(&live->commit_ns_total) * 1e-9);
  return rc == TDM_OK ? latency_metrics(live, out) : rc;
}

int tdm__live_schedule_metrics(tdm__live *live, tdm__buf *out) {
  if (live->scheduler == NULL) return TDM_OK;
  return tdm__scheduler_metrics(live->scheduler, tdm__live_name(live), out);
}

int tdm__live_store_remote(tdm__live *live) {
  tdm__tables *tables = tdm__pipeline_tables(live->p);
  if (tables == NULL) return 0;
  tdm__tables_health health;
  tdm__tables_health_get(tables, &health);
  return health.remote;
}

int tdm__live_store_metrics(tdm__live *live, int family, tdm__buf *out) {
  tdm__tables *tables = tdm__pipeline_tables(live->p);
  if (tables == NULL) return TDM_OK;
  tdm__tables_health health;
  tdm__tables_health_get(tables, &health);
  if (!health.remote) return TDM_OK;
  static const char *const names[] = {"tandem_table_store_up",
                                      "tandem_table_store_reconnects_total",
                                      "tandem_table_store_failures_total"};
  unsigned long long value = family == 0   ? (unsigned long long)health.connected
                             : family == 1 ? health.reconnects
                                           : health.failures;
  return tdm__buf_printf(out, "%s{pipeline=\"%s\"} %llu\n", names[family],
                         tdm__live_name(live), value);
}

int tdm__live_table_metrics(tdm__live *live, int family, tdm__buf *out) {
  const char *names[64];
  size_t n = tables_read(live, names, 64);
  int rc = TDM_OK;
  for (size_t i = 0; i < n && rc == TDM_OK; i++) {
    uint64_t version;
    double age;
    table_age(live, names[i], &version, &age);
    char age_text[32] = "+Inf"; /* no version yet */
    if (version) tdm__format_double(age, age_text);
    if (family == 0)
      rc = tdm__buf_printf(out,
                           "tandem_table_staleness_seconds{pipeline=\"%s\","
                           "table=\"%s\"} %s\n",
                           tdm__live_name(live), names[i], age_text);
    else
      rc = tdm__buf_printf(out,
                           "tandem_table_version{pipeline=\"%s\",table=\"%s\"} "
                           "%llu\n",
                           tdm__live_name(live), names[i],
                           (unsigned long long)version);
  }
  return rc;
}
