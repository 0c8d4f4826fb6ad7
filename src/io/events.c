/*
 * events.c - CSV, JSON Lines and JSON objects to the raw events of
 * events.h. CSV columns and JSON members are matched to the pipeline's
 * fields by name; other columns are ignored, and a field with no column
 * is missing in every event.
 */
#include "events.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../pipeline/pipeline.h"
#include "csv.h"

static int copy_text(tdm__arena *arena, const char *text, size_t len,
                     tdm__str *out) {
  if (arena == NULL) {
    *out = (tdm__str){text, len};
    return TDM_OK;
  }
  char *copy = tdm__arena_strndup(arena, text, len);
  if (copy == NULL) return TDM_ENOMEM;
  *out = (tdm__str){copy, len};
  return TDM_OK;
}

int tdm__event_from_json(const tdm__spec *spec, const tdm__json_doc *doc,
                         const tdm__json *object, tdm__arena *arena,
                         tdm__str *fields, tdm_error *err) {
  for (size_t i = 0; i < spec->num_fields; i++) fields[i] = (tdm__str){NULL, 0};
  if (object->type != TDM__JSON_OBJECT)
    return tdm__json_fail(doc, object, TDM_EPARSE, err,
                          "an event must be a JSON object, not %s",
                          tdm__json_type_name(object));
  for (size_t i = 0; i < spec->num_fields; i++) {
    const tdm__json *v = tdm__json_get(object, spec->fields[i].name);
    if (v == NULL || v->type == TDM__JSON_NULL) continue;
    int rc = TDM_OK;
    switch (v->type) {
      case TDM__JSON_STRING:
        rc = copy_text(arena, v->text, v->count, &fields[i]);
        break;
      case TDM__JSON_NUMBER:
        rc = copy_text(arena, v->text, v->text_len, &fields[i]);
        break;
      case TDM__JSON_BOOL:
        rc = copy_text(arena, v->boolean ? "true" : "false",
                       v->boolean ? 4 : 5, &fields[i]);
        break;
      default:
        return tdm__json_fail(doc, v, TDM_EPARSE, err,
                              "field \"%s\" must be a string, a number or "
                              "null, not %s",
                              spec->fields[i].name, tdm__json_type_name(v));
    }
    if (rc != TDM_OK) return tdm__fail(err, rc, "out of memory");
  }
  return TDM_OK;
}

int tdm__event_to_json(const tdm__spec *spec, const tdm__str *fields,
                       tdm__buf *out) {
  int rc = tdm__buf_append(out, "{", 1);
  int first = 1;
  for (size_t i = 0; i < spec->num_fields && rc == TDM_OK; i++) {
    if (fields[i].data == NULL) continue;
    if (!first) rc = tdm__buf_append(out, ",", 1);
    first = 0;
    if (rc == TDM_OK) rc = tdm__json_append_string(out, spec->fields[i].name);
    if (rc == TDM_OK) rc = tdm__buf_append(out, ":", 1);
    /* Numbers keep their own text so the event is what the file said. */
    if (rc == TDM_OK) rc = tdm__field_json(spec, i, fields[i], out);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "}", 1);
  return rc;
}

int tdm__event_encode(const tdm__spec *spec, const tdm__str *fields,
                      tdm__buf *out) {
  uint32_t n = (uint32_t)spec->num_fields;
  int rc = tdm__buf_append(out, &n, 4);
  for (size_t i = 0; i < spec->num_fields && rc == TDM_OK; i++) {
    uint32_t len = fields[i].data ? (uint32_t)fields[i].len : UINT32_MAX;
    rc = tdm__buf_append(out, &len, 4);
    if (rc == TDM_OK && fields[i].data)
      rc = tdm__buf_append(out, fields[i].data, fields[i].len);
  }
  return rc;
}

int tdm__event_decode(const tdm__spec *spec, const void *data, size_t len,
                      tdm__str *fields) {
  const char *p = data, *end = p + len;
  uint32_t n;
  if (len < 4) return TDM_EPARSE;
  memcpy(&n, p, 4);
  p += 4;
  if (n != spec->num_fields) return TDM_EPARSE;
  for (size_t i = 0; i < n; i++) {
    uint32_t flen;
    if (end - p < 4) return TDM_EPARSE;
    memcpy(&flen, p, 4);
    p += 4;
    if (flen == UINT32_MAX) {
      fields[i] = (tdm__str){NULL, 0};
      continue;
    }
    if ((size_t)(end - p) < flen) return TDM_EPARSE;
    fields[i] = (tdm__str){p, flen};
    p += flen;
  }
  return p == end ? TDM_OK : TDM_EPARSE;
}

/* ---- files ---- */

struct tdm__event_reader {
  const tdm__spec *spec;
  FILE *fp;
  tdm__csv *csv;
  tdm__sha256 hash;
  int jsonl;
  char *path;
  size_t *column_field; /* CSV: the field of each column, or SIZE_MAX */
  size_t num_columns;
  tdm__json_doc doc; /* JSON Lines: the current line's document */
  tdm_error problem;
  /* Rows held in memory (tdm__event_reader_cells): cells[row *
   * num_columns + column]; in_memory is 0 when reading a file. */
  int in_memory;
  const char *const *cells;
  size_t num_rows, row;
};

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Why a header lacks a needed column, as a hint to append to the error:
 * the three mistakes that otherwise look alike are a file separated by
 * semicolons (one column holding them all), a name spelled in another
 * case, and a file with no header at all (its first line names none of
 * the pipeline's fields). Returns "" when none of them applies. */
static const char *header_hint(const tdm__event_reader *r,
                               const tdm__csv_record *header, const char *name,
                               char *buf, size_t size) {
  for (size_t c = 0; c < header->count; c++)
    if (strcasecmp(header->fields[c].text, name) == 0) {
      snprintf(buf, size,
               "; column %zu is \"%s\": names are case-sensitive, rename it "
               "\"%s\"",
               c + 1, header->fields[c].text, name);
      return buf;
    }
  if (header->count == 1 && strchr(header->fields[0].text, ';') != NULL)
    return "; the header is one column with semicolons in it: tandem reads "
           "comma-separated files, so convert it (e.g. tr ';' ',')";
  size_t known = 0;
  for (size_t c = 0; c < header->count; c++)
    if (r->column_field[c] != SIZE_MAX) known++;
  if (known == 0)
    return "; no column names a field of the pipeline: the first line must "
           "be a header of field names";
  return "";
}

/* Which fields the features read: the symbol table of a compile whose
 * only job is to note every field name an expression mentions. A field
 * with no column would be missing in every event and change every score
 * silently, so read_header refuses that unless the field is optional. */
typedef struct field_uses {
  const tdm__spec *spec;
  size_t *user; /* per field: the first feature that reads it, or SIZE_MAX */
  size_t feature;
} field_uses;

static size_t field_named(const tdm__spec *spec, const char *name, size_t len) {
  for (size_t i = 0; i < spec->num_fields; i++)
    if (strlen(spec->fields[i].name) == len &&
        memcmp(spec->fields[i].name, name, len) == 0)
      return i;
  return SIZE_MAX;
}

static int note_field(void *ctx, const char *name, size_t len, int *type,
                      size_t *slot) {
  field_uses *u = ctx;
  *slot = 0;
  *type = TDM__EXPR_NUMBER;
  size_t i = field_named(u->spec, name, len);
  if (i != SIZE_MAX) {
    if (u->spec->fields[i].type == TDM__FIELD_STRING) *type = TDM__EXPR_STRING;
    if (u->user[i] == SIZE_MAX) u->user[i] = u->feature;
  }
  /* Any other name (a feature, score) is a number here: this compile only
   * collects names, and the pipeline's own compile judges the types. */
  return 0;
}

static void note_expression(field_uses *u, const char *text) {
  if (text == NULL) return;
  tdm__expr_symbols symbols = {u, note_field};
  tdm__expr_error e;
  tdm__expr *expr = NULL;
  if (tdm__expr_compile(text, &symbols, &expr, &e) == TDM_OK)
    tdm__expr_free(expr);
}

/* Fills user (num_fields entries) with, per field, the first feature that
 * reads it (through its expression, aggregated input or filter). */
static void fields_used(const tdm__spec *spec, size_t *user) {
  field_uses u = {spec, user, 0};
  for (size_t i = 0; i < spec->num_fields; i++) user[i] = SIZE_MAX;
  for (size_t f = 0; f < spec->num_features; f++) {
    const tdm__feature_spec *feature = &spec->features[f];
    u.feature = f;
    note_expression(&u, feature->expr);
    note_expression(&u, feature->where);
    if (feature->agg_input != NULL) {
      size_t i = field_named(spec, feature->agg_input,
                             strlen(feature->agg_input));
      if (i != SIZE_MAX && user[i] == SIZE_MAX) user[i] = f;
    }
  }
}

static int check_header(tdm__event_reader *r, const tdm__csv_record *h,
                        tdm_error *err);

static int read_header(tdm__event_reader *r, tdm_error *err) {
  tdm__csv_record header;
  int rc = tdm__csv_next(r->csv, &header, err);
  if (rc < 0) return rc;
  if (rc == 0)
    return tdm__fail(err, TDM_EPARSE, "%s: empty file, expected a header",
                     r->path);
  return check_header(r, &header, err);
}

/* Maps the header's columns to the spec's fields, and refuses a header
 * that lacks the entity, the time or a field a feature reads (unless it
 * is optional), naming the column and line. */
static int check_header(tdm__event_reader *r, const tdm__csv_record *h,
                        tdm_error *err) {
  const tdm__csv_record header = *h;
  int rc;
  r->num_columns = header.count;
  r->column_field = tdm__calloc(header.count + 1, sizeof(size_t));
  if (r->column_field == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t c = 0; c < header.count; c++) {
    r->column_field[c] = SIZE_MAX;
    for (size_t i = 0; i < r->spec->num_fields; i++) {
      if (strcmp(header.fields[c].text, r->spec->fields[i].name) != 0) continue;
      for (size_t d = 0; d < c; d++)
        if (r->column_field[d] == i)
          return tdm__fail(err, TDM_EPARSE,
                           "%s:%zu:%zu: column \"%s\" appears twice", r->path,
                           header.line, header.fields[c].column,
                           header.fields[c].text);
      r->column_field[c] = i;
    }
  }
  /* The entity and time must have columns. */
  const char *need[] = {r->spec->entity, r->spec->time};
  for (size_t k = 0; k < 2; k++) {
    size_t c = 0;
    while (c < header.count && strcmp(header.fields[c].text, need[k]) != 0) c++;
    char hint[160];
    if (c == header.count)
      return tdm__fail(err, TDM_ESCHEMA,
                       "%s:%zu: the header has no column \"%s\" (the "
                       "pipeline's %s)%s",
                       r->path, header.line, need[k], k ? "time" : "entity",
                       header_hint(r, &header, need[k], hint, sizeof hint));
  }
  size_t *user = tdm__calloc(r->spec->num_fields + 1, sizeof *user);
  if (user == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  fields_used(r->spec, user);
  rc = TDM_OK;
  for (size_t i = 0; i < r->spec->num_fields && rc == TDM_OK; i++) {
    const tdm__field_spec *field = &r->spec->fields[i];
    if (user[i] == SIZE_MAX || field->optional) continue;
    size_t c = 0;
    while (c < header.count && r->column_field[c] != i) c++;
    if (c < header.count) continue;
    char hint[160];
    rc = tdm__fail(err, TDM_ESCHEMA,
                   "%s:%zu: the header has no column \"%s\", which feature "
                   "\"%s\" reads; add the column, or declare the field "
                   "{optional: true} if it may be absent%s",
                   r->path, header.line, field->name,
                   r->spec->features[user[i]].name,
                   header_hint(r, &header, field->name, hint, sizeof hint));
  }
  tdm__free(user);
  return rc;
}

int tdm__event_reader_open(const char *path, const tdm__spec *spec,
                           tdm__event_reader **out, tdm_error *err) {
  *out = NULL;
  tdm__event_reader *r = tdm__calloc(1, sizeof *r);
  if (r == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  r->spec = spec;
  r->jsonl = ends_with(path, ".jsonl") || ends_with(path, ".ndjson") ||
             ends_with(path, ".json");
  r->path = tdm__strdup(path);
  r->fp = r->path ? fopen(path, "rb") : NULL;
  int rc = TDM_OK;
  if (r->path == NULL)
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  else if (r->fp == NULL)
    rc = tdm__fail(err, errno == ENOENT ? TDM_ENOTFOUND : TDM_EIO,
                   "%s: cannot open: %s", path, strerror(errno));
  if (rc == TDM_OK && tdm__csv_open(&r->csv, r->fp, r->path) != TDM_OK)
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  if (rc == TDM_OK) {
    tdm__sha256_init(&r->hash);
    tdm__csv_hash_into(r->csv, &r->hash);
    if (!r->jsonl) rc = read_header(r, err);
  }
  if (rc != TDM_OK) {
    tdm__event_reader_close(r);
    return rc;
  }
  *out = r;
  return TDM_OK;
}

int tdm__event_reader_cells(const tdm__spec *spec,
                            const char *const *columns, size_t num_columns,
                            const char *const *cells, size_t num_rows,
                            const char *name, tdm__event_reader **out,
                            tdm_error *err) {
  *out = NULL;
  if ((cells == NULL && num_rows > 0 && num_columns > 0) ||
      (columns == NULL && num_columns > 0))
    return tdm__fail(err, TDM_EINVAL, "%s: no cells or column names", name);
  tdm__event_reader *r = tdm__calloc(1, sizeof *r);
  tdm__csv_field *names = tdm__calloc(num_columns + 1, sizeof *names);
  int rc = TDM_OK;
  if (r == NULL || names == NULL || (r->path = tdm__strdup(name)) == NULL) {
    tdm__free(r);
    tdm__free(names);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  r->spec = spec;
  r->in_memory = 1;
  r->cells = cells;
  r->num_rows = num_rows;
  tdm__sha256_init(&r->hash);
  /* The column names are checked as a CSV header is, on "line 0". */
  for (size_t c = 0; c < num_columns && rc == TDM_OK; c++) {
    if (columns[c] == NULL)
      rc = tdm__fail(err, TDM_EINVAL, "%s: column %zu has no name", name,
                     c + 1);
    else
      names[c] = (tdm__csv_field){columns[c], strlen(columns[c]), c + 1};
  }
  tdm__csv_record header = {names, num_columns, 0, 0};
  if (rc == TDM_OK) rc = check_header(r, &header, err);
  tdm__free(names);
  if (rc != TDM_OK) {
    tdm__event_reader_close(r);
    return rc;
  }
  *out = r;
  return TDM_OK;
}

/* The next row of cells: each field's cell text, a NULL or empty cell
 * missing (as an empty CSV cell is); columns that are no field are
 * skipped. The input's SHA-256 is over every cell as a u32 length
 * (0xFFFFFFFF for NULL) and its bytes, so two runs over the same rows
 * record the same input hash. */
static int next_cells(tdm__event_reader *r, tdm__arena *arena,
                      tdm__event_record *rec, tdm_error *err) {
  if (r->row == r->num_rows) return 0;
  size_t n = r->num_columns;
  const char *const *row = r->cells + r->row * n;
  rec->line = ++r->row;
  for (size_t c = 0; c < n; c++) {
    uint32_t len = row[c] ? (uint32_t)strlen(row[c]) : UINT32_MAX;
    tdm__sha256_update(&r->hash, &len, 4);
    if (row[c] == NULL) continue;
    tdm__sha256_update(&r->hash, row[c], len);
    size_t f = r->column_field[c];
    if (f == SIZE_MAX || len == 0) continue;
    if (copy_text(arena, row[c], len, &rec->fields[f]) != TDM_OK)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  return 1;
}

void tdm__event_reader_close(tdm__event_reader *r) {
  if (r == NULL) return;
  if (r->doc.root != NULL) tdm__json_doc_free(&r->doc);
  tdm__csv_close(r->csv);
  if (r->fp) fclose(r->fp);
  tdm__free(r->column_field);
  tdm__free(r->path);
  tdm__free(r);
}

int tdm__event_reader_is_jsonl(const tdm__event_reader *r) { return r->jsonl; }

void tdm__event_reader_sha256(tdm__event_reader *r, char hex[65]) {
  if (r->csv != NULL) tdm__csv_drain(r->csv);
  tdm__sha256 copy = r->hash;
  tdm__sha256_final_hex(&copy, hex);
}

static int next_jsonl(tdm__event_reader *r, tdm__arena *arena,
                      tdm__event_record *rec, tdm_error *err) {
  const char *text;
  size_t len, line;
  int rc;
  do {
    rc = tdm__csv_next_line(r->csv, &text, &len, &line, err);
    if (rc <= 0) return rc;
  } while (len == 0 || (len == 1 && text[0] == '\r'));
  rec->line = line;
  char *copy = tdm__arena_strndup(arena, text, len);
  if (copy == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  rec->text = copy;
  rec->text_len = len;
  if (r->doc.root != NULL) tdm__json_doc_free(&r->doc);
  rc = tdm__json_parse_at(&r->doc, text, len, r->path, line, 0, &r->problem);
  if (rc == TDM_OK)
    rc = tdm__event_from_json(r->spec, &r->doc, r->doc.root, arena,
                              rec->fields, &r->problem);
  if (rc == TDM_ENOMEM) return tdm__fail(err, rc, "out of memory");
  if (rc != TDM_OK) {
    rec->problem = tdm__arena_strndup(arena, r->problem.message,
                                      strlen(r->problem.message));
    if (rec->problem == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  return 1;
}

static int next_csv(tdm__event_reader *r, tdm__arena *arena,
                    tdm__event_record *rec, tdm_error *err) {
  tdm__csv_record record;
  int rc;
  do {
    rc = tdm__csv_next(r->csv, &record, err);
    if (rc <= 0) return rc;
  } while (record.blank);
  rec->line = record.line;
  if (record.count != r->num_columns) {
    char message[160];
    snprintf(message, sizeof message,
             "%s:%zu: %zu fields, but the header has %zu", r->path,
             record.line, record.count, r->num_columns);
    rec->problem = tdm__arena_strndup(arena, message, strlen(message));
    if (rec->problem == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  for (size_t c = 0; c < record.count && c < r->num_columns; c++) {
    size_t f = r->column_field[c];
    if (f == SIZE_MAX || record.fields[c].len == 0) continue;
    if (copy_text(arena, record.fields[c].text, record.fields[c].len,
                  &rec->fields[f]) != TDM_OK)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  return 1;
}

int tdm__event_reader_next(tdm__event_reader *r, tdm__arena *arena,
                           tdm__event_record *rec, tdm_error *err) {
  rec->problem = NULL;
  rec->text = NULL;
  rec->text_len = 0;
  rec->fields = tdm__arena_alloc(arena, (r->spec->num_fields + 1) *
                                            sizeof *rec->fields);
  if (rec->fields == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t i = 0; i < r->spec->num_fields; i++)
    rec->fields[i] = (tdm__str){NULL, 0};
  if (r->in_memory) return next_cells(r, arena, rec, err);
  return r->jsonl ? next_jsonl(r, arena, rec, err) : next_csv(r, arena, rec, err);
}
