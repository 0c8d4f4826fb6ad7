/*
 * test.h - a minimal unit test framework: each test is a function that
 * returns 0 on success, registered once in list.h, and run in its own
 * process by main.c so a crash fails only that test.
 */
#ifndef TDM_TEST_H
#define TDM_TEST_H

#include <stdio.h>
#include <string.h>

#define TEST(name) int test_##name(void)

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
              #cond);                                                    \
      return 1;                                                          \
    }                                                                    \
  } while (0)

#define CHECK_INT(actual, expected)                                        \
  do {                                                                     \
    long long a_ = (long long)(actual), e_ = (long long)(expected);        \
    if (a_ != e_) {                                                        \
      fprintf(stderr, "%s:%d: %s is %lld, expected %lld\n", __FILE__,      \
              __LINE__, #actual, a_, e_);                                  \
      return 1;                                                            \
    }                                                                      \
  } while (0)

#define CHECK_STR(actual, expected)                                        \
  do {                                                                     \
    const char *a_ = (actual), *e_ = (expected);                           \
    if (a_ == NULL || strcmp(a_, e_) != 0) {                               \
      fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__,  \
              __LINE__, #actual, a_ ? a_ : "(null)", e_);                  \
      return 1;                                                            \
    }                                                                      \
  } while (0)

#define CHECK_CONTAINS(text, part)                                          \
  do {                                                                      \
    const char *t_ = (text), *p_ = (part);                                  \
    if (t_ == NULL || strstr(t_, p_) == NULL) {                             \
      fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__,  \
              __LINE__, t_ ? t_ : "(null)", p_);                            \
      return 1;                                                             \
    }                                                                       \
  } while (0)

/* Loads each model fixture (tests/fixtures/xgboost and .../lightgbm, run
 * from the repository root) and calls each(model, path, context), which
 * returns 0 to go on; the model is freed after. Returns 1 when a model does
 * not load or `each` fails, else 0; *models counts the models seen. */
typedef struct tdm_model tdm_model;
int tdm_test_each_fixture_model(int (*each)(tdm_model *model,
                                            const char *path, void *context),
                                void *context, int *models);

/* mkdtemp(3) for a test's scratch directory: the same contract, and the
 * directory is removed when the test passes (kept and named when it fails,
 * or with TANDEM_KEEP_TMP=1) by tdm_test_scratch_finish, which main.c calls
 * after each test. */
char *tdm_test_mkdtemp(char *template);
void tdm_test_scratch_finish(const char *test, int passed);

#endif /* TDM_TEST_H */
