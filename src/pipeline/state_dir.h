/*
 * state_dir.h - the layout of a pipeline's durable state directory, shared
 * by the live runner (which keeps it current) and `tandem batch
 * --save-state` (which writes one for a live server to start from):
 *
 *   data.mdb, lock.mdb   LMDB; database NAME.state maps each entity key to
 *                        [u64 tag][its state bytes (tdm__state_map_encode)]
 *                        where the tag is the log position of the entity's
 *                        last applied event (0: none); database NAME.meta
 *                        holds the runner's bookkeeping (`tandem stream`:
 *                        how far into each changelog the states reflect)
 *   NAME.N.wal           the live runner's write-ahead log (src/store/wal.c)
 */
#ifndef TDM_STATE_DIR_H
#define TDM_STATE_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"
#include "../store/store.h"
#include "state_map.h"

/* The LMDB database index of the entity states in a store opened with
 * tdm__state_dir_open. */
enum { TDM__STATE_DB = 0, TDM__META_DB = 1 };

/* Opens (creating) the state store of pipeline `name` in dir, its map
 * sized by settings (NULL: the default; tdm__store_open). */
int tdm__state_dir_open(const char *dir, const char *name,
                        const tdm__store_settings *settings, tdm__store **out,
                        tdm_error *err);

/* Restores every saved entity into the map map_for(ctx, key) chooses, and
 * reports the largest tag. Errors name the directory. */
int tdm__state_dir_restore(tdm__store *store, const char *dir,
                           tdm__state_map *(*map_for)(void *ctx, tdm__str key),
                           void *ctx, uint64_t *max_tag, tdm_error *err);

/* Restores one saved entity into map (the loader of a map whose idle
 * entities leave memory, tdm__state_map_set_loader): TDM_ENOTFOUND when
 * the store has none. scratch holds the bytes read. Thread-safe for
 * different maps (each call reads in its own LMDB transaction). */
int tdm__state_dir_load(tdm__store *store, const char *dir,
                        tdm__state_map *map, tdm__str key, tdm__buf *scratch,
                        tdm_error *err);

/*
 * A set of writes to a state store, applied in one transaction: the
 * changed entities of maps (take), deletes of entities dropped from memory
 * (delete) and bookkeeping values (meta). Items keep the order they were
 * added in.
 */
typedef struct tdm__state_write {
  size_t at, key_len, value_len; /* in bytes: the key, then the value */
  unsigned db;                   /* TDM__STATE_DB or TDM__META_DB */
  int del;                       /* a delete: no value */
} tdm__state_write;
typedef struct tdm__state_writes {
  tdm__buf bytes;
  tdm__state_write *items;
  size_t count, cap;
} tdm__state_writes;
/* Adds a put of each entity of map changed since the last take (its
 * value: [u64 tag][state]) and marks them clean. */
int tdm__state_writes_take(tdm__state_writes *w, tdm__state_map *map);
/* Adds a put of an entity's stored value ([u64 tag][state], as read). */
int tdm__state_writes_put(tdm__state_writes *w, tdm__str key,
                          const void *value, size_t len);
/* Adds a delete of an entity's state. */
int tdm__state_writes_delete(tdm__state_writes *w, tdm__str key);
/* Adds a put of a bookkeeping value (database TDM__META_DB). */
int tdm__state_writes_meta(tdm__state_writes *w, tdm__str key,
                           const void *value, size_t len);
/* The key and value of item i (value data NULL for a delete). */
tdm__str tdm__state_write_key(const tdm__state_writes *w, size_t i);
tdm__str tdm__state_write_value(const tdm__state_writes *w, size_t i);
/* Writes them (one transaction, durable on return). On success w is
 * emptied; on failure it is kept (the caller may mark its keys dirty). */
int tdm__state_writes_flush(tdm__state_writes *w, tdm__store *store,
                            tdm_error *err);
void tdm__state_writes_clear(tdm__state_writes *w);
void tdm__state_writes_free(tdm__state_writes *w);

/*
 * `tandem batch --save-state DIR`: writes every entity of the maps into a
 * new state directory, in transactions of bounded size, into DIR.tmp (an
 * existing DIR is refused: it may be a live server's). publish renames
 * DIR.tmp to DIR: the runner does it last, once its other outputs are in
 * place, so a state directory only ever appears beside a finished run's
 * outputs; discard removes DIR.tmp (a run that failed after saving).
 */
int tdm__state_dir_save(const char *dir, const char *name,
                        tdm__state_map *const *maps, size_t n,
                        const tdm__store_settings *settings, tdm_error *err);
int tdm__state_dir_publish(const char *dir, tdm_error *err);
void tdm__state_dir_discard(const char *dir);

#endif /* TDM_STATE_DIR_H */
