/*
 * cli.h - what the command-line front end shares: the command table entry
 * type, exit codes, and error printing. Each command lives in its own
 * file (cmd_<name>.c) and is listed once in main.c's table.
 */
#ifndef TDM_CLI_H
#define TDM_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "tandem.h"

/* Exit statuses of every command. */
enum {
  TDM_EXIT_OK = 0,
  TDM_EXIT_FAILURE = 1, /* a runtime failure: I/O, memory */
  TDM_EXIT_USAGE = 2    /* bad usage or bad input */
};

typedef struct tdm_command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} tdm_command;

/* The exit status for a library status code. */
int tdm__exit_status(int status);

/* Prints "tandem: <message>" for a failed call (status, err) on stderr and
 * returns the exit code for status. */
int tdm__report(int status, const tdm_error *err);

/* Prints "tandem <command>: <message>" and returns TDM_EXIT_USAGE. */
int tdm__usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Adds a --tag KEY=VALUE option's value to tags (at most cap): a usage
 * error (exit status returned, message printed) when it has no key or no
 * "=", or when there are too many; 0 when added. */
int tdm__add_tag(const char *command, const char *text, const char **tags,
                 size_t *count, size_t cap);

/* A whole number from 1 to max, as an option's value; 0 if it is not. */
int tdm__parse_count(const char *text, size_t max, size_t *out);

int tdm__cmd_score(int argc, char **argv);
int tdm__cmd_batch(int argc, char **argv);
int tdm__cmd_replay(int argc, char **argv);
int tdm__cmd_serve(int argc, char **argv);
int tdm__cmd_stream(int argc, char **argv);
int tdm__cmd_inspect(int argc, char **argv);
int tdm__cmd_runs(int argc, char **argv);
int tdm__cmd_compare(int argc, char **argv);

/* The registry a command uses: `given` (--registry) when not NULL, else
 * $TANDEM_REGISTRY, $XDG_DATA_HOME/tandem/registry.db or
 * ~/.local/share/tandem/registry.db (cmd_runs.c). TDM_ENOTFOUND: no home
 * directory is known; TDM_EINVAL: the path does not fit buf. */
/* Bytes with an optional k or M suffix (--decision-log-bytes of serve and
 * stream); 0 if it is not one. */
int tdm__cli_parse_bytes(const char *text, size_t *out);
int tdm__cli_registry_path(const char *given, char *buf, size_t size,
                           tdm_error *err);

/* After a successful score or batch run: records OUT.manifest.json in the
 * run registry (registry NULL: the default) unless disabled, and prints
 * "run <id>" on stderr, or a warning when it cannot (never a failure). */
void tdm__cli_record_run(const char *command, const char *registry,
                         int disabled, const char *out_path);
/* ---- what the commands on the public API need besides it
 * (cli_internal.c) ---- */

/* An option's time: RFC 3339 or epoch seconds, as a pipeline's time
 * fields read them; 0, or -1 when it is not one. */
int tdm__cli_parse_time(const char *text, int64_t *ms);
/* ms as RFC 3339 UTC with milliseconds. */
void tdm__cli_format_time(int64_t ms, char buf[32]);
/* The wall clock, epoch milliseconds. */
int64_t tdm__cli_now_ms(void);
/* Keeps freed large blocks in the heap: the allocator setting is the
 * program's to make, never the library's. */
void tdm__cli_keep_heap(void);
/* TDM_EINVAL when the existing file out_path is one of the inputs,
 * naming both by their flags (src/core/core.h's contract). */
int tdm__cli_refuse_output_onto_input(const char *flag, const char *out_path,
                                      const char *const *inputs,
                                      const char *const *input_flags,
                                      size_t num_inputs, tdm_error *err);

/* ---- the environment, handed to the library as options (cli_env.c) ---- */

struct tdm__store_settings; /* src/store/settings.h */

/* The stores' settings from TANDEM_LMDB_MAP_SIZE, TANDEM_REDIS_PASSWORD_FILE,
 * TANDEM_REDIS_PASSWORD, TANDEM_REDIS_CA_FILE, TANDEM_REDIS_CERT_FILE,
 * TANDEM_REDIS_KEY_FILE and TMPDIR (unset or empty: the default). Strings
 * point into the environment. TDM_EINVAL naming the variable when the map
 * size is not a size. */
int tdm__cli_store_settings(struct tdm__store_settings *out, tdm_error *err);

/* The same settings into the public options' store fields, for a command
 * that runs on the public API (the other fields are left as they are). */
int tdm__cli_pipeline_options(tdm_pipeline_options *options, tdm_error *err);

/* Arms the crash point TANDEM_CRASH_AT names (NAME or NAME:N), for the
 * crash tests; called once by main before any thread starts. Returns the
 * exit status: TDM_EXIT_USAGE, with a message, when it is malformed. */
int tdm__cli_arm_crash_point(void);

/* 1 when TANDEM_STREAM_DEBUG is set: `tandem stream` logs each commit's
 * offsets (the Kafka tests wait on them). */
int tdm__cli_stream_debug(void);

int tdm__cmd_eval(int argc, char **argv);
int tdm__cmd_report(int argc, char **argv);

/* Reads binary predictions (column 'score') and 0/1 labels as `tandem
 * eval --task binary` does: labels from labels_path, or from label_column
 * (default 'label') of pred_path when it is NULL; rows matched by
 * id_column, or by position when it is NULL. With live, pred_path is a
 * decision log: its labeled decisions, joined as `tandem eval --live`
 * joins them. On success *scores and *labels hold *n values each that
 * the caller frees with tdm__free. Errors name the file and line. Not
 * thread-safe (cmd_eval.c). */
int tdm__eval_read_binary(const char *pred_path, const char *labels_path,
                          const char *label_column, const char *id_column,
                          int live, double **scores, double **labels,
                          size_t *n, tdm_error *err);

#endif /* TDM_CLI_H */
