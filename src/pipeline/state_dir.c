/*
 * state_dir.c - reading and writing a pipeline's state directory (see
 * state_dir.h for the layout).
 */
#include "state_dir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes per transaction when saving a whole state: bounds the memory of
 * LMDB's write transaction. */
#define SAVE_BATCH_BYTES ((size_t)64 << 20)

int tdm__state_dir_open(const char *dir, const char *name,
                        const tdm__store_settings *settings, tdm__store **out,
                        tdm_error *err) {
  char state[300], meta[300];
  snprintf(state, sizeof state, "%s.state", name);
  snprintf(meta, sizeof meta, "%s.meta", name);
  const char *dbs[] = {state, meta};
  return tdm__store_open(dir, dbs, 2, settings, out, err);
}

typedef struct restore_ctx {
  tdm__state_map *(*map_for)(void *ctx, tdm__str key);
  void *ctx;
  uint64_t max_tag;
  const char *dir;
  tdm_error *err;
} restore_ctx;

/* Restores one stored value ([u64 tag][state]) of entity k into map. */
static int restore_value(tdm__state_map *map, tdm__str k, const void *value,
                         size_t value_len, const char *dir, uint64_t *tag,
                         tdm_error *err) {
  if (value_len < 8)
    return tdm__fail(err, TDM_EPARSE, "%s: the state of \"%.*s\" is cut short",
                     dir, (int)(k.len > 64 ? 64 : k.len), k.data);
  memcpy(tag, value, 8);
  tdm_error why;
  int status = tdm__state_map_restore(map, k, *tag, (const char *)value + 8,
                                      value_len - 8, &why);
  if (status != TDM_OK)
    return tdm__fail(err, status,
                     "%s: the state of \"%.*s\" does not fit this pipeline "
                     "(written by another version of it?): %s",
                     dir, (int)(k.len > 64 ? 64 : k.len), k.data, why.message);
  return TDM_OK;
}

static int restore_one(void *arg, const void *key, size_t key_len,
                       const void *value, size_t value_len) {
  restore_ctx *rc = arg;
  tdm__str k = {key, key_len};
  uint64_t tag;
  int status = restore_value(rc->map_for(rc->ctx, k), k, value, value_len,
                             rc->dir, &tag, rc->err);
  if (status == TDM_OK && tag > rc->max_tag) rc->max_tag = tag;
  return status;
}

int tdm__state_dir_load(tdm__store *store, const char *dir,
                        tdm__state_map *map, tdm__str key, tdm__buf *scratch,
                        tdm_error *err) {
  int found = 0;
  int rc = tdm__store_get(store, TDM__STATE_DB, key.data, key.len, scratch,
                          &found, err);
  if (rc != TDM_OK) return rc;
  if (!found) return TDM_ENOTFOUND;
  uint64_t tag;
  return restore_value(map, key, scratch->data, scratch->len, dir, &tag, err);
}

int tdm__state_dir_restore(tdm__store *store, const char *dir,
                           tdm__state_map *(*map_for)(void *ctx, tdm__str key),
                           void *ctx, uint64_t *max_tag, tdm_error *err) {
  restore_ctx rc = {map_for, ctx, 0, dir, err};
  int status = tdm__store_each(store, TDM__STATE_DB, restore_one, &rc, err);
  *max_tag = rc.max_tag;
  return status;
}

/* Adds an item: key, then value (NULL with len 0 and del set: a delete). */
static int add(tdm__state_writes *w, unsigned db, int del, tdm__str key,
               const void *head, size_t head_len, const void *value,
               size_t len) {
  if (w->count == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 1024;
    tdm__state_write *items = tdm__realloc(w->items, cap * sizeof *items);
    if (items == NULL) return TDM_ENOMEM;
    w->items = items;
    w->cap = cap;
  }
  size_t at = w->bytes.len;
  int rc = tdm__buf_append(&w->bytes, key.data, key.len);
  if (rc == TDM_OK && head_len) rc = tdm__buf_append(&w->bytes, head, head_len);
  if (rc == TDM_OK && len) rc = tdm__buf_append(&w->bytes, value, len);
  if (rc != TDM_OK) {
    w->bytes.len = at;
    return rc;
  }
  w->items[w->count++] =
      (tdm__state_write){at, key.len, head_len + len, db, del};
  return TDM_OK;
}

static int take_one(void *ctx, tdm__str key, uint64_t tag, const void *state,
                    size_t len) {
  return add(ctx, TDM__STATE_DB, 0, key, &tag, 8, state, len);
}

int tdm__state_writes_take(tdm__state_writes *w, tdm__state_map *map) {
  return tdm__state_map_take_dirty(map, take_one, w);
}

int tdm__state_writes_put(tdm__state_writes *w, tdm__str key,
                          const void *value, size_t len) {
  return add(w, TDM__STATE_DB, 0, key, NULL, 0, value, len);
}

int tdm__state_writes_delete(tdm__state_writes *w, tdm__str key) {
  return add(w, TDM__STATE_DB, 1, key, NULL, 0, NULL, 0);
}

int tdm__state_writes_meta(tdm__state_writes *w, tdm__str key,
                           const void *value, size_t len) {
  return add(w, TDM__META_DB, 0, key, NULL, 0, value, len);
}

tdm__str tdm__state_write_key(const tdm__state_writes *w, size_t i) {
  return (tdm__str){w->bytes.data + w->items[i].at, w->items[i].key_len};
}

tdm__str tdm__state_write_value(const tdm__state_writes *w, size_t i) {
  const tdm__state_write *it = &w->items[i];
  if (it->del) return (tdm__str){NULL, 0};
  return (tdm__str){w->bytes.data + it->at + it->key_len, it->value_len};
}

int tdm__state_writes_flush(tdm__state_writes *w, tdm__store *store,
                            tdm_error *err) {
  if (w->count == 0) return TDM_OK;
  tdm__store_op *ops = tdm__malloc(w->count * sizeof *ops);
  if (ops == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t i = 0; i < w->count; i++) {
    tdm__str k = tdm__state_write_key(w, i), v = tdm__state_write_value(w, i);
    ops[i] = (tdm__store_op){w->items[i].del ? TDM__STORE_DEL : TDM__STORE_PUT,
                             w->items[i].db, k.data, k.len, v.data, v.len};
  }
  int rc = tdm__store_write(store, ops, w->count, err);
  tdm__free(ops);
  if (rc == TDM_OK) tdm__state_writes_clear(w);
  return rc;
}

void tdm__state_writes_clear(tdm__state_writes *w) {
  w->count = 0;
  w->bytes.len = 0;
}

void tdm__state_writes_free(tdm__state_writes *w) {
  tdm__buf_free(&w->bytes);
  tdm__free(w->items);
  memset(w, 0, sizeof *w);
}

/* Saving a whole map: every entity, a bounded batch at a time. */
typedef struct save_ctx {
  tdm__state_writes w;
  tdm__store *store;
  tdm_error *err;
  int rc;
} save_ctx;

static int save_one(void *ctx, tdm__str key, uint64_t tag, const void *state,
                    size_t len) {
  save_ctx *s = ctx;
  int rc = take_one(&s->w, key, tag, state, len);
  if (rc == TDM_OK && s->w.bytes.len >= SAVE_BATCH_BYTES)
    rc = tdm__state_writes_flush(&s->w, s->store, s->err);
  if (rc != TDM_OK) s->rc = rc;
  return rc;
}

static void remove_dir(const char *dir) {
  static const char *files[] = {"data.mdb", "lock.mdb"};
  tdm__buf path = {0};
  for (size_t i = 0; i < 2; i++) {
    path.len = 0;
    if (tdm__buf_printf(&path, "%s/%s", dir, files[i]) == TDM_OK)
      unlink(path.data);
  }
  tdm__buf_free(&path);
  rmdir(dir);
}

/* DIR.tmp, where a state directory is written before it is published;
 * TDM_EINVAL when the path does not fit. */
static int tmp_path(const char *dir, char (*tmp)[4096], tdm_error *err) {
  if ((size_t)snprintf(*tmp, sizeof *tmp, "%s.tmp", dir) >= sizeof *tmp)
    return tdm__fail(err, TDM_EINVAL, "%s: path too long", dir);
  return TDM_OK;
}

int tdm__state_dir_save(const char *dir, const char *name,
                        tdm__state_map *const *maps, size_t n,
                        const tdm__store_settings *settings, tdm_error *err) {
  struct stat st;
  if (stat(dir, &st) == 0)
    return tdm__fail(err, TDM_EINVAL,
                     "%s exists: --save-state writes a new state directory "
                     "(remove it first)",
                     dir);
  char tmp[4096];
  if (tmp_path(dir, &tmp, err) != TDM_OK) return TDM_EINVAL;
  remove_dir(tmp);
  tdm__store *store;
  int rc = tdm__state_dir_open(tmp, name, settings, &store, err);
  if (rc != TDM_OK) return rc;
  save_ctx s;
  memset(&s, 0, sizeof s);
  s.store = store;
  s.err = err;
  /* Every entity is dirty for this: mark them all by encoding through
   * take_dirty (a map that was never saved has every entity dirty). */
  for (size_t i = 0; i < n && rc == TDM_OK; i++) {
    rc = tdm__state_map_take_dirty(maps[i], save_one, &s);
    if (rc != TDM_OK && s.rc != TDM_OK) rc = s.rc;
    if (rc == TDM_ENOMEM && err->message[0] == '\0')
      tdm__fail(err, rc, "out of memory");
  }
  if (rc == TDM_OK) rc = tdm__state_writes_flush(&s.w, store, err);
  tdm__state_writes_free(&s.w);
  tdm__store_close(store);
  if (rc != TDM_OK) remove_dir(tmp);
  return rc;
}

int tdm__state_dir_publish(const char *dir, tdm_error *err) {
  char tmp[4096];
  if (tmp_path(dir, &tmp, err) != TDM_OK) return TDM_EINVAL;
  if (rename(tmp, dir) == 0) return TDM_OK;
  int rc = tdm__fail(err, TDM_EIO, "%s: cannot rename into place: %s", dir,
                     strerror(errno));
  remove_dir(tmp);
  return rc;
}

void tdm__state_dir_discard(const char *dir) {
  char tmp[4096];
  if (tmp_path(dir, &tmp, NULL) == TDM_OK) remove_dir(tmp);
}
