/*
 * table_backend.h - what the two table backends share: table.c keeps the
 * tables of table.h in LMDB and dispatches every call to redis_table.c when
 * the store is a redis:// URL. Both backends check names and columns with
 * the same functions and store a version's metadata as the same record, so
 * versioning rules cannot drift apart between them.
 *
 * Metadata record, all integers little-endian:
 *   u32 format (1), i64 as_of_ms, i64 created_ms, u64 rows,
 *   u32 num_columns, num_columns x (u32 length, bytes), u32 length, source.
 */
#ifndef TDM_TABLE_BACKEND_H
#define TDM_TABLE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "table.h"

/* ---- shared rules and encoding (table.c) ---- */

/* TDM_EINVAL naming `where` (the store) unless the table name has 1 to
 * 200 bytes. */
int tdm__table_check_name(const char *where, const char *table, tdm_error *err);

/* TDM_EINVAL naming the store and table unless the columns are non-empty,
 * distinct names and the source fits a record. */
int tdm__table_check_columns(const char *where, const char *table,
                             const char *const *columns, size_t n,
                             const char *source, tdm_error *err);

/* Appends a metadata record with rows 0 to b; non-zero when out of
 * memory. */
int tdm__table_meta_encode(tdm__buf *b, const char *const *columns, size_t n,
                           int64_t as_of_ms, int64_t created_ms,
                           const char *source);

/* Sets the rows field of an encoded record. */
void tdm__table_meta_set_rows(tdm__buf *b, uint64_t rows);

/* Decodes a record into v (freed with tdm__table_version_clear); a record
 * of the wrong shape is TDM_EPARSE naming the store, table and version. */
int tdm__table_meta_decode(const char *where, const char *table,
                           uint64_t version, const void *data, size_t len,
                           tdm__table_version *v, tdm_error *err);
void tdm__table_version_clear(tdm__table_version *v);

/* ---- the Redis backend (redis_table.c) ---- */

typedef struct tdm__redis_tables tdm__redis_tables;
typedef struct tdm__redis_writer tdm__redis_writer;
typedef struct tdm__redis_reader tdm__redis_reader;

/* Opens a redis:// store: connects and authenticates once, so a store that
 * cannot be reached is an error at start. */
int tdm__redis_tables_open(const char *url,
                           const tdm__store_settings *settings,
                           tdm__redis_tables **out, tdm_error *err);
void tdm__redis_tables_close(tdm__redis_tables *r);
int tdm__redis_tables_versions(tdm__redis_tables *r, const char *table,
                               tdm__table_version **out, size_t *count,
                               tdm_error *err);
uint64_t tdm__redis_tables_generation(tdm__redis_tables *r);
void tdm__redis_tables_health(tdm__redis_tables *r, tdm__tables_health *out);
int tdm__redis_tables_count(tdm__redis_tables *r, size_t *versions,
                            size_t *rows, tdm_error *err);

/* The arguments are checked by tdm__table_begin before this is called. */
int tdm__redis_table_begin(tdm__redis_tables *r, const char *table,
                           const char *const *columns, size_t num_columns,
                           int64_t as_of_ms, const char *source, size_t keep,
                           tdm__redis_writer **out, tdm_error *err);
int tdm__redis_table_put(tdm__redis_writer *w, const void *entity, size_t len,
                         const double *values, tdm_error *err);
size_t tdm__redis_table_rows(const tdm__redis_writer *w);
int tdm__redis_table_commit(tdm__redis_writer *w, uint64_t *version,
                            tdm_error *err);
void tdm__redis_table_abort(tdm__redis_writer *w);

int tdm__redis_reader_new(tdm__redis_tables *r, tdm__redis_reader **out,
                          tdm_error *err);
void tdm__redis_reader_free(tdm__redis_reader *reader);
int tdm__redis_reader_refresh(tdm__redis_reader *reader, tdm_error *err);
int tdm__redis_reader_pick(tdm__redis_reader *reader, const char *table,
                           int64_t at_ms, const tdm__table_version **out,
                           tdm_error *err);
int tdm__redis_table_get(tdm__redis_reader *reader, const char *table,
                         uint64_t version, const void *entity, size_t len,
                         const size_t *column_index, size_t n, double *values,
                         int *found, tdm_error *err);

#endif /* TDM_TABLE_BACKEND_H */
