/*
 * registry.c - the run registry in SQLite (see registry.h). A run is
 * recorded from its manifest: C reads the manifest only to check what it
 * is and to make its paths absolute; SQLite's JSON functions take every
 * other field out of the manifest text in the INSERT itself, and the whole
 * manifest is kept beside them so nothing it says is lost. Concurrency is
 * SQLite's: WAL journaling (readers never wait for the writer), a 10 s
 * busy timeout, and BEGIN IMMEDIATE so that a writer takes its lock before
 * it reads anything and never has to fail on an upgrade.
 */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/core.h"
#include "../core/json.h"

struct tdm__registry {
  sqlite3 *db;
  char *path;
  int empty; /* read-only and never written: no runs table yet */
};

/* How long a process waits for another's lock before it gives up. */
#define BUSY_TIMEOUT_MS 10000

/*
 * migrations[v] takes the schema from version v to v + 1. A new version
 * adds an entry here (never edits an old one) and raises
 * TDM__REGISTRY_SCHEMA_VERSION; tdm__registry_open applies what is missing
 * in one transaction.
 */
static const char *const migrations[TDM__REGISTRY_SCHEMA_VERSION] = {
    "CREATE TABLE runs ("
    "  id TEXT PRIMARY KEY,"
    "  command TEXT NOT NULL,"
    "  started_at TEXT NOT NULL,"
    "  finished_at TEXT,"
    "  seconds REAL,"
    "  tandem_version TEXT,"
    "  pipeline_path TEXT,"
    "  pipeline_sha256 TEXT,"
    "  pipeline_name TEXT,"
    "  model_path TEXT,"
    "  model_sha256 TEXT,"
    "  model_version TEXT,"
    "  input_path TEXT,"
    "  input_sha256 TEXT,"
    "  output_path TEXT,"
    "  output_sha256 TEXT,"
    "  rows INTEGER,"
    "  rejected INTEGER,"
    "  duplicates INTEGER,"
    "  threads INTEGER,"
    "  flags TEXT,"
    "  tables TEXT,"
    "  metrics TEXT,"
    "  manifest_path TEXT,"
    "  manifest TEXT NOT NULL,"
    "  recorded_at TEXT NOT NULL"
    ");"
    "CREATE INDEX runs_started ON runs (started_at);"
    "CREATE INDEX runs_model ON runs (model_sha256);"
    "CREATE INDEX runs_pipeline ON runs (pipeline_sha256);",
};

static int db_fail(tdm__registry *r, tdm_error *err, const char *what) {
  return tdm__fail(err, TDM_EIO, "registry %s: %s: %s", r->path, what,
                   sqlite3_errmsg(r->db));
}

static int exec(tdm__registry *r, const char *sql, tdm_error *err) {
  char *message = NULL;
  if (sqlite3_exec(r->db, sql, NULL, NULL, &message) == SQLITE_OK)
    return TDM_OK;
  int rc = tdm__fail(err, TDM_EIO, "registry %s: %s", r->path,
                     message ? message : sqlite3_errmsg(r->db));
  sqlite3_free(message);
  return rc;
}

static void rollback(tdm__registry *r) {
  sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Creates the directories above path (mkdir -p of its dirname). */
static int make_parents(const char *path, tdm_error *err) {
  char *copy = tdm__strdup(path);
  if (copy == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  char *slash = strrchr(copy, '/');
  int rc = TDM_OK;
  if (slash != NULL && slash != copy) {
    *slash = '\0';
    for (char *p = copy + 1; rc == TDM_OK; p++) {
      int last = *p == '\0';
      if (*p != '/' && !last) continue;
      *p = '\0';
      if (mkdir(copy, 0755) != 0 && errno != EEXIST)
        rc = tdm__fail(err, TDM_EIO, "registry %s: cannot create %s: %s",
                       path, copy, strerror(errno));
      if (last) break;
      *p = '/';
    }
  }
  tdm__free(copy);
  return rc;
}

/* The schema version recorded in the database; 0 before the first. */
static int schema_version(tdm__registry *r, int *version, tdm_error *err) {
  *version = 0;
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(r->db,
                              "SELECT count(*) FROM sqlite_master WHERE "
                              "type = 'table' AND name = 'schema_version'",
                              -1, &st, NULL);
  if (rc != SQLITE_OK) return db_fail(r, err, "reading the schema");
  rc = sqlite3_step(st);
  int exists = rc == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) return db_fail(r, err, "reading the schema");
  if (!exists) return TDM_OK;
  if (sqlite3_prepare_v2(r->db, "SELECT max(version) FROM schema_version", -1,
                         &st, NULL) != SQLITE_OK)
    return db_fail(r, err, "reading the schema version");
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *version = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) return db_fail(r, err, "reading the schema version");
  return TDM_OK;
}

/* Brings the schema to TDM__REGISTRY_SCHEMA_VERSION in one transaction. */
static int migrate(tdm__registry *r, tdm_error *err) {
  int rc = exec(r, "BEGIN IMMEDIATE", err);
  if (rc != TDM_OK) return rc;
  int version = 0;
  rc = exec(r,
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER NOT NULL)",
            err);
  if (rc == TDM_OK) rc = schema_version(r, &version, err);
  if (rc == TDM_OK && version > TDM__REGISTRY_SCHEMA_VERSION)
    rc = tdm__fail(err, TDM_EUNSUPPORTED,
                   "registry %s: schema version %d is newer than this "
                   "tandem's (%d)",
                   r->path, version, TDM__REGISTRY_SCHEMA_VERSION);
  if (rc == TDM_OK && version < TDM__REGISTRY_SCHEMA_VERSION) {
    for (int v = version; rc == TDM_OK && v < TDM__REGISTRY_SCHEMA_VERSION;
         v++)
      rc = exec(r, migrations[v], err);
    char sql[128];
    snprintf(sql, sizeof sql,
             "DELETE FROM schema_version; "
             "INSERT INTO schema_version VALUES (%d)",
             TDM__REGISTRY_SCHEMA_VERSION);
    if (rc == TDM_OK) rc = exec(r, sql, err);
  }
  if (rc == TDM_OK) return exec(r, "COMMIT", err);
  rollback(r);
  return rc;
}

/*
 * Switches to WAL. Unlike other statements this one can answer
 * SQLITE_BUSY at once while another process is creating the same new
 * database, so it is retried here for as long as the busy timeout.
 */
static int use_wal(tdm__registry *r, tdm_error *err) {
  struct timespec pause = {0, 10 * 1000 * 1000};
  for (int waited = 0;; waited += 10) {
    int rc = sqlite3_exec(r->db, "PRAGMA journal_mode = WAL", NULL, NULL,
                          NULL);
    if (rc == SQLITE_OK) return TDM_OK;
    if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) ||
        waited >= BUSY_TIMEOUT_MS)
      return db_fail(r, err, "setting WAL mode");
    nanosleep(&pause, NULL);
  }
}

int tdm__registry_open(const char *path, int mode, tdm__registry **out,
                       tdm_error *err) {
  *out = NULL;
  tdm__registry *r = tdm__calloc(1, sizeof *r);
  if (r == NULL || (r->path = tdm__strdup(path)) == NULL) {
    tdm__free(r);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  int rc = TDM_OK;
  int writable = 1;
  if (mode == TDM__REGISTRY_WRITE) {
    rc = make_parents(path, err);
    if (rc == TDM_OK &&
        sqlite3_open_v2(path, &r->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK)
      rc = db_fail(r, err, "cannot open");
  } else {
    struct stat sb;
    if (stat(path, &sb) != 0) {
      rc = tdm__fail(err, TDM_ENOTFOUND, "registry %s: %s", path,
                     strerror(errno));
    } else if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE, NULL) !=
               SQLITE_OK) {
      /* Someone else's registry, or one on read-only media. */
      sqlite3_close(r->db);
      r->db = NULL;
      writable = 0;
      if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READONLY, NULL) !=
          SQLITE_OK)
        rc = db_fail(r, err, "cannot open");
    }
  }
  if (rc == TDM_OK) sqlite3_busy_timeout(r->db, BUSY_TIMEOUT_MS);
  if (rc == TDM_OK && writable) rc = use_wal(r, err);
  int version = 0;
  if (rc == TDM_OK) rc = schema_version(r, &version, err);
  if (rc == TDM_OK && version != TDM__REGISTRY_SCHEMA_VERSION) {
    if (writable && (mode == TDM__REGISTRY_WRITE || version > 0))
      rc = migrate(r, err);
    else if (version > TDM__REGISTRY_SCHEMA_VERSION || version > 0)
      rc = tdm__fail(err, TDM_EUNSUPPORTED,
                     "registry %s: schema version %d, this tandem reads %d",
                     path, version, TDM__REGISTRY_SCHEMA_VERSION);
    else
      r->empty = 1;
  }
  if (rc != TDM_OK) {
    tdm__registry_close(r);
    return rc;
  }
  *out = r;
  return TDM_OK;
}

void tdm__registry_close(tdm__registry *registry) {
  if (registry == NULL) return;
  sqlite3_close(registry->db);
  tdm__free(registry->path);
  tdm__free(registry);
}

/* ---- recording ---- */

/*
 * A new run id: 12 hex digits of SHA-256 over the time in nanoseconds,
 * the process id and 8 random bytes. Unique in practice; a collision is
 * still caught by the primary key and retried with a fresh id.
 */
static void new_run_id(char id[16]) {
  struct {
    struct timespec now;
    pid_t pid;
    unsigned char random[8];
  } seed;
  memset(&seed, 0, sizeof seed);
  clock_gettime(CLOCK_REALTIME, &seed.now);
  seed.pid = getpid();
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, seed.random, sizeof seed.random);
    (void)n; /* without it the time and pid still differ between runs */
    close(fd);
  }
  char hex[65];
  tdm__sha256_hex(&seed, sizeof seed, hex);
  memcpy(id, hex, 12);
  id[12] = '\0';
}

/*
 * path as an absolute path: resolved when it exists, else joined to the
 * current directory. NULL for NULL. The caller frees the result.
 */
static char *absolute_path(const char *path) {
  if (path == NULL) return NULL;
  char resolved[PATH_MAX];
  if (realpath(path, resolved) != NULL) return tdm__strdup(resolved);
  if (path[0] == '/') return tdm__strdup(path);
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == NULL) return tdm__strdup(path);
  tdm__buf b = {0};
  if (tdm__buf_printf(&b, "%s/%s", cwd, path) != TDM_OK) return NULL;
  return b.data;
}

/* A string member of a manifest's object member: manifest.outer.name. */
static const char *manifest_string(const tdm__json *root, const char *outer,
                                   const char *name) {
  const tdm__json *v = tdm__json_get(tdm__json_get(root, outer), name);
  return v != NULL && v->type == TDM__JSON_STRING ? v->text : NULL;
}

static const char insert_sql[] =
    "INSERT INTO runs (id, command, started_at, finished_at, seconds,"
    " tandem_version, pipeline_path, pipeline_sha256, pipeline_name,"
    " model_path, model_sha256, model_version, input_path, input_sha256,"
    " output_path, output_sha256, rows, rejected, duplicates, threads, flags,"
    " tables, manifest_path, manifest, recorded_at) "
    "SELECT ?1, json_extract(m, '$.command'),"
    " coalesce(json_extract(m, '$.started_at'),"
    "  strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(m, '$.finished_at'),"
    "   printf('-%f seconds', coalesce(json_extract(m, '$.seconds'), 0))),"
    "  strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),"
    " json_extract(m, '$.finished_at'), json_extract(m, '$.seconds'),"
    " json_extract(m, '$.tandem_version'),"
    " ?3, json_extract(m, '$.pipeline.sha256'),"
    " json_extract(m, '$.pipeline.name'),"
    " ?4, json_extract(m, '$.model.sha256'),"
    " substr(json_extract(m, '$.model.sha256'), 1, 12),"
    " ?5, json_extract(m, '$.input.sha256'),"
    " ?6, json_extract(m, '$.output.sha256'),"
    " coalesce(json_extract(m, '$.output.rows'),"
    "  json_extract(m, '$.output.events')),"
    " json_extract(m, '$.rejects.events'),"
    " json_extract(m, '$.output.duplicates'),"
    " json_extract(m, '$.flags.threads'),"
    " coalesce(json_extract(m, '$.flags'), '{}'),"
    " coalesce(json_extract(m, '$.tables'), '[]'),"
    " ?7, m, strftime('%Y-%m-%dT%H:%M:%SZ', 'now') "
    "FROM (SELECT json(?2) AS m)";

/* Inserts one run with a fresh id, retrying on the unlikely collision. */
static int insert_run(tdm__registry *r, const char *manifest, char *paths[5],
                      char run_id[16], tdm_error *err) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(r->db, insert_sql, -1, &st, NULL) != SQLITE_OK)
    return db_fail(r, err, "preparing the insert");
  int rc = TDM_OK;
  for (int attempt = 0;; attempt++) {
    new_run_id(run_id);
    sqlite3_bind_text(st, 1, run_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, manifest, -1, SQLITE_STATIC);
    for (int i = 0; i < 5; i++)
      sqlite3_bind_text(st, 3 + i, paths[i], -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) break;
    if (sqlite3_extended_errcode(r->db) == SQLITE_CONSTRAINT_PRIMARYKEY &&
        attempt < 8) {
      sqlite3_reset(st);
      continue;
    }
    rc = db_fail(r, err, "recording the run");
    break;
  }
  sqlite3_finalize(st);
  return rc;
}

int tdm__registry_has_manifest(const char *registry_path,
                               const char *manifest_path, int *found,
                               tdm_error *err) {
  *found = 0;
  char *path = absolute_path(manifest_path);
  if (path == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  tdm__registry *r = NULL;
  int rc = tdm__registry_open(registry_path, TDM__REGISTRY_READ, &r, err);
  if (rc == TDM_ENOTFOUND) {
    tdm__free(path);
    return TDM_OK;
  }
  sqlite3_stmt *st = NULL;
  if (rc == TDM_OK && !r->empty &&
      sqlite3_prepare_v2(r->db, "SELECT 1 FROM runs WHERE manifest_path = ?1",
                         -1, &st, NULL) != SQLITE_OK)
    rc = db_fail(r, err, "looking up a run");
  if (rc == TDM_OK && st != NULL) {
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) *found = 1;
    else if (step != SQLITE_DONE) rc = db_fail(r, err, "looking up a run");
  }
  sqlite3_finalize(st);
  tdm__registry_close(r);
  tdm__free(path);
  return rc;
}

int tdm__registry_record_manifest(const char *registry_path,
                                  const char *manifest_path, char run_id[16],
                                  tdm_error *err) {
  run_id[0] = '\0';
  char *text = NULL;
  size_t size = 0;
  int rc = tdm__read_file(manifest_path, &text, &size, err);
  if (rc != TDM_OK) return rc;
  tdm__json_doc doc;
  rc = tdm__json_parse(&doc, text, size, manifest_path, 0, err);
  if (rc != TDM_OK) {
    tdm__free(text);
    return rc;
  }
  const tdm__json *command = tdm__json_get(doc.root, "command");
  char *paths[5] = {NULL, NULL, NULL, NULL, NULL};
  if (command == NULL || command->type != TDM__JSON_STRING ||
      (strcmp(command->text, "score") != 0 &&
       strcmp(command->text, "batch") != 0 &&
       strcmp(command->text, "live") != 0)) {
    rc = tdm__fail(err, TDM_EPARSE,
                   "%s: not a manifest of tandem score, batch or a decision "
                   "log segment (live)",
                   manifest_path);
  } else {
    /* pipeline, model, input, output, the manifest itself */
    const char *given[5] = {manifest_string(doc.root, "pipeline", "path"),
                            manifest_string(doc.root, "model", "path"),
                            manifest_string(doc.root, "input", "path"),
                            manifest_string(doc.root, "output", "path"),
                            manifest_path};
    for (int i = 0; i < 5 && rc == TDM_OK; i++)
      if (given[i] != NULL && (paths[i] = absolute_path(given[i])) == NULL)
        rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  tdm__registry *r = NULL;
  if (rc == TDM_OK)
    rc = tdm__registry_open(registry_path, TDM__REGISTRY_WRITE, &r, err);
  if (rc == TDM_OK) rc = exec(r, "BEGIN IMMEDIATE", err);
  if (rc == TDM_OK) {
    rc = insert_run(r, text, paths, run_id, err);
    if (rc == TDM_OK) rc = exec(r, "COMMIT", err);
    if (rc != TDM_OK) {
      rollback(r);
      run_id[0] = '\0';
    }
  }
  tdm__registry_close(r);
  for (int i = 0; i < 5; i++) tdm__free(paths[i]);
  tdm__json_doc_free(&doc);
  tdm__free(text);
  return rc;
}

/* ---- reading ---- */

static const char select_columns[] =
    "SELECT id, command, started_at, finished_at, seconds, tandem_version,"
    " pipeline_path, pipeline_sha256, pipeline_name, model_path,"
    " model_sha256, model_version, input_path, input_sha256, output_path,"
    " output_sha256, rows, rejected, duplicates, threads, flags, tables,"
    " metrics, json_extract(manifest, '$.tags') FROM runs";

static char *column_text(sqlite3_stmt *st, int i, int *oom) {
  const unsigned char *text = sqlite3_column_text(st, i);
  if (text == NULL) return NULL;
  char *copy = tdm__strdup((const char *)text);
  if (copy == NULL) *oom = 1;
  return copy;
}

static int64_t column_count(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL
             ? -1
             : (int64_t)sqlite3_column_int64(st, i);
}

/* Fills run from a row of select_columns; returns 0, or -1 out of memory. */
static int read_run(sqlite3_stmt *st, tdm__run_record *run) {
  int oom = 0;
  memset(run, 0, sizeof *run);
  const unsigned char *id = sqlite3_column_text(st, 0);
  snprintf(run->id, sizeof run->id, "%s", id ? (const char *)id : "");
  run->command = column_text(st, 1, &oom);
  run->started_at = column_text(st, 2, &oom);
  run->finished_at = column_text(st, 3, &oom);
  run->seconds = sqlite3_column_double(st, 4);
  run->tandem_version = column_text(st, 5, &oom);
  run->pipeline_path = column_text(st, 6, &oom);
  run->pipeline_sha256 = column_text(st, 7, &oom);
  run->pipeline_name = column_text(st, 8, &oom);
  run->model_path = column_text(st, 9, &oom);
  run->model_sha256 = column_text(st, 10, &oom);
  run->model_version = column_text(st, 11, &oom);
  run->input_path = column_text(st, 12, &oom);
  run->input_sha256 = column_text(st, 13, &oom);
  run->output_path = column_text(st, 14, &oom);
  run->output_sha256 = column_text(st, 15, &oom);
  run->rows = column_count(st, 16);
  run->rejected = column_count(st, 17);
  run->duplicates = column_count(st, 18);
  run->threads = column_count(st, 19);
  run->flags = column_text(st, 20, &oom);
  run->tables = column_text(st, 21, &oom);
  run->metrics = column_text(st, 22, &oom);
  run->tags = column_text(st, 23, &oom);
  return oom ? -1 : 0;
}

void tdm__run_record_free(tdm__run_record *run) {
  if (run == NULL) return;
  char **strings[] = {
      &run->command,        &run->started_at,    &run->finished_at,
      &run->tandem_version, &run->pipeline_path, &run->pipeline_sha256,
      &run->pipeline_name,  &run->model_path,    &run->model_sha256,
      &run->model_version,  &run->input_path,    &run->input_sha256,
      &run->output_path,    &run->output_sha256, &run->flags,
      &run->tables,         &run->metrics,       &run->tags};
  for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
    tdm__free(*strings[i]);
    *strings[i] = NULL;
  }
}

void tdm__run_records_free(tdm__run_record *runs, size_t count) {
  if (runs == NULL) return;
  for (size_t i = 0; i < count; i++) tdm__run_record_free(&runs[i]);
  tdm__free(runs);
}

int tdm__registry_list(tdm__registry *registry, const tdm__run_filter *filter,
                       tdm__run_record **runs, size_t *count, tdm_error *err) {
  *runs = NULL;
  *count = 0;
  if (registry->empty) return TDM_OK;
  tdm__buf sql = {0};
  const char *values[5];
  int n = 0;
  int rc = tdm__buf_printf(&sql, "%s WHERE 1", select_columns);
  if (rc == TDM_OK && filter->command) {
    values[n++] = filter->command;
    rc = tdm__buf_printf(&sql, " AND command = ?%d", n);
  }
  if (rc == TDM_OK && filter->model_prefix) {
    values[n++] = filter->model_prefix;
    rc = tdm__buf_printf(&sql, " AND substr(model_sha256, 1, length(?%d)) = ?%d",
                         n, n);
  }
  if (rc == TDM_OK && filter->pipeline_path) {
    values[n++] = filter->pipeline_path;
    rc = tdm__buf_printf(&sql, " AND pipeline_path = ?%d", n);
  }
  if (rc == TDM_OK && filter->pipeline_prefix) {
    values[n++] = filter->pipeline_prefix;
    rc = tdm__buf_printf(&sql,
                         " AND substr(pipeline_sha256, 1, length(?%d)) = ?%d",
                         n, n);
  }
  if (rc == TDM_OK && filter->since) {
    values[n++] = filter->since;
    rc = tdm__buf_printf(&sql, " AND julianday(started_at) >= julianday(?%d)",
                         n);
  }
  /* Start times are compared as times, not as text: manifests write
   * milliseconds ("...:05.250Z"), older ones whole seconds ("...:05Z"),
   * and as text "05Z" sorts after "05.250Z". rowid (the order runs were
   * recorded) breaks what is still a tie. */
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&sql,
                         " ORDER BY julianday(started_at) DESC, rowid DESC");
  if (rc == TDM_OK && filter->limit > 0)
    rc = tdm__buf_printf(&sql, " LIMIT %zu", filter->limit);
  if (rc != TDM_OK) {
    tdm__buf_free(&sql);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(registry->db, sql.data, -1, &st, NULL) != SQLITE_OK) {
    tdm__buf_free(&sql);
    return db_fail(registry, err, "listing runs");
  }
  tdm__buf_free(&sql);
  for (int i = 0; i < n; i++)
    sqlite3_bind_text(st, i + 1, values[i], -1, SQLITE_STATIC);
  tdm__run_record *list = NULL;
  size_t len = 0, cap = 0;
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    if (len == cap) {
      size_t grown = cap ? cap * 2 : 16;
      tdm__run_record *bigger = tdm__realloc(list, grown * sizeof *list);
      if (bigger == NULL) {
        rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
        break;
      }
      list = bigger;
      cap = grown;
    }
    int bad = read_run(st, &list[len]);
    len++;
    if (bad) {
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
      break;
    }
  }
  if (rc == TDM_OK && step != SQLITE_DONE)
    rc = db_fail(registry, err, "listing runs");
  sqlite3_finalize(st);
  if (rc != TDM_OK) {
    tdm__run_records_free(list, len);
    return rc;
  }
  *runs = list;
  *count = len;
  return TDM_OK;
}

/* Ids are lowercase hex; a prefix must be too (it is compared as text). */
static int valid_id_prefix(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n > 12) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
      return 0;
  return 1;
}

int tdm__registry_get(tdm__registry *registry, const char *id,
                      tdm__run_record *run, tdm_error *err) {
  memset(run, 0, sizeof *run);
  if (!valid_id_prefix(id))
    return tdm__fail(err, TDM_EINVAL,
                     "'%s' is not a run id (up to 12 lowercase hex digits)",
                     id);
  if (registry->empty)
    return tdm__fail(err, TDM_ENOTFOUND, "registry %s: no run %s",
                     registry->path, id);
  tdm__buf sql = {0};
  if (tdm__buf_printf(&sql,
                      "%s WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2",
                      select_columns) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(registry->db, sql.data, -1, &st, NULL);
  tdm__buf_free(&sql);
  if (rc != SQLITE_OK) return db_fail(registry, err, "reading a run");
  sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
  int step = sqlite3_step(st);
  if (step == SQLITE_ROW) {
    rc = read_run(st, run) == 0 ? TDM_OK
                                : tdm__fail(err, TDM_ENOMEM, "out of memory");
    if (rc == TDM_OK && sqlite3_step(st) == SQLITE_ROW) {
      tdm__run_record_free(run);
      rc = tdm__fail(err, TDM_EINVAL,
                     "registry %s: more than one run starts with %s",
                     registry->path, id);
    }
  } else if (step == SQLITE_DONE) {
    rc = tdm__fail(err, TDM_ENOTFOUND, "registry %s: no run %s",
                   registry->path, id);
  } else {
    rc = db_fail(registry, err, "reading a run");
  }
  sqlite3_finalize(st);
  if (rc != TDM_OK) tdm__run_record_free(run);
  return rc;
}

int tdm__registry_set_metrics(const char *registry_path, const char *run_id,
                              const char *json, tdm_error *err) {
  tdm__registry *r = NULL;
  int rc = tdm__registry_open(registry_path, TDM__REGISTRY_WRITE, &r, err);
  if (rc != TDM_OK) return rc;
  tdm__run_record run;
  rc = exec(r, "BEGIN IMMEDIATE", err);
  if (rc == TDM_OK) {
    rc = tdm__registry_get(r, run_id, &run, err);
    sqlite3_stmt *st = NULL;
    if (rc == TDM_OK &&
        sqlite3_prepare_v2(r->db,
                           "UPDATE runs SET metrics = json(?2) WHERE id = ?1 "
                           "AND json_type(?2) = 'object'",
                           -1, &st, NULL) != SQLITE_OK)
      rc = db_fail(r, err, "setting metrics");
    if (rc == TDM_OK) {
      sqlite3_bind_text(st, 1, run.id, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 2, json, -1, SQLITE_STATIC);
      if (sqlite3_step(st) != SQLITE_DONE)
        rc = tdm__fail(err, TDM_EINVAL, "registry %s: metrics of run %s: %s",
                       r->path, run.id, sqlite3_errmsg(r->db));
      else if (sqlite3_changes(r->db) != 1)
        rc = tdm__fail(err, TDM_EINVAL,
                       "registry %s: metrics of run %s must be a JSON object",
                       r->path, run.id);
    }
    sqlite3_finalize(st);
    tdm__run_record_free(&run);
    if (rc == TDM_OK) rc = exec(r, "COMMIT", err);
    if (rc != TDM_OK) rollback(r);
  }
  tdm__registry_close(r);
  return rc;
}

/* Appends ", \"name\": " and s as a JSON string, or null. */
static int json_member(tdm__buf *b, const char *name, const char *s) {
  int rc = tdm__buf_printf(b, ", \"%s\": ", name);
  if (rc != TDM_OK) return rc;
  return s ? tdm__json_append_string(b, s) : tdm__buf_append(b, "null", 4);
}

static int json_count(tdm__buf *b, const char *name, int64_t n) {
  return n < 0 ? tdm__buf_printf(b, ", \"%s\": null", name)
               : tdm__buf_printf(b, ", \"%s\": %lld", name, (long long)n);
}

int tdm__run_record_json(tdm__buf *b, const tdm__run_record *run) {
  int rc = tdm__buf_printf(b, "{\"id\": \"%s\"", run->id);
  if (rc == TDM_OK) rc = json_member(b, "command", run->command);
  if (rc == TDM_OK) rc = json_member(b, "started_at", run->started_at);
  if (rc == TDM_OK) rc = json_member(b, "finished_at", run->finished_at);
  if (rc == TDM_OK) rc = tdm__buf_printf(b, ", \"seconds\": %.6f", run->seconds);
  if (rc == TDM_OK) rc = json_member(b, "tandem_version", run->tandem_version);
  if (rc == TDM_OK) rc = tdm__buf_printf(b, ", \"pipeline\": {\"path\": ");
  if (rc == TDM_OK)
    rc = run->pipeline_path ? tdm__json_append_string(b, run->pipeline_path)
                            : tdm__buf_append(b, "null", 4);
  if (rc == TDM_OK) rc = json_member(b, "sha256", run->pipeline_sha256);
  if (rc == TDM_OK) rc = json_member(b, "name", run->pipeline_name);
  if (rc == TDM_OK) rc = tdm__buf_printf(b, "}, \"model\": {\"path\": ");
  if (rc == TDM_OK)
    rc = run->model_path ? tdm__json_append_string(b, run->model_path)
                         : tdm__buf_append(b, "null", 4);
  if (rc == TDM_OK) rc = json_member(b, "sha256", run->model_sha256);
  if (rc == TDM_OK) rc = json_member(b, "version", run->model_version);
  if (rc == TDM_OK) rc = tdm__buf_printf(b, "}, \"input\": {\"path\": ");
  if (rc == TDM_OK)
    rc = run->input_path ? tdm__json_append_string(b, run->input_path)
                         : tdm__buf_append(b, "null", 4);
  if (rc == TDM_OK) rc = json_member(b, "sha256", run->input_sha256);
  if (rc == TDM_OK) rc = tdm__buf_printf(b, "}, \"output\": {\"path\": ");
  if (rc == TDM_OK)
    rc = run->output_path ? tdm__json_append_string(b, run->output_path)
                          : tdm__buf_append(b, "null", 4);
  if (rc == TDM_OK) rc = json_member(b, "sha256", run->output_sha256);
  if (rc == TDM_OK) rc = tdm__buf_append(b, "}", 1);
  if (rc == TDM_OK) rc = json_count(b, "rows", run->rows);
  if (rc == TDM_OK) rc = json_count(b, "rejected", run->rejected);
  if (rc == TDM_OK) rc = json_count(b, "duplicates", run->duplicates);
  if (rc == TDM_OK) rc = json_count(b, "threads", run->threads);
  /* These columns hold JSON that SQLite's json() produced or checked. */
  if (rc == TDM_OK)
    rc = tdm__buf_printf(
        b,
        ", \"flags\": %s, \"tables\": %s, \"metrics\": %s, "
        "\"tags\": %s}",
        run->flags ? run->flags : "{}", run->tables ? run->tables : "[]",
        run->metrics ? run->metrics : "null", run->tags ? run->tags : "{}");
  return rc;
}
