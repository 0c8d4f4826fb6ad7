/*
 * test_table.c - versioned per-entity tables (src/store/table.c): rows and
 * metadata round trip; versions newest first and the point-in-time choice;
 * keeping K versions deletes older ones with their rows; abort leaves
 * nothing; a reader keeps its snapshot until refresh while versions are
 * committed, also by another process; 200k rows in one version; corrupt
 * bytes are reported, not read; allocation failures are clean.
 */
#include <lmdb.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/store/table.h"
#include "test.h"

static void remove_dir(const char *dir) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

/* Writes one version of `table` with entities "e0".."e<rows-1>" whose
 * column j holds base + i * 10 + j. */
static int write_version(tdm__tables *t, const char *table,
                         const char *const *columns, size_t n, int64_t as_of,
                         size_t rows, double base, size_t keep,
                         uint64_t *version) {
  tdm__table_writer *w;
  tdm_error err;
  int status =
      tdm__table_begin(t, table, columns, n, as_of, "sha", keep, &w, &err);
  if (status != TDM_OK) return status;
  for (size_t i = 0; i < rows && status == TDM_OK; i++) {
    char entity[32];
    double values[16];
    int len = snprintf(entity, sizeof entity, "e%zu", i);
    for (size_t j = 0; j < n; j++)
      values[j] = base + (double)i * 10 + (double)j;
    status = tdm__table_put(w, entity, (size_t)len, values, &err);
  }
  if (status != TDM_OK) {
    tdm__table_abort(w);
    return status;
  }
  return tdm__table_commit(w, version, &err);
}

/* Looks up the named columns of entity in table@version. */
static int get_named(tdm__table_reader *r, const char *table,
                     const tdm__table_version *v, const char *entity,
                     const char *const *names, size_t n, double *values,
                     int *found) {
  size_t index[16];
  for (size_t i = 0; i < n; i++)
    index[i] = tdm__table_version_column(v, names[i]);
  tdm_error err;
  return tdm__table_get(r, table, v->version, entity, strlen(entity), index, n,
                        values, found, &err);
}

TEST(table_round_trip_versions_and_point_in_time) {
  char dir[] = "/tmp/tandem-table-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__tables *t;
  tdm_error err;
  CHECK(tdm__tables_open("/tmp/tandem-no-such-store", 0, NULL, &t, &err) ==
        TDM_ENOTFOUND);
  CHECK(tdm__tables_open(dir, 1, NULL, &t, &err) == TDM_OK);

  /* Version 1: columns a, b as of 1000. Version 2: b, c as of 3000.
   * Version 3 (a backfill): a as of 2000. */
  const char *cols1[] = {"a", "b"}, *cols2[] = {"b", "c"}, *cols3[] = {"a"};
  uint64_t version;
  CHECK(write_version(t, "cards", cols1, 2, 1000, 5, 0, 10, &version) ==
        TDM_OK);
  CHECK_INT(version, 1);
  CHECK(write_version(t, "cards", cols2, 2, 3000, 3, 100, 10, &version) ==
        TDM_OK);
  CHECK_INT(version, 2);
  CHECK(write_version(t, "cards", cols3, 1, 2000, 2, 200, 10, &version) ==
        TDM_OK);
  CHECK_INT(version, 3);
  /* Another table numbers its versions on its own. */
  CHECK(write_version(t, "users", cols1, 2, 1000, 1, 0, 10, &version) ==
        TDM_OK);
  CHECK_INT(version, 1);

  tdm__table_version *vs;
  size_t count;
  CHECK(tdm__tables_versions(t, "cards", &vs, &count, &err) == TDM_OK);
  CHECK_INT(count, 3);
  CHECK_INT(vs[0].version, 3);
  CHECK_INT(vs[1].version, 2);
  CHECK_INT(vs[2].version, 1);
  CHECK_INT(vs[0].as_of_ms, 2000);
  CHECK_INT(vs[1].as_of_ms, 3000);
  CHECK_INT(vs[1].rows, 3);
  CHECK_INT(vs[1].num_columns, 2);
  CHECK_STR(vs[1].columns[0], "b");
  CHECK_STR(vs[1].columns[1], "c");
  CHECK_STR(vs[1].source, "sha");
  CHECK(vs[2].created_ms > 1600000000000LL);
  /* Point in time: the newest version whose as_of is not after T. */
  CHECK_INT(tdm__table_version_at(vs, count, INT64_MAX), 0);
  CHECK_INT(tdm__table_version_at(vs, count, 3000), 0);
  CHECK_INT(tdm__table_version_at(vs, count, 1999), 2);
  CHECK_INT(tdm__table_version_at(vs, count, 999), 3);
  tdm__table_versions_free(vs, count);
  CHECK(tdm__tables_versions(t, "nothing", &vs, &count, &err) == TDM_OK);
  CHECK_INT(count, 0);
  tdm__table_versions_free(vs, count);

  tdm__table_reader *r;
  CHECK(tdm__table_reader_new(t, &r, &err) == TDM_OK);
  const tdm__table_version *v;
  CHECK(tdm__table_reader_pick(r, "cards", 1500, &v, &err) == TDM_OK);
  CHECK_INT(v->version, 1);
  CHECK(tdm__table_reader_pick(r, "cards", 999, &v, &err) == TDM_ENOTFOUND);
  CHECK_CONTAINS(err.message, "cards");
  CHECK(tdm__table_reader_pick(r, "cards", INT64_MAX, &v, &err) == TDM_OK);
  CHECK_INT(v->version, 3);

  /* At 3000 both 2 and 3 qualify; the later computation wins. */
  CHECK(tdm__table_reader_pick(r, "cards", 3000, &v, &err) == TDM_OK);
  CHECK_INT(v->version, 3);
  /* Columns by name; version 2 lacks a, version 1 lacks c: NaN. */
  const tdm__table_version *v1;
  CHECK(tdm__table_reader_pick(r, "cards", 1000, &v1, &err) == TDM_OK);
  tdm__tables_versions(t, "cards", &vs, &count, &err);
  const char *names[] = {"c", "a", "b"};
  double values[3];
  int found;
  CHECK(get_named(r, "cards", &vs[1], "e2", names, 3, values, &found) ==
        TDM_OK);
  CHECK(found);
  CHECK(values[0] == 121 && isnan(values[1]) && values[2] == 120);
  CHECK(get_named(r, "cards", v1, "e4", names, 3, values, &found) == TDM_OK);
  CHECK(found);
  CHECK(isnan(values[0]) && values[1] == 40 && values[2] == 41);
  /* Missing entity: found 0, values NaN. */
  CHECK(get_named(r, "cards", v1, "e5", names, 3, values, &found) == TDM_OK);
  CHECK(!found && isnan(values[1]));
  CHECK(get_named(r, "cards", &vs[1], "e3", names, 3, values, &found) ==
        TDM_OK);
  CHECK(!found);
  tdm__table_versions_free(vs, count);
  /* A version that does not exist; a column index out of range. */
  size_t index = 0;
  CHECK(tdm__table_get(r, "cards", 9, "e1", 2, &index, 1, values, &found,
                       &err) == TDM_ENOTFOUND);
  CHECK_CONTAINS(err.message, "table 'cards' has no version 9");
  CHECK_CONTAINS(err.message, dir);
  index = 2;
  CHECK(tdm__table_get(r, "cards", 1, "e1", 2, &index, 1, values, &found,
                       &err) == TDM_EINVAL);
  tdm__table_reader_free(r);

  /* Bad arguments. */
  tdm__table_writer *w;
  const char *dup[] = {"x", "x"}, *empty[] = {""};
  CHECK(tdm__table_begin(t, "cards", dup, 2, 0, NULL, 1, &w, &err) ==
        TDM_EINVAL);
  CHECK_CONTAINS(err.message, "'x' appears twice");
  CHECK(tdm__table_begin(t, "cards", empty, 1, 0, NULL, 1, &w, &err) ==
        TDM_EINVAL);
  CHECK(tdm__table_begin(t, "", cols1, 2, 0, NULL, 1, &w, &err) == TDM_EINVAL);
  CHECK(tdm__table_begin(t, "cards", cols1, 2, 0, NULL, 0, &w, &err) ==
        TDM_EINVAL);

  /* A rewritten entity keeps its last values and counts once. */
  CHECK(tdm__table_begin(t, "dups", cols3, 1, 5, NULL, 1, &w, &err) == TDM_OK);
  double one = 1, two = 2;
  CHECK(tdm__table_put(w, "k", 1, &one, &err) == TDM_OK);
  CHECK(tdm__table_put(w, "k", 1, &two, &err) == TDM_OK);
  CHECK(tdm__table_commit(w, &version, &err) == TDM_OK);
  tdm__tables_close(t);

  /* Everything is still there after reopening, without create. */
  CHECK(tdm__tables_open(dir, 0, NULL, &t, &err) == TDM_OK);
  CHECK(tdm__tables_versions(t, "dups", &vs, &count, &err) == TDM_OK);
  CHECK_INT(count, 1);
  CHECK_INT(vs[0].rows, 1);
  CHECK_STR(vs[0].source, "");
  CHECK(tdm__table_reader_new(t, &r, &err) == TDM_OK);
  index = 0;
  CHECK(tdm__table_get(r, "dups", 1, "k", 1, &index, 1, values, &found, &err) ==
        TDM_OK);
  CHECK(found && values[0] == 2);
  tdm__table_versions_free(vs, count);
  tdm__table_reader_free(r);
  tdm__tables_close(t);
  remove_dir(dir);
  return 0;
}

TEST(table_keep_deletes_older_versions_and_rows) {
  char dir[] = "/tmp/tandem-table-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__tables *t;
  tdm_error err;
  CHECK(tdm__tables_open(dir, 1, NULL, &t, &err) == TDM_OK);
  const char *cols[] = {"a", "b", "c"};
  uint64_t version;
  /* "other" keeps every version; "cards" keeps 2. */
  for (int i = 0; i < 3; i++)
    CHECK(write_version(t, "other", cols, 3, i, 7, 0, SIZE_MAX, &version) ==
          TDM_OK);
  for (int i = 1; i <= 4; i++) {
    CHECK(write_version(t, "cards", cols, 3, i * 100, (size_t)i * 10, i, 2,
                        &version) == TDM_OK);
    CHECK_INT(version, i);
  }
  tdm__table_version *vs;
  size_t count, versions, rows;
  CHECK(tdm__tables_versions(t, "cards", &vs, &count, &err) == TDM_OK);
  CHECK_INT(count, 2);
  CHECK_INT(vs[0].version, 4);
  CHECK_INT(vs[1].version, 3);
  tdm__table_versions_free(vs, count);
  CHECK(tdm__tables_count(t, &versions, &rows, &err) == TDM_OK);
  CHECK_INT(versions, 2 + 3);
  CHECK_INT(rows, 40 + 30 + 3 * 7);

  /* Lowering keep drops more; the numbering goes on. */
  CHECK(write_version(t, "cards", cols, 3, 500, 5, 0, 1, &version) == TDM_OK);
  CHECK_INT(version, 5);
  CHECK(tdm__tables_count(t, &versions, &rows, &err) == TDM_OK);
  CHECK_INT(versions, 1 + 3);
  CHECK_INT(rows, 5 + 3 * 7);
  tdm__tables_close(t);
  remove_dir(dir);
  return 0;
}

TEST(table_abort_leaves_nothing) {
  char dir[] = "/tmp/tandem-table-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__tables *t;
  tdm_error err;
  CHECK(tdm__tables_open(dir, 1, NULL, &t, &err) == TDM_OK);
  const char *cols[] = {"a"};
  uint64_t version;
  CHECK(write_version(t, "cards", cols, 1, 1, 3, 0, 5, &version) == TDM_OK);

  tdm__table_writer *w;
  CHECK(tdm__table_begin(t, "cards", cols, 1, 2, NULL, 1, &w, &err) == TDM_OK);
  for (int i = 0; i < 1000; i++) {
    double x = i;
    CHECK(tdm__table_put(w, &i, sizeof i, &x, &err) == TDM_OK);
  }
  tdm__table_abort(w);
  size_t versions, rows;
  CHECK(tdm__tables_count(t, &versions, &rows, &err) == TDM_OK);
  CHECK_INT(versions, 1);
  CHECK_INT(rows, 3);

  /* A rejected argument changes nothing: the writer goes on. */
  CHECK(tdm__table_begin(t, "cards", cols, 1, 2, NULL, 1, &w, &err) == TDM_OK);
  char big[600] = {0};
  double x = 1;
  CHECK(tdm__table_put(w, "ok", 2, &x, &err) == TDM_OK);
  CHECK(tdm__table_put(w, big, sizeof big, &x, &err) == TDM_EINVAL);
  CHECK_CONTAINS(err.message, "'cards'");
  CHECK(tdm__table_put(w, "", 0, &x, &err) == TDM_EINVAL);
  CHECK(tdm__table_commit(w, &version, &err) == TDM_OK);
  CHECK_INT(version, 2);

  /* The next version after an abort takes the next number. */
  CHECK(tdm__table_begin(t, "cards", cols, 1, 3, NULL, 5, &w, &err) == TDM_OK);
  tdm__table_abort(w);
  CHECK(write_version(t, "cards", cols, 1, 3, 1, 0, 5, &version) == TDM_OK);
  CHECK_INT(version, 3);
  tdm__tables_close(t);
  remove_dir(dir);
  return 0;
}

TEST(table_reader_keeps_its_snapshot_until_refresh) {
  char dir[] = "/tmp/tandem-table-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__tables *t;
  tdm_error err;
  CHECK(tdm__tables_open(dir, 1, NULL, &t, &err) == TDM_OK);
  const char *cols[] = {"a", "b"};
  uint64_t version;
  CHECK(write_version(t, "cards", cols, 2, 1, 100, 0, 1, &version) == TDM_OK);

  tdm__table_reader *r;
  const tdm__table_version *v;
  CHECK(tdm__table_reader_new(t, &r, &err) == TDM_OK);
  CHECK(tdm__table_reader_pick(r, "cards", INT64_MAX, &v, &err) == TDM_OK);
  CHECK_INT(v->version, 1);
  size_t index[2] = {0, 1};
  double values[2];
  int found;

  /* A writer in this very thread while the reader holds its snapshot: it
   * is not blocked, and the reader sees nothing of it, before or after
   * commit, although the commit (keep 1) deletes version 1. */
  tdm__table_writer *w;
  CHECK(tdm__table_begin(t, "cards", cols, 2, 2, NULL, 1, &w, &err) == TDM_OK);
  for (int i = 0; i < 100; i++) {
    char entity[16];
    int len = snprintf(entity, sizeof entity, "e%d", i);
    double row[2] = {-1, -2};
    CHECK(tdm__table_put(w, entity, (size_t)len, row, &err) == TDM_OK);
  }
  CHECK(tdm__table_get(r, "cards", 1, "e7", 2, index, 2, values, &found,
                       &err) == TDM_OK);
  CHECK(found && values[0] == 70 && values[1] == 71);
  CHECK(tdm__table_commit(w, &version, &err) == TDM_OK);
  CHECK_INT(version, 2);
  CHECK(tdm__table_get(r, "cards", 1, "e7", 2, index, 2, values, &found,
                       &err) == TDM_OK);
  CHECK(found && values[0] == 70 && values[1] == 71);
  CHECK(tdm__table_reader_pick(r, "cards", INT64_MAX, &v, &err) == TDM_OK);
  CHECK_INT(v->version, 1);
  CHECK(tdm__table_get(r, "cards", 2, "e7", 2, index, 2, values, &found,
                       &err) == TDM_ENOTFOUND);
  /* Another reader made now sees version 2 only. */
  tdm__table_reader *fresh;
  CHECK(tdm__table_reader_new(t, &fresh, &err) == TDM_OK);
  CHECK(tdm__table_reader_pick(fresh, "cards", INT64_MAX, &v, &err) == TDM_OK);
  CHECK_INT(v->version, 2);
  tdm__table_reader_free(fresh);

  CHECK(tdm__table_reader_refresh(r, &err) == TDM_OK);
  CHECK(tdm__table_reader_pick(r, "cards", INT64_MAX, &v, &err) == TDM_OK);
  CHECK_INT(v->version, 2);
  CHECK(tdm__table_get(r, "cards", 2, "e7", 2, index, 2, values, &found,
                       &err) == TDM_OK);
  CHECK(found && values[0] == -1 && values[1] == -2);
  CHECK(tdm__table_get(r, "cards", 1, "e7", 2, index, 2, values, &found,
                       &err) == TDM_ENOTFOUND);
  tdm__table_reader_free(r);
  tdm__tables_close(t);
  remove_dir(dir);
  return 0;
}

TEST(table_another_process_writes_while_this_one_reads) {
  char dir[] = "/tmp/tandem-table-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__tables *t;
  tdm_error err;
  CHECK(tdm__tables_open(dir, 1, NULL, &t, &err) == TDM_OK);
  const char *cols[] = {"a", "b"};
  uint64_t version;
  CHECK(write_version(t, "cards", cols, 2, 1, 1000, 0, 2, &version) == TDM_OK);
  tdm__table_reader *r;
  CHECK(tdm__table_reader_new(t, &r, &err) == TDM_OK);

  int written[2], go[2];
  CHECK(pipe(written) == 0 && pipe(go) == 0);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    /* The child opens the store itself: LMDB handles do not survive fork. */
    tdm__tables *mine;
    tdm__table_writer *w;
    char byte = 1;
    int ok = tdm__tables_open(dir, 0, NULL, &mine, &err) == TDM_OK &&
             tdm__table_begin(mine, "cards", cols, 2, 2, NULL, 2, &w, &err) ==
                 TDM_OK;
    for (int i = 0; ok && i < 50000; i++) {
      char entity[16];
      int len = snprintf(entity, sizeof entity, "e%d", i);
      double row[2] = {i, -i};
      ok = tdm__table_put(w, entity, (size_t)len, row, &err) == TDM_OK;
    }
    /* Rows are written, not committed: let the parent look. */
    ok = ok && write(written[1], &byte, 1) == 1 && read(go[0], &byte, 1) == 1;
    ok = ok && tdm__table_commit(w, &version, &err) == TDM_OK && version == 2;
    if (!ok) fprintf(stderr, "child: %s\n", err.message);
    _exit(ok ? 0 : 1);
  }
  char byte;
  CHECK(read(written[0], &byte, 1) == 1);
  /* The child holds the write transaction; reading goes on unblocked and
   * sees only version 1, even from a fresh snapshot. */
  const tdm__table_version *v;
  size_t index[2] = {0, 1};
  double values[2];
  int found;
  CHECK(tdm__table_reader_refresh(r, &err) == TDM_OK);
  CHECK(tdm__table_reader_pick(r, "cards", INT64_MAX, &v, &err) == TDM_OK);
  CHECK_INT(v->version, 1);
  CHECK(tdm__table_get(r, "cards", 1, "e999", 4, index, 2, values, &found,
                       &err) == TDM_OK);
  CHECK(found && values[0] == 9990);
  CHECK(write(go[1], &byte, 1) == 1);
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  /* Still the old snapshot until refresh; then all of version 2. */
  CHECK(tdm__table_reader_pick(r, "cards", INT64_MAX, &v, &err) == TDM_OK);
  CHECK_INT(v->version, 1);
  CHECK(tdm__table_reader_refresh(r, &err) == TDM_OK);
  CHECK(tdm__table_reader_pick(r, "cards", INT64_MAX, &v, &err) == TDM_OK);
  CHECK_INT(v->version, 2);
  CHECK_INT(v->rows, 50000);
  CHECK(tdm__table_get(r, "cards", 2, "e49999", 6, index, 2, values, &found,
                       &err) == TDM_OK);
  CHECK(found && values[0] == 49999 && values[1] == -49999);
  tdm__table_reader_free(r);
  tdm__tables_close(t);
  remove_dir(dir);
  return 0;
}

static long max_rss_kib(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

TEST(table_200k_rows_in_one_version) {
  char dir[] = "/tmp/tandem-table-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__tables *t;
  tdm_error err;
  CHECK(tdm__tables_open(dir, 1, NULL, &t, &err) == TDM_OK);
  const char *cols[] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"};
  long before = max_rss_kib();
  tdm__table_writer *w;
  CHECK(tdm__table_begin(t, "cards", cols, 8, 1, NULL, 1, &w, &err) == TDM_OK);
  /* Entities in a scrambled order, as a batch run would meet them. */
  const uint64_t n = 200000;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t id = (i * 7919) % n;
    double row[8];
    for (int j = 0; j < 8; j++) row[j] = (double)id + j / 10.0;
    CHECK(tdm__table_put(w, &id, sizeof id, row, &err) == TDM_OK);
  }
  uint64_t version;
  CHECK(tdm__table_commit(w, &version, &err) == TDM_OK);
  long grown = max_rss_kib() - before;
  /* About 20 MB of rows; LMDB holds the dirty pages until commit. */
  if (grown > 256 * 1024) fprintf(stderr, "RSS grew by %ld KiB\n", grown);
  CHECK(grown < 256 * 1024);

  size_t versions, rows;
  CHECK(tdm__tables_count(t, &versions, &rows, &err) == TDM_OK);
  CHECK_INT(rows, n);
  tdm__table_reader *r;
  CHECK(tdm__table_reader_new(t, &r, &err) == TDM_OK);
  size_t index[2] = {7, 0};
  for (uint64_t id = 0; id < n; id += 997) {
    double values[2];
    int found;
    CHECK(tdm__table_get(r, "cards", version, &id, sizeof id, index, 2, values,
                         &found, &err) == TDM_OK);
    CHECK(found && values[0] == (double)id + 0.7 && values[1] == (double)id);
  }
  tdm__table_reader_free(r);
  tdm__tables_close(t);
  remove_dir(dir);
  return 0;
}

/* Replaces the value of key in database `db` of the store with bytes. */
static int overwrite_raw(const char *dir, const char *db, const void *key,
                         size_t key_len, const void *bytes, size_t len) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_maxdbs(env, 2);
  if (rc == 0) rc = mdb_env_set_mapsize(env, (size_t)256 << 30);
  if (rc == 0) rc = mdb_env_open(env, dir, 0, 0664);
  if (rc == 0) rc = mdb_txn_begin(env, NULL, 0, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, db, 0, &dbi);
  MDB_val k = {key_len, (void *)key}, v = {len, (void *)bytes};
  if (rc == 0) rc = mdb_put(txn, dbi, &k, &v, 0);
  if (rc == 0) rc = mdb_txn_commit(txn);
  mdb_env_close(env);
  return rc;
}

TEST(table_corrupt_bytes_are_parse_errors) {
  char dir[] = "/tmp/tandem-table-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  tdm__tables *t;
  tdm_error err;
  CHECK(tdm__tables_open(dir, 1, NULL, &t, &err) == TDM_OK);
  const char *cols[] = {"a", "b"};
  uint64_t version;
  CHECK(write_version(t, "cards", cols, 2, 1, 3, 0, 1, &version) == TDM_OK);
  CHECK(write_version(t, "users", cols, 2, 1, 3, 0, 1, &version) == TDM_OK);
  /* LMDB forbids opening one environment twice in a process. */
  tdm__tables_close(t);

  /* Keys: table NUL version (8 bytes big-endian) [entity]. */
  unsigned char key[32] = "cards";
  key[13] = 1;
  memcpy(key + 14, "e1", 2);
  CHECK(overwrite_raw(dir, "rows", key, 16, "12345", 5) == 0);
  unsigned char meta_key[32] = "users";
  meta_key[13] = 1;
  CHECK(overwrite_raw(dir, "versions", meta_key, 14, "\1\0\0\0\0", 5) == 0);

  CHECK(tdm__tables_open(dir, 0, NULL, &t, &err) == TDM_OK);
  tdm__table_reader *r;
  CHECK(tdm__table_reader_new(t, &r, &err) == TDM_OK);
  size_t index[1] = {0};
  double values[1];
  int found;
  CHECK(tdm__table_get(r, "cards", 1, "e1", 2, index, 1, values, &found,
                       &err) == TDM_EPARSE);
  CHECK_CONTAINS(err.message, "table 'cards' version 1: a row of 5 bytes");
  CHECK_CONTAINS(err.message, dir);
  CHECK(!found && isnan(values[0]));
  CHECK(tdm__table_get(r, "cards", 1, "e2", 2, index, 1, values, &found,
                       &err) == TDM_OK);
  CHECK(found && values[0] == 20);

  const tdm__table_version *v;
  CHECK(tdm__table_reader_pick(r, "users", INT64_MAX, &v, &err) == TDM_EPARSE);
  CHECK_CONTAINS(err.message, "table 'users' version 1: corrupt metadata");
  tdm__table_version *vs;
  size_t count;
  CHECK(tdm__tables_versions(t, "users", &vs, &count, &err) == TDM_EPARSE);
  CHECK(vs == NULL && count == 0);
  tdm__table_reader_free(r);
  tdm__tables_close(t);
  remove_dir(dir);
  return 0;
}

/* Every allocation in turn fails: each call fails with TDM_ENOMEM or
 * succeeds, and nothing leaks (the sanitizer build checks). */
TEST(table_out_of_memory) {
  char dir[] = "/tmp/tandem-table-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  const char *cols[] = {"a", "b"};
  int succeeded = 0;
  for (long countdown = 0; countdown < 200 && !succeeded; countdown++) {
    tdm__tables *t;
    tdm_error err;
    tdm__alloc_fail_after(countdown);
    int status = tdm__tables_open(dir, 1, NULL, &t, &err);
    if (status != TDM_OK) {
      tdm__alloc_fail_after(-1);
      CHECK_INT(status, TDM_ENOMEM);
      continue;
    }
    uint64_t version;
    status = write_version(t, "cards", cols, 2, 1, 3, 0, 1, &version);
    tdm__table_version *vs = NULL;
    size_t count = 0;
    tdm__table_reader *r = NULL;
    const tdm__table_version *v;
    if (status == TDM_OK)
      status = tdm__tables_versions(t, "cards", &vs, &count, &err);
    if (status == TDM_OK) status = tdm__table_reader_new(t, &r, &err);
    if (status == TDM_OK)
      status = tdm__table_reader_pick(r, "cards", INT64_MAX, &v, &err);
    tdm__alloc_fail_after(-1);
    tdm__table_reader_free(r);
    tdm__table_versions_free(vs, count);
    tdm__tables_close(t);
    if (status != TDM_ENOMEM) CHECK_INT(status, TDM_OK);
    succeeded = status == TDM_OK;
  }
  CHECK(succeeded);
  remove_dir(dir);
  return 0;
}
