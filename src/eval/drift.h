/*
 * drift.h - drift in real time: `tandem serve PIPELINE --drift-reference
 * RUN|FILE` keeps a live histogram of each feature and of the score and
 * compares it with a reference distribution read once at start from a
 * batch output that holds the features (`tandem batch --explain` JSON
 * Lines, or `--features-only` CSV), found through the run registry or
 * named as a file.
 *
 * The bins are those of `tandem compare`: 10 bins cut at the reference's
 * deciles (bin i holds the values above cut i - 1 and at or below cut i),
 * plus an 11th bin for missing values. PSI is compare's: the sum over bins
 * of (live - reference) * ln(live / reference) over the fractions in each
 * bin, an empty bin counting as 0.0001.
 *
 * Threads: the live runner adds each applied event under its entity
 * shard's lock, into that shard's own counters, so the hot path takes no
 * lock of its own; readers sum the shards without locking (the counters
 * are relaxed atomics, written by one thread at a time).
 */
#ifndef TDM_EVAL_DRIFT_H
#define TDM_EVAL_DRIFT_H

#include <stddef.h>

#include "../core/core.h"
#include "../pipeline/pipeline.h"

typedef struct tdm__drift tdm__drift;

/* Where a run id is looked up. */
typedef struct tdm__drift_source {
  const char *reference; /* a run id or unique prefix, or a file path */
  const char *registry;  /* the registry's path; NULL: none (a run id
                          * cannot be looked up) */
} tdm__drift_source;

/*
 * Reads the reference for pipeline p (which must outlive the result) and
 * makes counters for num_shards shards. `reference` is a file when it
 * names one that exists or ends in .jsonl, .ndjson or .csv, else a run id
 * in the registry (whose output must be unchanged since the run: its
 * SHA-256 is checked). Fails with TDM_EINVAL and a message saying how to
 * make one when the reference has no features, and when it lacks one of
 * the pipeline's features. Duplicate rows of the reference are skipped,
 * as the live side skips duplicate events.
 */
int tdm__drift_open(const tdm__pipeline *p, const tdm__drift_source *source,
                    size_t num_shards, tdm__drift **out, tdm_error *err);
void tdm__drift_free(tdm__drift *drift);

/*
 * Counts one applied event (not a duplicate, not a fallback) into shard
 * `shard`'s histograms. The caller holds that shard's lock. Does not
 * allocate.
 */
void tdm__drift_add(tdm__drift *drift, size_t shard, const tdm__result *r);

/* Sets every live count to 0 (GET .../drift?reset=1). */
void tdm__drift_reset(tdm__drift *drift);

/*
 * The drift report as one JSON object (no newline): the reference (run,
 * path, rows), the live events counted, and per feature and for the score
 * the bin edges, the reference fractions, the live counts and fractions,
 * and PSI (null before any event).
 */
int tdm__drift_json(const tdm__drift *drift, const char *pipeline,
                    tdm__buf *out);

/*
 * Prometheus text, with HELP and TYPE: tandem_feature_psi (a gauge per
 * feature, the score as feature="score"; NaN before any event) and
 * tandem_drift_events_total. Values are written as the JSON report writes
 * them, so that both read back to the same double.
 */
int tdm__drift_metrics(const tdm__drift *drift, const char *pipeline,
                       tdm__buf *out);

#endif /* TDM_EVAL_DRIFT_H */
