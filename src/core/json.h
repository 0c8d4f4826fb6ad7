/*
 * json.h - a JSON document parser for model files and requests.
 *
 * Why not cJSON or jansson: XGBoost writes the bare literal NaN (not JSON)
 * in categorical split nodes, and model thresholds must be parsed straight
 * from their decimal text into float32 (strtof) to match XGBoost bit for
 * bit; a library that converts every number to double first rounds twice.
 * So numbers keep their source text, and the caller picks the precision.
 *
 * Errors name the line and column for syntax, and any value can report its
 * JSON pointer (RFC 6901) for semantic errors found later.
 */
#ifndef TDM_JSON_H
#define TDM_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "core.h"

typedef enum tdm__json_type {
  TDM__JSON_NULL,
  TDM__JSON_BOOL,
  TDM__JSON_NUMBER,
  TDM__JSON_STRING,
  TDM__JSON_ARRAY,
  TDM__JSON_OBJECT
} tdm__json_type;

typedef struct tdm__json tdm__json;
struct tdm__json {
  tdm__json_type type;
  unsigned char boolean; /* TDM__JSON_BOOL */
  /* An array of numbers parsed with TDM__JSON_PACK_NUMBERS: its elements
   * are not built (items is NULL); read them with tdm__json_array_*() or
   * tdm__json_element(). */
  unsigned char packed;
  size_t count;      /* elements or members; string length in bytes */
  const char *text;  /* string: decoded, NUL-terminated; number: source */
  size_t text_len;   /* number: length of its source text */
  tdm__json *items;  /* array elements or object member values */
  const char **keys; /* object member names, NUL-terminated */
  const tdm__json *parent;
  size_t index;  /* position in the parent */
  size_t offset; /* byte offset of the value in the source */
};

typedef struct tdm__json_doc {
  tdm__arena arena;
  tdm__json *root;
  const char *source; /* the parser's copy of the input */
  size_t source_len;
  const char *name; /* for messages: a file name */
  size_t first_line; /* the line the document starts on in that file */
} tdm__json_doc;

/* Extensions to strict JSON that a caller may allow. */
enum {
  TDM__JSON_ALLOW_NAN = 1, /* NaN, Infinity, -Infinity as numbers */
  /* Arrays whose elements are all numbers are checked but not built: a
   * model's arrays of millions of numbers then cost nothing beyond their
   * text, instead of a value (~80 bytes) per number. Only for callers that
   * read arrays through tdm__json_element() and tdm__json_array_*(). */
  TDM__JSON_PACK_NUMBERS = 2,
  /* The document reads `data` in place instead of copying it: the caller
   * keeps data unchanged until tdm__json_doc_free(). */
  TDM__JSON_BORROW = 4
};

/*
 * Parses data[0..size) into doc. `name` (kept by pointer) prefixes error
 * messages: "name:LINE:COL: what". On failure doc holds nothing to free.
 */
int tdm__json_parse(tdm__json_doc *doc, const char *data, size_t size,
                    const char *name, int flags, tdm_error *err);
/* The same for a document that starts on line `first_line` of a file (a
 * JSON Lines record): messages name the file's line. */
int tdm__json_parse_at(tdm__json_doc *doc, const char *data, size_t size,
                       const char *name, size_t first_line, int flags,
                       tdm_error *err);
void tdm__json_doc_free(tdm__json_doc *doc);

/*
 * Element i (< array->count) of an array. For a packed array the element
 * is built in *scratch (found by a scan from the array's start, so meant
 * for messages, not loops) and points at the document like any value:
 * valid while both *scratch and the document are. Otherwise it is
 * &array->items[i].
 */
const tdm__json *tdm__json_element(const tdm__json_doc *doc,
                                   const tdm__json *array, size_t i,
                                   tdm__json *scratch);

/*
 * Every element of an array (packed or not) converted as tdm__json_float,
 * tdm__json_double or tdm__json_int64 would convert it, into out[0 ..
 * array->count). The first element that fails names its JSON pointer.
 */
int tdm__json_array_floats(const tdm__json_doc *doc, const tdm__json *array,
                           float *out, tdm_error *err);
int tdm__json_array_doubles(const tdm__json_doc *doc, const tdm__json *array,
                            double *out, tdm_error *err);
int tdm__json_array_int64s(const tdm__json_doc *doc, const tdm__json *array,
                           int64_t *out, tdm_error *err);

/* Member `key` of an object, or NULL if absent or v is not an object. */
const tdm__json *tdm__json_get(const tdm__json *v, const char *key);

/* Writes v's JSON pointer ("/learner/objective/name", "" for the root). */
void tdm__json_pointer(const tdm__json *v, char *buf, size_t size);

/* The 1-based line and column of a byte offset in the document. */
void tdm__json_line_col(const tdm__json_doc *doc, size_t offset, size_t *line,
                        size_t *col);

/* A short name of v's type for messages: "an object", "a string", ... */
const char *tdm__json_type_name(const tdm__json *v);

/*
 * Number conversions. They accept a JSON number, and also a string holding
 * one (XGBoost stores many parameters as strings). Fail with TDM_EPARSE and
 * a message naming the JSON pointer.
 */
int tdm__json_float(const tdm__json_doc *doc, const tdm__json *v, float *out,
                    tdm_error *err);
int tdm__json_double(const tdm__json_doc *doc, const tdm__json *v, double *out,
                     tdm_error *err);
int tdm__json_int64(const tdm__json_doc *doc, const tdm__json *v, int64_t *out,
                    tdm_error *err);

/*
 * A JSON value as a model input: a number, or null or the string "NaN" for
 * a missing value (NaN), since JSON has no NaN. Returns 0, or -1 when v is
 * anything else. The one rule for every JSON input (JSON Lines, requests).
 */
int tdm__json_feature_value(const tdm__json *v, double *out);

/* Appends s to b as a JSON string literal (quoted and escaped). */
int tdm__json_append_string(tdm__buf *b, const char *s);
/* Appends `"tags": {"K": "V", ...},\n  ` for a run's tags given as
 * "K=V" texts (nothing when there are none): the manifests of score and
 * batch write them so that the run registry can show them. */
int tdm__json_append_tags(tdm__buf *b, const char *const *tags, size_t count);
/* The same for len bytes (a NUL among them is escaped as \u0000; a byte
 * that is not valid UTF-8 is written as U+FFFD). */
int tdm__json_append_string_n(tdm__buf *b, const char *s, size_t len);
/* The length of the valid UTF-8 sequence at p (available bytes), or 0. */
size_t tdm__utf8_length(const void *p, size_t available);

/* Fails with a message "name: at POINTER: <formatted text>". */
int tdm__json_fail(const tdm__json_doc *doc, const tdm__json *v, int status,
                   tdm_error *err, const char *fmt, ...) TDM__PRINTF(5, 6);

#endif /* TDM_JSON_H */
