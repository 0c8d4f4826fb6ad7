/*
 * store.c - the LMDB store of store.h. The map is sized large and sparse
 * (LMDB only uses what it writes). Every write transaction is synced at
 * commit (LMDB's default), which is what makes an acknowledgement durable.
 * TANDEM_LMDB_MAP_SIZE sets the map smaller, for tools that cannot
 * reserve 64 GiB of address space (valgrind cannot); tdm__lmdb_map_size
 * reads it for this store and for the table store (table.c).
 */
#include "store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DBS 8

struct tdm__store {
  MDB_env *env;
  MDB_dbi dbi[MAX_DBS];
  size_t num_dbs;
  char *dir;
};

/* The default map of a state directory (address space, not disk). */
#define MAP_SIZE ((size_t)64 << 30)

int tdm__lmdb_map_size_parse(const char *text, size_t *out, tdm_error *err) {
  char *end;
  errno = 0;
  unsigned long long n = strtoull(text, &end, 10);
  unsigned shift = 0;
  if (*end == 'k' || *end == 'K') shift = 10, end++;
  else if (*end == 'M' || *end == 'm') shift = 20, end++;
  else if (*end == 'G' || *end == 'g') shift = 30, end++;
  if (*text == '-' || end == text || *end != '\0' || errno == ERANGE ||
      n > (1ull << 44) >> shift || (n << shift) < (1u << 20))
    return tdm__fail(err, TDM_EINVAL,
                     "TANDEM_LMDB_MAP_SIZE=%s: not a size from 1M to 16384G "
                     "(such as 1G)",
                     text);
  *out = (size_t)(n << shift);
  return TDM_OK;
}

int tdm__store_settings_map_size(const tdm__store_settings *settings,
                                 size_t default_size, size_t *out,
                                 tdm_error *err) {
  *out = default_size;
  if (settings == NULL || settings->lmdb_map_size == 0) return TDM_OK;
  size_t n = settings->lmdb_map_size;
  if (n < ((size_t)1 << 20) || (uint64_t)n > ((uint64_t)1 << 44))
    return tdm__fail(err, TDM_EINVAL,
                     "LMDB map size %zu: not a size from 1 MiB to 16 TiB", n);
  *out = n;
  return TDM_OK;
}

static int lmdb_fail(tdm_error *err, const char *dir, const char *what,
                     int rc) {
  return tdm__fail(err, rc == ENOMEM ? TDM_ENOMEM : TDM_EIO, "%s: %s: %s",
                   dir, what, mdb_strerror(rc));
}

int tdm__store_open(const char *dir, const char *const *dbs, size_t n,
                    const tdm__store_settings *settings, tdm__store **out,
                    tdm_error *err) {
  *out = NULL;
  if (n > MAX_DBS) return tdm__fail(err, TDM_EINVAL, "too many databases");
  size_t map;
  if (tdm__store_settings_map_size(settings, MAP_SIZE, &map, err) != TDM_OK)
    return TDM_EINVAL;
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    return tdm__fail(err, TDM_EIO, "%s: cannot create the state directory: %s",
                     dir, strerror(errno));
  tdm__store *s = tdm__calloc(1, sizeof *s);
  if (s == NULL || (s->dir = tdm__strdup(dir)) == NULL) {
    tdm__free(s);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  int rc = mdb_env_create(&s->env);
  if (rc == 0) rc = mdb_env_set_maxdbs(s->env, MAX_DBS);
  /* Address space only; the file grows only as data is written. */
  if (rc == 0) rc = mdb_env_set_mapsize(s->env, map);
  if (rc == 0) rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0664);
  MDB_txn *txn = NULL;
  if (rc == 0) rc = mdb_txn_begin(s->env, NULL, 0, &txn);
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = mdb_dbi_open(txn, dbs[i], MDB_CREATE, &s->dbi[i]);
  s->num_dbs = n;
  if (rc == 0) {
    rc = mdb_txn_commit(txn);
    txn = NULL;
  }
  if (txn) mdb_txn_abort(txn);
  if (rc != 0) {
    int status = lmdb_fail(err, dir, "cannot open the LMDB state", rc);
    tdm__store_close(s);
    return status;
  }
  *out = s;
  return TDM_OK;
}

void tdm__store_close(tdm__store *s) {
  if (s == NULL) return;
  if (s->env) mdb_env_close(s->env);
  tdm__free(s->dir);
  tdm__free(s);
}

int tdm__store_each(tdm__store *s, unsigned db,
                    int (*fn)(void *ctx, const void *key, size_t key_len,
                              const void *value, size_t value_len),
                    void *ctx, tdm_error *err) {
  MDB_txn *txn;
  MDB_cursor *cursor;
  int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
  if (rc != 0) return lmdb_fail(err, s->dir, "cannot read", rc);
  rc = mdb_cursor_open(txn, s->dbi[db], &cursor);
  if (rc != 0) {
    mdb_txn_abort(txn);
    return lmdb_fail(err, s->dir, "cannot read", rc);
  }
  MDB_val k, v;
  int status = TDM_OK;
  for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    status = fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
    if (status != TDM_OK) break;
  }
  if (status == TDM_OK && rc != MDB_NOTFOUND)
    status = lmdb_fail(err, s->dir, "cannot read", rc);
  mdb_cursor_close(cursor);
  mdb_txn_abort(txn);
  return status;
}

int tdm__store_get(tdm__store *s, unsigned db, const void *key,
                   size_t key_len, tdm__buf *out, int *found, tdm_error *err) {
  MDB_txn *txn;
  int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
  if (rc != 0) return lmdb_fail(err, s->dir, "cannot read", rc);
  MDB_val k = {key_len, (void *)key}, v;
  rc = mdb_get(txn, s->dbi[db], &k, &v);
  int status = TDM_OK;
  *found = rc == 0;
  out->len = 0;
  if (rc == 0 && tdm__buf_append(out, v.mv_data, v.mv_size) != TDM_OK)
    status = tdm__fail(err, TDM_ENOMEM, "out of memory");
  else if (rc != 0 && rc != MDB_NOTFOUND)
    status = lmdb_fail(err, s->dir, "cannot read", rc);
  mdb_txn_abort(txn);
  return status;
}

static int compare_keys(const MDB_val *a, const void *key, size_t len) {
  size_t n = a->mv_size < len ? a->mv_size : len;
  int c = memcmp(a->mv_data, key, n);
  if (c != 0) return c;
  return a->mv_size < len ? -1 : a->mv_size > len;
}

static int delete_upto(MDB_txn *txn, MDB_dbi dbi, const void *key,
                       size_t len) {
  MDB_cursor *cursor;
  int rc = mdb_cursor_open(txn, dbi, &cursor);
  if (rc != 0) return rc;
  MDB_val k, v;
  while ((rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)) == 0 &&
         compare_keys(&k, key, len) <= 0) {
    rc = mdb_cursor_del(cursor, 0);
    if (rc != 0) break;
  }
  mdb_cursor_close(cursor);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int tdm__store_write(tdm__store *s, const tdm__store_op *ops, size_t n,
                     tdm_error *err) {
  MDB_txn *txn;
  int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
  if (rc != 0) return lmdb_fail(err, s->dir, "cannot write", rc);
  for (size_t i = 0; i < n && rc == 0; i++) {
    MDB_dbi dbi = s->dbi[ops[i].db];
    if (ops[i].kind == TDM__STORE_CLEAR) {
      rc = mdb_drop(txn, dbi, 0);
    } else if (ops[i].kind == TDM__STORE_DEL_UPTO) {
      rc = delete_upto(txn, dbi, ops[i].key, ops[i].key_len);
    } else if (ops[i].kind == TDM__STORE_DEL) {
      MDB_val k = {ops[i].key_len, (void *)ops[i].key};
      rc = mdb_del(txn, dbi, &k, NULL);
      if (rc == MDB_NOTFOUND) rc = 0;
    } else {
      MDB_val k = {ops[i].key_len, (void *)ops[i].key};
      MDB_val v = {ops[i].value_len, (void *)ops[i].value};
      rc = mdb_put(txn, dbi, &k, &v, 0);
    }
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    return lmdb_fail(err, s->dir, "cannot write", rc);
  }
  rc = mdb_txn_commit(txn);
  if (rc != 0) return lmdb_fail(err, s->dir, "cannot commit", rc);
  return TDM_OK;
}
