/*
 * server.h - tandem's HTTP server: the Open Inference Protocol (KServe v2)
 * REST endpoints, the model repository extension, and Prometheus metrics,
 * on libmicrohttpd.
 *
 * Threads: libmicrohttpd's pool of epoll threads both read requests and
 * score them (the evaluator takes microseconds, less than a hand-off to
 * another thread would cost). Admission control bounds the requests read
 * and not yet answered; past the bound a request is answered 503 with
 * Retry-After at once, and so is one that arrives while draining.
 */
#ifndef TDM_SERVER_H
#define TDM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "access_log.h"
#include "live.h"
#include "repository.h"

typedef struct tdm__server_config {
  const char *listen;          /* "HOST:PORT"; port 0 picks a free one */
  unsigned threads;            /* request threads; 0: one per CPU */
  unsigned max_in_flight;      /* requests read and not yet answered */
  unsigned max_connections;    /* open connections */
  size_t max_body;             /* request body bytes */
  size_t max_buffered;         /* body bytes held over all requests */
  size_t max_header;           /* request line and headers, bytes */
  uint64_t default_timeout_us; /* deadline when a request sets none; 0: none */
  unsigned idle_timeout_s;     /* close a connection silent this long */
  unsigned retry_after_s;      /* Retry-After on 503 */
  const char *admin_token;     /* NULL: admin endpoints from loopback only */
  const char *tls_cert;        /* PEM certificate (chain); NULL: plain HTTP */
  const char *tls_key;         /* PEM private key; set with tls_cert */
  tdm__live **pipelines;       /* served at /v1/pipelines/NAME/... */
  size_t num_pipelines;
  tdm__access_log *access_log; /* a line per request; NULL: none. The
                                  caller closes it after the server stops */
} tdm__server_config;

/* The defaults for every field; `listen` is 127.0.0.1:8080. */
void tdm__server_config_default(tdm__server_config *config);

/*
 * Reads a PEM certificate (chain) and its private key for HTTPS and checks
 * them before the server starts: both parse, the key is not encrypted, and
 * it belongs to the certificate. Every error names the file at fault and
 * is TDM_EINVAL (exit 2), as is a libmicrohttpd built without TLS. On
 * success *cert_pem and *key_pem are the files' text, for the config's
 * tls_cert and tls_key; the caller frees them (tdm__free) after the
 * server is drained. A key file other users may read gets a warning.
 */
int tdm__server_tls_load(const char *cert_path, const char *key_path,
                         char **cert_pem, char **key_pem, tdm_error *err);

typedef struct tdm__server tdm__server;

/* Starts serving `repo` (which must outlive the server). */
int tdm__server_start(const tdm__server_config *config, tdm__repository *repo,
                      tdm__metrics *metrics, tdm__server **out,
                      tdm_error *err);

/* The bound address, "127.0.0.1:8080", for messages and tests. */
const char *tdm__server_address(const tdm__server *server);

/*
 * Graceful stop: closes the listening socket (and answers readiness
 * false), lets requests already read finish for up to `wait_ms`, then
 * closes every connection and frees the server. Returns the number of
 * requests still unanswered when it gave up (0 when drained cleanly).
 */
long tdm__server_drain(tdm__server *server, unsigned wait_ms);

#endif /* TDM_SERVER_H */
