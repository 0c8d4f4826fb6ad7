/*
 * redis_table.c - the versioned tables of table.h kept in Redis, so that
 * any number of serving machines read the tables one batch job writes
 * (docs/hybrid.md). table.c sends every call on a redis:// store here; the
 * versioning rules and the metadata record are the ones table.c uses
 * (table_backend.h). The same code serves redis:// and rediss:// (TLS):
 * redis_conn.c hides which one a connection is.
 *
 * Keys of table T, each starting with K = "tandem:table:" T ":":
 *   K "current"    the visible versions, newest first, as decimal numbers
 *                  separated by spaces ("7 6 5"): what readers follow
 *   K "next"       the last version number given out
 *   K N ":meta"    version N's metadata record
 *   K N ":rows"    a hash: entity -> the row's doubles (native byte order)
 *   K "staging:" I the rows a batch job is still writing; they expire a day
 *                  after the last write, so a job that dies leaves nothing
 *                  lasting behind
 * A writer fills its own staging hash, then one Lua script (Redis runs a
 * script atomically) numbers the version, renames the staging hash to its
 * rows, writes the metadata, puts the number at the head of "current" and
 * unlinks the versions beyond `keep`. Readers see the old list or the new
 * one, never a version without all its rows. Numbers are given out at
 * commit, so two jobs that materialize at once get consecutive versions
 * in the order they commit, as LMDB's serialized writers do.
 *
 * Readers never wait on Redis per event. The store object keeps, per table
 * a reader asked for, an immutable in-memory catalog of its versions (each
 * loaded once, whole, into a hash index); a background thread polls each
 * followed table's "current" key every POLL_MS and loads new versions. A
 * reader holds references to catalogs and swaps them on refresh, which is
 * a pointer copy under a mutex. When Redis goes away, the catalogs stay as
 * they were, the thread reconnects with a doubling backoff, and the health
 * counters say so; staleness grows, so max_staleness readiness follows.
 */
#include "redis_conn.h"
#include "table_backend.h"

#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEY_PREFIX "tandem:table:"
#define POLL_MS 200
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_MS 10000
/* Rows sent per round trip while writing. */
#define WRITE_BATCH 1000
#define STAGING_TTL_S 86400
/* Tries of a load that raced with a commit deleting what it read. */
#define LOAD_TRIES 5

/* ---- in-memory versions ---- */

/* One version, loaded whole; immutable once made, shared by refcount. */
typedef struct loaded_version {
  atomic_long refs;
  tdm__table_version v;
  size_t num_rows;
  size_t mask;        /* slots - 1, slots a power of two */
  uint32_t *slots;    /* row index + 1; 0 is an empty slot */
  size_t *key_offset; /* num_rows + 1 offsets into keys */
  char *keys;
  double *values; /* num_rows x num_columns */
} loaded_version;

/* One table's visible versions at one moment; immutable, shared. */
typedef struct catalog {
  atomic_long refs;
  char *listing; /* the "current" text it was made from */
  size_t count;
  loaded_version **versions; /* newest first */
} catalog;

typedef struct followed {
  char *table;
  catalog *current;
} followed;

struct tdm__redis_tables {
  char *url, *host, *user, *password;
  int port, db;
  tdm__redis_tls *tls;  /* rediss://: the TLS settings; NULL for redis:// */
  pthread_mutex_t lock; /* tables and their current catalogs */
  followed *tables;
  size_t num_tables, cap_tables;
  pthread_cond_t wake;
  int stopping;
  pthread_mutex_t conn_lock; /* conn: the follower's and loads' connection */
  tdm__redis_conn *conn;
  int ever_lost;
  pthread_t thread;
  int thread_started;
  atomic_ullong generation, reconnects, failures;
  atomic_int connected;
};

typedef struct held {
  char *table;
  catalog *c;
} held;

struct tdm__redis_reader {
  tdm__redis_tables *r;
  held *items;
  size_t count, cap, last;
};

struct tdm__redis_writer {
  tdm__redis_tables *r;
  tdm__redis_conn *conn;
  char *table, *staging, *prefix;
  size_t num_columns, keep, rows, pending;
  tdm__buf meta;
  int failed;
};

static void version_release(loaded_version *lv) {
  if (lv == NULL || atomic_fetch_sub(&lv->refs, 1) != 1) return;
  tdm__table_version_clear(&lv->v);
  tdm__free(lv->slots);
  tdm__free(lv->key_offset);
  tdm__free(lv->keys);
  tdm__free(lv->values);
  tdm__free(lv);
}

static void catalog_release(catalog *c) {
  if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1) return;
  for (size_t i = 0; i < c->count; i++) version_release(c->versions[i]);
  tdm__free(c->versions);
  tdm__free(c->listing);
  tdm__free(c);
}

static uint64_t entity_hash(const void *entity, size_t len) {
  return tdm__hash_bytes(entity, len, 0x7461626c65ULL);
}

/* The row index of entity, or SIZE_MAX. */
static size_t find_row(const loaded_version *lv, const void *entity,
                       size_t len) {
  if (lv->num_rows == 0) return SIZE_MAX;
  for (size_t s = entity_hash(entity, len) & lv->mask;;
       s = (s + 1) & lv->mask) {
    uint32_t slot = lv->slots[s];
    if (slot == 0) return SIZE_MAX;
    size_t row = slot - 1;
    size_t at = lv->key_offset[row];
    if (lv->key_offset[row + 1] - at == len &&
        memcmp(lv->keys + at, entity, len) == 0)
      return row;
  }
}

/* ---- connections ---- */

static int redis_fail(tdm_error *err, const char *url, const char *what,
                      const tdm__redis_conn *c, const redisReply *reply) {
  const char *lost = c ? tdm__redis_conn_error(c) : NULL;
  const char *why = reply && reply->type == REDIS_REPLY_ERROR ? reply->str
                    : lost                                    ? lost
                                                              : "no reply";
  return tdm__fail(err, TDM_EIO, "%s: %s: %s", url, what, why);
}

/* Runs one command and checks for an error reply; *out is freed by the
 * caller (NULL on failure). */
static int command(tdm__redis_conn *c, const char *url, const char *what,
                   redisReply **out, tdm_error *err, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  redisReply *reply = tdm__redis_conn_vcommand(c, format, ap);
  va_end(ap);
  *out = NULL;
  if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
    int status = redis_fail(err, url, what, c, reply);
    if (reply) freeReplyObject(reply);
    return status;
  }
  *out = reply;
  return TDM_OK;
}

/* Connects (with TLS for rediss://), authenticates and selects the
 * database. */
static int connect_to(const tdm__redis_tables *r, tdm__redis_conn **out,
                      tdm_error *err) {
  *out = NULL;
  tdm__redis_conn *c;
  int status =
      tdm__redis_conn_open(r->url, r->host, r->port, r->tls, CONNECT_TIMEOUT_MS,
                           COMMAND_TIMEOUT_MS, &c, err);
  if (status != TDM_OK) return status;
  redisReply *reply = NULL;
  if (r->password != NULL && r->user != NULL)
    status = command(c, r->url, "cannot authenticate", &reply, err,
                     "AUTH %s %s", r->user, r->password);
  else if (r->password != NULL)
    status = command(c, r->url, "cannot authenticate", &reply, err, "AUTH %s",
                     r->password);
  if (reply) freeReplyObject(reply);
  reply = NULL;
  if (status == TDM_OK)
    status = command(c, r->url, "cannot select the database", &reply, err,
                     "SELECT %d", r->db);
  if (reply) freeReplyObject(reply);
  /* A TLS-only Redis takes the first command for a bad TLS hello and drops
   * the connection; one that wants client certificates drops a TLS client
   * without one after the handshake (TLS 1.3). "Reset by peer" alone
   * points at neither, so the likely cause is added. */
  const char *hint = NULL;
  if (status != TDM_OK && tdm__redis_conn_error(c) != NULL)
    hint = r->tls == NULL ? "a Redis that serves TLS only closes a plain "
                            "connection so: use rediss://"
           : !tdm__redis_tls_has_client_certificate(r->tls)
               ? "a Redis that wants client certificates closes so: set "
                 "TANDEM_REDIS_CERT_FILE and TANDEM_REDIS_KEY_FILE"
               : NULL;
  if (hint != NULL) {
    char why[sizeof err->message];
    snprintf(why, sizeof why, "%s", err->message);
    status = tdm__fail(err, status, "%s (%s)", why, hint);
  }
  if (status != TDM_OK) {
    tdm__redis_conn_free(c);
    return status;
  }
  *out = c;
  return TDM_OK;
}

/* Reads the password from the settings' redis_password_file (first line)
 * or redis_password (the CLI's TANDEM_REDIS_PASSWORD_FILE and
 * TANDEM_REDIS_PASSWORD, by which messages name them): never from the URL,
 * which the process list and shell history show. */
static int read_password(const char *url, const tdm__store_settings *settings,
                         char **out, tdm_error *err) {
  *out = NULL;
  if (settings == NULL) return TDM_OK;
  const char *path = settings->redis_password_file;
  if (path != NULL && path[0] != '\0') {
    char *text = NULL;
    size_t len = 0;
    int status = tdm__read_file(path, &text, &len, err);
    if (status != TDM_OK) {
      char why[sizeof err->message];
      snprintf(why, sizeof why, "%s", err->message);
      return tdm__fail(err, status, "%s: TANDEM_REDIS_PASSWORD_FILE: %s", url,
                       why);
    }
    text[strcspn(text, "\r\n")] = '\0';
    *out = text;
    return TDM_OK;
  }
  const char *password = settings->redis_password;
  if (password != NULL && password[0] != '\0' &&
      (*out = tdm__strdup(password)) == NULL)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  return TDM_OK;
}

/* redis://[USER@]HOST[:PORT][/DB], or rediss:// for TLS (*tls set). */
static int parse_url(tdm__redis_tables *r, const char *url, int *tls,
                     tdm_error *err) {
  *tls = strncmp(url, "rediss://", 9) == 0;
  const char *p = url + (*tls ? strlen("rediss://") : strlen("redis://"));
  const char *end = p + strcspn(p, "/");
  const char *at = memchr(p, '@', (size_t)(end - p));
  if (at != NULL) {
    if (memchr(p, ':', (size_t)(at - p)) != NULL)
      /* Not even the URL is repeated: it holds the password. */
      return tdm__fail(err, TDM_EINVAL,
                       "the Redis store URL holds a password, which shows in "
                       "the process list: give it in "
                       "TANDEM_REDIS_PASSWORD_FILE (a file) or "
                       "TANDEM_REDIS_PASSWORD instead");
    if (at > p && (r->user = tdm__malloc((size_t)(at - p) + 1)) != NULL) {
      memcpy(r->user, p, (size_t)(at - p));
      r->user[at - p] = '\0';
    }
    p = at + 1;
  }
  const char *colon = memchr(p, ':', (size_t)(end - p));
  const char *host_end = colon ? colon : end;
  if (host_end == p)
    return tdm__fail(
        err, TDM_EINVAL,
        "%s: expected redis://[USER@]HOST[:PORT][/DB] (or rediss:// for TLS)",
        url);
  if ((r->host = tdm__malloc((size_t)(host_end - p) + 1)) == NULL)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  memcpy(r->host, p, (size_t)(host_end - p));
  r->host[host_end - p] = '\0';
  r->port = 6379;
  if (colon != NULL) {
    char *stop;
    long port = strtol(colon + 1, &stop, 10);
    if (stop != end || colon + 1 == end || port < 1 || port > 65535)
      return tdm__fail(err, TDM_EINVAL,
                       "%s: the port must be a number from 1 to 65535", url);
    r->port = (int)port;
  }
  r->db = 0;
  if (*end == '/' && end[1] != '\0') {
    char *stop;
    long db = strtol(end + 1, &stop, 10);
    if (*stop != '\0' || db < 0 || db > 1000000)
      return tdm__fail(err, TDM_EINVAL,
                       "%s: the database after the / must be a number (0, 1, "
                       "...)",
                       url);
    r->db = (int)db;
  }
  return TDM_OK;
}

/* ---- loading versions ---- */

/* What a load finds when a commit deleted what it was reading: try again. */
#define RACED 1

static int key_text(tdm__buf *b, const char *table, const char *suffix) {
  b->len = 0;
  return tdm__buf_printf(b, KEY_PREFIX "%s:%s", table, suffix);
}

/* Adds one row to the version being built; a duplicate (HSCAN may return
 * a field twice) keeps the first. */
static int add_row(loaded_version *lv, size_t *cap, const char *entity,
                   size_t len, const char *row_bytes, size_t row_len,
                   tdm__buf *keys) {
  size_t n = lv->v.num_columns;
  if (find_row(lv, entity, len) != SIZE_MAX) return TDM_OK;
  if (lv->num_rows == *cap) {
    size_t grown = *cap ? *cap * 2 : 64;
    size_t *offsets =
        tdm__realloc(lv->key_offset, (grown + 1) * sizeof *offsets);
    if (offsets == NULL) return TDM_ENOMEM;
    lv->key_offset = offsets;
    double *values =
        tdm__realloc(lv->values, grown * (n ? n : 1) * sizeof *values);
    if (values == NULL) return TDM_ENOMEM;
    lv->values = values;
    *cap = grown;
  }
  if ((lv->num_rows + 1) * 2 > lv->mask + 1) {
    /* Keep the index at most half full: rebuild it twice as large. */
    size_t slots = (lv->mask + 1) * 2;
    uint32_t *table = tdm__calloc(slots, sizeof *table);
    if (table == NULL) return TDM_ENOMEM;
    tdm__free(lv->slots);
    lv->slots = table;
    lv->mask = slots - 1;
    lv->keys = keys->data;
    for (size_t row = 0; row < lv->num_rows; row++) {
      size_t at = lv->key_offset[row];
      size_t s =
          entity_hash(keys->data + at, lv->key_offset[row + 1] - at) & lv->mask;
      while (lv->slots[s] != 0) s = (s + 1) & lv->mask;
      lv->slots[s] = (uint32_t)(row + 1);
    }
  }
  if (tdm__buf_append(keys, entity, len) != 0) return TDM_ENOMEM;
  lv->keys = keys->data;
  size_t row = lv->num_rows++;
  lv->key_offset[row + 1] = keys->len;
  if (n > 0) memcpy(lv->values + row * n, row_bytes, row_len);
  size_t s = entity_hash(entity, len) & lv->mask;
  while (lv->slots[s] != 0) s = (s + 1) & lv->mask;
  lv->slots[s] = (uint32_t)(row + 1);
  return TDM_OK;
}

/* Loads table@version whole. RACED when it disappeared while loading. */
static int load_version(tdm__redis_tables *r, const char *table,
                        uint64_t version, loaded_version **out,
                        tdm_error *err) {
  *out = NULL;
  tdm__redis_conn *c = r->conn;
  tdm__buf key = {0};
  char suffix[48];
  snprintf(suffix, sizeof suffix, "%llu:meta", (unsigned long long)version);
  if (key_text(&key, table, suffix) != 0)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  redisReply *reply;
  int status = command(c, r->url, "cannot read a table version", &reply, err,
                       "GET %b", key.data, key.len);
  if (status != TDM_OK) {
    tdm__buf_free(&key);
    return status;
  }
  if (reply->type != REDIS_REPLY_STRING) {
    freeReplyObject(reply);
    tdm__buf_free(&key);
    return RACED;
  }
  loaded_version *lv = tdm__calloc(1, sizeof *lv);
  if (lv == NULL) {
    freeReplyObject(reply);
    tdm__buf_free(&key);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  atomic_init(&lv->refs, 1);
  status = tdm__table_meta_decode(r->url, table, version, reply->str,
                                  (size_t)reply->len, &lv->v, err);
  freeReplyObject(reply);
  tdm__buf keys = {0};
  size_t cap = 0;
  size_t row_bytes = lv->v.num_columns * sizeof(double);
  if (status == TDM_OK) {
    lv->slots = tdm__calloc(2, sizeof *lv->slots);
    lv->key_offset = tdm__calloc(1, sizeof *lv->key_offset);
    lv->mask = 1;
    if (lv->slots == NULL || lv->key_offset == NULL)
      status = tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  snprintf(suffix, sizeof suffix, "%llu:rows", (unsigned long long)version);
  if (status == TDM_OK && key_text(&key, table, suffix) != 0)
    status = tdm__fail(err, TDM_ENOMEM, "out of memory");
  /* HSCAN in steps rather than HGETALL: Redis answers other clients
   * between steps, and no single reply holds the whole table. */
  char cursor[32] = "0";
  do {
    if (status != TDM_OK) break;
    status = command(c, r->url, "cannot read a table version", &reply, err,
                     "HSCAN %b %s COUNT 1000", key.data, key.len, cursor);
    if (status != TDM_OK) break;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY ||
        reply->element[1]->elements % 2 != 0) {
      freeReplyObject(reply);
      status = tdm__fail(err, TDM_EPARSE,
                         "%s: table '%s' version %llu: the rows are not a hash",
                         r->url, table, (unsigned long long)version);
      break;
    }
    snprintf(cursor, sizeof cursor, "%s", reply->element[0]->str);
    redisReply *fields = reply->element[1];
    for (size_t i = 0; i < fields->elements && status == TDM_OK; i += 2) {
      redisReply *entity = fields->element[i], *row = fields->element[i + 1];
      if ((size_t)row->len != row_bytes)
        status = tdm__fail(err, TDM_EPARSE,
                           "%s: table '%s' version %llu: a row of %zu bytes, "
                           "expected %zu (%zu columns)",
                           r->url, table, (unsigned long long)version,
                           (size_t)row->len, row_bytes, lv->v.num_columns);
      else if (add_row(lv, &cap, entity->str, (size_t)entity->len, row->str,
                       row_bytes, &keys) != TDM_OK)
        status = tdm__fail(err, TDM_ENOMEM, "out of memory");
    }
    freeReplyObject(reply);
  } while (strcmp(cursor, "0") != 0);
  tdm__buf_free(&key);
  lv->keys = keys.data;
  /* A commit may unlink a version while it is read: fewer rows than the
   * metadata says means it is gone, not that it is short. */
  if (status == TDM_OK && lv->num_rows != lv->v.rows) status = RACED;
  if (status != TDM_OK) {
    version_release(lv);
    return status;
  }
  *out = lv;
  return TDM_OK;
}

/* Parses "7 6 5" into versions; -1 when it is not such a list. */
static int parse_listing(const char *text, uint64_t **out, size_t *count) {
  *out = NULL;
  *count = 0;
  size_t cap = 0;
  const char *p = text;
  while (*p != '\0') {
    if (*p == ' ') {
      p++;
      continue;
    }
    char *stop;
    unsigned long long v = strtoull(p, &stop, 10);
    if (stop == p || v == 0 || (*stop != ' ' && *stop != '\0')) {
      tdm__free(*out);
      *out = NULL;
      return -1;
    }
    if (*count == cap) {
      cap = cap ? cap * 2 : 8;
      uint64_t *grown = tdm__realloc(*out, cap * sizeof *grown);
      if (grown == NULL) {
        tdm__free(*out);
        *out = NULL;
        return -1;
      }
      *out = grown;
    }
    (*out)[(*count)++] = v;
    p = stop;
  }
  return 0;
}

/*
 * Reads table's "current" key and, when it changed since `old`, makes the
 * catalog it names (reusing old's loaded versions). *out is NULL when
 * nothing changed. Called with conn_lock held.
 */
static int poll_table(tdm__redis_tables *r, const char *table,
                      const catalog *old, catalog **out, tdm_error *err) {
  *out = NULL;
  tdm__buf key = {0};
  if (key_text(&key, table, "current") != 0)
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  redisReply *reply;
  int status = command(r->conn, r->url, "cannot read the table's versions",
                       &reply, err, "GET %b", key.data, key.len);
  tdm__buf_free(&key);
  if (status != TDM_OK) return status;
  const char *text = reply->type == REDIS_REPLY_STRING ? reply->str : "";
  /* No list at all where there was one: a Redis that restarted without its
   * data (or was flushed). Dropping every version would turn each lookup
   * into its default on every replica at once; keeping the versions in
   * memory until a batch job commits a new list degrades as slowly as an
   * unreachable Redis does (staleness grows, readiness follows it). */
  int vanished = reply->type == REDIS_REPLY_NIL && old != NULL && old->count;
  if (vanished || (old != NULL && strcmp(old->listing, text) == 0)) {
    freeReplyObject(reply);
    return TDM_OK;
  }
  uint64_t *numbers;
  size_t count;
  catalog *c = tdm__calloc(1, sizeof *c);
  if (c == NULL || (c->listing = tdm__strdup(text)) == NULL) {
    tdm__free(c);
    freeReplyObject(reply);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  freeReplyObject(reply);
  atomic_init(&c->refs, 1);
  if (parse_listing(c->listing, &numbers, &count) != 0) {
    catalog_release(c);
    return tdm__fail(err, TDM_EPARSE,
                     "%s: table '%s': the version list is not numbers "
                     "separated by spaces",
                     r->url, table);
  }
  c->versions = tdm__calloc(count ? count : 1, sizeof *c->versions);
  if (c->versions == NULL) status = tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t i = 0; i < count && status == TDM_OK; i++) {
    loaded_version *reuse = NULL;
    for (size_t j = 0; old != NULL && j < old->count; j++)
      if (old->versions[j]->v.version == numbers[i]) reuse = old->versions[j];
    if (reuse != NULL) {
      atomic_fetch_add(&reuse->refs, 1);
      c->versions[c->count++] = reuse;
    } else {
      status = load_version(r, table, numbers[i], &c->versions[c->count], err);
      if (status == TDM_OK) c->count++;
    }
  }
  tdm__free(numbers);
  if (status != TDM_OK) {
    catalog_release(c);
    return status;
  }
  *out = c;
  return TDM_OK;
}

/* Drops the connection after an I/O failure; the follower reconnects. */
static void lose_connection(tdm__redis_tables *r) {
  tdm__redis_conn_free(r->conn);
  r->conn = NULL;
  r->ever_lost = 1;
  atomic_store(&r->connected, 0);
}

/* Makes sure a connection exists; called with conn_lock held. */
static int ensure_connection(tdm__redis_tables *r, tdm_error *err) {
  if (r->conn != NULL) return TDM_OK;
  int status = connect_to(r, &r->conn, err);
  if (status != TDM_OK) return status;
  if (r->ever_lost) atomic_fetch_add(&r->reconnects, 1);
  atomic_store(&r->connected, 1);
  return TDM_OK;
}

/* Makes c the current catalog of table; what it replaces is released. */
static void publish(tdm__redis_tables *r, const char *table, catalog *c) {
  catalog *old = NULL;
  pthread_mutex_lock(&r->lock);
  for (size_t i = 0; i < r->num_tables; i++)
    if (strcmp(r->tables[i].table, table) == 0) {
      old = r->tables[i].current;
      r->tables[i].current = c;
      c = NULL;
      break;
    }
  pthread_mutex_unlock(&r->lock);
  catalog_release(old);
  catalog_release(c);
  atomic_fetch_add(&r->generation, 1);
}

/* The current catalog of table with a reference taken, or NULL. */
static catalog *current_of(tdm__redis_tables *r, const char *table) {
  catalog *c = NULL;
  pthread_mutex_lock(&r->lock);
  for (size_t i = 0; i < r->num_tables; i++)
    if (strcmp(r->tables[i].table, table) == 0) {
      c = r->tables[i].current;
      atomic_fetch_add(&c->refs, 1);
      break;
    }
  pthread_mutex_unlock(&r->lock);
  return c;
}

/* Polls every followed table once; called with conn_lock held. */
static void poll_all(tdm__redis_tables *r) {
  for (size_t i = 0;; i++) {
    char *table = NULL;
    pthread_mutex_lock(&r->lock);
    if (i < r->num_tables) table = tdm__strdup(r->tables[i].table);
    pthread_mutex_unlock(&r->lock);
    if (table == NULL) return;
    catalog *old = current_of(r, table);
    catalog *fresh = NULL;
    tdm_error err;
    int status = TDM_OK;
    for (int tries = 0; tries < LOAD_TRIES; tries++) {
      status = poll_table(r, table, old, &fresh, &err);
      if (status != RACED) break;
    }
    catalog_release(old);
    if (status == TDM_OK && fresh != NULL) publish(r, table, fresh);
    tdm__free(table);
    if (status != TDM_OK) {
      atomic_fetch_add(&r->failures, 1);
      /* A reply error leaves the connection usable; anything else (a
       * reset, a timeout) does not. */
      if (r->conn == NULL || tdm__redis_conn_error(r->conn) != NULL) {
        lose_connection(r);
        return;
      }
    }
  }
}

static void *follow(void *arg) {
  tdm__redis_tables *r = arg;
  long wait_ms = POLL_MS, backoff_ms = BACKOFF_FIRST_MS;
  pthread_mutex_lock(&r->lock);
  while (!r->stopping) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += wait_ms % 1000 * 1000000;
    if (until.tv_nsec >= 1000000000) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&r->wake, &r->lock, &until);
    if (r->stopping) break;
    pthread_mutex_unlock(&r->lock);
    pthread_mutex_lock(&r->conn_lock);
    tdm_error err;
    if (ensure_connection(r, &err) != TDM_OK) {
      atomic_fetch_add(&r->failures, 1);
      wait_ms = backoff_ms;
      backoff_ms =
          backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
    } else {
      poll_all(r);
      wait_ms = r->conn != NULL ? POLL_MS : BACKOFF_FIRST_MS;
      if (r->conn != NULL) backoff_ms = BACKOFF_FIRST_MS;
    }
    pthread_mutex_unlock(&r->conn_lock);
    pthread_mutex_lock(&r->lock);
  }
  pthread_mutex_unlock(&r->lock);
  return NULL;
}

/*
 * Follows `table` from now on, loading it first if it is new, and returns
 * its current catalog with a reference taken. Only the first call for a
 * table talks to Redis; later ones copy a pointer.
 */
static int follow_table(tdm__redis_tables *r, const char *table, catalog **out,
                        tdm_error *err) {
  int status = tdm__table_check_name(r->url, table, err);
  if (status != TDM_OK) return status;
  if ((*out = current_of(r, table)) != NULL) return TDM_OK;
  pthread_mutex_lock(&r->conn_lock);
  /* Another thread may have loaded it while this one waited. */
  if ((*out = current_of(r, table)) != NULL) {
    pthread_mutex_unlock(&r->conn_lock);
    return TDM_OK;
  }
  catalog *c = NULL;
  status = ensure_connection(r, err);
  for (int tries = 0; status == TDM_OK && tries < LOAD_TRIES; tries++) {
    status = poll_table(r, table, NULL, &c, err);
    if (status != RACED) break;
  }
  if (status == RACED)
    status = tdm__fail(err, TDM_EIO,
                       "%s: table '%s': its versions kept changing while "
                       "being read",
                       r->url, table);
  if (status != TDM_OK && r->conn != NULL &&
      tdm__redis_conn_error(r->conn) != NULL)
    lose_connection(r);
  if (status == TDM_OK) {
    pthread_mutex_lock(&r->lock);
    if (r->num_tables == r->cap_tables) {
      size_t cap = r->cap_tables ? r->cap_tables * 2 : 4;
      followed *grown = tdm__realloc(r->tables, cap * sizeof *grown);
      if (grown != NULL) {
        r->tables = grown;
        r->cap_tables = cap;
      }
    }
    char *name = tdm__strdup(table);
    if (r->num_tables < r->cap_tables && name != NULL) {
      atomic_fetch_add(&c->refs, 1);
      r->tables[r->num_tables++] = (followed){name, c};
      *out = c;
    } else {
      tdm__free(name);
      catalog_release(c);
      status = tdm__fail(err, TDM_ENOMEM, "out of memory");
    }
    if (status == TDM_OK && !r->thread_started &&
        pthread_create(&r->thread, NULL, follow, r) == 0)
      r->thread_started = 1;
    pthread_mutex_unlock(&r->lock);
  }
  pthread_mutex_unlock(&r->conn_lock);
  return status;
}

/* ---- opening ---- */

int tdm__redis_tables_open(const char *url,
                           const tdm__store_settings *settings,
                           tdm__redis_tables **out, tdm_error *err) {
  *out = NULL;
  tdm__redis_tables *r = tdm__calloc(1, sizeof *r);
  if (r == NULL || (r->url = tdm__strdup(url)) == NULL) {
    tdm__free(r);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  pthread_mutex_init(&r->lock, NULL);
  pthread_mutex_init(&r->conn_lock, NULL);
  pthread_cond_init(&r->wake, NULL);
  int tls = 0;
  int status = parse_url(r, url, &tls, err);
  if (status == TDM_OK && tls)
    status = tdm__redis_tls_new(url, settings, &r->tls, err);
  if (status == TDM_OK) status = read_password(url, settings, &r->password, err);
  if (status == TDM_OK) status = ensure_connection(r, err);
  if (status != TDM_OK) {
    tdm__redis_tables_close(r);
    return status;
  }
  *out = r;
  return TDM_OK;
}

void tdm__redis_tables_close(tdm__redis_tables *r) {
  if (r == NULL) return;
  pthread_mutex_lock(&r->lock);
  r->stopping = 1;
  pthread_cond_broadcast(&r->wake);
  pthread_mutex_unlock(&r->lock);
  if (r->thread_started) pthread_join(r->thread, NULL);
  for (size_t i = 0; i < r->num_tables; i++) {
    tdm__free(r->tables[i].table);
    catalog_release(r->tables[i].current);
  }
  tdm__free(r->tables);
  tdm__redis_conn_free(r->conn);
  tdm__redis_tls_free(r->tls);
  pthread_mutex_destroy(&r->lock);
  pthread_mutex_destroy(&r->conn_lock);
  pthread_cond_destroy(&r->wake);
  if (r->password) memset(r->password, 0, strlen(r->password));
  tdm__free(r->password);
  tdm__free(r->url);
  tdm__free(r->host);
  tdm__free(r->user);
  tdm__free(r);
}

uint64_t tdm__redis_tables_generation(tdm__redis_tables *r) {
  return atomic_load(&r->generation);
}

void tdm__redis_tables_health(tdm__redis_tables *r, tdm__tables_health *out) {
  out->remote = 1;
  out->connected = atomic_load(&r->connected);
  out->reconnects = atomic_load(&r->reconnects);
  out->failures = atomic_load(&r->failures);
}

/* ---- listing ---- */

int tdm__redis_tables_versions(tdm__redis_tables *r, const char *table,
                               tdm__table_version **out, size_t *count,
                               tdm_error *err) {
  *out = NULL;
  *count = 0;
  catalog *c;
  int status = follow_table(r, table, &c, err);
  if (status != TDM_OK) return status;
  tdm__table_version *items =
      tdm__calloc(c->count ? c->count : 1, sizeof *items);
  if (items == NULL) status = tdm__fail(err, TDM_ENOMEM, "out of memory");
  /* A deep copy through the record, so the list outlives the catalog. */
  size_t n = 0;
  for (; n < c->count && status == TDM_OK; n++) {
    const tdm__table_version *v = &c->versions[n]->v;
    tdm__buf meta = {0};
    if (tdm__table_meta_encode(&meta, (const char *const *)v->columns,
                               v->num_columns, v->as_of_ms, v->created_ms,
                               v->source) != 0) {
      status = tdm__fail(err, TDM_ENOMEM, "out of memory");
      break;
    }
    tdm__table_meta_set_rows(&meta, v->rows);
    status = tdm__table_meta_decode(r->url, table, v->version, meta.data,
                                    meta.len, &items[n], err);
    tdm__buf_free(&meta);
    if (status != TDM_OK) break;
  }
  catalog_release(c);
  if (status != TDM_OK) {
    tdm__table_versions_free(items, n);
    return status;
  }
  *out = items;
  *count = n;
  return TDM_OK;
}

int tdm__redis_tables_count(tdm__redis_tables *r, size_t *versions,
                            size_t *rows, tdm_error *err) {
  *versions = 0;
  *rows = 0;
  pthread_mutex_lock(&r->conn_lock);
  int status = ensure_connection(r, err);
  char cursor[32] = "0";
  do {
    redisReply *reply;
    if (status == TDM_OK)
      status = command(r->conn, r->url, "cannot count", &reply, err,
                       "SCAN %s MATCH " KEY_PREFIX "* COUNT 1000", cursor);
    if (status != TDM_OK) break;
    snprintf(cursor, sizeof cursor, "%s", reply->element[0]->str);
    redisReply *keys = reply->element[1];
    for (size_t i = 0; i < keys->elements && status == TDM_OK; i++) {
      const char *k = keys->element[i]->str;
      size_t len = (size_t)keys->element[i]->len;
      if (len > 5 && strcmp(k + len - 5, ":meta") == 0) (*versions)++;
      if (len > 5 && strcmp(k + len - 5, ":rows") == 0) {
        redisReply *hlen;
        status = command(r->conn, r->url, "cannot count", &hlen, err, "HLEN %b",
                         k, len);
        if (status == TDM_OK) {
          *rows += (size_t)hlen->integer;
          freeReplyObject(hlen);
        }
      }
    }
    freeReplyObject(reply);
  } while (status == TDM_OK && strcmp(cursor, "0") != 0);
  pthread_mutex_unlock(&r->conn_lock);
  return status;
}

/* ---- writing ---- */

/* Numbers the version, moves the staged rows into place and makes it
 * visible, all in one atomic step (see the top of this file).
 * KEYS: next, current, staging. ARGV: key prefix, metadata, rows, keep
 * (0: all). */
static const char COMMIT_SCRIPT[] =
    "local rows = tonumber(ARGV[3])\n"
    "if rows > 0 and redis.call('HLEN', KEYS[3]) ~= rows then\n"
    "  return redis.error_reply('the staged rows are gone (expired or "
    "deleted); nothing was committed')\n"
    "end\n"
    "local v = redis.call('INCR', KEYS[1])\n"
    "local k = ARGV[1] .. v\n"
    "if rows > 0 then\n"
    "  redis.call('RENAME', KEYS[3], k .. ':rows')\n"
    "  redis.call('PERSIST', k .. ':rows')\n"
    "end\n"
    "redis.call('SET', k .. ':meta', ARGV[2])\n"
    "local list = {tostring(v)}\n"
    "local keep = tonumber(ARGV[4])\n"
    "local current = redis.call('GET', KEYS[2])\n"
    "if current then\n"
    "  for old in string.gmatch(current, '%d+') do\n"
    "    if keep == 0 or #list < keep then\n"
    "      list[#list + 1] = old\n"
    "    else\n"
    "      redis.call('UNLINK', ARGV[1] .. old .. ':meta', ARGV[1] .. old .. "
    "':rows')\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.call('SET', KEYS[2], table.concat(list, ' '))\n"
    "return v\n";

int tdm__redis_table_begin(tdm__redis_tables *r, const char *table,
                           const char *const *columns, size_t num_columns,
                           int64_t as_of_ms, const char *source, size_t keep,
                           tdm__redis_writer **out, tdm_error *err) {
  *out = NULL;
  tdm__redis_writer *w = tdm__calloc(1, sizeof *w);
  if (w == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  w->r = r;
  w->num_columns = num_columns;
  w->keep = keep;
  char host[64] = "";
  gethostname(host, sizeof host - 1);
  static atomic_ulong writers;
  char staging[160];
  snprintf(staging, sizeof staging, "staging:%s-%ld-%lld-%lu", host,
           (long)getpid(), (long long)tdm__now_ms(),
           (unsigned long)atomic_fetch_add(&writers, 1));
  tdm__buf key = {0}, prefix = {0};
  if ((w->table = tdm__strdup(table)) == NULL ||
      key_text(&key, table, staging) != 0 ||
      tdm__buf_printf(&prefix, KEY_PREFIX "%s:", table) != 0 ||
      tdm__table_meta_encode(&w->meta, columns, num_columns, as_of_ms,
                             tdm__now_ms(), source) != 0) {
    tdm__buf_free(&key);
    tdm__buf_free(&prefix);
    tdm__redis_table_abort(w);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  w->staging = key.data;
  w->prefix = prefix.data;
  /* Its own connection: rows stream out while the follower keeps polling
   * on the store's. */
  int status = connect_to(r, &w->conn, err);
  if (status != TDM_OK) {
    tdm__redis_table_abort(w);
    return status;
  }
  *out = w;
  return TDM_OK;
}

/* Reads the replies of the rows sent so far and renews the staging
 * hash's expiry. */
static int flush_rows(tdm__redis_writer *w, tdm_error *err) {
  if (w->pending == 0) return TDM_OK;
  tdm__redis_conn_append(w->conn, "EXPIRE %s %d", w->staging, STAGING_TTL_S);
  int status = TDM_OK;
  for (size_t i = 0; i <= w->pending; i++) {
    redisReply *reply = NULL;
    if (tdm__redis_conn_get_reply(w->conn, &reply) != 0 || reply == NULL ||
        reply->type == REDIS_REPLY_ERROR) {
      if (status == TDM_OK)
        status =
            redis_fail(err, w->r->url, "cannot write rows", w->conn, reply);
      if (reply == NULL) break; /* the connection is gone */
    } else if (i < w->pending && reply->type == REDIS_REPLY_INTEGER) {
      w->rows += (size_t)reply->integer; /* 1 for a new entity */
    }
    if (reply) freeReplyObject(reply);
  }
  w->pending = 0;
  if (status != TDM_OK) w->failed = 1;
  if (status == TDM_OK) tdm__crash_point("redis-table-rows-written");
  return status;
}

int tdm__redis_table_put(tdm__redis_writer *w, const void *entity, size_t len,
                         const double *values, tdm_error *err) {
  if (w->failed)
    return tdm__fail(err, TDM_EINVAL,
                     "%s: table '%s': writing failed earlier; abort it",
                     w->r->url, w->table);
  if (tdm__redis_conn_append(w->conn, "HSET %s %b %b", w->staging, entity, len,
                             values, w->num_columns * sizeof(double)) != 0) {
    w->failed = 1;
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  if (++w->pending < WRITE_BATCH) return TDM_OK;
  return flush_rows(w, err);
}

size_t tdm__redis_table_rows(const tdm__redis_writer *w) {
  return w->rows + w->pending;
}

int tdm__redis_table_commit(tdm__redis_writer *w, uint64_t *version,
                            tdm_error *err) {
  int status = flush_rows(w, err);
  if (status == TDM_OK && w->failed)
    status = tdm__fail(err, TDM_EINVAL,
                       "%s: table '%s': writing failed earlier; nothing "
                       "committed",
                       w->r->url, w->table);
  if (status != TDM_OK) {
    tdm__redis_table_abort(w);
    return status;
  }
  tdm__table_meta_set_rows(&w->meta, w->rows);
  tdm__crash_point("redis-table-before-commit");
  tdm__buf next = {0}, current = {0};
  redisReply *reply = NULL;
  /* Numbers as text: hiredis 0.14's format knows no %zu. */
  char rows[32], keep[32];
  snprintf(rows, sizeof rows, "%zu", w->rows);
  snprintf(keep, sizeof keep, "%zu",
           w->keep >= (size_t)1 << 40 ? (size_t)0 : w->keep);
  if (key_text(&next, w->table, "next") != 0 ||
      key_text(&current, w->table, "current") != 0)
    status = tdm__fail(err, TDM_ENOMEM, "out of memory");
  else
    status =
        command(w->conn, w->r->url, "cannot commit the table version", &reply,
                err, "EVAL %s 3 %b %b %s %s %b %s %s", COMMIT_SCRIPT, next.data,
                next.len, current.data, current.len, w->staging, w->prefix,
                w->meta.data, w->meta.len, rows, keep);
  tdm__buf_free(&next);
  tdm__buf_free(&current);
  if (status == TDM_OK && reply->type != REDIS_REPLY_INTEGER)
    status = tdm__fail(err, TDM_EIO, "%s: table '%s': unexpected commit reply",
                       w->r->url, w->table);
  if (status == TDM_OK && version != NULL) *version = (uint64_t)reply->integer;
  if (reply) freeReplyObject(reply);
  if (status != TDM_OK && w->rows > 0) {
    /* Nothing is visible; the staged rows would expire anyway. */
    redisReply *gone =
        tdm__redis_conn_command(w->conn, "UNLINK %s", w->staging);
    if (gone) freeReplyObject(gone);
  }
  tdm__free(w->staging);
  w->staging = NULL;
  tdm__redis_table_abort(w);
  return status;
}

void tdm__redis_table_abort(tdm__redis_writer *w) {
  if (w == NULL) return;
  if (w->conn != NULL && w->staging != NULL && w->rows + w->pending > 0 &&
      tdm__redis_conn_error(w->conn) == NULL) {
    /* Read what is still in flight, then drop the staged rows. */
    tdm_error ignored;
    flush_rows(w, &ignored);
    redisReply *gone =
        tdm__redis_conn_command(w->conn, "UNLINK %s", w->staging);
    if (gone) freeReplyObject(gone);
  }
  tdm__redis_conn_free(w->conn);
  tdm__buf_free(&w->meta);
  tdm__free(w->staging);
  tdm__free(w->prefix);
  tdm__free(w->table);
  tdm__free(w);
}

/* ---- reading ---- */

int tdm__redis_reader_new(tdm__redis_tables *r, tdm__redis_reader **out,
                          tdm_error *err) {
  *out = tdm__calloc(1, sizeof **out);
  if (*out == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  (*out)->r = r;
  return TDM_OK;
}

static void release_held(tdm__redis_reader *reader) {
  for (size_t i = 0; i < reader->count; i++) {
    tdm__free(reader->items[i].table);
    catalog_release(reader->items[i].c);
  }
  reader->count = 0;
  reader->last = 0;
}

void tdm__redis_reader_free(tdm__redis_reader *reader) {
  if (reader == NULL) return;
  release_held(reader);
  tdm__free(reader->items);
  tdm__free(reader);
}

/* Forgets the held catalogs: the next pick takes each table's current one,
 * from memory (no Redis round trip). */
int tdm__redis_reader_refresh(tdm__redis_reader *reader, tdm_error *err) {
  release_held(reader);
  return TDM_OK;
}

/* The catalog this reader holds for table, taking it when not yet held. */
static int held_catalog(tdm__redis_reader *reader, const char *table,
                        catalog **out, tdm_error *err) {
  if (reader->last < reader->count &&
      strcmp(reader->items[reader->last].table, table) == 0) {
    *out = reader->items[reader->last].c;
    return TDM_OK;
  }
  for (size_t i = 0; i < reader->count; i++)
    if (strcmp(reader->items[i].table, table) == 0) {
      reader->last = i;
      *out = reader->items[i].c;
      return TDM_OK;
    }
  if (reader->count == reader->cap) {
    size_t cap = reader->cap ? reader->cap * 2 : 4;
    held *grown = tdm__realloc(reader->items, cap * sizeof *grown);
    if (grown == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
    reader->items = grown;
    reader->cap = cap;
  }
  char *name = tdm__strdup(table);
  if (name == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  catalog *c;
  int status = follow_table(reader->r, table, &c, err);
  if (status != TDM_OK) {
    tdm__free(name);
    return status;
  }
  reader->last = reader->count;
  reader->items[reader->count++] = (held){name, c};
  *out = c;
  return TDM_OK;
}

int tdm__redis_reader_pick(tdm__redis_reader *reader, const char *table,
                           int64_t at_ms, const tdm__table_version **out,
                           tdm_error *err) {
  *out = NULL;
  catalog *c;
  int status = held_catalog(reader, table, &c, err);
  if (status != TDM_OK) return status;
  for (size_t i = 0; i < c->count; i++)
    if (c->versions[i]->v.as_of_ms <= at_ms) {
      *out = &c->versions[i]->v;
      return TDM_OK;
    }
  if (at_ms == INT64_MAX)
    return tdm__fail(err, TDM_ENOTFOUND, "%s: table '%s' has no versions",
                     reader->r->url, table);
  return tdm__fail(err, TDM_ENOTFOUND,
                   "%s: table '%s' has no version as of %lld or earlier",
                   reader->r->url, table, (long long)at_ms);
}

int tdm__redis_table_get(tdm__redis_reader *reader, const char *table,
                         uint64_t version, const void *entity, size_t len,
                         const size_t *column_index, size_t n, double *values,
                         int *found, tdm_error *err) {
  *found = 0;
  for (size_t i = 0; i < n; i++) values[i] = NAN;
  catalog *c;
  int status = held_catalog(reader, table, &c, err);
  if (status != TDM_OK) return status;
  const loaded_version *lv = NULL;
  for (size_t i = 0; i < c->count && lv == NULL; i++)
    if (c->versions[i]->v.version == version) lv = c->versions[i];
  if (lv == NULL)
    return tdm__fail(err, TDM_ENOTFOUND, "%s: table '%s' has no version %llu",
                     reader->r->url, table, (unsigned long long)version);
  for (size_t i = 0; i < n; i++)
    if (column_index[i] != SIZE_MAX && column_index[i] >= lv->v.num_columns)
      return tdm__fail(err, TDM_EINVAL,
                       "%s: table '%s' version %llu has %zu columns, not "
                       "column %zu",
                       reader->r->url, table, (unsigned long long)version,
                       lv->v.num_columns, column_index[i]);
  size_t row = find_row(lv, entity, len);
  if (row == SIZE_MAX) return TDM_OK;
  const double *values_row = lv->values + row * lv->v.num_columns;
  for (size_t i = 0; i < n; i++)
    if (column_index[i] != SIZE_MAX) values[i] = values_row[column_index[i]];
  *found = 1;
  return TDM_OK;
}
