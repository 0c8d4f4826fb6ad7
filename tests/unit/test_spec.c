/*
 * test_spec.c - the pipeline file reader's handling of text libfyaml must
 * never see (regressions found by fuzz_spec), and event times.
 */
#include <string.h>
#include <time.h>

#include "../../src/pipeline/spec.h"
#include "test.h"

static int parse_fails(const char *text, size_t len, const char *where,
                       const char *what) {
  tdm__spec *spec;
  tdm_error err;
  int rc = tdm__spec_parse(text, len, "p.yaml", &spec, &err);
  if (rc == TDM_OK) {
    tdm__spec_free(spec);
    return 0;
  }
  return rc == TDM_EPARSE && strstr(err.message, where) != NULL &&
         strstr(err.message, what) != NULL;
}

/* fuzz_spec found libfyaml 0.7 looping forever on a malformed directive;
 * directives are refused before libfyaml reads the text. */
TEST(spec_refuses_directives_and_bad_utf8) {
  static const char hang[] =
      "# The fraud exand a\n# decisionname: fraud_ exand a\n"
      "%ntity: card_id @   w:h\xff\xfe\"smoke\nentity: card_id\n";
  CHECK(parse_fails(hang, sizeof hang - 1, "p.yaml:3:1:", "directives"));
  static const char yaml_directive[] = "%YAML 1.2\n---\nname: x\n";
  CHECK(parse_fails(yaml_directive, sizeof yaml_directive - 1, "p.yaml:1:1:",
                    "directives"));
  static const char bad_utf8[] = "name: x\nentity: \xc3\x28\n";
  CHECK(parse_fails(bad_utf8, sizeof bad_utf8 - 1, "p.yaml:2:9:", "UTF-8"));
  static const char nul[] = "name: x\0\n";
  CHECK(parse_fails(nul, sizeof nul - 1, "p.yaml:1:8:", "NUL"));
  return 0;
}

TEST(spec_times_and_durations) {
  int64_t ms;
  CHECK(tdm__parse_time("2026-03-01T14:03:07.123Z", 24, TDM__TIME_AUTO, &ms) == 0);
  CHECK(ms == 1772373787123LL);
  CHECK(tdm__parse_time("2026-03-01T16:03:07.123+02:00", 29, TDM__TIME_AUTO,
                        &ms) == 0);
  CHECK(ms == 1772373787123LL);
  CHECK(tdm__parse_time("1772373787.123", 14, TDM__TIME_AUTO, &ms) == 0);
  CHECK(ms == 1772373787123LL);
  CHECK(tdm__parse_time("1772373787123", 13, TDM__TIME_MILLISECONDS, &ms) == 0);
  CHECK(ms == 1772373787123LL);
  CHECK(tdm__parse_time("1969-12-31T23:59:59.999Z", 24, TDM__TIME_AUTO, &ms) == 0);
  CHECK(ms == -1);
  CHECK(tdm__parse_time("2025-02-29T00:00:00Z", 20, TDM__TIME_AUTO, &ms) != 0);
  CHECK(tdm__parse_time("2024-02-29T00:00:00Z", 20, TDM__TIME_AUTO, &ms) == 0);
  CHECK(tdm__parse_time("2026-03-01 14:03:07Z", 20, TDM__TIME_AUTO, &ms) == 0);
  CHECK(tdm__parse_time("2026-03-01T14:03:07", 19, TDM__TIME_AUTO, &ms) != 0);
  CHECK(tdm__parse_time("nan", 3, TDM__TIME_AUTO, &ms) != 0);
  CHECK(tdm__parse_time("1e300", 5, TDM__TIME_AUTO, &ms) != 0);
  char buf[32];
  tdm__format_time(1772373787123LL, buf);
  CHECK_STR(buf, "2026-03-01T14:03:07.123Z");
  tdm__format_time(-1, buf);
  CHECK_STR(buf, "1969-12-31T23:59:59.999Z");
  tdm__format_time(TDM__TIME_MIN_MS, buf);
  CHECK_STR(buf, "0001-01-01T00:00:00.000Z");
  tdm__format_time(TDM__TIME_MAX_MS, buf);
  CHECK_STR(buf, "9999-12-31T23:59:59.999Z");
  /* Seeded times across the whole range, against the C library's gmtime
   * (an independent calendar): the same text, digit for digit. */
  uint64_t x = 0x2545F4914F6CDD1Dull;
  for (int i = 0; i < 20000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int64_t t = TDM__TIME_MIN_MS +
                (int64_t)(x % (uint64_t)(TDM__TIME_MAX_MS - TDM__TIME_MIN_MS + 1));
    int64_t seconds = t >= 0 ? t / 1000 : -((-t + 999) / 1000);
    time_t whole = (time_t)seconds;
    struct tm tm;
    CHECK(gmtime_r(&whole, &tm) != NULL);
    char want[64];
    snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(t - seconds * 1000));
    tdm__format_time(t, buf);
    CHECK_STR(buf, want);
  }
  CHECK(tdm__parse_duration("30s", &ms) == 0 && ms == 30000);
  CHECK(tdm__parse_duration("7d", &ms) == 0 && ms == 604800000);
  CHECK(tdm__parse_duration("2w", &ms) == 0 && ms == 1209600000);
  CHECK(tdm__parse_duration("500ms", &ms) == 0 && ms == 500);
  CHECK(tdm__parse_duration("0s", &ms) != 0);
  CHECK(tdm__parse_duration("-5m", &ms) != 0);
  CHECK(tdm__parse_duration("1x", &ms) != 0);
  CHECK(tdm__parse_duration("1.5h", &ms) != 0);
  CHECK(tdm__parse_duration("99999999999999999999d", &ms) != 0);
  return 0;
}
