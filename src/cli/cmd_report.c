/*
 * cmd_report.c - `tandem report RUN [RUN_B] --out FILE.html`: gathers what
 * the page of src/eval/report.c shows about one or two recorded runs. The
 * runs come from the registry and their outputs are read back (and
 * checked against their SHA-256) as `tandem compare` does; labels are
 * read as `tandem eval` reads them and the metrics and curve points come
 * from src/eval/metrics.c; without labels a run's recorded metrics (`tandem
 * eval --record`) are shown. The page is built in memory and written
 * atomically, so a failure leaves no file behind.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/core.h"
#include "../eval/compare.h"
#include "../eval/metrics.h"
#include "../eval/report.h"
#include "../store/registry.h"
#include "cli.h"

static const char report_help[] =
    "usage: tandem report RUN [RUN_B] --out REPORT.html [options]\n"
    "\n"
    "Writes one self-contained HTML page (inline CSS and SVG; no script,\n"
    "no network) about a recorded run, or two side by side. First a\n"
    "summary: each run's rows, ROC AUC and PR AUC (or a recorded RMSE),\n"
    "decision counts, the PSI of the scores, and a one-sentence verdict.\n"
    "Then the runs (command, times, model version, pipeline, input and\n"
    "output files with their SHA-256, rows), the score histogram and\n"
    "statistics, the decisions counted per run, and when labels are known\n"
    "the metric table (ROC AUC, average precision, log loss, Brier, KS),\n"
    "the confusion matrix at each threshold, ROC, precision-recall,\n"
    "calibration, cumulative gain and lift plots, and gain and lift by\n"
    "tenth of the rows. With two runs also what `tandem compare` computes:\n"
    "distributions side by side, PSI, changed decisions with examples,\n"
    "metric deltas, and when both runs were `tandem batch --explain` with\n"
    "JSON Lines output, the PSI of every feature.\n"
    "\n"
    "Labels are read as `tandem eval` reads them, against each run's\n"
    "output; without labels, metrics recorded with `tandem eval --record`\n"
    "are shown (no ROC or PR curve: those need the labels).\n"
    "\n"
    "options:\n"
    "  --out FILE        the HTML file to write (required); written\n"
    "                    atomically: nothing is left on failure\n"
    "  --labels L        labels file (CSV or JSON Lines), rows matched with\n"
    "                    each run's output by position or --id-col\n"
    "  --label-col NAME  the label column (default 'label'); without\n"
    "                    --labels it is read from the run's output itself\n"
    "  --id-col NAME     match rows by this column, present in both files\n"
    "  --threshold T     where a score counts as positive (score >= T;\n"
    "                    repeatable; default: the thresholds recorded with\n"
    "                    either run by `tandem eval --record`, else 0.5)\n"
    "  --log-scale       the score histogram's share axis in powers of ten\n"
    "                    (shows a tail of a few rows)\n"
    "  --bins N          calibration bins of equal width (default 10)\n"
    "  --examples N      changed decisions to list (default 10; 0: none)\n"
    "  --registry P      the registry (default as for `tandem runs`)\n"
    "  --help, -h        show this help\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n";

#define MAX_THRESHOLDS 256

typedef struct report_options {
  const char *out_path, *labels_path, *label_column, *id_column, *registry;
  double thresholds[MAX_THRESHOLDS];
  size_t num_thresholds, bins, examples;
  int log_scale;
} report_options;

/* What one run's evaluation owns. */
typedef struct run_evaluation {
  tdm__eval_binary_result binary;
  int has_binary;
  tdm__eval_curve_point *curve;
  size_t curve_count;
  char source[1200];
} run_evaluation;

static void run_evaluation_free(run_evaluation *e) {
  if (e->has_binary) tdm__eval_binary_result_free(&e->binary);
  tdm__free(e->curve);
  memset(e, 0, sizeof *e);
}

/* The thresholds `tandem eval --record` stored with any of the runs,
 * each once, in order: the confusion matrices' default, so that both
 * runs are shown at the thresholds that were decided on. */
static size_t recorded_thresholds(const tdm__run_record *runs, size_t num_runs,
                                  double *out) {
  size_t n = 0;
  for (size_t k = 0; k < num_runs; k++) {
    tdm__eval_binary_result stored;
    int found = 0;
    tdm_error ignored;
    if (tdm__report_metrics_from_json(runs[k].metrics, &stored, &found,
                                      &ignored) != TDM_OK ||
        !found)
      continue;
    for (size_t i = 0; i < stored.num_thresholds && n < MAX_THRESHOLDS; i++) {
      double t = stored.thresholds[i].threshold;
      int seen = !isfinite(t);
      for (size_t j = 0; j < n && !seen; j++) seen = out[j] == t;
      if (!seen) out[n++] = t;
    }
    tdm__eval_binary_result_free(&stored);
  }
  return n;
}

/* Evaluates run against the labels of o, or reads its recorded metrics.
 * Without --threshold the confusion matrices are at the `recorded`
 * thresholds, else at 0.5. */
static int evaluate_run(const report_options *o, const tdm__run_record *run,
                        const double *recorded, size_t num_recorded,
                        run_evaluation *e, tdm_error *err) {
  memset(e, 0, sizeof *e);
  if (o->labels_path == NULL && o->label_column == NULL) {
    int found = 0;
    int rc =
        tdm__report_metrics_from_json(run->metrics, &e->binary, &found, err);
    if (rc != TDM_OK) return rc;
    e->has_binary = found;
    if (found)
      snprintf(e->source, sizeof e->source,
               "metrics recorded with the run (tandem eval --record); the "
               "curves need --labels");
    return TDM_OK;
  }
  double *scores = NULL, *labels = NULL;
  size_t n = 0;
  int rc =
      tdm__eval_read_binary(run->output_path, o->labels_path, o->label_column,
                            o->id_column,
                            run->command && strcmp(run->command, "live") == 0,
                            &scores, &labels, &n, err);
  if (rc == TDM_OK) {
    double default_threshold = 0.5;
    const double *thresholds = o->num_thresholds ? o->thresholds
                               : num_recorded    ? recorded
                                                 : &default_threshold;
    size_t num_thresholds = o->num_thresholds ? o->num_thresholds
                            : num_recorded    ? num_recorded
                                              : 1;
    rc = tdm__eval_binary(scores, labels, n, thresholds, num_thresholds,
                          o->bins, &e->binary, err);
    e->has_binary = rc == TDM_OK;
  }
  if (rc == TDM_OK)
    rc = tdm__eval_binary_curve(scores, labels, n, &e->curve, &e->curve_count,
                                err);
  tdm__free(scores);
  tdm__free(labels);
  if (rc != TDM_OK) {
    run_evaluation_free(e);
    return rc;
  }
  snprintf(e->source, sizeof e->source,
           "%zu rows evaluated against labels from %s (column \"%s\", "
           "matched by %s%s)",
           n, o->labels_path ? o->labels_path : run->output_path,
           o->label_column ? o->label_column : "label",
           o->id_column ? "id column " : "position",
           o->id_column ? o->id_column : "");
  return TDM_OK;
}

static int write_report(const report_options *o, const char *const *ids,
                        size_t num_runs, tdm_error *err) {
  char path[4096];
  int rc = tdm__cli_registry_path(o->registry, path, sizeof path, err);
  tdm__registry *reg = NULL;
  if (rc == TDM_OK)
    rc = tdm__registry_open(path, TDM__REGISTRY_READ, &reg, err);
  tdm__run_record runs[2];
  memset(runs, 0, sizeof runs);
  for (size_t k = 0; k < num_runs && rc == TDM_OK; k++)
    rc = tdm__registry_get(reg, ids[k], &runs[k], err);
  tdm__registry_close(reg);

  tdm__comparison cmp;
  int have_cmp = 0;
  tdm__run_output single;
  tdm__score_distribution single_distribution;
  int have_single = 0;
  memset(&single_distribution, 0, sizeof single_distribution);
  run_evaluation evaluations[2];
  memset(evaluations, 0, sizeof evaluations);
  tdm__buf page = {0};
  tdm__report_page report;
  memset(&report, 0, sizeof report);
  report.num_runs = num_runs;

  if (rc == TDM_OK && num_runs == 2) {
    rc = tdm__compare_runs(&runs[0], &runs[1], o->examples, 1, &cmp, err);
    have_cmp = rc == TDM_OK;
    if (have_cmp) {
      report.comparison = &cmp;
      report.runs[0].output = cmp.oa;
      report.runs[1].output = cmp.ob;
      report.runs[0].distribution = &cmp.da;
      report.runs[1].distribution = &cmp.db;
    }
  } else if (rc == TDM_OK) {
    rc = tdm__run_output_read(&runs[0], 0, &single, err);
    have_single = rc == TDM_OK;
    if (rc == TDM_OK)
      rc = tdm__score_describe(&single, &single_distribution, err);
    report.runs[0].output = &single;
    report.runs[0].distribution = &single_distribution;
  }
  double recorded[MAX_THRESHOLDS];
  size_t num_recorded =
      rc == TDM_OK ? recorded_thresholds(runs, num_runs, recorded) : 0;
  for (size_t k = 0; k < num_runs && rc == TDM_OK; k++) {
    rc =
        evaluate_run(o, &runs[k], recorded, num_recorded, &evaluations[k], err);
    report.runs[k].run = &runs[k];
    tdm__report_evaluation *e = &report.runs[k].evaluation;
    if (rc == TDM_OK && evaluations[k].has_binary) {
      e->binary = &evaluations[k].binary;
      e->curve = evaluations[k].curve;
      e->curve_count = evaluations[k].curve_count;
      e->source = evaluations[k].source;
    }
  }

  char now[32];
  time_t t = time(NULL);
  struct tm utc;
  gmtime_r(&t, &utc);
  strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &utc);
  report.generated_at = now;
  report.log_scale = o->log_scale;
  if (rc == TDM_OK) rc = tdm__report_html(&report, &page, err);
  if (rc == TDM_OK)
    rc = tdm__write_file_atomic(o->out_path, page.data, page.len, err);

  tdm__buf_free(&page);
  for (size_t k = 0; k < 2; k++) run_evaluation_free(&evaluations[k]);
  if (have_cmp) tdm__comparison_free(&cmp);
  if (have_single) tdm__run_output_free(&single);
  tdm__free(single_distribution.sorted);
  for (size_t k = 0; k < 2; k++) tdm__run_record_free(&runs[k]);
  return rc;
}

int tdm__cmd_report(int argc, char **argv) {
  static const struct option long_options[] = {
      {"out", required_argument, NULL, 'o'},
      {"labels", required_argument, NULL, 'l'},
      {"label-col", required_argument, NULL, 'L'},
      {"id-col", required_argument, NULL, 'I'},
      {"threshold", required_argument, NULL, 'T'},
      {"bins", required_argument, NULL, 'b'},
      {"examples", required_argument, NULL, 'e'},
      {"registry", required_argument, NULL, 'r'},
      {"log-scale", no_argument, NULL, 'g'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  static report_options o;
  memset(&o, 0, sizeof o);
  o.bins = 10;
  o.examples = 10;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
      case 'o': o.out_path = optarg; break;
      case 'l': o.labels_path = optarg; break;
      case 'L': o.label_column = optarg; break;
      case 'I': o.id_column = optarg; break;
      case 'r': o.registry = optarg; break;
      case 'g': o.log_scale = 1; break;
      case 'T': {
        double t;
        if (tdm__parse_double(optarg, strlen(optarg), &t) != 0 || !isfinite(t))
          return tdm__usage_error(
              "report", "--threshold must be a number, not '%s'", optarg);
        if (o.num_thresholds == MAX_THRESHOLDS)
          return tdm__usage_error("report", "at most %d --threshold options",
                                  MAX_THRESHOLDS);
        o.thresholds[o.num_thresholds++] = t;
        break;
      }
      case 'b':
        if (!tdm__parse_count(optarg, 1000, &o.bins))
          return tdm__usage_error(
              "report", "--bins must be a number from 1 to 1000, not '%s'",
              optarg);
        break;
      case 'e':
        if (strcmp(optarg, "0") == 0)
          o.examples = 0;
        else if (!tdm__parse_count(optarg, 100000, &o.examples))
          return tdm__usage_error(
              "report",
              "--examples must be a number from 0 to 100000, not '%s'", optarg);
        break;
      case 'h': fputs(report_help, stdout); return TDM_EXIT_OK;
      case ':':
        return tdm__usage_error("report", "%s needs a value", argv[optind - 1]);
      default:
        return tdm__usage_error("report", "unknown option '%s'",
                                argv[optind - 1]);
    }
  }
  size_t num_runs = (size_t)(argc - optind);
  if (num_runs < 1 || num_runs > 2)
    return tdm__usage_error("report", "give one run id, or two to compare");
  if (o.out_path == NULL)
    return tdm__usage_error("report", "--out FILE.html is required");
  if (o.id_column != NULL && o.labels_path == NULL)
    return tdm__usage_error("report",
                            "--id-col matches two files; it needs --labels");
  const char *ids[2] = {argv[optind], num_runs == 2 ? argv[optind + 1] : NULL};
  tdm_error err;
  tdm__error_clear(&err);
  int rc = write_report(&o, ids, num_runs, &err);
  if (rc != TDM_OK) return tdm__report(rc, &err);
  fprintf(stderr, "tandem report: wrote %s\n", o.out_path);
  return TDM_EXIT_OK;
}
