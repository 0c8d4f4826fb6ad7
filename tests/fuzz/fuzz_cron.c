/*
 * fuzz_cron.c - a libFuzzer harness for cron schedules: the input bytes
 * (up to the first NUL) are parsed as a schedule. A failure must be
 * TDM_EPARSE with a message and leave the schedule zeroed. A success must
 * format to a text that parses back the same, and tdm__cron_next from
 * several start times must be strictly later, a whole minute that matches
 * by gmtime_r's calendar (a matcher independent of cron.c's arithmetic),
 * with no matching minute in the first two hours after the start and no
 * matching day in the whole days between the start and the result. Build
 * with `make fuzz`; run with scripts/fuzz.sh over tests/fuzz/corpus/cron/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/core/cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "fuzz_cron: check failed: %s\n", what);
  abort();
}

static int same_cron(const tdm__cron *a, const tdm__cron *b) {
  return a->minutes == b->minutes && a->hours == b->hours &&
         a->days == b->days && a->months == b->months &&
         a->weekdays == b->weekdays && a->flags == b->flags &&
         a->every_ms == b->every_ms;
}

/* Whether the UTC day of tm matches the month and both day fields. */
static int slow_day_matches(const tdm__cron *c, const struct tm *tm) {
  if (!((c->months >> (tm->tm_mon + 1)) & 1)) return 0;
  int dom_ok = (c->days >> tm->tm_mday) & 1;
  int dow_ok = (c->weekdays >> tm->tm_wday) & 1;
  if (c->flags & (TDM__CRON_DOM_STAR | TDM__CRON_DOW_STAR))
    return dom_ok && dow_ok;
  return dom_ok || dow_ok;
}

static int slow_matches(const tdm__cron *c, int64_t ms) {
  if (ms % 60000 != 0) return 0;
  time_t seconds = (time_t)(ms / 1000);
  struct tm tm;
  check(gmtime_r(&seconds, &tm) != NULL, "gmtime_r");
  return slow_day_matches(c, &tm) && ((c->hours >> tm.tm_hour) & 1) &&
         ((c->minutes >> tm.tm_min) & 1);
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) q--;
  return q;
}

static void check_next(const tdm__cron *c, int64_t after) {
  int64_t next = tdm__cron_next(c, after);
  check(next > after, "next is strictly after the start");
  if (c->flags & TDM__CRON_EVERY) {
    check(next == after + c->every_ms, "@every adds its interval");
    return;
  }
  check(next != INT64_MAX, "a schedule that parsed fires");
  check(slow_matches(c, next), "next matches the schedule");
  /* No earlier minute in the first two hours after the start. */
  int64_t first = (floor_div(after, 60000) + 1) * 60000;
  for (int64_t t = first; t < next && t < first + 120 * 60000; t += 60000)
    check(!slow_matches(c, t), "no earlier match within two hours");
  /* No whole day in between that matches (a matching day has a matching
   * minute, since the minute and hour fields are never empty). */
  int64_t day = floor_div(after, 86400000) + 1;
  int64_t last = floor_div(next, 86400000);
  for (int n = 0; day < last && n < 800; day++, n++) {
    time_t seconds = (time_t)(day * 86400);
    struct tm tm;
    check(gmtime_r(&seconds, &tm) != NULL, "gmtime_r");
    check(!slow_day_matches(c, &tm), "no earlier matching day");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A private NUL-terminated copy: ASan then catches reads past it. */
  char *text = malloc(size + 1);
  check(text != NULL, "malloc");
  memcpy(text, data, size);
  text[size] = '\0';

  tdm__cron c, again, zero;
  tdm_error err;
  memset(&zero, 0, sizeof zero);
  int rc = tdm__cron_parse(text, &c, &err);
  if (rc != TDM_OK) {
    check(rc == TDM_EPARSE, "a failure is TDM_EPARSE");
    check(err.status == TDM_EPARSE, "the error carries its status");
    check(strlen(err.message) > 0, "the message says why");
    check(same_cron(&c, &zero), "the schedule is zeroed on failure");
    free(text);
    return 0;
  }

  char buf[TDM__CRON_FORMAT_SIZE];
  int n = tdm__cron_format(&c, buf, sizeof buf);
  check(n > 0 && n < (int)sizeof buf, "the text fits the documented size");
  check((size_t)n == strlen(buf), "the length returned is the text's");
  check(tdm__cron_parse(buf, &again, &err) == TDM_OK, "the text parses");
  check(same_cron(&c, &again), "the text parses back the same");

  /* Fixed starts around month, leap-day and century ends, and one taken
   * from the input's bytes, between 1901 and 2200. */
  static const int64_t starts[] = {
      0,
      -1,
      INT64_C(1709251199000),  /* 2024-02-29 23:59:59 */
      INT64_C(951782400000),   /* 2000-02-29 00:00:00 */
      INT64_C(-2208988800001), /* just before 1900-01-01 */
      INT64_C(4107542340000),  /* 2100-02-28 23:59:00 */
  };
  for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
    check_next(&c, starts[i]);
  uint64_t hash = UINT64_C(14695981039346656037);
  for (size_t i = 0; i < size; i++) hash = (hash ^ data[i]) * 1099511628211u;
  check_next(
      &c, (int64_t)(hash % UINT64_C(9467280000000)) - INT64_C(2177452800000));
  free(text);
  return 0;
}
