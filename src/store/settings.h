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

/* The fields mean what tdm_pipeline_options' fields of the same names do
 * (include/tandem.h documents them); NULL or "" names nothing. Strings are
 * borrowed: each runner's opening call says how long it reads them. */
typedef struct tdm__store_settings {
  size_t lmdb_map_size; /* 0: the store's default */
  const char *redis_password;
  const char *redis_password_file;
  const char *redis_ca_file;
  const char *redis_cert_file;
  const char *redis_key_file;
  const char *scratch_dir; /* NULL or "": /tmp */
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
