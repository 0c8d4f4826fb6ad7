/*
 * spec.h - a pipeline file (YAML, read with libfyaml) as plain data: its
 * input fields, features, model, decision rules and output columns, each
 * with the line and column it came from so that every later error (an
 * expression that does not compile, a model feature nobody produces) can
 * point at the place in the file. This module checks the file's shape:
 * known keys, types, durations, names defined once. Meaning (expressions,
 * dependencies, the model) is checked by pipeline.c, which compiles it.
 */
#ifndef TDM_SPEC_H
#define TDM_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"
#include "../core/cron.h"
#include "tandem.h"

/* How a scalar is written, for finding a position inside its text. */
typedef enum tdm__scalar_style {
  TDM__STYLE_PLAIN = 0,
  TDM__STYLE_SINGLE, /* 'single quoted': '' is a quote */
  TDM__STYLE_DOUBLE, /* "double quoted": backslash escapes */
  TDM__STYLE_BLOCK   /* | or >, or folded over lines: no exact position */
} tdm__scalar_style;

/* Where a value sits in the pipeline file (1-based; 0: not known). */
typedef struct tdm__mark {
  int line, column;
  tdm__scalar_style style;
} tdm__mark;

typedef enum tdm__field_type {
  TDM__FIELD_STRING = 1,
  TDM__FIELD_NUMBER,
  TDM__FIELD_TIME,     /* RFC 3339 text, or epoch seconds/milliseconds */
  TDM__FIELD_CATEGORY, /* a string mapped to its index in `values` */
} tdm__field_type;

typedef enum tdm__time_unit {
  TDM__TIME_AUTO = 0, /* RFC 3339 text, or a number of epoch seconds */
  TDM__TIME_SECONDS,
  TDM__TIME_MILLISECONDS,
} tdm__time_unit;

typedef struct tdm__field_spec {
  char *name;
  tdm__field_type type;
  tdm__time_unit unit;  /* TDM__FIELD_TIME */
  char **values;        /* TDM__FIELD_CATEGORY: the categories, in order */
  size_t *value_lens;   /* their lengths (events are matched per event) */
  size_t num_values;
  int required;         /* an event without it is rejected */
  int optional;         /* an input file may have no column for it */
  /* A category not in values: the event is invalid (0, the default), or
   * the field is missing (1, `unknown: missing`). */
  int unknown_missing;
  int unknown_set; /* unknown: was given */
  tdm__mark mark;
} tdm__field_spec;

typedef enum tdm__feature_kind {
  TDM__FEATURE_EXPR = 1, /* expr: "..." */
  TDM__FEATURE_AGG,      /* agg: count | sum(x) | ..., window, hop, where */
  TDM__FEATURE_LOOKUP,   /* lookup: TABLE.COLUMN, default */
} tdm__feature_kind;

typedef struct tdm__feature_spec {
  char *name;
  tdm__feature_kind kind;
  char *expr; /* TDM__FEATURE_EXPR */
  tdm__mark expr_mark;
  /* TDM__FEATURE_AGG */
  int agg;          /* a tdm__agg_kind (window.h) */
  char *agg_input;  /* the field or feature aggregated, or NULL (count) */
  tdm__mark agg_mark;
  int64_t window_ms; /* 0: the entity's whole history ("all") */
  int64_t hop_ms;    /* 0: exact */
  tdm__mark window_mark, hop_mark;
  char *where; /* optional filter expression */
  tdm__mark where_mark;
  /* TDM__FEATURE_LOOKUP */
  char *table, *column;
  double default_value; /* NaN: missing when the entity has no row */
  tdm__mark lookup_mark, default_mark;
  tdm__mark mark;
} tdm__feature_spec;

/* materialize: a table written by `tandem batch --materialize`. */
typedef struct tdm__materialize_spec {
  char *table;
  char **columns; /* features, or score */
  tdm__mark *column_marks;
  size_t num_columns;
  size_t keep; /* versions kept */
  tdm__mark mark;
} tdm__materialize_spec;

/* tables: how the live path treats a table's age. */
typedef struct tdm__table_spec {
  char *table;
  int64_t max_staleness_ms; /* 0: no limit */
  int fail_ready;           /* 1: not ready when too old; 0: warn only */
  tdm__mark mark;
} tdm__table_spec;

/* schedule: batch refreshes run by `tandem serve`. */
typedef struct tdm__schedule_spec {
  char *cron;
  tdm__cron when; /* cron, parsed */
  char *in;    /* the events the refresh reads, resolved against dir */
  char *table; /* the table it materializes (NULL: every materialize) */
  tdm__mark mark, cron_mark, table_mark;
} tdm__schedule_spec;

typedef struct tdm__rule_spec {
  char *when; /* NULL: always (the last rule) */
  char *then;
  tdm__mark when_mark, mark;
} tdm__rule_spec;

typedef struct tdm__spec {
  char *source; /* the file's text */
  size_t source_len;
  char *path; /* the pipeline file, as given */
  char *dir;  /* its directory: relative paths inside resolve from here */
  char *name;
  tdm__mark name_mark;
  char *entity, *time, *id; /* field names; id may be NULL */
  tdm__mark entity_mark, time_mark, id_mark;
  tdm__field_spec *fields;
  size_t num_fields;
  tdm__feature_spec *features;
  size_t num_features;
  char *model_path; /* resolved against dir */
  tdm__mark model_mark;
  /* shadow: {path: ...}: a challenger model scored beside the served one
   * on the same features (shadow_score), never read by the decision. */
  char *shadow_path; /* NULL without */
  tdm__mark shadow_mark;
  tdm__rule_spec *rules;
  size_t num_rules;
  char **outputs; /* output columns */
  tdm__mark *output_marks;
  size_t num_outputs;
  char *store; /* tables' directory (store:), resolved; NULL: none */
  tdm__mark store_mark;
  tdm__materialize_spec *materialize;
  size_t num_materialize;
  tdm__table_spec *tables;
  size_t num_tables;
  tdm__schedule_spec *schedules;
  size_t num_schedules;
  /* realtime: */
  int64_t deadline_ms;       /* 0: none */
  char *fallback_table, *fallback_column; /* the batch score to answer */
  char *default_decision;    /* when there is no batch score; NULL: 504 */
  tdm__mark realtime_mark, fallback_mark;
  int64_t lateness_ms;  /* state: lateness */
  int64_t ttl_ms;       /* state: ttl; -1 when not given */
  size_t max_events;    /* state: max_events per entity */
  int64_t dedupe_ms;    /* state: how long an event id is remembered */
  int64_t max_future_ms; /* state: how far ahead of the runner's clock an
                            event may be dated */
  int late_apply;       /* state: late: apply (events older than the dedupe
                           horizon are applied, not rejected as too_late) */
  /* explain: each result's top reasons (0: none asked) and the smallest
   * absolute contribution that counts as a reason. */
  size_t explain_reasons;
  double explain_min_contribution;
  tdm__mark explain_mark;
} tdm__spec;

/* Reads and checks a pipeline file. Errors say "PATH:LINE:COL: what". */
int tdm__spec_load(const char *path, tdm__spec **out, tdm_error *err);
/* The same from text in memory; `path` names it in errors and sets the
 * directory relative paths resolve from. */
int tdm__spec_parse(const char *text, size_t len, const char *path,
                    tdm__spec **out, tdm_error *err);
void tdm__spec_free(tdm__spec *spec);

/* The position of byte `offset` (0-based) of a scalar's value, written
 * at mark in the source: quotes and escapes accounted for. A block or
 * multi-line scalar gives its start. */
tdm__mark tdm__spec_mark_in(const tdm__spec *spec, tdm__mark mark,
                            size_t offset);

/* Fails with "PATH:LINE:COL: " and the message (for later checks). */
int tdm__spec_fail(const tdm__spec *spec, tdm__mark mark, int status,
                   tdm_error *err, const char *fmt, ...) TDM__PRINTF(5, 6);

/* Parses a duration: a positive integer and a unit, ms, s, m, h, d or w
 * ("30s", "10m", "1h", "7d"). Returns 0 and milliseconds, or -1. */
int tdm__parse_duration(const char *text, int64_t *ms);

/* The range of an event time, in epoch milliseconds: the years RFC 3339
 * can write, 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z. */
#define TDM__TIME_MIN_MS (-62135596800000LL)
#define TDM__TIME_MAX_MS 253402300799999LL

/* Parses an event time: RFC 3339 ("2026-03-01T14:03:07.123Z", any
 * offset, fractions to the millisecond) or, unless unit says otherwise, a
 * number of epoch seconds (fractions allowed). A time outside
 * TDM__TIME_MIN_MS..TDM__TIME_MAX_MS (after the offset is applied) is not
 * a time, whichever way it is written. Returns 0 or -1. */
int tdm__parse_time(const char *text, size_t len, tdm__time_unit unit,
                    int64_t *ms);

/* Writes an epoch time in milliseconds as RFC 3339 UTC with
 * milliseconds, "2026-03-01T14:03:07.123Z" (24 bytes and a NUL). */
void tdm__format_time(int64_t ms, char buf[32]);

#endif /* TDM_SPEC_H */
