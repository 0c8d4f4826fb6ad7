/*
 * store.h - durable key-value state in LMDB: one environment (directory)
 * with a few named databases, e.g. a live pipeline's entity states and its
 * event log. A write is one transaction of puts and deletes across them,
 * synced to disk when tdm__store_write returns, so a runner can
 * acknowledge work only once it survives a crash (group commit: many
 * requests share one transaction).
 */
#ifndef TDM_STORE_H
#define TDM_STORE_H

#include <stddef.h>

#include "../core/core.h"
#include "settings.h"

typedef struct tdm__store tdm__store;

/* Opens (creating) the environment in `dir` (created if missing) with
 * the named databases dbs[0..n), which later calls refer to by index. Its
 * map reserves settings' lmdb_map_size of address space (NULL, or 0: 64
 * GiB; the file grows only as data is written, and LMDB still maps a
 * larger existing file whole): a small one lets valgrind, which cannot
 * reserve tens of GiB, run the state store. */
int tdm__store_open(const char *dir, const char *const *dbs, size_t n,
                    const tdm__store_settings *settings, tdm__store **out,
                    tdm_error *err);
void tdm__store_close(tdm__store *store);

/* Calls fn for every key of database db in key order; fn returning
 * non-zero stops with that status. Keys and values are valid only during
 * the call. */
int tdm__store_each(tdm__store *store, unsigned db,
                    int (*fn)(void *ctx, const void *key, size_t key_len,
                              const void *value, size_t value_len),
                    void *ctx, tdm_error *err);

/* Copies the value of key in database db into out (replacing its
 * contents); *found says whether the key exists. */
int tdm__store_get(tdm__store *store, unsigned db, const void *key,
                   size_t key_len, tdm__buf *out, int *found, tdm_error *err);

typedef enum tdm__store_kind {
  TDM__STORE_PUT,      /* key -> value */
  TDM__STORE_DEL,      /* delete key (if present) */
  TDM__STORE_DEL_UPTO, /* delete every key <= key (bytewise order) */
  TDM__STORE_CLEAR     /* delete every key of the database */
} tdm__store_kind;

typedef struct tdm__store_op {
  tdm__store_kind kind;
  unsigned db;
  const void *key;
  size_t key_len;
  const void *value;
  size_t value_len;
} tdm__store_op;

/* Applies every op in order in one transaction, durable on return. */
int tdm__store_write(tdm__store *store, const tdm__store_op *ops, size_t n,
                     tdm_error *err);

#endif /* TDM_STORE_H */
