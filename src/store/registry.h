/*
 * registry.h - the run registry: a SQLite database in which every
 * `tandem score` and `tandem batch` run is recorded from its manifest
 * (OUT.manifest.json), so that runs can be listed (`tandem runs`) and two
 * of them compared (`tandem compare`). Many processes may record into one
 * registry at once: it uses WAL journaling, waits up to 10 s for a lock,
 * and writes each run in one transaction. A schema_version table numbers
 * the schema so that later versions of tandem can migrate it in place.
 */
#ifndef TDM_REGISTRY_H
#define TDM_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

/* The schema this tandem writes; registry.c holds the migrations to it. */
#define TDM__REGISTRY_SCHEMA_VERSION 1

typedef struct tdm__registry tdm__registry;

/* Every function takes the registry's path explicitly: the library reads
 * no environment variable. The CLI finds the default one
 * (tdm__cli_registry_path in src/cli/cmd_runs.c). */

enum {
  TDM__REGISTRY_READ = 0,  /* must exist; runs are only read */
  TDM__REGISTRY_WRITE = 1, /* created with its directories when missing */
};

/*
 * Opens the registry at path, migrating its schema to the current version
 * when opened for writing. Fails with TDM_ENOTFOUND when mode is READ and
 * there is no file, and TDM_EUNSUPPORTED when a newer tandem wrote it.
 * The caller closes it with tdm__registry_close (NULL is a no-op).
 */
int tdm__registry_open(const char *path, int mode, tdm__registry **out,
                       tdm_error *err);
void tdm__registry_close(tdm__registry *registry);

/*
 * Records the run that manifest_path describes (a manifest written by
 * `tandem score` or `tandem batch` in this working directory: its relative
 * paths are made absolute against the current directory). Writes the new
 * run's id (12 hex digits and a NUL) into run_id. Opens and closes the
 * registry itself, creating it when missing.
 */
int tdm__registry_record_manifest(const char *registry_path,
                                  const char *manifest_path, char run_id[16],
                                  tdm_error *err);

/*
 * *found is 1 when a run recorded from manifest_path (made absolute as
 * tdm__registry_record_manifest makes it) is in the registry at
 * registry_path, else 0 (also when there is no registry yet).
 */
int tdm__registry_has_manifest(const char *registry_path,
                               const char *manifest_path, int *found,
                               tdm_error *err);

/*
 * Sets the metrics of a run (a JSON object, e.g. from `tandem eval`):
 * run_id is an id or a unique prefix of one. Replaces earlier metrics.
 */
int tdm__registry_set_metrics(const char *registry_path, const char *run_id,
                              const char *json, tdm_error *err);

/* One recorded run. Strings are owned by the record (NULL when unknown). */
typedef struct tdm__run_record {
  char id[16];
  char *command;     /* "score" or "batch" */
  char *started_at;  /* RFC 3339 UTC, to the second */
  char *finished_at;
  double seconds;
  char *tandem_version;
  char *pipeline_path, *pipeline_sha256, *pipeline_name; /* batch */
  char *model_path; /* score only: a batch run's model is the pipeline's */
  char *model_sha256;
  char *model_version; /* the SHA-256's first 12 hex digits */
  char *input_path, *input_sha256;
  char *output_path, *output_sha256;
  int64_t rows, rejected, duplicates; /* rows written; -1 when unknown */
  int64_t threads;
  char *flags;   /* JSON object */
  char *tables;  /* JSON array of the tables materialized */
  char *metrics; /* JSON object, or NULL until set */
  char *tags;    /* JSON object of --tag KEY=VALUE, or NULL when none */
} tdm__run_record;

void tdm__run_record_free(tdm__run_record *run);

/*
 * Appends run to b as one JSON object (no newline): every field, with
 * flags, tables and metrics as the JSON they hold.
 */
int tdm__run_record_json(tdm__buf *b, const tdm__run_record *run);

/* What `tandem runs` filters by; NULL or 0 fields do not filter. */
typedef struct tdm__run_filter {
  const char *command;       /* exactly */
  const char *model_prefix;  /* lowercase hex prefix of the model's SHA-256 */
  const char *pipeline_path; /* an absolute path */
  const char *pipeline_prefix; /* or a hex prefix of its SHA-256 */
  const char *since;         /* started at or after, "YYYY-MM-DDTHH:MM:SSZ" */
  size_t limit;
} tdm__run_filter;

/*
 * The runs that match filter, newest first, into a new array of *count
 * records that the caller frees with tdm__run_records_free.
 */
int tdm__registry_list(tdm__registry *registry, const tdm__run_filter *filter,
                       tdm__run_record **runs, size_t *count, tdm_error *err);
void tdm__run_records_free(tdm__run_record *runs, size_t count);

/*
 * One run by its id or a unique prefix of it. Fails with TDM_ENOTFOUND, or
 * TDM_EINVAL when the prefix names more than one run.
 */
int tdm__registry_get(tdm__registry *registry, const char *id,
                      tdm__run_record *run, tdm_error *err);

#endif /* TDM_REGISTRY_H */
