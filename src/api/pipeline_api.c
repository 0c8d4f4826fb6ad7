/*
 * pipeline_api.c - the public pipeline API of include/tandem.h: a thin
 * layer over the pipeline core, the live runner and the batch runner, so
 * that a program embedding tandem (the Python package, examples/embed)
 * gets the very answers `tandem serve` and `tandem batch` give, through
 * the same code. Nothing here computes a feature or formats a result.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "../batch/batch.h"
#include "../core/core.h"
#include "../core/json.h"
#include "../pipeline/pipeline.h"
#include "../serve/live.h"
#include "tandem.h"

struct tdm_pipeline {
  tdm__pipeline *p;
  char *path;  /* the runners load the file again, each for its own use */
  char *store; /* NULL: the file's store: */
  int64_t now_ms; /* TDM_NOW_WALL_CLOCK: read the clock when needed */
  int features_only;
  /* The options' store settings, their strings owned (copies). */
  tdm__store_settings settings;
};

struct tdm_state {
  const tdm_pipeline *pipeline;
  tdm__live *live;
  /* The answer of the last call. Calls are serialised by `lock` so the
   * answer a caller reads is its own until it calls again. */
  pthread_mutex_t lock;
  tdm__buf answer;
};

const char *tdm_version(void) { return TDM_VERSION; }

/* A copy of an optional string into *out: 0, or -1 out of memory. */
static int copy_optional(const char *text, const char **out) {
  *out = NULL;
  if (text == NULL) return 0;
  return (*out = tdm__strdup(text)) == NULL ? -1 : 0;
}

/* The store settings of options, every string copied: TDM_OK or
 * TDM_ENOMEM (then what was copied is freed by free_settings). */
static int copy_settings(const tdm_pipeline_options *options,
                         tdm__store_settings *s) {
  s->lmdb_map_size = options->lmdb_map_size;
  int failed = copy_optional(options->redis_password, &s->redis_password);
  failed |= copy_optional(options->redis_password_file,
                          &s->redis_password_file);
  failed |= copy_optional(options->redis_ca_file, &s->redis_ca_file);
  failed |= copy_optional(options->redis_cert_file, &s->redis_cert_file);
  failed |= copy_optional(options->redis_key_file, &s->redis_key_file);
  failed |= copy_optional(options->scratch_dir, &s->scratch_dir);
  return failed ? TDM_ENOMEM : TDM_OK;
}

static void free_settings(tdm__store_settings *s) {
  tdm__free((char *)s->redis_password);
  tdm__free((char *)s->redis_password_file);
  tdm__free((char *)s->redis_ca_file);
  tdm__free((char *)s->redis_cert_file);
  tdm__free((char *)s->redis_key_file);
  tdm__free((char *)s->scratch_dir);
}

int tdm_pipeline_open(const char *path, const tdm_pipeline_options *options,
                      tdm_pipeline **out, tdm_error *err) {
  static const tdm_pipeline_options defaults = {0};
  if (out == NULL) return tdm__fail(err, TDM_EINVAL, "no output handle");
  *out = NULL;
  if (path == NULL) return tdm__fail(err, TDM_EINVAL, "no pipeline path");
  if (options == NULL) options = &defaults;
  tdm_pipeline *pl = tdm__calloc(1, sizeof *pl);
  if (pl == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  pl->now_ms = options->now_ms == 0 ? TDM_NOW_WALL_CLOCK : options->now_ms;
  pl->features_only = options->features_only != 0;
  pl->path = tdm__strdup(path);
  pl->store = options->store ? tdm__strdup(options->store) : NULL;
  int rc = TDM_OK;
  if (pl->path == NULL || (options->store != NULL && pl->store == NULL) ||
      copy_settings(options, &pl->settings) != TDM_OK)
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  if (rc == TDM_OK)
    rc = tdm__pipeline_load(path,
                            pl->features_only ? TDM__PIPELINE_FEATURES_ONLY : 0,
                            &pl->p, err);
  if (rc != TDM_OK) {
    tdm_pipeline_free(pl);
    return rc;
  }
  *out = pl;
  return TDM_OK;
}

void tdm_pipeline_free(tdm_pipeline *pipeline) {
  if (pipeline == NULL) return;
  tdm__pipeline_free(pipeline->p);
  tdm__free(pipeline->path);
  tdm__free(pipeline->store);
  free_settings(&pipeline->settings);
  tdm__free(pipeline);
}

const char *tdm_pipeline_name(const tdm_pipeline *pipeline) {
  return tdm__pipeline_spec(pipeline->p)->name;
}

const char *tdm_pipeline_entity(const tdm_pipeline *pipeline) {
  return tdm__pipeline_spec(pipeline->p)->entity;
}

size_t tdm_pipeline_num_features(const tdm_pipeline *pipeline) {
  return tdm__pipeline_spec(pipeline->p)->num_features;
}

const char *tdm_pipeline_feature_name(const tdm_pipeline *pipeline,
                                      size_t i) {
  const tdm__spec *spec = tdm__pipeline_spec(pipeline->p);
  return i < spec->num_features ? spec->features[i].name : NULL;
}

size_t tdm_pipeline_num_fields(const tdm_pipeline *pipeline) {
  return tdm__pipeline_spec(pipeline->p)->num_fields;
}

const char *tdm_pipeline_field_name(const tdm_pipeline *pipeline, size_t i) {
  const tdm__spec *spec = tdm__pipeline_spec(pipeline->p);
  return i < spec->num_fields ? spec->fields[i].name : NULL;
}

const char *tdm_pipeline_field_type(const tdm_pipeline *pipeline, size_t i) {
  const tdm__spec *spec = tdm__pipeline_spec(pipeline->p);
  if (i >= spec->num_fields) return NULL;
  switch (spec->fields[i].type) {
    case TDM__FIELD_STRING: return "string";
    case TDM__FIELD_NUMBER: return "number";
    case TDM__FIELD_TIME: return "time";
    case TDM__FIELD_CATEGORY: return "category";
  }
  return "string";
}

const tdm_model *tdm_pipeline_model(const tdm_pipeline *pipeline) {
  return pipeline->features_only ? NULL : tdm__pipeline_model(pipeline->p);
}

int tdm_state_open(const tdm_pipeline *pipeline, const char *dir,
                   tdm_state **out, tdm_error *err) {
  if (out == NULL || pipeline == NULL)
    return tdm__fail(err, TDM_EINVAL, "no pipeline or no output handle");
  *out = NULL;
  if (pipeline->features_only)
    return tdm__fail(err, TDM_EINVAL,
                     "%s: a pipeline opened features-only has no model to "
                     "answer events with; open it without features_only",
                     pipeline->path);
  tdm_state *st = tdm__calloc(1, sizeof *st);
  if (st == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  st->pipeline = pipeline;
  pthread_mutex_init(&st->lock, NULL);
  /* The live runner is the endpoint's core: the state answers what the
   * server answers because it is the server's code, minus HTTP. */
  int rc = tdm__live_open(pipeline->path, dir, pipeline->store,
                          &pipeline->settings, &st->live, err);
  if (rc != TDM_OK) {
    tdm_state_free(st);
    return rc;
  }
  tdm__live_set_clock(st->live, pipeline->now_ms);
  *out = st;
  return TDM_OK;
}

void tdm_state_free(tdm_state *state) {
  if (state == NULL) return;
  tdm__live_close(state->live);
  tdm__buf_free(&state->answer);
  pthread_mutex_destroy(&state->lock);
  tdm__free(state);
}

/*
 * The status and message of a rejected single event, read back from the
 * endpoint's {"error": message, "reason": word} answer: tdm__live_events
 * gives only the HTTP status, and the answer is the one place the live
 * runner writes the rest. 422 is a time rule (its reason says which);
 * 500 a state that could not be made durable (or memory); any other 4xx
 * an event or body the pipeline refuses.
 */
static int answer_error(const tdm__buf *answer, unsigned http_status,
                        tdm_error *err) {
  int status = http_status == 500 ? TDM_EIO : TDM_ESCHEMA;
  const char *message = "the event was rejected";
  tdm__json_doc doc;
  int parsed = tdm__json_parse(&doc, answer->data, answer->len, "answer", 0,
                               NULL) == TDM_OK;
  if (parsed && doc.root->type == TDM__JSON_OBJECT) {
    const tdm__json *e = tdm__json_get(doc.root, "error");
    const tdm__json *reason = tdm__json_get(doc.root, "reason");
    if (e != NULL && e->type == TDM__JSON_STRING) message = e->text;
    /* The body itself is not JSON: the parser names it "request". */
    if (strncmp(message, "request:", 8) == 0) status = TDM_EPARSE;
    if (reason != NULL && reason->type == TDM__JSON_STRING)
      status = strcmp(reason->text, "future") == 0 ? TDM_EFUTURE
                                                   : TDM_ETOOLATE;
    else if (http_status == 400 &&
             strstr(message, "out of memory") != NULL)
      status = TDM_ENOMEM;
  }
  tdm__fail(err, status, "%s", message);
  if (parsed) tdm__json_doc_free(&doc);
  return status;
}

int tdm_state_process(tdm_state *state, const char *json, size_t len,
                      int flags, const char **answer, size_t *answer_len,
                      tdm_error *err) {
  if (state == NULL || answer == NULL || (json == NULL && len > 0))
    return tdm__fail(err, TDM_EINVAL, "no state, body or answer pointer");
  pthread_mutex_lock(&state->lock);
  state->answer.len = 0;
  unsigned http_status = 0;
  tdm__live_events(state->live, json ? json : "", len,
                   (flags & TDM_PROCESS_EXPLAIN) != 0, &state->answer,
                   &http_status);
  int rc = http_status == 200 ? TDM_OK
                              : answer_error(&state->answer, http_status, err);
  /* A NUL after the answer, which is not part of it, for C callers. */
  if (tdm__buf_append(&state->answer, "", 1) == TDM_OK) {
    state->answer.len--;
    *answer = state->answer.data;
  } else {
    state->answer.len = 0;
    *answer = "";
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  if (answer_len) *answer_len = state->answer.len;
  pthread_mutex_unlock(&state->lock);
  return rc;
}

/* Both batch calls: a file, or rows in memory (columns non-NULL). */
typedef struct rows_in {
  const char *const *columns;
  size_t num_columns;
  const char *const *cells;
  size_t num_rows;
} rows_in;

/*
 * TDM_EINVAL when an output of the run (out_path, its rejects file, its
 * manifest) is the pipeline file or the input file: the run replaces its
 * outputs at the end, and would destroy what it read. The CLI makes the
 * same check first with its flags' names; this one protects embedders.
 */
static int refuse_outputs_onto_inputs(const tdm_pipeline *pipeline,
                                      const char *in_path, const char *out_path,
                                      const char *rejects_path,
                                      tdm_error *err) {
  const char *inputs[] = {pipeline->path, in_path};
  const char *input_names[] = {"the pipeline", "the input"};
  char manifest[4096], rejects[4096];
  if ((size_t)snprintf(manifest, sizeof manifest, "%s.manifest.json",
                       out_path) >= sizeof manifest ||
      (size_t)snprintf(rejects, sizeof rejects, "%s.rejects.jsonl",
                       out_path) >= sizeof rejects)
    return tdm__fail(err, TDM_EINVAL, "%s: path too long", out_path);
  int rc = tdm__refuse_output_onto_input("the output", out_path, inputs,
                                         input_names, 2, err);
  if (rc == TDM_OK)
    rc = tdm__refuse_output_onto_input(
        "the rejects file", rejects_path ? rejects_path : rejects, inputs,
        input_names, 2, err);
  if (rc == TDM_OK)
    rc = tdm__refuse_output_onto_input("the manifest", manifest, inputs,
                                       input_names, 2, err);
  return rc;
}

static int run_batch(const tdm_pipeline *pipeline, const char *in_path,
                     const rows_in *rows, const char *out_path,
                     const tdm_batch_options *options, tdm_batch_stats *stats,
                     tdm_error *err) {
  static const tdm_batch_options defaults = {0};
  if (options == NULL) options = &defaults;
  tdm__batch_options opt = {0};
  opt.pipeline_path = pipeline->path;
  opt.in_path = in_path;
  if (rows != NULL) {
    opt.in_memory = 1;
    opt.columns = rows->columns;
    opt.num_columns = rows->num_columns;
    opt.cells = rows->cells;
    opt.num_rows = rows->num_rows;
  }
  if (options->num_materialize > TDM_BATCH_MAX_TABLES)
    return tdm__fail(err, TDM_EINVAL, "at most %d tables to materialize",
                     TDM_BATCH_MAX_TABLES);
  int refused = refuse_outputs_onto_inputs(pipeline, rows ? NULL : in_path,
                                           out_path, options->rejects_path,
                                           err);
  if (refused != TDM_OK) return refused;
  opt.out_path = out_path;
  opt.rejects_path = options->rejects_path;
  opt.save_state = options->save_state;
  opt.materialize = options->materialize;
  opt.num_materialize = options->num_materialize;
  opt.tags = options->tags;
  opt.num_tags = options->num_tags;
  opt.threads = options->threads;
  opt.strict = options->strict;
  opt.explain = options->explain;
  opt.features_only = pipeline->features_only;
  opt.store = pipeline->store;
  opt.store_settings = &pipeline->settings;
  opt.as_of_ms = options->as_of_ms ? *options->as_of_ms : INT64_MIN;
  if (options->now_ms != NULL)
    opt.now_ms = *options->now_ms;
  else
    opt.now_ms = pipeline->now_ms == TDM_NOW_WALL_CLOCK ? tdm__now_ms()
                                                        : pipeline->now_ms;
  tdm__batch_stats s;
  memset(&s, 0, sizeof s);
  int rc = tdm__batch_run(&opt, &s, err);
  if (stats != NULL) {
    stats->events = s.events;
    stats->written = s.written;
    stats->rejected = s.rejected;
    stats->duplicates = s.duplicates;
    stats->threads = s.threads;
    stats->seconds = s.seconds;
    stats->num_tables = 0;
    for (size_t i = 0; i < s.num_materialized && i < TDM_BATCH_MAX_TABLES;
         i++) {
      tdm_batch_table *t = &stats->tables[stats->num_tables++];
      snprintf(t->table, sizeof t->table, "%s", s.materialized[i].table);
      t->version = s.materialized[i].version;
      t->rows = s.materialized[i].rows;
      t->as_of_ms = s.materialized[i].as_of_ms;
    }
  }
  return rc;
}

int tdm_pipeline_batch(const tdm_pipeline *pipeline, const char *in_path,
                       const char *out_path, const tdm_batch_options *options,
                       tdm_batch_stats *stats, tdm_error *err) {
  if (pipeline == NULL || in_path == NULL || out_path == NULL)
    return tdm__fail(err, TDM_EINVAL, "no pipeline, input or output path");
  return run_batch(pipeline, in_path, NULL, out_path, options, stats, err);
}

int tdm_pipeline_batch_rows(const tdm_pipeline *pipeline,
                            const char *const *columns, size_t num_columns,
                            const char *const *cells, size_t num_rows,
                            const char *out_path,
                            const tdm_batch_options *options,
                            tdm_batch_stats *stats, tdm_error *err) {
  if (pipeline == NULL || out_path == NULL || columns == NULL ||
      (cells == NULL && num_rows > 0 && num_columns > 0))
    return tdm__fail(err, TDM_EINVAL,
                     "no pipeline, column names, cells or output path");
  rows_in rows = {columns, num_columns, cells, num_rows};
  return run_batch(pipeline, "rows", &rows, out_path, options, stats, err);
}
