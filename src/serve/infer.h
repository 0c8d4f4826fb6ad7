/*
 * infer.h - the Open Inference Protocol (KServe v2) inference request and
 * response bodies for a tandem model: JSON in, a row-major matrix of
 * feature values out, and scores back to JSON. No HTTP here, so the
 * translation can be unit tested and fuzzed on its own.
 *
 * A model has two output tensors: "score" (what `tandem score` writes:
 * probabilities, per-class values, or a regression value) and "margin"
 * (the untransformed sums). Both are computed from one evaluation. On
 * request (parameters.contribs) a third, "contribs", holds the feature
 * contributions (docs/explanations.md).
 */
#ifndef TDM_INFER_H
#define TDM_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"
#include "../core/json.h"
#include "tandem.h"

/* Output tensors a request may ask for. "contribs" (the parameter
 * "contribs": true, or "approx" for Saabas) is the feature contributions,
 * [rows, features + 1] or [rows, classes, features + 1]. */
enum {
  TDM__OUTPUT_SCORE = 1,
  TDM__OUTPUT_MARGIN = 2,
  TDM__OUTPUT_CONTRIBS = 4,
  TDM__OUTPUT_APPROX_CONTRIBS = 8
};

typedef struct tdm__infer_request {
  tdm__json_doc doc;  /* the parsed body; id points into it */
  const char *id;     /* the request's "id", or NULL */
  size_t id_len;      /* its bytes (a \u0000 in it included) */
  int outputs;        /* TDM__OUTPUT_* bits wanted */
  int binary_outputs; /* of those, the ones to return as binary data */
  int64_t timeout_us; /* parameters.timeout, or -1 when not given */
  size_t num_rows;
  /* num_rows x model features, NaN = missing: in rows (double), or, for
   * FP32 binary data to a float32 model, in rows32 as the client sent them
   * (the model reads float32 either way, so nothing is converted twice).
   * Exactly one of the two is set once a request is parsed. */
  double *rows;
  float *rows32;
} tdm__infer_request;

/*
 * Parses an inference request body for `model`. On failure (TDM_EPARSE or
 * TDM_ESCHEMA, a 400) err names what is wrong and where, as a JSON pointer
 * or a line and column, and req holds nothing to free. The values are
 * copied: body may be freed once this returns.
 */
int tdm__infer_parse(const tdm_model *model, const char *body, size_t size,
                     tdm__infer_request *req, tdm_error *err);

/*
 * The same, for a body in the binary tensor data extension's form: its
 * first json_size bytes (the Inference-Header-Content-Length header) are
 * the JSON request, the rest the binary data of the inputs that give
 * parameters.binary_data_size, in their order; every byte must belong to
 * one. json_size == SIZE_MAX: the whole body is JSON (tdm__infer_parse).
 */
int tdm__infer_parse_binary(const tdm_model *model, const char *body,
                            size_t size, size_t json_size,
                            tdm__infer_request *req, tdm_error *err);
void tdm__infer_request_free(tdm__infer_request *req);

/*
 * Scores the request's rows and appends the response object to out, then
 * the binary data of the outputs asked for as binary. *json_size (when
 * json_size is not NULL) is out's length after the JSON object: the
 * response's Inference-Header-Content-Length when it is less than
 * out->len. `version` may be NULL (no "model_version" member).
 */
int tdm__infer_respond(const tdm_model *model, const char *model_name,
                       const char *version, const tdm__infer_request *req,
                       tdm__buf *out, size_t *json_size);

/* Appends the model metadata object (inputs and outputs as tensors). */
int tdm__infer_metadata(const tdm_model *model, const char *model_name,
                        const char *const *versions, size_t num_versions,
                        tdm__buf *out);

#endif /* TDM_INFER_H */
