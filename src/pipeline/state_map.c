/*
 * state_map.c - the entity state of a runner: a hash map from entity key
 * to its window state and remembered event ids, with encoding for
 * persistence, dirty tracking, a loader for entities not in memory and
 * eviction of idle ones (the contracts are in state_map.h).
 */
#include "pipeline_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tdm__state_map_new(const tdm__pipeline *p, tdm__state_map **out) {
  tdm__state_map *map = tdm__calloc(1, sizeof *map);
  if (map == NULL) return TDM_ENOMEM;
  map->p = p;
  map->cap = 1024;
  map->newest = INT64_MIN;
  map->clock_ms = INT64_MAX;
  map->buckets = tdm__calloc(map->cap, sizeof *map->buckets);
  if (map->buckets == NULL) {
    tdm__free(map);
    return TDM_ENOMEM;
  }
  *out = map;
  return TDM_OK;
}

static void entry_clear(entry *e) {
  for (size_t i = e->ids_head; i < e->num_ids; i++)
    tdm__free(e->ids[i].numbers);
  tdm__free(e->ids);
  tdm__free(e->id_slots);
  tdm__free(e->last);
  tdm__entity_free(e->entity);
  if (e->key != e->key_inline) tdm__free(e->key);
  memset(e, 0, sizeof *e);
}

/* Moves entry src to the empty bucket dst (src's bucket is then stale). */
static void entry_move(entry *dst, const entry *src) {
  *dst = *src;
  if (src->key == src->key_inline) dst->key = dst->key_inline;
}

void tdm__state_map_free(tdm__state_map *map) {
  if (map == NULL) return;
  for (size_t i = 0; i < map->cap; i++)
    if (map->buckets[i].key != NULL) entry_clear(&map->buckets[i]);
  tdm__free(map->buckets);
  tdm__free(map);
}

size_t tdm__state_map_entities(const tdm__state_map *map) {
  return map->count;
}

static int grow(tdm__state_map *map) {
  size_t cap = map->cap * 2;
  entry *buckets = tdm__calloc(cap, sizeof *buckets);
  if (buckets == NULL) return TDM_ENOMEM;
  for (size_t i = 0; i < map->cap; i++) {
    entry *e = &map->buckets[i];
    if (e->key == NULL) continue;
    size_t at = e->hash & (cap - 1);
    while (buckets[at].key != NULL) at = (at + 1) & (cap - 1);
    entry_move(&buckets[at], e);
  }
  tdm__free(map->buckets);
  map->buckets = buckets;
  map->cap = cap;
  return TDM_OK;
}

/* The entry of an entity, created empty when new. */
int tdm__state_map_find_entry(tdm__state_map *map, const tdm__str *key,
                              entry **out) {
  uint64_t h = hash_bytes(key->data, key->len);
  size_t at = h & (map->cap - 1);
  while (map->buckets[at].key != NULL) {
    entry *e = &map->buckets[at];
    if (e->hash == h && e->key_len == key->len &&
        memcmp(e->key, key->data, key->len) == 0) {
      *out = e;
      return TDM_OK;
    }
    at = (at + 1) & (map->cap - 1);
  }
  if ((map->count + 1) * 4 > map->cap * 3) {
    if (grow(map) != TDM_OK) return TDM_ENOMEM;
    return tdm__state_map_find_entry(map, key, out);
  }
  entry *e = &map->buckets[at];
  if (key->len < sizeof e->key_inline) {
    memcpy(e->key_inline, key->data, key->len);
    e->key_inline[key->len] = '\0';
    e->key = e->key_inline;
  } else if ((e->key = tdm__strndup(key->data, key->len)) == NULL) {
    return TDM_ENOMEM;
  }
  if (tdm__entity_new(map->p->window, &e->entity) != TDM_OK) {
    if (e->key != e->key_inline) tdm__free(e->key);
    e->key = NULL;
    return TDM_ENOMEM;
  }
  e->key_len = key->len;
  e->hash = h;
  map->count++;
  *out = e;
  return TDM_OK;
}

/* Rebuilds the table, without the entities that are saved and have been
 * idle for more than `rounds` calls when `evicting` (else keeping all), so
 * that probe chains have no holes. Returns how many were dropped; on out
 * of memory, drops none. */
static size_t rebuild(tdm__state_map *map, int evicting, unsigned rounds) {
  entry *buckets = tdm__calloc(map->cap, sizeof *buckets);
  if (buckets == NULL) return 0;
  size_t dropped = 0;
  for (size_t i = 0; i < map->cap; i++) {
    entry *e = &map->buckets[i];
    if (e->key == NULL) continue;
    if (evicting && !e->dirty && ++e->idle_rounds > rounds) {
      entry_clear(e);
      map->count--;
      dropped++;
      continue;
    }
    size_t at = e->hash & (map->cap - 1);
    while (buckets[at].key != NULL) at = (at + 1) & (map->cap - 1);
    entry_move(&buckets[at], e);
  }
  tdm__free(map->buckets);
  map->buckets = buckets;
  return dropped;
}

/* ---- remembered ids ---- */

static size_t id_home(const entry *e, size_t position) {
  return e->ids[position].id_hash & (e->id_slot_cap - 1);
}

/* Rebuilds the index into slots (cap a power of two, at least twice the
 * ids) and the ids' time bounds. */
static void ids_reindex(entry *e, uint32_t *slots, size_t cap) {
  if (slots != e->id_slots) tdm__free(e->id_slots);
  e->id_slots = slots;
  e->id_slot_cap = cap;
  memset(slots, 0, cap * sizeof *slots);
  e->ids_max_time = INT64_MIN;
  e->ids_late_min = INT64_MAX;
  for (size_t i = e->ids_head; i < e->num_ids; i++) {
    size_t at = id_home(e, i);
    while (slots[at] != 0) at = (at + 1) & (cap - 1);
    slots[at] = (uint32_t)(i + 1);
    int64_t t = e->ids[i].time_ms;
    if (t < e->ids_max_time) {
      if (t < e->ids_late_min) e->ids_late_min = t;
    } else {
      e->ids_max_time = t;
    }
  }
}

/* Index slots for n ids: the current ones when they suffice. */
static size_t ids_slots_needed(const entry *e, size_t n) {
  size_t cap = e->id_slot_cap ? e->id_slot_cap : 8;
  while (cap < 2 * n) cap *= 2;
  return cap;
}

/* Takes id at position out of the index (it is still in the list). */
static void ids_unindex(entry *e, size_t position) {
  size_t mask = e->id_slot_cap - 1, hole = id_home(e, position);
  while (e->id_slots[hole] != position + 1) hole = (hole + 1) & mask;
  /* Linear probing without tombstones: later slots of the cluster move
   * back into the hole when their home allows it. */
  for (size_t j = (hole + 1) & mask; e->id_slots[j] != 0; j = (j + 1) & mask) {
    size_t home = id_home(e, e->id_slots[j] - 1);
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      e->id_slots[hole] = e->id_slots[j];
      hole = j;
    }
  }
  e->id_slots[hole] = 0;
}

seen_id *tdm__seen_ids_find(const tdm__pipeline *p, entry *e,
                            const tdm__str *id) {
  if (e->ids_head == e->num_ids) return NULL;
  uint64_t h = hash_bytes(id->data, id->len);
  int64_t newest = tdm__entity_max_time(e->entity);
  size_t mask = e->id_slot_cap - 1;
  for (size_t at = h & mask; e->id_slots[at] != 0; at = (at + 1) & mask) {
    seen_id *s = &e->ids[e->id_slots[at] - 1];
    if (s->id_hash == h && s->id_len == id->len &&
        memcmp(s->id, id->data, id->len) == 0 &&
        (newest == INT64_MIN || newest - s->time_ms <= p->spec->dedupe_ms))
      return s;
  }
  return NULL;
}

/* Keeps the first block of a forgotten id for reuse, frees the others. */
static void keep_spare(seen_id *spare, seen_id *s) {
  if (spare->numbers == NULL)
    *spare = *s;
  else
    tdm__free(s->numbers);
}

int tdm__seen_ids_add(const tdm__pipeline *p, entry *e, const tdm__str *id,
                      int64_t time_ms, int decision, const double *numbers) {
  int64_t newest = tdm__entity_max_time(e->entity);
  int64_t dedupe = p->spec->dedupe_ms;
  /* Index room first, so that a failure changes nothing. */
  size_t cap = ids_slots_needed(e, e->num_ids - e->ids_head + 1);
  if (cap != e->id_slot_cap) {
    uint32_t *slots = tdm__malloc(cap * sizeof *slots);
    if (slots == NULL) return TDM_ENOMEM;
    ids_reindex(e, slots, cap);
  }
  /* Forget the ids past the horizon: a prefix of the list, and anywhere
   * when one that came late is past it (then the list is compacted). */
  seen_id spare = {0};
  while (e->ids_head < e->num_ids &&
         newest - e->ids[e->ids_head].time_ms > dedupe) {
    ids_unindex(e, e->ids_head);
    keep_spare(&spare, &e->ids[e->ids_head++]);
  }
  if (e->ids_late_min != INT64_MAX && newest - e->ids_late_min > dedupe) {
    size_t keep = e->ids_head;
    for (size_t i = e->ids_head; i < e->num_ids; i++) {
      if (newest - e->ids[i].time_ms > dedupe)
        keep_spare(&spare, &e->ids[i]);
      else
        e->ids[keep++] = e->ids[i];
    }
    e->num_ids = keep;
    ids_reindex(e, e->id_slots, e->id_slot_cap);
  }
  if (e->num_ids == e->cap_ids) {
    /* Move the list to the front, growing it when more than half full. */
    size_t live = e->num_ids - e->ids_head;
    if (live + 1 > e->cap_ids / 2) {
      size_t grown = e->cap_ids ? e->cap_ids * 2 : 4;
      seen_id *ids = tdm__realloc(e->ids, grown * sizeof *ids);
      if (ids == NULL) {
        tdm__free(spare.numbers);
        return TDM_ENOMEM;
      }
      e->ids = ids;
      e->cap_ids = grown;
    }
    memmove(e->ids, e->ids + e->ids_head, live * sizeof *e->ids);
    e->ids_head = 0;
    e->num_ids = live;
    ids_reindex(e, e->id_slots, e->id_slot_cap);
  }
  seen_id *s = &e->ids[e->num_ids];
  *s = spare;
  if (tdm__seen_id_block(p, s, id->data, id->len) != TDM_OK) {
    tdm__free(s->numbers);
    return TDM_ENOMEM;
  }
  s->time_ms = time_ms;
  s->decision = decision;
  memcpy(s->numbers, numbers, p->num_numbers * sizeof(double));
  size_t at = s->id_hash & (e->id_slot_cap - 1);
  while (e->id_slots[at] != 0) at = (at + 1) & (e->id_slot_cap - 1);
  e->id_slots[at] = (uint32_t)(e->num_ids + 1);
  if (time_ms < e->ids_max_time) {
    if (time_ms < e->ids_late_min) e->ids_late_min = time_ms;
  } else {
    e->ids_max_time = time_ms;
  }
  e->num_ids++;
  return TDM_OK;
}

/* Gives s a block for the numbers and the id (reusing s's block when it
 * is large enough) and copies the id in. */
int tdm__seen_id_block(const tdm__pipeline *p, seen_id *s, const char *id,
                       size_t id_len) {
  size_t need = p->num_numbers * sizeof(double) + id_len + 1;
  if (s->numbers == NULL || s->cap < need) {
    double *block = tdm__realloc(s->numbers, need);
    if (block == NULL) return TDM_ENOMEM;
    s->numbers = block;
    s->cap = need;
  }
  s->id = (char *)(s->numbers + p->num_numbers);
  memcpy(s->id, id, id_len);
  s->id[id_len] = '\0';
  s->id_len = id_len;
  s->id_hash = hash_bytes(id, id_len);
  return TDM_OK;
}

/* An entry's bytes: u32 window length, the window state, u32 id count,
 * then per id: u32 length, the id, i64 time, i32 decision and the result's
 * number slots (doubles), all little-endian as the machine writes them. */
static int put_bytes(tdm__buf *out, const void *data, size_t n) {
  return tdm__buf_append(out, data, n);
}

const entry *tdm__state_map_lookup_entry(const tdm__state_map *map,
                                         const tdm__str *key) {
  uint64_t h = hash_bytes(key->data, key->len);
  size_t at = h & (map->cap - 1);
  while (map->buckets[at].key != NULL) {
    const entry *e = &map->buckets[at];
    if (e->hash == h && e->key_len == key->len &&
        memcmp(e->key, key->data, key->len) == 0)
      return e;
    at = (at + 1) & (map->cap - 1);
  }
  return NULL;
}

int tdm__state_map_encode(tdm__state_map *map, tdm__str key, tdm__buf *out) {
  const tdm__pipeline *p = map->p;
  const entry *e = tdm__state_map_lookup_entry(map, &key);
  if (e == NULL) return TDM_ENOTFOUND;
  size_t start = out->len;
  uint32_t len32 = 0;
  int rc = put_bytes(out, &len32, 4);
  if (rc == TDM_OK) rc = tdm__entity_encode(p->window, e->entity, out);
  if (rc == TDM_OK) {
    len32 = (uint32_t)(out->len - start - 4);
    memcpy(out->data + start, &len32, 4);
    uint32_t n = (uint32_t)(e->num_ids - e->ids_head);
    rc = put_bytes(out, &n, 4);
  }
  for (size_t i = e->ids_head; i < e->num_ids && rc == TDM_OK; i++) {
    const seen_id *s = &e->ids[i];
    uint32_t id_len = (uint32_t)s->id_len;
    int32_t decision = s->decision;
    rc = put_bytes(out, &id_len, 4);
    if (rc == TDM_OK) rc = put_bytes(out, s->id, s->id_len);
    if (rc == TDM_OK) rc = put_bytes(out, &s->time_ms, 8);
    if (rc == TDM_OK) rc = put_bytes(out, &decision, 4);
    if (rc == TDM_OK)
      rc = put_bytes(out, s->numbers, p->num_numbers * sizeof(double));
  }
  if (rc != TDM_OK) out->len = start;
  return rc;
}

typedef struct cursor {
  const unsigned char *p, *end;
} cursor;

static int take(cursor *c, void *dst, size_t n) {
  if ((size_t)(c->end - c->p) < n) return -1;
  memcpy(dst, c->p, n);
  c->p += n;
  return 0;
}

int tdm__state_map_restore(tdm__state_map *map, tdm__str key, uint64_t tag,
                           const void *data, size_t len, tdm_error *err) {
  const tdm__pipeline *p = map->p;
  if (tdm__state_map_lookup_entry(map, &key) != NULL)
    return tdm__fail(err, TDM_EINVAL, "entity \"%.*s\" is already loaded",
                     (int)key.len, key.data);
  cursor c = {data, (const unsigned char *)data + len};
  uint32_t window_len;
  if (take(&c, &window_len, 4) != 0 || window_len > (size_t)(c.end - c.p))
    return tdm__fail(err, TDM_EPARSE, "entity \"%.*s\": truncated state",
                     (int)key.len, key.data);
  tdm__entity *entity;
  int rc = tdm__entity_decode(p->window, c.p, window_len, &entity, err);
  if (rc != TDM_OK) return rc;
  c.p += window_len;
  entry *e;
  if (tdm__state_map_find_entry(map, &key, &e) != TDM_OK) {
    tdm__entity_free(entity);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  tdm__entity_free(e->entity);
  e->entity = entity;
  e->tag = tag;
  uint32_t n;
  rc = take(&c, &n, 4) == 0 ? TDM_OK : TDM_EPARSE;
  size_t record = 4 + 8 + 4 + p->num_numbers * sizeof(double);
  if (rc == TDM_OK && (size_t)n > (size_t)(c.end - c.p) / record) rc = TDM_EPARSE;
  if (rc == TDM_OK && n > 0) {
    e->ids = tdm__calloc(n, sizeof *e->ids);
    if (e->ids == NULL) rc = TDM_ENOMEM;
    e->cap_ids = n;
  }
  for (uint32_t i = 0; i < n && rc == TDM_OK; i++) {
    seen_id *s = &e->ids[i];
    uint32_t id_len;
    int32_t decision;
    if (take(&c, &id_len, 4) != 0 || id_len > (size_t)(c.end - c.p)) {
      rc = TDM_EPARSE;
      break;
    }
    if (tdm__seen_id_block(p, s, (const char *)c.p, id_len) != TDM_OK) {
      rc = TDM_ENOMEM;
      break;
    }
    c.p += id_len;
    s->id_len = id_len;
    e->num_ids++;
    if (take(&c, &s->time_ms, 8) != 0 || take(&c, &decision, 4) != 0 ||
        take(&c, s->numbers, p->num_numbers * sizeof(double)) != 0 ||
        s->time_ms < -TDM__WINDOW_TIME_LIMIT ||
        s->time_ms > TDM__WINDOW_TIME_LIMIT || decision < -1 ||
        decision >= (int32_t)p->spec->num_rules) {
      rc = TDM_EPARSE;
      break;
    }
    s->decision = decision;
  }
  if (rc == TDM_OK && c.p != c.end) rc = TDM_EPARSE;
  if (rc == TDM_OK) {
    size_t cap = ids_slots_needed(e, n + 1);
    uint32_t *slots = tdm__malloc(cap * sizeof *slots);
    if (slots == NULL)
      rc = TDM_ENOMEM;
    else
      ids_reindex(e, slots, cap);
  }
  if (rc != TDM_OK) {
    /* Leave the map as it was: drop the half-restored entity. */
    entry_clear(e);
    map->count--;
    rebuild(map, 0, 0); /* close the hole in its probe chain */
    if (rc == TDM_ENOMEM) return tdm__fail(err, rc, "out of memory");
    return tdm__fail(err, TDM_EPARSE,
                     "entity \"%.*s\": corrupt state (ids)", (int)key.len,
                     key.data);
  }
  return TDM_OK;
}

void tdm__state_map_set_tag(tdm__state_map *map, tdm__str key, uint64_t tag) {
  entry *e = (entry *)tdm__state_map_lookup_entry(map, &key);
  if (e != NULL) e->tag = tag;
}

/* Removes entity key (if present), closing the gap in its probe chain by
 * moving later entries of the chain back (linear probing's deletion). */
void tdm__state_map_forget(tdm__state_map *map, tdm__str key) {
  entry *e = (entry *)tdm__state_map_lookup_entry(map, &key);
  if (e == NULL) return;
  size_t mask = map->cap - 1, hole = (size_t)(e - map->buckets);
  entry_clear(e);
  map->count--;
  for (size_t at = (hole + 1) & mask; map->buckets[at].key != NULL;
       at = (at + 1) & mask) {
    size_t home = map->buckets[at].hash & mask;
    /* The entry may fill the hole only if its home is not in (hole, at]. */
    int stays = hole <= at ? (home > hole && home <= at)
                           : (home > hole || home <= at);
    if (stays) continue;
    entry_move(&map->buckets[hole], &map->buckets[at]);
    memset(&map->buckets[at], 0, sizeof map->buckets[at]);
    hole = at;
  }
}

void tdm__state_map_mark_all_dirty(tdm__state_map *map) {
  for (size_t i = 0; i < map->cap; i++)
    if (map->buckets[i].key != NULL) map->buckets[i].dirty = 1;
}

void tdm__state_map_mark_dirty(tdm__state_map *map, tdm__str key) {
  entry *e = (entry *)tdm__state_map_lookup_entry(map, &key);
  if (e != NULL) e->dirty = 1;
}

uint64_t tdm__state_map_tag(const tdm__state_map *map, tdm__str key) {
  const entry *e = tdm__state_map_lookup_entry(map, &key);
  return e ? e->tag : 0;
}

int tdm__state_map_take_dirty(tdm__state_map *map,
                              int (*fn)(void *ctx, tdm__str key, uint64_t tag,
                                        const void *state, size_t len),
                              void *ctx) {
  tdm__buf b = {0};
  int rc = TDM_OK;
  for (size_t i = 0; i < map->cap && rc == TDM_OK; i++) {
    entry *e = &map->buckets[i];
    if (e->key == NULL || !e->dirty) continue;
    tdm__str key = {e->key, e->key_len};
    b.len = 0;
    rc = tdm__state_map_encode(map, key, &b);
    if (rc == TDM_OK) rc = fn(ctx, key, e->tag, b.data, b.len);
    if (rc == TDM_OK) e->dirty = 0;
  }
  tdm__buf_free(&b);
  return rc;
}

void tdm__state_map_set_loader(tdm__state_map *map, tdm__state_loader load,
                               void *ctx) {
  map->load = load;
  map->load_ctx = ctx;
}

size_t tdm__state_map_evict(tdm__state_map *map, unsigned rounds) {
  /* Only an entity that can be brought back may leave: dropping state
   * that a later event of the entity would read changes its answers. */
  if (map->load == NULL) return 0;
  return rebuild(map, 1, rounds);
}

void tdm__state_map_set_clock(tdm__state_map *map, int64_t now_ms) {
  map->clock_ms = now_ms;
}

void tdm__state_map_prefetch_bucket(const tdm__state_map *map,
                                    const tdm__str *key) {
  uint64_t h = hash_bytes(key->data, key->len);
  __builtin_prefetch(&map->buckets[h & (map->cap - 1)]);
}

const tdm__entity *tdm__state_map_prefetch_entity(const tdm__state_map *map,
                                                  const tdm__str *key) {
  const entry *e = tdm__state_map_lookup_entry(map, key);
  if (e == NULL) return NULL;
  /* The entity's structure: a few cache lines. */
  for (size_t at = 0; at < 256; at += 64)
    __builtin_prefetch((const char *)e->entity + at);
  if (e->num_ids > 0) __builtin_prefetch(&e->ids[e->num_ids - 1]);
  if (e->id_slots != NULL) __builtin_prefetch(e->id_slots);
  return e->entity;
}

int64_t tdm__state_map_newest(const tdm__state_map *map) {
  return map->newest;
}

void tdm__state_map_keep_last(tdm__state_map *map) { map->keep_last = 1; }

int tdm__state_map_each_last(const tdm__state_map *map,
                             int (*fn)(void *ctx, tdm__str key,
                                       const double *numbers),
                             void *ctx) {
  for (size_t i = 0; i < map->cap; i++) {
    const entry *e = &map->buckets[i];
    if (e->key == NULL || e->last == NULL) continue;
    int rc = fn(ctx, (tdm__str){e->key, e->key_len}, e->last);
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}
