/*
 * pipeline.h - the pipeline core: one compiled pipeline (fields, features,
 * model, decision rules, outputs) and the one function every runner calls
 * per event. `tandem batch`, the live events endpoint and replay all turn
 * their input into the same raw event (field texts), call
 * tdm__pipeline_process with the entity's state, and format the result
 * with the same functions, so batch and real time agree byte for byte.
 * A runner that computes a feature itself is a bug.
 */
#ifndef TDM_PIPELINE_H
#define TDM_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"
#include "../store/settings.h"
#include "expr.h"
#include "lookup.h"
#include "spec.h"
#include "state_map.h"
#include "tandem.h"
#include "window.h"

typedef struct tdm__pipeline tdm__pipeline;

/* How to compile. */
enum {
  /* No model and no decision: the results are the key columns and every
   * feature (training data for the model, `tandem batch --features-only`) */
  TDM__PIPELINE_FEATURES_ONLY = 1
};

/* Compiles a pipeline file and loads its model. Errors name the file,
 * line and column. The result is immutable and shared by threads. */
int tdm__pipeline_load(const char *path, int flags, tdm__pipeline **out,
                       tdm_error *err);
int tdm__pipeline_from_spec(tdm__spec *spec, int flags, tdm__pipeline **out,
                            tdm_error *err); /* takes spec, even on error */
void tdm__pipeline_free(tdm__pipeline *p);

const tdm__spec *tdm__pipeline_spec(const tdm__pipeline *p);
const tdm_model *tdm__pipeline_model(const tdm__pipeline *p);
/* The model's version as written in results: its SHA-256's first 12 hex
 * digits. */
const char *tdm__pipeline_model_version(const tdm__pipeline *p);

/*
 * Opens the tables store (store, or the pipeline's store: when NULL) for
 * lookups, read per `mode`, and for materializing. A pipeline that looks
 * up tables needs one; one that does not may go without (TDM_OK).
 * settings (NULL: defaults) say how the store opens (its LMDB map, a Redis
 * store's password and TLS files). Call before making results.
 */
int tdm__pipeline_open_tables(tdm__pipeline *p, const char *store,
                              const tdm__store_settings *settings,
                              tdm__lookup_mode mode, tdm_error *err);
/* The open store, or NULL. */
tdm__tables *tdm__pipeline_tables(const tdm__pipeline *p);
/* The slot of a materialized "score" column in a features-only pipeline,
 * which computes no score: a runner must not materialize that table. */
#define TDM__NO_SLOT ((size_t)-1)
/* The number slots of materialize spec m's columns (TDM__NO_SLOT: see
 * above). */
const size_t *tdm__pipeline_materialize_slots(const tdm__pipeline *p,
                                              size_t m);
/* The number slot (index into tdm__result.numbers) of the spec's
 * feature `feature`. */
size_t tdm__pipeline_feature_slot(const tdm__pipeline *p, size_t feature);

/* ---- events ---- */

/* An event as it arrives: for each of the spec's fields (in spec order)
 * its text, data NULL when absent (a JSON null, an empty CSV cell). */
typedef struct tdm__event {
  const tdm__str *fields;
} tdm__event;

/* The outcome of one event. Valid until the next call with this result. */
typedef struct tdm__result {
  int duplicate;         /* an id seen before: values repeat the first */
  int64_t time_ms;       /* the event time */
  tdm__str entity, id;   /* as given (id: data NULL without an id field) */
  double score;
  int decision;          /* index into the rules; -1: none matched */
  const double *numbers; /* every number slot: fields, features, score */
  const tdm__str *strings;
  /* private scratch */
  double *number_store;
  tdm__str *string_store;
  double *row;
  double *shadow_row; /* the shadow model's inputs */
  double *agg_out;
  unsigned char *filters;
  double *agg_numbers;
  tdm__str *agg_strings;
  tdm__buf key;
  tdm__lookup_reader *lookup;
  /* Where the score came from: the model, or (deadline fallback) a batch
   * table, or the configured default decision. */
  enum { TDM__SOURCE_MODEL, TDM__SOURCE_BATCH, TDM__SOURCE_DEFAULT } source;
  uint64_t fallback_version;
  int64_t fallback_as_of_ms;
} tdm__result;

/* Makes an event's scratch and, when the pipeline looks up tables, its
 * table reader: a store that cannot be read is that error, in *err, which
 * names the store and the table (TDM_ENOMEM: out of memory). */
int tdm__result_init(const tdm__pipeline *p, tdm__result *r, tdm_error *err);
void tdm__result_free(tdm__result *r);

/* The longest entity key and event id, in bytes. Both are kept (in
 * memory, in LMDB keys and in the changelog) for as long as the entity's
 * state and the id's dedupe time, so their size is bounded per event. */
#define TDM__MAX_KEY_BYTES 256

/* The entity key of an event (its entity field's text), or an error
 * naming the field: a missing entity, or an entity or event id longer
 * than TDM__MAX_KEY_BYTES (TDM_ESCHEMA). The partitioning of runners uses
 * it, so every runner refuses the same events. */
int tdm__pipeline_entity(const tdm__pipeline *p, const tdm__event *ev,
                         tdm__str *entity, tdm_error *err);

/*
 * Validates the event, computes its features against its entity's state
 * in `map`, applies it to that state, scores it and decides. A bad event
 * (missing entity, a time or number that does not parse, a value the model
 * refuses) fails with TDM_ESCHEMA or TDM_EPARSE and a message naming the
 * field, and changes no state. The time rules (docs/windows.md, "Event
 * time"): an event dated more than state.max_future after the map's clock
 * fails with TDM_EFUTURE; with an id field, an event more than
 * state.dedupe before its entity's newest event fails with TDM_ETOOLATE
 * (unless state.late is apply); neither changes any state. An event whose
 * id the entity remembers (seen at most dedupe before the entity's newest
 * event) is not applied again: r->duplicate is set and the values repeat
 * the first result.
 */
int tdm__pipeline_process(const tdm__pipeline *p, tdm__state_map *map,
                          const tdm__event *ev, tdm__result *r,
                          tdm_error *err);

/*
 * The deadline fallback's answer for an event that will not be processed
 * in time: the event's fields are read (a bad event fails as in process),
 * no state changes, no feature is computed; the score is `score` (the
 * entity's last batch score, read from table version `version` as of
 * `as_of_ms`), and the decision comes from the rules with that score. With
 * no batch score (version 0) the decision is the pipeline's
 * default_decision. The JSON result says "source": "batch" or "default".
 */
int tdm__pipeline_fallback(const tdm__pipeline *p, const tdm__event *ev,
                           double score, uint64_t version, int64_t as_of_ms,
                           tdm__result *r, tdm_error *err);

/* The reason word of a rejected event's status, as rejects, live errors
 * and dead letters write it: "too_late", "future", or "invalid". */
const char *tdm__pipeline_reject_reason(int status);
/* A rejected event's answer as the live endpoint gives it (and replay
 * expects it): {"error": message}, with "reason" for an event refused by
 * the time rules (too_late, future), which a client may handle apart. */
int tdm__pipeline_error_json(int status, const char *message, tdm__buf *out);

/* ---- results as text: the one place outputs are formatted ---- */

/* The CSV header line (with "\n") and one row per result. */
int tdm__pipeline_csv_header(const tdm__pipeline *p, tdm__buf *out);
/*
 * A row is written in two steps, so that a runner can format it on
 * another thread than the one that processed the event: capture keeps
 * what the row needs of a result in tdm__pipeline_csv_cells(p) doubles
 * (the number columns' values, the decision, whether a duplicate), and
 * row writes the line from them and the event's field texts. When the
 * row has a reasons column (tdm__pipeline_csv_has_reasons), its text is
 * made from the result by tdm__pipeline_csv_reasons and given to row.
 */
size_t tdm__pipeline_csv_cells(const tdm__pipeline *p);
void tdm__pipeline_csv_capture(const tdm__pipeline *p, const tdm__result *r,
                               double *cells);
int tdm__pipeline_csv_has_reasons(const tdm__pipeline *p);
int tdm__pipeline_csv_reasons(const tdm__pipeline *p, const tdm__result *r,
                              tdm__buf *out);
int tdm__pipeline_csv_row(const tdm__pipeline *p, const tdm__str *fields,
                          const double *cells, const tdm__str *reasons,
                          tdm__buf *out);
/* The CSV row has a "reasons" column (compact JSON, as in the JSON
 * answer) when the spec asks for explain: reasons. */
/* What a JSON result explains beyond its columns (bits): every feature's
 * value, and every contribution of the score. */
enum { TDM__EXPLAIN_FEATURES = 1, TDM__EXPLAIN_CONTRIBS = 2 };
/* One result as a JSON object (no newline): the output columns, the model
 * version, "duplicate": true when so, "reasons" when the spec has
 * explain:, and what `explain` asks (TDM__EXPLAIN_ bits). Explaining
 * computes the contributions from the result's numbers (it allocates). */
int tdm__pipeline_json(const tdm__pipeline *p, const tdm__event *ev,
                       const tdm__result *r, int explain, tdm__buf *out);

/*
 * A decision log record of one answer (src/store/decision_log.h) into b
 * (emptied first), open at its end for the runner's own members (no
 * closing brace): the answer's members (answer[0..len) as the client got
 * it, explaining answer_explain; formatted again when the log explains
 * log_explain instead), then the event's id, entity and time, the source
 * ("model" added for model answers, fallbacks already say theirs), the
 * duplicate flag and the arrival time (wall clock). One format for every
 * live runner, so `tandem serve` and `tandem stream` logs read alike.
 */
int tdm__pipeline_decision_record(const tdm__pipeline *p, const tdm__event *ev,
                                  const tdm__result *r, int answer_explain,
                                  int log_explain, const char *answer,
                                  size_t len, tdm__buf *b);

/* A field's value as JSON: a number field's finite number as the shortest
 * double text, null when missing, anything else a JSON string. Events
 * (src/io/events.c) are written back as JSON with it too. */
int tdm__field_json(const tdm__spec *spec, size_t field, tdm__str text,
                    tdm__buf *out);

#endif /* TDM_PIPELINE_H */
