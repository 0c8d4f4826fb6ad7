/*
 * test_wal.c - the live runner's write-ahead log: records come back in
 * order across segments and reopenings; a torn record at the end (a crash
 * mid-write) ends the log cleanly; damage before the end is an error;
 * dropped segments are gone; a segment made ahead by another thread is the
 * one a rotation switches to.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/store/wal.h"
#include "test.h"

typedef struct seen {
  uint64_t seqs[64];
  char data[64][16];
  size_t count;
} seen;

static int collect(void *ctx, uint64_t seq, const void *data, size_t len) {
  seen *s = ctx;
  if (s->count < 64 && len < 16) {
    s->seqs[s->count] = seq;
    memcpy(s->data[s->count], data, len);
    s->data[s->count][len] = '\0';
  }
  s->count++;
  return TDM_OK;
}

static int append(tdm__wal *wal, uint64_t seq, const char *text) {
  tdm__wal_record r = {seq, text, strlen(text)};
  tdm_error err;
  return tdm__wal_append(wal, &r, 1, &err);
}

TEST(wal_replays_in_order_and_survives_a_torn_tail) {
  char dir[] = "/tmp/tandem-wal-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__wal *wal;
  tdm_error err;
  CHECK(tdm__wal_open(dir, "p", &wal, &err) == TDM_OK);
  CHECK(append(wal, 1, "one") == TDM_OK);
  CHECK(append(wal, 2, "two") == TDM_OK);
  uint64_t segment;
  CHECK(tdm__wal_rotate(wal, &segment, &err) == TDM_OK && segment == 2);
  CHECK(append(wal, 3, "three") == TDM_OK);
  tdm__wal_close(wal);

  /* A crash in the middle of writing record 4: half its bytes. */
  char path[256];
  snprintf(path, sizeof path, "%s/p.2.wal", dir);
  int fd = open(path, O_WRONLY);
  CHECK(fd >= 0);
  unsigned char torn[10] = {9, 0, 0, 0, 4, 0, 0, 0, 0, 0};
  CHECK(pwrite(fd, torn, sizeof torn, 16 + 5) == (ssize_t)sizeof torn);
  close(fd);

  CHECK(tdm__wal_open(dir, "p", &wal, &err) == TDM_OK);
  seen s = {0};
  CHECK(tdm__wal_replay(wal, collect, &s, &err) == TDM_OK);
  CHECK(s.count == 3);
  CHECK(s.seqs[0] == 1 && s.seqs[1] == 2 && s.seqs[2] == 3);
  CHECK_STR(s.data[2], "three");
  /* New records go to a new segment and come after the old ones. */
  CHECK(append(wal, 4, "four") == TDM_OK);
  tdm__wal_close(wal);
  CHECK(tdm__wal_open(dir, "p", &wal, &err) == TDM_OK);
  memset(&s, 0, sizeof s);
  CHECK(tdm__wal_replay(wal, collect, &s, &err) == TDM_OK);
  CHECK(s.count == 4 && s.seqs[3] == 4);

  /* Damage in an older segment is not a torn tail: an error. */
  snprintf(path, sizeof path, "%s/p.1.wal", dir);
  fd = open(path, O_WRONLY);
  CHECK(fd >= 0);
  CHECK(pwrite(fd, "X", 1, 16 + 1) == 1); /* inside record 1's payload */
  close(fd);
  memset(&s, 0, sizeof s);
  CHECK(tdm__wal_replay(wal, collect, &s, &err) == TDM_EPARSE);
  CHECK_CONTAINS(err.message, "p.1.wal");

  /* Dropping segments before the current one. */
  CHECK(tdm__wal_drop_before(wal, 3, &err) == TDM_OK);
  CHECK(access(path, F_OK) != 0);
  memset(&s, 0, sizeof s);
  int replayed = tdm__wal_replay(wal, collect, &s, &err);
  if (replayed != TDM_OK) fprintf(stderr, "%s\n", err.message);
  CHECK(replayed == TDM_OK);
  CHECK(s.count == 1 && s.seqs[0] == 4); /* segment 3 (this open's: 4) */
  tdm__wal_close(wal);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  return 0;
}

/* The segment files of log "p" in dir: how many, and their bytes. */
static void segment_files(const char *dir, int *count, long long *bytes) {
  *count = 0;
  *bytes = 0;
  for (int n = 1; n <= 64; n++) {
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/p.%d.wal", dir, n);
    if (stat(path, &st) != 0) continue;
    (*count)++;
    *bytes += (long long)st.st_size;
  }
}

TEST(wal_restarts_do_not_pile_up_segments) {
  /* Twelve starts (open, replay, close) without a snapshot round, half of
   * them with a record: the earlier segments keep only their records, and
   * an empty one goes, so the files hold one preallocated segment (the
   * open one) and the records, and every record still replays. */
  char dir[] = "/tmp/tandem-wal-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm_error err;
  size_t records = 0;
  for (int start = 0; start < 12; start++) {
    tdm__wal *wal;
    CHECK(tdm__wal_open(dir, "p", &wal, &err) == TDM_OK);
    seen s = {0};
    CHECK(tdm__wal_replay(wal, collect, &s, &err) == TDM_OK);
    CHECK(s.count == records);
    if (start % 2 == 0) {
      CHECK(append(wal, (uint64_t)records + 1, "an event") == TDM_OK);
      records++;
    }
    tdm__wal_close(wal);
  }
  tdm__wal *wal;
  CHECK(tdm__wal_open(dir, "p", &wal, &err) == TDM_OK);
  seen s = {0};
  CHECK(tdm__wal_replay(wal, collect, &s, &err) == TDM_OK);
  CHECK(s.count == 6 && s.seqs[5] == 6);
  int count;
  long long bytes;
  segment_files(dir, &count, &bytes);
  /* Six segments with one record (16 + 8 bytes) and the open one. */
  CHECK(count == 7);
  CHECK(bytes == (64ll << 20) + 6 * 24);
  tdm__wal_close(wal);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  return 0;
}

typedef struct preparer {
  tdm__wal *wal;
  atomic_int stop;
  int failures, made;
} preparer;

static void *prepare_loop(void *arg) {
  preparer *p = arg;
  while (!atomic_load(&p->stop)) {
    tdm_error err;
    if (tdm__wal_prepare(p->wal, &err) != TDM_OK) p->failures++;
    else p->made++;
  }
  return NULL;
}

TEST(wal_rotation_uses_the_prepared_segment) {
  /* 1. After tdm__wal_prepare the next segment exists, preallocated,
   * before the rotation, and the rotation switches to it. 2. A thread
   * preparing without pause while this one appends and rotates 40 times:
   * every rotation gets the next number (made by either thread, never by
   * both: each file is created with O_EXCL), and a reopened log replays
   * every record in order. */
  char dir[] = "/tmp/tandem-wal-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm_error err;
  tdm__wal *wal;
  CHECK(tdm__wal_open(dir, "p", &wal, &err) == TDM_OK);
  CHECK(!tdm__wal_has_spare(wal));
  CHECK(append(wal, 1, "r1") == TDM_OK);
  CHECK(tdm__wal_prepare(wal, &err) == TDM_OK && tdm__wal_has_spare(wal));
  char path[256];
  struct stat st;
  snprintf(path, sizeof path, "%s/p.2.wal", dir);
  CHECK(stat(path, &st) == 0 && st.st_size == (64ll << 20));
  CHECK(tdm__wal_prepare(wal, &err) == TDM_OK); /* already made: no-op */
  snprintf(path, sizeof path, "%s/p.3.wal", dir);
  CHECK(stat(path, &st) != 0);
  uint64_t segment = 0;
  CHECK(tdm__wal_rotate(wal, &segment, &err) == TDM_OK && segment == 2);
  CHECK(!tdm__wal_has_spare(wal));
  CHECK(append(wal, 2, "r2") == TDM_OK);

  preparer p = {.wal = wal};
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, prepare_loop, &p) == 0);
  uint64_t seq = 2;
  int rotations_ok = 1;
  for (int i = 0; i < 40; i++) {
    uint64_t before = segment;
    if (tdm__wal_rotate(wal, &segment, &err) != TDM_OK ||
        segment != before + 1)
      rotations_ok = 0;
    char text[16];
    snprintf(text, sizeof text, "r%llu", (unsigned long long)++seq);
    if (append(wal, seq, text) != TDM_OK) rotations_ok = 0;
  }
  atomic_store(&p.stop, 1);
  pthread_join(thread, NULL);
  CHECK(rotations_ok);
  CHECK(p.failures == 0 && p.made >= 1);
  /* A spare left unused does not outlive the log's close. */
  CHECK(tdm__wal_prepare(wal, &err) == TDM_OK && tdm__wal_has_spare(wal));
  tdm__wal_close(wal);
  snprintf(path, sizeof path, "%s/p.%llu.wal", dir,
           (unsigned long long)segment + 1);
  CHECK(stat(path, &st) != 0);

  CHECK(tdm__wal_open(dir, "p", &wal, &err) == TDM_OK);
  seen s = {0};
  CHECK(tdm__wal_replay(wal, collect, &s, &err) == TDM_OK);
  CHECK(s.count == seq);
  int in_order = s.count == seq;
  for (size_t i = 0; i < s.count && i < 64; i++) {
    char text[16];
    snprintf(text, sizeof text, "r%zu", i + 1);
    if (s.seqs[i] != i + 1 || strcmp(s.data[i], text) != 0) in_order = 0;
  }
  CHECK(in_order);
  tdm__wal_close(wal);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  return 0;
}

TEST(wal_crc32c_known_value) {
  /* The CRC-32C check value of "123456789". */
  CHECK(tdm__crc32c(0, "123456789", 9) == 0xE3069283u);
  CHECK(tdm__crc32c_reference(0, "123456789", 9) == 0xE3069283u);
  return 0;
}

TEST(wal_crc32c_fast_equals_reference) {
  /* Seeded random buffers of every length up to 300, at every alignment
   * of 8, each continued from a random CRC: the fast path (the crc32
   * instruction where the CPU has it) must agree with the table walk. */
  unsigned char data[320];
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < sizeof data; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    data[i] = (unsigned char)x;
  }
  for (size_t len = 0; len <= 300; len++)
    for (size_t at = 0; at < 8; at++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      uint32_t start = (uint32_t)x;
      CHECK(tdm__crc32c(start, data + at, len) ==
            tdm__crc32c_reference(start, data + at, len));
    }
  return 0;
}
