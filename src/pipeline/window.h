/*
 * window.h - one entity's window state (a card's, a user's): the events of
 * that entity applied so far, kept as a compact log of the inputs the
 * aggregates read, per-bucket partial aggregates for hopped windows, and
 * running aggregates for `window: all`. The pipeline core keeps a map from
 * entity to state and calls tdm__entity_apply once per event; every runner
 * calls it in the same arrival order, so the values depend only on the
 * sequence of events applied to the entity and are bit-identical between
 * batch and real time, and across an encode/decode (persistence). The exact
 * semantics are in docs/windows.md; tests/unit/test_window.c checks them
 * against a brute-force reference.
 */
#ifndef TDM_WINDOW_H
#define TDM_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

/* tdm__str (a string that need not be NUL-terminated) is in core.h. */

/* The aggregate functions (docs/windows.md defines each). */
typedef enum tdm__agg_kind {
  TDM__AGG_COUNT,
  TDM__AGG_SUM,
  TDM__AGG_MEAN,
  TDM__AGG_MIN,
  TDM__AGG_MAX,
  TDM__AGG_STDDEV,
  TDM__AGG_LAST,
  TDM__AGG_SINCE_LAST,
  TDM__AGG_DISTINCT
} tdm__agg_kind;

/* Event times, windows, hops, lateness and TTL are limited to this many
 * milliseconds in magnitude (about 36 million years), so that sums of a
 * few of them never overflow. */
#define TDM__WINDOW_TIME_LIMIT ((int64_t)1 << 60)

/* The default of tdm__window_config.max_events (when it is 0). */
#define TDM__WINDOW_DEFAULT_MAX_EVENTS 100000
/* The largest max_events accepted. */
#define TDM__WINDOW_MAX_EVENTS_LIMIT ((size_t)1 << 30)

typedef struct tdm__agg_def {
  tdm__agg_kind kind;
  int64_t window_ms; /* > 0; 0 means "all": every event applied so far */
  int64_t hop_ms;    /* 0: exact; else window_ms is a multiple of hop_ms */
  size_t input;  /* number index (sum..last), string index (distinct);
                    unused for count and since_last */
  size_t filter; /* index into the event's filter flags; SIZE_MAX: none */
} tdm__agg_def;

typedef struct tdm__window_config {
  const tdm__agg_def *aggs;
  size_t num_aggs;
  size_t num_numbers, num_strings, num_filters; /* an event's array sizes */
  int64_t lateness_ms; /* >= 0 */
  int64_t ttl_ms;      /* 0: never; else state resets when t - M > ttl_ms */
  size_t max_events;   /* per-entity cap on logged events; 0: the default */
} tdm__window_config;

/* One event as the pipeline core has evaluated it. The arrays have the
 * sizes of the config; they are only read during tdm__entity_apply. */
typedef struct tdm__window_event {
  int64_t time_ms;
  const double *numbers;         /* NaN: missing */
  const tdm__str *strings;       /* data NULL: missing */
  const unsigned char *filters;  /* nonzero: the event passes */
} tdm__window_event;

/* The validated, immutable form of a config; shareable between threads. */
typedef struct tdm__window_spec tdm__window_spec;
/* One entity's state; used by one thread at a time. */
typedef struct tdm__entity tdm__entity;

/*
 * Validates the config and compiles it. Fails with TDM_EINVAL (and a
 * message naming the aggregate) for, among others: a hop with distinct,
 * since_last or window all; a window that is not a multiple of its hop;
 * distinct over window all; an input or filter index out of range. The
 * config's arrays are copied; the caller may free them afterwards.
 */
int tdm__window_spec_new(const tdm__window_config *config,
                         tdm__window_spec **out, tdm_error *err);
void tdm__window_spec_free(tdm__window_spec *spec);

/* A new, empty entity for spec (which must outlive it). TDM_ENOMEM. */
int tdm__entity_new(const tdm__window_spec *spec, tdm__entity **out);
void tdm__entity_free(tdm__entity *entity);

/*
 * Applies one event and writes the spec's num_aggs values to out, in the
 * order of the config's aggs. Returns TDM_OK; TDM_EINVAL for a time beyond
 * TDM__WINDOW_TIME_LIMIT or a string of 2^32 - 1 bytes or more; TDM_ENOMEM.
 * On any error the entity's state is as before and out is unspecified.
 * Does not allocate once the entity's buffers have grown to its traffic.
 */
int tdm__entity_apply(const tdm__window_spec *spec, tdm__entity *entity,
                      const tdm__window_event *event, double *out);

/* M: the latest event time applied since the last reset; INT64_MIN when
 * nothing has been applied (or after a TTL reset, until the next event). */
int64_t tdm__entity_max_time(const tdm__entity *entity);

/* Asks the CPU to start loading what the next tdm__entity_apply on this
 * entity reads, so that a runner that knows its next events does not wait
 * on memory for each in turn (a batch run's state is far larger than the
 * caches). Stage 0 loads the entity's own arrays (aggregates, running
 * states, the tail of its log); stage 1, a few events later, what those
 * point to (hopped buckets, queues, exact sums, the oldest entries of the
 * time order). A hint only: it changes nothing, reads only what an earlier
 * stage brought in, and never faults. */
void tdm__entity_prefetch(const tdm__entity *entity, int stage);

/* The bytes the entity holds, its buffers' capacity included. */
size_t tdm__entity_memory(const tdm__entity *entity);

/*
 * Appends the entity's state to out: a version byte, a fingerprint of the
 * spec, then the state. Decoding it with the same spec gives an entity
 * whose future results are identical. TDM_ENOMEM (out keeps what it had
 * before the call).
 */
int tdm__entity_encode(const tdm__window_spec *spec,
                       const tdm__entity *entity, tdm__buf *out);

/*
 * Rebuilds an entity from data[0..len). Everything is validated: a
 * truncated or corrupted state, another version or a state encoded for
 * another spec fails with TDM_EPARSE and a message; TDM_ENOMEM.
 */
int tdm__entity_decode(const tdm__window_spec *spec, const void *data,
                       size_t len, tdm__entity **out, tdm_error *err);

#endif /* TDM_WINDOW_H */
