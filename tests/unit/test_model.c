/*
 * test_model.c - unit tests of the XGBoost loader and the reference
 * evaluator on small hand-written models whose every path is known:
 * numeric splits and missing values, XGBoost's categorical rules, output
 * transforms, dart weights, base_score forms, errors that name a JSON
 * pointer, and out-of-memory at every allocation. (Bit-exactness against
 * XGBoost itself is checked by the integration tests.)
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "../../src/core/core.h"
#include "../../src/model/model.h"
#include "tandem.h"
#include "test.h"

/*
 * One tree over features x (numeric) and c (categorical):
 *   node 0: x < 0.5 (missing goes left) -> leaf 1 : node 2
 *   node 2: c in {1, 3} goes right (missing goes right) -> leaf 3 : leaf 2
 */
static const char tree_json[] =
    "{\"base_weights\":[0,0,0,0,0],\"categories\":[1,3],"
    "\"categories_nodes\":[2],\"categories_segments\":[0],"
    "\"categories_sizes\":[2],\"default_left\":[1,0,0,0,0],\"id\":0,"
    "\"left_children\":[1,-1,3,-1,-1],\"right_children\":[2,-1,4,-1,-1],"
    "\"split_conditions\":[5E-1,1E0,NaN,2E0,3E0],"
    "\"split_indices\":[0,0,1,0,0],\"split_type\":[0,0,1,0,0],"
    "\"tree_param\":{\"num_deleted\":\"0\",\"num_feature\":\"2\","
    "\"num_nodes\":\"5\",\"size_leaf_vector\":\"0\"}}";

/* A model around tree_json; `booster` is "gbtree" or "dart". */
static char *make_model(const char *objective, const char *booster,
                        const char *base_score, const char *num_class,
                        int trees) {
  static char buf[16384];
  char tree_list[8192] = "", tree_info[256] = "", weights[256] = "";
  for (int t = 0; t < trees; t++) {
    strcat(tree_list, t ? "," : "");
    strcat(tree_list, tree_json);
    snprintf(tree_info + strlen(tree_info), 16, t ? ",%d" : "%d",
             t % (atoi(num_class) > 0 ? atoi(num_class) : 1));
    strcat(weights, t ? ",5E-1" : "5E-1");
  }
  char gbtree[12000];
  snprintf(gbtree, sizeof gbtree,
           "{\"gbtree_model_param\":{\"num_parallel_tree\":\"1\","
           "\"num_trees\":\"%d\"},\"tree_info\":[%s],\"trees\":[%s]}",
           trees, tree_info, tree_list);
  char booster_json[12500];
  if (strcmp(booster, "dart") == 0) {
    snprintf(booster_json, sizeof booster_json,
             "{\"name\":\"dart\",\"gbtree\":{\"name\":\"gbtree\",\"model\":%s},"
             "\"weight_drop\":[%s]}",
             gbtree, weights);
  } else {
    snprintf(booster_json, sizeof booster_json,
             "{\"name\":\"%s\",\"model\":%s}", booster, gbtree);
  }
  snprintf(buf, sizeof buf,
           "{\"learner\":{\"attributes\":{},\"feature_names\":[\"x\",\"c\"],"
           "\"feature_types\":[\"float\",\"c\"],\"gradient_booster\":%s,"
           "\"learner_model_param\":{%s\"num_class\":\"%s\","
           "\"num_feature\":\"2\",\"num_target\":\"1\"},"
           "\"objective\":{\"name\":\"%s\"}},\"version\":[1,7,4]}",
           booster_json, base_score, num_class, objective);
  return buf;
}

static int load(const char *json, tdm_model **model, tdm_error *err) {
  return tdm_model_load_buffer(json, strlen(json), "m.json", model, err);
}

static double score(const tdm_model *model, double x, double c, int flags) {
  double row[2] = {x, c}, out[8];
  tdm_model_predict(model, row, 1, flags, out);
  return out[0];
}

TEST(model_numeric_and_missing) {
  tdm_model *model;
  tdm_error err;
  CHECK_INT(load(make_model("reg:squarederror", "gbtree",
                            "\"base_score\":\"5E-1\",", "0", 1),
                 &model, &err),
            TDM_OK);
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  CHECK_INT(info.num_trees, 1);
  CHECK_INT(info.num_nodes, 5);
  CHECK_INT(info.max_depth, 2);
  CHECK_INT(info.num_categorical_splits, 1);
  CHECK_STR(info.objective, "reg:squarederror");
  CHECK_STR(info.library_version, "1.7.4");
  CHECK_STR(tdm_model_feature_name(model, 1), "c");
  CHECK_STR(tdm_model_feature_type(model, 1), "c");
  CHECK(score(model, 0.2, 0, 0) == 1.5);
  CHECK(score(model, NAN, 0, 0) == 1.5); /* missing goes left */
  CHECK(score(model, 0.5, 0, 0) == 2.5); /* 0.5 < 0.5 is false */
  /* Compared in float32: 0.49999999 rounds to 0.5f, so it goes right. */
  CHECK(score(model, 0.49999999, 0, 0) == 2.5);
  CHECK(score(model, 0.4999999, 0, 0) == 1.5);
  tdm_model_free(model);
  tdm_model_free(NULL);
  return 0;
}

TEST(model_categorical_rules) {
  tdm_model *model;
  tdm_error err;
  CHECK_INT(
      load(make_model("reg:squarederror", "gbtree", "", "0", 1), &model, &err),
      TDM_OK);
  CHECK(score(model, 1, 1, 0) == 3.5); /* in the set: right */
  CHECK(score(model, 1, 3, 0) == 3.5);
  CHECK(score(model, 1, 3.7, 0) == 3.5); /* truncated to category 3 */
  CHECK(score(model, 1, 0, 0) == 2.5);   /* not in the set: left */
  CHECK(score(model, 1, 31, 0) == 2.5);  /* inside the bitset's 32 bits */
  CHECK(score(model, 1, NAN, 0) == 3.5); /* missing: default (right) */
  /* Anything else not in the set goes left, as XGBoost 1.7.4 measured:
   * past the bitset, negative (even -0.5, which truncates to 0), huge. */
  CHECK(score(model, 1, 32, 0) == 2.5);
  CHECK(score(model, 1, -1, 0) == 2.5);
  CHECK(score(model, 1, -0.5, 0) == 2.5);
  CHECK(score(model, 1, 1e30, 0) == 2.5);
  tdm_model_free(model);
  return 0;
}

TEST(model_objective_transforms) {
  tdm_model *model;
  tdm_error err;
  /* binary:logistic: base 0.5 is margin 0; leaf 1 gives margin 1. */
  CHECK_INT(
      load(make_model("binary:logistic", "gbtree", "", "0", 1), &model, &err),
      TDM_OK);
  CHECK(score(model, 0.2, 0, TDM_PREDICT_MARGIN) == 1.0);
  CHECK(score(model, 0.2, 0, 0) == (double)(1.0f / (1.0f + expf(-1.0f))));
  tdm_model_free(model);
  CHECK_INT(load(make_model("count:poisson", "gbtree",
                            "\"base_score\":\"2E0\",", "0", 1),
                 &model, &err),
            TDM_OK);
  float margin = logf(2.0f) + 1.0f;
  CHECK(score(model, 0.2, 0, TDM_PREDICT_MARGIN) == (double)margin);
  CHECK(score(model, 0.2, 0, 0) == (double)expf(margin));
  tdm_model_free(model);
  CHECK_INT(load(make_model("binary:hinge", "gbtree",
                            "\"base_score\":\"-5E0\",", "0", 1),
                 &model, &err),
            TDM_OK);
  CHECK(score(model, 0.2, 0, 0) == 0.0); /* margin -4 */
  CHECK(score(model, 0.9, 1, 0) == 0.0); /* margin -2 */
  tdm_model_free(model);
  /* Three classes, one tree each: margins 0.5 + leaf. */
  CHECK_INT(
      load(make_model("multi:softprob", "gbtree", "", "3", 3), &model, &err),
      TDM_OK);
  CHECK_INT(tdm_model_output_width(model, 0), 3);
  double row[2] = {0.2, 0}, out[3];
  tdm_model_predict(model, row, 1, 0, out);
  double total = out[0] + out[1] + out[2];
  CHECK(fabs(total - 1.0) < 1e-6);
  CHECK(out[0] == out[1] && out[1] == out[2]);
  tdm_model_free(model);
  CHECK_INT(
      load(make_model("multi:softmax", "gbtree", "", "3", 3), &model, &err),
      TDM_OK);
  CHECK_INT(tdm_model_output_width(model, 0), 1);
  CHECK_INT(tdm_model_output_width(model, TDM_PREDICT_MARGIN), 3);
  CHECK(score(model, 0.2, 0, 0) == 0.0); /* ties: the first class */
  tdm_model_free(model);
  return 0;
}

TEST(model_dart_weights) {
  tdm_model *model;
  tdm_error err;
  CHECK_INT(
      load(make_model("reg:squarederror", "dart", "", "0", 2), &model, &err),
      TDM_OK);
  /* Two trees, each weighted 0.5: 0.5 + 0.5 * 3 + 0.5 * 3. */
  CHECK(score(model, 1, 1, 0) == 3.5);
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  CHECK_STR(info.booster, "dart");
  tdm_model_free(model);
  /* XGBoost 3.4 writes dart as "gbtree" with weight_drop beside model. */
  const char *json = make_model("reg:squarederror", "gbtree", "", "0", 2);
  char moved[20000];
  const char *at = strstr(json, "{\"name\":\"gbtree\",");
  CHECK(at != NULL);
  snprintf(moved, sizeof moved,
           "%.*s{\"name\":\"gbtree\",\"weight_drop\":"
           "[5E-1,5E-1],%s",
           (int)(at - json), json, at + strlen("{\"name\":\"gbtree\","));
  CHECK_INT(load(moved, &model, &err), TDM_OK);
  CHECK(score(model, 1, 1, 0) == 3.5);
  tdm_model_free(model);
  return 0;
}

TEST(model_without_trees) {
  /* XGBoost 3 saves a model with no trees; it scores its base margin. */
  const char *json =
      "{\"learner\":{\"attributes\":{},\"feature_names\":[\"p\",\"q\"],"
      "\"feature_types\":[],\"gradient_booster\":{\"model\":{\"cats\":"
      "{\"enc\":[],\"feature_segments\":[],\"sorted_idx\":[]},"
      "\"gbtree_model_param\":{\"num_parallel_tree\":\"1\",\"num_trees\":"
      "\"0\"},\"iteration_indptr\":[0],\"tree_info\":[],\"trees\":[]},"
      "\"name\":\"gbtree\"},\"learner_model_param\":{\"base_score\":"
      "\"[2.5E-1]\",\"boost_from_average\":\"1\",\"num_class\":\"0\","
      "\"num_feature\":\"2\",\"num_target\":\"1\"},\"objective\":{\"name\":"
      "\"binary:logistic\"}},\"version\":[3,3,0]}";
  tdm_model *model;
  tdm_error err;
  CHECK_INT(load(json, &model, &err), TDM_OK);
  CHECK(score(model, 1, 1, 0) == 0.25);
  CHECK_STR(tdm_model_feature_type(model, 0), "float");
  tdm_model_free(model);
  return 0;
}

TEST(model_base_score_forms) {
  static const char *forms[] = {"\"base_score\":\"3E-1\",",
                                "\"base_score\":\"[3E-1]\",",
                                "\"base_score\":0.3,"};
  for (size_t i = 0; i < 3; i++) {
    tdm_model *model;
    tdm_error err;
    CHECK_INT(load(make_model("binary:logistic", "gbtree", forms[i], "0", 1),
                   &model, &err),
              TDM_OK);
    float expected = -logf(1.0f / 0.3f - 1.0f) + 1.0f;
    CHECK(score(model, 0.2, 0, TDM_PREDICT_MARGIN) == (double)expected);
    tdm_model_free(model);
  }
  tdm_model *model;
  tdm_error err;
  CHECK_INT(load(make_model("binary:logistic", "gbtree",
                            "\"base_score\":\"1.5E0\",", "0", 1),
                 &model, &err),
            TDM_EPARSE);
  CHECK_CONTAINS(err.message, "/learner/learner_model_param/base_score");
  CHECK_CONTAINS(err.message, "must be in (0, 1)");
  return 0;
}

/* Replaces the first occurrence of `from` in `text` with `to`. */
static char *replace(const char *text, const char *from, const char *to) {
  static char buf[20000];
  const char *at = strstr(text, from);
  if (at == NULL) return NULL;
  snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - text), text, to,
           at + strlen(from));
  return buf;
}

TEST(model_errors_name_json_pointer) {
  const char *good = make_model("binary:logistic", "gbtree", "", "0", 1);
  char copy[20000];
  snprintf(copy, sizeof copy, "%s", good);
  static const struct {
    const char *from, *to, *status_name, *message;
  } cases[] = {
      {"\"name\":\"gbtree\"", "\"name\":\"gblinear\"", "TDM_EUNSUPPORTED",
       "m.json: at /learner/gradient_booster/name: booster \"gblinear\" is "
       "not supported"},
      {"binary:logistic", "reg:nonsense", "TDM_EUNSUPPORTED",
       "at /learner/objective/name: objective \"reg:nonsense\""},
      {"\"left_children\":[1,-1,3,-1,-1]", "\"left_children\":[1,-1,3,-1]",
       "TDM_EPARSE",
       "at /learner/gradient_booster/model/trees/0/left_children: has 4 "
       "elements, expected 5"},
      {"\"split_indices\":[0,0,1,0,0]", "\"split_indices\":[0,0,7,0,0]",
       "TDM_EPARSE",
       "at /learner/gradient_booster/model/trees/0/split_indices/2: 7 is out "
       "of range"},
      {"\"right_children\":[2,-1,4,-1,-1]", "\"right_children\":[2,-1,0,-1,-1]",
       "TDM_EPARSE", "reaches node 0 twice"},
      {"\"split_conditions\":[5E-1", "\"split_conditions\":[\"x\"",
       "TDM_EPARSE", "trees/0/split_conditions/0: \"x\" is not a number"},
      {"\"trees\":[", "\"treez\":[", "TDM_EPARSE",
       "at /learner/gradient_booster/model: missing member \"trees\""},
      {"\"num_feature\":\"2\",\"num_target",
       "\"num_feature\":\"two\",\"num_target", "TDM_EPARSE",
       "learner_model_param/num_feature: \"two\" is not an integer"},
      {"\"tree_info\":[0]", "\"tree_info\":[4]", "TDM_EPARSE",
       "tree_info/0: 4 is out of range"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *bad = replace(copy, cases[i].from, cases[i].to);
    if (bad == NULL) fprintf(stderr, "case %zu: no '%s'\n", i, cases[i].from);
    CHECK(bad != NULL);
    tdm_model *model = (tdm_model *)1;
    tdm_error err;
    int rc = load(bad, &model, &err);
    if (strcmp(tdm_status_name(rc), cases[i].status_name) != 0)
      fprintf(stderr, "case %zu: %s\n", i, err.message);
    CHECK_STR(tdm_status_name(rc), cases[i].status_name);
    CHECK(model == NULL);
    CHECK_CONTAINS(err.message, cases[i].message);
  }
  /* Truncated: the syntax error names line and column. */
  tdm_model *model;
  tdm_error err;
  CHECK_INT(
      tdm_model_load_buffer(good, strlen(good) / 2, "m.json", &model, &err),
      TDM_EPARSE);
  CHECK_CONTAINS(err.message, "m.json:1:");
  CHECK_CONTAINS(err.message, "ends too early");
  CHECK_INT(tdm_model_load_buffer("", 0, "m.json", &model, &err), TDM_EPARSE);
  CHECK_CONTAINS(err.message, "m.json: the model file is empty");
  CHECK_INT(tdm_model_load_buffer("hello\n", 6, "m.txt", &model, &err),
            TDM_EUNSUPPORTED);
  CHECK_CONTAINS(err.message, "m.txt: not a model format tandem reads");
  CHECK_INT(tdm_model_load_buffer("tree\n", 5, "m.txt", &model, &err),
            TDM_EPARSE);
  CHECK_CONTAINS(err.message, "m.txt:1: the header has no max_feature_idx");
  CHECK_INT(tdm_model_load("/nonexistent/m.json", &model, &err), TDM_ENOTFOUND);
  CHECK_CONTAINS(err.message, "/nonexistent/m.json: cannot open");
  return 0;
}

TEST(model_out_of_memory) {
  const char *json = make_model("multi:softprob", "dart", "", "3", 3);
  for (long countdown = 0;; countdown++) {
    tdm_model *model;
    tdm_error err;
    tdm__alloc_fail_after(countdown);
    int rc = load(json, &model, &err);
    tdm__alloc_fail_after(-1);
    if (rc == TDM_OK) {
      CHECK(countdown > 3);
      tdm_model_free(model);
      break;
    }
    if (rc != TDM_ENOMEM)
      fprintf(stderr, "countdown %ld: %s\n", countdown, err.message);
    CHECK_INT(rc, TDM_ENOMEM);
    CHECK(model == NULL);
  }
  return 0;
}

TEST(model_format_value_round_trips) {
  tdm_model *model;
  tdm_error err;
  CHECK_INT(
      load(make_model("binary:logistic", "gbtree", "", "0", 1), &model, &err),
      TDM_OK);
  char buf[32];
  tdm_model_format_value(model, 0.5, buf);
  CHECK_STR(buf, "0.5");
  tdm_model_format_value(model, (double)0.1f, buf);
  CHECK_STR(buf, "0.1");
  srand(7);
  for (int i = 0; i < 100000; i++) {
    uint32_t bits = (uint32_t)rand() << 16 ^ (uint32_t)rand();
    float f;
    memcpy(&f, &bits, 4);
    if (isnan(f) || isinf(f)) continue;
    tdm_model_format_value(model, f, buf);
    CHECK(strtof(buf, NULL) == f);
    /* And for a normal float, the shortest %g form that reads back
     * (subnormals have fewer digits: at least 6 are written). */
    if (fabsf(f) < FLT_MIN) continue;
    char shortest[32];
    for (int digits = 1; digits <= 9; digits++) {
      snprintf(shortest, sizeof shortest, "%.*g", digits, (double)f);
      if (strtof(shortest, NULL) == f) break;
    }
    CHECK_STR(buf, shortest);
  }
  tdm_model_free(model);
  return 0;
}

/* The rule tdm__float_shortest implements, in the C library's terms: the
 * smallest N from 6 to 9 whose "%.Ng" reads back with strtof. */
static void float_text_reference(float f, char out[32]) {
  for (int digits = 6; digits <= 9; digits++) {
    snprintf(out, 32, "%.*g", digits, (double)f);
    if (isnan(f) || strtof(out, NULL) == f) return;
  }
}

/* Checks one float; returns 0 on a mismatch (and says which). */
static int float_shortest_agrees(float f) {
  char want[32], got[32];
  float_text_reference(f, want);
  if (isnan(f)) strcpy(want, "nan"); /* the C library may write -nan */
  int n = tdm__float_shortest(f, got);
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  if (strcmp(want, got) != 0 || n != (int)strlen(got)) {
    fprintf(stderr, "float 0x%08x: wrote \"%s\", the C library \"%s\"\n", bits,
            got, want);
    return 0;
  }
  return 1;
}

static float float_of_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* float_text.c against snprintf and strtof: every power of two and its
 * neighbours (the uneven rounding intervals), the subnormals' and the
 * range's edges, the floats around every power of ten, probabilities as
 * scores are, and a million random bit patterns, both signs. */
TEST(float_shortest_matches_libc) {
  int ok = 1;
  for (uint32_t sign = 0; sign < 2; sign++) {
    uint32_t s = sign << 31;
    for (uint32_t e = 0; e < 256; e++)
      for (int d = -3; d <= 3; d++)
        ok &= float_shortest_agrees(
            float_of_bits(s | ((e << 23) + (uint32_t)(int32_t)d)));
    for (uint32_t bits = 0; bits < 4096; bits++) /* the tiniest subnormals */
      ok &= float_shortest_agrees(float_of_bits(s | bits));
    for (int p = -46; p <= 39; p++) {
      float ten = (float)pow(10, p);
      uint32_t bits;
      memcpy(&bits, &ten, sizeof bits);
      for (int d = -4; d <= 4; d++)
        ok &= float_shortest_agrees(
            float_of_bits(s | (bits + (uint32_t)(int32_t)d)));
    }
  }
  uint64_t state = 0x853C49E6748FEA9Bull;
  for (int i = 0; i < 1000000 && ok; i++) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    ok &= float_shortest_agrees(float_of_bits((uint32_t)(state >> 16)));
    if (i % 4 == 0) /* a probability */
      ok &= float_shortest_agrees((float)((double)(state >> 11) * 0x1p-53));
  }
  CHECK(ok);
  return 0;
}

/* A LightGBM model: node 0 "x <= 0.5" with decision_type `decision`,
 * node 1 "c in {1, 3}" goes left. Leaves 1, 2, 3. */
static char *lightgbm_model(int decision) {
  static char buf[2048];
  snprintf(buf, sizeof buf,
           "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\n"
           "label_index=0\nmax_feature_idx=1\nobjective=binary sigmoid:2\n"
           "feature_names=x c\nfeature_infos=[0:1] 0:1:3\ntree_sizes=1\n\n"
           "Tree=0\nnum_leaves=3\nnum_cat=1\nsplit_feature=0 1\n"
           "split_gain=1 1\nthreshold=0.5 0\ndecision_type=%d 1\n"
           "left_child=-1 -2\nright_child=1 -3\nleaf_value=1 2 3\n"
           "leaf_weight=1 1 1\nleaf_count=1 1 1\ninternal_value=0 0\n"
           "internal_weight=0 0\ninternal_count=2 1\ncat_boundaries=0 1\n"
           "cat_threshold=10\nis_linear=0\nshrinkage=1\n\n\n"
           "end of trees\n\nfeature_importances:\nx=1\n",
           decision);
  return buf;
}

TEST(lightgbm_rules) {
  tdm_model *model;
  tdm_error err;
  /* decision_type 2: missing type None, default left. */
  const char *text = lightgbm_model(2);
  CHECK_INT(tdm_model_load_buffer(text, strlen(text), "m.txt", &model, &err),
            TDM_OK);
  tdm_model_info info;
  tdm_model_get_info(model, &info);
  CHECK_STR(info.format_name, "lightgbm-text");
  CHECK_INT(info.float32, 0);
  CHECK_STR(tdm_model_feature_name(model, 1), "c");
  CHECK(score(model, 0.2, 0, TDM_PREDICT_MARGIN) == 1.0);
  CHECK(score(model, 0.5, 0, TDM_PREDICT_MARGIN) == 1.0); /* <= goes left */
  CHECK(score(model, NAN, 0, TDM_PREDICT_MARGIN) == 1.0); /* NaN is 0 */
  CHECK(score(model, 0.7, 1, TDM_PREDICT_MARGIN) == 2.0); /* in the set */
  CHECK(score(model, 0.7, 3.9, TDM_PREDICT_MARGIN) == 2.0);
  CHECK(score(model, 0.7, 2, TDM_PREDICT_MARGIN) == 3.0);
  CHECK(score(model, 0.7, NAN, TDM_PREDICT_MARGIN) == 3.0);
  CHECK(score(model, 0.7, -1, TDM_PREDICT_MARGIN) == 3.0);
  CHECK(score(model, 0.7, 33, TDM_PREDICT_MARGIN) == 3.0); /* past the set */
  CHECK(score(model, 0.7, 1e300, TDM_PREDICT_MARGIN) == 3.0);
  CHECK(score(model, 0.2, 0, 0) == 1.0 / (1.0 + exp(-2.0 * 1.0)));
  tdm_model_free(model);
  /* decision_type 4: missing type Zero, default right. */
  text = lightgbm_model(4);
  CHECK_INT(tdm_model_load_buffer(text, strlen(text), "m.txt", &model, &err),
            TDM_OK);
  CHECK(score(model, 0.2, 2, TDM_PREDICT_MARGIN) == 1.0);
  CHECK(score(model, 0.0, 2, TDM_PREDICT_MARGIN) == 3.0);   /* zero: right */
  CHECK(score(model, 1e-36, 2, TDM_PREDICT_MARGIN) == 3.0); /* ~zero */
  CHECK(score(model, NAN, 2, TDM_PREDICT_MARGIN) == 3.0);   /* NaN is 0 */
  tdm_model_free(model);
  /* decision_type 10: missing type NaN, default left. */
  text = lightgbm_model(10);
  CHECK_INT(tdm_model_load_buffer(text, strlen(text), "m.txt", &model, &err),
            TDM_OK);
  CHECK(score(model, NAN, 2, TDM_PREDICT_MARGIN) == 1.0);
  CHECK(score(model, 0.0, 2, TDM_PREDICT_MARGIN) == 1.0);
  CHECK(score(model, 0.9, 2, TDM_PREDICT_MARGIN) == 3.0);
  tdm_model_free(model);
  return 0;
}

TEST(lightgbm_errors_name_line) {
  static const struct {
    const char *from, *to, *message;
  } cases[] = {
      {"threshold=0.5 0", "threshold=0.5", "m.txt:17: threshold has 1 values"},
      {"split_feature=0 1", "split_feature=0 7",
       "m.txt:15: split_feature: value 2 (7) must be an integer from 0 to 1"},
      {"left_child=-1 -2", "left_child=-1 -9", "m.txt:19: left_child: value 2"},
      {"leaf_value=1 2 3", "leaf_value=1 x 3",
       "m.txt:21: leaf_value: value 2 \"x\" is not a number"},
      {"objective=binary sigmoid:2", "objective=ranking_magic",
       "m.txt:7: objective \"ranking_magic\" is not supported"},
      {"end of trees", "end of tree", "ends before \"end of trees\""},
      {"max_feature_idx=1\n", "", "the header has no max_feature_idx"},
      {"cat_threshold=10\n", "", "Tree=0 has no cat_threshold line"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *bad = replace(lightgbm_model(2), cases[i].from, cases[i].to);
    CHECK(bad != NULL);
    tdm_model *model;
    tdm_error err;
    int rc = tdm_model_load_buffer(bad, strlen(bad), "m.txt", &model, &err);
    if (rc == TDM_OK) fprintf(stderr, "case %zu loaded\n", i);
    CHECK(rc != TDM_OK);
    CHECK(model == NULL);
    CHECK_CONTAINS(err.message, cases[i].message);
  }
  return 0;
}

TEST(model_loaders_out_of_memory) {
  const char *texts[] = {
      lightgbm_model(2),
      "{\"format\":\"tandem-linear\",\"link\":\"softmax\",\"intercept\":[1,2],"
      "\"coefficients\":{\"a\":[1,2],\"b\":[3,4]},\"missing\":{\"a\":0}}"};
  for (size_t i = 0; i < 2; i++) {
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", texts[i]);
    for (long countdown = 0;; countdown++) {
      tdm_model *model;
      tdm_error err;
      tdm__alloc_fail_after(countdown);
      int rc = tdm_model_load_buffer(copy, strlen(copy), "m", &model, &err);
      tdm__alloc_fail_after(-1);
      if (rc == TDM_OK) {
        tdm_model_free(model);
        break;
      }
      if (rc != TDM_ENOMEM)
        fprintf(stderr, "text %zu countdown %ld: %s\n", i, countdown,
                err.message);
      CHECK_INT(rc, TDM_ENOMEM);
    }
  }
  return 0;
}

TEST(lightgbm_hostile_counts_fail_fast) {
  /* A tiny file claiming the largest tree must fail on the counts, without
   * allocating for them. */
  const char *bad =
      replace(lightgbm_model(2), "num_leaves=3", "num_leaves=131072");
  CHECK(bad != NULL);
  tdm_model *model;
  tdm_error err;
  tdm__alloc_fail_after(40); /* far fewer allocations than nodes */
  int rc = tdm_model_load_buffer(bad, strlen(bad), "m.txt", &model, &err);
  tdm__alloc_fail_after(-1);
  CHECK_INT(rc, TDM_EPARSE);
  CHECK_CONTAINS(err.message,
                 "leaf_value has 3 values, expected num_leaves=131072");
  bad = replace(lightgbm_model(2), "num_leaves=3", "num_leaves=131073");
  CHECK_INT(tdm_model_load_buffer(bad, strlen(bad), "m.txt", &model, &err),
            TDM_EPARSE);
  return 0;
}
