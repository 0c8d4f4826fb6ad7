/*
 * shap.c - feature contributions of one prediction: path-dependent
 * TreeSHAP as XGBoost's Booster.predict(pred_contribs=True) and LightGBM's
 * predict(pred_contrib=True) compute it, and Saabas' approximation as
 * XGBoost's approx_contribs=True does. It reads the one tree
 * representation (model.h): the node covers (sum_hessian, data counts)
 * the loaders keep, and the expected value of every node, computed once
 * at load by tdm__shap_prepare.
 *
 * Per row and output the contributions are num_features values and the
 * bias (the expected margin) last; they sum to the margin. XGBoost
 * computes them in float32 tree by tree (each tree's contributions into a
 * zeroed vector, then added, times dart's weight, to the row's) and adds
 * base_score to the bias at the end; LightGBM in double straight into the
 * row's. Both orders are kept here, so the values are the same bits.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "../core/core.h"
#include "model.h"

/* The features a tree's recursion wrote to (float32 models add only
 * those to the row: adding a zero changes nothing, so skipping it is
 * exact, and a row costs its paths rather than trees x features). */
typedef struct shap_touched {
  uint32_t *list;
  size_t count;
  unsigned char *marked; /* per feature */
  void *values; /* one leaf's shares (float or double), per path element */
} shap_touched;

/*
 * The leaf tables (shap_path.h's table_fill): for every leaf of a tabled
 * tree and every pattern of the row's way through the leaf's splits, the
 * leaf's shares, computed once with the recursion's own operations. A row
 * then costs a walk of the tree and an addition per leaf and feature on
 * its path, instead of the leaf step's depth^2 divisions per leaf. A leaf
 * at split level L with U distinct features on its path holds 2^L x U
 * values, so deep trees are left to the recursion (see shap_table_build).
 */
/* Where a leaf's shares are: values[value_begin + pattern x count ...]
 * for the count features at features[feature_begin]. */
typedef struct shap_table_leaf {
  uint64_t value_begin;
  uint32_t feature_begin;
  uint16_t feature_count; /* U, the distinct features on the leaf's path */
  uint16_t stride;        /* values per pattern: U, or the dense lanes */
} shap_table_leaf;

typedef struct tdm__shap_table {
  unsigned char *tree_tabled; /* per tree */
  /* Per tree: the features it splits on, tree_features[begin, + count). */
  uint32_t *tree_feature_begin;
  uint32_t *tree_feature_count;
  uint32_t *tree_features;
  /* Per tree: 1 when its leaves' shares are dense (below). */
  unsigned char *tree_dense;
  shap_table_leaf *leaves; /* per node of the model; set for the leaves of
                              tabled trees */
  /* While building: the lane of each feature in the dense tree being
   * filled (NULL for a sparse one), and one leaf's shares. */
  int32_t *lane_of;
  void *shares;
  int32_t *features;
  void *values; /* float (XGBoost) or double (LightGBM) */
  size_t bytes; /* all of the above */
} shap_table;

static inline void touch(shap_touched *touched, int feature) {
  if (!touched->marked[feature]) {
    touched->marked[feature] = 1;
    touched->list[touched->count++] = (uint32_t)feature;
  }
}

/* The most split levels a tabled tree may have (2^level patterns). */
#define TABLE_MAX_LEVEL 16
/* The most features a dense tree may split on (four groups of lanes). */
#define DENSE_MAX_LANES 16

/* Four float32 lanes (SSE2 on x86-64, whatever the target has elsewhere;
 * GCC's and clang's vector extensions), and a lane mask. */
typedef float lanes_float __attribute__((vector_size(16)));
typedef int32_t lanes_mask __attribute__((vector_size(16)));

#define SHAP_REAL float
#include "shap_path.h"
#undef SHAP_REAL
#define SHAP_REAL double
#include "shap_path.h"
#undef SHAP_REAL

/* LightGBM's leaves take the scalar step. */
static void leaf_values_double(const path_element_double *path, unsigned depth,
                               double leaf, double *values) {
  leaf_values_scalar_double(path, depth, leaf, values);
}

/*
 * XGBoost's leaves: unwound_path_sum for four path elements at once, in
 * the lanes of a float vector (SSE2 on x86-64, whatever the target has
 * elsewhere; GCC's and clang's vector extensions). Each lane performs the
 * scalar version's operations in the same order; IEEE division,
 * multiplication and addition give the same bits in a lane as alone, so
 * the result is the reference's, bit for bit (tested against it by
 * tdm__shap_check_lanes). Both branches of the scalar `if` are computed
 * and the lane's own is selected. Dividing by a zero in a lane that does
 * not use the quotient is harmless: it is never selected.
 */

static inline lanes_float lanes_select(lanes_mask mask, lanes_float yes,
                                       lanes_float no) {
  return (lanes_float)(((lanes_mask)yes & mask) | ((lanes_mask)no & ~mask));
}

static inline lanes_float lanes_splat(float x) {
  return (lanes_float){x, x, x, x};
}

/* Up to `groups` x 4 path elements from `first` on, in one pass over the
 * path: the groups' dependency chains (each step waits for a division)
 * are independent, so interleaving them keeps the divider busy. Called
 * with constant `groups`, so the loops over groups unroll. */
static inline __attribute__((always_inline)) void lanes_pass(
    const path_element_float *path, unsigned depth, unsigned first,
    unsigned groups, float leaf, float *values) {
  const lanes_float scale = lanes_splat((float)(depth + 1));
  lanes_float one[4], zero[4], next_one_portion[4], total[4];
  lanes_mask one_set[4], zero_set[4];
  for (unsigned g = 0; g < groups; g++) {
    float one_in[4], zero_in[4];
    for (unsigned k = 0; k < 4; k++) {
      unsigned i = first + 4 * g + k;
      if (i > depth) i = depth; /* a spare lane repeats the last element */
      one_in[k] = path[i].one_fraction;
      zero_in[k] = path[i].zero_fraction;
    }
    one[g] = (lanes_float){one_in[0], one_in[1], one_in[2], one_in[3]};
    zero[g] = (lanes_float){zero_in[0], zero_in[1], zero_in[2], zero_in[3]};
    one_set[g] = one[g] != lanes_splat(0.0f);
    zero_set[g] = zero[g] != lanes_splat(0.0f);
    next_one_portion[g] = lanes_splat(path[depth].pweight);
    total[g] = lanes_splat(0.0f);
  }
  for (int i = (int)depth - 1; i >= 0; i--) {
    const lanes_float pweight = lanes_splat(path[i].pweight);
    const lanes_float ratio =
        lanes_splat((float)(depth - (unsigned)i) / (float)(depth + 1));
    const lanes_float position = lanes_splat((float)(i + 1));
    for (unsigned g = 0; g < groups; g++) {
      const lanes_float share =
          next_one_portion[g] * scale / (position * one[g]);
      const lanes_float zero_share = (pweight / zero[g]) / ratio;
      total[g] = lanes_select(
          one_set[g], total[g] + share,
          lanes_select(zero_set[g], total[g] + zero_share, total[g]));
      next_one_portion[g] = pweight - share * zero[g] * ratio;
    }
  }
  for (unsigned g = 0; g < groups; g++) {
    for (unsigned k = 0; k < 4 && first + 4 * g + k <= depth; k++) {
      const unsigned i = first + 4 * g + k;
      const path_element_float *el = &path[i];
      values[i - 1] =
          total[g][k] * (el->one_fraction - el->zero_fraction) * leaf;
    }
  }
}

static void leaf_values_lanes(const path_element_float *path, unsigned depth,
                              float leaf, float *values) {
  for (unsigned first = 1; first <= depth; first += 16) {
    switch ((depth - first) / 4) {
      case 0: lanes_pass(path, depth, first, 1, leaf, values); break;
      case 1: lanes_pass(path, depth, first, 2, leaf, values); break;
      case 2: lanes_pass(path, depth, first, 3, leaf, values); break;
      default: lanes_pass(path, depth, first, 4, leaf, values); break;
    }
  }
}

static void leaf_values_float(const path_element_float *path, unsigned depth,
                              float leaf, float *values) {
  leaf_values_lanes(path, depth, leaf, values);
}

/*
 * One row through a dense tree t (float32), its sums then written to
 * phi's split features: the tree's contributions in lane groups held in
 * registers, one per four of the tree's split features. A leaf adds its
 * whole pattern's entry, zeros included. Adding +0 leaves a sum unchanged
 * except a -0, and a sum that starts at +0 never becomes -0 under
 * round-to-nearest (an exact zero sum of nonzero terms is +0), so each
 * lane is the same float as the sparse walk's phi. The row's leaves,
 * their order and every nonzero addition are the sparse walk's.
 */
static void table_walk_dense(const tdm_model *model, const shap_table *table,
                             tdm__row row, size_t t, float *phi) {
  lanes_float sums[4] = {lanes_splat(0.0f), lanes_splat(0.0f),
                         lanes_splat(0.0f), lanes_splat(0.0f)};
  const uint32_t root = model->trees[t].root;
  const uint32_t count = table->tree_feature_count[t];
  switch ((count + 3) / 4) {
    case 0: break; /* a single leaf: nothing but the bias */
    case 1:
      table_walk_lanes_float(model, table, row, phi, root, 1, sums);
      break;
    case 2:
      table_walk_lanes_float(model, table, row, phi, root, 2, sums);
      break;
    case 3:
      table_walk_lanes_float(model, table, row, phi, root, 3, sums);
      break;
    default:
      table_walk_lanes_float(model, table, row, phi, root, 4, sums);
      break;
  }
  const uint32_t *features =
      table->tree_features + table->tree_feature_begin[t];
  for (uint32_t k = 0; k < count; k++) phi[features[k]] = sums[k / 4][k % 4];
}

size_t tdm__shap_check_lanes(uint64_t seed, size_t cases) {
  enum { MAX_DEPTH = 24 };
  path_element_float path[MAX_DEPTH + 1];
  float want[MAX_DEPTH + 1], got[MAX_DEPTH + 1];
  size_t mismatches = 0;
  for (size_t c = 0; c < cases; c++) {
    /* A path as the recursion builds it: distinct features, fractions in
     * (0, 1] from covers, the row's 0 or 1, and sometimes a zero cover. */
    unsigned depth = 1 + (unsigned)((seed >> 33) % MAX_DEPTH);
    for (unsigned d = 0; d <= depth; d++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      float zero = (float)((seed >> 40) % 1000) / 999.0f;
      float one = (seed >> 20) & 1 ? 1.0f : 0.0f;
      if ((seed >> 10) % 8 == 0) zero = 0.0f;
      if (d == 0) zero = one = 1.0f;
      extend_path_float(path, d, zero, one, d == 0 ? -1 : (int)d - 1);
    }
    memset(want, 0, sizeof want);
    memset(got, 0, sizeof got);
    float leaf = (float)((int)(seed % 2001) - 1000) / 7.0f;
    leaf_values_scalar_float(path, depth, leaf, want);
    leaf_values_lanes(path, depth, leaf, got);
    if (memcmp(want, got, sizeof want) != 0) mismatches++;
  }
  return mismatches;
}

/* XGBoost's node mean values (FillNodeMeanValue): a leaf's value, or the
 * children's means weighed by their sum_hessian, in float32. */
static float xgboost_node_mean(tdm_model *model, uint32_t index) {
  const tdm__node *node = &model->nodes[index];
  float result;
  if (node->feature < 0) {
    result = (float)node->unweighted;
  } else {
    result = xgboost_node_mean(model, node->left) *
             (float)model->nodes[node->left].cover;
    result += xgboost_node_mean(model, node->right) *
              (float)model->nodes[node->right].cover;
    result /= (float)node->cover;
  }
  model->expected[index] = result;
  return result;
}

/* LightGBM's Tree::ExpectedValue: the leaves in order, each weighed by its
 * share of the root's count. Leaves follow the inner nodes (lightgbm.c). */
static double lightgbm_expected(const tdm_model *model, const tdm__tree *tree) {
  uint32_t leaves = (tree->num_nodes + 1) / 2, inner = leaves - 1;
  const tdm__node *nodes = &model->nodes[tree->root];
  if (leaves == 1) return nodes[0].value;
  const double total = nodes[0].cover;
  double expected = 0.0;
  for (uint32_t j = 0; j < leaves; j++)
    expected += (nodes[inner + j].cover / total) * nodes[inner + j].value;
  return expected;
}

int tdm__shap_prepare(tdm_model *model) {
  if (!model->has_cover) return TDM_OK;
  model->expected =
      tdm__arena_alloc(&model->arena, model->num_nodes * sizeof(double));
  if (model->expected == NULL) return TDM_ENOMEM;
  for (size_t t = 0; t < model->num_trees; t++) {
    const tdm__tree *tree = &model->trees[t];
    if (model->float32)
      xgboost_node_mean(model, tree->root);
    else
      model->expected[tree->root] = lightgbm_expected(model, tree);
  }
  return TDM_OK;
}

size_t tdm__contribs_width(const tdm_model *model) {
  return model->num_outputs * (model->num_features + 1);
}

/* Saabas' attribution (XGBoost's CalculateContributionsApprox): along the
 * row's path each split's feature gets the change of the node mean. */
static void saabas_tree(const tdm_model *model, const tdm__tree *tree,
                        tdm__row row, float *phi, shap_touched *touched) {
  uint32_t index = tree->root;
  float node_value = (float)model->expected[index];
  int feature = 0;
  while (model->nodes[index].feature >= 0) {
    feature = model->nodes[index].feature;
    index = tdm__next_node(model, index, row);
    float new_value = (float)model->expected[index];
    touch(touched, feature);
    phi[feature] += new_value - node_value;
    node_value = new_value;
  }
  if (index == tree->root) return; /* a single leaf: only the bias */
  touch(touched, feature);
  phi[feature] += (float)model->nodes[index].unweighted - node_value;
}

/* Per-call scratch: the path triangle and, for float32 models, one tree's
 * contributions and the features it touched. */
typedef struct shap_scratch {
  void *path;
  float *tree_phi;
  shap_touched touched;
} shap_scratch;

static void scratch_free(shap_scratch *s) {
  tdm__free(s->path);
  tdm__free(s->tree_phi);
  tdm__free(s->touched.list);
  tdm__free(s->touched.marked);
  tdm__free(s->touched.values);
}

static int scratch_new(const tdm_model *model, shap_scratch *s) {
  size_t depth = 0;
  for (size_t t = 0; t < model->num_trees; t++)
    if (model->trees[t].depth > depth) depth = model->trees[t].depth;
  size_t elements = (depth + 2) * (depth + 3) / 2;
  size_t nf = model->num_features;
  s->path = tdm__malloc(elements * sizeof(path_element_double));
  s->tree_phi = tdm__calloc(nf + 1, sizeof(float));
  s->touched.list = tdm__malloc((nf + 1) * sizeof(uint32_t));
  s->touched.marked = tdm__calloc(nf + 1, 1);
  s->touched.values = tdm__malloc((depth + 1) * sizeof(double));
  s->touched.count = 0;
  if (s->path && s->tree_phi && s->touched.list && s->touched.marked &&
      s->touched.values)
    return TDM_OK;
  scratch_free(s);
  return TDM_ENOMEM;
}

/* One tree's contributions to one row of a float32 model, without the
 * bias, into phi (zero where the tree gave nothing): from its leaf table
 * where it has one, else through the recursion (or Saabas'). *features
 * and *count say which entries the tree wrote to. */
static void tree_phi_row(const tdm_model *model, const shap_table *table,
                         size_t t, tdm__row row, int approximate,
                         shap_scratch *s, const uint32_t **features,
                         size_t *count) {
  const tdm__tree *tree = &model->trees[t];
  float *phi = s->tree_phi;
  shap_touched *touched = &s->touched;
  if (!approximate && table != NULL && table->tree_tabled[t]) {
    if (table->tree_dense[t])
      table_walk_dense(model, table, row, t, phi);
    else
      table_walk_float(model, table, row, phi, tree->root);
    *features = table->tree_features + table->tree_feature_begin[t];
    *count = table->tree_feature_count[t];
    return;
  }
  if (approximate)
    saabas_tree(model, tree, row, phi, touched);
  else
    tree_shap_float(model, row, phi, touched, tree->root, 0, s->path, 1.0f,
                    1.0f, -1);
  *features = touched->list;
  *count = touched->count;
  for (size_t i = 0; i < touched->count; i++)
    touched->marked[touched->list[i]] = 0;
  touched->count = 0;
}

/* Adds tree t's contributions in phi (its features, and its mean as the
 * bias), times the tree's weight (dart), to the row's, as CPUPredictor's
 * PredictContribution does feature by feature; leaves phi zeroed. */
static void add_tree_phi(const tdm_model *model, size_t t, float *phi,
                         const uint32_t *features, size_t count,
                         double *out) {
  const tdm__tree *tree = &model->trees[t];
  size_t nf = model->num_features;
  double *dest = out + tree->output * (nf + 1);
  float weight = (float)tree->weight;
  phi[nf] = (float)model->expected[tree->root];
  /* The row's sums are float32 values kept in doubles. */
  for (size_t i = 0; i < count; i++) {
    uint32_t f = features[i];
    dest[f] = (float)dest[f] + phi[f] * weight;
    phi[f] = 0.0f;
  }
  dest[nf] = (float)dest[nf] + phi[nf] * weight;
  phi[nf] = 0.0f;
}

/* A row's contributions before the first tree (zero) and after the last
 * (base_score added to the bias). */
static void start_row(const tdm_model *model, double *out) {
  for (size_t c = 0; c < tdm__contribs_width(model); c++) out[c] = 0.0;
}

static void finish_row(const tdm_model *model, double *out) {
  size_t nf = model->num_features, width = nf + 1;
  for (size_t o = 0; o < model->num_outputs; o++) {
    double *dest = out + o * width;
    dest[nf] = (float)dest[nf] + (float)model->base_margin[o];
  }
}

/* One row of a float32 (XGBoost) model, as CPUPredictor's
 * PredictContribution: per tree a zeroed vector gets the tree's mean as
 * bias and its contributions, then the row adds it times the tree's
 * weight (dart), feature by feature; base_score goes to the bias last. */
static void contribs_row_float(const tdm_model *model, const shap_table *table,
                               tdm__row row, int approximate, shap_scratch *s,
                               double *out) {
  start_row(model, out);
  for (size_t t = 0; t < model->num_trees; t++) {
    const uint32_t *features;
    size_t count;
    tree_phi_row(model, table, t, row, approximate, s, &features, &count);
    add_tree_phi(model, t, s->tree_phi, features, count, out);
  }
  finish_row(model, out);
}

/*
 * Up to TDM__SHAP_BATCH_LANES rows of a float32 model at once, each with
 * exactly contribs_row_float's values: tree by tree, as each row does
 * alone; a tree the lanes take is walked once for all the rows
 * (shap_batch.c) and its shares then added to each row in the row's own
 * order. The rows' sums stay independent, so the order across trees is
 * each row's own too.
 */
static void contribs_block_float(const tdm_model *model,
                                 const shap_table *table,
                                 tdm__shap_batch *batch, const tdm__row *rows,
                                 size_t n, shap_scratch *s, double *out) {
  size_t width = tdm__contribs_width(model);
  tdm__row lanes[TDM__SHAP_BATCH_LANES];
  for (size_t i = 0; i < TDM__SHAP_BATCH_LANES; i++)
    lanes[i] = rows[i < n ? i : n - 1]; /* spare lanes repeat a row */
  for (size_t i = 0; i < n; i++) start_row(model, out + i * width);
  for (size_t t = 0; t < model->num_trees; t++) {
    const int tabled = table != NULL && table->tree_tabled[t];
    if (tabled || !tdm__shap_batch_takes(batch, t)) {
      for (size_t i = 0; i < n; i++) {
        const uint32_t *features;
        size_t count;
        tree_phi_row(model, table, t, rows[i], 0, s, &features, &count);
        add_tree_phi(model, t, s->tree_phi, features, count, out + i * width);
      }
      continue;
    }
    size_t count;
    const uint32_t *features =
        tdm__shap_batch_run(batch, model, t, lanes, &count);
    for (size_t i = 0; i < n; i++) {
      tdm__shap_batch_add_row(batch, model, t, (unsigned)i, s->tree_phi);
      add_tree_phi(model, t, s->tree_phi, features, count, out + i * width);
    }
  }
  for (size_t i = 0; i < n; i++) finish_row(model, out + i * width);
}

/* One row of a double (LightGBM) model, as GBDT::PredictContrib: every
 * tree adds its expected value to the bias and its contributions, in
 * tree order, straight into the row's. */
static void contribs_row_double(const tdm_model *model, const shap_table *table,
                                tdm__row row, shap_scratch *s, double *out) {
  size_t nf = model->num_features, width = nf + 1;
  for (size_t c = 0; c < model->num_outputs * width; c++) out[c] = 0.0;
  for (size_t t = 0; t < model->num_trees; t++) {
    const tdm__tree *tree = &model->trees[t];
    double *phi = out + tree->output * width;
    phi[nf] += model->expected[tree->root];
    if (tree->num_nodes > 1 && table != NULL && table->tree_tabled[t])
      table_walk_double(model, table, row, phi, tree->root);
    else if (tree->num_nodes > 1)
      tree_shap_double(model, row, phi, &s->touched, tree->root, 0, s->path,
                       1.0, 1.0, -1);
    for (size_t i = 0; i < s->touched.count; i++)
      s->touched.marked[s->touched.list[i]] = 0;
    s->touched.count = 0;
  }
}

/* The leaves of the subtree at `index`, reached through `level` splits
 * that test the `distinct` features in features[]: where each leaf's
 * values and features go (from *values and *feature_slots on, which
 * this advances). A dense tree's leaves hold `lanes` values per pattern,
 * a sparse tree's (lanes 0) one per feature on the path. */
static void table_size(const tdm_model *model, shap_table *table,
                       uint32_t index, unsigned level, int32_t *features,
                       unsigned distinct, unsigned lanes, size_t *values,
                       size_t *feature_slots) {
  const tdm__node *node = &model->nodes[index];
  if (node->feature < 0) {
    shap_table_leaf *leaf = &table->leaves[index];
    leaf->value_begin = *values;
    leaf->feature_begin = (uint32_t)*feature_slots;
    leaf->feature_count = (uint16_t)distinct;
    leaf->stride = (uint16_t)(lanes ? lanes : distinct);
    *values += ((size_t)1 << level) * leaf->stride;
    *feature_slots += distinct;
    return;
  }
  unsigned next = distinct, i = 0;
  while (i < distinct && features[i] != node->feature) i++;
  if (i == distinct) features[next++] = node->feature;
  table_size(model, table, node->left, level + 1, features, next, lanes, values,
             feature_slots);
  table_size(model, table, node->right, level + 1, features, next, lanes,
             values, feature_slots);
}

void tdm__shap_table_free(shap_table *table) {
  if (table == NULL) return;
  tdm__free(table->tree_tabled);
  tdm__free(table->tree_feature_begin);
  tdm__free(table->tree_feature_count);
  tdm__free(table->tree_features);
  tdm__free(table->tree_dense);
  tdm__free(table->leaves);
  tdm__free(table->lane_of);
  tdm__free(table->shares);
  tdm__free(table->features);
  tdm__free(table->values);
  tdm__free(table);
}

/*
 * Tables the trees, in order, while their tables fit in
 * TDM__SHAP_TABLE_BYTES all together; a tree that does not fit (or is
 * deeper than TABLE_MAX_LEVEL) keeps the recursion, and a smaller tree
 * after it may still fit. NULL when out of memory.
 */
static shap_table *table_build(const tdm_model *model) {
  shap_table *table = tdm__calloc(1, sizeof *table);
  if (table == NULL) return NULL;
  size_t nodes = model->num_nodes, depth = 0, nf = model->num_features;
  size_t tree_feature_slots = 0;
  for (size_t t = 0; t < model->num_trees; t++) {
    const tdm__tree *tree = &model->trees[t];
    if (tree->depth > depth) depth = tree->depth;
    /* At most one per inner node, at most every feature. */
    tree_feature_slots += tree->num_nodes < nf ? tree->num_nodes : nf;
  }
  size_t real = model->float32 ? sizeof(float) : sizeof(double);
  int32_t *features = tdm__malloc((depth + 1) * sizeof *features);
  void *path =
      tdm__malloc((depth + 2) * (depth + 3) / 2 * sizeof(path_element_double));
  unsigned char *marked = tdm__calloc(nf + 1, 1);
  table->tree_tabled = tdm__calloc(model->num_trees + 1, 1);
  table->tree_dense = tdm__calloc(model->num_trees + 1, 1);
  table->tree_feature_begin =
      tdm__malloc((model->num_trees + 1) * sizeof(uint32_t));
  table->tree_feature_count =
      tdm__calloc(model->num_trees + 1, sizeof(uint32_t));
  table->tree_features =
      tdm__malloc((tree_feature_slots + 1) * sizeof(uint32_t));
  table->leaves = tdm__malloc((nodes + 1) * sizeof(shap_table_leaf));
  table->lane_of = tdm__malloc((nf + 1) * sizeof(int32_t));
  table->shares = tdm__malloc((depth + 1) * sizeof(double));
  if (features == NULL || path == NULL || marked == NULL ||
      table->tree_tabled == NULL || table->tree_dense == NULL ||
      table->tree_feature_begin == NULL || table->tree_feature_count == NULL ||
      table->tree_features == NULL || table->leaves == NULL ||
      table->lane_of == NULL || table->shares == NULL)
    goto fail;
  /* Each tree's split features, in node order. */
  size_t slot = 0;
  for (size_t t = 0; t < model->num_trees; t++) {
    const tdm__tree *tree = &model->trees[t];
    table->tree_feature_begin[t] = (uint32_t)slot;
    for (uint32_t i = 0; i < tree->num_nodes; i++) {
      int32_t f = model->nodes[tree->root + i].feature;
      if (f < 0 || marked[f]) continue;
      marked[f] = 1;
      table->tree_features[slot++] = (uint32_t)f;
    }
    table->tree_feature_count[t] =
        (uint32_t)slot - table->tree_feature_begin[t];
    for (size_t i = table->tree_feature_begin[t]; i < slot; i++)
      marked[table->tree_features[i]] = 0;
  }
  size_t values = 0, feature_slots = 0;
  size_t bytes = nodes * sizeof(shap_table_leaf) +
                 model->num_trees * (2 + 2 * sizeof(uint32_t)) +
                 slot * sizeof(uint32_t);
  for (size_t t = 0; t < model->num_trees; t++) {
    const tdm__tree *tree = &model->trees[t];
    if (tree->depth > TABLE_MAX_LEVEL) continue;
    /* Dense where the tree splits on few enough features for the lanes
     * (float32 models); its leaves start on a lane group's boundary. */
    unsigned lanes = 0;
    size_t start = values;
    if (model->float32 && table->tree_feature_count[t] <= DENSE_MAX_LANES) {
      lanes = (table->tree_feature_count[t] + 3) / 4 * 4;
      start = (values + 3) / 4 * 4;
    }
    size_t tree_values = start, tree_slots = feature_slots;
    table_size(model, table, tree->root, 0, features, 0, lanes, &tree_values,
               &tree_slots);
    size_t tree_bytes = (tree_values - values) * real +
                        (tree_slots - feature_slots) * sizeof(int32_t);
    if (bytes + tree_bytes > TDM__SHAP_TABLE_BYTES) continue;
    bytes += tree_bytes;
    values = tree_values;
    feature_slots = tree_slots;
    table->tree_tabled[t] = 1;
    table->tree_dense[t] = lanes != 0;
  }
  /* Zeroed: a dense leaf's lanes of features off its path stay 0. */
  table->values = tdm__calloc(values + 4, real);
  table->features = tdm__malloc((feature_slots + 1) * sizeof(int32_t));
  if (table->values == NULL || table->features == NULL) goto fail;
  table->bytes = bytes;
  int32_t *lane_of = table->lane_of;
  for (size_t t = 0; t < model->num_trees; t++) {
    if (!table->tree_tabled[t]) continue;
    table->lane_of = NULL;
    if (table->tree_dense[t]) {
      const uint32_t *list =
          table->tree_features + table->tree_feature_begin[t];
      for (uint32_t k = 0; k < table->tree_feature_count[t]; k++)
        lane_of[list[k]] = (int32_t)k;
      table->lane_of = lane_of;
    }
    if (model->float32)
      table_fill_float(model, table, model->trees[t].root, 0, path, 1.0f, 1.0f,
                       -1, 0, 0);
    else
      table_fill_double(model, table, model->trees[t].root, 0, path, 1.0, 1.0,
                        -1, 0, 0);
  }
  table->lane_of = lane_of;
  tdm__free(features);
  tdm__free(path);
  tdm__free(marked);
  return table;
fail:
  tdm__free(features);
  tdm__free(path);
  tdm__free(marked);
  tdm__shap_table_free(table);
  return NULL;
}

/*
 * The model's tables, built by the first call that needs them: a model
 * that is never explained pays nothing for them, in load time or memory.
 * The model is shared by threads, so one builds under the model's lock
 * while the others wait; after that, reading the pointer is enough. NULL
 * (the recursion then does all the work, with the same results) when out
 * of memory.
 */
static const shap_table *table_get(const tdm_model *model) {
  shap_table *table = __atomic_load_n(&model->shap_table, __ATOMIC_ACQUIRE);
  if (table != NULL) return table;
  /* The tables are a cache of values the model determines; building them
   * changes no result, so a const model may hold them. */
  tdm_model *cache = (tdm_model *)model;
  pthread_mutex_lock(&cache->shap_lock);
  table = cache->shap_table;
  if (table == NULL) {
    table = table_build(model);
    if (table != NULL)
      __atomic_store_n(&cache->shap_table, table, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&cache->shap_lock);
  return table;
}

size_t tdm_model_contribs_bytes(const tdm_model *model) {
  return model == NULL ? 0 : tdm__shap_table_bytes(model);
}

size_t tdm__shap_table_bytes(const tdm_model *model) {
  if (!model->has_cover) return 0;
  const shap_table *table = table_get(model);
  return table == NULL ? 0 : table->bytes;
}

/* How contribs computes: the fastest way for the row count (leaf tables,
 * the lanes for many rows), the per-row recursion alone (the reference),
 * or the lanes for every tree they take (tests). */
typedef enum contribs_mode {
  CONTRIBS_FAST,
  CONTRIBS_RECURSIVE,
  CONTRIBS_BATCHED
} contribs_mode;

/* From this many rows on, the lanes take the trees without a table: a
 * tree walked once for the lanes costs less than a few rows' recursions
 * (bench/README.md, "Issue 21 (session 9)"). */
#define BATCH_MIN_ROWS 4

static int contribs(const tdm_model *model, const double *rows64,
                    const float *rows32, size_t num_rows, int flags,
                    contribs_mode mode, const char *kernel, double *out) {
  int approximate = (flags & TDM_PREDICT_APPROX_CONTRIBS) != 0;
  if (!model->has_cover || (approximate && !model->float32))
    return TDM_EUNSUPPORTED;
  if (num_rows == 0) return TDM_OK;
  const shap_table *table =
      mode == CONTRIBS_FAST && !approximate && !model->shap_no_tables
          ? table_get(model)
          : NULL;
  shap_scratch s;
  if (scratch_new(model, &s) != TDM_OK) return TDM_ENOMEM;
  tdm__shap_batch *batch = NULL;
  if (model->float32 && !approximate &&
      (mode == CONTRIBS_BATCHED ||
       (mode == CONTRIBS_FAST && num_rows >= BATCH_MIN_ROWS)) &&
      tdm__shap_batch_new(model, kernel ? kernel : model->shap_kernel,
                          &batch) != TDM_OK) {
    scratch_free(&s);
    return TDM_ENOMEM;
  }
  size_t nf = model->num_features, width = tdm__contribs_width(model);
  tdm__row rows[TDM__SHAP_BATCH_LANES];
  for (size_t r = 0; r < num_rows;) {
    size_t n = batch != NULL ? TDM__SHAP_BATCH_LANES : 1;
    if (n > num_rows - r) n = num_rows - r;
    for (size_t i = 0; i < n; i++)
      rows[i] = (tdm__row){rows64 ? rows64 + (r + i) * nf : NULL,
                           rows32 ? rows32 + (r + i) * nf : NULL};
    if (batch != NULL)
      contribs_block_float(model, table, batch, rows, n, &s, out + r * width);
    else if (model->float32)
      contribs_row_float(model, table, rows[0], approximate, &s,
                         out + r * width);
    else
      contribs_row_double(model, table, rows[0], &s, out + r * width);
    r += n;
  }
  tdm__shap_batch_free(batch);
  scratch_free(&s);
  return TDM_OK;
}

int tdm__contribs(const tdm_model *model, const double *rows64,
                  const float *rows32, size_t num_rows, int flags,
                  double *out) {
  return contribs(model, rows64, rows32, num_rows, flags, CONTRIBS_FAST, NULL,
                  out);
}

int tdm__contribs_recursive(const tdm_model *model, const double *rows64,
                            const float *rows32, size_t num_rows, int flags,
                            double *out) {
  return contribs(model, rows64, rows32, num_rows, flags, CONTRIBS_RECURSIVE,
                  NULL, out);
}

int tdm__contribs_batched(const tdm_model *model, const double *rows64,
                          const float *rows32, size_t num_rows,
                          const char *kernel, double *out) {
  return contribs(model, rows64, rows32, num_rows, 0, CONTRIBS_BATCHED, kernel,
                  out);
}

void tdm__shap_configure(tdm_model *model, const char *kernel, int tables) {
  model->shap_kernel = kernel;
  model->shap_no_tables = !tables;
}
