/*
 * exact_sum.c - exact sums of doubles (exact_sum.h). A double is an
 * integer mantissa of at most 53 bits times a power of two, and the
 * product of two is one of at most 106 bits, so every term is added as an
 * integer at its binary position, split over 32-bit limbs held in 64-bit
 * signed words: no rounding ever happens until tdm__exact_round, which
 * carries the limbs and rounds the one exact value to nearest, ties to
 * even, subnormal results included.
 */
#include "exact_sum.h"

#include <math.h>
#include <string.h>

#include "../core/core.h"

/* Limbs are carried after this many adds: each add changes a limb by
 * less than 2^33, so a limb stays below 2^62 in magnitude. */
#define CARRY_EVERY (1u << 28)

/* Guard limbs kept above a term's highest limb: carries of up to 2^64
 * terms land there. */
#define GUARD 2

typedef unsigned __int128 u128;

void tdm__exact_init(tdm__exact_sum *s) {
  s->limb = NULL;
  s->low = 0;
  s->len = 0;
  s->pending = 0;
  s->own = 1;
}

void tdm__exact_free(tdm__exact_sum *s) {
  if (s->own) tdm__free(s->limb);
  tdm__exact_init(s);
}

void tdm__exact_clear(tdm__exact_sum *s) {
  if (s->len > 0) memset(s->limb, 0, s->len * sizeof *s->limb);
  s->pending = 0;
}

void tdm__exact_init_full(tdm__exact_sum *s, int64_t *limbs) {
  memset(limbs, 0, TDM__EXACT_LIMBS * sizeof *limbs);
  s->limb = limbs;
  s->low = TDM__EXACT_LOW;
  s->len = TDM__EXACT_LIMBS;
  s->pending = 0;
  s->own = 0;
}

/* x = mantissa * 2^exponent with mantissa < 2^53; x finite. */
static uint64_t split(double x, int *exponent) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int field = (int)((bits >> 52) & 0x7ff);
  uint64_t mantissa = bits & ((UINT64_C(1) << 52) - 1);
  if (field == 0) {
    *exponent = -1074;
    return mantissa;
  }
  *exponent = field - 1075;
  return mantissa | (UINT64_C(1) << 52);
}

static int32_t floor_div32(int exponent) {
  return exponent >= 0 ? exponent / 32 : -((31 - exponent) / 32);
}

/* The first limb a term at exponent touches. */
static int32_t first_limb(double x, int square) {
  int exponent;
  split(x, &exponent);
  return floor_div32(square ? 2 * exponent : exponent);
}

int tdm__exact_reserve(tdm__exact_sum *s, double x, int square) {
  if (!isfinite(x) || x == 0.0) return TDM_OK;
  int32_t from = first_limb(x, square), to = from + 4 + GUARD;
  if (s->len > 0 && from >= s->low && to < s->low + (int32_t)s->len)
    return TDM_OK;
  int32_t low = from, high = to;
  if (s->len > 0) {
    if (s->low < low) low = s->low;
    if (s->low + (int32_t)s->len - 1 > high) high = s->low + (int32_t)s->len - 1;
  }
  uint32_t len = (uint32_t)(high - low + 1);
  int64_t *limb = tdm__calloc(len, sizeof *limb);
  if (limb == NULL) return TDM_ENOMEM;
  if (s->len > 0)
    memcpy(limb + (s->low - low), s->limb, s->len * sizeof *limb);
  tdm__free(s->limb);
  s->limb = limb;
  s->low = low;
  s->len = len;
  return TDM_OK;
}

static void carry(tdm__exact_sum *s) {
  for (uint32_t i = 0; i + 1 < s->len; i++) {
    int64_t c = s->limb[i] >> 32; /* floor(limb / 2^32) */
    s->limb[i] -= c * ((int64_t)1 << 32);
    s->limb[i + 1] += c;
  }
  s->pending = 0;
}

/* s += (negative ? -1 : 1) * magnitude * 2^exponent; the limbs it touches
 * are in range. */
static void add_magnitude(tdm__exact_sum *s, int negative, u128 magnitude,
                          int exponent) {
  if (magnitude == 0) return;
  int32_t first = floor_div32(exponent);
  int shift = exponent - 32 * first;
  int64_t *limb = s->limb + (first - s->low);
  for (int k = 0; k < 4 && magnitude != 0; k++, magnitude >>= 32) {
    uint64_t digit = (uint64_t)(magnitude & 0xffffffffu);
    if (digit == 0) continue;
    uint64_t v = digit << shift;
    int64_t lo = (int64_t)(v & 0xffffffffu), hi = (int64_t)(v >> 32);
    if (negative) {
      limb[k] -= lo;
      limb[k + 1] -= hi;
    } else {
      limb[k] += lo;
      limb[k + 1] += hi;
    }
  }
  if (++s->pending >= CARRY_EVERY) carry(s);
}

void tdm__exact_add(tdm__exact_sum *s, double x, int square, int sign) {
  if (x == 0.0) return;
  int exponent;
  uint64_t mantissa = split(x, &exponent);
  int negative = (x < 0) != (sign < 0);
  if (square)
    add_magnitude(s, sign < 0, (u128)mantissa * mantissa, 2 * exponent);
  else
    add_magnitude(s, negative, mantissa, exponent);
}

void tdm__exact_copy_full(tdm__exact_sum *dst, int64_t *limbs,
                          const tdm__exact_sum *src) {
  tdm__exact_init_full(dst, limbs);
  if (src->len > 0)
    memcpy(limbs + (src->low - TDM__EXACT_LOW), src->limb,
           src->len * sizeof *limbs);
  dst->pending = src->pending;
}

void tdm__exact_add_scaled(tdm__exact_sum *dst, const tdm__exact_sum *src,
                           double m, int sign, int shift) {
  if (m == 0.0) return;
  int exponent;
  uint64_t mantissa = split(m, &exponent);
  int negative = (m < 0) != (sign < 0);
  /* Balanced digits (each in [-2^31, 2^31)): a negative sum carried the
   * usual way is a run of all-ones limbs up to the top one, and scaling
   * those would reach beyond dst's range; balanced, the limbs above the
   * value's highest bit are zero. */
  int64_t digits[TDM__EXACT_LIMBS];
  int64_t carried = 0;
  for (uint32_t k = 0; k < src->len; k++) {
    int64_t v = src->limb[k] + carried;
    carried = k + 1 < src->len ? (v + ((int64_t)1 << 31)) >> 32 : 0;
    digits[k] = v - carried * ((int64_t)1 << 32);
  }
  for (uint32_t k = 0; k < src->len; k++) {
    int64_t l = digits[k];
    if (l == 0) continue;
    u128 magnitude = (u128)(l < 0 ? -(uint64_t)l : (uint64_t)l) * mantissa;
    add_magnitude(dst, negative != (l < 0), magnitude,
                  shift + exponent + 32 * (src->low + (int32_t)k));
  }
}

void tdm__exact_add_count_square(tdm__exact_sum *dst, double m, uint64_t n) {
  if (m == 0.0 || n == 0) return;
  int exponent;
  uint64_t mantissa = split(m, &exponent);
  u128 square = (u128)mantissa * mantissa;
  add_magnitude(dst, 0, (u128)(uint64_t)square * n, 2 * exponent);
  add_magnitude(dst, 0, (u128)(uint64_t)(square >> 64) * n, 2 * exponent + 64);
}

/* Bit i of the magnitude digits d (32 bits each); 0 outside. */
static unsigned bit_at(const uint64_t *d, uint32_t len, int64_t i) {
  if (i < 0 || i >= 32 * (int64_t)len) return 0;
  return (unsigned)(d[i / 32] >> (i % 32)) & 1u;
}

/* Digit i of d, 0 outside. */
static uint64_t digit_at(const uint64_t *d, uint32_t len, int64_t i) {
  return i < 0 || i >= (int64_t)len ? 0 : d[i];
}

/* 53 bits of d from bit `from` up (bits outside are 0): the three digits
 * they span, shifted. */
static uint64_t bits_at(const uint64_t *d, uint32_t len, int64_t from) {
  int64_t first = from >= 0 ? from / 32 : -((31 - from) / 32);
  int shift = (int)(from - 32 * first);
  u128 window = (u128)digit_at(d, len, first) |
                (u128)digit_at(d, len, first + 1) << 32 |
                (u128)digit_at(d, len, first + 2) << 64;
  return (uint64_t)(window >> shift) & ((UINT64_C(1) << 53) - 1);
}

/* Any bit of d below bit `below`. */
static int any_below(const uint64_t *d, uint32_t len, int64_t below) {
  if (below <= 0) return 0;
  int64_t whole = below / 32;
  for (int64_t i = 0; i < whole && i < (int64_t)len; i++)
    if (d[i] != 0) return 1;
  if (whole < (int64_t)len && below % 32 != 0 &&
      (d[whole] & ((UINT64_C(1) << (below % 32)) - 1)) != 0)
    return 1;
  return 0;
}

double tdm__exact_round(tdm__exact_sum *s) {
  if (s->len == 0) return 0.0;
  carry(s);
  uint64_t d[TDM__EXACT_LIMBS + 2 * GUARD + 8];
  uint32_t len = s->len;
  int negative = s->limb[len - 1] < 0;
  /* The magnitude in 32-bit digits: the value's two's complement when
   * negative. The guard limbs keep the top digit below 2^32. */
  int64_t borrow = 0;
  for (uint32_t i = 0; i < len; i++) {
    int64_t v = (negative ? -s->limb[i] : s->limb[i]) + borrow;
    if (i + 1 < len) {
      borrow = v >> 32;
      v -= borrow * ((int64_t)1 << 32);
    }
    d[i] = (uint64_t)v;
  }
  int32_t top = (int32_t)len - 1;
  while (top >= 0 && d[top] == 0) top--;
  if (top < 0) return 0.0;
  int width = 64 - __builtin_clzll(d[top]);
  /* The exponent of the leading bit, then of the last bit kept: 53 bits,
   * fewer for a subnormal result. */
  int64_t lead = 32 * (int64_t)(s->low + top) + width - 1;
  int64_t last = lead - 52 < -1074 ? -1074 : lead - 52;
  if (lead > 1023) return negative ? -INFINITY : INFINITY;
  int64_t from = last - 32 * (int64_t)s->low;
  uint64_t m = bits_at(d, len, from);
  if (bit_at(d, len, from - 1) && ((m & 1) || any_below(d, len, from - 1)))
    m++;
  double r = ldexp((double)m, (int)last);
  return negative ? -r : r;
}
