/*
 * tandem.h - the public C API of tandem, one machine-learning scoring engine
 * that runs as a reproducible batch job or as a real-time service.
 *
 * Conventions (the same everywhere):
 *   - Handles are opaque. Whoever creates a handle frees it, and every
 *     tdm_*_free(NULL) is a no-op.
 *   - Every call that can fail returns an int status: TDM_OK (0) or a
 *     negative code from the TDM_STATUS_LIST below. Results are written
 *     through the last parameters.
 *   - Calls that can fail on user input take an optional tdm_error*, which
 *     receives a one-line message naming where the fault is: a file and a
 *     line and column, or a JSON pointer.
 *   - A loaded model is immutable and may be shared by any number of threads.
 */
#ifndef TANDEM_H
#define TANDEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TDM_VERSION "0.1.0"

/* X(name, value, description). The one list of status codes. */
#define TDM_STATUS_LIST(X)                                        \
  X(TDM_OK, 0, "success")                                         \
  X(TDM_EINVAL, -1, "invalid argument")                           \
  X(TDM_EPARSE, -2, "malformed input")                            \
  X(TDM_EUNSUPPORTED, -3, "unsupported feature")                  \
  X(TDM_ESCHEMA, -4, "input does not match what the model needs") \
  X(TDM_EIO, -5, "input/output error")                            \
  X(TDM_ENOMEM, -6, "out of memory")                              \
  X(TDM_ENOTFOUND, -7, "not found")                               \
  X(TDM_EINTERNAL, -8, "internal error")                          \
  X(TDM_ETOOLATE, -9, "event older than its entity's dedupe horizon") \
  X(TDM_EFUTURE, -10, "event dated too far ahead of the clock")

enum tdm_status {
#define TDM__STATUS_ENUM(name, value, text) name = value,
  TDM_STATUS_LIST(TDM__STATUS_ENUM)
#undef TDM__STATUS_ENUM
};

/* The description of a status code. The string is static. */
const char *tdm_strerror(int status);

/* The name of a status code ("TDM_EPARSE"). The string is static. */
const char *tdm_status_name(int status);

/* An error report: the status and a one-line message with its location. */
typedef struct tdm_error {
  int status;
  char message[1024];
} tdm_error;

/* ---------------------------------------------------------------------- */
/* Models                                                                 */
/* ---------------------------------------------------------------------- */

typedef struct tdm_model tdm_model;

/* Where a model file came from. */
typedef enum tdm_model_format {
  TDM_FORMAT_XGBOOST_JSON = 1,
  TDM_FORMAT_LIGHTGBM_TEXT = 2,
  TDM_FORMAT_LINEAR_JSON =
      3, /* tandem's linear models (docs/linear-models.md) */
} tdm_model_format;

/*
 * Loads a model file. The format is recognised from the content. On success
 * *out holds a model that the caller frees with tdm_model_free. On failure
 * *out is NULL and err (if not NULL) says what is wrong and where.
 */
int tdm_model_load(const char *path, tdm_model **out, tdm_error *err);

/*
 * Loads a model from memory. `name` is used in error messages only. The
 * buffer is not retained.
 */
int tdm_model_load_buffer(const char *data, size_t size, const char *name,
                          tdm_model **out, tdm_error *err);

void tdm_model_free(tdm_model *model);

/* Describes a loaded model. Strings stay valid as long as the model. */
typedef struct tdm_model_info {
  tdm_model_format format;
  const char *format_name;     /* "xgboost-json", "lightgbm-text" */
  const char *library_version; /* version that wrote the file, or "" */
  const char *booster;         /* "gbtree", "dart", "gbdt", "rf" */
  const char *objective;       /* "binary:logistic", ... */
  size_t num_features;
  size_t num_outputs; /* margins per row: classes for multiclass, else 1 */
  size_t num_scores;  /* columns of the transformed prediction */
  size_t num_classes; /* 0 for regression and binary models */
  size_t num_trees;
  size_t num_iterations; /* boosting rounds: trees per round x rounds */
  size_t num_nodes;      /* splits and leaves over all trees */
  size_t max_depth;      /* edges from root to deepest leaf */
  size_t num_categorical_splits;
  int float32;     /* 1 when the model scores in float32 (XGBoost) */
  char sha256[65]; /* SHA-256 of the file: the model version */
} tdm_model_info;

int tdm_model_get_info(const tdm_model *model, tdm_model_info *info);

/*
 * Keeps only the first `iterations` boosting rounds (LightGBM's
 * num_iteration, XGBoost's iteration_range). Call it before sharing the
 * model between threads. Fails with TDM_EINVAL if the model has fewer.
 */
int tdm_model_limit_iterations(tdm_model *model, size_t iterations,
                               tdm_error *err);

/* Feature i's name and type ("float", "int", "c" for categorical, ...). */
const char *tdm_model_feature_name(const tdm_model *model, size_t i);
const char *tdm_model_feature_type(const tdm_model *model, size_t i);

/*
 * 1 when a missing value of feature i is an error for this model (a linear
 * model whose file says so); the model then scores such a row as NaN, and
 * callers should refuse the row instead, naming it.
 */
int tdm_model_feature_required(const tdm_model *model, size_t i);

/* 1 when the model's feature names came from the file, 0 when generated. */
int tdm_model_has_feature_names(const tdm_model *model);

/* Prediction flags. */
enum {
  TDM_PREDICT_MARGIN = 1, /* untransformed sums (XGBoost output_margin) */
  /* Feature contributions (XGBoost pred_contribs, LightGBM pred_contrib):
   * per output, num_features values then the bias, summing to the margin.
   * Path-dependent TreeSHAP; docs/explanations.md. */
  TDM_PREDICT_CONTRIBS = 2,
  /* With TDM_PREDICT_CONTRIBS: Saabas' approximation (XGBoost's
   * approx_contribs), XGBoost models only. */
  TDM_PREDICT_APPROX_CONTRIBS = 4
};

/* 1 when the model can give contributions (its file holds the node covers:
 * XGBoost's sum_hessian, LightGBM's counts), else 0. */
int tdm_model_has_contribs(const tdm_model *model);

/*
 * Scores rows. `rows` is row-major, num_rows x num_features doubles in the
 * model's feature order; NaN means missing. `out` receives num_rows x
 * tdm_model_output_width(model, flags) values. Float32 models produce
 * values that are exact float32. Does not allocate; safe from any thread.
 */
int tdm_model_predict(const tdm_model *model, const double *rows,
                      size_t num_rows, int flags, double *out);

/*
 * The same for a row-major float32 matrix (what XGBoost users hold). For
 * float32 models (XGBoost) it is the fastest input: no conversion.
 */
int tdm_model_predict_float32(const tdm_model *model, const float *rows,
                              size_t num_rows, int flags, double *out);

/* Values per row that tdm_model_predict writes for these flags. With
 * TDM_PREDICT_CONTRIBS, tdm_model_predict fails with TDM_EUNSUPPORTED for
 * a model without contributions (and allocates its scratch per call). */
size_t tdm_model_output_width(const tdm_model *model, int flags);

/*
 * Formats one output value so that it reads back exactly (the shortest
 * decimal that round-trips in the model's precision). Returns the length.
 * `buf` must hold at least 32 bytes.
 */
int tdm_model_format_value(const tdm_model *model, double value, char *buf);

#ifdef __cplusplus
}
#endif

#endif /* TANDEM_H */
