/*
 * csv.h - a streaming CSV reader (RFC 4180: comma separated, fields may
 * be double-quoted with "" for a quote, CRLF or LF line ends, a UTF-8 BOM
 * tolerated). Records come one at a time with the line and column of each
 * field, so every error can name the exact place. Memory stays bounded by
 * the longest record, whatever the file size.
 */
#ifndef TDM_CSV_H
#define TDM_CSV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/core.h"

typedef struct tdm__csv tdm__csv;

typedef struct tdm__csv_field {
  const char *text; /* unquoted, NUL-terminated; valid until the next read */
  size_t len;
  size_t column; /* 1-based byte column where the field starts */
} tdm__csv_field;

typedef struct tdm__csv_record {
  tdm__csv_field *fields;
  size_t count;
  size_t line; /* 1-based line on which the record starts */
  int blank;   /* the line was empty: one empty field */
} tdm__csv_record;

/*
 * Reads CSV from fp (not closed by the reader). `name` (kept by pointer)
 * names the input in error messages.
 */
int tdm__csv_open(tdm__csv **out, FILE *fp, const char *name);
void tdm__csv_close(tdm__csv *csv);

/*
 * Reads CSV from data[0..len), which the caller keeps alive and
 * unchanged by others until tdm__csv_close: the reader cuts fields in
 * place (it writes NUL bytes over the commas and line ends of the records
 * it has handed out), so nothing is copied. No byte order mark is looked
 * for and there is nothing to hash or drain.
 */
int tdm__csv_open_memory(tdm__csv **out, char *data, size_t len,
                         const char *name);

/*
 * Reads the next record. Returns 1 with *record filled, 0 at the end of the
 * input, or a negative status with err saying "name:LINE:COL: what". A
 * blank line is a record of one empty field with `blank` set: in a
 * one-column file it is a missing value, elsewhere the caller may skip it.
 */
int tdm__csv_next(tdm__csv *csv, tdm__csv_record *record, tdm_error *err);

/*
 * Feeds every byte the reader reads into ctx from now on, so that once the
 * input has been read to its end ctx holds the SHA-256 of the whole file
 * (call before the first tdm__csv_next).
 */
void tdm__csv_hash_into(tdm__csv *csv, tdm__sha256 *ctx);

/*
 * Reads the rest of the input without parsing it, so that the hash set
 * with tdm__csv_hash_into covers the whole file. Returns TDM_OK or TDM_EIO.
 */
int tdm__csv_drain(tdm__csv *csv);

/* Bytes consumed so far (for progress reporting). */
size_t tdm__csv_offset(const tdm__csv *csv);

/*
 * Parses a numeric cell: empty, NaN, nan, NA or null are missing (NaN).
 * Returns 0 on success, -1 if the text is not a number.
 */
/*
 * Reads the next line as it is (JSON Lines), without its "\n" or "\r\n",
 * through the same buffered, hashed reader. Returns 1 with the line in
 * *text (NUL-terminated, valid until the next read), 0 at the end, or a
 * negative status.
 */
int tdm__csv_next_line(tdm__csv *csv, const char **text, size_t *len,
                       size_t *line, tdm_error *err);

/*
 * Hands over the bytes read ahead but not yet consumed (the caller then
 * reads the file itself), and the line they start on. The reader has
 * already hashed them.
 */
void tdm__csv_take_rest(tdm__csv *csv, const char **data, size_t *len,
                        size_t *line);

/* For a reader over a piece of a file: lines count from `line`, and no
 * byte order mark is looked for. */
void tdm__csv_start_at(tdm__csv *csv, size_t line);

int tdm__parse_cell_number(const char *text, size_t len, double *out);

/*
 * The scanning kernel of the plain-record path: bit i of the result is
 * set when block[i] (64 bytes) is ',', '"', '\n', '\r' or NUL.
 * tdm__csv_special_mask is the one the reader uses (SSE2 on x86-64, where
 * it is always present; elsewhere the _words one), _words works eight
 * bytes at a time in plain C, and _reference a byte at a time: the unit
 * tests compare all three.
 */
uint64_t tdm__csv_special_mask(const char *block);
uint64_t tdm__csv_special_mask_words(const char *block);
uint64_t tdm__csv_special_mask_reference(const char *block);

/* tdm__csv_append_field, which writes one CSV field, is core.h's. */

#endif /* TDM_CSV_H */
