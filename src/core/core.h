/*
 * core.h - internal helpers shared by every module: error reporting with a
 * location, allocation through replaceable hooks (so tests can inject
 * out-of-memory), SHA-256, whole-file reading and atomic output files.
 * Names here are tdm__ (internal, cross-file); nothing here is public API.
 */
#ifndef TDM_CORE_H
#define TDM_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tandem.h"

#if defined(__GNUC__)
#define TDM__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define TDM__PRINTF(fmt, args)
#endif

/*
 * Records status and a formatted message in err (when err is not NULL) and
 * returns status, so that callers can write `return tdm__fail(err, ...)`.
 */
int tdm__fail(tdm_error *err, int status, const char *fmt, ...)
    TDM__PRINTF(3, 4);

/* Clears err to TDM_OK with an empty message. */
void tdm__error_clear(tdm_error *err);

/* ---- allocation ---- */

/*
 * Every allocation in tandem goes through these. They return NULL on
 * failure like malloc; tdm__free(NULL) is a no-op.
 */
void *tdm__malloc(size_t size);
void *tdm__calloc(size_t count, size_t size);
void *tdm__realloc(void *ptr, size_t size);
void tdm__free(void *ptr);
/* FNV-1a of len bytes, finished with a shift-xor; different seeds give
 * independent hashes (an entity's partition and its slot in a map must
 * not share bits). */
uint64_t tdm__hash_bytes(const void *data, size_t len, uint64_t seed);

#ifndef TDM__STR_DEFINED
#define TDM__STR_DEFINED
/* A string value that need not be NUL-terminated. data NULL: missing. */
typedef struct tdm__str {
  const char *data;
  size_t len;
} tdm__str;
#endif

/* Lets freed large blocks be reused instead of returned to the kernel
 * (for loops of request- or chunk-sized buffers). */
void tdm__keep_heap(void);
char *tdm__strdup(const char *s);
char *tdm__strndup(const char *s, size_t n);

/*
 * Test hook: after `countdown` more successful allocations, every
 * allocation fails until the hook is reset with a negative countdown.
 */
void tdm__alloc_fail_after(long countdown);

/* ---- growable byte buffer ---- */

typedef struct tdm__buf {
  char *data;
  size_t len;
  size_t cap;
} tdm__buf;

int tdm__buf_reserve(tdm__buf *b, size_t extra);
int tdm__buf_append(tdm__buf *b, const void *data, size_t n);
int tdm__buf_printf(tdm__buf *b, const char *fmt, ...) TDM__PRINTF(2, 3);
/* Appends v in decimal, as "%llu" would, without printf's format parsing
 * (the per-request answers of the server write a few of these each). */
int tdm__buf_append_uint(tdm__buf *b, uint64_t v);
void tdm__buf_free(tdm__buf *b);

/* ---- numbers (number.c) ---- */

/*
 * Parses all of text[0..len) as a decimal number (also "inf", "infinity")
 * into the correctly rounded double, as strtod would, but fast for plain
 * decimals. Returns 0, or -1 when it is not a number.
 */
int tdm__parse_double(const char *text, size_t len, double *out);

/* ---- values as text (format.c) ---- */

/* Writes a number as the shortest text that reads back to the same
 * double ("null" in JSON for a missing one is the caller's). Returns the
 * length written into buf. */
int tdm__format_double(double value, char buf[32]);
/* Appends text to b as one CSV field, quoted when it needs to be. */
int tdm__csv_append_field(tdm__buf *b, const char *text, size_t len);
/* Appends a Prometheus label value, quoted and escaped as the text
 * exposition format requires. */
int tdm__metrics_append_label(tdm__buf *out, const char *value);

/* ---- SHA-256 (FIPS 180-4) ---- */

/* Room for OpenSSL's SHA256_CTX (sha256.c checks the size). */
typedef struct tdm__sha256 {
  _Alignas(16) unsigned char opaque[128];
} tdm__sha256;

void tdm__sha256_init(tdm__sha256 *ctx);
void tdm__sha256_update(tdm__sha256 *ctx, const void *data, size_t n);
/* Writes 64 lowercase hex digits and a NUL into hex. */
void tdm__sha256_final_hex(tdm__sha256 *ctx, char hex[65]);
void tdm__sha256_hex(const void *data, size_t n, char hex[65]);

/* ---- files ---- */

/* The largest file read whole (models, pipelines, manifests): 4 GiB. */
#define TDM__MAX_READ_FILE (4ull << 30)

/*
 * Reads a whole regular file into a NUL-terminated buffer that the caller
 * frees with tdm__free. A FIFO, a device or a socket is refused (it may
 * never end), and so is a file past TDM__MAX_READ_FILE. Errors name the
 * path.
 */
int tdm__read_file(const char *path, char **data, size_t *size, tdm_error *err);

/* The same from an open descriptor (left open), `path` naming it in
 * errors; used where the file was opened relative to a directory. */
int tdm__read_fd(int fd, const char *path, char **data, size_t *size,
                 tdm_error *err);

/*
 * TDM_EINVAL when the existing file out_path is one of the inputs (same
 * device and inode: the same name, another spelling, a hard link or a
 * symbolic link), naming both by their flags; TDM_OK otherwise. Commands
 * call it before they open any output, so that an output never replaces
 * the file it is computed from. Input paths may be NULL (absent).
 */
int tdm__refuse_output_onto_input(const char *flag, const char *out_path,
                                  const char *const *inputs,
                                  const char *const *input_flags,
                                  size_t num_inputs, tdm_error *err);

/*
 * An output file that appears only when complete: data goes to a
 * temporary file beside the destination, which commit() fsyncs and renames
 * over the destination, and abort() deletes. Nothing partial is ever left
 * at the destination path.
 */
typedef struct tdm__atomic_file {
  FILE *fp;
  char *path;
  char *tmp_path;
  /* Written as an unnamed file (O_TMPFILE) until finish gives it the
   * temporary name: a process killed before that leaves nothing. */
  int anonymous;
  int synced; /* finish done, the unnamed file still open */
} tdm__atomic_file;

int tdm__atomic_open(tdm__atomic_file *f, const char *path, tdm_error *err);
int tdm__atomic_commit(tdm__atomic_file *f, tdm_error *err);

/*
 * The first half of commit: flush, fsync and close, keeping the temporary
 * file, so that several outputs can be completed before any is renamed.
 * On failure the temporary file is gone.
 */
int tdm__atomic_finish(tdm__atomic_file *f, tdm_error *err);
void tdm__atomic_abort(tdm__atomic_file *f);

/* Writes a whole (small) file atomically: a manifest, a report. */
int tdm__write_file_atomic(const char *path, const void *data, size_t len,
                           tdm_error *err);

/*
 * Aborts every atomic file still open; safe to call from a signal handler
 * (it only calls unlink). Used so that Ctrl-C leaves no temporary files.
 */
void tdm__atomic_abort_all_from_signal(void);
/*
 * The registry abort_all reads: track adds a temporary path (TDM_ENOMEM
 * when it cannot grow), untrack removes it. Thread-safe and without a
 * limit on how many paths are tracked at once; the path must stay valid
 * until untracked. Atomic files track their own; exposed for tests.
 */
int tdm__tmp_track(char *path);
void tdm__tmp_untrack(const char *path);

/* ---- wall clock and crash points (clock.c) ---- */

/* The wall clock (CLOCK_REALTIME) in milliseconds since the Unix epoch:
 * the manifests' times and the runners' clock for state.max_future. */
int64_t tdm__now_ms(void);

/* ms as RFC 3339 UTC with milliseconds: 2026-12-07T00:36:12.123Z. */
void tdm__utc_text(int64_t ms, char buf[32]);

/*
 * Crash points, for tests: named steps where the process kills itself with
 * SIGKILL, exactly as `kill -9` would, so that a test can stop a run at a
 * chosen step whatever the speed of the machine.
 *
 * tdm__arm_crash_point arms one for the whole process from spec "NAME" or
 * "NAME:N" (N a whole number from 1; without it, 1). Only a program's
 * main arms one (the CLI, from TANDEM_CRASH_AT), before it starts any
 * thread: the library never does, and never reads the environment for
 * it. TDM_EINVAL when spec is not of that form (nothing is armed then).
 */
int tdm__arm_crash_point(const char *spec);

/* A step counted by passages: kills the process the N-th time a thread
 * reaches the armed point NAME. Unarmed, it costs one branch. */
void tdm__crash_point(const char *name);

/* A step counted by work done: 1 when NAME is armed and count (events
 * handled, records written; the point's own measure) has reached N, so
 * the caller may finish what must be out before the kill (flush a
 * producer) and then call tdm__crash. Unarmed, it costs one branch. */
int tdm__crash_point_due(const char *name, uint64_t count);

/* Kills the process now, saying so on stderr (the crash tests read it). */
void tdm__crash(void) __attribute__((noreturn));

#endif /* TDM_CORE_H */
