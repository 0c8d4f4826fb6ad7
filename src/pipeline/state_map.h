/*
 * state_map.h - the entity state of a runner: a map from entity key to
 * window state and remembered event ids (state_map.c). The pipeline core
 * reads and updates it per event (tdm__pipeline_process); runners create
 * it, persist it (src/pipeline/state_dir.c) and evict from it. It needs
 * only the pipeline's handle, so the modules that persist state include
 * this and not the whole pipeline.
 */
#ifndef TDM_STATE_MAP_H
#define TDM_STATE_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"
#include "tandem.h"

typedef struct tdm__entity tdm__entity; /* window.h */

typedef struct tdm__pipeline tdm__pipeline;

/* The entity state of a whole runner: a map from entity key to window
 * state and remembered event ids. One thread at a time per map; runners
 * that use threads give each its own map over a partition of entities. */
typedef struct tdm__state_map tdm__state_map;
int tdm__state_map_new(const tdm__pipeline *p, tdm__state_map **out);
void tdm__state_map_free(tdm__state_map *map);
size_t tdm__state_map_entities(const tdm__state_map *map);
/*
 * One entity's whole state (its window state and remembered event ids) as
 * bytes, for persistence; restore puts it back (into a map that does not
 * have the entity yet), validating everything: a state written by another
 * pipeline or corrupted fails with TDM_EPARSE. encode of an unknown entity
 * is TDM_ENOTFOUND.
 */
int tdm__state_map_encode(tdm__state_map *map, tdm__str key, tdm__buf *out);
int tdm__state_map_restore(tdm__state_map *map, tdm__str key, uint64_t tag,
                           const void *data, size_t len, tdm_error *err);

/* A runner's number kept with an entity (0 until set): the live runner
 * stores the log position of the entity's last applied event. */
void tdm__state_map_set_tag(tdm__state_map *map, tdm__str key, uint64_t tag);
uint64_t tdm__state_map_tag(const tdm__state_map *map, tdm__str key);
/* Marks an entity changed (its last take_dirty could not be saved). */
void tdm__state_map_mark_dirty(tdm__state_map *map, tdm__str key);

/* Marks every entity changed (to write a whole map out again). */
void tdm__state_map_mark_all_dirty(tdm__state_map *map);
/* Removes an entity and its state (nothing if it is not there): a runner
 * replacing it with a newer copy of its state from elsewhere. */
void tdm__state_map_forget(tdm__state_map *map, tdm__str key);

/* Calls fn with the encoded state of every entity changed (by an applied
 * event) since the last call, and marks them clean. A non-zero return
 * from fn stops it and leaves the rest dirty. */
int tdm__state_map_take_dirty(tdm__state_map *map,
                              int (*fn)(void *ctx, tdm__str key, uint64_t tag,
                                        const void *state, size_t len),
                              void *ctx);

/*
 * Where the map finds an entity it does not hold: load restores key into
 * map (tdm__state_map_restore) and returns TDM_OK, or TDM_ENOTFOUND for an
 * entity never saved, or another error (err set). Process calls it before
 * treating an entity as new. Durable runners give one that reads their
 * state store; with it, tdm__state_map_evict may move entities out.
 */
typedef int (*tdm__state_loader)(void *ctx, tdm__state_map *map, tdm__str key,
                                 tdm_error *err);
void tdm__state_map_set_loader(tdm__state_map *map, tdm__state_loader load,
                               void *ctx);

/*
 * Moves out of memory the entities that are saved (no change since their
 * last take_dirty) and that no event touched during the last `rounds`
 * calls: the loader brings each back on its next event, so no answer
 * changes. An entity is never judged by other entities' event times.
 * Without a loader nothing is moved (the state would be lost). Returns how
 * many left memory.
 */
size_t tdm__state_map_evict(tdm__state_map *map, unsigned rounds);

/*
 * The runner's clock (epoch ms) that state.max_future is measured from:
 * an event dated more than max_future after it is rejected (TDM_EFUTURE).
 * INT64_MAX (the default) checks nothing: replaying a log of events
 * already accepted. One thread at a time, as the map.
 */
void tdm__state_map_set_clock(tdm__state_map *map, int64_t now_ms);

/*
 * Hints for a runner that knows which entities its next events belong to
 * (a batch run's state is far larger than the caches; each event would
 * otherwise wait on memory in turn): prefetch_bucket asks the CPU to load
 * the map's bucket of `key`; prefetch_entity, issued some events later,
 * reads that bucket and asks for the entity's structure and remembered
 * ids, and returns the entity (NULL: not in the map) for
 * tdm__entity_prefetch. Neither changes anything; one thread at a time, as
 * the map. The entity stays valid while the map holds it.
 */
void tdm__state_map_prefetch_bucket(const tdm__state_map *map,
                                    const tdm__str *key);
const tdm__entity *tdm__state_map_prefetch_entity(const tdm__state_map *map,
                                                  const tdm__str *key);

/* The latest event time applied through this map (INT64_MIN: none). */
int64_t tdm__state_map_newest(const tdm__state_map *map);
/* From now on every entity keeps its last result's numbers (for
 * materializing), which each_last hands to fn. */
void tdm__state_map_keep_last(tdm__state_map *map);
int tdm__state_map_each_last(const tdm__state_map *map,
                             int (*fn)(void *ctx, tdm__str key,
                                       const double *numbers),
                             void *ctx);

#endif /* TDM_STATE_MAP_H */
