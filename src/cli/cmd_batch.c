/*
 * cmd_batch.c - `tandem batch`: parses options and runs the pipeline
 * through the public API (tdm_pipeline_open, tdm_pipeline_batch), as any
 * program embedding tandem would; what it adds is the command line, the
 * environment's store settings, the summary on stderr and the run
 * registry's record.
 */
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char batch_help[] =
    "usage: tandem batch PIPELINE --in EVENTS --out RESULTS [options]\n"
    "\n"
    "Runs a pipeline (docs/pipelines.md) over a file of events in file\n"
    "order: features with their windows, the model's score and the decision\n"
    "for every event, exactly as `tandem serve PIPELINE` computes them live.\n"
    "EVENTS is CSV with a header, or JSON Lines (.jsonl); columns are matched\n"
    "to the pipeline's fields by name. RESULTS is CSV, or JSON Lines when it\n"
    "ends in .jsonl (each line then equals the live endpoint's answer for\n"
    "that event). The output keeps the input's order, is byte-identical for\n"
    "every thread count, and appears only when the run succeeds, with\n"
    "RESULTS.manifest.json beside it.\n"
    "\n"
    "options:\n"
    "  --in EVENTS      events, .csv or .jsonl\n"
    "  --out RESULTS    results, .csv or .jsonl\n"
    "  --threads N      worker threads (default: all cores); entities are\n"
    "                   split between them, the output does not change\n"
    "  --rejects FILE   where events that fail validation go, one JSON line\n"
    "                   each with the line number and the reason (default:\n"
    "                   RESULTS.rejects.jsonl, written only if there are any)\n"
    "  --strict         fail the run (exit 2) at the first invalid event\n"
    "  --explain        JSON Lines output: add every feature's value\n"
    "  --save-state DIR write the window state at the end of the events to\n"
    "                   DIR (a new directory): `tandem serve PIPELINE --state\n"
    "                   DIR` continues from it, as if it had seen them\n"
    "  --materialize T  write a new version of table T (a materialize: entry)\n"
    "                   into the store: per entity, its last event's values\n"
    "                   (repeatable)\n"
    "  --store DIR      the tables' store (default: the pipeline's store:)\n"
    "  --as-of TIME     the tables' as_of (RFC 3339 or epoch seconds;\n"
    "                   default: the last event time of the run)\n"
    "  --now TIME       the clock state.max_future is measured from (RFC\n"
    "                   3339 or epoch seconds; default: the wall clock when\n"
    "                   the run starts): an event dated more than max_future\n"
    "                   after it is rejected as future (pin it for backfills)\n"
    "  --features-only  no model: write the keys and every feature (the\n"
    "                   training data for the pipeline's model, computed\n"
    "                   exactly as live)\n"
    "  --registry P     record the run in the run registry P (default:\n"
    "                   $TANDEM_REGISTRY, else $XDG_DATA_HOME/tandem/\n"
    "                   registry.db, else ~/.local/share/tandem/registry.db);\n"
    "                   a registry that cannot be written only warns, even\n"
    "                   one given here (see `tandem runs`)\n"
    "  --no-registry    do not record the run\n"
    "  --tag K=V        label the run in the registry (repeatable; shown by\n"
    "                   `tandem runs`, kept in the manifest)\n"
    "  --help, -h       show this help\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n";

int tdm__cmd_batch(int argc, char **argv) {
  /* A Redis table store that goes away while rows are written would raise
   * SIGPIPE (OpenSSL writes a rediss:// connection with write(2)) and end
   * the run without a word; ignored, the write fails and the run says
   * which store failed. */
  signal(SIGPIPE, SIG_IGN);
  static const struct option long_options[] = {
      {"in", required_argument, NULL, 'i'},
      {"out", required_argument, NULL, 'o'},
      {"threads", required_argument, NULL, 't'},
      {"rejects", required_argument, NULL, 'r'},
      {"strict", no_argument, NULL, 's'},
      {"explain", no_argument, NULL, 'e'},
      {"features-only", no_argument, NULL, 'F'},
      {"save-state", required_argument, NULL, 'S'},
      {"materialize", required_argument, NULL, 'M'},
      {"store", required_argument, NULL, 'D'},
      {"as-of", required_argument, NULL, 'A'},
      {"now", required_argument, NULL, 'W'},
      {"registry", required_argument, NULL, 'R'},
      {"no-registry", no_argument, NULL, 'N'},
      {"tag", required_argument, NULL, 'T'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  tdm_pipeline_options open = {0};
  tdm_batch_options opt = {0};
  const char *in_path = NULL, *out_path = NULL;
  const char *tables[TDM_BATCH_MAX_TABLES];
  const char *tags[32];
  size_t num_tables = 0, num_tags = 0;
  int64_t as_of_ms = 0;
  /* The clock is read once, when the run starts (not per event). */
  int64_t now_ms = tdm__cli_now_ms();
  size_t count;
  const char *registry = NULL;
  int no_registry = 0;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
      case 'i': in_path = optarg; break;
      case 'o': out_path = optarg; break;
      case 'r': opt.rejects_path = optarg; break;
      case 's': opt.strict = 1; break;
      case 'e': opt.explain = 1; break;
      case 'F': open.features_only = 1; break;
      case 'S': opt.save_state = optarg; break;
      case 'M':
        if (num_tables == TDM_BATCH_MAX_TABLES)
          return tdm__usage_error("batch", "at most 16 --materialize");
        tables[num_tables++] = optarg;
        break;
      case 'D': open.store = optarg; break;
      case 'R': registry = optarg; break;
      case 'N': no_registry = 1; break;
      case 'T':
        if (tdm__add_tag("batch", optarg, tags, &num_tags, 32) != 0)
          return TDM_EXIT_USAGE;
        break;
      case 'A':
        if (tdm__cli_parse_time(optarg, &as_of_ms) != 0)
          return tdm__usage_error("batch",
                                  "--as-of wants RFC 3339 or epoch seconds, "
                                  "not '%s'",
                                  optarg);
        opt.as_of_ms = &as_of_ms;
        break;
      case 'W':
        if (tdm__cli_parse_time(optarg, &now_ms) != 0)
          return tdm__usage_error("batch",
                                  "--now wants RFC 3339 or epoch seconds, "
                                  "not '%s'",
                                  optarg);
        break;
      case 't':
        if (!tdm__parse_count(optarg, 256, &count))
          return tdm__usage_error("batch",
                                  "--threads must be a number from 1 to 256, "
                                  "not '%s'",
                                  optarg);
        opt.threads = (int)count;
        break;
      case 'h': fputs(batch_help, stdout); return TDM_EXIT_OK;
      case ':':
        return tdm__usage_error("batch", "%s needs a value", argv[optind - 1]);
      default:
        return tdm__usage_error("batch", "unknown option '%s'",
                                argv[optind - 1]);
    }
  }
  if (optind + 1 != argc)
    return tdm__usage_error("batch",
                            optind < argc ? "give one pipeline file"
                                          : "a pipeline file is required");
  const char *pipeline_path = argv[optind];
  if (in_path == NULL || out_path == NULL)
    return tdm__usage_error("batch", "--in and --out are required");
  opt.materialize = tables;
  opt.num_materialize = num_tables;
  opt.tags = tags;
  opt.num_tags = num_tags;
  /* A pointer, so that --now 0 (1970) stays the instant it names. */
  opt.now_ms = &now_ms;
  tdm_error err;
  /* Every output replaces its path at the end: never when that path is
   * the pipeline file or the input. */
  const char *inputs[] = {pipeline_path, in_path};
  const char *input_flags[] = {"the pipeline", "--in"};
  char manifest[4096], rejects[4096];
  snprintf(manifest, sizeof manifest, "%s.manifest.json", out_path);
  snprintf(rejects, sizeof rejects, "%s.rejects.jsonl", out_path);
  int rc = tdm__cli_refuse_output_onto_input("--out", out_path, inputs,
                                             input_flags, 2, &err);
  if (rc == TDM_OK)
    rc = tdm__cli_refuse_output_onto_input(
        opt.rejects_path ? "--rejects" : "the rejects file",
        opt.rejects_path ? opt.rejects_path : rejects, inputs, input_flags, 2,
        &err);
  if (rc == TDM_OK)
    rc = tdm__cli_refuse_output_onto_input("the manifest", manifest, inputs,
                                           input_flags, 2, &err);
  /* The batch runner frees and makes its chunk arenas again per chunk;
   * the CLI owns its process's allocator settings, so it keeps the heap
   * here (the library, run inside someone else's program, does not). */
  tdm__cli_keep_heap();
  if (rc == TDM_OK) rc = tdm__cli_pipeline_options(&open, &err);
  tdm_pipeline *pipeline = NULL;
  if (rc == TDM_OK) rc = tdm_pipeline_open(pipeline_path, &open, &pipeline, &err);
  tdm_batch_stats stats;
  if (rc == TDM_OK)
    rc = tdm_pipeline_batch(pipeline, in_path, out_path, &opt, &stats, &err);
  tdm_pipeline_free(pipeline);
  if (rc != TDM_OK) return tdm__report(rc, &err);
  fprintf(stderr,
          "tandem batch: %zu events in %.3f s (%.0f/s, %d threads): %zu "
          "written, %zu duplicates, %zu rejected\n",
          stats.events, stats.seconds,
          stats.seconds > 0 ? (double)stats.events / stats.seconds : 0.0,
          stats.threads, stats.written, stats.duplicates, stats.rejected);
  for (size_t i = 0; i < stats.num_tables; i++) {
    char as_of[32];
    tdm__cli_format_time(stats.tables[i].as_of_ms, as_of);
    fprintf(stderr, "tandem batch: table %s version %llu: %zu rows as of %s\n",
            stats.tables[i].table,
            (unsigned long long)stats.tables[i].version,
            stats.tables[i].rows, as_of);
  }
  tdm__cli_record_run("batch", registry, no_registry, out_path);
  return TDM_EXIT_OK;
}
