/*
 * spec.c - reads a pipeline file (YAML) into a tdm__spec, checking its
 * shape as it goes: every mapping's keys against the keys it may have,
 * every value's type, durations, field types and names defined once.
 * Every error names the file, line and column of the offending node.
 * libfyaml parses; the walk below only translates its nodes.
 */
#include "spec.h"

#include <ctype.h>
#include <libfyaml.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../store/table.h"
#include "window.h"

/* A walk over one document: the spec being filled and where errors go. */
typedef struct reader {
  tdm__spec *spec;
  tdm_error *err;
} reader;

tdm__mark tdm__spec_mark_in(const tdm__spec *spec, tdm__mark mark,
                            size_t offset) {
  if (mark.line <= 0 || spec->source == NULL) return mark;
  /* The start of the scalar in the source. (libfyaml marks a quoted
   * scalar at its first character, after the quote, and a block scalar
   * at the start of its first line.) */
  const char *p = spec->source, *end = p + spec->source_len;
  for (int line = 1; line < mark.line && p < end; p++)
    if (*p == '\n') line++;
  p += mark.column - 1;
  if (p >= end) return mark;
  size_t indent = 0;
  if (mark.style == TDM__STYLE_BLOCK)
    while (p + indent < end && p[indent] == ' ') indent++;
  p += indent;
  int line = mark.line;
  const char *line_start = p - (mark.column - 1) - indent;
  /* Step over `offset` characters of the value as the source writes
   * them: a line break is one (a space or a newline), the indentation
   * after it none, an escape or a doubled quote one. */
  for (size_t k = 0; k < offset && p < end; k++) {
    if (*p == '\n') {
      p++;
      line++;
      line_start = p;
      if (mark.style == TDM__STYLE_BLOCK)
        for (size_t i = 0; i < indent && p < end && *p == ' '; i++) p++;
      else
        while (p < end && (*p == ' ' || *p == '\t')) p++;
    } else if (mark.style == TDM__STYLE_SINGLE && p[0] == '\'' &&
               p + 1 < end && p[1] == '\'') {
      p += 2;
    } else if (mark.style == TDM__STYLE_DOUBLE && p[0] == '\\' &&
               p + 1 < end) {
      p += p[1] == 'x' ? 4 : p[1] == 'u' ? 6 : p[1] == 'U' ? 10 : 2;
    } else {
      p++;
    }
  }
  if (p > end) return mark;
  mark.line = line;
  mark.column = (int)(p - line_start) + 1;
  return mark;
}

int tdm__spec_fail(const tdm__spec *spec, tdm__mark mark, int status,
                   tdm_error *err, const char *fmt, ...) {
  char message[sizeof err->message];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  if (mark.line > 0)
    return tdm__fail(err, status, "%s:%d:%d: %s", spec->path, mark.line,
                     mark.column, message);
  return tdm__fail(err, status, "%s: %s", spec->path, message);
}

/* The position of a scalar node; a collection has none of its own in
 * libfyaml's API, so the caller passes the mark of its key instead. */
static tdm__mark mark_of(struct fy_node *node, tdm__mark fallback) {
  if (node == NULL || !fy_node_is_scalar(node)) return fallback;
  struct fy_token *token = fy_node_get_scalar_token(node);
  const struct fy_mark *m = token ? fy_token_start_mark(token) : NULL;
  if (m == NULL) return fallback;
  tdm__mark mark = {m->line + 1, m->column + 1, TDM__STYLE_PLAIN};
  switch (fy_node_get_style(node)) {
    case FYNS_PLAIN: break;
    case FYNS_SINGLE_QUOTED: mark.style = TDM__STYLE_SINGLE; break;
    case FYNS_DOUBLE_QUOTED: mark.style = TDM__STYLE_DOUBLE; break;
    default: mark.style = TDM__STYLE_BLOCK; break;
  }
  return mark;
}

static const char *type_name(struct fy_node *node) {
  if (node == NULL || fy_node_is_null(node)) return "nothing";
  if (fy_node_is_mapping(node)) return "a mapping";
  if (fy_node_is_sequence(node)) return "a list";
  return "a scalar";
}

/* A scalar's text, copied (NUL-terminated), or an error. */
static int scalar(reader *r, struct fy_node *node, tdm__mark mark,
                  const char *what, char **out) {
  *out = NULL;
  if (node == NULL || !fy_node_is_scalar(node) || fy_node_is_null(node))
    return tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                          "%s must be a string, not %s", what,
                          type_name(node));
  size_t len;
  const char *text = fy_node_get_scalar(node, &len);
  if (text == NULL || memchr(text, '\0', len) != NULL)
    return tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                          "%s is not a valid string", what);
  *out = tdm__strndup(text, len);
  if (*out == NULL) return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  return TDM_OK;
}

/* A name: a letter or '_' then letters, digits and '_' (expressions refer
 * to fields and features by these names). */
static int name(reader *r, struct fy_node *node, tdm__mark mark,
                const char *what, char **out) {
  int rc = scalar(r, node, mark, what, out);
  if (rc != TDM_OK) return rc;
  const char *s = *out;
  int ok = isalpha((unsigned char)s[0]) || s[0] == '_';
  for (size_t i = 1; ok && s[i]; i++)
    ok = isalnum((unsigned char)s[i]) || s[i] == '_';
  if (!ok) {
    rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                        "%s \"%s\" is not a name: use letters, digits and "
                        "'_', starting with a letter or '_'",
                        what, s);
    tdm__free(*out);
    *out = NULL;
  }
  return rc;
}

int tdm__parse_duration(const char *text, int64_t *ms) {
  static const struct {
    const char *unit;
    int64_t ms;
  } units[] = {{"ms", 1},           {"s", 1000},        {"m", 60000},
               {"h", 3600000},      {"d", 86400000},    {"w", 604800000}};
  const char *p = text;
  if (!isdigit((unsigned char)*p)) return -1;
  int64_t n = 0;
  while (isdigit((unsigned char)*p)) {
    if (n > (INT64_MAX - 9) / 10) return -1;
    n = n * 10 + (*p++ - '0');
  }
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcmp(p, units[i].unit) == 0) {
      if (n <= 0 || n > INT64_MAX / units[i].ms / 4) return -1;
      *ms = n * units[i].ms;
      return 0;
    }
  }
  return -1;
}

static int duration(reader *r, struct fy_node *node, tdm__mark mark,
                    const char *what, int64_t *ms) {
  char *text;
  int rc = scalar(r, node, mark, what, &text);
  if (rc != TDM_OK) return rc;
  if (tdm__parse_duration(text, ms) != 0)
    rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                        "%s \"%s\" is not a duration: write a positive "
                        "whole number and a unit, ms, s, m, h, d or w "
                        "(\"30s\", \"10m\", \"1h\", \"7d\")",
                        what, text);
  tdm__free(text);
  return rc;
}

static int count_value(reader *r, struct fy_node *node, tdm__mark mark,
                       const char *what, size_t *out) {
  char *text;
  int rc = scalar(r, node, mark, what, &text);
  if (rc != TDM_OK) return rc;
  char *end;
  unsigned long long n = strtoull(text, &end, 10);
  if (!isdigit((unsigned char)text[0]) || *end != '\0' || n == 0 ||
      n > (1ull << 32))
    rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                        "%s must be a whole number from 1 to 2^32, not "
                        "\"%s\"",
                        what, text);
  else
    *out = (size_t)n;
  tdm__free(text);
  return rc;
}

/*
 * Walks a mapping's pairs, checking each key against `keys` (NULL-ended)
 * and handing known ones to `fn`. A key may appear once.
 */
typedef int (*pair_fn)(reader *r, void *ctx, size_t key, struct fy_node *value,
                       tdm__mark key_mark);
static int each_pair(reader *r, struct fy_node *map, tdm__mark mark,
                     const char *what, const char *const *keys, pair_fn fn,
                     void *ctx) {
  if (map == NULL || !fy_node_is_mapping(map))
    return tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                          "%s must be a mapping, not %s", what,
                          type_name(map));
  size_t num_keys = 0;
  while (keys[num_keys]) num_keys++;
  unsigned char seen[32] = {0};
  void *iter = NULL;
  struct fy_node_pair *pair;
  while ((pair = fy_node_mapping_iterate(map, &iter)) != NULL) {
    struct fy_node *key = fy_node_pair_key(pair);
    tdm__mark key_mark = mark_of(key, mark);
    size_t len = 0;
    const char *text =
        key && fy_node_is_scalar(key) ? fy_node_get_scalar(key, &len) : NULL;
    size_t k = 0;
    while (k < num_keys &&
           !(text && strlen(keys[k]) == len && memcmp(keys[k], text, len) == 0))
      k++;
    if (k == num_keys) {
      char known[512];
      size_t used = 0;
      for (size_t i = 0; i < num_keys && used < sizeof known; i++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s",
                                 i ? ", " : "", keys[i]);
      /* An XGBoost model given where the pipeline goes is a mistake
       * worth naming: its first key is "learner". */
      int model = text && len == 7 && memcmp(text, "learner", 7) == 0 &&
                  strcmp(what, "the pipeline") == 0;
      return tdm__spec_fail(r->spec, key_mark, TDM_EPARSE, r->err,
                            "unknown key \"%.*s\" in %s (known: %s)%s",
                            text ? (int)len : 0, text ? text : "", what,
                            known,
                            model ? "; this file is an XGBoost model, not a "
                                    "pipeline: name it in a pipeline's "
                                    "model: key, or score it with tandem "
                                    "score --model FILE"
                                  : "");
    }
    if (seen[k])
      return tdm__spec_fail(r->spec, key_mark, TDM_EPARSE, r->err,
                            "\"%s\" is given twice in %s", keys[k], what);
    seen[k] = 1;
    struct fy_node *value = fy_node_pair_value(pair);
    int rc = fn(r, ctx, k, value, mark_of(value, key_mark));
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}

/* ---- fields ---- */

static const struct {
  const char *name;
  tdm__field_type type;
} field_types[] = {{"string", TDM__FIELD_STRING},
                   {"number", TDM__FIELD_NUMBER},
                   {"time", TDM__FIELD_TIME},
                   {"category", TDM__FIELD_CATEGORY}};

static int field_type(reader *r, struct fy_node *node, tdm__mark mark,
                      tdm__field_spec *f) {
  char *text;
  int rc = scalar(r, node, mark, "a field's type", &text);
  if (rc != TDM_OK) return rc;
  for (size_t i = 0; i < sizeof field_types / sizeof field_types[0]; i++)
    if (strcmp(text, field_types[i].name) == 0) f->type = field_types[i].type;
  if (f->type == 0)
    rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                        "unknown field type \"%s\" (known: string, number, "
                        "time, category)",
                        text);
  tdm__free(text);
  return rc;
}

static const char *const field_keys[] = {
    "type", "unit", "values", "required", "optional", "unknown", NULL};

static int field_pair(reader *r, void *ctx, size_t key, struct fy_node *value,
                      tdm__mark mark) {
  tdm__field_spec *f = ctx;
  switch (key) {
    case 0: return field_type(r, value, mark, f);
    case 1: {
      char *text;
      int rc = scalar(r, value, mark, "unit", &text);
      if (rc != TDM_OK) return rc;
      if (strcmp(text, "s") == 0)
        f->unit = TDM__TIME_SECONDS;
      else if (strcmp(text, "ms") == 0)
        f->unit = TDM__TIME_MILLISECONDS;
      else
        rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                            "a time's unit is s or ms (epoch seconds or "
                            "milliseconds), not \"%s\"",
                            text);
      tdm__free(text);
      return rc;
    }
    case 2: {
      if (value == NULL || !fy_node_is_sequence(value))
        return tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                              "values must be a list of strings, not %s",
                              type_name(value));
      size_t n = (size_t)fy_node_sequence_item_count(value);
      f->values = tdm__calloc(n + 1, sizeof *f->values);
      f->value_lens = tdm__calloc(n + 1, sizeof *f->value_lens);
      if (f->values == NULL || f->value_lens == NULL)
        return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
      void *iter = NULL;
      struct fy_node *item;
      while ((item = fy_node_sequence_iterate(value, &iter)) != NULL) {
        tdm__mark item_mark = mark_of(item, mark);
        int rc = scalar(r, item, item_mark, "a category",
                        &f->values[f->num_values]);
        if (rc != TDM_OK) return rc;
        f->value_lens[f->num_values] = strlen(f->values[f->num_values]);
        f->num_values++; /* owned by the spec from here, freed with it */
        for (size_t i = 0; i + 1 < f->num_values; i++)
          if (strcmp(f->values[i], f->values[f->num_values - 1]) == 0)
            return tdm__spec_fail(r->spec, item_mark, TDM_EPARSE, r->err,
                                  "category \"%s\" is listed twice",
                                  f->values[i]);
      }
      return TDM_OK;
    }
    case 5: {
      char *text;
      int rc = scalar(r, value, mark, "unknown", &text);
      if (rc != TDM_OK) return rc;
      if (strcmp(text, "reject") == 0 || strcmp(text, "missing") == 0)
        f->unknown_missing = text[0] == 'm';
      else
        rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                            "unknown is reject (an event with a category not "
                            "in values is invalid) or missing (it is scored "
                            "as a missing value), not \"%s\"",
                            text);
      f->unknown_set = 1;
      tdm__free(text);
      return rc;
    }
    default: {
      const char *what = key == 3 ? "required" : "optional";
      char *text;
      int rc = scalar(r, value, mark, what, &text);
      if (rc != TDM_OK) return rc;
      if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
        *(key == 3 ? &f->required : &f->optional) = text[0] == 't';
      else
        rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                            "%s is true or false, not \"%s\"", what, text);
      tdm__free(text);
      return rc;
    }
  }
}

static int read_fields(reader *r, struct fy_node *map, tdm__mark mark) {
  tdm__spec *spec = r->spec;
  if (map == NULL || !fy_node_is_mapping(map))
    return tdm__spec_fail(spec, mark, TDM_EPARSE, r->err,
                          "fields must be a mapping of names to types "
                          "({amount: number, ts: time, ...}), not %s",
                          type_name(map));
  size_t n = (size_t)fy_node_mapping_item_count(map);
  spec->fields = tdm__calloc(n + 1, sizeof *spec->fields);
  if (spec->fields == NULL) return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  void *iter = NULL;
  struct fy_node_pair *pair;
  while ((pair = fy_node_mapping_iterate(map, &iter)) != NULL) {
    tdm__field_spec *f = &spec->fields[spec->num_fields];
    struct fy_node *key = fy_node_pair_key(pair);
    f->mark = mark_of(key, mark);
    int rc = name(r, key, f->mark, "a field's name", &f->name);
    if (rc != TDM_OK) return rc;
    spec->num_fields++;
    for (size_t i = 0; i + 1 < spec->num_fields; i++)
      if (strcmp(spec->fields[i].name, f->name) == 0)
        return tdm__spec_fail(spec, f->mark, TDM_EPARSE, r->err,
                              "field \"%s\" is defined twice", f->name);
    struct fy_node *value = fy_node_pair_value(pair);
    tdm__mark value_mark = mark_of(value, f->mark);
    if (value != NULL && fy_node_is_mapping(value)) {
      rc = each_pair(r, value, f->mark, "a field", field_keys, field_pair, f);
      if (rc == TDM_OK && f->type == 0)
        rc = tdm__spec_fail(spec, f->mark, TDM_EPARSE, r->err,
                            "field \"%s\" needs a type", f->name);
    } else {
      rc = field_type(r, value, value_mark, f);
    }
    if (rc != TDM_OK) return rc;
    if (f->type == TDM__FIELD_CATEGORY && f->num_values == 0)
      return tdm__spec_fail(spec, f->mark, TDM_EPARSE, r->err,
                            "category field \"%s\" needs its values, in the "
                            "model's order ({type: category, values: [a, b]})",
                            f->name);
    if (f->type != TDM__FIELD_CATEGORY && f->num_values > 0)
      return tdm__spec_fail(spec, f->mark, TDM_EPARSE, r->err,
                            "only a category field has values");
    if (f->type != TDM__FIELD_CATEGORY && f->unknown_set)
      return tdm__spec_fail(spec, f->mark, TDM_EPARSE, r->err,
                            "only a category field has unknown:");
    if (f->type != TDM__FIELD_TIME && f->unit != TDM__TIME_AUTO)
      return tdm__spec_fail(spec, f->mark, TDM_EPARSE, r->err,
                            "only a time field has a unit");
  }
  return TDM_OK;
}

/* ---- features ---- */

static const struct {
  const char *name;
  int kind;
  int has_input; /* 1: needs (x); 0: takes none */
} agg_names[] = {
    {"count", TDM__AGG_COUNT, 0}, {"sum", TDM__AGG_SUM, 1},
    {"mean", TDM__AGG_MEAN, 1},   {"min", TDM__AGG_MIN, 1},
    {"max", TDM__AGG_MAX, 1},     {"stddev", TDM__AGG_STDDEV, 1},
    {"last", TDM__AGG_LAST, 1},   {"since_last", TDM__AGG_SINCE_LAST, 0},
    {"distinct", TDM__AGG_DISTINCT, 1},
};

/* "sum(amount)", "count", "since_last", "distinct(merchant)". */
static int agg_text(reader *r, tdm__feature_spec *f, const char *text,
                    tdm__mark mark) {
  const char *open = strchr(text, '(');
  size_t len = open ? (size_t)(open - text) : strlen(text);
  while (len > 0 && text[len - 1] == ' ') len--;
  size_t a = 0, n = sizeof agg_names / sizeof agg_names[0];
  while (a < n && !(strlen(agg_names[a].name) == len &&
                    memcmp(agg_names[a].name, text, len) == 0))
    a++;
  if (a == n)
    return tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                          "unknown aggregation \"%.*s\" (known: count, "
                          "sum(x), mean(x), min(x), max(x), stddev(x), "
                          "last(x), since_last, distinct(x))",
                          (int)len, text);
  f->agg = agg_names[a].kind;
  if (!agg_names[a].has_input) {
    if (open != NULL)
      return tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                            "%s takes no argument: write \"%s\"",
                            agg_names[a].name, agg_names[a].name);
    return TDM_OK;
  }
  const char *close = open ? strchr(open, ')') : NULL;
  if (open == NULL || close == NULL || close[1] != '\0')
    return tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                          "%s needs the field or feature it aggregates: "
                          "write \"%s(name)\"",
                          agg_names[a].name, agg_names[a].name);
  const char *s = open + 1, *e = close;
  while (s < e && *s == ' ') s++;
  while (e > s && e[-1] == ' ') e--;
  int ok = s < e && (isalpha((unsigned char)*s) || *s == '_');
  for (const char *p = s; ok && p < e; p++)
    ok = isalnum((unsigned char)*p) || *p == '_';
  if (!ok)
    return tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                          "%s(...) takes the name of a field or feature, "
                          "not \"%.*s\"",
                          agg_names[a].name, (int)(e - s), s);
  f->agg_input = tdm__strndup(s, (size_t)(e - s));
  if (f->agg_input == NULL) return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  return TDM_OK;
}

/* "TABLE.COLUMN": two names. */
static int table_column(reader *r, struct fy_node *node, tdm__mark mark,
                        const char *what, char **table, char **column) {
  char *text;
  int rc = scalar(r, node, mark, what, &text);
  if (rc != TDM_OK) return rc;
  const char *dot = strchr(text, '.');
  int ok = dot != NULL && dot != text && dot[1] != '\0' && !strchr(dot + 1, '.');
  for (const char *p = text; ok && *p; p++)
    ok = isalnum((unsigned char)*p) || *p == '_' || p == dot;
  if (ok && isdigit((unsigned char)text[0])) ok = 0;
  if (!ok) {
    rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                        "%s \"%s\" must be TABLE.COLUMN (two names and a dot)",
                        what, text);
  } else {
    *table = tdm__strndup(text, (size_t)(dot - text));
    *column = tdm__strdup(dot + 1);
    if (*table == NULL || *column == NULL)
      rc = tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  }
  tdm__free(text);
  return rc;
}

static int number_value(reader *r, struct fy_node *node, tdm__mark mark,
                        const char *what, double *out) {
  char *text;
  int rc = scalar(r, node, mark, what, &text);
  if (rc != TDM_OK) return rc;
  if (tdm__parse_double(text, strlen(text), out) != 0 || !isfinite(*out))
    rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                        "%s must be a number, not \"%s\"", what, text);
  tdm__free(text);
  return rc;
}

static const char *const feature_keys[] = {
    "name", "expr", "agg", "window", "hop", "where", "lookup", "default", NULL};

static int feature_pair(reader *r, void *ctx, size_t key,
                        struct fy_node *value, tdm__mark mark) {
  tdm__feature_spec *f = ctx;
  switch (key) {
    case 0: return name(r, value, mark, "a feature's name", &f->name);
    case 1:
      f->expr_mark = mark;
      return scalar(r, value, mark, "expr", &f->expr);
    case 2: {
      char *text;
      int rc = scalar(r, value, mark, "agg", &text);
      if (rc != TDM_OK) return rc;
      f->agg_mark = mark;
      f->kind = TDM__FEATURE_AGG;
      rc = agg_text(r, f, text, mark);
      tdm__free(text);
      return rc;
    }
    case 3: {
      f->window_mark = mark;
      char *text;
      int rc = scalar(r, value, mark, "window", &text);
      if (rc != TDM_OK) return rc;
      if (strcmp(text, "all") != 0)
        rc = duration(r, value, mark, "window", &f->window_ms);
      tdm__free(text);
      return rc;
    }
    case 4:
      f->hop_mark = mark;
      return duration(r, value, mark, "hop", &f->hop_ms);
    case 5:
      f->where_mark = mark;
      return scalar(r, value, mark, "where", &f->where);
    case 6:
      f->lookup_mark = mark;
      return table_column(r, value, mark, "lookup", &f->table, &f->column);
    default:
      f->default_mark = mark;
      return number_value(r, value, mark, "default", &f->default_value);
  }
}

static int check_feature(reader *r, tdm__feature_spec *f) {
  const tdm__spec *spec = r->spec;
  if (f->name == NULL)
    return tdm__spec_fail(spec, f->mark, TDM_EPARSE, r->err,
                          "a feature needs a name");
  int kinds = (f->expr != NULL) + (f->kind == TDM__FEATURE_AGG) +
              (f->table != NULL);
  if (kinds == 1 && f->table != NULL) {
    f->kind = TDM__FEATURE_LOOKUP;
    if (f->window_mark.line || f->hop_mark.line || f->where_mark.line)
      return tdm__spec_fail(spec, f->mark, TDM_EPARSE, r->err,
                            "window, hop and where belong to an aggregation "
                            "(agg), and feature \"%s\" is a lookup",
                            f->name);
    return TDM_OK;
  }
  if (f->default_mark.line)
    return tdm__spec_fail(spec, f->default_mark, TDM_EPARSE, r->err,
                          "default belongs to a lookup");
  if (kinds != 1)
    return tdm__spec_fail(spec, f->mark, TDM_EPARSE, r->err,
                          "feature \"%s\" needs exactly one of expr (a "
                          "formula), agg (an aggregation over a window) and "
                          "lookup (a batch table's value)",
                          f->name);
  if ((f->expr != NULL) == (f->kind == TDM__FEATURE_AGG))
    return tdm__spec_fail(spec, f->mark, TDM_EPARSE, r->err,
                          "feature \"%s\" needs exactly one of expr (a "
                          "formula) and agg (an aggregation over a window)",
                          f->name);
  if (f->expr != NULL) {
    f->kind = TDM__FEATURE_EXPR;
    tdm__mark m = f->window_mark.line   ? f->window_mark
                  : f->hop_mark.line    ? f->hop_mark
                  : f->where_mark.line  ? f->where_mark
                                        : f->mark;
    if (f->window_mark.line || f->hop_mark.line || f->where_mark.line)
      return tdm__spec_fail(spec, m, TDM_EPARSE, r->err,
                            "window, hop and where belong to an aggregation "
                            "(agg), and feature \"%s\" is an expr",
                            f->name);
    return TDM_OK;
  }
  if (f->hop_ms > 0) {
    if (f->window_ms == 0)
      return tdm__spec_fail(spec, f->hop_mark, TDM_EPARSE, r->err,
                            "hop needs a window of fixed length, not all");
    if (f->window_ms % f->hop_ms != 0 || f->hop_ms >= f->window_ms)
      return tdm__spec_fail(spec, f->hop_mark, TDM_EPARSE, r->err,
                            "the window must be a multiple of hop, and "
                            "longer");
    if (f->agg == TDM__AGG_DISTINCT || f->agg == TDM__AGG_LAST ||
        f->agg == TDM__AGG_SINCE_LAST)
      return tdm__spec_fail(spec, f->hop_mark, TDM_EPARSE, r->err,
                            "hop works with count, sum, mean, min, max and "
                            "stddev only");
  }
  if (f->agg == TDM__AGG_DISTINCT && f->window_ms == 0)
    return tdm__spec_fail(spec, f->window_mark.line ? f->window_mark : f->mark,
                          TDM_EPARSE, r->err,
                          "distinct needs a window of fixed length (over "
                          "the whole history it would grow without bound)");
  return TDM_OK;
}

static int read_features(reader *r, struct fy_node *list, tdm__mark mark) {
  tdm__spec *spec = r->spec;
  if (list == NULL || !fy_node_is_sequence(list))
    return tdm__spec_fail(spec, mark, TDM_EPARSE, r->err,
                          "features must be a list, not %s", type_name(list));
  size_t n = (size_t)fy_node_sequence_item_count(list);
  spec->features = tdm__calloc(n + 1, sizeof *spec->features);
  if (spec->features == NULL)
    return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  void *iter = NULL;
  struct fy_node *item;
  tdm__mark item_mark = mark;
  while ((item = fy_node_sequence_iterate(list, &iter)) != NULL) {
    tdm__feature_spec *f = &spec->features[spec->num_features++];
    f->default_value = NAN;
    /* A list item's position: its first key (libfyaml gives collections
     * none). */
    f->mark = item_mark;
    if (item != NULL && fy_node_is_mapping(item)) {
      void *it = NULL;
      struct fy_node_pair *first = fy_node_mapping_iterate(item, &it);
      if (first) f->mark = mark_of(fy_node_pair_key(first), item_mark);
    }
    int rc = each_pair(r, item, f->mark, "a feature", feature_keys,
                       feature_pair, f);
    if (rc == TDM_OK) rc = check_feature(r, f);
    if (rc != TDM_OK) return rc;
    item_mark = f->mark;
  }
  return TDM_OK;
}

/* ---- model, decision, output, state ---- */

static const char *const model_keys[] = {"path", NULL};

/* A path in the file, resolved against the file's directory. */
static int path_value(reader *r, struct fy_node *value, tdm__mark mark,
                      const char *what, char **out) {
  const tdm__spec *spec = r->spec;
  char *path;
  int rc = scalar(r, value, mark, what, &path);
  if (rc != TDM_OK) return rc;
  if (path[0] == '/' || spec->dir[0] == '\0') {
    *out = path;
    return TDM_OK;
  }
  tdm__buf b = {0};
  rc = tdm__buf_printf(&b, "%s/%s", spec->dir, path);
  tdm__free(path);
  if (rc != TDM_OK) return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  *out = b.data;
  return TDM_OK;
}

/* The store: a directory relative to the pipeline's, or a Redis URL,
 * which is taken as written. */
static int store_value(reader *r, struct fy_node *value, tdm__mark mark,
                       char **out) {
  int rc = scalar(r, value, mark, "store", out);
  if (rc != TDM_OK || tdm__tables_is_url(*out)) return rc;
  tdm__free(*out);
  *out = NULL;
  return path_value(r, value, mark, "store", out);
}

static int model_pair(reader *r, void *ctx, size_t key, struct fy_node *value,
                      tdm__mark mark) {
  r->spec->model_mark = mark;
  return path_value(r, value, mark, "the model's path", &r->spec->model_path);
}

static int shadow_pair(reader *r, void *ctx, size_t key, struct fy_node *value,
                       tdm__mark mark) {
  r->spec->shadow_mark = mark;
  return path_value(r, value, mark, "the shadow model's path",
                    &r->spec->shadow_path);
}

static const char *const rule_keys[] = {"when", "then", NULL};

static int rule_pair(reader *r, void *ctx, size_t key, struct fy_node *value,
                     tdm__mark mark) {
  tdm__rule_spec *rule = ctx;
  if (key == 0) {
    rule->when_mark = mark;
    return scalar(r, value, mark, "when", &rule->when);
  }
  return scalar(r, value, mark, "then", &rule->then);
}

static int read_rules(reader *r, struct fy_node *list, tdm__mark mark) {
  tdm__spec *spec = r->spec;
  if (list == NULL || !fy_node_is_sequence(list))
    return tdm__spec_fail(spec, mark, TDM_EPARSE, r->err,
                          "decision must be a list of rules ({when: "
                          "\"score >= 0.9\", then: block}), not %s",
                          type_name(list));
  size_t n = (size_t)fy_node_sequence_item_count(list);
  spec->rules = tdm__calloc(n + 1, sizeof *spec->rules);
  if (spec->rules == NULL) return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  void *iter = NULL;
  struct fy_node *item;
  while ((item = fy_node_sequence_iterate(list, &iter)) != NULL) {
    tdm__rule_spec *rule = &spec->rules[spec->num_rules++];
    rule->mark = mark;
    if (item != NULL && fy_node_is_mapping(item)) {
      void *it = NULL;
      struct fy_node_pair *first = fy_node_mapping_iterate(item, &it);
      if (first) rule->mark = mark_of(fy_node_pair_key(first), mark);
    }
    int rc = each_pair(r, item, rule->mark, "a decision rule", rule_keys,
                       rule_pair, rule);
    if (rc != TDM_OK) return rc;
    if (rule->then == NULL)
      return tdm__spec_fail(spec, rule->mark, TDM_EPARSE, r->err,
                            "a decision rule needs then (the decision)");
    if (rule->when == NULL && spec->num_rules < n)
      return tdm__spec_fail(spec, rule->mark, TDM_EPARSE, r->err,
                            "a rule without when matches every event: only "
                            "the last rule may leave it out");
    mark = rule->mark;
  }
  return TDM_OK;
}

static int read_outputs(reader *r, struct fy_node *list, tdm__mark mark) {
  tdm__spec *spec = r->spec;
  if (list == NULL || !fy_node_is_sequence(list))
    return tdm__spec_fail(spec, mark, TDM_EPARSE, r->err,
                          "output must be a list of column names, not %s",
                          type_name(list));
  size_t n = (size_t)fy_node_sequence_item_count(list);
  spec->outputs = tdm__calloc(n + 1, sizeof *spec->outputs);
  spec->output_marks = tdm__calloc(n + 1, sizeof *spec->output_marks);
  if (spec->outputs == NULL || spec->output_marks == NULL)
    return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  void *iter = NULL;
  struct fy_node *item;
  while ((item = fy_node_sequence_iterate(list, &iter)) != NULL) {
    size_t i = spec->num_outputs;
    spec->output_marks[i] = mark_of(item, mark);
    int rc = name(r, item, spec->output_marks[i], "an output column",
                  &spec->outputs[i]);
    if (rc != TDM_OK) return rc;
    spec->num_outputs++;
    for (size_t j = 0; j < i; j++)
      if (strcmp(spec->outputs[j], spec->outputs[i]) == 0)
        return tdm__spec_fail(spec, spec->output_marks[i], TDM_EPARSE, r->err,
                              "output column \"%s\" is listed twice",
                              spec->outputs[i]);
  }
  return TDM_OK;
}

static const char *const state_keys[] = {"lateness", "ttl", "max_events",
                                         "dedupe", "max_future", "late",
                                         NULL};

/* state.late: what happens to an event older than its entity's dedupe
 * horizon, which can no longer be checked for duplicates. */
static int late_policy(reader *r, struct fy_node *value, tdm__mark mark,
                       int *apply) {
  char *text;
  int rc = scalar(r, value, mark, "late", &text);
  if (rc != TDM_OK) return rc;
  if (strcmp(text, "apply") == 0 || strcmp(text, "reject") == 0)
    *apply = text[0] == 'a';
  else
    rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                        "late must be reject or apply, not \"%s\"", text);
  tdm__free(text);
  return rc;
}

static int state_pair(reader *r, void *ctx, size_t key, struct fy_node *value,
                      tdm__mark mark) {
  tdm__spec *spec = r->spec;
  switch (key) {
    case 0: {
      char *text;
      int rc = scalar(r, value, mark, "lateness", &text);
      if (rc != TDM_OK) return rc;
      if (strcmp(text, "0") == 0)
        spec->lateness_ms = 0;
      else
        rc = duration(r, value, mark, "lateness", &spec->lateness_ms);
      tdm__free(text);
      return rc;
    }
    case 1: return duration(r, value, mark, "ttl", &spec->ttl_ms);
    case 2: return count_value(r, value, mark, "max_events", &spec->max_events);
    case 3: return duration(r, value, mark, "dedupe", &spec->dedupe_ms);
    case 4:
      return duration(r, value, mark, "max_future", &spec->max_future_ms);
    default: return late_policy(r, value, mark, &spec->late_apply);
  }
}

/* ---- hybrid: tables, materialize, realtime, schedule ---- */

/* The items of a list of mappings, each handed to fn with its mark. */
static int each_item(reader *r, struct fy_node *list, tdm__mark mark,
                     const char *what, size_t item_size, void **items,
                     size_t *count,
                     int (*fn)(reader *r, void *item, struct fy_node *node,
                               tdm__mark mark)) {
  if (list == NULL || !fy_node_is_sequence(list))
    return tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                          "%s must be a list, not %s", what, type_name(list));
  size_t n = (size_t)fy_node_sequence_item_count(list);
  *items = tdm__calloc(n + 1, item_size);
  if (*items == NULL) return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  void *iter = NULL;
  struct fy_node *item;
  while ((item = fy_node_sequence_iterate(list, &iter)) != NULL) {
    tdm__mark item_mark = mark;
    if (fy_node_is_mapping(item)) {
      void *it = NULL;
      struct fy_node_pair *first = fy_node_mapping_iterate(item, &it);
      if (first) item_mark = mark_of(fy_node_pair_key(first), mark);
    }
    void *slot = (char *)*items + *count * item_size;
    (*count)++;
    int rc = fn(r, slot, item, item_mark);
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}

static const char *const materialize_keys[] = {"table", "columns", "keep", NULL};

static int materialize_pair(reader *r, void *ctx, size_t key,
                            struct fy_node *value, tdm__mark mark) {
  tdm__materialize_spec *m = ctx;
  if (key == 0) return name(r, value, mark, "a table's name", &m->table);
  if (key == 2) return count_value(r, value, mark, "keep", &m->keep);
  if (value == NULL || !fy_node_is_sequence(value))
    return tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                          "columns must be a list of features (or score)");
  size_t n = (size_t)fy_node_sequence_item_count(value);
  m->columns = tdm__calloc(n + 1, sizeof *m->columns);
  m->column_marks = tdm__calloc(n + 1, sizeof *m->column_marks);
  if (m->columns == NULL || m->column_marks == NULL)
    return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  void *iter = NULL;
  struct fy_node *item;
  while ((item = fy_node_sequence_iterate(value, &iter)) != NULL) {
    size_t i = m->num_columns;
    m->column_marks[i] = mark_of(item, mark);
    int rc = name(r, item, m->column_marks[i], "a column", &m->columns[i]);
    if (rc != TDM_OK) return rc;
    m->num_columns++;
  }
  return TDM_OK;
}

static int read_materialize_item(reader *r, void *item, struct fy_node *node,
                                 tdm__mark mark) {
  tdm__materialize_spec *m = item;
  m->mark = mark;
  m->keep = 3;
  int rc = each_pair(r, node, mark, "a materialized table", materialize_keys,
                     materialize_pair, m);
  if (rc == TDM_OK && (m->table == NULL || m->num_columns == 0))
    rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                        "a materialized table needs table and columns");
  for (size_t i = 0; rc == TDM_OK && i + 1 < r->spec->num_materialize; i++)
    if (strcmp(r->spec->materialize[i].table, m->table) == 0)
      rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                          "table \"%s\" is materialized twice", m->table);
  return rc;
}

static const char *const table_keys[] = {"max_staleness", "on_stale", NULL};

static int table_pair(reader *r, void *ctx, size_t key, struct fy_node *value,
                      tdm__mark mark) {
  tdm__table_spec *t = ctx;
  if (key == 0)
    return duration(r, value, mark, "max_staleness", &t->max_staleness_ms);
  char *text;
  int rc = scalar(r, value, mark, "on_stale", &text);
  if (rc != TDM_OK) return rc;
  if (strcmp(text, "not_ready") == 0)
    t->fail_ready = 1;
  else if (strcmp(text, "warn") == 0)
    t->fail_ready = 0;
  else
    rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                        "on_stale is not_ready (readiness fails) or warn, "
                        "not \"%s\"",
                        text);
  tdm__free(text);
  return rc;
}

static int read_tables(reader *r, struct fy_node *map, tdm__mark mark) {
  tdm__spec *spec = r->spec;
  if (map == NULL || !fy_node_is_mapping(map))
    return tdm__spec_fail(spec, mark, TDM_EPARSE, r->err,
                          "tables must be a mapping of table names to "
                          "settings ({card_profile: {max_staleness: 2d}})");
  size_t n = (size_t)fy_node_mapping_item_count(map);
  spec->tables = tdm__calloc(n + 1, sizeof *spec->tables);
  if (spec->tables == NULL) return tdm__fail(r->err, TDM_ENOMEM, "out of memory");
  void *iter = NULL;
  struct fy_node_pair *pair;
  while ((pair = fy_node_mapping_iterate(map, &iter)) != NULL) {
    tdm__table_spec *t = &spec->tables[spec->num_tables++];
    t->fail_ready = 1;
    t->mark = mark_of(fy_node_pair_key(pair), mark);
    int rc = name(r, fy_node_pair_key(pair), t->mark, "a table's name",
                  &t->table);
    if (rc == TDM_OK)
      rc = each_pair(r, fy_node_pair_value(pair), t->mark, "a table",
                     table_keys, table_pair, t);
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}

static const char *const realtime_keys[] = {"deadline_ms", "fallback",
                                            "default_decision", NULL};

static int realtime_pair(reader *r, void *ctx, size_t key,
                         struct fy_node *value, tdm__mark mark) {
  tdm__spec *spec = r->spec;
  if (key == 0) {
    size_t ms;
    int rc = count_value(r, value, mark, "deadline_ms", &ms);
    spec->deadline_ms = (int64_t)ms;
    return rc;
  }
  if (key == 1) {
    spec->fallback_mark = mark;
    return table_column(r, value, mark, "fallback", &spec->fallback_table,
                        &spec->fallback_column);
  }
  return scalar(r, value, mark, "default_decision", &spec->default_decision);
}

static const char *const explain_keys[] = {"reasons", "min_contribution", NULL};

static int explain_pair(reader *r, void *ctx, size_t key, struct fy_node *value,
                        tdm__mark mark) {
  tdm__spec *spec = r->spec;
  if (key == 0)
    return count_value(r, value, mark, "explain: reasons",
                       &spec->explain_reasons);
  int rc = number_value(r, value, mark, "explain: min_contribution",
                        &spec->explain_min_contribution);
  if (rc == TDM_OK && spec->explain_min_contribution < 0)
    rc = tdm__spec_fail(spec, mark, TDM_EPARSE, r->err,
                        "explain: min_contribution must be 0 or more (it "
                        "bounds the absolute contribution)");
  return rc;
}

static const char *const schedule_keys[] = {"cron", "in", "table", NULL};

static int schedule_pair(reader *r, void *ctx, size_t key,
                         struct fy_node *value, tdm__mark mark) {
  tdm__schedule_spec *s = ctx;
  if (key == 0) {
    s->cron_mark = mark;
    int rc = scalar(r, value, mark, "cron", &s->cron);
    tdm_error why;
    if (rc == TDM_OK && tdm__cron_parse(s->cron, &s->when, &why) != TDM_OK)
      rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err, "cron \"%s\": %s",
                          s->cron, why.message);
    return rc;
  }
  if (key == 1) return path_value(r, value, mark, "in", &s->in);
  s->table_mark = mark;
  return name(r, value, mark, "table", &s->table);
}

static int read_schedule_item(reader *r, void *item, struct fy_node *node,
                              tdm__mark mark) {
  tdm__schedule_spec *s = item;
  s->mark = mark;
  int rc = each_pair(r, node, mark, "a schedule", schedule_keys,
                     schedule_pair, s);
  if (rc == TDM_OK && (s->cron == NULL || s->in == NULL))
    rc = tdm__spec_fail(r->spec, mark, TDM_EPARSE, r->err,
                        "a schedule needs cron (when) and in (the events "
                        "the refresh reads)");
  return rc;
}

/* ---- the top level ---- */

enum {
  KEY_NAME, KEY_ENTITY, KEY_TIME, KEY_ID, KEY_FIELDS, KEY_FEATURES,
  KEY_MODEL, KEY_DECISION, KEY_OUTPUT, KEY_STATE, KEY_STORE, KEY_MATERIALIZE,
  KEY_TABLES, KEY_REALTIME, KEY_SCHEDULE, KEY_EXPLAIN, KEY_SHADOW
};
static const char *const top_keys[] = {
    "name",   "entity",      "time",   "id",       "fields",
    "features", "model",     "decision", "output", "state",
    "store",  "materialize", "tables", "realtime", "schedule",
    "explain", "shadow", NULL};

typedef struct top {
  tdm__mark marks[20];
  unsigned seen;
} top;

static int top_pair(reader *r, void *ctx, size_t key, struct fy_node *value,
                    tdm__mark mark) {
  tdm__spec *spec = r->spec;
  top *t = ctx;
  t->marks[key] = mark;
  t->seen |= 1u << key;
  switch (key) {
    case KEY_NAME:
      spec->name_mark = mark;
      return name(r, value, mark, "the pipeline's name", &spec->name);
    case KEY_ENTITY:
      spec->entity_mark = mark;
      return name(r, value, mark, "entity", &spec->entity);
    case KEY_TIME:
      spec->time_mark = mark;
      return name(r, value, mark, "time", &spec->time);
    case KEY_ID:
      spec->id_mark = mark;
      return name(r, value, mark, "id", &spec->id);
    case KEY_FIELDS: return read_fields(r, value, mark);
    case KEY_FEATURES: return read_features(r, value, mark);
    case KEY_MODEL:
      if (value != NULL && fy_node_is_scalar(value))
        return model_pair(r, NULL, 0, value, mark);
      return each_pair(r, value, mark, "model", model_keys, model_pair, NULL);
    case KEY_SHADOW:
      if (value != NULL && fy_node_is_scalar(value))
        return shadow_pair(r, NULL, 0, value, mark);
      return each_pair(r, value, mark, "shadow", model_keys, shadow_pair, NULL);
    case KEY_DECISION: return read_rules(r, value, mark);
    case KEY_OUTPUT: return read_outputs(r, value, mark);
    case KEY_STATE:
      return each_pair(r, value, mark, "state", state_keys, state_pair, NULL);
    case KEY_STORE:
      spec->store_mark = mark;
      return store_value(r, value, mark, &spec->store);
    case KEY_MATERIALIZE:
      return each_item(r, value, mark, "materialize",
                       sizeof *spec->materialize, (void **)&spec->materialize,
                       &spec->num_materialize, read_materialize_item);
    case KEY_TABLES: return read_tables(r, value, mark);
    case KEY_REALTIME:
      spec->realtime_mark = mark;
      return each_pair(r, value, mark, "realtime", realtime_keys,
                       realtime_pair, NULL);
    case KEY_EXPLAIN: {
      spec->explain_mark = mark;
      int rc = each_pair(r, value, mark, "explain", explain_keys, explain_pair,
                         NULL);
      if (rc == TDM_OK && spec->explain_reasons == 0)
        rc = tdm__spec_fail(spec, mark, TDM_EPARSE, r->err,
                            "explain needs reasons (how many of each "
                            "result's top contributions to give)");
      return rc;
    }
    default:
      return each_item(r, value, mark, "schedule", sizeof *spec->schedules,
                       (void **)&spec->schedules, &spec->num_schedules,
                       read_schedule_item);
  }
}

static const tdm__field_spec *find_field(const tdm__spec *spec,
                                         const char *field) {
  for (size_t i = 0; i < spec->num_fields; i++)
    if (strcmp(spec->fields[i].name, field) == 0) return &spec->fields[i];
  return NULL;
}

/* The key fields must be declared, with fitting types. */
static int check_keys(reader *r, const top *t) {
  tdm__spec *spec = r->spec;
  static const struct {
    int key;
    const char *what;
  } required[] = {{KEY_NAME, "name"},
                  {KEY_ENTITY, "entity"},
                  {KEY_TIME, "time"},
                  {KEY_FIELDS, "fields"}};
  for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
    if (!(t->seen & (1u << required[i].key)))
      return tdm__spec_fail(spec, (tdm__mark){1, 1, TDM__STYLE_PLAIN}, TDM_EPARSE, r->err,
                            "the pipeline needs \"%s\"", required[i].what);
  const tdm__field_spec *f = find_field(spec, spec->entity);
  if (f == NULL || (f->type != TDM__FIELD_STRING && f->type != TDM__FIELD_NUMBER))
    return tdm__spec_fail(spec, spec->entity_mark, TDM_EPARSE, r->err,
                          "entity \"%s\" must be one of the fields, a string "
                          "or a number",
                          spec->entity);
  f = find_field(spec, spec->time);
  if (f == NULL || f->type != TDM__FIELD_TIME)
    return tdm__spec_fail(spec, spec->time_mark, TDM_EPARSE, r->err,
                          "time \"%s\" must be one of the fields, of type "
                          "time",
                          spec->time);
  if (spec->id != NULL) {
    f = find_field(spec, spec->id);
    if (f == NULL || (f->type != TDM__FIELD_STRING && f->type != TDM__FIELD_NUMBER))
      return tdm__spec_fail(spec, spec->id_mark, TDM_EPARSE, r->err,
                            "id \"%s\" must be one of the fields, a string "
                            "or a number",
                            spec->id);
  }
  for (size_t i = 0; i < spec->num_schedules; i++) {
    const tdm__schedule_spec *sc = &spec->schedules[i];
    size_t m = 0;
    while (m < spec->num_materialize &&
           (sc->table == NULL ||
            strcmp(spec->materialize[m].table, sc->table) != 0))
      m++;
    if (spec->num_materialize == 0 || (sc->table != NULL && m == spec->num_materialize))
      return tdm__spec_fail(spec, sc->table ? sc->table_mark : sc->mark,
                            TDM_EPARSE, r->err,
                            "a schedule refreshes tables of the materialize: "
                            "section%s%s",
                            sc->table ? ", and there is none named " : "",
                            sc->table ? sc->table : "");
  }
  if (spec->fallback_table != NULL && spec->deadline_ms == 0)
    return tdm__spec_fail(spec, spec->fallback_mark, TDM_EPARSE, r->err,
                          "a fallback needs deadline_ms (when to use it)");
  for (size_t i = 0; i < spec->num_features; i++) {
    const tdm__feature_spec *feature = &spec->features[i];
    for (size_t j = 0; j < i; j++)
      if (strcmp(spec->features[j].name, feature->name) == 0)
        return tdm__spec_fail(spec, feature->mark, TDM_EPARSE, r->err,
                              "feature \"%s\" is defined twice",
                              feature->name);
    if (find_field(spec, feature->name) != NULL)
      return tdm__spec_fail(spec, feature->mark, TDM_EPARSE, r->err,
                            "feature \"%s\" has the name of a field",
                            feature->name);
  }
  return TDM_OK;
}

static int read_document(reader *r, struct fy_document *doc) {
  struct fy_node *root = fy_document_root(doc);
  top t = {0};
  int rc = each_pair(r, root, (tdm__mark){1, 1, TDM__STYLE_PLAIN}, "the pipeline", top_keys,
                     top_pair, &t);
  if (rc == TDM_OK) rc = check_keys(r, &t);
  return rc;
}

/* libfyaml's own syntax errors, collected instead of printed. */
static int syntax_error(tdm__spec *spec, struct fy_diag *diag,
                        tdm_error *err) {
  void *iter = NULL;
  struct fy_diag_error *e = fy_diag_errors_iterate(diag, &iter);
  if (e == NULL)
    return tdm__spec_fail(spec, (tdm__mark){0, 0, TDM__STYLE_PLAIN}, TDM_EPARSE, err,
                          "not a YAML document");
  return tdm__spec_fail(spec, (tdm__mark){e->line, e->column, TDM__STYLE_PLAIN},
                        TDM_EPARSE, err, "YAML: %s", e->msg);
}

/* Checks what is read before libfyaml sees the text: valid UTF-8, no NUL,
 * and no YAML directive (a line starting with %), which a pipeline file
 * has no use for (and on which libfyaml 0.7 can loop forever when it is
 * malformed). */
static int check_text(const tdm__spec *spec, const char *text, size_t len,
                      tdm_error *err) {
  int line = 1, column = 1;
  const unsigned char *p = (const unsigned char *)text, *end = p + len;
  while (p < end) {
    if (column == 1 && *p == '%')
      return tdm__spec_fail(spec, (tdm__mark){line, 1, TDM__STYLE_PLAIN},
                            TDM_EPARSE, err,
                            "YAML directives (%%YAML, %%TAG) are not "
                            "supported in pipeline files");
    size_t n = 1;
    if (*p == 0)
      return tdm__spec_fail(spec, (tdm__mark){line, column, TDM__STYLE_PLAIN},
                            TDM_EPARSE, err, "a NUL byte");
    if (*p >= 0x80) {
      /* A UTF-8 sequence: lead byte, then continuation bytes. */
      n = *p >= 0xF0 && *p <= 0xF4 ? 4 : *p >= 0xE0 ? 3 : *p >= 0xC2 ? 2 : 0;
      if (*p > 0xF4) n = 0;
      for (size_t i = 1; n > 0 && i < n; i++)
        if (p + i >= end || (p[i] & 0xC0) != 0x80) n = 0;
      if (n == 0)
        return tdm__spec_fail(spec,
                              (tdm__mark){line, column, TDM__STYLE_PLAIN},
                              TDM_EPARSE, err, "not valid UTF-8");
    }
    if (*p == '\n') {
      line++;
      column = 1;
    } else {
      column++;
    }
    p += n;
  }
  return TDM_OK;
}

int tdm__spec_parse(const char *text, size_t len, const char *path,
                    tdm__spec **out, tdm_error *err) {
  *out = NULL;
  tdm__spec *spec = tdm__calloc(1, sizeof *spec);
  if (spec == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  spec->path = tdm__strdup(path);
  spec->source = tdm__strndup(text, len);
  spec->source_len = len;
  const char *slash = strrchr(path, '/');
  spec->dir = slash ? tdm__strndup(path, (size_t)(slash - path)) : tdm__strdup("");
  spec->ttl_ms = -1;
  spec->max_events = 100000;
  spec->dedupe_ms = 86400000; /* 1 day */
  spec->max_future_ms = 86400000; /* 1 day */
  if (spec->path == NULL || spec->dir == NULL || spec->source == NULL) {
    tdm__spec_free(spec);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  int checked = check_text(spec, text, len, err);
  if (checked != TDM_OK) {
    tdm__spec_free(spec);
    return checked;
  }
  struct fy_diag_cfg dcfg;
  fy_diag_cfg_default(&dcfg);
  dcfg.fp = NULL;
  dcfg.output_fn = NULL;
  dcfg.level = FYET_ERROR;
  struct fy_diag *diag = fy_diag_create(&dcfg);
  if (diag == NULL) {
    tdm__spec_free(spec);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  fy_diag_set_collect_errors(diag, true);
  struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET | FYPCF_DEFAULT_PARSE,
                             .diag = diag};
  struct fy_document *doc = fy_document_build_from_string(&cfg, text, len);
  int rc;
  if (doc == NULL) {
    rc = syntax_error(spec, diag, err);
  } else {
    reader r = {spec, err};
    rc = read_document(&r, doc);
    fy_document_destroy(doc);
  }
  fy_diag_destroy(diag);
  if (rc != TDM_OK) {
    tdm__spec_free(spec);
    return rc;
  }
  *out = spec;
  return TDM_OK;
}

int tdm__spec_load(const char *path, tdm__spec **out, tdm_error *err) {
  char *text;
  size_t len;
  *out = NULL;
  int rc = tdm__read_file(path, &text, &len, err);
  if (rc != TDM_OK) return rc;
  rc = tdm__spec_parse(text, len, path, out, err);
  tdm__free(text);
  return rc;
}

void tdm__spec_free(tdm__spec *spec) {
  if (spec == NULL) return;
  for (size_t i = 0; i < spec->num_fields; i++) {
    tdm__free(spec->fields[i].name);
    for (size_t j = 0; j < spec->fields[i].num_values; j++)
      tdm__free(spec->fields[i].values[j]);
    tdm__free(spec->fields[i].values);
    tdm__free(spec->fields[i].value_lens);
  }
  for (size_t i = 0; i < spec->num_features; i++) {
    tdm__feature_spec *f = &spec->features[i];
    tdm__free(f->name);
    tdm__free(f->expr);
    tdm__free(f->agg_input);
    tdm__free(f->where);
    tdm__free(f->table);
    tdm__free(f->column);
  }
  for (size_t i = 0; i < spec->num_rules; i++) {
    tdm__free(spec->rules[i].when);
    tdm__free(spec->rules[i].then);
  }
  for (size_t i = 0; i < spec->num_outputs; i++) tdm__free(spec->outputs[i]);
  for (size_t i = 0; i < spec->num_materialize; i++) {
    tdm__materialize_spec *m = &spec->materialize[i];
    for (size_t j = 0; j < m->num_columns; j++) tdm__free(m->columns[j]);
    tdm__free(m->columns);
    tdm__free(m->column_marks);
    tdm__free(m->table);
  }
  tdm__free(spec->materialize);
  for (size_t i = 0; i < spec->num_tables; i++) tdm__free(spec->tables[i].table);
  tdm__free(spec->tables);
  for (size_t i = 0; i < spec->num_schedules; i++) {
    tdm__free(spec->schedules[i].cron);
    tdm__free(spec->schedules[i].in);
    tdm__free(spec->schedules[i].table);
  }
  tdm__free(spec->schedules);
  tdm__free(spec->store);
  tdm__free(spec->fallback_table);
  tdm__free(spec->fallback_column);
  tdm__free(spec->default_decision);
  tdm__free(spec->fields);
  tdm__free(spec->features);
  tdm__free(spec->rules);
  tdm__free(spec->outputs);
  tdm__free(spec->output_marks);
  tdm__free(spec->model_path);
  tdm__free(spec->shadow_path);
  tdm__free(spec->name);
  tdm__free(spec->entity);
  tdm__free(spec->time);
  tdm__free(spec->id);
  tdm__free(spec->path);
  tdm__free(spec->dir);
  tdm__free(spec->source);
  tdm__free(spec);
}

/* ---- event time ---- */

/* Days from 1970-01-01 to the civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int digits(const char *p, const char *end, int n, int *out) {
  if (end - p < n) return -1;
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)p[i])) return -1;
    v = v * 10 + (p[i] - '0');
  }
  *out = v;
  return 0;
}

static int parse_rfc3339(const char *p, const char *end, int64_t *ms) {
  int year, month, day, hour, minute, second;
  if (digits(p, end, 4, &year) || end - p < 5 || p[4] != '-' ||
      digits(p + 5, end, 2, &month) || end - p < 8 || p[7] != '-' ||
      digits(p + 8, end, 2, &day))
    return -1;
  p += 10;
  if (p == end || (*p != 'T' && *p != 't' && *p != ' ')) return -1;
  p++;
  if (digits(p, end, 2, &hour) || end - p < 3 || p[2] != ':' ||
      digits(p + 3, end, 2, &minute) || end - p < 6 || p[5] != ':' ||
      digits(p + 6, end, 2, &second))
    return -1;
  p += 8;
  static const int month_days[] = {31, 29, 31, 30, 31, 30,
                                   31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > month_days[month - 1] ||
      (month == 2 && day == 29 &&
       !((year % 4 == 0 && year % 100 != 0) || year % 400 == 0)) ||
      hour > 23 || minute > 59 || second > 60)
    return -1;
  int64_t frac = 0;
  if (p < end && *p == '.') {
    p++;
    int n = 0;
    while (p < end && isdigit((unsigned char)*p)) {
      if (n < 3) frac = frac * 10 + (*p - '0');
      n++;
      p++;
    }
    if (n == 0) return -1;
    for (; n < 3; n++) frac *= 10;
  }
  int64_t offset = 0;
  if (p < end && (*p == 'Z' || *p == 'z')) {
    p++;
  } else if (p < end && (*p == '+' || *p == '-')) {
    int sign = *p == '-' ? -1 : 1, oh, om;
    if (digits(p + 1, end, 2, &oh) || end - p < 6 || p[3] != ':' ||
        digits(p + 4, end, 2, &om) || oh > 23 || om > 59)
      return -1;
    offset = sign * (oh * 60 + om) * 60000LL;
    p += 6;
  } else {
    return -1;
  }
  if (p != end) return -1;
  if (second == 60) second = 59; /* a leap second: the second before */
  int64_t days = days_from_civil(year, month, day);
  int64_t t = ((days * 24 + hour) * 60 + minute) * 60000LL + second * 1000LL +
              frac - offset;
  if (t < TDM__TIME_MIN_MS || t > TDM__TIME_MAX_MS) return -1;
  *ms = t;
  return 0;
}

int tdm__parse_time(const char *text, size_t len, tdm__time_unit unit,
                    int64_t *ms) {
  const char *end = text + len;
  /* An RFC 3339 text is a time whatever the unit: unit says how to read
   * numbers, and no number has a '-' after four digits. */
  if (len >= 10 && text[4] == '-')
    return parse_rfc3339(text, end, ms);
  double value;
  if (len == 0 || tdm__parse_double(text, len, &value) != 0 ||
      !isfinite(value))
    return -1;
  double scaled = unit == TDM__TIME_MILLISECONDS ? value : value * 1000.0;
  /* The same years as RFC 3339 can write: a number of seconds beyond
   * them is a mistake (milliseconds read as seconds, say), not a time. */
  if (!(scaled >= (double)TDM__TIME_MIN_MS - 0.5 &&
        scaled < (double)TDM__TIME_MAX_MS + 0.5))
    return -1;
  *ms = (int64_t)llround(scaled);
  return 0;
}

void tdm__format_time(int64_t ms, char buf[32]) {
  int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
  int64_t rest = ms - days * 86400000;
  /* Civil date from days (the inverse of days_from_civil). */
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp + (mp < 10 ? 3 : -9);
  y += m <= 2;
  /* Years beyond 4 digits are clipped to keep the fixed width. */
  int year = y < 0 ? 0 : y > 9999 ? 9999 : (int)y;
  /* Digits written directly, not by snprintf: every live answer with a
   * decision log formats two times, and printf's parsing of the format
   * cost more than the rest of the record (bench/README.md, issue 25). */
  int parts[7] = {year,
                  (int)m,
                  (int)d,
                  (int)(rest / 3600000),
                  (int)(rest / 60000 % 60),
                  (int)(rest / 1000 % 60),
                  (int)(rest % 1000)};
  static const char widths[7] = {4, 2, 2, 2, 2, 2, 3};
  static const char after[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
  char *out = buf;
  for (int i = 0; i < 7; i++) {
    for (int k = widths[i] - 1, v = parts[i]; k >= 0; k--, v /= 10)
      out[k] = (char)('0' + v % 10);
    out += widths[i];
    *out++ = after[i];
  }
  *out = '\0';
}
