/*
 * tandem.h - the public C API of tandem, one machine-learning scoring engine
 * that runs as a reproducible batch job or as a real-time service.
 *
 * Conventions (the same everywhere):
 *   - Handles are opaque. Whoever creates a handle frees it, and every
 *     tdm_*_free(NULL) is a no-op.
 *   - Every call that can fail returns an int status: TDM_OK (0) or a
 *     negative code from the TDM_STATUS_LIST below. Results are written
 *     through the last parameters.
 *   - Calls that can fail on user input take an optional tdm_error*, which
 *     receives a one-line message naming where the fault is: a file and a
 *     line and column, or a JSON pointer.
 *   - A loaded model is immutable and may be shared by any number of threads.
 */
#ifndef TANDEM_H
#define TANDEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TDM_VERSION "0.1.0"

/* Public functions are the only symbols libtandem.so exports: the library
 * is built with -fvisibility=hidden, and this marks what stays visible. */
#if defined(__GNUC__)
#define TDM_API __attribute__((visibility("default")))
#else
#define TDM_API
#endif

/* The library's version ("0.1.0"), which may differ from the TDM_VERSION
 * a program was compiled against when it links the shared library. The
 * string is static. */
TDM_API const char *tdm_version(void);

/* X(name, value, description). The one list of status codes. */
#define TDM_STATUS_LIST(X)                                        \
  X(TDM_OK, 0, "success")                                         \
  X(TDM_EINVAL, -1, "invalid argument")                           \
  X(TDM_EPARSE, -2, "malformed input")                            \
  X(TDM_EUNSUPPORTED, -3, "unsupported feature")                  \
  X(TDM_ESCHEMA, -4, "input does not match what the model needs") \
  X(TDM_EIO, -5, "input/output error")                            \
  X(TDM_ENOMEM, -6, "out of memory")                              \
  X(TDM_ENOTFOUND, -7, "not found")                               \
  X(TDM_EINTERNAL, -8, "internal error")                          \
  X(TDM_ETOOLATE, -9, "event older than its entity's dedupe horizon") \
  X(TDM_EFUTURE, -10, "event dated too far ahead of the clock")

enum tdm_status {
#define TDM__STATUS_ENUM(name, value, text) name = value,
  TDM_STATUS_LIST(TDM__STATUS_ENUM)
#undef TDM__STATUS_ENUM
};

/* The description of a status code. The string is static. */
TDM_API const char *tdm_strerror(int status);

/* The name of a status code ("TDM_EPARSE"). The string is static. */
TDM_API const char *tdm_status_name(int status);

/* An error report: the status and a one-line message with its location. */
typedef struct tdm_error {
  int status;
  char message[1024];
} tdm_error;

/* ---------------------------------------------------------------------- */
/* Models                                                                 */
/* ---------------------------------------------------------------------- */

typedef struct tdm_model tdm_model;

/* Where a model file came from. */
typedef enum tdm_model_format {
  TDM_FORMAT_XGBOOST_JSON = 1,
  TDM_FORMAT_LIGHTGBM_TEXT = 2,
  TDM_FORMAT_LINEAR_JSON =
      3, /* tandem's linear models (docs/linear-models.md) */
} tdm_model_format;

/*
 * Loads a model file. The format is recognised from the content. On success
 * *out holds a model that the caller frees with tdm_model_free. On failure
 * *out is NULL and err (if not NULL) says what is wrong and where.
 */
TDM_API int tdm_model_load(const char *path, tdm_model **out, tdm_error *err);

/*
 * Loads a model from memory. `name` is used in error messages only. The
 * buffer is not retained.
 */
TDM_API int tdm_model_load_buffer(const char *data, size_t size, const char *name,
                          tdm_model **out, tdm_error *err);

TDM_API void tdm_model_free(tdm_model *model);

/* Describes a loaded model. Strings stay valid as long as the model. */
typedef struct tdm_model_info {
  tdm_model_format format;
  const char *format_name;     /* "xgboost-json", "lightgbm-text" */
  const char *library_version; /* version that wrote the file, or "" */
  const char *booster;         /* "gbtree", "dart", "gbdt", "rf" */
  const char *objective;       /* "binary:logistic", ... */
  size_t num_features;
  size_t num_outputs; /* margins per row: classes for multiclass, else 1 */
  size_t num_scores;  /* columns of the transformed prediction */
  size_t num_classes; /* 0 for regression and binary models */
  size_t num_trees;
  size_t num_iterations; /* boosting rounds: trees per round x rounds */
  size_t num_nodes;      /* splits and leaves over all trees */
  size_t max_depth;      /* edges from root to deepest leaf */
  size_t num_categorical_splits;
  int float32;     /* 1 when the model scores in float32 (XGBoost) */
  char sha256[65]; /* SHA-256 of the file: the model version */
  /* The evaluator's kernel for this model ("avx512", "avx2", "scalar",
   * "bitvector" for LightGBM's default layout, or "reference" for a model
   * the fast layout does not take; docs/evaluator.md) and the bytes of its
   * fast layout (0: none). */
  const char *kernel;
  size_t layout_bytes;
} tdm_model_info;

TDM_API int tdm_model_get_info(const tdm_model *model, tdm_model_info *info);

/*
 * Keeps only the first `iterations` boosting rounds (LightGBM's
 * num_iteration, XGBoost's iteration_range). Call it before sharing the
 * model between threads. Fails with TDM_EINVAL if the model has fewer.
 */
TDM_API int tdm_model_limit_iterations(tdm_model *model, size_t iterations,
                               tdm_error *err);

/*
 * Forces the evaluator's kernel ("scalar", "avx2" or "avx512"; for a
 * LightGBM model "bitvector", its default, or "scalar", the record walk),
 * for benchmarks and for comparing kernels; by default the CPU's best is
 * used, and every kernel gives the same bits. "reference" turns the fast
 * layout off for good: every tree goes through the plain tree walk, the
 * baseline the layout is measured and checked against (a later call
 * cannot bring the layout back: TDM_EUNSUPPORTED). Call it before sharing
 * the model between threads. TDM_EUNSUPPORTED when the CPU (or the
 * model's layout) lacks that kernel: the model then keeps the portable
 * one, which tdm_model_info's kernel names. TDM_EINVAL for another name.
 */
TDM_API int tdm_model_use_kernel(tdm_model *model, const char *name,
                                 tdm_error *err);

/* Feature i's name and type ("float", "int", "c" for categorical, ...). */
TDM_API const char *tdm_model_feature_name(const tdm_model *model, size_t i);
TDM_API const char *tdm_model_feature_type(const tdm_model *model, size_t i);

/*
 * 1 when a missing value of feature i is an error for this model (a linear
 * model whose file says so); the model then scores such a row as NaN, and
 * callers should refuse the row instead, naming it.
 */
TDM_API int tdm_model_feature_required(const tdm_model *model, size_t i);

/* 1 when the model's feature names came from the file, 0 when generated. */
TDM_API int tdm_model_has_feature_names(const tdm_model *model);

/* Prediction flags. */
enum {
  TDM_PREDICT_MARGIN = 1, /* untransformed sums (XGBoost output_margin) */
  /* Feature contributions (XGBoost pred_contribs, LightGBM pred_contrib):
   * per output, num_features values then the bias, summing to the margin.
   * Path-dependent TreeSHAP; docs/explanations.md. */
  TDM_PREDICT_CONTRIBS = 2,
  /* With TDM_PREDICT_CONTRIBS: Saabas' approximation (XGBoost's
   * approx_contribs), XGBoost models only. */
  TDM_PREDICT_APPROX_CONTRIBS = 4
};

/* 1 when the model can give contributions (its file holds the node covers:
 * XGBoost's sum_hessian, LightGBM's counts), else 0. */
TDM_API int tdm_model_has_contribs(const tdm_model *model);

/* Builds the leaf tables that contributions read, as the first request for
 * them would (once per model, safe from any thread), and returns their
 * bytes: a program that wants that cost outside its first request calls
 * it at start. 0 for a model without contributions. */
TDM_API size_t tdm_model_contribs_bytes(const tdm_model *model);

/*
 * Scores rows. `rows` is row-major, num_rows x num_features doubles in the
 * model's feature order; NaN means missing. `out` receives num_rows x
 * tdm_model_output_width(model, flags) values. Float32 models produce
 * values that are exact float32. Does not allocate; safe from any thread.
 */
TDM_API int tdm_model_predict(const tdm_model *model, const double *rows,
                      size_t num_rows, int flags, double *out);

/*
 * The same for a row-major float32 matrix (what XGBoost users hold). For
 * float32 models (XGBoost) it is the fastest input: no conversion.
 */
TDM_API int tdm_model_predict_float32(const tdm_model *model, const float *rows,
                              size_t num_rows, int flags, double *out);

/* Values per row that tdm_model_predict writes for these flags. With
 * TDM_PREDICT_CONTRIBS, tdm_model_predict fails with TDM_EUNSUPPORTED for
 * a model without contributions (and allocates its scratch per call). */
TDM_API size_t tdm_model_output_width(const tdm_model *model, int flags);

/*
 * Formats one output value so that it reads back exactly (the shortest
 * decimal that round-trips in the model's precision). Returns the length.
 * `buf` must hold at least 32 bytes.
 */
TDM_API int tdm_model_format_value(const tdm_model *model, double value, char *buf);


/* ---------------------------------------------------------------------- */
/* Pipelines                                                              */
/* ---------------------------------------------------------------------- */

/*
 * A pipeline (docs/pipelines.md): one YAML file with its fields, features,
 * model and decision rules, compiled once. A tdm_pipeline is immutable
 * after tdm_pipeline_open and may be shared by any number of threads; the
 * entity state that events update lives apart from it, in a tdm_state.
 */
typedef struct tdm_pipeline tdm_pipeline;

/* The clock value that means "read the wall clock when it is needed". */
#define TDM_NOW_WALL_CLOCK INT64_MIN

/* How to open a pipeline. Zero-initialise, then set what you need; a NULL
 * options pointer means all defaults. */
typedef struct tdm_pipeline_options {
  /* The tables' store for lookup: features and materialize: (a
   * directory); NULL: the pipeline file's store:, relative to it. */
  const char *store;
  /* Epoch milliseconds that state.max_future is measured from: an event
   * dated further ahead is rejected as "future". 0 or TDM_NOW_WALL_CLOCK:
   * the wall clock at each event (tandem serve), or at the start of a
   * batch run (tandem batch). */
  int64_t now_ms;
  /* Non-zero: no model and no decision (the file may have no model:);
   * results are the keys, the number and category fields (a category as
   * its index) and every feature (training data; tandem batch
   * --features-only). */
  int features_only;

  /* How the stores open. The CLI reads each from the environment variable
   * named beside it and hands it down the same way; the library itself
   * reads no environment variable, so two pipelines in one process may
   * use different ones. Messages about them name them by that variable.
   * Files named here are read when a state or a batch run opens the
   * store (and a Redis store's password and TLS files again for each
   * one), so they must exist then, not at tdm_pipeline_open. */

  /* Address space (not disk) each LMDB environment reserves: a durable
   * state's directory and a table store. 0: 64 GiB for a state, 256 GiB
   * for tables; else from 1 MiB to 16 TiB (TDM_EINVAL otherwise, when
   * a store opens), for a process that cannot reserve that much
   * (valgrind). A larger existing file is still mapped whole.
   * (TANDEM_LMDB_MAP_SIZE) */
  size_t lmdb_map_size;
  /* A Redis table store's (store: redis://... or rediss://...) password:
   * the first line of the file redis_password_file when given (it wins),
   * else redis_password; NULL or "": none. Never in the URL, which the
   * process list shows. (TANDEM_REDIS_PASSWORD_FILE,
   * TANDEM_REDIS_PASSWORD) */
  const char *redis_password;
  const char *redis_password_file;
  /* A rediss:// store's TLS: the CA certificates (PEM) that sign the
   * server's (NULL or "": the system's store), and a client certificate
   * and its unencrypted key (both or neither). (TANDEM_REDIS_CA_FILE,
   * TANDEM_REDIS_CERT_FILE, TANDEM_REDIS_KEY_FILE) */
  const char *redis_ca_file;
  const char *redis_cert_file;
  const char *redis_key_file;
  /* Where the scheduled table refreshes of a Redis store (which has no
   * directory of its own) write their output and log; NULL or "": /tmp.
   * (TMPDIR) */
  const char *scratch_dir;
} tdm_pipeline_options;

/*
 * Compiles the pipeline file at `path` and loads its model. On success
 * *out holds a pipeline the caller frees with tdm_pipeline_free, after
 * every state made from it. On failure *out is NULL and err says where
 * (file:line:column of the YAML, or the model's JSON pointer). The
 * options are copied, strings included: none of them need outlive the
 * call.
 */
TDM_API int tdm_pipeline_open(const char *path,
                              const tdm_pipeline_options *options,
                              tdm_pipeline **out, tdm_error *err);
TDM_API void tdm_pipeline_free(tdm_pipeline *pipeline);

/* The pipeline's name (its name: key). Valid as long as the pipeline. */
TDM_API const char *tdm_pipeline_name(const tdm_pipeline *pipeline);
/* The name of the field that holds the entity key (entity:), by which a
 * caller may partition events: every result depends only on its own
 * entity's events (and the tables). Valid as long as the pipeline. */
TDM_API const char *tdm_pipeline_entity(const tdm_pipeline *pipeline);
/* The pipeline's features, in the file's order. Names stay valid as long
 * as the pipeline. */
TDM_API size_t tdm_pipeline_num_features(const tdm_pipeline *pipeline);
TDM_API const char *tdm_pipeline_feature_name(const tdm_pipeline *pipeline,
                                              size_t i);
/* The input fields an event may carry, in the file's order, and their
 * type ("string", "number", "time", "bool"). Valid as long as the
 * pipeline. */
TDM_API size_t tdm_pipeline_num_fields(const tdm_pipeline *pipeline);
TDM_API const char *tdm_pipeline_field_name(const tdm_pipeline *pipeline,
                                            size_t i);
TDM_API const char *tdm_pipeline_field_type(const tdm_pipeline *pipeline,
                                            size_t i);
/* The pipeline's model (NULL when opened features_only). Owned by the
 * pipeline: valid as long as it, and never freed by the caller. */
TDM_API const tdm_model *tdm_pipeline_model(const tdm_pipeline *pipeline);

/* ---- one event at a time: the live endpoint's core ---- */

/*
 * The entity state of one runner: per entity, its window aggregates and
 * remembered event ids. In memory, or durable in a directory (the layout
 * `tandem serve --state DIR` uses, so a directory written by either opens
 * in the other, but never by both at once).
 *
 * Thread safety: a state may be used by several threads at once (calls
 * are serialised per entity inside it, as the live server does), but an
 * answer pointer a call returns belongs to the calling thread's call and
 * is overwritten by the next call on the same state from any thread:
 * callers sharing a state copy the answer, or hold their own lock.
 */
typedef struct tdm_state tdm_state;

/*
 * Makes the state of `pipeline`'s entities: in memory when dir is NULL,
 * else durable in dir (created if missing; restored from it when it holds
 * a state, including events logged but not yet snapshotted). The pipeline
 * must outlive the state. Free it with tdm_state_free, which also makes
 * everything durable and closes the directory.
 */
TDM_API int tdm_state_open(const tdm_pipeline *pipeline, const char *dir,
                           tdm_state **out, tdm_error *err);
TDM_API void tdm_state_free(tdm_state *state);

/* tdm_state_process flags. */
enum {
  TDM_PROCESS_EXPLAIN = 1 /* add every feature's value ("features": {...}) */
};

/*
 * Processes a JSON text: one event (an object) or several (an array),
 * exactly as `POST /v1/pipelines/NAME/events` does, and answers the
 * endpoint's response body: for an object, its result object; for an
 * array, an array of results in order, where a rejected event's entry is
 * {"error": "...", "reason": ...} and the others are still applied.
 * With a durable state, the call returns once the events are on disk.
 *
 * Returns TDM_OK when the body was answered with a result (always, for an
 * array that parses). For a single rejected event, or a body that is not
 * JSON, returns that event's status (TDM_EPARSE, TDM_ESCHEMA,
 * TDM_ETOOLATE, TDM_EFUTURE, TDM_EIO, ...), fills err, and still sets the
 * answer to the endpoint's {"error": ...} body. A rejected event changes
 * no state.
 *
 * *answer (NUL-terminated, *answer_len bytes without the NUL) is owned by
 * the state and valid until the next tdm_state_process or tdm_state_free
 * on it. answer_len may be NULL.
 */
TDM_API int tdm_state_process(tdm_state *state, const char *json, size_t len,
                              int flags, const char **answer,
                              size_t *answer_len, tdm_error *err);

/* ---- a file of events: tandem batch ---- */

/* The most tables one batch run may materialize. */
#define TDM_BATCH_MAX_TABLES 16

/*
 * How to run a batch (the options of `tandem batch`). Zero-initialise; a
 * NULL pointer means defaults. Every pointer is only read, and only
 * during the call: nothing here need outlive it.
 */
typedef struct tdm_batch_options {
  int threads;              /* 0: all cores; the output is the same bytes
                               for any number */
  int explain;              /* JSON Lines output: add every feature */
  int strict;               /* the first rejected event fails the run */
  const char *rejects_path; /* NULL: OUT.rejects.jsonl */
  /* Writes the entity state at the end of the events to this directory,
   * which must not exist (TDM_EINVAL otherwise): a tdm_state_open on it,
   * or `tandem serve --state DIR`, continues as if it had seen them. It
   * appears, whole, only when the run succeeds. NULL: none. */
  const char *save_state;
  /* Tables (names of the pipeline's materialize: entries) to write a new
   * version of into the store: per entity, its last event's values. At
   * most TDM_BATCH_MAX_TABLES. */
  const char *const *materialize;
  size_t num_materialize;
  /* The materialized tables' as_of, epoch milliseconds; NULL: the last
   * event time of the run. */
  const int64_t *as_of_ms;
  /* The clock state.max_future is measured from, epoch milliseconds,
   * for this run; NULL: the pipeline's now_ms (tdm_pipeline_options). A
   * pointer, so that any instant, 0 included, can be given. */
  const int64_t *now_ms;
  /* "KEY=VALUE" labels kept in the manifest (tandem's run registry
   * shows them). */
  const char *const *tags;
  size_t num_tags;
} tdm_batch_options;

/* A table version a batch run materialized. */
typedef struct tdm_batch_table {
  char table[128];
  uint64_t version;
  size_t rows;
  int64_t as_of_ms;
} tdm_batch_table;

/* What a batch run did. */
typedef struct tdm_batch_stats {
  size_t events;     /* read */
  size_t written;    /* results written (events less the rejected) */
  size_t rejected;   /* written to the rejects file instead */
  size_t duplicates; /* repeated ids, answered with their first result */
  int threads;       /* worker threads used */
  double seconds;
  /* The tables materialized, in the order asked for. */
  tdm_batch_table tables[TDM_BATCH_MAX_TABLES];
  size_t num_tables;
} tdm_batch_stats;

/*
 * Runs the pipeline over a file of events (CSV with a header, or JSON
 * Lines when it ends in .jsonl or .ndjson), in file order, from empty
 * state, as `tandem batch PIPELINE --in IN --out OUT` does: OUT (CSV, or
 * JSON Lines for .jsonl) and its rejects file and OUT.manifest.json
 * appear only when the run succeeds; a failed run leaves no partial file.
 * The run is not recorded in the run registry (that is the CLI's job).
 * stats may be NULL. Safe to call from several threads at once, with any
 * pipelines: each run has its own state (but two runs that materialize
 * the same table, or save state to the same directory, race as two
 * `tandem batch` processes would).
 *
 * Errors: TDM_EINVAL for options the pipeline cannot honour (a table it
 * does not materialize, a save_state directory that exists, more than
 * TDM_BATCH_MAX_TABLES tables) and for an output (OUT, its rejects file or
 * its manifest) that is the input or the pipeline file, by any name, which
 * the run would replace (refused before anything is written);
 * TDM_EPARSE/TDM_ESCHEMA for input that the pipeline refuses under strict
 * or in the header (naming the file, line and column); TDM_EIO for a file
 * that cannot be read or written.
 */
TDM_API int tdm_pipeline_batch(const tdm_pipeline *pipeline,
                               const char *in_path, const char *out_path,
                               const tdm_batch_options *options,
                               tdm_batch_stats *stats, tdm_error *err);

/*
 * The same run over rows held in memory instead of a file, laid out as a
 * CSV file with a header would hold them: row r's value of column c,
 * named columns[c], is cells[r * num_columns + c], NUL-terminated text
 * as a CSV cell would hold it; NULL or "" is missing. The column names
 * are checked as a header is (the entity, the time and every field a
 * feature reads need a column unless optional; other columns are
 * ignored). The output is the same bytes as tdm_pipeline_batch over a
 * CSV file with that header and those cells, for any number of threads.
 * Messages name the input "rows" (the names are its line 0) and the
 * rejects file numbers the rows from 1; the manifest records the input
 * as "rows" with the SHA-256 of the cells. columns and cells are only
 * read, and only during the call. Thread safety as tdm_pipeline_batch.
 */
TDM_API int tdm_pipeline_batch_rows(const tdm_pipeline *pipeline,
                                    const char *const *columns,
                                    size_t num_columns,
                                    const char *const *cells, size_t num_rows,
                                    const char *out_path,
                                    const tdm_batch_options *options,
                                    tdm_batch_stats *stats, tdm_error *err);

/* ---- a file of feature rows: tandem score ---- */

/* The most input columns one scoring run copies to its output. */
#define TDM_SCORE_MAX_KEEP 64

/*
 * How to score a file (the options of `tandem score`). Zero-initialise; a
 * NULL pointer means defaults. Every pointer is only read, and only
 * during the call: nothing here need outlive it.
 */
typedef struct tdm_score_options {
  int margin; /* write margins (XGBoost output_margin, LightGBM
                 predict_raw_score) instead of transformed scores */
  /* Write feature contributions instead of scores: 1 exact TreeSHAP
   * (XGBoost pred_contribs, LightGBM pred_contrib), 2 Saabas' approximation
   * (XGBoost approx_contribs; XGBoost models only). Not with margin. */
  int contribs;
  int threads;       /* 0: all cores; the output is the same bytes for any
                        number (at most 256 are used) */
  size_t iterations; /* use only the first N boosting rounds; 0: all */
  /* Score only part shard_index (from 0) of shard_count contiguous parts
   * of the input, cut by bytes at record starts; only part 0 writes the
   * header, so the parts' outputs concatenated in order are the whole
   * run's output, byte for byte. shard_count 0 or 1: the whole input. */
  unsigned shard_index, shard_count;
  /* Input columns copied to the output, before the scores; at most
   * TDM_SCORE_MAX_KEEP. */
  const char *const *keep;
  size_t num_keep;
  /* "KEY=VALUE" labels kept in the manifest. */
  const char *const *tags;
  size_t num_tags;
  /* The fast evaluator's kernel ("scalar", "avx2", "avx512"); NULL: the
   * widest that pays on this CPU. Unlike tdm_model_use_kernel, a kernel
   * this CPU or the model's layout lacks is not an error: the run keeps
   * the portable one (the manifest names the kernel used). It also picks
   * the kernel of the contribution lanes. */
  const char *kernel;
  /* 1: exact contributions without the TreeSHAP leaf tables (the lanes and
   * the recursion only): the same values, by another way, for tests that
   * compare the two. 0: the tables where they pay. */
  int shap_no_tables;
} tdm_score_options;

/* What a scoring run did. */
typedef struct tdm_score_stats {
  size_t rows;    /* scored */
  size_t columns; /* of the input */
  int threads;    /* worker threads used */
  double seconds;
} tdm_score_stats;

/*
 * Scores every row of a feature matrix file with the model at model_path,
 * as `tandem score --model M --in IN --out OUT` does. IN is CSV with a
 * header, or JSON Lines when it ends in .jsonl or .ndjson (one object per
 * line, keys naming features); columns are matched to the model's
 * features by name, in any order, and others are ignored; an empty field,
 * NaN, nan, NA or null is missing. OUT (CSV, or JSON Lines for .jsonl)
 * and OUT.manifest.json appear only when the run succeeds; a failed run
 * leaves no partial file. The run is not recorded in the run registry
 * (that is the CLI's job). stats may be NULL. Safe to call from several
 * threads at once (each run loads its own model), as long as their
 * outputs differ.
 *
 * Errors: TDM_EINVAL for options that do not go together (contribs with
 * margin, more than TDM_SCORE_MAX_KEEP columns to keep, a shard outside
 * its count) and for an output (OUT or its manifest) that is the model or
 * the input, by any name, which the run would replace (refused before
 * anything is written); TDM_EUNSUPPORTED for contributions the model
 * cannot give; the model's own errors (its JSON pointer); TDM_EPARSE /
 * TDM_ESCHEMA for input it cannot score, naming the file, line and
 * column; TDM_ENOTFOUND or TDM_EIO for a file that cannot be read or
 * written.
 */
TDM_API int tdm_score_file(const char *model_path, const char *in_path,
                           const char *out_path,
                           const tdm_score_options *options,
                           tdm_score_stats *stats, tdm_error *err);

#ifdef __cplusplus
}
#endif

#endif /* TANDEM_H */
