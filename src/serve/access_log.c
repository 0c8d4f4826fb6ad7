/*
 * access_log.c - the JSON access log of `tandem serve` (access_log.h).
 *
 * A request thread formats its line into its own buffer and then holds the
 * lock only to copy it into the pending buffer, so no request ever waits
 * for the disk. The writer thread swaps the pending buffer out under the
 * lock and writes it with the lock released. Memory is bounded: past
 * PENDING_LIMIT bytes waiting, lines are dropped and counted rather than
 * kept, and the count is reported on stderr.
 */
#include "access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/json.h"

/* Bytes of lines waiting for the writer before new lines are dropped. */
#define PENDING_LIMIT (8u << 20)
/* Waiting bytes that wake the writer before its timer. */
#define WAKE_AT (1u << 20)

struct tdm__access_log {
  char *path;
  int fd;
  unsigned flush_ms;
  pthread_t writer;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  tdm__buf pending; /* guarded by lock */
  int reopen;       /* guarded by lock */
  int stop;         /* guarded by lock */
  uint64_t dropped; /* guarded by lock */
  int write_failed; /* the writer's own: a failure is reported once */
};

static int open_path(const char *path) {
  return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

int tdm__access_log_format(const tdm__access_entry *e, tdm__buf *out) {
  char time_text[32];
  tdm__utc_text(e->time_ms, time_text);
  int rc = tdm__buf_printf(out, "{\"time\":\"%s\",\"method\":", time_text);
  if (rc == TDM_OK)
    rc = tdm__json_append_string(out, e->method ? e->method : "");
  if (rc == TDM_OK) rc = tdm__buf_append(out, ",\"path\":", 8);
  if (rc == TDM_OK)
    rc = tdm__json_append_string_n(out, e->target ? e->target : "",
                                   e->target ? e->target_len : 0);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(out,
                         ",\"status\":%u,\"bytes\":%llu,\"request_bytes\":%llu,"
                         "\"duration_us\":%llu,\"remote\":",
                         e->status, (unsigned long long)e->bytes,
                         (unsigned long long)e->request_bytes,
                         (unsigned long long)e->duration_us);
  if (rc == TDM_OK)
    rc = tdm__json_append_string(out, e->remote ? e->remote : "");
  if (rc == TDM_OK && e->request_id != NULL) {
    rc = tdm__buf_append(out, ",\"request_id\":", 14);
    if (rc == TDM_OK) rc = tdm__json_append_string(out, e->request_id);
  }
  if (rc == TDM_OK) rc = tdm__buf_append(out, "}\n", 2);
  return rc;
}

void tdm__access_log_write(tdm__access_log *log, const tdm__access_entry *e) {
  tdm__buf line = {0};
  if (tdm__access_log_format(e, &line) != TDM_OK) {
    tdm__buf_free(&line);
    pthread_mutex_lock(&log->lock);
    log->dropped++;
    pthread_mutex_unlock(&log->lock);
    return;
  }
  pthread_mutex_lock(&log->lock);
  if (log->pending.len + line.len > PENDING_LIMIT ||
      tdm__buf_append(&log->pending, line.data, line.len) != TDM_OK)
    log->dropped++;
  else if (log->pending.len >= WAKE_AT)
    pthread_cond_signal(&log->wake);
  pthread_mutex_unlock(&log->lock);
  tdm__buf_free(&line);
}

/* Writes all of DATA; a failure is reported once (the log is not worth
 * stopping the server for) and the lines are lost. */
static void write_all(tdm__access_log *log, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(log->fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!log->write_failed)
        fprintf(stderr,
                "tandem serve: access log %s: %s; lines are lost "
                "until SIGHUP reopens it\n",
                log->path, n < 0 ? strerror(errno) : "nothing written");
      log->write_failed = 1;
      return;
    }
    data += n;
    len -= (size_t)n;
  }
}

static void *writer_main(void *arg) {
  tdm__access_log *log = arg;
  pthread_mutex_lock(&log->lock);
  for (;;) {
    if (!log->stop && !log->reopen && log->pending.len < WAKE_AT) {
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += log->flush_ms / 1000;
      until.tv_nsec += (long)(log->flush_ms % 1000) * 1000000L;
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&log->wake, &log->lock, &until);
    }
    tdm__buf batch = log->pending;
    memset(&log->pending, 0, sizeof log->pending);
    int reopen = log->reopen, stop = log->stop;
    uint64_t dropped = log->dropped;
    log->reopen = 0;
    log->dropped = 0;
    pthread_mutex_unlock(&log->lock);

    if (batch.len > 0) write_all(log, batch.data, batch.len);
    tdm__buf_free(&batch);
    if (dropped > 0)
      fprintf(stderr,
              "tandem serve: access log %s: %llu lines dropped (the "
              "file was written slower than requests came)\n",
              log->path, (unsigned long long)dropped);
    if (reopen) {
      /* The old file keeps what was buffered before the signal; the new
       * one starts with the next line. If the path cannot be opened the
       * old file stays in use. */
      int fd = open_path(log->path);
      if (fd < 0) {
        fprintf(stderr,
                "tandem serve: access log %s: cannot reopen: %s; "
                "still writing to the old file\n",
                log->path, strerror(errno));
      } else {
        close(log->fd);
        log->fd = fd;
        log->write_failed = 0;
      }
    }
    pthread_mutex_lock(&log->lock);
    if (stop && log->pending.len == 0) break;
  }
  pthread_mutex_unlock(&log->lock);
  return NULL;
}

int tdm__access_log_open(const char *path, unsigned flush_ms,
                         tdm__access_log **out, tdm_error *err) {
  *out = NULL;
  tdm__access_log *log = tdm__calloc(1, sizeof *log);
  if (log == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  log->path = tdm__strdup(path);
  log->flush_ms = flush_ms > 0 ? flush_ms : 1;
  log->fd = open_path(path);
  if (log->path == NULL || log->fd < 0) {
    int saved = errno;
    if (log->fd >= 0) close(log->fd);
    tdm__free(log->path);
    tdm__free(log);
    return tdm__fail(err, TDM_EIO, "--access-log %s: %s", path,
                     strerror(saved));
  }
  pthread_mutex_init(&log->lock, NULL);
  pthread_cond_init(&log->wake, NULL);
  if (pthread_create(&log->writer, NULL, writer_main, log) != 0) {
    close(log->fd);
    pthread_cond_destroy(&log->wake);
    pthread_mutex_destroy(&log->lock);
    tdm__free(log->path);
    tdm__free(log);
    return tdm__fail(err, TDM_EIO,
                     "--access-log %s: cannot start its writer "
                     "thread",
                     path);
  }
  *out = log;
  return TDM_OK;
}

/* Raises one of the writer's flags (reopen, stop) and wakes it. */
static void tell_writer(tdm__access_log *log, int *flag) {
  pthread_mutex_lock(&log->lock);
  *flag = 1;
  pthread_cond_signal(&log->wake);
  pthread_mutex_unlock(&log->lock);
}

void tdm__access_log_reopen(tdm__access_log *log) {
  if (log != NULL) tell_writer(log, &log->reopen);
}

void tdm__access_log_close(tdm__access_log *log) {
  if (log == NULL) return;
  tell_writer(log, &log->stop);
  pthread_join(log->writer, NULL);
  tdm__buf_free(&log->pending);
  close(log->fd);
  pthread_cond_destroy(&log->wake);
  pthread_mutex_destroy(&log->lock);
  tdm__free(log->path);
  tdm__free(log);
}
