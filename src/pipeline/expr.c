/*
 * expr.c - compiles pipeline expressions (docs/expressions.md) and
 * evaluates them. Compilation is three steps: a lexer that reads one token
 * at a given offset (so the parser can peek without buffering), a
 * recursive-descent parser that builds a syntax tree and checks types as
 * each node is made (so an error names the operator's column), and an
 * emitter that walks the tree into postfix instructions, computing the
 * stack depth each node needs and folding every subtree made only of
 * constants by running the evaluator itself on the instructions just
 * emitted (so folding can never give other bits than evaluation would).
 * `and`, `or` and `if` compile to forward jumps. The evaluator is one loop
 * over the instructions with a fixed stack on the C stack; it never
 * allocates.
 */
#include "expr.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Instructions                                                            */
/* ---------------------------------------------------------------------- */

/* Stack effects are written [inputs -- outputs]. Jump offsets count
 * instructions after the jump, always forward. */
enum {
  OP_CONST,       /* [-- n] numbers[arg] */
  OP_LOAD,        /* [-- n] v->numbers[arg] */
  OP_STRING,      /* [-- s] strings[arg] */
  OP_LOAD_STRING, /* [-- s] v->strings[arg] */
  OP_NEG,
  OP_NOT,   /* [n -- 0|1] 1 when n is 0 or NaN */
  OP_TRUTH, /* [n -- 0|1] 1 when n is neither 0 nor NaN */
  OP_ADD,
  OP_SUB,
  OP_MUL,
  OP_DIV,
  OP_MOD,
  OP_EQ,
  OP_NE,
  OP_LT,
  OP_LE,
  OP_GT,
  OP_GE,
  OP_STRING_EQ, /* [s s -- 0|1] */
  OP_STRING_NE,
  OP_IN,            /* [n -- 0|1] numbers[arg .. arg+count) */
  OP_NOT_IN,        /* [n -- 0|1] */
  OP_STRING_IN,     /* [s -- 0|1] strings[arg .. arg+count) */
  OP_STRING_NOT_IN, /* [s -- 0|1] */
  OP_LOG,
  OP_LOG1P,
  OP_EXP,
  OP_SQRT,
  OP_ABS,
  OP_FLOOR,
  OP_CEIL,
  OP_ROUND,
  OP_POW,  /* [a b -- a^b] */
  OP_MIN,  /* [count numbers -- n] */
  OP_MAX,  /* [count numbers -- n] */
  OP_CLIP, /* [x lo hi -- n] */
  OP_IS_MISSING,
  OP_IS_MISSING_STRING,
  OP_HOUR,       /* [-- n] of the event time */
  OP_DAY,        /* [-- n] of the event time */
  OP_HOUR_OF,    /* [ms -- n] */
  OP_DAY_OF,     /* [ms -- n] */
  OP_JUMP,       /* jump by arg */
  OP_JUMP_FALSE, /* [n --] jump by arg when n is 0 or NaN */
  OP_AND_JUMP,   /* [n -- 0] and jump when n is false, else [n --] */
  OP_OR_JUMP,    /* [n -- 1] and jump when n is true, else [n --] */
  /* Not instructions: operators the parser handles with their own nodes. */
  OP_IF,
  OP_AND,
  OP_OR
};

typedef struct instruction {
  uint32_t op;
  uint32_t arg;
  uint32_t count;
} instruction;

struct tdm__expr {
  instruction *code;
  size_t code_len;
  double *numbers;
  tdm__str *strings;
  char *string_data;
  size_t *number_refs;
  size_t num_number_refs;
  size_t *string_refs;
  size_t num_string_refs;
  int uses_time;
};

/* ---------------------------------------------------------------------- */
/* Evaluation                                                              */
/* ---------------------------------------------------------------------- */

typedef union stack_value {
  double number;
  tdm__str string;
} stack_value;

static int truthy(double x) { return x != 0 && !isnan(x); }

static int same_string(tdm__str a, tdm__str b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* Floor division and remainder, so that times before 1970 fall in the
 * hour and day they belong to. */
static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && (a % b < 0) != (b < 0)) q--;
  return q;
}

static double hour_of_ms(int64_t ms) {
  int64_t hours = floor_div(ms, 3600000);
  return (double)(hours - floor_div(hours, 24) * 24);
}

/* 1970-01-01 was a Thursday: day 3 counting from Monday = 0. */
static double day_of_ms(int64_t ms) {
  int64_t days = floor_div(ms, 86400000) + 3;
  return (double)(days - floor_div(days, 7) * 7);
}

/* Epoch milliseconds given as a number: NaN when missing or beyond what
 * int64 holds (about 292 million years either side of 1970). */
static int ms_of_number(double x, int64_t *ms) {
  if (!(x >= -9.2e18 && x <= 9.2e18)) return 0;
  *ms = (int64_t)floor(x);
  return 1;
}

/* min() and max(): missing values are skipped; NaN when all are missing.
 * On ties the first wins, so -0 and 0 keep their order. */
static double min_of(const stack_value *s, size_t n, int want_max) {
  double r = NAN;
  for (size_t i = 0; i < n; i++) {
    double x = s[i].number;
    if (isnan(x)) continue;
    if (isnan(r) || (want_max ? x > r : x < r)) r = x;
  }
  return r;
}

static double clip(double x, double lo, double hi) {
  if (isnan(x) || isnan(lo) || isnan(hi)) return NAN;
  if (x < lo) return lo;
  if (x > hi) return hi;
  return x;
}

/*
 * Runs code[0..n). Used for evaluation and, at compile time, for folding a
 * subtree of constants (then v is NULL and the code reads no slot). The
 * compiler has checked that the stack never holds more than
 * TDM__EXPR_MAX_DEPTH values and that the code leaves exactly one number.
 */
static double run(const instruction *code, size_t n, const double *numbers,
                  const tdm__str *strings, const tdm__expr_values *v) {
  /* top points at the topmost value; stack[0] stays unused so that the
   * empty stack's top is a valid pointer. */
  stack_value stack[TDM__EXPR_MAX_DEPTH + 1];
  stack_value *top = stack;
  for (size_t pc = 0; pc < n; pc++) {
    const instruction *in = &code[pc];
    switch (in->op) {
      case OP_CONST: (++top)->number = numbers[in->arg]; break;
      case OP_LOAD: (++top)->number = v->numbers[in->arg]; break;
      case OP_STRING: (++top)->string = strings[in->arg]; break;
      case OP_LOAD_STRING: (++top)->string = v->strings[in->arg]; break;
      case OP_NEG: top->number = -top->number; break;
      case OP_NOT: top->number = truthy(top->number) ? 0.0 : 1.0; break;
      case OP_TRUTH: top->number = truthy(top->number) ? 1.0 : 0.0; break;
      case OP_ADD:
        top--;
        top->number = top->number + top[1].number;
        break;
      case OP_SUB:
        top--;
        top->number = top->number - top[1].number;
        break;
      case OP_MUL:
        top--;
        top->number = top->number * top[1].number;
        break;
      case OP_DIV:
        top--;
        top->number = top->number / top[1].number;
        break;
      case OP_MOD:
        top--;
        top->number = fmod(top->number, top[1].number);
        break;
      case OP_EQ:
        top--;
        top->number = top->number == top[1].number;
        break;
      case OP_NE: {
        double a = top[-1].number, b = top[0].number;
        top--;
        top->number = !isnan(a) && !isnan(b) && a != b;
        break;
      }
      case OP_LT:
        top--;
        top->number = top->number < top[1].number;
        break;
      case OP_LE:
        top--;
        top->number = top->number <= top[1].number;
        break;
      case OP_GT:
        top--;
        top->number = top->number > top[1].number;
        break;
      case OP_GE:
        top--;
        top->number = top->number >= top[1].number;
        break;
      case OP_STRING_EQ:
      case OP_STRING_NE: {
        tdm__str a = top[-1].string, b = top[0].string;
        top--;
        if (a.data == NULL || b.data == NULL)
          top->number = 0.0;
        else
          top->number = same_string(a, b) == (in->op == OP_STRING_EQ);
        break;
      }
      case OP_IN:
      case OP_NOT_IN: {
        double x = top->number;
        int found = 0;
        for (uint32_t i = 0; i < in->count && !found; i++)
          found = x == numbers[in->arg + i];
        top->number = isnan(x) ? 0.0 : (double)(found == (in->op == OP_IN));
        break;
      }
      case OP_STRING_IN:
      case OP_STRING_NOT_IN: {
        tdm__str x = top->string;
        int found = 0;
        if (x.data != NULL)
          for (uint32_t i = 0; i < in->count && !found; i++)
            found = same_string(x, strings[in->arg + i]);
        top->number =
            x.data == NULL ? 0.0 : (double)(found == (in->op == OP_STRING_IN));
        break;
      }
      case OP_LOG: top->number = log(top->number); break;
      case OP_LOG1P: top->number = log1p(top->number); break;
      case OP_EXP: top->number = exp(top->number); break;
      case OP_SQRT: top->number = sqrt(top->number); break;
      case OP_ABS: top->number = fabs(top->number); break;
      case OP_FLOOR: top->number = floor(top->number); break;
      case OP_CEIL: top->number = ceil(top->number); break;
      case OP_ROUND: top->number = round(top->number); break;
      case OP_POW:
        top--;
        top->number = pow(top->number, top[1].number);
        break;
      case OP_MIN:
      case OP_MAX:
        top -= in->count - 1;
        top->number = min_of(top, in->count, in->op == OP_MAX);
        break;
      case OP_CLIP:
        top -= 2;
        top->number = clip(top[0].number, top[1].number, top[2].number);
        break;
      case OP_IS_MISSING: top->number = isnan(top->number) ? 1.0 : 0.0; break;
      case OP_IS_MISSING_STRING:
        top->number = top->string.data == NULL ? 1.0 : 0.0;
        break;
      case OP_HOUR: (++top)->number = hour_of_ms(v->time_ms); break;
      case OP_DAY: (++top)->number = day_of_ms(v->time_ms); break;
      case OP_HOUR_OF:
      case OP_DAY_OF: {
        int64_t ms;
        if (!ms_of_number(top->number, &ms))
          top->number = NAN;
        else
          top->number = in->op == OP_HOUR_OF ? hour_of_ms(ms) : day_of_ms(ms);
        break;
      }
      case OP_JUMP: pc += in->arg; break;
      case OP_JUMP_FALSE:
        if (!truthy((top--)->number)) pc += in->arg;
        break;
      case OP_AND_JUMP:
        if (!truthy(top->number)) {
          top->number = 0.0;
          pc += in->arg;
        } else {
          top--;
        }
        break;
      case OP_OR_JUMP:
        if (truthy(top->number)) {
          top->number = 1.0;
          pc += in->arg;
        } else {
          top--;
        }
        break;
      default: assert(!"unknown instruction"); return NAN;
    }
  }
  assert(top == stack + 1);
  return top->number;
}

double tdm__expr_eval(const tdm__expr *e, const tdm__expr_values *v) {
  return run(e->code, e->code_len, e->numbers, e->strings, v);
}

size_t tdm__expr_refs(const tdm__expr *e, int type, const size_t **slots) {
  if (type == TDM__EXPR_STRING) {
    *slots = e->string_refs;
    return e->num_string_refs;
  }
  *slots = e->number_refs;
  return e->num_number_refs;
}

int tdm__expr_uses_time(const tdm__expr *e) { return e->uses_time; }

void tdm__expr_free(tdm__expr *e) {
  if (e == NULL) return;
  tdm__free(e->code);
  tdm__free(e->numbers);
  tdm__free(e->strings);
  tdm__free(e->string_data);
  tdm__free(e->number_refs);
  tdm__free(e->string_refs);
  tdm__free(e);
}

/* ---------------------------------------------------------------------- */
/* Functions                                                               */
/* ---------------------------------------------------------------------- */

/* The function table: a call is checked and compiled from its entry. */
typedef struct function {
  const char *name;
  unsigned min_args, max_args;
  int op;         /* with a number argument */
  int string_op;  /* with a string argument (is_missing), or -1 */
  int no_args_op; /* with no argument (the event time), or -1 */
} function;

static const function functions[] = {
    {"log", 1, 1, OP_LOG, -1, -1},
    {"log1p", 1, 1, OP_LOG1P, -1, -1},
    {"exp", 1, 1, OP_EXP, -1, -1},
    {"sqrt", 1, 1, OP_SQRT, -1, -1},
    {"abs", 1, 1, OP_ABS, -1, -1},
    {"floor", 1, 1, OP_FLOOR, -1, -1},
    {"ceil", 1, 1, OP_CEIL, -1, -1},
    {"round", 1, 1, OP_ROUND, -1, -1},
    {"pow", 2, 2, OP_POW, -1, -1},
    {"min", 2, TDM__EXPR_MAX_DEPTH, OP_MIN, -1, -1},
    {"max", 2, TDM__EXPR_MAX_DEPTH, OP_MAX, -1, -1},
    {"clip", 3, 3, OP_CLIP, -1, -1},
    {"if", 3, 3, OP_IF, -1, -1},
    {"is_missing", 1, 1, OP_IS_MISSING, OP_IS_MISSING_STRING, -1},
    {"hour_of_day", 0, 1, OP_HOUR_OF, -1, OP_HOUR},
    {"day_of_week", 0, 1, OP_DAY_OF, -1, OP_DAY},
};

#define NUM_FUNCTIONS (sizeof functions / sizeof functions[0])

/* ---------------------------------------------------------------------- */
/* Lexer                                                                   */
/* ---------------------------------------------------------------------- */

enum {
  T_END,
  T_NUMBER,
  T_STRING,
  T_NAME,
  T_AND,
  T_OR,
  T_NOT,
  T_IN,
  T_TRUE,
  T_FALSE,
  T_LPAREN,
  T_RPAREN,
  T_LBRACKET,
  T_RBRACKET,
  T_COMMA,
  T_PLUS,
  T_MINUS,
  T_STAR,
  T_SLASH,
  T_PERCENT,
  T_EQ,
  T_NE,
  T_LT,
  T_LE,
  T_GT,
  T_GE
};

typedef struct token {
  int kind;
  size_t start; /* byte offset */
  size_t len;
  double number; /* T_NUMBER */
} token;

/* A syntax tree node. Children are indices into compiler.children. */
enum { N_NUMBER, N_STRING, N_LOAD, N_LOAD_STRING, N_OP };

typedef struct node {
  int kind;
  int op;         /* N_OP: an OP_ code, or OP_IF, OP_AND, OP_OR */
  int type;       /* TDM__EXPR_NUMBER or TDM__EXPR_STRING */
  size_t start;   /* byte offset of its first token */
  double number;  /* N_NUMBER */
  uint32_t arg;   /* slot, string constant, or a list's first constant */
  uint32_t count; /* a list's length, min/max's argument count */
  size_t first_child, num_children;
} node;

typedef struct compiler {
  const char *text;
  size_t len;
  const tdm__expr_symbols *symbols;
  tdm__expr_error *err;
  int status;
  token tok; /* the current token */
  size_t nesting;

  node *nodes;
  size_t num_nodes, cap_nodes;
  size_t *children;
  size_t num_children, cap_children;

  instruction *code;
  size_t code_len, cap_code;
  double *numbers;
  size_t num_numbers, cap_numbers;
  /* String constants as (offset, length) into string_data until the end,
   * since string_data moves as it grows. */
  tdm__str *strings;
  size_t num_strings, cap_strings;
  tdm__buf string_data;
  size_t *number_refs;
  size_t num_number_refs, cap_number_refs;
  size_t *string_refs;
  size_t num_string_refs, cap_string_refs;
  int uses_time;
} compiler;

static int fail(compiler *c, size_t offset, const char *fmt, ...)
    TDM__PRINTF(3, 4);

/* Records a parse error at byte offset `offset` (the first error wins). */
static int fail(compiler *c, size_t offset, const char *fmt, ...) {
  if (c->status != TDM_OK) return -1;
  c->status = TDM_EPARSE;
  if (c->err != NULL) {
    char text[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    c->err->column = offset + 1;
    snprintf(c->err->message, sizeof c->err->message, "column %zu: %s",
             offset + 1, text);
  }
  return -1;
}

static int out_of_memory(compiler *c) {
  if (c->status != TDM_OK) return -1;
  c->status = TDM_ENOMEM;
  if (c->err != NULL) {
    c->err->column = 0;
    snprintf(c->err->message, sizeof c->err->message,
             "out of memory compiling an expression");
  }
  return -1;
}

/* Makes room for `need` elements of `size` bytes in *array. */
static int grow(compiler *c, void *array, size_t *cap, size_t need,
                size_t size) {
  if (need <= *cap) return 0;
  size_t new_cap = *cap ? *cap * 2 : 16;
  while (new_cap < need) new_cap *= 2;
  void *p = tdm__realloc(*(void **)array, new_cap * size);
  if (p == NULL) return out_of_memory(c);
  *(void **)array = p;
  *cap = new_cap;
  return 0;
}

static int is_name_start(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}
static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static int is_name_char(char ch) { return is_name_start(ch) || is_digit(ch); }

/* The keywords and the operators, as data. */
static const struct {
  const char *text;
  int kind;
} keywords[] = {{"and", T_AND}, {"or", T_OR},     {"not", T_NOT},
                {"in", T_IN},   {"true", T_TRUE}, {"false", T_FALSE}},
  operators[] = {
      {"==", T_EQ},      {"!=", T_NE},      {"<=", T_LE},    {">=", T_GE},
      {"&&", T_AND},     {"||", T_OR},      {"<", T_LT},     {">", T_GT},
      {"!", T_NOT},      {"+", T_PLUS},     {"-", T_MINUS},  {"*", T_STAR},
      {"/", T_SLASH},    {"%", T_PERCENT},  {"(", T_LPAREN}, {")", T_RPAREN},
      {"[", T_LBRACKET}, {"]", T_RBRACKET}, {",", T_COMMA}};

/* Reads the token at or after byte offset pos into *t. */
static int lex(compiler *c, size_t pos, token *t) {
  const char *s = c->text;
  while (pos < c->len &&
         (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r'))
    pos++;
  t->start = pos;
  t->len = 0;
  if (pos >= c->len) {
    t->kind = T_END;
    return 0;
  }
  char ch = s[pos];
  size_t end = pos;
  if (is_digit(ch) || (ch == '.' && pos + 1 < c->len && is_digit(s[pos + 1]))) {
    while (end < c->len && is_digit(s[end])) end++;
    if (end < c->len && s[end] == '.') {
      end++;
      while (end < c->len && is_digit(s[end])) end++;
    }
    if (end < c->len && (s[end] == 'e' || s[end] == 'E')) {
      size_t digits = end + 1;
      if (digits < c->len && (s[digits] == '+' || s[digits] == '-')) digits++;
      if (digits < c->len && is_digit(s[digits])) {
        end = digits;
        while (end < c->len && is_digit(s[end])) end++;
      }
    }
    size_t bad = end;
    while (bad < c->len && (is_name_char(s[bad]) || s[bad] == '.')) bad++;
    if (bad > end || tdm__parse_double(s + pos, end - pos, &t->number) != 0)
      return fail(c, pos, "malformed number \"%.*s\"", (int)(bad - pos),
                  s + pos);
    t->kind = T_NUMBER;
    t->len = end - pos;
    return 0;
  }
  if (is_name_start(ch)) {
    while (end < c->len && is_name_char(s[end])) end++;
    t->kind = T_NAME;
    t->len = end - pos;
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
      if (strlen(keywords[i].text) == t->len &&
          memcmp(keywords[i].text, s + pos, t->len) == 0)
        t->kind = keywords[i].kind;
    return 0;
  }
  if (ch == '"' || ch == '\'') {
    for (end = pos + 1; end < c->len && s[end] != ch; end++) {
      if (s[end] != '\\') continue;
      if (end + 1 >= c->len) {
        end = c->len; /* a backslash at the end escapes nothing */
        break;
      }
      char next = s[end + 1];
      if (next != '\\' && next != '"' && next != '\'') {
        return fail(c, end,
                    "unknown escape \"\\%c\" in a string (only \\\\, \\\" "
                    "and \\' are allowed)",
                    next);
      }
      end++;
    }
    if (end >= c->len)
      return fail(c, pos, "string not closed: no %c after it", ch);
    t->kind = T_STRING;
    t->len = end + 1 - pos;
    return 0;
  }
  for (size_t i = 0; i < sizeof operators / sizeof operators[0]; i++) {
    size_t n = strlen(operators[i].text);
    if (pos + n <= c->len && memcmp(operators[i].text, s + pos, n) == 0) {
      t->kind = operators[i].kind;
      t->len = n;
      return 0;
    }
  }
  if (ch == '=')
    return fail(c, pos, "'=' is not an operator; compare with '=='");
  if (ch == '&')
    return fail(c, pos, "'&' is not an operator; use 'and' or '&&'");
  if (ch == '|')
    return fail(c, pos, "'|' is not an operator; use 'or' or '||'");
  if ((unsigned char)ch >= 0x21 && (unsigned char)ch < 0x7f)
    return fail(c, pos, "unexpected character '%c'", ch);
  return fail(c, pos, "unexpected byte 0x%02x", (unsigned)(unsigned char)ch);
}

static int advance(compiler *c) {
  return lex(c, c->tok.start + c->tok.len, &c->tok);
}

/* How a token reads in a message: `')'`, `"amount"`, `the end`. */
static void describe(const compiler *c, const token *t, char *out,
                     size_t size) {
  if (t->kind == T_END)
    snprintf(out, size, "the end of the expression");
  else if (t->len > 40)
    snprintf(out, size, "\"%.37s...\"", c->text + t->start);
  else
    snprintf(out, size, "\"%.*s\"", (int)t->len, c->text + t->start);
}

static int expected(compiler *c, const char *what) {
  char found[64];
  describe(c, &c->tok, found, sizeof found);
  return fail(c, c->tok.start, "expected %s, found %s", what, found);
}

/* ---------------------------------------------------------------------- */
/* Parser                                                                  */
/* ---------------------------------------------------------------------- */

/* Appends a node; returns its index in *index. */
static int add_node(compiler *c, const node *n, const size_t *children,
                    size_t num_children, size_t *index) {
  if (grow(c, &c->nodes, &c->cap_nodes, c->num_nodes + 1, sizeof(node)) ||
      grow(c, &c->children, &c->cap_children, c->num_children + num_children,
           sizeof(size_t)))
    return -1;
  node *m = &c->nodes[c->num_nodes];
  *m = *n;
  m->first_child = c->num_children;
  m->num_children = num_children;
  for (size_t i = 0; i < num_children; i++)
    c->children[c->num_children++] = children[i];
  *index = c->num_nodes++;
  return 0;
}

static const char *type_name(int type) {
  return type == TDM__EXPR_STRING ? "a string" : "a number";
}

/* Checks that operand `child` of the operator at `at` is a number. */
static int need_number(compiler *c, size_t child, size_t at,
                       const char *operator_text, const char *which) {
  if (c->nodes[child].type == TDM__EXPR_NUMBER) return 0;
  return fail(c, at, "'%s' needs numbers, but its %s is a string",
              operator_text, which);
}

static int operator_node(compiler *c, int op, size_t start,
                         const size_t *children, size_t n, size_t *out) {
  node m = {0};
  m.kind = N_OP;
  m.op = op;
  m.type = TDM__EXPR_NUMBER;
  m.start = start;
  return add_node(c, &m, children, n, out);
}

static int enter(compiler *c, size_t at) {
  if (++c->nesting > TDM__EXPR_MAX_NESTING)
    return fail(c, at, "nested more than %d levels deep",
                TDM__EXPR_MAX_NESTING);
  return 0;
}

static int parse_or(compiler *c, size_t *out);

/* Adds the string constant of the T_STRING token t, unescaped. */
static int add_string(compiler *c, const token *t, uint32_t *index) {
  if (grow(c, &c->strings, &c->cap_strings, c->num_strings + 1,
           sizeof(tdm__str)) ||
      tdm__buf_reserve(&c->string_data, t->len + 1) != 0)
    return c->status != TDM_OK ? -1 : out_of_memory(c);
  size_t offset = c->string_data.len;
  const char *s = c->text + t->start;
  for (size_t i = 1; i + 1 < t->len; i++) {
    if (s[i] == '\\') i++;
    c->string_data.data[c->string_data.len++] = s[i];
  }
  /* Keeps every constant's data non-NULL, even the empty string's. */
  c->string_data.data[c->string_data.len++] = '\0';
  /* Held as an offset until string_data stops moving. */
  c->strings[c->num_strings].data = (const char *)(uintptr_t)offset;
  c->strings[c->num_strings].len = c->string_data.len - 1 - offset;
  *index = (uint32_t)c->num_strings++;
  return 0;
}

static int add_number(compiler *c, double x, uint32_t *index) {
  if (grow(c, &c->numbers, &c->cap_numbers, c->num_numbers + 1, sizeof(double)))
    return -1;
  c->numbers[c->num_numbers] = x;
  *index = (uint32_t)c->num_numbers++;
  return 0;
}

/* `x in [...]` / `x not in [...]`: the current token is '['. */
static int parse_list(compiler *c, size_t left, int negate, size_t *out) {
  const char *op_text = negate ? "not in" : "in";
  if (c->tok.kind != T_LBRACKET)
    return expected(c, negate ? "'[' after 'not in'" : "'[' after 'in'");
  if (advance(c)) return -1;
  int type = c->nodes[left].type;
  uint32_t first = type == TDM__EXPR_STRING ? (uint32_t)c->num_strings
                                            : (uint32_t)c->num_numbers;
  uint32_t count = 0;
  while (c->tok.kind != T_RBRACKET) {
    if (count > 0) {
      if (c->tok.kind != T_COMMA) return expected(c, "',' or ']' in the list");
      if (advance(c)) return -1;
    }
    size_t item_at = c->tok.start;
    int item_type = TDM__EXPR_NUMBER;
    uint32_t index;
    if (c->tok.kind == T_STRING) {
      item_type = TDM__EXPR_STRING;
      if (type == TDM__EXPR_STRING && add_string(c, &c->tok, &index)) return -1;
    } else {
      double sign = 1.0;
      if (c->tok.kind == T_MINUS) {
        sign = -1.0;
        if (advance(c)) return -1;
      }
      double x;
      if (c->tok.kind == T_NUMBER)
        x = sign * c->tok.number;
      else if (c->tok.kind == T_TRUE && sign > 0)
        x = 1.0;
      else if (c->tok.kind == T_FALSE && sign > 0)
        x = 0.0;
      else
        return expected(c, "a number or a string (a list holds literals only)");
      if (type == TDM__EXPR_NUMBER && add_number(c, x, &index)) return -1;
    }
    if (item_type != type)
      return fail(c, item_at, "'%s' compares %s with a list item that is %s",
                  op_text, type_name(type), type_name(item_type));
    count++;
    if (advance(c)) return -1;
  }
  if (advance(c)) return -1;
  node m = {0};
  m.kind = N_OP;
  m.type = TDM__EXPR_NUMBER;
  m.start = c->nodes[left].start;
  m.arg = first;
  m.count = count;
  if (type == TDM__EXPR_STRING)
    m.op = negate ? OP_STRING_NOT_IN : OP_STRING_IN;
  else
    m.op = negate ? OP_NOT_IN : OP_IN;
  return add_node(c, &m, &left, 1, out);
}

static int parse_call(compiler *c, const token *name, size_t *out) {
  const function *f = NULL;
  for (size_t i = 0; i < NUM_FUNCTIONS; i++)
    if (strlen(functions[i].name) == name->len &&
        memcmp(functions[i].name, c->text + name->start, name->len) == 0)
      f = &functions[i];
  if (f == NULL) {
    char known[200];
    size_t used = 0;
    for (size_t i = 0; i < NUM_FUNCTIONS; i++)
      used += (size_t)snprintf(known + used, sizeof known - used, "%s%s",
                               i ? ", " : "", functions[i].name);
    return fail(c, name->start, "unknown function \"%.*s\" (known: %s)",
                (int)(name->len > 40 ? 40 : name->len), c->text + name->start,
                known);
  }
  if (enter(c, name->start)) return -1;
  /* The current token is '('. */
  if (advance(c)) return -1;
  size_t args[TDM__EXPR_MAX_DEPTH];
  size_t arg_at[TDM__EXPR_MAX_DEPTH];
  size_t n = 0;
  while (c->tok.kind != T_RPAREN) {
    if (n > 0) {
      if (c->tok.kind != T_COMMA)
        return expected(c, "',' or ')' after an argument");
      if (advance(c)) return -1;
    }
    if (n == f->max_args) {
      if (f->min_args == f->max_args)
        return fail(c, c->tok.start, "%s takes %u argument%s", f->name,
                    f->max_args, f->max_args == 1 ? "" : "s");
      return fail(c, c->tok.start, "%s takes at most %u arguments", f->name,
                  f->max_args);
    }
    arg_at[n] = c->tok.start;
    if (parse_or(c, &args[n])) return -1;
    n++;
  }
  size_t close_at = c->tok.start;
  if (advance(c)) return -1;
  c->nesting--;
  if (n < f->min_args) {
    if (f->min_args == f->max_args)
      return fail(c, close_at, "%s takes %u argument%s, not %zu", f->name,
                  f->min_args, f->min_args == 1 ? "" : "s", n);
    return fail(c, close_at, "%s takes at least %u arguments, not %zu", f->name,
                f->min_args, n);
  }
  int op = n == 0 ? f->no_args_op : f->op;
  for (size_t i = 0; i < n; i++) {
    if (c->nodes[args[i]].type == TDM__EXPR_NUMBER) continue;
    if (f->string_op >= 0) {
      op = f->string_op;
      continue;
    }
    return fail(c, arg_at[i], "%s needs numbers, but argument %zu is a string",
                f->name, i + 1);
  }
  if (op == OP_HOUR || op == OP_DAY) c->uses_time = 1;
  if (operator_node(c, op, name->start, args, n, out)) return -1;
  c->nodes[*out].count = (uint32_t)n;
  return 0;
}

static int parse_primary(compiler *c, size_t *out) {
  token t = c->tok;
  node m = {0};
  m.start = t.start;
  m.type = TDM__EXPR_NUMBER;
  switch (t.kind) {
    case T_NUMBER:
    case T_TRUE:
    case T_FALSE:
      m.kind = N_NUMBER;
      m.number = t.kind == T_NUMBER ? t.number : t.kind == T_TRUE ? 1.0 : 0.0;
      if (advance(c)) return -1;
      return add_node(c, &m, NULL, 0, out);
    case T_STRING:
      m.kind = N_STRING;
      m.type = TDM__EXPR_STRING;
      if (add_string(c, &t, &m.arg) || advance(c)) return -1;
      return add_node(c, &m, NULL, 0, out);
    case T_LPAREN:
      if (enter(c, t.start) || advance(c) || parse_or(c, out)) return -1;
      if (c->tok.kind != T_RPAREN) return expected(c, "')'");
      c->nesting--;
      /* A parenthesized operand starts at its '(' for messages. */
      c->nodes[*out].start = t.start;
      return advance(c);
    case T_NAME: {
      if (advance(c)) return -1;
      if (c->tok.kind == T_LPAREN) return parse_call(c, &t, out);
      int type = 0;
      size_t slot = 0;
      if (c->symbols == NULL || c->symbols->lookup == NULL ||
          c->symbols->lookup(c->symbols->ctx, c->text + t.start, t.len, &type,
                             &slot) != 0)
        return fail(c, t.start, "unknown name \"%.*s\"",
                    (int)(t.len > 64 ? 64 : t.len), c->text + t.start);
      if ((type != TDM__EXPR_NUMBER && type != TDM__EXPR_STRING) ||
          slot > UINT32_MAX)
        return fail(c, t.start, "name \"%.*s\" has no usable type or slot",
                    (int)(t.len > 64 ? 64 : t.len), c->text + t.start);
      m.kind = type == TDM__EXPR_STRING ? N_LOAD_STRING : N_LOAD;
      m.type = type;
      m.arg = (uint32_t)slot;
      return add_node(c, &m, NULL, 0, out);
    }
    default: return expected(c, "a number, a string, a name or '('");
  }
}

static int parse_unary(compiler *c, size_t *out) {
  if (c->tok.kind != T_MINUS) return parse_primary(c, out);
  size_t at = c->tok.start;
  size_t operand;
  if (enter(c, at) || advance(c) || parse_unary(c, &operand) ||
      need_number(c, operand, at, "-", "operand"))
    return -1;
  c->nesting--;
  return operator_node(c, OP_NEG, at, &operand, 1, out);
}

/* One level of left-associative binary operators: tokens[i] -> ops[i]. */
typedef int (*parse_fn)(compiler *c, size_t *out);

static int parse_binary(compiler *c, size_t *out, parse_fn next,
                        const int *tokens, const int *ops, size_t n) {
  if (next(c, out)) return -1;
  for (;;) {
    size_t i = 0;
    while (i < n && tokens[i] != c->tok.kind) i++;
    if (i == n) return 0;
    token op = c->tok;
    char op_text[8];
    snprintf(op_text, sizeof op_text, "%.*s", (int)op.len, c->text + op.start);
    size_t pair[2] = {*out, 0};
    if (advance(c) || next(c, &pair[1])) return -1;
    if (need_number(c, pair[0], op.start, op_text, "left operand") ||
        need_number(c, pair[1], op.start, op_text, "right operand") ||
        operator_node(c, ops[i], c->nodes[pair[0]].start, pair, 2, out))
      return -1;
  }
}

static int parse_multiplicative(compiler *c, size_t *out) {
  static const int tokens[] = {T_STAR, T_SLASH, T_PERCENT};
  static const int ops[] = {OP_MUL, OP_DIV, OP_MOD};
  return parse_binary(c, out, parse_unary, tokens, ops, 3);
}

static int parse_additive(compiler *c, size_t *out) {
  static const int tokens[] = {T_PLUS, T_MINUS};
  static const int ops[] = {OP_ADD, OP_SUB};
  return parse_binary(c, out, parse_multiplicative, tokens, ops, 2);
}

static int parse_comparison(compiler *c, size_t *out) {
  static const int tokens[] = {T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE};
  static const int ops[] = {OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE};
  if (parse_additive(c, out)) return -1;
  for (;;) {
    token op = c->tok;
    if (op.kind == T_IN || op.kind == T_NOT) {
      int negate = op.kind == T_NOT;
      if (negate) {
        token next;
        if (lex(c, op.start + op.len, &next)) return -1;
        if (next.kind != T_IN) return 0; /* the caller reports it */
        c->tok = next;
      }
      if (advance(c) || parse_list(c, *out, negate, out)) return -1;
      continue;
    }
    size_t i = 0;
    while (i < 6 && tokens[i] != op.kind) i++;
    if (i == 6) return 0;
    char op_text[8];
    snprintf(op_text, sizeof op_text, "%.*s", (int)op.len, c->text + op.start);
    size_t pair[2] = {*out, 0};
    if (advance(c) || parse_additive(c, &pair[1])) return -1;
    int left = c->nodes[pair[0]].type, right = c->nodes[pair[1]].type;
    int op_code = ops[i];
    if (op_code == OP_EQ || op_code == OP_NE) {
      if (left != right)
        return fail(c, op.start, "'%s' compares %s with %s", op_text,
                    type_name(left), type_name(right));
      if (left == TDM__EXPR_STRING)
        op_code = op_code == OP_EQ ? OP_STRING_EQ : OP_STRING_NE;
    } else if (left != TDM__EXPR_NUMBER || right != TDM__EXPR_NUMBER) {
      return fail(c, op.start,
                  "'%s' needs numbers, but its %s operand is a string "
                  "(strings take ==, != and in only)",
                  op_text, left != TDM__EXPR_NUMBER ? "left" : "right");
    }
    if (operator_node(c, op_code, c->nodes[pair[0]].start, pair, 2, out))
      return -1;
  }
}

static int parse_not(compiler *c, size_t *out) {
  if (c->tok.kind != T_NOT) return parse_comparison(c, out);
  token op = c->tok;
  size_t operand;
  if (enter(c, op.start) || advance(c) || parse_not(c, &operand)) return -1;
  if (c->nodes[operand].type != TDM__EXPR_NUMBER)
    return fail(c, op.start,
                "'%.*s' needs a number, but its operand is a "
                "string",
                (int)op.len, c->text + op.start);
  c->nesting--;
  return operator_node(c, OP_NOT, op.start, &operand, 1, out);
}

static int parse_and(compiler *c, size_t *out) {
  static const int tokens[] = {T_AND};
  static const int ops[] = {OP_AND};
  return parse_binary(c, out, parse_not, tokens, ops, 1);
}

static int parse_or(compiler *c, size_t *out) {
  static const int tokens[] = {T_OR};
  static const int ops[] = {OP_OR};
  return parse_binary(c, out, parse_and, tokens, ops, 1);
}

/* ---------------------------------------------------------------------- */
/* Emitter                                                                 */
/* ---------------------------------------------------------------------- */

static int emit_op(compiler *c, int op, uint32_t arg, uint32_t count) {
  if (grow(c, &c->code, &c->cap_code, c->code_len + 1, sizeof(instruction)))
    return -1;
  c->code[c->code_len].op = (uint32_t)op;
  c->code[c->code_len].arg = arg;
  c->code[c->code_len].count = count;
  c->code_len++;
  return 0;
}

static int add_ref(compiler *c, int type, uint32_t slot) {
  if (type == TDM__EXPR_STRING) {
    if (grow(c, &c->string_refs, &c->cap_string_refs, c->num_string_refs + 1,
             sizeof(size_t)))
      return -1;
    c->string_refs[c->num_string_refs++] = slot;
  } else {
    if (grow(c, &c->number_refs, &c->cap_number_refs, c->num_number_refs + 1,
             sizeof(size_t)))
      return -1;
    c->number_refs[c->num_number_refs++] = slot;
  }
  return 0;
}

/* Points the jump at code[at] to the next instruction emitted. */
static void patch(compiler *c, size_t at) {
  c->code[at].arg = (uint32_t)(c->code_len - at - 1);
}

/*
 * Emits node ni. *depth receives the most values the stack holds while it
 * runs (its result included); *constant whether it reads nothing but
 * number constants, in which case it is folded to one.
 */
static int emit(compiler *c, size_t ni, size_t *depth, int *constant) {
  const node *n = &c->nodes[ni];
  size_t start = c->code_len;
  *depth = 1;
  *constant = 0;
  switch (n->kind) {
    case N_NUMBER: {
      uint32_t index;
      *constant = 1;
      return add_number(c, n->number, &index) || emit_op(c, OP_CONST, index, 0);
    }
    case N_STRING: return emit_op(c, OP_STRING, n->arg, 0);
    case N_LOAD:
      return add_ref(c, TDM__EXPR_NUMBER, n->arg) ||
             emit_op(c, OP_LOAD, n->arg, 0);
    case N_LOAD_STRING:
      return add_ref(c, TDM__EXPR_STRING, n->arg) ||
             emit_op(c, OP_LOAD_STRING, n->arg, 0);
    default: break;
  }
  int op = n->op;
  uint32_t arg = n->arg, count = n->count;
  size_t first = n->first_child, num = n->num_children, node_start = n->start;
  size_t d;
  int k, all_constant = 1;
  if (op == OP_AND || op == OP_OR || op == OP_IF) {
    /* and/or: [a] AND_JUMP end [b] TRUTH end:
     * if:     [c] JUMP_FALSE else [a] JUMP end else: [b] end: */
    size_t jump = 0, jump2 = 0;
    *depth = 0;
    for (size_t i = 0; i < num; i++) {
      if (emit(c, c->children[first + i], &d, &k)) return -1;
      all_constant &= k;
      if (d > *depth) *depth = d;
      if (op != OP_IF && i == 0) {
        jump = c->code_len;
        if (emit_op(c, op == OP_AND ? OP_AND_JUMP : OP_OR_JUMP, 0, 0))
          return -1;
      } else if (op != OP_IF) {
        if (emit_op(c, OP_TRUTH, 0, 0)) return -1;
        patch(c, jump);
      } else if (i == 0) {
        jump = c->code_len;
        if (emit_op(c, OP_JUMP_FALSE, 0, 0)) return -1;
      } else if (i == 1) {
        jump2 = c->code_len;
        if (emit_op(c, OP_JUMP, 0, 0)) return -1;
        patch(c, jump);
      } else {
        patch(c, jump2);
      }
    }
  } else {
    *depth = num == 0 ? 1 : 0;
    for (size_t i = 0; i < num; i++) {
      if (emit(c, c->children[first + i], &d, &k)) return -1;
      all_constant &= k;
      if (i + d > *depth) *depth = i + d;
    }
    if (op == OP_HOUR || op == OP_DAY) all_constant = 0;
    if (emit_op(c, op, arg, count)) return -1;
  }
  if (*depth > TDM__EXPR_MAX_DEPTH)
    return fail(c, node_start,
                "too deep to evaluate: more than %d values pending at once",
                TDM__EXPR_MAX_DEPTH);
  if (all_constant) {
    double x =
        run(c->code + start, c->code_len - start, c->numbers, NULL, NULL);
    uint32_t index;
    c->code_len = start;
    *constant = 1;
    return add_number(c, x, &index) || emit_op(c, OP_CONST, index, 0);
  }
  return 0;
}

static int compare_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

/* Sorts refs ascending and drops repeats; returns the new count. */
static size_t sort_unique(size_t *refs, size_t n) {
  if (n == 0) return 0;
  qsort(refs, n, sizeof *refs, compare_size);
  size_t out = 1;
  for (size_t i = 1; i < n; i++)
    if (refs[i] != refs[out - 1]) refs[out++] = refs[i];
  return out;
}

static void compiler_free(compiler *c) {
  tdm__free(c->nodes);
  tdm__free(c->children);
  tdm__free(c->code);
  tdm__free(c->numbers);
  tdm__free(c->strings);
  tdm__buf_free(&c->string_data);
  tdm__free(c->number_refs);
  tdm__free(c->string_refs);
}

int tdm__expr_compile(const char *text, const tdm__expr_symbols *symbols,
                      tdm__expr **out, tdm__expr_error *err) {
  compiler c;
  memset(&c, 0, sizeof c);
  *out = NULL;
  if (err != NULL) {
    err->column = 0;
    err->message[0] = '\0';
  }
  c.text = text;
  c.len = strnlen(text, TDM__EXPR_MAX_LENGTH + 1);
  c.symbols = symbols;
  c.err = err;
  c.status = TDM_OK;
  size_t root, depth;
  int constant;
  if (c.len > TDM__EXPR_MAX_LENGTH) {
    fail(&c, TDM__EXPR_MAX_LENGTH, "longer than %d bytes",
         TDM__EXPR_MAX_LENGTH);
    goto done;
  }
  if (lex(&c, 0, &c.tok)) goto done;
  if (c.tok.kind == T_END) {
    fail(&c, c.tok.start, "empty expression");
    goto done;
  }
  if (parse_or(&c, &root)) goto done;
  if (c.tok.kind != T_END) {
    char found[64];
    describe(&c, &c.tok, found, sizeof found);
    fail(&c, c.tok.start, "unexpected %s after a complete expression%s", found,
         c.tok.kind == T_NOT      ? " (did you mean 'not in'?)"
         : c.tok.kind == T_RPAREN ? " (one ')' too many)"
                                  : " (an operator is missing)");
    goto done;
  }
  if (c.nodes[root].type != TDM__EXPR_NUMBER) {
    fail(&c, c.nodes[root].start,
         "the expression gives a string, but it must give a number "
         "(compare the string: name == 'value')");
    goto done;
  }
  if (emit(&c, root, &depth, &constant)) goto done;

  tdm__expr *e = tdm__calloc(1, sizeof *e);
  if (e == NULL) {
    out_of_memory(&c);
    goto done;
  }
  /* Hand the arrays over; string constants become pointers now that
   * string_data no longer moves. */
  e->code = c.code;
  e->code_len = c.code_len;
  e->numbers = c.numbers;
  e->strings = c.strings;
  e->string_data = c.string_data.data;
  for (size_t i = 0; i < c.num_strings; i++)
    e->strings[i].data = e->string_data + (uintptr_t)e->strings[i].data;
  e->number_refs = c.number_refs;
  e->num_number_refs = sort_unique(c.number_refs, c.num_number_refs);
  e->string_refs = c.string_refs;
  e->num_string_refs = sort_unique(c.string_refs, c.num_string_refs);
  e->uses_time = c.uses_time;
  c.code = NULL;
  c.numbers = NULL;
  c.strings = NULL;
  c.string_data.data = NULL;
  c.number_refs = NULL;
  c.string_refs = NULL;
  *out = e;

done:
  compiler_free(&c);
  return c.status;
}
