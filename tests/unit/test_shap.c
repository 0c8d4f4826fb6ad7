/*
 * test_shap.c - the differential test of the contributions (shap.c):
 * randomized LightGBM models (double arithmetic) are explained by
 * tdm_model_predict with TDM_PREDICT_CONTRIBS and by a brute-force
 * reference written here from the definition: the Shapley values of
 * v(S) = the tree's expected output when only the features in S are
 * known, where an unknown feature's split sends the row down both
 * children weighed by their covers (the path-dependent expectation that
 * TreeSHAP computes in polynomial time). The reference enumerates every
 * subset, so it shares nothing with the recursion it checks.
 *
 * Trees are grown by splitting random leaves, over few features so that a
 * path meets the same feature again (the unwind case), with missing
 * values going either way and counts that split unevenly.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../src/core/core.h"
#include "../../src/model/model.h"
#include "tandem.h"
#include "test.h"

static uint64_t shap_rng = 0x2545F4914F6CDD1Dull;

static uint32_t shap_rnd(uint32_t n) {
  shap_rng ^= shap_rng << 13;
  shap_rng ^= shap_rng >> 7;
  shap_rng ^= shap_rng << 17;
  return (uint32_t)(shap_rng % n);
}

#define MAX_LEAVES 24
#define MAX_FEATURES 6

/* One generated tree, in LightGBM's layout (children >= 0 are inner
 * nodes, ~j is leaf j). */
typedef struct gen_tree {
  int leaves;
  int feature[MAX_LEAVES], left[MAX_LEAVES], right[MAX_LEAVES];
  int default_left[MAX_LEAVES];
  double threshold[MAX_LEAVES], value[MAX_LEAVES];
  long internal_count[MAX_LEAVES], leaf_count[MAX_LEAVES];
} gen_tree;

static void grow(gen_tree *t, int num_features) {
  t->leaves = 1;
  t->leaf_count[0] = 50 + shap_rnd(1000);
  int target = 1 + (int)shap_rnd(MAX_LEAVES);
  /* parent_of[j]: the inner node whose child is leaf j, side 0 left. */
  int parent_of[MAX_LEAVES], side_of[MAX_LEAVES];
  parent_of[0] = -1;
  side_of[0] = 0;
  for (int tries = 0; t->leaves < target && tries < 200; tries++) {
    int j = (int)shap_rnd((uint32_t)t->leaves);
    if (t->leaf_count[j] < 2) continue;
    int k = t->leaves - 1; /* the new inner node */
    int n = t->leaves;     /* the new leaf */
    long count = t->leaf_count[j];
    long a = 1 + (long)shap_rnd((uint32_t)(count - 1));
    t->feature[k] = (int)shap_rnd((uint32_t)num_features);
    t->threshold[k] = ((int)shap_rnd(41) - 20) / 20.0;
    t->default_left[k] = (int)shap_rnd(2);
    t->internal_count[k] = count;
    if (parent_of[j] >= 0) {
      if (side_of[j] == 0)
        t->left[parent_of[j]] = k;
      else
        t->right[parent_of[j]] = k;
    }
    t->left[k] = ~j;
    t->right[k] = ~n;
    t->leaf_count[j] = a;
    t->leaf_count[n] = count - a;
    parent_of[j] = k;
    side_of[j] = 0;
    parent_of[n] = k;
    side_of[n] = 1;
    t->leaves++;
  }
  for (int j = 0; j < t->leaves; j++)
    t->value[j] = ((int)shap_rnd(2001) - 1000) / 250.0;
}

/* Appends "key=v1 v2 ...\n" of a tree's ints or doubles. */
static void put_ints(tdm__buf *b, const char *key, const long *v, int n) {
  tdm__buf_printf(b, "%s=", key);
  for (int i = 0; i < n; i++) tdm__buf_printf(b, i ? " %ld" : "%ld", v[i]);
  tdm__buf_printf(b, "\n");
}

static char *lightgbm_text(const gen_tree *trees, int num_trees,
                           int num_features) {
  tdm__buf b = {0};
  tdm__buf_printf(&b,
                  "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\n"
                  "label_index=0\nmax_feature_idx=%d\nobjective=regression\n"
                  "feature_names=",
                  num_features - 1);
  for (int f = 0; f < num_features; f++)
    tdm__buf_printf(&b, f ? " x%d" : "x%d", f);
  tdm__buf_printf(&b, "\nfeature_infos=");
  for (int f = 0; f < num_features; f++)
    tdm__buf_printf(&b, f ? " [-1:1]" : "[-1:1]");
  tdm__buf_printf(&b, "\ntree_sizes=");
  for (int t = 0; t < num_trees; t++) tdm__buf_printf(&b, t ? " 1" : "1");
  tdm__buf_printf(&b, "\n\n");
  for (int t = 0; t < num_trees; t++) {
    const gen_tree *g = &trees[t];
    int inner = g->leaves - 1;
    long v[MAX_LEAVES];
    tdm__buf_printf(&b, "Tree=%d\nnum_leaves=%d\nnum_cat=0\n", t, g->leaves);
    if (inner > 0) {
      for (int i = 0; i < inner; i++) v[i] = g->feature[i];
      put_ints(&b, "split_feature", v, inner);
      tdm__buf_printf(&b, "threshold=");
      for (int i = 0; i < inner; i++)
        tdm__buf_printf(&b, i ? " %.17g" : "%.17g", g->threshold[i]);
      /* decision_type: missing type NaN (8), default left (2). */
      for (int i = 0; i < inner; i++) v[i] = 8 | (g->default_left[i] << 1);
      tdm__buf_printf(&b, "\n");
      put_ints(&b, "decision_type", v, inner);
      for (int i = 0; i < inner; i++) v[i] = g->left[i];
      put_ints(&b, "left_child", v, inner);
      for (int i = 0; i < inner; i++) v[i] = g->right[i];
      put_ints(&b, "right_child", v, inner);
      put_ints(&b, "internal_count", g->internal_count, inner);
    }
    tdm__buf_printf(&b, "leaf_value=");
    for (int j = 0; j < g->leaves; j++)
      tdm__buf_printf(&b, j ? " %.17g" : "%.17g", g->value[j]);
    tdm__buf_printf(&b, "\n");
    put_ints(&b, "leaf_count", g->leaf_count, g->leaves);
    tdm__buf_printf(&b, "is_linear=0\nshrinkage=1\n\n\n");
  }
  tdm__buf_printf(&b, "end of trees\n");
  tdm__buf_append(&b, "", 1);
  return b.data;
}

/* The expected output of the subtree at `node` (>= 0 inner, ~j leaf)
 * when only the features in the bit set `known` are known. */
static double expected_given(const gen_tree *g, int node, const double *x,
                             unsigned known) {
  if (node < 0) return g->value[~node];
  int f = g->feature[node];
  if (known & (1u << f)) {
    int left = isnan(x[f]) ? g->default_left[node] : x[f] <= g->threshold[node];
    return expected_given(g, left ? g->left[node] : g->right[node], x, known);
  }
  int l = g->left[node], r = g->right[node];
  double cl = l < 0 ? (double)g->leaf_count[~l] : (double)g->internal_count[l];
  double cr = r < 0 ? (double)g->leaf_count[~r] : (double)g->internal_count[r];
  return (cl * expected_given(g, l, x, known) +
          cr * expected_given(g, r, x, known)) /
         (cl + cr);
}

/* Shapley values of expected_given over all subsets; phi[nf] the bias. */
static void brute_force(const gen_tree *trees, int num_trees, int nf,
                        const double *x, double *phi) {
  double factorial[MAX_FEATURES + 1] = {1};
  for (int i = 1; i <= nf; i++) factorial[i] = factorial[i - 1] * i;
  for (int i = 0; i <= nf; i++) phi[i] = 0.0;
  for (int t = 0; t < num_trees; t++) {
    int root = trees[t].leaves > 1 ? 0 : ~0;
    double v[1 << MAX_FEATURES];
    for (unsigned s = 0; s < (1u << nf); s++)
      v[s] = expected_given(&trees[t], root, x, s);
    phi[nf] += v[0];
    for (int i = 0; i < nf; i++) {
      for (unsigned s = 0; s < (1u << nf); s++) {
        if (s & (1u << i)) continue;
        int size = __builtin_popcount(s);
        double weight =
            factorial[size] * factorial[nf - size - 1] / factorial[nf];
        phi[i] += weight * (v[s | (1u << i)] - v[s]);
      }
    }
  }
}

/* A random model of 1 to 4 trees over *num_features features, grown into
 * trees[] and loaded; NULL (having said why) when it does not load. */
static tdm_model *random_model(gen_tree trees[4], int *num_trees,
                               int *num_features) {
  int nf = 1 + (int)shap_rnd(MAX_FEATURES);
  *num_features = nf;
  *num_trees = 1 + (int)shap_rnd(4);
  for (int t = 0; t < *num_trees; t++) grow(&trees[t], nf);
  char *text = lightgbm_text(trees, *num_trees, nf);
  tdm_model *model;
  tdm_error err;
  if (tdm_model_load_buffer(text, strlen(text), "random.txt", &model, &err) !=
      TDM_OK) {
    fprintf(stderr, "%s\n%s\n", err.message, text);
    model = NULL;
  }
  tdm__free(text);
  return model;
}

TEST(shap_matches_brute_force_shapley) {
  for (int m = 0; m < 300; m++) {
    int nf, num_trees;
    gen_tree trees[4];
    tdm_model *model = random_model(trees, &num_trees, &nf);
    CHECK(model != NULL);
    CHECK(tdm_model_has_contribs(model));
    CHECK_INT(tdm_model_output_width(model, TDM_PREDICT_CONTRIBS),
              (size_t)nf + 1);
    for (int r = 0; r < 20; r++) {
      double x[MAX_FEATURES], want[MAX_FEATURES + 1], got[MAX_FEATURES + 1];
      double margin;
      for (int f = 0; f < nf; f++)
        x[f] = shap_rnd(8) == 0 ? NAN : ((int)shap_rnd(41) - 20) / 20.0;
      brute_force(trees, num_trees, nf, x, want);
      CHECK_INT(tdm_model_predict(model, x, 1, TDM_PREDICT_CONTRIBS, got),
                TDM_OK);
      CHECK_INT(tdm_model_predict(model, x, 1, TDM_PREDICT_MARGIN, &margin),
                TDM_OK);
      double sum = 0.0;
      for (int i = 0; i <= nf; i++) {
        sum += got[i];
        if (!(fabs(got[i] - want[i]) <= 1e-9 * (1.0 + fabs(want[i])))) {
          fprintf(stderr,
                  "model %d row %d: contribution %d is %.17g, the "
                  "brute force %.17g\n",
                  m, r, i, got[i], want[i]);
          return 1;
        }
      }
      /* Local accuracy: the contributions add up to the margin. */
      CHECK(fabs(sum - margin) <= 1e-9 * (1.0 + fabs(margin)));
    }
    tdm_model_free(model);
  }
  return 0;
}

/* A model whose file lacks the covers scores but has no contributions,
 * and says so instead of writing numbers. */
TEST(shap_needs_covers) {
  static const char text[] =
      "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\n"
      "label_index=0\nmax_feature_idx=0\nobjective=regression\n"
      "feature_names=x\nfeature_infos=[0:1]\ntree_sizes=1\n\n"
      "Tree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nthreshold=0.5\n"
      "decision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=1 2\n"
      "is_linear=0\nshrinkage=1\n\n\nend of trees\n";
  tdm_model *model;
  tdm_error err;
  CHECK_INT(tdm_model_load_buffer(text, strlen(text), "m.txt", &model, &err),
            TDM_OK);
  CHECK(!tdm_model_has_contribs(model));
  double x = 0.25, out[2] = {0, 0}, margin;
  CHECK_INT(tdm_model_predict(model, &x, 1, TDM_PREDICT_CONTRIBS, out),
            TDM_EUNSUPPORTED);
  CHECK_INT(tdm_model_predict(model, &x, 1, 0, &margin), TDM_OK);
  CHECK(margin == 1.0);
  tdm_model_free(model);
  return 0;
}

/* The float32 leaf step computes four unwound sums at once in vector
 * lanes; it must give the scalar reference's bits on every path. */
TEST(shap_lanes_match_scalar) {
  CHECK_INT(tdm__shap_check_lanes(0x9E3779B97F4A7C15ull, 200000), 0);
  return 0;
}

/* Out of memory while loading (the expected values) or explaining (the
 * scratch): TDM_ENOMEM, nothing half made, and the answer once memory
 * returns. */
TEST(shap_out_of_memory) {
  gen_tree trees[2];
  grow(&trees[0], 3);
  grow(&trees[1], 3);
  char *text = lightgbm_text(trees, 2, 3);
  tdm_model *model = NULL;
  tdm_error err;
  for (long countdown = 0;; countdown++) {
    tdm__alloc_fail_after(countdown);
    int rc = tdm_model_load_buffer(text, strlen(text), "m.txt", &model, &err);
    tdm__alloc_fail_after(-1);
    if (rc == TDM_OK) break;
    CHECK_INT(rc, TDM_ENOMEM);
    CHECK(model == NULL);
  }
  tdm__free(text);
  CHECK(tdm_model_has_contribs(model));
  double x[3] = {0.1, NAN, -0.4}, want[4], got[4];
  CHECK_INT(tdm_model_predict(model, x, 1, TDM_PREDICT_CONTRIBS, want), TDM_OK);
  for (long countdown = 0;; countdown++) {
    tdm__alloc_fail_after(countdown);
    int rc = tdm_model_predict(model, x, 1, TDM_PREDICT_CONTRIBS, got);
    tdm__alloc_fail_after(-1);
    if (rc == TDM_OK) break;
    CHECK_INT(rc, TDM_ENOMEM);
  }
  CHECK(memcmp(want, got, sizeof want) == 0);
  tdm_model_free(model);
  return 0;
}

/* Rows that reach every side of the model's splits: per feature, one of
 * the thresholds it is split at, just below, at or just above it, a small
 * integer where a split reads categories, and 1 in 8 missing. */
static double *rows_at_splits(const tdm_model *model, size_t n) {
  size_t nf = model->num_features;
  double *rows = malloc(n * nf * sizeof *rows + 1);
  for (size_t r = 0; r < n; r++) {
    for (size_t f = 0; f < nf; f++) {
      double value = (double)shap_rnd(20);
      for (int tries = 0; tries < 50; tries++) {
        const tdm__node *node =
            &model->nodes[shap_rnd((uint32_t)model->num_nodes)];
        if (node->feature != (int32_t)f) continue;
        if (node->kind == TDM__NODE_XGB_NUMERIC ||
            node->kind == TDM__NODE_LGB_NUMERIC) {
          double nudge = (double)((int)shap_rnd(3) - 1) * 1e-3;
          value = node->value + nudge * (1.0 + fabs(node->value));
        }
        break;
      }
      rows[r * nf + f] = shap_rnd(8) == 0 ? NAN : value;
    }
  }
  return rows;
}

/* Contributions from the leaf tables and from the recursion, as bits;
 * 0 when every value is the same. */
static int tables_agree(const tdm_model *model, const double *rows, size_t n,
                        int flags, const char *what) {
  size_t width = tdm__contribs_width(model);
  double *want = malloc(n * width * sizeof *want + 1);
  double *got = malloc(n * width * sizeof *got + 1);
  int failed = 0;
  if (tdm__contribs_recursive(model, rows, NULL, n, flags, want) != TDM_OK ||
      tdm__contribs(model, rows, NULL, n, flags, got) != TDM_OK) {
    fprintf(stderr, "%s: contributions failed\n", what);
    failed = 1;
  }
  for (size_t i = 0; i < n * width && !failed; i++) {
    if (memcmp(&want[i], &got[i], sizeof *got) != 0) {
      fprintf(stderr,
              "%s: row %zu, value %zu is %.17g from the tables, %.17g from "
              "the recursion\n",
              what, i / width, i % width, got[i], want[i]);
      failed = 1;
    }
  }
  free(want);
  free(got);
  return failed;
}

/* One fixture's tables against its recursion (a model with covers). */
static int fixture_tables_agree(tdm_model *model, const char *path,
                                void *context) {
  if (!tdm_model_has_contribs(model)) return 0;
  (*(int *)context)++;
  /* The tables were built, and hold something. */
  if (tdm__shap_table_bytes(model) == 0) {
    fprintf(stderr, "%s: no leaf tables\n", path);
    return 1;
  }
  double *rows = rows_at_splits(model, 300);
  int failed = tables_agree(model, rows, 300, 0, path);
  free(rows);
  return failed;
}

/* The leaf tables (computed once for every way a row can take a tree)
 * must give the recursion's bits: on random LightGBM models whose paths
 * meet the same feature again, and on every fixture with covers (XGBoost
 * float32 and LightGBM double, categorical splits, dart, multiclass). */
TEST(shap_tables_match_recursion) {
  int explained = 0;
  for (int m = 0; m < 200; m++) {
    int nf, num_trees;
    gen_tree trees[4];
    tdm_model *model = random_model(trees, &num_trees, &nf);
    CHECK(model != NULL);
    double *rows = rows_at_splits(model, 50);
    char what[64];
    snprintf(what, sizeof what, "random model %d", m);
    int failed = tables_agree(model, rows, 50, 0, what);
    free(rows);
    tdm_model_free(model);
    if (failed) return 1;
  }
  int models;
  CHECK_INT(
      tdm_test_each_fixture_model(fixture_tables_agree, &explained, &models),
      0);
  (void)models;
  CHECK(explained >= 10);
  return 0;
}

/* One thread's share of shap_tables_built_once: its rows' contributions
 * through the model's tables (the first callers race to build them). */
typedef struct table_job {
  const tdm_model *model;
  const double *rows;
  size_t n;
  double *out;
  int rc;
} table_job;

static void *table_job_run(void *arg) {
  table_job *job = arg;
  job->rc = tdm_model_predict(job->model, job->rows, job->n,
                              TDM_PREDICT_CONTRIBS, job->out);
  return NULL;
}

/* Threads that explain with a freshly loaded model at the same moment
 * share one build of its tables and all get the recursion's bits. */
TEST(shap_tables_built_once) {
  enum { THREADS = 4, ROWS = 200 };
  tdm_model *model;
  tdm_error err;
  CHECK_INT(tdm_model_load("tests/fixtures/xgboost/lending_club_cat.model.json",
                           &model, &err),
            TDM_OK);
  size_t width = tdm__contribs_width(model), nf = model->num_features;
  double *rows = rows_at_splits(model, THREADS * ROWS);
  double *want = malloc(THREADS * ROWS * width * sizeof *want);
  double *got = malloc(THREADS * ROWS * width * sizeof *got);
  table_job jobs[THREADS];
  pthread_t threads[THREADS];
  for (int i = 0; i < THREADS; i++) {
    jobs[i] = (table_job){model, rows + (size_t)i * ROWS * nf, ROWS,
                          got + (size_t)i * ROWS * width, -1};
    CHECK(pthread_create(&threads[i], NULL, table_job_run, &jobs[i]) == 0);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(threads[i], NULL);
    CHECK_INT(jobs[i].rc, TDM_OK);
  }
  CHECK_INT(tdm__contribs_recursive(model, rows, NULL, THREADS * ROWS, 0, want),
            TDM_OK);
  CHECK(memcmp(want, got, THREADS * ROWS * width * sizeof *got) == 0);
  CHECK(tdm__shap_table_bytes(model) > 0);
  free(rows);
  free(want);
  free(got);
  tdm_model_free(model);
  return 0;
}

/* Out of memory while building the tables (on the first request for
 * contributions): the request answers TDM_ENOMEM or, where the tables
 * could not be built but the scratch could, the recursion's answer; the
 * failed build frees what it made (the sanitizer build checks) and a later
 * request builds them. */
TEST(shap_tables_out_of_memory) {
  const char *path = "tests/fixtures/xgboost/credit_data_binary.model.json";
  tdm_model *model;
  tdm_error err;
  CHECK_INT(tdm_model_load(path, &model, &err), TDM_OK);
  size_t width = tdm__contribs_width(model);
  double *rows = rows_at_splits(model, 20);
  double *want = malloc(20 * width * sizeof *want);
  double *got = malloc(20 * width * sizeof *got);
  CHECK_INT(tdm__contribs_recursive(model, rows, NULL, 20, 0, want), TDM_OK);
  tdm_model_free(model);
  int answered = 0;
  for (long countdown = 0; countdown < 40; countdown++) {
    CHECK_INT(tdm_model_load(path, &model, &err), TDM_OK);
    tdm__alloc_fail_after(countdown);
    int rc = tdm_model_predict(model, rows, 20, TDM_PREDICT_CONTRIBS, got);
    tdm__alloc_fail_after(-1);
    if (rc == TDM_OK) {
      CHECK(memcmp(want, got, 20 * width * sizeof *got) == 0);
      answered++;
    } else {
      CHECK_INT(rc, TDM_ENOMEM);
    }
    /* Memory is back: the tables get built, and give the same bits. */
    CHECK(tdm__shap_table_bytes(model) > 0);
    CHECK_INT(tdm_model_predict(model, rows, 20, TDM_PREDICT_CONTRIBS, got),
              TDM_OK);
    CHECK(memcmp(want, got, 20 * width * sizeof *got) == 0);
    tdm_model_free(model);
  }
  CHECK(answered > 0);
  free(rows);
  free(want);
  free(got);
  return 0;
}

/* One float32 fixture through the lanes (shap_batch.c), with each kernel
 * the CPU has, against the per-row recursion: 37 rows (two full blocks of
 * 16 and a part one whose spare lanes repeat a row), at the splits'
 * thresholds and missing in 1 of 8 values. */
static int fixture_lanes_agree(tdm_model *model, const char *path,
                               void *context) {
  if (!tdm_model_has_contribs(model) || !model->float32) return 0;
  (*(int *)context)++;
  enum { ROWS = 37 };
  static const char *kernels[] = {"avx512", "avx2", "portable"};
  size_t width = tdm__contribs_width(model);
  double *rows = rows_at_splits(model, ROWS);
  double *want = malloc(ROWS * width * sizeof *want);
  double *got = malloc(ROWS * width * sizeof *got);
  int failed =
      tdm__contribs_recursive(model, rows, NULL, ROWS, 0, want) != TDM_OK;
  for (size_t k = 0; k < 3 && !failed; k++) {
    failed = tdm__contribs_batched(model, rows, NULL, ROWS, kernels[k], got) !=
             TDM_OK;
    for (size_t i = 0; i < ROWS * width && !failed; i++) {
      if (memcmp(&want[i], &got[i], sizeof *got) != 0) {
        fprintf(stderr,
                "%s, %s lanes: row %zu, value %zu is %.9g, the recursion's "
                "%.9g\n",
                path, kernels[k], i / width, i % width, got[i], want[i]);
        failed = 1;
      }
    }
  }
  free(rows);
  free(want);
  free(got);
  return failed;
}

/* XGBoost's TreeSHAP sixteen rows at a time, one per vector lane, must
 * give each row the per-row recursion's bits, with every kernel (AVX-512,
 * AVX2, portable; a kernel the CPU lacks runs the portable one), on every
 * XGBoost fixture (categorical splits, dart, multiclass, missing values,
 * paths that meet a feature again). */
TEST(shap_lanes_match_recursion) {
  int explained = 0, models;
  CHECK_INT(
      tdm_test_each_fixture_model(fixture_lanes_agree, &explained, &models),
      0);
  CHECK(explained >= 5);
  return 0;
}
