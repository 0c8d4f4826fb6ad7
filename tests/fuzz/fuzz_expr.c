/*
 * fuzz_expr.c - a libFuzzer harness for the pipeline expression compiler:
 * the input bytes (up to the first NUL) are an expression compiled against
 * a fixed symbol table. A failure must come with a column inside the text
 * (or just after it) and a "column N: " message; a success is evaluated on
 * three sets of values, each twice, which must give the same bits, and its
 * reported slots must lie within the symbol table. Build with `make fuzz`;
 * run with scripts/fuzz.sh over the seeds in tests/fuzz/corpus/expr/.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/pipeline/expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "fuzz_expr: check failed: %s\n", what);
  abort();
}

static const struct {
  const char *name;
  int type;
  size_t slot;
} symbols_table[] = {
    {"a", TDM__EXPR_NUMBER, 0},        {"b", TDM__EXPR_NUMBER, 1},
    {"c", TDM__EXPR_NUMBER, 2},        {"m", TDM__EXPR_NUMBER, 3},
    {"amount", TDM__EXPR_NUMBER, 4},   {"score", TDM__EXPR_NUMBER, 5},
    {"s", TDM__EXPR_STRING, 0},        {"t", TDM__EXPR_STRING, 1},
    {"merchant", TDM__EXPR_STRING, 2}, {"missing", TDM__EXPR_STRING, 3},
};
#define NUM_NUMBERS 6
#define NUM_STRINGS 4

static int lookup(void *ctx, const char *name, size_t len, int *type,
                  size_t *slot) {
  (void)ctx;
  for (size_t i = 0; i < sizeof symbols_table / sizeof symbols_table[0]; i++)
    if (strlen(symbols_table[i].name) == len &&
        memcmp(symbols_table[i].name, name, len) == 0) {
      *type = symbols_table[i].type;
      *slot = symbols_table[i].slot;
      return 0;
    }
  return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A private NUL-terminated copy: ASan then catches reads past it. */
  char *text = malloc(size + 1);
  check(text != NULL, "malloc");
  memcpy(text, data, size);
  text[size] = '\0';
  size_t len = strlen(text);

  const tdm__expr_symbols symbols = {NULL, lookup};
  tdm__expr *e = NULL;
  tdm__expr_error err;
  int rc = tdm__expr_compile(text, &symbols, &e, &err);
  if (rc != TDM_OK) {
    check(rc == TDM_EPARSE, "a failure is TDM_EPARSE");
    check(e == NULL, "no expression on failure");
    check(err.column >= 1 && err.column <= len + 1,
          "the column lies in the text or just after it");
    char prefix[32];
    snprintf(prefix, sizeof prefix, "column %zu: ", err.column);
    check(strncmp(err.message, prefix, strlen(prefix)) == 0,
          "the message starts with its column");
    check(strlen(err.message) > strlen(prefix), "the message says why");
    free(text);
    return 0;
  }
  check(len <= TDM__EXPR_MAX_LENGTH, "long texts are refused");

  const size_t *slots;
  size_t n = tdm__expr_refs(e, TDM__EXPR_NUMBER, &slots);
  for (size_t i = 0; i < n; i++) {
    check(slots[i] < NUM_NUMBERS, "number slots from the table");
    check(i == 0 || slots[i] > slots[i - 1], "number slots ascending");
  }
  n = tdm__expr_refs(e, TDM__EXPR_STRING, &slots);
  for (size_t i = 0; i < n; i++) {
    check(slots[i] < NUM_STRINGS, "string slots from the table");
    check(i == 0 || slots[i] > slots[i - 1], "string slots ascending");
  }

  static const double numbers[3][NUM_NUMBERS] = {
      {2, 3, -1.5, NAN, 100, 0.95},
      {0, -0.0, INFINITY, NAN, 1e300, NAN},
      {NAN, NAN, NAN, NAN, NAN, NAN}};
  static const tdm__str strings[3][NUM_STRINGS] = {
      {{"visa", 4}, {"visa", 4}, {"a", 1}, {NULL, 0}},
      {{"", 0}, {"b\"", 2}, {"", 0}, {NULL, 0}},
      {{NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}}};
  static const int64_t times[3] = {INT64_C(1709251199000),
                                   INT64_C(-2208969000000), INT64_MIN};
  for (int set = 0; set < 3; set++) {
    tdm__expr_values v = {numbers[set], strings[set], times[set]};
    double x = tdm__expr_eval(e, &v), y = tdm__expr_eval(e, &v);
    check(memcmp(&x, &y, sizeof x) == 0 || (isnan(x) && isnan(y)),
          "evaluation is deterministic");
  }
  tdm__expr_free(e);
  free(text);
  return 0;
}
