/*
 * json.c - the JSON parser declared in json.h: recursive descent with a
 * depth limit, values in an arena, numbers kept as source text.
 */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 512

typedef struct parser {
  tdm__json_doc *doc;
  const char *p;
  const char *end;
  int flags;
  tdm_error *err;
  /* Children of the containers being parsed, innermost last. */
  tdm__json *stack;
  const char **stack_keys;
  size_t stack_len, stack_cap;
} parser;

void tdm__json_line_col(const tdm__json_doc *doc, size_t offset, size_t *line,
                        size_t *col) {
  size_t l = doc->first_line ? doc->first_line : 1, c = 1;
  for (size_t i = 0; i < offset && i < doc->source_len; i++) {
    if (doc->source[i] == '\n') {
      l++;
      c = 1;
    } else {
      c++;
    }
  }
  *line = l;
  *col = c;
}

static int syntax_error(parser *ps, const char *what) {
  size_t line, col;
  tdm__json_line_col(ps->doc, (size_t)(ps->p - ps->doc->source), &line, &col);
  if (ps->p >= ps->end) {
    return tdm__fail(ps->err, TDM_EPARSE,
                     "%s:%zu:%zu: %s (the document ends too early)",
                     ps->doc->name, line, col, what);
  }
  return tdm__fail(ps->err, TDM_EPARSE, "%s:%zu:%zu: %s", ps->doc->name, line,
                   col, what);
}

static void skip_space(parser *ps) {
  while (ps->p < ps->end &&
         (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static int literal(parser *ps, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, word, n) == 0) {
    ps->p += n;
    return 1;
  }
  return 0;
}

static int push(parser *ps, const tdm__json *v, const char *key) {
  if (ps->stack_len == ps->stack_cap) {
    size_t cap = ps->stack_cap ? ps->stack_cap * 2 : 256;
    tdm__json *items = tdm__realloc(ps->stack, cap * sizeof *items);
    if (items == NULL) return TDM_ENOMEM;
    ps->stack = items;
    const char **keys = tdm__realloc(ps->stack_keys, cap * sizeof *keys);
    if (keys == NULL) return TDM_ENOMEM;
    ps->stack_keys = keys;
    ps->stack_cap = cap;
  }
  ps->stack[ps->stack_len] = *v;
  ps->stack_keys[ps->stack_len] = key;
  ps->stack_len++;
  return TDM_OK;
}

/* Children of v now live at their final address: point them back at it. */
static void adopt_children(tdm__json *v) {
  if (v->type != TDM__JSON_ARRAY && v->type != TDM__JSON_OBJECT) return;
  /* A packed array's elements are built on demand, pointing at it then. */
  if (v->packed) return;
  for (size_t i = 0; i < v->count; i++) {
    v->items[i].parent = v;
    v->items[i].index = i;
  }
}

/* Moves the top `count` stacked children into the arena as v's items. */
static int pop_children(parser *ps, tdm__json *v, size_t base, int object) {
  size_t count = ps->stack_len - base;
  v->count = count;
  if (count > 0) {
    v->items = tdm__arena_alloc(&ps->doc->arena, count * sizeof *v->items);
    if (v->items == NULL) return TDM_ENOMEM;
    memcpy(v->items, ps->stack + base, count * sizeof *v->items);
    for (size_t i = 0; i < count; i++) {
      if (v->items[i].count > 0 && (v->items[i].type == TDM__JSON_ARRAY ||
                                    v->items[i].type == TDM__JSON_OBJECT))
        adopt_children(&v->items[i]);
    }
    if (object) {
      v->keys = tdm__arena_alloc(&ps->doc->arena, count * sizeof *v->keys);
      if (v->keys == NULL) return TDM_ENOMEM;
      memcpy(v->keys, ps->stack_keys + base, count * sizeof *v->keys);
    }
  }
  ps->stack_len = base;
  return TDM_OK;
}

static void put_utf8(char **out, uint32_t cp) {
  char *o = *out;
  if (cp < 0x80) {
    *o++ = (char)cp;
  } else if (cp < 0x800) {
    *o++ = (char)(0xC0 | (cp >> 6));
    *o++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *o++ = (char)(0xE0 | (cp >> 12));
    *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *o++ = (char)(0x80 | (cp & 0x3F));
  } else {
    *o++ = (char)(0xF0 | (cp >> 18));
    *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
    *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *o++ = (char)(0x80 | (cp & 0x3F));
  }
  *out = o;
}

static int hex4(parser *ps, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    if (ps->p >= ps->end) return syntax_error(ps, "unfinished \\u escape");
    char c = *ps->p++;
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= (uint32_t)(c - 'A' + 10);
    else {
      ps->p--;
      return syntax_error(ps, "expected a hex digit in \\u escape");
    }
  }
  *out = v;
  return TDM_OK;
}

/* Parses a string at ps->p (at the opening quote) into a decoded copy. */
/* The length of the valid UTF-8 sequence at p (shortest form, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t utf8_length(const unsigned char *p, const unsigned char *end) {
  unsigned char c = p[0];
  size_t n;
  uint32_t min, cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, min = 0x800, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000, cp = c & 0x07;
  else return 0;
  if ((size_t)(end - p) < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

size_t tdm__utf8_length(const void *p, size_t available) {
  const unsigned char *b = p;
  return available ? utf8_length(b, b + available) : 0;
}

static int parse_string(parser *ps, const char **out, size_t *out_len) {
  ps->p++; /* opening quote */
  const char *start = ps->p;
  /* Decoded text is never longer than the source text. */
  const char *q = start;
  while (q < ps->end && *q != '"') {
    if (*q == '\\' && q + 1 < ps->end) q++;
    q++;
  }
  char *buf = tdm__arena_alloc(&ps->doc->arena, (size_t)(q - start) + 1);
  if (buf == NULL) return TDM_ENOMEM;
  char *o = buf;
  for (;;) {
    if (ps->p >= ps->end) return syntax_error(ps, "unterminated string");
    unsigned char c = (unsigned char)*ps->p;
    if (c == '"') break;
    if (c < 0x20) return syntax_error(ps, "control character in string");
    if (c >= 0x80) {
      /* JSON text is UTF-8 (RFC 8259): anything else is refused, so that
       * nothing invalid can be echoed back. */
      size_t n = utf8_length((const unsigned char *)ps->p,
                             (const unsigned char *)ps->end);
      if (n == 0) return syntax_error(ps, "invalid UTF-8 in string");
      memcpy(o, ps->p, n);
      o += n;
      ps->p += n;
      continue;
    }
    if (c != '\\') {
      *o++ = (char)c;
      ps->p++;
      continue;
    }
    ps->p++;
    if (ps->p >= ps->end) return syntax_error(ps, "unterminated string");
    char e = *ps->p++;
    switch (e) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        uint32_t cp;
        int rc = hex4(ps, &cp);
        if (rc != TDM_OK) return rc;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          uint32_t low;
          if (!literal(ps, "\\u"))
            return syntax_error(ps, "unpaired UTF-16 surrogate in \\u escape");
          rc = hex4(ps, &low);
          if (rc != TDM_OK) return rc;
          if (low < 0xDC00 || low > 0xDFFF)
            return syntax_error(ps, "invalid UTF-16 surrogate pair");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return syntax_error(ps, "unpaired UTF-16 surrogate in \\u escape");
        }
        put_utf8(&o, cp);
        break;
      }
      default: ps->p--; return syntax_error(ps, "invalid escape in string");
    }
  }
  ps->p++; /* closing quote */
  *o = '\0';
  *out = buf;
  *out_len = (size_t)(o - buf);
  return TDM_OK;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *ps, tdm__json *v) {
  const char *start = ps->p;
  v->type = TDM__JSON_NUMBER;
  if (ps->flags & TDM__JSON_ALLOW_NAN) {
    const char *save = ps->p;
    if (*ps->p == '-') ps->p++;
    if (literal(ps, "NaN") || literal(ps, "Infinity") || literal(ps, "inf") ||
        literal(ps, "nan")) {
      v->text = start;
      v->text_len = (size_t)(ps->p - start);
      return TDM_OK;
    }
    ps->p = save;
  }
  if (ps->p < ps->end && *ps->p == '-') ps->p++;
  if (ps->p >= ps->end || !is_digit(*ps->p))
    return syntax_error(ps, "expected a value");
  if (*ps->p == '0') {
    ps->p++;
  } else {
    while (ps->p < ps->end && is_digit(*ps->p)) ps->p++;
  }
  if (ps->p < ps->end && *ps->p == '.') {
    ps->p++;
    if (ps->p >= ps->end || !is_digit(*ps->p))
      return syntax_error(ps, "expected a digit after the decimal point");
    while (ps->p < ps->end && is_digit(*ps->p)) ps->p++;
  }
  if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
    ps->p++;
    if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
    if (ps->p >= ps->end || !is_digit(*ps->p))
      return syntax_error(ps, "expected a digit in the exponent");
    while (ps->p < ps->end && is_digit(*ps->p)) ps->p++;
  }
  v->text = start;
  v->text_len = (size_t)(ps->p - start);
  return TDM_OK;
}

static int parse_value(parser *ps, tdm__json *v, int depth);

/* A member's name and position, sorted by name, then position. */
typedef struct member_ref {
  const char *key;
  size_t index;
} member_ref;

static int compare_members(const void *a, const void *b) {
  const member_ref *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* RFC 8259 leaves an object with a repeated name to each reader, and
 * readers differ (the first, the last, both): a request that scores one
 * amount here and another in a proxy or a logger is refused instead. The
 * error points at the second member of that name. */
static int check_unique_keys(parser *ps, const tdm__json *v) {
  if (v->count < 2) return TDM_OK;
  size_t twice = SIZE_MAX;
  if (v->count <= 8) {
    /* Small objects (requests, events): compared pairwise, no sort. */
    for (size_t i = 1; i < v->count && twice == SIZE_MAX; i++)
      for (size_t j = 0; j < i; j++)
        if (strcmp(v->keys[i], v->keys[j]) == 0) {
          twice = i;
          break;
        }
  } else {
    member_ref *sorted =
        tdm__arena_alloc(&ps->doc->arena, v->count * sizeof *sorted);
    if (sorted == NULL) return tdm__fail(ps->err, TDM_ENOMEM, "out of memory");
    for (size_t i = 0; i < v->count; i++) sorted[i] = (member_ref){v->keys[i], i};
    qsort(sorted, v->count, sizeof *sorted, compare_members);
    for (size_t i = 1; i < v->count; i++)
      if (strcmp(sorted[i - 1].key, sorted[i].key) == 0 &&
          (twice == SIZE_MAX || sorted[i].index < twice))
        twice = sorted[i].index;
  }
  if (twice == SIZE_MAX) return TDM_OK;
  size_t line, col;
  tdm__json_line_col(ps->doc, v->items[twice].offset, &line, &col);
  return tdm__fail(ps->err, TDM_EPARSE,
                   "%s:%zu:%zu: \"%.64s\" appears twice in the object",
                   ps->doc->name, line, col, v->keys[twice]);
}

/* Whether the value at p (within the document) cannot be a number. */
static int starts_non_number(const parser *ps) {
  char c = *ps->p;
  if (c == '{' || c == '[' || c == '"' || c == 't' || c == 'f') return 1;
  return c == 'n' && (size_t)(ps->end - ps->p) >= 4 &&
         memcmp(ps->p, "null", 4) == 0;
}

/*
 * With TDM__JSON_PACK_NUMBERS: parses the array at ps->p (at '[') as a
 * packed array of numbers and returns 1, or returns 0 with ps->p unmoved
 * when an element is not a number (the array is then built as usual), or a
 * negative status for a syntax error. Numbers and separators are checked by
 * the same code and with the same messages as in a built array.
 */
static int parse_packed_numbers(parser *ps, tdm__json *v) {
  const char *start = ps->p;
  size_t count = 0;
  ps->p++;
  skip_space(ps);
  if (ps->p < ps->end && *ps->p == ']') {
    ps->p = start;
    return 0;
  }
  for (;;) {
    skip_space(ps);
    if (ps->p < ps->end && starts_non_number(ps)) {
      ps->p = start;
      return 0;
    }
    tdm__json number;
    int rc = ps->p < ps->end ? parse_number(ps, &number)
                             : syntax_error(ps, "expected a value");
    if (rc != TDM_OK) return rc;
    count++;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == ',') {
      ps->p++;
      continue;
    }
    if (ps->p < ps->end && *ps->p == ']') {
      ps->p++;
      break;
    }
    return syntax_error(ps, "expected ',' or ']' after an element");
  }
  v->type = TDM__JSON_ARRAY;
  v->packed = 1;
  v->count = count;
  return 1;
}

static int parse_container(parser *ps, tdm__json *v, int depth, int object) {
  char close = object ? '}' : ']';
  v->type = object ? TDM__JSON_OBJECT : TDM__JSON_ARRAY;
  if (depth >= MAX_DEPTH) return syntax_error(ps, "nesting is too deep");
  if (!object && (ps->flags & TDM__JSON_PACK_NUMBERS)) {
    int packed = parse_packed_numbers(ps, v);
    if (packed != 0) return packed > 0 ? TDM_OK : packed;
  }
  ps->p++;
  size_t base = ps->stack_len;
  skip_space(ps);
  if (ps->p < ps->end && *ps->p == close) {
    ps->p++;
    return TDM_OK;
  }
  for (;;) {
    const char *key = NULL;
    skip_space(ps);
    if (object) {
      if (ps->p >= ps->end || *ps->p != '"')
        return syntax_error(ps, "expected a member name in double quotes");
      size_t key_len;
      int rc = parse_string(ps, &key, &key_len);
      if (rc != TDM_OK) return rc;
      skip_space(ps);
      if (ps->p >= ps->end || *ps->p != ':')
        return syntax_error(ps, "expected ':' after the member name");
      ps->p++;
      skip_space(ps);
    }
    tdm__json child;
    memset(&child, 0, sizeof child);
    int rc = parse_value(ps, &child, depth + 1);
    if (rc != TDM_OK) return rc;
    rc = push(ps, &child, key);
    if (rc != TDM_OK) return rc;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == ',') {
      ps->p++;
      continue;
    }
    if (ps->p < ps->end && *ps->p == close) {
      ps->p++;
      break;
    }
    return syntax_error(ps, object ? "expected ',' or '}' after a member"
                                   : "expected ',' or ']' after an element");
  }
  int rc = pop_children(ps, v, base, object);
  if (rc == TDM_OK && object) rc = check_unique_keys(ps, v);
  return rc;
}

static int parse_value(parser *ps, tdm__json *v, int depth) {
  skip_space(ps);
  v->offset = (size_t)(ps->p - ps->doc->source);
  if (ps->p >= ps->end) return syntax_error(ps, "expected a value");
  switch (*ps->p) {
    case '{': return parse_container(ps, v, depth, 1);
    case '[': return parse_container(ps, v, depth, 0);
    case '"':
      v->type = TDM__JSON_STRING;
      return parse_string(ps, &v->text, &v->count);
    case 't':
    case 'f':
      v->type = TDM__JSON_BOOL;
      v->boolean = *ps->p == 't';
      if (literal(ps, v->boolean ? "true" : "false")) return TDM_OK;
      return syntax_error(ps, "expected a value");
    case 'n':
      if (literal(ps, "null")) {
        v->type = TDM__JSON_NULL;
        return TDM_OK;
      }
      return parse_number(ps, v);
    default: return parse_number(ps, v);
  }
}

int tdm__json_parse(tdm__json_doc *doc, const char *data, size_t size,
                    const char *name, int flags, tdm_error *err) {
  return tdm__json_parse_at(doc, data, size, name, 1, flags, err);
}

int tdm__json_parse_at(tdm__json_doc *doc, const char *data, size_t size,
                       const char *name, size_t first_line, int flags,
                       tdm_error *err) {
  memset(doc, 0, sizeof *doc);
  /* Small documents (a JSON Lines record, a request) get small blocks. */
  size_t block = size < 4096 ? 16384 : size * 4;
  tdm__arena_init(&doc->arena, block < (1 << 20) ? block : (1 << 20));
  doc->name = name;
  doc->first_line = first_line;
  const char *copy = (flags & TDM__JSON_BORROW)
                         ? (data != NULL ? data : "")
                         : tdm__arena_strndup(&doc->arena, data, size);
  if (copy == NULL) {
    tdm__arena_free(&doc->arena);
    return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", name);
  }
  doc->source = copy;
  doc->source_len = size;
  parser ps = {
      .doc = doc, .p = copy, .end = copy + size, .flags = flags, .err = err};
  /* A UTF-8 byte order mark is tolerated. */
  if (size >= 3 && memcmp(copy, "\xEF\xBB\xBF", 3) == 0) ps.p += 3;
  int rc = TDM_OK;
  doc->root = tdm__arena_alloc(&doc->arena, sizeof *doc->root);
  if (doc->root == NULL) rc = TDM_ENOMEM;
  if (rc == TDM_OK) {
    skip_space(&ps);
    if (ps.p >= ps.end) {
      rc =
          tdm__fail(err, TDM_EPARSE, "%s: empty document, expected JSON", name);
    } else {
      rc = parse_value(&ps, doc->root, 0);
    }
  }
  if (rc == TDM_OK) {
    skip_space(&ps);
    if (ps.p < ps.end)
      rc = syntax_error(&ps, "unexpected text after the JSON value");
  }
  if (rc == TDM_OK) adopt_children(doc->root);
  tdm__free(ps.stack);
  tdm__free(ps.stack_keys);
  if (rc == TDM_ENOMEM) tdm__fail(err, TDM_ENOMEM, "%s: out of memory", name);
  if (rc != TDM_OK) {
    tdm__arena_free(&doc->arena);
    memset(doc, 0, sizeof *doc);
  }
  return rc;
}

void tdm__json_doc_free(tdm__json_doc *doc) {
  if (doc == NULL) return;
  tdm__arena_free(&doc->arena);
  memset(doc, 0, sizeof *doc);
}

const tdm__json *tdm__json_get(const tdm__json *v, const char *key) {
  if (v == NULL || v->type != TDM__JSON_OBJECT) return NULL;
  for (size_t i = 0; i < v->count; i++) {
    if (strcmp(v->keys[i], key) == 0) return &v->items[i];
  }
  return NULL;
}

void tdm__json_pointer(const tdm__json *v, char *buf, size_t size) {
  /* Collect the path from v up to the root, then write it top down. */
  const tdm__json *chain[MAX_DEPTH + 2];
  size_t depth = 0;
  for (const tdm__json *node = v;
       node != NULL && node->parent != NULL && depth < MAX_DEPTH + 1;
       node = node->parent)
    chain[depth++] = node;
  size_t used = 0;
  if (size == 0) return;
  buf[0] = '\0';
  for (size_t k = depth; k-- > 0;) {
    const tdm__json *node = chain[k];
    char segment[256];
    if (node->parent->type == TDM__JSON_OBJECT) {
      const char *key = node->parent->keys[node->index];
      size_t o = 0;
      for (; *key && o + 3 < sizeof segment; key++) {
        if (*key == '~') {
          segment[o++] = '~';
          segment[o++] = '0';
        } else if (*key == '/') {
          segment[o++] = '~';
          segment[o++] = '1';
        } else {
          segment[o++] = *key;
        }
      }
      segment[o] = '\0';
    } else {
      snprintf(segment, sizeof segment, "%zu", node->index);
    }
    int n = snprintf(buf + used, size - used, "/%s", segment);
    if (n < 0 || (size_t)n >= size - used) break;
    used += (size_t)n;
  }
}

const char *tdm__json_type_name(const tdm__json *v) {
  if (v == NULL) return "nothing";
  switch (v->type) {
    case TDM__JSON_NULL: return "null";
    case TDM__JSON_BOOL: return "a boolean";
    case TDM__JSON_NUMBER: return "a number";
    case TDM__JSON_STRING: return "a string";
    case TDM__JSON_ARRAY: return "an array";
    case TDM__JSON_OBJECT: return "an object";
  }
  return "a value";
}

int tdm__json_fail(const tdm__json_doc *doc, const tdm__json *v, int status,
                   tdm_error *err, const char *fmt, ...) {
  if (err == NULL) return status;
  char pointer[512];
  tdm__json_pointer(v, pointer, sizeof pointer);
  char what[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return tdm__fail(err, status, "%s: at %s: %s", doc->name,
                   pointer[0] ? pointer : "/ (the document root)", what);
}

/* The decimal text of a number value, or of a string that holds one. */
static int number_text(const tdm__json_doc *doc, const tdm__json *v, char *buf,
                       size_t size, tdm_error *err) {
  const char *text;
  size_t len;
  if (v != NULL && v->type == TDM__JSON_NUMBER) {
    text = v->text;
    len = v->text_len;
  } else if (v != NULL && v->type == TDM__JSON_STRING) {
    text = v->text;
    len = v->count;
  } else {
    return tdm__json_fail(doc, v, TDM_EPARSE, err,
                          "expected a number, found %s",
                          tdm__json_type_name(v));
  }
  if (len == 0 || len >= size || memchr(text, '\0', len) != NULL)
    return tdm__json_fail(doc, v, TDM_EPARSE, err, "expected a number");
  memcpy(buf, text, len);
  buf[len] = '\0';
  return TDM_OK;
}

/* Handles NaN and the infinities, which strtod spells differently. */
static int special_value(const char *s, double *out) {
  int negative = *s == '-';
  const char *w = negative ? s + 1 : s;
  if (strcmp(w, "NaN") == 0 || strcmp(w, "nan") == 0) {
    *out = NAN;
    return 1;
  }
  if (strcmp(w, "Infinity") == 0 || strcmp(w, "inf") == 0) {
    *out = negative ? -INFINITY : INFINITY;
    return 1;
  }
  return 0;
}

static int plain_number(const char *s) {
  /* strtod also takes hex, "infinity" and leading spaces: refuse those. */
  for (const char *c = s; *c; c++) {
    if (!(is_digit(*c) || *c == '-' || *c == '+' || *c == '.' || *c == 'e' ||
          *c == 'E'))
      return 0;
  }
  return 1;
}

int tdm__json_float(const tdm__json_doc *doc, const tdm__json *v, float *out,
                    tdm_error *err) {
  char buf[128];
  int rc = number_text(doc, v, buf, sizeof buf, err);
  if (rc != TDM_OK) return rc;
  double special;
  if (special_value(buf, &special)) {
    *out = (float)special;
    return TDM_OK;
  }
  char *end;
  errno = 0;
  float f = strtof(buf, &end);
  if (!plain_number(buf) || end == buf || *end != '\0')
    return tdm__json_fail(doc, v, TDM_EPARSE, err, "\"%s\" is not a number",
                          buf);
  *out = f;
  return TDM_OK;
}

int tdm__json_double(const tdm__json_doc *doc, const tdm__json *v, double *out,
                     tdm_error *err) {
  char buf[128];
  int rc = number_text(doc, v, buf, sizeof buf, err);
  if (rc != TDM_OK) return rc;
  if (special_value(buf, out)) return TDM_OK;
  char *end;
  double d = strtod(buf, &end);
  if (!plain_number(buf) || end == buf || *end != '\0')
    return tdm__json_fail(doc, v, TDM_EPARSE, err, "\"%s\" is not a number",
                          buf);
  *out = d;
  return TDM_OK;
}

int tdm__json_int64(const tdm__json_doc *doc, const tdm__json *v, int64_t *out,
                    tdm_error *err) {
  char buf[128];
  int rc = number_text(doc, v, buf, sizeof buf, err);
  if (rc != TDM_OK) return rc;
  char *end;
  errno = 0;
  long long n = strtoll(buf, &end, 10);
  if (end == buf || *end != '\0' || errno == ERANGE || !plain_number(buf))
    return tdm__json_fail(doc, v, TDM_EPARSE, err, "\"%s\" is not an integer",
                          buf);
  *out = (int64_t)n;
  return TDM_OK;
}

/* Moves *p past the separators before a packed array's next number (the
 * array's '[' included) and returns that number's text and length. The
 * array was checked when parsed, so a number and its ']' follow. */
static const char *next_packed(const char **p, size_t *len) {
  const char *q = *p;
  while (*q == '[' || *q == ',' || *q == ' ' || *q == '\t' || *q == '\n' ||
         *q == '\r')
    q++;
  const char *text = q;
  while (*q != ',' && *q != ']' && *q != ' ' && *q != '\t' && *q != '\n' &&
         *q != '\r')
    q++;
  *len = (size_t)(q - text);
  *p = q;
  return text;
}

/* Element i of a packed array, built as the parser would have built it. */
static void packed_element(const tdm__json_doc *doc, const tdm__json *array,
                           size_t i, const char *text, size_t len,
                           tdm__json *out) {
  memset(out, 0, sizeof *out);
  out->type = TDM__JSON_NUMBER;
  out->text = text;
  out->text_len = len;
  out->parent = array;
  out->index = i;
  out->offset = (size_t)(text - doc->source);
}

const tdm__json *tdm__json_element(const tdm__json_doc *doc,
                                   const tdm__json *array, size_t i,
                                   tdm__json *scratch) {
  if (!array->packed) return &array->items[i];
  const char *p = doc->source + array->offset, *text = p;
  size_t len = 0;
  for (size_t k = 0; k <= i; k++) text = next_packed(&p, &len);
  packed_element(doc, array, i, text, len, scratch);
  return scratch;
}

/* What an array's numbers are read as. */
typedef enum number_kind { AS_FLOAT, AS_DOUBLE, AS_INT64 } number_kind;

/* Converts value v as tdm__json_float, _double or _int64 would, into
 * element i of out. */
static int convert_value(const tdm__json_doc *doc, const tdm__json *v,
                         number_kind kind, void *out, size_t i,
                         tdm_error *err) {
  switch (kind) {
    case AS_FLOAT: return tdm__json_float(doc, v, (float *)out + i, err);
    case AS_DOUBLE: return tdm__json_double(doc, v, (double *)out + i, err);
    case AS_INT64: break;
  }
  return tdm__json_int64(doc, v, (int64_t *)out + i, err);
}

/*
 * The common case of convert_value for a packed number's text, without
 * copying it: returns 1 when done, 0 when the text needs the general
 * conversion (NaN and the infinities, which strtof spells differently;
 * texts too long for number_text; integers that are not plain digits or
 * could overflow). A number ends at a separator, where strtof stops too.
 */
static int convert_plain(const char *text, size_t len, number_kind kind,
                         void *out, size_t i) {
  size_t sign = *text == '-';
  if (len >= 128 || len <= sign || !is_digit(text[sign])) return 0;
  char *end;
  switch (kind) {
    case AS_FLOAT:
      ((float *)out)[i] = strtof(text, &end);
      return end == text + len;
    case AS_DOUBLE:
      ((double *)out)[i] = strtod(text, &end);
      return end == text + len;
    case AS_INT64: break;
  }
  /* Up to 18 digits cannot overflow: most model arrays (child indices,
   * features, flags) are small integers, read here without strtoll. */
  if (len - sign > 18) return 0;
  int64_t n = 0;
  for (size_t k = sign; k < len; k++) {
    if (!is_digit(text[k])) return 0;
    n = n * 10 + (text[k] - '0');
  }
  ((int64_t *)out)[i] = sign ? -n : n;
  return 1;
}

static int convert_array(const tdm__json_doc *doc, const tdm__json *array,
                         number_kind kind, void *out, tdm_error *err) {
  const char *p = doc->source + array->offset;
  for (size_t i = 0; i < array->count; i++) {
    if (!array->packed) {
      int rc = convert_value(doc, &array->items[i], kind, out, i, err);
      if (rc != TDM_OK) return rc;
      continue;
    }
    size_t len;
    const char *text = next_packed(&p, &len);
    if (convert_plain(text, len, kind, out, i)) continue;
    tdm__json element;
    packed_element(doc, array, i, text, len, &element);
    int rc = convert_value(doc, &element, kind, out, i, err);
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}

int tdm__json_array_floats(const tdm__json_doc *doc, const tdm__json *array,
                           float *out, tdm_error *err) {
  return convert_array(doc, array, AS_FLOAT, out, err);
}

int tdm__json_array_doubles(const tdm__json_doc *doc, const tdm__json *array,
                            double *out, tdm_error *err) {
  return convert_array(doc, array, AS_DOUBLE, out, err);
}

int tdm__json_array_int64s(const tdm__json_doc *doc, const tdm__json *array,
                           int64_t *out, tdm_error *err) {
  return convert_array(doc, array, AS_INT64, out, err);
}

int tdm__json_feature_value(const tdm__json *v, double *out) {
  if (v->type == TDM__JSON_NULL ||
      (v->type == TDM__JSON_STRING && strcmp(v->text, "NaN") == 0)) {
    *out = NAN;
    return 0;
  }
  if (v->type != TDM__JSON_NUMBER) return -1;
  return tdm__parse_double(v->text, v->text_len, out);
}

int tdm__json_append_string(tdm__buf *b, const char *s) {
  return tdm__json_append_string_n(b, s, strlen(s));
}

int tdm__json_append_string_n(tdm__buf *b, const char *s, size_t len) {
  int rc = tdm__buf_reserve(b, len + 2);
  if (rc == TDM_OK) rc = tdm__buf_append(b, "\"", 1);
  const char *end = s + len;
  while (rc == TDM_OK && s < end) {
    /* Runs of plain bytes go in one piece. */
    const char *run = s;
    while (s < end && (unsigned char)*s >= 0x20 && (unsigned char)*s < 0x80 &&
           *s != '"' && *s != '\\')
      s++;
    if (s > run) rc = tdm__buf_append(b, run, (size_t)(s - run));
    if (rc != TDM_OK || s == end) break;
    unsigned char ch = (unsigned char)*s;
    if (ch >= 0x80) {
      /* Valid UTF-8 as it is; an invalid byte (a CSV field can hold any)
       * becomes U+FFFD, so the output is always valid JSON. */
      size_t n = utf8_length((const unsigned char *)s,
                             (const unsigned char *)end);
      rc = n ? tdm__buf_append(b, s, n) : tdm__buf_append(b, "\xEF\xBF\xBD", 3);
      s += n ? n : 1;
    } else if (ch == '"' || ch == '\\') {
      char escaped[2] = {'\\', (char)ch};
      rc = tdm__buf_append(b, escaped, 2);
      s++;
    } else {
      rc = tdm__buf_printf(b, "\\u%04x", ch);
      s++;
    }
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "\"", 1);
  return rc;
}

int tdm__json_append_tags(tdm__buf *b, const char *const *tags, size_t count) {
  if (count == 0) return TDM_OK;
  int rc = tdm__buf_append(b, "\"tags\": {", 9);
  for (size_t i = 0; i < count && rc == TDM_OK; i++) {
    const char *eq = strchr(tags[i], '=');
    size_t key_len = eq ? (size_t)(eq - tags[i]) : strlen(tags[i]);
    if (i > 0) rc = tdm__buf_append(b, ", ", 2);
    if (rc == TDM_OK) rc = tdm__json_append_string_n(b, tags[i], key_len);
    if (rc == TDM_OK) rc = tdm__buf_append(b, ": ", 2);
    if (rc == TDM_OK) rc = tdm__json_append_string(b, eq ? eq + 1 : "");
  }
  if (rc == TDM_OK) rc = tdm__buf_append(b, "},\n  ", 5);
  return rc;
}
