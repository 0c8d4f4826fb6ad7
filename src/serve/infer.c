/*
 * infer.c - Open Inference Protocol (KServe v2) request and response bodies.
 *
 * A request carries its rows in one of two shapes:
 *   - one tensor [rows, features] (or [features] for one row) whose name is
 *     not a feature name, data flat or nested, features in the model's order;
 *   - one tensor per feature, named as the model's features, each [rows] or
 *     [rows, 1]; a feature with no tensor is missing.
 * JSON has no NaN, so a missing value is null (or the string "NaN"), the
 * same rule as JSON Lines input (tdm__json_feature_value). FP32 tensors
 * hold float32 values: each element is rounded to float32 as the client
 * meant, FP64 and INT elements are taken as they are.
 *
 * The binary tensor data extension (as Triton implements it) is read too:
 * the body is a JSON header of Inference-Header-Content-Length bytes, then
 * the raw little-endian values of every input whose parameters hold
 * "binary_data_size", in the order the inputs appear, with nothing between
 * or after them. Outputs asked for with parameters.binary_data (or every
 * output, with the request's parameters.binary_data_output) come back the
 * same way: "binary_data_size" in the JSON header, the values after it.
 * One binary form needs no conversion at all: an FP32 [rows, features]
 * tensor for a float32 (XGBoost) model is copied as it is and scored as
 * float32 rows (take_float32); every other form is read a value at a time
 * into doubles, which is also the reference the fast form is tested
 * against.
 *
 * A many-row JSON request is mostly one flat array of numbers, and a DOM
 * node per number costs more than scoring. So before the document is
 * parsed, every "data" array that holds only numbers and missing values
 * (null, "NaN") is read straight from
 * the text into a list of doubles and cut to "[]" in a copy of the JSON;
 * the document parser reads the copy, and the inputs take their values
 * from the list. Anything else (null, nested arrays,
 * bad tokens) is left to the document parser, and a request that fails in
 * any way is parsed again the plain way, so every error message is
 * exactly the one the plain way gives.
 */
#include "infer.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../model/model.h"

/* Tensor element types a request may use. */
typedef enum element_kind { KIND_FP32, KIND_FP64, KIND_INT } element_kind;

static const struct {
  const char *name;
  element_kind kind;
  size_t size; /* bytes of one element in binary tensor data */
  /* Integer types: min <= value < limit. The limit is a power of two, so
   * it is exact in double precision where INT64_MAX is not. */
  double min, limit;
} datatypes[] = {
    {"FP32", KIND_FP32, 4, 0, 0},
    {"FP64", KIND_FP64, 8, 0, 0},
    {"INT8", KIND_INT, 1, -0x1p7, 0x1p7},
    {"INT16", KIND_INT, 2, -0x1p15, 0x1p15},
    {"INT32", KIND_INT, 4, -0x1p31, 0x1p31},
    {"INT64", KIND_INT, 8, -0x1p63, 0x1p63},
    {"UINT8", KIND_INT, 1, 0, 0x1p8},
    {"UINT16", KIND_INT, 2, 0, 0x1p16},
    {"UINT32", KIND_INT, 4, 0, 0x1p32},
    {"UINT64", KIND_INT, 8, 0, 0x1p64},
};

#define MAX_DIMS 8
/* A request may not ask for more values than this (2^28 doubles = 2 GiB);
 * the body size limit keeps real requests far below it. */
#define MAX_VALUES ((size_t)1 << 28)

/* The bytes after the JSON header, handed out to the binary inputs in
 * order; used counts the bytes handed out so far. */
typedef struct binary_section {
  const unsigned char *data;
  size_t size, used;
} binary_section;

/* Where one input tensor's values go. */
typedef struct tensor_sink {
  const tdm_model *model;
  const tdm__json_doc *doc;
  int kind;
  size_t datatype; /* index in datatypes[] */
  double min, limit;
  double *rows;
  size_t nf;
  size_t feature; /* SIZE_MAX: a [rows, features] matrix */
  size_t expected, count;
  const tdm__json *data;
  const struct scanned_data *scan; /* "data" arrays read from the text */
  const double *scanned;           /* this input's values from there, or NULL */
  size_t scanned_count;
  const tdm__json *input;      /* the input object, for messages */
  const unsigned char *binary; /* its binary data, or NULL (JSON data) */
  binary_section *section;     /* NULL: the body is all JSON */
  tdm_error *err;
} tensor_sink;

/* A "data" array of plain numbers read straight from the request text:
 * its '[' at offset, its values at values[first, first + count). */
typedef struct scanned_array {
  size_t offset, first, count;
} scanned_array;

typedef struct scanned_data {
  scanned_array *arrays;
  size_t num_arrays, arrays_cap;
  double *values;
  size_t num_values, values_cap;
} scanned_data;

static void scanned_data_free(scanned_data *sd) {
  tdm__free(sd->arrays);
  tdm__free(sd->values);
  memset(sd, 0, sizeof *sd);
}

static size_t skip_json_space(const char *text, size_t i, size_t n) {
  while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' ||
                   text[i] == '\r'))
    i++;
  return i;
}

/* The length of the JSON value at text if it is a number (its value in
 * *value) or a missing value, null or "NaN" (tdm__json_feature_value's
 * rule: NaN), else 0. */
static size_t scan_value(const char *text, size_t n, double *value) {
  if (n >= 4 && memcmp(text, "null", 4) == 0) {
    *value = NAN;
    return 4;
  }
  if (n >= 5 && memcmp(text, "\"NaN\"", 5) == 0) {
    *value = NAN;
    return 5;
  }
  return tdm__parse_json_number(text, n, value);
}

/* Reads the array at text[i] == '[' when it is a non-empty flat array of
 * numbers and missing values, appending its values to sd. Returns the
 * offset just past its ']', or 0 (nothing appended) when it is anything
 * else. */
static size_t scan_number_array(const char *text, size_t i, size_t n,
                                scanned_data *sd) {
  size_t first = sd->num_values;
  i = skip_json_space(text, i + 1, n);
  for (;;) {
    double value;
    size_t len = scan_value(text + i, n - i, &value);
    if (len == 0) break;
    if (sd->num_values == sd->values_cap) {
      size_t cap = sd->values_cap ? sd->values_cap * 2 : 1024;
      double *values = tdm__realloc(sd->values, cap * sizeof *values);
      if (values == NULL) break;
      sd->values = values;
      sd->values_cap = cap;
    }
    sd->values[sd->num_values++] = value;
    i = skip_json_space(text, i + len, n);
    if (i < n && text[i] == ']') return i + 1;
    if (i >= n || text[i] != ',') break;
    i = skip_json_space(text, i + 1, n);
  }
  sd->num_values = first;
  return 0;
}

/*
 * Finds each "data": [numbers] in the JSON text (n bytes) and reads it
 * into sd, and writes the text with each such array cut to "[]" into copy
 * (room for n bytes; *copy_len its length): sd's offsets are in copy.
 * Strings are skipped whole, escapes included, so that text inside a
 * string is never taken for a key. Returns the number of arrays read (0
 * on running out of memory too: the plain way then reads them).
 */
static size_t scan_data_arrays(const char *text, size_t n, char *copy,
                               size_t *copy_len, scanned_data *sd) {
  size_t i = 0, copied = 0, used = 0;
  for (;;) {
    const char *quote = memchr(text + i, '"', n - i);
    if (quote == NULL) break;
    size_t start = (size_t)(quote - text) + 1, end = start;
    while (end < n && text[end] != '"') end += text[end] == '\\' ? 2 : 1;
    if (end >= n) break;
    i = end + 1;
    if (end - start != 4 || memcmp(text + start, "data", 4) != 0) continue;
    size_t k = skip_json_space(text, i, n);
    if (k >= n || text[k] != ':') continue;
    k = skip_json_space(text, k + 1, n);
    if (k >= n || text[k] != '[') continue;
    size_t first = sd->num_values;
    size_t past = scan_number_array(text, k, n, sd);
    if (past == 0) continue;
    if (sd->num_arrays == sd->arrays_cap) {
      size_t cap = sd->arrays_cap ? sd->arrays_cap * 2 : 8;
      scanned_array *arrays = tdm__realloc(sd->arrays, cap * sizeof *arrays);
      if (arrays == NULL) return 0;
      sd->arrays = arrays;
      sd->arrays_cap = cap;
    }
    memcpy(copy + used, text + copied, k - copied);
    used += k - copied;
    sd->arrays[sd->num_arrays++] =
        (scanned_array){used, first, sd->num_values - first};
    memcpy(copy + used, "[]", 2);
    used += 2;
    i = copied = past;
  }
  memcpy(copy + used, text + copied, n - copied);
  *copy_len = used + n - copied;
  return sd->num_arrays;
}

/* The array read from the text whose '[' is at offset, or NULL. */
static const scanned_array *scanned_at(const scanned_data *sd, size_t offset) {
  for (size_t i = 0; sd != NULL && i < sd->num_arrays; i++)
    if (sd->arrays[i].offset == offset) return &sd->arrays[i];
  return NULL;
}

static int fail_at(const tdm__json_doc *doc, const tdm__json *v, tdm_error *err,
                   const char *what) {
  return tdm__json_fail(doc, v, TDM_EPARSE, err, "%s", what);
}

/*
 * Whether a JSON number is a value of an integer type min <= n < limit.
 * Written as a plain integer it is compared as one: the double nearest
 * UINT64's maximum (or INT64's) is the limit itself, so a comparison in
 * double precision would refuse the type's largest values. Other forms
 * ("1e3", "7.0") are compared as their double value.
 */
static int fits_integer_type(const tdm__json *v, double value, double min,
                             double limit) {
  const char *text = v->text;
  size_t len = v->text_len, digits = text[0] == '-';
  while (digits < len && text[digits] >= '0' && text[digits] <= '9') digits++;
  if (digits == len && len < 32) {
    char buf[32];
    memcpy(buf, text, len);
    buf[len] = '\0';
    errno = 0;
    if (text[0] == '-') {
      long long n = strtoll(buf, NULL, 10);
      return errno != ERANGE && (double)n >= min;
    }
    unsigned long long n = strtoull(buf, NULL, 10);
    unsigned long long largest =
        limit >= 0x1p64 ? UINT64_MAX : (unsigned long long)limit - 1;
    return errno != ERANGE && n <= largest;
  }
  return value == floor(value) && value >= min && value < limit;
}

/* Where the tensor's next value goes in the rows, and its feature. */
static size_t next_slot(const tensor_sink *s, size_t *feature) {
  size_t f = s->feature == SIZE_MAX ? s->count % s->nf : s->feature;
  *feature = f;
  return s->feature == SIZE_MAX ? s->count : s->count * s->nf + f;
}

/* Stores one value read from the tensor (its JSON node v, or for binary
 * data the input object, in messages). */
static int put_number(tensor_sink *s, const tdm__json *v, double value) {
  size_t f, at = next_slot(s, &f);
  int problem = tdm__feature_value_problem(s->model, f, value);
  if (problem == TDM__VALUE_OK) {
    s->rows[at] = value;
    s->count++;
    return TDM_OK;
  }
  /* Binary values have no text: messages name the element instead. The
   * text is made only here, for the error: a request has many values. */
  char shown[64];
  if (s->binary != NULL)
    snprintf(shown, sizeof shown, "binary element %zu", s->count);
  else
    snprintf(shown, sizeof shown, "%.*s", (int)v->text_len, v->text);
  if (problem == TDM__VALUE_INFINITE)
    return tdm__json_fail(
        s->doc, v, TDM_EPARSE, s->err,
        "feature \"%s\": %s is infinite in float32, which XGBoost does not "
        "accept",
        tdm_model_feature_name(s->model, f), shown);
  return tdm__json_fail(s->doc, v, TDM_EPARSE, s->err,
                        "feature \"%s\" is missing%s%s, and the model does "
                        "not allow a missing value there",
                        tdm_model_feature_name(s->model, f),
                        s->binary != NULL ? " at " : "",
                        s->binary != NULL ? shown : "");
}

static int put_value(tensor_sink *s, const tdm__json *v) {
  if (s->count >= s->expected) return TDM_OK; /* counted, reported later */
  double value;
  if (tdm__json_feature_value(v, &value) != 0)
    return tdm__json_fail(s->doc, v, TDM_EPARSE, s->err,
                          "must be a number or null (missing), not %s",
                          tdm__json_type_name(v));
  if (!isnan(value)) {
    if (s->kind == KIND_FP32) {
      float f = (float)value;
      if (isinf(f) && !isinf(value))
        return tdm__json_fail(s->doc, v, TDM_EPARSE, s->err,
                              "%.*s does not fit in FP32", (int)v->text_len,
                              v->text);
      value = f;
    } else if (s->kind == KIND_INT &&
               !fits_integer_type(v, value, s->min, s->limit)) {
      return tdm__json_fail(s->doc, v, TDM_EPARSE, s->err,
                            "%.*s is not a value of the tensor's integer type",
                            (int)v->text_len, v->text);
    }
  }
  return put_number(s, v, value);
}

/*
 * Stores the values read straight from the text, with put_value's rules.
 * A value those rules refuse fails here without a message, as does an
 * integer too large for a double to stand for its text exactly: the
 * request is then parsed again the plain way, which says what is wrong.
 */
static int put_scanned(tensor_sink *s) {
  for (size_t i = 0; i < s->scanned_count && s->count < s->expected; i++) {
    double value = s->scanned[i];
    if (isnan(value)) {
      /* Missing: taken as it is, as put_value does. */
    } else if (s->kind == KIND_FP32) {
      float narrow = (float)value;
      if (isinf(narrow) && !isinf(value)) return TDM_EPARSE;
      value = narrow;
    } else if (s->kind == KIND_INT &&
               !(fabs(value) < 0x1p53 && value == floor(value) &&
                 value >= s->min && value < s->limit)) {
      return TDM_EPARSE;
    }
    size_t f, at = next_slot(s, &f);
    if (tdm__feature_value_problem(s->model, f, value) != TDM__VALUE_OK)
      return TDM_EPARSE;
    s->rows[at] = value;
    s->count++;
  }
  return TDM_OK;
}

/* Whether this machine stores numbers little-endian, as binary tensor data
 * is: then a tensor's bytes are its values as they are. The compiler folds
 * the test to a constant. */
static int host_is_little_endian(void) {
  const uint16_t probe = 1;
  unsigned char first;
  memcpy(&first, &probe, 1);
  return first == 1;
}

/* The little-endian unsigned integer of size bytes (1, 2, 4 or 8) at p. */
static uint64_t load_le(const unsigned char *p, size_t size) {
  uint64_t bits = 0;
  if (host_is_little_endian()) {
    /* One load of a known size per case, not a loop over the bytes: this
     * runs once per element of every binary tensor. */
    switch (size) {
      case 1: return p[0];
      case 2: {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
      }
      case 4: {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
      }
      default: memcpy(&bits, p, 8); return bits;
    }
  }
  for (size_t b = 0; b < size; b++) bits |= (uint64_t)p[b] << (8 * b);
  return bits;
}

/* Writes the low size bytes (4 or 8) of bits at p, little-endian. */
static void store_le(unsigned char *p, uint64_t bits, size_t size) {
  if (host_is_little_endian()) {
    uint32_t narrow = (uint32_t)bits;
    if (size == 4)
      memcpy(p, &narrow, 4);
    else
      memcpy(p, &bits, 8);
    return;
  }
  for (size_t b = 0; b < size; b++) p[b] = (unsigned char)(bits >> (8 * b));
}

/* Element i of binary tensor data, little-endian, as a double. */
static double binary_element(const tensor_sink *s, size_t i) {
  size_t size = datatypes[s->datatype].size;
  uint64_t bits = load_le(s->binary + i * size, size);
  if (s->kind == KIND_FP32) {
    uint32_t narrow = (uint32_t)bits;
    float f;
    memcpy(&f, &narrow, sizeof f);
    return f;
  }
  if (s->kind == KIND_FP64) {
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
  }
  if (s->min == 0) return (double)bits; /* an unsigned type */
  /* Signed: extend the sign of a narrower integer. */
  unsigned shift = (unsigned)(64 - 8 * size);
  return (double)((int64_t)(bits << shift) >> shift);
}

/* Reads a binary tensor's elements (their count is the shape's). The
 * feature is counted along rather than found with a division per element
 * (next_slot); a refused value goes to put_number for its message. */
static int put_binary(tensor_sink *s) {
  int matrix = s->feature == SIZE_MAX;
  size_t f = matrix ? 0 : s->feature;
  for (size_t i = 0; i < s->expected; i++) {
    double value = binary_element(s, i);
    if (tdm__feature_value_problem(s->model, f, value) != TDM__VALUE_OK) {
      s->count = i;
      return put_number(s, s->input, value);
    }
    s->rows[matrix ? i : i * s->nf + f] = value;
    if (matrix && ++f == s->nf) f = 0;
  }
  s->count = s->expected;
  return TDM_OK;
}

/*
 * Whether any of the n float32 values is infinite: every exponent bit set
 * and no mantissa bit. Two values at a time in a 64-bit word, without a
 * branch per value (GCC does not make vector code of such a loop at -O2):
 * with the signs cleared and the infinity's bits taken away, a lane is
 * zero exactly when it held an infinity, and subtracting 1 from a zero
 * lane borrows into its top bit, which no lane has set before.
 */
static int any_infinite(const float *values, size_t n) {
  const uint64_t signs = 0x8000000080000000u, infinity = 0x7f8000007f800000u;
  const uint64_t ones = 0x0000000100000001u;
  uint64_t found = 0;
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    uint64_t word;
    memcpy(&word, &values[i], sizeof word);
    uint64_t lanes = (word & ~signs) ^ infinity;
    found |= (lanes - ones) & ~lanes & signs;
  }
  for (; i < n; i++) found |= isinf(values[i]);
  return found != 0;
}

/*
 * The fast way for a [rows, features] tensor of FP32 binary data to a
 * float32 model (XGBoost): the bytes are the float32 values the model
 * reads, so they are copied as they are into *rows32, with one pass that
 * looks for a value the model refuses (an infinity; a float32 model has
 * no feature that must be given). Returns 0 when this way does not apply
 * or a value is refused: put_binary then reads the tensor, and names the
 * value in its message.
 */
static int take_float32(const tensor_sink *s, float **rows32) {
  const tdm_model *model = s->model;
  *rows32 = NULL;
  if (s->binary == NULL || s->kind != KIND_FP32 || s->feature != SIZE_MAX ||
      !model->float32 || model->feature_required != NULL ||
      !host_is_little_endian())
    return 0;
  float *values = tdm__malloc(s->expected * sizeof *values + 1);
  if (values == NULL) return 0; /* the other way says out of memory */
  memcpy(values, s->binary, s->expected * sizeof *values);
  if (any_infinite(values, s->expected)) {
    tdm__free(values);
    return 0;
  }
  *rows32 = values;
  return 1;
}

/* Tensor data may be flat or nested as the shape ("natural" form). */
static int put_data(tensor_sink *s, const tdm__json *v, size_t depth) {
  if (v->type != TDM__JSON_ARRAY) return put_value(s, v);
  if (depth >= MAX_DIMS)
    return fail_at(s->doc, v, s->err, "tensor data is nested too deeply");
  for (size_t i = 0; i < v->count; i++) {
    int rc = put_data(s, &v->items[i], depth + 1);
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}

/*
 * An input whose values are binary data: binary_data_size must be the
 * shape's element count times the datatype's size, and that many bytes
 * must be left after the JSON header (the inputs before it took theirs).
 */
static int read_binary_header(const tdm__json_doc *doc, tensor_sink *s,
                              const tdm__json *size, tdm_error *err) {
  if (s->data != NULL)
    return tdm__json_fail(doc, s->data, TDM_EPARSE, err,
                          "an input has either \"data\" or "
                          "parameters.binary_data_size, not both");
  if (s->section == NULL)
    return tdm__json_fail(doc, size, TDM_EPARSE, err,
                          "binary_data_size needs binary data after the JSON "
                          "header: the request has no "
                          "Inference-Header-Content-Length header");
  /* A number, not a string that holds one: Triton's int64 parameter. */
  int64_t bytes;
  if (size->type != TDM__JSON_NUMBER)
    return tdm__json_fail(doc, size, TDM_EPARSE, err,
                          "binary_data_size must be a number of bytes, not %s",
                          tdm__json_type_name(size));
  if (tdm__json_int64(doc, size, &bytes, err) != TDM_OK) return TDM_EPARSE;
  size_t element = datatypes[s->datatype].size;
  if (bytes < 0 || (uint64_t)bytes != s->expected * element)
    return tdm__json_fail(doc, size, TDM_EPARSE, err,
                          "binary_data_size is %lld bytes, but %zu %s "
                          "elements take %zu",
                          (long long)bytes, s->expected,
                          datatypes[s->datatype].name, s->expected * element);
  binary_section *section = s->section;
  if ((size_t)bytes > section->size - section->used)
    return tdm__json_fail(doc, size, TDM_EPARSE, err,
                          "binary_data_size is %lld bytes, but only %zu bytes "
                          "of binary data are left after the JSON header and "
                          "the inputs before this one",
                          (long long)bytes, section->size - section->used);
  s->binary = section->data + section->used;
  section->used += (size_t)bytes;
  return TDM_OK;
}

/* Reads an input's "datatype" and "shape". */
static int read_header(const tdm__json_doc *doc, const tdm__json *input,
                       tensor_sink *s, size_t *dims, size_t *num_dims,
                       tdm_error *err) {
  const tdm__json *type = tdm__json_get(input, "datatype");
  const tdm__json *shape = tdm__json_get(input, "shape");
  if (type == NULL || type->type != TDM__JSON_STRING)
    return tdm__json_fail(doc, input, TDM_EPARSE, err,
                          "an input needs \"datatype\", a string");
  size_t t = 0, nt = sizeof datatypes / sizeof datatypes[0];
  while (t < nt && strcmp(datatypes[t].name, type->text) != 0) t++;
  if (t == nt)
    return tdm__json_fail(doc, type, TDM_EPARSE, err,
                          "datatype \"%s\" is not supported: use FP32, FP64 "
                          "or an INT or UINT type",
                          type->text);
  s->kind = datatypes[t].kind;
  s->datatype = t;
  s->min = datatypes[t].min;
  s->limit = datatypes[t].limit;
  if (shape == NULL || shape->type != TDM__JSON_ARRAY || shape->count == 0 ||
      shape->count > MAX_DIMS)
    return tdm__json_fail(doc, shape ? shape : input, TDM_EPARSE, err,
                          "an input needs \"shape\", an array of 1 to %d "
                          "dimensions",
                          MAX_DIMS);
  size_t total = 1;
  for (size_t i = 0; i < shape->count; i++) {
    int64_t d;
    if (tdm__json_int64(doc, &shape->items[i], &d, err) != TDM_OK)
      return TDM_EPARSE;
    if (d < 0 || (uint64_t)d > MAX_VALUES ||
        (d > 0 && total > MAX_VALUES / (size_t)d))
      return tdm__json_fail(doc, &shape->items[i], TDM_EPARSE, err,
                            "dimension %lld is out of range", (long long)d);
    dims[i] = (size_t)d;
    total *= (size_t)d;
  }
  *num_dims = shape->count;
  s->expected = total;
  s->input = input;
  s->data = tdm__json_get(input, "data");
  const tdm__json *size =
      tdm__json_get(tdm__json_get(input, "parameters"), "binary_data_size");
  if (size != NULL) return read_binary_header(doc, s, size, err);
  if (s->data == NULL || s->data->type != TDM__JSON_ARRAY)
    return tdm__json_fail(doc, s->data ? s->data : input, TDM_EPARSE, err,
                          "an input needs \"data\", an array, or "
                          "parameters.binary_data_size with its values after "
                          "the JSON header");
  const scanned_array *scanned =
      s->data->count == 0 ? scanned_at(s->scan, s->data->offset) : NULL;
  if (scanned != NULL) {
    s->scanned = s->scan->values + scanned->first;
    s->scanned_count = scanned->count;
  }
  return TDM_OK;
}

static int fill(tensor_sink *s) {
  s->count = 0;
  if (s->binary != NULL) return put_binary(s);
  return s->scanned != NULL ? put_scanned(s) : put_data(s, s->data, 0);
}

/* The number of scalar elements in (possibly nested) tensor data. */
static size_t count_elements(const tdm__json *v, size_t depth) {
  if (v->type != TDM__JSON_ARRAY) return 1;
  if (depth >= MAX_DIMS) return 0;
  size_t n = 0;
  for (size_t i = 0; i < v->count; i++)
    n += count_elements(&v->items[i], depth + 1);
  return n;
}

static int check_count(const tdm__json_doc *doc, const tensor_sink *s,
                       const size_t *dims, size_t num_dims, tdm_error *err) {
  if (s->binary != NULL) return TDM_OK; /* read_binary_header counted */
  size_t n = s->scanned != NULL ? s->scanned_count : count_elements(s->data, 0);
  if (n == s->expected) return TDM_OK;
  char shape[160];
  size_t used = 0;
  for (size_t i = 0; i < num_dims && used < sizeof shape; i++)
    used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%zu",
                             i ? ", " : "", dims[i]);
  return tdm__json_fail(doc, s->data, TDM_EPARSE, err,
                        "has %zu values, but shape [%s] needs %zu", n, shape,
                        s->expected);
}

static size_t feature_index(const tdm_model *model, size_t nf,
                            const char *name) {
  for (size_t f = 0; f < nf; f++)
    if (strcmp(tdm_model_feature_name(model, f), name) == 0) return f;
  return SIZE_MAX;
}

/* Edit distance between a and b (insertions, deletions, substitutions;
 * letters compared without case), capped: anything above `cap` is cap + 1.
 * Names are short, so the quadratic table on the stack is small. */
static size_t name_distance(const char *a, const char *b, size_t cap) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return cap + 1;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t above = row[j];
      int same =
          tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
      size_t best = diagonal + (same ? 0 : 1);
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diagonal = above;
    }
  }
  return row[lb] > cap ? cap + 1 : row[lb];
}

/* The model's feature closest to a misspelled tensor name (at most two
 * edits, or the same letters in another case), or NULL. */
static const char *closest_feature(const tdm_model *model, const char *name) {
  const char *best = NULL;
  size_t best_distance = 3;
  for (size_t f = 0; f < model->num_features; f++) {
    const char *feature = tdm_model_feature_name(model, f);
    size_t d = name_distance(name, feature, 2);
    if (d < best_distance) {
      best = feature;
      best_distance = d;
    }
  }
  return best;
}

/* A boolean parameter: 1 or 0, or -1 (absent); fails on another type. */
static int read_flag(const tdm__json_doc *doc, const tdm__json *v,
                     const char *name, int *out, tdm_error *err) {
  *out = -1;
  if (v == NULL) return TDM_OK;
  if (v->type != TDM__JSON_BOOL)
    return tdm__json_fail(doc, v, TDM_EPARSE, err,
                          "\"%s\" must be true or false", name);
  *out = v->boolean;
  return TDM_OK;
}

/* The outputs wanted, and which of them as binary data: an output's own
 * parameters.binary_data decides, else the request's binary_data_output
 * (all_binary). */
static int read_outputs(const tdm__json_doc *doc, const tdm__json *outputs,
                        int all_binary, int *wanted, int *binary,
                        tdm_error *err) {
  *wanted = TDM__OUTPUT_SCORE | TDM__OUTPUT_MARGIN;
  *binary = all_binary ? *wanted : 0;
  if (outputs == NULL) return TDM_OK;
  if (outputs->type != TDM__JSON_ARRAY)
    return fail_at(doc, outputs, err, "\"outputs\" must be an array");
  if (outputs->count == 0) return TDM_OK;
  *wanted = *binary = 0;
  for (size_t i = 0; i < outputs->count; i++) {
    const tdm__json *name = tdm__json_get(&outputs->items[i], "name");
    if (name == NULL || name->type != TDM__JSON_STRING)
      return fail_at(doc, &outputs->items[i], err,
                     "a requested output needs \"name\", a string");
    int bit = strcmp(name->text, "score") == 0    ? TDM__OUTPUT_SCORE
              : strcmp(name->text, "margin") == 0 ? TDM__OUTPUT_MARGIN
                                                  : 0;
    if (bit == 0)
      return tdm__json_fail(doc, name, TDM_EPARSE, err,
                            "unknown output \"%s\": the model's outputs are "
                            "\"score\" and \"margin\"",
                            name->text);
    *wanted |= bit;
    const tdm__json *params = tdm__json_get(&outputs->items[i], "parameters");
    if (params != NULL && params->type != TDM__JSON_OBJECT)
      return fail_at(doc, params, err, "\"parameters\" must be an object");
    int as_binary;
    int rc = read_flag(doc, tdm__json_get(params, "binary_data"), "binary_data",
                       &as_binary, err);
    if (rc != TDM_OK) return rc;
    if (as_binary == 1 || (as_binary == -1 && all_binary)) *binary |= bit;
  }
  return TDM_OK;
}

/* parameters.contribs: true (TreeSHAP), "approx" (Saabas) or false. The
 * model is checked later, in tdm__infer_parse, where it is known. */
static int read_contribs(const tdm__json_doc *doc, const tdm__json *contribs,
                         tdm__infer_request *req, tdm_error *err) {
  if (contribs == NULL) return TDM_OK;
  if (contribs->type == TDM__JSON_BOOL) {
    if (contribs->boolean) req->outputs |= TDM__OUTPUT_CONTRIBS;
    return TDM_OK;
  }
  if (contribs->type == TDM__JSON_STRING &&
      strcmp(contribs->text, "approx") == 0) {
    req->outputs |= TDM__OUTPUT_CONTRIBS | TDM__OUTPUT_APPROX_CONTRIBS;
    return TDM_OK;
  }
  return fail_at(doc, contribs, err,
                 "\"contribs\" must be true, false or \"approx\"");
}

static int read_request_header(tdm__infer_request *req, tdm_error *err) {
  const tdm__json_doc *doc = &req->doc;
  const tdm__json *root = doc->root;
  if (root->type != TDM__JSON_OBJECT)
    return fail_at(doc, root, err, "the request must be a JSON object");
  const tdm__json *id = tdm__json_get(root, "id");
  if (id != NULL) {
    if (id->type != TDM__JSON_STRING)
      return fail_at(doc, id, err, "\"id\" must be a string");
    req->id = id->text;
    req->id_len = id->count; /* it may hold a NUL (\u0000): echoed whole */
  }
  const tdm__json *params = tdm__json_get(root, "parameters");
  if (params != NULL) {
    if (params->type != TDM__JSON_OBJECT)
      return fail_at(doc, params, err, "\"parameters\" must be an object");
    const tdm__json *timeout = tdm__json_get(params, "timeout");
    if (timeout != NULL) {
      if (tdm__json_int64(doc, timeout, &req->timeout_us, err) != TDM_OK)
        return TDM_EPARSE;
      if (req->timeout_us < 0)
        return fail_at(doc, timeout, err,
                       "timeout (microseconds) may not be negative");
    }
  }
  int all_binary;
  int rc = read_flag(doc, tdm__json_get(params, "binary_data_output"),
                     "binary_data_output", &all_binary, err);
  if (rc == TDM_OK)
    rc = read_outputs(doc, tdm__json_get(root, "outputs"), all_binary == 1,
                      &req->outputs, &req->binary_outputs, err);
  if (rc == TDM_OK && params != NULL)
    rc = read_contribs(doc, tdm__json_get(params, "contribs"), req, err);
  /* Contributions are asked for in parameters, not outputs, so only the
   * request's binary_data_output can make them binary. */
  if (rc == TDM_OK && all_binary == 1 && (req->outputs & TDM__OUTPUT_CONTRIBS))
    req->binary_outputs |= TDM__OUTPUT_CONTRIBS;
  return rc;
}

/* Reads one tensor [rows, features] into req->rows (or req->rows32). */
static int read_matrix(const tdm_model *model, tdm__infer_request *req,
                       const tdm__json *input, binary_section *section,
                       const scanned_data *scan, tdm_error *err) {
  size_t nf = model->num_features;
  tensor_sink s = {.model = model,
                   .doc = &req->doc,
                   .nf = nf,
                   .feature = SIZE_MAX,
                   .section = section,
                   .scan = scan,
                   .err = err};
  size_t dims[MAX_DIMS], nd;
  int rc = read_header(&req->doc, input, &s, dims, &nd, err);
  if (rc != TDM_OK) return rc;
  const tdm__json *shape = tdm__json_get(input, "shape");
  if (!(nd == 2 && dims[1] == nf) && !(nd == 1 && dims[0] == nf)) {
    /* A single tensor whose name is no feature but close to one, or
     * shaped as one feature's column ([rows, 1]), is most likely a
     * feature's tensor misspelled: say so, rather than only that the
     * shape does not fit a matrix. */
    const tdm__json *name = tdm__json_get(input, "name");
    const char *near = closest_feature(model, name->text);
    if (nf > 1 && (near != NULL || (nd == 2 && dims[1] == 1)))
      return tdm__json_fail(
          &req->doc, name, TDM_ESCHEMA, err,
          "input \"%s\" is not one of the model's %zu features%s%s%s: a "
          "tensor per feature is named as its feature (all %zu of them), "
          "or one tensor [rows, %zu] holds every feature",
          name->text, nf, near ? " (did you mean \"" : "", near ? near : "",
          near ? "\"?)" : "", nf, nf);
    return tdm__json_fail(&req->doc, shape, TDM_ESCHEMA, err,
                          "the model takes %zu features: the input's shape "
                          "must be [rows, %zu]",
                          nf, nf);
  }
  req->num_rows = nd == 2 ? dims[0] : 1;
  rc = check_count(&req->doc, &s, dims, nd, err);
  if (rc != TDM_OK) return rc;
  if (take_float32(&s, &req->rows32)) return TDM_OK;
  req->rows = tdm__malloc((req->num_rows * nf + 1) * sizeof(double));
  if (req->rows == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  s.rows = req->rows;
  return fill(&s);
}

/* Reads one tensor per feature, named as the features. */
static int read_features(const tdm_model *model, tdm__infer_request *req,
                         const tdm__json *inputs, binary_section *section,
                         const scanned_data *scan, tdm_error *err) {
  size_t nf = model->num_features;
  unsigned char *given = tdm__calloc(nf + 1, 1);
  if (given == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  int rc = TDM_OK;
  for (size_t i = 0; i < inputs->count && rc == TDM_OK; i++) {
    const tdm__json *input = &inputs->items[i];
    const tdm__json *name = tdm__json_get(input, "name");
    size_t f = feature_index(model, nf, name->text);
    if (f == SIZE_MAX) {
      const char *near = closest_feature(model, name->text);
      rc = tdm__json_fail(&req->doc, name, TDM_ESCHEMA, err,
                          "\"%s\" is not one of the model's %zu features%s%s%s "
                          "(send one tensor per feature, named as the "
                          "features, or one tensor [rows, %zu])",
                          name->text, nf, near ? " (did you mean \"" : "",
                          near ? near : "", near ? "\"?)" : "", nf);
      break;
    }
    if (given[f]) {
      rc = tdm__json_fail(&req->doc, name, TDM_EPARSE, err,
                          "feature \"%s\" is given twice", name->text);
      break;
    }
    given[f] = 1;
    tensor_sink s = {.model = model,
                     .doc = &req->doc,
                     .nf = nf,
                     .feature = f,
                     .section = section,
                     .scan = scan,
                     .err = err};
    size_t dims[MAX_DIMS], nd;
    rc = read_header(&req->doc, input, &s, dims, &nd, err);
    if (rc != TDM_OK) break;
    const tdm__json *shape = tdm__json_get(input, "shape");
    if (!(nd == 1 || (nd == 2 && dims[1] == 1))) {
      rc = tdm__json_fail(&req->doc, shape, TDM_ESCHEMA, err,
                          "a feature's tensor must be [rows] or [rows, 1]");
      break;
    }
    if (dims[0] > MAX_VALUES / (nf + 1)) {
      rc = tdm__json_fail(&req->doc, shape, TDM_EPARSE, err, "too many rows");
      break;
    }
    /* Counted before allocating: the body's size bounds the memory. */
    rc = check_count(&req->doc, &s, dims, nd, err);
    if (rc != TDM_OK) break;
    if (req->rows == NULL) {
      req->num_rows = dims[0];
      req->rows = tdm__malloc((req->num_rows * nf + 1) * sizeof(double));
      if (req->rows == NULL) {
        rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
        break;
      }
      for (size_t k = 0; k < req->num_rows * nf; k++) req->rows[k] = NAN;
    } else if (dims[0] != req->num_rows) {
      rc = tdm__json_fail(&req->doc, shape, TDM_ESCHEMA, err,
                          "has %zu rows, but the first input has %zu", dims[0],
                          req->num_rows);
      break;
    }
    s.rows = req->rows;
    rc = fill(&s);
  }
  /* A feature with no tensor is missing: allowed unless the model says. */
  for (size_t f = 0; f < nf && rc == TDM_OK; f++)
    if (!given[f] && tdm__feature_value_problem(model, f, NAN) != 0)
      rc = tdm__json_fail(&req->doc, inputs, TDM_ESCHEMA, err,
                          "feature \"%s\" has no input, and the model does "
                          "not allow it to be missing",
                          tdm_model_feature_name(model, f));
  tdm__free(given);
  return rc;
}

static int read_inputs(const tdm_model *model, tdm__infer_request *req,
                       binary_section *section, const scanned_data *scan,
                       tdm_error *err) {
  const tdm__json_doc *doc = &req->doc;
  const tdm__json *inputs = tdm__json_get(doc->root, "inputs");
  if (inputs == NULL || inputs->type != TDM__JSON_ARRAY || inputs->count == 0)
    return fail_at(doc, inputs ? inputs : doc->root, err,
                   "the request needs \"inputs\", an array of tensors");
  size_t named_as_features = 0;
  for (size_t i = 0; i < inputs->count; i++) {
    const tdm__json *input = &inputs->items[i];
    const tdm__json *name = tdm__json_get(input, "name");
    if (input->type != TDM__JSON_OBJECT || name == NULL ||
        name->type != TDM__JSON_STRING)
      return fail_at(doc, input, err,
                     "an input must be an object with \"name\", a string");
    if (feature_index(model, model->num_features, name->text) != SIZE_MAX)
      named_as_features++;
  }
  int rc = inputs->count == 1 && named_as_features == 0
               ? read_matrix(model, req, &inputs->items[0], section, scan, err)
               : read_features(model, req, inputs, section, scan, err);
  /* Every byte after the header belongs to an input: a client whose
   * sizes do not add up has laid its tensors out differently than it
   * said, and guessing would score the wrong values. */
  if (rc == TDM_OK && section != NULL && section->used != section->size)
    rc = tdm__json_fail(doc, inputs, TDM_EPARSE, err,
                        "%zu bytes follow the JSON header, but the inputs' "
                        "binary_data_size add up to %zu",
                        section->size, section->used);
  return rc;
}

/* Contributions need the trees' covers, and Saabas an XGBoost model. */
static int check_contribs(const tdm_model *model, const tdm__infer_request *req,
                          tdm_error *err) {
  if (!(req->outputs & TDM__OUTPUT_CONTRIBS)) return TDM_OK;
  const tdm__json *at =
      tdm__json_get(tdm__json_get(req->doc.root, "parameters"), "contribs");
  if (!tdm_model_has_contribs(model))
    return fail_at(&req->doc, at, err,
                   "this model has no contributions: its file lacks the "
                   "trees' covers (XGBoost's sum_hessian, LightGBM's counts)");
  if ((req->outputs & TDM__OUTPUT_APPROX_CONTRIBS) && !model->float32)
    return fail_at(&req->doc, at, err,
                   "\"approx\" contributions are XGBoost's; this model has "
                   "only exact ones (true)");
  return TDM_OK;
}

/* Whether the size bytes at text hold word (no NUL needed). */
static int mentions(const char *text, size_t size, const char *word) {
  size_t n = strlen(word);
  for (size_t i = 0; i + n <= size; i++)
    if (text[i] == word[0] && memcmp(text + i, word, n) == 0) return 1;
  return 0;
}

int tdm__infer_parse(const tdm_model *model, const char *body, size_t size,
                     tdm__infer_request *req, tdm_error *err) {
  return tdm__infer_parse_binary(model, body, size, SIZE_MAX, req, err);
}

/* Parses the request whose JSON is json (the body's first bytes, or a copy
 * of them with its scanned "data" arrays cut out, json_len bytes). */
static int parse_request(const tdm_model *model, const char *body,
                         const char *json, size_t json_len, size_t size,
                         size_t json_size, const scanned_data *scan,
                         tdm__infer_request *req, tdm_error *err) {
  memset(req, 0, sizeof *req);
  req->timeout_us = -1;
  binary_section section = {0}, *binary = NULL;
  if (json_size != SIZE_MAX) {
    if (json_size > size)
      return tdm__fail(err, TDM_EPARSE,
                       "Inference-Header-Content-Length is %zu bytes, but the "
                       "body has only %zu",
                       json_size, size);
    section.data = (const unsigned char *)body + json_size;
    section.size = size - json_size;
    binary = &section;
    size = json_size;
  }
  int rc = tdm__json_parse(&req->doc, json, json_len, "request", 0, err);
  if (rc != TDM_OK && binary == NULL &&
      mentions(body, size, "binary_data_size")) {
    /* Most likely binary data sent without the header that says where
     * the JSON ends: say so beside the parser's own message. */
    char message[sizeof err->message];
    snprintf(message, sizeof message, "%s", err->message);
    tdm__fail(err, rc,
              "%.900s (binary tensor data needs the "
              "Inference-Header-Content-Length header)",
              message);
  }
  if (rc != TDM_OK) return rc;
  rc = read_request_header(req, err);
  if (rc == TDM_OK) rc = check_contribs(model, req, err);
  if (rc == TDM_OK) rc = read_inputs(model, req, binary, scan, err);
  if (rc != TDM_OK) tdm__infer_request_free(req);
  return rc;
}

int tdm__infer_parse_binary(const tdm_model *model, const char *body,
                            size_t size, size_t json_size,
                            tdm__infer_request *req, tdm_error *err) {
  /* First with the "data" arrays read straight from the text; a request
   * that fails that way (or has none) is parsed the plain way, whose
   * messages are the ones to give. */
  size_t json_len = json_size < size ? json_size : size, copy_len = 0;
  scanned_data scan = {0};
  char *copy = tdm__malloc(json_len + 1);
  if (copy != NULL) {
    if (scan_data_arrays(body, json_len, copy, &copy_len, &scan) > 0) {
      int rc = parse_request(model, body, copy, copy_len, size, json_size,
                             &scan, req, err);
      tdm__free(copy);
      scanned_data_free(&scan);
      if (rc == TDM_OK) return rc;
      copy = NULL;
    }
  }
  tdm__free(copy);
  scanned_data_free(&scan);
  return parse_request(model, body, body, json_len, size, json_size, NULL, req,
                       err);
}

void tdm__infer_request_free(tdm__infer_request *req) {
  if (req == NULL) return;
  tdm__free(req->rows);
  tdm__free(req->rows32);
  req->rows = NULL;
  req->rows32 = NULL;
  if (req->doc.root != NULL) tdm__json_doc_free(&req->doc);
  memset(&req->doc, 0, sizeof req->doc);
}

/* JSON has no NaN or infinity: such a value is written as null. */
static int append_values(tdm__buf *out, const tdm_model *model,
                         const double *values, size_t n) {
  char text[32];
  int rc = tdm__buf_append(out, "[", 1);
  for (size_t i = 0; i < n && rc == TDM_OK; i++) {
    int len = isfinite(values[i])
                  ? tdm_model_format_value(model, values[i], text)
                  : snprintf(text, sizeof text, "null");
    if (i > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK) rc = tdm__buf_append(out, text, (size_t)len);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "]", 1);
  return rc;
}

/* Appends values as binary tensor data: little-endian float32 for an
 * XGBoost model (its scores are float32 values), double otherwise. The
 * bytes are written in place, not appended a value at a time. */
static int append_binary(tdm__buf *out, const tdm_model *model,
                         const double *values, size_t n) {
  size_t size = model->float32 ? 4 : 8;
  int rc = tdm__buf_reserve(out, n * size);
  if (rc != TDM_OK) return rc;
  unsigned char *bytes = (unsigned char *)out->data + out->len;
  for (size_t i = 0; i < n; i++, bytes += size) {
    uint64_t bits;
    if (model->float32) {
      float f = (float)values[i];
      uint32_t narrow;
      memcpy(&narrow, &f, sizeof narrow);
      bits = narrow;
    } else {
      memcpy(&bits, &values[i], sizeof bits);
    }
    store_le(bytes, bits, size);
  }
  out->len += n * size;
  out->data[out->len] = '\0';
  return TDM_OK;
}

/* Scores (or explains, by flags) the request's rows, whichever form they
 * were read in. */
static int predict_rows(const tdm_model *model, const tdm__infer_request *req,
                        int flags, double *out) {
  if (req->rows32 != NULL)
    return tdm_model_predict_float32(model, req->rows32, req->num_rows, flags,
                                     out);
  return tdm_model_predict(model, req->rows, req->num_rows, flags, out);
}

/* Where a response's outputs go: the JSON header, and the binary data of
 * the outputs asked for as binary, in the order of the header. */
typedef struct response {
  tdm__buf *json;
  tdm__buf binary;
  int first; /* no output written yet */
} response;

/* Appends one output tensor of rows x width values; with groups > 1 its
 * shape is [rows, groups, width / groups] (contributions per class). */
static int append_output(response *res, const tdm_model *model, int binary,
                         const char *name, const double *values, size_t rows,
                         size_t width, size_t groups) {
  tdm__buf *out = res->json;
  int first = res->first;
  res->first = 0;
  /* Plain appends, not tdm__buf_printf: a one-row answer is mostly this
   * head, and printf's format parsing was 8% of a one-row request's CPU.
   * The literals' lengths come from sizeof, not counted by hand. */
  static const char head[] = ",{\"name\":\"";
  static const char fp32[] = "\",\"datatype\":\"FP32\",\"shape\":[";
  static const char fp64[] = "\",\"datatype\":\"FP64\",\"shape\":[";
  static const char size[] = "\"parameters\":{\"binary_data_size\":";
  int rc = first ? tdm__buf_append(out, head + 1, sizeof head - 2)
                 : tdm__buf_append(out, head, sizeof head - 1);
  if (rc == TDM_OK) rc = tdm__buf_append(out, name, strlen(name));
  if (rc == TDM_OK)
    rc = model->float32 ? tdm__buf_append(out, fp32, sizeof fp32 - 1)
                        : tdm__buf_append(out, fp64, sizeof fp64 - 1);
  if (rc == TDM_OK) rc = tdm__buf_append_uint(out, rows);
  if (rc == TDM_OK) rc = tdm__buf_append(out, ",", 1);
  if (rc == TDM_OK && groups > 1) {
    rc = tdm__buf_append_uint(out, groups);
    if (rc == TDM_OK) rc = tdm__buf_append(out, ",", 1);
  }
  if (rc == TDM_OK)
    rc = tdm__buf_append_uint(out, groups > 1 ? width / groups : width);
  if (rc == TDM_OK) rc = tdm__buf_append(out, "],", 2);
  if (rc == TDM_OK && binary) {
    rc = tdm__buf_append(out, size, sizeof size - 1);
    if (rc == TDM_OK)
      rc = tdm__buf_append_uint(out, rows * width * (model->float32 ? 4 : 8));
    if (rc == TDM_OK) rc = tdm__buf_append(out, "}}", 2);
    if (rc == TDM_OK)
      rc = append_binary(&res->binary, model, values, rows * width);
    return rc;
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "\"data\":", 7);
  if (rc == TDM_OK) rc = append_values(out, model, values, rows * width);
  if (rc == TDM_OK) rc = tdm__buf_append(out, "}", 1);
  return rc;
}

/* The "contribs" tensor: the rows explained (tdm__infer_parse checked
 * that the model can). */
static int append_contribs(response *res, const tdm_model *model,
                           const tdm__infer_request *req) {
  int flags = TDM_PREDICT_CONTRIBS;
  if (req->outputs & TDM__OUTPUT_APPROX_CONTRIBS)
    flags |= TDM_PREDICT_APPROX_CONTRIBS;
  size_t width = tdm_model_output_width(model, flags);
  double *values = tdm__malloc(req->num_rows * width * sizeof *values + 1);
  if (values == NULL) return TDM_ENOMEM;
  int rc = predict_rows(model, req, flags, values);
  if (rc == TDM_OK)
    rc = append_output(
        res, model, (req->binary_outputs & TDM__OUTPUT_CONTRIBS) != 0,
        "contribs", values, req->num_rows, width, model->num_outputs);
  tdm__free(values);
  return rc;
}

int tdm__infer_respond(const tdm_model *model, const char *model_name,
                       const char *version, const tdm__infer_request *req,
                       tdm__buf *out, size_t *json_size) {
  size_t n = req->num_rows, k = model->num_outputs;
  size_t width = tdm_model_output_width(model, 0);
  double stack[64];
  size_t need = n * (k + width);
  double *margins = need <= 64 ? stack : tdm__malloc(need * sizeof(double));
  if (margins == NULL) return TDM_ENOMEM;
  double *scores = margins + n * k;
  /* One evaluation: margins, then the link, as tdm_model_predict does. */
  int rc = predict_rows(model, req, TDM_PREDICT_MARGIN, margins);
  for (size_t r = 0; r < n && rc == TDM_OK; r++)
    tdm__apply_link(model, margins + r * k, scores + r * width);
  if (rc == TDM_OK) rc = tdm__buf_append(out, "{\"model_name\":", 14);
  if (rc == TDM_OK) rc = tdm__json_append_string(out, model_name);
  if (rc == TDM_OK && version != NULL) {
    rc = tdm__buf_append(out, ",\"model_version\":", 17);
    if (rc == TDM_OK) rc = tdm__json_append_string(out, version);
  }
  if (rc == TDM_OK && req->id != NULL) {
    rc = tdm__buf_append(out, ",\"id\":", 6);
    if (rc == TDM_OK) rc = tdm__json_append_string_n(out, req->id, req->id_len);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, ",\"outputs\":[", 12);
  response res = {.json = out, .first = 1};
  if (rc == TDM_OK && (req->outputs & TDM__OUTPUT_SCORE))
    rc = append_output(&res, model,
                       (req->binary_outputs & TDM__OUTPUT_SCORE) != 0, "score",
                       scores, n, width, 1);
  if (rc == TDM_OK && (req->outputs & TDM__OUTPUT_MARGIN))
    rc = append_output(&res, model,
                       (req->binary_outputs & TDM__OUTPUT_MARGIN) != 0,
                       "margin", margins, n, k, 1);
  if (rc == TDM_OK && (req->outputs & TDM__OUTPUT_CONTRIBS))
    rc = append_contribs(&res, model, req);
  if (rc == TDM_OK) rc = tdm__buf_append(out, "]}", 2);
  if (json_size != NULL) *json_size = out->len;
  if (rc == TDM_OK && res.binary.len > 0)
    rc = tdm__buf_append(out, res.binary.data, res.binary.len);
  tdm__buf_free(&res.binary);
  if (margins != stack) tdm__free(margins);
  return rc;
}

int tdm__infer_metadata(const tdm_model *model, const char *model_name,
                        const char *const *versions, size_t num_versions,
                        tdm__buf *out) {
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  const char *type = info.float32 ? "FP32" : "FP64";
  int rc = tdm__buf_append(out, "{\"name\":", 8);
  if (rc == TDM_OK) rc = tdm__json_append_string(out, model_name);
  if (rc == TDM_OK) rc = tdm__buf_append(out, ",\"versions\":[", 13);
  for (size_t v = 0; v < num_versions && rc == TDM_OK; v++) {
    if (v > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK) rc = tdm__json_append_string(out, versions[v]);
  }
  if (rc == TDM_OK)
    rc = tdm__buf_printf(
        out,
        "],\"platform\":\"%s\",\"inputs\":[{\"name\":\"input\",\"datatype\":"
        "\"%s\",\"shape\":[-1,%zu]}],\"outputs\":[{\"name\":\"score\","
        "\"datatype\":\"%s\",\"shape\":[-1,%zu]},{\"name\":\"margin\","
        "\"datatype\":\"%s\",\"shape\":[-1,%zu]}],\"features\":[",
        info.format_name, type, info.num_features, type, info.num_scores, type,
        info.num_outputs);
  for (size_t f = 0; f < info.num_features && rc == TDM_OK; f++) {
    if (f > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK)
      rc = tdm__json_append_string(out, tdm_model_feature_name(model, f));
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "]}", 2);
  return rc;
}
