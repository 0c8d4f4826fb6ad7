/*
 * model.h - the one internal representation of tree ensembles that every
 * model format loads into. Loaders (xgboost.c, later lightgbm.c) only
 * translate a file into this; the evaluator (predict.c) only reads it.
 *
 * A model is flat arrays: every tree's nodes stored back to back, children
 * as indices into the model-wide node array, categorical sets as bitsets in
 * one shared word array. Each node records which library's decision rule it
 * follows, because XGBoost and LightGBM differ in how they compare, treat
 * missing values and read categories, and scores must match each library
 * bit for bit.
 */
#ifndef TDM_MODEL_H
#define TDM_MODEL_H

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/arena.h"
#include "../core/json.h"
#include "tandem.h"

typedef enum tdm__split_kind {
  TDM__NODE_LEAF = 0,    /* outputs `value` */
  TDM__NODE_LINEAR_LEAF, /* outputs a linear function (see tdm__node) */
  /* XGBoost: missing (NaN) takes the default child, else x < threshold
   * goes left, compared in float32. */
  TDM__NODE_XGB_NUMERIC,
  /* XGBoost categorical: missing takes the default child; a category in
   * the set goes right; anything else (not in the set, negative, past the
   * bitset) goes left. */
  TDM__NODE_XGB_CATEGORICAL,
  /* LightGBM: compared in double, x <= threshold goes left. By the node's
   * missing type: None: NaN counts as 0; Zero: NaN counts as 0, and 0 (or
   * any |x| <= 1e-35) takes the default child; NaN: NaN takes the default
   * child. */
  TDM__NODE_LGB_NUMERIC,
  /* LightGBM categorical: NaN and negative values go right; a category
   * (the value truncated to int) in the node's set goes left; anything
   * else goes right. */
  TDM__NODE_LGB_CATEGORICAL
} tdm__split_kind;

/* LightGBM's missing types (decision_type bits 2-3). */
enum { TDM__MISSING_NONE = 0, TDM__MISSING_ZERO = 1, TDM__MISSING_NAN = 2 };

typedef struct tdm__node {
  uint8_t kind;         /* tdm__split_kind */
  uint8_t default_left; /* where a missing value goes */
  uint8_t missing_type; /* LightGBM: TDM__MISSING_* */
  uint8_t reserved;
  int32_t feature;      /* split feature, -1 for leaves */
  uint32_t left, right; /* children: indices into tdm_model.nodes */
  uint32_t cat_begin;   /* categorical: first word in tdm_model.cat_words */
  uint32_t cat_count;   /* categorical: number of 32-bit words */
  double value;         /* split threshold, or leaf value for leaves */
  /* A linear leaf (LightGBM linear_tree, tandem's linear models) outputs
   * linear_const + sum(coefficient * feature) over linear_count terms at
   * linear_begin in tdm_model.linear_features / linear_coeffs; when one of
   * those features is missing it outputs `value` instead. */
  uint32_t linear_begin;
  uint32_t linear_count;
  double linear_const;
  /* What TreeSHAP weighs the node's paths by: XGBoost's sum_hessian (a
   * float32), LightGBM's internal_count or leaf_count. Zero when the file
   * does not say (then the model has no contributions: has_cover is 0). */
  double cover;
  /* A leaf's value before dart's tree weight (equal to `value` for other
   * models): XGBoost computes a tree's contributions from it and weighs
   * them afterwards, which rounds differently from weighing the leaves. */
  double unweighted;
} tdm__node;

typedef struct tdm__tree {
  double weight;   /* dart's weight of the tree (float32), 1 otherwise */
  uint32_t root;   /* index of the root in tdm_model.nodes */
  uint32_t output; /* which margin (class) the tree adds to */
  uint32_t depth;
  uint32_t num_nodes;
} tdm__tree;

/* The output transform applied to margins. */
typedef enum tdm__link {
  TDM__LINK_IDENTITY,
  TDM__LINK_SIGMOID,
  TDM__LINK_EXP,
  TDM__LINK_SOFTMAX,
  TDM__LINK_ARGMAX,       /* multi:softmax: the index of the largest margin */
  TDM__LINK_HINGE,        /* binary:hinge: 1 if margin > 0 else 0 */
  TDM__LINK_SIGMOID_EACH, /* LightGBM multiclassova: a sigmoid per class */
  TDM__LINK_LOG1P_EXP,    /* LightGBM cross_entropy_lambda */
  TDM__LINK_SIGNED_SQUARE /* LightGBM regression with sqrt: sign(x) x^2 */
} tdm__link;

/* Most margins per row a model may have. */
#define TDM__MAX_OUTPUTS 4096

/* Deepest tree the fast evaluator lays out (2^10 leaves, 12 KiB). */
#define TDM__FAST_MAX_DEPTH 10

typedef struct tdm__fast tdm__fast;
typedef struct tdm__shap_table tdm__shap_table;

/* The most bytes a model's TreeSHAP leaf tables (shap.c) may take. */
#define TDM__SHAP_TABLE_BYTES ((size_t)64 << 20)

struct tdm_model {
  tdm_model_format format;
  const char *format_name;
  const char *library_version;
  const char *booster;
  const char *objective;
  char sha256[65];

  size_t num_features;
  const char **feature_names;
  const char **feature_types;
  int has_feature_names;
  /* Per feature: the names of its categories, in code order (code i is
   * category_names[f][i]), when the model file records them (LightGBM's
   * pandas_categorical); NULL otherwise, and then for every feature. */
  const char ***category_names;
  size_t *num_categories;

  size_t num_outputs;  /* margins per row */
  int float32;         /* XGBoost: float32 thresholds, leaves and sums */
  double *base_margin; /* one per output, in margin space */
  tdm__link link;
  /* XGBoost 2.0 and later clamp the sigmoid's exponent at 88.7. */
  int sigmoid_clamp;
  double sigmoid_scale; /* LightGBM's sigmoid parameter: 1/(1+exp(-s x)) */
  /* LightGBM random forests average the trees: margins are divided by the
   * number of iterations. */
  int average_output;
  size_t trees_per_iteration; /* classes x parallel trees */
  size_t num_iterations;      /* trees / trees_per_iteration */
  /* Values below this magnitude are zero to LightGBM (kZeroThreshold). */
  int lightgbm_zero;

  tdm__tree *trees;
  size_t num_trees;
  tdm__node *nodes;
  size_t num_nodes;
  uint32_t *cat_words;
  size_t num_cat_words;
  size_t num_categorical_splits;
  uint32_t *linear_features;
  double *linear_coeffs;
  /* Per term: the value a missing feature takes (tandem's linear models
   * impute); NaN keeps LightGBM's rule (the leaf falls back to `value`). */
  double *linear_missing;
  size_t num_linear_terms;
  /* 1 when every node of every tree has its cover (TreeSHAP needs it). */
  int has_cover;
  /* Per feature: 1 when a missing value is an error (linear models). */
  unsigned char *feature_required;

  /* Per node: the expected value of the subtree (XGBoost's node mean, a
   * float32; for LightGBM only roots are set, to Tree::ExpectedValue).
   * Filled by tdm__shap_prepare when has_cover; NULL otherwise. */
  double *expected;

  /* TreeSHAP's leaf tables (shap.c): NULL until the first request for
   * exact contributions builds them, under shap_lock. */
  tdm__shap_table *shap_table;
  pthread_mutex_t shap_lock;
  /* How exact contributions are computed (tdm__shap_configure; tests
   * and benchmarks): the lanes' kernel (NULL: the widest), and 1 to leave
   * the leaf tables out. */
  const char *shap_kernel;
  int shap_no_tables;

  /* The fast evaluator's layout (fast.c); NULL when it does not apply. */
  tdm__fast *fast;

  tdm__arena arena; /* strings and arrays above */
};

/* A name for an output transform, in a loader's table of them. */
typedef struct tdm__named_link {
  const char *name;
  tdm__link link;
} tdm__named_link;

/* The entry of `table` (count entries) called `name`, or NULL. */
const tdm__named_link *tdm__find_link(const tdm__named_link *table,
                                      size_t count, const char *name);

/* The names of feature f's categories in code order, and their count, or
 * NULL (count 0) when the model file does not record them. Valid while
 * the model lives. */
const char *const *tdm__model_category_names(const tdm_model *model, size_t f,
                                             size_t *count);

/* Allocates an empty model; the loader fills it. */
tdm_model *tdm__model_new(void);

/* Checks what loaders must guarantee: indices in range, every tree a tree
 * (no node reached twice), depths computed. Fills trees[].depth. */
int tdm__model_validate(tdm_model *model, const char *name, tdm_error *err);

/* JSON formats are parsed once by model.c, which picks the loader. */
int tdm__xgboost_load(tdm_model *model, const tdm__json_doc *doc,
                      tdm_error *err);
int tdm__linear_load(tdm_model *model, const tdm__json_doc *doc,
                     tdm_error *err);
int tdm__lightgbm_load(tdm_model *model, const char *data, size_t size,
                       const char *name, tdm_error *err);

/* One row of input: doubles, or float32 values (exactly one is set). */
typedef struct tdm__row {
  const double *f64;
  const float *f32;
} tdm__row;

/* The scalar reference evaluator: margins of one row (no transform). */
void tdm__predict_margin_row(const tdm_model *model, tdm__row row,
                             double *margins);

/* The reference walk of one tree: the output of the leaf the row reaches. */
double tdm__tree_leaf_value(const tdm_model *model, const tdm__tree *tree,
                            tdm__row row);

/* Scores rows with the reference evaluator only (for differential tests);
 * the same contract as tdm_model_predict, with either input type. */
int tdm__predict_reference(const tdm_model *model, const double *rows64,
                           const float *rows32, size_t num_rows, int flags,
                           double *out);

/* The next node a row takes from inner node `index` (each library's
 * decision rule, as the reference evaluator walks). */
uint32_t tdm__next_node(const tdm_model *model, uint32_t index, tdm__row row);

/* The same, with XGBoost's numeric split (the common case, decided as
 * predict.c decides it) inline and any other through tdm__next_node:
 * for the TreeSHAP walks, which decide every node of every tree. */
static inline uint32_t tdm__next_node_inline(const tdm_model *model,
                                             const tdm__node *node,
                                             uint32_t index, tdm__row row) {
  if (node->kind != TDM__NODE_XGB_NUMERIC)
    return tdm__next_node(model, index, row);
  double x = row.f64 ? row.f64[node->feature] : (double)row.f32[node->feature];
  int left = isnan(x) ? node->default_left : (float)x < (float)node->value;
  return left ? node->left : node->right;
}

/*
 * Contributions (shap.c). Prepare computes the expected values after
 * loading (TDM_ENOMEM, or TDM_OK doing nothing for a model without covers).
 * tdm__contribs writes num_rows x tdm__contribs_width values: per output,
 * one contribution per feature and the bias; flags may hold
 * TDM_PREDICT_APPROX_CONTRIBS (Saabas, XGBoost models only). It allocates
 * its scratch once per call; TDM_EUNSUPPORTED when the model has no covers
 * or asks for Saabas on a LightGBM model.
 */
int tdm__shap_prepare(tdm_model *model);
/* Tests: runs the vector leaf step and its scalar reference on `cases`
 * random paths; returns how many gave different bits (0 expected). */
size_t tdm__shap_check_lanes(uint64_t seed, size_t cases);
size_t tdm__contribs_width(const tdm_model *model);
int tdm__contribs(const tdm_model *model, const double *rows64,
                  const float *rows32, size_t num_rows, int flags, double *out);
/* Tests: the same contributions with every tree through the recursion,
 * the reference for the leaf tables that tdm__contribs reads. And the
 * bytes of the tables (building them; 0 for a model without covers). */
int tdm__contribs_recursive(const tdm_model *model, const double *rows64,
                            const float *rows32, size_t num_rows, int flags,
                            double *out);
size_t tdm__shap_table_bytes(const tdm_model *model);
/* Frees a model's tables (tdm_model_free calls it; NULL is a no-op). */
void tdm__shap_table_free(tdm__shap_table *table);
/* Tests: the contributions of float32 (XGBoost) models with every tree
 * the lanes take through shap_batch.c's `kernel` ("avx512", "avx2",
 * "portable"; NULL: the widest) and no leaf tables, for any row count;
 * the same contract as tdm__contribs otherwise. */
int tdm__contribs_batched(const tdm_model *model, const double *rows64,
                          const float *rows32, size_t num_rows,
                          const char *kernel, double *out);

/*
 * XGBoost's TreeSHAP for TDM__SHAP_BATCH_LANES rows at once, a row per
 * vector lane (shap_batch.c). A batch is one caller's scratch, made for
 * one model (not thread-safe; make one per thread). new picks the kernel
 * as tdm__contribs_batched's `kernel` says (TDM_ENOMEM, or TDM_OK with
 * *out set; free(NULL) is a no-op). takes says whether the lanes take a
 * tree (deep ones keep the per-row recursion). run walks tree `tree` for
 * exactly TDM__SHAP_BATCH_LANES rows (repeat a row to fill the lanes)
 * and returns the features the tree splits on, *count of them, valid
 * until the next run; add_row then adds lane `lane`'s contributions of
 * that tree into phi (num_features floats), in XGBoost's order for that
 * row. kernel names the kernel in use (a static string).
 */
/* Tests and benchmarks: the kernel the lanes use for this model ("avx512",
 * "avx2", anything else the portable one; NULL: the widest), and whether
 * the leaf tables are used (0: every tree the lanes take goes through
 * them for calls of several rows, the others through the recursion).
 * Call before the model is shared; `kernel` must outlive the model. The
 * CLI's `score` sets them from TANDEM_KERNEL and TANDEM_SHAP_TABLES=off. */
void tdm__shap_configure(tdm_model *model, const char *kernel, int tables);

#define TDM__SHAP_BATCH_LANES 16
typedef struct tdm__shap_batch tdm__shap_batch;
int tdm__shap_batch_new(const tdm_model *model, const char *kernel,
                        tdm__shap_batch **out);
void tdm__shap_batch_free(tdm__shap_batch *batch);
const char *tdm__shap_batch_kernel(const tdm__shap_batch *batch);
int tdm__shap_batch_takes(const tdm__shap_batch *batch, size_t tree);
const uint32_t *tdm__shap_batch_run(tdm__shap_batch *batch,
                                    const tdm_model *model, size_t tree,
                                    const tdm__row *rows, size_t *count);
void tdm__shap_batch_add_row(tdm__shap_batch *batch, const tdm_model *model,
                             size_t tree, unsigned lane, float *phi);

/* The fast evaluator (fast.c). Build lays the trees out after loading;
 * predict returns 0, doing nothing, when the model has no fast layout. */
int tdm__fast_build(tdm_model *model);
int tdm__fast_predict(const tdm_model *model, const double *rows64,
                      const float *rows32, size_t num_rows, int flags,
                      double *out);
size_t tdm__fast_bytes(const tdm_model *model);
/* Tests and benchmarks: switches the kernel ("scalar", "avx2", "avx512");
 * 0 when the CPU lacks it (the portable kernel runs then). Call before
 * the model is shared with other threads. And whether a tree took the
 * layout. */
int tdm__fast_use_kernel(tdm_model *model, const char *name);
int tdm__fast_tree_laid_out(const tdm_model *model, size_t tree);
const char *tdm__fast_kernel(const tdm_model *model);

/* Why a value cannot be fed to feature f of the model, or TDM__VALUE_OK.
 * XGBoost refuses infinite inputs (its DMatrix checks), and a value past
 * float32's range becomes one; some linear models forbid missing values. */
enum { TDM__VALUE_OK, TDM__VALUE_INFINITE, TDM__VALUE_MISSING };
static inline int tdm__feature_value_problem(const tdm_model *model, size_t f,
                                             double value) {
  if (model->float32 && isinf((float)value)) return TDM__VALUE_INFINITE;
  if (model->feature_required != NULL && model->feature_required[f] &&
      isnan(value))
    return TDM__VALUE_MISSING;
  return TDM__VALUE_OK;
}

/*
 * A float32 score as text (float_text.c): writes what the shortest of
 * snprintf(buf, 32, "%.*g", N, (double)f) for N = 6, 7, 8, 9 that reads
 * back to f with strtof writes (nan for any NaN, inf and -inf, 0 and -0),
 * and returns its length. Exact for every float, allocates nothing, and
 * is safe from any thread.
 */
int tdm__float_shortest(float f, char buf[32]);

/*
 * The libraries' decision rules that both evaluators need (predict.c walks
 * model nodes with them, fast.c its own layouts): one definition each, so
 * the fast layouts cannot drift from the reference.
 */

/* XGBoost's categorical decision (common::Decision) for a value that is
 * not missing, 1 to go left. A category in the node's set (`words`, a
 * bitset of `count` 32-bit words) goes right; anything else goes left: a
 * category not in the set, one past the end of the bitset, a negative
 * value or one of 2^24 and above. Measured against XGBoost 1.7.4 on
 * hand-made models. */
static inline int tdm__xgb_category_goes_left(const uint32_t *words,
                                              uint32_t count, float value) {
  if (!(value >= 0.0f && value < 16777216.0f)) return 1;
  uint32_t category = (uint32_t)(int32_t)value;
  if (category >= count * 32u) return 1;
  return !((words[category >> 5] >> (category & 31)) & 1);
}

/* LightGBM's kZeroThreshold (1e-35f): smaller magnitudes are zero to it. */
#define TDM__LIGHTGBM_ZERO 1.0000000180025095e-35

/* A row value as LightGBM sees it: its parsers drop |x| <= 1e-35. */
static inline double tdm__lightgbm_value(double x) {
  return fabs(x) <= TDM__LIGHTGBM_ZERO ? 0.0 : x;
}

/* LightGBM's CategoricalDecision, 1 to go left. NaN, values that truncate
 * to a negative int, and values that do not fit an int (the C++ cast
 * gives INT_MIN on x86) go right; -0.5 truncates to category 0. A
 * category (the value truncated to int) in the set `words` (count 32-bit
 * words) goes left, anything else right. */
static inline int tdm__lgb_category_goes_left(const uint32_t *words,
                                              uint32_t count, double x) {
  if (!(x > -1.0 && x < 2147483648.0)) return 0;
  uint32_t category = (uint32_t)(int32_t)x;
  if ((category >> 5) >= count) return 0;
  return (words[category >> 5] >> (category & 31)) & 1;
}

/* A leaf's output for this row: its value, or its linear function (the
 * reference walk's rule, which the fast layout calls for linear leaves). */
double tdm__leaf_output(const tdm_model *model, const tdm__node *leaf,
                        tdm__row row);

/* Applies the model's output transform to one row's margins. */
void tdm__apply_link(const tdm_model *model, const double *margins,
                     double *out);

#endif /* TDM_MODEL_H */
