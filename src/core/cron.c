/*
 * cron.c - cron schedules: parsing crontab(5) expressions and @ shortcuts
 * into one bitmask per field, finding the next matching time in UTC, and
 * writing a normalized text back. Calendar arithmetic is done here with
 * Howard Hinnant's days-from-civil and civil-from-days (proleptic
 * Gregorian, any int64_t day), so neither the process time zone nor
 * mktime/timegm plays a part. See cron.h for the syntax and semantics.
 */
#include "cron.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- the fields, as data ---- */

static const char *const month_names[] = {"jan", "feb", "mar", "apr",
                                          "may", "jun", "jul", "aug",
                                          "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed",
                                        "thu", "fri", "sat"};

/*
 * One of the five fields. `names[i]` stands for the value name_base + i.
 * The day-of-week field takes 0-7, and its 7 is folded into 0 (Sunday)
 * after parsing.
 */
typedef struct field_spec {
  const char *name;
  int low, high;
  const char *const *names;
  int name_count;
  int name_base;
  const char *name_range; /* for messages: "jan-dec" */
} field_spec;

enum { FIELD_MINUTE, FIELD_HOUR, FIELD_DOM, FIELD_MONTH, FIELD_DOW };

static const field_spec fields[5] = {
    {"minute", 0, 59, NULL, 0, 0, NULL},
    {"hour", 0, 23, NULL, 0, 0, NULL},
    {"day-of-month", 1, 31, NULL, 0, 0, NULL},
    {"month", 1, 12, month_names, 12, 1, "jan-dec"},
    {"day-of-week", 0, 7, day_names, 7, 0, "sun-sat"},
};

/* The @ shortcuts, each the five fields it stands for. */
static const struct {
  const char *name;
  const char *fields;
} shortcuts[] = {
    {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* The longest day of each month in any year (February 29). */
static const int longest_month_day[13] = {0,  31, 29, 31, 30, 31, 30,
                                          31, 31, 30, 31, 30, 31};

/* @every takes at most this long an interval, and whole seconds. */
#define EVERY_MAX_SECONDS (366 * 86400LL)

static int is_space(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' ||
         ch == '\f';
}

/* The lowest set bit of mask at or above `from`, or -1 if none. */
static int next_bit(uint64_t mask, int from) {
  for (int bit = from; bit < 64; bit++)
    if ((mask >> bit) & 1) return bit;
  return -1;
}

/* The bits low..high of a uint64_t, every `step`-th from low. */
static uint64_t bit_range(int low, int high, int step) {
  uint64_t mask = 0;
  for (int v = low; v <= high; v += step) mask |= (uint64_t)1 << v;
  return mask;
}

/* Folds day-of-week 7 into 0, both being Sunday. */
static uint64_t fold_sunday(uint64_t mask) {
  if ((mask >> 7) & 1) mask = (mask & ~((uint64_t)1 << 7)) | 1;
  return mask;
}

/* ---- parsing ---- */

/* Fails with "field N (name): <formatted text>". */
static int field_fail(tdm_error *err, int field, const char *fmt, ...)
    TDM__PRINTF(3, 4);
static int field_fail(tdm_error *err, int field, const char *fmt, ...) {
  char why[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  return tdm__fail(err, TDM_EPARSE, "field %d (%s): %s", field + 1,
                   fields[field].name, why);
}

/* Describes the character at p for a message: 'x', or a byte in hex. */
static void describe_char(const char *p, const char *end, char *out,
                          size_t size) {
  if (p >= end)
    snprintf(out, size, "the end of the field");
  else if (isprint((unsigned char)*p))
    snprintf(out, size, "'%c'", *p);
  else
    snprintf(out, size, "byte 0x%02x", (unsigned char)*p);
}

/*
 * Parses one value at *p: a number, or a name where the field has names.
 * `what` says what is expected there, for messages ("the end of the
 * range"). Advances *p past it.
 */
static int parse_value(int field, const char **p, const char *end,
                       const char *what, int *out, tdm_error *err) {
  const field_spec *f = &fields[field];
  const char *start = *p, *q = *p;
  if (q < end && isdigit((unsigned char)*q)) {
    long value = 0;
    while (q < end && isdigit((unsigned char)*q)) {
      if (value < 1000000) value = value * 10 + (*q - '0');
      q++;
    }
    if (value < f->low || value > f->high)
      return field_fail(err, field, "%.*s is out of range %d-%d",
                        (int)(q - start), start, f->low, f->high);
    *p = q;
    *out = (int)value;
    return TDM_OK;
  }
  if (q < end && isalpha((unsigned char)*q)) {
    while (q < end && isalnum((unsigned char)*q)) q++;
    size_t len = (size_t)(q - start);
    if (f->names == NULL)
      return field_fail(err, field, "'%.*s' is not a number", (int)len, start);
    for (int i = 0; i < f->name_count; i++)
      if (len == 3 && strncasecmp(start, f->names[i], 3) == 0) {
        *p = q;
        *out = f->name_base + i;
        return TDM_OK;
      }
    return field_fail(err, field, "unknown name '%.*s' (expected %s)", (int)len,
                      start, f->name_range);
  }
  char seen[32];
  describe_char(q, end, seen, sizeof seen);
  return field_fail(err, field, "expected %s, found %s", what, seen);
}

/* Parses the number of a step after '/' at *p. */
static int parse_step(int field, const char **p, const char *end, int *out,
                      tdm_error *err) {
  const field_spec *f = &fields[field];
  const char *start = *p, *q = *p;
  if (q >= end || !isdigit((unsigned char)*q)) {
    char seen[32];
    describe_char(q, end, seen, sizeof seen);
    return field_fail(err, field, "expected a step after '/', found %s", seen);
  }
  long step = 0;
  while (q < end && isdigit((unsigned char)*q)) {
    if (step < 1000000) step = step * 10 + (*q - '0');
    q++;
  }
  if (step == 0) return field_fail(err, field, "a step of 0 is not allowed");
  if (step > f->high - f->low)
    return field_fail(
        err, field, "a step of %.*s is wider than the field's range %d-%d%s",
        (int)(q - start), start, f->low, f->high,
        field <= FIELD_HOUR ? " (for longer intervals use @every)" : "");
  *p = q;
  *out = (int)step;
  return TDM_OK;
}

/*
 * Parses one list element text[0..len) into *mask: `*`, `*`/n, a, a-b or
 * a-b/n.
 */
static int parse_element(int field, const char *text, size_t len, int in_list,
                         uint64_t *mask, tdm_error *err) {
  const field_spec *f = &fields[field];
  const char *p = text, *end = text + len;
  int low, high, step = 1;
  if (len == 0)
    return field_fail(err, field,
                      in_list ? "empty element in a list" : "empty field");
  if (*p == '*') {
    if (in_list)
      return field_fail(err, field, "'*' must stand alone, not in a list");
    p++;
    low = f->low;
    high = f->high;
    if (p < end && *p == '/') {
      p++;
      int rc = parse_step(field, &p, end, &step, err);
      if (rc != TDM_OK) return rc;
    }
  } else {
    int rc = parse_value(field, &p, end, "a number or '*'", &low, err);
    if (rc != TDM_OK) return rc;
    high = low;
    if (p < end && *p == '-') {
      p++;
      rc = parse_value(field, &p, end, "the end of the range after '-'", &high,
                       err);
      if (rc != TDM_OK) return rc;
      /* "fri-sun" means Friday to Sunday: the name sun ends a range as 7. */
      if (field == FIELD_DOW && high == 0 && low > 0 &&
          isalpha((unsigned char)p[-1]))
        high = 7;
      if (high < low)
        return field_fail(err, field,
                          "the range %.*s is reversed (its start is after "
                          "its end)",
                          (int)(p - text), text);
      if (p < end && *p == '/') {
        p++;
        rc = parse_step(field, &p, end, &step, err);
        if (rc != TDM_OK) return rc;
      }
    } else if (p < end && *p == '/') {
      return field_fail(err, field,
                        "a step needs a range or '*' before it: write "
                        "%.*s-%d/%.*s instead of %.*s",
                        (int)(p - text), text, f->high, (int)(end - p - 1),
                        p + 1, (int)len, text);
    }
  }
  if (p < end) {
    char seen[32];
    describe_char(p, end, seen, sizeof seen);
    return field_fail(err, field, "unexpected %s in '%.*s'", seen, (int)len,
                      text);
  }
  *mask |= bit_range(low, high, step);
  return TDM_OK;
}

/* Parses one whole field (a comma-separated list) into *mask. */
static int parse_field(int field, const char *text, size_t len, uint64_t *mask,
                       int *star, tdm_error *err) {
  const char *end = text + len;
  int in_list = memchr(text, ',', len) != NULL;
  *mask = 0;
  *star = len > 0 && text[0] == '*';
  for (const char *p = text;;) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *stop = comma != NULL ? comma : end;
    int rc = parse_element(field, p, (size_t)(stop - p), in_list, mask, err);
    if (rc != TDM_OK) return rc;
    if (comma == NULL) break;
    p = comma + 1;
  }
  if (field == FIELD_DOW) *mask = fold_sunday(*mask);
  return TDM_OK;
}

/* A whitespace-separated word of the text. */
typedef struct word {
  const char *text;
  size_t len;
} word;

/* Splits text into at most `max` words; returns how many there are. */
static int split_words(const char *text, word *words, int max) {
  int count = 0;
  const char *p = text;
  for (;;) {
    while (is_space(*p)) p++;
    if (*p == '\0') return count;
    const char *start = p;
    while (*p != '\0' && !is_space(*p)) p++;
    if (count < max) {
      words[count].text = start;
      words[count].len = (size_t)(p - start);
    }
    count++;
  }
}

/* Parses an @every duration such as 30s, 5m, 2h30m or 1d12h. */
static int parse_duration(const word *w, int64_t *out_ms, tdm_error *err) {
  static const struct {
    char unit;
    int64_t seconds;
  } units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
  const char *p = w->text, *end = w->text + w->len;
  int64_t total = 0;
  int next_unit = 0; /* units must come largest first, each once */
  while (p < end) {
    const char *start = p;
    int64_t number = 0;
    while (p < end && isdigit((unsigned char)*p)) {
      if (number <= EVERY_MAX_SECONDS) number = number * 10 + (*p - '0');
      p++;
    }
    if (p == start) {
      char seen[32];
      describe_char(p, end, seen, sizeof seen);
      return tdm__fail(err, TDM_EPARSE,
                       "@every %.*s: expected a number, found %s", (int)w->len,
                       w->text, seen);
    }
    if (p == end)
      return tdm__fail(err, TDM_EPARSE,
                       "@every %.*s: %.*s needs a unit (s, m, h or d)",
                       (int)w->len, w->text, (int)(p - start), start);
    if (*p == 'm' && p + 1 < end && p[1] == 's')
      return tdm__fail(err, TDM_EPARSE,
                       "@every %.*s: the interval is whole seconds; "
                       "milliseconds are not supported",
                       (int)w->len, w->text);
    int u = 0;
    while (u < 4 && units[u].unit != *p) u++;
    if (u == 4) {
      char seen[32];
      describe_char(p, end, seen, sizeof seen);
      return tdm__fail(err, TDM_EPARSE,
                       "@every %.*s: unknown unit %s (use s, m, h or d)",
                       (int)w->len, w->text, seen);
    }
    if (u < next_unit)
      return tdm__fail(err, TDM_EPARSE,
                       "@every %.*s: units must go from largest to smallest, "
                       "each once (as in 1d2h30m)",
                       (int)w->len, w->text);
    next_unit = u + 1;
    p++;
    if (number > EVERY_MAX_SECONDS) number = EVERY_MAX_SECONDS + 1;
    total += number * units[u].seconds;
    if (total > EVERY_MAX_SECONDS)
      return tdm__fail(err, TDM_EPARSE,
                       "@every %.*s: the interval is longer than 366 days",
                       (int)w->len, w->text);
  }
  if (total == 0)
    return tdm__fail(err, TDM_EPARSE,
                     "@every %.*s: the interval must be longer than zero",
                     (int)w->len, w->text);
  *out_ms = total * 1000;
  return TDM_OK;
}

/* Parses an @ word (and its argument, for @every). */
static int parse_shortcut(const word *words, int count, tdm__cron *out,
                          tdm_error *err) {
  const word *w = &words[0];
  if (w->len == 6 && strncasecmp(w->text, "@every", 6) == 0) {
    if (count < 2)
      return tdm__fail(err, TDM_EPARSE,
                       "@every needs a duration, such as 5m or 2h30m");
    if (count > 2)
      return tdm__fail(err, TDM_EPARSE,
                       "@every takes one duration, without spaces (as in "
                       "2h30m)");
    int rc = parse_duration(&words[1], &out->every_ms, err);
    if (rc != TDM_OK) return rc;
    out->flags = TDM__CRON_EVERY;
    return TDM_OK;
  }
  for (size_t i = 0; i < sizeof shortcuts / sizeof shortcuts[0]; i++) {
    if (strlen(shortcuts[i].name) != w->len ||
        strncasecmp(shortcuts[i].name, w->text, w->len) != 0)
      continue;
    if (count > 1)
      return tdm__fail(err, TDM_EPARSE, "%s takes nothing after it",
                       shortcuts[i].name);
    return tdm__cron_parse(shortcuts[i].fields, out, err);
  }
  if (w->len == 7 && strncasecmp(w->text, "@reboot", 7) == 0)
    return tdm__fail(err, TDM_EPARSE,
                     "@reboot is not supported: a schedule names times");
  return tdm__fail(err, TDM_EPARSE,
                   "unknown shortcut '%.*s' (expected @hourly, @daily, "
                   "@midnight, @weekly, @monthly, @yearly, @annually or "
                   "@every DURATION)",
                   (int)(w->len > 64 ? 64 : w->len), w->text);
}

int tdm__cron_parse(const char *text, tdm__cron *out, tdm_error *err) {
  word words[6];
  tdm__cron c;
  memset(&c, 0, sizeof c);
  memset(out, 0, sizeof *out);
  if (text == NULL) return tdm__fail(err, TDM_EINVAL, "no schedule");
  int count = split_words(text, words, 6);
  if (count == 0) return tdm__fail(err, TDM_EPARSE, "the schedule is empty");
  if (words[0].text[0] == '@') {
    int rc = parse_shortcut(words, count, &c, err);
    if (rc != TDM_OK) return rc;
    *out = c;
    return TDM_OK;
  }
  if (count != 5)
    return tdm__fail(
        err, TDM_EPARSE,
        "expected 5 fields (minute hour day-of-month month "
        "day-of-week), found %d%s",
        count, count == 6 ? " (seconds and years are not supported)" : "");
  uint64_t masks[5];
  int stars[5];
  for (int i = 0; i < 5; i++) {
    int rc =
        parse_field(i, words[i].text, words[i].len, &masks[i], &stars[i], err);
    if (rc != TDM_OK) return rc;
  }
  c.minutes = masks[FIELD_MINUTE];
  c.hours = (uint32_t)masks[FIELD_HOUR];
  c.days = (uint32_t)masks[FIELD_DOM];
  c.months = (uint16_t)masks[FIELD_MONTH];
  c.weekdays = (uint8_t)masks[FIELD_DOW];
  if (stars[FIELD_DOM]) c.flags |= TDM__CRON_DOM_STAR;
  if (stars[FIELD_DOW]) c.flags |= TDM__CRON_DOW_STAR;

  /*
   * A schedule that can never fire: when the day-of-week field starts
   * with `*`, the day of month must also match, and none of its days may
   * occur in any listed month (February 30). Every other schedule fires:
   * a day-of-month that starts with `*` includes the 1st; two restricted
   * day fields match on either; and each month and day falls on every
   * weekday within the 400-year Gregorian cycle.
   */
  if (!(c.flags & TDM__CRON_DOM_STAR) && (c.flags & TDM__CRON_DOW_STAR)) {
    int possible = 0;
    for (int month = 1; month <= 12 && !possible; month++)
      if ((c.months >> month) & 1)
        possible = (c.days & bit_range(1, longest_month_day[month], 1)) != 0;
    if (!possible)
      return tdm__fail(err, TDM_EPARSE,
                       "fields 3 and 4 (day-of-month, month): the schedule "
                       "never fires, since no month listed has the days "
                       "listed ('%.*s %.*s')",
                       (int)words[2].len, words[2].text, (int)words[3].len,
                       words[3].text);
  }
  *out = c;
  return TDM_OK;
}

/* ---- calendar arithmetic (UTC, proleptic Gregorian) ---- */

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) q--;
  return q;
}

/* Days since 1970-01-01 of year-month-day (month 1-12). */
static int64_t days_from_civil(int64_t year, int month, int day) {
  year -= month <= 2;
  int64_t era = (year >= 0 ? year : year - 399) / 400;
  int64_t year_of_era = year - era * 400;
  int64_t day_of_year =
      (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  int64_t day_of_era =
      year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

/* The year, month (1-12) and day of days since 1970-01-01. */
static void civil_from_days(int64_t days, int64_t *year, int *month, int *day) {
  days += 719468;
  int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  int64_t day_of_era = days - era * 146097;
  int64_t year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 -
                         day_of_era / 146096) /
                        365;
  int64_t day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  int64_t mp = (5 * day_of_year + 2) / 153;
  *day = (int)(day_of_year - (153 * mp + 2) / 5 + 1);
  *month = (int)(mp < 10 ? mp + 3 : mp - 9);
  *year = year_of_era + era * 400 + (*month <= 2);
}

static int is_leap(int64_t year) {
  return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

static int days_in_month(int64_t year, int month) {
  return month == 2 && !is_leap(year) ? 28 : longest_month_day[month];
}

/* The weekday of days since 1970-01-01 (a Thursday), 0 for Sunday. */
static int weekday(int64_t days) { return (int)(((days % 7) + 7 + 4) % 7); }

/* Whether the day matches the schedule's two day fields (Vixie's rule). */
static int day_matches(const tdm__cron *c, int64_t year, int month, int day) {
  int dom_ok = (c->days >> day) & 1;
  int dow_ok = (c->weekdays >> weekday(days_from_civil(year, month, day))) & 1;
  if (c->flags & (TDM__CRON_DOM_STAR | TDM__CRON_DOW_STAR))
    return dom_ok && dow_ok;
  return dom_ok || dow_ok;
}

int64_t tdm__cron_next(const tdm__cron *c, int64_t after_ms) {
  if (c->flags & TDM__CRON_EVERY) {
    if (after_ms > INT64_MAX - c->every_ms) return INT64_MAX;
    return after_ms + c->every_ms;
  }
  /* Only the bits of valid values count, so that a schedule not made by
   * tdm__cron_parse cannot lead outside the tables. */
  tdm__cron valid = *c;
  valid.minutes &= bit_range(0, 59, 1);
  valid.hours &= (uint32_t)bit_range(0, 23, 1);
  valid.days &= (uint32_t)bit_range(1, 31, 1);
  valid.months &= (uint16_t)bit_range(1, 12, 1);
  valid.weekdays &= (uint8_t)bit_range(0, 6, 1);
  if (valid.minutes == 0 || valid.hours == 0 || valid.days == 0 ||
      valid.months == 0 || valid.weekdays == 0)
    return INT64_MAX;
  c = &valid;

  /* Start at the first whole minute strictly after after_ms. */
  int64_t first = floor_div(after_ms, 60000) + 1;
  int64_t days = floor_div(first, 1440);
  int minute_of_day = (int)(first - days * 1440);
  int64_t year;
  int month, day;
  civil_from_days(days, &year, &month, &day);
  int hour = minute_of_day / 60, minute = minute_of_day % 60;

  /*
   * Advance by the largest unit that does not match: a month, a day, an
   * hour, then a minute, each time resetting the smaller units to their
   * first values. A schedule that parsed fires within one 400-year
   * cycle, so the year limit only guards against a bad tdm__cron.
   */
  const int64_t last_year = year + 500;
  int found = 0;
  while (!found && year <= last_year) {
    if (!((c->months >> month) & 1)) {
      int next = next_bit(c->months, month + 1);
      if (next < 0 || next > 12) {
        year++;
        next = next_bit(c->months, 1);
      }
      month = next;
      day = 1;
      hour = minute = 0;
      continue;
    }
    int next_day = 0; /* whether to move on to the next day */
    if (!day_matches(c, year, month, day)) {
      next_day = 1;
    } else {
      int next_hour = next_bit(c->hours, hour);
      if (next_hour < 0 || next_hour > 23) {
        next_day = 1;
      } else {
        if (next_hour != hour) minute = 0;
        hour = next_hour;
        int next_minute = next_bit(c->minutes, minute);
        if (next_minute < 0 || next_minute > 59) {
          hour++;
          minute = 0;
          if (hour == 24) next_day = 1;
        } else {
          minute = next_minute;
          found = 1;
        }
      }
    }
    if (next_day) {
      hour = minute = 0;
      if (++day > days_in_month(year, month)) {
        day = 1;
        if (++month > 12) {
          month = 1;
          year++;
        }
      }
    }
  }
  if (!found) return INT64_MAX;
  int64_t result_minutes =
      days_from_civil(year, month, day) * 1440 + hour * 60 + minute;
  if (result_minutes > INT64_MAX / 60000) return INT64_MAX;
  return result_minutes * 60000;
}

/* ---- formatting ---- */

/* A snprintf-like writer that keeps counting past the end of the buffer. */
typedef struct writer {
  char *buf;
  size_t size;
  size_t len;
} writer;

static void write_text(writer *w, const char *fmt, ...) TDM__PRINTF(2, 3);
static void write_text(writer *w, const char *fmt, ...) {
  char piece[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(piece, sizeof piece, fmt, ap);
  va_end(ap);
  for (int i = 0; i < n && i < (int)sizeof piece - 1; i++, w->len++)
    if (w->len + 1 < w->size) w->buf[w->len] = piece[i];
  if (w->size > 0) w->buf[w->len < w->size ? w->len : w->size - 1] = '\0';
}

/* The mask that `*`/step gives in a field (step 1 for `*`). */
static uint64_t star_mask(int field, int step) {
  uint64_t mask = bit_range(fields[field].low, fields[field].high, step);
  return field == FIELD_DOW ? fold_sunday(mask) : mask;
}

/*
 * Writes one field. A field that parsed from `*` or `*`/n is written so
 * again. The minute, hour and month fields, where `*` means nothing more
 * than its values, are written so when that is shorter ("*", or "*"/15
 * when the step divides the range); the day fields only when they started
 * with `*`, since that decides how the two combine. Anything else becomes
 * "a-b/n" for an arithmetic series of three or more, or else a list of
 * single values and runs "a-b" of three or more.
 */
static void write_field(writer *w, int field, uint64_t mask, int star) {
  const field_spec *f = &fields[field];
  int day_field = field == FIELD_DOM || field == FIELD_DOW;
  int span = f->high - f->low;
  if (star || !day_field) {
    for (int step = 1; step <= span; step++) {
      if (!star && step > 1 && (span + 1) % step != 0) continue;
      if (star_mask(field, step) != mask) continue;
      if (step == 1)
        write_text(w, "*");
      else
        write_text(w, "*/%d", step);
      return;
    }
  }
  int values[64], count = 0;
  for (int v = 0; v < 64; v++)
    if ((mask >> v) & 1) values[count++] = v;
  if (count >= 3) {
    int step = values[1] - values[0], series = step > 1;
    for (int i = 2; i < count && series; i++)
      series = values[i] - values[i - 1] == step;
    if (series) {
      write_text(w, "%d-%d/%d", values[0], values[count - 1], step);
      return;
    }
  }
  for (int i = 0; i < count;) {
    int j = i;
    while (j + 1 < count && values[j + 1] == values[j] + 1) j++;
    if (i > 0) write_text(w, ",");
    if (j - i >= 2) {
      write_text(w, "%d-%d", values[i], values[j]);
      i = j + 1;
    } else {
      write_text(w, "%d", values[i]);
      i++;
    }
  }
}

int tdm__cron_format(const tdm__cron *c, char *buf, size_t size) {
  writer w = {buf, size, 0};
  if (size > 0) buf[0] = '\0';
  if (c->flags & TDM__CRON_EVERY) {
    static const struct {
      char unit;
      int64_t seconds;
    } units[] = {{'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
    int64_t seconds = c->every_ms / 1000;
    write_text(&w, "@every ");
    for (int u = 0; u < 4; u++) {
      int64_t n = seconds / units[u].seconds;
      seconds %= units[u].seconds;
      if (n > 0) write_text(&w, "%lld%c", (long long)n, units[u].unit);
    }
    return (int)w.len;
  }
  const uint64_t masks[5] = {c->minutes, c->hours, c->days, c->months,
                             c->weekdays};
  const int stars[5] = {0, 0, (c->flags & TDM__CRON_DOM_STAR) != 0, 0,
                        (c->flags & TDM__CRON_DOW_STAR) != 0};
  for (int i = 0; i < 5; i++) {
    if (i > 0) write_text(&w, " ");
    write_field(&w, i, masks[i], stars[i]);
  }
  return (int)w.len;
}
