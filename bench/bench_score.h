/*
 * bench_score.h - what the scoring benchmarks (bench_predict.c,
 * bench_contribs.c) share besides their options: a numeric CSV read into
 * doubles, and a float32 matrix scored on N threads, each taking an equal
 * run of rows (as `tandem score --threads N` splits them). Both use the
 * public API only (tdm_model_*), as a program embedding tandem would:
 * what the benchmarks time is what such a program gets. Header-only:
 * each benchmark is one program.
 */
#ifndef TDM_BENCH_SCORE_H
#define TDM_BENCH_SCORE_H

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tandem.h"

/* Reads a numeric CSV (a header line, then num_features cells a row in the
 * model's feature order; an empty cell is missing) into doubles; NULL with
 * *why set when the file is not one. */
static inline double *bench_read_rows(const char *path, size_t num_features,
                               size_t *rows, const char **why) {
  FILE *fp = fopen(path, "rb");
  if (fp == NULL) {
    *why = "cannot open the rows file";
    return NULL;
  }
  size_t cap = 1024, n = 0, line_cap = 0;
  char *line = NULL;
  double *data = malloc(cap * num_features * sizeof *data);
  *why = NULL;
  if (getline(&line, &line_cap, fp) < 0) *why = "empty rows file";
  while (*why == NULL && getline(&line, &line_cap, fp) >= 0) {
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0') continue;
    if (n == cap) {
      cap *= 2;
      data = realloc(data, cap * num_features * sizeof *data);
    }
    char *cell = line;
    for (size_t f = 0; f < num_features && *why == NULL; f++) {
      char *end = cell + strcspn(cell, ",");
      int last = *end == '\0';
      *end = '\0';
      char *parsed;
      if (cell == end)
        data[n * num_features + f] = NAN;
      else if ((data[n * num_features + f] = strtod(cell, &parsed)),
               parsed != end)
        *why = "a cell is not a number";
      if (last && f + 1 < num_features)
        *why = "the rows file must have one column per feature";
      else if (!last && f + 1 == num_features)
        *why = "the rows file must have one column per feature";
      cell = end + 1;
    }
    n++;
  }
  free(line);
  fclose(fp);
  if (*why != NULL) {
    free(data);
    return NULL;
  }
  *rows = n;
  return data;
}

typedef struct bench_job {
  const tdm_model *model;
  const float *rows;
  size_t first, end, num_features, width;
  int flags;
  double *out;
} bench_job;

static inline void *bench_score_range(void *arg) {
  const bench_job *j = arg;
  tdm_model_predict_float32(j->model, j->rows + j->first * j->num_features,
                            j->end - j->first, j->flags,
                            j->out + j->first * j->width);
  return NULL;
}

/* Scores n rows of rows (row-major float32) on `threads` threads (one for
 * fewer than 256 rows, where threads cost more than they give). */
static inline void bench_predict(const tdm_model *model, const float *rows, size_t n,
                          size_t num_features, int flags, double *out,
                          int threads) {
  enum { MAX_THREADS = 64 };
  size_t width = tdm_model_output_width(model, flags);
  if (threads > MAX_THREADS) threads = MAX_THREADS;
  if (threads < 1 || n < 256) threads = 1;
  bench_job jobs[MAX_THREADS];
  pthread_t ids[MAX_THREADS];
  for (int t = 0; t < threads; t++)
    jobs[t] = (bench_job){model,
                          rows,
                          n * (size_t)t / (size_t)threads,
                          n * (size_t)(t + 1) / (size_t)threads,
                          num_features,
                          width,
                          flags,
                          out};
  for (int t = 1; t < threads; t++)
    pthread_create(&ids[t], NULL, bench_score_range, &jobs[t]);
  bench_score_range(&jobs[0]);
  for (int t = 1; t < threads; t++) pthread_join(ids[t], NULL);
}

#endif
