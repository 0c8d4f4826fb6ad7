/*
 * decision_log.h - the decision log of a live runner (`tandem serve
 * --decision-log DIR`): every answered event as one JSON Lines record, in
 * segment files that are closed by size or age. The open segment is
 * DIR/decisions-N.jsonl.open; closing it syncs it, writes its manifest
 * (DIR/decisions-N.jsonl.manifest.json, command "live") and renames it to
 * DIR/decisions-N.jsonl, which is then recorded in the run registry as a
 * live run. A segment therefore appears under its final name only when it
 * is complete, as batch outputs do.
 *
 * Records are formatted by the runner; this module only requires whole
 * lines. With durable state the runner writes them in two steps, so that
 * a group commit syncs one file, not two: it reserves their place in the
 * open segment (tdm__decision_log_reserve), puts them into its
 * write-ahead log together with the commit's events (one write, one
 * fdatasync), and only then writes them into the segment without syncing
 * (tdm__decision_log_write_at). The segment is synced when it closes (by
 * the finisher thread, not the writer) and before the write-ahead log
 * drops older records (tdm__decision_log_sync, which also syncs the closed
 * segments the finisher has not finished).
 * So every record in a segment is also in the log or on disk, and on open
 * the log's records (redo) are written again at their places in the
 * segment a killed process left open; then it is cut after its last
 * complete record and closed as above.
 */
#ifndef TDM_DECISION_LOG_H
#define TDM_DECISION_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

typedef struct tdm__decision_log tdm__decision_log;

typedef struct tdm__decision_log_options {
  const char *dir;            /* created when missing */
  const char *pipeline_path;  /* recorded in each segment's manifest */
  const char *pipeline_sha256; /* NULL: hashed from pipeline_path */
  const char *pipeline_name;
  const char *model_sha256;   /* "" when the pipeline has no model */
  const char *runner;         /* "serve" or "stream", in the manifest */
  const char *registry;       /* the registry's path; NULL: no recording */
  uint64_t max_bytes;         /* close a segment once it holds this many */
  int64_t max_ms;             /* ... or once it has been open this long */
} tdm__decision_log_options;

/* Records the write-ahead log holds: where they go and what they are. */
typedef struct tdm__decision_redo {
  uint64_t segment, offset;
  const char *data;
  size_t len;
} tdm__decision_redo;

/*
 * Opens the log in opt->dir, recovering any segment a killed process left
 * open (see above) with the num_redo records of redo. The strings of opt
 * are copied; redo is read during the call only. Free with
 * tdm__decision_log_close.
 */
int tdm__decision_log_open(const tdm__decision_log_options *opt,
                           const tdm__decision_redo *redo, size_t num_redo,
                           tdm__decision_log **out, tdm_error *err);

/*
 * Reserves len bytes at the end of the open segment (closing it first
 * when it is full or old enough) and says where: *segment and *offset.
 * The caller then writes exactly those bytes there with
 * tdm__decision_log_write_at. One writer only (the committer).
 */
int tdm__decision_log_reserve(tdm__decision_log *log, size_t len,
                              uint64_t *segment, uint64_t *offset,
                              tdm_error *err);
/* Writes reserved bytes, not synced. */
int tdm__decision_log_write_at(tdm__decision_log *log, uint64_t offset,
                               const char *data, size_t len, tdm_error *err);
/* Syncs the open segment (fdatasync) and every closed one the finisher
 * thread has not finished; fails from the first failed sync of a closed
 * segment on, so that the caller keeps the records. */
int tdm__decision_log_sync(tdm__decision_log *log, tdm_error *err);

/*
 * Appends len bytes of whole records, not synced (a runner without
 * durable state). When the open segment is already full or old enough, it
 * is closed first and a new one begun, so a segment never splits the
 * records of one call. Thread-safe.
 */
int tdm__decision_log_append(tdm__decision_log *log, const char *records,
                             size_t len, tdm_error *err);

/*
 * Calls fn for every record (one line, without its newline) of the
 * closed segments in the log's directory, segment by segment in order: a
 * runner that must not log an answer twice (`tandem stream`, which
 * answers again the events after its saved position) reads what it has
 * already logged. Stops at fn's first error. Call it right after
 * tdm__decision_log_open, which has closed every segment a killed process
 * left open.
 */
int tdm__decision_log_each(tdm__decision_log *log,
                           int (*fn)(void *ctx, const char *line, size_t len,
                                     tdm_error *err),
                           void *ctx, tdm_error *err);

/* Closes (and records) the open segment, if it holds any record, and
 * frees the log. NULL is a no-op. */
void tdm__decision_log_close(tdm__decision_log *log);

#endif /* TDM_DECISION_LOG_H */
