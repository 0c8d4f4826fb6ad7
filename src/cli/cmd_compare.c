/*
 * cmd_compare.c - `tandem compare RUN_A RUN_B`: puts two recorded runs
 * side by side. Both outputs are found through the run registry and
 * checked against the SHA-256 recorded for them, then read (CSV or JSON
 * Lines) and compared: each run's score distribution, the shift between
 * them (mean delta and the population stability index), the rows whose
 * decision changed, and the difference of their metrics when both have
 * some. Rows are paired by an id column both outputs share (the k-th
 * occurrence of an id with the k-th, since a batch output repeats the id
 * of a duplicate event), else by position. The computing is in
 * src/eval/compare.c (shared with `tandem report`); this file parses the
 * command line and prints.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/core.h"
#include "../core/json.h"
#include "../eval/compare.h"
#include "../store/registry.h"
#include "cli.h"

static const char compare_help[] =
    "usage: tandem compare RUN_A RUN_B [options]\n"
    "       tandem compare --shadow RUN [options]\n"
    "\n"
    "Compares two recorded runs (ids or unique prefixes, from `tandem runs`)\n"
    "through their outputs, which must still be where the run wrote them and\n"
    "unchanged (their SHA-256 is checked). Prints both runs side by side\n"
    "(a warning when they read different inputs), the score distribution of\n"
    "each (count, mean, standard deviation, min, p1 .. p99, max), the shift\n"
    "from A to B, the rows whose decision changed, and metric deltas when\n"
    "both runs have metrics.\n"
    "\n"
    "Rows are paired by id when both outputs have the same id column (the\n"
    "first column that is not score, decision, duplicate or model_version:\n"
    "the pipeline's id, or score's first --keep column), else by position,\n"
    "which needs equal row counts.\n"
    "\n"
    "The shift: mean delta (B - A), and PSI = sum over bins of\n"
    "(b - a) * ln(b / a), where a and b are the fractions of A's and B's\n"
    "scores in each of 10 bins cut at A's deciles (bin i holds scores above\n"
    "the i-th cut and at or below the next); an empty bin counts as a\n"
    "fraction of 0.0001, so that the logarithm stays finite. Percentiles\n"
    "interpolate linearly between order statistics (numpy's default); the\n"
    "standard deviation is the population one.\n"
    "\n"
    "With --shadow, one run whose pipeline has a shadow model (a live run's\n"
    "decision log, or a batch output): A is the served score and decision,\n"
    "B the shadow's (shadow_score, shadow_decision: the rule the shadow\n"
    "score would have met) on the same rows; metric deltas compare the\n"
    "served model's and the shadow's metrics that `tandem eval` stored for\n"
    "a live run (live.by_source.model and live.shadow).\n"
    "\n"
    "options:\n"
    "  --shadow        compare a run's served model with its shadow model\n"
    "  --registry P    the registry (default as for `tandem runs`)\n"
    "  --examples N    show at most N changed decisions (default 10; 0: none)\n"
    "  --json          one JSON object instead of text\n"
    "  --help, -h      show this help\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n";

/* ---- printing ---- */

/* Appends a NUL-terminated string: no byte counts to get wrong. */
static int put(tdm__buf *b, const char *s) {
  return tdm__buf_append(b, s, strlen(s));
}

/* A number for JSON: NaN and infinities are null. */
static int json_number(tdm__buf *b, double v) {
  if (!isfinite(v)) return put(b, "null");
  return tdm__buf_printf(b, "%.17g", v);
}

static int json_distribution(tdm__buf *b, const tdm__score_distribution *d) {
  int rc = tdm__buf_printf(b, "{\"count\": %zu, \"missing\": %zu", d->count,
                           d->missing);
  const char *names[] = {"mean", "std", "min"};
  const double values[] = {d->mean, d->std, d->min};
  for (int i = 0; i < 3 && rc == TDM_OK; i++) {
    rc = tdm__buf_printf(b, ", \"%s\": ", names[i]);
    if (rc == TDM_OK) rc = json_number(b, values[i]);
  }
  for (int i = 0; i < 7 && rc == TDM_OK; i++) {
    rc = tdm__buf_printf(b, ", \"%s\": ", tdm__score_percentile_names[i]);
    if (rc == TDM_OK) rc = json_number(b, d->p[i]);
  }
  if (rc == TDM_OK) rc = tdm__buf_printf(b, ", \"max\": ");
  if (rc == TDM_OK) rc = json_number(b, d->max);
  if (rc == TDM_OK) rc = put(b, "}");
  return rc;
}

static const char *or_dash(const char *s) { return s ? s : "-"; }

static void print_text(const tdm__comparison *c) {
  const tdm__run_record *a = c->a, *b = c->b;
  printf("%-10s  %-40s  %s\n", "", "A", "B");
  printf("%-10s  %-40s  %s\n", "run", a->id, b->id);
  printf("%-10s  %-40s  %s\n", "command", or_dash(a->command),
         or_dash(b->command));
  printf("%-10s  %-40s  %s\n", "started", or_dash(a->started_at),
         or_dash(b->started_at));
  printf("%-10s  %-40s  %s\n", "model", or_dash(a->model_version),
         or_dash(b->model_version));
  if (a->pipeline_sha256 || b->pipeline_sha256)
    printf("%-10s  %-40.12s  %.12s\n", "pipeline", or_dash(a->pipeline_sha256),
           or_dash(b->pipeline_sha256));
  printf("%-10s  %-40.12s  %.12s%s\n", "input", or_dash(a->input_sha256),
         or_dash(b->input_sha256),
         a->input_sha256 && b->input_sha256 &&
                 strcmp(a->input_sha256, b->input_sha256) == 0
             ? ""
             : "  (different inputs)");
  printf("%-10s  %-40s  %s\n", "output", c->oa->path, c->ob->path);
  printf("%-10s  %-40zu  %zu\n", "rows", c->oa->rows, c->ob->rows);

  printf("\n%-10s  %14s  %14s  %14s\n", "score", "A", "B", "B - A");
  printf("%-10s  %14zu  %14zu  %14lld\n", "count", c->da.count, c->db.count,
         (long long)c->db.count - (long long)c->da.count);
  const char *names[] = {"mean", "std", "min"};
  const double va[] = {c->da.mean, c->da.std, c->da.min};
  const double vb[] = {c->db.mean, c->db.std, c->db.min};
  for (int i = 0; i < 3; i++)
    printf("%-10s  %14.6g  %14.6g  %+14.6g\n", names[i], va[i], vb[i],
           vb[i] - va[i]);
  for (int i = 0; i < 7; i++)
    printf("%-10s  %14.6g  %14.6g  %+14.6g\n", tdm__score_percentile_names[i],
           c->da.p[i], c->db.p[i], c->db.p[i] - c->da.p[i]);
  printf("%-10s  %14.6g  %14.6g  %+14.6g\n", "max", c->da.max, c->db.max,
         c->db.max - c->da.max);

  printf("\nshift: mean delta %+.6g, PSI %.6f (%d bins at A's deciles)\n",
         c->mean_delta, c->psi, TDM__PSI_BINS);
  if (c->by_key)
    printf("paired by %s: %zu rows (%zu only in A, %zu only in B)\n",
           c->oa->key_name, c->matched, c->oa->rows - c->matched,
           c->ob->rows - c->matched);
  else
    printf("paired by position: %zu rows\n", c->matched);
  printf("scores changed: %zu of %zu (mean |B - A| %.6g)\n", c->scores_changed,
         c->matched, c->mean_abs_delta);
  if (c->decisions) {
    printf("decisions changed: %zu of %zu\n", c->decisions_changed,
           c->decisions_compared);
    size_t shown = 0;
    for (size_t i = 0; i < c->oa->rows && shown < c->examples; i++) {
      size_t j = c->partner[i];
      if (j == SIZE_MAX) continue;
      const char *x = tdm__run_output_text(c->oa, c->oa->decisions[i]);
      const char *y = tdm__run_output_text(c->ob, c->ob->decisions[j]);
      if (x == NULL || y == NULL || strcmp(x, y) == 0) continue;
      if (shown++ == 0)
        printf("  %-8s  %-20s  %12s  %-10s  %12s  %s\n", "row",
               c->by_key ? c->oa->key_name : "", "A score", "A decision",
               "B score", "B decision");
      const char *id =
          c->by_key ? tdm__run_output_text(c->oa, c->oa->keys[i]) : NULL;
      printf("  %-8zu  %-20s  %12.6g  %-10s  %12.6g  %s\n", i + 1, id ? id : "",
             c->oa->scores[i], x, c->ob->scores[j], y);
    }
  }
  if (c->nma > 0 && c->nmb > 0) {
    printf("\n%-24s  %14s  %14s  %14s\n", "metric", "A", "B", "B - A");
    for (size_t i = 0; i < c->nma; i++)
      for (size_t j = 0; j < c->nmb; j++)
        if (strcmp(c->ma[i].name, c->mb[j].name) == 0)
          printf("%-24s  %14.6g  %14.6g  %+14.6g\n", c->ma[i].name,
                 c->ma[i].value, c->mb[j].value,
                 c->mb[j].value - c->ma[i].value);
  }
}

static int json_report(tdm__buf *b, const tdm__comparison *c) {
  int same_input = c->a->input_sha256 && c->b->input_sha256 &&
                   strcmp(c->a->input_sha256, c->b->input_sha256) == 0;
  int rc = put(b, "{\"a\": ");
  if (rc == TDM_OK) rc = tdm__run_record_json(b, c->a);
  if (rc == TDM_OK) rc = put(b, ", \"b\": ");
  if (rc == TDM_OK) rc = tdm__run_record_json(b, c->b);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(b, ", \"same_input\": %s, \"scores\": {\"a\": ",
                         same_input ? "true" : "false");
  if (rc == TDM_OK) rc = json_distribution(b, &c->da);
  if (rc == TDM_OK) rc = put(b, ", \"b\": ");
  if (rc == TDM_OK) rc = json_distribution(b, &c->db);
  if (rc == TDM_OK) rc = put(b, "}, \"shift\": {\"mean_delta\": ");
  if (rc == TDM_OK) rc = json_number(b, c->mean_delta);
  if (rc == TDM_OK) rc = put(b, ", \"psi\": ");
  if (rc == TDM_OK) rc = json_number(b, c->psi);
  if (rc == TDM_OK)
    rc = tdm__buf_printf(b,
                         ", \"psi_bins\": %d, \"psi_epsilon\": %g, "
                         "\"scores_changed\": %zu, \"mean_abs_delta\": ",
                         TDM__PSI_BINS, TDM__PSI_EPSILON, c->scores_changed);
  if (rc == TDM_OK) rc = json_number(b, c->mean_abs_delta);
  if (rc == TDM_OK) rc = put(b, "}, \"pairing\": {\"by\": ");
  if (rc == TDM_OK)
    rc = c->by_key ? tdm__json_append_string(b, c->oa->key_name)
                   : put(b, "\"position\"");
  if (rc == TDM_OK)
    rc = tdm__buf_printf(b,
                         ", \"paired\": %zu, \"only_a\": %zu, \"only_b\": "
                         "%zu}, \"decisions\": ",
                         c->matched, c->oa->rows - c->matched,
                         c->ob->rows - c->matched);
  if (rc == TDM_OK && !c->decisions) rc = put(b, "null");
  if (rc == TDM_OK && c->decisions) {
    rc = tdm__buf_printf(b,
                         "{\"compared\": %zu, \"changed\": %zu, "
                         "\"examples\": [",
                         c->decisions_compared, c->decisions_changed);
    size_t shown = 0;
    for (size_t i = 0; i < c->oa->rows && shown < c->examples && rc == TDM_OK;
         i++) {
      size_t j = c->partner[i];
      if (j == SIZE_MAX) continue;
      const char *x = tdm__run_output_text(c->oa, c->oa->decisions[i]);
      const char *y = tdm__run_output_text(c->ob, c->ob->decisions[j]);
      if (x == NULL || y == NULL || strcmp(x, y) == 0) continue;
      rc = tdm__buf_printf(b, "%s{\"row_a\": %zu, \"row_b\": %zu, \"id\": ",
                           shown++ ? ", " : "", i + 1, j + 1);
      const char *id =
          c->by_key ? tdm__run_output_text(c->oa, c->oa->keys[i]) : NULL;
      if (rc == TDM_OK)
        rc = id ? tdm__json_append_string(b, id) : put(b, "null");
      if (rc == TDM_OK) rc = put(b, ", \"a_score\": ");
      if (rc == TDM_OK) rc = json_number(b, c->oa->scores[i]);
      if (rc == TDM_OK) rc = put(b, ", \"b_score\": ");
      if (rc == TDM_OK) rc = json_number(b, c->ob->scores[j]);
      if (rc == TDM_OK) rc = put(b, ", \"a_decision\": ");
      if (rc == TDM_OK) rc = tdm__json_append_string(b, x);
      if (rc == TDM_OK) rc = put(b, ", \"b_decision\": ");
      if (rc == TDM_OK) rc = tdm__json_append_string(b, y);
      if (rc == TDM_OK) rc = put(b, "}");
    }
    if (rc == TDM_OK) rc = put(b, "]}");
  }
  if (rc == TDM_OK) rc = put(b, ", \"metrics\": ");
  if (rc == TDM_OK && (c->nma == 0 || c->nmb == 0)) rc = put(b, "null");
  if (rc == TDM_OK && c->nma > 0 && c->nmb > 0) {
    rc = put(b, "[");
    int first = 1;
    for (size_t i = 0; i < c->nma && rc == TDM_OK; i++)
      for (size_t j = 0; j < c->nmb && rc == TDM_OK; j++) {
        if (strcmp(c->ma[i].name, c->mb[j].name) != 0) continue;
        rc = put(b, first ? "{\"name\": " : ", {\"name\": ");
        first = 0;
        if (rc == TDM_OK) rc = tdm__json_append_string(b, c->ma[i].name);
        if (rc == TDM_OK) rc = put(b, ", \"a\": ");
        if (rc == TDM_OK) rc = json_number(b, c->ma[i].value);
        if (rc == TDM_OK) rc = put(b, ", \"b\": ");
        if (rc == TDM_OK) rc = json_number(b, c->mb[j].value);
        if (rc == TDM_OK) rc = put(b, ", \"delta\": ");
        if (rc == TDM_OK) rc = json_number(b, c->mb[j].value - c->ma[i].value);
        if (rc == TDM_OK) rc = put(b, "}");
      }
    if (rc == TDM_OK) rc = put(b, "]");
  }
  if (rc == TDM_OK) rc = put(b, "}\n");
  return rc;
}

int tdm__cmd_compare(int argc, char **argv) {
  static const struct option long_options[] = {
      {"registry", required_argument, NULL, 'r'},
      {"examples", required_argument, NULL, 'e'},
      {"json", no_argument, NULL, 'j'},
      {"shadow", no_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *registry = NULL;
  size_t examples = 10;
  int json = 0, shadow = 0;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
      case 'r': registry = optarg; break;
      case 'e':
        if (strcmp(optarg, "0") == 0)
          examples = 0;
        else if (!tdm__parse_count(optarg, SIZE_MAX, &examples))
          return tdm__usage_error(
              "compare", "--examples must be a number, not '%s'", optarg);
        break;
      case 'j': json = 1; break;
      case 's': shadow = 1; break;
      case 'h': fputs(compare_help, stdout); return TDM_EXIT_OK;
      case ':':
        return tdm__usage_error("compare", "%s needs a value",
                                argv[optind - 1]);
      default:
        return tdm__usage_error("compare", "unknown option '%s'",
                                argv[optind - 1]);
    }
  }
  if (!shadow && argc - optind != 2)
    return tdm__usage_error("compare", "give two run ids");
  if (shadow && argc - optind != 1)
    return tdm__usage_error("compare", "--shadow compares within one run: "
                            "give one run id");

  char path[4096];
  tdm_error err;
  int rc = tdm__cli_registry_path(registry, path, sizeof path, &err);
  tdm__registry *reg = NULL;
  if (rc == TDM_OK)
    rc = tdm__registry_open(path, TDM__REGISTRY_READ, &reg, &err);
  tdm__run_record a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  if (rc == TDM_OK) rc = tdm__registry_get(reg, argv[optind], &a, &err);
  if (rc == TDM_OK)
    rc = tdm__registry_get(reg, argv[optind + (shadow ? 0 : 1)], &b, &err);
  tdm__registry_close(reg);
  if (rc != TDM_OK) {
    tdm__run_record_free(&a);
    tdm__run_record_free(&b);
    return tdm__report(rc, &err);
  }

  if (!shadow && !(a.input_sha256 && b.input_sha256 &&
        strcmp(a.input_sha256, b.input_sha256) == 0))
    fprintf(stderr,
            "tandem compare: warning: the runs read different inputs (%.12s "
            "and %.12s)\n",
            or_dash(a.input_sha256), or_dash(b.input_sha256));

  tdm__comparison cmp;
  rc = shadow ? tdm__compare_shadow(&a, examples, &cmp, &err)
              : tdm__compare_runs(&a, &b, examples, 0, &cmp, &err);
  if (rc == TDM_OK) {
    if (json) {
      tdm__buf out = {0};
      if (json_report(&out, &cmp) == TDM_OK)
        fwrite(out.data, 1, out.len, stdout);
      else
        rc = tdm__fail(&err, TDM_ENOMEM, "out of memory");
      tdm__buf_free(&out);
    } else {
      print_text(&cmp);
    }
    tdm__comparison_free(&cmp);
  }
  tdm__run_record_free(&a);
  tdm__run_record_free(&b);
  return rc == TDM_OK ? TDM_EXIT_OK : tdm__report(rc, &err);
}
