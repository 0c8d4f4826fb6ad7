/*
 * expr.h - the pipeline expression language (docs/expressions.md): the text
 * of a derived feature (`log1p(amount)`), a window's `where:` filter and a
 * decision rule (`score >= 0.9`). An expression is compiled once, with its
 * names resolved and its types checked, into a flat postfix program with a
 * constant pool; evaluating it per event runs that program on a small fixed
 * stack, never allocates, and uses plain double arithmetic and libm only,
 * so every runner computes the same bits.
 */
#ifndef TDM_EXPR_H
#define TDM_EXPR_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

/* The two value types of the language. */
typedef enum tdm__expr_type {
  TDM__EXPR_NUMBER = 1,
  TDM__EXPR_STRING = 2
} tdm__expr_type;

/* tdm__str (a string that need not be NUL-terminated) is in core.h. */

/* Limits: the text's length in bytes, the values pending on the
 * evaluation stack, and the nesting of parentheses, calls and prefix
 * operators. Longer, deeper or more nested expressions are refused. */
#define TDM__EXPR_MAX_LENGTH 4096
#define TDM__EXPR_MAX_DEPTH 64
#define TDM__EXPR_MAX_NESTING 64

/*
 * Names resolve through the caller. lookup receives a name (not
 * NUL-terminated) and returns 0 with its type (a tdm__expr_type) and slot
 * (an index into the number or string array given at evaluation, by type),
 * or -1 when the name is unknown. Slots must be below 2^32.
 */
typedef struct tdm__expr_symbols {
  void *ctx;
  int (*lookup)(void *ctx, const char *name, size_t len, int *type,
                size_t *slot);
} tdm__expr_symbols;

/* Where and why a text does not compile. message reads "column N: ...". */
typedef struct tdm__expr_error {
  size_t column; /* 1-based byte offset in the text; 0 when out of memory */
  char message[256];
} tdm__expr_error;

typedef struct tdm__expr tdm__expr;

/*
 * Compiles the NUL-terminated text. symbols may be NULL (then no name is
 * known). On success *out holds an expression that the caller frees with
 * tdm__expr_free; it keeps no pointer to text or symbols. On failure *out
 * is NULL, the status is TDM_EPARSE (or TDM_ENOMEM) and err (if not NULL)
 * says where and why.
 */
int tdm__expr_compile(const char *text, const tdm__expr_symbols *symbols,
                      tdm__expr **out, tdm__expr_error *err);

/* Frees an expression; NULL is a no-op. */
void tdm__expr_free(tdm__expr *e);

/* The inputs of one evaluation: values by slot, and the event's time. */
typedef struct tdm__expr_values {
  const double *numbers;   /* NaN: missing */
  const tdm__str *strings; /* data NULL: missing */
  int64_t time_ms;         /* event time, milliseconds since 1970 UTC */
} tdm__expr_values;

/*
 * Evaluates e. The arrays must hold every slot that tdm__expr_refs
 * reports. Never allocates; a compiled expression is immutable, so any
 * number of threads may evaluate it at once.
 */
double tdm__expr_eval(const tdm__expr *e, const tdm__expr_values *v);

/*
 * The slots of the given type (a tdm__expr_type) that e reads, ascending
 * and without repeats, for dependency order and cycle checks. *slots stays
 * valid as long as e. Returns their count.
 */
size_t tdm__expr_refs(const tdm__expr *e, int type, const size_t **slots);

/* 1 when e reads the event time (hour_of_day() or day_of_week()). */
int tdm__expr_uses_time(const tdm__expr *e);

#endif /* TDM_EXPR_H */
