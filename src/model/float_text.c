/*
 * float_text.c - float32 scores as text without printf and without
 * reading the text back. tdm__float_shortest writes the text of
 * "%.Ng" with the smallest N from 6 to 9 that reads back (strtof) to the
 * float, the rule docs/evaluator.md states for float32 scores. It decides
 * both in exact integer arithmetic, in the manner of Ryu and Schubfach:
 * the float's value and the ends of the interval of reals that round to
 * it are scaled by a power of ten into fractions with a common
 * denominator (a power of two or of five), the N-digit rounding of the
 * value is read off the scaled value's integer part, and "reads back" is
 * whether that rounding lies inside the interval. No step is approximate,
 * so no answer needs checking or a fallback; the unit test compares the
 * result with snprintf and strtof on every power of two, the subnormals'
 * edges and millions of random floats.
 */
#include "model.h"

#include <stdint.h>
#include <string.h>

typedef unsigned __int128 u128;

/* 5^i for i in [0, 55] (high and low 64 bits), enough for every float32:
 * the smallest subnormal, 1.4e-45, is scaled by at most 10^55. */
static const uint64_t powers_of_five[56][2] = {
    {0x0000000000000000u, 0x0000000000000001u}, /* 5^0 */
    {0x0000000000000000u, 0x0000000000000005u}, /* 5^1 */
    {0x0000000000000000u, 0x0000000000000019u}, /* 5^2 */
    {0x0000000000000000u, 0x000000000000007du}, /* 5^3 */
    {0x0000000000000000u, 0x0000000000000271u}, /* 5^4 */
    {0x0000000000000000u, 0x0000000000000c35u}, /* 5^5 */
    {0x0000000000000000u, 0x0000000000003d09u}, /* 5^6 */
    {0x0000000000000000u, 0x000000000001312du}, /* 5^7 */
    {0x0000000000000000u, 0x000000000005f5e1u}, /* 5^8 */
    {0x0000000000000000u, 0x00000000001dcd65u}, /* 5^9 */
    {0x0000000000000000u, 0x00000000009502f9u}, /* 5^10 */
    {0x0000000000000000u, 0x0000000002e90eddu}, /* 5^11 */
    {0x0000000000000000u, 0x000000000e8d4a51u}, /* 5^12 */
    {0x0000000000000000u, 0x0000000048c27395u}, /* 5^13 */
    {0x0000000000000000u, 0x000000016bcc41e9u}, /* 5^14 */
    {0x0000000000000000u, 0x000000071afd498du}, /* 5^15 */
    {0x0000000000000000u, 0x0000002386f26fc1u}, /* 5^16 */
    {0x0000000000000000u, 0x000000b1a2bc2ec5u}, /* 5^17 */
    {0x0000000000000000u, 0x000003782dace9d9u}, /* 5^18 */
    {0x0000000000000000u, 0x00001158e460913du}, /* 5^19 */
    {0x0000000000000000u, 0x000056bc75e2d631u}, /* 5^20 */
    {0x0000000000000000u, 0x0001b1ae4d6e2ef5u}, /* 5^21 */
    {0x0000000000000000u, 0x000878678326eac9u}, /* 5^22 */
    {0x0000000000000000u, 0x002a5a058fc295edu}, /* 5^23 */
    {0x0000000000000000u, 0x00d3c21bcecceda1u}, /* 5^24 */
    {0x0000000000000000u, 0x0422ca8b0a00a425u}, /* 5^25 */
    {0x0000000000000000u, 0x14adf4b7320334b9u}, /* 5^26 */
    {0x0000000000000000u, 0x6765c793fa10079du}, /* 5^27 */
    {0x0000000000000002u, 0x04fce5e3e2502611u}, /* 5^28 */
    {0x000000000000000au, 0x18f07d736b90be55u}, /* 5^29 */
    {0x0000000000000032u, 0x7cb2734119d3b7a9u}, /* 5^30 */
    {0x00000000000000fcu, 0x6f7c40458122964du}, /* 5^31 */
    {0x00000000000004eeu, 0x2d6d415b85acef81u}, /* 5^32 */
    {0x00000000000018a6u, 0xe32246c99c60ad85u}, /* 5^33 */
    {0x0000000000007b42u, 0x6fab61f00de36399u}, /* 5^34 */
    {0x000000000002684cu, 0x2e58e9b04570f1fdu}, /* 5^35 */
    {0x00000000000c097cu, 0xe7bc90715b34b9f1u}, /* 5^36 */
    {0x00000000003c2f70u, 0x86aed236c807a1b5u}, /* 5^37 */
    {0x00000000012ced32u, 0xa16a1b11e8262889u}, /* 5^38 */
    {0x0000000005e0a1fdu, 0x2712875988becaadu}, /* 5^39 */
    {0x000000001d6329f1u, 0xc35ca4bfabb9f561u}, /* 5^40 */
    {0x0000000092efd1b8u, 0xd0cf37be5aa1cae5u}, /* 5^41 */
    {0x00000002deaf189cu, 0x140c16b7c528f679u}, /* 5^42 */
    {0x0000000e596b7b0cu, 0x643c7196d9ccd05du}, /* 5^43 */
    {0x00000047bf19673du, 0xf52e37f2410011d1u}, /* 5^44 */
    {0x00000166bb7f0435u, 0xc9e717bb45005915u}, /* 5^45 */
    {0x00000701a97b150cu, 0xf18376a85901bd69u}, /* 5^46 */
    {0x000023084f676940u, 0xb7915149bd08b30du}, /* 5^47 */
    {0x0000af298d050e43u, 0x95d69670b12b7f41u}, /* 5^48 */
    {0x00036bcfc1194751u, 0xed30f03375d97c45u}, /* 5^49 */
    {0x00111b0ec57e6499u, 0xa1f4b1014d3f6d59u}, /* 5^50 */
    {0x00558749db77f700u, 0x29c77506823d22bdu}, /* 5^51 */
    {0x01aba4714957d300u, 0xd0e549208b31adb1u}, /* 5^52 */
    {0x085a36366eb71f04u, 0x147a6da2b7f86475u}, /* 5^53 */
    {0x29c30f1029939b14u, 0x6664242d97d9f649u}, /* 5^54 */
    {0xd0cf4b50cfe20765u, 0xfff4b4e3f741cf6du}, /* 5^55 */
};

static u128 power_of_five(int i) {
  return (u128)powers_of_five[i][0] << 64 | powers_of_five[i][1];
}

/* A 192-bit unsigned integer, least significant word first: the scaled
 * numerators of the tiniest floats need up to 152 bits. */
typedef struct wide {
  uint64_t w[3];
} wide;

static wide wide_product(uint64_t a, u128 b) {
  u128 low = (u128)a * (uint64_t)b;
  u128 high = (u128)a * (uint64_t)(b >> 64) + (uint64_t)(low >> 64);
  wide r = {{(uint64_t)low, (uint64_t)high, (uint64_t)(high >> 64)}};
  return r;
}

/* x * 2^shift for shift >= 0 (the result must fit), floor(x / 2^-shift)
 * for shift < 0: each word's bits moved into the words they land in. */
static wide wide_shifted(wide x, int shift) {
  wide r = {{0, 0, 0}};
  for (int from = 0; from < 3; from++)
    for (int to = 0; to < 3; to++) {
      int offset = 64 * (from - to) + shift; /* of word from's bit 0 in to */
      if (offset >= 64 || offset <= -64) continue;
      r.w[to] |= offset >= 0 ? x.w[from] << offset : x.w[from] >> -offset;
    }
  return r;
}

static int wide_compare(wide a, wide b) {
  for (int i = 2; i >= 0; i--)
    if (a.w[i] != b.w[i]) return a.w[i] < b.w[i] ? -1 : 1;
  return 0;
}

/*
 * The float c * 2^q and the ends of its rounding interval, each divided
 * by 10^k: numerators low, value and high over one denominator, which is
 * 2^shift (kind POWER_OF_TWO, shift >= 0) or 5^k (kind POWER_OF_FIVE).
 */
enum { POWER_OF_TWO, POWER_OF_FIVE };

typedef struct scaled {
  int kind, shift, k;
  wide low, value, high;
  uint64_t whole; /* floor(value / denominator) */
  int inexact;    /* value / denominator is not a whole number */
} scaled;

/* Scales the interval numerators x_low, x, x_high (the float's units are
 * 2^(q-2), so that the ends are whole) by 10^-k. */
static void scale(scaled *s, uint32_t x_low, uint32_t x, uint32_t x_high,
                  int q, int k) {
  s->k = k;
  if (k <= 0) {
    /* x * 2^(q-2) * 10^-k = x * 5^-k * 2^(q-2-k) */
    u128 five = power_of_five(-k);
    int two = q - 2 - k;
    s->kind = POWER_OF_TWO;
    s->shift = two < 0 ? -two : 0;
    int up = two > 0 ? two : 0;
    s->low = wide_shifted(wide_product(x_low, five), up);
    s->value = wide_shifted(wide_product(x, five), up);
    s->high = wide_shifted(wide_product(x_high, five), up);
    /* The value is below 10^11 times the denominator: its integer part
     * fits one word. */
    wide whole = wide_shifted(s->value, -s->shift);
    s->whole = whole.w[0];
    s->inexact = wide_compare(wide_shifted(whole, s->shift), s->value) != 0;
  } else {
    /* x * 2^(q-2) / 10^k = x * 2^(q-2-k) / 5^k, with q - 2 - k > 0 for
     * every float at or above 10^10. */
    s->kind = POWER_OF_FIVE;
    s->shift = 0;
    wide lw = {{x_low, 0, 0}}, vw = {{x, 0, 0}}, hw = {{x_high, 0, 0}};
    s->low = wide_shifted(lw, q - 2 - k);
    s->value = wide_shifted(vw, q - 2 - k);
    s->high = wide_shifted(hw, q - 2 - k);
    u128 value = (u128)s->value.w[1] << 64 | s->value.w[0];
    u128 five = power_of_five(k);
    s->whole = (uint64_t)(value / five);
    s->inexact = value % five != 0;
  }
}

/* d * 10^k compared with the numerator n: d times the denominator. */
static int compare_scaled(const scaled *s, uint64_t d, wide n) {
  wide scaled_d = s->kind == POWER_OF_FIVE
                      ? wide_product(d, power_of_five(s->k))
                      : wide_shifted((wide){{d, 0, 0}}, s->shift);
  return wide_compare(scaled_d, n);
}

static const uint64_t powers_of_ten[12] = {1,         10,         100,
                                           1000,      10000,      100000,
                                           1000000,   10000000,   100000000,
                                           1000000000, 10000000000u,
                                           100000000000u};

int tdm__float_shortest(float f, char buf[32]) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  int negative = (int)(bits >> 31);
  uint32_t exponent_bits = (bits >> 23) & 0xFF, fraction = bits & 0x7FFFFF;
  if (exponent_bits == 0xFF && fraction != 0) { /* unsigned, as %g's */
    memcpy(buf, "nan", 4);
    return 3;
  }
  int n = 0;
  if (negative) buf[n++] = '-';
  if (exponent_bits == 0xFF) {
    memcpy(buf + n, "inf", 4);
    return n + 3;
  }
  if (exponent_bits == 0 && fraction == 0) {
    memcpy(buf + n, "0", 2);
    return n + 1;
  }
  uint32_t c = exponent_bits ? fraction | 1u << 23 : fraction;
  int q = exponent_bits ? (int)exponent_bits - 150 : -149;
  /* The reals that round to the float lie within half a unit in the last
   * place either side, a quarter below for a power of two (its lower
   * neighbour is closer), ends included when c is even (ties go to the
   * even mantissa). In units of 2^(q-2): */
  uint32_t x = 4 * c, x_high = x + 2;
  uint32_t x_low = fraction == 0 && exponent_bits > 1 ? x - 1 : x - 2;
  int ends_included = (c & 1) == 0;
  /* floor(log10(2^(q + bits of c - 1))) is E = floor(log10(value)) or one
   * less; scaled by 10^(E - 9) the value's integer part has ten digits. */
  int top = q + 31 - __builtin_clz(c);
  int decimal_exponent = (int)(((int64_t)top * 78913) >> 18);
  scaled s;
  scale(&s, x_low, x, x_high, q, decimal_exponent - 9);
  if (s.whole >= powers_of_ten[10]) {
    decimal_exponent++;
    scale(&s, x_low, x, x_high, q, decimal_exponent - 9);
  }
  /* The smallest N whose rounding to N digits reads back; 9 always do. */
  uint64_t digits = 0;
  int precision;
  for (precision = 6; precision <= 9; precision++) {
    uint64_t unit = powers_of_ten[10 - precision];
    digits = s.whole / unit;
    uint64_t rest = s.whole % unit, half = unit / 2;
    if (rest > half || (rest == half && (s.inexact || (digits & 1)))) digits++;
    if (precision == 9) break;
    uint64_t candidate = digits * unit;
    int below = compare_scaled(&s, candidate, s.low);
    int above = compare_scaled(&s, candidate, s.high);
    if ((below > 0 || (below == 0 && ends_included)) &&
        (above < 0 || (above == 0 && ends_included)))
      break;
  }
  if (digits == powers_of_ten[precision]) { /* 9.99..5 rounded up to 10.0..0 */
    digits = powers_of_ten[precision - 1];
    decimal_exponent++;
  }
  char d[10];
  for (int i = precision - 1; i >= 0; i--) {
    d[i] = (char)('0' + digits % 10);
    digits /= 10;
  }
  int significant = precision; /* %g drops trailing zeros */
  while (significant > 1 && d[significant - 1] == '0') significant--;
  int e = decimal_exponent;
  if (e < -4 || e >= precision) {
    buf[n++] = d[0];
    if (significant > 1) {
      buf[n++] = '.';
      for (int i = 1; i < significant; i++) buf[n++] = d[i];
    }
    buf[n++] = 'e';
    buf[n++] = e < 0 ? '-' : '+';
    if (e < 0) e = -e;
    buf[n++] = (char)('0' + e / 10);
    buf[n++] = (char)('0' + e % 10);
  } else if (e >= 0) {
    for (int i = 0; i <= e; i++) buf[n++] = d[i];
    if (significant > e + 1) {
      buf[n++] = '.';
      for (int i = e + 1; i < significant; i++) buf[n++] = d[i];
    }
  } else {
    buf[n++] = '0';
    buf[n++] = '.';
    for (int i = -1; i > e; i--) buf[n++] = '0';
    for (int i = 0; i < significant; i++) buf[n++] = d[i];
  }
  buf[n] = '\0';
  return n;
}
