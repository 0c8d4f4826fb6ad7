/*
 * table.c - the versioned tables of table.h in one LMDB environment with two
 * databases. "versions" maps table NUL version(8 bytes, big-endian) to the
 * version's metadata (format below); "rows" maps table NUL version(8 bytes,
 * big-endian) entity to the row's doubles, num_columns * 8 bytes in native
 * byte order. Table names cannot contain NUL, so "table NUL" is a prefix of
 * that table's keys only, and big-endian versions sort keys by version, so
 * a table's versions and a version's rows are each one contiguous range.
 * The newest version is the last key of the table's range: there is no
 * separate "current" pointer to keep in step, and committing a version's
 * metadata in the same transaction as its rows is what flips it.
 *
 * The metadata value is the record of table_backend.h, which the Redis
 * backend stores too; this file also holds the rules both backends share
 * and sends every call on a redis:// store to redis_table.c. Everything
 * read is checked; a record or row of the wrong shape is TDM_EPARSE naming
 * the store, table and version.
 */
#include "table.h"

#include "table_backend.h"

#include "store.h"

#include <errno.h>
#include <lmdb.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define FORMAT 1
#define VERSION_BYTES 8
/* Long enough for any sensible name, short enough to leave the key room
 * for entities (LMDB keys are at most 511 bytes by default). */
#define MAX_TABLE_NAME 200
#define MAX_COLUMNS 65536
#define MAX_COLUMN_NAME 1024
/* Address space only: the file grows as data is written.
 * The store settings' lmdb_map_size replaces it (settings.h). */
#define MAP_SIZE ((size_t)256 << 30)
#define MAX_READERS 1024

struct tdm__tables {
  tdm__redis_tables *redis; /* a Redis store: every call goes there */
  MDB_env *env;
  MDB_dbi versions;
  MDB_dbi rows;
  size_t max_key;
  char *dir;
};

struct tdm__table_writer {
  tdm__redis_writer *redis;
  tdm__tables *tables;
  MDB_txn *txn;
  char *table;
  unsigned char *key; /* table NUL version, then room for an entity */
  size_t prefix_len;
  size_t num_columns;
  size_t rows;
  size_t keep;
  uint64_t version;
  tdm__buf meta; /* the metadata record, rows patched at commit */
  int failed;
};

/* One version's metadata as this reader's snapshot has it. */
typedef struct cached_version {
  tdm__table_version v;
  char *table;
  unsigned char *prefix; /* table NUL version */
  size_t prefix_len;
} cached_version;

struct tdm__table_reader {
  tdm__redis_reader *redis;
  tdm__tables *tables;
  MDB_txn *txn;
  int txn_live; /* 0 after a failed renew: the next call retries */
  unsigned char *key;
  cached_version **cache; /* entries stay put until refresh: pick's
                             pointers must stay valid */
  size_t cache_len, cache_cap;
  size_t last_hit;
};

/* ---- encoding ---- */

static void put_be64(unsigned char *p, uint64_t x) {
  for (int i = 7; i >= 0; i--, x >>= 8) p[i] = (unsigned char)x;
}

static uint64_t get_be64(const unsigned char *p) {
  uint64_t x = 0;
  for (int i = 0; i < 8; i++) x = x << 8 | p[i];
  return x;
}

static int append_le(tdm__buf *b, uint64_t x, int bytes) {
  unsigned char p[8];
  for (int i = 0; i < bytes; i++, x >>= 8) p[i] = (unsigned char)x;
  return tdm__buf_append(b, p, (size_t)bytes);
}

static uint64_t get_le(const unsigned char *p, int bytes) {
  uint64_t x = 0;
  for (int i = bytes - 1; i >= 0; i--) x = x << 8 | p[i];
  return x;
}

/* Offset of the rows field in the metadata record. */
#define META_ROWS_AT (4 + 8 + 8)
#define META_FIXED (META_ROWS_AT + 8 + 4)

/* A reading position in a metadata record; fails instead of overrunning. */
typedef struct cursor_in {
  const unsigned char *p, *end;
} cursor_in;

static int read_le(cursor_in *in, int bytes, uint64_t *x) {
  if (in->end - in->p < bytes) return -1;
  *x = get_le(in->p, bytes);
  in->p += bytes;
  return 0;
}

static int read_string(cursor_in *in, const unsigned char **s, size_t *len) {
  uint64_t n;
  if (read_le(in, 4, &n) != 0 || (uint64_t)(in->end - in->p) < n) return -1;
  *s = in->p;
  *len = (size_t)n;
  in->p += n;
  return 0;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- errors ---- */

static int lmdb_fail(tdm_error *err, const char *dir, const char *table,
                     const char *what, int rc) {
  int status = rc == ENOMEM ? TDM_ENOMEM : TDM_EIO;
  if (table != NULL)
    return tdm__fail(err, status, "%s: table '%s': %s: %s", dir, table, what,
                     mdb_strerror(rc));
  return tdm__fail(err, status, "%s: %s: %s", dir, what, mdb_strerror(rc));
}

int tdm__table_check_name(const char *where, const char *table,
                          tdm_error *err) {
  size_t len = table == NULL ? 0 : strlen(table);
  if (len == 0 || len > MAX_TABLE_NAME)
    return tdm__fail(err, TDM_EINVAL,
                     "%s: a table name must have 1 to %d bytes", where,
                     MAX_TABLE_NAME);
  return TDM_OK;
}

static int check_table_name(const tdm__tables *t, const char *table,
                            tdm_error *err) {
  return tdm__table_check_name(t->dir, table, err);
}

/* Writes table NUL version into key; returns its length. */
static size_t make_prefix(unsigned char *key, const char *table,
                          uint64_t version) {
  size_t len = strlen(table);
  memcpy(key, table, len + 1);
  put_be64(key + len + 1, version);
  return len + 1 + VERSION_BYTES;
}

/* ---- metadata records ---- */

/*
 * Decodes a metadata record into v. The column pointers, their strings and
 * the source share one allocation, v->columns, which is what freeing a
 * version frees.
 */
int tdm__table_meta_decode(const char *where, const char *table,
                           uint64_t version, const void *data, size_t size,
                           tdm__table_version *v, tdm_error *err) {
  memset(v, 0, sizeof *v);
  cursor_in in = {data, (const unsigned char *)data + size};
  uint64_t format, as_of, created, rows, num_columns;
  if (read_le(&in, 4, &format) != 0 || format != FORMAT ||
      read_le(&in, 8, &as_of) != 0 || read_le(&in, 8, &created) != 0 ||
      read_le(&in, 8, &rows) != 0 || read_le(&in, 4, &num_columns) != 0 ||
      num_columns > MAX_COLUMNS)
    goto corrupt;
  /* First pass: check the shape and add up the bytes the strings need. */
  cursor_in scan = in;
  size_t bytes = 0;
  for (uint64_t i = 0; i <= num_columns; i++) {
    const unsigned char *s;
    size_t len;
    if (read_string(&scan, &s, &len) != 0 || memchr(s, 0, len) != NULL ||
        (i < num_columns && len == 0))
      goto corrupt;
    bytes += len + 1;
  }
  if (scan.p != scan.end) goto corrupt;
  size_t pointers = (size_t)num_columns * sizeof(char *);
  char **block = tdm__malloc(pointers + bytes + 1);
  if (block == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  char *text = (char *)block + pointers;
  for (uint64_t i = 0; i <= num_columns; i++) {
    const unsigned char *s = NULL;
    size_t len = 0;
    read_string(&in, &s, &len); /* cannot fail: the first pass checked */
    memcpy(text, s, len);
    text[len] = '\0';
    if (i < num_columns)
      block[i] = text;
    else
      v->source = text;
    text += len + 1;
  }
  v->version = version;
  v->as_of_ms = (int64_t)as_of;
  v->created_ms = (int64_t)created;
  v->rows = (size_t)rows;
  v->num_columns = (size_t)num_columns;
  v->columns = block;
  return TDM_OK;
corrupt:
  return tdm__fail(err, TDM_EPARSE,
                   "%s: table '%s' version %llu: corrupt metadata record (%zu "
                   "bytes)",
                   where, table, (unsigned long long)version, size);
}

static int decode_version(const tdm__tables *t, const char *table,
                          uint64_t version, const MDB_val *value,
                          tdm__table_version *v, tdm_error *err) {
  return tdm__table_meta_decode(t->dir, table, version, value->mv_data,
                                value->mv_size, v, err);
}

void tdm__table_version_clear(tdm__table_version *v) {
  tdm__free(v->columns);
  memset(v, 0, sizeof *v);
}

/* The as_of of a metadata record, or -1 when it is too short to have one. */
static int peek_as_of(const MDB_val *value, int64_t *as_of) {
  if (value->mv_size < META_FIXED) return -1;
  *as_of = (int64_t)get_le((const unsigned char *)value->mv_data + 4, 8);
  return 0;
}

/*
 * Walks the versions of `table` newest first, calling fn with each version
 * number and record until fn returns non-zero (which is returned; 1 means
 * "stop, no error") or the versions run out (TDM_OK).
 */
static int each_version_newest_first(const tdm__tables *t, MDB_txn *txn,
                                     const char *table,
                                     int (*fn)(void *ctx, uint64_t version,
                                               const MDB_val *value),
                                     void *ctx, tdm_error *err) {
  MDB_cursor *cursor;
  int rc = mdb_cursor_open(txn, t->versions, &cursor);
  if (rc != 0) return lmdb_fail(err, t->dir, table, "cannot read", rc);
  unsigned char key[MAX_TABLE_NAME + 1 + VERSION_BYTES];
  size_t prefix = make_prefix(key, table, UINT64_MAX) - VERSION_BYTES;
  MDB_val k = {prefix + VERSION_BYTES, key}, v;
  /* The first key past the table's last version, then one back. */
  rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
  if (rc == 0)
    rc = mdb_cursor_get(cursor, &k, &v, MDB_PREV);
  else if (rc == MDB_NOTFOUND)
    rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST);
  int status = TDM_OK;
  for (; rc == 0; rc = mdb_cursor_get(cursor, &k, &v, MDB_PREV)) {
    if (k.mv_size != prefix + VERSION_BYTES || memcmp(k.mv_data, key, prefix))
      break;
    status = fn(ctx, get_be64((const unsigned char *)k.mv_data + prefix), &v);
    if (status != TDM_OK) break;
  }
  mdb_cursor_close(cursor);
  if (rc != 0 && rc != MDB_NOTFOUND)
    return lmdb_fail(err, t->dir, table, "cannot read", rc);
  return status == 1 ? TDM_OK : status;
}

/* ---- opening ---- */

int tdm__tables_is_url(const char *store) {
  return strncmp(store, "redis://", 8) == 0 ||
         strncmp(store, "rediss://", 9) == 0;
}

/* A Redis store: the handle only carries the backend and its name. */
static int open_redis(const char *url, const tdm__store_settings *settings,
                      tdm__tables **out, tdm_error *err) {
  tdm__tables *t = tdm__calloc(1, sizeof *t);
  if (t == NULL || (t->dir = tdm__strdup(url)) == NULL) {
    tdm__free(t);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  /* LMDB's default key limit, so that a table fits either backend. */
  t->max_key = 511;
  int status = tdm__redis_tables_open(url, settings, &t->redis, err);
  if (status != TDM_OK) {
    tdm__tables_close(t);
    return status;
  }
  *out = t;
  return TDM_OK;
}

int tdm__tables_open(const char *dir, int create,
                     const tdm__store_settings *settings, tdm__tables **out,
                     tdm_error *err) {
  *out = NULL;
  if (tdm__tables_is_url(dir)) return open_redis(dir, settings, out, err);
  size_t map;
  if (tdm__store_settings_map_size(settings, MAP_SIZE, &map, err) != TDM_OK)
    return TDM_EINVAL;
  if (create && mkdir(dir, 0777) != 0 && errno != EEXIST)
    return tdm__fail(err, TDM_EIO, "%s: cannot create the table store: %s", dir,
                     strerror(errno));
  if (!create) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &st) != 0)
      return tdm__fail(err, TDM_ENOTFOUND, "%s: no table store here", dir);
  }
  tdm__tables *t = tdm__calloc(1, sizeof *t);
  if (t == NULL || (t->dir = tdm__strdup(dir)) == NULL) {
    tdm__free(t);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  /* MDB_NOTLS: a read snapshot belongs to a reader object, not to a
   * thread, so one thread may hold several and a reader may move. */
  int rc = mdb_env_create(&t->env);
  if (rc == 0) rc = mdb_env_set_maxdbs(t->env, 2);
  if (rc == 0) rc = mdb_env_set_maxreaders(t->env, MAX_READERS);
  if (rc == 0) rc = mdb_env_set_mapsize(t->env, map);
  if (rc == 0) rc = mdb_env_open(t->env, dir, MDB_NOTLS, 0664);
  if (rc == 0) {
    int dead;
    rc = mdb_reader_check(t->env, &dead);
  }
  MDB_txn *txn = NULL;
  if (rc == 0) rc = mdb_txn_begin(t->env, NULL, create ? 0 : MDB_RDONLY, &txn);
  unsigned flags = create ? MDB_CREATE : 0;
  if (rc == 0) rc = mdb_dbi_open(txn, "versions", flags, &t->versions);
  if (rc == 0) rc = mdb_dbi_open(txn, "rows", flags, &t->rows);
  if (rc == 0) {
    rc = mdb_txn_commit(txn);
    txn = NULL;
  }
  if (txn) mdb_txn_abort(txn);
  if (rc != 0) {
    int status =
        rc == MDB_NOTFOUND
            ? tdm__fail(err, TDM_ENOTFOUND, "%s: not a table store", dir)
            : lmdb_fail(err, dir, NULL, "cannot open the table store", rc);
    tdm__tables_close(t);
    return status;
  }
  t->max_key = (size_t)mdb_env_get_maxkeysize(t->env);
  *out = t;
  return TDM_OK;
}

void tdm__tables_close(tdm__tables *t) {
  if (t == NULL) return;
  tdm__redis_tables_close(t->redis);
  if (t->env) mdb_env_close(t->env);
  tdm__free(t->dir);
  tdm__free(t);
}

void tdm__tables_health_get(tdm__tables *t, tdm__tables_health *out) {
  memset(out, 0, sizeof *out);
  out->connected = 1;
  if (t->redis != NULL) tdm__redis_tables_health(t->redis, out);
}

uint64_t tdm__tables_generation(tdm__tables *t) {
  return t->redis != NULL ? tdm__redis_tables_generation(t->redis) : 0;
}

/* Redis keeps entities as hash fields, which may be far longer; the same
 * limit as LMDB's keeps a table portable between the two. */
size_t tdm__tables_max_entity(tdm__tables *t, const char *table) {
  size_t overhead = strlen(table) + 1 + VERSION_BYTES;
  return t->max_key > overhead ? t->max_key - overhead : 0;
}

/* ---- listing ---- */

typedef struct list_ctx {
  const tdm__tables *t;
  const char *table;
  tdm__table_version *items;
  size_t count, cap;
  tdm_error *err;
} list_ctx;

static int list_one(void *ctx, uint64_t version, const MDB_val *value) {
  list_ctx *c = ctx;
  if (c->count == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    tdm__table_version *items = tdm__realloc(c->items, cap * sizeof *items);
    if (items == NULL) return tdm__fail(c->err, TDM_ENOMEM, "out of memory");
    c->items = items;
    c->cap = cap;
  }
  int status = decode_version(c->t, c->table, version, value,
                              &c->items[c->count], c->err);
  if (status == TDM_OK) c->count++;
  return status;
}

int tdm__tables_versions(tdm__tables *t, const char *table,
                         tdm__table_version **out, size_t *count,
                         tdm_error *err) {
  *out = NULL;
  *count = 0;
  if (t->redis != NULL)
    return tdm__redis_tables_versions(t->redis, table, out, count, err);
  int status = check_table_name(t, table, err);
  if (status != TDM_OK) return status;
  MDB_txn *txn;
  int rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
  if (rc != 0) return lmdb_fail(err, t->dir, table, "cannot read", rc);
  list_ctx c = {t, table, NULL, 0, 0, err};
  status = each_version_newest_first(t, txn, table, list_one, &c, err);
  mdb_txn_abort(txn);
  if (status != TDM_OK) {
    tdm__table_versions_free(c.items, c.count);
    return status;
  }
  *out = c.items;
  *count = c.count;
  return TDM_OK;
}

void tdm__table_versions_free(tdm__table_version *versions, size_t count) {
  if (versions == NULL) return;
  for (size_t i = 0; i < count; i++) tdm__table_version_clear(&versions[i]);
  tdm__free(versions);
}

size_t tdm__table_version_at(const tdm__table_version *versions, size_t count,
                             int64_t at_ms) {
  for (size_t i = 0; i < count; i++)
    if (versions[i].as_of_ms <= at_ms) return i;
  return count;
}

size_t tdm__table_version_column(const tdm__table_version *v,
                                 const char *name) {
  for (size_t i = 0; i < v->num_columns; i++)
    if (strcmp(v->columns[i], name) == 0) return i;
  return SIZE_MAX;
}

/* ---- writing ---- */

int tdm__table_meta_encode(tdm__buf *b, const char *const *columns, size_t n,
                           int64_t as_of_ms, int64_t created_ms,
                           const char *source) {
  int rc = append_le(b, FORMAT, 4);
  if (rc == 0) rc = append_le(b, (uint64_t)as_of_ms, 8);
  if (rc == 0) rc = append_le(b, (uint64_t)created_ms, 8);
  if (rc == 0) rc = append_le(b, 0, 8); /* rows, patched at commit */
  if (rc == 0) rc = append_le(b, n, 4);
  for (size_t i = 0; i <= n && rc == 0; i++) {
    const char *s = i < n ? columns[i] : source ? source : "";
    size_t len = strlen(s);
    rc = append_le(b, len, 4);
    if (rc == 0) rc = tdm__buf_append(b, s, len);
  }
  return rc;
}

void tdm__table_meta_set_rows(tdm__buf *b, uint64_t rows) {
  for (int i = 0; i < 8; i++)
    b->data[META_ROWS_AT + i] = (char)(rows >> (8 * i));
}

int tdm__table_check_columns(const char *where, const char *table,
                             const char *const *columns, size_t n,
                             const char *source, tdm_error *err) {
  if (n > MAX_COLUMNS)
    return tdm__fail(err, TDM_EINVAL, "%s: table '%s': %zu columns, at most %d",
                     where, table, n, MAX_COLUMNS);
  for (size_t i = 0; i < n; i++) {
    size_t len = columns[i] ? strlen(columns[i]) : 0;
    if (len == 0 || len > MAX_COLUMN_NAME)
      return tdm__fail(err, TDM_EINVAL,
                       "%s: table '%s': column %zu needs a name of 1 to %d "
                       "bytes",
                       where, table, i, MAX_COLUMN_NAME);
    /* Quadratic, but column lists are short and this runs once. */
    for (size_t j = 0; j < i; j++)
      if (strcmp(columns[i], columns[j]) == 0)
        return tdm__fail(err, TDM_EINVAL,
                         "%s: table '%s': column '%s' appears twice", where,
                         table, columns[i]);
  }
  if (source != NULL && strlen(source) > UINT32_MAX)
    return tdm__fail(err, TDM_EINVAL, "%s: table '%s': source too long", where,
                     table);
  return TDM_OK;
}

static int newest_one(void *ctx, uint64_t version, const MDB_val *value) {
  *(uint64_t *)ctx = version;
  return 1;
}

int tdm__table_begin(tdm__tables *t, const char *table,
                     const char *const *columns, size_t num_columns,
                     int64_t as_of_ms, const char *source, size_t keep,
                     tdm__table_writer **out, tdm_error *err) {
  *out = NULL;
  /* One set of rules for both backends. */
  int status = check_table_name(t, table, err);
  if (status == TDM_OK)
    status = tdm__table_check_columns(t->dir, table, columns, num_columns,
                                      source, err);
  if (status != TDM_OK) return status;
  if (keep == 0)
    return tdm__fail(err, TDM_EINVAL,
                     "%s: table '%s': keep must be at least 1 version", t->dir,
                     table);
  if (t->redis != NULL) {
    tdm__table_writer *w = tdm__calloc(1, sizeof *w);
    if (w == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
    status = tdm__redis_table_begin(t->redis, table, columns, num_columns,
                                    as_of_ms, source, keep, &w->redis, err);
    if (status != TDM_OK) {
      tdm__free(w);
      return status;
    }
    w->tables = t;
    if ((w->table = tdm__strdup(table)) == NULL) {
      tdm__table_abort(w);
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
    }
    *out = w;
    return TDM_OK;
  }
  tdm__table_writer *w = tdm__calloc(1, sizeof *w);
  if (w == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  w->tables = t;
  w->num_columns = num_columns;
  w->keep = keep;
  if ((w->table = tdm__strdup(table)) == NULL ||
      (w->key = tdm__malloc(t->max_key)) == NULL ||
      tdm__table_meta_encode(&w->meta, columns, num_columns, as_of_ms, now_ms(),
                             source) != 0) {
    tdm__table_abort(w);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  /* A writer that died while writing leaves nothing, but its read slot
   * may linger; clearing it lets commit reuse the pages it pinned. */
  int dead;
  mdb_reader_check(t->env, &dead);
  int rc = mdb_txn_begin(t->env, NULL, 0, &w->txn);
  if (rc != 0) {
    w->txn = NULL;
    tdm__table_abort(w);
    return lmdb_fail(err, t->dir, table, "cannot start writing", rc);
  }
  uint64_t newest = 0;
  status =
      each_version_newest_first(t, w->txn, table, newest_one, &newest, err);
  if (status != TDM_OK) {
    tdm__table_abort(w);
    return status;
  }
  if (newest == UINT64_MAX) {
    tdm__table_abort(w);
    return tdm__fail(err, TDM_EINVAL, "%s: table '%s': out of version numbers",
                     t->dir, table);
  }
  w->version = newest + 1;
  w->prefix_len = make_prefix(w->key, table, w->version);
  *out = w;
  return TDM_OK;
}

int tdm__table_put(tdm__table_writer *w, const void *entity, size_t len,
                   const double *values, tdm_error *err) {
  const tdm__tables *t = w->tables;
  size_t max_entity = tdm__tables_max_entity(w->tables, w->table);
  if (len == 0 || len > max_entity)
    return tdm__fail(err, TDM_EINVAL,
                     "%s: table '%s': an entity must have 1 to %zu bytes, "
                     "not %zu",
                     t->dir, w->table, max_entity, len);
  if (w->redis != NULL)
    return tdm__redis_table_put(w->redis, entity, len, values, err);
  if (w->failed)
    return tdm__fail(err, TDM_EINVAL,
                     "%s: table '%s': writing failed earlier; abort it", t->dir,
                     w->table);
  memcpy(w->key + w->prefix_len, entity, len);
  MDB_val k = {w->prefix_len + len, w->key};
  MDB_val v = {w->num_columns * sizeof(double), (void *)values};
  int rc = mdb_put(w->txn, t->rows, &k, &v, MDB_NOOVERWRITE);
  if (rc == 0) {
    w->rows++;
  } else if (rc == MDB_KEYEXIST) {
    v.mv_size = w->num_columns * sizeof(double);
    v.mv_data = (void *)values;
    rc = mdb_put(w->txn, t->rows, &k, &v, 0);
  }
  if (rc != 0) {
    w->failed = 1;
    return lmdb_fail(err, t->dir, w->table, "cannot write a row", rc);
  }
  return TDM_OK;
}

/* Deletes every key of db that starts with prefix[0..len). */
static int delete_prefix(MDB_txn *txn, MDB_dbi db, const unsigned char *prefix,
                         size_t len) {
  MDB_cursor *cursor;
  int rc = mdb_cursor_open(txn, db, &cursor);
  if (rc != 0) return rc;
  for (;;) {
    /* Seek again after each delete rather than rely on where a deleting
     * cursor is left: clear beats clever, and a seek is cheap. */
    MDB_val k = {len, (void *)prefix}, v;
    rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    if (rc != 0) break;
    if (k.mv_size < len || memcmp(k.mv_data, prefix, len) != 0) break;
    rc = mdb_cursor_del(cursor, 0);
    if (rc != 0) break;
  }
  mdb_cursor_close(cursor);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

typedef struct older_ctx {
  size_t seen, keep;
  uint64_t *drop;
  size_t count, cap;
} older_ctx;

static int collect_older(void *ctx, uint64_t version, const MDB_val *value) {
  older_ctx *c = ctx;
  if (++c->seen <= c->keep) return TDM_OK;
  if (c->count == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 8;
    uint64_t *drop = tdm__realloc(c->drop, cap * sizeof *drop);
    if (drop == NULL) return TDM_ENOMEM;
    c->drop = drop;
    c->cap = cap;
  }
  c->drop[c->count++] = version;
  return TDM_OK;
}

size_t tdm__table_writer_rows(const tdm__table_writer *w) {
  return w->redis != NULL ? tdm__redis_table_rows(w->redis) : w->rows;
}

int tdm__table_commit(tdm__table_writer *w, uint64_t *version, tdm_error *err) {
  const tdm__tables *t = w->tables;
  int status = TDM_OK;
  if (w->redis != NULL) {
    status = tdm__redis_table_commit(w->redis, version, err);
    w->redis = NULL; /* freed by the backend, also on failure */
    goto done;
  }
  if (w->failed) {
    status = tdm__fail(err, TDM_EINVAL,
                       "%s: table '%s': writing failed earlier; nothing "
                       "committed",
                       t->dir, w->table);
    goto done;
  }
  tdm__table_meta_set_rows(&w->meta, w->rows);
  MDB_val k = {w->prefix_len, w->key};
  MDB_val v = {w->meta.len, w->meta.data};
  int rc = mdb_put(w->txn, t->versions, &k, &v, 0);
  if (rc != 0) {
    status = lmdb_fail(err, t->dir, w->table, "cannot write metadata", rc);
    goto done;
  }
  /* The new version is the newest, so it is among the `keep` kept. */
  older_ctx older = {0, w->keep, NULL, 0, 0};
  status = each_version_newest_first(t, w->txn, w->table, collect_older, &older,
                                     err);
  if (status == TDM_ENOMEM) tdm__fail(err, status, "out of memory");
  for (size_t i = 0; i < older.count && status == TDM_OK; i++) {
    size_t len = make_prefix(w->key, w->table, older.drop[i]);
    rc = delete_prefix(w->txn, t->rows, w->key, len);
    if (rc == 0) {
      MDB_val old = {len, w->key};
      rc = mdb_del(w->txn, t->versions, &old, NULL);
    }
    if (rc != 0)
      status =
          lmdb_fail(err, t->dir, w->table, "cannot delete old versions", rc);
  }
  tdm__free(older.drop);
  if (status != TDM_OK) goto done;
  rc = mdb_txn_commit(w->txn);
  w->txn = NULL; /* freed by commit, also when it fails */
  if (rc != 0) {
    status = lmdb_fail(err, t->dir, w->table, "cannot commit", rc);
    goto done;
  }
  if (version) *version = w->version;
done:
  tdm__table_abort(w);
  return status;
}

void tdm__table_abort(tdm__table_writer *w) {
  if (w == NULL) return;
  tdm__redis_table_abort(w->redis);
  if (w->txn) mdb_txn_abort(w->txn);
  tdm__buf_free(&w->meta);
  tdm__free(w->key);
  tdm__free(w->table);
  tdm__free(w);
}

/* ---- reading ---- */

static void free_cache(tdm__table_reader *r) {
  for (size_t i = 0; i < r->cache_len; i++) {
    cached_version *c = r->cache[i];
    tdm__table_version_clear(&c->v);
    tdm__free(c->table);
    tdm__free(c->prefix);
    tdm__free(c);
  }
  r->cache_len = 0;
  r->last_hit = 0;
}

int tdm__table_reader_new(tdm__tables *t, tdm__table_reader **out,
                          tdm_error *err) {
  *out = NULL;
  if (t->redis != NULL) {
    tdm__table_reader *r = tdm__calloc(1, sizeof *r);
    if (r == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
    r->tables = t;
    int status = tdm__redis_reader_new(t->redis, &r->redis, err);
    if (status != TDM_OK) {
      tdm__free(r);
      return status;
    }
    *out = r;
    return TDM_OK;
  }
  tdm__table_reader *r = tdm__calloc(1, sizeof *r);
  if (r == NULL || (r->key = tdm__malloc(t->max_key)) == NULL) {
    tdm__free(r);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  r->tables = t;
  int rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &r->txn);
  if (rc != 0) {
    tdm__free(r->key);
    tdm__free(r);
    return lmdb_fail(err, t->dir, NULL, "cannot start reading", rc);
  }
  r->txn_live = 1;
  *out = r;
  return TDM_OK;
}

void tdm__table_reader_free(tdm__table_reader *r) {
  if (r == NULL) return;
  tdm__redis_reader_free(r->redis);
  free_cache(r);
  tdm__free(r->cache);
  if (r->txn) mdb_txn_abort(r->txn);
  tdm__free(r->key);
  tdm__free(r);
}

int tdm__table_reader_refresh(tdm__table_reader *r, tdm_error *err) {
  if (r->redis != NULL) return tdm__redis_reader_refresh(r->redis, err);
  free_cache(r);
  if (r->txn_live) mdb_txn_reset(r->txn);
  r->txn_live = 0;
  int rc = mdb_txn_renew(r->txn);
  if (rc != 0)
    return lmdb_fail(err, r->tables->dir, NULL, "cannot renew the snapshot",
                     rc);
  r->txn_live = 1;
  return TDM_OK;
}

static int ensure_live(tdm__table_reader *r, tdm_error *err) {
  return r->txn_live ? TDM_OK : tdm__table_reader_refresh(r, err);
}

/* Finds table@version in the cache or loads its metadata from the
 * snapshot; a version the snapshot lacks is TDM_ENOTFOUND. */
static int cached(tdm__table_reader *r, const char *table, uint64_t version,
                  cached_version **out, tdm_error *err) {
  if (r->last_hit < r->cache_len) {
    cached_version *c = r->cache[r->last_hit];
    if (c->v.version == version && strcmp(c->table, table) == 0) {
      *out = c;
      return TDM_OK;
    }
  }
  for (size_t i = 0; i < r->cache_len; i++) {
    cached_version *c = r->cache[i];
    if (c->v.version == version && strcmp(c->table, table) == 0) {
      r->last_hit = i;
      *out = c;
      return TDM_OK;
    }
  }
  const tdm__tables *t = r->tables;
  int status = check_table_name(t, table, err);
  if (status != TDM_OK) return status;
  size_t len = make_prefix(r->key, table, version);
  MDB_val k = {len, r->key}, v;
  int rc = mdb_get(r->txn, t->versions, &k, &v);
  if (rc == MDB_NOTFOUND)
    return tdm__fail(err, TDM_ENOTFOUND, "%s: table '%s' has no version %llu",
                     t->dir, table, (unsigned long long)version);
  if (rc != 0) return lmdb_fail(err, t->dir, table, "cannot read", rc);
  if (r->cache_len == r->cache_cap) {
    size_t cap = r->cache_cap ? r->cache_cap * 2 : 4;
    cached_version **grown = tdm__realloc(r->cache, cap * sizeof *grown);
    if (grown == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
    r->cache = grown;
    r->cache_cap = cap;
  }
  cached_version *c = tdm__calloc(1, sizeof *c);
  if (c == NULL || (c->table = tdm__strdup(table)) == NULL ||
      (c->prefix = tdm__malloc(len)) == NULL) {
    if (c) tdm__free(c->table);
    tdm__free(c);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  memcpy(c->prefix, r->key, len);
  c->prefix_len = len;
  status = decode_version(t, table, version, &v, &c->v, err);
  if (status != TDM_OK) {
    tdm__free(c->table);
    tdm__free(c->prefix);
    tdm__free(c);
    return status;
  }
  r->last_hit = r->cache_len;
  r->cache[r->cache_len++] = c;
  *out = c;
  return TDM_OK;
}

typedef struct pick_ctx {
  int64_t at_ms;
  uint64_t version;
  int found;
} pick_ctx;

static int pick_one(void *ctx, uint64_t version, const MDB_val *value) {
  pick_ctx *p = ctx;
  int64_t as_of;
  /* A record too short for as_of is reported when it is decoded. */
  if (peek_as_of(value, &as_of) != 0 || as_of <= p->at_ms) {
    p->version = version;
    p->found = 1;
    return 1;
  }
  return TDM_OK;
}

int tdm__table_reader_pick(tdm__table_reader *r, const char *table,
                           int64_t at_ms, const tdm__table_version **out,
                           tdm_error *err) {
  *out = NULL;
  if (r->redis != NULL)
    return tdm__redis_reader_pick(r->redis, table, at_ms, out, err);
  const tdm__tables *t = r->tables;
  int status = check_table_name(t, table, err);
  if (status == TDM_OK) status = ensure_live(r, err);
  if (status != TDM_OK) return status;
  pick_ctx p = {at_ms, 0, 0};
  status = each_version_newest_first(t, r->txn, table, pick_one, &p, err);
  if (status != TDM_OK) return status;
  if (!p.found && at_ms == INT64_MAX)
    return tdm__fail(err, TDM_ENOTFOUND, "%s: table '%s' has no versions",
                     t->dir, table);
  if (!p.found)
    return tdm__fail(err, TDM_ENOTFOUND,
                     "%s: table '%s' has no version as of %lld or earlier",
                     t->dir, table, (long long)at_ms);
  cached_version *c;
  status = cached(r, table, p.version, &c, err);
  if (status != TDM_OK) return status;
  *out = &c->v;
  return TDM_OK;
}

int tdm__table_get(tdm__table_reader *r, const char *table, uint64_t version,
                   const void *entity, size_t len, const size_t *column_index,
                   size_t n, double *values, int *found, tdm_error *err) {
  if (r->redis != NULL)
    return tdm__redis_table_get(r->redis, table, version, entity, len,
                                column_index, n, values, found, err);
  *found = 0;
  for (size_t i = 0; i < n; i++) values[i] = NAN;
  const tdm__tables *t = r->tables;
  int status = ensure_live(r, err);
  cached_version *c;
  if (status == TDM_OK) status = cached(r, table, version, &c, err);
  if (status != TDM_OK) return status;
  if (len == 0 || len > t->max_key - c->prefix_len)
    return tdm__fail(err, TDM_EINVAL,
                     "%s: table '%s': an entity must have 1 to %zu bytes, "
                     "not %zu",
                     t->dir, table, t->max_key - c->prefix_len, len);
  for (size_t i = 0; i < n; i++)
    if (column_index[i] != SIZE_MAX && column_index[i] >= c->v.num_columns)
      return tdm__fail(err, TDM_EINVAL,
                       "%s: table '%s' version %llu has %zu columns, not "
                       "column %zu",
                       t->dir, table, (unsigned long long)version,
                       c->v.num_columns, column_index[i]);
  memcpy(r->key, c->prefix, c->prefix_len);
  memcpy(r->key + c->prefix_len, entity, len);
  MDB_val k = {c->prefix_len + len, r->key}, v;
  int rc = mdb_get(r->txn, t->rows, &k, &v);
  if (rc == MDB_NOTFOUND) return TDM_OK;
  if (rc != 0) return lmdb_fail(err, t->dir, table, "cannot read", rc);
  if (v.mv_size != c->v.num_columns * sizeof(double))
    return tdm__fail(err, TDM_EPARSE,
                     "%s: table '%s' version %llu: a row of %zu bytes, "
                     "expected %zu (%zu columns)",
                     t->dir, table, (unsigned long long)version, v.mv_size,
                     c->v.num_columns * sizeof(double), c->v.num_columns);
  /* LMDB aligns values to 2 bytes only, so copy rather than cast. */
  const unsigned char *row = v.mv_data;
  for (size_t i = 0; i < n; i++)
    if (column_index[i] != SIZE_MAX)
      memcpy(&values[i], row + column_index[i] * sizeof(double),
             sizeof(double));
  *found = 1;
  return TDM_OK;
}

/* ---- inspection ---- */

int tdm__tables_count(tdm__tables *t, size_t *versions, size_t *rows,
                      tdm_error *err) {
  if (t->redis != NULL)
    return tdm__redis_tables_count(t->redis, versions, rows, err);
  MDB_txn *txn = NULL;
  int rc = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
  MDB_stat a, b;
  if (rc == 0) rc = mdb_stat(txn, t->versions, &a);
  if (rc == 0) rc = mdb_stat(txn, t->rows, &b);
  if (txn) mdb_txn_abort(txn);
  if (rc != 0) return lmdb_fail(err, t->dir, NULL, "cannot read", rc);
  *versions = a.ms_entries;
  *rows = b.ms_entries;
  return TDM_OK;
}
