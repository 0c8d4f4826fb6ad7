/*
 * settings.h - how a runner's stores open: the LMDB map size, the Redis
 * table store's password and TLS files, and the scratch directory of a
 * Redis store's scheduled refreshes. They are options handed down from
 * whoever opens the runner, never read from the environment inside the
 * library: the CLI fills them from its environment (src/cli/cli_env.c),
 * an embedder from tdm_pipeline_options, so that two pipelines in one
 * process may use different ones. A NULL settings pointer means every
 * default.
 */
#ifndef TDM_STORE_SETTINGS_H
#define TDM_STORE_SETTINGS_H

#include <stddef.h>

#include "../core/core.h"

typedef struct tdm__store_settings {
  /* The address space an LMDB environment reserves (the state store and
   * the table store); 0: the store's default. From 1 MiB to 16 TiB. */
  size_t lmdb_map_size;
  /* The Redis table store's password: the first line of the file
   * redis_password_file when given, else redis_password; NULL or "":
   * none. Read when the store opens. */
  const char *redis_password;
  const char *redis_password_file;
  /* A rediss:// store's CA certificates (NULL or "": the system's) and
   * client certificate and key (both or neither). Read when the store
   * opens. */
  const char *redis_ca_file;
  const char *redis_cert_file;
  const char *redis_key_file;
  /* Where a scheduled refresh of a Redis store writes its output and log
   * (a store directory holds its own); NULL or "": /tmp. */
  const char *scratch_dir;
} tdm__store_settings;

/* The map size settings ask for (default_size when settings is NULL or
 * asks for none): TDM_EINVAL naming the value when it is out of range. */
int tdm__store_settings_map_size(const tdm__store_settings *settings,
                                 size_t default_size, size_t *out,
                                 tdm_error *err);

/* Parses the text of TANDEM_LMDB_MAP_SIZE (bytes, with an optional k, M or
 * G suffix; from 1M to 16384G) into *out for the CLI; TDM_EINVAL with a
 * message naming the variable when it is not one. */
int tdm__lmdb_map_size_parse(const char *text, size_t *out, tdm_error *err);

#endif /* TDM_STORE_SETTINGS_H */
