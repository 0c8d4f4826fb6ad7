/*
 * cmd_runs.c - `tandem runs`: lists the runs in the run registry
 * (src/store/registry.c), newest first, as a table or as JSON Lines. Also
 * home to tdm__cli_record_run, which `tandem score` and `tandem batch`
 * call after a successful run to record it there.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/core.h"
#include "../core/json.h"
#include "../pipeline/spec.h"
#include "../store/registry.h"
#include "cli.h"

/*
 * The registry a command uses: `given` (a --registry option) when not
 * NULL, else $TANDEM_REGISTRY, else $XDG_DATA_HOME/tandem/registry.db,
 * else ~/.local/share/tandem/registry.db. Writes it into buf
 * (NUL-terminated). Fails with TDM_ENOTFOUND when no home directory is
 * known, and TDM_EINVAL when the path does not fit. The environment is the
 * CLI's to read; the library only ever takes the path it is given.
 */
int tdm__cli_registry_path(const char *given, char *buf, size_t size,
                           tdm_error *err) {
  const char *env = given;
  int n;
  if (env != NULL) {
    n = snprintf(buf, size, "%s", env);
  } else if ((env = getenv("TANDEM_REGISTRY")) != NULL && env[0] != '\0') {
    n = snprintf(buf, size, "%s", env);
  } else if ((env = getenv("XDG_DATA_HOME")) != NULL && env[0] == '/') {
    /* The XDG spec says a relative XDG_DATA_HOME is to be ignored. */
    n = snprintf(buf, size, "%s/tandem/registry.db", env);
  } else if ((env = getenv("HOME")) != NULL && env[0] != '\0') {
    n = snprintf(buf, size, "%s/.local/share/tandem/registry.db", env);
  } else {
    return tdm__fail(err, TDM_ENOTFOUND,
                     "no registry path: set TANDEM_REGISTRY or HOME, or give "
                     "--registry");
  }
  if (n < 0 || (size_t)n >= size)
    return tdm__fail(err, TDM_EINVAL, "the registry path is too long");
  return TDM_OK;
}

void tdm__cli_record_run(const char *command, const char *registry,
                         int disabled, const char *out_path) {
  if (disabled) return;
  char path[4096];
  tdm_error err;
  int rc = tdm__cli_registry_path(registry, path, sizeof path, &err);
  tdm__buf manifest = {0};
  if (rc == TDM_OK &&
      tdm__buf_printf(&manifest, "%s.manifest.json", out_path) != TDM_OK)
    rc = tdm__fail(&err, TDM_ENOMEM, "out of memory");
  char run_id[16];
  if (rc == TDM_OK)
    rc = tdm__registry_record_manifest(path, manifest.data, run_id, &err);
  tdm__buf_free(&manifest);
  /* The run itself succeeded and its output is in place: a registry that
   * cannot be written is worth a warning, never a failed run. */
  if (rc != TDM_OK)
    fprintf(stderr, "tandem %s: warning: run not recorded: %s\n", command,
            err.message);
  else
    fprintf(stderr, "tandem %s: run %s\n", command, run_id);
}

static const char runs_help[] =
    "usage: tandem runs [options]\n"
    "\n"
    "Lists the runs of `tandem score` and `tandem batch` recorded in the run\n"
    "registry, newest first: id, start time (UTC), command, model version\n"
    "(the first 12 hex digits of its SHA-256), input, rows written, seconds,\n"
    "the headline metrics `tandem eval --record` stored (binary: auc and ap;\n"
    "regression: rmse and mae; multiclass: accuracy and log_loss) and the\n"
    "run's tags (score and batch --tag K=V).\n"
    "\n"
    "options:\n"
    "  --registry P       the registry (default: $TANDEM_REGISTRY, else\n"
    "                     $XDG_DATA_HOME/tandem/registry.db, else\n"
    "                     ~/.local/share/tandem/registry.db)\n"
    "  --command C        only runs of score, batch or live (decision log\n"
    "                     segments of tandem serve)\n"
    "  --model SHA        only runs whose model's SHA-256 starts with SHA\n"
    "  --pipeline P       only runs of the pipeline file P, or of the\n"
    "                     pipeline whose SHA-256 starts with P\n"
    "  --since TIME       only runs started at or after TIME: RFC 3339,\n"
    "                     epoch seconds, or a duration back from now (24h)\n"
    "  --limit N          at most N runs\n"
    "  --json             JSON Lines: one object per run, every field\n"
    "  --help, -h         show this help\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n";

static int is_hex(const char *s, size_t min, size_t max) {
  size_t n = strlen(s);
  if (n < min || n > max) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
          (s[i] >= 'A' && s[i] <= 'F')))
      return 0;
  return 1;
}

static void lowercase(char *s) {
  for (; *s; s++)
    if (*s >= 'A' && *s <= 'F') *s = (char)(*s - 'A' + 'a');
}

/* --since: a time, or a duration back from now, as the registry writes
 * times (to the second, rounded up so that the bound stays inclusive). */
static int parse_since(const char *text, char out[32]) {
  int64_t ms, back;
  if (tdm__parse_duration(text, &back) == 0) {
    ms = (int64_t)time(NULL) * 1000 - back;
  } else if (tdm__parse_time(text, strlen(text), TDM__TIME_AUTO, &ms) != 0) {
    return -1;
  }
  int64_t seconds = ms / 1000 + (ms % 1000 > 0 ? 1 : 0);
  if (ms < 0 && ms % 1000 != 0) seconds = ms / 1000;
  time_t t = (time_t)seconds;
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL) return -1;
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return 0;
}

/* The last component of a path, for a table that must stay narrow. */
static const char *base_name(const char *path) {
  if (path == NULL) return "-";
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* The headline metrics of a run's recorded metrics, "auc=0.9123
 * ap=0.4410", or "-": the two that summarize each task, as eval names
 * them, so the list shows which run scored better without --json. */
static void metrics_summary(const char *json, char *out, size_t size) {
  static const char *const keys[][2] = {
      {"roc_auc", "auc"},       {"average_precision", "ap"},
      {"rmse", "rmse"},         {"mae", "mae"},
      {"accuracy", "accuracy"}, {"log_loss", "log_loss"}};
  snprintf(out, size, "-");
  tdm__json_doc doc;
  tdm_error ignored;
  if (json == NULL || tdm__json_parse(&doc, json, strlen(json), "metrics", 0,
                                      &ignored) != TDM_OK)
    return;
  size_t used = 0, shown = 0;
  for (size_t k = 0; k < sizeof keys / sizeof keys[0] && shown < 2; k++) {
    const tdm__json *v = tdm__json_get(doc.root, keys[k][0]);
    if (v == NULL || (v->type != TDM__JSON_NUMBER && v->type != TDM__JSON_NULL))
      continue;
    int n = v->type == TDM__JSON_NUMBER
                ? snprintf(out + used, size - used, "%s%s=%.4f",
                           shown ? " " : "", keys[k][1], strtod(v->text, NULL))
                : snprintf(out + used, size - used, "%s%s=-", shown ? " " : "",
                           keys[k][1]);
    if (n < 0 || (size_t)n >= size - used) break;
    used += (size_t)n;
    shown++;
  }
  tdm__json_doc_free(&doc);
}

/* A run's tags as "k=v,k2=v2", or "-". */
static void tags_text(const char *json, char *out, size_t size) {
  snprintf(out, size, "-");
  tdm__json_doc doc;
  tdm_error ignored;
  if (json == NULL ||
      tdm__json_parse(&doc, json, strlen(json), "tags", 0, &ignored) != TDM_OK)
    return;
  size_t used = 0;
  for (size_t i = 0; doc.root->type == TDM__JSON_OBJECT && i < doc.root->count;
       i++) {
    const tdm__json *v = &doc.root->items[i];
    int n =
        snprintf(out + used, size - used, "%s%s=%s", i ? "," : "",
                 doc.root->keys[i], v->type == TDM__JSON_STRING ? v->text : "");
    if (n < 0 || (size_t)n >= size - used) break;
    used += (size_t)n;
  }
  tdm__json_doc_free(&doc);
}

static void print_table(const tdm__run_record *runs, size_t count) {
  printf("%-12s  %-20s  %-7s  %-12s  %-24s  %10s  %9s  %-22s  %s\n", "ID",
         "STARTED", "COMMAND", "MODEL", "INPUT", "ROWS", "SECONDS", "METRICS",
         "TAGS");
  for (size_t i = 0; i < count; i++) {
    const tdm__run_record *r = &runs[i];
    char rows[24];
    if (r->rows < 0)
      snprintf(rows, sizeof rows, "-");
    else
      snprintf(rows, sizeof rows, "%lld", (long long)r->rows);
    char metrics[64], tags[512];
    metrics_summary(r->metrics, metrics, sizeof metrics);
    tags_text(r->tags, tags, sizeof tags);
    printf("%-12s  %-20s  %-7s  %-12s  %-24s  %10s  %9.3f  %-22s  %s\n", r->id,
           r->started_at ? r->started_at : "-", r->command ? r->command : "-",
           r->model_version ? r->model_version : "-", base_name(r->input_path),
           rows, r->seconds, metrics, tags);
  }
}

int tdm__cmd_runs(int argc, char **argv) {
  static const struct option long_options[] = {
      {"registry", required_argument, NULL, 'r'},
      {"command", required_argument, NULL, 'c'},
      {"model", required_argument, NULL, 'm'},
      {"pipeline", required_argument, NULL, 'p'},
      {"since", required_argument, NULL, 's'},
      {"limit", required_argument, NULL, 'n'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  tdm__run_filter filter;
  memset(&filter, 0, sizeof filter);
  const char *registry = NULL;
  const char *pipeline = NULL;
  char model[65], since[32], pipeline_path[PATH_MAX];
  int json = 0;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
      case 'r': registry = optarg; break;
      case 'c':
        if (strcmp(optarg, "score") != 0 && strcmp(optarg, "batch") != 0 &&
            strcmp(optarg, "live") != 0)
          return tdm__usage_error(
              "runs", "--command is score, batch or live, not '%s'", optarg);
        filter.command = optarg;
        break;
      case 'm':
        if (!is_hex(optarg, 1, 64))
          return tdm__usage_error(
              "runs", "--model wants hex digits of a SHA-256, not '%s'",
              optarg);
        snprintf(model, sizeof model, "%s", optarg);
        lowercase(model);
        filter.model_prefix = model;
        break;
      case 'p': pipeline = optarg; break;
      case 's':
        if (parse_since(optarg, since) != 0)
          return tdm__usage_error("runs",
                                  "--since wants RFC 3339, epoch seconds or "
                                  "a duration (24h), not '%s'",
                                  optarg);
        filter.since = since;
        break;
      case 'n':
        if (!tdm__parse_count(optarg, SIZE_MAX, &filter.limit))
          return tdm__usage_error(
              "runs", "--limit must be a positive number, not '%s'", optarg);
        break;
      case 'j': json = 1; break;
      case 'h': fputs(runs_help, stdout); return TDM_EXIT_OK;
      case ':':
        return tdm__usage_error("runs", "%s needs a value", argv[optind - 1]);
      default:
        return tdm__usage_error("runs", "unknown option '%s'",
                                argv[optind - 1]);
    }
  }
  if (optind < argc)
    return tdm__usage_error("runs", "unexpected argument '%s'", argv[optind]);
  if (pipeline != NULL) {
    /* A file by that name is a path; hex that names no file is a hash. */
    struct stat sb;
    if (stat(pipeline, &sb) != 0 && is_hex(pipeline, 4, 64)) {
      snprintf(pipeline_path, sizeof pipeline_path, "%s", pipeline);
      lowercase(pipeline_path);
      filter.pipeline_prefix = pipeline_path;
    } else if (realpath(pipeline, pipeline_path) != NULL) {
      filter.pipeline_path = pipeline_path;
    } else if (pipeline[0] == '/') {
      snprintf(pipeline_path, sizeof pipeline_path, "%s", pipeline);
      filter.pipeline_path = pipeline_path;
    } else {
      char cwd[PATH_MAX];
      if (getcwd(cwd, sizeof cwd) == NULL ||
          snprintf(pipeline_path, sizeof pipeline_path, "%s/%s", cwd,
                   pipeline) >= (int)sizeof pipeline_path)
        return tdm__usage_error("runs", "cannot resolve --pipeline '%s'",
                                pipeline);
      filter.pipeline_path = pipeline_path;
    }
  }

  char path[4096];
  tdm_error err;
  int rc = tdm__cli_registry_path(registry, path, sizeof path, &err);
  tdm__registry *reg = NULL;
  if (rc == TDM_OK)
    rc = tdm__registry_open(path, TDM__REGISTRY_READ, &reg, &err);
  if (rc == TDM_ENOTFOUND && registry == NULL) {
    /* Nothing has been recorded yet: an empty list, not an error. */
    if (!json) print_table(NULL, 0);
    return TDM_EXIT_OK;
  }
  if (rc != TDM_OK) return tdm__report(rc, &err);
  tdm__run_record *runs = NULL;
  size_t count = 0;
  rc = tdm__registry_list(reg, &filter, &runs, &count, &err);
  tdm__registry_close(reg);
  if (rc != TDM_OK) return tdm__report(rc, &err);
  if (json) {
    tdm__buf b = {0};
    for (size_t i = 0; i < count && rc == TDM_OK; i++) {
      b.len = 0;
      rc = tdm__run_record_json(&b, &runs[i]);
      if (rc == TDM_OK) rc = tdm__buf_append(&b, "\n", 1);
      if (rc == TDM_OK) fwrite(b.data, 1, b.len, stdout);
    }
    tdm__buf_free(&b);
    if (rc != TDM_OK) {
      tdm__run_records_free(runs, count);
      return tdm__report(tdm__fail(&err, TDM_ENOMEM, "out of memory"), &err);
    }
  } else {
    print_table(runs, count);
  }
  tdm__run_records_free(runs, count);
  return TDM_EXIT_OK;
}

/* Bytes with an optional k or M suffix; 0 if it is not one. */
int tdm__cli_parse_bytes(const char *text, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long n = strtoull(text, &end, 10);
  if (*text == '\0' || *text == '-' || errno == ERANGE || n == 0) return 0;
  unsigned shift = 0;
  if (*end == 'k' || *end == 'K') shift = 10, end++;
  else if (*end == 'M' || *end == 'm') shift = 20, end++;
  if (*end != '\0' || n > (1ull << 40) >> shift) return 0;
  *out = (size_t)(n << shift);
  return 1;
}
