/*
 * lookup.h - lookup features: values a batch run materialized into a
 * table (src/store/table.c), read per event by entity, point in time in
 * every runner: an event reads the newest version whose as_of is at or
 * before its event time, so training data never sees the future and a
 * late event live reads what batch reads. Batch reads the versions
 * present when it starts; live readers list them again every second. The
 * pipeline core fills the lookup
 * slots before its first stage; which version each event used goes into
 * its result (JSON "tables").
 */
#ifndef TDM_LOOKUP_H
#define TDM_LOOKUP_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"
#include "../store/table.h"
#include "spec.h"
#include "window.h" /* tdm__str */

typedef enum tdm__lookup_mode {
  TDM__LOOKUP_AT_EVENT_TIME = 1, /* batch: the versions when the run began */
  TDM__LOOKUP_FOLLOW             /* live: follows new versions */
} tdm__lookup_mode;

/* What a pipeline looks up: the tables and, per lookup feature, its table,
 * column, slot and default. Immutable once compiled. */
typedef struct tdm__lookups tdm__lookups;

/* feature_slot[i]: the number slot of spec feature i. NULL *out (and
 * TDM_OK) when the pipeline has no lookup. */
int tdm__lookups_compile(const tdm__spec *spec, const size_t *feature_slot,
                         tdm__lookups **out, tdm_error *err);
void tdm__lookups_free(tdm__lookups *l);
size_t tdm__lookups_tables(const tdm__lookups *l);
const char *tdm__lookups_table(const tdm__lookups *l, size_t i);

/* One thread's reading state. */
typedef struct tdm__lookup_reader tdm__lookup_reader;
int tdm__lookup_reader_new(const tdm__lookups *l, tdm__tables *tables,
                           tdm__lookup_mode mode, tdm__lookup_reader **out,
                           tdm_error *err);
void tdm__lookup_reader_free(tdm__lookup_reader *r);

/* Fills every lookup slot of numbers for this entity and event time
 * (default, or missing, when there is no version or no row). */
int tdm__lookup_fill(tdm__lookup_reader *r, tdm__str entity, int64_t time_ms,
                     double *numbers, tdm_error *err);

/* The version table i used in the last fill: 0 when none. */
typedef struct tdm__lookup_used {
  uint64_t version;
  int64_t as_of_ms;
} tdm__lookup_used;
const tdm__lookup_used *tdm__lookup_reader_used(const tdm__lookup_reader *r);

#endif /* TDM_LOOKUP_H */
