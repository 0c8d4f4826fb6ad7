/*
 * test_expr.c - the pipeline expression language (src/pipeline/expr.c):
 * every operator and function on known values, the missing-value rules,
 * strings, precedence, the time functions on known dates, every compile
 * error with its column, the size and depth limits, out of memory, and a
 * differential test that renders random expression trees to text and
 * compares the compiled program's results bit for bit with a plain
 * recursive evaluator written here from the documented semantics.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../src/pipeline/expr.h"
#include "test.h"

/* ---- a fixed symbol table ---- */

typedef struct symbol {
  const char *name;
  int type;
  size_t slot;
} symbol;

static const symbol symbols_table[] = {
    {"a", TDM__EXPR_NUMBER, 0},     {"b", TDM__EXPR_NUMBER, 1},
    {"c", TDM__EXPR_NUMBER, 2},     {"m", TDM__EXPR_NUMBER, 3},
    {"zero", TDM__EXPR_NUMBER, 4},  {"amount", TDM__EXPR_NUMBER, 5},
    {"score", TDM__EXPR_NUMBER, 6}, {"log", TDM__EXPR_NUMBER, 7},
    {"s", TDM__EXPR_STRING, 0},     {"t", TDM__EXPR_STRING, 1},
    {"u", TDM__EXPR_STRING, 2},     {"ms", TDM__EXPR_STRING, 3},
    {"empty", TDM__EXPR_STRING, 4}, {"quote", TDM__EXPR_STRING, 5},
};

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

static const tdm__expr_symbols symbols = {NULL, lookup};

static const double numbers[] = {2.0, 3.0, -1.5, NAN, 0.0, 100.0, 0.95, 7.0};
static const tdm__str strings[] = {{"visa", 4}, {"visa", 4}, {"mc", 2},
                                   {NULL, 0},   {"", 0},     {"it's \"x\"", 8}};

static int same_bits(double x, double y) {
  if (isnan(x) && isnan(y)) return 1;
  return memcmp(&x, &y, sizeof x) == 0;
}

/* Compiles and evaluates text at time_ms; 0 on success. */
static int evaluate_at(const char *text, int64_t time_ms, double *result) {
  tdm__expr *e;
  tdm__expr_error err;
  int rc = tdm__expr_compile(text, &symbols, &e, &err);
  if (rc != TDM_OK) {
    fprintf(stderr, "\"%s\" does not compile: %s\n", text, err.message);
    return 1;
  }
  tdm__expr_values v = {numbers, strings, time_ms};
  *result = tdm__expr_eval(e, &v);
  tdm__expr_free(e);
  return 0;
}

typedef struct value_case {
  const char *text;
  double expected;
} value_case;

static int check_cases(const value_case *cases, size_t n, int64_t time_ms) {
  int failed = 0;
  for (size_t i = 0; i < n; i++) {
    double got;
    if (evaluate_at(cases[i].text, time_ms, &got)) {
      failed = 1;
      continue;
    }
    if (!same_bits(got, cases[i].expected)) {
      fprintf(stderr, "\"%s\" gives %.17g, expected %.17g\n", cases[i].text,
              got, cases[i].expected);
      failed = 1;
    }
  }
  return failed;
}

#define CHECK_CASES(cases, time_ms) \
  CHECK(check_cases(cases, sizeof cases / sizeof cases[0], time_ms) == 0)

TEST(expr_operators_and_functions) {
  static const value_case cases[] = {
      {"1", 1},
      {"2.5", 2.5},
      {"1e-3", 1e-3},
      {".5 + 5.", 5.5},
      {"1E+2", 100},
      {"true", 1},
      {"false", 0},
      {"a + b", 5},
      {"a - b", -1},
      {"a * b", 6},
      {"b / a", 1.5},
      {"7 % 3", 1},
      {"-7 % 3", -1},
      {"7.5 % 2", 1.5},
      {"1 / 0", INFINITY},
      {"-a", -2},
      {"- -a", 2},
      {"--a", 2},
      {"a == 2", 1},
      {"a == 3", 0},
      {"a != 3", 1},
      {"a != 2", 0},
      {"a < b", 1},
      {"b < a", 0},
      {"a <= 2", 1},
      {"a > 2", 0},
      {"a >= 2", 1},
      {"a in [1, 2, 3]", 1},
      {"a in [1, 3]", 0},
      {"a in []", 0},
      {"c in [-1.5]", 1},
      {"1 in [true]", 1},
      {"a not in [1, 3]", 1},
      {"a not in [2]", 0},
      {"a not in []", 1},
      {"a and b", 1},
      {"a and zero", 0},
      {"a && b", 1},
      {"zero or a", 1},
      {"zero || zero", 0},
      {"a or b", 1},
      {"not a", 0},
      {"not zero", 1},
      {"!zero", 1},
      {"b and 5", 1}, /* 0/1, not the operand */
      {"log(amount)", log(100.0)},
      {"log(zero)", -INFINITY},
      {"log(c)", NAN},
      {"log1p(amount)", log1p(100.0)},
      {"exp(a)", exp(2.0)},
      {"sqrt(amount)", 10},
      {"sqrt(c)", NAN},
      {"abs(c)", 1.5},
      {"floor(c)", -2},
      {"ceil(c)", -1},
      {"round(2.5)", 3},
      {"round(-2.5)", -3},
      {"round(c)", -2},
      {"round(0.49999999999999994)", 0},
      {"pow(a, b)", 8},
      {"pow(a, 0.5)", sqrt(2.0)},
      {"min(a, b)", 2},
      {"min(b, a, c)", -1.5},
      {"max(a, b, c)", 3},
      {"clip(amount, 0, 10)", 10},
      {"clip(c, 0, 10)", 0},
      {"clip(a, 0, 10)", 2},
      {"if(a > 1, 10, 20)", 10},
      {"if(a > 2, 10, 20)", 20},
      {"if(zero, 10, 20)", 20},
      {"is_missing(a)", 0},
      {"is_missing(m)", 1},
      {"score >= 0.9", 1},
      {"log", 7}, /* a name that is also a function */
      {"log(log)", log(7.0)},
  };
  CHECK_CASES(cases, 0);
  return 0;
}

TEST(expr_missing_values) {
  static const value_case cases[] = {
      {"m", NAN},
      {"m + 1", NAN},
      {"-m", NAN},
      {"m * 0", NAN},
      {"log(m)", NAN},
      {"pow(m, 0)", 1}, /* libm: pow(x, 0) is 1 even for NaN */
      {"clip(m, 0, 1)", NAN},
      {"clip(a, m, 1)", NAN},
      {"floor(m)", NAN},
      {"m == m", 0},
      {"m != m", 0},
      {"m != 1", 0},
      {"1 != m", 0},
      {"m < 1", 0},
      {"m <= 1", 0},
      {"m > 1", 0},
      {"m >= 1", 0},
      {"m in [1, 2]", 0},
      {"m not in [1, 2]", 0},
      {"m not in []", 0},
      {"not m", 1},
      {"not (m == 1)", 1},
      {"m and 1", 0},
      {"1 and m", 0},
      {"m or 1", 1},
      {"m or 0", 0},
      {"m or m", 0},
      {"if(m, 10, 20)", 20},
      {"if(1, m, 20)", NAN},
      {"min(m, a)", 2},
      {"min(a, m)", 2},
      {"max(m, m)", NAN},
      {"max(m, c, m)", -1.5},
      {"is_missing(m + 1)", 1},
      {"is_missing(0 / 0)", 1},
      {"hour_of_day(m)", NAN},
      {"day_of_week(m)", NAN},
      {"hour_of_day(1 / 0)", NAN},
      {"day_of_week(1e300)", NAN},
  };
  CHECK_CASES(cases, 0);
  return 0;
}

TEST(expr_strings) {
  static const value_case cases[] = {
      {"s == 'visa'", 1},
      {"s == \"visa\"", 1},
      {"'visa' == s", 1},
      {"s == t", 1},
      {"s == u", 0},
      {"s != u", 1},
      {"s != t", 0},
      {"s == 'vis'", 0},
      {"s == 'visa '", 0},
      {"empty == ''", 1},
      {"empty == \"\"", 1},
      {"empty != ''", 0},
      {"'' == ''", 1},
      {"'a' == 'a'", 1},
      {"'a' != 'b'", 1},
      {"quote == 'it\\'s \"x\"'", 1},
      {"quote == \"it's \\\"x\\\"\"", 1},
      {"'\\\\' == '\\\\'", 1},
      /* A missing string is never equal or unequal to anything. */
      {"ms == 'visa'", 0},
      {"ms != 'visa'", 0},
      {"ms == ms", 0},
      {"ms != ms", 0},
      {"ms == ''", 0},
      {"ms != ''", 0},
      {"s in ['mc', 'visa']", 1},
      {"s in ['mc']", 0},
      {"s in []", 0},
      {"s not in ['mc']", 1},
      {"s not in ['visa']", 0},
      {"ms in ['visa']", 0},
      {"ms not in ['visa']", 0},
      {"ms not in []", 0},
      {"empty in ['']", 1},
      {"is_missing(ms)", 1},
      {"is_missing(s)", 0},
      {"is_missing(empty)", 0},
      {"is_missing('x')", 0},
      {"s == 'visa' and amount > 50", 1},
      {"not s == 'visa'", 0},
  };
  CHECK_CASES(cases, 0);
  return 0;
}

TEST(expr_precedence_and_associativity) {
  static const value_case cases[] = {
      {"1 + 2 * 3", 7},
      {"(1 + 2) * 3", 9},
      {"10 - 4 - 3", 3},
      {"10 - (4 - 3)", 9},
      {"64 / 4 / 2", 8},
      {"17 % 5 % 3", 2},
      {"2 * 3 % 4", 2},
      {"-2 * 3", -6},
      {"-a + b", 1},
      {"-pow(2, 2)", -4},
      {"1 + 1 == 2", 1},
      {"1 < 2 == 1", 1}, /* (1 < 2) == 1 */
      {"3 > 2 > 1", 0},  /* (3 > 2) > 1 */
      {"1 + 1 in [2]", 1},
      {"not 1 == 2", 1},        /* not (1 == 2) */
      {"not zero and zero", 0}, /* (not zero) and zero */
      {"not not a", 1},
      {"zero and zero or 1", 1}, /* (zero and zero) or 1 */
      {"1 or zero and zero", 1}, /* 1 or (zero and zero) */
      {"zero and (zero or 1)", 0},
      {"a == 2 and b == 3 or zero", 1},
      {"! a == 2", 0},
      {"!a == 1", 1}, /* not (a == 1), not (not a) == 1 */
      {"not a == 1", 1},
      {"(not a) == 1", 0},
      {" \t\n1\r\n+\t2 ", 3},
  };
  CHECK_CASES(cases, 0);
  return 0;
}

TEST(expr_time_functions) {
  /* 2024-02-29T23:59:59Z, a Thursday. */
  static const value_case leap_day[] = {
      {"hour_of_day()", 23},
      {"day_of_week()", 3},
      {"hour_of_day(1709251199000)", 23},
      {"day_of_week(1709251199000)", 3},
      {"day_of_week(1709251199000 + 1000)", 4}, /* Friday 00:00:00 */
      {"hour_of_day(1709251199000 + 1000)", 0},
      {"day_of_week(1709510400000)", 0}, /* 2024-03-04, a Monday */
      {"day_of_week(1709510400000 - 1)", 6},
      {"hour_of_day(0)", 0},
      {"day_of_week(0)", 3}, /* 1970-01-01, a Thursday */
      {"hour_of_day(-1)", 23},
      {"day_of_week(-1)", 2},
      {"hour_of_day(-3600000)", 23},
      {"hour_of_day(-3600001)", 22},
      {"day_of_week(-2208969000000)", 0}, /* 1900-01-01T05:30Z, Monday */
      {"hour_of_day(-2208969000000)", 5},
      {"hour_of_day(3600000.9)", 1},
      {"hour_of_day(-0.5)", 23},
  };
  CHECK_CASES(leap_day, INT64_C(1709251199000));
  static const value_case before_1970[] = {
      {"hour_of_day()", 5},
      {"day_of_week()", 0},
  };
  CHECK_CASES(before_1970, INT64_C(-2208969000000));
  static const value_case extremes[] = {{"hour_of_day() >= 0", 1},
                                        {"day_of_week() >= 0", 1}};
  CHECK_CASES(extremes, INT64_MIN);
  CHECK_CASES(extremes, INT64_MAX);

  tdm__expr *e;
  CHECK_INT(tdm__expr_compile("hour_of_day() + a", &symbols, &e, NULL), 0);
  CHECK_INT(tdm__expr_uses_time(e), 1);
  tdm__expr_free(e);
  CHECK_INT(tdm__expr_compile("hour_of_day(a)", &symbols, &e, NULL), 0);
  CHECK_INT(tdm__expr_uses_time(e), 0);
  tdm__expr_free(e);
  return 0;
}

typedef struct error_case {
  const char *text;
  size_t column;
  const char *message;
} error_case;

TEST(expr_compile_errors) {
  static const error_case cases[] = {
      {"", 1, "empty expression"},
      {"   ", 4, "empty expression"},
      {"a +", 4, "expected a number, a string, a name or '(', found the end"},
      {"a + )", 5, "found \")\""},
      {"lg(a)", 1, "unknown function \"lg\" (known: log, log1p, exp"},
      {"amt + 1", 1, "unknown name \"amt\""},
      {"1 + amt", 5, "unknown name \"amt\""},
      {"log(a, b)", 8, "log takes 1 argument"},
      {"pow(a)", 6, "pow takes 2 arguments, not 1"},
      {"log()", 5, "log takes 1 argument, not 0"},
      {"min(a)", 6, "min takes at least 2 arguments, not 1"},
      {"clip(a, b)", 10, "clip takes 3 arguments, not 2"},
      {"is_missing(a, b)", 15, "is_missing takes 1 argument"},
      {"hour_of_day(a, b)", 16, "hour_of_day takes at most 1 arguments"},
      {"min(a b)", 7, "expected ',' or ')' after an argument"},
      {"min(a,", 7, "found the end of the expression"},
      {"s + 1", 3, "'+' needs numbers, but its left operand is a string"},
      {"1 * s", 3, "'*' needs numbers, but its right operand is a string"},
      {"s == 1", 3, "'==' compares a string with a number"},
      {"a != s", 3, "'!=' compares a number with a string"},
      {"a < s", 3, "'<' needs numbers, but its right operand is a string"},
      {"s >= 'x'", 3, "'>=' needs numbers, but its left operand"},
      {"s", 1, "the expression gives a string"},
      {"(s)", 1, "the expression gives a string"},
      {"log(s)", 5, "log needs numbers, but argument 1 is a string"},
      {"min(a, s)", 8, "min needs numbers, but argument 2 is a string"},
      {"if(s, 1, 2)", 4, "if needs numbers, but argument 1 is a string"},
      {"-s", 1, "'-' needs numbers, but its operand is a string"},
      {"not s", 1, "'not' needs a number, but its operand is a string"},
      {"!s", 1, "'!' needs a number"},
      {"a and s", 3, "'and' needs numbers, but its right operand"},
      {"s || a", 3, "'||' needs numbers, but its left operand"},
      {"s in [1, 2]", 7,
       "'in' compares a string with a list item that is a "
       "number"},
      {"a not in ['x']", 11, "'not in' compares a number with a list item"},
      {"a in [b]", 7, "expected a number or a string (a list holds literals"},
      {"a in [1 2]", 9, "expected ',' or ']' in the list"},
      {"a in [-'x']", 8, "expected a number or a string"},
      {"a in 1", 6, "expected '[' after 'in'"},
      {"a not in 1", 10, "expected '[' after 'not in'"},
      {"a not b", 3, "unexpected \"not\" after a complete expression"},
      {"'abc", 1, "string not closed"},
      {"s == \"abc", 6, "string not closed"},
      {"s == 'a\\", 6, "string not closed"},
      {"'a\\n' == s", 3, "unknown escape \"\\n\""},
      {"a = 1", 3, "'=' is not an operator; compare with '=='"},
      {"a & b", 3, "use 'and' or '&&'"},
      {"a | b", 3, "use 'or' or '||'"},
      {"a # b", 3, "unexpected character '#'"},
      {"a \x01", 3, "unexpected byte 0x01"},
      {"1e", 1, "malformed number \"1e\""},
      {"1.2.3", 1, "malformed number \"1.2.3\""},
      {"a + 2x", 5, "malformed number \"2x\""},
      {"(a + 1", 7, "expected ')', found the end of the expression"},
      {"a b", 3, "unexpected \"b\" after a complete expression"},
      {"a)", 2, "one ')' too many"},
      {"()", 2, "expected a number"},
      {"[1]", 1, "expected a number"},
      {"a in [1,]", 9, "expected a number or a string"},
      {"1 + not a", 5,
       "expected a number, a string, a name or '(', found \"not\""},
  };
  int failed = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tdm__expr *e = (tdm__expr *)&failed; /* must be reset to NULL */
    tdm__expr_error err;
    int rc = tdm__expr_compile(cases[i].text, &symbols, &e, &err);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "column %zu: ", cases[i].column);
    if (rc != TDM_EPARSE || e != NULL || err.column != cases[i].column ||
        strncmp(err.message, prefix, strlen(prefix)) != 0 ||
        strstr(err.message, cases[i].message) == NULL) {
      fprintf(stderr,
              "\"%s\": rc %d, column %zu, \"%s\"; expected column %zu "
              "and \"%s\"\n",
              cases[i].text, rc, err.column, err.message, cases[i].column,
              cases[i].message);
      failed = 1;
    }
    if (rc == TDM_OK) tdm__expr_free(e);
  }
  CHECK(!failed);

  /* Without a symbol table every name is unknown; err may be NULL. */
  tdm__expr *e;
  tdm__expr_error err;
  CHECK_INT(tdm__expr_compile("x", NULL, &e, &err), TDM_EPARSE);
  CHECK_STR(err.message, "column 1: unknown name \"x\"");
  CHECK_INT(tdm__expr_compile("x", NULL, &e, NULL), TDM_EPARSE);
  CHECK(e == NULL);
  return 0;
}

static char *repeat(const char *head, const char *middle, size_t n,
                    const char *tail, const char *close) {
  size_t len =
      strlen(head) + n * strlen(middle) + strlen(tail) + n * strlen(close) + 1;
  char *s = malloc(len);
  if (s == NULL) return NULL;
  strcpy(s, head);
  for (size_t i = 0; i < n; i++) strcat(s, middle);
  strcat(s, tail);
  for (size_t i = 0; i < n; i++) strcat(s, close);
  return s;
}

static int compile_status(const char *text, tdm__expr_error *err,
                          double *value) {
  tdm__expr *e;
  int rc = tdm__expr_compile(text, &symbols, &e, err);
  if (rc == TDM_OK) {
    tdm__expr_values v = {numbers, strings, 0};
    *value = tdm__expr_eval(e, &v);
    tdm__expr_free(e);
  }
  return rc;
}

TEST(expr_size_and_depth_limits) {
  tdm__expr_error err;
  double value = 0;

  /* 64 levels of parentheses are allowed, 65 are not. */
  char *text = repeat("", "(", 64, "a", ")");
  CHECK_INT(compile_status(text, &err, &value), TDM_OK);
  CHECK(value == 2);
  free(text);
  text = repeat("", "(", 65, "a", ")");
  CHECK_INT(compile_status(text, &err, &value), TDM_EPARSE);
  CHECK_INT(err.column, 65);
  CHECK_CONTAINS(err.message, "nested more than 64 levels deep");
  free(text);
  text = repeat("", "-", 65, "a", "");
  CHECK_INT(compile_status(text, &err, &value), TDM_EPARSE);
  CHECK_CONTAINS(err.message, "nested more than 64 levels deep");
  free(text);
  text = repeat("", "not ", 65, "a", "");
  CHECK_INT(compile_status(text, &err, &value), TDM_EPARSE);
  CHECK_CONTAINS(err.message, "nested more than 64 levels deep");
  free(text);
  text = repeat("", "abs(", 65, "a", ")");
  CHECK_INT(compile_status(text, &err, &value), TDM_EPARSE);
  CHECK_INT(err.column, 257);
  free(text);

  /* Stack depth: min of 62 names and a min of 2 needs 64 values at once;
   * of 63 names and a min of 2, 65. */
  text = repeat("min(", "a, ", 62, "min(a, a))", "");
  CHECK_INT(compile_status(text, &err, &value), TDM_OK);
  CHECK(value == 2);
  free(text);
  text = repeat("min(", "a, ", 63, "min(a, a))", "");
  CHECK_INT(compile_status(text, &err, &value), TDM_EPARSE);
  CHECK_INT(err.column, 1);
  CHECK_CONTAINS(err.message, "too deep to evaluate");
  free(text);
  /* Right-nested sums: each level keeps one value pending. */
  text = repeat("", "a + (", 63, "a", ")");
  CHECK_INT(compile_status(text, &err, &value), TDM_OK);
  CHECK(value == 128);
  free(text);
  /* Folded constants need no stack, however deep they were. */
  text = repeat("", "1 + (", 63, "1", ")");
  CHECK_INT(compile_status(text, &err, &value), TDM_OK);
  CHECK(value == 64);
  free(text);
  text = repeat("min(", "1, ", 63, "min(1, 1))", "");
  CHECK_INT(compile_status(text, &err, &value), TDM_EPARSE);
  CHECK_CONTAINS(err.message, "too deep to evaluate");
  free(text);
  /* More than 64 arguments. */
  text = repeat("max(", "a, ", 64, "a)", "");
  CHECK_INT(compile_status(text, &err, &value), TDM_EPARSE);
  CHECK_INT(err.column, 4 + 64 * 3 + 1);
  CHECK_CONTAINS(err.message, "max takes at most 64 arguments");
  free(text);

  /* Long left-associative chains need two values only: 4096 bytes. */
  text = repeat("", "a+", 2047, "a ", "");
  CHECK_INT(strlen(text), 4096);
  CHECK_INT(compile_status(text, &err, &value), TDM_OK);
  CHECK(value == 4096);
  free(text);
  text = repeat("", "a+", 2048, "a", "");
  CHECK_INT(compile_status(text, &err, &value), TDM_EPARSE);
  CHECK_INT(err.column, 4097);
  CHECK_CONTAINS(err.message, "longer than 4096 bytes");
  free(text);
  return 0;
}

TEST(expr_refs) {
  tdm__expr *e;
  CHECK_INT(tdm__expr_compile("b + a * b + log1p(amount) + (s == u) + "
                              "(u in ['x']) + is_missing(ms) + a",
                              &symbols, &e, NULL),
            0);
  const size_t *slots;
  CHECK_INT(tdm__expr_refs(e, TDM__EXPR_NUMBER, &slots), 3);
  CHECK(slots[0] == 0 && slots[1] == 1 && slots[2] == 5);
  CHECK_INT(tdm__expr_refs(e, TDM__EXPR_STRING, &slots), 3);
  CHECK(slots[0] == 0 && slots[1] == 2 && slots[2] == 3);
  tdm__expr_free(e);
  CHECK_INT(tdm__expr_compile("1 + 2", &symbols, &e, NULL), 0);
  CHECK_INT(tdm__expr_refs(e, TDM__EXPR_NUMBER, &slots), 0);
  CHECK_INT(tdm__expr_refs(e, TDM__EXPR_STRING, &slots), 0);
  tdm__expr_free(e);
  tdm__expr_free(NULL);
  return 0;
}

TEST(expr_out_of_memory) {
  const char *text =
      "if(s in ['a', 'b'], log1p(amount) * 2, min(a, b, 3)) "
      "+ (u == 'mc' and a not in [1, 2]) + 1 + 2";
  for (long countdown = 0;; countdown++) {
    tdm__expr *e;
    tdm__expr_error err;
    tdm__alloc_fail_after(countdown);
    int rc = tdm__expr_compile(text, &symbols, &e, &err);
    tdm__alloc_fail_after(-1);
    if (rc == TDM_OK) {
      tdm__expr_values v = {numbers, strings, 0};
      CHECK(tdm__expr_eval(e, &v) == 2 + 0 + 1 + 2);
      tdm__expr_free(e);
      CHECK(countdown > 0);
      break;
    }
    CHECK_INT(rc, TDM_ENOMEM);
    CHECK(e == NULL);
    CHECK_CONTAINS(err.message, "out of memory");
  }
  return 0;
}

/* ---- the differential test ---- */

enum {
  R_CONST,
  R_VAR,
  R_NEG,
  R_NOT,
  R_BINARY, /* op in text */
  R_IN,
  R_NOT_IN,
  R_CALL /* name in text */
};

typedef struct tree {
  int kind;
  const char *text; /* operator or function name */
  double value;     /* R_CONST */
  int slot;         /* R_VAR */
  int n;
  struct tree *kids[4];
  double list[4]; /* R_IN */
  int list_len;
} tree;

#define NUM_VARS 8
static double vars[NUM_VARS];

static uint64_t rng_state;
static uint64_t next_random(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}
static int pick(int n) { return (int)(next_random() % (uint64_t)n); }

static double random_constant(void) {
  static const double nice[] = {0,   1,    2,     0.5, 3.25, 1e-3, 7,
                                100, 1e10, 1e300, 24,  1e12, 0.1,  3};
  if (pick(3) == 0) {
    double x = (double)(next_random() >> 11) / 9007199254740992.0;
    return x * pow(10.0, pick(12) - 4);
  }
  return nice[pick((int)(sizeof nice / sizeof nice[0]))];
}

static const char *binary_ops[] = {"+",  "-",   "*",  "/",  "%",
                                   "==", "!=",  "<",  "<=", ">",
                                   ">=", "and", "or", "&&", "||"};
static const struct {
  const char *name;
  int args; /* 0: 2 to 4 */
} calls[] = {
    {"log", 1}, {"log1p", 1},      {"exp", 1},         {"sqrt", 1},
    {"abs", 1}, {"floor", 1},      {"ceil", 1},        {"round", 1},
    {"pow", 2}, {"min", 0},        {"max", 0},         {"clip", 3},
    {"if", 3},  {"is_missing", 1}, {"hour_of_day", 1}, {"day_of_week", 1}};

static tree *random_tree(int depth) {
  tree *t = calloc(1, sizeof *t);
  if (t == NULL) abort();
  int choice = depth <= 0 ? pick(2) : pick(12);
  switch (choice) {
    case 0:
      t->kind = R_CONST;
      t->value = random_constant();
      return t;
    case 1:
      t->kind = R_VAR;
      t->slot = pick(NUM_VARS);
      return t;
    case 2: t->kind = R_NEG; break;
    case 3:
      t->kind = R_NOT;
      t->text = pick(2) ? "not " : "!";
      break;
    case 4:
    case 5:
    case 6:
    case 7:
      t->kind = R_BINARY;
      t->text = binary_ops[pick((int)(sizeof binary_ops / sizeof *binary_ops))];
      t->n = 2;
      break;
    case 8:
      t->kind = pick(2) ? R_IN : R_NOT_IN;
      t->list_len = pick(4);
      for (int i = 0; i < t->list_len; i++)
        t->list[i] = pick(2) ? random_constant() : vars[pick(NUM_VARS)];
      t->n = 1;
      break;
    default: {
      int f = pick((int)(sizeof calls / sizeof calls[0]));
      t->kind = R_CALL;
      t->text = calls[f].name;
      t->n = calls[f].args ? calls[f].args : 2 + pick(3);
      break;
    }
  }
  if (t->kind == R_NEG || t->kind == R_NOT) t->n = 1;
  for (int i = 0; i < t->n; i++) t->kids[i] = random_tree(depth - 1);
  return t;
}

static void free_tree(tree *t) {
  for (int i = 0; i < t->n; i++) free_tree(t->kids[i]);
  free(t);
}

/* Renders a number so that it reads back as the same double; a negative
 * one as a negation, the way the parser takes it. */
static void render_number(char *out, size_t size, double x) {
  if (isnan(x)) {
    snprintf(out, size, "(0/0)");
  } else if (isinf(x)) {
    snprintf(out, size, "(%s1/0)", x < 0 ? "-" : "");
  } else {
    snprintf(out, size, "%s%.17g", signbit(x) ? "-" : "", fabs(x));
  }
}

static void render(const tree *t, char *out, size_t size) {
  size_t len = strlen(out);
  char number[64];
#define APPEND(...) \
  (len += (size_t)snprintf(out + len, len < size ? size - len : 0, __VA_ARGS__))
  switch (t->kind) {
    case R_CONST:
      render_number(number, sizeof number, t->value);
      APPEND("(%s)", number);
      return;
    case R_VAR: APPEND("v%d", t->slot); return;
    case R_NEG: APPEND("-("); break;
    case R_NOT: APPEND("(%s(", t->text); break; /* binds loosely */
    case R_BINARY:
      APPEND("(");
      render(t->kids[0], out, size);
      len = strlen(out);
      APPEND(" %s ", t->text);
      render(t->kids[1], out, size);
      len = strlen(out);
      APPEND(")");
      return;
    case R_IN:
    case R_NOT_IN:
      APPEND("(");
      render(t->kids[0], out, size);
      len = strlen(out);
      APPEND(" %sin [", t->kind == R_NOT_IN ? "not " : "");
      for (int i = 0; i < t->list_len; i++) {
        /* A list holds literals only: NaN and infinities cannot appear. */
        double x = t->list[i];
        if (!isfinite(x)) x = 0;
        render_number(number, sizeof number, x);
        APPEND("%s%s", i ? ", " : "", number);
      }
      APPEND("])");
      return;
    case R_CALL: APPEND("%s(", t->text); break;
  }
  for (int i = 0; i < t->n; i++) {
    if (i) APPEND(", ");
    render(t->kids[i], out, size);
    len = strlen(out);
  }
  APPEND(t->kind == R_NOT ? "))" : ")");
#undef APPEND
}

static int truth(double x) { return x != 0 && !isnan(x); }

/* The reference: each operator straight from docs/expressions.md. */
static double hour_ref(double x) {
  if (isnan(x) || fabs(x) > 9.2e18) return NAN;
  int64_t ms = (int64_t)floor(x);
  int64_t h = ms / 3600000 - (ms % 3600000 < 0);
  return (double)(((h % 24) + 24) % 24);
}
static double day_ref(double x) {
  if (isnan(x) || fabs(x) > 9.2e18) return NAN;
  int64_t ms = (int64_t)floor(x);
  int64_t d = ms / 86400000 - (ms % 86400000 < 0);
  return (double)((((d + 3) % 7) + 7) % 7); /* 1970-01-01: Thursday */
}

static double reference(const tree *t) {
  double k[4];
  if (t->kind == R_CONST) return t->value;
  if (t->kind == R_VAR) return vars[t->slot];
  if (t->kind == R_BINARY) {
    double a = reference(t->kids[0]);
    const char *op = t->text;
    if (!strcmp(op, "and") || !strcmp(op, "&&"))
      return truth(a) && truth(reference(t->kids[1])) ? 1.0 : 0.0;
    if (!strcmp(op, "or") || !strcmp(op, "||"))
      return truth(a) || truth(reference(t->kids[1])) ? 1.0 : 0.0;
    double b = reference(t->kids[1]);
    if (!strcmp(op, "+")) return a + b;
    if (!strcmp(op, "-")) return a - b;
    if (!strcmp(op, "*")) return a * b;
    if (!strcmp(op, "/")) return a / b;
    if (!strcmp(op, "%")) return fmod(a, b);
    if (isnan(a) || isnan(b)) return 0.0;
    if (!strcmp(op, "==")) return a == b;
    if (!strcmp(op, "!=")) return a != b;
    if (!strcmp(op, "<")) return a < b;
    if (!strcmp(op, "<=")) return a <= b;
    if (!strcmp(op, ">")) return a > b;
    return a >= b;
  }
  if (t->kind == R_CALL && !strcmp(t->text, "if")) {
    return truth(reference(t->kids[0])) ? reference(t->kids[1])
                                        : reference(t->kids[2]);
  }
  for (int i = 0; i < t->n; i++) k[i] = reference(t->kids[i]);
  switch (t->kind) {
    case R_NEG: return -k[0];
    case R_NOT: return truth(k[0]) ? 0.0 : 1.0;
    case R_IN:
    case R_NOT_IN: {
      if (isnan(k[0])) return 0.0;
      int found = 0;
      for (int i = 0; i < t->list_len; i++)
        found |= k[0] == (isfinite(t->list[i]) ? t->list[i] : 0);
      return t->kind == R_IN ? found : !found;
    }
    default: break;
  }
  const char *f = t->text;
  if (!strcmp(f, "log")) return log(k[0]);
  if (!strcmp(f, "log1p")) return log1p(k[0]);
  if (!strcmp(f, "exp")) return exp(k[0]);
  if (!strcmp(f, "sqrt")) return sqrt(k[0]);
  if (!strcmp(f, "abs")) return fabs(k[0]);
  if (!strcmp(f, "floor")) return floor(k[0]);
  if (!strcmp(f, "ceil")) return ceil(k[0]);
  if (!strcmp(f, "round")) return round(k[0]);
  if (!strcmp(f, "pow")) return pow(k[0], k[1]);
  if (!strcmp(f, "is_missing")) return isnan(k[0]) ? 1.0 : 0.0;
  if (!strcmp(f, "hour_of_day")) return hour_ref(k[0]);
  if (!strcmp(f, "day_of_week")) return day_ref(k[0]);
  if (!strcmp(f, "clip")) {
    if (isnan(k[0]) || isnan(k[1]) || isnan(k[2])) return NAN;
    return k[0] < k[1] ? k[1] : k[0] > k[2] ? k[2] : k[0];
  }
  /* min, max: the first of the smallest (largest) present value. */
  double r = NAN;
  for (int i = 0; i < t->n; i++) {
    if (isnan(k[i])) continue;
    if (isnan(r) || (!strcmp(f, "min") ? k[i] < r : k[i] > r)) r = k[i];
  }
  return r;
}

static int lookup_v(void *ctx, const char *name, size_t len, int *type,
                    size_t *slot) {
  (void)ctx;
  if (len != 2 || name[0] != 'v' || name[1] < '0' || name[1] >= '0' + NUM_VARS)
    return -1;
  *type = TDM__EXPR_NUMBER;
  *slot = (size_t)(name[1] - '0');
  return 0;
}

TEST(expr_matches_reference_on_random_trees) {
  static const double var_values[] = {
      0,         -0.0, 1,  -1, 2.5, -3.75, NAN,   NAN,           INFINITY,
      -INFINITY, 1e-3, 24, 7,  0.5, 1e300, -1e12, 1709251199000, -2208969000000,
      3};
  const tdm__expr_symbols vsymbols = {NULL, lookup_v};
  static char text[TDM__EXPR_MAX_LENGTH + 1];
  rng_state = 0x9E3779B97F4A7C15u;
  int compared = 0, failures = 0;
  for (int round_ = 0; round_ < 20000 && failures < 5; round_++) {
    for (int i = 0; i < NUM_VARS; i++)
      vars[i] = var_values[pick((int)(sizeof var_values / sizeof *var_values))];
    tree *t = random_tree(1 + pick(6));
    text[0] = '\0';
    render(t, text, sizeof text);
    if (strlen(text) > TDM__EXPR_MAX_LENGTH) {
      free_tree(t);
      continue;
    }
    tdm__expr *e;
    tdm__expr_error err;
    if (tdm__expr_compile(text, &vsymbols, &e, &err) != TDM_OK) {
      fprintf(stderr, "\"%s\" does not compile: %s\n", text, err.message);
      free_tree(t);
      failures++;
      continue;
    }
    /* Three sets of values per compiled expression. */
    for (int set = 0; set < 3; set++) {
      if (set > 0)
        for (int i = 0; i < NUM_VARS; i++)
          vars[i] =
              var_values[pick((int)(sizeof var_values / sizeof *var_values))];
      tdm__expr_values v = {vars, NULL, 0};
      double got = tdm__expr_eval(e, &v), want = reference(t);
      compared++;
      if (!same_bits(got, want)) {
        fprintf(stderr, "\"%s\" gives %.17g, the reference %.17g\n", text, got,
                want);
        failures++;
        break;
      }
    }
    tdm__expr_free(e);
    free_tree(t);
  }
  CHECK_INT(failures, 0);
  CHECK(compared > 50000);
  return 0;
}
