/*
 * test_number.c - tdm__parse_double against glibc's strtod (correctly
 * rounded) on known hard cases and millions of random decimals shaped to
 * hit every path: Clinger's shortcut, the long double shortcut and its
 * halfway check, and the fallback.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../src/core/core.h"
#include "test.h"

static int same_as_strtod(const char *text) {
  double ours = 12345.0, theirs;
  char *end;
  theirs = strtod(text, &end);
  int rc = tdm__parse_double(text, strlen(text), &ours);
  if (*end != '\0' || end == text) {
    if (rc == 0) {
      fprintf(stderr, "\"%s\" is not a number, parsed as %.17g\n", text, ours);
      return 0;
    }
    return 1;
  }
  if (rc != 0 || memcmp(&ours, &theirs, sizeof ours) != 0) {
    fprintf(stderr, "\"%s\": %.17g (rc %d), strtod %.17g\n", text, ours, rc,
            theirs);
    return 0;
  }
  return 1;
}

TEST(number_hard_cases) {
  static const char *cases[] = {
      "0",
      "-0",
      "+0",
      "0.0",
      "00.000",
      ".5",
      "5.",
      "-.5e1",
      "1e0",
      "0.1",
      "0.2",
      "0.3",
      "3.141592653589793",
      "2.718281828459045",
      "9007199254740992",
      "9007199254740993",
      "9007199254740995",
      "18446744073709551615",
      "18446744073709551616",
      "1e22",
      "1e23",
      "1.7976931348623157e308",
      "1.7976931348623159e308",
      "2e308",
      "2.2250738585072014e-308",
      "2.2250738585072011e-308",
      "4.9e-324",
      "2.4703282292062327e-324",
      "1e-400",
      "123456789012345678e-5",
      "0.30258771777153015",
      "-1.0000000000000002",
      "1.00000000000000011102230246251565404236316680908203125",
      "7.0064923216240854e-46",
      "3.4028235677973366e38",
      "1e-5",
      "12e",
      "1e+",
      "e5",
      "-",
      "+",
      ".",
      "",
      "1.2.3",
      "1e5.5",
      "inf",
      "-infinity",
      "nan",
      "1_000",
      "１",
      "1e99999",
      "1e-99999",
      "0.000000000000000000000000000001",
      "100000000000000000000000000000",
      "5e-324",
      "8.988465674311579e307",
      "6.103515625e-05",
      "0.500000000000000166533453693773481063544750213623046875"};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    CHECK(same_as_strtod(cases[i]));
  /* strtod reads these; a data file's cell should not. */
  static const char *rejected[] = {"0x10", "0x1p3",  " 1",
                                   "1 ",   "nan(1)", "\t2"};
  for (size_t i = 0; i < sizeof rejected / sizeof *rejected; i++) {
    double v;
    CHECK(tdm__parse_double(rejected[i], strlen(rejected[i]), &v) == -1);
  }
  return 0;
}

TEST(number_random_against_strtod) {
  uint64_t s = 88172645463325252ull;
  char text[64];
  for (int n = 0; n < 2000000; n++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    uint64_t r = s;
    size_t len = 0;
    if (r & 1) text[len++] = '-';
    r >>= 1;
    int digits = 1 + (int)(r % 21);
    r /= 21;
    int point = (int)(r % (unsigned)(digits + 2)) - 1; /* -1: none */
    r /= (unsigned)(digits + 2);
    uint64_t d = s * 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < digits; i++) {
      if (i == point) text[len++] = '.';
      text[len++] = (char)('0' + (d >> 60) % 10);
      d = d * 6364136223846793005ull + 1442695040888963407ull;
    }
    if (r % 3 == 0) {
      int e = (int)((d >> 33) % 700) - 350;
      if (r % 2 == 0) e = (int)((d >> 33) % 60) - 30;
      len += (size_t)snprintf(text + len, 16, "e%d", e);
    }
    text[len] = '\0';
    if (!same_as_strtod(text)) return 1;
  }
  return 0;
}

/* A 64-bit xorshift step: the tests' inputs are the same on every run. */
static uint64_t next_random(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s * 0x2545F4914F6CDD1Dull;
}

/* A random finite double, its bits uniform (every exponent equally
 * likely, subnormals included). */
static double random_double(uint64_t *s) {
  double d;
  do {
    uint64_t bits = next_random(s);
    memcpy(&d, &bits, sizeof d);
  } while (!isfinite(d));
  return d;
}

/* Changes the last digit of the mantissa in text (before any 'e') by
 * delta, when it can without a carry. */
static void nudge_last_digit(char *text, int delta) {
  char *e = strchr(text, 'e');
  char *last = (e ? e : text + strlen(text)) - 1;
  while (last > text && (*last < '0' || *last > '9')) last--;
  int digit = *last - '0' + delta;
  if (digit >= 0 && digit <= 9) *last = (char)('0' + digit);
}

/* Exactly what the Eisel-Lemire step must get right or hand on: random
 * doubles written with 17 digits and their shortest form, the exact
 * midpoint between a double and its neighbour written out in full (up
 * to 770 digits) and cut to 17 to 20 digits, each also one unit above
 * and below in the last digit; subnormals and both ends of the range
 * come with the uniform bits. */
TEST(number_near_halfway_against_strtod) {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  char text[1024];
  for (int n = 0; n < 400000; n++) {
    double d = random_double(&s);
    snprintf(text, sizeof text, "%.17g", d);
    if (!same_as_strtod(text)) return 1;
    for (int digits = 1; digits <= 17; digits++) { /* the shortest form */
      snprintf(text, sizeof text, "%.*g", digits, d);
      if (strtod(text, NULL) == d) break;
    }
    if (!same_as_strtod(text)) return 1;
    /* The midpoint between |d| and the next double up: exact in a long
     * double only sometimes, so it is written from the two doubles'
     * exact decimal expansions by glibc (which prints them exactly). */
    double a = fabs(d), b = nextafter(a, INFINITY);
    if (!isfinite(b)) continue;
    long double mid = ((long double)a + (long double)b) / 2;
    if ((double)mid == a || (double)mid == b) {
      /* The long double holds the exact midpoint (one more bit than a
       * double): print all of its digits. */
      int len = snprintf(text, sizeof text, "%.*Le", 770, mid);
      if (len <= 0 || (size_t)len >= sizeof text) continue;
      char *e = strchr(text, 'e');
      char *end = e - 1; /* drop trailing zeros of the mantissa */
      while (*end == '0') end--;
      memmove(end + 1, e, strlen(e) + 1);
      if (!same_as_strtod(text)) return 1;
      char cut[64];
      int digits = 17 + (int)(next_random(&s) % 4);
      snprintf(cut, sizeof cut, "%.*Le", digits - 1, mid);
      if (!same_as_strtod(cut)) return 1;
      nudge_last_digit(cut, 1);
      if (!same_as_strtod(cut)) return 1;
      nudge_last_digit(cut, -2);
      if (!same_as_strtod(cut)) return 1;
    }
  }
  return 0;
}

/* Inputs at the edges: long mantissas (30 to 800 digits) with large
 * exponents, leading zeros, signs, overflow to infinity, underflow to
 * zero, and the largest and smallest doubles. */
TEST(number_edges_against_strtod) {
  uint64_t s = 0xD1B54A32D192ED03ull;
  char text[1024];
  for (int n = 0; n < 200000; n++) {
    uint64_t r = next_random(&s);
    size_t len = 0;
    if (r & 1) text[len++] = (r & 2) ? '-' : '+';
    int zeros = (int)(r >> 2) % 4;
    for (int i = 0; i < zeros; i++) text[len++] = '0';
    int digits = (r >> 8) % 2 ? 30 + (int)((r >> 9) % 771)
                              : 1 + (int)((r >> 9) % 25);
    int point = (int)((r >> 20) % (uint64_t)(digits + 1));
    for (int i = 0; i < digits; i++) {
      if (i == point && (r >> 30) % 2) text[len++] = '.';
      text[len++] = (char)('0' + next_random(&s) % 10);
    }
    int e = (int)((r >> 32) % 1400) - 700;
    if ((r >> 44) % 3) len += (size_t)snprintf(text + len, 16, "e%d", e);
    text[len] = '\0';
    if (!same_as_strtod(text)) return 1;
  }
  static const char *cases[] = {
      "1.7976931348623157e308",  "1.7976931348623158e308",
      "1.7976931348623159e308",  "179769313486231580793728971405301e276",
      "2.2250738585072014e-308", "2.2250738585072013e-308",
      "2.225073858507201e-308",  "4.9406564584124654e-324",
      "2.4703282292062328e-324", "2.4703282292062327e-324",
      "1e-400",                  "1e400",
      "-1e400",                  "0.0000000000000000000000000000001e-300",
      "9999999999999999999e-343", "1000000000000000000e289",
      "1e-342",                  "1e308",
      "1e-22",                   "9007199254740993e-22",
      "18446744073709551615e-10", "1234567890123456789e100"};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    CHECK(same_as_strtod(cases[i]));
  return 0;
}
