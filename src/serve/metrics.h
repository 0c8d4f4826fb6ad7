/*
 * metrics.h - the server's counters and histograms, and their rendering in
 * the Prometheus text exposition format (version 0.0.4).
 *
 * Recording is lock-free (relaxed atomics), so request threads never wait
 * for each other or for a scrape. Series are created on first use, one per
 * (model, version), and live until the server stops, so a reload does not
 * reset a model's counters.
 */
#ifndef TDM_METRICS_H
#define TDM_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

/* HTTP statuses counted separately; any other counts as "other". */
#define TDM__COUNTED_CODES(X) \
  X(200) X(400) X(401) X(403) X(404) X(405) X(413) X(500) X(503) X(504)
enum {
#define TDM__CODE_INDEX(code) TDM__CODE_##code,
  TDM__COUNTED_CODES(TDM__CODE_INDEX)
#undef TDM__CODE_INDEX
      TDM__CODE_OTHER,
  TDM__NUM_CODES
};

#define TDM__HISTOGRAM_MAX_BUCKETS 20

typedef struct tdm__histogram {
  _Atomic uint64_t buckets[TDM__HISTOGRAM_MAX_BUCKETS + 1]; /* last: +Inf */
  _Atomic uint64_t count;
  _Atomic uint64_t sum; /* in the unit's integer base (ns, rows) */
} tdm__histogram;

/* The series of one (model, version). Strings stay valid until the
 * metrics registry is freed. */
typedef struct tdm__stats {
  char *model;
  char *version;
  _Atomic uint64_t requests[TDM__NUM_CODES];
  tdm__histogram duration; /* arrival to response, seconds */
  tdm__histogram queue;    /* arrival to start of scoring, seconds */
  tdm__histogram rows;     /* rows per scored request */
  struct tdm__stats *next;
} tdm__stats;

typedef struct tdm__metrics {
  pthread_mutex_t lock; /* guards the list, not the counters */
  tdm__stats *all;
  tdm__stats unknown_model; /* requests naming no known model */
  _Atomic int64_t in_flight;
  _Atomic uint64_t rejected_overload;
  _Atomic uint64_t timed_out;
  _Atomic uint64_t too_large;
  _Atomic uint64_t buffered; /* request body bytes held */
} tdm__metrics;

int tdm__metrics_init(tdm__metrics *m);
void tdm__metrics_free(tdm__metrics *m);

/* The series of (model, version), created on first use; NULL on OOM. */
tdm__stats *tdm__metrics_stats(tdm__metrics *m, const char *model,
                               const char *version);

/* Records a finished request. queue_ns and rows are skipped when the
 * request was not scored (rows == SIZE_MAX). */
void tdm__stats_record(tdm__stats *s, int http_status, uint64_t duration_ns,
                       uint64_t queue_ns, size_t rows);

/* Records a duration in h with the request latency buckets (seconds);
 * lock-free, as tdm__stats_record. */
void tdm__histogram_observe_ns(tdm__histogram *h, uint64_t ns);
/* Appends h (observed with tdm__histogram_observe_ns) as the Prometheus
 * histogram NAME with the label text labels (what goes inside the braces,
 * escaped; "" for none). The HELP and TYPE lines are the caller's. */
int tdm__histogram_render_seconds(tdm__buf *out, const char *name,
                                  const char *labels, const tdm__histogram *h);
/* Appends every request series, and the server's gauges and counters. */
int tdm__metrics_render(tdm__metrics *m, tdm__buf *out);

/* tdm__metrics_append_label, which escapes a label value, is core.h's
 * (eval's drift gauges write labels too). */

#endif /* TDM_METRICS_H */
