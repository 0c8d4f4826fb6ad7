/*
 * test_csv.c - unit tests of the streaming CSV reader: plain and quoted
 * fields, CRLF and BOM, errors with line and column, records longer than
 * the read buffer, numeric cells, and quoting on output.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "../../src/io/csv.h"
#include "test.h"

/* Reads all records of `text`; returns the status of the first failure. */
typedef struct read_result {
  size_t records;
  char fields[16][16][32];
  size_t counts[16];
  size_t lines[16];
  int blanks[16];
  size_t columns[16][16];
  tdm_error err;
  int status;
} read_result;

static void read_all(const char *text, size_t len, read_result *out) {
  memset(out, 0, sizeof *out);
  FILE *fp = fmemopen((void *)text, len, "rb");
  tdm__csv *csv;
  tdm__csv_open(&csv, fp, "t.csv");
  tdm__csv_record rec;
  int rc;
  while ((rc = tdm__csv_next(csv, &rec, &out->err)) == 1) {
    size_t r = out->records++;
    if (r >= 16) continue;
    out->counts[r] = rec.count;
    out->lines[r] = rec.line;
    out->blanks[r] = rec.blank;
    for (size_t i = 0; i < rec.count && i < 16; i++) {
      snprintf(out->fields[r][i], 32, "%s", rec.fields[i].text);
      out->columns[r][i] = rec.fields[i].column;
    }
  }
  out->status = rc;
  tdm__csv_close(csv);
  fclose(fp);
}

TEST(csv_plain) {
  read_result r;
  const char *text = "a,b,c\n1,,3\n\n4,5,\n";
  read_all(text, strlen(text), &r);
  CHECK_INT(r.status, 0);
  CHECK_INT(r.records, 4); /* the blank line is a record of one field */
  CHECK_INT(r.counts[1], 3);
  CHECK_STR(r.fields[1][1], "");
  CHECK_INT(r.counts[2], 1);
  CHECK_INT(r.blanks[2], 1);
  CHECK_INT(r.blanks[1], 0);
  CHECK_STR(r.fields[3][2], ""); /* an empty last field */
  CHECK_INT(r.lines[3], 4);
  CHECK_INT(r.columns[1][2], 4);
  /* No newline at the end of the file. */
  read_all("x,y\n1,2", 7, &r);
  CHECK_INT(r.records, 2);
  CHECK_STR(r.fields[1][1], "2");
  return 0;
}

TEST(csv_quotes_crlf_bom) {
  read_result r;
  const char *text =
      "\xEF\xBB\xBF"
      "id,note\r\n"
      "1,\"a, \"\"quoted\"\"\r\nline\"\r\n"
      "\"2\",\"\"\r\n";
  read_all(text, strlen(text), &r);
  CHECK_INT(r.status, 0);
  CHECK_INT(r.records, 3);
  CHECK_STR(r.fields[0][0], "id"); /* the BOM is not part of the name */
  CHECK_STR(r.fields[1][1], "a, \"quoted\"\r\nline");
  CHECK_STR(r.fields[2][0], "2");
  CHECK_STR(r.fields[2][1], "");
  CHECK_INT(r.lines[2], 4); /* the quoted line break counts */
  return 0;
}

TEST(csv_errors) {
  static const struct {
    const char *text;
    const char *message;
  } cases[] = {
      {"a,b\n1,\"2\n", "t.csv:2:3: unterminated quoted field"},
      {"a,b\n1,\"2\"x\n", "t.csv:2:6: unexpected text after a closing quote"},
      {"a,b\n1,2\"3\n", "t.csv:2:4: a '\"' inside an unquoted field"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    read_result r;
    read_all(cases[i].text, strlen(cases[i].text), &r);
    CHECK_INT(r.status, TDM_EPARSE);
    CHECK_CONTAINS(r.err.message, cases[i].message);
  }
  read_result r;
  read_all("a,b\n1,\0\n", 8, &r);
  CHECK_INT(r.status, TDM_EPARSE);
  CHECK_CONTAINS(r.err.message, "t.csv:2:3: NUL byte");
  return 0;
}

TEST(csv_long_records) {
  /* Records spanning several 1 MiB read buffers keep every byte. */
  size_t n = 3 * (1 << 20) + 17;
  char *text = malloc(n + 16);
  CHECK(text != NULL);
  memcpy(text, "h\n", 2);
  memset(text + 2, 'x', n);
  memcpy(text + 2 + n, "\nz\n", 3);
  FILE *fp = fmemopen(text, n + 5, "rb");
  tdm__csv *csv;
  CHECK_INT(tdm__csv_open(&csv, fp, "t.csv"), TDM_OK);
  tdm__csv_record rec;
  tdm_error err;
  CHECK_INT(tdm__csv_next(csv, &rec, &err), 1);
  CHECK_INT(tdm__csv_next(csv, &rec, &err), 1);
  CHECK_INT(rec.fields[0].len, n);
  CHECK_INT(tdm__csv_next(csv, &rec, &err), 1);
  CHECK_STR(rec.fields[0].text, "z");
  CHECK_INT(rec.line, 3);
  CHECK_INT(tdm__csv_next(csv, &rec, &err), 0);
  CHECK_INT(tdm__csv_offset(csv), n + 5);
  tdm__csv_close(csv);
  fclose(fp);
  free(text);
  return 0;
}

TEST(csv_cell_numbers) {
  double v;
  CHECK_INT(tdm__parse_cell_number("1.5", 3, &v), 0);
  CHECK(v == 1.5);
  CHECK_INT(tdm__parse_cell_number(" -2e3 ", 6, &v), 0);
  CHECK(v == -2000.0);
  static const char *missing[] = {"",   "NaN",  "nan", "NAN",
                                  "NA", "null", "-nan"};
  for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
    v = 0;
    CHECK_INT(tdm__parse_cell_number(missing[i], strlen(missing[i]), &v), 0);
    CHECK(isnan(v));
  }
  static const char *bad[] = {"abc", "1.2.3", "0x10", "1,5", "--1", "1e"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_INT(tdm__parse_cell_number(bad[i], strlen(bad[i]), &v), -1);
  CHECK_INT(tdm__parse_cell_number("inf", 3, &v), 0);
  CHECK(isinf(v));
  /* Correctly rounded to the nearest double. */
  CHECK_INT(tdm__parse_cell_number("0.1", 3, &v), 0);
  CHECK(v == 0.1);
  return 0;
}

TEST(csv_append_field) {
  tdm__buf b = {0};
  CHECK_INT(tdm__csv_append_field(&b, "plain", 5), TDM_OK);
  CHECK_INT(tdm__buf_append(&b, ",", 1), TDM_OK);
  CHECK_INT(tdm__csv_append_field(&b, "a,\"b\"", 5), TDM_OK);
  CHECK_STR(b.data, "plain,\"a,\"\"b\"\"\"");
  tdm__buf_free(&b);
  return 0;
}

/* A stream that yields `data` and then fails with EIO. */
typedef struct failing_stream {
  const char *data;
  size_t len, pos;
} failing_stream;

static ssize_t failing_read(void *cookie, char *buf, size_t size) {
  failing_stream *s = cookie;
  if (s->pos == s->len) {
    errno = EIO;
    return -1;
  }
  size_t n = s->len - s->pos < size ? s->len - s->pos : size;
  memcpy(buf, s->data + s->pos, n);
  s->pos += n;
  return (ssize_t)n;
}

TEST(csv_read_error_is_sticky) {
  /* The reader looks ahead after "\r": the error it meets there must still
   * reach the caller, not turn into a clean end of file. */
  failing_stream stream = {"a\n1\r", 4, 0};
  cookie_io_functions_t io = {.read = failing_read};
  FILE *fp = fopencookie(&stream, "r", io);
  CHECK(fp != NULL);
  tdm__csv *csv;
  CHECK_INT(tdm__csv_open(&csv, fp, "t.csv"), TDM_OK);
  tdm__csv_record rec;
  tdm_error err;
  int rc;
  while ((rc = tdm__csv_next(csv, &rec, &err)) == 1) {
  }
  CHECK_INT(rc, TDM_EIO);
  CHECK_CONTAINS(err.message, "t.csv: read error");
  tdm__csv_close(csv);
  fclose(fp);
  return 0;
}

/* A generated record, as the test wrote it: the reference the reader is
 * checked against. */
typedef struct generated_record {
  size_t first_field; /* index into the field arrays */
  size_t count;
  size_t line;
} generated_record;

/*
 * The reader against what was generated, on 3 MB of random CSV (so that
 * records straddle the 1 MiB read buffer): plain fields of 0 to 40 bytes
 * (word-boundary lengths included), quoted fields with commas, doubled
 * quotes and newlines, blank lines, and LF, CRLF or lone CR line ends.
 * Plain lines take the eight-bytes-at-a-time path and the others the
 * state machine; each field's text, line and column must be as written.
 */
TEST(csv_generated_against_reference) {
  size_t cap = 3 << 20;
  char *text = malloc(cap + 4096);
  size_t max_fields = 400000;
  char **want = malloc(max_fields * sizeof *want);
  size_t *want_column = malloc(max_fields * sizeof *want_column);
  generated_record *records = malloc(200000 * sizeof *records);
  CHECK(text != NULL && want != NULL && want_column != NULL && records != NULL);
  uint64_t s = 0x2545F4914F6CDD1Dull;
#define RANDOM() (s ^= s << 13, s ^= s >> 7, s ^= s << 17, s)
  size_t len = 0, nfields = 0, nrecords = 0, line = 1, line_start = 0;
  int after_cr = 0;
  static const char plain[] = "0123456789.-eE abcXYZ\t;";
  while (len < cap && nrecords < 200000 && nfields + 64 < max_fields) {
    generated_record *r = &records[nrecords++];
    r->first_field = nfields;
    r->line = line;
    size_t count = RANDOM() % 8 == 0 ? 1 : 1 + RANDOM() % 40;
    int blank = RANDOM() % 50 == 0;
    if (blank) count = 1;
    /* After a lone CR, a record that starts with a newline would make it
     * a CRLF: such a record has at least two fields. */
    if (after_cr) {
      blank = 0;
      if (count < 2) count = 2;
    }
    for (size_t f = 0; f < count; f++) {
      if (f > 0) text[len++] = ',';
      want_column[nfields] = len - line_start + 1;
      char *value = malloc(80);
      size_t vlen = 0;
      if (!blank && RANDOM() % 20 == 0) { /* quoted */
        text[len++] = '"';
        size_t n = RANDOM() % 12;
        for (size_t i = 0; i < n; i++) {
          uint64_t k = RANDOM() % 10;
          char ch = k == 0 ? ',' : k == 1 ? '"' : k == 2 ? '\n' : 'q';
          value[vlen++] = ch;
          text[len++] = ch;
          if (ch == '"') text[len++] = '"';
          if (ch == '\n') {
            line++;
            line_start = len;
          }
        }
        text[len++] = '"';
      } else if (!blank) {
        size_t n = RANDOM() % 8 == 0 ? 60 + RANDOM() % 10 : RANDOM() % 41;
        for (size_t i = 0; i < n; i++) {
          char ch = plain[RANDOM() % (sizeof plain - 1)];
          value[vlen++] = ch;
          text[len++] = ch;
        }
      }
      value[vlen] = '\0';
      want[nfields++] = value;
    }
    r->count = count;
    uint64_t end = RANDOM() % 10;
    after_cr = end == 1;
    if (end == 0) {
      text[len++] = '\r';
      text[len++] = '\n';
    } else if (end == 1) {
      text[len++] = '\r';
    } else {
      text[len++] = '\n';
    }
    line++;
    line_start = len;
  }
#undef RANDOM
  /* Through a FILE (1 MiB reads) and over memory (the fields cut in
   * place, so over a copy). */
  char *copy = malloc(len);
  CHECK(copy != NULL);
  memcpy(copy, text, len);
  int ok = 1, rc = 0;
  size_t seen = 0;
  for (int memory = 0; memory < 2 && ok; memory++) {
    FILE *fp = memory ? NULL : fmemopen(text, len, "rb");
    tdm__csv *csv;
    CHECK((memory ? tdm__csv_open_memory(&csv, copy, len, "g.csv")
                  : tdm__csv_open(&csv, fp, "g.csv")) == TDM_OK);
    tdm__csv_record rec;
    tdm_error err;
    seen = 0;
    while (ok && (rc = tdm__csv_next(csv, &rec, &err)) == 1) {
      CHECK(seen < nrecords);
      generated_record *r = &records[seen++];
      if (rec.count != r->count || rec.line != r->line) {
        fprintf(stderr,
                "record %zu: %zu fields on line %zu, wrote %zu on %zu\n", seen,
                rec.count, rec.line, r->count, r->line);
        ok = 0;
        break;
      }
      for (size_t i = 0; i < rec.count; i++) {
        size_t k = r->first_field + i;
        if (rec.fields[i].len != strlen(want[k]) ||
            memcmp(rec.fields[i].text, want[k], rec.fields[i].len) != 0 ||
            rec.fields[i].text[rec.fields[i].len] != '\0' ||
            rec.fields[i].column != want_column[k]) {
          fprintf(stderr,
                  "line %zu field %zu: \"%s\" at column %zu, wrote \"%s\" at "
                  "%zu\n",
                  r->line, i, rec.fields[i].text, rec.fields[i].column, want[k],
                  want_column[k]);
          ok = 0;
          break;
        }
      }
    }
    tdm__csv_close(csv);
    if (fp != NULL) fclose(fp);
    if (ok && (rc != 0 || seen != nrecords)) {
      fprintf(stderr, "reader %d: status %d after %zu of %zu records\n", memory,
              rc, seen, nrecords);
      ok = 0;
    }
  }
  free(copy);
  for (size_t i = 0; i < nfields; i++) free(want[i]);
  free(want);
  free(want_column);
  free(records);
  free(text);
  CHECK(ok);
  return 0;
}

/* The plain path's scanning kernels against a byte loop, on random
 * blocks rich in the five special bytes. */
TEST(csv_special_mask_kernels) {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  static const char alphabet[] = ",\"\n\r\0a0.-\x80\xff\x2c\x7f";
  char block[64];
  for (int round = 0; round < 200000; round++) {
    for (int i = 0; i < 64; i++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      block[i] = round % 2 ? (char)(s >> 24)
                           : alphabet[(s >> 24) % (sizeof alphabet - 1)];
    }
    uint64_t want = tdm__csv_special_mask_reference(block);
    CHECK(tdm__csv_special_mask(block) == want);
    CHECK(tdm__csv_special_mask_words(block) == want);
  }
  return 0;
}
