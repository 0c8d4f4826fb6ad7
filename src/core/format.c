/*
 * format.c - values as text for every module's output: a double as the
 * shortest text that reads back, a CSV field quoted when it must be, and
 * a Prometheus label value escaped. They live here, below the modules
 * that write outputs (io, pipeline, serve, eval), so none of those has to
 * include another for them.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "core.h"

/* Writes the integer r with `decimals` digits after a point. */
static int fixed_text(int64_t r, int decimals, char buf[32]) {
  char digits[24];
  int n = 0, negative = r < 0;
  uint64_t u = negative ? (uint64_t)0 - (uint64_t)r : (uint64_t)r;
  do {
    digits[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u > 0);
  while (n <= decimals) digits[n++] = '0';
  int len = 0;
  if (negative) buf[len++] = '-';
  for (int i = n - 1; i >= 0; i--) {
    buf[len++] = digits[i];
    if (i == decimals && decimals > 0) buf[len++] = '.';
  }
  buf[len] = '\0';
  return len;
}

int tdm__format_double(double value, char buf[32]) {
  static const double powers[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
  /* Counts, amounts and sums have few decimals: the smallest k for which
   * round(v * 10^k) / 10^k gives v back is the shortest text. Both sides
   * are exact doubles below 2^53, so the division is correctly rounded,
   * just as reading the text back would be. */
  if (fabs(value) < 1e9) {
    for (int k = 0; k < 7; k++) {
      double scaled = nearbyint(value * powers[k]);
      if (fabs(scaled) < 9007199254740992.0 && scaled / powers[k] == value)
        return fixed_text((int64_t)scaled, k, buf);
    }
  }
  /* The rest: the shortest of 15 to 17 significant digits that reads
   * back. */
  for (int digits = 15; digits < 17; digits++) {
    int n = snprintf(buf, 32, "%.*g", digits, value);
    double back;
    if (tdm__parse_double(buf, (size_t)n, &back) == 0 && back == value)
      return n;
  }
  return snprintf(buf, 32, "%.17g", value);
}

int tdm__csv_append_field(tdm__buf *b, const char *text, size_t len) {
  int needs_quotes = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = text[i];
    if (ch == ',' || ch == '"' || ch == '\n' || ch == '\r') {
      needs_quotes = 1;
      break;
    }
  }
  if (!needs_quotes) return tdm__buf_append(b, text, len);
  if (tdm__buf_append(b, "\"", 1) != TDM_OK) return TDM_ENOMEM;
  for (size_t i = 0; i < len; i++) {
    if (text[i] == '"' && tdm__buf_append(b, "\"", 1) != TDM_OK)
      return TDM_ENOMEM;
    if (tdm__buf_append(b, text + i, 1) != TDM_OK) return TDM_ENOMEM;
  }
  return tdm__buf_append(b, "\"", 1);
}

int tdm__metrics_append_label(tdm__buf *out, const char *value) {
  int rc = tdm__buf_append(out, "\"", 1);
  for (const char *p = value; rc == TDM_OK && *p; p++) {
    if (*p == '\\' || *p == '"')
      rc = tdm__buf_printf(out, "\\%c", *p);
    else if (*p == '\n')
      rc = tdm__buf_append(out, "\\n", 2);
    else
      rc = tdm__buf_append(out, p, 1);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "\"", 1);
  return rc;
}
