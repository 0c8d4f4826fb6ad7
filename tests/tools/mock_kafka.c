/*
 * mock_kafka.c - a Kafka cluster for tests: librdkafka's built-in mock
 * cluster (rdkafka_mock.h), started inside this process and kept up until
 * the process is killed or its standard input says "quit". It prints the
 * cluster's bootstrap servers as the first line of stdout, so that a test
 * can point `tandem stream` and kcat (an independent client) at it.
 *
 *   mock-kafka [-b BROKERS] [-t TOPIC:PARTITIONS]...
 *
 * Commands read from standard input, one per line, each answered "ok" or
 * "error: ..." on stdout:
 *
 *   topic NAME PARTITIONS           create a topic
 *   errors APIKEY CODE [COUNT]      the next COUNT (default 1) requests of
 *                                   protocol API APIKEY (0 Produce, 1 Fetch,
 *                                   8 OffsetCommit, ...) fail with error
 *                                   CODE (a Kafka error code, e.g. 6
 *                                   NOT_LEADER_OR_FOLLOWER, -195 transport)
 *   quit                            stop
 *
 * At the end of standard input the cluster stays up until a signal.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static int create_topic(rd_kafka_mock_cluster_t *mc, const char *name,
                        int partitions) {
  rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, name, partitions, 1);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fprintf(stderr, "mock-kafka: topic %s: %s\n", name, rd_kafka_err2str(e));
    return -1;
  }
  return 0;
}

/* One command line; returns 1 on "quit". */
static int command(rd_kafka_mock_cluster_t *mc, char *line) {
  char word[32] = "", name[256] = "";
  int a = 0, b = 0, c = 1;
  if (sscanf(line, "%31s", word) != 1) return 0;
  if (strcmp(word, "quit") == 0) return 1;
  if (strcmp(word, "topic") == 0 &&
      sscanf(line, "%*s %255s %d", name, &a) == 2 && a > 0) {
    puts(create_topic(mc, name, a) == 0 ? "ok" : "error: topic");
  } else if (strcmp(word, "errors") == 0 &&
             sscanf(line, "%*s %d %d %d", &a, &b, &c) >= 2 && c > 0) {
    rd_kafka_resp_err_t *errs = calloc((size_t)c, sizeof *errs);
    if (errs == NULL) {
      puts("error: out of memory");
    } else {
      for (int i = 0; i < c; i++) errs[i] = (rd_kafka_resp_err_t)b;
      rd_kafka_mock_push_request_errors_array(mc, (int16_t)a, (size_t)c, errs);
      free(errs);
      puts("ok");
    }
  } else {
    puts("error: unknown command");
  }
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  int brokers = 3;
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* The handle only hosts the cluster; it connects to nothing. */
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t *rk =
      rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == NULL) {
    fprintf(stderr, "mock-kafka: %s\n", errstr);
    return 1;
  }
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "-b") == 0 && i + 1 < argc) brokers = atoi(argv[++i]);
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (mc == NULL) {
    fprintf(stderr, "mock-kafka: cannot start the mock cluster\n");
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
      char name[256];
      int partitions = 1;
      const char *spec = argv[++i];
      const char *colon = strrchr(spec, ':');
      size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
      if (len >= sizeof name) len = sizeof name - 1;
      memcpy(name, spec, len);
      name[len] = 0;
      if (colon) partitions = atoi(colon + 1);
      if (partitions < 1 || create_topic(mc, name, partitions) != 0) return 2;
    } else if (strcmp(argv[i], "-b") == 0) {
      i++;
    } else {
      fprintf(stderr, "usage: mock-kafka [-b BROKERS] [-t TOPIC:PARTITIONS]...\n");
      return 2;
    }
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
  fflush(stdout);
  char line[1024];
  while (!stopping && fgets(line, sizeof line, stdin) != NULL)
    if (command(mc, line)) stopping = 1;
  while (!stopping) pause();
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
