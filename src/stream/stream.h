/*
 * stream.h - `tandem stream`: a pipeline run over a Kafka topic
 * (librdkafka). Each input message is one JSON event; it goes through the
 * same pipeline core as a live event (tdm__event_from_json,
 * tdm__pipeline_process, tdm__pipeline_json), and its result is produced
 * to the output topic keyed by the entity. Each commit saves a
 * partition's entity states with their input position (every event
 * before it applied and its output acknowledged, none after it), and a
 * member assigned the partition resumes at that position, so an event is
 * never applied twice to a state; events after it are processed again
 * after a crash and repeat their first output (at-least-once), or, with
 * exactly_once, each interval's outputs, states and offsets are one Kafka
 * transaction. Invalid messages go to a dead-letter topic with the reason.
 * State is kept per assigned input partition (a state map and, with a
 * state directory, an LMDB store per partition), and written to a
 * compacted changelog topic (changelog.h) from which whichever instance
 * is assigned the partition restores it; saved and dropped on
 * revocation.
 */
#ifndef TDM_STREAM_H
#define TDM_STREAM_H

#include <signal.h>
#include <stddef.h>

#include "../core/core.h"
#include "../store/settings.h"

typedef struct tdm__stream_options {
  const char *pipeline_path;
  const char *brokers;
  const char *input, *output;
  const char *group;       /* NULL: "tandem-<pipeline name>" */
  const char *dead_letter; /* NULL: invalid messages are logged, skipped */
  const char *state_dir;   /* NULL: state in memory only */
  const char *changelog;   /* NULL: "<group>-<input>-changelog" */
  int no_changelog;        /* states stay local (no changelog topic) */
  const char *store;       /* tables for lookups (NULL: the pipeline's) */
  /* How the tables' store and the state directories open (NULL:
   * defaults); read while the run starts and its partitions are
   * assigned, so they must outlive the run. */
  const tdm__store_settings *store_settings;
  /* Non-zero: each commit's offsets are logged on stderr once their
   * states are saved ("tandem stream: commit [P] OFFSET"; tests wait on
   * it, the CLI sets it from TANDEM_STREAM_DEBUG). */
  int debug_commits;
  const char *metrics_listen; /* HOST:PORT of /metrics, or NULL */
  char **config;           /* librdkafka "key=value" settings (-X) */
  size_t num_config;
  unsigned commit_interval_ms; /* 0: 5000 */
  const char *instance_id; /* static membership (group.instance.id), or NULL */
  unsigned session_timeout_ms; /* 0: librdkafka's (45000) */
  int exactly_once; /* one Kafka transaction per commit interval */
  unsigned threads; /* processing threads (0, 1: the main thread) */
  /* The decision log (src/store/decision_log.h): every answered event,
   * with its input partition and offset, or NULL for none. Segments
   * close past decision_log_bytes or decision_log_ms (0: no limit) and
   * are recorded in the registry at path registry (NULL: not recorded);
   * decision_log_explain is TDM__EXPLAIN_ bits the records carry. */
  const char *decision_log;
  uint64_t decision_log_bytes;
  int64_t decision_log_ms;
  int decision_log_explain;
  const char *registry;
  /* The run drains and returns once *stop is non-zero (a signal handler
   * may set it); NULL: it runs until a fatal error. Each run has its own
   * flag, so one program may run several streams and stop each alone. */
  volatile sig_atomic_t *stop;
} tdm__stream_options;

/*
 * Runs until *options->stop is set (a signal) or a fatal error:
 * returns TDM_OK after draining (every output acknowledged, offsets
 * committed, states saved), TDM_EINVAL for bad options (a -X setting
 * librdkafka refuses, one that would break at-least-once), or the error
 * that stopped it.
 */
int tdm__stream_run(const tdm__stream_options *options, tdm_error *err);

#endif /* TDM_STREAM_H */
