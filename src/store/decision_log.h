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
 * Records are formatted by the runner; this module only requires that
 * each ends with `"log_seq":N}` and a newline, N being the write-ahead log
 * position of the event (0 for an answer that applied nothing: a
 * duplicate or a fallback). On open, a segment left open by a killed
 * process is cut after its last complete record and before the first
 * record whose log_seq is past last_seq (the records of a group commit
 * whose write-ahead log never reached the disk: those events were never
 * answered, and a retry answers them anew), then closed as above.
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
  const char *pipeline_sha256;
  const char *pipeline_name;
  const char *model_sha256;   /* "" when the pipeline has no model */
  const char *runner;         /* "serve" or "stream", in the manifest */
  const char *registry;       /* the registry's path; NULL: no recording */
  uint64_t max_bytes;         /* close a segment once it holds this many */
  int64_t max_ms;             /* ... or once it has been open this long */
} tdm__decision_log_options;

/*
 * Opens the log in opt->dir, recovering any segment a killed process left
 * open (see above; last_seq UINT64_MAX keeps every complete record). The
 * strings of opt are copied. Free with tdm__decision_log_close.
 */
int tdm__decision_log_open(const tdm__decision_log_options *opt,
                           uint64_t last_seq, tdm__decision_log **out,
                           tdm_error *err);

/*
 * Appends len bytes of whole records. When the open segment is already
 * full or old enough, it is closed first and a new one begun, so a
 * segment never splits the records of one call. With sync, the segment
 * is on disk (fdatasync) when this returns. Thread-safe.
 */
int tdm__decision_log_append(tdm__decision_log *log, const char *records,
                             size_t len, int sync, tdm_error *err);

/* Closes (and records) the open segment, if it holds any record, and
 * frees the log. NULL is a no-op. */
void tdm__decision_log_close(tdm__decision_log *log);

#endif /* TDM_DECISION_LOG_H */
