/*
 * access_log.h - `tandem serve --access-log FILE`: one JSON object per
 * request, written off the request path. Request threads format their
 * line and append it to a buffer in memory; a writer thread moves the
 * buffer to the file on a timer (and sooner when it grows), and once more
 * when the log is closed. tdm__access_log_reopen (SIGHUP) makes the writer
 * open the path again, so logrotate can move the file away and signal.
 */
#ifndef TDM_ACCESS_LOG_H
#define TDM_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

typedef struct tdm__access_log tdm__access_log;

/* One finished request, as the server saw it. The strings are read
 * during tdm__access_log_write only. */
typedef struct tdm__access_entry {
  int64_t time_ms;    /* wall clock when its headers were read */
  const char *method; /* as sent */
  const char *target; /* the request target as sent: path and query */
  size_t target_len;
  unsigned status;        /* the answer's status; 0: none was sent */
  uint64_t bytes;         /* the answer body's bytes */
  uint64_t request_bytes; /* the request body bytes read (kept or not) */
  uint64_t duration_us;   /* headers read to answer done */
  const char *remote;     /* "ADDRESS:PORT" of the client, or "" */
  const char *request_id; /* the X-Request-Id header; NULL: none */
} tdm__access_entry;

/*
 * Opens (creates, appends to) PATH and starts the writer thread, which
 * writes buffered lines every FLUSH_MS milliseconds. An unwritable path
 * is TDM_EIO naming it, before the server starts.
 */
int tdm__access_log_open(const char *path, unsigned flush_ms,
                         tdm__access_log **out, tdm_error *err);

/*
 * Appends ENTRY's line to the buffer; never waits for the disk. Past a
 * bound on buffered bytes (the disk slower than the requests) the line is
 * dropped and counted; the writer reports the count on stderr. Thread
 * safe.
 */
void tdm__access_log_write(tdm__access_log *log,
                           const tdm__access_entry *entry);

/* Asks the writer to write what is buffered to the current file and then
 * open the path again (after logrotate moved it). Safe from any thread. */
void tdm__access_log_reopen(tdm__access_log *log);

/* Writes everything buffered, stops the writer and frees LOG; after the
 * server has stopped (no more writes). NULL is a no-op. */
void tdm__access_log_close(tdm__access_log *log);

/* Formats ENTRY as its line (JSON, then a newline) into OUT: every
 * string escaped (quotes, control characters; invalid UTF-8 becomes
 * U+FFFD), so each line is valid JSON whatever the client sent. */
int tdm__access_log_format(const tdm__access_entry *entry, tdm__buf *out);

#endif /* TDM_ACCESS_LOG_H */
