/*
 * events.h - events as every runner receives them: a CSV file with a
 * header, JSON Lines, or JSON objects from an HTTP body, turned into the
 * one raw form the pipeline core takes (the text of each of the spec's
 * fields, absent when missing). Batch, the live endpoint and replay all
 * go through these functions, so an event means the same in each.
 */
#ifndef TDM_EVENTS_H
#define TDM_EVENTS_H

#include <stddef.h>

#include "../core/arena.h"
#include "../core/core.h"
#include "../core/json.h"
#include "../pipeline/spec.h"
#include "../pipeline/window.h"

/*
 * One JSON object's members as field texts (fields[i] for spec field i):
 * a string's text, a number's source text, true/false, null or an absent
 * member as missing. Members that are not fields are ignored. Copies go
 * into `arena` when given (else they point into doc). A field whose value
 * is an array or object fails with TDM_EPARSE naming it.
 */
int tdm__event_from_json(const tdm__spec *spec, const tdm__json_doc *doc,
                         const tdm__json *object, tdm__arena *arena,
                         tdm__str *fields, tdm_error *err);

/* Appends an event as a JSON object of its fields (numbers as numbers
 * when the field is a number and its text reads as one, else strings;
 * missing fields left out). */
int tdm__event_to_json(const tdm__spec *spec, const tdm__str *fields,
                       tdm__buf *out);

/* An event's fields as bytes (for the live runner's event log):
 * u32 count, then per field u32 length (0xFFFFFFFF: missing) and bytes. */
int tdm__event_encode(const tdm__spec *spec, const tdm__str *fields,
                      tdm__buf *out);
/* The inverse; fields point into data. TDM_EPARSE when data is not an
 * encoding of this spec's fields. */
int tdm__event_decode(const tdm__spec *spec, const void *data, size_t len,
                      tdm__str *fields);

/* A reader of events from a file, CSV or JSON Lines by its extension. */
typedef struct tdm__event_reader tdm__event_reader;

/* One event read: its fields (spec order), where it starts, and whether it
 * is malformed on its own (a JSON line that is not an object: then
 * `problem` says why and the record should be rejected, not the run). */
typedef struct tdm__event_record {
  tdm__str *fields;
  size_t line;
  const char *problem; /* NULL: fine */
  const char *text;    /* the record's own text (JSON Lines), or NULL */
  size_t text_len;
} tdm__event_record;

int tdm__event_reader_open(const char *path, const tdm__spec *spec,
                           tdm__event_reader **out, tdm_error *err);
/*
 * A reader of rows held in memory, as a CSV file with a header would hold
 * them: row r's value of column c (named columns[c]) is cells[r *
 * num_columns + c], NUL-terminated text, NULL or "" when missing (as an
 * empty CSV cell). The column names are checked as a header is (the
 * entity, the time and every field a feature reads need a column, or the
 * field must be optional; other columns are ignored), with `name` for the
 * input and line 0 for the names in messages. Records are numbered from 1
 * (their `line`). The names and cells must outlive the reader; each
 * record's texts are copied into the arena.
 */
int tdm__event_reader_cells(const tdm__spec *spec,
                            const char *const *columns, size_t num_columns,
                            const char *const *cells, size_t num_rows,
                            const char *name, tdm__event_reader **out,
                            tdm_error *err);
void tdm__event_reader_close(tdm__event_reader *r);
/*
 * Reads the next event into rec, its texts copied into `arena` (they live
 * as long as it does). Returns 1, 0 at the end, or a negative status when
 * the file itself is broken (CSV quoting, an I/O error; err says where).
 */
int tdm__event_reader_next(tdm__event_reader *r, tdm__arena *arena,
                           tdm__event_record *rec, tdm_error *err);
/* The SHA-256 of everything read so far (the whole file at the end). */
void tdm__event_reader_sha256(tdm__event_reader *r, char hex[65]);
/* 1 when the input is JSON Lines. */
int tdm__event_reader_is_jsonl(const tdm__event_reader *r);

#endif /* TDM_EVENTS_H */
