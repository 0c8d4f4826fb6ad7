/*
 * test_score.c - unit tests of the batch scoring runner: every allocation
 * failing in turn reports TDM_ENOMEM (never success, never a crash) and
 * leaves no output, manifest or temporary file behind.
 */
#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../src/batch/score.h"
#include "../../src/core/core.h"
#include "test.h"

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

TEST(score_out_of_memory) {
  char dir[] = "/tmp/tandem-score-XXXXXX";
  CHECK(tdm_test_mkdtemp(dir) != NULL);
  char model[256], in[256], out[256];
  snprintf(model, sizeof model, "%s/m.json", dir);
  snprintf(in, sizeof in, "%s/in.csv", dir);
  snprintf(out, sizeof out, "%s/out.csv", dir);
  FILE *fp = fopen(model, "w");
  fputs(
      "{\"learner\":{\"feature_names\":[\"a\",\"b\"],\"gradient_booster\":"
      "{\"name\":\"gbtree\",\"model\":{\"tree_info\":[0],\"trees\":[{"
      "\"left_children\":[1,-1,-1],\"right_children\":[2,-1,-1],"
      "\"split_indices\":[1,0,0],\"split_conditions\":[5E-1,1E0,2E0],"
      "\"default_left\":[1,0,0]}]}},\"learner_model_param\":{\"base_score\":"
      "\"5E-1\",\"num_feature\":\"2\"},\"objective\":{\"name\":"
      "\"binary:logistic\"}},\"version\":[1,7,4]}",
      fp);
  fclose(fp);
  fp = fopen(in, "w");
  fputs("id,b,a\nx,0.1,3\ny,,4\nz,0.9,5\n", fp);
  fclose(fp);
  const char *keep[] = {"id"};
  tdm__score_options opt = {
      .model_path = model,
      .in_path = in,
      .out_path = out,
      .score = {.threads = 2, .keep = keep, .num_keep = 1}};
  for (long countdown = 0;; countdown++) {
    tdm__score_stats stats;
    tdm_error err;
    tdm__alloc_fail_after(countdown);
    int rc = tdm__score_run(&opt, &stats, &err);
    tdm__alloc_fail_after(-1);
    if (rc == TDM_OK) {
      CHECK_INT(stats.rows, 3);
      CHECK_INT(count_files(dir), 4); /* model, input, output, manifest */
      break;
    }
    if (rc != TDM_ENOMEM)
      fprintf(stderr, "countdown %ld: %s\n", countdown, err.message);
    CHECK_INT(rc, TDM_ENOMEM);
    CHECK_INT(err.status, TDM_ENOMEM);
    CHECK_INT(count_files(dir), 2); /* nothing written */
  }
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  return 0;
}
