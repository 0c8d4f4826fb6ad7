/*
 * test_core.c - unit tests of the core helpers: SHA-256 against the FIPS
 * 180-4 example vectors, the JSON parser (values, XGBoost's NaN literal,
 * syntax errors with line and column, JSON pointers, out-of-memory), and
 * atomic output files.
 */
#include <math.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/core/core.h"
#include "../../src/core/json.h"
#include "test.h"

TEST(sha256_known_vectors) {
  char hex[65];
  tdm__sha256_hex("", 0, hex);
  CHECK_STR(hex,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  tdm__sha256_hex("abc", 3, hex);
  CHECK_STR(hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *two_blocks =
      "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  tdm__sha256_hex(two_blocks, strlen(two_blocks), hex);
  CHECK_STR(hex,
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  return 0;
}

TEST(sha256_incremental) {
  /* One million 'a' fed in uneven pieces (FIPS 180-4's long example). */
  tdm__sha256 ctx;
  tdm__sha256_init(&ctx);
  char chunk[997];
  memset(chunk, 'a', sizeof chunk);
  size_t left = 1000000;
  size_t step = 1;
  while (left > 0) {
    size_t n = step < left ? step : left;
    if (n > sizeof chunk) n = sizeof chunk;
    tdm__sha256_update(&ctx, chunk, n);
    left -= n;
    step = step * 3 + 1;
  }
  char hex[65];
  tdm__sha256_final_hex(&ctx, hex);
  CHECK_STR(hex,
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  return 0;
}

static int parse(tdm__json_doc *doc, const char *text, int flags,
                 tdm_error *err) {
  return tdm__json_parse(doc, text, strlen(text), "t.json", flags, err);
}

TEST(json_values) {
  tdm__json_doc doc;
  tdm_error err;
  const char *text =
      "\xEF\xBB\xBF{\"a\": [1, -2.5e3, true, false, null],"
      " \"s\": \"x\\u00e9\\ud83d\\ude00\\n\\\"\", \"o\": {}, \"e\": []}";
  CHECK_INT(parse(&doc, text, 0, &err), TDM_OK);
  const tdm__json *a = tdm__json_get(doc.root, "a");
  CHECK(a != NULL && a->type == TDM__JSON_ARRAY);
  CHECK_INT(a->count, 5);
  double d;
  CHECK_INT(tdm__json_double(&doc, &a->items[1], &d, &err), TDM_OK);
  CHECK(d == -2500.0);
  CHECK(a->items[2].type == TDM__JSON_BOOL && a->items[2].boolean == 1);
  CHECK(a->items[4].type == TDM__JSON_NULL);
  const tdm__json *s = tdm__json_get(doc.root, "s");
  CHECK_STR(s->text, "x\xC3\xA9\xF0\x9F\x98\x80\n\"");
  CHECK_INT(s->count, 9);
  CHECK_INT(tdm__json_get(doc.root, "o")->count, 0);
  CHECK(tdm__json_get(doc.root, "missing") == NULL);
  tdm__json_doc_free(&doc);
  return 0;
}

TEST(json_nan_literal) {
  tdm__json_doc doc;
  tdm_error err;
  /* Strict JSON refuses NaN; model files allow it, as XGBoost writes it. */
  CHECK_INT(parse(&doc, "[NaN]", 0, &err), TDM_EPARSE);
  CHECK_INT(parse(&doc, "[NaN, -Infinity, 1E0]", TDM__JSON_ALLOW_NAN, &err),
            TDM_OK);
  float f;
  CHECK_INT(tdm__json_float(&doc, &doc.root->items[0], &f, &err), TDM_OK);
  CHECK(isnan(f));
  CHECK_INT(tdm__json_float(&doc, &doc.root->items[1], &f, &err), TDM_OK);
  CHECK(isinf(f) && f < 0);
  tdm__json_doc_free(&doc);
  return 0;
}

TEST(json_syntax_errors) {
  static const struct {
    const char *text;
    const char *message;
  } cases[] = {
      {"", "t.json: empty document"},
      {"{\"a\": 1", "t.json:1:8: expected ',' or '}'"},
      {"{\"a\" 1}", "t.json:1:6: expected ':'"},
      {"[1,\n 2,\n x]", "t.json:3:2: expected a value"},
      {"[01]", "t.json:1:3: expected ',' or ']'"},
      {"[1.]", "t.json:1:4: expected a digit after the decimal point"},
      {"\"abc", "t.json:1:5: unterminated string"},
      {"\"a\\qb\"", "t.json:1:4: invalid escape"},
      {"\"\\ud800\"", "unpaired UTF-16 surrogate"},
      {"[1] 2", "t.json:1:5: unexpected text after the JSON value"},
      {"{1: 2}", "t.json:1:2: expected a member name"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tdm__json_doc doc;
    tdm_error err;
    int rc = parse(&doc, cases[i].text, 0, &err);
    if (rc != TDM_EPARSE) fprintf(stderr, "case %zu\n", i);
    CHECK_INT(rc, TDM_EPARSE);
    CHECK_CONTAINS(err.message, cases[i].message);
  }
  /* Deep nesting is refused, not a stack overflow. */
  char deep[5001];
  memset(deep, '[', 5000);
  deep[5000] = '\0';
  tdm__json_doc doc;
  tdm_error err;
  CHECK_INT(parse(&doc, deep, 0, &err), TDM_EPARSE);
  CHECK_CONTAINS(err.message, "nesting is too deep");
  return 0;
}

TEST(json_pointer) {
  tdm__json_doc doc;
  tdm_error err;
  CHECK_INT(parse(&doc, "{\"a/b\": {\"c~d\": [0, [1, 2]]}}", 0, &err), TDM_OK);
  const tdm__json *inner = tdm__json_get(tdm__json_get(doc.root, "a/b"), "c~d");
  char pointer[128];
  tdm__json_pointer(&inner->items[1].items[1], pointer, sizeof pointer);
  CHECK_STR(pointer, "/a~1b/c~0d/1/1");
  tdm__json_pointer(doc.root, pointer, sizeof pointer);
  CHECK_STR(pointer, "");
  tdm__json_fail(&doc, &inner->items[0], TDM_EPARSE, &err, "bad %d", 7);
  CHECK_STR(err.message, "t.json: at /a~1b/c~0d/0: bad 7");
  tdm__json_doc_free(&doc);
  return 0;
}

TEST(json_number_conversions) {
  tdm__json_doc doc;
  tdm_error err;
  CHECK_INT(parse(&doc,
                  "[\"5E-1\", 0.1, \"12\", \"x\", \"0x10\", 1e999, "
                  "1.00000005960464477539062500001]",
                  0, &err),
            TDM_OK);
  float f;
  CHECK_INT(tdm__json_float(&doc, &doc.root->items[0], &f, &err), TDM_OK);
  CHECK(f == 0.5f);
  /* Straight to float32, correctly rounded: not via double. */
  CHECK_INT(tdm__json_float(&doc, &doc.root->items[1], &f, &err), TDM_OK);
  CHECK(f == 0.1f);
  CHECK_INT(tdm__json_float(&doc, &doc.root->items[6], &f, &err), TDM_OK);
  CHECK(f == 1.00000011920928955078125f);
  int64_t n;
  CHECK_INT(tdm__json_int64(&doc, &doc.root->items[2], &n, &err), TDM_OK);
  CHECK_INT(n, 12);
  CHECK_INT(tdm__json_float(&doc, &doc.root->items[3], &f, &err), TDM_EPARSE);
  CHECK_CONTAINS(err.message, "t.json: at /3:");
  CHECK_INT(tdm__json_float(&doc, &doc.root->items[4], &f, &err), TDM_EPARSE);
  CHECK_INT(tdm__json_int64(&doc, &doc.root->items[1], &n, &err), TDM_EPARSE);
  tdm__json_doc_free(&doc);
  return 0;
}

/* Number texts that every conversion must read the same whether their
 * array is packed or built: float32 and int64 edges, signed zeros,
 * underflow and overflow, NaN and the infinities, long digit strings. */
static const char *const edge_numbers[] = {
    "0", "-0", "0.0", "-0.0", "1", "-1", "0.1", "5E-1", "1e-46", "-1e-46",
    "1.4e-45", "3.4028235e38", "3.4028236e38", "1e39", "-1e39", "1e999",
    "1.00000005960464477539062500001", "16777217", "999999999999999999",
    "-999999999999999999", "9223372036854775807", "-9223372036854775808",
    "9223372036854775808", "123456789012345678901234567890", "1.5", "1e3",
    "NaN", "-NaN", "Infinity", "-Infinity", "nan", "inf", "-inf",
    "0.30000000000000004", "2.5e-8", "1E+2", "12345678.9e-3"};

/* Converts `array` every way; writes the results and statuses to out. */
static void convert_all(const tdm__json_doc *doc, const tdm__json *array,
                        tdm__buf *out) {
  size_t n = array->count;
  float *f = calloc(n + 1, sizeof *f);
  double *d = calloc(n + 1, sizeof *d);
  int64_t *i64 = calloc(n + 1, sizeof *i64);
  tdm_error err;
  int rc = tdm__json_array_floats(doc, array, f, &err);
  tdm__buf_printf(out, "floats %d %s\n", rc, rc ? err.message : "");
  if (rc == TDM_OK) tdm__buf_append(out, f, n * sizeof *f);
  rc = tdm__json_array_doubles(doc, array, d, &err);
  tdm__buf_printf(out, "doubles %d %s\n", rc, rc ? err.message : "");
  if (rc == TDM_OK) tdm__buf_append(out, d, n * sizeof *d);
  rc = tdm__json_array_int64s(doc, array, i64, &err);
  tdm__buf_printf(out, "ints %d %s\n", rc, rc ? err.message : "");
  if (rc == TDM_OK) tdm__buf_append(out, i64, n * sizeof *i64);
  for (size_t i = 0; i < n; i++) {
    tdm__json scratch;
    const tdm__json *e = tdm__json_element(doc, array, i, &scratch);
    char pointer[64];
    tdm__json_pointer(e, pointer, sizeof pointer);
    tdm__buf_printf(out, "%zu %d %.*s %zu %s\n", i, (int)e->type,
                    (int)e->text_len, e->text, e->offset, pointer);
  }
  free(f);
  free(d);
  free(i64);
}

TEST(json_packed_arrays_match_built_arrays) {
  uint64_t state = 0x2026120700000001ull;
  static const char *const spaces[] = {"", " ", "\n", "\t ", "\r\n  "};
  int packed_arrays = 0;
  for (int round = 0; round < 400; round++) {
    tdm__buf text = {0};
    size_t n = 1 + (size_t)(state % 40);
    tdm__buf_append(&text, "{\"a\": [", 7);
    /* One round in eight holds a value that is not a number, so that the
     * array is built after all. */
    int mixed = round % 8 == 7;
    for (size_t i = 0; i < n; i++) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      const char *number =
          edge_numbers[state % (sizeof edge_numbers / sizeof *edge_numbers)];
      const char *space = spaces[(state >> 20) % 5];
      if (mixed && i == n / 2) number = (state >> 30) % 2 ? "\"7\"" : "null";
      tdm__buf_printf(&text, "%s%s%s%s", i ? "," : "", space, number, space);
    }
    tdm__buf_append(&text, "]}", 2);
    tdm__json_doc packed, built;
    tdm_error err;
    CHECK_INT(tdm__json_parse(&packed, text.data, text.len, "t.json",
                              TDM__JSON_ALLOW_NAN | TDM__JSON_PACK_NUMBERS,
                              &err),
              TDM_OK);
    CHECK_INT(tdm__json_parse(&built, text.data, text.len, "t.json",
                              TDM__JSON_ALLOW_NAN, &err),
              TDM_OK);
    const tdm__json *a = tdm__json_get(packed.root, "a");
    const tdm__json *b = tdm__json_get(built.root, "a");
    CHECK_INT(a->packed, !mixed);
    CHECK_INT(b->packed, 0);
    packed_arrays += a->packed;
    CHECK_INT(a->count, b->count);
    tdm__buf got = {0}, want = {0};
    convert_all(&packed, a, &got);
    convert_all(&built, b, &want);
    if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0)
      fprintf(stderr, "round %d differs: %.*s\n", round, (int)text.len,
              text.data);
    CHECK(got.len == want.len && memcmp(got.data, want.data, got.len) == 0);
    tdm__buf_free(&got);
    tdm__buf_free(&want);
    tdm__json_doc_free(&packed);
    tdm__json_doc_free(&built);
    tdm__buf_free(&text);
  }
  CHECK(packed_arrays > 300);
  /* Broken arrays: the same message, line and column either way. */
  static const char *const broken[] = {
      "[1, 2,]", "[1 2]", "[1.]", "[-]", "[1,", "[01]", "[1e]", "[1, -x]",
      "[\n1,\n2\n", "[1, 2, 3", "[NaN, Infinity, -Inf]", "[1, [2]]x"};
  for (size_t i = 0; i < sizeof broken / sizeof *broken; i++) {
    tdm__json_doc doc;
    tdm_error packed_err, built_err;
    int rc1 = tdm__json_parse(&doc, broken[i], strlen(broken[i]), "t.json",
                              TDM__JSON_ALLOW_NAN | TDM__JSON_PACK_NUMBERS,
                              &packed_err);
    if (rc1 == TDM_OK) tdm__json_doc_free(&doc);
    int rc2 = tdm__json_parse(&doc, broken[i], strlen(broken[i]), "t.json",
                              TDM__JSON_ALLOW_NAN, &built_err);
    if (rc2 == TDM_OK) tdm__json_doc_free(&doc);
    CHECK_INT(rc1, TDM_EPARSE);
    CHECK_INT(rc2, TDM_EPARSE);
    CHECK_STR(packed_err.message, built_err.message);
  }
  return 0;
}

TEST(json_out_of_memory) {
  const char *text = "{\"a\": [1, 2, {\"b\": \"c\"}], \"d\": [[[]]]}";
  for (long countdown = 0;; countdown++) {
    tdm__json_doc doc;
    tdm_error err;
    tdm__alloc_fail_after(countdown);
    int rc = parse(&doc, text, 0, &err);
    tdm__alloc_fail_after(-1);
    if (rc == TDM_OK) {
      tdm__json_doc_free(&doc);
      CHECK(countdown > 0);
      break;
    }
    CHECK_INT(rc, TDM_ENOMEM);
    CHECK_CONTAINS(err.message, "out of memory");
  }
  return 0;
}

TEST(atomic_file_commit_and_abort) {
  char dir[] = "/tmp/tandem-test-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/out.csv", dir);
  tdm__atomic_file f;
  tdm_error err;
  CHECK_INT(tdm__atomic_open(&f, path, &err), TDM_OK);
  fputs("partial", f.fp);
  struct stat st;
  CHECK(stat(path, &st) != 0); /* nothing at the destination yet */
  tdm__atomic_abort(&f);
  CHECK(stat(path, &st) != 0);
  CHECK_INT(tdm__atomic_open(&f, path, &err), TDM_OK);
  fputs("complete\n", f.fp);
  CHECK_INT(tdm__atomic_commit(&f, &err), TDM_OK);
  char *data;
  size_t size;
  CHECK_INT(tdm__read_file(path, &data, &size, &err), TDM_OK);
  CHECK_STR(data, "complete\n");
  tdm__free(data);
  unlink(path);
  /* Only the output was in the directory: no temporary files are left. */
  CHECK(rmdir(dir) == 0);
  snprintf(path, sizeof path, "%s/missing-dir/out.csv", dir);
  CHECK_INT(tdm__atomic_open(&f, path, &err), TDM_EIO);
  CHECK_CONTAINS(err.message, "missing-dir/out.csv: cannot create output");
  return 0;
}

/* The registry of temporary paths that a signal removes has no limit and
 * takes registrations from several threads at once: two threads each
 * track 400 real files (the old table held 256 and silently dropped the
 * rest, which a signal then left behind), and one abort removes every
 * one of them. An untracked path is left alone. */
enum { TRACK_FILES = 400 };
typedef struct track_job {
  const char *dir;
  int thread;
  char paths[TRACK_FILES][64];
  int failed;
} track_job;

static void *track_files(void *arg) {
  track_job *job = arg;
  for (int i = 0; i < TRACK_FILES; i++) {
    snprintf(job->paths[i], sizeof job->paths[i], "%s/t%d.%d.tmp", job->dir,
             job->thread, i);
    FILE *fp = fopen(job->paths[i], "w");
    if (fp == NULL || fclose(fp) != 0 ||
        tdm__tmp_track(job->paths[i]) != TDM_OK)
      job->failed = 1;
  }
  return NULL;
}

TEST(atomic_tmp_registry_has_no_limit) {
  char dir[] = "/tmp/tandem-test-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  static track_job jobs[2];
  pthread_t threads[2];
  for (int t = 0; t < 2; t++) {
    jobs[t] = (track_job){.dir = dir, .thread = t};
    CHECK(pthread_create(&threads[t], NULL, track_files, &jobs[t]) == 0);
  }
  for (int t = 0; t < 2; t++) CHECK(pthread_join(threads[t], NULL) == 0);
  CHECK(!jobs[0].failed && !jobs[1].failed);
  char kept[64];
  snprintf(kept, sizeof kept, "%s/kept", dir);
  FILE *fp = fopen(kept, "w");
  CHECK(fp != NULL && fclose(fp) == 0);
  CHECK_INT(tdm__tmp_track(kept), TDM_OK);
  tdm__tmp_untrack(kept);
  tdm__atomic_abort_all_from_signal();
  struct stat st;
  int left = 0;
  for (int t = 0; t < 2; t++)
    for (int i = 0; i < TRACK_FILES; i++) {
      left += stat(jobs[t].paths[i], &st) == 0;
      tdm__tmp_untrack(jobs[t].paths[i]);
    }
  CHECK_INT(left, 0);
  CHECK(stat(kept, &st) == 0);
  unlink(kept);
  CHECK(rmdir(dir) == 0);
  return 0;
}

/* JSON text is UTF-8 (RFC 8259): the parser refuses invalid sequences
 * in strings, and the writer never emits them (found by the hardening
 * test: an id with invalid UTF-8 was echoed into an invalid answer). */
TEST(json_utf8_in_and_out) {
  static const struct {
    const char *text;
    int ok;
  } cases[] = {
      {"\"caf\xc3\xa9\"", 1},         /* é */
      {"\"\xe2\x82\xac\"", 1},        /* € */
      {"\"\xf0\x9f\x98\x80\"", 1},    /* U+1F600 */
      {"\"\xc3\"", 0},                /* cut short */
      {"\"\xc0\xaf\"", 0},            /* overlong */
      {"\"\xed\xa0\x80\"", 0},        /* a surrogate */
      {"\"\xf4\x90\x80\x80\"", 0},    /* past U+10FFFF */
      {"\"\xff\"", 0},
      {"\"a\x80z\"", 0},              /* a lone continuation byte */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tdm__json_doc doc;
    tdm_error err;
    int rc = tdm__json_parse(&doc, cases[i].text, strlen(cases[i].text), "t",
                             0, &err);
    if (cases[i].ok) {
      CHECK_INT(rc, TDM_OK);
      tdm__json_doc_free(&doc);
    } else {
      CHECK_INT(rc, TDM_EPARSE);
      CHECK_CONTAINS(err.message, "invalid UTF-8");
    }
  }
  /* Writing: valid sequences stay, each invalid byte becomes U+FFFD. */
  tdm__buf b = {0};
  const char raw[] = "ok\xc3\xa9\xff\xc3";
  CHECK_INT(tdm__json_append_string_n(&b, raw, sizeof raw - 1), TDM_OK);
  CHECK(b.len == strlen("\"ok\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\"") &&
        memcmp(b.data, "\"ok\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\"", b.len) == 0);
  tdm__json_doc doc;
  tdm_error err;
  CHECK_INT(tdm__json_parse(&doc, b.data, b.len, "t", 0, &err), TDM_OK);
  tdm__json_doc_free(&doc);
  tdm__buf_free(&b);
  return 0;
}

/* tdm__buf_append_uint against printf's "%llu" (the reference): the edges
 * (0, each power of ten and the one below it, 2^64 - 1) and seeded random
 * values of every magnitude, appended one after another to one buffer. */
TEST(buf_append_uint_matches_printf) {
  tdm__buf fast = {0}, reference = {0};
  uint64_t edges[64] = {0, 1, 9, UINT64_MAX, UINT64_MAX - 1};
  size_t n = 5;
  for (uint64_t p = 10; n + 2 <= 64 && p <= UINT64_MAX / 10; p *= 10) {
    edges[n++] = p - 1;
    edges[n++] = p;
  }
  uint64_t state = 0x9E3779B97F4A7C15u; /* a fixed seed: splitmix64 */
  for (size_t i = 0; i < n + 20000; i++) {
    uint64_t v;
    if (i < n) {
      v = edges[i];
    } else {
      uint64_t z = (state += 0x9E3779B97F4A7C15u);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
      z ^= z >> 31;
      v = z >> (z % 64); /* every magnitude, not only 20-digit values */
    }
    CHECK_INT(tdm__buf_append_uint(&fast, v), TDM_OK);
    CHECK_INT(tdm__buf_printf(&reference, "%llu", (unsigned long long)v),
              TDM_OK);
    CHECK_INT(tdm__buf_append(&fast, ",", 1), TDM_OK);
    CHECK_INT(tdm__buf_append(&reference, ",", 1), TDM_OK);
  }
  CHECK_INT(fast.len, reference.len);
  CHECK(memcmp(fast.data, reference.data, fast.len) == 0);
  CHECK_INT(fast.data[fast.len], '\0');
  tdm__buf_free(&fast);
  tdm__buf_free(&reference);
  return 0;
}
