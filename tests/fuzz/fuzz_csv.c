/*
 * fuzz_csv.c - a libFuzzer harness for the streaming CSV reader: the input
 * bytes are a CSV file read through fmemopen, record by record, until the
 * end or the first error. Every field goes through tdm__parse_cell_number
 * and is written back with tdm__csv_append_field; the rewritten file must
 * read back as the same records, which checks the reader's unquoting and
 * the writer's quoting against each other. The reader over memory
 * (tdm__csv_open_memory, which cuts fields in place) must give the same
 * records and the same error as the one over a FILE. Build with
 * `make fuzz`; run with
 * scripts/fuzz.sh over the seeds in tests/fuzz/corpus/csv/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/io/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "fuzz_csv: check failed: %s\n", what);
  abort();
}

/* One record's fields, copied out of the reader (their text is only valid
 * until the next read), joined with NUL separators. */
typedef struct saved {
  tdm__buf text;
  size_t count;
} saved;

/*
 * Reads every record of data[0..size). Returns the number of records read
 * before the end or the first error; `out` (when not NULL) receives the
 * rewritten CSV of the records that can be written back faithfully, and
 * `records` each record's fields.
 */
static size_t read_all(const char *data, size_t size, tdm__buf *out,
                       saved *records, size_t max_records, int *status,
                       char *message, int memory) {
  static char empty[1];
  FILE *fp = NULL;
  char *copy = NULL;
  tdm__csv *csv;
  if (memory) {
    copy = malloc(size + 1);
    check(copy != NULL, "malloc");
    memcpy(copy, data, size);
    check(tdm__csv_open_memory(&csv, copy, size, "fuzz.csv") == 0,
          "tdm__csv_open_memory");
  } else {
    fp = fmemopen(size > 0 ? (void *)data : empty, size, "rb");
    check(fp != NULL, "fmemopen");
    check(tdm__csv_open(&csv, fp, "fuzz.csv") == 0, "tdm__csv_open");
  }
  size_t n = 0;
  tdm__csv_record record;
  tdm_error err;
  int rc;
  while ((rc = tdm__csv_next(csv, &record, &err)) == 1) {
    check(record.count >= 1, "a record has a field");
    /* A single empty field is written as a blank line, which the reader
     * skips: such records are left out of the rewritten file. */
    int writable = !(record.count == 1 && record.fields[0].len == 0);
    for (size_t i = 0; i < record.count; i++) {
      const tdm__csv_field *f = &record.fields[i];
      check(f->text[f->len] == '\0', "fields are NUL-terminated");
      check(memchr(f->text, '\0', f->len) == NULL, "no NUL inside a field");
      check(f->column >= 1, "columns are 1-based");
      double value;
      (void)tdm__parse_cell_number(f->text, f->len, &value);
      if (out != NULL && writable) {
        if (i > 0) check(tdm__buf_append(out, ",", 1) == 0, "append");
        check(tdm__csv_append_field(out, f->text, f->len) == 0,
              "tdm__csv_append_field");
      }
    }
    if (out != NULL && writable)
      check(tdm__buf_append(out, "\n", 1) == 0, "append");
    if (records != NULL && writable && n < max_records) {
      saved *s = &records[n];
      for (size_t i = 0; i < record.count; i++)
        check(tdm__buf_append(&s->text, record.fields[i].text,
                              record.fields[i].len + 1) == 0,
              "append");
      s->count = record.count;
    }
    if (writable) n++;
  }
  check(rc == 0 || rc < 0, "tdm__csv_next returns 1, 0 or a status");
  if (rc < 0) {
    check(err.status == rc && err.message[0] != '\0',
          "an error has a status and a message");
    snprintf(message, 512, "%s", err.message);
  }
  *status = rc;
  check(tdm__csv_offset(csv) <= size, "offset within the input");
  tdm__csv_close(csv);
  if (fp != NULL) fclose(fp);
  free(copy);
  return n;
}

#define MAX_RECORDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A first line keeps a leading byte order mark in a field from being
   * taken for the file's own when the records are written back. */
  tdm__buf rewritten = {0};
  check(tdm__buf_append(&rewritten, "#\n", 2) == 0, "append");
  saved *records = calloc(MAX_RECORDS, sizeof *records);
  check(records != NULL, "calloc");
  int status;
  char message[512] = "";
  size_t n = read_all((const char *)data, size, &rewritten, records,
                      MAX_RECORDS, &status, message, 0);

  /* Over memory: the same records and the same error (the memory reader
   * looks for no byte order mark, so inputs with one are left out). */
  if (size < 3 || memcmp(data, "\xEF\xBB\xBF", 3) != 0) {
    saved *direct = calloc(MAX_RECORDS, sizeof *direct);
    check(direct != NULL, "calloc");
    int status3;
    char message3[512] = "";
    size_t n3 = read_all((const char *)data, size, NULL, direct, MAX_RECORDS,
                         &status3, message3, 1);
    check(n3 == n && status3 == status && strcmp(message3, message) == 0,
          "the memory reader reads what the FILE reader reads");
    for (size_t r = 0; r < n && r < MAX_RECORDS; r++) {
      check(direct[r].count == records[r].count &&
                direct[r].text.len == records[r].text.len &&
                (records[r].text.len == 0 ||
                 memcmp(direct[r].text.data, records[r].text.data,
                        records[r].text.len) == 0),
            "the memory reader's fields");
      tdm__buf_free(&direct[r].text);
    }
    free(direct);
  }

  /* The rewritten records must read back the same, without error. */
  saved *again = calloc(MAX_RECORDS + 1, sizeof *again);
  check(again != NULL, "calloc");
  int status2;
  char message2[512] = "";
  size_t n2 = read_all(rewritten.data, rewritten.len, NULL, again,
                       MAX_RECORDS + 1, &status2, message2, 0);
  check(status2 == 0, "the rewritten CSV reads without error");
  check(n2 == n + 1, "the rewritten CSV has the same records");
  for (size_t r = 0; r < n && r < MAX_RECORDS; r++) {
    check(again[r + 1].count == records[r].count, "same field count");
    check(again[r + 1].text.len == records[r].text.len &&
              (records[r].text.len == 0 ||
               memcmp(again[r + 1].text.data, records[r].text.data,
                      records[r].text.len) == 0),
          "same field text");
  }
  for (size_t r = 0; r < MAX_RECORDS + 1; r++) {
    if (r < MAX_RECORDS) tdm__buf_free(&records[r].text);
    tdm__buf_free(&again[r].text);
  }
  free(records);
  free(again);
  tdm__buf_free(&rewritten);
  return 0;
}
