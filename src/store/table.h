/*
 * table.h - versioned per-entity tables in LMDB, the "hybrid" path: a batch
 * run materializes, for each entity (a card id, a user id), the last values
 * of some double columns stamped with an event time `as_of`, and the live
 * server and later batch runs read them. A store is one LMDB environment (a
 * directory) holding any number of named tables; each table keeps its last
 * K versions. Any number of processes may share a store: a version is
 * written in one LMDB write transaction (rows, metadata and the deletion of
 * versions beyond K), so readers see all of it or none of it, and readers
 * are never blocked (LMDB's MVCC). Writers are serialized across the whole
 * store: a second writer, in any process, waits in tdm__table_begin until
 * the first commits or aborts.
 *
 * Version numbers increase per table (1, 2, ...). Every version has its own
 * column list; readers ask for columns by name and get NaN for a column a
 * version does not have. Values are stored as IEEE doubles in the byte
 * order of the machine (little-endian on every platform tandem builds on),
 * so a store is not portable to a big-endian machine.
 *
 * A store named by a redis:// URL keeps the same tables in Redis instead
 * (redis_table.c): the same calls, the same versioning and point-in-time
 * rules; readers there read versions from memory, which a background
 * thread keeps following (table_backend.h, docs/hybrid.md).
 */
#ifndef TDM_TABLE_H
#define TDM_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"
#include "settings.h"

/* An open store. Thread-safe to share; not usable in a child after fork
 * (the child opens its own). */
typedef struct tdm__tables tdm__tables;

/* Non-zero when `store` names a Redis store (redis:// or rediss://) rather
 * than a directory. */
int tdm__tables_is_url(const char *store);

/*
 * Opens the store in `dir` (or, for a redis:// URL, connects to it; see
 * docs/hybrid.md for the URL and the password). With `create`, the directory
 * and the LMDB files are created if missing; without it a missing store is
 * TDM_ENOTFOUND. Read slots left behind by processes that died are cleared
 * here. settings (NULL: defaults) give the LMDB map size and a Redis
 * store's password and TLS files; they are read here and not kept.
 */
int tdm__tables_open(const char *dir, int create,
                     const tdm__store_settings *settings, tdm__tables **out,
                     tdm_error *err);
void tdm__tables_close(tdm__tables *tables);

/* How a remote store's connection fares, for /metrics. LMDB stores are
 * always up with no reconnects. */
typedef struct tdm__tables_health {
  int remote;                    /* 1 for Redis */
  int connected;                 /* the follower's connection is up */
  unsigned long long reconnects; /* connections made again after a loss */
  unsigned long long failures;   /* polls or loads that failed */
} tdm__tables_health;
void tdm__tables_health_get(tdm__tables *tables, tdm__tables_health *out);

/* A number that changes whenever new versions may be visible without a
 * refresh of the store itself (Redis: each version list the follower
 * loads). LMDB stores return 0 always: their readers refresh on a clock. */
uint64_t tdm__tables_generation(tdm__tables *tables);

/* ---- versions ---- */

typedef struct tdm__table_version {
  uint64_t version;   /* 1, 2, ... per table, never reused */
  int64_t as_of_ms;   /* event time the values are as of (epoch ms) */
  int64_t created_ms; /* wall clock at tdm__table_begin (epoch ms) */
  size_t rows;        /* distinct entities */
  size_t num_columns;
  char **columns; /* num_columns NUL-terminated names */
  char *source;   /* free-form (a pipeline's SHA-256), "" when none given */
} tdm__table_version;

/*
 * Lists the versions of `table` newest (highest version) first into an
 * array the caller frees with tdm__table_versions_free. A table that does
 * not exist has no versions (count 0, TDM_OK). The list is one consistent
 * snapshot.
 */
int tdm__tables_versions(tdm__tables *tables, const char *table,
                         tdm__table_version **out, size_t *count,
                         tdm_error *err);
void tdm__table_versions_free(tdm__table_version *versions, size_t count);

/*
 * Point-in-time choice over a newest-first list: the index of the newest
 * version whose as_of_ms <= at_ms, or `count` when there is none. Pass
 * INT64_MAX for simply the newest. A version written later may carry an
 * earlier as_of (a backfill); the highest version number still wins among
 * those that qualify, since it is the most recent computation.
 */
size_t tdm__table_version_at(const tdm__table_version *versions, size_t count,
                             int64_t at_ms);

/* The index of column `name` in v, or SIZE_MAX when v lacks it. */
size_t tdm__table_version_column(const tdm__table_version *v, const char *name);

/* ---- writing ---- */

typedef struct tdm__table_writer tdm__table_writer;

/*
 * Starts version (newest + 1) of `table` with the given columns (non-empty,
 * distinct names), event time as_of_ms and optional source (NULL for
 * none). After commit, the newest `keep` versions (this one included) stay
 * and older ones are deleted; keep must be >= 1 (SIZE_MAX keeps all).
 *
 * This opens the store's one LMDB write transaction, so it waits for any
 * other writer, and the writer must be used from this thread only until
 * commit or abort. Rows go straight into the transaction: tandem keeps
 * nothing per row; LMDB keeps the pages it has dirtied in memory up to its
 * own limit (about 512 MiB), then spills them to the file.
 */
int tdm__table_begin(tdm__tables *tables, const char *table,
                     const char *const *columns, size_t num_columns,
                     int64_t as_of_ms, const char *source, size_t keep,
                     tdm__table_writer **out, tdm_error *err);

/*
 * Sets the row of `entity` (len bytes, 1 or more, see tdm__tables_max_entity)
 * to values[0..num_columns). Writing an entity twice keeps the last values.
 * A rejected argument (TDM_EINVAL) changes nothing; after LMDB fails a put
 * (a full map, TDM_EIO; TDM_ENOMEM) the writer can only be aborted, and
 * commit fails without writing anything.
 */
int tdm__table_put(tdm__table_writer *writer, const void *entity, size_t len,
                   const double *values, tdm_error *err);

/* The most entity bytes a key can hold for `table` in this store. */
size_t tdm__tables_max_entity(tdm__tables *tables, const char *table);

/*
 * Makes the version visible (atomically, with the deletion of old versions)
 * and durable, writes its number to *version, and frees the writer, also on
 * failure (then nothing was written).
 */
int tdm__table_commit(tdm__table_writer *writer, uint64_t *version,
                      tdm_error *err);

/* Distinct entities put so far. */
size_t tdm__table_writer_rows(const tdm__table_writer *writer);

/* Discards everything put and frees the writer; NULL is a no-op. */
void tdm__table_abort(tdm__table_writer *writer);

/* ---- reading ---- */

/*
 * A reader holds one LMDB read snapshot and caches version metadata, for
 * many fast lookups. Use it from one thread at a time (any thread). The
 * snapshot stays as it was when the reader was made or last refreshed, so
 * lookups are consistent with the version chosen; refresh it regularly (a
 * server: every few seconds), since LMDB cannot reuse pages that an open
 * snapshot may still see, and the file grows while a reader lags.
 */
typedef struct tdm__table_reader tdm__table_reader;

int tdm__table_reader_new(tdm__tables *tables, tdm__table_reader **out,
                          tdm_error *err);
void tdm__table_reader_free(tdm__table_reader *reader);

/* Moves the reader to the newest snapshot: versions committed since (by
 * any process) become visible, deleted ones disappear. */
int tdm__table_reader_refresh(tdm__table_reader *reader, tdm_error *err);

/*
 * Chooses, in the reader's snapshot, the newest version of `table` whose
 * as_of_ms <= at_ms (INT64_MAX: the newest). *out points at metadata owned
 * by the reader, valid until the next refresh or free. No such version is
 * TDM_ENOTFOUND.
 */
int tdm__table_reader_pick(tdm__table_reader *reader, const char *table,
                           int64_t at_ms, const tdm__table_version **out,
                           tdm_error *err);

/*
 * Looks up `entity` in table@version and writes, for each i < n, the value
 * of column column_index[i] of that version (an index into its columns, as
 * tdm__table_version_column gives; SIZE_MAX for a column the version lacks,
 * which reads as NaN) into values[i]. *found is 0 (values all NaN) when the
 * entity has no row. A version that is not in the snapshot is TDM_ENOTFOUND;
 * a row of the wrong size is TDM_EPARSE. Values are copied out, so nothing
 * returned points into the store. Allocates nothing once the version's
 * metadata is cached.
 */
int tdm__table_get(tdm__table_reader *reader, const char *table,
                   uint64_t version, const void *entity, size_t len,
                   const size_t *column_index, size_t n, double *values,
                   int *found, tdm_error *err);

/* ---- inspection ---- */

/* Entries in the store: version records and rows of every table (for tests
 * and for operators sizing a store). */
int tdm__tables_count(tdm__tables *tables, size_t *versions, size_t *rows,
                      tdm_error *err);

#endif /* TDM_TABLE_H */
