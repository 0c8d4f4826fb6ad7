/*
 * schedule.h - scheduled table refreshes run by `tandem serve`: for each
 * entry of a pipeline's schedule: section, at the times its cron says, a
 * `tandem batch PIPELINE --in IN --materialize TABLE --store STORE` in a
 * child process (a failed or crashed refresh cannot take the server down).
 * The new table version becomes visible to the live readers atomically
 * when the child commits it; they pick it up within a second, and no
 * request waits for it. Progress and results go to /metrics and to
 * GET /v1/pipelines/NAME/schedule.
 */
#ifndef TDM_SCHEDULE_H
#define TDM_SCHEDULE_H

#include "../core/core.h"
#include "../pipeline/spec.h"

typedef struct tdm__scheduler tdm__scheduler;

/* Starts the scheduler thread for spec's schedules (none: *out NULL and
 * TDM_OK). store: the tables' store (NULL: the pipeline's store:).
 * scratch_dir: where the refreshes of a Redis store, which has no
 * directory, write their output and log (NULL or "": /tmp); the CLI
 * passes $TMPDIR. Both are copied. */
int tdm__scheduler_start(const char *pipeline_path, const tdm__spec *spec,
                         const char *store, const char *scratch_dir,
                         tdm__scheduler **out, tdm_error *err);
/* Stops it: a refresh still running is asked to stop (SIGTERM) and
 * waited for; its partial output is discarded by batch itself. */
void tdm__scheduler_stop(tdm__scheduler *s);

/* {"schedules": [{"cron", "table", "in", "running", "next", "runs",
 * "failures", "last": {...}}]} */
int tdm__scheduler_status(tdm__scheduler *s, tdm__buf *out);
/* Prometheus samples with their HELP and TYPE lines. */
int tdm__scheduler_metrics(tdm__scheduler *s, const char *pipeline,
                           tdm__buf *out);

#endif /* TDM_SCHEDULE_H */
