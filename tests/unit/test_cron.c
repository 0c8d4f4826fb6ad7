/*
 * test_cron.c - cron schedules: the bitmasks each syntax element parses
 * to, a message for every kind of mistake, next times computed by hand
 * (hour and month ends, leap days, the day-of-month OR day-of-week rule,
 * Sunday as 0 and 7, @every), the normalized text, and a cross-check of
 * tdm__cron_next against a plain minute-by-minute search over two years
 * that uses the C library's gmtime_r as its independent calendar.
 */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "../../src/core/cron.h"
#include "test.h"

/* Epoch milliseconds of a UTC date and time (years from 1970), counted
 * day by day so that it shares nothing with cron.c's arithmetic. */
static int64_t utc(int year, int month, int day, int hour, int minute) {
  static const int month_days[12] = {31, 28, 31, 30, 31, 30,
                                     31, 31, 30, 31, 30, 31};
  int64_t days = 0;
  for (int y = 1970; y < year; y++)
    days += (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 366 : 365;
  for (int m = 1; m < month; m++) {
    days += month_days[m - 1];
    if (m == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) days++;
  }
  days += day - 1;
  return ((days * 24 + hour) * 60 + minute) * 60000;
}

/* Whether two schedules are the same, field by field. */
static int same_cron(const tdm__cron *a, const tdm__cron *b) {
  return a->minutes == b->minutes && a->hours == b->hours &&
         a->days == b->days && a->months == b->months &&
         a->weekdays == b->weekdays && a->flags == b->flags &&
         a->every_ms == b->every_ms;
}

static uint64_t bits(const int *values, int count) {
  uint64_t mask = 0;
  for (int i = 0; i < count; i++) mask |= (uint64_t)1 << values[i];
  return mask;
}
#define BITS(...)                  \
  bits((const int[]){__VA_ARGS__}, \
       (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int)))

TEST(cron_parses_each_element) {
  tdm__cron c;
  tdm_error err;
  CHECK_INT(tdm__cron_parse("* * * * *", &c, &err), TDM_OK);
  CHECK(c.minutes == (UINT64_C(1) << 60) - 1);
  CHECK_INT(c.hours, (1u << 24) - 1);
  CHECK_INT(c.days, 0xfffffffeu);
  CHECK_INT(c.months, 0x1ffe);
  CHECK_INT(c.weekdays, 0x7f);
  CHECK_INT(c.flags, TDM__CRON_DOM_STAR | TDM__CRON_DOW_STAR);

  CHECK_INT(tdm__cron_parse(
                " \t*/15  0-6/2 1,15,31 jan-MAR,Dec Sun,7,Tue-thu\n", &c, &err),
            TDM_OK);
  CHECK(c.minutes == BITS(0, 15, 30, 45));
  CHECK(c.hours == BITS(0, 2, 4, 6));
  CHECK(c.days == BITS(1, 15, 31));
  CHECK(c.months == BITS(1, 2, 3, 12));
  CHECK(c.weekdays == BITS(0, 2, 3, 4));
  CHECK_INT(c.flags, 0);

  CHECK_INT(tdm__cron_parse("5 4 * * 7", &c, &err), TDM_OK);
  CHECK(c.minutes == BITS(5) && c.hours == BITS(4));
  CHECK(c.weekdays == BITS(0));
  CHECK_INT(c.flags, TDM__CRON_DOM_STAR);
  CHECK_INT(tdm__cron_parse("0 0 * * 5-7", &c, &err), TDM_OK);
  CHECK(c.weekdays == BITS(0, 5, 6));
  CHECK_INT(tdm__cron_parse("0 0 * * fri-sun", &c, &err), TDM_OK);
  CHECK(c.weekdays == BITS(0, 5, 6));
  CHECK_INT(tdm__cron_parse("0 0 * * */2", &c, &err), TDM_OK);
  CHECK(c.weekdays == BITS(0, 2, 4, 6));
  CHECK_INT(c.flags, TDM__CRON_DOM_STAR | TDM__CRON_DOW_STAR);
  CHECK_INT(tdm__cron_parse("0 0 * * */7", &c, &err), TDM_OK);
  CHECK(c.weekdays == BITS(0));
  CHECK_INT(tdm__cron_parse("0 0 1-10/3 * *", &c, &err), TDM_OK);
  CHECK(c.days == BITS(1, 4, 7, 10));
  CHECK_INT(c.flags, TDM__CRON_DOW_STAR);
  CHECK_INT(tdm__cron_parse("59 23 31 12 6", &c, &err), TDM_OK);
  CHECK(c.minutes == BITS(59) && c.hours == BITS(23) && c.days == BITS(31));
  CHECK(c.months == BITS(12) && c.weekdays == BITS(6));
  /* Both day fields restricted: either may match, so February 30 or any
   * Monday in February is a valid schedule. */
  CHECK_INT(tdm__cron_parse("0 0 30 2 1", &c, &err), TDM_OK);

  /* Each shortcut is its five fields. */
  static const char *const shortcuts[][2] = {
      {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},
      {"@midnight", "0 0 * * *"}, {"@weekly", "0 0 * * 0"},
      {"@monthly", "0 0 1 * *"},  {"@yearly", "0 0 1 1 *"},
      {"@annually", "0 0 1 1 *"}, {"  @DAILY ", "0 0 * * *"},
  };
  for (size_t i = 0; i < sizeof shortcuts / sizeof shortcuts[0]; i++) {
    tdm__cron expected;
    CHECK_INT(tdm__cron_parse(shortcuts[i][0], &c, &err), TDM_OK);
    CHECK_INT(tdm__cron_parse(shortcuts[i][1], &expected, &err), TDM_OK);
    CHECK(same_cron(&c, &expected));
  }

  CHECK_INT(tdm__cron_parse("@every 30s", &c, &err), TDM_OK);
  CHECK_INT(c.flags, TDM__CRON_EVERY);
  CHECK_INT(c.every_ms, 30000);
  CHECK_INT(tdm__cron_parse("@every 5m", &c, &err), TDM_OK);
  CHECK_INT(c.every_ms, 300000);
  CHECK_INT(tdm__cron_parse("@every 1h", &c, &err), TDM_OK);
  CHECK_INT(c.every_ms, 3600000);
  CHECK_INT(tdm__cron_parse("@every 2h30m", &c, &err), TDM_OK);
  CHECK_INT(c.every_ms, 9000000);
  CHECK_INT(tdm__cron_parse("@every 1d2h3m4s", &c, &err), TDM_OK);
  CHECK_INT(c.every_ms, (86400 + 7200 + 180 + 4) * INT64_C(1000));
  CHECK_INT(tdm__cron_parse("@every 366d", &c, &err), TDM_OK);
  return 0;
}

TEST(cron_refuses_mistakes_with_a_reason) {
  static const char *const cases[][2] = {
      {"", "the schedule is empty"},
      {" \t\n", "the schedule is empty"},
      {"* * * *",
       "expected 5 fields (minute hour day-of-month month "
       "day-of-week), found 4"},
      {"0 0 * * * 2025", "found 6 (seconds and years are not supported)"},
      {"60 * * * *", "field 1 (minute): 60 is out of range 0-59"},
      {"0 25 * * *", "field 2 (hour): 25 is out of range 0-23"},
      {"0 0 0 * *", "field 3 (day-of-month): 0 is out of range 1-31"},
      {"0 0 32 * *", "field 3 (day-of-month): 32 is out of range 1-31"},
      {"0 0 * 0 *", "field 4 (month): 0 is out of range 1-12"},
      {"0 0 * 13 *", "field 4 (month): 13 is out of range 1-12"},
      {"0 0 * * 8", "field 5 (day-of-week): 8 is out of range 0-7"},
      {"99999999999 * * * *", "99999999999 is out of range 0-59"},
      {"*/0 * * * *", "field 1 (minute): a step of 0 is not allowed"},
      {"0-30/0 * * * *", "a step of 0 is not allowed"},
      {"*/60 * * * *",
       "a step of 60 is wider than the field's range 0-59 "
       "(for longer intervals use @every)"},
      {"0 0 */31 * *", "field 3 (day-of-month): a step of 31 is wider"},
      {"30-10 * * * *", "field 1 (minute): the range 30-10 is reversed"},
      {"0 0 * dec-jan *", "field 4 (month): the range dec-jan is reversed"},
      {"0 0 * foo *",
       "field 4 (month): unknown name 'foo' (expected "
       "jan-dec)"},
      {"0 0 * january *", "unknown name 'january'"},
      {"0 0 * * funday",
       "field 5 (day-of-week): unknown name 'funday' "
       "(expected sun-sat)"},
      {"0 0 * * 6-0", "field 5 (day-of-week): the range 6-0 is reversed"},
      {"0 mon * * *", "field 2 (hour): 'mon' is not a number"},
      {"1,,2 * * * *", "field 1 (minute): empty element in a list"},
      {"1, * * * *", "empty element in a list"},
      {",1 * * * *", "empty element in a list"},
      {"5/15 * * * *",
       "a step needs a range or '*' before it: write "
       "5-59/15 instead of 5/15"},
      {"*,5 * * * *", "'*' must stand alone, not in a list"},
      {"1- * * * *",
       "expected the end of the range after '-', found the "
       "end of the field"},
      {"-1 * * * *", "expected a number or '*', found '-'"},
      {"*/ * * * *", "expected a step after '/', found the end"},
      {"1-5/x * * * *", "expected a step after '/', found 'x'"},
      {"1x * * * *", "unexpected 'x' in '1x'"},
      {"1-2-3 * * * *", "unexpected '-' in '1-2-3'"},
      {"** * * * *", "unexpected '*' in '**'"},
      {"#1 * * * *", "found '#'"},
      {"0 0 * * \x01", "found byte 0x01"},
      {"0 0 30 2 *",
       "fields 3 and 4 (day-of-month, month): the schedule "
       "never fires"},
      {"0 0 31 4,6,9,11 *", "never fires"},
      {"0 0 30,31 feb */2", "never fires"},
      {"@often", "unknown shortcut '@often'"},
      {"@", "unknown shortcut '@'"},
      {"@reboot", "@reboot is not supported"},
      {"@daily 0", "@daily takes nothing after it"},
      {"@every", "@every needs a duration"},
      {"@every 5 m", "@every takes one duration"},
      {"@every 0s", "the interval must be longer than zero"},
      {"@every 0h0m", "longer than zero"},
      {"@every 5", "5 needs a unit"},
      {"@every 5x", "unknown unit 'x'"},
      {"@every 5M", "unknown unit 'M'"},
      {"@every m", "expected a number, found 'm'"},
      {"@every 30m1h", "units must go from largest to smallest"},
      {"@every 1h1h", "units must go from largest to smallest"},
      {"@every 100ms", "milliseconds are not supported"},
      {"@every 367d", "longer than 366 days"},
      {"@every 99999999999999999999999s", "longer than 366 days"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tdm__cron c;
    tdm_error err;
    memset(&c, 0xab, sizeof c);
    int rc = tdm__cron_parse(cases[i][0], &c, &err);
    if (rc != TDM_EPARSE) {
      fprintf(stderr, "\"%s\" gave status %d\n", cases[i][0], rc);
      return 1;
    }
    CHECK_INT(err.status, TDM_EPARSE);
    CHECK_CONTAINS(err.message, cases[i][1]);
    tdm__cron zero;
    memset(&zero, 0, sizeof zero);
    CHECK(same_cron(&c, &zero));
  }
  tdm__cron c;
  tdm_error err;
  CHECK_INT(tdm__cron_parse(NULL, &c, &err), TDM_EINVAL);
  CHECK_INT(tdm__cron_parse("60 * * * *", &c, NULL), TDM_EPARSE);
  return 0;
}

/* tdm__cron_next of `text` after `after` is `expected`. */
static int next_is(const char *text, int64_t after, int64_t expected) {
  tdm__cron c;
  tdm_error err;
  if (tdm__cron_parse(text, &c, &err) != TDM_OK) {
    fprintf(stderr, "\"%s\": %s\n", text, err.message);
    return 0;
  }
  int64_t got = tdm__cron_next(&c, after);
  if (got != expected) {
    fprintf(stderr, "\"%s\" after %lld: %lld, expected %lld\n", text,
            (long long)after, (long long)got, (long long)expected);
    return 0;
  }
  return 1;
}

TEST(cron_next_by_hand) {
  /* Strictly after, from a whole minute or within one. */
  CHECK(next_is("0 * * * *", utc(2024, 1, 1, 10, 0), utc(2024, 1, 1, 11, 0)));
  CHECK(
      next_is("0 * * * *", utc(2024, 1, 1, 10, 0) + 1, utc(2024, 1, 1, 11, 0)));
  CHECK(
      next_is("0 * * * *", utc(2024, 1, 1, 10, 0) - 1, utc(2024, 1, 1, 10, 0)));
  CHECK(next_is("* * * * *", utc(2024, 1, 1, 10, 0) + 30000,
                utc(2024, 1, 1, 10, 1)));
  CHECK(next_is("* * * * *", utc(2024, 1, 1, 10, 0), utc(2024, 1, 1, 10, 1)));
  /* Minute, hour, day, month and year ends. */
  CHECK(
      next_is("*/15 * * * *", utc(2024, 1, 1, 10, 50), utc(2024, 1, 1, 11, 0)));
  CHECK(next_is("30 23 * * *", utc(2024, 12, 31, 23, 30),
                utc(2025, 1, 1, 23, 30)));
  CHECK(next_is("59 23 31 12 *", utc(2024, 12, 31, 23, 59),
                utc(2025, 12, 31, 23, 59)));
  CHECK(next_is("0 0 31 * *", utc(2024, 4, 1, 0, 0), utc(2024, 5, 31, 0, 0)));
  CHECK(next_is("0 12 * jan,jul *", utc(2024, 7, 31, 12, 0),
                utc(2025, 1, 1, 12, 0)));
  CHECK(next_is("15 10,14 * * *", utc(2024, 3, 10, 10, 15),
                utc(2024, 3, 10, 14, 15)));
  /* Leap days: the next February 29 after 2025, and over 2100, which is
   * not a leap year. */
  CHECK(next_is("0 0 29 2 *", utc(2025, 3, 1, 0, 0), utc(2028, 2, 29, 0, 0)));
  CHECK(next_is("0 0 29 2 *", utc(2096, 2, 29, 0, 0), utc(2104, 2, 29, 0, 0)));
  CHECK(next_is("0 0 29 2 *", utc(2000, 1, 1, 0, 0), utc(2000, 2, 29, 0, 0)));
  CHECK(next_is("0 0 * 2 *", utc(2024, 2, 28, 0, 0), utc(2024, 2, 29, 0, 0)));
  CHECK(next_is("0 0 * 2 *", utc(2023, 2, 28, 0, 0), utc(2024, 2, 1, 0, 0)));
  /* Sunday as 0 and as 7 (2024-01-01 is a Monday). */
  CHECK(next_is("0 0 * * 0", utc(2024, 1, 1, 0, 0), utc(2024, 1, 7, 0, 0)));
  CHECK(next_is("0 0 * * 7", utc(2024, 1, 1, 0, 0), utc(2024, 1, 7, 0, 0)));
  CHECK(next_is("0 0 * * sun", utc(2024, 1, 1, 0, 0), utc(2024, 1, 7, 0, 0)));
  CHECK(next_is("0 0 * * 6-7", utc(2024, 1, 1, 0, 0), utc(2024, 1, 6, 0, 0)));
  CHECK(next_is("*/15 9-17 * * mon-fri", utc(2024, 1, 5, 17, 45),
                utc(2024, 1, 8, 9, 0)));
  /* Both day fields restricted: the 13th OR a Friday (2024-01-05 is a
   * Friday, 2024-01-13 a Saturday). */
  CHECK(next_is("0 0 13 * 5", utc(2024, 1, 1, 0, 0), utc(2024, 1, 5, 0, 0)));
  CHECK(next_is("0 0 13 * 5", utc(2024, 1, 12, 0, 0), utc(2024, 1, 13, 0, 0)));
  CHECK(next_is("0 0 30 2 1", utc(2024, 1, 31, 0, 0), utc(2024, 2, 5, 0, 0)));
  /* A field that starts with `*` makes both day fields count (odd days
   * that are Mondays: January 1, then January 15). */
  CHECK(next_is("0 0 */2 * 1", utc(2023, 12, 31, 0, 0), utc(2024, 1, 1, 0, 0)));
  CHECK(next_is("0 0 */2 * 1", utc(2024, 1, 1, 0, 0), utc(2024, 1, 15, 0, 0)));
  CHECK(
      next_is("0 0 13 * */7", utc(2024, 1, 1, 0, 0), utc(2024, 10, 13, 0, 0)));
  /* Shortcuts. */
  CHECK(next_is("@hourly", utc(2024, 1, 1, 23, 59), utc(2024, 1, 2, 0, 0)));
  CHECK(next_is("@daily", utc(2024, 2, 28, 0, 0), utc(2024, 2, 29, 0, 0)));
  CHECK(next_is("@weekly", utc(2024, 1, 1, 0, 0), utc(2024, 1, 7, 0, 0)));
  CHECK(next_is("@monthly", utc(2024, 2, 15, 0, 0), utc(2024, 3, 1, 0, 0)));
  CHECK(next_is("@yearly", utc(2024, 6, 1, 0, 0), utc(2025, 1, 1, 0, 0)));
  /* Before 1970, and the ends of the int64_t range. */
  CHECK(next_is("0 0 1 1 *", -1, 0));
  CHECK(next_is("0 0 1 1 *", INT64_C(-2208988800000) - 1,
                INT64_C(-2208988800000))); /* 1900-01-01 */
  CHECK(next_is("* * * * *", -60001, -60000));
  CHECK(next_is("* * * * *", INT64_MAX - 1, INT64_MAX));
  tdm__cron c;
  tdm_error err;
  CHECK_INT(tdm__cron_parse("0 0 29 2 *", &c, &err), TDM_OK);
  int64_t far = tdm__cron_next(&c, INT64_MAX / 2);
  CHECK(far > INT64_MAX / 2 && far % 60000 == 0);
  int64_t early = tdm__cron_next(&c, INT64_MIN);
  CHECK(early > INT64_MIN && early % 60000 == 0);
  /* A schedule not made by tdm__cron_parse, with no valid value in a
   * field, never fires. */
  tdm__cron bad;
  memset(&bad, 0, sizeof bad);
  CHECK(tdm__cron_next(&bad, 0) == INT64_MAX);
  bad = c;
  bad.months = 0xe001; /* months 0, 13, 14 and 15 */
  CHECK(tdm__cron_next(&bad, 0) == INT64_MAX);
  /* @every: a fixed interval from the time given. */
  CHECK(next_is("@every 5m", 1000, 301000));
  CHECK(next_is("@every 2h30m", -5, 9000000 - 5));
  CHECK(next_is("@every 30s", INT64_MAX - 29999, INT64_MAX));
  CHECK(next_is("@every 30s", INT64_MAX - 30000, INT64_MAX));
  CHECK(next_is("@every 30s", INT64_MAX - 30001, INT64_MAX - 1));
  return 0;
}

/* tdm__cron_format of `text` is `expected`, which parses back the same. */
static int formats_as(const char *text, const char *expected) {
  tdm__cron c, again;
  tdm_error err;
  char buf[TDM__CRON_FORMAT_SIZE];
  if (tdm__cron_parse(text, &c, &err) != TDM_OK) {
    fprintf(stderr, "\"%s\": %s\n", text, err.message);
    return 0;
  }
  int n = tdm__cron_format(&c, buf, sizeof buf);
  if (strcmp(buf, expected) != 0 || n != (int)strlen(expected)) {
    fprintf(stderr, "\"%s\" formats as \"%s\" (%d), expected \"%s\"\n", text,
            buf, n, expected);
    return 0;
  }
  if (tdm__cron_parse(buf, &again, &err) != TDM_OK || !same_cron(&c, &again)) {
    fprintf(stderr, "\"%s\" does not parse back the same\n", buf);
    return 0;
  }
  return 1;
}

TEST(cron_format_normalizes) {
  CHECK(formats_as("* * * * *", "* * * * *"));
  CHECK(formats_as("@hourly", "0 * * * *"));
  CHECK(formats_as("@weekly", "0 0 * * 0"));
  CHECK(formats_as("*/15 9-17 * * mon-fri", "*/15 9-17 * * 1-5"));
  CHECK(formats_as("0-59 0-23 * jan-dec *", "* * * * *"));
  CHECK(formats_as("0,30 */6 * * *", "*/30 */6 * * *"));
  CHECK(formats_as("*/7 * * * *", "0-56/7 * * * *"));
  CHECK(formats_as("0,59 * * * *", "0,59 * * * *"));
  CHECK(formats_as("5,10,15,20 * * * *", "5-20/5 * * * *"));
  CHECK(formats_as("1,2,5,6,7,9 * * * *", "1,2,5-7,9 * * * *"));
  /* Restricted day fields stay restricted, even when they list every
   * value, since that decides how the two combine. */
  CHECK(formats_as("0 0 1-31 * *", "0 0 1-31 * *"));
  CHECK(formats_as("0 0 * * 0-7", "0 0 * * 0-6"));
  CHECK(formats_as("0 0 * * 7,sat", "0 0 * * 0,6"));
  CHECK(formats_as("0 0 */2 * *", "0 0 */2 * *"));
  CHECK(formats_as("0 0 1-31/2 * *", "0 0 1-31/2 * *"));
  CHECK(formats_as("0 0 13 * */7", "0 0 13 * */7"));
  CHECK(formats_as("0 0 13 * */3", "0 0 13 * */3"));
  CHECK(formats_as("@every 90m", "@every 1h30m"));
  CHECK(formats_as("@every 86400s", "@every 1d"));
  CHECK(formats_as("@every 1d0h1s", "@every 1d1s"));

  /* Like snprintf when the buffer is short. */
  tdm__cron c;
  tdm_error err;
  char small[6];
  CHECK_INT(tdm__cron_parse("*/15 9-17 * * 1-5", &c, &err), TDM_OK);
  CHECK_INT(tdm__cron_format(&c, small, sizeof small), 17);
  CHECK_STR(small, "*/15 ");
  CHECK_INT(tdm__cron_format(&c, NULL, 0), 17);
  /* The longest text fits the documented size. */
  CHECK_INT(tdm__cron_parse("0,2,3,5,6,8,9,11,12,14,15,17,18,20,21,23,24,26,"
                            "27,29,30,32,33,35,36,38,39,41,42,44,45,47,48,50,"
                            "51,53,54,56,57,59 0,2,3,5,6,8,9,11,12,14,15,17,"
                            "18,20,21,23 1,3,4,6,7,9,10,12,13,15,16,18,19,21,"
                            "22,24,25,27,28,30,31 1,3,4,6,7,9,10,12 0,2,3,5,6",
                            &c, &err),
            TDM_OK);
  char buf[TDM__CRON_FORMAT_SIZE];
  int n = tdm__cron_format(&c, buf, sizeof buf);
  CHECK(n > 0 && n < TDM__CRON_FORMAT_SIZE);
  return 0;
}

/* ---- the cross-check ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}
static int rng_int(int low, int high) {
  return low + (int)(rng() % (uint64_t)(high - low + 1));
}

/* Appends a random element of a field with values low..high. */
static void random_element(char *out, size_t size, int low, int high,
                           const char *const *names, int name_base,
                           int star_ok) {
  size_t len = strlen(out);
  int kind = rng_int(0, 9);
  int a = rng_int(low, high), b = rng_int(a, high);
  int step = rng_int(1, high - low > 1 ? (high - low) / 2 : 1);
  char va[8], vb[8];
  if (names != NULL && rng_int(0, 2) == 0 && a - name_base >= 0 &&
      a - name_base < (name_base ? 12 : 7))
    snprintf(va, sizeof va, "%s", names[a - name_base]);
  else
    snprintf(va, sizeof va, "%d", a);
  if (names != NULL && rng_int(0, 2) == 0 && b - name_base >= 0 &&
      b - name_base < (name_base ? 12 : 7))
    snprintf(vb, sizeof vb, "%s", names[b - name_base]);
  else
    snprintf(vb, sizeof vb, "%d", b);
  if (kind <= 1 && star_ok)
    snprintf(out + len, size - len, "*");
  else if (kind == 2 && star_ok)
    snprintf(out + len, size - len, "*/%d", step);
  else if (kind <= 5)
    snprintf(out + len, size - len, "%s", va);
  else if (kind <= 7)
    snprintf(out + len, size - len, "%s-%s", va, vb);
  else
    snprintf(out + len, size - len, "%s-%s/%d", va, vb, step);
}

static void random_field(char *out, size_t size, int low, int high,
                         const char *const *names, int name_base) {
  out[0] = '\0';
  int count = rng_int(0, 3) == 0 ? rng_int(2, 3) : 1;
  for (int i = 0; i < count; i++) {
    if (i > 0) strncat(out, ",", size - strlen(out) - 1);
    random_element(out, size, low, high, names, name_base, count == 1);
  }
}

/* Whether the minute starting at t matches, by gmtime_r's calendar. */
static int slow_day_matches(const tdm__cron *c, const struct tm *tm) {
  int dom_ok = (c->days >> tm->tm_mday) & 1;
  int dow_ok = (c->weekdays >> tm->tm_wday) & 1;
  if (c->flags & (TDM__CRON_DOM_STAR | TDM__CRON_DOW_STAR))
    return dom_ok && dow_ok;
  return dom_ok || dow_ok;
}

/* The first matching minute in (after, after + window], minute by minute
 * (skipping the rest of a day or hour that cannot match), or INT64_MAX. */
static int64_t slow_next(const tdm__cron *c, int64_t after, int64_t window) {
  int64_t t = (after >= 0 ? after / 60000 + 1 : -((-after) / 60000)) * 60000;
  if (t <= after) t += 60000;
  while (t <= after + window) {
    time_t seconds = (time_t)(t / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    int64_t into_day = ((int64_t)tm.tm_hour * 60 + tm.tm_min) * 60000;
    int64_t into_hour = (int64_t)tm.tm_min * 60000;
    if (!((c->months >> (tm.tm_mon + 1)) & 1) || !slow_day_matches(c, &tm))
      t += 86400000 - into_day;
    else if (!((c->hours >> tm.tm_hour) & 1))
      t += 3600000 - into_hour;
    else if ((c->minutes >> tm.tm_min) & 1)
      return t;
    else
      t += 60000;
  }
  return INT64_MAX;
}

TEST(cron_next_matches_a_minute_by_minute_search) {
  static const char *const months[] = {"jan", "feb", "mar", "apr",
                                       "may", "jun", "jul", "aug",
                                       "sep", "oct", "nov", "dec"};
  static const char *const days[] = {"sun", "mon", "tue", "wed",
                                     "thu", "fri", "sat"};
  const int64_t window = INT64_C(2) * 366 * 86400000;
  int parsed = 0, compared = 0, beyond = 0;
  for (int round = 0; round < 12000; round++) {
    char f[5][64], text[400];
    random_field(f[0], sizeof f[0], 0, 59, NULL, 0);
    random_field(f[1], sizeof f[1], 0, 23, NULL, 0);
    random_field(f[2], sizeof f[2], 1, 31, NULL, 0);
    random_field(f[3], sizeof f[3], 1, 12, months, 1);
    random_field(f[4], sizeof f[4], 0, 7, days, 0);
    snprintf(text, sizeof text, "%s %s %s %s %s", f[0], f[1], f[2], f[3], f[4]);
    tdm__cron c, again;
    tdm_error err;
    if (tdm__cron_parse(text, &c, &err) != TDM_OK) continue;
    parsed++;

    char normal[TDM__CRON_FORMAT_SIZE];
    tdm__cron_format(&c, normal, sizeof normal);
    if (tdm__cron_parse(normal, &again, &err) != TDM_OK ||
        !same_cron(&c, &again)) {
      fprintf(stderr, "\"%s\" -> \"%s\" does not parse back the same\n", text,
              normal);
      return 1;
    }

    for (int start = 0; start < 3; start++) {
      /* 1901 to 2200, on a whole minute or anywhere within one. */
      int64_t after =
          (int64_t)(rng() % UINT64_C(9467280000000)) - INT64_C(2177452800000);
      if (rng_int(0, 1)) after -= ((after % 60000) + 60000) % 60000;
      int64_t fast = tdm__cron_next(&c, after);
      int64_t slow = slow_next(&c, after, window);
      if (slow == INT64_MAX) {
        if (fast <= after + window) {
          fprintf(stderr, "\"%s\" after %lld: %lld, but none within 2 years\n",
                  text, (long long)after, (long long)fast);
          return 1;
        }
        beyond++;
        continue;
      }
      if (fast != slow) {
        fprintf(stderr, "\"%s\" after %lld: %lld, the slow search %lld\n", text,
                (long long)after, (long long)fast, (long long)slow);
        return 1;
      }
      compared++;
    }
  }
  fprintf(stderr,
          "%d expressions parsed, %d next times compared, %d beyond "
          "2 years\n",
          parsed, compared, beyond);
  CHECK(parsed > 10000);
  CHECK(compared > 30000);
  return 0;
}
