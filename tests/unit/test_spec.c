/*
 * test_spec.c - the pipeline file reader's handling of text libfyaml must
 * never see (regressions found by fuzz_spec), and event times.
 */
#include <string.h>

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
