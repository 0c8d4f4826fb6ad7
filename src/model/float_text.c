/*
 * float_text.c - float32 scores as text without printf and without
 * reading the text back. tdm__float_shortest writes the text of
 * "%.Ng" with the smallest N from 6 to 9 that reads back (strtof) to the
 * float, the rule docs/evaluator.md states for float32 scores. It decides
 * both in exact integer arithmetic, in the manner of Ryu and Schubfach:
 * the float's value and the ends of the interval of reals that round to
 * it are divided by a power of ten, each kept as its integer part and
 * whether a fraction is left (exact, since the divisions are by powers
 * of two and five of known size), the N-digit rounding of the value is
 * read off its integer part, and "reads back" is whether that rounding
 * lies inside the interval. No step is approximate,
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

/* A 192-bit unsigned integer, least significant word first: x * 5^k
 * for the tiniest floats needs up to 152 bits. */
typedef struct wide {
  uint64_t w[3];
} wide;

static wide wide_product(uint64_t a, u128 b) {
  u128 low = (u128)a * (uint64_t)b;
  u128 high = (u128)a * (uint64_t)(b >> 64) + (uint64_t)(low >> 64);
  wide r = {{(uint64_t)low, (uint64_t)high, (uint64_t)(high >> 64)}};
  return r;
}

/* floor(n / 2^shift), which the caller knows fits one word, and whether
 * the division leaves a remainder; 0 <= shift < 192. */
static uint64_t wide_divided(wide n, int shift, int *inexact) {
  int word = shift / 64, bit = shift % 64;
  uint64_t rest = bit ? n.w[word] << (64 - bit) : 0;
  for (int i = 0; i < word; i++) rest |= n.w[i];
  *inexact = rest != 0;
  uint64_t whole = n.w[word] >> bit;
  if (bit && word < 2) whole |= n.w[word + 1] << (64 - bit);
  return whole;
}

/* A number divided by a power of ten, exactly: its integer part and
 * whether a fraction is left. */
typedef struct scaled {
  uint64_t whole;
  int inexact;
} scaled;

/* x * 2^(q-2) / 10^k for x < 2^26, with k such that the result is below
 * 10^12 (the caller's choice: the float's decimal exponent less 9). */
static scaled scale(uint32_t x, int q, int k) {
  scaled s;
  int two = q - 2 - k;
  if (k <= 0 && two >= 0) {
    /* x * 5^-k * 2^two, a whole number. */
    s.whole = (uint64_t)(((u128)x * power_of_five(-k)) << two);
    s.inexact = 0;
  } else if (k <= 0) {
    /* x * 5^-k / 2^-two: up to 152 bits divided by a power of two. */
    s.whole =
        wide_divided(wide_product(x, power_of_five(-k)), -two, &s.inexact);
  } else {
    /* x * 2^two / 5^k, with two > 0 for every float at or above 10^10
     * (where k > 0) and x * 2^two below 2^100. */
    u128 n = (u128)x << two, five = power_of_five(k);
    s.whole = (uint64_t)(n / five);
    s.inexact = n % five != 0;
  }
  return s;
}

/* The whole number d against a scaled number: -1, 0 or 1. */
static int compare_scaled(uint64_t d, scaled s) {
  if (d != s.whole) return d < s.whole ? -1 : 1;
  return s.inexact ? -1 : 0;
}

static const uint64_t powers_of_ten[12] = {
    1,       10,       100,       1000,       10000,        100000,
    1000000, 10000000, 100000000, 1000000000, 10000000000u, 100000000000u};

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
  scaled value = scale(x, q, decimal_exponent - 9);
  if (value.whole >= powers_of_ten[10]) {
    decimal_exponent++;
    value = scale(x, q, decimal_exponent - 9);
  }
  scaled low = scale(x_low, q, decimal_exponent - 9);
  scaled high = scale(x_high, q, decimal_exponent - 9);
  /* The smallest N whose rounding to N digits reads back; 9 always do. */
  uint64_t digits = 0;
  int precision;
  for (precision = 6; precision <= 9; precision++) {
    uint64_t unit = powers_of_ten[10 - precision];
    digits = value.whole / unit;
    uint64_t rest = value.whole % unit, half = unit / 2;
    if (rest > half || (rest == half && (value.inexact || (digits & 1))))
      digits++;
    if (precision == 9) break;
    uint64_t candidate = digits * unit;
    int below = compare_scaled(candidate, low);
    int above = compare_scaled(candidate, high);
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
