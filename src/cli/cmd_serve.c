/*
 * cmd_serve.c - `tandem serve`: parses options, loads the models, starts
 * the HTTP server (src/serve/server.c) and turns signals into operations:
 * SIGHUP reloads every model, SIGTERM or SIGINT drains and exits 0. It
 * stays on the internal modules: the public API answers events
 * (tdm_state_process) but has no HTTP server, model repository, drift,
 * decision log or metrics (docs/embedding.md).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/core.h"
#include "../pipeline/pipeline.h"
#include "../serve/live.h"
#include "../serve/server.h"
#include "../store/registry.h"
#include "cli.h"

static const char serve_help[] =
    "usage: tandem serve [PIPELINE] [--model NAME=PATH ... | --model-repo "
    "DIR] [options]\n"
    "\n"
    "Serves a pipeline's live endpoint (docs/pipelines.md) and models over\n"
    "HTTP with the Open Inference Protocol (KServe v2):\n"
    "  POST /v1/pipelines/NAME/events[?explain=features|contribs]  one JSON\n"
    "       event or an array; each answer equals `tandem batch` on the same\n"
    "       events (features: every feature's value; contribs: every\n"
    "       contribution of the score)\n"
    "  GET  /v1/pipelines/NAME\n"
    "  GET  /v1/pipelines/NAME/drift[?reset=1]  with --drift-reference\n"
    "  GET  /v2, /v2/health/live, /v2/health/ready\n"
    "  GET  /v2/models/NAME[/versions/V][/ready]\n"
    "  POST /v2/models/NAME[/versions/V]/infer\n"
    "  POST /v2/repository/index, /v2/repository/models/NAME/load|unload\n"
    "  GET  /metrics (Prometheus)\n"
    "Scores equal `tandem score` on the same rows, bit for bit.\n"
    "\n"
    "options:\n"
    "  --model NAME=PATH   serve the model file PATH as NAME (repeatable);\n"
    "                      PATH alone names it after the file\n"
    "  --model-repo DIR    serve every DIR/NAME/VERSION/model file; the\n"
    "                      highest VERSION (1, 2, ...) serves by default\n"
    "  --state DIR         keep the pipeline's state in LMDB in DIR: an event\n"
    "                      is answered only once its state is on disk, and a\n"
    "                      restart continues from it (default: memory only)\n"
    "  --store DIR         the tables lookups read (default: the pipeline's\n"
    "                      store:); new versions are picked up within 1 s\n"
    "  --drift-reference R compare live feature and score distributions\n"
    "                      with a reference: a run id (or prefix) from the\n"
    "                      registry, or a file; it must hold the features\n"
    "                      (`tandem batch --explain` JSON Lines or\n"
    "                      `--features-only` CSV). PSI per feature at\n"
    "                      /v1/pipelines/NAME/drift and on /metrics\n"
    "  --decision-log DIR  append every answered event (the answer, its\n"
    "                      id, entity, time, source, duplicate flag and\n"
    "                      arrival) to JSON Lines segments in DIR; with\n"
    "                      --state, in the event's group commit, before\n"
    "                      its answer. Each closed segment is recorded as\n"
    "                      a live run (docs/monitoring.md)\n"
    "  --decision-log-bytes BYTES  close a segment once it holds this many\n"
    "                      bytes (default 64M; k, M suffixes)\n"
    "  --decision-log-seconds S  ... or once it is this old (default 3600)\n"
    "  --decision-log-features  records carry every feature's value\n"
    "  --registry P        the run registry for --drift-reference and the\n"
    "                      decision log (default as for `tandem runs`)\n"
    "  --no-registry       do not record decision log segments\n"
    "  --listen ADDR       HOST:PORT to listen on (default 127.0.0.1:8080;\n"
    "                      port 0 picks a free port)\n"
    "  --threads N         request threads (default: one per CPU)\n"
    "  --max-in-flight N   requests read and not yet answered before new\n"
    "                      ones get 503 with Retry-After (default 1024)\n"
    "  --max-connections N open connections (default 4096)\n"
    "  --max-body BYTES    largest request body (default 16M; k, M suffixes)\n"
    "  --max-buffered BYTES  request bodies and answers held in memory at\n"
    "                      once, over all requests; past it, 503 (default\n"
    "                      256M)\n"
    "  --max-header BYTES  largest request line and headers (default 16k)\n"
    "  --timeout-ms MS     deadline of a request that sets no\n"
    "                      parameters.timeout: past it before scoring\n"
    "                      starts, the answer is 504 (default: none)\n"
    "  --idle-timeout S    close connections idle this long (default 60)\n"
    "  --drain-ms MS       on SIGTERM, how long to let requests in flight\n"
    "                      finish (default 10000)\n"
    "  --admin-token-file F  admin endpoints (/v2/repository/...) need\n"
    "                      'Authorization: Bearer <token in F>'; without a\n"
    "                      token they answer loopback clients only. The\n"
    "                      TANDEM_ADMIN_TOKEN environment variable also works\n"
    "  --tls-cert FILE     serve HTTPS (TLS, by GnuTLS) with this PEM\n"
    "                      certificate or chain; needs --tls-key. Plain HTTP\n"
    "                      to the port is then refused\n"
    "  --tls-key FILE      the certificate's PEM private key, unencrypted\n"
    "  --access-log FILE   append one JSON object per request to FILE (time,\n"
    "                      method, path, status, bytes, duration_us, remote,\n"
    "                      request_id from X-Request-Id), written within 1 s\n"
    "                      by a writer thread, never by the request\n"
    "  --help, -h          show this help\n"
    "\n"
    "signals: SIGHUP reloads every model (a failed load keeps the old one)\n"
    "and reopens --access-log FILE (for logrotate);\n"
    "SIGTERM or SIGINT stops accepting, finishes requests in flight, exits 0\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n";

/* Reads the admin token: the first line of a file. */
static char *read_token(const char *path) {
  char *data;
  size_t size;
  tdm_error err;
  if (tdm__read_file(path, &data, &size, &err) != TDM_OK) {
    fprintf(stderr, "tandem serve: %s\n", err.message);
    return NULL;
  }
  data[strcspn(data, "\r\n")] = '\0';
  if (data[0] == '\0') {
    fprintf(stderr, "tandem serve: %s: the admin token is empty\n", path);
    tdm__free(data);
    return NULL;
  }
  return data;
}

static void report_load(void *arg, const char *name, int rc, int changed,
                        const tdm_error *err) {
  (void)arg;
  if (rc == TDM_OK)
    fprintf(stderr, "tandem serve: model \"%s\" %s\n", name,
            changed ? "reloaded" : "unchanged");
  else
    fprintf(stderr,
            "tandem serve: reloading model \"%s\" failed, the loaded "
            "version keeps serving: %s\n",
            name, err->message);
}

/* Adds one --model value: NAME=PATH or PATH. */
static int add_model(tdm__repository *repo, const char *value,
                     tdm_error *err) {
  const char *eq = strchr(value, '=');
  char name[256];
  const char *path = value;
  if (eq != NULL) {
    size_t len = (size_t)(eq - value);
    if (len >= sizeof name)
      return tdm__fail(err, TDM_EINVAL, "--model %s: name too long", value);
    memcpy(name, value, len);
    name[len] = '\0';
    path = eq + 1;
  } else {
    const char *base = strrchr(value, '/');
    snprintf(name, sizeof name, "%s", base ? base + 1 : value);
    char *dot = strchr(name, '.');
    if (dot != NULL && dot != name) *dot = '\0';
  }
  return tdm__repository_add_file(repo, name, path, err);
}

int tdm__cmd_serve(int argc, char **argv) {
  static const struct option long_options[] = {
      {"model", required_argument, NULL, 'm'},
      {"model-repo", required_argument, NULL, 'r'},
      {"listen", required_argument, NULL, 'l'},
      {"threads", required_argument, NULL, 't'},
      {"max-in-flight", required_argument, NULL, 'f'},
      {"max-connections", required_argument, NULL, 'c'},
      {"max-body", required_argument, NULL, 'b'},
      {"max-header", required_argument, NULL, 'H'},
      {"max-buffered", required_argument, NULL, 'B'},
      {"timeout-ms", required_argument, NULL, 'T'},
      {"idle-timeout", required_argument, NULL, 'i'},
      {"drain-ms", required_argument, NULL, 'd'},
      {"admin-token-file", required_argument, NULL, 'a'},
      {"state", required_argument, NULL, 'S'},
      {"store", required_argument, NULL, 'D'},
      {"drift-reference", required_argument, NULL, 'R'},
      {"registry", required_argument, NULL, 'g'},
      {"no-registry", no_argument, NULL, 'N'},
      {"decision-log", required_argument, NULL, 'L'},
      {"decision-log-bytes", required_argument, NULL, 'Y'},
      {"decision-log-seconds", required_argument, NULL, 'Z'},
      {"decision-log-features", no_argument, NULL, 'F'},
      {"tls-cert", required_argument, NULL, 'C'},
      {"tls-key", required_argument, NULL, 'K'},
      {"access-log", required_argument, NULL, 'A'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  tdm__server_config config;
  tdm__server_config_default(&config);
  const char *models[256];
  size_t num_models = 0, count;
  const char *repo_dir = NULL, *token_file = NULL, *state_dir = NULL;
  const char *store_dir = NULL;
  const char *drift_reference = NULL, *registry = NULL;
  const char *tls_cert_file = NULL, *tls_key_file = NULL;
  const char *access_log_path = NULL;
  size_t drain_ms = 10000;
  const char *decision_dir = NULL;
  size_t decision_bytes = (size_t)64 << 20, decision_seconds = 3600;
  int decision_features = 0, no_registry = 0;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
      case 'm':
        if (num_models == sizeof models / sizeof models[0])
          return tdm__usage_error("serve", "too many --model options");
        models[num_models++] = optarg;
        break;
      case 'r': repo_dir = optarg; break;
      case 'l': config.listen = optarg; break;
      case 'a': token_file = optarg; break;
      case 'S': state_dir = optarg; break;
      case 'D': store_dir = optarg; break;
      case 'R': drift_reference = optarg; break;
      case 'g': registry = optarg; break;
      case 'N': no_registry = 1; break;
      case 'L': decision_dir = optarg; break;
      case 'F': decision_features = 1; break;
      case 'Y':
        if (!tdm__cli_parse_bytes(optarg, &decision_bytes))
          return tdm__usage_error("serve", "--decision-log-bytes %s: not a size "
                                  "in bytes (such as 65536, 64k or 16M)", optarg);
        break;
      case 'C': tls_cert_file = optarg; break;
      case 'K': tls_key_file = optarg; break;
      case 'A': access_log_path = optarg; break;
      case 't':
      case 'f':
      case 'c':
      case 'T':
      case 'i':
      case 'd':
      case 'Z':
        if (!tdm__parse_count(optarg, c == 't' ? 256 : 1000000000, &count))
          return tdm__usage_error("serve", "--%s wants a whole number, not %s",
                                  argv[optind - 1] + 2, optarg);
        if (c == 't') config.threads = (unsigned)count;
        if (c == 'f') config.max_in_flight = (unsigned)count;
        if (c == 'c') config.max_connections = (unsigned)count;
        if (c == 'T') config.default_timeout_us = (uint64_t)count * 1000;
        if (c == 'i') config.idle_timeout_s = (unsigned)count;
        if (c == 'd') drain_ms = count;
        if (c == 'Z') decision_seconds = count;
        break;
      case 'b':
      case 'H':
      case 'B':
        if (!tdm__cli_parse_bytes(optarg, c == 'b'   ? &config.max_body
                                 : c == 'H' ? &config.max_header
                                            : &config.max_buffered))
          return tdm__usage_error("serve", "%s: not a size in bytes (such as "
                                  "65536, 64k or 16M)", optarg);
        break;
      case 'h': fputs(serve_help, stdout); return TDM_EXIT_OK;
      case ':':
        return tdm__usage_error("serve", "%s needs a value", argv[optind - 1]);
      default:
        return tdm__usage_error("serve", "unknown option %s", argv[optind - 1]);
    }
  }
  const char *pipeline_path = optind < argc ? argv[optind++] : NULL;
  if (optind < argc)
    return tdm__usage_error("serve", "unexpected argument %s (one pipeline "
                            "per server)", argv[optind]);
  if (num_models == 0 && repo_dir == NULL && pipeline_path == NULL)
    return tdm__usage_error("serve", "give a PIPELINE, --model NAME=PATH or "
                            "--model-repo DIR");
  if (state_dir != NULL && pipeline_path == NULL)
    return tdm__usage_error("serve", "--state needs a PIPELINE");
  if (decision_dir != NULL && pipeline_path == NULL)
    return tdm__usage_error("serve", "--decision-log needs a PIPELINE");
  if (drift_reference != NULL && pipeline_path == NULL)
    return tdm__usage_error("serve", "--drift-reference needs a PIPELINE");
  if ((tls_cert_file == NULL) != (tls_key_file == NULL))
    return tdm__usage_error("serve", "%s needs %s too (HTTPS takes both)",
                            tls_cert_file ? "--tls-cert" : "--tls-key",
                            tls_cert_file ? "--tls-key" : "--tls-cert");

  char *tls_cert = NULL, *tls_key = NULL;
  if (tls_cert_file != NULL) {
    tdm_error tls_err = {0};
    int tls_rc = tdm__server_tls_load(tls_cert_file, tls_key_file, &tls_cert,
                                      &tls_key, &tls_err);
    if (tls_rc != TDM_OK) {
      fprintf(stderr, "tandem serve: %s\n", tls_err.message);
      return tdm__exit_status(tls_rc);
    }
    config.tls_cert = tls_cert;
    config.tls_key = tls_key;
  }

  char *token = NULL;
  if (token_file != NULL) {
    token = read_token(token_file);
    if (token == NULL) {
      tdm__free(tls_cert);
      tdm__free(tls_key);
      return TDM_EXIT_USAGE;
    }
  } else if (getenv("TANDEM_ADMIN_TOKEN") && *getenv("TANDEM_ADMIN_TOKEN")) {
    token = tdm__strdup(getenv("TANDEM_ADMIN_TOKEN"));
  }
  config.admin_token = token;

  /* Signals are taken by sigwait below, not by handlers: block them before
   * any thread starts so every thread inherits the mask. */
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, NULL);
  signal(SIGPIPE, SIG_IGN);

  tdm__metrics metrics;
  tdm__repository *repo = NULL;
  tdm__server *server = NULL;
  tdm_error err = {0};
  tdm__live *live = NULL;
  tdm__access_log *access_log = NULL;
  int rc = tdm__metrics_init(&metrics);
  /* After the signal mask: the log's writer thread must not take SIGHUP. */
  if (rc == TDM_OK && access_log_path != NULL)
    rc = tdm__access_log_open(access_log_path, 1000, &access_log, &err);
  config.access_log = access_log;
  tdm__store_settings settings;
  if (rc == TDM_OK) rc = tdm__cli_store_settings(&settings, &err);
  if (rc == TDM_OK && pipeline_path != NULL) {
    rc = tdm__live_open(pipeline_path, state_dir, store_dir, &settings, &live,
                        &err);
    config.pipelines = &live;
    config.num_pipelines = 1;
  }
  /* The library takes the registry's path as given: the default one
   * (from the environment) is found here. Without one, a reference that
   * is a file still works; a run id fails naming what to set. */
  char drift_registry[4096];
  tdm_error no_drift_registry;
  if (drift_reference != NULL &&
      tdm__cli_registry_path(registry, drift_registry, sizeof drift_registry,
                             &no_drift_registry) == TDM_OK)
    registry = drift_registry;
  if (rc == TDM_OK && drift_reference != NULL)
    rc = tdm__live_watch_drift(live, drift_reference, registry, &err);
  char registry_path[4096];
  if (rc == TDM_OK && decision_dir != NULL && !no_registry)
    rc = tdm__cli_registry_path(registry, registry_path, sizeof registry_path,
                                &err);
  if (rc == TDM_OK && decision_dir != NULL)
    rc = tdm__live_log_decisions(
        live, decision_dir, decision_bytes, (int64_t)decision_seconds * 1000,
        decision_features ? TDM__EXPLAIN_FEATURES : 0,
        no_registry ? NULL : registry_path, &err);
  if (rc == TDM_OK) rc = tdm__repository_new(&metrics, &repo);
  for (size_t i = 0; i < num_models && rc == TDM_OK; i++)
    rc = add_model(repo, models[i], &err);
  if (rc == TDM_OK && repo_dir != NULL)
    rc = tdm__repository_add_dir(repo, repo_dir, &err);
  /* A request's buffers (body, parse tree, rows) are freed when it ends
   * and the next request wants the same again: keep them in the heap (a
   * 256-row request parsed in 4.3 ms with fresh pages, 0.46 ms without).
   * The process's allocator settings are the program's to choose, so the
   * CLI sets them and the library never does. */
  tdm__keep_heap();
  if (rc == TDM_OK) rc = tdm__server_start(&config, repo, &metrics, &server, &err);
  if (rc != TDM_OK) {
    int exit_code = tdm__report(rc, &err);
    tdm__access_log_close(access_log);
    tdm__live_close(live);
    tdm__repository_free(repo);
    tdm__metrics_free(&metrics);
    tdm__free(token);
    tdm__free(tls_cert);
    tdm__free(tls_key);
    return exit_code;
  }
  fprintf(stderr, "tandem serve: listening on %s://%s\n",
          tls_cert ? "https" : "http", tdm__server_address(server));

  for (;;) {
    int signo;
    if (sigwait(&signals, &signo) != 0) continue;
    if (signo == SIGHUP) {
      fprintf(stderr, "tandem serve: SIGHUP: reloading every model%s\n",
              access_log ? " and reopening the access log" : "");
      tdm__access_log_reopen(access_log);
      tdm__repository_load_all(repo, report_load, NULL);
      continue;
    }
    fprintf(stderr, "tandem serve: %s: draining (up to %zu ms)\n",
            signo == SIGTERM ? "SIGTERM" : "SIGINT", drain_ms);
    break;
  }
  long left = tdm__server_drain(server, (unsigned)drain_ms);
  if (left > 0)
    fprintf(stderr, "tandem serve: stopped with %ld requests unanswered\n",
            left);
  else
    fprintf(stderr, "tandem serve: stopped\n");
  /* The server has stopped: no request writes to the log any more. */
  tdm__access_log_close(access_log);
  tdm__live_close(live);
  tdm__repository_free(repo);
  tdm__metrics_free(&metrics);
  tdm__free(token);
  tdm__free(tls_cert);
  tdm__free(tls_key);
  return TDM_EXIT_OK;
}
