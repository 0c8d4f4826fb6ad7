/*
 * main.c - the tandem command: looks the first argument up in the command
 * table and runs that command. Also installs the signal handlers that
 * remove half-written output files on Ctrl-C or SIGTERM.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/core.h"
#include "cli.h"

static int cmd_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("tandem %s\n", TDM_VERSION);
  return TDM_EXIT_OK;
}

static int cmd_help(int argc, char **argv);

static const tdm_command commands[] = {
    {"score", tdm__cmd_score, "score a feature matrix (CSV) with a model"},
    {"batch", tdm__cmd_batch, "run a pipeline over a file of events"},
    {"replay", tdm__cmd_replay,
     "send events through a live server and compare with batch"},
    {"serve", tdm__cmd_serve,
     "serve a pipeline and models over HTTP (events, KServe v2)"},
    {"stream", tdm__cmd_stream, "run a pipeline over a Kafka topic"},
    {"inspect", tdm__cmd_inspect, "describe a model file"},
    {"runs", tdm__cmd_runs, "list the runs recorded in the run registry"},
    {"compare", tdm__cmd_compare, "compare the outputs of two recorded runs"},
    {"eval", tdm__cmd_eval,
     "evaluate predictions against labels (scikit-learn's metrics)"},
    {"report", tdm__cmd_report, "write an HTML report of one or two runs"},
    {"version", cmd_version, "print the version"},
    {"help", cmd_help, "show this help"},
};

static void print_usage(FILE *out) {
  fprintf(out,
          "tandem %s - one ML scoring pipeline, in batch and in real time\n\n"
          "usage: tandem <command> [options]\n\ncommands:\n",
          TDM_VERSION);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out,
          "\nRun 'tandem help <command>' (or 'tandem <command> -h') for a "
          "command's options.\n\n"
          "exit status: 0 success, 1 runtime failure, 2 bad usage or bad "
          "input\n");
}

/* `tandem help CMD` is `tandem CMD --help`, as git and cargo do it: the
 * command's own help text is the only one, so the two cannot disagree. */
static int cmd_help(int argc, char **argv) {
  if (argc < 2) {
    print_usage(stdout);
    return TDM_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(commands[i].name, argv[1]) == 0 && commands[i].run != cmd_help &&
        commands[i].run != cmd_version) {
      char *help_argv[] = {argv[1], "--help", NULL};
      return commands[i].run(2, help_argv);
    }
  }
  if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "version") == 0) {
    print_usage(stdout);
    return TDM_EXIT_OK;
  }
  fprintf(stderr,
          "tandem help: unknown command '%s' (run 'tandem help' for the "
          "list)\n",
          argv[1]);
  return TDM_EXIT_USAGE;
}

int tdm__exit_status(int status) {
  switch (status) {
    case TDM_OK: return TDM_EXIT_OK;
    case TDM_EIO:
    case TDM_ENOMEM:
    case TDM_EINTERNAL: return TDM_EXIT_FAILURE;
    default: return TDM_EXIT_USAGE;
  }
}

int tdm__report(int status, const tdm_error *err) {
  /* The status decides the exit code, never err alone: a failure with no
   * message still fails. */
  if (status == TDM_OK) status = TDM_EINTERNAL;
  fprintf(stderr, "tandem: %s\n",
          err->message[0] && err->status != TDM_OK ? err->message
                                                   : tdm_strerror(status));
  return tdm__exit_status(status);
}

int tdm__usage_error(const char *command, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "tandem %s: ", command);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see 'tandem %s --help')\n", command);
  va_end(ap);
  return TDM_EXIT_USAGE;
}

int tdm__add_tag(const char *command, const char *text, const char **tags,
                 size_t *count, size_t cap) {
  const char *eq = strchr(text, '=');
  if (eq == NULL || eq == text)
    return tdm__usage_error(command,
                            "--tag \"%s\" must be KEY=VALUE (for example "
                            "--tag model=v2)",
                            text);
  if (*count == cap)
    return tdm__usage_error(command, "more than %zu --tag options", cap);
  tags[(*count)++] = text;
  return 0;
}

/* A whole number from 1 to max, as an option's value; 0 if it is not. */
int tdm__parse_count(const char *text, size_t max, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long n = strtoull(text, &end, 10);
  if (*text == '\0' || *text == '-' || *end != '\0' || errno == ERANGE ||
      n < 1 || n > max)
    return 0;
  *out = (size_t)n;
  return 1;
}

static void on_terminate(int signo) {
  tdm__atomic_abort_all_from_signal();
  signal(signo, SIG_DFL);
  raise(signo);
}

int main(int argc, char **argv) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_terminate;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);

  if (argc < 2) {
    print_usage(stderr);
    return TDM_EXIT_USAGE;
  }
  int armed = tdm__cli_arm_crash_point();
  if (armed != TDM_EXIT_OK) return armed;
  const char *name = argv[1];
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
    return cmd_help(1, argv + 1);
  if (strcmp(name, "--version") == 0) return cmd_version(argc, argv);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(commands[i].name, name) == 0)
      return commands[i].run(argc - 1, argv + 1);
  }
  fprintf(stderr,
          "tandem: unknown command '%s' (run 'tandem help' for the list)\n",
          name);
  return TDM_EXIT_USAGE;
}
