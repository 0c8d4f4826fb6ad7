/*
 * kafka_peer.c - the transport's own limit, for bench/bench_stream.py: a
 * pass-through consumer-to-producer with the settings `tandem stream`
 * uses, and a watcher that times how fast a topic fills.
 *
 *   kafka-peer passthrough BROKERS IN OUT GROUP COUNT
 *       consumes IN in group GROUP and produces each message's key and
 *       value unchanged to OUT, at-least-once as tandem stream is: an
 *       idempotent producer (linger.ms=5), no auto commit, and every
 *       second the offsets whose outputs are acknowledged are committed.
 *       Stops after COUNT outputs are acknowledged.
 *   kafka-peer watch BROKERS TOPIC COUNT
 *       polls TOPIC's high watermarks every 10 ms; prints one line of
 *       JSON: the seconds from the first message seen to COUNT messages,
 *       and messages/s over that span.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void set(rd_kafka_conf_t *conf, const char *key, const char *value) {
  char why[512];
  if (rd_kafka_conf_set(conf, key, value, why, sizeof why) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "kafka-peer: %s=%s: %s\n", key, value, why);
    exit(2);
  }
}

/* The settings tandem stream gives both of its clients (stream.c). */
static rd_kafka_conf_t *base_conf(const char *brokers, const char *group) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", brokers);
  set(conf, "group.id", group);
  set(conf, "auto.offset.reset", "earliest");
  set(conf, "linger.ms", "5");
  set(conf, "enable.auto.commit", "false");
  set(conf, "enable.auto.offset.store", "false");
  set(conf, "enable.idempotence", "true");
  set(conf, "log_level", "3");
  return conf;
}

/* ---- passthrough ---- */

/* Commits, per partition, the offset after the last consumed message
 * whose output is acknowledged. */
static void commit_acked(rd_kafka_t *consumer, const char *in,
                         const int32_t *parts, const int64_t *offsets,
                         size_t cap, size_t *head, size_t tail,
                         long long *stored, long long acked) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
  while (*stored < acked && *head < tail) {
    rd_kafka_topic_partition_t *e =
        rd_kafka_topic_partition_list_find(l, in, parts[*head % cap]);
    if (e == NULL)
      e = rd_kafka_topic_partition_list_add(l, in, parts[*head % cap]);
    e->offset = offsets[*head % cap] + 1;
    (*head)++;
    (*stored)++;
  }
  if (l->cnt > 0) rd_kafka_commit(consumer, l, 0);
  rd_kafka_topic_partition_list_destroy(l);
}

typedef struct peer {
  long long acked, failed;
} peer;

/* A delivery report. One producer acknowledges in production order, which
 * is consumption order: the first `acked` consumed offsets are done. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
  (void)rk;
  peer *p = opaque;
  if (m->err) {
    p->failed++;
    return;
  }
  p->acked++;
}

static int passthrough(const char *brokers, const char *in, const char *out,
                       const char *group, long long count) {
  peer p = {0};
  char why[512];
  rd_kafka_conf_t *conf = base_conf(brokers, group);
  rd_kafka_conf_t *pconf = rd_kafka_conf_dup(conf);
  rd_kafka_conf_set_opaque(pconf, &p);
  rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
  rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, why, sizeof why);
  rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
  if (producer == NULL || consumer == NULL) {
    fprintf(stderr, "kafka-peer: %s\n", why);
    return 1;
  }
  rd_kafka_poll_set_consumer(consumer);
  rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, in, RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(consumer, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  /* Offsets consumed and waiting for their outputs: a ring of
   * (partition, offset) in consumption order. */
  size_t cap = 1 << 22, head = 0, tail = 0;
  int32_t *parts = malloc(cap * sizeof *parts);
  int64_t *offsets = malloc(cap * sizeof *offsets);
  long long consumed = 0, stored = 0;
  double first = 0, last_commit = now();
  while (p.acked < count && p.failed == 0) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 10);
    if (m != NULL) {
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (consumed == 0) first = now();
        for (;;) {
          rd_kafka_resp_err_t e = rd_kafka_producev(
              producer, RD_KAFKA_V_TOPIC(out),
              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
              RD_KAFKA_V_KEY(m->key, m->key_len),
              RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_END);
          if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
          if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "kafka-peer: produce: %s\n", rd_kafka_err2str(e));
            return 1;
          }
          rd_kafka_poll(producer, 10);
        }
        if (tail - head < cap) {
          parts[tail % cap] = m->partition;
          offsets[tail % cap] = m->offset;
          tail++;
        }
        consumed++;
      }
      rd_kafka_message_destroy(m);
    }
    rd_kafka_poll(producer, 0);
    if (now() - last_commit >= 1.0) {
      commit_acked(consumer, in, parts, offsets, cap, &head, tail,
                   &stored, p.acked);
      last_commit = now();
    }
  }
  double seconds = now() - first;
  commit_acked(consumer, in, parts, offsets, cap, &head, tail, &stored,
               p.acked);
  printf("{\"messages\": %lld, \"seconds\": %.6f, \"per_s\": %.1f, "
         "\"failed\": %lld}\n",
         p.acked, seconds, (double)p.acked / seconds, p.failed);
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  rd_kafka_flush(producer, 10000);
  rd_kafka_destroy(producer);
  free(parts);
  free(offsets);
  return p.failed ? 1 : 0;
}

/* ---- watch ---- */

static int watch(const char *brokers, const char *topic, long long count) {
  char why[512];
  rd_kafka_conf_t *conf = base_conf(brokers, "kafka-peer-watch");
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
  if (rk == NULL) {
    fprintf(stderr, "kafka-peer: %s\n", why);
    return 1;
  }
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  const struct rd_kafka_metadata *md;
  if (rd_kafka_metadata(rk, 0, t, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      md->topic_cnt != 1 || md->topics[0].partition_cnt == 0) {
    fprintf(stderr, "kafka-peer: no metadata for %s\n", topic);
    return 1;
  }
  int n = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
  double first = 0, deadline = now() + 600;
  long long total = 0, at_first = 0;
  while (total < count && now() < deadline) {
    long long sum = 0;
    for (int i = 0; i < n; i++) {
      int64_t lo, hi;
      if (rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi, 5000) ==
          RD_KAFKA_RESP_ERR_NO_ERROR)
        sum += hi;
    }
    total = sum;
    if (first == 0 && total > 0) {
      first = now();
      at_first = total;
    }
    struct timespec ts = {0, 10000000};
    if (total < count) nanosleep(&ts, NULL);
  }
  double seconds = now() - first;
  printf("{\"messages\": %lld, \"seconds\": %.6f, \"per_s\": %.1f}\n", total,
         seconds, (double)(total - at_first) / seconds);
  rd_kafka_destroy(rk);
  return total >= count ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 7 && strcmp(argv[1], "passthrough") == 0)
    return passthrough(argv[2], argv[3], argv[4], argv[5], atoll(argv[6]));
  if (argc == 5 && strcmp(argv[1], "watch") == 0)
    return watch(argv[2], argv[3], atoll(argv[4]));
  fprintf(stderr,
          "usage: kafka-peer passthrough BROKERS IN OUT GROUP COUNT\n"
          "       kafka-peer watch BROKERS TOPIC COUNT\n");
  return 2;
}
