/*
 * csv.c - the streaming CSV reader declared in csv.h: a byte-at-a-time
 * state machine over a large read buffer, building each record's unquoted
 * fields in a growable buffer, and before it a path for the common record
 * (one plain line in the buffer) that finds the line's commas and end in
 * one pass, 64 bytes at a time, and cuts its fields in place. The buffer
 * is the reader's own (filled from a FILE) or the caller's memory.
 */
#include "csv.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define READ_SIZE (1 << 20)

struct tdm__csv {
  FILE *fp; /* NULL for a reader over memory */
  const char *name;
  char *in;      /* read buffer, or the caller's memory */
  size_t in_len; /* bytes in the buffer */
  size_t in_pos; /* next byte to look at */
  int eof;
  size_t consumed; /* bytes consumed before this buffer */
  size_t line;     /* current line, 1-based */
  size_t column;   /* current byte column, 1-based */
  int at_start;
  tdm__sha256 *hash; /* optional: every byte read */
  tdm__buf text;     /* the record's fields, NUL separated */
  size_t *starts;    /* offset of each field in text */
  size_t *columns;
  size_t fields_cap;
  tdm__csv_field *fields;
  size_t out_cap;
};

int tdm__csv_open(tdm__csv **out, FILE *fp, const char *name) {
  *out = NULL;
  tdm__csv *csv = tdm__calloc(1, sizeof *csv);
  if (csv == NULL) return TDM_ENOMEM;
  csv->in = tdm__malloc(READ_SIZE);
  if (csv->in == NULL) {
    tdm__free(csv);
    return TDM_ENOMEM;
  }
  csv->fp = fp;
  csv->name = name;
  csv->line = 1;
  csv->column = 1;
  csv->at_start = 1;
  *out = csv;
  return TDM_OK;
}

int tdm__csv_open_memory(tdm__csv **out, char *data, size_t len,
                         const char *name) {
  *out = NULL;
  tdm__csv *csv = tdm__calloc(1, sizeof *csv);
  if (csv == NULL) return TDM_ENOMEM;
  csv->name = name;
  csv->in = data;
  csv->in_len = len;
  csv->eof = 1; /* there is nothing more to read */
  csv->line = 1;
  csv->column = 1;
  *out = csv;
  return TDM_OK;
}

void tdm__csv_close(tdm__csv *csv) {
  if (csv == NULL) return;
  if (csv->fp != NULL) tdm__free(csv->in);
  tdm__buf_free(&csv->text);
  tdm__free(csv->starts);
  tdm__free(csv->columns);
  tdm__free(csv->fields);
  tdm__free(csv);
}

void tdm__csv_hash_into(tdm__csv *csv, tdm__sha256 *ctx) { csv->hash = ctx; }

size_t tdm__csv_offset(const tdm__csv *csv) {
  return csv->consumed + csv->in_pos;
}

/* The next byte, or -1 at the end of input, or -2 on a read error. */
static int peek_byte(tdm__csv *csv) {
  if (csv->in_pos == csv->in_len) {
    /* A read error is sticky: a caller that looked ahead and moved on
     * still gets it on its next read, never a clean end of file. */
    if (csv->eof) return csv->fp != NULL && ferror(csv->fp) ? -2 : -1;
    csv->consumed += csv->in_len;
    csv->in_len = fread(csv->in, 1, READ_SIZE, csv->fp);
    if (csv->hash != NULL) tdm__sha256_update(csv->hash, csv->in, csv->in_len);
    csv->in_pos = 0;
    if (csv->in_len == 0) {
      csv->eof = 1;
      return ferror(csv->fp) ? -2 : -1;
    }
    if (csv->at_start) {
      csv->at_start = 0;
      if (csv->in_len >= 3 && memcmp(csv->in, "\xEF\xBB\xBF", 3) == 0)
        csv->in_pos = 3;
      if (csv->in_pos == csv->in_len) return peek_byte(csv);
    }
  }
  return (unsigned char)csv->in[csv->in_pos];
}

int tdm__csv_drain(tdm__csv *csv) {
  while (!csv->eof) {
    csv->in_pos = csv->in_len; /* the buffer's bytes are already hashed */
    if (peek_byte(csv) == -2) return TDM_EIO;
  }
  return csv->fp != NULL && ferror(csv->fp) ? TDM_EIO : TDM_OK;
}

static void advance(tdm__csv *csv, int c) {
  csv->in_pos++;
  if (c == '\n') {
    csv->line++;
    csv->column = 1;
  } else {
    csv->column++;
  }
}

static int start_field(tdm__csv *csv, size_t index, size_t column) {
  if (index >= csv->fields_cap) {
    size_t cap = csv->fields_cap ? csv->fields_cap * 2 : 64;
    size_t *starts = tdm__realloc(csv->starts, cap * sizeof *starts);
    if (starts == NULL) return TDM_ENOMEM;
    csv->starts = starts;
    size_t *columns = tdm__realloc(csv->columns, cap * sizeof *columns);
    if (columns == NULL) return TDM_ENOMEM;
    csv->columns = columns;
    csv->fields_cap = cap;
  }
  csv->starts[index] = csv->text.len;
  csv->columns[index] = column;
  return TDM_OK;
}

static int csv_error(tdm__csv *csv, tdm_error *err, size_t line, size_t column,
                     const char *what) {
  return tdm__fail(err, TDM_EPARSE, "%s:%zu:%zu: %s", csv->name, line, column,
                   what);
}

/* Makes room for at least `count` fields in csv->fields. */
static int grow_fields(tdm__csv *csv, size_t count) {
  size_t cap = csv->out_cap ? csv->out_cap : 64;
  while (cap < count) cap *= 2;
  tdm__csv_field *fields = tdm__realloc(csv->fields, cap * sizeof *fields);
  if (fields == NULL) return TDM_ENOMEM;
  csv->fields = fields;
  csv->out_cap = cap;
  return TDM_OK;
}

/* Hands out the record whose `count` fields lie NUL-separated in
 * csv->text, starting at csv->starts. Returns 1 or TDM_ENOMEM. */
static int finish_record(tdm__csv *csv, tdm__csv_record *record, size_t count,
                         size_t line, tdm_error *err) {
  if (count > csv->out_cap && grow_fields(csv, count) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", csv->name);
  for (size_t i = 0; i < count; i++) {
    size_t start = csv->starts[i];
    size_t stop = i + 1 < count ? csv->starts[i + 1] - 1 : csv->text.len - 1;
    csv->fields[i].text = csv->text.data + start;
    csv->fields[i].len = stop - start;
    csv->fields[i].column = csv->columns[i];
  }
  record->fields = csv->fields;
  record->count = count;
  record->line = line;
  return 1;
}

/* The plain-record path looks at this many bytes at a time for the ones
 * that end a plain field or send the record to the state machine: ',',
 * '"', '\n', '\r' and NUL. */
#define SPECIAL_BLOCK 64

/* The high bit of each byte of x that is zero, and no other bit. */
static uint64_t zero_bytes(uint64_t x) {
  uint64_t low7 = 0x7F7F7F7F7F7F7F7Fu;
  return ~(((x & low7) + low7) | x | low7);
}

uint64_t tdm__csv_special_mask_reference(const char *block) {
  uint64_t mask = 0;
  for (int i = 0; i < SPECIAL_BLOCK; i++) {
    char c = block[i];
    if (c == ',' || c == '"' || c == '\n' || c == '\r' || c == '\0')
      mask |= (uint64_t)1 << i;
  }
  return mask;
}

/* Eight bytes at a time in plain C, for machines without SSE2. Like the
 * reader's other word tricks it takes a word's first byte to be its
 * lowest (little-endian). */
uint64_t tdm__csv_special_mask_words(const char *block) {
  const uint64_t ones = 0x0101010101010101u;
  uint64_t mask = 0;
  for (int i = 0; i < SPECIAL_BLOCK; i += 8) {
    uint64_t word;
    memcpy(&word, block + i, 8);
    uint64_t high = zero_bytes(word ^ (ones * ',')) |
                    zero_bytes(word ^ (ones * '"')) |
                    zero_bytes(word ^ (ones * '\n')) |
                    zero_bytes(word ^ (ones * '\r')) | zero_bytes(word);
    /* One bit per byte, byte k to bit k: each byte's 0 or 1 times the
     * multiplier lands in the top byte at bit k, with no carries. */
    uint64_t bits = ((high >> 7) * 0x0102040810204080u) >> 56;
    mask |= bits << i;
  }
  return mask;
}

#if defined(__SSE2__)
/* Sixteen bytes at a time; SSE2 is part of x86-64 itself, so no check of
 * the CPU is needed. */
static uint64_t special_mask_sse2(const char *block) {
  const __m128i comma = _mm_set1_epi8(','), quote = _mm_set1_epi8('"'),
                newline = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r'),
                nul = _mm_setzero_si128();
  uint64_t mask = 0;
  for (int i = 0; i < SPECIAL_BLOCK; i += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(block + i));
    __m128i hit = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, comma), _mm_cmpeq_epi8(v, quote)),
        _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, newline), _mm_cmpeq_epi8(v, cr)),
            _mm_cmpeq_epi8(v, nul)));
    mask |= (uint64_t)(unsigned)_mm_movemask_epi8(hit) << i;
  }
  return mask;
}
#endif

uint64_t tdm__csv_special_mask(const char *block) {
#if defined(__SSE2__)
  return special_mask_sse2(block);
#else
  return tdm__csv_special_mask_words(block);
#endif
}

/*
 * The common record, read without the byte-at-a-time state machine: a
 * whole line already in the read buffer with no quote, NUL byte or carriage
 * return except one right before its newline. One pass over the line, a
 * block of 64 bytes at a time, finds its commas and its end; the fields
 * are then cut in place (a NUL written over each comma and the line end),
 * so nothing is copied. Returns 1 with the record, 0 when the record is
 * not of this kind (nothing consumed or written: the state machine reads
 * it, and says what is wrong with it if anything is), or TDM_ENOMEM.
 */
static int next_plain_record(tdm__csv *csv, tdm__csv_record *record,
                             tdm_error *err) {
  char *start = csv->in + csv->in_pos;
  size_t avail = csv->in_len - csv->in_pos;
  size_t count = 0, field_start = 0, end = 0;
  for (size_t i = 0;; i += SPECIAL_BLOCK) {
    if (i >= avail) return 0; /* the line goes on past the buffer */
    uint64_t special;
    if (avail - i >= SPECIAL_BLOCK) {
      special = tdm__csv_special_mask(start + i);
    } else {
      /* The buffer's last bytes: a padded copy, so that no read passes
       * its end. */
      char tail[SPECIAL_BLOCK];
      memset(tail, 'x', sizeof tail);
      memcpy(tail, start + i, avail - i);
      special = tdm__csv_special_mask(tail);
    }
    for (; special != 0; special &= special - 1) {
      size_t at = i + (size_t)__builtin_ctzll(special);
      char c = start[at];
      if (c == ',') {
        if (count + 1 >= csv->out_cap && grow_fields(csv, count + 2) != TDM_OK)
          return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", csv->name);
        csv->fields[count].text = start + field_start;
        csv->fields[count].len = at - field_start;
        csv->fields[count].column = field_start + 1;
        count++;
        field_start = at + 1;
        continue;
      }
      if (c == '\n' || (c == '\r' && at + 1 < avail && start[at + 1] == '\n')) {
        end = at;
        goto found;
      }
      return 0; /* a quote, NUL or lone carriage return */
    }
  }
found:
  if (count + 1 > csv->out_cap && grow_fields(csv, count + 1) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", csv->name);
  csv->fields[count].text = start + field_start;
  csv->fields[count].len = end - field_start;
  csv->fields[count].column = field_start + 1;
  count++;
  size_t line_bytes = end + (start[end] == '\r' ? 2 : 1);
  for (size_t f = 0; f < count; f++)
    start[csv->fields[f].column - 1 + csv->fields[f].len] = '\0';
  record->fields = csv->fields;
  record->count = count;
  record->line = csv->line;
  record->blank = end == 0;
  csv->in_pos += line_bytes;
  csv->line++;
  csv->column = 1;
  return 1;
}

int tdm__csv_next(tdm__csv *csv, tdm__csv_record *record, tdm_error *err) {
  {
    csv->text.len = 0;
    size_t count = 0;
    size_t record_line = csv->line;
    int c = peek_byte(csv);
    if (c == -2)
      return tdm__fail(err, TDM_EIO, "%s: read error: %s", csv->name,
                       strerror(errno));
    if (c == -1) return 0;
    int plain = next_plain_record(csv, record, err);
    if (plain != 0) return plain;
    record->blank = c == '\n' || c == '\r';
    int rc = TDM_OK;
    for (;;) { /* one field per iteration */
      rc = start_field(csv, count, csv->column);
      if (rc != TDM_OK)
        return tdm__fail(err, rc, "%s: out of memory", csv->name);
      count++;
      c = peek_byte(csv);
      if (c == '"') {
        size_t quote_line = csv->line, quote_column = csv->column;
        advance(csv, c);
        for (;;) {
          c = peek_byte(csv);
          if (c < 0) {
            if (c == -2)
              return tdm__fail(err, TDM_EIO, "%s: read error", csv->name);
            return csv_error(csv, err, quote_line, quote_column,
                             "unterminated quoted field (no closing '\"')");
          }
          advance(csv, c);
          if (c == '"') {
            if (peek_byte(csv) == '"') {
              advance(csv, '"');
            } else {
              break;
            }
          }
          if (c == '\0')
            return csv_error(csv, err, csv->line, csv->column - 1,
                             "NUL byte in a field");
          char ch = (char)c;
          if (tdm__buf_append(&csv->text, &ch, 1) != TDM_OK)
            return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", csv->name);
        }
        c = peek_byte(csv);
        if (c >= 0 && c != ',' && c != '\n' && c != '\r')
          return csv_error(csv, err, csv->line, csv->column,
                           "unexpected text after a closing quote (expected "
                           "',' or the end of the line)");
      } else {
        for (;;) {
          c = peek_byte(csv);
          if (c < 0 || c == ',' || c == '\n' || c == '\r') break;
          if (c == '"')
            return csv_error(csv, err, csv->line, csv->column,
                             "a '\"' inside an unquoted field (quote the "
                             "whole field and double the quote)");
          if (c == '\0')
            return csv_error(csv, err, csv->line, csv->column,
                             "NUL byte in a field");
          /* Copy the run of plain bytes up to the next special byte. */
          size_t end = csv->in_pos;
          while (end < csv->in_len) {
            char ch = csv->in[end];
            if (ch == ',' || ch == '\n' || ch == '\r' || ch == '"' ||
                ch == '\0')
              break;
            end++;
          }
          size_t n = end - csv->in_pos;
          if (tdm__buf_append(&csv->text, csv->in + csv->in_pos, n) != TDM_OK)
            return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", csv->name);
          csv->in_pos = end;
          csv->column += n;
        }
      }
      if (tdm__buf_append(&csv->text, "", 1) != TDM_OK)
        return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", csv->name);
      if (c == -2) return tdm__fail(err, TDM_EIO, "%s: read error", csv->name);
      if (c == ',') {
        advance(csv, c);
        continue;
      }
      if (c == '\r') {
        advance(csv, c);
        if (peek_byte(csv) == '\n')
          advance(csv, '\n');
        else {
          csv->line++;
          csv->column = 1;
        }
      } else if (c == '\n') {
        advance(csv, c);
      }
      break; /* end of record (or of input) */
    }
    return finish_record(csv, record, count, record_line, err);
  }
}

int tdm__parse_cell_number(const char *text, size_t len, double *out) {
  /* The common cell, a number with nothing around it, goes straight to
   * the parser: a cell that starts with neither a blank nor an 'n' or 'N'
   * cannot be one of the missing-value words, and one that also does not
   * end with a blank needs no trimming. */
  int plain = len > 0 && text[0] != ' ' && text[0] != '\t' && text[0] != 'n' &&
              text[0] != 'N' && text[len - 1] != ' ' && text[len - 1] != '\t';
  if (!plain) {
    /* Surrounding spaces are tolerated, as most CSV writers pad by hand. */
    while (len > 0 && (*text == ' ' || *text == '\t')) {
      text++;
      len--;
    }
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t')) len--;
    if (len == 0 || (len == 3 && strncasecmp(text, "nan", 3) == 0) ||
        (len == 2 && memcmp(text, "NA", 2) == 0) ||
        (len == 4 && memcmp(text, "null", 4) == 0)) {
      *out = NAN;
      return 0;
    }
  }
  double value;
  if (tdm__parse_double(text, len, &value) != 0) return -1;
  *out = isnan(value) ? NAN : value; /* "-nan" is missing too */
  return 0;
}

int tdm__csv_next_line(tdm__csv *csv, const char **text, size_t *len,
                       size_t *line, tdm_error *err) {
  csv->text.len = 0;
  int c = peek_byte(csv);
  if (c == -2)
    return tdm__fail(err, TDM_EIO, "%s: read error: %s", csv->name,
                     strerror(errno));
  if (c == -1) return 0;
  *line = csv->line;
  for (;;) {
    const char *start = csv->in + csv->in_pos;
    const char *nl = memchr(start, '\n', csv->in_len - csv->in_pos);
    size_t n = nl ? (size_t)(nl - start) : csv->in_len - csv->in_pos;
    if (tdm__buf_append(&csv->text, start, n) != TDM_OK)
      return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", csv->name);
    csv->in_pos += n;
    if (nl != NULL) {
      csv->in_pos++; /* the newline */
      break;
    }
    c = peek_byte(csv);
    if (c == -2) return tdm__fail(err, TDM_EIO, "%s: read error", csv->name);
    if (c == -1) break;
  }
  csv->line++;
  csv->column = 1;
  size_t n = csv->text.len;
  if (n > 0 && csv->text.data[n - 1] == '\r') n--;
  if (tdm__buf_append(&csv->text, "", 1) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", csv->name);
  *text = csv->text.data;
  *len = n;
  return 1;
}

void tdm__csv_take_rest(tdm__csv *csv, const char **data, size_t *len,
                        size_t *line) {
  *data = csv->in + csv->in_pos;
  *len = csv->in_len - csv->in_pos;
  *line = csv->line;
  csv->in_pos = csv->in_len;
}

void tdm__csv_start_at(tdm__csv *csv, size_t line) {
  csv->line = line;
  csv->column = 1;
  csv->at_start = 0; /* a byte order mark only counts at the file's start */
}
