/*
 * bench_table.c - the hybrid path's table store (src/store/table.c):
 * writes one version of ROWS entities (8-byte ids, 8 double columns) in
 * scrambled order, then times LOOKUPS random tdm__table_get calls of 4
 * columns through one reader (a warm snapshot, as the live server holds
 * it), plus lookups of absent entities, and prints rows/s for the write,
 * the memory it took, and ns per lookup.
 *
 * build: cc -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -Iinclude
 *          -o build/bench-table bench/bench_table.c build/libtandem.a
 *          -llmdb -lcrypto -lm -lpthread
 * usage: bench-table [ROWS [LOOKUPS]]   (default 200000 100000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../src/store/table.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static long max_rss_kib(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

/* Resident anonymous memory (the heap: LMDB's dirty pages, not the
 * file pages its map shows), in KiB, from /proc (0 where there is none). */
static long rss_anon_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "RssAnon: %ld", &kib) == 1) break;
  if (f) fclose(f);
  return kib;
}

static int fail(const char *what, const tdm_error *err) {
  fprintf(stderr, "bench-table: %s: %s\n", what, err->message);
  return 1;
}

int main(int argc, char **argv) {
  uint64_t rows = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
  size_t lookups = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
  char dir[] = "/tmp/tandem-bench-table-XXXXXX";
  if (mkdtemp(dir) == NULL) return 1;
  tdm__tables *t;
  tdm_error err;
  if (tdm__tables_open(dir, 1, NULL, &t, &err) != TDM_OK) return fail("open", &err);
  const char *cols[] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"};

  long rss_before = max_rss_kib(), anon_before = rss_anon_kib();
  double start = now();
  tdm__table_writer *w;
  if (tdm__table_begin(t, "cards", cols, 8, 1, NULL, 2, &w, &err) != TDM_OK)
    return fail("begin", &err);
  for (uint64_t i = 0; i < rows; i++) {
    uint64_t id = (i * 7919) % rows;
    double row[8];
    for (int j = 0; j < 8; j++) row[j] = (double)id + j;
    if (tdm__table_put(w, &id, sizeof id, row, &err) != TDM_OK)
      return fail("put", &err);
  }
  long anon_before_commit = rss_anon_kib() - anon_before;
  uint64_t version;
  if (tdm__table_commit(w, &version, &err) != TDM_OK)
    return fail("commit", &err);
  double write_s = now() - start;
  long rss_grown = max_rss_kib() - rss_before;

  tdm__table_reader *r;
  if (tdm__table_reader_new(t, &r, &err) != TDM_OK) return fail("reader", &err);
  uint64_t *ids = malloc(lookups * sizeof *ids);
  for (size_t i = 0; i < lookups; i++) ids[i] = rnd() % rows;
  size_t index[4] = {0, 3, 5, 7};
  double values[4], sum = 0;
  int found;
  /* One untimed pass warms the page cache and the reader's metadata. */
  for (int pass = 0; pass < 2; pass++) {
    start = now();
    for (size_t i = 0; i < lookups; i++) {
      if (tdm__table_get(r, "cards", version, &ids[i], sizeof ids[i], index, 4,
                         values, &found, &err) != TDM_OK ||
          !found)
        return fail("get", &err);
      sum += values[1];
    }
  }
  double hit_ns = (now() - start) * 1e9 / (double)lookups;
  start = now();
  for (size_t i = 0; i < lookups; i++) {
    uint64_t id = rows + ids[i];
    if (tdm__table_get(r, "cards", version, &id, sizeof id, index, 4, values,
                       &found, &err) != TDM_OK ||
        found)
      return fail("get absent", &err);
  }
  double miss_ns = (now() - start) * 1e9 / (double)lookups;
  printf(
      "rows %llu: write %.0f rows/s (max RSS +%ld KiB, heap before "
      "commit +%ld KiB); get (4 of 8 columns) %.0f ns hit, %.0f ns miss "
      "(checksum %.0f)\n",
      (unsigned long long)rows, (double)rows / write_s, rss_grown,
      anon_before_commit, hit_ns, miss_ns, sum);
  free(ids);
  tdm__table_reader_free(r);
  tdm__tables_close(t);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : 1;
}
