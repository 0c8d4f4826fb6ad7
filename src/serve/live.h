/*
 * live.h - a pipeline served live: `POST /v1/pipelines/{name}/events`.
 * Events go through the same pipeline core as `tandem batch` (one call
 * per event, in arrival order per entity), so a replay of a file gives the
 * batch output byte for byte. State lives in memory, split into shards by
 * entity (each with its own lock), and, with a state directory, in LMDB:
 * an event is acknowledged only once its state update is on disk (group
 * commit: one fsync for all the requests waiting at that moment).
 */
#ifndef TDM_LIVE_H
#define TDM_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"
#include "../store/settings.h"

typedef struct tdm__live tdm__live;

/* Loads the pipeline; with state_dir, opens (or creates) its durable
 * state there and restores every entity from it; with store (or the
 * pipeline's store:), reads lookups' tables there (their newest versions,
 * followed as batch runs write new ones). settings (NULL: defaults) say
 * how those stores open and where a Redis store's scheduled refreshes
 * write; they are copied, and need not outlive the call. */
int tdm__live_open(const char *pipeline_path, const char *state_dir,
                   const char *store, const tdm__store_settings *settings,
                   tdm__live **out, tdm_error *err);
void tdm__live_close(tdm__live *live);

/* Fixes the clock state.max_future is measured from (epoch ms) for every
 * later event; INT64_MIN (the default) reads the wall clock per event.
 * Call before handling events (it is not synchronised with them). */
void tdm__live_set_clock(tdm__live *live, int64_t now_ms);

const char *tdm__live_name(const tdm__live *live);

/* Keeps live histograms of every feature and the score against a
 * reference (a run id in the registry at `registry`, NULL: the default
 * one, or a file; src/eval/drift.h). Call before serving; the drift is
 * freed with the live runner. */
int tdm__live_watch_drift(tdm__live *live, const char *reference,
                          const char *registry, tdm_error *err);
/*
 * Logs every answered event to a decision log in dir (src/store/
 * decision_log.h), segments closed past max_bytes or max_ms (0: no limit)
 * and recorded as live runs in the registry at `registry` (NULL: not
 * recorded). explain says what each record carries beside the answer's
 * members (TDM__EXPLAIN_FEATURES: every feature's value). With a state
 * directory, a record is synced in the group commit of its event, before
 * the event's answer goes. Call after tdm__live_open, before serving; the
 * log is closed (its last segment recorded) with the live runner.
 */
int tdm__live_log_decisions(tdm__live *live, const char *dir,
                            uint64_t max_bytes, int64_t max_ms, int explain,
                            const char *registry, tdm_error *err);

/* The drift being watched, or NULL. */
struct tdm__drift *tdm__live_drift(const tdm__live *live);

/* The most events one request may carry. Each event's answer is bounded
 * (its fields, features and error messages are), so this bounds the
 * answer too: an array of small invalid elements would otherwise be
 * answered with about 40 times its size in error objects. */
#define TDM__MAX_EVENTS_PER_REQUEST 10000

/*
 * Handles one request body: a JSON event object, or an array of them.
 * Writes the response body to out and its HTTP status to *status: 200
 * with the result object (for an object) or an array of results (for an
 * array; an invalid event's entry is {"error": "..."}, the others are
 * still applied); 400 with {"error": ...} for a body that is not JSON or
 * a single invalid event; 413 for an array of more than
 * TDM__MAX_EVENTS_PER_REQUEST events (none applied); 500 when the state
 * cannot be made durable. with_features adds every feature's value to
 * each result.
 */
void tdm__live_events(tdm__live *live, const char *body, size_t len,
                      int with_features, tdm__buf *out, unsigned *status);

/*
 * The same without waiting for durability: *gen is the commit generation
 * the answer must wait for (0: nothing to wait for). The caller then
 * calls tdm__live_when_durable, which returns 1 if that is already so, or
 * 0 and later calls fn(arg, ok) from the committer thread once the
 * generation is on disk (ok) or failed to be written (!ok: the answer
 * must become a 500).
 */
void tdm__live_events_async(tdm__live *live, const char *body, size_t len,
                            int with_features, uint64_t waited_us,
                            int overloaded, tdm__buf *out, unsigned *status,
                            uint64_t *gen);
/* 1 when the pipeline has a deadline fallback (realtime: deadline_ms with
 * a fallback table or a default decision): waited_us past the deadline,
 * or overloaded, answers from it instead of processing. */
int tdm__live_can_fall_back(const tdm__live *live);
int tdm__live_when_durable(tdm__live *live, uint64_t gen,
                           void (*fn)(void *arg, int ok), void *arg);
/* The error body of an answer whose state failed to be written. */
void tdm__live_durability_failed(tdm__buf *out, unsigned *status);

/* The scheduled refreshes' status (GET /v1/pipelines/{name}/schedule)
 * and metrics (with HELP and TYPE; nothing without a schedule). */
int tdm__live_schedule(tdm__live *live, tdm__buf *out);
int tdm__live_schedule_metrics(tdm__live *live, tdm__buf *out);

/* The pipeline's description (GET /v1/pipelines/{name}). */
int tdm__live_metadata(const tdm__live *live, tdm__buf *out);

/* Prometheus text for the pipeline's counters and latency histograms. */
int tdm__live_metrics(tdm__live *live, tdm__buf *out);
/* Records one events request's time from arrival to its answer (the
 * server's, once the answer is queued); thread-safe (relaxed atomics). */
void tdm__live_record_request(tdm__live *live, uint64_t ns);
/* Samples (no HELP/TYPE lines: the caller writes them once for all
 * pipelines) of tandem_table_staleness_seconds (wall clock now minus the
 * newest version's as_of) and tandem_table_version, per table read. */
int tdm__live_table_metrics(tdm__live *live, int family /* 0 staleness,
                            1 version */, tdm__buf *out);
/* Samples of the table store's connection (Redis only; an LMDB store or
 * none writes nothing and returns 0 from tdm__live_store_remote):
 * family 0 tandem_table_store_up, 1 tandem_table_store_reconnects_total,
 * 2 tandem_table_store_failures_total. */
int tdm__live_store_remote(tdm__live *live);
int tdm__live_store_metrics(tdm__live *live, int family, tdm__buf *out);
/* 0 when a table with max_staleness and on_stale: not_ready is older than
 * that (or has no version); a warn table only logs. */
int tdm__live_ready(tdm__live *live);

#endif /* TDM_LIVE_H */
