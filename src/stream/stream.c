/*
 * stream.c - the Kafka runner of a pipeline (stream.h). The main thread
 * polls the consumer, serves the producer's delivery reports and the
 * rebalances, and every commit interval saves the changed states and
 * commits. Each message goes through the pipeline core with the state map
 * of its partition, and its result (or a dead letter) is produced: on the
 * main thread, or with --threads N on worker P % N for partition P, so a
 * partition's events are applied in order by one thread. Commits,
 * rebalances and the metrics wait until the workers have handled every
 * message handed to them (quiesce), so the partitions are then the main
 * thread's alone.
 *
 * Offsets: each partition keeps, in consumption order, the offsets whose
 * outputs are still in flight. A delivery report marks its offset done;
 * the done offsets at the front leave, and the partition's commit point
 * becomes the last of them plus one. So a committed offset never passes
 * an output the brokers have not acknowledged.
 *
 * State: a commit first waits for every output to be acknowledged, then
 * saves the changed entity states of each partition, followed by its
 * input position (the offset after the last message handled), to the
 * changelog and to LMDB (one store per partition, in DIR/<input
 * topic>.<partition>), and only then commits offsets. The saved states
 * hold exactly the events before their position. An assigned partition
 * is consumed from its states' position, not from the committed offset
 * (a commit may have failed in a rebalance): the events after it are
 * applied to the same state they met the first time, so they give the
 * same result, and the output is the result without the "duplicate"
 * flag, so downstream sees byte-identical copies. An entity's tag (the
 * offset after its last applied event) guards the one gap: a commit cut
 * short after some states and before the position.
 */
#include "stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/json.h"
#include "../io/events.h"
#include "../pipeline/pipeline.h"
#include "../pipeline/state_dir.h"
#include "../store/decision_log.h"
#include "../store/store.h"
#include "changelog.h"

/* A delivery report's opaque packs the partition and a per-partition
 * sequence number, or marks a changelog record of the partition. */
_Static_assert(sizeof(uintptr_t) >= 8, "opaques need 64-bit pointers");
#define SEQ_BITS 40
#define SEQ_MASK ((1ull << SEQ_BITS) - 1)
#define CHANGELOG_BIT (1ull << 63)

/* One assigned input partition. */
typedef struct part {
  int32_t id;
  tdm__state_map *map;
  tdm__store *store; /* NULL without a state directory */
  /* Offsets consumed and not yet acknowledged, in order: entries
   * [head, head + count) of offsets/done; entry i has sequence number
   * first_seq + (i - head). */
  int64_t *offsets;
  unsigned char *done;
  size_t head, count, cap;
  uint64_t first_seq;
  int64_t commit_next; /* every offset below is acknowledged (-1: none) */
  int64_t committed;   /* the offset last committed (-1: none) */
  int64_t commit_target; /* the position when a commit took the states */
  /* The input position: the offset after the last message handled (the
   * state in memory holds every event before it), and the one the saved
   * states reflect (-1: unknown; the committed offset decides where
   * consumption starts). */
  int64_t position, saved_position;
  /* The states to save at the next commit; with a changelog, its records
   * in flight and the offset after the last one acknowledged. */
  tdm__state_writes writes;
  size_t changelog_in_flight;
  int64_t changelog_next;
  int seed; /* the local states are to be written to the changelog */
  int seed_taken; /* they are in `writes`: the local write ends the seed */
  /* The decision records of the events handled since the last commit, in
   * offset order; the commit logs them before it saves the position. */
  tdm__buf decisions;
} part;

/* Commit latency buckets, seconds. */
static const double commit_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,  0.1,    0.25,  0.5,  1,
                                        2.5,   5};
#define NUM_COMMIT_BUCKETS (sizeof commit_buckets / sizeof commit_buckets[0])

struct stream;

/* A processing thread (or, with one thread, the main thread's own
 * scratch): its result and buffers, and the messages handed to it, in
 * order. Partition P is always handled by worker P % threads, so a
 * partition's events are applied in order by one thread. */
typedef struct worker {
  struct stream *s;
  pthread_t thread;
  tdm__result result;
  tdm__buf out, letter, record;
  rd_kafka_message_t **queue; /* ring of cap entries from head */
  size_t head, count, cap;
  int busy; /* handling a message taken from the queue */
} worker;

typedef struct stream {
  const tdm__stream_options *opt;
  tdm__pipeline *p;
  const tdm__spec *spec;
  /* workers[0..num_workers); threads only when num_workers > 1 */
  worker *workers;
  size_t num_workers;
  int quitting;
  /* `work` guards the queues and busy flags; `book` the offsets
   * bookkeeping of the partitions and the failure (delivery reports and
   * the workers touch them at once). */
  pthread_mutex_t work, book;
  pthread_cond_t work_ready;
  rd_kafka_t *consumer, *producer;
  tdm__changelog *changelog; /* NULL: --no-changelog */
  /* --decision-log: NULL without. logged[P] is the offset after the last
   * record logged for input partition P (0: none; num_logged entries, by
   * partition number): an event below it was logged when it was first
   * answered, and is not logged again when it is answered again. */
  tdm__decision_log *decisions;
  int64_t *logged;
  size_t num_logged;
  part **parts; /* by partition number; changed only with workers idle */
  size_t num_parts;
  /* the first fatal error (delivery failure, a client's fatal error) */
  _Atomic int failed;
  tdm_error failure;
  /* counters */
  _Atomic uint64_t scored, duplicates, dead_letters;
  _Atomic uint64_t already_applied; /* events the restored states held */
  uint64_t commits, commit_failures;
  uint64_t changelog_written, changelog_restored, restores;
  double restore_seconds;
  uint64_t commit_hist[NUM_COMMIT_BUCKETS + 1];
  double commit_seconds;
  /* /metrics: the text, rendered by the loop, served by MHD's thread */
  struct MHD_Daemon *http;
  pthread_mutex_t metrics_lock;
  tdm__buf metrics;
} stream;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail_once(stream *s, int status, const char *fmt, const char *a,
                      const char *b) {
  pthread_mutex_lock(&s->book);
  if (!s->failed) {
    tdm__fail(&s->failure, status, fmt, a, b);
    s->failed = 1;
  }
  pthread_mutex_unlock(&s->book);
}

/* ---- partitions ---- */

static part *find_part(stream *s, int32_t id) {
  return id >= 0 && (size_t)id < s->num_parts ? s->parts[id] : NULL;
}

static tdm__state_map *part_map(void *ctx, tdm__str key) {
  (void)key;
  return ((part *)ctx)->map;
}

static void part_free(part *pt) {
  if (pt == NULL) return;
  tdm__state_map_free(pt->map);
  tdm__store_close(pt->store);
  tdm__state_writes_free(&pt->writes);
  tdm__buf_free(&pt->decisions);
  tdm__free(pt->offsets);
  tdm__free(pt->done);
  tdm__free(pt);
}

/* Makes partition id's state: restored from its store when there is a
 * state directory. */
static int part_open(stream *s, int32_t id, tdm_error *err) {
  if (id < 0 || id >= (1 << 23))
    return tdm__fail(err, TDM_EINVAL, "partition %d is out of range",
                     (int)id);
  if ((size_t)id >= s->num_parts) {
    size_t n = (size_t)id + 1;
    part **parts = tdm__realloc(s->parts, n * sizeof *parts);
    if (parts == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
    for (size_t i = s->num_parts; i < n; i++) parts[i] = NULL;
    s->parts = parts;
    s->num_parts = n;
  }
  if (s->parts[id] != NULL) return TDM_OK;
  part *pt = tdm__calloc(1, sizeof *pt);
  if (pt == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  pt->id = id;
  pt->commit_next = -1;
  pt->committed = -1;
  pt->position = -1;
  pt->saved_position = -1;
  int rc = tdm__state_map_new(s->p, &pt->map);
  if (rc != TDM_OK) rc = tdm__fail(err, rc, "out of memory");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s.%d", s->opt->state_dir ? s->opt->state_dir : "",
           s->opt->input, (int)id);
  if (rc == TDM_OK && s->opt->state_dir != NULL)
    rc = tdm__state_dir_open(dir, s->spec->name, s->opt->store_settings,
                             &pt->store, err);
  if (rc == TDM_OK && s->changelog != NULL &&
      id >= tdm__changelog_partitions(s->changelog))
    rc = tdm__fail(err, TDM_EINVAL,
                   "input partition %d has no changelog partition: %s has %d "
                   "(the input gained partitions; give the changelog as many)",
                   (int)id, tdm__changelog_topic(s->changelog),
                   tdm__changelog_partitions(s->changelog));
  if (rc == TDM_OK && s->changelog != NULL) {
    tdm__changelog_restore_info info;
    rc = tdm__changelog_restore(s->changelog, id, pt->map, pt->store, dir,
                                &info, err);
    if (rc == TDM_OK) {
      pt->changelog_next = info.next;
      pt->position = pt->saved_position = pt->commit_next = info.position;
      s->changelog_restored += info.records;
      s->restores++;
      s->restore_seconds += info.seconds;
      if (info.seed) {
        /* An empty changelog: it gets the local states at the next
         * commit. */
        tdm__state_map_mark_all_dirty(pt->map);
        pt->seed = 1;
      }
      fprintf(stderr,
              "tandem stream: partition %d: %zu entities restored (%zu from "
              "%s, then %zu changelog records of %s%s) in %.3f s%s\n",
              (int)id, tdm__state_map_entities(pt->map), info.local,
              pt->store ? dir : "no state directory", info.records,
              tdm__changelog_topic(s->changelog),
              info.from_start ? " from its start" : "", info.seconds,
              info.seed ? "; writing them to the changelog (a seed)" : "");
    }
  } else if (rc == TDM_OK && pt->store != NULL) {
    uint64_t max_tag = 0;
    rc = tdm__state_dir_restore(pt->store, dir, part_map, pt, &max_tag, err);
    if (rc == TDM_OK) rc = tdm__position_read(pt->store, &pt->position, err);
    pt->saved_position = pt->commit_next = pt->position;
    if (rc == TDM_OK)
      fprintf(stderr,
              "tandem stream: partition %d: %zu entities restored from %s\n",
              (int)id, tdm__state_map_entities(pt->map), dir);
  }
  if (rc != TDM_OK) {
    part_free(pt);
    return rc;
  }
  s->parts[id] = pt;
  return TDM_OK;
}

static void part_close(stream *s, int32_t id) {
  part *pt = find_part(s, id);
  if (pt == NULL) return;
  part_free(pt);
  s->parts[id] = NULL;
}

/* Adds a consumed offset; returns its sequence number. */
static int part_push(part *pt, int64_t offset, uint64_t *seq) {
  if (pt->head + pt->count == pt->cap) {
    if (pt->head > 0) {
      memmove(pt->offsets, pt->offsets + pt->head,
              pt->count * sizeof *pt->offsets);
      memmove(pt->done, pt->done + pt->head, pt->count);
      pt->head = 0;
    } else {
      size_t cap = pt->cap ? pt->cap * 2 : 1024;
      int64_t *offsets = tdm__realloc(pt->offsets, cap * sizeof *offsets);
      if (offsets == NULL) return TDM_ENOMEM;
      pt->offsets = offsets;
      unsigned char *done = tdm__realloc(pt->done, cap);
      if (done == NULL) return TDM_ENOMEM;
      pt->done = done;
      pt->cap = cap;
    }
  }
  size_t at = pt->head + pt->count;
  pt->offsets[at] = offset;
  pt->done[at] = 0;
  *seq = pt->first_seq + pt->count;
  pt->count++;
  return TDM_OK;
}

/* Marks an offset acknowledged and moves the commit point past the
 * acknowledged offsets at the front. */
static void part_ack(part *pt, uint64_t seq) {
  if (seq < pt->first_seq || seq >= pt->first_seq + pt->count) return;
  pt->done[pt->head + (seq - pt->first_seq)] = 1;
  while (pt->count > 0 && pt->done[pt->head]) {
    pt->commit_next = pt->offsets[pt->head] + 1;
    pt->head++;
    pt->count--;
    pt->first_seq++;
  }
}

/* ---- producing ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
  (void)rk;
  stream *s = opaque;
  uint64_t v = (uint64_t)(uintptr_t)m->_private;
  part *pt = find_part(s, (int32_t)((v & ~CHANGELOG_BIT) >> SEQ_BITS));
  if (m->err) {
    /* The idempotent producer has retried what can be retried: this
     * record is lost, so no offset or state past it may be saved. Stop. */
    fail_once(s, TDM_EIO,
              v & CHANGELOG_BIT ? "changelog write to %s failed: %s"
                                : "delivery to %s failed: %s",
              rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
  }
  if (pt == NULL) return;
  pthread_mutex_lock(&s->book);
  if (v & CHANGELOG_BIT) {
    if (pt->changelog_in_flight > 0) pt->changelog_in_flight--;
    if (!m->err && m->offset + 1 > pt->changelog_next)
      pt->changelog_next = m->offset + 1;
  } else if (!m->err) {
    part_ack(pt, v & SEQ_MASK);
  }
  pthread_mutex_unlock(&s->book);
}

/* Produces key/value (value NULL: a tombstone) to topic; to_partition
 * >= 0 names the partition (else the key's hash picks it). The delivery
 * report gets `opaque`. */
static int produce_to(stream *s, const char *topic, int32_t to_partition,
                      const void *key, size_t key_len, const void *value,
                      size_t len, uint64_t opaque_bits, tdm_error *err) {
  void *opaque = (void *)(uintptr_t)opaque_bits;
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        s->producer, RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_PARTITION(to_partition < 0 ? RD_KAFKA_PARTITION_UA
                                              : to_partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, len),
        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return TDM_OK;
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      return tdm__fail(err, TDM_EIO, "producing to %s: %s", topic,
                       rd_kafka_err2str(e));
    /* The local queue is full: wait for deliveries to make room. */
    rd_kafka_poll(s->producer, 100);
  }
}

/* An output (or dead letter) of input message `seq` of partition. */
static int produce(stream *s, const char *topic, const void *key,
                   size_t key_len, const tdm__buf *value, int32_t partition,
                   uint64_t seq, tdm_error *err) {
  return produce_to(s, topic, -1, key, key_len, value->data, value->len,
                    (uint64_t)partition << SEQ_BITS | seq, err);
}

/* ---- one message ---- */

/* Writes the dead letter of message m and produces it (or logs it
 * without a dead-letter topic, acknowledging its offset at once). */
static int dead_letter(worker *w, part *pt, const rd_kafka_message_t *m,
                       uint64_t seq, const char *reason, tdm_error *err) {
  stream *s = w->s;
  s->dead_letters++;
  if (s->opt->dead_letter == NULL) {
    fprintf(stderr, "tandem stream: %s [%d] offset %lld: %s (skipped)\n",
            s->opt->input, (int)m->partition, (long long)m->offset, reason);
    pthread_mutex_lock(&s->book);
    part_ack(pt, seq);
    pthread_mutex_unlock(&s->book);
    return TDM_OK;
  }
  tdm__buf *b = &w->letter;
  b->len = 0;
  int rc = tdm__buf_append(b, "{\"error\":", 9);
  if (rc == TDM_OK) rc = tdm__json_append_string(b, reason);
  if (rc == TDM_OK) rc = tdm__buf_append(b, ",\"topic\":", 9);
  if (rc == TDM_OK) rc = tdm__json_append_string(b, s->opt->input);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(b, ",\"partition\":%d,\"offset\":%lld,\"payload\":",
                         (int)m->partition, (long long)m->offset);
  if (rc == TDM_OK)
    rc = m->payload ? tdm__json_append_string_n(b, m->payload, m->len)
                    : tdm__buf_append(b, "null", 4);
  if (rc == TDM_OK) rc = tdm__buf_append(b, "}", 1);
  if (rc != TDM_OK) return tdm__fail(err, rc, "out of memory");
  return produce(s, s->opt->dead_letter, m->key, m->key_len, b,
                 m->partition, seq, err);
}

/* ---- the decision log ---- */

/* The offset after the last record logged for partition id (0: none).
 * Written only with the workers idle (at start and in a commit). */
static int64_t logged_before(const stream *s, int32_t id) {
  return id >= 0 && (size_t)id < s->num_logged ? s->logged[id] : 0;
}

/* Raises logged[id] to next (partition ids stay below 2^23, as parts'). */
static int set_logged(stream *s, int32_t id, int64_t next, tdm_error *err) {
  if (id < 0 || id >= (1 << 23))
    return tdm__fail(err, TDM_EINVAL, "partition %d is out of range", (int)id);
  if ((size_t)id >= s->num_logged) {
    size_t n = (size_t)id + 1;
    int64_t *grown = tdm__realloc(s->logged, n * sizeof *grown);
    if (grown == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
    for (size_t i = s->num_logged; i < n; i++) grown[i] = 0;
    s->logged = grown;
    s->num_logged = n;
  }
  if (next > s->logged[id]) s->logged[id] = next;
  return TDM_OK;
}

/* A JSON whole number (v may be NULL). */
static int json_integer(const tdm__json *v, long long *out) {
  if (v == NULL || v->type != TDM__JSON_NUMBER || v->text_len == 0 ||
      v->text_len > 20)
    return 0;
  char text[24], *end;
  memcpy(text, v->text, v->text_len);
  text[v->text_len] = '\0';
  errno = 0;
  *out = strtoll(text, &end, 10);
  return *end == '\0' && errno == 0;
}

/* One logged record (tdm__decision_log_each): its partition and offset
 * raise logged[]. A record without them is not the stream's (a log
 * directory shared with `tandem serve`): refused, so that a log never
 * mixes runners. */
static int read_logged(void *ctx, const char *line, size_t len,
                       tdm_error *err) {
  stream *s = ctx;
  tdm__json_doc doc;
  tdm_error why;
  int rc = tdm__json_parse(&doc, line, len, "decision log record", 0, &why);
  if (rc != TDM_OK)
    return tdm__fail(err, TDM_EPARSE, "--decision-log %s: %s",
                     s->opt->decision_log, why.message);
  long long partition, offset;
  if (!json_integer(tdm__json_get(doc.root, "partition"), &partition) ||
      !json_integer(tdm__json_get(doc.root, "offset"), &offset) ||
      partition < 0 || offset < 0)
    rc = tdm__fail(err, TDM_EINVAL,
                   "--decision-log %s holds a record without its input "
                   "partition and offset: not a `tandem stream` log (give "
                   "each runner its own directory)", s->opt->decision_log);
  else
    rc = set_logged(s, (int32_t)(partition < INT32_MAX ? partition : INT32_MAX),
                    (int64_t)offset + 1, err);
  tdm__json_doc_free(&doc);
  return rc;
}

/* Opens the decision log and reads what it has logged. */
static int open_decisions(stream *s, tdm_error *err) {
  tdm_model_info info;
  memset(&info, 0, sizeof info);
  if (tdm__pipeline_model(s->p) != NULL)
    tdm_model_get_info(tdm__pipeline_model(s->p), &info);
  tdm__decision_log_options opt = {
      .dir = s->opt->decision_log,
      .pipeline_path = s->opt->pipeline_path,
      .pipeline_name = s->spec->name,
      .model_sha256 = info.sha256,
      .runner = "stream",
      .registry = s->opt->registry,
      .max_bytes = s->opt->decision_log_bytes,
      .max_ms = s->opt->decision_log_ms,
  };
  int rc = tdm__decision_log_open(&opt, NULL, 0, &s->decisions, err);
  if (rc == TDM_OK) rc = tdm__decision_log_each(s->decisions, read_logged, s, err);
  return rc;
}

/* Adds the decision record of message m's answer (w->result, w->out) to
 * its partition's records: the record serve writes, then the input
 * partition and offset that make it unique. */
static int decision_record(worker *w, part *pt, const tdm__event *ev,
                           const rd_kafka_message_t *m) {
  int rc = tdm__pipeline_decision_record(
      w->s->p, ev, &w->result, 0, w->s->opt->decision_log_explain,
      w->out.data, w->out.len, &w->record);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&w->record, ",\"partition\":%d,\"offset\":%lld}\n",
                         (int)m->partition, (long long)m->offset);
  if (rc == TDM_OK)
    rc = tdm__buf_append(&pt->decisions, w->record.data, w->record.len);
  return rc;
}

/*
 * Logs the records of the events handled since the last commit, and syncs
 * them, before the commit saves any state or position: a record is on
 * disk before the position that says its event was answered, so none is
 * lost. The events after a saved position are answered again after a
 * crash; logged[] then keeps their records from being logged twice (the
 * answers repeat the first ones, docs/streaming.md).
 */
static int log_decisions(stream *s, tdm_error *err) {
  int rc = TDM_OK, any = 0;
  for (size_t i = 0; i < s->num_parts && rc == TDM_OK; i++) {
    part *pt = s->parts[i];
    if (pt == NULL || pt->decisions.len == 0) continue;
    rc = tdm__decision_log_append(s->decisions, pt->decisions.data,
                                  pt->decisions.len, err);
    any = 1;
  }
  if (rc == TDM_OK && any) rc = tdm__decision_log_sync(s->decisions, err);
  for (size_t i = 0; i < s->num_parts && rc == TDM_OK; i++) {
    part *pt = s->parts[i];
    if (pt == NULL || pt->decisions.len == 0) continue;
    /* Handled up to position: every record taken is below it. */
    rc = set_logged(s, pt->id, pt->position, err);
    pt->decisions.len = 0;
  }
  /* Crash point (tests): at the first commit after N input messages, the
   * decision records synced and the states not yet saved, so the events
   * after the saved position are answered again, and already logged. */
  if (rc == TDM_OK && any &&
      tdm__crash_point_due("stream-decisions-logged",
                           s->scored + s->duplicates + s->dead_letters))
    tdm__crash();
  return rc;
}

/* Processes one input message. Returns an error only for what must stop
 * the runner; an invalid message becomes a dead letter. */
static int handle(worker *w, const rd_kafka_message_t *m, tdm_error *err) {
  stream *s = w->s;
  part *pt = find_part(s, m->partition);
  if (pt == NULL) return TDM_OK; /* not ours any more */
  uint64_t seq;
  pthread_mutex_lock(&s->book);
  int pushed = part_push(pt, m->offset, &seq);
  if (m->offset + 1 > pt->position) pt->position = m->offset + 1;
  pthread_mutex_unlock(&s->book);
  if (pushed != TDM_OK) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  if (m->payload == NULL || m->len == 0)
    return dead_letter(w, pt, m, seq, "the message is empty", err);
  tdm__json_doc doc;
  tdm_error why;
  int rc = tdm__json_parse(&doc, m->payload, m->len, "message", 0, &why);
  if (rc == TDM_ENOMEM) return tdm__fail(err, rc, "out of memory");
  if (rc != TDM_OK) return dead_letter(w, pt, m, seq, why.message, err);
  tdm__str fields[s->spec->num_fields + 1];
  tdm__event ev = {fields};
  if (doc.root->type != TDM__JSON_OBJECT)
    rc = tdm__fail(&why, TDM_EPARSE, "the message is not a JSON object");
  if (rc == TDM_OK)
    rc = tdm__event_from_json(s->spec, &doc, doc.root, NULL, fields, &why);
  tdm__str entity;
  if (rc == TDM_OK && tdm__pipeline_entity(s->p, &ev, &entity, &why) == TDM_OK &&
      tdm__state_map_tag(pt->map, entity) > (uint64_t)m->offset) {
    /* The entity's saved state already holds this event (a commit that
     * saved it did not get to record its partition's position), and its
     * output was acknowledged before that state was saved: applying it
     * again would count it twice. */
    tdm__json_doc_free(&doc);
    s->already_applied++;
    pthread_mutex_lock(&s->book);
    part_ack(pt, seq);
    pthread_mutex_unlock(&s->book);
    return TDM_OK;
  }
  if (rc == TDM_OK) {
    tdm__state_map_set_clock(pt->map, tdm__now_ms());
    rc = tdm__pipeline_process(s->p, pt->map, &ev, &w->result, &why);
  }
  if (rc == TDM_ENOMEM) {
    tdm__json_doc_free(&doc);
    return tdm__fail(err, rc, "out of memory");
  }
  if (rc != TDM_OK) {
    tdm__json_doc_free(&doc);
    return dead_letter(w, pt, m, seq, why.message, err);
  }
  tdm__result *r = &w->result;
  tdm__buf *out = &w->out;
  out->len = 0;
  rc = tdm__pipeline_json(s->p, &ev, r, 0, out);
  if (rc != TDM_OK) {
    tdm__json_doc_free(&doc);
    return tdm__fail(err, rc, "out of memory");
  }
  if (s->decisions != NULL && m->offset >= logged_before(s, m->partition)) {
    rc = decision_record(w, pt, &ev, m);
    if (rc != TDM_OK) {
      tdm__json_doc_free(&doc);
      return tdm__fail(err, rc, "out of memory");
    }
  }
  if (r->duplicate) {
    /* The original result, byte for byte: without the flag. */
    static const char flag[] = ",\"duplicate\":true}";
    size_t n = sizeof flag - 1;
    if (out->len >= n && memcmp(out->data + out->len - n, flag, n) == 0) {
      out->len -= n;
      out->data[out->len++] = '}';
    }
    s->duplicates++;
  } else {
    tdm__state_map_set_tag(pt->map, r->entity, (uint64_t)m->offset + 1);
    s->scored++;
  }
  rc = produce(s, s->opt->output, r->entity.data, r->entity.len, out,
               m->partition, seq, err);
  tdm__json_doc_free(&doc);
  return rc;
}

/* ---- workers ---- */

/* Messages a worker may have waiting: the main thread stops handing out
 * more (and serves delivery reports) until it takes some. */
#define WORKER_QUEUE 4096

static void *worker_main(void *arg) {
  worker *w = arg;
  stream *s = w->s;
  pthread_mutex_lock(&s->work);
  for (;;) {
    while (w->count == 0 && !s->quitting)
      pthread_cond_wait(&s->work_ready, &s->work);
    if (w->count == 0) break;
    rd_kafka_message_t *m = w->queue[w->head];
    w->head = (w->head + 1) % w->cap;
    w->count--;
    w->busy = 1;
    pthread_mutex_unlock(&s->work);
    tdm_error err;
    if (!s->failed && handle(w, m, &err) != TDM_OK)
      fail_once(s, err.status, "%s%s", "", err.message);
    rd_kafka_message_destroy(m);
    pthread_mutex_lock(&s->work);
    w->busy = 0;
  }
  pthread_mutex_unlock(&s->work);
  return NULL;
}

/* Hands message m (which the worker destroys) to its partition's worker,
 * or handles it here with one thread. */
static int dispatch(stream *s, rd_kafka_message_t *m, tdm_error *err) {
  if (s->num_workers == 1) {
    int rc = handle(&s->workers[0], m, err);
    rd_kafka_message_destroy(m);
    return rc;
  }
  worker *w = &s->workers[(size_t)m->partition % s->num_workers];
  pthread_mutex_lock(&s->work);
  while (w->count == w->cap && !s->failed) {
    pthread_mutex_unlock(&s->work);
    rd_kafka_poll(s->producer, 1);
    pthread_mutex_lock(&s->work);
  }
  if (w->count == w->cap) {
    /* The runner failed: nothing more is handled. */
    pthread_mutex_unlock(&s->work);
    rd_kafka_message_destroy(m);
    return TDM_OK;
  }
  w->queue[(w->head + w->count) % w->cap] = m;
  w->count++;
  pthread_cond_broadcast(&s->work_ready);
  pthread_mutex_unlock(&s->work);
  return TDM_OK;
}

/* Waits until every worker has handled every message handed to it (the
 * main thread serves delivery reports meanwhile): then the partitions,
 * their maps and their bookkeeping are the main thread's alone, for a
 * commit, a rebalance or the metrics. */
static void quiesce(stream *s) {
  if (s->num_workers == 1) return;
  for (;;) {
    int idle = 1;
    pthread_mutex_lock(&s->work);
    for (size_t i = 0; i < s->num_workers; i++)
      if (s->workers[i].count > 0 || s->workers[i].busy) idle = 0;
    pthread_mutex_unlock(&s->work);
    if (idle) return;
    rd_kafka_poll(s->producer, 1);
  }
}

/* Makes n workers' scratch, and their threads when n > 1. */
static int start_workers(stream *s, size_t n, tdm_error *err) {
  s->workers = tdm__calloc(n, sizeof *s->workers);
  if (s->workers == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    worker *w = &s->workers[i];
    w->s = s;
    int rc = tdm__result_init(s->p, &w->result, err);
    if (rc != TDM_OK) return rc;
    s->num_workers = i + 1;
    if (n == 1) break;
    w->cap = WORKER_QUEUE;
    w->queue = tdm__calloc(w->cap, sizeof *w->queue);
    if (w->queue == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
      tdm__result_free(&w->result);
      tdm__free(w->queue);
      s->num_workers = i;
      return tdm__fail(err, TDM_EIO, "cannot start a worker thread");
    }
  }
  if (n > 1)
    fprintf(stderr, "tandem stream: partitions processed on %zu threads "
                    "(partition P on thread P %% %zu)\n", n, n);
  return TDM_OK;
}

/* Stops the threads (after the messages handed to them) and frees the
 * workers. */
static void stop_workers(stream *s) {
  pthread_mutex_lock(&s->work);
  s->quitting = 1;
  pthread_cond_broadcast(&s->work_ready);
  pthread_mutex_unlock(&s->work);
  for (size_t i = 0; i < s->num_workers; i++) {
    worker *w = &s->workers[i];
    if (w->queue != NULL) pthread_join(w->thread, NULL);
    tdm__result_free(&w->result);
    tdm__buf_free(&w->out);
    tdm__buf_free(&w->letter);
    tdm__buf_free(&w->record);
    tdm__free(w->queue);
  }
  tdm__free(s->workers);
  s->workers = NULL;
  s->num_workers = 0;
}

/* ---- committing ---- */

static void drain(stream *s);

/* Whether partition pt has states to save before its next commit. */
static int needs_save(const part *pt) {
  return pt != NULL &&
         ((pt->position >= 0 && pt->position != pt->saved_position) ||
          pt->seed);
}

/* Takes pt's changes since the last save into pt->writes: the changed
 * entities are written, and with a changelog produced to it. No entity is
 * dropped for being idle: its later events would read an empty state
 * (docs/windows.md, "Event time"); the partition keeps them in memory. */
static int take_changes(stream *s, part *pt, tdm_error *err) {
  if (pt->store == NULL && s->changelog == NULL) return TDM_OK;
  size_t first = pt->writes.count;
  if (tdm__state_writes_take(&pt->writes, pt->map) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  pt->seed_taken = pt->seed;
  pt->seed = 0;
  for (size_t i = first; i < pt->writes.count && s->changelog != NULL; i++) {
    tdm__str key = tdm__state_write_key(&pt->writes, i);
    tdm__str value = tdm__state_write_value(&pt->writes, i);
    int rc = produce_to(s, tdm__changelog_topic(s->changelog), pt->id,
                        key.data, key.len, value.data, value.len,
                        CHANGELOG_BIT | (uint64_t)pt->id << SEQ_BITS, err);
    if (rc != TDM_OK) return rc;
    pt->changelog_in_flight++;
    s->changelog_written++;
    /* Crash point (tests): once N changelog records are produced, in the
     * middle of a commit: a commit, or a seed, that did not finish. They
     * are flushed first, so the restart finds them in the changelog. */
    if (tdm__crash_point_due("stream-changelog-produced",
                             s->changelog_written)) {
      rd_kafka_flush(s->producer, 10000);
      tdm__crash();
    }
  }
  /* The position last, after the states it goes with: a restore that
   * reads it has read them. */
  if (pt->position >= 0) {
    if (pt->store != NULL && tdm__position_save(pt->position, &pt->writes) != TDM_OK)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
    if (s->changelog != NULL) {
      unsigned char value[8];
      tdm__position_encode(pt->position, value);
      int rc = produce_to(s, tdm__changelog_topic(s->changelog), pt->id,
                          TDM__POSITION_KEY, TDM__POSITION_KEY_LEN, value, 8,
                          CHANGELOG_BIT | (uint64_t)pt->id << SEQ_BITS, err);
      if (rc != TDM_OK) return rc;
      pt->changelog_in_flight++;
    }
  }
  return TDM_OK;
}

/* A transaction's error as the runner's: any stops it (exit 1). The
 * states in memory have moved past what the aborted transaction would
 * have committed, so going on would need them restored; a restart does
 * exactly that, from the last committed transaction. */
static int transaction_failed(stream *s, rd_kafka_error_t *error,
                              const char *what, tdm_error *err) {
  int rc = tdm__fail(err, TDM_EIO, "kafka transaction: %s: %s", what,
                     rd_kafka_error_string(error));
  if (rd_kafka_error_txn_requires_abort(error)) {
    rd_kafka_error_t *aborted = rd_kafka_abort_transaction(s->producer, 30000);
    if (aborted != NULL) rd_kafka_error_destroy(aborted);
  }
  rd_kafka_error_destroy(error);
  return rc;
}

/* Commits the open transaction with the input offsets in list (the
 * group's, fenced by its generation: a member that lost its partitions
 * cannot commit), then opens the next one. */
static int end_transaction(stream *s, rd_kafka_topic_partition_list_t *list,
                           tdm_error *err) {
  rd_kafka_error_t *error = NULL;
  if (list->cnt > 0) {
    rd_kafka_consumer_group_metadata_t *group =
        rd_kafka_consumer_group_metadata(s->consumer);
    error = rd_kafka_send_offsets_to_transaction(s->producer, list, group,
                                                 30000);
    rd_kafka_consumer_group_metadata_destroy(group);
    if (error != NULL)
      return transaction_failed(s, error, "sending the offsets", err);
  }
  error = rd_kafka_commit_transaction(s->producer, 30000);
  if (error != NULL) return transaction_failed(s, error, "committing", err);
  if (list->cnt > 0) s->commits++;
  for (int i = 0; i < list->cnt; i++) {
    part *pt = find_part(s, list->elems[i].partition);
    if (pt != NULL) pt->committed = list->elems[i].offset;
  }
  error = rd_kafka_begin_transaction(s->producer);
  if (error != NULL) return transaction_failed(s, error, "beginning", err);
  return TDM_OK;
}

/* Waits until every changelog record produced is acknowledged. */
static int wait_changelog(stream *s, tdm_error *err) {
  for (;;) {
    size_t in_flight = 0;
    for (size_t i = 0; i < s->num_parts; i++)
      if (s->parts[i] != NULL) in_flight += s->parts[i]->changelog_in_flight;
    if (s->failed) {
      *err = s->failure;
      return s->failure.status ? s->failure.status : TDM_EIO;
    }
    if (in_flight == 0) return TDM_OK;
    rd_kafka_poll(s->producer, 5);
  }
}

/* Saves the changed states of the partitions (to the changelog, then to
 * the local store with the changelog checkpoint) and commits, for each,
 * the offset before which every output is acknowledged. The saved states
 * therefore always hold every event before a committed offset. A failed
 * commit is retried at the next interval (the group may be
 * rebalancing). */
static int commit(stream *s, tdm_error *err) {
  if (s->failed) {
    /* After a fatal error nothing more is committed: what was taken may
     * not be saved. */
    *err = s->failure;
    return s->failure.status ? s->failure.status : TDM_EIO;
  }
  uint64_t started = now_ns();
  int rc = TDM_OK;
  /* Every output produced so far is acknowledged first (as Kafka Streams
   * flushes its producer before it commits): the states taken below then
   * hold only events whose outputs are delivered, so the position saved
   * with them, the offset after the last message handled, is where a
   * successor resumes without losing an output or applying an event
   * twice. */
  quiesce(s);
  drain(s);
  if (s->failed) {
    *err = s->failure;
    return s->failure.status ? s->failure.status : TDM_EIO;
  }
  if (s->decisions != NULL) rc = log_decisions(s, err);
  for (size_t i = 0; i < s->num_parts && rc == TDM_OK; i++) {
    part *pt = s->parts[i];
    if (pt == NULL) continue;
    pt->commit_target = pt->committed;
    if (!needs_save(pt)) continue;
    pt->commit_target = pt->position;
    rc = take_changes(s, pt, err);
  }
  if (rc == TDM_OK && s->changelog != NULL) rc = wait_changelog(s, err);
  rd_kafka_topic_partition_list_t *list =
      rd_kafka_topic_partition_list_new((int)s->num_parts + 1);
  for (size_t i = 0; i < s->num_parts; i++) {
    part *pt = s->parts[i];
    if (pt != NULL && pt->commit_target >= 0 &&
        pt->commit_target != pt->committed)
      rd_kafka_topic_partition_list_add(list, s->opt->input, pt->id)->offset =
          pt->commit_target;
  }
  /* Exactly-once: the outputs, the changelog records and the offsets of
   * this interval commit together, before the local store (a cache of
   * what the changelog holds) is written. */
  if (rc == TDM_OK && s->opt->exactly_once) rc = end_transaction(s, list, err);
  for (size_t i = 0; i < s->num_parts && rc == TDM_OK; i++) {
    part *pt = s->parts[i];
    if (pt == NULL) continue;
    if (pt->store != NULL && pt->writes.count > 0) {
      if (s->changelog != NULL &&
          (tdm__changelog_checkpoint(s->changelog, pt->changelog_next,
                                     &pt->writes) != TDM_OK ||
           (pt->seed_taken &&
            tdm__changelog_seeded(s->changelog, &pt->writes) != TDM_OK)))
        rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
      if (rc == TDM_OK) rc = tdm__state_writes_flush(&pt->writes, pt->store, err);
      if (rc != TDM_OK) break;
    }
    if (pt->commit_target >= 0) pt->saved_position = pt->commit_target;
    pt->seed_taken = 0;
    tdm__state_writes_clear(&pt->writes);
  }
  /* Crash point (tests): at the first commit after N input messages, the
   * states saved and the offsets not yet committed: the crash that makes
   * a restart reprocess events its state already holds. */
  if (rc == TDM_OK && list->cnt > 0 &&
      tdm__crash_point_due("stream-states-saved",
                           s->scored + s->duplicates + s->dead_letters))
    tdm__crash();
  if (list->cnt > 0 && s->opt->debug_commits)
    for (int i = 0; i < list->cnt; i++)
      fprintf(stderr, "tandem stream: commit [%d] %lld\n",
              (int)list->elems[i].partition, (long long)list->elems[i].offset);
  if (rc == TDM_OK && list->cnt > 0 && !s->opt->exactly_once) {
    rd_kafka_resp_err_t e = rd_kafka_commit(s->consumer, list, 0);
    double seconds = (double)(now_ns() - started) * 1e-9;
    s->commit_seconds += seconds;
    size_t b = 0;
    while (b < NUM_COMMIT_BUCKETS && seconds > commit_buckets[b]) b++;
    s->commit_hist[b]++;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
      s->commits++;
      for (int i = 0; i < list->cnt; i++) {
        part *pt = find_part(s, list->elems[i].partition);
        if (pt != NULL) pt->committed = list->elems[i].offset;
      }
    } else {
      s->commit_failures++;
      fprintf(stderr, "tandem stream: commit failed (will retry): %s\n",
              rd_kafka_err2str(e));
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
  /* A failure to save stops the runner: the states taken are no longer
   * dirty, so a later commit would pass them by. */
  if (rc != TDM_OK) fail_once(s, rc, "%s%s", "", err->message);
  return rc;
}

/* Waits until every output produced so far is acknowledged (or failed). */
static void drain(stream *s) {
  while (rd_kafka_outq_len(s->producer) > 0 && !s->failed)
    rd_kafka_flush(s->producer, 1000);
}

/* ---- rebalancing ---- */

/* Makes consumption of an assigned partition start at its states' input
 * position, not at the group's committed offset: a commit can fail (a
 * rebalance in progress) after the states were saved, and events before
 * the position applied again would be counted twice. A position beyond
 * the partition's end means the input is not the one the states were
 * made from (the topic was recreated): that is refused. */
static int resume_at_position(stream *s, rd_kafka_topic_partition_t *tp,
                              tdm_error *err) {
  part *pt = find_part(s, tp->partition);
  if (pt == NULL || pt->position < 0) return TDM_OK;
  int64_t low = -1, high = -1;
  rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
      s->consumer, s->opt->input, tp->partition, &low, &high, 15000);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return tdm__fail(err, TDM_EIO, "offsets of %s [%d]: %s", s->opt->input,
                     (int)tp->partition, rd_kafka_err2str(e));
  if (pt->position > high)
    return tdm__fail(err, TDM_EINVAL,
                     "%s [%d]: the saved states reflect its events up to "
                     "offset %lld, but the partition ends at %lld (was the "
                     "topic recreated?): run under a new --group, or remove "
                     "the changelog and the --state directory",
                     s->opt->input, (int)tp->partition,
                     (long long)pt->position, (long long)high);
  tp->offset = pt->position;
  fprintf(stderr,
          "tandem stream: partition %d: resuming at offset %lld, the input "
          "position of its saved states\n",
          (int)tp->partition, (long long)pt->position);
  return TDM_OK;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *list, void *opaque) {
  stream *s = opaque;
  int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  tdm_error err;
  quiesce(s); /* the partitions change: no worker may be in one */
  if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    for (int i = 0; i < list->cnt; i++) {
      if (part_open(s, list->elems[i].partition, &err) != TDM_OK ||
          resume_at_position(s, &list->elems[i], &err) != TDM_OK)
        fail_once(s, err.status, "%s%s", "", err.message);
    }
    fprintf(stderr, "tandem stream: assigned %d partition(s) of %s\n",
            list->cnt, s->opt->input);
    if (cooperative) {
      rd_kafka_error_t *error = rd_kafka_incremental_assign(rk, list);
      if (error) rd_kafka_error_destroy(error);
    } else {
      rd_kafka_assign(rk, list);
    }
    return;
  }
  /* Revoked (or lost): finish what was produced for these partitions,
   * save their states and commit, then forget them. A lost assignment
   * cannot commit; another member already has the partitions. */
  drain(s);
  if (rd_kafka_assignment_lost(rk) && s->opt->exactly_once)
    fail_once(s, TDM_EIO, "%s%s",
              "the group took this member's partitions (a session timeout): "
              "the open transaction cannot commit; a restart resumes at the "
              "last committed one",
              "");
  else if (!rd_kafka_assignment_lost(rk) && commit(s, &err) != TDM_OK)
    fail_once(s, err.status, "%s%s", "", err.message);
  for (int i = 0; i < list->cnt; i++) part_close(s, list->elems[i].partition);
  fprintf(stderr, "tandem stream: revoked %d partition(s) of %s\n", list->cnt,
          s->opt->input);
  if (cooperative) {
    rd_kafka_error_t *error = rd_kafka_incremental_unassign(rk, list);
    if (error) rd_kafka_error_destroy(error);
  } else {
    rd_kafka_assign(rk, NULL);
  }
}

static void on_error(rd_kafka_t *rk, int code, const char *reason,
                     void *opaque) {
  stream *s = opaque;
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char why[512];
    rd_kafka_fatal_error(rk, why, sizeof why);
    fail_once(s, TDM_EIO, "kafka: %s%s", why, "");
  } else {
    fprintf(stderr, "tandem stream: kafka: %s\n", reason);
  }
}

/* ---- metrics ---- */

static int render_metrics(stream *s, tdm__buf *b) {
  const char *name = s->spec->name;
  int rc = tdm__buf_printf(
      b,
      "# HELP tandem_stream_events_total Input messages processed, by "
      "outcome.\n"
      "# TYPE tandem_stream_events_total counter\n"
      "tandem_stream_events_total{pipeline=\"%s\",outcome=\"scored\"} %llu\n"
      "tandem_stream_events_total{pipeline=\"%s\",outcome=\"duplicate\"} "
      "%llu\n"
      "tandem_stream_events_total{pipeline=\"%s\",outcome=\"dead_letter\"} "
      "%llu\n"
      "tandem_stream_events_total{pipeline=\"%s\",outcome=\"already_applied\"} "
      "%llu\n"
      "# HELP tandem_stream_dead_letters_total Invalid input messages (sent "
      "to the dead-letter topic).\n"
      "# TYPE tandem_stream_dead_letters_total counter\n"
      "tandem_stream_dead_letters_total{pipeline=\"%s\"} %llu\n"
      "# HELP tandem_stream_commits_total Offset commits, by outcome.\n"
      "# TYPE tandem_stream_commits_total counter\n"
      "tandem_stream_commits_total{pipeline=\"%s\",outcome=\"ok\"} %llu\n"
      "tandem_stream_commits_total{pipeline=\"%s\",outcome=\"failed\"} %llu\n"
      "# HELP tandem_stream_commit_seconds Time to save states and commit "
      "offsets.\n"
      "# TYPE tandem_stream_commit_seconds histogram\n",
      name, (unsigned long long)s->scored, name,
      (unsigned long long)s->duplicates, name,
      (unsigned long long)s->dead_letters, name,
      (unsigned long long)s->already_applied, name,
      (unsigned long long)s->dead_letters, name,
      (unsigned long long)s->commits, name,
      (unsigned long long)s->commit_failures);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= NUM_COMMIT_BUCKETS && rc == TDM_OK; i++) {
    cumulative += s->commit_hist[i];
    char le[32] = "+Inf";
    if (i < NUM_COMMIT_BUCKETS) tdm__format_double(commit_buckets[i], le);
    rc = tdm__buf_printf(b,
                         "tandem_stream_commit_seconds_bucket{pipeline=\"%s\","
                         "le=\"%s\"} %llu\n",
                         name, le, (unsigned long long)cumulative);
  }
  if (rc == TDM_OK)
    rc = tdm__buf_printf(
        b,
        "tandem_stream_commit_seconds_sum{pipeline=\"%s\"} %.9f\n"
        "tandem_stream_commit_seconds_count{pipeline=\"%s\"} %llu\n"
        "# HELP tandem_stream_consumer_lag Messages of an assigned input "
        "partition not yet processed and acknowledged (high watermark minus "
        "commit point).\n"
        "# TYPE tandem_stream_consumer_lag gauge\n",
        name, s->commit_seconds, name, (unsigned long long)cumulative);
  size_t in_flight = 0, entities = 0, assigned = 0;
  for (size_t i = 0; i < s->num_parts && rc == TDM_OK; i++) {
    part *pt = s->parts[i];
    if (pt == NULL) continue;
    assigned++;
    in_flight += pt->count;
    entities += tdm__state_map_entities(pt->map);
    int64_t low = -1, high = -1, at = pt->commit_next;
    rd_kafka_get_watermark_offsets(s->consumer, s->opt->input, pt->id, &low,
                                   &high);
    if (at < 0) {
      rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(l, s->opt->input, pt->id);
      if (rd_kafka_position(s->consumer, l) == RD_KAFKA_RESP_ERR_NO_ERROR)
        at = l->elems[0].offset;
      rd_kafka_topic_partition_list_destroy(l);
    }
    if (high < 0 || at < 0) continue;
    rc = tdm__buf_printf(b,
                         "tandem_stream_consumer_lag{pipeline=\"%s\",topic=\"%s\","
                         "partition=\"%d\"} %lld\n",
                         name, s->opt->input, (int)pt->id,
                         (long long)(high > at ? high - at : 0));
  }
  if (rc == TDM_OK)
    rc = tdm__buf_printf(
        b,
        "# HELP tandem_stream_partitions Input partitions assigned.\n"
        "# TYPE tandem_stream_partitions gauge\n"
        "tandem_stream_partitions{pipeline=\"%s\"} %zu\n"
        "# HELP tandem_stream_in_flight Consumed messages whose outputs are "
        "not yet acknowledged.\n"
        "# TYPE tandem_stream_in_flight gauge\n"
        "tandem_stream_in_flight{pipeline=\"%s\"} %zu\n"
        "# HELP tandem_stream_entities Entities with state in memory.\n"
        "# TYPE tandem_stream_entities gauge\n"
        "tandem_stream_entities{pipeline=\"%s\"} %zu\n"
        "# HELP tandem_stream_changelog_records_total Entity states written "
        "to the changelog topic, and read from it when restoring.\n"
        "# TYPE tandem_stream_changelog_records_total counter\n"
        "tandem_stream_changelog_records_total{pipeline=\"%s\","
        "direction=\"written\"} %llu\n"
        "tandem_stream_changelog_records_total{pipeline=\"%s\","
        "direction=\"restored\"} %llu\n"
        "# HELP tandem_stream_restores_total Partitions restored on "
        "assignment.\n"
        "# TYPE tandem_stream_restores_total counter\n"
        "tandem_stream_restores_total{pipeline=\"%s\"} %llu\n"
        "# HELP tandem_stream_restore_seconds_total Time spent restoring "
        "partitions' states.\n"
        "# TYPE tandem_stream_restore_seconds_total counter\n"
        "tandem_stream_restore_seconds_total{pipeline=\"%s\"} %.6f\n",
        name, assigned, name, in_flight, name, entities, name,
        (unsigned long long)s->changelog_written, name,
        (unsigned long long)s->changelog_restored, name,
        (unsigned long long)s->restores, name, s->restore_seconds);
  return rc;
}

static void publish_metrics(stream *s) {
  if (s->http == NULL) return;
  tdm__buf text = {0};
  if (render_metrics(s, &text) != TDM_OK) {
    tdm__buf_free(&text);
    return;
  }
  pthread_mutex_lock(&s->metrics_lock);
  tdm__buf old = s->metrics;
  s->metrics = text;
  pthread_mutex_unlock(&s->metrics_lock);
  tdm__buf_free(&old);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **con_cls) {
  (void)version, (void)upload, (void)upload_size, (void)con_cls;
  stream *s = cls;
  struct MHD_Response *response;
  unsigned status = 200;
  if (strcmp(method, "GET") != 0 || strcmp(url, "/metrics") != 0) {
    static const char missing[] = "not found\n";
    status = 404;
    response = MHD_create_response_from_buffer(
        sizeof missing - 1, (void *)missing, MHD_RESPMEM_PERSISTENT);
  } else {
    pthread_mutex_lock(&s->metrics_lock);
    response = MHD_create_response_from_buffer(
        s->metrics.len, s->metrics.data, MHD_RESPMEM_MUST_COPY);
    pthread_mutex_unlock(&s->metrics_lock);
    if (response)
      MHD_add_response_header(response, "Content-Type",
                              "text/plain; version=0.0.4; charset=utf-8");
  }
  if (response == NULL) return MHD_NO;
  enum MHD_Result ret = MHD_queue_response(c, status, response);
  MHD_destroy_response(response);
  return ret;
}

static int start_metrics(stream *s, const char *listen, tdm_error *err) {
  char host[64];
  const char *colon = strrchr(listen, ':');
  size_t len = colon ? (size_t)(colon - listen) : 0;
  char *end;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  if (colon == NULL || len >= sizeof host || *end != '\0' || port < 0 ||
      port > 65535)
    return tdm__fail(err, TDM_EINVAL, "--metrics %s: expected HOST:PORT",
                     listen);
  memcpy(host, listen, len);
  host[len] = '\0';
  if (inet_pton(AF_INET, len ? host : "0.0.0.0", &addr.sin_addr) != 1)
    return tdm__fail(err, TDM_EINVAL,
                     "--metrics %s: the host must be an IPv4 address", listen);
  addr.sin_port = htons((uint16_t)port);
  publish_metrics(s);
  s->http = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
      answer, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
      MHD_OPTION_END);
  if (s->http == NULL)
    return tdm__fail(err, TDM_EIO, "--metrics %s: cannot listen there",
                     listen);
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(s->http, MHD_DAEMON_INFO_BIND_PORT);
  fprintf(stderr, "tandem stream: metrics on http://%s:%u/metrics\n",
          len ? host : "0.0.0.0", info ? (unsigned)info->port : (unsigned)port);
  publish_metrics(s);
  return TDM_OK;
}

/* ---- setup ---- */

/* Settings at-least-once needs, and their required values. */
static const char *const required[][2] = {
    {"enable.auto.commit", "false"},
    {"enable.auto.offset.store", "false"},
    {"enable.idempotence", "true"},
};

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                    tdm_error *err) {
  char why[512];
  if (rd_kafka_conf_set(conf, key, value, why, sizeof why) != RD_KAFKA_CONF_OK)
    return tdm__fail(err, TDM_EINVAL, "-X %s=%s: %s", key, value, why);
  return TDM_OK;
}

/* The configuration both clients share: defaults, then -X settings. */
static int make_conf(stream *s, const char *group, rd_kafka_conf_t **out,
                     tdm_error *err) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  int rc = conf_set(conf, "bootstrap.servers", s->opt->brokers, err);
  if (rc == TDM_OK) rc = conf_set(conf, "group.id", group, err);
  if (rc == TDM_OK) rc = conf_set(conf, "auto.offset.reset", "earliest", err);
  if (rc == TDM_OK) rc = conf_set(conf, "linger.ms", "5", err);
  if (rc == TDM_OK) rc = conf_set(conf, "client.id", "tandem-stream", err);
  /* Exactly-once: neither the input nor the changelog is read past an
   * open or aborted transaction. */
  if (rc == TDM_OK && s->opt->exactly_once)
    rc = conf_set(conf, "isolation.level", "read_committed", err);
  /* How long a member that stops heartbeating (killed, cut off) keeps its
   * partitions; heartbeats go three times within it, as Kafka's
   * defaults do. */
  if (rc == TDM_OK && s->opt->session_timeout_ms > 0) {
    char v[32];
    snprintf(v, sizeof v, "%u", s->opt->session_timeout_ms);
    rc = conf_set(conf, "session.timeout.ms", v, err);
    snprintf(v, sizeof v, "%u", s->opt->session_timeout_ms / 3);
    if (rc == TDM_OK) rc = conf_set(conf, "heartbeat.interval.ms", v, err);
  }
  for (size_t i = 0; i < s->opt->num_config && rc == TDM_OK; i++) {
    const char *kv = s->opt->config[i];
    const char *eq = strchr(kv, '=');
    char key[256];
    if (eq == NULL || eq == kv || (size_t)(eq - kv) >= sizeof key) {
      rc = tdm__fail(err, TDM_EINVAL, "-X %s: expected key=value", kv);
      break;
    }
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    for (size_t j = 0; j < sizeof required / sizeof required[0]; j++)
      if (strcmp(key, required[j][0]) == 0 && strcmp(eq + 1, required[j][1]))
        rc = tdm__fail(err, TDM_EINVAL,
                       "-X %s: tandem stream needs %s=%s (at-least-once)",
                       kv, key, required[j][1]);
    if (rc == TDM_OK) rc = conf_set(conf, key, eq + 1, err);
  }
  for (size_t j = 0; j < sizeof required / sizeof required[0] && rc == TDM_OK;
       j++)
    rc = conf_set(conf, required[j][0], required[j][1], err);
  if (rc != TDM_OK) {
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  rd_kafka_conf_set_opaque(conf, s);
  rd_kafka_conf_set_error_cb(conf, on_error);
  *out = conf;
  return TDM_OK;
}

/* The changelog of the input's partitions (default name
 * <group>-<input>-changelog), with its own consumer for restoring. */
static int open_changelog(stream *s, const char *group, tdm_error *err) {
  rd_kafka_topic_t *t = rd_kafka_topic_new(s->consumer, s->opt->input, NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t e =
      t ? rd_kafka_metadata(s->consumer, 0, t, &md, 15000)
        : RD_KAFKA_RESP_ERR__NOENT;
  if (t) rd_kafka_topic_destroy(t);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return tdm__fail(err, TDM_EIO, "metadata of topic %s: %s", s->opt->input,
                     rd_kafka_err2str(e));
  int partitions = md->topic_cnt == 1 && md->topics[0].err == 0
                       ? md->topics[0].partition_cnt
                       : 0;
  rd_kafka_metadata_destroy(md);
  if (partitions == 0)
    return tdm__fail(err, TDM_EINVAL,
                     "the input topic %s does not exist (its partitions "
                     "decide the changelog's)",
                     s->opt->input);
  char name[1024], restore_group[600];
  if (s->opt->changelog)
    snprintf(name, sizeof name, "%s", s->opt->changelog);
  else
    snprintf(name, sizeof name, "%s-%s-changelog", group, s->opt->input);
  snprintf(restore_group, sizeof restore_group, "%s-restore", group);
  rd_kafka_conf_t *conf;
  int rc = make_conf(s, restore_group, &conf, err);
  if (rc == TDM_OK)
    rc = tdm__changelog_open(s->consumer, conf, name, partitions,
                             &s->changelog, err);
  return rc;
}

static int open_clients(stream *s, tdm_error *err) {
  char group[512];
  if (s->opt->group)
    snprintf(group, sizeof group, "%s", s->opt->group);
  else
    snprintf(group, sizeof group, "tandem-%s", s->spec->name);
  rd_kafka_conf_t *conf;
  int rc = make_conf(s, group, &conf, err);
  if (rc != TDM_OK) return rc;
  rd_kafka_conf_t *producer_conf = rd_kafka_conf_dup(conf);
  rd_kafka_conf_set_dr_msg_cb(producer_conf, on_delivery);
  rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
  /* The consumer asks for the changelog's metadata: that must not create
   * it with the broker's defaults (not compacted). */
  rc = conf_set(conf, "allow.auto.create.topics", "false", err);
  /* Static membership: a member that restarts under the same instance id
   * within the session timeout gets its partitions back without a
   * rebalance (and one that stops does not leave the group: its
   * partitions wait for it until the session timeout). */
  if (rc == TDM_OK && s->opt->instance_id != NULL)
    rc = conf_set(conf, "group.instance.id", s->opt->instance_id, err);
  if (rc != TDM_OK) {
    rd_kafka_conf_destroy(producer_conf);
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  char why[512];
  if (s->opt->exactly_once) {
    /* One transactional id per member: stable with --instance-id, so a
     * restarted member fences its previous incarnation's open
     * transaction at once (otherwise the transaction times out). */
    char id[1100];
    if (s->opt->instance_id)
      snprintf(id, sizeof id, "%s-%s", group, s->opt->instance_id);
    else
      snprintf(id, sizeof id, "%s-pid%ld", group, (long)getpid());
    rc = conf_set(producer_conf, "transactional.id", id, err);
    if (rc != TDM_OK) {
      rd_kafka_conf_destroy(producer_conf);
      rd_kafka_conf_destroy(conf);
      return rc;
    }
  }
  s->producer = rd_kafka_new(RD_KAFKA_PRODUCER, producer_conf, why, sizeof why);
  if (s->producer == NULL) {
    rd_kafka_conf_destroy(producer_conf);
    rd_kafka_conf_destroy(conf);
    return tdm__fail(err, TDM_EINVAL, "kafka producer: %s", why);
  }
  if (s->opt->exactly_once) {
    rd_kafka_error_t *error = rd_kafka_init_transactions(s->producer, 60000);
    if (error == NULL) error = rd_kafka_begin_transaction(s->producer);
    if (error != NULL) {
      rd_kafka_conf_destroy(conf);
      return transaction_failed(s, error, "starting", err);
    }
  }
  s->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
  if (s->consumer == NULL) {
    rd_kafka_conf_destroy(conf);
    return tdm__fail(err, TDM_EINVAL, "kafka consumer: %s", why);
  }
  rd_kafka_poll_set_consumer(s->consumer);
  if (!s->opt->no_changelog) {
    rc = open_changelog(s, group, err);
    if (rc != TDM_OK) return rc;
  }
  rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, s->opt->input,
                                    RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(s->consumer, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return tdm__fail(err, TDM_EIO, "subscribing to %s: %s", s->opt->input,
                     rd_kafka_err2str(e));
  fprintf(stderr, "tandem stream: pipeline %s, group %s, %s -> %s%s%s\n",
          s->spec->name, group, s->opt->input, s->opt->output,
          s->changelog ? ", states in " : "",
          s->changelog ? tdm__changelog_topic(s->changelog) : "");
  return TDM_OK;
}

static int run_loop(stream *s, tdm_error *err) {
  unsigned interval_ms =
      s->opt->commit_interval_ms ? s->opt->commit_interval_ms : 5000;
  uint64_t last_commit = now_ns(), last_metrics = 0;
  int rc = TDM_OK;
  while (!(s->opt->stop != NULL && *s->opt->stop) && !s->failed &&
         rc == TDM_OK) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(s->consumer, 100);
    if (m != NULL && m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rc = dispatch(s, m, err);
    } else if (m != NULL) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        fprintf(stderr, "tandem stream: consumer: %s\n",
                rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
    }
    rd_kafka_poll(s->producer, 0);
    uint64_t now = now_ns();
    if (rc == TDM_OK && now - last_commit >= interval_ms * 1000000ull) {
      rc = commit(s, err);
      last_commit = now;
    }
    if (now - last_metrics >= 500000000ull) {
      quiesce(s);
      publish_metrics(s);
      last_metrics = now;
    }
  }
  return rc;
}

int tdm__stream_run(const tdm__stream_options *opt, tdm_error *err) {
  stream st = {0};
  stream *s = &st;
  s->opt = opt;
  pthread_mutex_init(&s->metrics_lock, NULL);
  pthread_mutex_init(&s->work, NULL);
  pthread_mutex_init(&s->book, NULL);
  pthread_cond_init(&s->work_ready, NULL);
  int rc = tdm__pipeline_load(opt->pipeline_path, 0, &s->p, err);
  if (rc == TDM_OK)
    rc = tdm__pipeline_open_tables(s->p, opt->store, opt->store_settings,
                                   TDM__LOOKUP_FOLLOW, err);
  if (rc == TDM_OK) {
    s->spec = tdm__pipeline_spec(s->p);
    rc = start_workers(s, opt->threads > 1 ? opt->threads : 1, err);
  }
  if (rc == TDM_OK && opt->state_dir != NULL &&
      mkdir(opt->state_dir, 0777) != 0 && errno != EEXIST)
    rc = tdm__fail(err, TDM_EIO, "%s: %s", opt->state_dir, strerror(errno));
  if (rc == TDM_OK && opt->state_dir == NULL)
    fprintf(stderr, "tandem stream: warning: no --state: entity states live "
                    "in memory only and start empty after a restart\n");
  if (rc == TDM_OK && opt->decision_log != NULL) rc = open_decisions(s, err);
  if (rc == TDM_OK && opt->metrics_listen)
    rc = start_metrics(s, opt->metrics_listen, err);
  if (rc == TDM_OK) rc = open_clients(s, err);
  if (rc == TDM_OK) rc = run_loop(s, err);
  /* The revocation that closing the consumer causes must not commit
   * after an error. */
  if (rc != TDM_OK) fail_once(s, rc, "%s%s", "", err->message);
  /* Drain: every output acknowledged, states saved, offsets committed;
   * then leave the group (which revokes, saving again). */
  if (s->producer != NULL) {
    quiesce(s);
    drain(s);
  }
  if (rc == TDM_OK && !s->failed && s->consumer != NULL) rc = commit(s, err);
  if (rc == TDM_OK && s->failed) {
    *err = s->failure;
    rc = s->failure.status ? s->failure.status : TDM_EIO;
  }
  if (s->consumer != NULL) rd_kafka_consumer_close(s->consumer);
  /* The messages still queued to workers (after a failure) are destroyed
   * before their consumer is. */
  stop_workers(s);
  /* Its last segment closes with every record the commits logged (a
   * failure logs nothing more: records are logged only by a commit). */
  tdm__decision_log_close(s->decisions);
  tdm__free(s->logged);
  if (s->consumer != NULL) rd_kafka_destroy(s->consumer);
  if (s->producer != NULL) rd_kafka_destroy(s->producer);
  tdm__changelog_close(s->changelog);
  if (s->http != NULL) MHD_stop_daemon(s->http);
  for (size_t i = 0; i < s->num_parts; i++) part_free(s->parts[i]);
  tdm__free(s->parts);
  tdm__buf_free(&s->metrics);
  tdm__pipeline_free(s->p);
  pthread_mutex_destroy(&s->metrics_lock);
  pthread_mutex_destroy(&s->work);
  pthread_mutex_destroy(&s->book);
  pthread_cond_destroy(&s->work_ready);
  return rc;
}
