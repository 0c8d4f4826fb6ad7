/*
 * fuzz_window_decode.c - a libFuzzer harness for tdm__entity_decode: the
 * input bytes are an encoded entity state for a fixed spec with every
 * aggregate kind and role (exact, hopped, all, since_last). A state must
 * either be rejected with TDM_EPARSE and a message, or decode into an
 * entity that re-encodes to the same bytes and keeps working: a few events
 * are applied to it and its state is encoded and decoded again. Build with
 * `make fuzz`; run with scripts/fuzz.sh over the seeds in
 * tests/fuzz/corpus/window_decode/: states of this spec encoded after
 * streams of 0 to 300 events (state-*, format version 2; v1-state-*, the
 * same streams in version 1, which is still read).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/pipeline/window.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "fuzz_window_decode: check failed: %s\n", what);
  abort();
}

static const tdm__agg_def aggs[] = {
    {TDM__AGG_COUNT, 3600000, 0, 0, SIZE_MAX},
    {TDM__AGG_SUM, 86400000, 0, 0, 0},
    {TDM__AGG_MEAN, 86400000, 3600000, 1, SIZE_MAX},
    {TDM__AGG_DISTINCT, 86400000, 0, 0, 1},
    {TDM__AGG_SINCE_LAST, 0, 0, 0, SIZE_MAX},
    {TDM__AGG_MAX, 600000, 0, 1, SIZE_MAX},
    {TDM__AGG_STDDEV, 0, 0, 0, SIZE_MAX},
    {TDM__AGG_LAST, 7200000, 600000, 1, 1},
};

static tdm__window_spec *the_spec(void) {
  static tdm__window_spec *spec;
  if (spec == NULL) {
    tdm__window_config c = {aggs, 8, 2, 1, 2, 60000, 0, 50};
    tdm_error err;
    check(tdm__window_spec_new(&c, &spec, &err) == TDM_OK, "spec");
  }
  return spec;
}

static void apply_some(tdm__window_spec *spec, tdm__entity *e, int64_t t,
                       int n) {
  static const char *names[] = {"a", "shop", ""};
  for (int i = 0; i < n; i++) {
    double num[2] = {(double)(i % 7) - 2.5, i % 3 ? 1e9 + i : -0.0};
    tdm__str str[1] = {{names[i % 3], strlen(names[i % 3])}};
    unsigned char fl[2] = {(unsigned char)(i % 2), 1};
    tdm__window_event ev = {t + (i % 4 == 3 ? -5000000 : 700000 * i), num,
                            str, fl};
    double out[8];
    check(tdm__entity_apply(spec, e, &ev, out) == TDM_OK, "apply");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tdm__window_spec *spec = the_spec();
  tdm__entity *e;
  tdm_error err;
  int rc = tdm__entity_decode(spec, data, size, &e, &err);
  if (rc != TDM_OK) {
    check(rc == TDM_EPARSE && err.message[0] != '\0', "a clean rejection");
    check(e == NULL, "no entity on failure");
    return 0;
  }
  tdm__buf again = {0};
  check(tdm__entity_encode(spec, e, &again) == TDM_OK, "encode");
  if (data[0] == 1) {
    /* Format version 1 is written as version 2: that one decodes and
     * encodes to the same bytes. */
    tdm__entity *v2;
    tdm__buf v2_bytes = {0};
    check(tdm__entity_decode(spec, again.data, again.len, &v2, &err) == TDM_OK,
          "a version 1 state decodes as version 2");
    check(tdm__entity_encode(spec, v2, &v2_bytes) == TDM_OK, "encode");
    check(v2_bytes.len == again.len &&
              memcmp(v2_bytes.data, again.data, again.len) == 0,
          "a version 1 state encodes the same as version 2");
    tdm__entity_free(v2);
    tdm__buf_free(&v2_bytes);
  } else {
    check(again.len == size && memcmp(again.data, data, size) == 0,
          "a decoded state encodes to the same bytes");
  }
  /* Events near M, late ones included, within the time limits. */
  int64_t m = tdm__entity_max_time(e), limit = TDM__WINDOW_TIME_LIMIT;
  if (m == INT64_MIN) m = 0;
  if (m > limit - 10000000) m = limit - 10000000;
  if (m < -limit + 10000000) m = -limit + 10000000;
  apply_some(spec, e, m, 6);
  again.len = 0;
  check(tdm__entity_encode(spec, e, &again) == TDM_OK, "encode");
  tdm__entity *copy;
  check(tdm__entity_decode(spec, again.data, again.len, &copy, &err) ==
            TDM_OK,
        "a state after applying events decodes");
  tdm__entity_free(copy);
  tdm__entity_free(e);
  tdm__buf_free(&again);
  return 0;
}
