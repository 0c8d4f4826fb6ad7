/*
 * test_decision_log.c - the decision log's segments: records reserved and
 * written in place come back in order; a segment left open by a killed
 * process gets the write-ahead log's records again at their places (a
 * hole the kill left, a record it tore) and is cut after its last whole
 * record; a closed segment has a manifest whose counts and SHA-256
 * describe it; rotation by size keeps a call's records together.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/core/core.h"
#include "../../src/store/decision_log.h"
#include "test.h"

static const char one[] = "{\"event_id\":\"a\",\"duplicate\":false,"
                          "\"arrived_at\":\"2026-12-07T00:00:01.000Z\"}\n";
static const char two[] = "{\"event_id\":\"b\",\"duplicate\":true,"
                          "\"arrived_at\":\"2026-12-07T00:00:02.500Z\"}\n";
static const char three[] = "{\"event_id\":\"c\",\"duplicate\":false,"
                            "\"arrived_at\":\"2026-12-07T00:00:04.000Z\"}\n";

static tdm__decision_log_options options(const char *dir, uint64_t max_bytes) {
  tdm__decision_log_options o = {
      .dir = dir, .pipeline_path = "p.yaml", .pipeline_sha256 = "00",
      .pipeline_name = "p", .model_sha256 = "", .runner = "serve",
      .registry = NULL, .max_bytes = max_bytes, .max_ms = 0};
  return o;
}

static char *read_text(const char *dir, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *data = NULL;
  size_t size;
  tdm_error err;
  if (tdm__read_file(path, &data, &size, &err) != TDM_OK) return NULL;
  return data;
}

TEST(decision_log_recovers_from_the_write_ahead_log) {
  char dir[] = "/tmp/tandem-dlog-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__decision_log_options o = options(dir, 0);
  tdm_error err;
  uint64_t at_two = strlen(one);
  /* A process that is killed: it writes one, reserves two (logged, never
   * written: a hole) and three (half written), and exits without
   * closing, as SIGKILL would leave it. */
  pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    tdm__decision_log *log;
    uint64_t segment, at_one, at, at_three;
    int ok = tdm__decision_log_open(&o, NULL, 0, &log, &err) == TDM_OK &&
             tdm__decision_log_reserve(log, strlen(one), &segment, &at_one,
                                       &err) == TDM_OK &&
             segment == 1 && at_one == 0 &&
             tdm__decision_log_write_at(log, at_one, one, strlen(one),
                                        &err) == TDM_OK &&
             tdm__decision_log_reserve(log, strlen(two), &segment, &at,
                                       &err) == TDM_OK &&
             at == at_two &&
             tdm__decision_log_reserve(log, strlen(three), &segment,
                                       &at_three, &err) == TDM_OK &&
             at_three == strlen(one) + strlen(two) &&
             tdm__decision_log_write_at(log, at_three, three, 10, &err) ==
                 TDM_OK;
    _exit(ok ? 0 : 1);
  }
  int status;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  char path[512];
  snprintf(path, sizeof path, "%s/decisions-00000001.jsonl.open", dir);
  struct stat st;
  CHECK(stat(path, &st) == 0);

  /* The restart: the write-ahead log still holds two's commit, not
   * three's (its sync never finished). */
  tdm__decision_redo redo[1] = {{1, at_two, two, strlen(two)}};
  tdm__decision_log *again;
  CHECK(tdm__decision_log_open(&o, redo, 1, &again, &err) == TDM_OK);
  CHECK(stat(path, &st) != 0); /* closed */
  char *text = read_text(dir, "decisions-00000001.jsonl");
  CHECK(text != NULL);
  char want[512];
  snprintf(want, sizeof want, "%s%s", one, two);
  CHECK_STR(text, want);
  tdm__free(text);
  char *manifest = read_text(dir, "decisions-00000001.jsonl.manifest.json");
  CHECK(manifest != NULL);
  char hex[65];
  tdm__sha256_hex(want, strlen(want), hex);
  CHECK_CONTAINS(manifest, hex);
  CHECK_CONTAINS(manifest, "\"command\": \"live\"");
  CHECK_CONTAINS(manifest, "\"events\": 2, \"duplicates\": 1");
  CHECK_CONTAINS(manifest, "\"started_at\": \"2026-12-07T00:00:01.000Z\"");
  CHECK_CONTAINS(manifest, "\"seconds\": 1.500");
  tdm__free(manifest);
  /* The new process writes to the next segment, and closes it. */
  CHECK(tdm__decision_log_append(again, three, strlen(three), &err) == TDM_OK);
  tdm__decision_log_close(again);
  text = read_text(dir, "decisions-00000002.jsonl");
  CHECK(text != NULL);
  CHECK_STR(text, three);
  tdm__free(text);
  return 0;
}

TEST(decision_log_rotates_by_size_between_calls) {
  char dir[] = "/tmp/tandem-dlog-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__decision_log_options o = options(dir, strlen(one) + 1);
  tdm__decision_log *log;
  tdm_error err;
  CHECK(tdm__decision_log_open(&o, NULL, 0, &log, &err) == TDM_OK);
  char both[512];
  snprintf(both, sizeof both, "%s%s", one, two);
  /* Past the size within one call: the segment closes at the next. */
  CHECK(tdm__decision_log_append(log, both, strlen(both), &err) == TDM_OK);
  CHECK(tdm__decision_log_append(log, three, strlen(three), &err) == TDM_OK);
  tdm__decision_log_close(log);
  char *first = read_text(dir, "decisions-00000001.jsonl");
  char *second = read_text(dir, "decisions-00000002.jsonl");
  CHECK(first != NULL && second != NULL);
  CHECK_STR(first, both);
  CHECK_STR(second, three);
  tdm__free(first);
  tdm__free(second);
  return 0;
}

/* Closed segments go to the finisher thread unsynced; a sync between the
 * rotations (the runner's, before its write-ahead log drops records)
 * syncs those still queued through duplicates of their descriptors and
 * succeeds while the finisher works; every segment ends up finished with
 * its own record, in order. */
TEST(decision_log_syncs_segments_queued_for_the_finisher) {
  char dir[] = "/tmp/tandem-dlog-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__decision_log_options o = options(dir, 1);
  tdm__decision_log *log;
  tdm_error err;
  CHECK(tdm__decision_log_open(&o, NULL, 0, &log, &err) == TDM_OK);
  enum { N = 40 };
  const char *records[3] = {one, two, three};
  for (int i = 0; i < N; i++) {
    const char *r = records[i % 3];
    uint64_t segment, at;
    CHECK(tdm__decision_log_reserve(log, strlen(r), &segment, &at, &err) ==
          TDM_OK);
    CHECK(segment == (uint64_t)i + 1 && at == 0);
    CHECK(tdm__decision_log_write_at(log, at, r, strlen(r), &err) == TDM_OK);
    CHECK(tdm__decision_log_sync(log, &err) == TDM_OK);
  }
  tdm__decision_log_close(log);
  for (int i = 0; i < N; i++) {
    char name[64];
    snprintf(name, sizeof name, "decisions-%08d.jsonl", i + 1);
    char *text = read_text(dir, name);
    CHECK(text != NULL);
    CHECK_STR(text, records[i % 3]);
    tdm__free(text);
    snprintf(name, sizeof name, "decisions-%08d.jsonl.open", i + 1);
    char *left = read_text(dir, name);
    CHECK(left == NULL);
  }
  return 0;
}
