/*
 * number.c - decimal text to double, correctly rounded, fast.
 *
 * strtod is correct but slow (it handles every case with big numbers),
 * and a batch run converts billions of cells. The common case is a plain
 * decimal with at most 19 significant digits, w * 10^q with w < 2^64, and
 * for it there are exact shortcuts, tried in order:
 *
 *  1. Clinger's: when w fits 53 bits and |q| <= 22, both w and 10^|q|
 *     are exact doubles, so w * 10^q or w / 10^-q is one correctly
 *     rounded operation.
 *  2. Eisel and Lemire's ("Number Parsing at a Gigabyte per Second",
 *     Lemire 2021): w times a 128-bit truncation of 5^q (a generated
 *     table, powers_of_five.h) gives the leading bits of w * 10^q with an
 *     error of less than two units of the 128th bit, so the rounding to
 *     53 bits is decided unless the product lies within that error of a
 *     halfway point between two doubles. Those (exact ties among them),
 *     subnormal and overflowing results go to strtod.
 *
 * Everything else (more digits, exponents beyond the table, hex, inf,
 * nan) goes to strtod, which also decides what is not a number at all.
 *
 * Two readers share the digit loop and the conversion: tdm__parse_double
 * takes a whole field (CSV cells, JSON Lines values), and
 * tdm__parse_json_number reads a JSON number where it starts in a longer
 * text and says where it ends, so a request's tensor data is read in one
 * pass.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static const double exact_powers[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#include "powers_of_five.h"

/* The 128-bit product of two 64-bit numbers, as its high and low words. */
static uint64_t multiply_64(uint64_t a, uint64_t b, uint64_t *low) {
  unsigned __int128 product = (unsigned __int128)a * b;
  *low = (uint64_t)product;
  return (uint64_t)(product >> 64);
}

/*
 * w * 10^q (w > 0) correctly rounded to a normal double, or 0 when this
 * step cannot decide (the caller then asks strtod).
 *
 * With w' = w << lz in [2^63, 2^64) and 5^q in [m * 2^e, (m + 1) * 2^e)
 * (the table), the value is w' * 5^q * 2^(q - lz), and the 192-bit
 * product P = w' * m is below the exact w' * 5^q by less than w' < 2^64:
 * the exact value's top 128 bits are (high, middle) or at most two more.
 * The leading 1 of P is bit 191 or 190; the 54 bits from it are the
 * double's 53 and the rounding bit, and the bits below them decide the
 * rounding unless they are within 2 units of exactly halfway.
 */
static int eisel_lemire(uint64_t w, int q, double *out) {
  if (q < TDM__POWER_OF_FIVE_MIN || q > TDM__POWER_OF_FIVE_MAX) return 0;
  int lz = __builtin_clzll(w);
  w <<= lz;
  uint64_t a0, b0, b1;
  uint64_t a1 =
      multiply_64(w, powers_of_five[q - TDM__POWER_OF_FIVE_MIN].high, &a0);
  b1 = multiply_64(w, powers_of_five[q - TDM__POWER_OF_FIVE_MIN].low, &b0);
  uint64_t middle = a0 + b1;
  uint64_t high = a1 + (middle < a0);
  int upper = (int)(high >> 63);
  int shift = 9 + upper;
  uint64_t mantissa = high >> shift; /* 54 bits: 53 and the rounding bit */
  uint64_t below = high & (((uint64_t)1 << shift) - 1);
  /* Exactly halfway as computed, or one unit below it: the exact value
   * may be on either side of (or on) the tie. */
  if ((mantissa & 1) && below == 0 && middle == 0) return 0;
  if (!(mantissa & 1) && below == ((uint64_t)1 << shift) - 1 &&
      middle == UINT64_MAX)
    return 0;
  int biased = shift + 129 +
               powers_of_five[q - TDM__POWER_OF_FIVE_MIN].exponent + q - lz +
               1075;
  if (biased < 1) return 0; /* subnormal: rounded at another bit */
  mantissa = (mantissa + (mantissa & 1)) >> 1;
  if (mantissa == (uint64_t)1 << 53) { /* rounded up to the next power */
    mantissa >>= 1;
    biased++;
  }
  if (biased > 2046) return 0; /* overflow: strtod says inf */
  uint64_t bits =
      ((uint64_t)biased << 52) | (mantissa & (((uint64_t)1 << 52) - 1));
  memcpy(out, &bits, sizeof bits);
  return 1;
}

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

/*
 * Eight digits at once (SWAR, within one 64-bit word): whether the eight
 * bytes at text are all ASCII digits, and their value. A byte is a digit
 * when its high nibble is 3 and adding 6 keeps it so.
 */
static inline int eight_digits_word(uint64_t word, uint64_t *value) {
  if (((word & 0xF0F0F0F0F0F0F0F0u) |
       (((word + 0x0606060606060606u) & 0xF0F0F0F0F0F0F0F0u) >> 4)) !=
      0x3333333333333333u)
    return 0;
  /* The first digit is the lowest byte (little endian): each step joins
   * neighbouring lanes, the first as the higher part, into lanes twice as
   * wide (2 digits in 16 bits, 4 in 32, 8 in 64), none overflowing. */
  word -= 0x3030303030303030u;
  word = (word * 10 + (word >> 8)) & 0x00FF00FF00FF00FFu;
  word = (word * 100 + (word >> 16)) & 0x0000FFFF0000FFFFu;
  word = (word * 10000 + (word >> 32)) & 0xFFFFFFFFu;
  *value = word;
  return 1;
}

static inline int eight_digits(const char *text, uint64_t *value) {
  uint64_t word;
  memcpy(&word, text, sizeof word);
  return eight_digits_word(word, value);
}

/* 10^k for the tail of a digit run, k < 8. */
static const uint64_t tail_scale[8] = {1,     10,     100,     1000,
                                       10000, 100000, 1000000, 10000000};

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/*
 * Reads the run of digits from text[i] (n bytes in all) into *w, eight at
 * a time where it can, counting them in *digits (the significant digits
 * so far). Returns the offset just past the run, or SIZE_MAX when the
 * significant digits pass 19 and w can no longer hold them.
 */
static inline size_t digit_run(const char *text, size_t i, size_t n,
                               uint64_t *w, int *digits) {
  uint64_t eight;
  while (*digits <= 11 && i + 8 <= n && eight_digits(text + i, &eight)) {
    *w = *w * 100000000 + eight;
    *digits += 8;
    i += 8;
  }
  /* The last one to seven digits of a text in one word as well: the
   * eight bytes that end it, those before the run made '0's, which do
   * not change the value. This spares the byte loop below, and its
   * mispredicted exit, on the usual field (a long fraction). */
  size_t left = n - i;
  if (left > 0 && left < 8 && n >= 8 && *digits + (int)left <= 19) {
    uint64_t word, value;
    memcpy(&word, text + n - 8, sizeof word);
    uint64_t keep = ~(uint64_t)0 << (8 * (8 - left));
    word = (word & keep) | (0x3030303030303030u & ~keep);
    if (eight_digits_word(word, &value)) {
      *w = *w * tail_scale[left] + value;
      *digits += (int)left;
      return n;
    }
  }
  while (i < n && is_digit(text[i])) {
    if (*digits == 19) return SIZE_MAX;
    *w = *w * 10 + (uint64_t)(text[i++] - '0');
    (*digits)++;
  }
  return i;
}

/* Reads the exponent's digits from text[i] into *e: the offset past
 * them, or 0 when there are none or more than four (strtod's case). */
static size_t exponent_digits(const char *text, size_t i, size_t n, int *e) {
  size_t first = i;
  *e = 0;
  while (i < n && is_digit(text[i]) && i - first < 5)
    *e = *e * 10 + (text[i++] - '0');
  size_t count = i - first;
  return count == 0 || count == 5 ? 0 : i;
}

/* w * 10^exponent, negated when negative, correctly rounded: 1, or 0
 * when only strtod can say (see the top of the file). */
static int convert(uint64_t w, int exponent, int negative, double *out) {
  double value;
  if (w == 0) {
    value = 0.0;
  } else if (w <= ((uint64_t)1 << 53) && exponent >= -22 && exponent <= 22) {
    value = exponent >= 0 ? (double)w * exact_powers[exponent]
                          : (double)w / exact_powers[-exponent];
  } else if (!eisel_lemire(w, exponent, &value)) {
    return 0;
  }
  *out = negative ? -value : value;
  return 1;
}

int tdm__parse_double(const char *text, size_t len, double *out) {
  size_t i = 0;
  int negative = 0;
  if (i < len && (text[i] == '-' || text[i] == '+'))
    negative = text[i++] == '-';
  uint64_t w = 0;
  int digits = 0, seen_digit = 0, exponent = 0;
  while (i < len && text[i] == '0') {
    i++;
    seen_digit = 1;
  }
  size_t at = digit_run(text, i, len, &w, &digits);
  if (at == SIZE_MAX) return slow_path(text, len, out);
  seen_digit |= at > i;
  i = at;
  if (i < len && text[i] == '.') {
    i++;
    if (digits == 0)
      while (i < len && text[i] == '0') {
        i++;
        exponent--;
        seen_digit = 1;
      }
    int before = digits;
    at = digit_run(text, i, len, &w, &digits);
    if (at == SIZE_MAX) return slow_path(text, len, out);
    seen_digit |= at > i;
    exponent -= digits - before;
    i = at;
  }
  if (!seen_digit) return slow_path(text, len, out);
  if (i < len && (text[i] == 'e' || text[i] == 'E')) {
    i++;
    int exp_negative = 0, e;
    if (i < len && (text[i] == '-' || text[i] == '+'))
      exp_negative = text[i++] == '-';
    i = exponent_digits(text, i, len, &e);
    if (i == 0) return slow_path(text, len, out);
    exponent += exp_negative ? -e : e;
  }
  if (i != len || !convert(w, exponent, negative, out))
    return slow_path(text, len, out);
  return 0;
}

/* The length of the JSON number (RFC 8259's grammar, strictly) at text,
 * or 0 when there is none: the slow way, for what the fast one hands on. */
static size_t json_number_length(const char *text, size_t n) {
  size_t k = 0;
  if (k < n && text[k] == '-') k++;
  if (k < n && text[k] == '0') {
    k++;
  } else if (k < n && text[k] >= '1' && text[k] <= '9') {
    while (k < n && is_digit(text[k])) k++;
  } else {
    return 0;
  }
  if (k < n && text[k] == '.') {
    size_t first = ++k;
    while (k < n && is_digit(text[k])) k++;
    if (k == first) return 0;
  }
  if (k < n && (text[k] == 'e' || text[k] == 'E')) {
    k++;
    if (k < n && (text[k] == '+' || text[k] == '-')) k++;
    size_t first = k;
    while (k < n && is_digit(text[k])) k++;
    if (k == first) return 0;
  }
  return k;
}

/* A JSON number too long for the fast way: found with the grammar, then
 * read by strtod. */
static size_t slow_json_number(const char *text, size_t n, double *out) {
  size_t k = json_number_length(text, n);
  return k > 0 && slow_path(text, k, out) == 0 ? k : 0;
}

size_t tdm__parse_json_number(const char *text, size_t n, double *out) {
  size_t i = 0;
  int negative = 0, digits = 0, exponent = 0;
  uint64_t w = 0;
  if (i < n && text[i] == '-') {
    negative = 1;
    i++;
  }
  if (i < n && text[i] == '0') {
    i++; /* JSON allows no other leading zero */
  } else if (i < n && text[i] >= '1' && text[i] <= '9') {
    i = digit_run(text, i, n, &w, &digits);
    if (i == SIZE_MAX) return slow_json_number(text, n, out);
  } else {
    return 0;
  }
  if (i < n && text[i] == '.') {
    size_t first = ++i;
    if (digits == 0)
      while (i < n && text[i] == '0') {
        i++;
        exponent--;
      }
    int before = digits;
    i = digit_run(text, i, n, &w, &digits);
    if (i == SIZE_MAX) return slow_json_number(text, n, out);
    if (i == first) return 0;
    exponent -= digits - before;
  }
  if (i < n && (text[i] == 'e' || text[i] == 'E')) {
    i++;
    int exp_negative = 0, e;
    if (i < n && (text[i] == '-' || text[i] == '+'))
      exp_negative = text[i++] == '-';
    if (i >= n || !is_digit(text[i])) return 0;
    i = exponent_digits(text, i, n, &e);
    if (i == 0) return slow_json_number(text, n, out);
    exponent += exp_negative ? -e : e;
  }
  if (!convert(w, exponent, negative, out))
    return slow_path(text, i, out) == 0 ? i : 0;
  return i;
}
