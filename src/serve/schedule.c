/*
 * schedule.c - the refresh scheduler of schedule.h. One thread sleeps
 * until the earliest next time of any schedule, then runs that refresh
 * as a child process (this same binary, `tandem batch ...`), waits for
 * it, and records the outcome. Refreshes run one at a time; a schedule
 * whose time comes while another refresh runs runs right after it.
 */
#include "schedule.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../core/json.h"
#include "../store/table.h"

typedef struct run_state {
  const tdm__schedule_spec *spec;
  int64_t next_ms;
  int running;
  int64_t started_ms;
  unsigned long long runs, failures;
  /* the last finished run */
  int64_t last_started_ms, last_finished_ms, last_success_ms;
  int last_status; /* the child's exit status; -signal when killed */
  char last_message[512];
} run_state;

struct tdm__scheduler {
  const tdm__spec *spec;
  char *pipeline_path, *store, *self;
  char *scratch_dir; /* a Redis store's refreshes write here */
  run_state *runs;
  size_t count;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  int stopping;
  pid_t child;
};

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The last non-empty line of a file (a failed child's stderr). */
static void last_line(const char *path, char *out, size_t size) {
  out[0] = '\0';
  FILE *fp = fopen(path, "r");
  if (fp == NULL) return;
  char line[1024];
  while (fgets(line, sizeof line, fp) != NULL) {
    size_t n = strcspn(line, "\r\n");
    if (n == 0) continue;
    if (n >= size) n = size - 1;
    memcpy(out, line, n);
    out[n] = '\0';
  }
  fclose(fp);
}

/* What a successful refresh wrote, from its manifest's "tables": "table T
 * version V: N rows as of TIME" for each. 0 when the manifest says none. */
static int tables_written(const char *manifest, char *out, size_t size) {
  char *text;
  size_t len;
  tdm_error err;
  out[0] = '\0';
  if (tdm__read_file(manifest, &text, &len, &err) != TDM_OK) return 0;
  tdm__json_doc doc;
  int found = 0;
  if (tdm__json_parse(&doc, text, len, manifest, 0, &err) == TDM_OK) {
    const tdm__json *tables = tdm__json_get(doc.root, "tables");
    size_t used = 0;
    for (size_t i = 0; tables && tables->type == TDM__JSON_ARRAY &&
                       i < tables->count && used < size;
         i++) {
      const tdm__json *t = &tables->items[i];
      const tdm__json *name = tdm__json_get(t, "table");
      const tdm__json *version = tdm__json_get(t, "version");
      const tdm__json *rows = tdm__json_get(t, "rows");
      const tdm__json *as_of = tdm__json_get(t, "as_of");
      if (!name || !version || !rows || !as_of) continue;
      used += (size_t)snprintf(out + used, size - used,
                               "%stable %s version %.*s: %.*s rows as of %s",
                               found ? "; " : "", name->text,
                               (int)version->text_len, version->text,
                               (int)rows->text_len, rows->text, as_of->text);
      found = 1;
    }
    tdm__json_doc_free(&doc);
  }
  tdm__free(text);
  return found;
}

/* Runs one refresh to its end; called without the lock. */
static void refresh(tdm__scheduler *s, run_state *r) {
  char dir[4096], out[4200], log[4200];
  const char *store = s->store;
  if (tdm__tables_is_url(store)) {
    /* A Redis store has no directory: the run's output and log go to a
     * private one under the scratch directory. */
    snprintf(dir, sizeof dir, "%s/tandem-refresh-%ld", s->scratch_dir,
             (long)getpid());
    mkdir(dir, 0700);
  } else {
    snprintf(dir, sizeof dir, "%s/.tandem-refresh", store);
    mkdir(store, 0777);
    mkdir(dir, 0777);
  }
  const char *table = r->spec->table;
  snprintf(out, sizeof out, "%s/%s.csv", dir, table ? table : "all");
  snprintf(log, sizeof log, "%s/%s.log", dir, table ? table : "all");
  /* The child's arguments: one --materialize per table refreshed. */
  const char *argv[64];
  size_t argc = 0;
  argv[argc++] = s->self;
  argv[argc++] = "batch";
  argv[argc++] = s->pipeline_path;
  argv[argc++] = "--in";
  argv[argc++] = r->spec->in;
  argv[argc++] = "--out";
  argv[argc++] = out;
  argv[argc++] = "--store";
  argv[argc++] = store;
  for (size_t m = 0; m < s->spec->num_materialize && argc + 3 < 64; m++) {
    if (table != NULL && strcmp(table, s->spec->materialize[m].table) != 0)
      continue;
    argv[argc++] = "--materialize";
    argv[argc++] = s->spec->materialize[m].table;
  }
  argv[argc] = NULL;
  int status = -1;
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 2);
      close(fd);
    }
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
    }
    /* The server blocks these for sigwait; the child wants defaults. */
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    execv(s->self, (char *const *)argv);
    _exit(127);
  }
  if (pid > 0) {
    pthread_mutex_lock(&s->lock);
    s->child = pid;
    pthread_mutex_unlock(&s->lock);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&s->lock);
    s->child = 0;
    pthread_mutex_unlock(&s->lock);
  }
  unlink(out);
  char manifest[4300], written[512];
  snprintf(manifest, sizeof manifest, "%s.manifest.json", out);
  int have_tables = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
                    tables_written(manifest, written, sizeof written);
  unlink(manifest);
  pthread_mutex_lock(&s->lock);
  r->last_started_ms = r->started_ms;
  r->last_finished_ms = wall_ms();
  r->runs++;
  if (pid < 0) {
    r->last_status = -1;
    snprintf(r->last_message, sizeof r->last_message, "cannot start: %s",
             strerror(errno));
  } else if (WIFEXITED(status)) {
    r->last_status = WEXITSTATUS(status);
    if (have_tables)
      snprintf(r->last_message, sizeof r->last_message, "%s", written);
    else
      last_line(log, r->last_message, sizeof r->last_message);
  } else {
    r->last_status = WIFSIGNALED(status) ? -WTERMSIG(status) : -1;
    snprintf(r->last_message, sizeof r->last_message, "killed by signal %d",
             WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  }
  if (r->last_status == 0)
    r->last_success_ms = r->last_finished_ms;
  else
    r->failures++;
  r->running = 0;
  pthread_mutex_unlock(&s->lock);
  fprintf(stderr, "tandem serve: refresh of %s %s: %s\n", table ? table : "tables",
          r->last_status == 0 ? "done" : "failed", r->last_message);
}

static void *loop(void *arg) {
  tdm__scheduler *s = arg;
  pthread_mutex_lock(&s->lock);
  while (!s->stopping) {
    size_t due = 0;
    for (size_t i = 1; i < s->count; i++)
      if (s->runs[i].next_ms < s->runs[due].next_ms) due = i;
    int64_t now = wall_ms();
    if (s->runs[due].next_ms > now) {
      int64_t at = s->runs[due].next_ms;
      struct timespec until = {(time_t)(at / 1000), (long)(at % 1000) * 1000000};
      pthread_cond_timedwait(&s->wake, &s->lock, &until);
      continue;
    }
    run_state *r = &s->runs[due];
    r->running = 1;
    r->started_ms = now;
    /* The next time counts from now: a refresh that ran late does not
     * run again at once for the times it missed. */
    r->next_ms = tdm__cron_next(&r->spec->when, now);
    pthread_mutex_unlock(&s->lock);
    refresh(s, r);
    pthread_mutex_lock(&s->lock);
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

int tdm__scheduler_start(const char *pipeline_path, const tdm__spec *spec,
                         const char *store, const char *scratch_dir,
                         tdm__scheduler **out, tdm_error *err) {
  *out = NULL;
  if (spec->num_schedules == 0) return TDM_OK;
  if (store == NULL) store = spec->store;
  if (store == NULL)
    return tdm__fail(err, TDM_EINVAL,
                     "%s: the schedule refreshes tables: give their store "
                     "(store: in the pipeline, or --store DIR)",
                     spec->path);
  tdm__scheduler *s = tdm__calloc(1, sizeof *s);
  if (s == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) self[n] = '\0';
  s->spec = spec;
  s->pipeline_path = tdm__strdup(pipeline_path);
  s->store = tdm__strdup(store);
  s->scratch_dir =
      tdm__strdup(scratch_dir != NULL && scratch_dir[0] ? scratch_dir : "/tmp");
  s->self = tdm__strdup(n > 0 ? self : "tandem");
  s->runs = tdm__calloc(spec->num_schedules, sizeof *s->runs);
  s->count = spec->num_schedules;
  if (!s->pipeline_path || !s->store || !s->scratch_dir || !s->self ||
      !s->runs) {
    tdm__scheduler_stop(s);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  int64_t now = wall_ms();
  for (size_t i = 0; i < s->count; i++) {
    s->runs[i].spec = &spec->schedules[i];
    s->runs[i].next_ms = tdm__cron_next(&spec->schedules[i].when, now);
  }
  pthread_mutex_init(&s->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_cond_init(&s->wake, &attr);
  pthread_condattr_destroy(&attr);
  if (pthread_create(&s->thread, NULL, loop, s) != 0) {
    tdm__free(s->runs);
    s->runs = NULL;
    s->count = 0;
    tdm__scheduler_stop(s);
    return tdm__fail(err, TDM_ENOMEM, "cannot start the scheduler thread");
  }
  *out = s;
  return TDM_OK;
}

void tdm__scheduler_stop(tdm__scheduler *s) {
  if (s == NULL) return;
  if (s->count > 0) {
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    if (s->child > 0) kill(s->child, SIGTERM);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
  }
  tdm__free(s->runs);
  tdm__free(s->pipeline_path);
  tdm__free(s->store);
  tdm__free(s->scratch_dir);
  tdm__free(s->self);
  tdm__free(s);
}

static void time_text(int64_t ms, char buf[40]) {
  if (ms <= 0 || ms == INT64_MAX) {
    memcpy(buf, "null", 5);
    return;
  }
  char t[32];
  tdm__format_time(ms, t);
  size_t n = strlen(t);
  buf[0] = '"';
  memcpy(buf + 1, t, n);
  buf[n + 1] = '"';
  buf[n + 2] = '\0';
}

int tdm__scheduler_status(tdm__scheduler *s, tdm__buf *out) {
  int rc = tdm__buf_append(out, "{\"schedules\":[", 14);
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; i < s->count && rc == TDM_OK; i++) {
    const run_state *r = &s->runs[i];
    char next[40], started[40], last_started[40], last_finished[40],
        last_success[40], cron[TDM__CRON_FORMAT_SIZE];
    time_text(r->next_ms, next);
    time_text(r->running ? r->started_ms : 0, started);
    time_text(r->last_started_ms, last_started);
    time_text(r->last_finished_ms, last_finished);
    time_text(r->last_success_ms, last_success);
    tdm__cron_format(&r->spec->when, cron, sizeof cron);
    if (i > 0) rc = tdm__buf_append(out, ",", 1);
    if (rc == TDM_OK) rc = tdm__buf_append(out, "{\"cron\":", 8);
    if (rc == TDM_OK) rc = tdm__json_append_string(out, cron);
    if (rc == TDM_OK) rc = tdm__buf_append(out, ",\"table\":", 9);
    if (rc == TDM_OK)
      rc = r->spec->table ? tdm__json_append_string(out, r->spec->table)
                          : tdm__buf_append(out, "null", 4);
    if (rc == TDM_OK) rc = tdm__buf_append(out, ",\"in\":", 6);
    if (rc == TDM_OK) rc = tdm__json_append_string(out, r->spec->in);
    if (rc == TDM_OK)
      rc = tdm__buf_printf(out,
                           ",\"running\":%s,\"started\":%s,\"next\":%s,"
                           "\"runs\":%llu,\"failures\":%llu,\"last\":{"
                           "\"started\":%s,\"finished\":%s,\"exit_status\":%d,"
                           "\"last_success\":%s,\"message\":",
                           r->running ? "true" : "false", started, next,
                           r->runs, r->failures, last_started, last_finished,
                           r->last_status, last_success);
    if (rc == TDM_OK) rc = tdm__json_append_string(out, r->last_message);
    if (rc == TDM_OK) rc = tdm__buf_append(out, "}}", 2);
  }
  pthread_mutex_unlock(&s->lock);
  if (rc == TDM_OK) rc = tdm__buf_append(out, "]}", 2);
  return rc;
}

int tdm__scheduler_metrics(tdm__scheduler *s, const char *pipeline,
                           tdm__buf *out) {
  static const char *families[] = {
      "# HELP tandem_refresh_runs_total Scheduled table refreshes that "
      "finished, by result.\n# TYPE tandem_refresh_runs_total counter\n",
      "# HELP tandem_refresh_running 1 while a scheduled refresh runs.\n"
      "# TYPE tandem_refresh_running gauge\n",
      "# HELP tandem_refresh_last_success_timestamp_seconds When the last "
      "successful refresh finished (Unix time; 0: never).\n"
      "# TYPE tandem_refresh_last_success_timestamp_seconds gauge\n",
      "# HELP tandem_refresh_next_timestamp_seconds When the next refresh "
      "is due (Unix time).\n"
      "# TYPE tandem_refresh_next_timestamp_seconds gauge\n"};
  int rc = TDM_OK;
  pthread_mutex_lock(&s->lock);
  for (int f = 0; f < 4 && rc == TDM_OK; f++) {
    rc = tdm__buf_append(out, families[f], strlen(families[f]));
    for (size_t i = 0; i < s->count && rc == TDM_OK; i++) {
      const run_state *r = &s->runs[i];
      const char *table = r->spec->table ? r->spec->table : "all";
      if (f == 0)
        rc = tdm__buf_printf(
            out,
            "tandem_refresh_runs_total{pipeline=\"%s\",table=\"%s\","
            "result=\"success\"} %llu\n"
            "tandem_refresh_runs_total{pipeline=\"%s\",table=\"%s\","
            "result=\"failure\"} %llu\n",
            pipeline, table, r->runs - r->failures, pipeline, table,
            r->failures);
      else if (f == 1)
        rc = tdm__buf_printf(out,
                             "tandem_refresh_running{pipeline=\"%s\",table=\"%s\"} "
                             "%d\n",
                             pipeline, table, r->running);
      else
        rc = tdm__buf_printf(
            out, "%s{pipeline=\"%s\",table=\"%s\"} %.3f\n",
            f == 2 ? "tandem_refresh_last_success_timestamp_seconds"
                   : "tandem_refresh_next_timestamp_seconds",
            pipeline, table,
            (double)(f == 2 ? r->last_success_ms : r->next_ms) / 1000.0);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}
