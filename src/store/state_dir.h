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
#include "../pipeline/pipeline.h"
#include "store.h"

/* The LMDB database index of the entity states in a store opened with
 * tdm__state_dir_open. */
enum { TDM__STATE_DB = 0, TDM__META_DB = 1 };

/* Opens (creating) the state store of pipeline `name` in dir. */
int tdm__state_dir_open(const char *dir, const char *name, tdm__store **out,
                        tdm_error *err);

/* Restores every saved entity into the map map_for(ctx, key) chooses, and
 * reports the largest tag. Errors name the directory. */
int tdm__state_dir_restore(tdm__store *store, const char *dir,
                           tdm__state_map *(*map_for)(void *ctx, tdm__str key),
                           void *ctx, uint64_t *max_tag, tdm_error *err);

/* Adds to ops/bytes a write of each changed entity of map (take_dirty). */
typedef struct tdm__state_writes {
  tdm__buf bytes;
  size_t *offsets; /* per write: key offset, key length, value length */
  size_t count, cap;
} tdm__state_writes;
int tdm__state_writes_take(tdm__state_writes *w, tdm__state_map *map);
/* Writes them (one transaction) and empties w. */
int tdm__state_writes_flush(tdm__state_writes *w, tdm__store *store,
                            tdm_error *err);
void tdm__state_writes_free(tdm__state_writes *w);

/*
 * `tandem batch --save-state DIR`: writes every entity of the maps into a
 * new state directory, in transactions of bounded size, into DIR.tmp
 * renamed to DIR at the end (an existing DIR is refused: it may be a live
 * server's).
 */
int tdm__state_dir_save(const char *dir, const char *name,
                        tdm__state_map *const *maps, size_t n,
                        tdm_error *err);

#endif /* TDM_STATE_DIR_H */
