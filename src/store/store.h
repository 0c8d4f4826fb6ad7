/*
 * store.h - durable key-value state in LMDB: a pipeline's entity states
 * (and, later, batch tables). Writes go in one transaction per batch of
 * updates and are on disk when tdm__store_put_all returns, so a live
 * runner can acknowledge an event only after its state survives a crash
 * (group commit: many requests' updates share one fsync).
 */
#ifndef TDM_STORE_H
#define TDM_STORE_H

#include <stddef.h>

#include "../core/core.h"

typedef struct tdm__store tdm__store;

/* Opens (creating) the LMDB environment in directory `dir` (created if
 * missing), database `name`. */
int tdm__store_open(const char *dir, const char *name, tdm__store **out,
                    tdm_error *err);
void tdm__store_close(tdm__store *store);

/* Calls fn for every key in key order; fn returning non-zero stops with
 * that status. */
int tdm__store_each(tdm__store *store,
                    int (*fn)(void *ctx, const void *key, size_t key_len,
                              const void *value, size_t value_len),
                    void *ctx, tdm_error *err);

/* One update: key -> value. */
typedef struct tdm__store_put {
  const void *key;
  size_t key_len;
  const void *value;
  size_t value_len;
} tdm__store_put;

/* Writes all updates in one transaction, in order (a later update of the
 * same key wins), durable on return. */
int tdm__store_put_all(tdm__store *store, const tdm__store_put *puts,
                       size_t n, tdm_error *err);

#endif /* TDM_STORE_H */
