/*
 * metrics.c - counters and histograms for the server, rendered in the
 * Prometheus text format. Histogram buckets are stored per bucket and
 * summed into the cumulative `le` form only when rendered.
 */
#include "metrics.h"

#include <string.h>

/* Request latency buckets, seconds: fine below a millisecond, where a
 * healthy tandem server lives, coarse above. */
static const double seconds_bounds[] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
static const double rows_bounds[] = {1,   2,   4,    8,    16,   32,    64,
                                     128, 256, 1024, 4096, 16384, 65536};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const int counted_codes[] = {
#define TDM__CODE_VALUE(code) code,
    TDM__COUNTED_CODES(TDM__CODE_VALUE)
#undef TDM__CODE_VALUE
};

int tdm__metrics_init(tdm__metrics *m) {
  memset(m, 0, sizeof *m);
  m->unknown_model.model = "";
  m->unknown_model.version = "";
  return pthread_mutex_init(&m->lock, NULL) == 0 ? TDM_OK : TDM_ENOMEM;
}

void tdm__metrics_free(tdm__metrics *m) {
  tdm__stats *s = m->all;
  while (s != NULL) {
    tdm__stats *next = s->next;
    tdm__free(s->model);
    tdm__free(s->version);
    tdm__free(s);
    s = next;
  }
  m->all = NULL;
  pthread_mutex_destroy(&m->lock);
}

tdm__stats *tdm__metrics_stats(tdm__metrics *m, const char *model,
                               const char *version) {
  pthread_mutex_lock(&m->lock);
  tdm__stats **at = &m->all;
  for (; *at != NULL; at = &(*at)->next)
    if (strcmp((*at)->model, model) == 0 &&
        strcmp((*at)->version, version) == 0)
      break;
  if (*at == NULL) {
    tdm__stats *s = tdm__calloc(1, sizeof *s);
    if (s != NULL) {
      s->model = tdm__strdup(model);
      s->version = tdm__strdup(version);
      if (s->model == NULL || s->version == NULL) {
        tdm__free(s->model);
        tdm__free(s->version);
        tdm__free(s);
        s = NULL;
      }
    }
    *at = s; /* appended at the end: render order is creation order */
  }
  tdm__stats *found = *at;
  pthread_mutex_unlock(&m->lock);
  return found;
}

static void observe(tdm__histogram *h, const double *bounds, size_t n,
                    double value, uint64_t base_units) {
  size_t b = 0;
  while (b < n && value > bounds[b]) b++;
  atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum, base_units, memory_order_relaxed);
}

void tdm__stats_record(tdm__stats *s, int http_status, uint64_t duration_ns,
                       uint64_t queue_ns, size_t rows) {
  size_t code = TDM__CODE_OTHER;
  for (size_t i = 0; i < COUNT(counted_codes); i++)
    if (counted_codes[i] == http_status) code = i;
  atomic_fetch_add_explicit(&s->requests[code], 1, memory_order_relaxed);
  observe(&s->duration, seconds_bounds, COUNT(seconds_bounds),
          (double)duration_ns * 1e-9, duration_ns);
  if (rows == SIZE_MAX) return;
  observe(&s->queue, seconds_bounds, COUNT(seconds_bounds),
          (double)queue_ns * 1e-9, queue_ns);
  observe(&s->rows, rows_bounds, COUNT(rows_bounds), (double)rows, rows);
}

static int labels(tdm__buf *out, const tdm__stats *s) {
  int rc = tdm__buf_append(out, "model=", 6);
  if (rc == TDM_OK) rc = tdm__metrics_append_label(out, s->model);
  if (rc == TDM_OK) rc = tdm__buf_append(out, ",version=", 9);
  if (rc == TDM_OK) rc = tdm__metrics_append_label(out, s->version);
  return rc;
}

/* Appends h's buckets, sum and count as NAME_bucket{LABELS,le="..."}
 * lines; labels is the text inside the braces, already escaped. */
static int render_with_labels(tdm__buf *out, const char *name,
                              const char *labels, const tdm__histogram *h,
                              const double *bounds, size_t n, double scale) {
  uint64_t cumulative = 0;
  const char *comma = labels[0] != '\0' ? "," : "";
  int rc = TDM_OK;
  for (size_t b = 0; b <= n && rc == TDM_OK; b++) {
    cumulative += atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
    if (b < n)
      rc = tdm__buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name,
                           labels, comma, bounds[b],
                           (unsigned long long)cumulative);
    else
      rc = tdm__buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name,
                           labels, comma, (unsigned long long)cumulative);
  }
  /* _count equals the +Inf bucket: use the same snapshot. */
  if (rc == TDM_OK)
    rc = tdm__buf_printf(
        out, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels,
        (double)atomic_load_explicit(&h->sum, memory_order_relaxed) * scale,
        name, labels, (unsigned long long)cumulative);
  return rc;
}

static int render_histogram(tdm__buf *out, const char *name,
                            const tdm__stats *s, const tdm__histogram *h,
                            const double *bounds, size_t n, double scale) {
  tdm__buf text = {0};
  int rc = labels(&text, s);
  if (rc == TDM_OK)
    rc = render_with_labels(out, name, text.data, h, bounds, n, scale);
  tdm__buf_free(&text);
  return rc;
}

void tdm__histogram_observe_ns(tdm__histogram *h, uint64_t ns) {
  observe(h, seconds_bounds, COUNT(seconds_bounds), (double)ns * 1e-9, ns);
}

int tdm__histogram_render_seconds(tdm__buf *out, const char *name,
                                  const char *labels,
                                  const tdm__histogram *h) {
  return render_with_labels(out, name, labels, h, seconds_bounds,
                            COUNT(seconds_bounds), 1e-9);
}

typedef enum family_kind { FAMILY_DURATION, FAMILY_QUEUE, FAMILY_ROWS } family_kind;

static const struct {
  const char *name, *help;
  family_kind kind;
} families[] = {
    {"tandem_request_duration_seconds",
     "Time from a request's arrival to its response, infer requests.",
     FAMILY_DURATION},
    {"tandem_request_queue_seconds",
     "Time from a request's arrival to the start of its scoring.",
     FAMILY_QUEUE},
    {"tandem_request_rows", "Rows scored per infer request.", FAMILY_ROWS},
};

int tdm__metrics_render(tdm__metrics *m, tdm__buf *out) {
  pthread_mutex_lock(&m->lock);
  tdm__stats *first = m->all;
  pthread_mutex_unlock(&m->lock);
  /* The list only grows at its end, so walking it unlocked is safe. */
  int rc = tdm__buf_printf(out,
                           "# HELP tandem_requests_total Infer requests by "
                           "model, version and HTTP status.\n"
                           "# TYPE tandem_requests_total counter\n");
  for (int pass = 0; pass < 2 && rc == TDM_OK; pass++) {
    for (tdm__stats *s = pass ? first : &m->unknown_model;
         s != NULL && rc == TDM_OK; s = pass ? s->next : NULL) {
      for (size_t c = 0; c < TDM__NUM_CODES && rc == TDM_OK; c++) {
        uint64_t v = atomic_load_explicit(&s->requests[c], memory_order_relaxed);
        if (v == 0) continue;
        rc = tdm__buf_append(out, "tandem_requests_total{", 22);
        if (rc == TDM_OK) rc = labels(out, s);
        if (rc == TDM_OK && c < COUNT(counted_codes))
          rc = tdm__buf_printf(out, ",code=\"%d\"} %llu\n", counted_codes[c],
                               (unsigned long long)v);
        else if (rc == TDM_OK)
          rc = tdm__buf_printf(out, ",code=\"other\"} %llu\n",
                               (unsigned long long)v);
      }
    }
  }
  for (size_t f = 0; f < COUNT(families) && rc == TDM_OK; f++) {
    rc = tdm__buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n",
                         families[f].name, families[f].help, families[f].name);
    for (tdm__stats *s = first; s != NULL && rc == TDM_OK; s = s->next) {
      if (families[f].kind == FAMILY_DURATION)
        rc = render_histogram(out, families[f].name, s, &s->duration,
                              seconds_bounds, COUNT(seconds_bounds), 1e-9);
      else if (families[f].kind == FAMILY_QUEUE)
        rc = render_histogram(out, families[f].name, s, &s->queue,
                              seconds_bounds, COUNT(seconds_bounds), 1e-9);
      else
        rc = render_histogram(out, families[f].name, s, &s->rows, rows_bounds,
                              COUNT(rows_bounds), 1.0);
    }
  }
  if (rc == TDM_OK)
    rc = tdm__buf_printf(
        out,
        "# HELP tandem_requests_in_flight Requests read and not yet "
        "answered.\n# TYPE tandem_requests_in_flight gauge\n"
        "tandem_requests_in_flight %lld\n"
        "# HELP tandem_requests_rejected_total Requests answered 503 at once "
        "instead of queued.\n# TYPE tandem_requests_rejected_total counter\n"
        "tandem_requests_rejected_total{reason=\"overload\"} %llu\n"
        "# HELP tandem_requests_timed_out_total Requests answered 504: their "
        "deadline passed before scoring started.\n"
        "# TYPE tandem_requests_timed_out_total counter\n"
        "tandem_requests_timed_out_total %llu\n"
        "# HELP tandem_requests_too_large_total Requests refused for their "
        "body size.\n# TYPE tandem_requests_too_large_total counter\n"
        "tandem_requests_too_large_total %llu\n"
        "# HELP tandem_request_bytes_buffered Request body and answer bytes "
        "held in memory.\n# TYPE tandem_request_bytes_buffered gauge\n"
        "tandem_request_bytes_buffered %llu\n",
        (long long)atomic_load(&m->in_flight),
        (unsigned long long)atomic_load(&m->rejected_overload),
        (unsigned long long)atomic_load(&m->timed_out),
        (unsigned long long)atomic_load(&m->too_large),
        (unsigned long long)atomic_load(&m->buffered));
  return rc;
}
