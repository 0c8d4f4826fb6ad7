/*
 * cron.h - cron schedules for `schedule:` in pipeline files, the times at
 * which `tandem serve` runs a batch refresh. The syntax is crontab(5)'s
 * five fields, `minute hour day-of-month month day-of-week`, each a `*`, a
 * number, a range `a-b`, a list `a,b,c`, or a step (`*`/n or `a-b/n`);
 * month names jan-dec and day names sun-sat in any case, also in ranges
 * and lists; day-of-week 0-7 with both 0 and 7 for Sunday (so "fri-sun" is
 * 5-7). When both day fields are restricted (that is, neither starts with
 * `*`), a day matches if EITHER matches, as in Vixie cron and cronie;
 * otherwise both must match. The shortcuts are @hourly, @daily
 * (= @midnight), @weekly, @monthly, @yearly (= @annually), and, as an
 * extension, `@every DURATION` (for example `30s`, `5m`, `2h30m`, `1d`): a
 * fixed interval from the previous run.
 *
 * Every time is UTC: there are no time zones and so no daylight saving
 * gaps or repeats. Times are epoch milliseconds (int64_t), converted to
 * calendar dates here without the C library, so the process time zone
 * plays no part.
 *
 * Refused on purpose, each with a message that says why: a step after a
 * single number (`5/15`; write `5-59/15`), a step wider than its field
 * (`*`/90 in the minute field; use @every), a reversed range (`5-1`),
 * `*` inside a list, six-field expressions (seconds or years), @reboot, and
 * schedules that can never fire ("0 0 30 2 *", February 30).
 */
#ifndef TDM_CRON_H
#define TDM_CRON_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

/* Flags of a tdm__cron. */
enum {
  TDM__CRON_EVERY = 1,    /* @every: only every_ms counts */
  TDM__CRON_DOM_STAR = 2, /* the day-of-month field starts with `*` */
  TDM__CRON_DOW_STAR = 4  /* the day-of-week field starts with `*` */
};

/*
 * A parsed schedule: one bit per allowed value of each field. A plain
 * value (no pointers), so it can be copied and compared field by field.
 */
typedef struct tdm__cron {
  uint64_t minutes; /* bit m for minute m, 0-59 */
  uint32_t hours;   /* bit h for hour h, 0-23 */
  uint32_t days;    /* bit d for day of month d, 1-31 */
  uint16_t months;  /* bit m for month m, 1-12 */
  uint8_t weekdays; /* bit w for weekday w, 0-6 with 0 for Sunday */
  int flags;        /* TDM__CRON_* */
  int64_t every_ms; /* the interval of @every, whole seconds, > 0 */
} tdm__cron;

/* A buffer this large always holds tdm__cron_format's text. */
#define TDM__CRON_FORMAT_SIZE 512

/*
 * Parses a schedule. Fails with TDM_EPARSE and a message that names the
 * field and says why, for example "field 2 (hour): 25 is out of range
 * 0-23". On failure *out is left zeroed.
 */
int tdm__cron_parse(const char *text, tdm__cron *out, tdm_error *err);

/*
 * The first time strictly after `after_ms` (epoch milliseconds, UTC) that
 * the schedule matches, which is always a whole minute; for @every it is
 * after_ms + the interval. Returns INT64_MAX when there is none that an
 * int64_t can hold (only near the end of its range, since tdm__cron_parse
 * refuses schedules that can never fire). Takes time proportional to the
 * months and days skipped, never to the minutes.
 */
int64_t tdm__cron_next(const tdm__cron *c, int64_t after_ms);

/*
 * Writes a normalized text of the schedule for status output: five fields
 * with numbers for names ("0 * * * *" for @hourly, "0 9-17 * * 1-5") or
 * "@every 1h30m". Parsing the text gives back the same schedule. Like
 * snprintf, writes at most `size` bytes with a NUL and returns the length
 * of the whole text; TDM__CRON_FORMAT_SIZE bytes are always enough.
 */
int tdm__cron_format(const tdm__cron *c, char *buf, size_t size);

#endif /* TDM_CRON_H */
