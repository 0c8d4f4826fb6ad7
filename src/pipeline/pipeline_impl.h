/*
 * pipeline_impl.h - the inside of a compiled pipeline and of an entity
 * state map, shared by the files of the pipeline core and by nothing else:
 * pipeline.c compiles a spec, state_map.c keeps entity state, process.c
 * runs one event and format.c writes results. Runners see only the opaque
 * handles of pipeline.h.
 */
#ifndef TDM_PIPELINE_IMPL_H
#define TDM_PIPELINE_IMPL_H

#include <stdint.h>

#include "pipeline.h"

#define NONE SIZE_MAX

/* How an output column gets its value. */
typedef enum column_kind {
  COLUMN_FIELD = 1, /* the event's own text */
  COLUMN_NUMBER,    /* a number slot (a feature, the score) */
  COLUMN_DECISION,
} column_kind;

typedef struct column {
  const char *name;
  column_kind kind;
  size_t index; /* field index or number slot */
  int is_score;
} column;

typedef struct field_slots {
  size_t number, string; /* NONE when the field has no such slot */
} field_slots;

typedef struct step {
  tdm__expr *expr;
  size_t slot;
} step;

struct tdm__pipeline {
  tdm__spec *spec;
  tdm_model *model;
  tdm_model_info info;
  char version[13];
  size_t num_numbers, num_strings;
  field_slots *fields;
  size_t *feature_slot; /* per spec feature */
  size_t score_slot;
  size_t entity_field, time_field, id_field; /* id: NONE without one */
  /* Stage 1 and 3 expressions, in dependency order. */
  step *pre, *post;
  size_t num_pre, num_post;
  /* Stage 2: the window aggregations. */
  tdm__window_spec *window;
  size_t num_aggs;
  size_t *agg_slot;          /* where each aggregate's value goes */
  size_t *agg_number_inputs; /* number slot of each number input */
  size_t *agg_string_inputs; /* string slot of each string input */
  size_t num_agg_numbers, num_agg_strings;
  tdm__expr **filters;
  size_t num_filters;
  /* The model's inputs: number slot per model feature. */
  size_t *model_inputs;
  /* Decision rules (NULL when: always). */
  tdm__expr **rules;
  column *columns;
  size_t num_columns;
  int64_t ttl_ms;
  int features_only;
  /* Lookups and tables (src/pipeline/lookup.c, src/store/table.c). */
  tdm__lookups *lookups;
  tdm__tables *tables;
  tdm__lookup_mode lookup_mode;
  size_t **materialize_slots; /* per materialize spec: slot per column */
};

/* ---- entity state (state_map.c) ---- */

/* A remembered event id and the values of its first result: the numbers
 * and the id share one block (numbers first), of `cap` bytes. */
typedef struct seen_id {
  char *id;
  size_t id_len, cap;
  uint64_t id_hash; /* so a lookup reads the id's block only on a match */
  int64_t time_ms;
  int decision;
  double *numbers;
} seen_id;

typedef struct entry {
  char *key; /* NULL: an empty bucket; key_inline when the key fits */
  size_t key_len;
  /* Short keys (card, user and account ids) live in the entry itself, so
   * a lookup compares them without reading another cache line. */
  char key_inline[16];
  uint64_t hash;
  tdm__entity *entity;
  seen_id *ids;
  size_t num_ids, cap_ids;
  uint64_t tag; /* the runner's: e.g. the log position of its last event */
  int dirty;    /* changed since the last tdm__state_map_take_dirty */
  unsigned idle_rounds; /* evict calls since an event last touched it */
  double *last; /* the last result's numbers (maps that keep them) */
} entry;

struct tdm__state_map {
  const tdm__pipeline *p;
  entry *buckets;
  size_t cap, count;
  int keep_last;
  int64_t newest; /* the latest event time applied through this map */
  int64_t clock_ms; /* the runner's clock for max_future (INT64_MAX: none) */
  tdm__state_loader load; /* brings back entities not in memory */
  void *load_ctx;
};

/* The map's own hash (seed 0; runners partition with other seeds). */
static inline uint64_t hash_bytes(const char *s, size_t len) {
  return tdm__hash_bytes(s, len, 0);
}

/* ---- shared by the pipeline core's files ---- */

/* The entry of an entity, created empty when new (state_map.c). */
int tdm__state_map_find_entry(tdm__state_map *map, const tdm__str *key,
                              entry **out);
/* The entry of an entity, or NULL when the map does not hold it. */
const entry *tdm__state_map_lookup_entry(const tdm__state_map *map,
                                         const tdm__str *key);
/* Gives s a block for the numbers and the id (reusing s's block when it
 * is large enough) and copies the id in. */
int tdm__seen_id_block(const tdm__pipeline *p, seen_id *s, const char *id,
                       size_t id_len);
/* The model's input row from a result's number slots (process.c): the
 * formatter rebuilds it the same way for explanations. */
void tdm__pipeline_model_row(const tdm__pipeline *p, const double *numbers,
                             double *row);

#endif /* TDM_PIPELINE_IMPL_H */
