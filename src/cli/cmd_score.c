/*
 * cmd_score.c - `tandem score`: parses options and hands them to the batch
 * scoring runner (src/batch/score.c). It is not on the public API: the
 * API scores rows in memory (tdm_model_predict), not files, and the
 * runner's file formats, explanations, manifest and kernel choice have no
 * public call yet (docs/embedding.md).
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../batch/score.h"
#include "../core/core.h"
#include "cli.h"

static const char score_help[] =
    "usage: tandem score --model M --in X.csv --out P.csv [options]\n"
    "\n"
    "Scores every row of a feature matrix with a model. X is a CSV with a\n"
    "header, or JSON Lines when its name ends in .jsonl or .ndjson (one\n"
    "object per line, keys naming features); P likewise. Columns are\n"
    "matched to the model's features by name, in any order; other columns\n"
    "are ignored. An empty field, NaN, nan, NA or null is a missing value.\n"
    "The output is written to a temporary file and renamed into place when\n"
    "complete, so a failed run leaves no output file.\n"
    "\n"
    "options:\n"
    "  --model M      model file: XGBoost JSON, LightGBM text, or tandem's\n"
    "                 JSON for linear and logistic models\n"
    "  --in X.csv     input: CSV with a header line, or X.jsonl\n"
    "  --out P.csv    output CSV: column 'score', or score_0..score_{k-1}\n"
    "                 for multiclass probabilities; P.jsonl writes\n"
    "                 {\"score\": ...} lines (\"scores\" for several)\n"
    "  --margin       write untransformed margins (XGBoost output_margin,\n"
    "                 LightGBM predict_raw_score) in a column named margin\n"
    "                 (margin_0.. for several outputs)\n"
    "  --contribs     write feature contributions instead of scores: exact\n"
    "                 path-dependent TreeSHAP, the same values as XGBoost's\n"
    "                 pred_contribs (float32) and LightGBM's pred_contrib;\n"
    "                 CSV columns contrib_<feature>... contrib_bias (with a\n"
    "                 class_<k>_ prefix per class), JSON Lines \"contribs\"\n"
    "  --approx-contribs  Saabas' approximation instead (XGBoost's\n"
    "                 approx_contribs; XGBoost models only)\n"
    "  --iterations N use only the first N boosting rounds (LightGBM\n"
    "                 num_iteration, XGBoost iteration_range=(0, N))\n"
    "  --threads N    worker threads (default: all cores); the output is\n"
    "                 identical for every N\n"
    "  --shard I/N    score only the I-th of N contiguous parts of the input\n"
    "                 (by bytes, at record starts); only part 1 writes the\n"
    "                 header, so the N outputs concatenated in order equal\n"
    "                 the unsharded output byte for byte\n"
    "  --keep COL     copy input column COL to the output (repeatable, or a\n"
    "                 comma-separated list), before the scores\n"
    "  --registry P   record the run in the run registry P (default:\n"
    "                 $TANDEM_REGISTRY, else $XDG_DATA_HOME/tandem/\n"
    "                 registry.db, else ~/.local/share/tandem/registry.db);\n"
    "                 a registry that cannot be written only warns, even\n"
    "                 one given here (see `tandem runs`)\n"
    "  --no-registry  do not record the run\n"
    "  --tag K=V      label the run in the registry (repeatable; shown by\n"
    "                 `tandem runs`, kept in the manifest)\n"
    "  --help, -h     show this help\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n";

int tdm__cmd_score(int argc, char **argv) {
  static const struct option long_options[] = {
      {"model", required_argument, NULL, 'm'},
      {"in", required_argument, NULL, 'i'},
      {"out", required_argument, NULL, 'o'},
      {"margin", no_argument, NULL, 'M'},
      {"contribs", no_argument, NULL, 'C'},
      {"approx-contribs", no_argument, NULL, 'A'},
      {"threads", required_argument, NULL, 't'},
      {"iterations", required_argument, NULL, 'n'},
      {"shard", required_argument, NULL, 's'},
      {"keep", required_argument, NULL, 'k'},
      {"registry", required_argument, NULL, 'R'},
      {"no-registry", no_argument, NULL, 'N'},
      {"tag", required_argument, NULL, 'T'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  tdm__score_options opt = {0};
  /* Benchmarks compare kernels through the environment; the library
   * itself reads none. */
  opt.kernel = getenv("TANDEM_KERNEL");
  const char *tables = getenv("TANDEM_SHAP_TABLES");
  opt.shap_no_tables = tables != NULL && strcmp(tables, "off") == 0;
  const char *keep[256];
  const char *tags[32];
  char *keep_storage[256];
  size_t num_storage = 0;
  const char *registry = NULL;
  int no_registry = 0;
  int status = TDM_EXIT_OK;
  size_t count; /* the value of a numeric option */
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
      case 'm': opt.model_path = optarg; break;
      case 'i': opt.in_path = optarg; break;
      case 'o': opt.out_path = optarg; break;
      case 'M': opt.margin = 1; break;
      case 'C': opt.contribs = 1; break;
      case 'A': opt.contribs = 2; break;
      case 'R': registry = optarg; break;
      case 'N': no_registry = 1; break;
      case 'T':
        if (tdm__add_tag("score", optarg, tags, &opt.num_tags, 32) != 0) {
          status = TDM_EXIT_USAGE;
          goto done;
        }
        break;
      case 't':
        if (!tdm__parse_count(optarg, 256, &count)) {
          status = tdm__usage_error("score",
                                    "--threads must be a number from 1 to "
                                    "256, not '%s'",
                                    optarg);
          goto done;
        }
        opt.threads = (int)count;
        break;
      case 'n':
        if (!tdm__parse_count(optarg, SIZE_MAX, &count)) {
          status = tdm__usage_error("score",
                                    "--iterations must be a positive number, "
                                    "not '%s'",
                                    optarg);
          goto done;
        }
        opt.iterations = count;
        break;
      case 's': {
        unsigned index, parts;
        char extra;
        if (sscanf(optarg, "%u/%u%c", &index, &parts, &extra) != 2 ||
            parts < 1 || parts > 65536 || index < 1 || index > parts) {
          status = tdm__usage_error("score",
                                    "--shard must be I/N with 1 <= I <= N <= "
                                    "65536, not '%s'",
                                    optarg);
          goto done;
        }
        opt.shard_index = index - 1;
        opt.shard_count = parts;
        break;
      }
      case 'k': {
        if (num_storage == 256) {
          status = tdm__usage_error("score", "too many --keep options");
          goto done;
        }
        char *copy = strdup(optarg);
        if (copy == NULL) {
          status = TDM_EXIT_FAILURE;
          goto done;
        }
        keep_storage[num_storage++] = copy;
        for (char *save = NULL, *item = strtok_r(copy, ",", &save);
             item != NULL; item = strtok_r(NULL, ",", &save)) {
          if (opt.num_keep == 256) {
            status =
                tdm__usage_error("score", "--keep names more than 256 columns");
            goto done;
          }
          keep[opt.num_keep++] = item;
        }
        break;
      }
      case 'h': fputs(score_help, stdout); goto done;
      case ':':
        status =
            tdm__usage_error("score", "%s needs a value", argv[optind - 1]);
        goto done;
      default:
        status =
            tdm__usage_error("score", "unknown option '%s'", argv[optind - 1]);
        goto done;
    }
  }
  if (optind < argc) {
    status =
        tdm__usage_error("score", "unexpected argument '%s'", argv[optind]);
    goto done;
  }
  if (opt.contribs && opt.margin) {
    status = tdm__usage_error("score",
                              "--contribs and --margin do not go together "
                              "(contributions are always in margin space)");
    goto done;
  }
  if (opt.model_path == NULL || opt.in_path == NULL || opt.out_path == NULL) {
    status = tdm__usage_error("score", "--model, --in and --out are required");
    goto done;
  }
  opt.keep = keep;
  opt.tags = tags;
  tdm_error err;
  tdm__score_stats stats;
  /* The output and its manifest replace their paths at the end: never
   * when that path is the model or the input. */
  const char *inputs[] = {opt.model_path, opt.in_path};
  const char *input_flags[] = {"--model", "--in"};
  char manifest[4096];
  snprintf(manifest, sizeof manifest, "%s.manifest.json", opt.out_path);
  int rc = tdm__refuse_output_onto_input("--out", opt.out_path, inputs,
                                         input_flags, 2, &err);
  if (rc == TDM_OK)
    rc = tdm__refuse_output_onto_input("the manifest", manifest, inputs,
                                       input_flags, 2, &err);
  if (rc != TDM_OK) {
    status = tdm__report(rc, &err);
    goto done;
  }
  rc = tdm__score_run(&opt, &stats, &err);
  if (rc != TDM_OK) {
    status = tdm__report(rc, &err);
    goto done;
  }
  tdm__cli_record_run("score", registry, no_registry, opt.out_path);
done:
  for (size_t i = 0; i < num_storage; i++) free(keep_storage[i]);
  return status;
}
