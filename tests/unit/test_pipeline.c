/*
 * test_pipeline.c - the pipeline core's promises that the integration
 * tests cannot reach cheaply: moving idle entities out of memory (and
 * loading them back) changes no result, and an entity's state restored
 * from its bytes continues exactly as the original.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/pipeline/pipeline.h"
#include "test.h"

static const char yaml[] =
    "name: t\n"
    "entity: k\n"
    "time: ts\n"
    "id: id\n"
    "fields: {id: string, k: string, ts: {type: time, unit: ms}, v: number,\n"
    "         s: string}\n"
    "features:\n"
    "  - {name: n_1h, agg: count, window: 1h}\n"
    "  - {name: sum_3h, agg: sum(v), window: 3h}\n"
    "  - {name: mean_1d, agg: mean(v), window: 1d, hop: 1h}\n"
    "  - {name: distinct_2h, agg: distinct(s), window: 2h}\n"
    "  - {name: gap, agg: since_last}\n"
    "  - {name: total, agg: sum(v)}\n"
    "  - {name: ratio, expr: \"v / max(mean_1d, 1)\"}\n"
    "model: none.json\n"
    "state: {lateness: 10m, ttl: 6h, dedupe: 2h}\n";

static tdm__pipeline *load(void) {
  tdm__spec *spec;
  tdm__pipeline *p = NULL;
  tdm_error err;
  if (tdm__spec_parse(yaml, sizeof yaml - 1, "t.yaml", &spec, &err) != TDM_OK ||
      tdm__pipeline_from_spec(spec, TDM__PIPELINE_FEATURES_ONLY, &p, &err) !=
          TDM_OK)
    fprintf(stderr, "load: %s\n", err.message);
  return p;
}

typedef struct stream_event {
  char id[32], k[16], ts[32], v[32], s[16];
} stream_event;

/* Events over 40 entities across ~10 days, bursty, some late (within the
 * lateness), some repeated ids, long idle gaps. */
static stream_event *make_stream(size_t n, unsigned seed) {
  stream_event *evs = calloc(n, sizeof *evs);
  srand(seed);
  long long t = 1700000000000LL;
  for (size_t i = 0; i < n; i++) {
    t += rand() % 120000;
    long long ts = t - (rand() % 10 == 0 ? rand() % 600000 : 0);
    int entity = rand() % 40;
    if (entity > 30 && (t / 3600000) % 24 > 3) entity -= 20; /* idle spells */
    snprintf(evs[i].id, sizeof evs[i].id, "e%zu",
             rand() % 50 == 0 && i > 0 ? i - 1 : i);
    snprintf(evs[i].k, sizeof evs[i].k, "k%d", entity);
    snprintf(evs[i].ts, sizeof evs[i].ts, "%lld", ts);
    snprintf(evs[i].v, sizeof evs[i].v, "%d.%02d", rand() % 500, rand() % 100);
    snprintf(evs[i].s, sizeof evs[i].s, "s%d", rand() % 7);
  }
  return evs;
}

static void fields_of(const stream_event *e, tdm__str f[5]) {
  f[0] = (tdm__str){e->id, strlen(e->id)};
  f[1] = (tdm__str){e->k, strlen(e->k)};
  f[2] = (tdm__str){e->ts, strlen(e->ts)};
  f[3] = (tdm__str){e->v, strlen(e->v)};
  f[4] = (tdm__str){e->s, strlen(e->s)};
}

static int same_result(const tdm__pipeline *p, const tdm__result *a,
                       const tdm__result *b, tdm__buf *ja, tdm__buf *jb,
                       const tdm__event *ev) {
  ja->len = jb->len = 0;
  tdm__pipeline_json(p, ev, a, 1, ja);
  tdm__pipeline_json(p, ev, b, 1, jb);
  return ja->len == jb->len && memcmp(ja->data, jb->data, ja->len) == 0;
}

/* A store of saved entity states for the evicting map's loader: the
 * test's own stand-in for LMDB, a list of key and bytes. */
typedef struct saved_state {
  char key[16];
  uint64_t tag;
  tdm__buf bytes;
} saved_state;
typedef struct saved_states {
  saved_state items[64];
  size_t count;
} saved_states;

static int save_state(void *ctx, tdm__str key, uint64_t tag, const void *state,
                      size_t len) {
  saved_states *st = ctx;
  size_t i = 0;
  while (i < st->count && !(strlen(st->items[i].key) == key.len &&
                            memcmp(st->items[i].key, key.data, key.len) == 0))
    i++;
  if (i == st->count) {
    if (i == 64 || key.len >= 16) return TDM_ENOMEM;
    memcpy(st->items[i].key, key.data, key.len);
    st->items[i].key[key.len] = '\0';
    st->count++;
  }
  st->items[i].tag = tag;
  st->items[i].bytes.len = 0;
  return tdm__buf_append(&st->items[i].bytes, state, len);
}

static int load_state(void *ctx, tdm__state_map *map, tdm__str key,
                      tdm_error *err) {
  saved_states *st = ctx;
  for (size_t i = 0; i < st->count; i++)
    if (strlen(st->items[i].key) == key.len &&
        memcmp(st->items[i].key, key.data, key.len) == 0)
      return tdm__state_map_restore(map, key, st->items[i].tag,
                                    st->items[i].bytes.data,
                                    st->items[i].bytes.len, err);
  return TDM_ENOTFOUND;
}

/* Idle entities leave memory and come back through the loader on their
 * next event: every answer equals the answer of a map that keeps all. */
TEST(pipeline_eviction_changes_no_result) {
  tdm__pipeline *p = load();
  CHECK(p != NULL);
  size_t n = 20000;
  stream_event *evs = make_stream(n, 11);
  tdm__state_map *keep, *evict;
  tdm__result ra, rb;
  saved_states *store = calloc(1, sizeof *store);
  CHECK(tdm__state_map_new(p, &keep) == TDM_OK);
  CHECK(tdm__state_map_new(p, &evict) == TDM_OK);
  tdm__state_map_set_loader(evict, load_state, store);
  CHECK(tdm__result_init(p, &ra, NULL) == TDM_OK);
  CHECK(tdm__result_init(p, &rb, NULL) == TDM_OK);
  tdm__buf ja = {0}, jb = {0};
  size_t dropped = 0, fewer = 0;
  int failed = 0;
  for (size_t i = 0; i < n && !failed; i++) {
    tdm__str f[5];
    fields_of(&evs[i], f);
    tdm__event ev = {f};
    tdm_error err;
    int a = tdm__pipeline_process(p, keep, &ev, &ra, &err);
    int b = tdm__pipeline_process(p, evict, &ev, &rb, &err);
    if (a != b || (a == TDM_OK && !same_result(p, &ra, &rb, &ja, &jb, &ev))) {
      fprintf(stderr, "event %zu differs:\n  %.*s\n  %.*s\n", i, (int)ja.len,
              ja.data, (int)jb.len, jb.data);
      failed = 1;
    }
    /* Every 50 events, as at a snapshot round: save, then evict what has
     * been idle for two rounds. */
    if (i % 50 == 49) {
      CHECK(tdm__state_map_take_dirty(evict, save_state, store) == TDM_OK);
      dropped += tdm__state_map_evict(evict, 2);
      fewer += tdm__state_map_entities(evict) < tdm__state_map_entities(keep);
    }
  }
  CHECK(!failed);
  CHECK(dropped > 100); /* the idle spells left memory, and came back */
  CHECK(fewer > 10);
  /* Without a loader nothing may leave: it would be lost. */
  CHECK(tdm__state_map_evict(keep, 0) == 0);
  tdm__buf_free(&ja);
  tdm__buf_free(&jb);
  tdm__result_free(&ra);
  tdm__result_free(&rb);
  tdm__state_map_free(keep);
  tdm__state_map_free(evict);
  for (size_t i = 0; i < store->count; i++) tdm__buf_free(&store->items[i].bytes);
  free(store);
  free(evs);
  tdm__pipeline_free(p);
  return 0;
}

/* Copies every entity of `from` into a new map through its bytes. */
typedef struct copy_ctx {
  tdm__state_map *to;
  int failed;
} copy_ctx;

static int copy_one(void *ctx, tdm__str key, uint64_t tag, const void *state,
                    size_t len) {
  copy_ctx *c = ctx;
  tdm_error err;
  if (tdm__state_map_restore(c->to, key, tag, state, len, &err) != TDM_OK) {
    fprintf(stderr, "restore: %s\n", err.message);
    c->failed = 1;
  }
  return TDM_OK;
}

TEST(pipeline_state_bytes_continue_exactly) {
  tdm__pipeline *p = load();
  CHECK(p != NULL);
  size_t n = 12000;
  stream_event *evs = make_stream(n, 5);
  tdm__state_map *a, *b = NULL;
  tdm__result ra, rb;
  CHECK(tdm__state_map_new(p, &a) == TDM_OK);
  CHECK(tdm__result_init(p, &ra, NULL) == TDM_OK);
  CHECK(tdm__result_init(p, &rb, NULL) == TDM_OK);
  tdm__buf ja = {0}, jb = {0};
  int failed = 0;
  for (size_t i = 0; i < n && !failed; i++) {
    if (i == n / 2) {
      /* Copy every entity through its bytes (all are dirty: changed
       * since they were made), then continue on both maps. */
      CHECK(tdm__state_map_new(p, &b) == TDM_OK);
      copy_ctx c = {b, 0};
      CHECK(tdm__state_map_take_dirty(a, copy_one, &c) == TDM_OK);
      CHECK(!c.failed);
      CHECK(tdm__state_map_entities(a) == tdm__state_map_entities(b));
    }
    tdm__str f[5];
    fields_of(&evs[i], f);
    tdm__event ev = {f};
    tdm_error err;
    int x = tdm__pipeline_process(p, a, &ev, &ra, &err);
    if (b == NULL) continue;
    int y = tdm__pipeline_process(p, b, &ev, &rb, &err);
    if (x != y || (x == TDM_OK && !same_result(p, &ra, &rb, &ja, &jb, &ev))) {
      fprintf(stderr, "event %zu differs after restore:\n  %.*s\n  %.*s\n", i,
              (int)ja.len, ja.data, (int)jb.len, jb.data);
      failed = 1;
    }
  }
  CHECK(!failed);
  tdm__buf_free(&ja);
  tdm__buf_free(&jb);
  tdm__result_free(&ra);
  tdm__result_free(&rb);
  tdm__state_map_free(a);
  tdm__state_map_free(b);
  free(evs);
  tdm__pipeline_free(p);
  return 0;
}

/* Replaces every dirty entity of `from` in `to` through its bytes, as a
 * changelog restore applies a newer copy (forget, then restore). */
static int replace_one(void *ctx, tdm__str key, uint64_t tag,
                       const void *state, size_t len) {
  copy_ctx *c = ctx;
  tdm_error err;
  tdm__state_map_forget(c->to, key);
  if (tdm__state_map_restore(c->to, key, tag, state, len, &err) != TDM_OK) {
    fprintf(stderr, "restore: %s\n", err.message);
    c->failed = 1;
  }
  return TDM_OK;
}

TEST(pipeline_state_forget_and_replace) {
  tdm__pipeline *p = load();
  CHECK(p != NULL);
  /* Forgetting keys of a crowded table keeps every other key findable
   * (deletion in linear probing moves later chain entries back). */
  tdm__state_map *m;
  CHECK(tdm__state_map_new(p, &m) == TDM_OK);
  char key[32];
  tdm__buf bytes = {0};
  for (int i = 0; i < 3000; i++) {
    /* an empty entity's state: restore it from a fresh map's bytes */
    snprintf(key, sizeof key, "key%d", i);
    tdm__str k = {key, strlen(key)};
    tdm__state_map *one;
    CHECK(tdm__state_map_new(p, &one) == TDM_OK);
    tdm__str f[5] = {{"x", 1}, {key, strlen(key)}, {"1700000000000", 13},
                     {"1", 1}, {"a", 1}};
    tdm__event ev = {f};
    tdm__result r;
    tdm_error err;
    CHECK(tdm__result_init(p, &r, NULL) == TDM_OK);
    CHECK(tdm__pipeline_process(p, one, &ev, &r, &err) == TDM_OK);
    bytes.len = 0;
    CHECK(tdm__state_map_encode(one, k, &bytes) == TDM_OK);
    CHECK(tdm__state_map_restore(m, k, (uint64_t)i + 1, bytes.data, bytes.len,
                                 &err) == TDM_OK);
    tdm__result_free(&r);
    tdm__state_map_free(one);
  }
  srand(3);
  int gone[3000] = {0};
  for (int round = 0; round < 2000; round++) {
    int i = rand() % 3000;
    snprintf(key, sizeof key, "key%d", i);
    tdm__state_map_forget(m, (tdm__str){key, strlen(key)});
    gone[i] = 1;
  }
  size_t left = 0;
  for (int i = 0; i < 3000; i++) {
    snprintf(key, sizeof key, "key%d", i);
    uint64_t tag = tdm__state_map_tag(m, (tdm__str){key, strlen(key)});
    CHECK(tag == (gone[i] ? 0 : (uint64_t)i + 1));
    left += !gone[i];
  }
  CHECK(tdm__state_map_entities(m) == left);
  tdm__state_map_free(m);
  tdm__buf_free(&bytes);

  /* A copy kept current only by replacing the entities changed in a (every
   * 500 events) continues exactly as a: the event after each replacement
   * is processed on both. */
  size_t n = 8000;
  stream_event *evs = make_stream(n, 9);
  tdm__state_map *a, *b;
  tdm__result ra, rb;
  CHECK(tdm__state_map_new(p, &a) == TDM_OK);
  CHECK(tdm__state_map_new(p, &b) == TDM_OK);
  CHECK(tdm__result_init(p, &ra, NULL) == TDM_OK);
  CHECK(tdm__result_init(p, &rb, NULL) == TDM_OK);
  tdm__buf ja = {0}, jb = {0};
  int failed = 0;
  size_t compared = 0;
  for (size_t i = 0; i < n && !failed; i++) {
    tdm__str f[5];
    fields_of(&evs[i], f);
    tdm__event ev = {f};
    tdm_error err;
    int x = tdm__pipeline_process(p, a, &ev, &ra, &err);
    if (i % 500 == 0 && i > 0) {
      int y = tdm__pipeline_process(p, b, &ev, &rb, &err);
      if (x != y || (x == TDM_OK && !same_result(p, &ra, &rb, &ja, &jb, &ev))) {
        fprintf(stderr, "event %zu differs after replace:\n  %.*s\n  %.*s\n",
                i, (int)ja.len, ja.data, (int)jb.len, jb.data);
        failed = 1;
      }
      compared++;
    }
    if (i % 500 == 499) {
      copy_ctx c = {b, 0};
      CHECK(tdm__state_map_take_dirty(a, replace_one, &c) == TDM_OK);
      CHECK(!c.failed);
      CHECK(tdm__state_map_entities(a) == tdm__state_map_entities(b));
    }
  }
  CHECK(compared == n / 500 - 1);
  CHECK(!failed);
  tdm__buf_free(&ja);
  tdm__buf_free(&jb);
  tdm__result_free(&ra);
  tdm__result_free(&rb);
  tdm__state_map_free(a);
  tdm__state_map_free(b);
  free(evs);
  tdm__pipeline_free(p);
  return 0;
}
