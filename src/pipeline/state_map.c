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
  for (size_t i = 0; i < e->num_ids; i++) tdm__free(e->ids[i].numbers);
  tdm__free(e->ids);
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
    uint32_t n = (uint32_t)e->num_ids;
    rc = put_bytes(out, &n, 4);
  }
  for (size_t i = 0; i < e->num_ids && rc == TDM_OK; i++) {
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
