/*
 * fixtures.c - the unit tests' walk over the model fixtures that the
 * original libraries scored (tests/fixtures/xgboost and .../lightgbm), for
 * the differential tests that check an evaluator on every real model.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "tandem.h"
#include "test.h"

int tdm_test_each_fixture_model(int (*each)(tdm_model *model, const char *path,
                                            void *context),
                                void *context, int *models) {
  static const char *dirs[] = {"tests/fixtures/xgboost",
                               "tests/fixtures/lightgbm"};
  *models = 0;
  for (int d = 0; d < 2; d++) {
    DIR *dir = opendir(dirs[d]);
    if (dir == NULL) {
      fprintf(stderr, "%s: cannot open (run from the repository root)\n",
              dirs[d]);
      return 1;
    }
    struct dirent *entry;
    int failed = 0;
    while (!failed && (entry = readdir(dir)) != NULL) {
      const char *name = entry->d_name;
      size_t len = strlen(name);
      if (!(len > 11 && (strcmp(name + len - 11, ".model.json") == 0 ||
                         strcmp(name + len - 10, ".model.txt") == 0)))
        continue;
      char path[512];
      snprintf(path, sizeof path, "%s/%s", dirs[d], name);
      tdm_model *model;
      tdm_error err;
      if (tdm_model_load(path, &model, &err) != TDM_OK) {
        fprintf(stderr, "%s\n", err.message);
        failed = 1;
        break;
      }
      failed = each(model, path, context);
      tdm_model_free(model);
      (*models)++;
    }
    closedir(dir);
    if (failed) return 1;
  }
  return 0;
}
