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

#include <stddef.h>
#include <stdint.h>

#include "../core/arena.h"
#include "tandem.h"

typedef enum tdm__split_kind {
  TDM__NODE_LEAF = 0,
  /* XGBoost: missing (NaN) takes the default child, else x < threshold
   * goes left, compared in float32. */
  TDM__NODE_XGB_NUMERIC,
  /* XGBoost categorical: missing takes the default child; a category in
   * the set goes right; anything else (not in the set, negative, past the
   * bitset) goes left. */
  TDM__NODE_XGB_CATEGORICAL
} tdm__split_kind;

typedef struct tdm__node {
  uint8_t kind;         /* tdm__split_kind */
  uint8_t default_left; /* where a missing value goes */
  uint16_t reserved;
  int32_t feature;      /* split feature, -1 for leaves */
  uint32_t left, right; /* children: indices into tdm_model.nodes */
  uint32_t cat_begin;   /* categorical: first word in tdm_model.cat_words */
  uint32_t cat_count;   /* categorical: number of 32-bit words */
  double value;         /* split threshold, or leaf value for leaves */
} tdm__node;

typedef struct tdm__tree {
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
  TDM__LINK_ARGMAX, /* multi:softmax: the index of the largest margin */
  TDM__LINK_HINGE   /* binary:hinge: 1 if margin > 0 else 0 */
} tdm__link;

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

  size_t num_outputs;   /* margins per row */
  int float32;          /* XGBoost: float32 thresholds, leaves and sums */
  double *base_margin;  /* one per output, in margin space */
  tdm__link link;
  /* XGBoost 2.0 and later clamp the sigmoid's exponent at 88.7. */
  int sigmoid_clamp;

  tdm__tree *trees;
  size_t num_trees;
  tdm__node *nodes;
  size_t num_nodes;
  uint32_t *cat_words;
  size_t num_cat_words;
  size_t num_categorical_splits;

  tdm__arena arena; /* strings and arrays above */
};

/* Allocates an empty model; the loader fills it. */
tdm_model *tdm__model_new(void);

/* Checks what loaders must guarantee: indices in range, every tree a tree
 * (no node reached twice), depths computed. Fills trees[].depth. */
int tdm__model_validate(tdm_model *model, const char *name, tdm_error *err);

int tdm__xgboost_load(tdm_model *model, const char *data, size_t size,
                      const char *name, tdm_error *err);

/* The scalar reference evaluator: margins of one row (no transform). */
void tdm__predict_margin_row(const tdm_model *model, const double *row,
                             double *margins);

/* Applies the model's output transform to one row's margins. */
void tdm__apply_link(const tdm_model *model, const double *margins,
                     double *out);

#endif /* TDM_MODEL_H */
