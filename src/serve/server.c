/*
 * server.c - the HTTP front of `tandem serve`: routes (a table), admission
 * control, deadlines, body limits, the v2 endpoints and /metrics, on
 * libmicrohttpd's epoll threads (one daemon per thread, each on its own
 * SO_REUSEPORT listening socket). Model handling lives in
 * repository.c and request bodies in infer.c; this file only adapts HTTP.
 *
 * A request's life: on the first callback (headers read) it is routed,
 * counted in flight and admitted or refused; body chunks are buffered up
 * to the limit; on the last callback it is answered; libmicrohttpd's
 * completion callback uncounts it. "Arrival" is the first callback, so
 * queue time is the time from headers read to scoring start.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/core.h"
#include "../eval/drift.h"
#include "access_log.h"
#include "infer.h"

typedef enum route_kind {
  ROUTE_NONE,
  ROUTE_SERVER_METADATA,
  ROUTE_LIVE,
  ROUTE_READY,
  ROUTE_MODEL_METADATA,
  ROUTE_MODEL_READY,
  ROUTE_INFER,
  ROUTE_REPOSITORY_INDEX,
  ROUTE_REPOSITORY_LOAD,
  ROUTE_REPOSITORY_UNLOAD,
  ROUTE_METRICS,
  ROUTE_PIPELINE,
  ROUTE_EVENTS,
  ROUTE_SCHEDULE,
  ROUTE_DRIFT
} route_kind;

/* The endpoints. '*' matches one path segment: the model, then the
 * version. Admin endpoints need loopback or the token. */
static const struct route {
  const char *pattern;
  const char *method;
  route_kind kind;
  int admin;
} routes[] = {
    {"/v2", "GET", ROUTE_SERVER_METADATA, 0},
    {"/v2/health/live", "GET", ROUTE_LIVE, 0},
    {"/v2/health/ready", "GET", ROUTE_READY, 0},
    {"/v2/models/*", "GET", ROUTE_MODEL_METADATA, 0},
    {"/v2/models/*/versions/*", "GET", ROUTE_MODEL_METADATA, 0},
    {"/v2/models/*/ready", "GET", ROUTE_MODEL_READY, 0},
    {"/v2/models/*/versions/*/ready", "GET", ROUTE_MODEL_READY, 0},
    {"/v2/models/*/infer", "POST", ROUTE_INFER, 0},
    {"/v2/models/*/versions/*/infer", "POST", ROUTE_INFER, 0},
    {"/v2/repository/index", "POST", ROUTE_REPOSITORY_INDEX, 1},
    {"/v2/repository/models/*/load", "POST", ROUTE_REPOSITORY_LOAD, 1},
    {"/v2/repository/models/*/unload", "POST", ROUTE_REPOSITORY_UNLOAD, 1},
    {"/metrics", "GET", ROUTE_METRICS, 0},
    {"/v1/pipelines/*", "GET", ROUTE_PIPELINE, 0},
    {"/v1/pipelines/*/events", "POST", ROUTE_EVENTS, 0},
    {"/v1/pipelines/*/schedule", "GET", ROUTE_SCHEDULE, 0},
    {"/v1/pipelines/*/drift", "GET", ROUTE_DRIFT, 0},
};

/* Requests that do work (score, apply events): admission control, body
 * budgets and deadlines apply to them. */
static int is_work(route_kind kind) {
  return kind == ROUTE_INFER || kind == ROUTE_EVENTS;
}

#define MAX_SEGMENT 256

/* The binary tensor data extension's header: the JSON part's bytes. */
#define INFERENCE_HEADER "Inference-Header-Content-Length"

struct tdm__server {
  tdm__server_config config;
  tdm__repository *repo;
  tdm__metrics *metrics;
  struct MHD_Daemon **daemons; /* one per request thread */
  unsigned num_daemons;
  atomic_int draining;
  char address[64];
};

/* The most body bytes reserved for a request before they arrive. */
#define BODY_RESERVE ((size_t)64 << 10)

typedef struct request {
  /* The request target as libmicrohttpd read it (see hidden_nul). */
  const char *target;
  size_t target_len;
  int started; /* the first on_request call has happened */
  const struct route *route; /* NULL: no such endpoint */
  int method_allowed;
  char model[MAX_SEGMENT];
  char version[MAX_SEGMENT];
  int has_version;
  uint64_t arrived_ns;
  tdm__buf body;
  size_t discarded; /* body bytes past the limit, not kept */
  size_t charged;   /* body and answer bytes counted in metrics->buffered */
  size_t prepaid;   /* of those, reserved body bytes not yet arrived */
  int over_budget;  /* the server held too many body bytes to take more */
  int answered;     /* a response is queued */
  int must_close;   /* the framing was refused: close after the answer */
  int counted;      /* in metrics->in_flight */
  /* A pipeline answer waiting (suspended) for its state to be durable. */
  struct MHD_Connection *connection;
  tdm__buf answer;
  unsigned answer_status;
  int waiting;
  atomic_int durable; /* 0: not yet; 1: on disk; -1: failed */
  int overloaded;     /* admitted past the limit: the fallback answers */
  /* The pipeline of an events request, once found: its answer's time is
   * recorded in the pipeline's request histogram. */
  tdm__live *live;
  /* What the access log records, kept only when there is one. */
  char *logged_target; /* the target as sent (owned) */
  uint64_t received;   /* body bytes read, kept or not */
  unsigned status;     /* the answer's status; 0 until one is queued */
  size_t answer_bytes;
  int64_t arrived_ms; /* wall clock */
  char method[16];
  char remote[64];
  char request_id[128];
  int has_request_id;
  /* A response in the binary tensor data extension's form: the bytes of
   * its JSON header (0: the whole body is JSON). */
  size_t inference_header;
} request;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void tdm__server_config_default(tdm__server_config *config) {
  memset(config, 0, sizeof *config);
  config->listen = "127.0.0.1:8080";
  config->max_in_flight = 1024;
  config->max_connections = 4096;
  config->max_body = 16u << 20;
  config->max_buffered = 256u << 20;
  config->max_header = 16u << 10;
  config->default_timeout_us = 0;
  config->idle_timeout_s = 60;
  config->retry_after_s = 1;
}

/* ---- routing ---- */

/* Matches a path against a pattern, capturing the '*' segments. Returns 1
 * on a match. */
static int match(const char *pattern, const char *path, request *r) {
  int captured = 0;
  while (*pattern && *path) {
    if (*pattern == '*') {
      const char *end = strchr(path, '/');
      size_t len = end ? (size_t)(end - path) : strlen(path);
      if (len == 0 || len >= MAX_SEGMENT) return 0;
      char *dest = captured == 0 ? r->model : r->version;
      memcpy(dest, path, len);
      dest[len] = '\0';
      captured++;
      pattern++;
      path += len;
    } else if (*pattern++ != *path++) {
      return 0;
    }
  }
  /* One trailing slash is forgiven. */
  if (*pattern == '\0' && path[0] == '/' && path[1] == '\0') path++;
  if (*pattern != '\0' || *path != '\0') return 0;
  r->has_version = captured == 2;
  return 1;
}

/*
 * The path as sent, checked before routing. libmicrohttpd is told not to
 * percent-decode (unescape_none), so what is routed is what was sent:
 * tandem's names never need escaping, and decoding would turn "%00" into
 * an end of string (a path cut short, "unload%00/infer" routed as
 * "unload") and "%2e%2e" into "..". A '%', a control byte, a byte past
 * ASCII or a "." or ".." segment is refused; NULL when the path is fine.
 */
static const char *path_problem(const char *url) {
  if (url[0] != '/') return "does not start with '/'";
  for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
    if (*p == '%')
      return "has a percent-encoded byte; tandem's paths need none (names "
             "use letters, digits, '_', '-' and '.')";
    if (*p <= 0x20 || *p >= 0x7f) return "has a control or non-ASCII byte";
  }
  for (const char *seg = url; seg != NULL; seg = strchr(seg + 1, '/')) {
    const char *next = seg + 1;
    size_t len = strcspn(next, "/");
    if ((len == 1 && next[0] == '.') ||
        (len == 2 && next[0] == '.' && next[1] == '.'))
      return "has a \".\" or \"..\" segment";
  }
  return NULL;
}

/*
 * The request's context is made when libmicrohttpd has read the request
 * line, so that the target can be seen whole: it hands on_request the
 * path as a C string, which a raw NUL byte in the line would cut short
 * ("unload\0/infer" read as "unload").
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
  const tdm__server *srv = cls;
  (void)c;
  request *r = tdm__calloc(1, sizeof *r);
  if (r != NULL) {
    r->target = uri;
    r->target_len = strlen(uri);
    /* libmicrohttpd cuts the query out of its buffer in place once this
     * returns; the access log records the target as it was sent. */
    if (srv->config.access_log != NULL) {
      r->logged_target = tdm__malloc(r->target_len + 1);
      if (r->logged_target != NULL)
        memcpy(r->logged_target, uri, r->target_len + 1);
    }
  }
  return r;
}

/*
 * Whether the request line had a NUL byte in its target. libmicrohttpd
 * keeps the request line in one buffer: the target, then (the space
 * replaced by a NUL) the version, so the target ends one byte before the
 * version unless a NUL inside it ended the string early. When the version
 * is not found right after the target's place the check cannot be made
 * and does not refuse.
 */
static int hidden_nul(const request *r, const char *version) {
  if (r->target == NULL || version == NULL || version <= r->target ||
      (size_t)(version - r->target) > (1u << 20))
    return 0;
  return version != r->target + r->target_len + 1;
}

/* Paths reach on_request as they were sent (see path_problem). */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s) {
  (void)cls;
  (void)c;
  return strlen(s);
}

static void route_request(request *r, const char *url, const char *method) {
  int head = strcmp(method, "HEAD") == 0;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    if (!match(routes[i].pattern, url, r)) continue;
    /* The first matching pattern decides; the method may still be wrong. */
    r->route = &routes[i];
    r->method_allowed =
        strcmp(method, routes[i].method) == 0 ||
        (head && strcmp(routes[i].method, "GET") == 0);
    return;
  }
}

/* ---- responses ---- */

static void free_body(void *body) { tdm__free(body); }

/* Queues a response; takes ownership of a heap body (owned = 1). */
static enum MHD_Result respond(tdm__server *srv, struct MHD_Connection *c,
                               request *r, unsigned status,
                               const char *content_type, char *body,
                               size_t len, int owned) {
  struct MHD_Response *res =
      owned ? MHD_create_response_from_buffer_with_free_callback(
                  len, body, free_body)
            : MHD_create_response_from_buffer(len, body,
                                              MHD_RESPMEM_PERSISTENT);
  if (res == NULL) {
    if (owned) tdm__free(body);
    return MHD_NO;
  }
  if (content_type != NULL)
    MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  if (r->inference_header > 0) {
    char bytes[24];
    snprintf(bytes, sizeof bytes, "%zu", r->inference_header);
    MHD_add_response_header(res, INFERENCE_HEADER, bytes);
  }
  if (status == MHD_HTTP_SERVICE_UNAVAILABLE) {
    char seconds[16];
    snprintf(seconds, sizeof seconds, "%u", srv->config.retry_after_s);
    MHD_add_response_header(res, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
  }
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED && r->route != NULL)
    MHD_add_response_header(res, MHD_HTTP_HEADER_ALLOW, r->route->method);
  if (status == MHD_HTTP_UNAUTHORIZED)
    MHD_add_response_header(res, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                            "Bearer realm=\"tandem admin\"");
  /* While draining, clients are told to reconnect elsewhere; after a
   * request whose framing was refused, nothing more on the connection can
   * be trusted to start where the client meant it to. */
  if (r->must_close ||
      atomic_load_explicit(&srv->draining, memory_order_relaxed))
    MHD_add_response_header(res, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result ok = MHD_queue_response(c, status, res);
  MHD_destroy_response(res);
  if (r->live != NULL && r->route->kind == ROUTE_EVENTS)
    tdm__live_record_request(r->live, now_ns() - r->arrived_ns);
  r->answered = 1;
  r->status = status;
  r->answer_bytes = len;
  return ok;
}

static enum MHD_Result respond_buf(tdm__server *srv, struct MHD_Connection *c,
                                   request *r, unsigned status,
                                   const char *content_type, tdm__buf *b) {
  char *data = b->data;
  size_t len = b->len;
  /* An answer is held until the client has read it, so it counts in
   * --max-buffered with the request bodies until the request ends: clients
   * that send requests and never read their answers fill the budget, and
   * then get 503 instead of the server's memory. */
  atomic_fetch_add(&srv->metrics->buffered, len);
  r->charged += len;
  b->data = NULL;
  b->len = b->cap = 0;
  if (data == NULL) return respond(srv, c, r, status, content_type, "", 0, 0);
  return respond(srv, c, r, status, content_type, data, len, 1);
}

static enum MHD_Result respond_empty(tdm__server *srv,
                                     struct MHD_Connection *c, request *r,
                                     unsigned status) {
  return respond(srv, c, r, status, NULL, "", 0, 0);
}

/* {"error": "..."} with the formatted message. */
static enum MHD_Result respond_error(tdm__server *srv,
                                     struct MHD_Connection *c, request *r,
                                     unsigned status, const char *fmt, ...)
    TDM__PRINTF(5, 6);
static enum MHD_Result respond_error(tdm__server *srv,
                                     struct MHD_Connection *c, request *r,
                                     unsigned status, const char *fmt, ...) {
  char message[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  tdm__buf b = {0};
  if (tdm__buf_append(&b, "{\"error\":", 9) != TDM_OK ||
      tdm__json_append_string(&b, message) != TDM_OK ||
      tdm__buf_append(&b, "}", 1) != TDM_OK) {
    tdm__buf_free(&b);
    return respond(srv, c, r, MHD_HTTP_INTERNAL_SERVER_ERROR,
                   "application/json", "{\"error\":\"out of memory\"}", 25, 0);
  }
  return respond_buf(srv, c, r, status, "application/json", &b);
}

/* The series a request on this model counts in, when the model is known. */
static tdm__stats *stats_for(tdm__server *srv, const request *r) {
  tdm__loaded *l;
  if (tdm__repository_acquire(srv->repo, r->model,
                              r->has_version ? r->version : NULL,
                              &l) != TDM_OK)
    return &srv->metrics->unknown_model;
  tdm__stats *s = l->stats;
  tdm__loaded_release(l);
  return s;
}

static enum MHD_Result refuse_infer(tdm__server *srv, struct MHD_Connection *c,
                                    request *r, unsigned status,
                                    const char *why) {
  if (r->route->kind == ROUTE_INFER)
    tdm__stats_record(stats_for(srv, r), (int)status,
                      now_ns() - r->arrived_ns, 0, SIZE_MAX);
  return respond_error(srv, c, r, status, "%s", why);
}

/* ---- admin access ---- */

static int is_loopback(const struct sockaddr *sa) {
  if (sa == NULL) return 0;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return 1;
    return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
           in6->sin6_addr.s6_addr[12] == 127;
  }
  return 0;
}

/* Compares in time independent of where the strings first differ. */
static int same_secret(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char diff = (unsigned char)(la != lb);
  for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
  return diff == 0;
}

/* 0 when the admin request may go on, else the status to answer. */
static unsigned admin_denied(tdm__server *srv, struct MHD_Connection *c) {
  const char *token = srv->config.admin_token;
  if (token != NULL) {
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0 ||
        !same_secret(auth + 7, token))
      return MHD_HTTP_UNAUTHORIZED;
    return 0;
  }
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  return info != NULL && is_loopback(info->client_addr) ? 0
                                                        : MHD_HTTP_FORBIDDEN;
}

/* ---- the access log ---- */

/* "ADDRESS:PORT" of the client ("[ADDRESS]:PORT" for IPv6), or "". */
static void client_text(struct MHD_Connection *c, char out[64]) {
  out[0] = '\0';
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (info == NULL || info->client_addr == NULL) return;
  char host[INET6_ADDRSTRLEN] = "";
  const struct sockaddr *sa = info->client_addr;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    snprintf(out, 64, "%s:%u", host, (unsigned)ntohs(in->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 =
        (const struct sockaddr_in6 *)(const void *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    snprintf(out, 64, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
  }
}

/* At a request's first callback: what the log needs from the connection
 * while its headers are at hand. */
static void note_for_log(struct MHD_Connection *c, request *r,
                         const char *method) {
  r->arrived_ms = tdm__now_ms();
  snprintf(r->method, sizeof r->method, "%s", method ? method : "");
  client_text(c, r->remote);
  const char *id =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
  if (id != NULL) {
    snprintf(r->request_id, sizeof r->request_id, "%s", id);
    r->has_request_id = 1;
  }
}

static void log_request(tdm__server *srv, const request *r) {
  tdm__access_entry e = {
      .time_ms = r->arrived_ms,
      .method = r->method,
      .target = r->logged_target,
      .target_len = r->logged_target ? r->target_len : 0,
      .status = r->status,
      .bytes = r->answer_bytes,
      .request_bytes = r->received,
      .duration_us = (now_ns() - r->arrived_ns) / 1000,
      .remote = r->remote,
      .request_id = r->has_request_id ? r->request_id : NULL,
  };
  tdm__access_log_write(srv->config.access_log, &e);
}

/* ---- endpoints ---- */

/* Answers a failed tdm__repository_acquire: not loaded, or unknown. */
static enum MHD_Result model_problem(tdm__server *srv, struct MHD_Connection *c,
                                    request *r, int rc) {
  if (rc == TDM_EUNSUPPORTED)
    return respond_error(srv, c, r, MHD_HTTP_SERVICE_UNAVAILABLE,
                         "model \"%s\" is not loaded", r->model);
  tdm__loaded *newest = NULL;
  int model_known = r->has_version &&
                    tdm__repository_acquire(srv->repo, r->model, NULL,
                                            &newest) == TDM_OK;
  tdm__loaded_release(newest);
  if (model_known)
    return respond_error(srv, c, r, MHD_HTTP_NOT_FOUND,
                         "model \"%s\" has no version \"%s\"", r->model,
                         r->version);
  return respond_error(srv, c, r, MHD_HTTP_NOT_FOUND, "unknown model \"%s\"",
                       r->model);
}

/*
 * The request's Inference-Header-Content-Length: SIZE_MAX when it has
 * none (the body is all JSON), else the JSON part's bytes. 0 with err set
 * when the value is not a number of bytes (a sign, spaces, too many
 * digits); the parser checks it against the body's size.
 */
static int inference_header(struct MHD_Connection *c, size_t *json_size,
                            tdm_error *err) {
  *json_size = SIZE_MAX;
  const char *value =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, INFERENCE_HEADER);
  if (value == NULL) return TDM_OK;
  size_t digits = strspn(value, "0123456789");
  if (digits == 0 || value[digits] != '\0' || digits > 15)
    return tdm__fail(err, TDM_EPARSE,
                     INFERENCE_HEADER " must be the JSON header's bytes, a "
                     "number, not \"%.40s\"",
                     value);
  *json_size = (size_t)strtoull(value, NULL, 10);
  return TDM_OK;
}

static enum MHD_Result infer(tdm__server *srv, struct MHD_Connection *c,
                             request *r) {
  tdm__loaded *l;
  int rc = tdm__repository_acquire(srv->repo, r->model,
                                   r->has_version ? r->version : NULL, &l);
  if (rc != TDM_OK) {
    tdm__stats_record(&srv->metrics->unknown_model,
                      rc == TDM_EUNSUPPORTED ? 503 : 404,
                      now_ns() - r->arrived_ns, 0, SIZE_MAX);
    return model_problem(srv, c, r, rc);
  }
  tdm__infer_request req;
  tdm_error err = {0};
  unsigned status = MHD_HTTP_OK;
  tdm__buf out = {0};
  uint64_t started = 0;
  size_t json_size;
  rc = inference_header(c, &json_size, &err);
  if (rc == TDM_OK)
    rc = tdm__infer_parse_binary(l->model, r->body.data ? r->body.data : "",
                                 r->body.len, json_size, &req, &err);
  if (rc == TDM_OK) {
    uint64_t timeout_us = req.timeout_us >= 0 ? (uint64_t)req.timeout_us
                                              : srv->config.default_timeout_us;
    started = now_ns();
    uint64_t waited_us = (started - r->arrived_ns) / 1000;
    if (timeout_us > 0 && waited_us > timeout_us) {
      atomic_fetch_add(&srv->metrics->timed_out, 1);
      status = MHD_HTTP_GATEWAY_TIMEOUT;
      tdm__fail(&err, TDM_EINVAL,
                "deadline passed before scoring started: waited %llu "
                "microseconds, timeout %llu",
                (unsigned long long)waited_us, (unsigned long long)timeout_us);
    } else {
      tdm__buf_reserve(&out, 256 + req.num_rows * 24);
      size_t header;
      rc = tdm__infer_respond(l->model, l->name, l->version, &req, &out,
                              &header);
      /* Binary outputs answer with the header even when they hold no
       * bytes (zero rows): the client reads the body by it. */
      if (rc == TDM_OK && req.binary_outputs != 0) r->inference_header = header;
      if (rc != TDM_OK) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        tdm__fail(&err, rc, "%s", tdm_strerror(rc));
      }
    }
  } else {
    status = rc == TDM_ENOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR
                              : MHD_HTTP_BAD_REQUEST;
  }
  size_t rows = status == MHD_HTTP_OK ? req.num_rows : SIZE_MAX;
  if (rc == TDM_OK) tdm__infer_request_free(&req);
  enum MHD_Result result;
  if (status == MHD_HTTP_OK) {
    /* Triton answers a body with binary outputs as octet-stream. */
    result = respond_buf(srv, c, r, status,
                         r->inference_header > 0 ? "application/octet-stream"
                                                 : "application/json",
                         &out);
  } else {
    tdm__buf_free(&out);
    result = respond_error(srv, c, r, status, "%s", err.message);
  }
  uint64_t done = now_ns();
  tdm__stats_record(l->stats, (int)status, done - r->arrived_ns,
                    started ? started - r->arrived_ns : 0, rows);
  tdm__loaded_release(l);
  return result;
}

/* The names of a model's loaded versions, copied out under its lock. */
typedef struct version_list {
  const char *model;
  char names[64][16];
  const char *versions[64];
  size_t n;
} version_list;

static int collect_versions(void *arg, const char *name,
                            tdm__loaded *const *versions, size_t n,
                            const char *last_error,
                            const unsigned long long reloads[3]) {
  version_list *list = arg;
  (void)last_error;
  (void)reloads;
  if (strcmp(name, list->model) != 0) return TDM_OK;
  for (size_t v = 0; v < n && list->n < 64; v++) {
    snprintf(list->names[list->n], sizeof list->names[0], "%s",
             versions[v]->version);
    list->versions[list->n] = list->names[list->n];
    list->n++;
  }
  return TDM_OK;
}

static enum MHD_Result model_metadata(tdm__server *srv,
                                      struct MHD_Connection *c, request *r) {
  tdm__loaded *l;
  int rc = tdm__repository_acquire(srv->repo, r->model,
                                   r->has_version ? r->version : NULL, &l);
  if (rc != TDM_OK) return model_problem(srv, c, r, rc);
  /* A version's metadata names that version; a model's, every version
   * loaded (and describes the newest). */
  version_list list = {.model = r->model};
  if (r->has_version) {
    list.versions[0] = l->version;
    list.n = 1;
  } else {
    tdm__repository_each(srv->repo, collect_versions, &list);
  }
  tdm__buf b = {0};
  rc = tdm__infer_metadata(l->model, l->name, list.versions, list.n, &b);
  tdm__loaded_release(l);
  if (rc != TDM_OK) {
    tdm__buf_free(&b);
    return respond_error(srv, c, r, 500, "out of memory");
  }
  return respond_buf(srv, c, r, MHD_HTTP_OK, "application/json", &b);
}

static enum MHD_Result model_ready(tdm__server *srv, struct MHD_Connection *c,
                                   request *r) {
  tdm__loaded *l;
  int rc = tdm__repository_acquire(srv->repo, r->model,
                                   r->has_version ? r->version : NULL, &l);
  tdm__loaded_release(l);
  if (rc == TDM_ENOTFOUND) return model_problem(srv, c, r, rc);
  /* The protocol: 200 is true, a 4xx is false, and the body is empty. */
  int ready = rc == TDM_OK && !atomic_load(&srv->draining);
  return respond_empty(srv, c, r, ready ? MHD_HTTP_OK : MHD_HTTP_BAD_REQUEST);
}

static int index_entry(void *arg, const char *name,
                       tdm__loaded *const *versions, size_t n,
                       const char *last_error,
                       const unsigned long long reloads[3]) {
  tdm__buf *b = arg;
  int rc = TDM_OK;
  for (size_t v = 0; v < n && rc == TDM_OK; v++) {
    rc = tdm__buf_append(b, b->len > 1 ? ",{\"name\":" : "{\"name\":",
                         b->len > 1 ? 9 : 8);
    if (rc == TDM_OK) rc = tdm__json_append_string(b, name);
    if (rc == TDM_OK) rc = tdm__buf_append(b, ",\"version\":", 11);
    if (rc == TDM_OK) rc = tdm__json_append_string(b, versions[v]->version);
    if (rc == TDM_OK)
      rc = tdm__buf_printf(b, ",\"state\":\"READY\",\"sha256\":\"%s\"}",
                           versions[v]->sha256);
  }
  if (n == 0 || last_error[0]) {
    rc = tdm__buf_append(b, b->len > 1 ? ",{\"name\":" : "{\"name\":",
                         b->len > 1 ? 9 : 8);
    if (rc == TDM_OK) rc = tdm__json_append_string(b, name);
    if (rc == TDM_OK)
      rc = tdm__buf_printf(b, ",\"state\":\"%s\",\"reason\":",
                           n == 0 ? "UNAVAILABLE" : "READY");
    if (rc == TDM_OK)
      rc = tdm__json_append_string(
          b, last_error[0] ? last_error : "not loaded (unloaded)");
    if (rc == TDM_OK) rc = tdm__buf_append(b, "}", 1);
  }
  (void)reloads;
  return rc;
}

static enum MHD_Result repository_index(tdm__server *srv,
                                        struct MHD_Connection *c,
                                        request *r) {
  tdm__buf b = {0};
  int rc = tdm__buf_append(&b, "[", 1);
  if (rc == TDM_OK) rc = tdm__repository_each(srv->repo, index_entry, &b);
  if (rc == TDM_OK) rc = tdm__buf_append(&b, "]", 1);
  if (rc != TDM_OK) {
    tdm__buf_free(&b);
    return respond_error(srv, c, r, 500, "out of memory");
  }
  return respond_buf(srv, c, r, MHD_HTTP_OK, "application/json", &b);
}

static enum MHD_Result repository_load(tdm__server *srv,
                                       struct MHD_Connection *c, request *r) {
  tdm_error err = {0};
  int changed = 0;
  tdm__loaded *before = NULL;
  int known = tdm__repository_acquire(srv->repo, r->model, NULL, &before) !=
              TDM_ENOTFOUND;
  tdm__loaded_release(before);
  int rc = tdm__repository_load(srv->repo, r->model, &changed, &err);
  if (rc == TDM_ENOTFOUND && !known)
    return respond_error(srv, c, r, MHD_HTTP_NOT_FOUND, "%s", err.message);
  if (rc != TDM_OK) {
    fprintf(stderr, "tandem serve: loading model \"%s\" failed: %s\n",
            r->model, err.message);
    return respond_error(srv, c, r, MHD_HTTP_BAD_REQUEST,
                         "failed to load model \"%s\" (what served before "
                         "still serves): %s",
                         r->model, err.message);
  }
  fprintf(stderr, "tandem serve: model \"%s\" %s\n", r->model,
          changed ? "reloaded" : "unchanged");
  tdm__buf b = {0};
  if (tdm__buf_printf(&b, "{\"name\":") != TDM_OK ||
      tdm__json_append_string(&b, r->model) != TDM_OK ||
      tdm__buf_printf(&b, ",\"changed\":%s}", changed ? "true" : "false") !=
          TDM_OK) {
    tdm__buf_free(&b);
    return respond_error(srv, c, r, 500, "out of memory");
  }
  return respond_buf(srv, c, r, MHD_HTTP_OK, "application/json", &b);
}

static enum MHD_Result repository_unload(tdm__server *srv,
                                         struct MHD_Connection *c,
                                         request *r) {
  tdm_error err = {0};
  if (tdm__repository_unload(srv->repo, r->model, &err) != TDM_OK)
    return respond_error(srv, c, r, MHD_HTTP_NOT_FOUND, "%s", err.message);
  return respond(srv, c, r, MHD_HTTP_OK, "application/json", "{}", 2, 0);
}

/* Model series for /metrics, one family per pass over the repository. */
typedef struct metrics_pass {
  tdm__buf *out;
  int family;
} metrics_pass;

static int model_metrics(void *arg, const char *name,
                         tdm__loaded *const *versions, size_t n,
                         const char *last_error,
                         const unsigned long long reloads[3]) {
  metrics_pass *p = arg;
  tdm__buf *b = p->out;
  int rc = TDM_OK;
  if (p->family == 0 || p->family == 1) {
    for (size_t v = 0; v < n && rc == TDM_OK; v++) {
      tdm_model_info info;
      tdm_model_get_info(versions[v]->model, &info);
      rc = tdm__buf_append(b, p->family ? "tandem_model_load_timestamp_seconds{model="
                                        : "tandem_model_info{model=",
                           p->family ? 42 : 24);
      if (rc == TDM_OK) rc = tdm__metrics_append_label(b, name);
      if (rc == TDM_OK) rc = tdm__buf_append(b, ",version=", 9);
      if (rc == TDM_OK) rc = tdm__metrics_append_label(b, versions[v]->version);
      if (rc == TDM_OK && p->family == 0)
        rc = tdm__buf_printf(b, ",sha256=\"%s\",format=\"%s\",trees=\"%zu\"} 1\n",
                             versions[v]->sha256, info.format_name,
                             info.num_trees);
      else if (rc == TDM_OK)
        rc = tdm__buf_printf(b, "} %.3f\n", versions[v]->loaded_at);
    }
  } else if (p->family == 2) {
    static const char *results[3] = {"ok", "unchanged", "failed"};
    for (int k = 0; k < 3 && rc == TDM_OK; k++) {
      rc = tdm__buf_append(b, "tandem_model_loads_total{model=", 31);
      if (rc == TDM_OK) rc = tdm__metrics_append_label(b, name);
      if (rc == TDM_OK)
        rc = tdm__buf_printf(b, ",result=\"%s\"} %llu\n", results[k], reloads[k]);
    }
  } else {
    rc = tdm__buf_append(b, "tandem_model_ready{model=", 25);
    if (rc == TDM_OK) rc = tdm__metrics_append_label(b, name);
    if (rc == TDM_OK) rc = tdm__buf_printf(b, "} %d\n", n > 0);
  }
  (void)last_error;
  return rc;
}

static enum MHD_Result metrics(tdm__server *srv, struct MHD_Connection *c,
                               request *r) {
  static const char *headers[] = {
      "# HELP tandem_model_info A loaded model version: its file's SHA-256, "
      "format and trees.\n# TYPE tandem_model_info gauge\n",
      "# HELP tandem_model_load_timestamp_seconds When the version was "
      "loaded (Unix time).\n# TYPE tandem_model_load_timestamp_seconds "
      "gauge\n",
      "# HELP tandem_model_loads_total Loads and reloads of a model by "
      "result.\n# TYPE tandem_model_loads_total counter\n",
      "# HELP tandem_model_ready 1 when the model has a version serving.\n"
      "# TYPE tandem_model_ready gauge\n"};
  tdm__buf b = {0};
  int rc = tdm__metrics_render(srv->metrics, &b);
  for (int f = 0; f < 4 && rc == TDM_OK; f++) {
    metrics_pass pass = {&b, f};
    rc = tdm__buf_append(&b, headers[f], strlen(headers[f]));
    if (rc == TDM_OK) rc = tdm__repository_each(srv->repo, model_metrics, &pass);
  }
  for (size_t i = 0; i < srv->config.num_pipelines && rc == TDM_OK; i++)
    rc = tdm__live_metrics(srv->config.pipelines[i], &b);
  for (size_t i = 0; i < srv->config.num_pipelines && rc == TDM_OK; i++)
    if (tdm__live_drift(srv->config.pipelines[i]) != NULL)
      rc = tdm__drift_metrics(tdm__live_drift(srv->config.pipelines[i]),
                              tdm__live_name(srv->config.pipelines[i]), &b);
  static const char *table_families[] = {
      "# HELP tandem_table_staleness_seconds Age of a table's newest "
      "version: now minus its as_of.\n"
      "# TYPE tandem_table_staleness_seconds gauge\n",
      "# HELP tandem_table_version The newest version of a table (0: none).\n"
      "# TYPE tandem_table_version gauge\n"};
  for (size_t i = 0; i < srv->config.num_pipelines && rc == TDM_OK; i++)
    rc = tdm__live_schedule_metrics(srv->config.pipelines[i], &b);
  for (int f = 0; f < 2 && rc == TDM_OK && srv->config.num_pipelines > 0; f++) {
    rc = tdm__buf_append(&b, table_families[f], strlen(table_families[f]));
    for (size_t i = 0; i < srv->config.num_pipelines && rc == TDM_OK; i++)
      rc = tdm__live_table_metrics(srv->config.pipelines[i], f, &b);
  }
  /* The Redis table store's connection, when a pipeline reads one: the
   * follower thread's state, so an operator sees a lost Redis while the
   * answers still come from the versions in memory. */
  static const char *store_families[] = {
      "# HELP tandem_table_store_up 1 while the table store (Redis) is "
      "connected.\n"
      "# TYPE tandem_table_store_up gauge\n",
      "# HELP tandem_table_store_reconnects_total Connections to the table "
      "store made again after one was lost.\n"
      "# TYPE tandem_table_store_reconnects_total counter\n",
      "# HELP tandem_table_store_failures_total Polls, loads or connection "
      "attempts to the table store that failed.\n"
      "# TYPE tandem_table_store_failures_total counter\n"};
  int remote = 0;
  for (size_t i = 0; i < srv->config.num_pipelines; i++)
    remote |= tdm__live_store_remote(srv->config.pipelines[i]);
  for (int f = 0; f < 3 && rc == TDM_OK && remote; f++) {
    rc = tdm__buf_append(&b, store_families[f], strlen(store_families[f]));
    for (size_t i = 0; i < srv->config.num_pipelines && rc == TDM_OK; i++)
      rc = tdm__live_store_metrics(srv->config.pipelines[i], f, &b);
  }
  if (rc == TDM_OK)
    rc = tdm__buf_printf(&b,
                         "# HELP tandem_build_info The running tandem.\n"
                         "# TYPE tandem_build_info gauge\n"
                         "tandem_build_info{version=\"%s\"} 1\n",
                         TDM_VERSION);
  if (rc != TDM_OK) {
    tdm__buf_free(&b);
    return respond_error(srv, c, r, 500, "out of memory");
  }
  return respond_buf(srv, c, r, MHD_HTTP_OK,
                     "text/plain; version=0.0.4; charset=utf-8", &b);
}

static int pipelines_ready(const tdm__server *srv) {
  for (size_t i = 0; i < srv->config.num_pipelines; i++)
    if (!tdm__live_ready(srv->config.pipelines[i])) return 0;
  return 1;
}

static tdm__live *find_pipeline(const tdm__server *srv, const char *name) {
  for (size_t i = 0; i < srv->config.num_pipelines; i++)
    if (strcmp(tdm__live_name(srv->config.pipelines[i]), name) == 0)
      return srv->config.pipelines[i];
  return NULL;
}

/* The committer's call: the request's events are on disk (or failed). */
static void on_durable(void *arg, int ok) {
  request *r = arg;
  atomic_store(&r->durable, ok ? 1 : -1);
  MHD_resume_connection(r->connection);
}

/* GET /v1/pipelines/NAME/drift[?reset=1]: the drift report; reset (an
 * admin request: loopback, or the token) sets the live counts to 0. */
static enum MHD_Result drift_request(tdm__server *srv,
                                     struct MHD_Connection *c, request *r,
                                     tdm__live *live) {
  tdm__drift *drift = tdm__live_drift(live);
  if (drift == NULL)
    return respond_error(srv, c, r, MHD_HTTP_NOT_FOUND,
                         "pipeline \"%s\" does not watch drift: start "
                         "tandem serve with --drift-reference RUN|FILE",
                         r->model);
  const char *reset =
      MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "reset");
  if (reset != NULL && strcmp(reset, "1") != 0 && strcmp(reset, "0") != 0)
    return respond_error(srv, c, r, MHD_HTTP_BAD_REQUEST,
                         "reset=%s: expected reset=1", reset);
  if (reset != NULL && strcmp(reset, "1") == 0) {
    unsigned denied = admin_denied(srv, c);
    if (denied)
      return respond_error(srv, c, r, denied,
                           "reset=1 is an admin request: loopback clients, "
                           "or the admin token");
    tdm__drift_reset(drift);
  }
  tdm__buf out = {0};
  if (tdm__drift_json(drift, tdm__live_name(live), &out) != TDM_OK) {
    tdm__buf_free(&out);
    return respond_error(srv, c, r, 500, "out of memory");
  }
  return respond_buf(srv, c, r, MHD_HTTP_OK, "application/json", &out);
}

/* GET /v1/pipelines/NAME and POST /v1/pipelines/NAME/events. */
static enum MHD_Result pipeline_request(tdm__server *srv,
                                        struct MHD_Connection *c, request *r) {
  tdm__live *live = find_pipeline(srv, r->model);
  if (live == NULL)
    return respond_error(srv, c, r, MHD_HTTP_NOT_FOUND,
                         "unknown pipeline \"%s\"", r->model);
  if (r->route->kind == ROUTE_DRIFT) return drift_request(srv, c, r, live);
  tdm__buf out = {0};
  unsigned status = MHD_HTTP_OK;
  if (r->route->kind != ROUTE_EVENTS) {
    int rc = r->route->kind == ROUTE_PIPELINE ? tdm__live_metadata(live, &out)
                                              : tdm__live_schedule(live, &out);
    if (rc != TDM_OK) {
      tdm__buf_free(&out);
      return respond_error(srv, c, r, 500, "out of memory");
    }
    return respond_buf(srv, c, r, status, "application/json", &out);
  }
  const char *explain =
      MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "explain");
  int explain_bits = explain == NULL                    ? 0
                     : strcmp(explain, "features") == 0 ? TDM__EXPLAIN_FEATURES
                     : strcmp(explain, "contribs") == 0 ? TDM__EXPLAIN_CONTRIBS
                                                        : -1;
  if (explain_bits < 0)
    return respond_error(srv, c, r, MHD_HTTP_BAD_REQUEST,
                         "explain=%s: the explanations are "
                         "explain=features and explain=contribs",
                         explain);
  r->live = live;
  uint64_t gen;
  uint64_t waited_us = (now_ns() - r->arrived_ns) / 1000;
  tdm__live_events_async(live, r->body.data ? r->body.data : "", r->body.len,
                         explain_bits, waited_us, r->overloaded, &out, &status,
                         &gen);
  if (gen == 0) return respond_buf(srv, c, r, status, "application/json", &out);
  /* Answer once the state is durable, without holding this thread: the
   * connection sleeps and the committer wakes it (one fsync serves every
   * request waiting at that moment). */
  r->answer = out;
  r->answer_status = status;
  r->connection = c;
  r->waiting = 1;
  MHD_suspend_connection(c);
  if (tdm__live_when_durable(live, gen, on_durable, r)) on_durable(r, 1);
  return MHD_YES;
}

static enum MHD_Result dispatch(tdm__server *srv, struct MHD_Connection *c,
                                request *r) {
  switch (r->route->kind) {
    case ROUTE_SERVER_METADATA: {
      static const char body[] =
          "{\"name\":\"tandem\",\"version\":\"" TDM_VERSION
          "\",\"extensions\":[\"model_repository\","
          "\"binary_tensor_data\"]}";
      return respond(srv, c, r, MHD_HTTP_OK, "application/json",
                     (char *)body, sizeof body - 1, 0);
    }
    case ROUTE_LIVE: return respond_empty(srv, c, r, MHD_HTTP_OK);
    case ROUTE_READY:
      return respond_empty(srv, c, r,
                           !atomic_load(&srv->draining) &&
                                   (tdm__repository_ready(srv->repo) ||
                                    (srv->config.num_pipelines > 0 &&
                                     tdm__repository_count(srv->repo) == 0)) &&
                                   pipelines_ready(srv)
                               ? MHD_HTTP_OK
                               : MHD_HTTP_BAD_REQUEST);
    case ROUTE_MODEL_METADATA: return model_metadata(srv, c, r);
    case ROUTE_MODEL_READY: return model_ready(srv, c, r);
    case ROUTE_INFER: return infer(srv, c, r);
    case ROUTE_REPOSITORY_INDEX: return repository_index(srv, c, r);
    case ROUTE_REPOSITORY_LOAD: return repository_load(srv, c, r);
    case ROUTE_REPOSITORY_UNLOAD: return repository_unload(srv, c, r);
    case ROUTE_METRICS: return metrics(srv, c, r);
    case ROUTE_PIPELINE:
    case ROUTE_EVENTS:
    case ROUTE_SCHEDULE:
    case ROUTE_DRIFT: return pipeline_request(srv, c, r);
    case ROUTE_NONE: break;
  }
  return respond_error(srv, c, r, 500, "unrouted request");
}

/* What framing_problem counts: the message-length headers it saw. */
typedef struct framing {
  unsigned lengths, encodings;
  const char *length, *encoding;
  int bad_name; /* a field name that is not a token */
} framing;

/* RFC 9110 section 5.6.2: the characters of a token (a field name). */
static int is_token(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || strchr("!#$%&'*+-.^_`|~", *s)))
      return 0;
  return 1;
}

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value) {
  framing *f = cls;
  (void)kind;
  /* "Transfer-Encoding : chunked" reaches here as a name with a space,
   * which this server would not take for the framing header and a
   * proxy might (RFC 9112 section 5.1 says to refuse it). */
  if (!is_token(key)) f->bad_name = 1;
  if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
    f->lengths++;
    f->length = value;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    f->encodings++;
    f->encoding = value;
  }
  return MHD_YES;
}

/*
 * The body's framing (RFC 9112 section 6.3), checked before any body byte
 * is read: one Content-Length of digits only, or one Transfer-Encoding
 * that is exactly "chunked", never both, and every field name a token. A proxy in front and this server
 * must agree where the body ends; where two readings are possible (two
 * lengths, a length beside chunked, a coding list such as "gzip, chunked"
 * that this server does not decode) one of them could take the rest of
 * the body as a new request. NULL when the framing is unambiguous.
 */
static const char *framing_problem(struct MHD_Connection *c) {
  framing f = {0};
  MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
  if (f.bad_name)
    return "a header field name that is not a token (whitespace before its "
           "colon?)";
  if (f.lengths > 1) return "more than one Content-Length";
  if (f.encodings > 1) return "more than one Transfer-Encoding";
  if (f.lengths && f.encodings)
    return "both Content-Length and Transfer-Encoding";
  if (f.encodings && strcasecmp(f.encoding, "chunked") != 0)
    return "a Transfer-Encoding other than \"chunked\" (the only coding "
           "this server reads)";
  if (f.lengths &&
      (f.length[0] == '\0' || strspn(f.length, "0123456789") != strlen(f.length)))
    return "a Content-Length that is not a number of bytes";
  return NULL;
}

/* The first callback: route, admit or refuse. */
static enum MHD_Result start_request(tdm__server *srv,
                                     struct MHD_Connection *c, request *r,
                                     const char *url, const char *method,
                                     const char *version) {
  const char *problem = framing_problem(c);
  if (problem != NULL) {
    r->must_close = 1;
    return respond_error(srv, c, r, MHD_HTTP_BAD_REQUEST,
                         "the request's body framing is ambiguous: %s; the "
                         "connection is closed",
                         problem);
  }
  problem = hidden_nul(r, version) ? "has a NUL byte" : path_problem(url);
  if (problem != NULL)
    return respond_error(srv, c, r, MHD_HTTP_BAD_REQUEST, "the path %.200s %s",
                         url, problem);
  route_request(r, url, method);
  if (r->route == NULL)
    return respond_error(srv, c, r, MHD_HTTP_NOT_FOUND, "no endpoint %s %s",
                         method, url);
  if (!r->method_allowed)
    return respond_error(srv, c, r, MHD_HTTP_METHOD_NOT_ALLOWED,
                         "%s takes %s, not %s", url, r->route->method, method);
  /* Model and pipeline names (pipeline names are a subset) in the path. */
  tdm_error name_err;
  if (strchr(r->route->pattern, '*') != NULL &&
      tdm__repository_check_name(r->model, &name_err) != TDM_OK)
    return respond_error(srv, c, r, MHD_HTTP_BAD_REQUEST, "%s",
                         name_err.message);
  if (r->route->admin) {
    unsigned denied = admin_denied(srv, c);
    if (denied == MHD_HTTP_UNAUTHORIZED)
      return respond_error(srv, c, r, denied,
                           "%s needs the admin token (Authorization: Bearer)",
                           url);
    if (denied)
      return respond_error(srv, c, r, denied,
                           "%s is only served to loopback clients unless the "
                           "server has an admin token",
                           url);
  }
  const char *length = MHD_lookup_connection_value(
      c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (length != NULL && strtoull(length, NULL, 10) > srv->config.max_body) {
    char why[160];
    snprintf(why, sizeof why,
             "the body is %.24s bytes; this server takes at most %zu", length,
             srv->config.max_body);
    atomic_fetch_add(&srv->metrics->too_large, 1);
    if (is_work(r->route->kind))
      return refuse_infer(srv, c, r, MHD_HTTP_CONTENT_TOO_LARGE, why);
    return respond_error(srv, c, r, MHD_HTTP_CONTENT_TOO_LARGE, "%s", why);
  }
  if (!is_work(r->route->kind)) return MHD_YES;
  /* While draining, a request on a connection already open is still
   * answered (with Connection: close): a client that sent it before it
   * could know gets its answer, not an error. */
  if (atomic_load(&srv->metrics->in_flight) > (int64_t)srv->config.max_in_flight) {
    /* A pipeline with a deadline fallback answers from it instead. */
    tdm__live *live = r->route->kind == ROUTE_EVENTS
                          ? find_pipeline(srv, r->model)
                          : NULL;
    if (live != NULL && tdm__live_can_fall_back(live)) {
      r->overloaded = 1;
      return MHD_YES;
    }
    atomic_fetch_add(&srv->metrics->rejected_overload, 1);
    return refuse_infer(srv, c, r, MHD_HTTP_SERVICE_UNAVAILABLE,
                        "overloaded: too many requests in flight; retry "
                        "later");
  }
  /* The body arrives in pieces of libmicrohttpd's read buffer. Room for
   * its declared length (up to BODY_RESERVE; a larger body grows as
   * before) saves copying it again each time the buffer would grow. The
   * room is memory held before any byte has come, so it is paid for in
   * --max-buffered now, and the bytes it covers are not counted again
   * when they arrive; without room in the budget there is no reservation
   * (the bytes are then counted, and refused, as they come). */
  unsigned long long declared = length ? strtoull(length, NULL, 10) : 0;
  size_t room = declared < BODY_RESERVE ? (size_t)declared : BODY_RESERVE;
  if (room > 0) {
    uint64_t held = atomic_fetch_add(&srv->metrics->buffered, room) + room;
    if (held <= srv->config.max_buffered &&
        tdm__buf_reserve(&r->body, room) == TDM_OK) {
      r->charged += room;
      r->prepaid = room;
    } else {
      atomic_fetch_sub(&srv->metrics->buffered, room);
    }
  }
  return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **context) {
  tdm__server *srv = cls;
  request *r = *context;
  if (r == NULL) { /* on_uri could not allocate */
    r = tdm__calloc(1, sizeof *r);
    if (r == NULL) return MHD_NO;
    *context = r;
  }
  if (!r->started) {
    r->started = 1;
    r->arrived_ns = now_ns();
    if (srv->config.access_log != NULL) note_for_log(c, r, method);
    r->counted = 1;
    atomic_fetch_add(&srv->metrics->in_flight, 1);
    return start_request(srv, c, r, url, method, version);
  }
  if (*upload_size > 0) {
    size_t n = *upload_size;
    *upload_size = 0;
    r->received += n;
    if (r->answered) return MHD_YES; /* an early answer: drop the body */
    /* Bytes the reservation paid for are counted already. */
    size_t prepaid = n < r->prepaid ? n : r->prepaid;
    size_t owed = n - prepaid;
    r->prepaid -= prepaid;
    if (owed > 0 && !r->over_budget && r->discarded == 0) {
      /* Bodies held by all requests together stay under a budget, so
       * memory is bounded however many clients upload at once. */
      uint64_t held = atomic_fetch_add(&srv->metrics->buffered, owed) + owed;
      if (held > srv->config.max_buffered) {
        atomic_fetch_sub(&srv->metrics->buffered, owed);
        r->over_budget = 1;
      } else {
        r->charged += owed;
      }
    }
    if (r->over_budget || r->discarded > 0 ||
        r->body.len + n > srv->config.max_body) {
      /* A body without Content-Length that grew past the limit: read on
       * (bounded) and answer 413 at its end. */
      r->discarded += n;
      return r->discarded > 4 * srv->config.max_body ? MHD_NO : MHD_YES;
    }
    return tdm__buf_append(&r->body, upload, n) == TDM_OK ? MHD_YES : MHD_NO;
  }
  if (r->waiting) {
    int durable = atomic_load(&r->durable);
    if (durable == 0) return MHD_YES; /* not yet: a spurious call */
    r->waiting = 0;
    tdm__buf answer = r->answer;
    unsigned status = r->answer_status;
    memset(&r->answer, 0, sizeof r->answer);
    if (durable < 0) tdm__live_durability_failed(&answer, &status);
    return respond_buf(srv, c, r, status, "application/json", &answer);
  }
  if (r->answered) return MHD_YES;
  if (r->over_budget) {
    atomic_fetch_add(&srv->metrics->rejected_overload, 1);
    if (is_work(r->route->kind))
      return refuse_infer(srv, c, r, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "overloaded: too many request bytes held; retry "
                          "later");
    return respond_error(srv, c, r, MHD_HTTP_SERVICE_UNAVAILABLE,
                         "overloaded: too many request bytes held");
  }
  if (r->discarded > 0) {
    char why[160];
    snprintf(why, sizeof why,
             "the body is larger than this server takes (%zu bytes)",
             srv->config.max_body);
    atomic_fetch_add(&srv->metrics->too_large, 1);
    if (is_work(r->route->kind))
      return refuse_infer(srv, c, r, MHD_HTTP_CONTENT_TOO_LARGE, why);
    return respond_error(srv, c, r, MHD_HTTP_CONTENT_TOO_LARGE, "%s", why);
  }
  return dispatch(srv, c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **context,
                         enum MHD_RequestTerminationCode why) {
  tdm__server *srv = cls;
  request *r = *context;
  (void)c;
  (void)why;
  if (r == NULL) return;
  if (srv->config.access_log != NULL && r->started) log_request(srv, r);
  if (r->counted) atomic_fetch_sub(&srv->metrics->in_flight, 1);
  if (r->charged) atomic_fetch_sub(&srv->metrics->buffered, r->charged);
  tdm__buf_free(&r->body);
  tdm__buf_free(&r->answer);
  tdm__free(r->logged_target);
  tdm__free(r);
  *context = NULL;
}

/* ---- TLS ---- */

/* libmicrohttpd serves TLS with GnuTLS; the files are checked here first
 * with libcrypto (already linked for SHA-256), so that a bad file is
 * named instead of GnuTLS's "failed to set up the key pair". */

/* Refuses a passphrase: an encrypted key fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *arg) {
  (void)buf, (void)size, (void)rwflag, (void)arg;
  return -1;
}

/* Reads one PEM file whole; every failure is TDM_EINVAL naming it. */
static int read_pem(const char *option, const char *path, char **out,
                    tdm_error *err) {
  size_t size;
  int rc = tdm__read_file(path, out, &size, err);
  if (rc == TDM_ENOMEM) return rc;
  if (rc != TDM_OK) {
    char why[sizeof err->message];
    snprintf(why, sizeof why, "%s", err->message);
    return tdm__fail(err, TDM_EINVAL, "--%s %s", option, why);
  }
  if (size == 0 || size > INT32_MAX || memchr(*out, '\0', size) != NULL) {
    tdm__free(*out);
    *out = NULL;
    return tdm__fail(err, TDM_EINVAL, "--%s %s: not a PEM file (%s)", option,
                     path, size == 0 ? "empty" : "binary data; DER is not "
                     "read, convert it with openssl x509 -outform PEM");
  }
  return TDM_OK;
}

int tdm__server_tls_load(const char *cert_path, const char *key_path,
                         char **cert_pem, char **key_pem, tdm_error *err) {
  *cert_pem = *key_pem = NULL;
  if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
    return tdm__fail(err, TDM_EINVAL,
                     "--tls-cert: this libmicrohttpd was built without TLS "
                     "(GnuTLS); serve plain HTTP behind a TLS proxy instead");
  int rc = read_pem("tls-cert", cert_path, cert_pem, err);
  if (rc == TDM_OK) rc = read_pem("tls-key", key_path, key_pem, err);
  X509 *cert = NULL;
  EVP_PKEY *key = NULL;
  if (rc == TDM_OK) {
    BIO *bio = BIO_new_mem_buf(*cert_pem, (int)strlen(*cert_pem));
    cert = bio ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (cert == NULL)
      rc = tdm__fail(err, TDM_EINVAL,
                     "--tls-cert %s: no PEM certificate in it (expected "
                     "-----BEGIN CERTIFICATE-----)",
                     cert_path);
  }
  if (rc == TDM_OK) {
    BIO *bio = BIO_new_mem_buf(*key_pem, (int)strlen(*key_pem));
    key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (key == NULL && (strstr(*key_pem, "ENCRYPTED") != NULL))
      rc = tdm__fail(err, TDM_EINVAL,
                     "--tls-key %s: the key is encrypted; tandem cannot ask "
                     "for a passphrase (openssl pkey -in %s -out PLAIN.pem)",
                     key_path, key_path);
    else if (key == NULL)
      rc = tdm__fail(err, TDM_EINVAL,
                     "--tls-key %s: no PEM private key in it (expected "
                     "-----BEGIN PRIVATE KEY-----)",
                     key_path);
  }
  if (rc == TDM_OK && X509_check_private_key(cert, key) != 1)
    rc = tdm__fail(err, TDM_EINVAL,
                   "--tls-key %s: not the private key of the certificate in "
                   "--tls-cert %s",
                   key_path, cert_path);
  X509_free(cert);
  EVP_PKEY_free(key);
  ERR_clear_error();
  if (rc != TDM_OK) {
    tdm__free(*cert_pem);
    tdm__free(*key_pem);
    *cert_pem = *key_pem = NULL;
    return rc;
  }
  struct stat st;
  if (stat(key_path, &st) == 0 && (st.st_mode & S_IRWXO) != 0)
    fprintf(stderr,
            "tandem serve: warning: --tls-key %s can be read by every user "
            "of this machine (chmod o-rwx it)\n",
            key_path);
  return TDM_OK;
}

static void log_mhd(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  /* Its bind failure names the port of its options (0: tandem passes a
   * socket address), not the one asked for; tandem's own error, from
   * bind_error, says what happened and what to do. */
  if (strncmp(fmt, "Failed to bind to port", 22) == 0) return;
  fprintf(stderr, "tandem serve: ");
  vfprintf(stderr, fmt, ap);
}

/* Why ADDR cannot be bound, as advice for the error message, found by a
 * bind of tandem's own after libmicrohttpd failed; NULL when it binds
 * (the failure was elsewhere). The text is static. */
static const char *bind_error(const struct sockaddr_storage *addr,
                              socklen_t len) {
  int fd = socket(addr->ss_family, SOCK_STREAM, 0);
  if (fd < 0) return NULL;
  int one = 1;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int failed = bind(fd, (const struct sockaddr *)addr, len) != 0;
  int error = errno;
  close(fd);
  if (!failed) return NULL;
  switch (error) {
    case EADDRINUSE:
      return "the port is in use by another process (`ss -ltnp` shows "
             "which): stop it, or give another --listen HOST:PORT (port 0 "
             "picks a free one)";
    case EADDRNOTAVAIL:
      return "the host is not an address of this machine: give "
             "127.0.0.1, 0.0.0.0 (every interface) or one that `ip -brief "
             "address` lists";
    case EACCES:
      return "ports below 1024 need privileges: give a port from 1024 up";
    default: return NULL;
  }
}

/* "HOST:PORT", ":PORT" or "PORT"; IPv4 or [IPv6]. */
static int parse_listen(const char *text, struct sockaddr_storage *addr,
                        socklen_t *len, tdm_error *err) {
  char host[128] = "127.0.0.1";
  const char *colon = strrchr(text, ':');
  const char *port_text = colon ? colon + 1 : text;
  if (colon != NULL) {
    size_t hl = (size_t)(colon - text);
    if (hl >= sizeof host)
      return tdm__fail(err, TDM_EINVAL, "--listen %s: host too long", text);
    if (hl > 0) {
      memcpy(host, text, hl);
      host[hl] = '\0';
    }
  }
  char *end;
  errno = 0;
  unsigned long port = strtoul(port_text, &end, 10);
  if (*port_text == '\0' || *end != '\0' || port > 65535 || errno)
    return tdm__fail(err, TDM_EINVAL,
                     "--listen %s: expected HOST:PORT, such as "
                     "127.0.0.1:8080 or 0.0.0.0:8080",
                     text);
  memset(addr, 0, sizeof *addr);
  size_t hl = strlen(host);
  if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
    host[hl - 1] = '\0';
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1)
      return tdm__fail(err, TDM_EINVAL, "--listen %s: not an IPv6 address",
                       text);
    *len = sizeof *in6;
    return TDM_OK;
  }
  struct sockaddr_in *in = (struct sockaddr_in *)addr;
  in->sin_family = AF_INET;
  in->sin_port = htons((uint16_t)port);
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
    return tdm__fail(err, TDM_EINVAL,
                     "--listen %s: \"%s\" is not an IPv4 address", text, host);
  *len = sizeof *in;
  return TDM_OK;
}

/*
 * Makes count listening sockets on addr, all with SO_REUSEPORT, so that
 * the kernel spreads new connections over them (by a hash of the client's
 * address and port), one socket per request thread. libmicrohttpd's own
 * thread pool shares one socket, and the first worker to wake accepts
 * every connection waiting: a client that opens 32 connections at once
 * found them all on one thread, which did all the work while the other
 * idled, and every one of them waited whenever that thread was descheduled
 * (issue 22, bench/README.md). A plain bind comes first: a port that any
 * other socket holds, another tandem's included (which SO_REUSEPORT would
 * otherwise let share it), is refused as before, and port 0 becomes the
 * free port it found, written back into addr. 0 on success; -1 with errno
 * set, and no socket left open, on failure.
 */
static int listen_sockets(struct sockaddr_storage *addr, socklen_t len,
                          int *fds, unsigned count) {
  int one = 1;
  int probe = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return -1;
  (void)setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t bound_len = len;
  if (bind(probe, (struct sockaddr *)addr, len) != 0 ||
      getsockname(probe, (struct sockaddr *)addr, &bound_len) != 0) {
    int error = errno;
    close(probe);
    errno = error;
    return -1;
  }
  close(probe);
  for (unsigned i = 0; i < count; i++) {
    fds[i] = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
    int ok = fds[i] >= 0 &&
             setsockopt(fds[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
             setsockopt(fds[i], SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0 &&
             (addr->ss_family != AF_INET6 ||
              setsockopt(fds[i], IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0) &&
             bind(fds[i], (struct sockaddr *)addr, len) == 0 &&
             listen(fds[i], SOMAXCONN) == 0;
    if (!ok) {
      int error = errno;
      for (unsigned k = 0; k <= i; k++)
        if (fds[k] >= 0) close(fds[k]);
      errno = error;
      return -1;
    }
  }
  return 0;
}

static void stop_daemons(tdm__server *srv) {
  for (unsigned i = 0; i < srv->num_daemons; i++)
    MHD_stop_daemon(srv->daemons[i]);
  srv->num_daemons = 0;
  tdm__free(srv->daemons);
  srv->daemons = NULL;
}

/* New connections are closed at once while the server drains: clients
 * (and load balancers) see a failed connection and go elsewhere. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr,
                                     socklen_t addr_len) {
  const tdm__server *srv = cls;
  return atomic_load(&srv->draining) ? MHD_NO : MHD_YES;
}

int tdm__server_start(const tdm__server_config *config, tdm__repository *repo,
                      tdm__metrics *metrics, tdm__server **out,
                      tdm_error *err) {
  *out = NULL;
  struct sockaddr_storage addr;
  socklen_t addr_len = 0;
  int rc = parse_listen(config->listen, &addr, &addr_len, err);
  if (rc != TDM_OK) return rc;
  unsigned threads = config->threads;
  if (threads == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    threads = cpus > 0 ? (unsigned)cpus : 1;
  }
  tdm__server *srv = tdm__calloc(1, sizeof *srv);
  int *fds = tdm__calloc(threads, sizeof *fds);
  if (srv != NULL)
    srv->daemons = tdm__calloc(threads, sizeof *srv->daemons);
  if (srv == NULL || fds == NULL || srv->daemons == NULL) {
    if (srv != NULL) tdm__free(srv->daemons);
    tdm__free(srv);
    tdm__free(fds);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  srv->config = *config;
  srv->repo = repo;
  srv->metrics = metrics;
  struct sockaddr_storage requested = addr;
  if (listen_sockets(&addr, addr_len, fds, threads) != 0) {
    tdm__free(srv->daemons);
    tdm__free(srv);
    tdm__free(fds);
    const char *why = bind_error(&requested, addr_len);
    return tdm__fail(err, TDM_EIO, "cannot listen on %s: %s", config->listen,
                     why != NULL ? why : strerror(errno));
  }
  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG | MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME;
  if (addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  if (config->tls_cert != NULL) flags |= MHD_USE_TLS;
  /* The header limit: libmicrohttpd keeps the request line, headers and
   * its read buffer in one per-connection pool of this size. */
  size_t pool = config->max_header < 4096 ? 4096 : config->max_header;
  /* HTTPS: the PEM text stays the caller's; GnuTLS reads it at start.
   * GnuTLS's NORMAL priorities, less TLS 1.0 and 1.1 (it takes them by
   * default). */
  static const char priorities[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
  struct MHD_OptionItem tls[] = {
      {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)(uintptr_t)config->tls_cert},
      {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)(uintptr_t)config->tls_key},
      {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)(uintptr_t)priorities},
      {MHD_OPTION_END, 0, NULL}};
  /* One daemon (one epoll thread) per socket; each owns its socket from
   * here, and the connection limit is shared out as the pool did. */
  unsigned limit = config->max_connections / threads;
  for (unsigned i = 0; i < threads; i++) {
    struct MHD_Daemon *daemon = MHD_start_daemon(
      flags, 0, accept_policy, srv, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
      log_mhd, NULL, MHD_OPTION_LISTEN_SOCKET, fds[i],
      MHD_OPTION_CONNECTION_LIMIT, limit > 0 ? limit : 1u,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
      MHD_OPTION_CONNECTION_TIMEOUT, config->idle_timeout_s,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
      MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
      MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
      MHD_OPTION_THREAD_STACK_SIZE, (size_t)(4u << 20), MHD_OPTION_ARRAY,
      config->tls_cert != NULL ? tls : &tls[sizeof tls / sizeof tls[0] - 1],
      MHD_OPTION_END);
    if (daemon == NULL) break;
    srv->daemons[srv->num_daemons++] = daemon;
  }
  if (srv->num_daemons < threads) {
    for (unsigned i = srv->num_daemons; i < threads; i++) close(fds[i]);
    stop_daemons(srv);
    tdm__free(srv);
    tdm__free(fds);
    if (config->tls_cert != NULL)
      return tdm__fail(err, TDM_EIO,
                       "cannot serve HTTPS on %s (in use, not an address of "
                       "this machine, or GnuTLS refused the certificate: "
                       "its reason is above)",
                       config->listen);
    return tdm__fail(err, TDM_EIO,
                     "cannot listen on %s (in use, or not an address of "
                     "this machine?)",
                     config->listen);
  }
  tdm__free(fds);
  unsigned port = ntohs(addr.ss_family == AF_INET6
                            ? ((struct sockaddr_in6 *)&addr)->sin6_port
                            : ((struct sockaddr_in *)&addr)->sin_port);
  char host[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host,
              sizeof host);
    snprintf(srv->address, sizeof srv->address, "[%s]:%u", host, port);
  } else {
    inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host,
              sizeof host);
    snprintf(srv->address, sizeof srv->address, "%s:%u", host, port);
  }
  *out = srv;
  return TDM_OK;
}

const char *tdm__server_address(const tdm__server *server) {
  return server->address;
}

/*
 * Draining does not use MHD_quiesce_daemon: with epoll worker threads,
 * libmicrohttpd 0.9.75 removes the listening socket from each worker's
 * epoll set both in the caller (MHD_quiesce_daemon) and in the worker
 * (MHD_epoll), and the caller aborts the process when the worker won
 * ("Failed to remove listen FD from epoll set", daemon.c:5531). Closing
 * the returned socket early made the worker's side fail the same way.
 * Instead the accept policy (accept_policy) closes every connection
 * accepted once draining is set, and MHD_stop_daemon closes the
 * listening socket itself, after every worker thread has ended.
 */
long tdm__server_drain(tdm__server *srv, unsigned wait_ms) {
  atomic_store(&srv->draining, 1);
  uint64_t give_up = now_ns() + (uint64_t)wait_ms * 1000000u;
  long left;
  while ((left = (long)atomic_load(&srv->metrics->in_flight)) > 0 &&
         now_ns() < give_up) {
    struct timespec pause = {0, 2000000};
    nanosleep(&pause, NULL);
  }
  stop_daemons(srv);
  tdm__free(srv);
  return left;
}
