/*
 * scratch.c - temporary directories for the unit tests. Each test runs in a
 * child process (main.c); the directories a passing test made are removed
 * when it returns, and a failing test's are kept and named, for a look at
 * what was left. TANDEM_KEEP_TMP=1 keeps them all. Without the removal every
 * run of the unit tests left a few dozen directories in /tmp (decision log
 * segments, write-ahead logs, tables), and a day of runs left thousands.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define MAX_SCRATCH 32

static char made[MAX_SCRATCH][256];
static int made_count;

char *tdm_test_mkdtemp(char *template) {
  if (mkdtemp(template) == NULL) return NULL;
  /* A test that makes more directories than this keeps the extra ones: the
   * count is a bound on cleanup, not on the test. */
  if (made_count < MAX_SCRATCH && strlen(template) < sizeof made[0])
    strcpy(made[made_count++], template);
  return template;
}

void tdm_test_scratch_finish(const char *test, int passed) {
  const char *keep = getenv("TANDEM_KEEP_TMP");
  int keeping = !passed || (keep != NULL && strcmp(keep, "1") == 0);
  for (int i = 0; i < made_count; i++) {
    if (keeping) {
      fprintf(stderr, "  %s: its files are kept in %s\n", test, made[i]);
      continue;
    }
    char cmd[300];  /* "rm -rf" and the quoted path, at most 255 bytes */
    snprintf(cmd, sizeof cmd, "rm -rf '%.255s'", made[i]);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", made[i]);
  }
  made_count = 0;
}
