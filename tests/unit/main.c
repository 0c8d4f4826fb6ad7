/*
 * main.c - runs the unit tests listed in list.h, each in a child process
 * (a crash or sanitizer abort fails that test only), and prints TAP-like
 * lines. `tandem-unit-tests NAME...` runs only the named tests;
 * `--no-fork` runs them in this process (for a debugger).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "list.h"
#include "test.h"

#define DECLARE(name) int test_##name(void);
TEST_LIST(DECLARE)
#undef DECLARE

typedef struct test_entry {
  const char *name;
  int (*run)(void);
} test_entry;

static const test_entry tests[] = {
#define ENTRY(name) {#name, test_##name},
    TEST_LIST(ENTRY)
#undef ENTRY
};

/* Runs one test and removes the scratch directories it made when it passed
 * (scratch.c). */
static int run_one(const test_entry *test) {
  int passed = test->run() == 0;
  tdm_test_scratch_finish(test->name, passed);
  return passed;
}

static int selected(const char *name, int argc, char **argv, int first) {
  if (first >= argc) return 1;
  for (int i = first; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return 1;
  return 0;
}

int main(int argc, char **argv) {
  int fork_each = 1, first = 1;
  if (argc > 1 && strcmp(argv[1], "--no-fork") == 0) {
    fork_each = 0;
    first = 2;
  }
  size_t count = sizeof tests / sizeof tests[0];
  int failed = 0, ran = 0;
  for (size_t i = 0; i < count; i++) {
    if (!selected(tests[i].name, argc, argv, first)) continue;
    ran++;
    int ok;
    if (fork_each) {
      fflush(stdout);
      pid_t pid = fork();
      /* exit(), not _exit(): LeakSanitizer checks for leaks at exit. */
      if (pid == 0) exit(run_one(&tests[i]) ? 0 : 1);
      int status = 0;
      waitpid(pid, &status, 0);
      ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (WIFSIGNALED(status))
        fprintf(stderr, "  %s: killed by signal %d\n", tests[i].name,
                WTERMSIG(status));
    } else {
      ok = run_one(&tests[i]);
    }
    printf("%s %d %s\n", ok ? "ok" : "not ok", ran, tests[i].name);
    if (!ok) failed++;
  }
  printf("# %d tests, %d failed\n", ran, failed);
  return failed ? 1 : 0;
}
