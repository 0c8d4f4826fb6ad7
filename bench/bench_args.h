/*
 * bench_args.h - the options the scoring benchmarks share (bench_predict.c,
 * bench_contribs.c): --rows N, --threads N, --seconds S, --json PATH after
 * their positional arguments. Header-only: each benchmark is one program.
 */
#ifndef TDM_BENCH_ARGS_H
#define TDM_BENCH_ARGS_H

#include <stdlib.h>
#include <string.h>

typedef struct bench_args {
  size_t rows;
  int threads;
  double seconds;
  const char *json_path;
} bench_args;

/* Reads the options from argv[first] on into args (which holds the
 * defaults); 0, or -1 with *why set when a value is out of range. */
static int bench_args_parse(int argc, char **argv, int first, bench_args *args,
                            const char **why) {
  for (int i = first; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--rows") == 0)
      args->rows = (size_t)atol(argv[i + 1]);
    else if (strcmp(argv[i], "--threads") == 0)
      args->threads = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--seconds") == 0)
      args->seconds = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--json") == 0)
      args->json_path = argv[i + 1];
  }
  if (args->threads < 1 || args->threads > 64) {
    *why = "--threads must be 1 to 64";
    return -1;
  }
  if (args->rows < 1) {
    *why = "--rows must be positive";
    return -1;
  }
  return 0;
}

#endif
