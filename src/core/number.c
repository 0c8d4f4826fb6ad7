/*
 * number.c - decimal text to double, correctly rounded, fast.
 *
 * strtod is correct but slow (it handles every case with big numbers),
 * and a batch run converts billions of cells. The common case is a plain
 * decimal with at most 19 significant digits and a small exponent, and for
 * it there are exact shortcuts:
 *
 *  1. Clinger's: when the digits w fit 53 bits and |e| <= 22, both w and
 *     10^|e| are exact doubles, so w * 10^e or w / 10^-e is one correctly
 *     rounded operation.
 *  2. With x87's 64-bit long double: w (up to 19 digits) and 10^|e| for
 *     |e| <= 27 are exact, so the long double result L is w * 10^e
 *     correctly rounded to 64 bits. Rounding L to double gives the
 *     correctly rounded double unless L lies exactly halfway between two
 *     doubles (no other 64-bit value can sit between the true value and a
 *     double's halfway point without being nearer than L). That case, and
 *     results outside the normal double range, go to strtod.
 *
 * Everything else (more digits, large exponents, hex, inf, nan) goes to
 * strtod, which also decides what is not a number at all.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static const double exact_powers[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#if defined(__x86_64__) && LDBL_MANT_DIG == 64
#define HAVE_X87 1
static const long double exact_powers_long[28] = {
    1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,
    1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L,
    1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};

/* Converts w * 10^e through long double; 0 when the shortcut cannot
 * promise the correctly rounded double. */
static int via_long_double(uint64_t w, int e, double *out) {
  if (e < -27 || e > 27) return 0;
  long double l = e >= 0 ? (long double)w * exact_powers_long[e]
                         : (long double)w / exact_powers_long[-e];
  if (!(l >= (long double)DBL_MIN && l <= (long double)DBL_MAX)) return 0;
  uint64_t mantissa;
  memcpy(&mantissa, &l, sizeof mantissa); /* x87: the 64 mantissa bits */
  if ((mantissa & 0x7ff) == 0x400) return 0; /* halfway between doubles */
  *out = (double)l;
  return 1;
}
#endif

static int slow_path(const char *text, size_t len, double *out) {
  /* strtod also reads hex floats, "nan(...)" and leading space: only
   * decimal forms (and inf, infinity) are numbers here. */
  for (size_t i = 0; i < len; i++) {
    char ch = text[i];
    if (ch == 'x' || ch == 'X' || ch == 'p' || ch == 'P' || ch == '(' ||
        ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
      return -1;
  }
  /* strtod needs a terminated string. A decimal may have any number of
   * digits (a 202-digit amount is still a number, rounded correctly);
   * the request and file size limits bound it. */
  char small[128];
  char *buf = len < sizeof small ? small : tdm__malloc(len + 1);
  if (buf == NULL) return -1;
  memcpy(buf, text, len);
  buf[len] = '\0';
  char *end;
  double value = strtod(buf, &end);
  int whole = len > 0 && end == buf + len;
  if (buf != small) tdm__free(buf);
  if (!whole) return -1;
  *out = value;
  return 0;
}

int tdm__parse_double(const char *text, size_t len, double *out) {
  size_t i = 0;
  int negative = 0;
  if (i < len && (text[i] == '-' || text[i] == '+')) negative = text[i++] == '-';
  uint64_t w = 0;
  int digits = 0, seen_digit = 0, exponent = 0;
  while (i < len && text[i] == '0') {
    i++;
    seen_digit = 1;
  }
  while (i < len && text[i] >= '0' && text[i] <= '9') {
    if (digits == 19) return slow_path(text, len, out);
    w = w * 10 + (uint64_t)(text[i++] - '0');
    digits++;
    seen_digit = 1;
  }
  if (i < len && text[i] == '.') {
    i++;
    if (digits == 0)
      while (i < len && text[i] == '0') {
        i++;
        exponent--;
        seen_digit = 1;
      }
    while (i < len && text[i] >= '0' && text[i] <= '9') {
      if (digits == 19) return slow_path(text, len, out);
      w = w * 10 + (uint64_t)(text[i++] - '0');
      digits++;
      exponent--;
      seen_digit = 1;
    }
  }
  if (!seen_digit) return slow_path(text, len, out);
  if (i < len && (text[i] == 'e' || text[i] == 'E')) {
    i++;
    int exp_negative = 0, exp_digits = 0, e = 0;
    if (i < len && (text[i] == '-' || text[i] == '+'))
      exp_negative = text[i++] == '-';
    while (i < len && text[i] >= '0' && text[i] <= '9' && exp_digits < 5) {
      e = e * 10 + (text[i++] - '0');
      exp_digits++;
    }
    if (exp_digits == 0 || exp_digits == 5) return slow_path(text, len, out);
    exponent += exp_negative ? -e : e;
  }
  if (i != len) return slow_path(text, len, out);
  double value;
  if (w == 0) {
    value = 0.0;
  } else if (w <= ((uint64_t)1 << 53) && exponent >= -22 && exponent <= 22) {
    value = exponent >= 0 ? (double)w * exact_powers[exponent]
                          : (double)w / exact_powers[-exponent];
  } else {
#ifdef HAVE_X87
    if (!via_long_double(w, exponent, &value))
#endif
      return slow_path(text, len, out);
  }
  *out = negative ? -value : value;
  return 0;
}
