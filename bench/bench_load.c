/*
 * bench_load.c - how fast a model file loads and how much memory the load
 * takes at its peak, for tandem (tdm_model_load) or for its peer, XGBoost's
 * C API (XGBoosterLoadModel), in this process: run it once per library.
 *
 * The memory is the process's high-water mark (VmHWM, /proc/self/status)
 * after the first load less its resident size just before it, so what the
 * program itself takes does not count; it is printed beside the file's
 * size. The time is the median of ROUNDS loads, each reading the file
 * (from the page cache) and freeing the model again, in wall-clock seconds
 * and in CPU seconds of the process (user and system, every thread): on a
 * shared, busy machine the CPU time is the one that compares.
 *
 * build: make build/bench-load
 * usage: bench-load MODEL [tandem|xgboost] [ROUNDS]   (default tandem 9)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <xgboost/c_api.h>

#include "tandem.h"

static double clock_seconds(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A field of /proc/self/status in KiB ("VmHWM", "VmRSS"), or 0. */
static long status_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = 0;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':') {
      kib = atol(line + n + 1);
      break;
    }
  if (f) fclose(f);
  return kib;
}

/* Loads and frees the model once with the library chosen; 0 or -1. */
static int load_once(const char *path, int xgboost) {
  if (xgboost) {
    BoosterHandle booster;
    if (XGBoosterCreate(NULL, 0, &booster) != 0) return -1;
    int rc = XGBoosterLoadModel(booster, path);
    if (rc != 0) fprintf(stderr, "bench-load: %s\n", XGBGetLastError());
    XGBoosterFree(booster);
    return rc == 0 ? 0 : -1;
  }
  tdm_model *model;
  tdm_error err;
  if (tdm_model_load(path, &model, &err) != TDM_OK) {
    fprintf(stderr, "bench-load: %s\n", err.message);
    return -1;
  }
  tdm_model_free(model);
  return 0;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench-load MODEL [tandem|xgboost] [ROUNDS]\n");
    return 2;
  }
  const char *path = argv[1];
  int xgboost = argc > 2 && strcmp(argv[2], "xgboost") == 0;
  int rounds = argc > 3 ? atoi(argv[3]) : 9;
  if (rounds < 1 || rounds > 1000) rounds = 9;
  struct stat st;
  if (stat(path, &st) != 0) {
    perror(path);
    return 1;
  }
  double mb = (double)st.st_size / 1e6;
  long before = status_kib("VmRSS");
  double times[1000], cpu[1000];
  for (int r = 0; r < rounds; r++) {
    double start = clock_seconds(CLOCK_MONOTONIC);
    double cpu_start = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    if (load_once(path, xgboost) != 0) return 1;
    times[r] = clock_seconds(CLOCK_MONOTONIC) - start;
    cpu[r] = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
  }
  long peak = status_kib("VmHWM");
  qsort(times, (size_t)rounds, sizeof *times, compare_doubles);
  qsort(cpu, (size_t)rounds, sizeof *cpu, compare_doubles);
  double median = times[rounds / 2], cpu_median = cpu[rounds / 2];
  double extra_mib = (double)(peak - before) / 1024.0;
  printf(
      "%s: %s, %.1f MB: load %.3f s wall (%.0f MB/s), %.3f CPU s "
      "(%.0f MB/s), medians of %d; peak memory %.1f MiB beyond the "
      "process's own %.1f MiB = %.2fx the file\n",
      xgboost ? "xgboost" : "tandem", path, mb, median, mb / median, cpu_median,
      mb / cpu_median, rounds, extra_mib, (double)before / 1024.0,
      extra_mib * 1048576.0 / (double)st.st_size);
  return 0;
}
