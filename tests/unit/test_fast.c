/*
 * test_fast.c - the differential test of the fast evaluator: every fixture
 * model and hundreds of randomized XGBoost and LightGBM models (the
 * LightGBM generator is described above its test) are scored by the
 * reference walk (predict.c) and by every kernel this CPU runs (portable,
 * AVX2, AVX-512), with doubles and with float32 input, single rows, tails
 * and full blocks, margins and transformed scores, and after
 * --iterations; every output must be bit-identical.
 *
 * Randomized models mix what the layout must get right: trees of depth 0
 * to 13 (past TDM__FAST_MAX_DEPTH they take the reference walk), leaves at
 * every depth (padding), missing values going either way, thresholds that
 * rows hit exactly or within float32 rounding, categorical splits (kept
 * out of the layout), multiclass and dart models, and feature counts on
 * both sides of 64 (the register path of the single-row kernel).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../src/core/core.h"
#include "../../src/model/model.h"
#include "tandem.h"
#include "test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state % n);
}

/* Threshold values come from a small grid so rows land on them. */
static double grid_value(void) { return (double)((int)rnd(17) - 8) * 0.25; }

/* A row value: on the grid, beside it within float32 rounding, missing,
 * infinite, or anywhere. */
static double row_value(int categorical) {
  switch (rnd(10)) {
    case 0: return NAN;
    case 1: return rnd(2) ? INFINITY : -INFINITY;
    case 2: return grid_value() + (rnd(2) ? 1e-9 : -1e-9);
    case 3: return ((double)rnd(2000000) - 1e6) / 1e5;
    default: return categorical ? (double)((int)rnd(45) - 3) : grid_value();
  }
}

typedef struct gen_tree {
  tdm__buf left, right, feature, cond, dleft, type, cat_nodes, cat_seg,
      cat_size, cats;
  int nodes, cat_count, cat_splits;
} gen_tree;

static void put(tdm__buf *b, int first, const char *fmt, double v) {
  if (!first) tdm__buf_append(b, ",", 1);
  tdm__buf_printf(b, fmt, v);
}

/* Appends a random subtree in preorder; returns its node id. */
static int gen_node(gen_tree *t, int depth_left, int num_features,
                    const int *is_cat) {
  int id = t->nodes++;
  int first = id == 0;
  int leaf = depth_left == 0 || rnd(5) == 0;
  int f = (int)rnd((uint32_t)num_features);
  if (leaf) {
    put(&t->feature, first, "%.0f", 0);
    put(&t->cond, first, "%.9g", (double)((int)rnd(2001) - 1000) / 997.0);
    put(&t->dleft, first, "%.0f", 0);
    put(&t->type, first, "%.0f", 0);
    put(&t->left, first, "%.0f", -1);
    put(&t->right, first, "%.0f", -1);
    return id;
  }
  put(&t->feature, first, "%.0f", f);
  put(&t->dleft, first, "%.0f", rnd(2));
  put(&t->left, first, "%.0f", 0); /* the real ids come later */
  put(&t->right, first, "%.0f", 0);
  if (is_cat[f]) {
    put(&t->type, first, "%.0f", 1);
    put(&t->cond, first, "%.0f", NAN);
    put(&t->cat_nodes, t->cat_splits == 0, "%.0f", id);
    put(&t->cat_seg, t->cat_splits == 0, "%.0f", t->cat_count);
    int size = 1 + (int)rnd(4), last = -1;
    for (int i = 0; i < size; i++) {
      last += 1 + (int)rnd(12); /* sorted, distinct categories */
      put(&t->cats, t->cat_count == 0, "%.0f", last);
      t->cat_count++;
    }
    put(&t->cat_size, t->cat_splits == 0, "%.0f", size);
    t->cat_splits++;
  } else {
    put(&t->type, first, "%.0f", 0);
    double c = grid_value();
    if (rnd(4) == 0) c += (double)rnd(1000) * 1e-4;
    put(&t->cond, first, "%.9g", c);
  }
  gen_node(t, depth_left - 1, num_features, is_cat);
  gen_node(t, depth_left - 1, num_features, is_cat);
  return id;
}

/* Ids are in preorder: a split's left child is the next id, its right
 * child follows the left subtree. */
static int subtree_size(const int *is_leaf, int id, int nodes) {
  if (is_leaf[id]) return 1;
  int left = subtree_size(is_leaf, id + 1, nodes);
  return 1 + left + subtree_size(is_leaf, id + 1 + left, nodes);
}

/* One random model as XGBoost 1.7 JSON. */
static char *random_model(int *num_features_out) {
  int num_features = 1 + (int)rnd(80);
  int is_cat[80] = {0}, any_cat = rnd(3) == 0;
  for (int f = 0; f < num_features; f++) is_cat[f] = any_cat && rnd(4) == 0;
  int classes = rnd(4) == 0 ? 3 : 0;
  int trees = 1 + (int)rnd(90);
  int dart = rnd(5) == 0;
  static const int depths[] = {0, 1, 3, 6, 8, 10, 11, 13};
  int max_depth = depths[rnd(8)];
  tdm__buf out = {0}, info = {0}, weights = {0};
  tdm__buf_printf(&out, "{\"learner\":{\"feature_names\":[");
  for (int f = 0; f < num_features; f++)
    tdm__buf_printf(&out, "%s\"f%d\"", f ? "," : "", f);
  tdm__buf_printf(&out, "],\"feature_types\":[");
  for (int f = 0; f < num_features; f++)
    tdm__buf_printf(&out, "%s\"%s\"", f ? "," : "", is_cat[f] ? "c" : "float");
  tdm__buf_printf(&out, "],\"gradient_booster\":");
  if (dart) tdm__buf_printf(&out, "{\"name\":\"dart\",\"gbtree\":");
  tdm__buf_printf(&out,
                  "{\"name\":\"gbtree\",\"model\":{\"gbtree_model_param\":{"
                  "\"num_parallel_tree\":\"1\",\"num_trees\":\"%d\"},"
                  "\"trees\":[",
                  trees * (classes ? classes : 1));
  int total = trees * (classes ? classes : 1);
  for (int k = 0; k < total; k++) {
    gen_tree t = {0};
    int depth = max_depth > 8 && rnd(2) ? (int)rnd(9) : max_depth;
    gen_node(&t, depth, num_features, is_cat);
    /* gen_node wrote -1 as a leaf's left child and 0 as a split's. */
    static int is_leaf[1 << 15];
    {
      char *p = t.left.data;
      for (int i = 0; i < t.nodes; i++) {
        is_leaf[i] = strtol(p, &p, 10) == -1;
        if (*p == ',') p++;
      }
    }
    tdm__buf left = {0}, right = {0}, base = {0};
    for (int i = 0; i < t.nodes; i++) {
      int l = -1, r = -1;
      if (!is_leaf[i]) {
        l = i + 1;
        r = i + 1 + subtree_size(is_leaf, i + 1, t.nodes);
      }
      tdm__buf_printf(&left, "%s%d", i ? "," : "", l);
      tdm__buf_printf(&right, "%s%d", i ? "," : "", r);
      tdm__buf_printf(&base, "%s0", i ? "," : "");
    }
    tdm__buf_printf(
        &out,
        "%s{\"base_weights\":[%.*s],\"categories\":[%.*s],"
        "\"categories_nodes\":[%.*s],\"categories_segments\":[%.*s],"
        "\"categories_sizes\":[%.*s],\"default_left\":[%.*s],\"id\":%d,"
        "\"left_children\":[%.*s],\"right_children\":[%.*s],"
        "\"split_conditions\":[%.*s],\"split_indices\":[%.*s],"
        "\"split_type\":[%.*s],\"tree_param\":{\"num_deleted\":\"0\","
        "\"num_feature\":\"%d\",\"num_nodes\":\"%d\","
        "\"size_leaf_vector\":\"0\"}}",
        k ? "," : "", (int)base.len, base.data, (int)t.cats.len, t.cats.data,
        (int)t.cat_nodes.len, t.cat_nodes.data, (int)t.cat_seg.len,
        t.cat_seg.data, (int)t.cat_size.len, t.cat_size.data, (int)t.dleft.len,
        t.dleft.data, k, (int)left.len, left.data, (int)right.len, right.data,
        (int)t.cond.len, t.cond.data, (int)t.feature.len, t.feature.data,
        (int)t.type.len, t.type.data, num_features, t.nodes);
    tdm__buf_printf(&info, "%s%d", k ? "," : "", classes ? k % classes : 0);
    tdm__buf_printf(&weights, "%s%.6g", k ? "," : "",
                    (double)(1 + rnd(9)) / 7.0);
    tdm__buf *bufs[] = {&t.left,     &t.right, &t.feature,   &t.cond,
                        &t.dleft,    &t.type,  &t.cat_nodes, &t.cat_seg,
                        &t.cat_size, &t.cats,  &left,        &right,
                        &base};
    for (size_t b = 0; b < sizeof bufs / sizeof *bufs; b++)
      tdm__buf_free(bufs[b]);
  }
  tdm__buf_printf(&out, "],\"tree_info\":[%.*s]}}", (int)info.len, info.data);
  if (dart)
    tdm__buf_printf(&out, ",\"weight_drop\":[%.*s]}", (int)weights.len,
                    weights.data);
  const char *objective = classes       ? "multi:softprob"
                          : rnd(2) == 0 ? "binary:logistic"
                                        : "reg:squarederror";
  tdm__buf_printf(&out,
                  ",\"learner_model_param\":{\"base_score\":\"%s\","
                  "\"num_class\":\"%d\",\"num_feature\":\"%d\","
                  "\"num_target\":\"1\"},\"objective\":{\"name\":\"%s\"}},"
                  "\"version\":[1,7,4]}",
                  classes ? "5E-1" : "3E-1", classes, num_features, objective);
  tdm__buf_free(&info);
  tdm__buf_free(&weights);
  tdm__buf_append(&out, "", 1);
  *num_features_out = num_features;
  return out.data;
}

/* Scores `n` rows every way and compares with the reference, bit for bit.
 * Returns 0 when all agree. */
static int compare_kernels(tdm_model *model, const double *rows, size_t n,
                           const char *what) {
  /* LightGBM's layouts answer to "scalar" (the record walk) and
   * "bitvector"; XGBoost's to the first three. */
  static const char *kernels[] = {"scalar", "avx2", "avx512", "bitvector"};
  static const size_t sizes[] = {1, 2, 7, 16, 31, 33, 64, 300, 1000};
  size_t nf = model->num_features;
  float *rows32 = malloc(n * nf * sizeof *rows32 + 1);
  for (size_t i = 0; i < n * nf; i++) rows32[i] = (float)rows[i];
  size_t width = tdm_model_output_width(model, TDM_PREDICT_MARGIN);
  double *want = malloc(n * width * sizeof *want);
  double *want32 = malloc(n * width * sizeof *want32);
  double *got = malloc(n * width * sizeof *got);
  int failed = 0;
  size_t num_kernels = sizeof kernels / sizeof *kernels;
  for (size_t k = 0; k < num_kernels && !failed; k++) {
    /* Models without a fast layout (linear models) take the reference walk in
     * tdm_model_predict too: once is enough. */
    if (model->fast == NULL && k > 0) break;
    if (model->fast != NULL && !tdm__fast_use_kernel(model, kernels[k]))
      continue;
    for (int flags = 0; flags <= TDM_PREDICT_MARGIN && !failed; flags++) {
      size_t w = tdm_model_output_width(model, flags);
      tdm__predict_reference(model, rows, NULL, n, flags, want);
      tdm__predict_reference(model, NULL, rows32, n, flags, want32);
      for (size_t s = 0; s < sizeof sizes / sizeof *sizes && !failed; s++) {
        size_t m = sizes[s] < n ? sizes[s] : n;
        for (int input = 0; input < 2 && !failed; input++) {
          memset(got, 0xA5, m * w * sizeof *got);
          if (input == 0)
            tdm_model_predict(model, rows, m, flags, got);
          else
            tdm_model_predict_float32(model, rows32, m, flags, got);
          const double *ref = input ? want32 : want;
          for (size_t i = 0; i < m * w; i++) {
            if (memcmp(&got[i], &ref[i], sizeof *got) != 0 &&
                !(isnan(got[i]) && isnan(ref[i]))) {
              fprintf(stderr,
                      "%s: kernel %s, %zu rows, flags %d, %s input: value %zu "
                      "is %.17g, reference %.17g\n",
                      what, kernels[k], m, flags, input ? "float32" : "double",
                      i, got[i], ref[i]);
              failed = 1;
              break;
            }
          }
        }
      }
    }
  }
  free(rows32);
  free(want);
  free(want32);
  free(got);
  return failed;
}

/* compare_kernels on the whole model, then on its first half of boosting
 * rounds (--iterations): the layouts, and LightGBM's groups of trees, must
 * follow the cut. */
static int compare_kernels_whole_and_cut(tdm_model *model, const double *rows,
                                         size_t n, const char *what) {
  int failed = compare_kernels(model, rows, n, what);
  if (!failed && model->num_iterations > 1) {
    tdm_error err;
    tdm_model_limit_iterations(model, 1 + model->num_iterations / 2, &err);
    failed = compare_kernels(model, rows, n, what);
  }
  return failed;
}

static double *random_rows(const tdm_model *model, size_t n) {
  size_t nf = model->num_features;
  double *rows = malloc(n * nf * sizeof *rows + 1);
  for (size_t r = 0; r < n; r++)
    for (size_t f = 0; f < nf; f++) {
      const char *type = tdm_model_feature_type(model, f);
      rows[r * nf + f] = row_value(type != NULL && strcmp(type, "c") == 0);
    }
  return rows;
}

/* compare_kernels_whole_and_cut on generated model number `index` (named
 * "LABEL INDEX" in a failure), then frees its rows and the model. */
static int compare_random_model(tdm_model *model, double *rows, size_t n,
                                const char *label, int index) {
  char what[64];
  snprintf(what, sizeof what, "%s %d", label, index);
  int failed = compare_kernels_whole_and_cut(model, rows, n, what);
  free(rows);
  tdm_model_free(model);
  return failed;
}

TEST(fast_matches_reference_on_random_models) {
  int laid_out = 0, generic = 0;
  for (int m = 0; m < 150; m++) {
    int nf;
    char *json = random_model(&nf);
    tdm_model *model;
    tdm_error err;
    if (tdm_model_load_buffer(json, strlen(json), "random.json", &model,
                              &err) != TDM_OK) {
      fprintf(stderr, "model %d: %s\n", m, err.message);
      free(json);
      return 1;
    }
    free(json);
    CHECK(model->fast != NULL);
    for (size_t t = 0; t < model->num_trees; t++) {
      if (tdm__fast_tree_laid_out(model, t))
        laid_out++;
      else
        generic++;
    }
    size_t n = 1000;
    double *rows = random_rows(model, n);
    if (compare_random_model(model, rows, n, "random model", m)) return 1;
  }
  /* Both paths were exercised. */
  CHECK(laid_out > 1000);
  CHECK(generic > 100);
  return 0;
}

/*
 * Randomized LightGBM models, for the bitvector layout's rules: trees of 1
 * to 70 leaves in every shape (past 64 leaves the model keeps the record
 * walk), every missing type and default direction, thresholds on a grid
 * with 0 and either side of kZeroThreshold, categorical splits with sets
 * of one to three words (past 64 categories the general test), linear
 * leaves, one or three classes, and enough trees to span several groups.
 */
#define GEN_MAX_LEAVES 70
/* Features 4 and 5 are categorical; a model has 6 features, 64 (the most
 * for the linear leaves' mask of missing features) or 70 (past it). */
static int gen_features = 6;

typedef struct lgb_gen {
  int feature[GEN_MAX_LEAVES], decision[GEN_MAX_LEAVES];
  int left[GEN_MAX_LEAVES], right[GEN_MAX_LEAVES];
  double threshold[GEN_MAX_LEAVES];
  int inner, leaves, num_cat;
  tdm__buf cat_boundaries, cat_threshold;
  int cat_words;
} lgb_gen;

static double gen_threshold(void) {
  switch (rnd(8)) {
    case 0: return TDM__LIGHTGBM_ZERO;
    case 1: return -TDM__LIGHTGBM_ZERO;
    case 2: return 0.0;
    default: return grid_value();
  }
}

/* A subtree of `leaves` leaves; returns LightGBM's child code (an inner
 * node's index, or ~leaf). */
static int gen_subtree(lgb_gen *g, int leaves) {
  if (leaves == 1) return ~g->leaves++;
  int i = g->inner++;
  int f = (int)rnd((uint32_t)gen_features);
  g->feature[i] = f;
  if (f >= 4) {
    int words = 1 + (int)rnd(3);
    g->decision[i] = 1 | (rnd(2) ? 8 : 0);
    g->threshold[i] = g->num_cat++;
    for (int w = 0; w < words; w++)
      tdm__buf_printf(&g->cat_threshold, " %u",
                      (unsigned)(rnd(65536) << 16 | rnd(65536)));
    g->cat_words += words;
    tdm__buf_printf(&g->cat_boundaries, " %d", g->cat_words);
  } else {
    g->decision[i] = (int)(rnd(2) * 2 + rnd(3) * 4);
    g->threshold[i] = gen_threshold();
  }
  int left = 1 + (int)rnd((uint32_t)leaves - 1);
  g->left[i] = gen_subtree(g, left);
  g->right[i] = gen_subtree(g, leaves - left);
  return i;
}

static void gen_ints(tdm__buf *b, const char *key, const int *v, int n) {
  tdm__buf_printf(b, "%s=", key);
  for (int i = 0; i < n; i++) tdm__buf_printf(b, "%s%d", i ? " " : "", v[i]);
  tdm__buf_printf(b, "\n");
}

/* A model of num_features features (0: 6 or 70 at random) and
 * num_iterations boosting rounds (0: at random). */
static char *random_lightgbm(int num_features, int num_iterations,
                             int *num_trees_out) {
  tdm__buf b = {0};
  int classes = rnd(3) ? 1 : 3;
  int iterations = num_iterations ? num_iterations
                   : rnd(4)       ? 1 + (int)rnd(12)
                                  : 200 + (int)rnd(150);
  int big = rnd(4) == 0; /* leaf counts up to 70: some past 64 */
  int linear = rnd(4) == 0;
  gen_features = num_features ? num_features : rnd(5) ? 6 : rnd(2) ? 64 : 70;
  tdm__buf_printf(&b,
                  "tree\nversion=v4\nnum_class=%d\nnum_tree_per_iteration=%d\n"
                  "label_index=0\nmax_feature_idx=%d\nobjective=%s\n"
                  "feature_names=",
                  classes, classes, gen_features - 1,
                  classes == 1 ? "regression" : "multiclass num_class:3");
  for (int f = 0; f < gen_features; f++)
    tdm__buf_printf(&b, "%sf%d", f ? " " : "", f);
  tdm__buf_printf(&b, "\nfeature_infos=");
  for (int f = 0; f < gen_features; f++)
    tdm__buf_printf(&b, "%s%s", f ? " " : "",
                    f == 4 || f == 5 ? "0:1:2" : "[-2:2]");
  tdm__buf_printf(&b, "\ntree_sizes=1\n\n");
  int trees = iterations * classes;
  for (int t = 0; t < trees; t++) {
    lgb_gen g = {0};
    tdm__buf_printf(&g.cat_boundaries, "0");
    int leaves = 1 + (int)rnd(big ? GEN_MAX_LEAVES : 31);
    gen_subtree(&g, leaves);
    tdm__buf_printf(&b, "Tree=%d\nnum_leaves=%d\nnum_cat=%d\n", t, leaves,
                    g.num_cat);
    if (leaves > 1) {
      gen_ints(&b, "split_feature", g.feature, g.inner);
      tdm__buf_printf(&b, "threshold=");
      for (int i = 0; i < g.inner; i++)
        tdm__buf_printf(&b, "%s%.17g", i ? " " : "", g.threshold[i]);
      tdm__buf_printf(&b, "\n");
      gen_ints(&b, "decision_type", g.decision, g.inner);
      gen_ints(&b, "left_child", g.left, g.inner);
      gen_ints(&b, "right_child", g.right, g.inner);
    }
    tdm__buf_printf(&b, "leaf_value=");
    for (int i = 0; i < leaves; i++)
      tdm__buf_printf(&b, "%s%.17g", i ? " " : "",
                      ((double)rnd(2001) - 1000.0) / 997.0);
    tdm__buf_printf(&b, "\n");
    if (g.num_cat > 0)
      tdm__buf_printf(&b, "cat_boundaries=%s\ncat_threshold=%s\n",
                      g.cat_boundaries.data, g.cat_threshold.data + 1);
    int tree_linear = linear && leaves > 1 && rnd(4) != 0;
    tdm__buf_printf(&b, "is_linear=%d\n", tree_linear);
    if (tree_linear) {
      tdm__buf features = {0}, coeffs = {0};
      tdm__buf_printf(&b, "leaf_const=");
      for (int i = 0; i < leaves; i++)
        tdm__buf_printf(&b, "%s%.17g", i ? " " : "",
                        rnd(4) ? ((double)rnd(2001) - 1000.0) / 991.0 : -0.0);
      tdm__buf_printf(&b, "\nnum_features=");
      for (int i = 0; i < leaves; i++) {
        int k = (int)rnd(5);
        tdm__buf_printf(&b, "%s%d", i ? " " : "", k);
        for (int j = 0; j < k; j++) {
          tdm__buf_printf(&features, "%s%u", features.len ? " " : "",
                          rnd(4) ? rnd(4) : rnd((uint32_t)gen_features));
          tdm__buf_printf(&coeffs, "%s%.17g", coeffs.len ? " " : "",
                          ((double)rnd(2001) - 1000.0) / 983.0);
        }
      }
      tdm__buf_printf(&b, "\n");
      if (features.len > 0)
        tdm__buf_printf(&b, "leaf_features=%s\nleaf_coeff=%s\n", features.data,
                        coeffs.data);
      tdm__buf_free(&features);
      tdm__buf_free(&coeffs);
    }
    tdm__buf_printf(&b, "shrinkage=1\n\n\n");
    tdm__buf_free(&g.cat_boundaries);
    tdm__buf_free(&g.cat_threshold);
  }
  tdm__buf_printf(&b, "end of trees\n");
  *num_trees_out = trees;
  return b.data;
}

/* Row values for a LightGBM model: each split's threshold and its double
 * neighbours, zero, either side of kZeroThreshold, categories inside and
 * past every set (0 to 100), fractional, negative and huge ones, NaN and
 * the infinities. */
static double lightgbm_row_value(const tdm_model *model, size_t f) {
  static const double special[] = {NAN,       0.0,          -0.0, INFINITY,
                                   -INFINITY, -0.5,         -1.0, 63.5,
                                   64.0,      2147483648.0, 1e300};
  if (rnd(5) == 0) return special[rnd(sizeof special / sizeof *special)];
  if (f == 4 || f == 5)
    return rnd(4) ? (double)rnd(101) : (double)rnd(101) + 0.5;
  for (int tries = 0; tries < 4; tries++) {
    const tdm__node *node = &model->nodes[rnd((uint32_t)model->num_nodes)];
    if (node->kind != TDM__NODE_LGB_NUMERIC || (size_t)node->feature != f)
      continue;
    switch (rnd(3)) {
      case 0: return node->value;
      case 1: return nextafter(node->value, INFINITY);
      default: return nextafter(node->value, -INFINITY);
    }
  }
  static const double zero[] = {TDM__LIGHTGBM_ZERO,
                                -TDM__LIGHTGBM_ZERO,
                                1.0000000180025097e-35,
                                1e-36,
                                -1e-36,
                                0.25};
  return zero[rnd(sizeof zero / sizeof *zero)];
}

TEST(fast_matches_reference_on_random_lightgbm_models) {
  int bitvector = 0, records = 0, linear = 0, grouped = 0, wide_linear = 0;
  for (int m = 0; m < 120; m++) {
    int trees;
    char *text = random_lightgbm(0, 0, &trees);
    tdm_model *model;
    tdm_error err;
    if (tdm_model_load_buffer(text, strlen(text), "random.txt", &model, &err) !=
        TDM_OK) {
      fprintf(stderr, "model %d: %s\n", m, err.message);
      free(text);
      return 1;
    }
    free(text);
    CHECK(model->fast != NULL);
    if (strcmp(tdm__fast_kernel(model), "bitvector") == 0)
      bitvector++;
    else
      records++;
    linear += model->num_linear_terms > 0;
    wide_linear += model->num_linear_terms > 0 && model->num_features > 64;
    grouped += trees > 256;
    size_t n = 400, nf = model->num_features;
    double *rows = malloc(n * nf * sizeof *rows);
    for (size_t r = 0; r < n; r++)
      for (size_t f = 0; f < nf; f++)
        rows[r * nf + f] = lightgbm_row_value(model, f);
    if (compare_random_model(model, rows, n, "random LightGBM model", m))
      return 1;
  }
  /* Both layouts, linear leaves and several groups were exercised. */
  CHECK(bitvector > 50);
  CHECK(records > 5);
  CHECK(linear > 10);
  CHECK(grouped > 3);
  CHECK(wide_linear > 1);
  /* Thousands of features and few splits: most of the bitvector layout's
   * lists would be empty, so the record walk takes the model, and agrees. */
  int trees;
  char *text = random_lightgbm(5000, 4, &trees);
  tdm_model *model;
  tdm_error err;
  CHECK_INT(tdm_model_load_buffer(text, strlen(text), "wide.txt", &model, &err),
            TDM_OK);
  free(text);
  CHECK_STR(tdm__fast_kernel(model), "scalar");
  double *rows = malloc(50 * model->num_features * sizeof *rows);
  for (size_t i = 0; i < 50 * model->num_features; i++)
    rows[i] = lightgbm_row_value(model, i % model->num_features);
  int failed = compare_kernels(model, rows, 50, "wide LightGBM model");
  free(rows);
  tdm_model_free(model);
  CHECK_INT(failed, 0);
  return 0;
}

static int fixture_matches_reference(tdm_model *model, const char *path,
                                     void *context) {
  double *rows = random_rows(model, 700);
  int failed = compare_kernels(model, rows, 700, path);
  free(rows);
  return failed;
}

TEST(fast_matches_reference_on_fixtures) {
  int models;
  CHECK_INT(
      tdm_test_each_fixture_model(fixture_matches_reference, NULL, &models), 0);
  CHECK(models >= 12);
  return 0;
}

/* A growable list of the values worth trying for one feature. */
typedef struct value_list {
  double *values;
  size_t len, cap;
} value_list;

static void add_value(value_list *list, double v) {
  if (list->len == list->cap) {
    list->cap = list->cap ? 2 * list->cap : 64;
    list->values = realloc(list->values, list->cap * sizeof *list->values);
  }
  list->values[list->len++] = v;
}

/* Values at every edge of a split: the threshold itself and its double
 * and float32 neighbours; for LightGBM's zero rule the magnitudes either
 * side of kZeroThreshold; for categorical splits every category of the
 * bitset and one past it, and values no category is: negative, fractional,
 * huge, past int32 and past float32's exact integers. */
static void add_split_edges(value_list *list, const tdm_model *model,
                            const tdm__node *node) {
  if (node->kind == TDM__NODE_XGB_CATEGORICAL ||
      node->kind == TDM__NODE_LGB_CATEGORICAL) {
    size_t past = (size_t)node->cat_count * 32;
    for (size_t c = 0; c <= past + 1; c++) {
      add_value(list, (double)c);
      add_value(list, (double)c + 0.5);
    }
    static const double odd[] = {-1.0,         -0.5,          -0.0,
                                 1e9,          2147483647.0,  2147483648.0,
                                 4294967296.0, -2147483649.0, 16777217.0,
                                 1e300,        -1e300,        0.99999999};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
      add_value(list, odd[i]);
    return;
  }
  double t = node->value;
  float t32 = (float)t;
  add_value(list, t);
  add_value(list, nextafter(t, INFINITY));
  add_value(list, nextafter(t, -INFINITY));
  add_value(list, (double)nextafterf(t32, INFINITY));
  add_value(list, (double)nextafterf(t32, -INFINITY));
  add_value(list, -t);
  if (node->kind == TDM__NODE_LGB_NUMERIC) {
    static const double zero = TDM__LIGHTGBM_ZERO;
    add_value(list, zero);
    add_value(list, -zero);
    add_value(list, nextafter(zero, INFINITY));
    add_value(list, -nextafter(zero, INFINITY));
    add_value(list, nextafter(zero, 0.0));
    add_value(list, 0.0);
    add_value(list, -0.0);
  }
  (void)model;
}

/* Rows built from the model's own splits: each value an edge of a split
 * on that feature (most of the time), or one that is special everywhere. */
static double *edge_rows(const tdm_model *model, size_t n) {
  size_t nf = model->num_features;
  value_list *lists = calloc(nf, sizeof *lists);
  for (size_t i = 0; i < model->num_nodes; i++) {
    const tdm__node *node = &model->nodes[i];
    if (node->kind == TDM__NODE_LEAF || node->kind == TDM__NODE_LINEAR_LEAF)
      continue;
    add_split_edges(&lists[node->feature], model, node);
  }
  static const double special[] = {NAN,       -NAN,   0.0,     -0.0,  INFINITY,
                                   -INFINITY, 1e-320, -1e-320, 1e308, -1e308};
  double *rows = malloc(n * nf * sizeof *rows + 1);
  for (size_t r = 0; r < n; r++)
    for (size_t f = 0; f < nf; f++) {
      const value_list *list = &lists[f];
      rows[r * nf + f] = list->len > 0 && rnd(10) < 8
                             ? list->values[rnd((uint32_t)list->len)]
                             : special[rnd(sizeof special / sizeof *special)];
    }
  for (size_t f = 0; f < nf; f++) free(lists[f].values);
  free(lists);
  return rows;
}

static int fixture_edges_match_reference(tdm_model *model, const char *path,
                                         void *context) {
  int *laid_out = context;
  if (model->fast != NULL) (*laid_out)++;
  double *rows = edge_rows(model, 3000);
  int failed = compare_kernels(model, rows, 3000, path);
  free(rows);
  return failed;
}

/* Every fixture (LightGBM's missing types and categorical bitsets,
 * XGBoost's categorical lending_club_cat) on rows at the edges of its own
 * splits: the fast layout, forced on with each kernel, gives the reference
 * walk's bits. */
TEST(fast_matches_reference_on_fixture_edges) {
  int models, laid_out = 0;
  CHECK_INT(tdm_test_each_fixture_model(fixture_edges_match_reference,
                                        &laid_out, &models),
            0);
  CHECK(models >= 18);
  /* Every fixture has a layout (linear trees aside). */
  CHECK(laid_out >= models - 1);
  return 0;
}
