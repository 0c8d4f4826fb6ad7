/*
 * changelog.c - restoring a partition's entity states from its changelog
 * (changelog.h). Writing to it is the runner's (stream.c): it produces
 * the changed states with its outputs' producer and waits for them to be
 * acknowledged before it saves them locally and commits input offsets.
 */
#include "changelog.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The restore gives up when the changelog makes no progress this long. */
#define STALL_MS 60000
/* Local writes per transaction while restoring. */
#define RESTORE_BATCH_BYTES ((size_t)32 << 20)
#define TIMEOUT_MS 15000

struct tdm__changelog {
  rd_kafka_t *consumer; /* assigned one partition at a time, no group */
  char *topic;
  int partitions;
  char *checkpoint_key; /* "changelog:<topic>" */
  char *seeding_key;    /* "seeding:<topic>": 1 while a seed is unfinished */
};

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The partition count of topic (0: it does not exist). */
static int topic_partitions(rd_kafka_t *rk, const char *topic, int *count,
                            tdm_error *err) {
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  if (t == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, TIMEOUT_MS);
  rd_kafka_topic_destroy(t);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return tdm__fail(err, TDM_EIO, "metadata of topic %s: %s", topic,
                     rd_kafka_err2str(e));
  int rc = TDM_OK;
  *count = 0;
  if (md->topic_cnt == 1) {
    e = md->topics[0].err;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
      *count = md->topics[0].partition_cnt;
    else if (e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
      rc = tdm__fail(err, TDM_EIO, "metadata of topic %s: %s", topic,
                     rd_kafka_err2str(e));
  }
  rd_kafka_metadata_destroy(md);
  return rc;
}

/* Creates topic, compacted, with the admin API. */
static int create_topic(rd_kafka_t *rk, const char *topic, int partitions,
                        tdm_error *err) {
  char why[512] = "";
  rd_kafka_NewTopic_t *nt =
      rd_kafka_NewTopic_new(topic, partitions, -1, why, sizeof why);
  if (nt == NULL) return tdm__fail(err, TDM_EIO, "%s%s", why, "");
  rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS + 5000);
  int rc = TDM_OK;
  if (ev == NULL) {
    rc = tdm__fail(err, TDM_EIO, "no answer in %d s", TIMEOUT_MS / 1000);
  } else if (rd_kafka_event_error(ev)) {
    rc = tdm__fail(err, TDM_EIO, "%s%s", rd_kafka_event_error_string(ev), "");
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(
        rd_kafka_event_CreateTopics_result(ev), &n);
    rd_kafka_resp_err_t e =
        n == 1 ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR &&
        e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
      rc = tdm__fail(err, TDM_EIO, "%s%s",
                     rd_kafka_topic_result_error_string(res[0])
                         ? rd_kafka_topic_result_error_string(res[0])
                         : rd_kafka_err2str(e),
                     "");
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  return rc;
}

int tdm__changelog_open(rd_kafka_t *client, rd_kafka_conf_t *conf,
                        const char *topic, int partitions,
                        tdm__changelog **out, tdm_error *err) {
  *out = NULL;
  int have = 0;
  int rc = topic_partitions(client, topic, &have, err);
  if (rc == TDM_OK && have == 0) {
    tdm_error why;
    if (create_topic(client, topic, partitions, &why) != TDM_OK)
      rc = tdm__fail(
          err, TDM_EINVAL,
          "the changelog topic %s does not exist and could not be created "
          "(%s): create it with %d partitions and cleanup.policy=compact "
          "(kafka-topics.sh --create --topic %s --partitions %d --config "
          "cleanup.policy=compact), name another with --changelog, or run "
          "without one (--no-changelog)",
          topic, why.message, partitions, topic, partitions);
    else
      fprintf(stderr,
              "tandem stream: created the changelog topic %s (%d partitions, "
              "compacted)\n",
              topic, partitions);
    if (rc == TDM_OK) rc = topic_partitions(client, topic, &have, err);
  }
  if (rc == TDM_OK && have < partitions)
    rc = tdm__fail(err, TDM_EINVAL,
                   "the changelog topic %s has %d partitions; the input has "
                   "%d: partition P of the changelog keeps input partition "
                   "P's states, so it needs at least as many",
                   topic, have, partitions);
  tdm__changelog *cl = NULL;
  if (rc == TDM_OK) {
    cl = tdm__calloc(1, sizeof *cl);
    size_t n = strlen(topic) + 16;
    if (cl == NULL || (cl->topic = tdm__strdup(topic)) == NULL ||
        (cl->checkpoint_key = tdm__malloc(n)) == NULL ||
        (cl->seeding_key = tdm__malloc(n)) == NULL) {
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    } else {
      snprintf(cl->checkpoint_key, n, "changelog:%s", topic);
      snprintf(cl->seeding_key, n, "seeding:%s", topic);
      cl->partitions = have;
    }
  }
  /* The restore reads a partition to its end from a given offset,
   * whatever -X says about offsets. */
  char why[512];
  if (rc == TDM_OK &&
      (rd_kafka_conf_set(conf, "enable.partition.eof", "true", why,
                         sizeof why) != RD_KAFKA_CONF_OK ||
       rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", why,
                         sizeof why) != RD_KAFKA_CONF_OK))
    rc = tdm__fail(err, TDM_EINVAL, "kafka changelog consumer: %s", why);
  if (rc == TDM_OK) {
    cl->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (cl->consumer == NULL)
      rc = tdm__fail(err, TDM_EINVAL, "kafka changelog consumer: %s", why);
    else
      rd_kafka_poll_set_consumer(cl->consumer);
    conf = NULL;
  }
  if (conf != NULL) rd_kafka_conf_destroy(conf);
  if (rc != TDM_OK) {
    tdm__changelog_close(cl);
    return rc;
  }
  *out = cl;
  return TDM_OK;
}

void tdm__changelog_close(tdm__changelog *cl) {
  if (cl == NULL) return;
  if (cl->consumer != NULL) {
    rd_kafka_consumer_close(cl->consumer);
    rd_kafka_destroy(cl->consumer);
  }
  tdm__free(cl->topic);
  tdm__free(cl->checkpoint_key);
  tdm__free(cl->seeding_key);
  tdm__free(cl);
}

const char *tdm__changelog_topic(const tdm__changelog *cl) {
  return cl->topic;
}

int tdm__changelog_partitions(const tdm__changelog *cl) {
  return cl->partitions;
}

/* The meta key of the local copy of the input position. */
static const char position_meta_key[] = "input-position";

static void encode_u64(uint64_t x, unsigned char v[8]) {
  for (int i = 0; i < 8; i++) v[i] = (unsigned char)(x >> (8 * i));
}

static uint64_t decode_u64(const void *data) {
  const unsigned char *v = data;
  uint64_t x = 0;
  for (int i = 7; i >= 0; i--) x = x << 8 | v[i];
  return x;
}

void tdm__position_encode(int64_t next, unsigned char value[8]) {
  encode_u64((uint64_t)next, value);
}

int tdm__position_save(int64_t next, tdm__state_writes *w) {
  unsigned char v[8];
  encode_u64((uint64_t)next, v);
  tdm__str key = {position_meta_key, sizeof position_meta_key - 1};
  return tdm__state_writes_meta(w, key, v, 8);
}

int tdm__position_read(tdm__store *store, int64_t *next, tdm_error *err) {
  tdm__buf v = {0};
  int found = 0;
  *next = -1;
  int rc = tdm__store_get(store, TDM__META_DB, position_meta_key,
                          sizeof position_meta_key - 1, &v, &found, err);
  if (rc == TDM_OK && found && v.len == 8) *next = (int64_t)decode_u64(v.data);
  tdm__buf_free(&v);
  return rc;
}

int tdm__changelog_seeded(const tdm__changelog *cl, tdm__state_writes *w) {
  tdm__str key = {cl->seeding_key, strlen(cl->seeding_key)};
  return tdm__state_writes_meta(w, key, "\0", 1);
}

int tdm__changelog_checkpoint(const tdm__changelog *cl, int64_t next,
                              tdm__state_writes *w) {
  unsigned char v[8];
  encode_u64((uint64_t)next, v);
  tdm__str key = {cl->checkpoint_key, strlen(cl->checkpoint_key)};
  return tdm__state_writes_meta(w, key, v, 8);
}

/* The local checkpoint (-1: none), and whether a seed is unfinished. */
static int read_checkpoint(tdm__changelog *cl, tdm__store *store,
                           int64_t *next, int *seeding, tdm_error *err) {
  tdm__buf v = {0};
  int found = 0;
  *next = -1;
  *seeding = 0;
  int rc = tdm__store_get(store, TDM__META_DB, cl->checkpoint_key,
                          strlen(cl->checkpoint_key), &v, &found, err);
  if (rc == TDM_OK && found && v.len == 8) *next = (int64_t)decode_u64(v.data);
  if (rc == TDM_OK)
    rc = tdm__store_get(store, TDM__META_DB, cl->seeding_key,
                        strlen(cl->seeding_key), &v, &found, err);
  if (rc == TDM_OK && found && v.len == 1 && v.data[0] == 1) *seeding = 1;
  tdm__buf_free(&v);
  return rc;
}

/* Drops the local states, their input position and the checkpoint, in
 * one transaction. */
static int clear_local(tdm__changelog *cl, tdm__store *store,
                       tdm_error *err) {
  tdm__store_op ops[3] = {
      {TDM__STORE_CLEAR, TDM__STATE_DB, NULL, 0, NULL, 0},
      {TDM__STORE_DEL, TDM__META_DB, cl->checkpoint_key,
       strlen(cl->checkpoint_key), NULL, 0},
      {TDM__STORE_DEL, TDM__META_DB, position_meta_key,
       sizeof position_meta_key - 1, NULL, 0}};
  return tdm__store_write(store, ops, 3, err);
}

static tdm__state_map *the_map(void *ctx, tdm__str key) {
  (void)key;
  return ctx;
}

typedef struct reading {
  tdm__changelog *cl;
  int32_t partition;
  tdm__state_map *map;
  tdm__store *store;
  tdm__state_writes w;
  size_t records;
  int64_t position; /* the newest input position read (-1: none) */
} reading;

/* Applies one changelog record: the entity's newest state, or its
 * removal. */
static int apply(reading *r, const rd_kafka_message_t *m, tdm_error *err) {
  if (m->key == NULL || m->key_len == 0)
    return tdm__fail(err, TDM_EPARSE,
                     "changelog %s [%d] offset %lld: a record without a key",
                     r->cl->topic, (int)r->partition, (long long)m->offset);
  tdm__str key = {m->key, m->key_len};
  if (key.len == TDM__POSITION_KEY_LEN &&
      memcmp(key.data, TDM__POSITION_KEY, key.len) == 0) {
    if (m->payload == NULL || m->len != 8)
      return tdm__fail(err, TDM_EPARSE,
                       "changelog %s [%d] offset %lld: an input position of "
                       "%zu bytes (8 expected)",
                       r->cl->topic, (int)r->partition, (long long)m->offset,
                       m->payload ? m->len : 0);
    r->position = (int64_t)decode_u64(m->payload);
    if (r->position < 0)
      return tdm__fail(err, TDM_EPARSE,
                       "changelog %s [%d] offset %lld: input position %lld "
                       "is negative",
                       r->cl->topic, (int)r->partition, (long long)m->offset,
                       (long long)r->position);
    if (r->store && tdm__position_save(r->position, &r->w) != TDM_OK)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
    r->records++;
    return TDM_OK;
  }
  tdm__state_map_forget(r->map, key);
  int rc = TDM_OK;
  if (m->payload == NULL) {
    if (r->store) rc = tdm__state_writes_delete(&r->w, key);
  } else {
    tdm_error why;
    uint64_t tag;
    if (m->len < 8)
      return tdm__fail(err, TDM_EPARSE,
                       "changelog %s [%d] offset %lld: the state of \"%.*s\" "
                       "is cut short",
                       r->cl->topic, (int)r->partition, (long long)m->offset,
                       (int)(key.len > 64 ? 64 : key.len), key.data);
    memcpy(&tag, m->payload, 8);
    rc = tdm__state_map_restore(r->map, key, tag, (const char *)m->payload + 8,
                                m->len - 8, &why);
    if (rc == TDM_ENOMEM) return tdm__fail(err, rc, "out of memory");
    if (rc != TDM_OK)
      return tdm__fail(err, rc,
                       "changelog %s [%d] offset %lld: the state of \"%.*s\" "
                       "does not fit this pipeline (written by another "
                       "version of it?): %s",
                       r->cl->topic, (int)r->partition, (long long)m->offset,
                       (int)(key.len > 64 ? 64 : key.len), key.data,
                       why.message);
    if (r->store) rc = tdm__state_writes_put(&r->w, key, m->payload, m->len);
  }
  if (rc != TDM_OK) return tdm__fail(err, rc, "out of memory");
  r->records++;
  return TDM_OK;
}

/* Saves what was read so far, with the checkpoint next. */
static int save(reading *r, int64_t next, tdm_error *err) {
  if (r->store == NULL) return TDM_OK;
  if (tdm__changelog_checkpoint(r->cl, next, &r->w) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  return tdm__state_writes_flush(&r->w, r->store, err);
}

/* Reads the changelog partition from offset `from` up to `high`. */
static int read_range(reading *r, int64_t from, int64_t high,
                      tdm_error *err) {
  tdm__changelog *cl = r->cl;
  rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, cl->topic, r->partition)->offset =
      from;
  rd_kafka_resp_err_t e = rd_kafka_assign(cl->consumer, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return tdm__fail(err, TDM_EIO, "changelog %s [%d]: %s", cl->topic,
                     (int)r->partition, rd_kafka_err2str(e));
  int64_t next = from;
  double progress = now_seconds();
  int rc = TDM_OK;
  while (rc == TDM_OK && next < high) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(cl->consumer, 200);
    if (m != NULL && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      /* The end of the partition: m->offset is the next offset, past
       * any offsets at the tail that hold no record (compacted away,
       * transaction markers), which are never delivered. */
      if (m->partition == r->partition && m->offset > next) next = m->offset;
      rd_kafka_message_destroy(m);
      progress = now_seconds();
      continue;
    }
    if (m == NULL || m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m != NULL)
        fprintf(stderr, "tandem stream: changelog %s [%d]: %s\n", cl->topic,
                (int)r->partition, rd_kafka_message_errstr(m));
      if (m != NULL) rd_kafka_message_destroy(m);
      if (now_seconds() - progress > STALL_MS / 1000.0)
        rc = tdm__fail(err, TDM_EIO,
                       "changelog %s [%d]: no progress for %d s at offset "
                       "%lld of %lld",
                       cl->topic, (int)r->partition, STALL_MS / 1000,
                       (long long)next, (long long)high);
      continue;
    }
    if (m->partition == r->partition && m->offset >= next) {
      rc = apply(r, m, err);
      next = m->offset + 1;
      progress = now_seconds();
      if (rc == TDM_OK && r->w.bytes.len >= RESTORE_BATCH_BYTES)
        rc = save(r, next, err);
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_assign(cl->consumer, NULL);
  return rc;
}

int tdm__changelog_restore(tdm__changelog *cl, int32_t partition,
                           tdm__state_map *map, tdm__store *store,
                           const char *dir,
                           tdm__changelog_restore_info *info, tdm_error *err) {
  memset(info, 0, sizeof *info);
  info->position = -1;
  double started = now_seconds();
  int64_t low = -1, high = -1, checkpoint = -1;
  rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
      cl->consumer, cl->topic, partition, &low, &high, TIMEOUT_MS);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return tdm__fail(err, TDM_EIO, "changelog %s [%d]: offsets: %s",
                     cl->topic, (int)partition, rd_kafka_err2str(e));
  int rc = TDM_OK, seeding = 0;
  if (store != NULL) rc = read_checkpoint(cl, store, &checkpoint, &seeding, err);
  if (rc != TDM_OK) return rc;
  int64_t from;
  if (high == low) {
    /* Nothing to read: the local states are all there is. */
    from = high;
  } else if (store != NULL && checkpoint >= low && checkpoint <= high) {
    from = checkpoint;
  } else {
    /* No checkpoint for this changelog, or one beyond its end (the topic
     * was recreated): its records replace the local states. */
    from = low;
    info->from_start = 1;
    seeding = 0;
    if (store != NULL) rc = clear_local(cl, store, err);
  }
  uint64_t max_tag;
  if (rc == TDM_OK && store != NULL && !info->from_start)
    rc = tdm__state_dir_restore(store, dir, the_map, map, &max_tag, err);
  info->local = tdm__state_map_entities(map);
  /* An empty changelog gets the local states (the runner marks them all
   * dirty and writes them at its next commit). Until that commit is done
   * the local store says so, with a checkpoint at the seed's start: a
   * crash in the middle keeps the local states and seeds again. */
  info->seed = (high == low && info->local > 0) || seeding;
  reading r;
  memset(&r, 0, sizeof r);
  r.cl = cl;
  r.partition = partition;
  r.map = map;
  r.store = store;
  r.position = -1;
  if (rc == TDM_OK && store != NULL && !info->from_start)
    rc = tdm__position_read(store, &r.position, err);
  if (rc == TDM_OK && from < high) rc = read_range(&r, from, high, err);
  if (rc == TDM_OK && store != NULL && info->seed && !seeding) {
    tdm__str key = {cl->seeding_key, strlen(cl->seeding_key)};
    if (tdm__state_writes_meta(&r.w, key, "\1", 1) != TDM_OK)
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  if (rc == TDM_OK && (from < high || checkpoint != high || info->seed))
    rc = save(&r, high, err);
  tdm__state_writes_free(&r.w);
  info->records = r.records;
  info->position = r.position;
  info->next = high;
  info->seconds = now_seconds() - started;
  return rc;
}
