/*
 * exact_sum.h - an exact sum of doubles and of products of doubles: a
 * fixed-point integer in 32-bit limbs covering only the binary range its
 * terms have touched, so adding and then subtracting a value gives back
 * exactly what was there, whatever the order. Window aggregates keep one
 * per running sum (and one for the squares of stddev), add an event's value
 * when it enters the window and subtract it when it leaves, and round the
 * sum once when they report it: the correctly rounded sum of the members,
 * independent of the order they came and went in (docs/windows.md).
 */
#ifndef TDM_EXACT_SUM_H
#define TDM_EXACT_SUM_H

#include <stddef.h>
#include <stdint.h>

/* limb[i] weighs 2^(32 * (low + i)); limbs are signed and not carried
 * between operations, so each add touches at most five of them. */
typedef struct tdm__exact_sum {
  int64_t *limb;
  int32_t low;
  uint32_t len;
  uint32_t pending; /* adds since the last carry */
  int own;          /* limb is heap memory owned by the sum */
} tdm__exact_sum;

/* The limbs any term can reach: products of two doubles (down to 2^-2148)
 * and a double times a sum of up to 2^40 doubles, whose top limbs (guards
 * included) reach 2^1152: up to 2^2300 with the limbs an add touches. */
#define TDM__EXACT_LOW (-70)
#define TDM__EXACT_LIMBS 150

/* An empty (zero) sum that owns heap memory it grows on demand. */
void tdm__exact_init(tdm__exact_sum *s);
void tdm__exact_free(tdm__exact_sum *s);
/* Sets s to zero, keeping its memory. */
void tdm__exact_clear(tdm__exact_sum *s);

/* A zero sum over the whole range in caller memory (a scratch sum that
 * never allocates): limbs must hold TDM__EXACT_LIMBS. */
void tdm__exact_init_full(tdm__exact_sum *s, int64_t *limbs);

/* Grows s so that adding or subtracting x (or x * x when square) cannot
 * fail; TDM_ENOMEM leaves s as it was. Infinities and NaN need nothing
 * (they are not added). */
int tdm__exact_reserve(tdm__exact_sum *s, double x, int square);

/* s += sign * x, or sign * x * x when square; x finite, room reserved.
 * sign is 1 or -1. */
void tdm__exact_add(tdm__exact_sum *s, double x, int square, int sign);

/* dst = src, dst a full-range scratch sum in limbs (TDM__EXACT_LIMBS). */
void tdm__exact_copy_full(tdm__exact_sum *dst, int64_t *limbs,
                          const tdm__exact_sum *src);

/* dst += sign * m * 2^shift * src, dst a full-range sum, m finite, src a
 * sum of doubles (not of products), shift in [0, 8]. */
void tdm__exact_add_scaled(tdm__exact_sum *dst, const tdm__exact_sum *src,
                           double m, int sign, int shift);

/* dst += n * m * m, dst a full-range sum, m finite, n < 2^32. */
void tdm__exact_add_count_square(tdm__exact_sum *dst, double m, uint64_t n);

/* The sum rounded to the nearest double, ties to even (+-inf beyond the
 * largest double); 0.0 (never -0.0) for zero. Carries the limbs, which
 * does not change the value. */
double tdm__exact_round(tdm__exact_sum *s);

#endif /* TDM_EXACT_SUM_H */
