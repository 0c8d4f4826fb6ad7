/*
 * cmd_stream.c - `tandem stream`: parses options and runs a pipeline over
 * a Kafka topic (src/stream/stream.c) until SIGTERM or SIGINT, which
 * drain it: outputs acknowledged, states saved, offsets committed. It
 * stays on the internal modules: the public API has no Kafka runner
 * (docs/embedding.md).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/core.h"
#include "../pipeline/pipeline.h"
#include "../stream/stream.h"
#include "cli.h"

static const char stream_help[] =
    "usage: tandem stream PIPELINE --brokers B --input TOPIC --output TOPIC\n"
    "                     [options]\n"
    "\n"
    "Runs the pipeline over a Kafka topic in a consumer group: each input\n"
    "message is one JSON event (keyed by its entity, so that an entity's\n"
    "events share a partition); its result, the same JSON object the live\n"
    "endpoint answers, is produced to the output topic keyed by the entity.\n"
    "Each commit saves the states with their input position (the offset\n"
    "after the last event they hold, every output before it acknowledged);\n"
    "a member assigned a partition resumes there. At-least-once by default:\n"
    "events after the position, processed again after a crash, produce\n"
    "their first output again, byte for byte. --exactly-once writes each\n"
    "interval's outputs, states and offsets in one Kafka transaction.\n"
    "\n"
    "options:\n"
    "  --brokers B          bootstrap servers (host:port,...)\n"
    "  --input TOPIC        the topic of events\n"
    "  --output TOPIC       the topic of results\n"
    "  --group G            consumer group (default tandem-<pipeline name>)\n"
    "  --dead-letter TOPIC  where invalid messages go, as {\"error\", \"topic\",\n"
    "                       \"partition\", \"offset\", \"payload\"} (default:\n"
    "                       logged on stderr and skipped)\n"
    "  --state DIR          keep each input partition's entity states in\n"
    "                       LMDB in DIR/<input>.<partition> too (default:\n"
    "                       memory only, restored from the changelog)\n"
    "  --changelog TOPIC    the compacted topic the states are written to\n"
    "                       and restored from when a partition is assigned\n"
    "                       (default <group>-<input>-changelog; created\n"
    "                       when missing where the cluster allows)\n"
    "  --no-changelog       keep states only locally (a partition moving to\n"
    "                       another instance then starts with an empty\n"
    "                       state unless they share --state)\n"
    "  --store DIR          the tables lookups read (default: the pipeline's\n"
    "                       store:)\n"
    "  -X key=value         a librdkafka setting for both clients (security,\n"
    "                       timeouts...), as kcat takes it; repeatable\n"
    "  --metrics HOST:PORT  serve Prometheus metrics at /metrics (port 0\n"
    "                       picks one; the address is printed on stderr)\n"
    "  --commit-interval-ms MS  how often states are saved and offsets\n"
    "                       committed (default 5000: each changed entity's\n"
    "                       whole state is written once per interval)\n"
    "  --instance-id ID     static group membership (group.instance.id):\n"
    "                       a member restarted with the same ID within the\n"
    "                       session timeout takes its partitions back\n"
    "                       without a rebalance; give each member its own\n"
    "  --session-timeout-ms MS  how long a member that stopped heartbeating\n"
    "                       keeps its partitions (default 45000, librdkafka's)\n"
    "  --threads N          process partitions on N threads (default 1); a\n"
    "                       partition is always processed by one of them\n"
    "  --exactly-once       each commit interval's outputs, changelog records\n"
    "                       and input offsets in one Kafka transaction; the\n"
    "                       input and changelog are read read_committed\n"
    "                       (readers of the output should be too)\n"
    "  --decision-log DIR   append every answered event (the answer, its id,\n"
    "                       entity, time, source, duplicate flag, arrival,\n"
    "                       input partition and offset) to JSON Lines\n"
    "                       segments in DIR, synced by each commit before\n"
    "                       it saves the states: an event answered again\n"
    "                       after a crash is logged once. Each closed\n"
    "                       segment is recorded as a live run; give each\n"
    "                       instance its own DIR (docs/monitoring.md)\n"
    "  --decision-log-bytes BYTES  close a segment once it holds this many\n"
    "                       bytes (default 64M; k, M suffixes)\n"
    "  --decision-log-seconds S  ... or once it is this old (default 3600)\n"
    "  --decision-log-features  records carry every feature's value\n"
    "  --registry P         the run registry the decision log's segments are\n"
    "                       recorded in (default as for `tandem runs`)\n"
    "  --no-registry        do not record decision log segments\n"
    "  --help, -h           show this help\n"
    "\n"
    "A new group starts at the earliest offset (-X auto.offset.reset=latest\n"
    "to change). SIGTERM or SIGINT drains and exits 0.\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n";

/* The run's stop flag (tdm__stream_options.stop), set by SIGTERM and
 * SIGINT. */
static volatile sig_atomic_t stop_requested;

static void on_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

int tdm__cmd_stream(int argc, char **argv) {
  static const struct option longopts[] = {
      {"brokers", required_argument, NULL, 'b'},
      {"input", required_argument, NULL, 'i'},
      {"output", required_argument, NULL, 'o'},
      {"group", required_argument, NULL, 'g'},
      {"dead-letter", required_argument, NULL, 'd'},
      {"state", required_argument, NULL, 's'},
      {"store", required_argument, NULL, 'S'},
      {"metrics", required_argument, NULL, 'm'},
      {"commit-interval-ms", required_argument, NULL, 'c'},
      {"changelog", required_argument, NULL, 'C'},
      {"no-changelog", no_argument, NULL, 'N'},
      {"instance-id", required_argument, NULL, 'I'},
      {"session-timeout-ms", required_argument, NULL, 'T'},
      {"exactly-once", no_argument, NULL, 'E'},
      {"threads", required_argument, NULL, 't'},
      {"decision-log", required_argument, NULL, 'L'},
      {"decision-log-bytes", required_argument, NULL, 'Y'},
      {"decision-log-seconds", required_argument, NULL, 'Z'},
      {"decision-log-features", no_argument, NULL, 'F'},
      {"registry", required_argument, NULL, 'r'},
      {"no-registry", no_argument, NULL, 'n'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  tdm__stream_options opt = {0};
  const char *registry = NULL;
  int no_registry = 0;
  size_t decision_bytes = (size_t)64 << 20, decision_seconds = 3600;
  char **config = calloc((size_t)argc + 1, sizeof *config);
  if (config == NULL) return TDM_EXIT_FAILURE;
  opt.config = config;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "X:h", longopts, NULL)) != -1) {
    switch (c) {
      case 'b': opt.brokers = optarg; break;
      case 'i': opt.input = optarg; break;
      case 'o': opt.output = optarg; break;
      case 'g': opt.group = optarg; break;
      case 'd': opt.dead_letter = optarg; break;
      case 's': opt.state_dir = optarg; break;
      case 'S': opt.store = optarg; break;
      case 'm': opt.metrics_listen = optarg; break;
      case 'C': opt.changelog = optarg; break;
      case 'N': opt.no_changelog = 1; break;
      case 'E': opt.exactly_once = 1; break;
      case 'L': opt.decision_log = optarg; break;
      case 'F': opt.decision_log_explain = TDM__EXPLAIN_FEATURES; break;
      case 'r': registry = optarg; break;
      case 'n': no_registry = 1; break;
      case 'Y':
        if (!tdm__cli_parse_bytes(optarg, &decision_bytes)) {
          free(config);
          return tdm__usage_error("stream", "--decision-log-bytes %s: not a "
                                  "size in bytes (such as 65536, 64k or 16M)",
                                  optarg);
        }
        break;
      case 'Z':
        if (!tdm__parse_count(optarg, 1000000000, &decision_seconds)) {
          free(config);
          return tdm__usage_error("stream", "--decision-log-seconds wants a "
                                  "whole number, not %s", optarg);
        }
        break;
      case 't': {
        size_t n;
        if (!tdm__parse_count(optarg, 256, &n) || n < 1) {
          free(config);
          return tdm__usage_error("stream",
                                  "--threads: expected 1 to 256, got '%s'",
                                  optarg);
        }
        opt.threads = (unsigned)n;
        break;
      }
      case 'X': config[opt.num_config++] = optarg; break;
      case 'I':
        if (optarg[0] == '\0') {
          free(config);
          return tdm__usage_error("stream", "--instance-id: expected an id");
        }
        opt.instance_id = optarg;
        break;
      case 'T':
      case 'c': {
        /* Milliseconds up to an hour; a session timeout under a second
         * would not leave room for heartbeats (Kafka brokers accept 6 s
         * to 30 min by default: group.min/max.session.timeout.ms). */
        const char *name =
            c == 'T' ? "--session-timeout-ms" : "--commit-interval-ms";
        size_t ms, least = c == 'T' ? 1000 : 1;
        if (!tdm__parse_count(optarg, 3600000, &ms) || ms < least) {
          free(config);
          return tdm__usage_error("stream",
                                  "%s: expected %zu to 3600000, got '%s'",
                                  name, least, optarg);
        }
        if (c == 'T')
          opt.session_timeout_ms = (unsigned)ms;
        else
          opt.commit_interval_ms = (unsigned)ms;
        break;
      }
      case 'h':
        fputs(stream_help, stdout);
        free(config);
        return TDM_EXIT_OK;
      default:
        free(config);
        fputs(stream_help, stderr);
        return TDM_EXIT_USAGE;
    }
  }
  const char *missing = optind >= argc   ? "a PIPELINE file"
                        : !opt.brokers   ? "--brokers"
                        : !opt.input     ? "--input"
                        : !opt.output    ? "--output"
                                         : NULL;
  if (missing == NULL && opt.changelog && opt.no_changelog) {
    free(config);
    return tdm__usage_error("stream",
                            "--changelog and --no-changelog contradict");
  }
  if (missing != NULL) {
    free(config);
    return tdm__usage_error("stream", "%s is required (see --help)", missing);
  }
  if (optind + 1 < argc) {
    free(config);
    return tdm__usage_error("stream", "unexpected argument '%s'",
                            argv[optind + 1]);
  }
  opt.pipeline_path = argv[optind];
  opt.decision_log_bytes = decision_bytes;
  opt.decision_log_ms = (int64_t)decision_seconds * 1000;
  char registry_path[4096];
  tdm_error no_path;
  if (opt.decision_log != NULL && !no_registry) {
    if (tdm__cli_registry_path(registry, registry_path, sizeof registry_path,
                               &no_path) != TDM_OK) {
      free(config);
      return tdm__report(no_path.status, &no_path);
    }
    opt.registry = registry_path;
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  tdm_error err;
  /* Per-message buffers are freed and made again: keep them in the heap
   * (an allocator setting is the program's, not the library's). */
  tdm__keep_heap();
  opt.stop = &stop_requested;
  opt.debug_commits = tdm__cli_stream_debug();
  tdm__store_settings settings;
  int rc = tdm__cli_store_settings(&settings, &err);
  opt.store_settings = &settings;
  if (rc == TDM_OK) rc = tdm__stream_run(&opt, &err);
  free(config);
  if (rc != TDM_OK) return tdm__report(rc, &err);
  return TDM_EXIT_OK;
}
