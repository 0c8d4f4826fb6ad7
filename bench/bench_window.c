/*
 * bench_window.c - nanoseconds per tdm__entity_apply for six typical
 * window features (1 h count, 24 h sum, 30 d mean with a 1 h hop, 24 h
 * distinct merchants, since_last, 10 min max) over a stream of events
 * spread across many entities in time order with a few late events, as
 * the pipeline core would apply them. Runs a light scenario (many cards,
 * a few events each per day) and a heavy one (few entities, thousands of
 * events in each window), and prints ns/apply and bytes per entity.
 *
 * usage: bench-window [EVENTS]   (default 2000000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/pipeline/window.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void die(const char *what) {
  fprintf(stderr, "bench-window: %s\n", what);
  exit(1);
}

/* Applies `events` events over `entities` entities, one every `step_ms`
 * on average across all of them. */
static void scenario(const char *name, const tdm__window_spec *spec,
                     size_t entities, size_t events, int64_t step_ms) {
  tdm__entity **ents = calloc(entities, sizeof *ents);
  if (ents == NULL) die("out of memory");
  for (size_t i = 0; i < entities; i++)
    if (tdm__entity_new(spec, &ents[i]) != TDM_OK) die("out of memory");
  static const char *merchants[] = {"amazon", "visa-shop", "grocer",
                                    "fuel-42", "cafe",     "airline",
                                    "hotel",   "pharmacy"};
  /* Generated ahead so the timing covers apply only. */
  int64_t *times = malloc(events * sizeof *times);
  uint32_t *who = malloc(events * sizeof *who);
  double *amounts = malloc(events * sizeof *amounts);
  uint8_t *merchant = malloc(events);
  if (!times || !who || !amounts || !merchant) die("out of memory");
  int64_t t = 1700000000000;
  for (size_t i = 0; i < events; i++) {
    t += (int64_t)(rnd() % (uint64_t)(2 * step_ms + 1));
    times[i] = rnd() % 100 == 0 ? t - (int64_t)(rnd() % 60000) : t;
    who[i] = (uint32_t)(rnd() % entities);
    amounts[i] = (double)(rnd() % 100000) / 100.0;
    merchant[i] = (uint8_t)(rnd() % 8);
  }
  double out[6], check = 0;
  double start = now();
  for (size_t i = 0; i < events; i++) {
    double num[1] = {amounts[i]};
    const char *m = merchants[merchant[i]];
    tdm__str str[1] = {{m, strlen(m)}};
    unsigned char filt[1] = {1};
    tdm__window_event ev = {times[i], num, str, filt};
    if (tdm__entity_apply(spec, ents[who[i]], &ev, out) != TDM_OK)
      die("apply failed");
    check += out[0];
  }
  double secs = now() - start;
  size_t memory = 0;
  for (size_t i = 0; i < entities; i++) memory += tdm__entity_memory(ents[i]);
  double span_h = (double)(t - 1700000000000) / 3600000.0;
  printf("%-6s %8zu entities %9zu events over %6.1f h (%7.1f per entity "
         "per day): %7.1f ns/apply, %5.2f M events/s, %8zu bytes/entity "
         "(check %g)\n",
         name, entities, events, span_h,
         (double)events / (double)entities / (span_h / 24.0),
         secs * 1e9 / (double)events, (double)events / secs / 1e6,
         memory / entities, check);
  for (size_t i = 0; i < entities; i++) tdm__entity_free(ents[i]);
  free(ents);
  free(times);
  free(who);
  free(amounts);
  free(merchant);
}

int main(int argc, char **argv) {
  size_t events = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 2000000;
  static const tdm__agg_def aggs[] = {
      {TDM__AGG_COUNT, 3600000, 0, 0, SIZE_MAX},
      {TDM__AGG_SUM, 86400000, 0, 0, SIZE_MAX},
      {TDM__AGG_MEAN, 30LL * 86400000, 3600000, 0, SIZE_MAX},
      {TDM__AGG_DISTINCT, 86400000, 0, 0, SIZE_MAX},
      {TDM__AGG_SINCE_LAST, 0, 0, 0, SIZE_MAX},
      {TDM__AGG_MAX, 600000, 0, 0, SIZE_MAX},
  };
  tdm__window_config config = {aggs, 6, 1, 1, 1, 60000, 0, 0};
  tdm__window_spec *spec;
  tdm_error err;
  if (tdm__window_spec_new(&config, &spec, &err) != TDM_OK) die(err.message);
  /* ~20 events per card per day. */
  scenario("light", spec, 100000, events, 43);
  /* ~500 per entity per day. */
  scenario("medium", spec, 1000, events, 170);
  /* ~10000 per entity per day. */
  scenario("heavy", spec, 10, events, 860);
  tdm__window_spec_free(spec);
  return 0;
}
