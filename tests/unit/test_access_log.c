/*
 * test_access_log.c - the access log of `tandem serve` (src/serve/
 * access_log.c): a line of hostile strings reads back as the same JSON
 * (invalid UTF-8 as U+FFFD), and lines written by several threads at once
 * are all in the file after close, each whole, and split between the old
 * and the new file around a reopen.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/core/core.h"
#include "../../src/core/json.h"
#include "../../src/serve/access_log.h"
#include "test.h"

TEST(access_log_line_escapes) {
  static const char target[] = "/v2/\"a\\b\x01\x1f\xff\xc3\xa9?q=\x7f";
  tdm__access_entry e = {
      .time_ms = 1796601600123LL,
      .method = "GET",
      .target = target,
      .target_len = sizeof target - 1,
      .status = 404,
      .bytes = 12,
      .request_bytes = 7,
      .duration_us = 345,
      .remote = "[::1]:5000",
      .request_id = "id \"x\"\n",
  };
  tdm__buf line = {0};
  CHECK_INT(tdm__access_log_format(&e, &line), TDM_OK);
  CHECK(line.len > 0 && line.data[line.len - 1] == '\n');
  CHECK(memchr(line.data, '\n', line.len - 1) == NULL);
  tdm__json_doc doc;
  tdm_error err;
  CHECK_INT(tdm__json_parse(&doc, line.data, line.len, "line", 0, &err),
            TDM_OK);
  CHECK_STR(tdm__json_get(doc.root, "time")->text, "2026-12-07T00:00:00.123Z");
  CHECK_STR(tdm__json_get(doc.root, "path")->text,
            "/v2/\"a\\b\x01\x1f\xef\xbf\xbd\xc3\xa9?q=\x7f");
  CHECK_STR(tdm__json_get(doc.root, "request_id")->text, "id \"x\"\n");
  CHECK_STR(tdm__json_get(doc.root, "remote")->text, "[::1]:5000");
  const tdm__json *status = tdm__json_get(doc.root, "status");
  const tdm__json *duration = tdm__json_get(doc.root, "duration_us");
  CHECK(status->text_len == 3 && memcmp(status->text, "404", 3) == 0);
  CHECK(duration->text_len == 3 && memcmp(duration->text, "345", 3) == 0);
  tdm__json_doc_free(&doc);
  /* No request id: no member. */
  e.request_id = NULL;
  line.len = 0;
  CHECK_INT(tdm__access_log_format(&e, &line), TDM_OK);
  CHECK(strstr(line.data, "request_id") == NULL);
  tdm__buf_free(&line);
  return 0;
}

typedef struct writer_arg {
  tdm__access_log *log;
  int thread;
  int lines;
} writer_arg;

static void *write_lines(void *p) {
  writer_arg *a = p;
  for (int i = 0; i < a->lines; i++) {
    char id[32];
    snprintf(id, sizeof id, "t%d-%d", a->thread, i);
    tdm__access_entry e = {.time_ms = 0,
                           .method = "POST",
                           .target = "/x",
                           .target_len = 2,
                           .status = 200,
                           .remote = "",
                           .request_id = id};
    tdm__access_log_write(a->log, &e);
  }
  return NULL;
}

/* Lines of a file that parse as JSON objects; -1 if one does not. */
static long count_lines(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return 0;
  char buf[512];
  long n = 0;
  while (fgets(buf, sizeof buf, f) != NULL) {
    tdm__json_doc doc;
    tdm_error err;
    if (tdm__json_parse(&doc, buf, strlen(buf), "line", 0, &err) != TDM_OK) {
      fclose(f);
      return -1;
    }
    tdm__json_doc_free(&doc);
    n++;
  }
  fclose(f);
  return n;
}

TEST(access_log_threads_and_reopen) {
  char dir[] = "/tmp/tandem-access-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  char path[256], moved[256];
  snprintf(path, sizeof path, "%s/access.log", dir);
  snprintf(moved, sizeof moved, "%s/access.log.1", dir);
  tdm__access_log *log = NULL;
  tdm_error err;
  /* A long timer: only the reopen and the close write the lines. */
  CHECK_INT(tdm__access_log_open(path, 60000, &log, &err), TDM_OK);
  pthread_t threads[4];
  writer_arg args[4];
  for (int t = 0; t < 4; t++) {
    args[t] = (writer_arg){log, t, 2500};
    CHECK(pthread_create(&threads[t], NULL, write_lines, &args[t]) == 0);
  }
  for (int t = 0; t < 4; t++) pthread_join(threads[t], NULL);
  /* logrotate: move the file, then ask for the path to be opened again.
   * The 10000 lines buffered before the request go to the moved file. */
  CHECK(rename(path, moved) == 0);
  tdm__access_log_reopen(log);
  while (access(path, F_OK) != 0) usleep(1000);
  args[0] = (writer_arg){log, 9, 10};
  write_lines(&args[0]);
  tdm__access_log_close(log);
  CHECK_INT(count_lines(moved), 10000);
  CHECK_INT(count_lines(path), 10);
  unlink(path);
  unlink(moved);
  rmdir(dir);
  /* A path that cannot be opened is an error naming it. */
  CHECK_INT(tdm__access_log_open("/nonexistent-dir/x.log", 1000, &log, &err),
            TDM_EIO);
  CHECK_CONTAINS(err.message, "/nonexistent-dir/x.log");
  CHECK(log == NULL);
  return 0;
}
