/*
 * float_text.c - float32 scores as text without printf's multiple
 * precision arithmetic: tdm__float_g writes what snprintf "%.*g" writes,
 * and tdm__float_reads_back says whether strtof would give the float back.
 * Both work in double arithmetic with a bound on its error, and answer
 * "cannot tell" (the caller then asks snprintf or strtof) when the value
 * is too close to a rounding boundary for that bound, so every answer
 * they give is exact. Formatting a score this way costs a few dozen
 * instructions instead of thousands; the tests compare both with the C
 * library on many floats.
 */
#include "model.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* 10^k as a double for k in [-60, 60]: the literals are correctly
 * rounded, a relative error of at most 2^-53. */
#define POWER_MIN (-60)
#define POWER_MAX 60

static const double powers_of_ten[POWER_MAX - POWER_MIN + 1] = {
    1e-60, 1e-59, 1e-58, 1e-57, 1e-56, 1e-55, 1e-54, 1e-53, 1e-52, 1e-51,
    1e-50, 1e-49, 1e-48, 1e-47, 1e-46, 1e-45, 1e-44, 1e-43, 1e-42, 1e-41,
    1e-40, 1e-39, 1e-38, 1e-37, 1e-36, 1e-35, 1e-34, 1e-33, 1e-32, 1e-31,
    1e-30, 1e-29, 1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23, 1e-22, 1e-21,
    1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11,
    1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1,
    1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
    1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26,
    1e27, 1e28, 1e29, 1e30, 1e31, 1e32, 1e33, 1e34, 1e35, 1e36, 1e37, 1e38,
    1e39, 1e40, 1e41, 1e42, 1e43, 1e44, 1e45, 1e46, 1e47, 1e48, 1e49, 1e50,
    1e51, 1e52, 1e53, 1e54, 1e55, 1e56, 1e57, 1e58, 1e59, 1e60,
};

static double power_of_ten(int k) { return powers_of_ten[k - POWER_MIN]; }

/* A relative bound on the error of y = v * 10^k computed in double (two
 * roundings of at most 2^-53 each), with room to spare. */
#define RELATIVE_ERROR 0x1p-50

/* Floats this format handles: normal, well inside the exponent range.
 * Scores (probabilities, margins) always are; the rest go to the C
 * library. */
static int handled(float f) {
  float a = fabsf(f);
  return isfinite(a) && a >= 1e-30f && a <= 1e30f;
}

int tdm__float_g(float f, int digits, char buf[32]) {
  if (digits < 1 || digits > 9 || !handled(f)) return 0;
  double v = fabs((double)f);
  /* floor(log10(v)) within one (the loop below corrects it): the binary
   * exponent times log10(2), cheaper than a call to log10. */
  int binary_exponent;
  frexp(v, &binary_exponent);
  int exponent = (int)((binary_exponent - 1) * 0.30103);
  uint64_t low = 1;
  for (int i = 1; i < digits; i++) low *= 10;
  uint64_t high = low * 10;
  /* The exponent is the one that puts y = v * 10^(digits - 1 - exponent)
   * in [low, high); log10's guess may be one off near powers of ten. */
  double rounded = -1;
  for (int attempt = 0; attempt < 3 && rounded < 0; attempt++) {
    double y = v * power_of_ten(digits - 1 - exponent);
    double margin = y * RELATIVE_ERROR;
    if (y < (double)low - margin) {
      exponent--;
    } else if (y >= (double)high + margin) {
      exponent++;
    } else {
      /* y < 2^53: its integer part and fraction are exact. */
      double whole = (double)(uint64_t)y, fraction = y - whole;
      if (fabs(y - (double)low) <= margin ||
          fabs(y - (double)high) <= margin ||
          fabs(fraction - 0.5) <= margin)
        return 0; /* on a boundary or near a tie: cannot tell */
      rounded = fraction > 0.5 ? whole + 1 : whole;
    }
  }
  if (rounded < 0) return 0;
  uint64_t mantissa = (uint64_t)rounded;
  if (mantissa == high) { /* 9.99..5 rounded up to 10.0..0 */
    mantissa = low;
    exponent++;
  }
  char d[10];
  for (int i = digits - 1; i >= 0; i--) {
    d[i] = (char)('0' + mantissa % 10);
    mantissa /= 10;
  }
  int significant = digits; /* %g drops trailing zeros */
  while (significant > 1 && d[significant - 1] == '0') significant--;
  int n = 0;
  if (f < 0) buf[n++] = '-';
  if (exponent < -4 || exponent >= digits) {
    buf[n++] = d[0];
    if (significant > 1) {
      buf[n++] = '.';
      for (int i = 1; i < significant; i++) buf[n++] = d[i];
    }
    buf[n++] = 'e';
    int e = exponent;
    buf[n++] = e < 0 ? '-' : '+';
    if (e < 0) e = -e;
    if (e >= 100) buf[n++] = (char)('0' + e / 100);
    buf[n++] = (char)('0' + e / 10 % 10);
    buf[n++] = (char)('0' + e % 10);
  } else if (exponent >= 0) {
    for (int i = 0; i <= exponent; i++) buf[n++] = d[i];
    if (significant > exponent + 1) {
      buf[n++] = '.';
      for (int i = exponent + 1; i < significant; i++) buf[n++] = d[i];
    }
  } else {
    buf[n++] = '0';
    buf[n++] = '.';
    for (int i = -1; i > exponent; i--) buf[n++] = '0';
    for (int i = 0; i < significant; i++) buf[n++] = d[i];
  }
  buf[n] = '\0';
  return n;
}

int tdm__float_reads_back(const char *text, size_t len, float f) {
  if (!handled(f)) return -1;
  /* The text's value: mantissa digits times a power of ten. */
  size_t i = 0;
  int negative = 0, digits = 0, scale = 0;
  uint64_t mantissa = 0;
  if (i < len && (text[i] == '-' || text[i] == '+')) negative = text[i++] == '-';
  int seen_point = 0;
  for (; i < len; i++) {
    char c = text[i];
    if (c == '.' && !seen_point) {
      seen_point = 1;
      continue;
    }
    if (c < '0' || c > '9') break;
    if (mantissa == 0 && c == '0') {
      if (seen_point) scale--;
      continue;
    }
    if (++digits > 17) return -1;
    mantissa = mantissa * 10 + (uint64_t)(c - '0');
    if (seen_point) scale--;
  }
  if (i < len && (text[i] == 'e' || text[i] == 'E')) {
    i++;
    int sign = 1, e = 0, any = 0;
    if (i < len && (text[i] == '-' || text[i] == '+')) sign = text[i++] == '-' ? -1 : 1;
    for (; i < len && text[i] >= '0' && text[i] <= '9' && e < 1000; i++, any = 1)
      e = e * 10 + (text[i] - '0');
    if (!any) return -1;
    scale += sign * e;
  }
  if (i != len || mantissa == 0 || negative != (f < 0)) return -1;
  if (scale < POWER_MIN || scale > POWER_MAX || mantissa >= ((uint64_t)1 << 53))
    return -1;
  /* The float's rounding interval: halfway to each neighbour, exact in
   * double (25 significant bits). */
  float a = fabsf(f), down, up;
  uint32_t bits;
  memcpy(&bits, &a, sizeof bits);
  bits--; /* a positive float's neighbours are its bits -1 and +1 */
  memcpy(&down, &bits, sizeof bits);
  bits += 2;
  memcpy(&up, &bits, sizeof bits);
  double below = ((double)a + (double)down) / 2;
  double above = ((double)a + (double)up) / 2;
  double x = (double)mantissa * power_of_ten(scale);
  double margin = x * RELATIVE_ERROR;
  if (x > below + margin && x < above - margin) return 1;
  if (x < below - margin || x > above + margin) return 0;
  return -1; /* too close to a boundary (or on it: ties to even) */
}
