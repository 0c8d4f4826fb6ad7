/*
 * decision_log.c - the segment files of decision_log.h. A closed segment
 * is finished by a thread of its own, off the writer's path. A segment's
 * manifest (its counts, hashes and first and last arrival times) is made
 * from the closed file itself, by one function, both when a running log
 * rotates and when a restart recovers the segment a killed process left
 * open, so the two can never describe a segment differently.
 */
/* memmem and sync_file_range. */
#define _GNU_SOURCE
#include "decision_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/json.h"
#include "registry.h"

struct tdm__decision_log {
  pthread_mutex_t lock;
  char *dir, *pipeline_path, *pipeline_sha256, *pipeline_name, *model_sha256,
      *runner, *registry;
  uint64_t max_bytes;
  int64_t max_ms;
  int fd;            /* the open segment, -1 when none */
  uint64_t segment;  /* its number; the next one is segment + 1 */
  uint64_t bytes;    /* written to it, or reserved */
  uint64_t unwritten; /* of those, reserved and not yet written */
  uint64_t kicked;   /* written back up to here (start_writeback) */
  int64_t opened_ms; /* when it was begun */
  /* A write of reserved records failed: they are only in the runner's
   * write-ahead log, so the segment has a hole that only a restart fills
   * (from that log). Until then nothing more is reserved, nothing synced
   * (the write-ahead log must keep them) and the segment is not closed. */
  int failed;
  /* Closed segments wait here (still named .open, with their file
   * descriptors, not yet synced) for the finisher thread, which syncs
   * them, hashes them, writes their manifests, renames and records them,
   * and only then takes them off the queue and closes them: a rotation
   * costs the writer (a group commit, which the answers wait for) nothing
   * but queueing, not an fdatasync of up to a whole segment, a read of it
   * and a registry insert. tdm__decision_log_sync syncs the queued ones
   * itself (through duplicates of their descriptors), so it never waits
   * for the finisher's hashing; sync_failed, set by the first failed
   * sync of a closed segment, makes it fail from then on, so that the
   * runner's write-ahead log keeps the records. The same thread closes
   * a segment that grows old while no answer comes, so an idle server's
   * last records become a run too. */
  pthread_mutex_t finish_lock;
  pthread_cond_t finish_wanted;
  struct closed_segment {
    uint64_t n;
    int fd;
  } *to_finish;
  size_t num_to_finish, cap_to_finish;
  int sync_failed;
  int stopping;
  pthread_t finisher;
  int finisher_running;
};

static const char prefix[] = "decisions-";

static char *segment_path(const tdm__decision_log *log, uint64_t n,
                          const char *suffix) {
  tdm__buf b = {0};
  if (tdm__buf_printf(&b, "%s/%s%08llu.jsonl%s", log->dir, prefix,
                      (unsigned long long)n, suffix) != TDM_OK)
    return NULL;
  return b.data;
}

static void sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

/* The value of the last `"arrived_at":"..."` member in [line, end). */
static int arrival(const char *line, const char *end, char out[32]) {
  static const char key[] = "\"arrived_at\":\"";
  size_t k = sizeof key - 1;
  out[0] = '\0';
  for (const char *p = end - k; p >= line; p--) {
    if (memcmp(p, key, k) != 0) continue;
    const char *v = p + k, *q = memchr(v, '"', (size_t)(end - v));
    if (q == NULL || q - v >= 32) return 0;
    memcpy(out, v, (size_t)(q - v));
    out[q - v] = '\0';
    return 1;
  }
  return 0;
}

/* Milliseconds since the epoch of an arrival time as the runner writes it
 * (tdm__utc_text: "2026-12-07T00:36:12.123Z"); -1 when it is not one. */
static int64_t arrival_ms(const char *text) {
  struct tm tm;
  int ms = 0, used = 0;
  memset(&tm, 0, sizeof tm);
  if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &tm.tm_year, &tm.tm_mon,
             &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms,
             &used) != 7 ||
      used == 0)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (int64_t)timegm(&tm) * 1000 + ms;
}

/*
 * Records segment n (its manifest written) in the registry, unless
 * check_recorded finds it there already, then renames it into place. In
 * this order a kill at any point leaves the segment named .open with its
 * manifest, which the next start publishes again, checking the registry
 * first: a segment is recorded once, and never left unrecorded. A
 * registry that cannot be written is a warning: the segment is complete.
 */
static int publish(tdm__decision_log *log, uint64_t n, int check_recorded,
                   tdm_error *err) {
  char *open_path = segment_path(log, n, ".open");
  char *path = segment_path(log, n, "");
  char *manifest_path = segment_path(log, n, ".manifest.json");
  int rc = open_path && path && manifest_path
               ? TDM_OK
               : tdm__fail(err, TDM_ENOMEM, "out of memory");
  if (rc == TDM_OK && log->registry != NULL) {
    int found = 0;
    char run_id[16];
    tdm_error rerr;
    if (check_recorded &&
        tdm__registry_has_manifest(log->registry, manifest_path, &found,
                                   &rerr) != TDM_OK)
      found = 0;
    if (!found && tdm__registry_record_manifest(log->registry, manifest_path,
                                                run_id, &rerr) == TDM_OK)
      fprintf(stderr, "tandem %s: decision log: run %s (%s)\n", log->runner,
              run_id, path);
    else if (!found)
      fprintf(stderr,
              "tandem %s: warning: decision log segment not recorded: %s\n",
              log->runner, rerr.message);
  }
  if (rc == TDM_OK && rename(open_path, path) != 0)
    rc = tdm__fail(err, TDM_EIO, "%s: cannot rename to %s: %s", open_path, path,
                   strerror(errno));
  if (rc == TDM_OK) sync_dir(log->dir);
  tdm__free(open_path);
  tdm__free(path);
  tdm__free(manifest_path);
  return rc;
}

/*
 * Closes segment n (its records are data[0..len), already on disk under
 * the .open name): writes its manifest, renames it into place and
 * records it in the registry. A registry that cannot be written is a
 * warning: the segment itself is complete.
 */
static int finish_segment(tdm__decision_log *log, uint64_t n, const char *data,
                          size_t len, tdm_error *err) {
  char *open_path = segment_path(log, n, ".open");
  char *path = segment_path(log, n, "");
  char *manifest_path = segment_path(log, n, ".manifest.json");
  tdm__buf m = {0};
  int rc = open_path && path && manifest_path
               ? TDM_OK
               : tdm__fail(err, TDM_ENOMEM, "out of memory");
  size_t events = 0, duplicates = 0;
  char first[32] = "", last[32] = "";
  for (const char *line = data, *end; line < data + len; line = end + 1) {
    end = memchr(line, '\n', (size_t)(data + len - line));
    if (end == NULL) end = data + len;
    if (events == 0) arrival(line, end, first);
    arrival(line, end, last);
    events++;
    /* memmem, not a memcmp at every byte: this reads every byte of a
     * segment (64M by default) on the finisher, beside the answers. */
    static const char dup[] = "\"duplicate\":true";
    if (memmem(line, (size_t)(end - line), dup, sizeof dup - 1) != NULL)
      duplicates++;
  }
  char hex[65];
  tdm__sha256_hex(data, len, hex);
  int64_t first_ms = arrival_ms(first), last_ms = arrival_ms(last);
  double seconds =
      first_ms >= 0 && last_ms >= first_ms ? (double)(last_ms - first_ms) / 1000.0 : 0;
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&m,
                         "{\n  \"tandem_version\": \"%s\",\n  \"command\": "
                         "\"live\",\n  \"pipeline\": {\"path\": ",
                         TDM_VERSION);
  if (rc == TDM_OK) rc = tdm__json_append_string(&m, log->pipeline_path);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&m, ", \"sha256\": \"%s\", \"name\": ",
                         log->pipeline_sha256);
  if (rc == TDM_OK) rc = tdm__json_append_string(&m, log->pipeline_name);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&m, "},\n  \"model\": %s%s%s,\n  \"input\": {\"path\": ",
                         log->model_sha256[0] ? "{\"sha256\": \"" : "null",
                         log->model_sha256, log->model_sha256[0] ? "\"}" : "");
  /* The segment is both what the run read (the events as answered) and
   * what it wrote, so `tandem compare` and `eval` find it as the output. */
  if (rc == TDM_OK) rc = tdm__json_append_string(&m, path);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&m,
                         ", \"sha256\": \"%s\", \"events\": %zu},\n"
                         "  \"output\": {\"path\": ",
                         hex, events);
  if (rc == TDM_OK) rc = tdm__json_append_string(&m, path);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(
        &m,
        ", \"sha256\": \"%s\", \"events\": %zu, \"duplicates\": %zu},\n"
        "  \"rejects\": {\"path\": null, \"events\": 0},\n  \"tables\": [],\n"
        "  \"flags\": {\"runner\": \"%s\", \"segment\": %llu},\n"
        "  \"started_at\": \"%s\",\n  \"finished_at\": \"%s\",\n"
        "  \"seconds\": %.3f\n}\n",
        hex, events, duplicates, log->runner, (unsigned long long)n, first,
        last, seconds);
  if (rc != TDM_OK && m.data == NULL) rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  if (rc == TDM_OK)
    rc = tdm__write_file_atomic(manifest_path, m.data, m.len, err);
  if (rc == TDM_OK) rc = publish(log, n, 0, err);
  tdm__buf_free(&m);
  tdm__free(open_path);
  tdm__free(path);
  tdm__free(manifest_path);
  return rc;
}

/* Finishes closed segment n from its synced .open file. */
static int finish_closed(tdm__decision_log *log, uint64_t n, tdm_error *err) {
  char *data = NULL;
  size_t size = 0;
  char *open_path = segment_path(log, n, ".open");
  int rc = open_path ? tdm__read_file(open_path, &data, &size, err)
                     : tdm__fail(err, TDM_ENOMEM, "out of memory");
  if (rc == TDM_OK) rc = finish_segment(log, n, data, size, err);
  tdm__free(data);
  tdm__free(open_path);
  return rc;
}

static int close_segment(tdm__decision_log *log, tdm_error *err);

/* Closes the open segment when it is old enough, holds records and none
 * of them is still being written (a reservation not yet written: its
 * writer comes back to this segment); the next write begins a new one.
 * The finisher's timer, so that age closes a segment with no answer to
 * trigger it. */
static void close_if_old(tdm__decision_log *log) {
  pthread_mutex_lock(&log->lock);
  tdm_error err;
  if (log->fd >= 0 && log->bytes > 0 && log->unwritten == 0 && !log->failed &&
      tdm__now_ms() - log->opened_ms >= log->max_ms &&
      close_segment(log, &err) != TDM_OK)
    fprintf(stderr, "tandem %s: decision log: %s\n", log->runner, err.message);
  pthread_mutex_unlock(&log->lock);
}

static void *finish_loop(void *arg) {
  tdm__decision_log *log = arg;
  /* How often an idle log looks at its open segment's age: an eighth of
   * the limit, within 10 ms and 1 s, so that a segment closes at most
   * that late. */
  int64_t tick_ms = log->max_ms / 8;
  tick_ms = tick_ms < 10 ? 10 : tick_ms > 1000 ? 1000 : tick_ms;
  pthread_mutex_lock(&log->finish_lock);
  for (;;) {
    while (log->num_to_finish == 0 && !log->stopping) {
      if (log->max_ms <= 0) {
        pthread_cond_wait(&log->finish_wanted, &log->finish_lock);
        continue;
      }
      struct timespec until;
      clock_gettime(CLOCK_MONOTONIC, &until);
      until.tv_sec += tick_ms / 1000;
      until.tv_nsec += (long)(tick_ms % 1000) * 1000000L;
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
      }
      if (pthread_cond_timedwait(&log->finish_wanted, &log->finish_lock,
                                 &until) == ETIMEDOUT) {
        /* close_segment takes finish_lock under the log's lock: never
         * the other way round. */
        pthread_mutex_unlock(&log->finish_lock);
        close_if_old(log);
        pthread_mutex_lock(&log->finish_lock);
      }
    }
    if (log->num_to_finish == 0) break;
    /* Only this thread takes entries off the queue: the first stays this
     * one while it is worked on (close_segment appends). */
    struct closed_segment c = log->to_finish[0];
    pthread_mutex_unlock(&log->finish_lock);
    /* A kill here leaves a closed segment unsynced and unfinished beside
     * the open one: both are recovered from the write-ahead log. */
    tdm__crash_point("decision-log-closed");
    tdm_error err;
    int rc = fdatasync(c.fd) == 0
                 ? TDM_OK
                 : tdm__fail(&err, TDM_EIO, "decision log: fdatasync: %s",
                             strerror(errno));
    if (rc != TDM_OK) {
      pthread_mutex_lock(&log->finish_lock);
      log->sync_failed = 1;
      pthread_mutex_unlock(&log->finish_lock);
    }
    /* A failure leaves the segment named .open: the next start finishes
     * it as it finishes a killed process's, with the records the
     * write-ahead log kept because the sync failed. */
    if (rc == TDM_OK) rc = finish_closed(log, c.n, &err);
    if (rc != TDM_OK)
      fprintf(stderr, "tandem %s: decision log: %s\n", log->runner,
              err.message);
    pthread_mutex_lock(&log->finish_lock);
    memmove(log->to_finish, log->to_finish + 1,
            --log->num_to_finish * sizeof *log->to_finish);
    /* Off the queue under the lock first: tdm__decision_log_sync
     * duplicates only the descriptors it finds there. */
    close(c.fd);
  }
  pthread_mutex_unlock(&log->finish_lock);
  return NULL;
}

/* Closes the open segment: synced and finished, by the finisher thread
 * once it runs (here before); an empty one is deleted. Called with the
 * lock held (or before the log is shared). */
static int close_segment(tdm__decision_log *log, tdm_error *err) {
  if (log->fd < 0) return TDM_OK;
  int fd = log->fd;
  log->fd = -1;
  int rc = TDM_OK;
  if (log->failed) {
    close(fd);
    return tdm__fail(err, TDM_EIO,
                     "decision log: segment %llu left open after a failed "
                     "write; the next start writes its records again",
                     (unsigned long long)log->segment);
  }
  if (log->bytes == 0) {
    close(fd);
    char *open_path = segment_path(log, log->segment, ".open");
    if (open_path) unlink(open_path);
    tdm__free(open_path);
    return TDM_OK;
  }
  if (!log->finisher_running) {
    if (fdatasync(fd) != 0)
      rc = tdm__fail(err, TDM_EIO, "decision log: fdatasync: %s",
                     strerror(errno));
    close(fd);
    return rc == TDM_OK ? finish_closed(log, log->segment, err) : rc;
  }
  pthread_mutex_lock(&log->finish_lock);
  if (log->num_to_finish == log->cap_to_finish) {
    size_t cap = log->cap_to_finish ? log->cap_to_finish * 2 : 8;
    struct closed_segment *grown =
        tdm__realloc(log->to_finish, cap * sizeof *grown);
    if (grown == NULL) rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    else {
      log->to_finish = grown;
      log->cap_to_finish = cap;
    }
  }
  if (rc == TDM_OK) {
    log->to_finish[log->num_to_finish++] =
        (struct closed_segment){log->segment, fd};
    pthread_cond_signal(&log->finish_wanted);
  }
  pthread_mutex_unlock(&log->finish_lock);
  if (rc != TDM_OK) {
    /* Not queued: synced here, and left .open for the next start. */
    (void)fdatasync(fd);
    close(fd);
  }
  return rc;
}

static int begin_segment(tdm__decision_log *log, tdm_error *err) {
  log->segment++;
  char *path = segment_path(log, log->segment, ".open");
  if (path == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  log->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int rc = log->fd >= 0 ? TDM_OK
                        : tdm__fail(err, TDM_EIO, "%s: cannot create: %s", path,
                                    strerror(errno));
  tdm__free(path);
  if (rc == TDM_OK) sync_dir(log->dir);
  log->bytes = 0;
  log->unwritten = 0;
  log->kicked = 0;
  log->opened_ms = tdm__now_ms();
  return rc;
}

/* Writes len bytes at offset of fd. */
static int write_fully(int fd, uint64_t offset, const char *data, size_t len) {
  for (size_t done = 0; done < len;) {
    ssize_t n = pwrite(fd, data + done, len - done, (off_t)(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += (size_t)n;
  }
  return 0;
}

/*
 * Recovers segment n, left open by a process that was killed: the
 * write-ahead log's records for it are written again at their places
 * (what the kill or a crash of the machine kept from their first write
 * is overwritten with the same bytes), then the segment is cut after its
 * last whole record and closed.
 */
static int recover_segment(tdm__decision_log *log, uint64_t n,
                           const tdm__decision_redo *redo, size_t num_redo,
                           tdm_error *err) {
  /* With its manifest written, the segment was complete and synced: it
   * only needs publishing (the kill came after the manifest). */
  char *manifest_path = segment_path(log, n, ".manifest.json");
  if (manifest_path == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  struct stat st;
  int published = stat(manifest_path, &st) == 0;
  tdm__free(manifest_path);
  if (published) return publish(log, n, 1, err);
  char *open_path = segment_path(log, n, ".open");
  if (open_path == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  int rc = TDM_OK;
  size_t redone = 0;
  int fd = open(open_path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    rc = tdm__fail(err, TDM_EIO, "%s: cannot open: %s", open_path,
                   strerror(errno));
  for (size_t i = 0; i < num_redo && rc == TDM_OK; i++) {
    if (redo[i].segment != n) continue;
    if (write_fully(fd, redo[i].offset, redo[i].data, redo[i].len) != 0)
      rc = tdm__fail(err, TDM_EIO, "%s: cannot write: %s", open_path,
                     strerror(errno));
    redone++;
  }
  if (rc == TDM_OK && redone > 0 && fdatasync(fd) != 0)
    rc = tdm__fail(err, TDM_EIO, "%s: fdatasync: %s", open_path,
                   strerror(errno));
  char *data = NULL;
  size_t size = 0;
  if (rc == TDM_OK) rc = tdm__read_file(open_path, &data, &size, err);
  /* Whole records only: a record the kill tore, or a place reserved and
   * never written, ends the segment. */
  size_t keep = 0;
  for (size_t at = 0; rc == TDM_OK && at < size;) {
    const char *end = memchr(data + at, '\n', size - at);
    if (end == NULL || data[at] != '{') break;
    at = (size_t)(end - data) + 1;
    keep = at;
  }
  if (rc == TDM_OK && keep < size &&
      (ftruncate(fd, (off_t)keep) != 0 || fdatasync(fd) != 0))
    rc = tdm__fail(err, TDM_EIO, "%s: cannot cut its unfinished tail: %s",
                   open_path, strerror(errno));
  if (fd >= 0) close(fd);
  if (rc == TDM_OK && keep == 0) {
    unlink(open_path);
  } else if (rc == TDM_OK) {
    fprintf(stderr,
            "tandem %s: decision log: recovered %s (%zu bytes, %zu group "
            "commits written again from the log, %zu bytes cut)\n",
            log->runner, open_path, keep, redone, size - keep);
    rc = finish_segment(log, n, data, keep, err);
  }
  tdm__free(data);
  tdm__free(open_path);
  return rc;
}

static char *copy(const char *s, int *oom) {
  char *c = tdm__strdup(s ? s : "");
  if (c == NULL) *oom = 1;
  return c;
}

int tdm__decision_log_open(const tdm__decision_log_options *opt,
                           const tdm__decision_redo *redo, size_t num_redo,
                           tdm__decision_log **out, tdm_error *err) {
  *out = NULL;
  tdm__decision_log *log = tdm__calloc(1, sizeof *log);
  if (log == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  pthread_mutex_init(&log->lock, NULL);
  pthread_mutex_init(&log->finish_lock, NULL);
  pthread_condattr_t monotonic;
  pthread_condattr_init(&monotonic);
  pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
  pthread_cond_init(&log->finish_wanted, &monotonic);
  pthread_condattr_destroy(&monotonic);
  log->fd = -1;
  int oom = 0;
  log->dir = copy(opt->dir, &oom);
  log->pipeline_path = copy(opt->pipeline_path, &oom);
  char pipeline_hex[65] = "";
  if (opt->pipeline_sha256 == NULL) {
    /* The bytes the runner loaded the pipeline from, hashed once here so
     * that every runner's manifests name it alike. */
    char *text = NULL;
    size_t size = 0;
    tdm_error why;
    if (tdm__read_file(opt->pipeline_path, &text, &size, &why) == TDM_OK)
      tdm__sha256_hex(text, size, pipeline_hex);
    tdm__free(text);
  }
  log->pipeline_sha256 =
      copy(opt->pipeline_sha256 ? opt->pipeline_sha256 : pipeline_hex, &oom);
  log->pipeline_name = copy(opt->pipeline_name, &oom);
  log->model_sha256 = copy(opt->model_sha256, &oom);
  log->runner = copy(opt->runner, &oom);
  if (opt->registry) log->registry = copy(opt->registry, &oom);
  log->max_bytes = opt->max_bytes;
  log->max_ms = opt->max_ms;
  int rc = oom ? tdm__fail(err, TDM_ENOMEM, "out of memory") : TDM_OK;
  if (rc == TDM_OK && mkdir(opt->dir, 0755) != 0 && errno != EEXIST)
    rc = tdm__fail(err, TDM_EIO, "--decision-log %s: cannot create: %s",
                   opt->dir, strerror(errno));
  /* The segments there: the next number, and those left open. */
  uint64_t *open_ones = NULL;
  size_t num_open = 0, cap_open = 0;
  DIR *d = rc == TDM_OK ? opendir(opt->dir) : NULL;
  if (rc == TDM_OK && d == NULL)
    rc = tdm__fail(err, TDM_EIO, "--decision-log %s: %s", opt->dir,
                   strerror(errno));
  for (struct dirent *e; d != NULL && rc == TDM_OK && (e = readdir(d)) != NULL;) {
    unsigned long long n;
    int used = 0;
    if (strncmp(e->d_name, prefix, sizeof prefix - 1) != 0 ||
        sscanf(e->d_name + sizeof prefix - 1, "%llu.jsonl%n", &n, &used) != 1 ||
        used == 0)
      continue;
    if (n > log->segment) log->segment = n;
    if (strcmp(e->d_name + sizeof prefix - 1 + used, ".open") != 0) continue;
    if (num_open == cap_open) {
      size_t cap = cap_open ? cap_open * 2 : 4;
      uint64_t *grown = tdm__realloc(open_ones, cap * sizeof *grown);
      if (grown == NULL) {
        rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
        break;
      }
      open_ones = grown;
      cap_open = cap;
    }
    open_ones[num_open++] = n;
  }
  if (d != NULL) closedir(d);
  for (size_t i = 0; i < num_open && rc == TDM_OK; i++)
    rc = recover_segment(log, open_ones[i], redo, num_redo, err);
  tdm__free(open_ones);
  if (rc == TDM_OK) rc = begin_segment(log, err);
  if (rc == TDM_OK) {
    if (pthread_create(&log->finisher, NULL, finish_loop, log) != 0)
      rc = tdm__fail(err, TDM_ENOMEM, "cannot start the decision log's thread");
    else
      log->finisher_running = 1;
  }
  if (rc != TDM_OK) {
    tdm__decision_log_close(log);
    return rc;
  }
  *out = log;
  return TDM_OK;
}

/* Closes the open segment when it is full or old enough and begins the
 * next; begins one when none is open. Called with the lock held. */
static int make_room(tdm__decision_log *log, tdm_error *err) {
  int rc = TDM_OK;
  if (log->fd >= 0 && log->bytes > 0 &&
      ((log->max_bytes && log->bytes >= log->max_bytes) ||
       (log->max_ms && tdm__now_ms() - log->opened_ms >= log->max_ms))) {
    rc = close_segment(log, err);
    if (rc == TDM_OK) rc = begin_segment(log, err);
  }
  if (rc == TDM_OK && log->fd < 0) rc = begin_segment(log, err);
  return rc;
}

/* How much of the open segment may be written and not yet on its way
 * to disk: past it, its writeback is started (not waited for), so that
 * the sync at its close, or the write-ahead log's own syncs, never find
 * a whole segment's worth of dirty pages to write at once. */
#define WRITEBACK_BYTES ((uint64_t)1 << 20)

/* Starts the writeback of what was written to the open segment since the
 * last start, once that is WRITEBACK_BYTES. Called with the lock held,
 * after a write that ends at end. A failure only leaves the work to the
 * sync. */
static void start_writeback(tdm__decision_log *log, uint64_t end) {
  if (end < log->kicked + WRITEBACK_BYTES) return;
  (void)sync_file_range(log->fd, (off_t)log->kicked,
                        (off_t)(end - log->kicked), SYNC_FILE_RANGE_WRITE);
  log->kicked = end;
}

static int refuse_after_failure(tdm_error *err) {
  return tdm__fail(err, TDM_EIO,
                   "decision log: an earlier write failed; its records are "
                   "in the write-ahead log until a restart writes them again");
}

int tdm__decision_log_reserve(tdm__decision_log *log, size_t len,
                              uint64_t *segment, uint64_t *offset,
                              tdm_error *err) {
  pthread_mutex_lock(&log->lock);
  int rc = log->failed ? refuse_after_failure(err) : make_room(log, err);
  if (rc == TDM_OK) {
    *segment = log->segment;
    *offset = log->bytes;
    log->bytes += len;
    log->unwritten += len;
  }
  pthread_mutex_unlock(&log->lock);
  return rc;
}

int tdm__decision_log_write_at(tdm__decision_log *log, uint64_t offset,
                               const char *data, size_t len, tdm_error *err) {
  pthread_mutex_lock(&log->lock);
  int rc = write_fully(log->fd, offset, data, len) == 0
               ? TDM_OK
               : tdm__fail(err, TDM_EIO, "decision log: write: %s",
                           strerror(errno));
  if (rc != TDM_OK) {
    log->failed = 1;
  } else {
    log->unwritten -= len;
    start_writeback(log, offset + len);
  }
  pthread_mutex_unlock(&log->lock);
  return rc;
}

int tdm__decision_log_sync(tdm__decision_log *log, tdm_error *err) {
  pthread_mutex_lock(&log->lock);
  int rc = log->failed                              ? refuse_after_failure(err)
           : log->fd < 0 || fdatasync(log->fd) == 0
               ? TDM_OK
               : tdm__fail(err, TDM_EIO, "decision log: fdatasync: %s",
                           strerror(errno));
  pthread_mutex_unlock(&log->lock);
  /* The segments closed before (their records were written before this
   * call) and still queued for the finisher are synced here too, through
   * duplicates of their descriptors (the finisher closes its own once
   * the segment is off the queue): the caller never waits for the
   * finisher's hashing and registry work. One closed after the open
   * segment's sync above holds nothing that sync did not cover. A
   * segment the finisher already took off the queue was synced by it. */
  pthread_mutex_lock(&log->finish_lock);
  size_t queued = log->num_to_finish, num_fds = 0;
  int *fds = queued ? tdm__malloc(queued * sizeof *fds) : NULL;
  int failed = log->sync_failed || (queued && fds == NULL);
  for (size_t i = 0; i < queued && !failed; i++) {
    fds[num_fds] = dup(log->to_finish[i].fd);
    if (fds[num_fds] < 0) failed = 1;
    else num_fds++;
  }
  pthread_mutex_unlock(&log->finish_lock);
  for (size_t i = 0; i < num_fds; i++) {
    if (fdatasync(fds[i]) != 0) failed = 1;
    close(fds[i]);
  }
  tdm__free(fds);
  if (rc == TDM_OK && failed)
    rc = tdm__fail(err, TDM_EIO,
                   "decision log: a closed segment could not be synced; the "
                   "write-ahead log keeps its records");
  return rc;
}

int tdm__decision_log_append(tdm__decision_log *log, const char *records,
                             size_t len, tdm_error *err) {
  pthread_mutex_lock(&log->lock);
  int rc = make_room(log, err);
  if (rc == TDM_OK && write_fully(log->fd, log->bytes, records, len) != 0)
    rc = tdm__fail(err, TDM_EIO, "decision log: write: %s", strerror(errno));
  if (rc == TDM_OK) {
    log->bytes += len;
    start_writeback(log, log->bytes);
  }
  pthread_mutex_unlock(&log->lock);
  return rc;
}

int tdm__decision_log_each(tdm__decision_log *log,
                           int (*fn)(void *ctx, const char *line, size_t len,
                                     tdm_error *err),
                           void *ctx, tdm_error *err) {
  int rc = TDM_OK;
  /* Segment numbers are dense from 1 up to the open one, less any a
   * person removed: a missing file is skipped. */
  for (uint64_t n = 1; n < log->segment && rc == TDM_OK; n++) {
    char *path = segment_path(log, n, "");
    if (path == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
    char *text = NULL;
    size_t size = 0;
    if (access(path, F_OK) == 0)
      rc = tdm__read_file(path, &text, &size, err);
    for (size_t at = 0; rc == TDM_OK && at < size;) {
      const char *nl = memchr(text + at, '\n', size - at);
      size_t end = nl ? (size_t)(nl - text) : size;
      if (end > at) rc = fn(ctx, text + at, end - at, err);
      at = end + 1;
    }
    tdm__free(text);
    tdm__free(path);
  }
  return rc;
}

void tdm__decision_log_close(tdm__decision_log *log) {
  if (log == NULL) return;
  tdm_error err;
  /* Under the lock: the finisher's timer may be closing the segment by
   * age at the same time. */
  pthread_mutex_lock(&log->lock);
  int rc = close_segment(log, &err);
  pthread_mutex_unlock(&log->lock);
  if (rc != TDM_OK)
    fprintf(stderr, "tandem %s: decision log: %s\n",
            log->runner ? log->runner : "serve", err.message);
  if (log->finisher_running) {
    /* Every closed segment is finished before the log goes. */
    pthread_mutex_lock(&log->finish_lock);
    log->stopping = 1;
    pthread_cond_signal(&log->finish_wanted);
    pthread_mutex_unlock(&log->finish_lock);
    pthread_join(log->finisher, NULL);
  }
  tdm__free(log->to_finish);
  pthread_mutex_destroy(&log->finish_lock);
  pthread_cond_destroy(&log->finish_wanted);
  tdm__free(log->dir);
  tdm__free(log->pipeline_path);
  tdm__free(log->pipeline_sha256);
  tdm__free(log->pipeline_name);
  tdm__free(log->model_sha256);
  tdm__free(log->runner);
  tdm__free(log->registry);
  pthread_mutex_destroy(&log->lock);
  tdm__free(log);
}
