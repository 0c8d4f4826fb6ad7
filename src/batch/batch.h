/*
 * batch.h - the batch runner behind `tandem batch`: a pipeline over a file
 * of events (CSV or JSON Lines), in file order, on N threads that each own
 * the entities whose key hashes to them, so that every entity sees its
 * events in file order and the output is byte-identical for any N. The
 * output keeps the input's order, is written atomically with a manifest,
 * and events that fail validation go to a reject file with the reason.
 */
#ifndef TDM_BATCH_H
#define TDM_BATCH_H

#include <stddef.h>

#include "../store/settings.h"
#include "tandem.h"

typedef struct tdm__batch_options {
  const char *pipeline_path;
  const char *in_path;
  const char *out_path;     /* .jsonl: JSON Lines, else CSV */
  const char *rejects_path; /* NULL: OUT.rejects.jsonl */
  int threads;              /* 0: all cores */
  int strict;               /* the first rejected event fails the run */
  int explain;              /* JSON Lines: add every feature's value */
  int features_only;        /* no model: keys and every feature */
  const char *save_state;   /* write the final state here (a new directory
                               `tandem serve --state` starts from) */
  const char *store;        /* tables' store (NULL: the pipeline's store:) */
  /* How the tables' store and a --save-state directory open (NULL:
   * defaults): read during the run only. */
  const tdm__store_settings *store_settings;
  const char *const *materialize; /* tables to write (materialize: names) */
  size_t num_materialize;
  int64_t as_of_ms;         /* their as_of; INT64_MIN: the last event time */
  int64_t now_ms;           /* the clock state.max_future is measured from
                               (--now; the caller reads the wall clock) */
  const char *const *tags;  /* "KEY=VALUE" labels for the run registry */
  size_t num_tags;
  /* Rows held in memory instead of in_path's file (in_memory set): row
   * r's value of column c (named columns[c]) is cells[r * num_columns +
   * c], as tdm__event_reader_cells reads them; in_path then only names
   * the input in messages and in the manifest. */
  int in_memory;
  const char *const *columns;
  size_t num_columns;
  const char *const *cells;
  size_t num_rows;
} tdm__batch_options;

typedef struct tdm__batch_materialized {
  char table[128];
  uint64_t version;
  size_t rows;
  int64_t as_of_ms;
} tdm__batch_materialized;

typedef struct tdm__batch_stats {
  size_t events, written, rejected, duplicates;
  tdm__batch_materialized materialized[TDM_BATCH_MAX_TABLES];
  size_t num_materialized;
  int threads;
  int64_t started_ms; /* wall clock at the start (the manifest's started_at) */
  double seconds;
} tdm__batch_stats;

/* Runs the batch. It changes no process-wide setting: a program that
 * wants glibc to keep freed chunk arenas rather than return them to the
 * kernel calls tdm__keep_heap itself (the CLI does). */
int tdm__batch_run(const tdm__batch_options *opt, tdm__batch_stats *stats,
                   tdm_error *err);

#endif /* TDM_BATCH_H */
