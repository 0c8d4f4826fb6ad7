/*
 * test_api.c - the public pipeline API of include/tandem.h, used as an
 * embedding program uses it: only tdm_ names. Scores are checked against
 * a reference computed here from the pipeline's definition (a count and a
 * sum per entity, then the linear model's arithmetic), never against
 * numbers tandem produced; batch output is checked against the answers of
 * tdm_state_process for the same events, line for line.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tandem.h"
#include "test.h"

/* score = 1 + 0.5 * n_1h + 0.25 * total, in that order (the linear
 * model's documented order of arithmetic). */
static const char model_json[] =
    "{\"format\": \"tandem-linear\", \"link\": \"identity\", \"intercept\": 1,\n"
    " \"coefficients\": {\"n_1h\": 0.5, \"total\": 0.25}}\n";

static const char pipeline_yaml[] =
    "name: t\n"
    "entity: k\n"
    "time: ts\n"
    "id: id\n"
    "fields: {id: string, k: string, ts: {type: time, unit: ms}, v: number}\n"
    "features:\n"
    "  - {name: n_1h, agg: count, window: 1h}\n"
    "  - {name: total, agg: sum(v)}\n"
    "model: {path: model.json}\n"
    "decision:\n"
    "  - {when: \"score >= 3\", then: high}\n"
    "  - {then: low}\n"
    "state: {lateness: 10m, dedupe: 2h, max_future: 1h}\n";

/* A fresh directory holding the pipeline and its model; path receives
 * DIR/p.yaml. */
static int make_pipeline_dir(char dir[64], char path[96]) {
  snprintf(dir, 64, "/tmp/tdm-api-XXXXXX");
  if (tdm_test_mkdtemp(dir) == NULL) return -1;
  char p[128];
  snprintf(p, sizeof p, "%s/model.json", dir);
  FILE *f = fopen(p, "w");
  if (f == NULL) return -1;
  fputs(model_json, f);
  fclose(f);
  snprintf(path, 96, "%s/p.yaml", dir);
  f = fopen(path, "w");
  if (f == NULL) return -1;
  fputs(pipeline_yaml, f);
  fclose(f);
  return 0;
}

static void remove_tree(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* The number after "name": in a JSON answer (NAN when absent). */
static double member_number(const char *answer, const char *name) {
  char key[64];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *at = strstr(answer, key);
  return at ? strtod(at + strlen(key), NULL) : NAN;
}

TEST(api_version) {
  CHECK_STR(tdm_version(), TDM_VERSION);
  return 0;
}

TEST(api_pipeline_open_errors_name_where) {
  char dir[64], path[96];
  CHECK(make_pipeline_dir(dir, path) == 0);
  tdm_pipeline *p = (tdm_pipeline *)1;
  tdm_error err;
  char missing[128];
  snprintf(missing, sizeof missing, "%s/none.yaml", dir);
  CHECK(tdm_pipeline_open(missing, NULL, &p, &err) != TDM_OK);
  CHECK(p == NULL);
  CHECK_CONTAINS(err.message, "none.yaml");
  /* A feature with an unknown aggregation: the message names the line. */
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("name: t\nentity: k\ntime: ts\nfields: {k: string, ts: time}\n"
        "features:\n  - {name: a, agg: median_of_nothing, window: 1h}\n"
        "model: {path: model.json}\n",
        f);
  fclose(f);
  CHECK(tdm_pipeline_open(path, NULL, &p, &err) != TDM_OK);
  CHECK(p == NULL);
  CHECK_CONTAINS(err.message, "p.yaml:6:");
  CHECK_INT(tdm_pipeline_open(path, NULL, NULL, &err), TDM_EINVAL);
  tdm_pipeline_free(NULL);
  tdm_state_free(NULL);
  /* Misuse is an error, not a crash: a features-only pipeline has no
   * model to answer with; NULL answers and states are refused. */
  f = fopen(path, "w");
  CHECK(f != NULL);
  fputs(pipeline_yaml, f);
  fclose(f);
  tdm_pipeline_options opt = {0};
  opt.features_only = 1;
  CHECK_INT(tdm_pipeline_open(path, &opt, &p, &err), TDM_OK);
  CHECK(tdm_pipeline_model(p) == NULL);
  tdm_state *s = (tdm_state *)1;
  CHECK_INT(tdm_state_open(p, NULL, &s, &err), TDM_EINVAL);
  CHECK(s == NULL);
  CHECK_CONTAINS(err.message, "features_only");
  tdm_pipeline_free(p);
  CHECK_INT(tdm_pipeline_open(path, NULL, &p, &err), TDM_OK);
  CHECK_INT(tdm_state_open(p, NULL, &s, &err), TDM_OK);
  CHECK_INT(tdm_state_process(s, "{}", 2, 0, NULL, NULL, &err), TDM_EINVAL);
  CHECK_INT(tdm_state_process(NULL, "{}", 2, 0, NULL, NULL, &err),
            TDM_EINVAL);
  CHECK_INT(tdm_pipeline_batch(p, NULL, "x.csv", NULL, NULL, &err),
            TDM_EINVAL);
  tdm_state_free(s);
  tdm_pipeline_free(p);
  remove_tree(dir);
  return 0;
}

TEST(api_state_answers_as_defined) {
  char dir[64], path[96];
  CHECK(make_pipeline_dir(dir, path) == 0);
  tdm_pipeline_options opt = {0};
  opt.now_ms = 20000000; /* events after 20000000 + 1h are "future" */
  tdm_pipeline *p;
  tdm_state *s;
  tdm_error err;
  CHECK_INT(tdm_pipeline_open(path, &opt, &p, &err), TDM_OK);
  CHECK_STR(tdm_pipeline_name(p), "t");
  CHECK_INT(tdm_pipeline_num_features(p), 2);
  CHECK_STR(tdm_pipeline_feature_name(p, 1), "total");
  CHECK(tdm_pipeline_feature_name(p, 2) == NULL);
  CHECK_INT(tdm_pipeline_num_fields(p), 4);
  CHECK_STR(tdm_pipeline_field_type(p, 2), "time");
  CHECK(tdm_pipeline_model(p) != NULL);
  CHECK_INT(tdm_state_open(p, NULL, &s, &err), TDM_OK);
  const char *answer;
  size_t len;
  const char *e1 = "{\"id\":\"a1\",\"k\":\"x\",\"ts\":1000000,\"v\":4}";
  CHECK_INT(tdm_state_process(s, e1, strlen(e1), 0, &answer, &len, &err),
            TDM_OK);
  CHECK_INT(len, strlen(answer));
  CHECK(member_number(answer, "score") == 1 + 0.5 * 1 + 0.25 * 4);
  CHECK_CONTAINS(answer, "\"decision\":\"low\"");
  const char *e2 = "{\"id\":\"a2\",\"k\":\"x\",\"ts\":1600000,\"v\":2}";
  CHECK_INT(tdm_state_process(s, e2, strlen(e2), TDM_PROCESS_EXPLAIN, &answer,
                              NULL, &err),
            TDM_OK);
  CHECK(member_number(answer, "score") == 1 + 0.5 * 2 + 0.25 * 6);
  CHECK(member_number(answer, "n_1h") == 2);
  CHECK_CONTAINS(answer, "\"decision\":\"high\"");
  /* The same id again: the first answer repeats, nothing is applied. */
  const char *again = "{\"id\":\"a2\",\"k\":\"x\",\"ts\":1700000,\"v\":9}";
  CHECK_INT(tdm_state_process(s, again, strlen(again), 0, &answer, NULL, &err),
            TDM_OK);
  CHECK_CONTAINS(answer, "\"duplicate\":true");
  CHECK(member_number(answer, "score") == 1 + 0.5 * 2 + 0.25 * 6);
  /* An array: the bad entry answers its error, the others are applied. */
  const char *arr = "[{\"id\":\"b1\",\"k\":\"y\",\"ts\":1600000,\"v\":1},"
                    "{\"id\":\"b2\",\"k\":\"y\",\"ts\":\"soon\",\"v\":1},"
                    "{\"id\":\"b3\",\"k\":\"y\",\"ts\":1600001,\"v\":2}]";
  CHECK_INT(tdm_state_process(s, arr, strlen(arr), 0, &answer, NULL, &err),
            TDM_OK);
  CHECK(answer[0] == '[');
  CHECK_CONTAINS(answer, "{\"error\":");
  CHECK_CONTAINS(answer, "\"score\":2.75,"); /* 1 + 0.5*2 + 0.25*3 */
  /* A body that is not JSON, an event far ahead of the fixed clock, an
   * event older than the dedupe horizon: each its own status, its answer
   * the endpoint's error object, no state changed. */
  CHECK_INT(tdm_state_process(s, "{\"k\":", 5, 0, &answer, NULL, &err),
            TDM_EPARSE);
  CHECK_CONTAINS(answer, "{\"error\":");
  CHECK_CONTAINS(err.message, "request:1:");
  const char *future = "{\"id\":\"f\",\"k\":\"x\",\"ts\":30000000,\"v\":1}";
  CHECK_INT(tdm_state_process(s, future, strlen(future), 0, &answer, NULL,
                              &err),
            TDM_EFUTURE);
  CHECK_CONTAINS(answer, "\"reason\":\"future\"");
  const char *newer = "{\"id\":\"n\",\"k\":\"z\",\"ts\":10000000,\"v\":1}";
  CHECK_INT(tdm_state_process(s, newer, strlen(newer), 0, &answer, NULL, &err),
            TDM_OK);
  const char *old = "{\"id\":\"o\",\"k\":\"z\",\"ts\":1000,\"v\":1}";
  CHECK_INT(tdm_state_process(s, old, strlen(old), 0, &answer, NULL, &err),
            TDM_ETOOLATE);
  CHECK_CONTAINS(answer, "\"reason\":\"too_late\"");
  const char *missing = "{\"id\":\"m\",\"ts\":1600000,\"v\":1}";
  CHECK(tdm_state_process(s, missing, strlen(missing), 0, &answer, NULL,
                          &err) < 0);
  CHECK_CONTAINS(err.message, "k");
  /* Entity x still holds exactly a1 and a2. */
  const char *e3 = "{\"id\":\"a3\",\"k\":\"x\",\"ts\":1600002,\"v\":0}";
  CHECK_INT(tdm_state_process(s, e3, strlen(e3), 0, &answer, NULL, &err),
            TDM_OK);
  CHECK(member_number(answer, "score") == 1 + 0.5 * 3 + 0.25 * 6);
  tdm_state_free(s);
  tdm_pipeline_free(p);
  remove_tree(dir);
  return 0;
}

/* A seeded stream over a few entities, times increasing per entity. */
typedef struct ref_event {
  char id[24], k[24];
  long long ts;
  int v;
} ref_event;

static void make_events(ref_event *e, size_t n, unsigned seed) {
  long long t[5] = {0};
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    int k = (int)((seed >> 16) % 5);
    t[k] += 1000 + (long long)((seed >> 8) % 2400000); /* up to 40 min */
    snprintf(e[i].id, sizeof e[i].id, "e%u", (unsigned)i);
    snprintf(e[i].k, sizeof e[i].k, "k%d", k);
    e[i].ts = 1700000000000LL + t[k];
    e[i].v = (int)((seed >> 4) % 200) - 50;
  }
}

/* The reference score of event i: count in (t - 1h, t] and the sum of v
 * over the entity's events so far, through the model's arithmetic. */
static double reference_score(const ref_event *e, size_t i) {
  double n = 0, total = 0;
  for (size_t j = 0; j <= i; j++) {
    if (strcmp(e[j].k, e[i].k) != 0) continue;
    total += e[j].v;
    if (e[j].ts > e[i].ts - 3600000) n++;
  }
  return 1 + 0.5 * n + 0.25 * total;
}

/* Writes the events as a CSV file with a header: 0, or -1. */
static int write_events_csv(const char *path, const ref_event *ev, size_t n) {
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  fputs("id,k,ts,v\n", f);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s,%s,%lld,%d\n", ev[i].id, ev[i].k, ev[i].ts, ev[i].v);
  return fclose(f) == 0 ? 0 : -1;
}

static int process_one(tdm_state *s, const ref_event *e, char *copy,
                       size_t cap) {
  char body[160];
  int n = snprintf(body, sizeof body,
                   "{\"id\":\"%s\",\"k\":\"%s\",\"ts\":%lld,\"v\":%d}", e->id,
                   e->k, e->ts, e->v);
  const char *answer;
  size_t len;
  tdm_error err;
  int rc = tdm_state_process(s, body, (size_t)n, 0, &answer, &len, &err);
  if (rc != TDM_OK) {
    fprintf(stderr, "process: %s\n", err.message);
    return rc;
  }
  if (len >= cap) return TDM_ENOMEM;
  memcpy(copy, answer, len + 1);
  return TDM_OK;
}

TEST(api_durable_state_continues_after_reopen) {
  enum { N = 300 };
  char dir[64], path[96], state_dir[128];
  CHECK(make_pipeline_dir(dir, path) == 0);
  snprintf(state_dir, sizeof state_dir, "%s/state", dir);
  static ref_event ev[N];
  make_events(ev, N, 19);
  tdm_pipeline *p;
  tdm_state *s;
  tdm_error err;
  CHECK_INT(tdm_pipeline_open(path, NULL, &p, &err), TDM_OK);
  char answer[512];
  for (size_t i = 0; i < N; i++) {
    /* Reopen the directory twice along the way: the state continues. */
    if (i == 0 || i == N / 3 || i == 2 * N / 3) {
      if (i > 0) tdm_state_free(s);
      if (tdm_state_open(p, state_dir, &s, &err) != TDM_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
      }
    }
    CHECK_INT(process_one(s, &ev[i], answer, sizeof answer), TDM_OK);
    double want = reference_score(ev, i);
    if (member_number(answer, "score") != want) {
      fprintf(stderr, "event %zu: %s, expected score %.17g\n", i, answer,
              want);
      return 1;
    }
  }
  tdm_state_free(s);
  tdm_pipeline_free(p);
  remove_tree(dir);
  return 0;
}

/*
 * The library reads no environment variable: what the CLI takes from
 * TANDEM_LMDB_MAP_SIZE and TANDEM_CRASH_AT reaches the library only as an
 * option (or an armed crash point), so a program embedding it is not
 * steered by its environment, and two pipelines in one process may open
 * their stores differently. Before, the variables below made the durable
 * state fail to open (a map size that is not one) and the batch run
 * SIGKILL its own process (a crash point).
 */
TEST(api_store_options_not_environment) {
  enum { N = 40 };
  char dir[64], path[96], state_a[128], state_b[128], in[128], out[128];
  CHECK(make_pipeline_dir(dir, path) == 0);
  snprintf(state_a, sizeof state_a, "%s/state-a", dir);
  snprintf(state_b, sizeof state_b, "%s/state-b", dir);
  snprintf(in, sizeof in, "%s/events.csv", dir);
  snprintf(out, sizeof out, "%s/out.jsonl", dir);
  static ref_event ev[N];
  make_events(ev, N, 23);
  CHECK(write_events_csv(in, ev, N) == 0);
  /* Each test runs in its own process: these die with it. */
  CHECK(setenv("TANDEM_LMDB_MAP_SIZE", "not-a-size", 1) == 0);
  CHECK(setenv("TANDEM_CRASH_AT", "batch-output-renamed", 1) == 0);

  tdm_pipeline *plain, *small, *bad;
  tdm_error err;
  CHECK_INT(tdm_pipeline_open(path, NULL, &plain, &err), TDM_OK);
  tdm_pipeline_options small_opt = {0};
  small_opt.lmdb_map_size = (size_t)16 << 20;
  CHECK_INT(tdm_pipeline_open(path, &small_opt, &small, &err), TDM_OK);
  tdm_pipeline_options bad_opt = {0};
  bad_opt.lmdb_map_size = 1000; /* under LMDB's 1 MiB floor */
  CHECK_INT(tdm_pipeline_open(path, &bad_opt, &bad, &err), TDM_OK);

  /* The option, not the environment, decides: a map too small is refused
   * when the store opens, naming it, and leaves no directory behind. */
  tdm_state *s;
  CHECK_INT(tdm_state_open(bad, state_b, &s, &err), TDM_EINVAL);
  CHECK(s == NULL);
  CHECK_CONTAINS(err.message, "map size 1000");
  CHECK(access(state_b, F_OK) != 0);

  /* The default and a 16 MiB map open and answer as the definition says,
   * whatever TANDEM_LMDB_MAP_SIZE holds. */
  tdm_pipeline *both[2] = {plain, small};
  for (int w = 0; w < 2; w++) {
    const char *state_dir = w == 0 ? state_a : state_b;
    if (tdm_state_open(both[w], state_dir, &s, &err) != TDM_OK) {
      fprintf(stderr, "state %d: %s\n", w, err.message);
      return 1;
    }
    char answer[512];
    for (size_t i = 0; i < N; i++) {
      CHECK_INT(process_one(s, &ev[i], answer, sizeof answer), TDM_OK);
      CHECK(member_number(answer, "score") == reference_score(ev, i));
    }
    tdm_state_free(s);
  }

  /* No crash point is armed by the environment: the batch run passes
   * batch-output-renamed and finishes. */
  tdm_batch_stats stats;
  CHECK_INT(tdm_pipeline_batch(plain, in, out, NULL, &stats, &err), TDM_OK);
  CHECK_INT(stats.written, N);
  tdm_pipeline_free(bad);
  tdm_pipeline_free(small);
  tdm_pipeline_free(plain);
  remove_tree(dir);
  return 0;
}

/*
 * tdm_model_use_kernel: the benchmarks' way to compare kernels through the
 * public API. Every kernel the CPU has gives the same bits as the
 * reference kernel (scalar) on the same rows, and so does "reference"
 * (the layout off); a name that is no kernel is TDM_EINVAL and changes
 * nothing.
 */
TEST(api_model_use_kernel) {
  const char *path = "tests/fixtures/xgboost/credit_data_binary.model.json";
  tdm_model *reference, *model;
  tdm_error err;
  CHECK_INT(tdm_model_load(path, &reference, &err), TDM_OK);
  CHECK_INT(tdm_model_use_kernel(reference, "scalar", &err), TDM_OK);
  tdm_model_info info;
  CHECK_INT(tdm_model_get_info(reference, &info), TDM_OK);
  CHECK(strcmp(info.kernel, "scalar") == 0);
  CHECK(info.layout_bytes > 0);
  CHECK_INT(tdm_model_use_kernel(reference, "avx9", &err), TDM_EINVAL);
  CHECK_CONTAINS(err.message, "avx9");
  CHECK_INT(tdm_model_get_info(reference, &info), TDM_OK);
  CHECK(strcmp(info.kernel, "scalar") == 0);
  enum { ROWS = 300 };
  size_t nf = info.num_features;
  static float rows[ROWS * 64];
  CHECK(nf <= 64);
  unsigned seed = 41;
  for (size_t i = 0; i < ROWS * nf; i++) {
    seed = seed * 1103515245u + 12345u;
    /* About one cell in eight missing, the rest spread over each side of
     * typical split values. */
    rows[i] = (seed >> 13) % 8 == 0 ? NAN
                                    : (float)((int)(seed >> 16) % 20000) / 7.0f -
                                          900.0f;
  }
  static double want[ROWS], got[ROWS];
  CHECK_INT(tdm_model_predict_float32(reference, rows, ROWS, 0, want), TDM_OK);
  /* "reference" turns the layout off: the reference walk, same bits. */
  const char *kernels[] = {"scalar", "avx2", "avx512", "reference"};
  for (int k = 0; k < 4; k++) {
    CHECK_INT(tdm_model_load(path, &model, &err), TDM_OK);
    int rc = tdm_model_use_kernel(model, kernels[k], &err);
    CHECK(rc == TDM_OK || rc == TDM_EUNSUPPORTED);
    if (k == 3) {
      CHECK_INT(rc, TDM_OK);
      CHECK_INT(tdm_model_get_info(model, &info), TDM_OK);
      CHECK(strcmp(info.kernel, "reference") == 0);
      CHECK_INT((int)info.layout_bytes, 0);
    }
    CHECK_INT(tdm_model_predict_float32(model, rows, ROWS, 0, got), TDM_OK);
    CHECK(memcmp(want, got, sizeof want) == 0);
    tdm_model_free(model);
  }
  /* "reference" is the plain tree walk the layout is checked against:
   * the same bits, named so by tdm_model_info, and for good. */
  CHECK_INT(tdm_model_load(path, &model, &err), TDM_OK);
  CHECK_INT(tdm_model_use_kernel(model, "reference", &err), TDM_OK);
  CHECK_INT(tdm_model_get_info(model, &info), TDM_OK);
  CHECK(strcmp(info.kernel, "reference") == 0);
  CHECK_INT(tdm_model_predict_float32(model, rows, ROWS, 0, got), TDM_OK);
  CHECK(memcmp(want, got, sizeof want) == 0);
  CHECK_INT(tdm_model_use_kernel(model, "scalar", &err), TDM_EUNSUPPORTED);
  tdm_model_free(model);
  tdm_model_free(reference);
  return 0;
}

TEST(api_batch_equals_process) {
  enum { N = 400 };
  char dir[64], path[96], in[128], out[128];
  CHECK(make_pipeline_dir(dir, path) == 0);
  static ref_event ev[N];
  make_events(ev, N, 7);
  snprintf(in, sizeof in, "%s/events.csv", dir);
  snprintf(out, sizeof out, "%s/out.jsonl", dir);
  CHECK(write_events_csv(in, ev, N) == 0);
  tdm_pipeline *p;
  tdm_state *s;
  tdm_error err;
  CHECK_INT(tdm_pipeline_open(path, NULL, &p, &err), TDM_OK);
  /* An output that is the input, or the pipeline file, is refused before
   * anything is written, and the input stays as it was (before, the run
   * replaced it with its output). So are a rejects file or a manifest
   * that would land on it. */
  {
    static char before[1 << 16], after[1 << 16];
    FILE *g = fopen(in, "r");
    CHECK(g != NULL);
    size_t before_len = fread(before, 1, sizeof before, g);
    fclose(g);
    CHECK(before_len > 0 && before_len < sizeof before);
    CHECK_INT(tdm_pipeline_batch(p, in, in, NULL, NULL, &err), TDM_EINVAL);
    CHECK_CONTAINS(err.message, "the output");
    CHECK_CONTAINS(err.message, "the same file as the input");
    CHECK_INT(tdm_pipeline_batch(p, in, path, NULL, NULL, &err), TDM_EINVAL);
    CHECK_CONTAINS(err.message, "the same file as the pipeline");
    tdm_batch_options onto = {0};
    onto.rejects_path = in;
    CHECK_INT(tdm_pipeline_batch(p, in, out, &onto, NULL, &err), TDM_EINVAL);
    CHECK_CONTAINS(err.message, "the rejects file");
    CHECK(access(out, F_OK) != 0);
    g = fopen(in, "r");
    CHECK(g != NULL);
    size_t after_len = fread(after, 1, sizeof after, g);
    fclose(g);
    CHECK(after_len == before_len && memcmp(before, after, after_len) == 0);
  }
  /* A missing input fails and leaves no output behind. */
  char none[128];
  snprintf(none, sizeof none, "%s/none.csv", dir);
  CHECK(tdm_pipeline_batch(p, none, out, NULL, NULL, &err) != TDM_OK);
  CHECK_CONTAINS(err.message, "none.csv");
  CHECK(access(out, F_OK) != 0);
  tdm_batch_options bo = {0};
  bo.threads = 3;
  tdm_batch_stats stats;
  CHECK_INT(tdm_pipeline_batch(p, in, out, &bo, &stats, &err), TDM_OK);
  CHECK_INT(stats.events, N);
  CHECK_INT(stats.written, N);
  CHECK_INT(stats.rejected, 0);
  CHECK_INT(tdm_state_open(p, NULL, &s, &err), TDM_OK);
  FILE *f = fopen(out, "r");
  CHECK(f != NULL);
  char line[512], answer[512];
  for (size_t i = 0; i < N; i++) {
    CHECK(fgets(line, sizeof line, f) != NULL);
    line[strcspn(line, "\n")] = 0;
    CHECK_INT(process_one(s, &ev[i], answer, sizeof answer), TDM_OK);
    /* batch writes the time as read from the file (text); the JSON body
     * gave it as a number: the rest of the line is the same bytes. */
    CHECK(member_number(line, "score") == reference_score(ev, i));
    CHECK_STR(strstr(line, "\"score\""), strstr(answer, "\"score\""));
  }
  CHECK(fgets(line, sizeof line, f) == NULL);
  fclose(f);
  tdm_state_free(s);
  tdm_pipeline_free(p);
  remove_tree(dir);
  return 0;
}

/* Reads a whole file into buf (NUL-terminated); its length, or -1. */
static long slurp(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = '\0';
  return (long)n;
}

/* tdm_pipeline_batch_rows over cells in memory gives the same output
 * bytes as tdm_pipeline_batch over a CSV file with the same header and
 * cells, for 1 and 3 threads, and every score equals the reference. The
 * columns come in another order than the pipeline's fields, with one
 * that is no field; the rows hide what a CSV file must quote (an id with
 * a comma and a quote, a newline) and rows that must be rejected (a
 * value that is no number, a missing and an empty entity), which the
 * rejects file names by row number. Names without the entity's column
 * are refused as such a header is, and nothing is written. */
TEST(api_batch_rows_equals_file) {
  enum { N = 300, BAD = 3, COLS = 5 };
  static const char *const columns[COLS] = {"v", "note", "ts", "id", "k"};
  static const char *const bad[BAD][4] = {
      /* id, k, ts, v */
      {"bad1", "k1", "1700000000500", "oops"},
      {"bad2", NULL, "1700000000600", "1"},
      {"bad3", "", "1700000000700", "2"},
  };
  static const size_t bad_at[BAD] = {0, 150, 299}; /* before event i */
  char dir[64], path[96], in[128], out_file[128], out_rows[128];
  CHECK(make_pipeline_dir(dir, path) == 0);
  static ref_event ev[N];
  make_events(ev, N, 11);
  snprintf(ev[7].id, sizeof ev[7].id, "e7,\"quoted\"");
  snprintf(ev[8].id, sizeof ev[8].id, "e8\nsecond line");
  tdm_pipeline *p;
  tdm_error err;
  CHECK_INT(tdm_pipeline_open(path, NULL, &p, &err), TDM_OK);
  static char text[N][2][24];
  static const char *cells[(N + BAD) * COLS];
  size_t rows = 0, b = 0, bad_row[BAD];
  snprintf(in, sizeof in, "%s/events.csv", dir);
  FILE *f = fopen(in, "w");
  CHECK(f != NULL);
  fputs("v,note,ts,id,k\n", f);
  for (size_t i = 0; i <= N; i++) {
    while (b < BAD && bad_at[b] == i) {
      const char *row[COLS] = {bad[b][3], "x", bad[b][2], bad[b][0],
                               bad[b][1]};
      memcpy(&cells[rows * COLS], row, sizeof row);
      fprintf(f, "%s,x,%s,%s,%s\n", bad[b][3], bad[b][2], bad[b][0],
              bad[b][1] ? bad[b][1] : "");
      bad_row[b++] = ++rows;
    }
    if (i == N) break;
    snprintf(text[i][0], sizeof text[i][0], "%lld", ev[i].ts);
    snprintf(text[i][1], sizeof text[i][1], "%d", ev[i].v);
    const char *row[COLS] = {text[i][1], NULL, text[i][0], ev[i].id,
                             ev[i].k};
    memcpy(&cells[rows * COLS], row, sizeof row);
    /* The file quotes what CSV must; the cells hold the raw text. */
    fprintf(f, "%d,,%lld,\"", ev[i].v, ev[i].ts);
    for (const char *ch = ev[i].id; *ch; ch++) {
      if (*ch == '"') fputc('"', f);
      fputc(*ch, f);
    }
    fprintf(f, "\",%s\n", ev[i].k);
    rows++;
  }
  fclose(f);
  CHECK_INT(rows, N + BAD);
  snprintf(out_file, sizeof out_file, "%s/file.jsonl", dir);
  snprintf(out_rows, sizeof out_rows, "%s/rows.jsonl", dir);
  static char want[1 << 17], got[1 << 17], rejects[1 << 14];
  for (int threads = 1; threads <= 3; threads += 2) {
    tdm_batch_options bo = {0};
    bo.threads = threads;
    tdm_batch_stats stats;
    CHECK_INT(tdm_pipeline_batch(p, in, out_file, &bo, &stats, &err), TDM_OK);
    CHECK_INT(stats.rejected, BAD);
    memset(&stats, 0, sizeof stats);
    CHECK_INT(tdm_pipeline_batch_rows(p, columns, COLS, cells, rows, out_rows,
                                      &bo, &stats, &err),
              TDM_OK);
    CHECK_INT(stats.events, N + BAD);
    CHECK_INT(stats.written, N);
    CHECK_INT(stats.rejected, BAD);
    CHECK(slurp(out_file, want, sizeof want) > 0);
    CHECK(slurp(out_rows, got, sizeof got) > 0);
    CHECK_STR(got, want);
    /* Every score from the rows run is the reference's. */
    char *line = got;
    for (size_t i = 0; i < N; i++) {
      char *end = strchr(line, '\n');
      CHECK(end != NULL);
      *end = '\0';
      CHECK(member_number(line, "score") == reference_score(ev, i));
      line = end + 1;
    }
    CHECK_STR(line, "");
    char rejects_path[160];
    snprintf(rejects_path, sizeof rejects_path, "%s.rejects.jsonl", out_rows);
    CHECK(slurp(rejects_path, rejects, sizeof rejects) > 0);
    for (size_t k = 0; k < BAD; k++) {
      char at[32];
      snprintf(at, sizeof at, "{\"line\":%zu,", bad_row[k]);
      CHECK_CONTAINS(rejects, at);
    }
    CHECK_CONTAINS(rejects, "oops");
  }
  /* No rows: an empty output. */
  tdm_batch_stats stats;
  CHECK_INT(tdm_pipeline_batch_rows(p, columns, COLS, NULL, 0, out_rows, NULL,
                                    &stats, &err),
            TDM_OK);
  CHECK_INT(stats.events, 0);
  CHECK_INT(slurp(out_rows, got, sizeof got), 0);
  /* Refused before anything is written: cells missing for rows, and
   * names without the entity's column (as such a CSV header is). */
  char other[160];
  snprintf(other, sizeof other, "%s/other.jsonl", dir);
  CHECK_INT(tdm_pipeline_batch_rows(p, columns, COLS, NULL, 2, other, NULL,
                                    NULL, &err),
            TDM_EINVAL);
  CHECK(access(other, F_OK) != 0);
  CHECK(tdm_pipeline_batch_rows(p, columns, COLS - 1, cells, 1, other, NULL,
                                NULL, &err) != TDM_OK);
  CHECK_CONTAINS(err.message, "rows:0: the header has no column \"k\"");
  CHECK(access(other, F_OK) != 0);
  tdm_pipeline_free(p);
  remove_tree(dir);
  return 0;
}

/* Two pipelines, each with a durable state and a batch run, used from two
 * threads at once: each thread's answers equal the reference. Under
 * ThreadSanitizer (make tsan) this is the test that the library keeps no
 * unsynchronised process-wide state on these paths (the write-ahead log's
 * CRC table, the registry of atomic files' temporary paths). */
typedef struct side_job {
  const char *path;
  const char *dir;
  unsigned seed;
  int failed;
} side_job;

static void *side_run(void *arg) {
  side_job *job = arg;
  enum { N = 200 };
  ref_event *ev = calloc(N, sizeof *ev);
  tdm_pipeline *p = NULL;
  tdm_state *s = NULL;
  tdm_error err;
  char state_dir[160], in[160], out[160];
  snprintf(state_dir, sizeof state_dir, "%s/state%u", job->dir, job->seed);
  snprintf(in, sizeof in, "%s/events%u.csv", job->dir, job->seed);
  snprintf(out, sizeof out, "%s/out%u.csv", job->dir, job->seed);
  job->failed = ev == NULL || tdm_pipeline_open(job->path, NULL, &p, &err) ||
                tdm_state_open(p, state_dir, &s, &err);
  if (!job->failed) make_events(ev, N, job->seed);
  FILE *f = job->failed ? NULL : fopen(in, "w");
  if (f != NULL) {
    fputs("id,k,ts,v\n", f);
    for (size_t i = 0; i < N; i++)
      fprintf(f, "%s,%s,%lld,%d\n", ev[i].id, ev[i].k, ev[i].ts, ev[i].v);
    fclose(f);
  }
  tdm_batch_options bo = {0};
  bo.threads = 2;
  if (!job->failed)
    job->failed = f == NULL || tdm_pipeline_batch(p, in, out, &bo, NULL, &err);
  char answer[512];
  for (size_t i = 0; i < N && !job->failed; i++)
    job->failed = process_one(s, &ev[i], answer, sizeof answer) != TDM_OK ||
                  member_number(answer, "score") != reference_score(ev, i);
  tdm_state_free(s);
  tdm_pipeline_free(p);
  free(ev);
  return NULL;
}

TEST(api_two_pipelines_in_two_threads) {
  char dir[64], path[96];
  CHECK(make_pipeline_dir(dir, path) == 0);
  side_job jobs[2] = {{path, dir, 3, 0}, {path, dir, 4, 0}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    CHECK(pthread_create(&t[i], NULL, side_run, &jobs[i]) == 0);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  CHECK_INT(jobs[0].failed, 0);
  CHECK_INT(jobs[1].failed, 0);
  remove_tree(dir);
  return 0;
}

/* The reference of the scoring test's linear model, in the documented
 * order (docs/linear-models.md): m = intercept, then m += coefficient *
 * value per feature in the file's order; a missing b is 2. */
static double score_reference(double a, int b_missing, double b) {
  double m = 1;
  m += 0.5 * a;
  m += -0.375 * (b_missing ? 2 : b);
  return m;
}

enum { SCORE_ROWS = 500 };

/* A scoring test's files: the linear model of score_reference and a CSV
 * input of seeded rows (columns b, id, a; about one b in eight missing),
 * with the values it holds. */
typedef struct score_case {
  char dir[64], model[128], in[128];
  double a[SCORE_ROWS], b[SCORE_ROWS];
  int b_missing[SCORE_ROWS];
} score_case;

/* Writes the case's files into a fresh directory: 0, or -1. */
static int make_score_case(score_case *c, unsigned seed) {
  snprintf(c->dir, sizeof c->dir, "/tmp/tdm-api-XXXXXX");
  if (tdm_test_mkdtemp(c->dir) == NULL) return -1;
  snprintf(c->model, sizeof c->model, "%s/model.json", c->dir);
  snprintf(c->in, sizeof c->in, "%s/rows.csv", c->dir);
  FILE *f = fopen(c->model, "w");
  if (f == NULL) return -1;
  fputs(
      "{\"format\": \"tandem-linear\", \"link\": \"identity\", "
      "\"intercept\": 1, \"coefficients\": {\"a\": 0.5, \"b\": -0.375}, "
      "\"missing\": {\"b\": 2}}\n",
      f);
  if (fclose(f) != 0) return -1;
  f = fopen(c->in, "w");
  if (f == NULL) return -1;
  fputs("b,id,a\n", f);
  for (size_t i = 0; i < SCORE_ROWS; i++) {
    seed = seed * 1103515245u + 12345u;
    c->a[i] = ((int)(seed >> 8) % 200001 - 100000) / 64.0;
    c->b[i] = ((int)(seed >> 4) % 30001 - 15000) / 1024.0;
    c->b_missing[i] = (seed >> 20) % 8 == 0;
    if (c->b_missing[i])
      fprintf(f, ",r%zu,%.17g\n", i, c->a[i]);
    else
      fprintf(f, "%.17g,r%zu,%.17g\n", c->b[i], i, c->a[i]);
  }
  return fclose(f) == 0 ? 0 : -1;
}

/* tdm_score_file scores a CSV file whose columns come in another order
 * than the model's, with a column kept and cells missing, and every score
 * is the reference's double, bit for bit; 3 threads and 3 shards (their
 * outputs concatenated) give the same bytes as 1 thread. Outputs that
 * would replace the model or the input (a manifest by a hard link
 * included) are refused before anything is written; options no parser has
 * checked are refused as such; an input the model cannot score (a missing
 * a, which the model makes an error) fails naming the file and leaves no
 * output. */
TEST(api_score_file_matches_reference) {
  enum { N = SCORE_ROWS };
  static score_case c;
  CHECK(make_score_case(&c, 19) == 0);
  char out[128], part[128], hard[160];
  const char *dir = c.dir, *model = c.model, *in = c.in;
  const double *a = c.a, *b = c.b;
  const int *b_missing = c.b_missing;
  snprintf(out, sizeof out, "%s/scores.csv", dir);

  tdm_error err;
  tdm_score_stats stats;
  const char *keep[] = {"id"};
  tdm_score_options so = {0};
  so.threads = 1;
  so.keep = keep;
  so.num_keep = 1;
  CHECK_INT(tdm_score_file(model, in, out, &so, &stats, &err), TDM_OK);
  CHECK_INT(stats.rows, N);
  static char whole[1 << 16], other[1 << 16];
  long whole_len = slurp(out, whole, sizeof whole);
  CHECK(whole_len > 0 && whole_len < (long)sizeof whole - 1);
  char *line = whole;
  CHECK(strncmp(line, "id,score\n", 9) == 0);
  line += 9;
  for (size_t i = 0; i < N; i++) {
    char id[16];
    snprintf(id, sizeof id, "r%zu,", i);
    CHECK(strncmp(line, id, strlen(id)) == 0);
    char *end;
    double got = strtod(line + strlen(id), &end);
    CHECK(*end == '\n');
    CHECK(got == score_reference(a[i], b_missing[i], b[i]));
    line = end + 1;
  }
  CHECK(*line == '\0');

  so.threads = 3;
  CHECK_INT(tdm_score_file(model, in, out, &so, NULL, &err), TDM_OK);
  CHECK(slurp(out, other, sizeof other) == whole_len);
  CHECK(memcmp(whole, other, (size_t)whole_len) == 0);
  /* Three shards, concatenated in order, are the whole output. */
  size_t joined = 0;
  so.shard_count = 3;
  for (unsigned s = 0; s < 3; s++) {
    so.shard_index = s;
    snprintf(part, sizeof part, "%s/part%u.csv", dir, s);
    CHECK_INT(tdm_score_file(model, in, part, &so, NULL, &err), TDM_OK);
    long n = slurp(part, other + joined, sizeof other - joined);
    CHECK(n >= 0);
    joined += (size_t)n;
  }
  CHECK_INT(joined, whole_len);
  CHECK(memcmp(whole, other, joined) == 0);

  /* Options a command line would have refused, and outputs onto inputs:
   * refused, with nothing written and the input as it was. */
  static char input[1 << 16], after[1 << 16];
  long input_len = slurp(in, input, sizeof input);
  CHECK(input_len > 0);
  char fresh[128];
  snprintf(fresh, sizeof fresh, "%s/fresh.csv", dir);
  tdm_score_options bad = {0};
  bad.shard_index = 3;
  bad.shard_count = 3;
  CHECK_INT(tdm_score_file(model, in, fresh, &bad, NULL, &err), TDM_EINVAL);
  CHECK_CONTAINS(err.message, "shard");
  bad = (tdm_score_options){0};
  bad.shard_index = 1; /* of one part: the whole input */
  CHECK_INT(tdm_score_file(model, in, fresh, &bad, NULL, &err), TDM_EINVAL);
  bad = (tdm_score_options){0};
  bad.margin = 1;
  bad.contribs = 1;
  CHECK_INT(tdm_score_file(model, in, fresh, &bad, NULL, &err), TDM_EINVAL);
  CHECK_CONTAINS(err.message, "margin");
  bad = (tdm_score_options){0};
  bad.contribs = 3;
  CHECK_INT(tdm_score_file(model, in, fresh, &bad, NULL, &err), TDM_EINVAL);
  CHECK_INT(tdm_score_file(model, NULL, fresh, NULL, NULL, &err), TDM_EINVAL);
  CHECK_INT(tdm_score_file(model, in, in, NULL, NULL, &err), TDM_EINVAL);
  CHECK_CONTAINS(err.message, "the same file as the input");
  CHECK_INT(tdm_score_file(model, in, model, NULL, NULL, &err), TDM_EINVAL);
  CHECK_CONTAINS(err.message, "the same file as the model");
  snprintf(hard, sizeof hard, "%s.manifest.json", fresh);
  CHECK(link(in, hard) == 0);
  CHECK_INT(tdm_score_file(model, in, fresh, NULL, NULL, &err), TDM_EINVAL);
  CHECK_CONTAINS(err.message, "the manifest");
  CHECK(unlink(hard) == 0);
  CHECK(access(fresh, F_OK) != 0);
  CHECK(slurp(in, after, sizeof after) == input_len);
  CHECK(memcmp(input, after, (size_t)input_len) == 0);

  /* A row without a: the model makes that an error, naming the line. */
  FILE *f = fopen(in, "a");
  CHECK(f != NULL);
  fputs("1,late,\n", f);
  CHECK(fclose(f) == 0);
  CHECK(tdm_score_file(model, in, fresh, NULL, NULL, &err) != TDM_OK);
  CHECK_CONTAINS(err.message, "rows.csv:502");
  CHECK(access(fresh, F_OK) != 0);
  remove_tree(dir);
  return 0;
}

typedef struct score_job {
  const score_case *c;
  char out[160];
  int rc;
} score_job;

static void *score_run(void *arg) {
  score_job *job = arg;
  tdm_score_options so = {0};
  so.threads = 2;
  tdm_error err;
  job->rc = tdm_score_file(job->c->model, job->c->in, job->out, &so, NULL,
                           &err);
  if (job->rc != TDM_OK) fprintf(stderr, "%s\n", err.message);
  return NULL;
}

/* Two scoring runs at once in one process, each with its own worker
 * threads (run under ThreadSanitizer by scripts/test.sh), write the same
 * bytes as a run alone. */
TEST(api_score_file_in_two_threads) {
  static score_case c;
  CHECK(make_score_case(&c, 23) == 0);
  char alone[160];
  snprintf(alone, sizeof alone, "%s/alone.csv", c.dir);
  tdm_error err;
  CHECK_INT(tdm_score_file(c.model, c.in, alone, NULL, NULL, &err), TDM_OK);
  static char want[1 << 16], got[1 << 16];
  long want_len = slurp(alone, want, sizeof want);
  CHECK(want_len > 0);
  score_job jobs[2];
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    jobs[i] = (score_job){.c = &c, .rc = -1};
    snprintf(jobs[i].out, sizeof jobs[i].out, "%s/out%d.csv", c.dir, i);
    CHECK(pthread_create(&t[i], NULL, score_run, &jobs[i]) == 0);
  }
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 2; i++) {
    CHECK_INT(jobs[i].rc, TDM_OK);
    CHECK(slurp(jobs[i].out, got, sizeof got) == want_len);
    CHECK(memcmp(want, got, (size_t)want_len) == 0);
  }
  remove_tree(c.dir);
  return 0;
}
