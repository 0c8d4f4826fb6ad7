/*
 * cli_env.c - the environment variables the CLI reads and hands down to
 * the library as explicit options. The library itself reads none (a
 * program that embeds it sets the same things through tandem.h), so this
 * is the one place that says which variables tandem's commands honour:
 * the stores' settings, the crash point of the crash tests and the Kafka
 * runner's commit log.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../store/settings.h"
#include "cli.h"

/* A variable's value, or NULL when it is unset or empty. */
static const char *variable(const char *name) {
  const char *value = getenv(name);
  return value != NULL && value[0] != '\0' ? value : NULL;
}

int tdm__cli_store_settings(tdm__store_settings *out, tdm_error *err) {
  tdm__store_settings s = {0};
  /* Small LMDB maps let valgrind, which cannot reserve tens of GiB of
   * address space, run the state and table stores. */
  const char *map = variable("TANDEM_LMDB_MAP_SIZE");
  if (map != NULL && tdm__lmdb_map_size_parse(map, &s.lmdb_map_size, err) !=
                         TDM_OK)
    return TDM_EINVAL;
  /* The Redis password comes from here, never from the store's URL, which
   * the process list and the shell's history show. */
  s.redis_password_file = variable("TANDEM_REDIS_PASSWORD_FILE");
  s.redis_password = variable("TANDEM_REDIS_PASSWORD");
  s.redis_ca_file = variable("TANDEM_REDIS_CA_FILE");
  s.redis_cert_file = variable("TANDEM_REDIS_CERT_FILE");
  s.redis_key_file = variable("TANDEM_REDIS_KEY_FILE");
  s.scratch_dir = variable("TMPDIR");
  *out = s;
  return TDM_OK;
}

int tdm__cli_pipeline_options(tdm_pipeline_options *options, tdm_error *err) {
  tdm__store_settings s;
  if (tdm__cli_store_settings(&s, err) != TDM_OK) return TDM_EINVAL;
  options->lmdb_map_size = s.lmdb_map_size;
  options->redis_password = s.redis_password;
  options->redis_password_file = s.redis_password_file;
  options->redis_ca_file = s.redis_ca_file;
  options->redis_cert_file = s.redis_cert_file;
  options->redis_key_file = s.redis_key_file;
  options->scratch_dir = s.scratch_dir;
  return TDM_OK;
}

int tdm__cli_arm_crash_point(void) {
  const char *spec = variable("TANDEM_CRASH_AT");
  if (spec == NULL || tdm__arm_crash_point(spec) == TDM_OK) return TDM_EXIT_OK;
  fprintf(stderr,
          "tandem: TANDEM_CRASH_AT=%s: not a crash point NAME or NAME:N "
          "(N from 1)\n",
          spec);
  return TDM_EXIT_USAGE;
}

int tdm__cli_stream_debug(void) {
  return variable("TANDEM_STREAM_DEBUG") != NULL;
}
