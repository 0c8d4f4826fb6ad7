/*
 * window.c - per-entity window aggregation (window.h, docs/windows.md).
 * An entity holds: a log of recent events in arrival order, as columns of
 * the inputs the exact and hopped aggregates read (times, numbers, filter
 * bits, strings copied into a byte queue the entity owns); per hopped
 * aggregate a sorted array of non-empty buckets with partial aggregates;
 * per `window: all` aggregate one running partial aggregate; per since_last
 * the latest time seen. Exact windows keep a running state per aggregate
 * over the log entries in the window: the log's entries sorted by time
 * (an in-order event appends; a late one is inserted), and per aggregate
 * the position in that order where its window starts, moved forward as
 * the newest time advances; entries enter and leave exact sums
 * (exact_sum.h), min, max and last are the front of a monotonic queue, and
 * distinct counts each value's members in a hash map. So an in-order
 * event costs the same however many events its entity has in the window.
 * A late event's own window (which ends at its time, not at the newest)
 * is computed by scanning the log from the first entry that may be in it
 * (found by binary search over a running max of the times), with the same
 * exact arithmetic, so both give the same bits. Hopped windows combine
 * buckets in ascending order,
 * continuing a memo of the previous event's fold while its first bucket
 * and folded buckets are unchanged. Every sum and fold runs in a fixed
 * order (arrival order, then bucket order) so results depend only on the
 * events applied; the memos only skip work that would give the same
 * bits. Applying an event first reserves every buffer it may need, so
 * running out of memory leaves the state untouched.
 */
#include "window.h"

#include <math.h>

#include "exact_sum.h"
#include <stdlib.h>
#include <string.h>

/* How an aggregate is computed. */
typedef enum agg_role {
  ROLE_EXACT,      /* scans the log */
  ROLE_HOPPED,     /* combines buckets (and the log for a late cut) */
  ROLE_ALL,        /* one running bucket */
  ROLE_SINCE_LAST  /* the latest time seen */
} agg_role;

typedef struct agg_plan {
  tdm__agg_kind kind;
  agg_role role;
  int64_t window, hop, buckets; /* buckets: window / hop */
  size_t number_column;         /* log column of the number (numeric kinds) */
  size_t string_column;         /* log column of the string (distinct) */
  size_t input;                 /* the event's number or string index */
  size_t filter;                /* the event's filter index or SIZE_MAX */
  uint64_t filter_mask;         /* the log's filter bit, 0 for none */
} agg_plan;

struct tdm__window_spec {
  size_t num_aggs;
  agg_plan *aggs;
  size_t num_numbers, num_strings, num_filters;
  int64_t lateness, ttl;
  size_t max_events;
  int needs_log;         /* some aggregate is exact or hopped */
  int exact_distinct;    /* some exact aggregate is distinct */
  int64_t horizon;       /* R: an event is live while t > M - R */
  size_t number_columns; /* inputs logged, and which */
  size_t *number_inputs;
  size_t string_columns;
  size_t *string_inputs;
  size_t filter_bits; /* filters logged, and which */
  size_t filter_inputs[64];
  uint64_t fingerprint;
};

/* A partial aggregate: a hop bucket, the running `all` state, or a window
 * being built. For the kinds: sum, mean: a = sum; min, max: a = min, max;
 * stddev: a = mean, b = sum of squared deviations (Welford); last: a = the
 * value at last_time. */
typedef struct partial {
  int64_t index;     /* the bucket's floor(t / hop) */
  int64_t max_time;  /* of its events; INT64_MIN when empty */
  int64_t last_time; /* last: time of a; INT64_MIN when no value */
  uint64_t count;    /* events passing the filter */
  uint64_t values;   /* of which with a non-missing value */
  double a, b;
} partial;

/* A hopped aggregate's memo (never encoded): when cached, fold is the
 * combination, in ascending order, of the buckets with index in [from,
 * to], from the first of them. Adding to a bucket at or below to, dropping
 * from and a reset clear it; a later event whose window starts at the same
 * bucket continues the fold, which gives the same bits as folding from
 * scratch. */
typedef struct hop_fold {
  int cached;
  int64_t from, to;
  partial fold;
} hop_fold;

typedef struct running running; /* below */

typedef struct agg_state {
  partial all;            /* ROLE_ALL */
  int64_t previous_time;  /* ROLE_SINCE_LAST: INT64_MIN when none */
  partial *buckets;       /* ROLE_HOPPED: sorted by index, non-empty */
  size_t num_buckets, cap_buckets;
  hop_fold *memo;         /* ROLE_HOPPED: one of the entity's folds */
  running *run;           /* ROLE_EXACT: one of the entity's runs */
} agg_state;

/* A logged string: bytes at absolute position pos of the byte queue. */
typedef struct log_string {
  uint64_t pos;
  uint32_t len; /* UINT32_MAX: missing */
  uint32_t hash;
} log_string;

#define MISSING_LEN UINT32_MAX

/* A value of a running distinct: how many members have it, and the
 * arrival number of the one latest in time order (ties: in arrival), whose
 * logged bytes are the key. count 0: an empty slot. */
typedef struct distinct_slot {
  uint64_t count;
  uint64_t rep;
  uint32_t hash;
} distinct_slot;

/* An exact aggregate's running state (never encoded: decoding rebuilds it
 * from the log). Its members are the entries at positions cut.. of the
 * entity's time order that pass its filter: the entries later than M - w.
 * Sums: values, the infinities apart, in exact sums. min, max, last: a
 * queue of members with a value, in time order, each better than every
 * earlier one in it (smaller for min, larger for max; for last only the
 * latest stays), so the front is the answer. distinct: a hash map of the
 * members' values. A queue or map marked stale (a member left or came out
 * of time order) is rebuilt from the members before it is read. */
struct running {
  size_t cut;
  uint64_t count, values, positive_inf, negative_inf;
  tdm__exact_sum sum, squares;
  uint64_t *queue; /* ring of arrival numbers */
  size_t queue_cap, queue_head, queue_len;
  distinct_slot *slots;
  size_t slot_cap, slot_used;
  int stale;
};

struct tdm__entity {
  int64_t max_time; /* M, INT64_MIN when empty */
  size_t num_aggs;
  agg_state *aggs;
  hop_fold *folds; /* one per hopped aggregate */
  size_t num_folds;
  /* The log: entries [start, end) of columns with room for cap. */
  void *block;
  size_t block_bytes, cap, start, end;
  int64_t *times;
  /* reach[j] >= times[j] and non-decreasing in j (a running max of the
   * times), so the entries with reach[j] <= lo, a prefix, all have
   * times[j] <= lo: a scan binary-searches past them. */
  int64_t *reach;
  uint64_t *filters;
  double *numbers;     /* column c at numbers + c * cap */
  log_string *strings; /* column c at strings + c * cap */
  /* The byte queue of logged strings: bytes[i] is absolute position
   * bytes_base + i; positions below bytes_free are no longer referenced. */
  char *bytes;
  size_t bytes_cap;
  uint64_t bytes_base, bytes_free, bytes_end;
  /* Entries are numbered in arrival order: log entry start is number
   * first_seq. order[order_start, order_end) holds the numbers of the
   * log's entries sorted by (time, number): the exact windows' time
   * order. */
  uint64_t first_seq;
  uint64_t *order;
  size_t order_cap, order_start, order_end;
  running *runs; /* one per exact aggregate */
  size_t num_runs;
};

/* ---- small helpers ---- */

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && a < 0) q--;
  return q;
}

static uint32_t hash_bytes(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}

/* Missing stays NaN (canonical), -0.0 becomes 0.0 so no path can tell them
 * apart. */
static double normalize(double x) {
  if (isnan(x)) return NAN;
  return x + 0.0;
}

static void partial_clear(partial *p) {
  p->index = 0;
  p->max_time = INT64_MIN;
  p->last_time = INT64_MIN;
  p->count = 0;
  p->values = 0;
  p->a = 0.0;
  p->b = 0.0;
}

/* Folds one event (time, value x; NaN missing) into p. */
static inline void partial_add(tdm__agg_kind kind, partial *p, int64_t time,
                               double x) {
  p->count++;
  if (time > p->max_time) p->max_time = time;
  if (isnan(x)) return;
  p->values++;
  switch (kind) {
    case TDM__AGG_SUM:
    case TDM__AGG_MEAN:
      p->a += x;
      break;
    case TDM__AGG_MIN:
      if (p->values == 1 || x < p->a) p->a = x;
      break;
    case TDM__AGG_MAX:
      if (p->values == 1 || x > p->a) p->a = x;
      break;
    case TDM__AGG_STDDEV: {
      double d = x - p->a;
      p->a += d / (double)p->values;
      p->b += d * (x - p->a);
      break;
    }
    case TDM__AGG_LAST:
      if (time >= p->last_time) {
        p->last_time = time;
        p->a = x;
      }
      break;
    default:
      break;
  }
}

/* Appends the later partial q to p (Chan et al. for stddev). */
static void partial_combine(tdm__agg_kind kind, partial *p, const partial *q) {
  p->count += q->count;
  if (q->max_time > p->max_time) p->max_time = q->max_time;
  if (q->values == 0) return;
  if (p->values == 0) {
    p->values = q->values;
    p->a = q->a;
    p->b = q->b;
    p->last_time = q->last_time;
    return;
  }
  switch (kind) {
    case TDM__AGG_SUM:
    case TDM__AGG_MEAN:
      p->a += q->a;
      break;
    case TDM__AGG_MIN:
      if (q->a < p->a) p->a = q->a;
      break;
    case TDM__AGG_MAX:
      if (q->a > p->a) p->a = q->a;
      break;
    case TDM__AGG_STDDEV: {
      double n = (double)(p->values + q->values);
      double delta = q->a - p->a;
      p->a = p->a + delta * ((double)q->values / n);
      p->b = p->b + q->b +
             delta * delta * ((double)p->values * (double)q->values / n);
      break;
    }
    case TDM__AGG_LAST:
      if (q->last_time >= p->last_time) {
        p->last_time = q->last_time;
        p->a = q->a;
      }
      break;
    default:
      break;
  }
  p->values += q->values;
}

static double partial_result(tdm__agg_kind kind, const partial *p) {
  switch (kind) {
    case TDM__AGG_COUNT:
      return (double)p->count;
    case TDM__AGG_SUM:
      return p->values ? p->a : 0.0;
    case TDM__AGG_MEAN:
      return p->values ? p->a / (double)p->values : NAN;
    case TDM__AGG_MIN:
    case TDM__AGG_MAX:
    case TDM__AGG_LAST:
      return p->values ? p->a : NAN;
    case TDM__AGG_STDDEV:
      return p->values ? sqrt(p->b / (double)p->values) : NAN;
    default:
      return NAN;
  }
}

/* ---- the spec ---- */

static const char *const kind_names[] = {
    "count", "sum", "mean", "min", "max", "stddev", "last", "since_last",
    "distinct"};

static int kind_reads_number(tdm__agg_kind k) {
  return k >= TDM__AGG_SUM && k <= TDM__AGG_LAST;
}

static size_t column_of(size_t *inputs, size_t *count, size_t input) {
  for (size_t i = 0; i < *count; i++)
    if (inputs[i] == input) return i;
  inputs[*count] = input;
  return (*count)++;
}

static void fingerprint_add(uint64_t *h, uint64_t v) {
  for (int i = 0; i < 8; i++) {
    *h ^= (v >> (8 * i)) & 0xff;
    *h *= 1099511628211ull;
  }
}

void tdm__window_spec_free(tdm__window_spec *spec) {
  if (spec == NULL) return;
  tdm__free(spec->aggs);
  tdm__free(spec->number_inputs);
  tdm__free(spec->string_inputs);
  tdm__free(spec);
}

int tdm__window_spec_new(const tdm__window_config *c, tdm__window_spec **out,
                         tdm_error *err) {
  *out = NULL;
  if (c->num_aggs > 0 && c->aggs == NULL)
    return tdm__fail(err, TDM_EINVAL, "window config: aggs is NULL");
  if (c->num_aggs > ((size_t)1 << 20))
    return tdm__fail(err, TDM_EINVAL, "window config: %zu aggregates",
                     c->num_aggs);
  if (c->lateness_ms < 0 || c->lateness_ms > TDM__WINDOW_TIME_LIMIT)
    return tdm__fail(err, TDM_EINVAL, "window config: lateness %lld ms",
                     (long long)c->lateness_ms);
  if (c->ttl_ms < 0 || c->ttl_ms > TDM__WINDOW_TIME_LIMIT)
    return tdm__fail(err, TDM_EINVAL, "window config: ttl %lld ms",
                     (long long)c->ttl_ms);
  size_t max_events =
      c->max_events ? c->max_events : TDM__WINDOW_DEFAULT_MAX_EVENTS;
  if (max_events > TDM__WINDOW_MAX_EVENTS_LIMIT)
    return tdm__fail(err, TDM_EINVAL, "window config: max_events %zu > %zu",
                     max_events, TDM__WINDOW_MAX_EVENTS_LIMIT);
  for (size_t i = 0; i < c->num_aggs; i++) {
    const tdm__agg_def *d = &c->aggs[i];
    if ((unsigned)d->kind > TDM__AGG_DISTINCT)
      return tdm__fail(err, TDM_EINVAL, "aggregate %zu: unknown kind %d", i,
                       (int)d->kind);
    const char *name = kind_names[d->kind];
    if (d->window_ms < 0 || d->window_ms > TDM__WINDOW_TIME_LIMIT)
      return tdm__fail(err, TDM_EINVAL, "aggregate %zu (%s): window %lld ms",
                       i, name, (long long)d->window_ms);
    if (d->hop_ms < 0 || d->hop_ms > TDM__WINDOW_TIME_LIMIT)
      return tdm__fail(err, TDM_EINVAL, "aggregate %zu (%s): hop %lld ms", i,
                       name, (long long)d->hop_ms);
    if (d->hop_ms > 0) {
      if (d->kind == TDM__AGG_DISTINCT || d->kind == TDM__AGG_SINCE_LAST)
        return tdm__fail(err, TDM_EINVAL,
                         "aggregate %zu (%s): a hop is not supported for %s",
                         i, name, name);
      if (d->window_ms == 0)
        return tdm__fail(err, TDM_EINVAL,
                         "aggregate %zu (%s): a hop needs a finite window", i,
                         name);
      if (d->window_ms % d->hop_ms != 0)
        return tdm__fail(err, TDM_EINVAL,
                         "aggregate %zu (%s): window %lld ms is not a multiple "
                         "of hop %lld ms",
                         i, name, (long long)d->window_ms,
                         (long long)d->hop_ms);
    }
    if (d->kind == TDM__AGG_DISTINCT && d->window_ms == 0)
      return tdm__fail(err, TDM_EINVAL,
                       "aggregate %zu (distinct): window all is unbounded; "
                       "give a window",
                       i);
    if (kind_reads_number(d->kind) && d->input >= c->num_numbers)
      return tdm__fail(err, TDM_EINVAL,
                       "aggregate %zu (%s): number input %zu of %zu", i, name,
                       d->input, c->num_numbers);
    if (d->kind == TDM__AGG_DISTINCT && d->input >= c->num_strings)
      return tdm__fail(err, TDM_EINVAL,
                       "aggregate %zu (distinct): string input %zu of %zu", i,
                       d->input, c->num_strings);
    if (d->filter != SIZE_MAX && d->filter >= c->num_filters)
      return tdm__fail(err, TDM_EINVAL, "aggregate %zu (%s): filter %zu of %zu",
                       i, name, d->filter, c->num_filters);
  }

  tdm__window_spec *s = tdm__calloc(1, sizeof *s);
  if (s == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  s->aggs = tdm__calloc(c->num_aggs, sizeof *s->aggs);
  s->number_inputs = tdm__calloc(c->num_aggs, sizeof(size_t));
  s->string_inputs = tdm__calloc(c->num_aggs, sizeof(size_t));
  if (s->aggs == NULL || s->number_inputs == NULL || s->string_inputs == NULL) {
    tdm__window_spec_free(s);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  s->num_aggs = c->num_aggs;
  s->num_numbers = c->num_numbers;
  s->num_strings = c->num_strings;
  s->num_filters = c->num_filters;
  s->lateness = c->lateness_ms;
  s->ttl = c->ttl_ms;
  s->max_events = max_events;
  int64_t reach = 0; /* the longest exact window or hop */
  uint64_t h = 14695981039346656037ull;
  fingerprint_add(&h, c->num_aggs);
  fingerprint_add(&h, c->num_numbers);
  fingerprint_add(&h, c->num_strings);
  fingerprint_add(&h, c->num_filters);
  fingerprint_add(&h, (uint64_t)c->lateness_ms);
  fingerprint_add(&h, (uint64_t)c->ttl_ms);
  fingerprint_add(&h, max_events);
  for (size_t i = 0; i < c->num_aggs; i++) {
    const tdm__agg_def *d = &c->aggs[i];
    agg_plan *p = &s->aggs[i];
    p->kind = d->kind;
    p->window = d->window_ms;
    p->hop = d->hop_ms;
    p->input = d->input;
    p->filter = d->filter;
    fingerprint_add(&h, (uint64_t)d->kind);
    fingerprint_add(&h, (uint64_t)d->window_ms);
    fingerprint_add(&h, (uint64_t)d->hop_ms);
    fingerprint_add(&h, d->kind == TDM__AGG_COUNT ||
                                d->kind == TDM__AGG_SINCE_LAST
                            ? 0
                            : d->input);
    fingerprint_add(&h, d->filter);
    if (d->kind == TDM__AGG_SINCE_LAST)
      p->role = ROLE_SINCE_LAST;
    else if (d->window_ms == 0)
      p->role = ROLE_ALL;
    else if (d->hop_ms > 0)
      p->role = ROLE_HOPPED;
    else
      p->role = ROLE_EXACT;
    if (p->role == ROLE_HOPPED) {
      p->buckets = d->window_ms / d->hop_ms;
      if (d->hop_ms > reach) reach = d->hop_ms;
    }
    if (p->role == ROLE_EXACT && d->window_ms > reach) reach = d->window_ms;
    if (p->role == ROLE_EXACT && d->kind == TDM__AGG_DISTINCT)
      s->exact_distinct = 1;
    if (p->role == ROLE_EXACT || p->role == ROLE_HOPPED) {
      s->needs_log = 1;
      if (kind_reads_number(d->kind))
        p->number_column =
            column_of(s->number_inputs, &s->number_columns, d->input);
      if (d->kind == TDM__AGG_DISTINCT) {
        p->string_column =
            column_of(s->string_inputs, &s->string_columns, d->input);
      }
      if (d->filter != SIZE_MAX) {
        size_t bit = column_of(s->filter_inputs, &s->filter_bits, d->filter);
        if (s->filter_bits > 64) {
          tdm__window_spec_free(s);
          return tdm__fail(err, TDM_EINVAL,
                           "aggregate %zu (%s): more than 64 different "
                           "filters on windows",
                           i, kind_names[d->kind]);
        }
        p->filter_mask = (uint64_t)1 << bit;
      }
    }
  }
  s->horizon = reach + s->lateness;
  s->fingerprint = h;
  *out = s;
  return TDM_OK;
}

/* ---- the entity ---- */

static void run_clear(running *r) {
  r->cut = 0;
  r->count = r->values = r->positive_inf = r->negative_inf = 0;
  tdm__exact_clear(&r->sum);
  tdm__exact_clear(&r->squares);
  r->queue_head = r->queue_len = 0;
  if (r->slot_used > 0) memset(r->slots, 0, r->slot_cap * sizeof *r->slots);
  r->slot_used = 0;
  r->stale = 0;
}

static void entity_clear(const tdm__window_spec *s, tdm__entity *e) {
  e->max_time = INT64_MIN;
  for (size_t i = 0; i < s->num_aggs; i++) {
    partial_clear(&e->aggs[i].all);
    e->aggs[i].previous_time = INT64_MIN;
    e->aggs[i].num_buckets = 0;
  }
  e->start = e->end = 0;
  e->bytes_base = e->bytes_free = e->bytes_end = 0;
  for (size_t i = 0; i < e->num_folds; i++) e->folds[i].cached = 0;
  e->first_seq = 0;
  e->order_start = e->order_end = 0;
  for (size_t i = 0; i < e->num_runs; i++) run_clear(&e->runs[i]);
}

int tdm__entity_new(const tdm__window_spec *s, tdm__entity **out) {
  *out = NULL;
  tdm__entity *e = tdm__calloc(1, sizeof *e);
  if (e == NULL) return TDM_ENOMEM;
  e->aggs = tdm__calloc(s->num_aggs, sizeof *e->aggs);
  if (e->aggs == NULL) {
    tdm__free(e);
    return TDM_ENOMEM;
  }
  e->num_aggs = s->num_aggs;
  size_t exact = 0;
  for (size_t i = 0; i < s->num_aggs; i++)
    exact += s->aggs[i].role == ROLE_EXACT;
  if (exact > 0) {
    e->runs = tdm__calloc(exact, sizeof *e->runs);
    if (e->runs == NULL) {
      tdm__free(e->aggs);
      tdm__free(e);
      return TDM_ENOMEM;
    }
    e->num_runs = exact;
    exact = 0;
    for (size_t i = 0; i < s->num_aggs; i++)
      if (s->aggs[i].role == ROLE_EXACT) {
        running *r = &e->runs[exact++];
        tdm__exact_init(&r->sum);
        tdm__exact_init(&r->squares);
        e->aggs[i].run = r;
      }
  }
  size_t hopped = 0;
  for (size_t i = 0; i < s->num_aggs; i++)
    hopped += s->aggs[i].role == ROLE_HOPPED;
  if (hopped > 0) {
    e->folds = tdm__calloc(hopped, sizeof *e->folds);
    if (e->folds == NULL) {
      tdm__free(e->runs);
      tdm__free(e->aggs);
      tdm__free(e);
      return TDM_ENOMEM;
    }
    e->num_folds = hopped;
    hopped = 0;
    for (size_t i = 0; i < s->num_aggs; i++)
      if (s->aggs[i].role == ROLE_HOPPED) e->aggs[i].memo = &e->folds[hopped++];
  }
  entity_clear(s, e);
  *out = e;
  return TDM_OK;
}

void tdm__entity_free(tdm__entity *e) {
  if (e == NULL) return;
  tdm__free(e->block);
  tdm__free(e->bytes);
  for (size_t i = 0; i < e->num_aggs; i++) tdm__free(e->aggs[i].buckets);
  for (size_t i = 0; i < e->num_runs; i++) {
    running *r = &e->runs[i];
    tdm__exact_free(&r->sum);
    tdm__exact_free(&r->squares);
    tdm__free(r->queue);
    tdm__free(r->slots);
  }
  tdm__free(e->runs);
  tdm__free(e->order);
  tdm__free(e->aggs);
  tdm__free(e->folds);
  tdm__free(e);
}

int64_t tdm__entity_max_time(const tdm__entity *e) { return e->max_time; }

/* The cache lines of [p, p + bytes). */
static void prefetch_range(const void *p, size_t bytes) {
  const char *c = p;
  for (size_t at = 0; at < bytes; at += 64) __builtin_prefetch(c + at);
}

void tdm__entity_prefetch(const tdm__entity *e, int stage) {
  if (stage == 0) {
    prefetch_range(e->aggs, e->num_aggs * sizeof *e->aggs);
    prefetch_range(e->runs, e->num_runs * sizeof *e->runs);
    prefetch_range(e->folds, e->num_folds * sizeof *e->folds);
    if (e->block == NULL) return;
    /* Where the next entry of the log goes, column by column. */
    size_t j = e->end < e->cap ? e->end : e->cap - 1;
    __builtin_prefetch(&e->times[j]);
    __builtin_prefetch(&e->reach[j]);
    __builtin_prefetch(&e->filters[j]);
    size_t number_columns = (size_t)((char *)e->strings - (char *)e->numbers) /
                            (e->cap * sizeof(double));
    for (size_t c = 0; e->numbers != NULL && c < number_columns && c < 16; c++)
      __builtin_prefetch(&e->numbers[c * e->cap + j]);
    size_t string_columns =
        (e->block_bytes / e->cap - 3 * sizeof(int64_t) -
         number_columns * sizeof(double)) / sizeof(log_string);
    for (size_t c = 0; c < string_columns && c < 16; c++)
      __builtin_prefetch(&e->strings[c * e->cap + j]);
    if (e->bytes != NULL)
      __builtin_prefetch(e->bytes + (size_t)(e->bytes_end - e->bytes_base));
    if (e->order != NULL && e->order_end < e->order_cap)
      __builtin_prefetch(&e->order[e->order_end]);
    return;
  }
  for (size_t i = 0; i < e->num_aggs; i++) {
    const agg_state *st = &e->aggs[i];
    if (st->buckets != NULL && st->num_buckets > 0) {
      __builtin_prefetch(st->buckets);
      __builtin_prefetch(&st->buckets[st->num_buckets - 1]);
    }
  }
  for (size_t i = 0; i < e->num_runs; i++) {
    const running *r = &e->runs[i];
    if (r->sum.limb != NULL) __builtin_prefetch(r->sum.limb);
    if (r->squares.limb != NULL) __builtin_prefetch(r->squares.limb);
    if (r->queue != NULL) __builtin_prefetch(&r->queue[r->queue_head]);
    if (e->order != NULL && r->cut < e->order_end)
      __builtin_prefetch(&e->order[r->cut]);
  }
}

size_t tdm__entity_memory(const tdm__entity *e) {
  size_t m = sizeof *e + e->num_aggs * sizeof *e->aggs +
             e->num_folds * sizeof *e->folds + e->block_bytes +
             e->bytes_cap;
  for (size_t i = 0; i < e->num_aggs; i++)
    m += e->aggs[i].cap_buckets * sizeof(partial);
  m += e->order_cap * sizeof *e->order + e->num_runs * sizeof *e->runs;
  for (size_t i = 0; i < e->num_runs; i++) {
    const running *r = &e->runs[i];
    m += (r->sum.len + r->squares.len) * sizeof(int64_t) +
         r->queue_cap * sizeof *r->queue + r->slot_cap * sizeof *r->slots;
  }
  return m;
}

/* ---- the log ---- */

static size_t log_entry_bytes(const tdm__window_spec *s) {
  return 2 * sizeof(int64_t) + sizeof(uint64_t) +
         s->number_columns * sizeof(double) +
         s->string_columns * sizeof(log_string);
}

static void log_point(const tdm__window_spec *s, tdm__entity *e, void *block,
                      size_t cap) {
  char *p = block;
  e->block = block;
  e->cap = cap;
  e->times = (int64_t *)(void *)p;
  p += cap * sizeof(int64_t);
  e->reach = (int64_t *)(void *)p;
  p += cap * sizeof(int64_t);
  e->filters = (uint64_t *)(void *)p;
  p += cap * sizeof(uint64_t);
  e->numbers = (double *)(void *)p;
  p += cap * s->number_columns * sizeof(double);
  e->strings = (log_string *)(void *)p;
}

/* Copies the live entries [start, end) of e's log to entry 0 of the
 * columns at block (of capacity cap), which may be e's own block. */
static void log_move(const tdm__window_spec *s, tdm__entity *e, void *block,
                     size_t cap) {
  size_t live = e->end - e->start;
  int64_t *old_times = e->times;
  int64_t *old_reach = e->reach;
  uint64_t *old_filters = e->filters;
  double *old_numbers = e->numbers;
  log_string *old_strings = e->strings;
  size_t old_cap = e->cap, start = e->start;
  log_point(s, e, block, cap);
  e->start = 0;
  e->end = live;
  if (live == 0) return; /* the old block may be NULL */
  memmove(e->times, old_times + start, live * sizeof(int64_t));
  memmove(e->reach, old_reach + start, live * sizeof(int64_t));
  memmove(e->filters, old_filters + start, live * sizeof(uint64_t));
  for (size_t c = 0; c < s->number_columns; c++)
    memmove(e->numbers + c * cap, old_numbers + c * old_cap + start,
            live * sizeof(double));
  for (size_t c = 0; c < s->string_columns; c++)
    memmove(e->strings + c * cap, old_strings + c * old_cap + start,
            live * sizeof(log_string));
}

/* Makes room for one more log entry at e->end. */
static int log_reserve(const tdm__window_spec *s, tdm__entity *e) {
  if (e->end < e->cap) return TDM_OK;
  size_t live = e->end - e->start;
  if (live + 1 <= e->cap / 2) {
    log_move(s, e, e->block, e->cap); /* same capacity: compact */
    return TDM_OK;
  }
  size_t cap = e->cap ? e->cap * 2 : 8;
  while (cap < live + 1) cap *= 2;
  size_t bytes = cap * log_entry_bytes(s);
  void *block = tdm__malloc(bytes);
  if (block == NULL) return TDM_ENOMEM;
  void *old = e->block;
  log_move(s, e, block, cap);
  tdm__free(old);
  e->block_bytes = bytes;
  return TDM_OK;
}

/* Makes room for n more string bytes at the end of the byte queue. */
static int bytes_reserve(tdm__entity *e, size_t n) {
  size_t used = (size_t)(e->bytes_end - e->bytes_base);
  if (used + n <= e->bytes_cap) return TDM_OK;
  size_t live = (size_t)(e->bytes_end - e->bytes_free);
  size_t skip = (size_t)(e->bytes_free - e->bytes_base);
  if (live + n <= e->bytes_cap / 2) {
    memmove(e->bytes, e->bytes + skip, live);
  } else {
    size_t cap = e->bytes_cap ? e->bytes_cap * 2 : 64;
    while (cap < 2 * (live + n)) cap *= 2;
    char *bytes = tdm__malloc(cap);
    if (bytes == NULL) return TDM_ENOMEM;
    if (live > 0) memcpy(bytes, e->bytes + skip, live);
    tdm__free(e->bytes);
    e->bytes = bytes;
    e->bytes_cap = cap;
  }
  e->bytes_base = e->bytes_free;
  return TDM_OK;
}

static int buckets_reserve(agg_state *st) {
  if (st->num_buckets < st->cap_buckets) return TDM_OK;
  size_t cap = st->cap_buckets ? st->cap_buckets * 2 : 4;
  partial *b = tdm__realloc(st->buckets, cap * sizeof *b);
  if (b == NULL) return TDM_ENOMEM;
  st->buckets = b;
  st->cap_buckets = cap;
  return TDM_OK;
}

/* Appends a string (room reserved) to the byte queue. */
static log_string bytes_push(tdm__entity *e, const char *data, size_t len) {
  log_string ls;
  if (data == NULL) {
    ls.pos = e->bytes_end;
    ls.len = MISSING_LEN;
    ls.hash = 0;
    return ls;
  }
  ls.pos = e->bytes_end;
  ls.len = (uint32_t)len;
  ls.hash = hash_bytes(data, len);
  if (len > 0)
    memcpy(e->bytes + (size_t)(e->bytes_end - e->bytes_base), data, len);
  e->bytes_end += len;
  return ls;
}

/* ---- exact windows: the running state ---- */

static size_t log_index(const tdm__entity *e, uint64_t seq) {
  return e->start + (size_t)(seq - e->first_seq);
}

static int64_t seq_time(const tdm__entity *e, uint64_t seq) {
  return e->times[log_index(e, seq)];
}

/* a comes before b in time order: by time, then by arrival. */
static int seq_before(const tdm__entity *e, uint64_t a, uint64_t b) {
  int64_t ta = seq_time(e, a), tb = seq_time(e, b);
  return ta < tb || (ta == tb && a < b);
}

static int entry_passes(const agg_plan *p, const tdm__entity *e, size_t j) {
  return (e->filters[j] & p->filter_mask) == p->filter_mask;
}

static double entry_number(const agg_plan *p, const tdm__entity *e, size_t j) {
  return e->numbers[p->number_column * e->cap + j];
}

static const log_string *entry_string(const agg_plan *p, const tdm__entity *e,
                                      size_t j) {
  return &e->strings[p->string_column * e->cap + j];
}

static int same_string(const tdm__entity *e, const log_string *a,
                       const log_string *b) {
  return a->hash == b->hash && a->len == b->len &&
         (a->len == 0 ||
          memcmp(e->bytes + (size_t)(a->pos - e->bytes_base),
                 e->bytes + (size_t)(b->pos - e->bytes_base), a->len) == 0);
}

static uint64_t queue_at(const running *r, size_t i) {
  return r->queue[(r->queue_head + i) & (r->queue_cap - 1)];
}

/* Appends a member later in time order than every member in the queue. */
static void queue_push(const agg_plan *p, const tdm__entity *e, running *r,
                       uint64_t seq, double x) {
  while (r->queue_len > 0) {
    double back = entry_number(p, e, log_index(e, queue_at(r, r->queue_len - 1)));
    int drop = p->kind == TDM__AGG_LAST ||
               (p->kind == TDM__AGG_MIN ? back >= x : back <= x);
    if (!drop) break;
    r->queue_len--;
  }
  r->queue[(r->queue_head + r->queue_len) & (r->queue_cap - 1)] = seq;
  r->queue_len++;
}

/* The slot holding the value of ls, or the empty slot where it goes. */
static size_t map_find(const agg_plan *p, const tdm__entity *e,
                       const running *r, const log_string *ls) {
  size_t mask = r->slot_cap - 1, i = ls->hash & mask;
  while (r->slots[i].count != 0 &&
         !same_string(e, entry_string(p, e, log_index(e, r->slots[i].rep)),
                      ls))
    i = (i + 1) & mask;
  return i;
}

static void map_add(const agg_plan *p, const tdm__entity *e, running *r,
                    uint64_t seq) {
  const log_string *ls = entry_string(p, e, log_index(e, seq));
  if (ls->len == MISSING_LEN) return;
  size_t i = map_find(p, e, r, ls);
  distinct_slot *slot = &r->slots[i];
  if (slot->count == 0) {
    slot->count = 1;
    slot->rep = seq;
    slot->hash = ls->hash;
    r->slot_used++;
  } else {
    slot->count++;
    if (seq_before(e, slot->rep, seq)) slot->rep = seq;
  }
}

static void map_remove(const agg_plan *p, const tdm__entity *e, running *r,
                       uint64_t seq) {
  const log_string *ls = entry_string(p, e, log_index(e, seq));
  if (ls->len == MISSING_LEN) return;
  size_t mask = r->slot_cap - 1, hole = map_find(p, e, r, ls);
  distinct_slot *slot = &r->slots[hole];
  if (--slot->count > 0) {
    /* Its key bytes leave with it, and the next latest member with the
     * value is not known: rebuild before the next read. */
    if (slot->rep == seq) r->stale = 1;
    return;
  }
  r->slot_used--;
  /* Linear probing without tombstones: move later slots of the cluster
   * back into the hole when their home position allows it. */
  for (size_t j = (hole + 1) & mask; r->slots[j].count != 0;
       j = (j + 1) & mask) {
    size_t home = r->slots[j].hash & mask;
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      r->slots[hole] = r->slots[j];
      hole = j;
    }
  }
  memset(&r->slots[hole], 0, sizeof r->slots[hole]);
}

/* The entry seq becomes a member of p's window; at_end: it is the latest
 * in time order of the members. */
static void run_enter(const agg_plan *p, const tdm__entity *e, running *r,
                      uint64_t seq, int at_end) {
  size_t j = log_index(e, seq);
  if (!entry_passes(p, e, j)) return;
  r->count++;
  if (kind_reads_number(p->kind)) {
    double x = entry_number(p, e, j);
    if (isnan(x)) return;
    r->values++;
    if (isinf(x)) {
      if (x > 0) r->positive_inf++; else r->negative_inf++;
    } else if (p->kind == TDM__AGG_SUM || p->kind == TDM__AGG_MEAN ||
               p->kind == TDM__AGG_STDDEV) {
      tdm__exact_add(&r->sum, x, 0, 1);
      if (p->kind == TDM__AGG_STDDEV) tdm__exact_add(&r->squares, x, 1, 1);
    }
    if ((p->kind == TDM__AGG_MIN || p->kind == TDM__AGG_MAX ||
         p->kind == TDM__AGG_LAST) && !r->stale) {
      if (at_end)
        queue_push(p, e, r, seq, x);
      else
        r->stale = 1;
    }
  } else if (p->kind == TDM__AGG_DISTINCT && !r->stale) {
    map_add(p, e, r, seq);
  }
}

/* The entry seq leaves p's window; at_cut: it is at the window's start
 * position, so no member is earlier in time order. */
static void run_leave(const agg_plan *p, const tdm__entity *e, running *r,
                      uint64_t seq, int at_cut) {
  size_t j = log_index(e, seq);
  if (!entry_passes(p, e, j)) return;
  r->count--;
  if (kind_reads_number(p->kind)) {
    double x = entry_number(p, e, j);
    if (isnan(x)) return;
    r->values--;
    if (isinf(x)) {
      if (x > 0) r->positive_inf--; else r->negative_inf--;
    } else if (p->kind == TDM__AGG_SUM || p->kind == TDM__AGG_MEAN ||
               p->kind == TDM__AGG_STDDEV) {
      tdm__exact_add(&r->sum, x, 0, -1);
      if (p->kind == TDM__AGG_STDDEV) tdm__exact_add(&r->squares, x, 1, -1);
    }
    if ((p->kind == TDM__AGG_MIN || p->kind == TDM__AGG_MAX ||
         p->kind == TDM__AGG_LAST) && !r->stale) {
      /* Earlier members the queue dropped for this one may be the
       * answer once it is gone: only the earliest member leaves simply. */
      if (!at_cut) {
        r->stale = 1;
      } else if (r->queue_len > 0 && queue_at(r, 0) == seq) {
        r->queue_head = (r->queue_head + 1) & (r->queue_cap - 1);
        r->queue_len--;
      }
    }
  } else if (p->kind == TDM__AGG_DISTINCT && !r->stale) {
    map_remove(p, e, r, seq);
  }
}

/* Rebuilds a stale queue or map from the members, in time order. */
static void run_refresh(const agg_plan *p, const tdm__entity *e, running *r) {
  if (!r->stale) return;
  r->stale = 0;
  r->queue_head = r->queue_len = 0;
  if (r->slot_cap > 0) memset(r->slots, 0, r->slot_cap * sizeof *r->slots);
  r->slot_used = 0;
  for (size_t i = r->cut; i < e->order_end; i++) {
    uint64_t seq = e->order[i];
    size_t j = log_index(e, seq);
    if (!entry_passes(p, e, j)) continue;
    if (p->kind == TDM__AGG_DISTINCT) {
      map_add(p, e, r, seq);
    } else {
      double x = entry_number(p, e, j);
      if (!isnan(x)) queue_push(p, e, r, seq, x);
    }
  }
}

/* The first position in the time order whose entry is later than
 * (time, seq) (seq UINT64_MAX: than every entry at time). */
static size_t order_upper(const tdm__entity *e, int64_t time, uint64_t seq) {
  size_t lo = e->order_start, hi = e->order_end;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    uint64_t m = e->order[mid];
    int64_t tm = seq_time(e, m);
    if (tm < time || (tm == time && m <= seq))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Makes room for one more entry at order_end. */
static int order_reserve(tdm__entity *e) {
  if (e->order_end < e->order_cap) return TDM_OK;
  size_t live = e->order_end - e->order_start;
  uint64_t *order = e->order;
  if (live + 1 > e->order_cap / 2) {
    size_t cap = e->order_cap ? 2 * e->order_cap : 8;
    while (cap < live + 1) cap *= 2;
    order = tdm__malloc(cap * sizeof *order);
    if (order == NULL) return TDM_ENOMEM;
    e->order_cap = cap;
  }
  if (live > 0) memmove(order, e->order + e->order_start, live * sizeof *order);
  for (size_t i = 0; i < e->num_runs; i++) e->runs[i].cut -= e->order_start;
  if (order != e->order) tdm__free(e->order);
  e->order = order;
  e->order_start = 0;
  e->order_end = live;
  return TDM_OK;
}

/* Grows a queue's ring to hold n members. */
static int queue_reserve(running *r, size_t n) {
  if (r->queue_cap >= n) return TDM_OK;
  size_t cap = r->queue_cap ? r->queue_cap : 8;
  while (cap < n) cap *= 2;
  uint64_t *queue = tdm__malloc(cap * sizeof *queue);
  if (queue == NULL) return TDM_ENOMEM;
  for (size_t i = 0; i < r->queue_len; i++) queue[i] = queue_at(r, i);
  tdm__free(r->queue);
  r->queue = queue;
  r->queue_cap = cap;
  r->queue_head = 0;
  return TDM_OK;
}

/* Grows a map to take one more value with a load of at most 3/4. A
 * stale map is rebuilt from all its members, whose values it may not have
 * counted yet: room for as many values as members, then. */
static int map_reserve(running *r) {
  size_t need = (r->stale ? r->count : r->slot_used) + 1;
  if (need * 4 <= r->slot_cap * 3) return TDM_OK;
  size_t cap = r->slot_cap ? 2 * r->slot_cap : 8;
  while (need * 4 > cap * 3) cap *= 2;
  distinct_slot *slots = tdm__calloc(cap, sizeof *slots);
  if (slots == NULL) return TDM_ENOMEM;
  for (size_t i = 0; i < r->slot_cap; i++) {
    if (r->slots[i].count == 0) continue;
    size_t k = r->slots[i].hash & (cap - 1);
    while (slots[k].count != 0) k = (k + 1) & (cap - 1);
    slots[k] = r->slots[i];
  }
  tdm__free(r->slots);
  r->slots = slots;
  r->slot_cap = cap;
  return TDM_OK;
}

/* Everything applying ev may need, so that it cannot fail later. */
static int runs_reserve(const tdm__window_spec *s, tdm__entity *e,
                        const tdm__window_event *ev) {
  if (e->num_runs == 0) return TDM_OK;
  if (order_reserve(e) != TDM_OK) return TDM_ENOMEM;
  size_t live = e->end - e->start + 1;
  for (size_t i = 0; i < s->num_aggs; i++) {
    const agg_plan *p = &s->aggs[i];
    running *r = e->aggs[i].run;
    if (p->role != ROLE_EXACT) continue;
    double x = kind_reads_number(p->kind) ? normalize(ev->numbers[p->input])
                                          : NAN;
    int rc = TDM_OK;
    switch (p->kind) {
      case TDM__AGG_STDDEV:
        rc = tdm__exact_reserve(&r->squares, x, 1);
        /* fall through */
      case TDM__AGG_SUM:
      case TDM__AGG_MEAN:
        if (rc == TDM_OK) rc = tdm__exact_reserve(&r->sum, x, 0);
        break;
      case TDM__AGG_MIN:
      case TDM__AGG_MAX:
      case TDM__AGG_LAST:
        rc = queue_reserve(r, live);
        break;
      case TDM__AGG_DISTINCT:
        rc = map_reserve(r);
        break;
      default:
        break;
    }
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}

/* Windows move forward with M: entries no later than M - w leave. */
static void runs_advance(const tdm__window_spec *s, tdm__entity *e) {
  for (size_t i = 0; i < s->num_aggs; i++) {
    const agg_plan *p = &s->aggs[i];
    if (p->role != ROLE_EXACT) continue;
    running *r = e->aggs[i].run;
    int64_t threshold = e->max_time - p->window;
    while (r->cut < e->order_end &&
           seq_time(e, e->order[r->cut]) <= threshold) {
      run_leave(p, e, r, e->order[r->cut], 1);
      r->cut++;
    }
  }
}

/* Puts the newest log entry into the time order (room reserved) and into
 * the windows it falls in: those of width w with its time > M - w. */
static void runs_insert(const tdm__window_spec *s, tdm__entity *e) {
  size_t j = e->end - 1;
  uint64_t seq = e->first_seq + (j - e->start);
  int64_t t = e->times[j];
  size_t at = e->order_end;
  int late = at > e->order_start && seq_time(e, e->order[at - 1]) > t;
  if (late) {
    at = order_upper(e, t, UINT64_MAX);
    memmove(e->order + at + 1, e->order + at,
            (e->order_end - at) * sizeof *e->order);
  }
  e->order[at] = seq;
  e->order_end++;
  for (size_t i = 0; i < s->num_aggs; i++) {
    const agg_plan *p = &s->aggs[i];
    if (p->role != ROLE_EXACT) continue;
    running *r = e->aggs[i].run;
    if (t > e->max_time - p->window)
      run_enter(p, e, r, seq, !late);
    else
      r->cut++; /* it is placed before the window's start */
  }
}

/* Takes the log entry seq (about to be dropped) out of the time order and
 * the windows. */
static void runs_remove(const tdm__window_spec *s, tdm__entity *e,
                        uint64_t seq) {
  size_t at = e->order_start;
  if (e->order[at] != seq) at = order_upper(e, seq_time(e, seq), seq) - 1;
  for (size_t i = 0; i < s->num_aggs; i++) {
    const agg_plan *p = &s->aggs[i];
    if (p->role != ROLE_EXACT) continue;
    running *r = e->aggs[i].run;
    if (at >= r->cut) run_leave(p, e, r, seq, at == r->cut);
    if (r->cut <= at) r->cut++;
  }
  memmove(e->order + e->order_start + 1, e->order + e->order_start,
          (at - e->order_start) * sizeof *e->order);
  e->order_start++;
}

typedef struct timed_seq {
  int64_t time;
  uint64_t seq;
} timed_seq;

static int timed_seq_compare(const void *a, const void *b) {
  const timed_seq *x = a, *y = b;
  if (x->time != y->time) return x->time < y->time ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Builds the time order and the running states of a freshly decoded log
 * (entity otherwise empty). TDM_ENOMEM. */
static int runs_rebuild(const tdm__window_spec *s, tdm__entity *e) {
  if (e->num_runs == 0) return TDM_OK;
  size_t live = e->end - e->start, cap = 8;
  while (cap < live + 1) cap *= 2;
  timed_seq *sorted = tdm__malloc((live ? live : 1) * sizeof *sorted);
  uint64_t *order = tdm__malloc(cap * sizeof *order);
  if (sorted == NULL || order == NULL) {
    tdm__free(sorted);
    tdm__free(order);
    return TDM_ENOMEM;
  }
  for (size_t k = 0; k < live; k++) {
    sorted[k].time = e->times[e->start + k];
    sorted[k].seq = e->first_seq + k;
  }
  qsort(sorted, live, sizeof *sorted, timed_seq_compare);
  for (size_t k = 0; k < live; k++) order[k] = sorted[k].seq;
  tdm__free(sorted);
  tdm__free(e->order);
  e->order = order;
  e->order_cap = cap;
  e->order_start = 0;
  e->order_end = live;
  for (size_t i = 0; i < s->num_aggs; i++) {
    const agg_plan *p = &s->aggs[i];
    if (p->role != ROLE_EXACT) continue;
    running *r = e->aggs[i].run;
    if (live == 0) continue; /* M may be INT64_MIN */
    r->cut = order_upper(e, e->max_time - p->window, UINT64_MAX);
    if (queue_reserve(r, live + 1) != TDM_OK) return TDM_ENOMEM;
    for (size_t k = r->cut; k < live; k++) {
      size_t j = log_index(e, order[k]);
      if (kind_reads_number(p->kind)) {
        double x = entry_number(p, e, j);
        if (tdm__exact_reserve(&r->sum, x, 0) != TDM_OK ||
            tdm__exact_reserve(&r->squares, x, p->kind == TDM__AGG_STDDEV) !=
                TDM_OK)
          return TDM_ENOMEM;
      }
      if (p->kind == TDM__AGG_DISTINCT && map_reserve(r) != TDM_OK)
        return TDM_ENOMEM;
      run_enter(p, e, r, order[k], 1);
    }
  }
  return TDM_OK;
}

/* Drops the log's first entry. */
static void log_drop_first(const tdm__window_spec *s, tdm__entity *e) {
  if (e->num_runs > 0) runs_remove(s, e, e->first_seq);
  for (size_t c = 0; c < s->string_columns; c++) {
    const log_string *ls = &e->strings[c * e->cap + e->start];
    if (ls->len != MISSING_LEN) e->bytes_free = ls->pos + ls->len;
  }
  e->start++;
  e->first_seq++;
  if (e->start == e->end) {
    e->start = e->end = 0;
    e->bytes_base = e->bytes_free = e->bytes_end = 0;
  }
}

/* Drops log entries from the front: those beyond max_events and those no
 * longer live (t <= M - R). */
static void log_evict(const tdm__window_spec *s, tdm__entity *e) {
  int64_t dead = e->max_time - s->horizon;
  while (e->end > e->start &&
         (e->end - e->start > s->max_events || e->times[e->start] <= dead))
    log_drop_first(s, e);
}

/* ---- computing the aggregates ---- */

/* The log entries an aggregate may see besides the event itself (at
 * e->end - 1): the last max_events - 1 before it, live, in the window. */
#define SCAN_SETUP()                                                  \
  size_t last = e->end - 1;                                           \
  size_t first = e->start;                                            \
  if (last + 1 - first > s->max_events) first = last + 1 - s->max_events; \
  const int64_t *tm = e->times;                                       \
  const uint64_t *fl = e->filters;                                    \
  uint64_t mask = p->filter_mask;                                     \
  int self = (fl[last] & mask) == mask

/* Runs the statements for every member j of the window, in arrival
 * order, the event itself last. */
#define SCAN(...)                                                   \
  do {                                                              \
    for (size_t j = first; j < last; j++)                           \
      if (tm[j] > lo && tm[j] <= t && (fl[j] & mask) == mask) {     \
        __VA_ARGS__                                                 \
      }                                                             \
    if (self) {                                                     \
      size_t j = last;                                              \
      (void)j;                                                      \
      __VA_ARGS__                                                   \
    }                                                               \
  } while (0)

/* The first j in [first, last) with reach[j] > lo (last if none): the
 * entries before it all have times <= lo. */
static size_t skip_old(const tdm__entity *e, size_t first, size_t last,
                       int64_t lo) {
  const int64_t *reach = e->reach;
  size_t hi = last;
  while (first < hi) {
    size_t mid = first + (hi - first) / 2;
    if (reach[mid] <= lo)
      first = mid + 1;
    else
      hi = mid;
  }
  return first;
}

/* sum, mean or stddev of `values` numbers (not NaN): those infinite
 * counted apart, the others summed exactly in sum and, for stddev, their
 * squares in squares (docs/windows.md, "Order of arithmetic"). */
static double numeric_result(tdm__agg_kind kind, uint64_t values,
                             uint64_t positive_inf, uint64_t negative_inf,
                             tdm__exact_sum *sum,
                             const tdm__exact_sum *squares) {
  if (values == 0) return kind == TDM__AGG_SUM ? 0.0 : NAN;
  double total = positive_inf && negative_inf ? NAN
                 : positive_inf               ? INFINITY
                 : negative_inf               ? -INFINITY
                                              : tdm__exact_round(sum);
  if (kind == TDM__AGG_SUM) return total;
  double mean = total / (double)values;
  if (kind == TDM__AGG_MEAN || isnan(mean)) return mean;
  if (!isfinite(mean)) return NAN;
  /* The sum of squared deviations from the mean, exactly:
   * squares - 2 * mean * sum + values * mean^2, rounded once. */
  int64_t limbs[TDM__EXACT_LIMBS];
  tdm__exact_sum deviations;
  tdm__exact_copy_full(&deviations, limbs, squares);
  tdm__exact_add_scaled(&deviations, sum, mean, -1, 1);
  tdm__exact_add_count_square(&deviations, mean, values);
  return sqrt(tdm__exact_round(&deviations) / (double)values);
}

/* An in-order event's exact window: the running state. */
static double running_value(const agg_plan *p, tdm__entity *e, running *r) {
  run_refresh(p, e, r);
  switch (p->kind) {
    case TDM__AGG_COUNT:
      return (double)r->count;
    case TDM__AGG_SUM:
    case TDM__AGG_MEAN:
    case TDM__AGG_STDDEV:
      return numeric_result(p->kind, r->values, r->positive_inf,
                            r->negative_inf, &r->sum, &r->squares);
    case TDM__AGG_MIN:
    case TDM__AGG_MAX:
    case TDM__AGG_LAST:
      if (r->queue_len == 0) return NAN;
      return entry_number(p, e, log_index(e, queue_at(r, 0)));
    case TDM__AGG_DISTINCT:
      return (double)r->slot_used;
    default:
      return NAN;
  }
}

/* A late event's exact window, by scanning the log. scratch: a zeroed
 * hash set (for distinct) of scratch_cap slots, a power of two above
 * twice the log's entries. */
static double exact_value(const tdm__window_spec *s, tdm__entity *e,
                          const agg_plan *p, int64_t t, uint64_t *scratch,
                          size_t scratch_cap) {
  SCAN_SETUP();
  int64_t lo = t - p->window, dead = e->max_time - s->horizon;
  if (dead > lo) lo = dead;
  first = skip_old(e, first, last, lo);
  const double *x = e->numbers + p->number_column * e->cap;
  switch (p->kind) {
    case TDM__AGG_COUNT: {
      uint64_t n = 0;
      SCAN(n++;);
      return (double)n;
    }
    case TDM__AGG_SUM:
    case TDM__AGG_MEAN:
    case TDM__AGG_STDDEV: {
      int64_t sum_limbs[TDM__EXACT_LIMBS], square_limbs[TDM__EXACT_LIMBS];
      tdm__exact_sum sum, squares;
      tdm__exact_init_full(&sum, sum_limbs);
      int deviation = p->kind == TDM__AGG_STDDEV;
      if (deviation) tdm__exact_init_full(&squares, square_limbs);
      uint64_t n = 0, positive_inf = 0, negative_inf = 0;
      SCAN(if (!isnan(x[j])) {
        n++;
        if (isinf(x[j])) {
          if (x[j] > 0) positive_inf++; else negative_inf++;
        } else {
          tdm__exact_add(&sum, x[j], 0, 1);
          if (deviation) tdm__exact_add(&squares, x[j], 1, 1);
        }
      });
      return numeric_result(p->kind, n, positive_inf, negative_inf, &sum,
                            deviation ? &squares : &sum);
    }
    case TDM__AGG_MIN:
    case TDM__AGG_MAX: {
      double m = NAN;
      int is_min = p->kind == TDM__AGG_MIN;
      SCAN(if (!isnan(x[j]) && (isnan(m) || (is_min ? x[j] < m : x[j] > m)))
               m = x[j];);
      return m;
    }
    case TDM__AGG_LAST: {
      double v = NAN;
      int64_t best = INT64_MIN;
      SCAN(if (!isnan(x[j]) && tm[j] >= best) {
        best = tm[j];
        v = x[j];
      });
      return v;
    }
    case TDM__AGG_DISTINCT: {
      /* The members' values in a hash set of log positions (plus one). */
      const log_string *str = e->strings + p->string_column * e->cap;
      size_t distinct = 0, slot_mask = scratch_cap - 1;
      memset(scratch, 0, scratch_cap * sizeof *scratch);
      SCAN(if (str[j].len != MISSING_LEN) {
        size_t i = str[j].hash & slot_mask;
        while (scratch[i] != 0 &&
               !same_string(e, &str[scratch[i] - 1], &str[j]))
          i = (i + 1) & slot_mask;
        if (scratch[i] == 0) {
          scratch[i] = j + 1;
          distinct++;
        }
      });
      return (double)distinct;
    }
    default:
      return NAN;
  }
}

/* Index of the first bucket with index >= key. */
static size_t bucket_lower_bound(const agg_state *st, int64_t key) {
  size_t lo = 0, hi = st->num_buckets;
  /* Usually none is below key (the oldest buckets are dropped), or few. */
  while (lo < hi && lo < 4 && st->buckets[lo].index < key) lo++;
  if (lo < 4) return lo;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (st->buckets[mid].index < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Forgets buckets below the retention threshold and adds the event. */
static void hopped_update(const tdm__window_spec *s, const agg_plan *p,
                          agg_state *st, int64_t max_time, int64_t t, int pass,
                          double x) {
  int64_t threshold =
      floor_div(max_time - s->lateness, p->hop) - p->buckets;
  size_t drop = bucket_lower_bound(st, threshold);
  hop_fold *m = st->memo;
  if (m->cached && threshold > m->from) m->cached = 0;
  if (drop > 0) {
    memmove(st->buckets, st->buckets + drop,
            (st->num_buckets - drop) * sizeof *st->buckets);
    st->num_buckets -= drop;
  }
  int64_t bt = floor_div(t, p->hop);
  if (!pass || bt < threshold) return;
  if (m->cached && bt <= m->to) m->cached = 0;
  size_t i = st->num_buckets;
  while (i > 0 && st->buckets[i - 1].index > bt) i--;
  if (i == 0 || st->buckets[i - 1].index != bt) {
    memmove(st->buckets + i + 1, st->buckets + i,
            (st->num_buckets - i) * sizeof *st->buckets);
    st->num_buckets++;
    partial_clear(&st->buckets[i]);
    st->buckets[i].index = bt;
  } else {
    i--;
  }
  partial_add(p->kind, &st->buckets[i], t, x);
}

static double hopped_value(const tdm__window_spec *s, tdm__entity *e,
                           const agg_plan *p, agg_state *st, int64_t t,
                           int pass, double x) {
  partial acc;
  partial_clear(&acc);
  int64_t threshold =
      floor_div(e->max_time - s->lateness, p->hop) - p->buckets;
  int64_t bt = floor_div(t, p->hop);
  if (bt < threshold) {
    /* The event's bucket is already forgotten: it sees itself only. */
    if (pass) partial_add(p->kind, &acc, t, x);
    return partial_result(p->kind, &acc);
  }
  size_t from = bucket_lower_bound(st, bt - p->buckets), i = from;
  hop_fold *m = st->memo;
  if (m->cached && from < st->num_buckets &&
      st->buckets[from].index == m->from && m->to < bt) {
    /* Continue the fold of the same first buckets. */
    acc = m->fold;
    /* The buckets after m->to came since it was folded: few. */
    i = st->num_buckets;
    while (st->buckets[i - 1].index > m->to) i--;
  }
  size_t folded = i;
  for (; i < st->num_buckets && st->buckets[i].index < bt; i++)
    partial_combine(p->kind, &acc, &st->buckets[i]);
  if (i > folded) {
    m->cached = 1;
    m->from = st->buckets[from].index;
    m->to = st->buckets[i - 1].index;
    m->fold = acc;
  }
  if (i < st->num_buckets && st->buckets[i].index == bt) {
    const partial *current = &st->buckets[i];
    if (current->max_time > t) {
      /* The bucket holds events later than t: cut them off if every event
       * of the bucket is still visible in the log. */
      SCAN_SETUP();
      int64_t lo = e->max_time - s->horizon;
      int64_t begin = bt * p->hop, end = begin + p->hop;
      first = skip_old(e, first, last, lo > begin - 1 ? lo : begin - 1);
      const double *xs = e->numbers + p->number_column * e->cap;
      int numeric = kind_reads_number(p->kind);
      partial cut;
      partial_clear(&cut);
      uint64_t seen = (uint64_t)self;
      for (size_t j = first; j < last; j++)
        if (tm[j] > lo && tm[j] >= begin && tm[j] < end &&
            (fl[j] & mask) == mask) {
          seen++;
          if (tm[j] <= t) partial_add(p->kind, &cut, tm[j], numeric ? xs[j] : NAN);
        }
      (void)pass;
      if (self) partial_add(p->kind, &cut, t, x);
      if (seen == current->count) current = &cut;
      partial_combine(p->kind, &acc, current);
    } else {
      partial_combine(p->kind, &acc, current);
    }
  }
  return partial_result(p->kind, &acc);
}

int tdm__entity_apply(const tdm__window_spec *s, tdm__entity *e,
                      const tdm__window_event *ev, double *out) {
  int64_t t = ev->time_ms;
  if (t < -TDM__WINDOW_TIME_LIMIT || t > TDM__WINDOW_TIME_LIMIT)
    return TDM_EINVAL;
  size_t string_bytes = 0;
  for (size_t c = 0; c < s->string_columns; c++) {
    const tdm__str *str = &ev->strings[s->string_inputs[c]];
    if (str->data == NULL) continue;
    if (str->len >= MISSING_LEN) return TDM_EINVAL;
    string_bytes += str->len;
  }

  /* Reserve everything first: past this point nothing can fail. */
  if (s->needs_log) {
    if (log_reserve(s, e) != TDM_OK) return TDM_ENOMEM;
    if (s->string_columns > 0 && bytes_reserve(e, string_bytes) != TDM_OK)
      return TDM_ENOMEM;
  }
  for (size_t i = 0; i < s->num_aggs; i++)
    if (s->aggs[i].role == ROLE_HOPPED &&
        buckets_reserve(&e->aggs[i]) != TDM_OK)
      return TDM_ENOMEM;
  if (runs_reserve(s, e, ev) != TDM_OK) return TDM_ENOMEM;
  /* A late event computes its exact windows by scanning the log; distinct
   * then needs a hash set the size of the log. */
  int reset = e->max_time != INT64_MIN && s->ttl > 0 && t - e->max_time > s->ttl;
  int late = !reset && e->max_time != INT64_MIN && t < e->max_time;
  uint64_t *scratch = NULL;
  size_t scratch_cap = 0;
  if (late && s->exact_distinct) {
    scratch_cap = 8;
    while (scratch_cap < 2 * (e->end - e->start + 1)) scratch_cap *= 2;
    scratch = tdm__malloc(scratch_cap * sizeof *scratch);
    if (scratch == NULL) return TDM_ENOMEM;
  }

  if (reset) entity_clear(s, e);
  if (t > e->max_time) e->max_time = t;

  if (s->needs_log) {
    size_t j = e->end++;
    uint64_t mask = 0;
    for (size_t b = 0; b < s->filter_bits; b++)
      if (ev->filters[s->filter_inputs[b]]) mask |= (uint64_t)1 << b;
    e->times[j] = t;
    e->reach[j] = j > e->start && e->reach[j - 1] > t ? e->reach[j - 1] : t;
    e->filters[j] = mask;
    for (size_t c = 0; c < s->number_columns; c++)
      e->numbers[c * e->cap + j] = normalize(ev->numbers[s->number_inputs[c]]);
    for (size_t c = 0; c < s->string_columns; c++) {
      const tdm__str *str = &ev->strings[s->string_inputs[c]];
      log_string *col = e->strings + c * e->cap;
      col[j] = bytes_push(e, str->data, str->len);
    }
    if (e->num_runs > 0) {
      runs_advance(s, e);
      runs_insert(s, e);
    }
    /* The event sees the last max_events - 1 events before it. */
    while (e->end - e->start > s->max_events) log_drop_first(s, e);
  }

  for (size_t i = 0; i < s->num_aggs; i++) {
    const agg_plan *p = &s->aggs[i];
    agg_state *st = &e->aggs[i];
    int pass = p->filter == SIZE_MAX || ev->filters[p->filter] != 0;
    double x = kind_reads_number(p->kind) ? normalize(ev->numbers[p->input])
                                          : NAN;
    switch (p->role) {
      case ROLE_EXACT:
        out[i] = late ? exact_value(s, e, p, t, scratch, scratch_cap)
                      : running_value(p, e, st->run);
        break;
      case ROLE_HOPPED:
        hopped_update(s, p, st, e->max_time, t, pass, x);
        out[i] = hopped_value(s, e, p, st, t, pass, x);
        break;
      case ROLE_ALL:
        if (pass) partial_add(p->kind, &st->all, t, x);
        out[i] = partial_result(p->kind, &st->all);
        break;
      case ROLE_SINCE_LAST: {
        int64_t prev = st->previous_time;
        double v = NAN;
        if (prev != INT64_MIN && (p->window == 0 || t - prev < p->window))
          v = (double)(t - prev) / 1000.0 + 0.0;
        out[i] = v;
        if (pass && t > prev) st->previous_time = t;
        break;
      }
    }
  }
  tdm__free(scratch);
  if (s->needs_log) log_evict(s, e);
  return TDM_OK;
}

/* ---- encoding ----
 * Little-endian. Version 2 (written):
 *   u8 version, u64 spec fingerprint, i64 M,
 *   per aggregate in order:
 *     all: a partial relative to M;
 *     since_last: varint, 0 for none, else 1 + M - time;
 *     hopped: varint count, then per bucket its index as a varint (the
 *       first: floor(M / hop) - index; the others: index - previous - 1)
 *       and a partial relative to index * hop;
 *     exact: nothing,
 *   when the spec logs events: varint count, then per entry its time as
 *     a zigzag varint of the difference from the previous entry's (the
 *     first's from M), the filter bits as a varint, f64 per number column,
 *     per string column a varint (0: missing, else 1 + length) and the
 *     bytes.
 * A partial relative to a base time: varint count; when not 0, a zigzag
 * varint of max_time - base; for the kinds that read a number, a varint
 * of values and, when not 0, f64 a, for stddev f64 b, for last a zigzag
 * varint of last_time - max_time. Fields not written are those a valid
 * partial of the kind keeps cleared (partial_ok), so nothing is lost.
 * Varints are LEB128, at most 10 bytes; zigzag maps n to 2n, -n to 2n-1.
 * Version 1, still read (states saved before version 2): every field
 * written in full: hopped and log counts u32, bucket index i64 and a
 * partial as i64 max_time, i64 last_time, u64 count, u64 values, f64 a,
 * f64 b; log time i64, filter bits u64, string u32 length (0xffffffff:
 * missing). About 4 times larger for hopped windows. */

#define WINDOW_FORMAT_VERSION 2

static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static uint64_t double_bits(double x) {
  uint64_t v;
  memcpy(&v, &x, sizeof v);
  return v;
}

static double bits_double(uint64_t v) {
  double x;
  memcpy(&x, &v, sizeof x);
  return x;
}

typedef struct writer {
  tdm__buf *out;
  int failed;
} writer;

static void write_bytes(writer *w, const void *data, size_t n) {
  if (!w->failed && tdm__buf_append(w->out, data, n) != TDM_OK) w->failed = 1;
}

static void write_u64(writer *w, uint64_t v) {
  unsigned char b[8];
  put64(b, v);
  write_bytes(w, b, 8);
}

static void write_varint(writer *w, uint64_t v) {
  unsigned char b[10];
  size_t n = 0;
  while (v >= 0x80) {
    b[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  b[n++] = (unsigned char)v;
  write_bytes(w, b, n);
}

static uint64_t zigzag(int64_t v) {
  return v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1;
}

/* Differences of two valid times (|t| <= TDM__WINDOW_TIME_LIMIT) fit. */
static void write_delta(writer *w, int64_t v) { write_varint(w, zigzag(v)); }

static void write_partial(writer *w, tdm__agg_kind kind, const partial *p,
                          int64_t base) {
  write_varint(w, p->count);
  if (p->count == 0) return;
  write_delta(w, p->max_time - base);
  if (!kind_reads_number(kind)) return;
  write_varint(w, p->values);
  if (p->values == 0) return;
  write_u64(w, double_bits(p->a));
  if (kind == TDM__AGG_STDDEV) write_u64(w, double_bits(p->b));
  if (kind == TDM__AGG_LAST) write_delta(w, p->last_time - p->max_time);
}

int tdm__entity_encode(const tdm__window_spec *s, const tdm__entity *e,
                       tdm__buf *out) {
  size_t before = out->len;
  writer w = {out, 0};
  unsigned char version = WINDOW_FORMAT_VERSION;
  write_bytes(&w, &version, 1);
  write_u64(&w, s->fingerprint);
  write_u64(&w, (uint64_t)e->max_time);
  for (size_t i = 0; i < s->num_aggs; i++) {
    const agg_plan *p = &s->aggs[i];
    const agg_state *st = &e->aggs[i];
    switch (p->role) {
      case ROLE_ALL:
        write_partial(&w, p->kind, &st->all, e->max_time);
        break;
      case ROLE_SINCE_LAST:
        write_varint(&w, st->previous_time == INT64_MIN
                             ? 0
                             : 1 + (uint64_t)(e->max_time - st->previous_time));
        break;
      case ROLE_HOPPED: {
        write_varint(&w, st->num_buckets);
        int64_t previous = floor_div(e->max_time, p->hop) + 1;
        for (size_t b = 0; b < st->num_buckets; b++) {
          const partial *q = &st->buckets[b];
          write_varint(&w, b == 0 ? (uint64_t)(previous - 1 - q->index)
                                  : (uint64_t)(q->index - previous - 1));
          previous = q->index;
          write_partial(&w, p->kind, q, q->index * p->hop);
        }
        break;
      }
      case ROLE_EXACT:
        break;
    }
  }
  if (s->needs_log) {
    write_varint(&w, e->end - e->start);
    int64_t previous = e->max_time;
    for (size_t j = e->start; j < e->end; j++) {
      write_delta(&w, e->times[j] - previous);
      previous = e->times[j];
      write_varint(&w, e->filters[j]);
      for (size_t c = 0; c < s->number_columns; c++)
        write_u64(&w, double_bits(e->numbers[c * e->cap + j]));
      for (size_t c = 0; c < s->string_columns; c++) {
        const log_string *ls = &e->strings[c * e->cap + j];
        write_varint(&w, ls->len == MISSING_LEN ? 0 : (uint64_t)ls->len + 1);
        if (ls->len != MISSING_LEN && ls->len > 0)
          write_bytes(&w, e->bytes + (size_t)(ls->pos - e->bytes_base),
                      ls->len);
      }
    }
  }
  if (w.failed) {
    out->len = before;
    if (out->data != NULL) out->data[before] = '\0';
    return TDM_ENOMEM;
  }
  return TDM_OK;
}

static int time_ok(int64_t t) {
  return t >= -TDM__WINDOW_TIME_LIMIT && t <= TDM__WINDOW_TIME_LIMIT;
}

typedef struct reader {
  const unsigned char *p;
  size_t len, off;
  int version;
  int short_read; /* ran out of bytes, or a malformed varint (bad) */
  int bad;
} reader;

static const unsigned char *read_bytes(reader *r, size_t n) {
  if (r->short_read || r->len - r->off < n) {
    r->short_read = 1;
    return NULL;
  }
  const unsigned char *p = r->p + r->off;
  r->off += n;
  return p;
}

static uint64_t read_u64(reader *r) {
  const unsigned char *p = read_bytes(r, 8);
  return p ? get64(p) : 0;
}

static uint32_t read_u32(reader *r) {
  const unsigned char *p = read_bytes(r, 4);
  if (p == NULL) return 0;
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static uint64_t read_varint(reader *r) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    const unsigned char *b = read_bytes(r, 1);
    if (b == NULL) return 0;
    if (shift == 63 && *b > 1) break; /* more than 64 bits */
    v |= (uint64_t)(*b & 0x7f) << shift;
    if (!(*b & 0x80)) {
      /* Only the shortest form: a decoded state encodes the same. */
      if (*b == 0 && shift > 0) break;
      return v;
    }
  }
  r->short_read = r->bad = 1;
  return 0;
}

/* A count: u32 in version 1. */
static uint64_t read_count(reader *r) {
  return r->version == 1 ? read_u32(r) : read_varint(r);
}

/* A difference of times: 0 when it cannot be one of two valid times, so
 * that adding it to a valid time never overflows (the sum is checked). */
static int64_t read_delta(reader *r) {
  uint64_t u = read_varint(r);
  if (u > ((uint64_t)1 << 62)) {
    r->short_read = r->bad = 1;
    return 0;
  }
  return u & 1 ? -(int64_t)(u >> 1) - 1 : (int64_t)(u >> 1);
}

/* A time: absolute in version 1, else relative to base (a valid time, or
 * a bucket's start). */
static int64_t read_time(reader *r, int64_t base) {
  if (r->version == 1) return (int64_t)read_u64(r);
  int64_t d = read_delta(r);
  return r->short_read ? 0 : base + d;
}

/* A partial of an aggregate of KIND; BASE as for read_time, INT64_MIN
 * when there is none (an empty state: only an empty partial is valid). */
static void read_partial(reader *r, tdm__agg_kind kind, partial *p,
                         int64_t base) {
  partial_clear(p);
  if (r->version == 1) {
    p->max_time = (int64_t)read_u64(r);
    p->last_time = (int64_t)read_u64(r);
    p->count = read_u64(r);
    p->values = read_u64(r);
    p->a = bits_double(read_u64(r));
    p->b = bits_double(read_u64(r));
    return;
  }
  p->count = read_varint(r);
  if (p->count == 0) return;
  if (base == INT64_MIN) {
    p->max_time = INT64_MAX; /* rejected by partial_ok */
    return;
  }
  p->max_time = read_time(r, base);
  if (r->short_read || !time_ok(p->max_time) || !kind_reads_number(kind))
    return;
  p->values = read_varint(r);
  if (p->values == 0) return;
  p->a = bits_double(read_u64(r));
  if (kind == TDM__AGG_STDDEV) p->b = bits_double(read_u64(r));
  if (kind == TDM__AGG_LAST) p->last_time = read_time(r, p->max_time);
}

/* A partial's fields are consistent with each other and with M. */
static int partial_ok(tdm__agg_kind kind, const partial *p, int64_t max_time) {
  /* Counts stay far from wrapping around (and exact as doubles). */
  if (p->values > p->count || p->count > ((uint64_t)1 << 53)) return 0;
  /* Fields a kind never sets keep their cleared values. */
  int numeric = kind_reads_number(kind);
  if (!numeric && p->values != 0) return 0;
  if ((p->values == 0 || kind != TDM__AGG_LAST) && p->last_time != INT64_MIN)
    return 0;
  if (p->values == 0 && (double_bits(p->a) != 0 || double_bits(p->b) != 0))
    return 0;
  if (kind != TDM__AGG_STDDEV && double_bits(p->b) != 0) return 0;
  if (p->count == 0)
    return p->max_time == INT64_MIN && p->last_time == INT64_MIN &&
           p->values == 0;
  if (max_time == INT64_MIN || !time_ok(p->max_time) || p->max_time > max_time)
    return 0;
  if (kind == TDM__AGG_LAST && p->values > 0 &&
      (!time_ok(p->last_time) || p->last_time > p->max_time))
    return 0;
  return 1;
}

#define DECODE_FAIL(...)                                    \
  do {                                                      \
    rc = tdm__fail(err, TDM_EPARSE, "window state: " __VA_ARGS__); \
    goto fail;                                              \
  } while (0)

int tdm__entity_decode(const tdm__window_spec *s, const void *data,
                       size_t len, tdm__entity **out, tdm_error *err) {
  *out = NULL;
  tdm__entity *e;
  int rc;
  if (tdm__entity_new(s, &e) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  reader r = {data, len, 0, 0, 0, 0};
  const unsigned char *version = read_bytes(&r, 1);
  if (version == NULL) DECODE_FAIL("empty");
  if (*version != WINDOW_FORMAT_VERSION && *version != 1)
    DECODE_FAIL("format version %u, expected 1 or %u", *version,
                WINDOW_FORMAT_VERSION);
  r.version = *version;
  if (read_u64(&r) != s->fingerprint)
    DECODE_FAIL("encoded for another window spec");
  int64_t m = (int64_t)read_u64(&r);
  if (m != INT64_MIN && !time_ok(m)) DECODE_FAIL("bad max time");
  e->max_time = m;
  for (size_t i = 0; i < s->num_aggs && !r.short_read; i++) {
    const agg_plan *p = &s->aggs[i];
    agg_state *st = &e->aggs[i];
    switch (p->role) {
      case ROLE_ALL:
        read_partial(&r, p->kind, &st->all, m);
        if (!r.short_read && !partial_ok(p->kind, &st->all, m))
          DECODE_FAIL("aggregate %zu: inconsistent running state", i);
        st->all.index = 0;
        break;
      case ROLE_SINCE_LAST: {
        int64_t prev;
        if (r.version == 1) {
          prev = (int64_t)read_u64(&r);
        } else {
          uint64_t u = read_varint(&r);
          if (u != 0 && (m == INT64_MIN || u - 1 > ((uint64_t)1 << 62)))
            DECODE_FAIL("aggregate %zu: bad previous time", i);
          prev = u == 0 ? INT64_MIN : m - (int64_t)(u - 1);
        }
        if (prev != INT64_MIN && (!time_ok(prev) || m == INT64_MIN || prev > m))
          DECODE_FAIL("aggregate %zu: bad previous time", i);
        st->previous_time = prev;
        break;
      }
      case ROLE_HOPPED: {
        uint64_t n = read_count(&r);
        if (r.short_read) break;
        if (n > 0 && m == INT64_MIN) DECODE_FAIL("aggregate %zu: buckets in an empty state", i);
        /* The fewest bytes a bucket takes: 56 in version 1, else 3. */
        if (n > (r.len - r.off) / (r.version == 1 ? 56 : 3))
          DECODE_FAIL("aggregate %zu: %llu buckets in %zu bytes", i,
                      (unsigned long long)n, r.len - r.off);
        int64_t threshold = 0, top = 0;
        if (n > 0) {
          threshold = floor_div(m - s->lateness, p->hop) - p->buckets;
          top = floor_div(m, p->hop);
          /* Each bucket has its own index in [threshold, top]. */
          if (n - 1 > (uint64_t)(top - threshold))
            DECODE_FAIL("aggregate %zu: %llu buckets, more than the window "
                        "holds",
                        i, (unsigned long long)n);
          st->buckets = tdm__malloc((size_t)n * sizeof *st->buckets);
          if (st->buckets == NULL) {
            rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
            goto fail;
          }
          st->cap_buckets = n;
        }
        for (uint64_t b = 0; b < n; b++) {
          partial *q = &st->buckets[b];
          int64_t index;
          if (r.version == 1) {
            index = (int64_t)read_u64(&r);
          } else {
            /* The first counts down from top, the others up from the
             * previous: checked to stay in [threshold, top] first. */
            int64_t previous = b == 0 ? top + 1 : st->buckets[b - 1].index;
            uint64_t d = read_varint(&r);
            uint64_t room = (uint64_t)(b == 0 ? previous - threshold
                                              : top - previous);
            if (!r.short_read && d >= room)
              DECODE_FAIL("aggregate %zu: bucket %llu out of order or range",
                          i, (unsigned long long)b);
            index = b == 0 ? previous - 1 - (int64_t)d
                           : previous + 1 + (int64_t)d;
          }
          if (r.short_read) break;
          read_partial(&r, p->kind, q, r.version == 1 ? 0 : index * p->hop);
          q->index = index;
          if (r.short_read) break;
          if (q->index < threshold || q->index > top ||
              (b > 0 && q->index <= st->buckets[b - 1].index))
            DECODE_FAIL("aggregate %zu: bucket %llu out of order or range",
                        i, (unsigned long long)b);
          if (q->count == 0 || !partial_ok(p->kind, q, m) ||
              floor_div(q->max_time, p->hop) != q->index ||
              (p->kind == TDM__AGG_LAST && q->values > 0 &&
               floor_div(q->last_time, p->hop) != q->index))
            DECODE_FAIL("aggregate %zu: bucket %llu inconsistent", i,
                        (unsigned long long)b);
          st->num_buckets = b + 1;
        }
        break;
      }
      case ROLE_EXACT:
        break;
    }
  }
  if (s->needs_log && !r.short_read) {
    uint64_t n = read_count(&r);
    if (!r.short_read && n > s->max_events)
      DECODE_FAIL("%llu logged events, more than max_events %zu",
                  (unsigned long long)n, s->max_events);
    if (n > 0 && m == INT64_MIN) DECODE_FAIL("events in an empty state");
    /* The fewest bytes an entry takes. */
    size_t entry = r.version == 1
                       ? 16 + 8 * s->number_columns + 4 * s->string_columns
                       : 2 + 8 * s->number_columns + s->string_columns;
    if (!r.short_read && n > (r.len - r.off) / entry)
      DECODE_FAIL("%llu logged events in %zu bytes", (unsigned long long)n,
                  r.len - r.off);
    int64_t previous = m;
    for (uint64_t k = 0; k < n && !r.short_read; k++) {
      if (log_reserve(s, e) != TDM_OK) {
        rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
        goto fail;
      }
      size_t j = e->end;
      int64_t t = read_time(&r, previous);
      uint64_t mask = r.version == 1 ? read_u64(&r) : read_varint(&r);
      if (r.short_read) break;
      if (!time_ok(t) || t > m)
        DECODE_FAIL("event %llu: bad time", (unsigned long long)k);
      previous = t;
      if (s->filter_bits < 64 && (mask >> s->filter_bits) != 0)
        DECODE_FAIL("event %llu: bad filter bits", (unsigned long long)k);
      e->times[j] = t;
      e->reach[j] = j > e->start && e->reach[j - 1] > t ? e->reach[j - 1] : t;
      e->filters[j] = mask;
      for (size_t c = 0; c < s->number_columns; c++) {
        /* Only canonical numbers (what apply logs) re-encode the same. */
        uint64_t bits = read_u64(&r);
        double x = normalize(bits_double(bits));
        if (!r.short_read && double_bits(x) != bits)
          DECODE_FAIL("event %llu: non-canonical number",
                      (unsigned long long)k);
        e->numbers[c * e->cap + j] = x;
      }
      for (size_t c = 0; c < s->string_columns && !r.short_read; c++) {
        uint32_t slen;
        if (r.version == 1) {
          slen = read_u32(&r);
        } else {
          uint64_t u = read_varint(&r);
          if (u > MISSING_LEN)
            DECODE_FAIL("event %llu: bad string length",
                        (unsigned long long)k);
          slen = u == 0 ? MISSING_LEN : (uint32_t)(u - 1);
        }
        const unsigned char *bytes = NULL;
        if (slen != MISSING_LEN) {
          bytes = read_bytes(&r, slen);
          if (bytes == NULL) break;
          if (bytes_reserve(e, slen) != TDM_OK) {
            rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
            goto fail;
          }
        }
        log_string *col = e->strings + c * e->cap;
        col[j] = bytes_push(e, (const char *)bytes, slen);
      }
      if (r.short_read) break;
      e->end++;
    }
  }
  if (r.bad) DECODE_FAIL("malformed number");
  if (r.short_read) DECODE_FAIL("truncated");
  if (r.off != r.len)
    DECODE_FAIL("%zu bytes after the end", r.len - r.off);
  if (runs_rebuild(s, e) != TDM_OK) {
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    goto fail;
  }
  *out = e;
  return TDM_OK;
fail:
  tdm__entity_free(e);
  return rc;
}
