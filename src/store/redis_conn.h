/*
 * redis_conn.h - one connection to Redis, over plain TCP (redis://) or TLS
 * (rediss://), with the same calls for both: redis_table.c sends commands
 * and reads replies without knowing which. hiredis does the protocol (it
 * formats commands and parses replies); this layer owns the socket, so TLS
 * works with Debian's hiredis 0.14, which has no TLS of its own. OpenSSL
 * does the TLS, verifying the server's certificate and host name.
 */
#ifndef TDM_REDIS_CONN_H
#define TDM_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stdarg.h>

#include "../core/core.h"
#include "settings.h"

typedef struct tdm__redis_tls tdm__redis_tls;
typedef struct tdm__redis_conn tdm__redis_conn;

/*
 * Makes the TLS settings of the rediss:// store `url`, from settings (NULL:
 * defaults): redis_ca_file (the CA certificates that sign the server's;
 * the system's store when not given), and redis_cert_file with
 * redis_key_file (a client certificate, optional; both or neither). The
 * files are read here, so a missing or bad one is a TDM_EINVAL at start
 * naming the file and the setting, by the name of the environment
 * variable the CLI reads it from (TANDEM_REDIS_CA_FILE, ...). The settings are shared by every
 * connection of the store and are safe to use from several threads; free
 * them with tdm__redis_tls_free after the last connection is closed.
 */
int tdm__redis_tls_new(const char *url, const tdm__store_settings *settings,
                       tdm__redis_tls **out, tdm_error *err);
void tdm__redis_tls_free(tdm__redis_tls *tls);

/* Whether tls presents a client certificate. */
int tdm__redis_tls_has_client_certificate(const tdm__redis_tls *tls);

/*
 * Connects to host:port (every address the name resolves to, in turn),
 * within connect_timeout_ms per address, then, when tls is not NULL, makes
 * a TLS session that verifies the server's certificate against tls's CAs
 * and its name against host (a DNS name or an IP address). Commands then
 * wait at most command_timeout_ms for each read or write. On failure *out
 * is NULL and err says why, naming `url` (which never holds a password).
 * The connection is used by one thread at a time.
 */
int tdm__redis_conn_open(const char *url, const char *host, int port,
                         tdm__redis_tls *tls, int connect_timeout_ms,
                         int command_timeout_ms, tdm__redis_conn **out,
                         tdm_error *err);
void tdm__redis_conn_free(tdm__redis_conn *c);

/* Queues one command (hiredis's format: %s, %b with a size_t, %d) to be
 * sent with the next read of a reply; 0, or -1 when out of memory or the
 * format is bad. */
int tdm__redis_conn_append(tdm__redis_conn *c, const char *format, ...);

/* Sends what is queued and reads the next reply into *reply (freed with
 * freeReplyObject by the caller); 0, or -1 with *reply NULL when the
 * connection failed (then tdm__redis_conn_error says why, and the
 * connection stays unusable). */
int tdm__redis_conn_get_reply(tdm__redis_conn *c, redisReply **reply);

/* tdm__redis_conn_append, then tdm__redis_conn_get_reply: the reply, or
 * NULL when the connection failed. */
redisReply *tdm__redis_conn_vcommand(tdm__redis_conn *c, const char *format,
                                     va_list ap);
redisReply *tdm__redis_conn_command(tdm__redis_conn *c, const char *format,
                                    ...);

/* Why the connection failed, or NULL while it works. The text lives as
 * long as the connection. */
const char *tdm__redis_conn_error(const tdm__redis_conn *c);

#endif
