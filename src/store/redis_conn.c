/*
 * redis_conn.c - one connection to Redis, plain TCP or TLS (redis_conn.h).
 * Debian's hiredis 0.14 owns its socket and knows no TLS, so this file owns
 * the socket instead and keeps hiredis for the protocol only: commands are
 * formatted by redisvFormatCommand into an output buffer, and the bytes
 * read back are fed to a redisReader, which makes the same redisReply
 * objects redisCommand would. The only difference between redis:// and
 * rediss:// is the pair of functions that move bytes (send/recv or
 * SSL_write/SSL_read), so the command logic in redis_table.c is one code
 * path for both.
 *
 * Timeouts work as hiredis's do: the connect waits in poll() on a
 * non-blocking socket, then the socket is made blocking with SO_RCVTIMEO
 * and SO_SNDTIMEO, which bound each read and write (the TLS handshake
 * included, under the connect timeout).
 */
#include "redis_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct tdm__redis_tls {
  SSL_CTX *ctx;
  int client_certificate;
};

struct tdm__redis_conn {
  int fd;
  SSL *ssl; /* NULL on a plain connection */
  redisReader *reader;
  tdm__buf out; /* formatted commands not yet sent */
  int timeout_ms;
  int failed;
  char why[256];
};

/* ---- TLS settings ---- */

/* A setting's path, or NULL when it names none (NULL or ""). */
static const char *given(const char *path) {
  return path != NULL && path[0] != '\0' ? path : NULL;
}

/* OpenSSL's most recent error as text (its queue is per thread), then an
 * empty queue for the next call. */
static void openssl_reason(char *text, size_t size) {
  unsigned long e = ERR_peek_last_error();
  if (e != 0)
    ERR_error_string_n(e, text, size);
  else
    snprintf(text, size, "no reason given");
  ERR_clear_error();
}

/* A TLS file named by `variable` that OpenSSL refused. */
static int tls_file_fail(tdm_error *err, const char *url, const char *variable,
                         const char *path, const char *what) {
  char reason[256];
  openssl_reason(reason, sizeof reason);
  return tdm__fail(err, TDM_EINVAL, "%s: %s %s: %s (%s)", url, variable, path,
                   what, reason);
}

/* A readable file, or TDM_EINVAL naming the variable that names it. */
static int check_readable(tdm_error *err, const char *url, const char *variable,
                          const char *path) {
  if (access(path, R_OK) == 0) return TDM_OK;
  return tdm__fail(err, TDM_EINVAL, "%s: %s %s: %s", url, variable, path,
                   strerror(errno));
}

int tdm__redis_tls_new(const char *url, const tdm__store_settings *settings,
                       tdm__redis_tls **out, tdm_error *err) {
  static const tdm__store_settings defaults = {0};
  *out = NULL;
  if (settings == NULL) settings = &defaults;
  const char *ca = given(settings->redis_ca_file);
  const char *cert = given(settings->redis_cert_file);
  const char *key = given(settings->redis_key_file);
  if ((cert == NULL) != (key == NULL))
    return tdm__fail(err, TDM_EINVAL,
                     "%s: %s is set without %s: a client certificate needs "
                     "both",
                     url,
                     cert ? "TANDEM_REDIS_CERT_FILE" : "TANDEM_REDIS_KEY_FILE",
                     cert ? "TANDEM_REDIS_KEY_FILE" : "TANDEM_REDIS_CERT_FILE");
  tdm__redis_tls *tls = tdm__calloc(1, sizeof *tls);
  if (tls == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  *out = tls;
  ERR_clear_error();
  if ((tls->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
    tdm__redis_tls_free(tls);
    *out = NULL;
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  /* TLS 1.0 and 1.1 are broken; Redis itself serves 1.2 and 1.3. */
  SSL_CTX_set_min_proto_version(tls->ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(tls->ctx, SSL_VERIFY_PEER, NULL);
  int status = TDM_OK;
  if (ca != NULL) {
    status = check_readable(err, url, "TANDEM_REDIS_CA_FILE", ca);
    if (status == TDM_OK &&
        SSL_CTX_load_verify_locations(tls->ctx, ca, NULL) != 1)
      status = tls_file_fail(err, url, "TANDEM_REDIS_CA_FILE", ca,
                             "no PEM CA certificate could be read");
  } else if (SSL_CTX_set_default_verify_paths(tls->ctx) != 1) {
    char reason[256];
    openssl_reason(reason, sizeof reason);
    status = tdm__fail(err, TDM_EINVAL,
                       "%s: the system's CA certificates cannot be read (%s): "
                       "name a CA file in TANDEM_REDIS_CA_FILE",
                       url, reason);
  }
  if (status == TDM_OK && cert != NULL) {
    status = check_readable(err, url, "TANDEM_REDIS_CERT_FILE", cert);
    if (status == TDM_OK)
      status = check_readable(err, url, "TANDEM_REDIS_KEY_FILE", key);
    if (status == TDM_OK &&
        SSL_CTX_use_certificate_chain_file(tls->ctx, cert) != 1)
      status = tls_file_fail(err, url, "TANDEM_REDIS_CERT_FILE", cert,
                             "not a PEM certificate");
    if (status == TDM_OK &&
        SSL_CTX_use_PrivateKey_file(tls->ctx, key, SSL_FILETYPE_PEM) != 1)
      status = tls_file_fail(err, url, "TANDEM_REDIS_KEY_FILE", key,
                             "not an unencrypted PEM private key");
    if (status == TDM_OK && SSL_CTX_check_private_key(tls->ctx) != 1)
      status = tls_file_fail(err, url, "TANDEM_REDIS_KEY_FILE", key,
                             "not the private key of TANDEM_REDIS_CERT_FILE's "
                             "certificate");
  }
  tls->client_certificate = cert != NULL;
  if (status != TDM_OK) {
    tdm__redis_tls_free(tls);
    *out = NULL;
  }
  return status;
}

int tdm__redis_tls_has_client_certificate(const tdm__redis_tls *tls) {
  return tls->client_certificate;
}

void tdm__redis_tls_free(tdm__redis_tls *tls) {
  if (tls == NULL) return;
  SSL_CTX_free(tls->ctx);
  tdm__free(tls);
}

/* ---- connecting ---- */

static void set_timeouts(int fd, int timeout_ms) {
  struct timeval tv = {timeout_ms / 1000, timeout_ms % 1000 * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* A connected, blocking socket to one address, or -1 with why filled. */
static int connect_address(const struct addrinfo *ai, int timeout_ms, char *why,
                           size_t why_size) {
  int fd =
      socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) {
    snprintf(why, why_size, "%s", strerror(errno));
    return -1;
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int failure = 0;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    failure = errno;
    if (failure == EINPROGRESS) {
      struct pollfd p = {fd, POLLOUT, 0};
      int ready;
      do ready = poll(&p, 1, timeout_ms);
      while (ready < 0 && errno == EINTR);
      socklen_t len = sizeof failure;
      if (ready == 0)
        failure = ETIMEDOUT;
      else if (ready < 0)
        failure = errno;
      else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &len) != 0)
        failure = errno;
    }
  }
  if (failure != 0) {
    if (failure == ETIMEDOUT)
      snprintf(why, why_size, "no answer within %d ms", timeout_ms);
    else
      snprintf(why, why_size, "%s", strerror(failure));
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, flags);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static int is_ip_address(const char *host) {
  unsigned char address[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host, address) == 1 ||
         inet_pton(AF_INET6, host, address) == 1;
}

/* The TLS handshake on c->fd, verifying the certificate's chain and its
 * name against host; 0, or -1 with why filled. */
static int handshake(tdm__redis_conn *c, tdm__redis_tls *tls, const char *host,
                     int timeout_ms, char *why, size_t why_size) {
  ERR_clear_error();
  if ((c->ssl = SSL_new(tls->ctx)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
    snprintf(why, why_size, "TLS: out of memory");
    return -1;
  }
  /* An IP address is matched against the certificate's IP entries, a name
   * against its DNS names; SNI carries names only. A failure here would
   * leave the name unchecked, so it ends the connection. */
  int named =
      is_ip_address(host)
          ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) == 1
          : SSL_set_tlsext_host_name(c->ssl, host) == 1 &&
                SSL_set1_host(c->ssl, host) == 1;
  if (!named) {
    snprintf(why, why_size, "TLS: cannot check the certificate against %s",
             host);
    return -1;
  }
  set_timeouts(c->fd, timeout_ms);
  errno = 0;
  int rc = SSL_connect(c->ssl);
  if (rc == 1) return 0;
  int saved_errno = errno;
  int kind = SSL_get_error(c->ssl, rc);
  long verified = SSL_get_verify_result(c->ssl);
  unsigned long e = ERR_peek_last_error();
  char reason[200];
  openssl_reason(reason, sizeof reason);
  if (verified == X509_V_ERR_HOSTNAME_MISMATCH ||
      verified == X509_V_ERR_IP_ADDRESS_MISMATCH)
    snprintf(why, why_size,
             "TLS: the server's certificate is not for host %s (%s)", host,
             X509_verify_cert_error_string(verified));
  else if (verified != X509_V_OK)
    snprintf(why, why_size,
             "TLS: the server's certificate is not trusted: %s (is "
             "TANDEM_REDIS_CA_FILE the CA that signed it?)",
             X509_verify_cert_error_string(verified));
  else if (kind == SSL_ERROR_WANT_READ || kind == SSL_ERROR_WANT_WRITE ||
           saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)
    /* A plain Redis takes the TLS hello for the start of an inline command
     * and waits for its end, so this is how it usually shows. */
    snprintf(why, why_size,
             "TLS handshake failed: no answer to the TLS hello within %d ms "
             "(a plain redis:// server on this port waits so)",
             timeout_ms);
  else if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
           (ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ||
            ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG))
    snprintf(why, why_size,
             "TLS handshake failed: the server does not speak TLS on this "
             "port (a plain redis:// server on this port answers so): %s",
             reason);
  else if (kind == SSL_ERROR_SYSCALL && e == 0)
    snprintf(why, why_size,
             "TLS handshake failed: the server closed the connection (%s)",
             saved_errno ? strerror(saved_errno) : "end of file");
  else
    snprintf(why, why_size, "TLS handshake failed: %s", reason);
  return -1;
}

int tdm__redis_conn_open(const char *url, const char *host, int port,
                         tdm__redis_tls *tls, int connect_timeout_ms,
                         int command_timeout_ms, tdm__redis_conn **out,
                         tdm_error *err) {
  *out = NULL;
  tdm__redis_conn *c = tdm__calloc(1, sizeof *c);
  if (c == NULL || (c->reader = redisReaderCreate()) == NULL) {
    tdm__free(c);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  c->fd = -1;
  c->timeout_ms = command_timeout_ms;
  char service[16], why[512] = "no address";
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo hints = {0}, *addresses = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int resolved = getaddrinfo(host, service, &hints, &addresses);
  if (resolved != 0) {
    snprintf(why, sizeof why, "cannot resolve %s: %s", host,
             gai_strerror(resolved));
  } else {
    /* Each address in turn: "localhost" may name ::1 first while the
     * server listens on 127.0.0.1 only. */
    for (const struct addrinfo *ai = addresses; ai != NULL && c->fd < 0;
         ai = ai->ai_next)
      c->fd = connect_address(ai, connect_timeout_ms, why, sizeof why);
    freeaddrinfo(addresses);
  }
  if (c->fd >= 0 && tls != NULL &&
      handshake(c, tls, host, connect_timeout_ms, why, sizeof why) != 0) {
    /* Not a polite shutdown: there is no session to close. */
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->fd = -1;
  }
  if (c->fd < 0) {
    tdm__redis_conn_free(c);
    return tdm__fail(err, TDM_EIO, "%s: cannot connect: %s", url, why);
  }
  set_timeouts(c->fd, command_timeout_ms);
  *out = c;
  return TDM_OK;
}

void tdm__redis_conn_free(tdm__redis_conn *c) {
  if (c == NULL) return;
  if (c->ssl != NULL) {
    /* close_notify, so the server logs a clean close; bounded by the send
     * timeout, and skipped on a connection that already failed. */
    if (!c->failed) SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
    ERR_clear_error();
  }
  if (c->fd >= 0) close(c->fd);
  if (c->reader != NULL) redisReaderFree(c->reader);
  tdm__buf_free(&c->out);
  tdm__free(c);
}

/* ---- commands and replies ---- */

/* Marks c unusable, keeping the first reason. */
static int conn_fail(tdm__redis_conn *c, const char *why) {
  if (!c->failed) snprintf(c->why, sizeof c->why, "%s", why);
  c->failed = 1;
  return -1;
}

/* The failure of one send or receive that returned rc. */
static int io_fail(tdm__redis_conn *c, long rc, int saved_errno) {
  char why[256];
  int timed_out = saved_errno == EAGAIN || saved_errno == EWOULDBLOCK;
  int closed = rc == 0 && saved_errno == 0;
  if (c->ssl != NULL) {
    int kind = SSL_get_error(c->ssl, (int)rc);
    if (kind == SSL_ERROR_WANT_READ || kind == SSL_ERROR_WANT_WRITE)
      timed_out = 1;
    if (kind == SSL_ERROR_ZERO_RETURN) closed = 1;
    if (kind == SSL_ERROR_SYSCALL && saved_errno == 0) closed = 1;
    if (kind == SSL_ERROR_SSL) {
      char reason[200];
      openssl_reason(reason, sizeof reason);
      snprintf(why, sizeof why, "TLS: %s", reason);
      return conn_fail(c, why);
    }
    ERR_clear_error();
  }
  if (timed_out)
    snprintf(why, sizeof why, "no answer within %d ms", c->timeout_ms);
  else if (closed)
    snprintf(why, sizeof why, "the server closed the connection");
  else
    snprintf(why, sizeof why, "%s", strerror(saved_errno));
  return conn_fail(c, why);
}

static int send_queued(tdm__redis_conn *c) {
  size_t done = 0;
  while (done < c->out.len) {
    size_t left = c->out.len - done;
    int chunk = left > INT_MAX ? INT_MAX : (int)left;
    long sent;
    errno = 0;
    if (c->ssl != NULL) {
      ERR_clear_error();
      sent = SSL_write(c->ssl, c->out.data + done, chunk);
    } else {
      sent = send(c->fd, c->out.data + done, (size_t)chunk, MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
    }
    if (sent <= 0) return io_fail(c, sent, errno);
    done += (size_t)sent;
  }
  c->out.len = 0;
  return 0;
}

static int vappend(tdm__redis_conn *c, const char *format, va_list ap) {
  char *command = NULL;
  int len = redisvFormatCommand(&command, format, ap);
  if (len < 0) return -1;
  int status = tdm__buf_append(&c->out, command, (size_t)len) != 0 ? -1 : 0;
  redisFreeCommand(command);
  return status;
}

int tdm__redis_conn_append(tdm__redis_conn *c, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  int status = vappend(c, format, ap);
  va_end(ap);
  return status;
}

int tdm__redis_conn_get_reply(tdm__redis_conn *c, redisReply **reply) {
  *reply = NULL;
  if (c->failed) return -1;
  if (c->out.len > 0 && send_queued(c) != 0) return -1;
  for (;;) {
    void *parsed = NULL;
    if (redisReaderGetReply(c->reader, &parsed) != REDIS_OK) {
      char why[200];
      snprintf(why, sizeof why, "not a Redis reply: %s", c->reader->errstr);
      return conn_fail(c, why);
    }
    if (parsed != NULL) {
      *reply = parsed;
      return 0;
    }
    char bytes[16384];
    long got;
    errno = 0;
    if (c->ssl != NULL) {
      ERR_clear_error();
      got = SSL_read(c->ssl, bytes, sizeof bytes);
    } else {
      got = recv(c->fd, bytes, sizeof bytes, 0);
      if (got < 0 && errno == EINTR) continue;
    }
    if (got <= 0) return io_fail(c, got, errno);
    if (redisReaderFeed(c->reader, bytes, (size_t)got) != REDIS_OK)
      return conn_fail(c, "out of memory");
  }
}

redisReply *tdm__redis_conn_vcommand(tdm__redis_conn *c, const char *format,
                                     va_list ap) {
  redisReply *reply = NULL;
  if (vappend(c, format, ap) != 0) return NULL;
  tdm__redis_conn_get_reply(c, &reply);
  return reply;
}

redisReply *tdm__redis_conn_command(tdm__redis_conn *c, const char *format,
                                    ...) {
  va_list ap;
  va_start(ap, format);
  redisReply *reply = tdm__redis_conn_vcommand(c, format, ap);
  va_end(ap);
  return reply;
}

const char *tdm__redis_conn_error(const tdm__redis_conn *c) {
  return c->failed ? c->why : NULL;
}
