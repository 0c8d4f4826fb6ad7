#!/usr/bin/env python3
"""Checks the line between tandem's library and the programs around it.

1. The library (every file under src/ but the CLI's, src/cli/) reads no
   environment variable: no getenv, secure_getenv or environ. What a
   variable would set is an option the CLI fills from its environment
   (src/cli/cli_env.c) and an embedder sets through include/tandem.h, so
   two pipelines in one process can differ and nothing hides in the
   process's environment.

2. The runners that the public API covers include only include/tandem.h
   (and their own helpers: the CLI's cli.h, the benchmarks' headers) of
   tandem's headers, so they cannot drift back onto the internals:
   RUNNERS below lists them. The others (serve, stream, replay, score,
   eval) need what the API does not offer yet; docs/embedding.md says
   what.

Comments are ignored. Exits 1 naming each file and line that breaks a
rule, else 0.
"""
import os
import re
import sys

ENVIRONMENT = re.compile(r'\b(secure_getenv|getenv|environ)\b')
INCLUDE = re.compile(r'\s*#\s*include\s+"([^"]+)"')

# Each runner over the public API, and the quoted headers it may include.
RUNNERS = {
    'src/cli/cmd_batch.c': {'tandem.h', 'cli.h'},
    'bench/bench_predict.c': {'tandem.h', 'bench_args.h', 'bench_score.h'},
    'bench/bench_contribs.c': {'tandem.h', 'bench_args.h', 'bench_score.h'},
    'bench/bench_score.h': {'tandem.h'},
}


def code_lines(path):
    """(line number, text) of path with /* */ and // comments blanked."""
    text = open(path, encoding='utf-8').read()
    text = re.sub(r'/\*.*?\*/', lambda m: re.sub(r'[^\n]', ' ', m.group()),
                  text, flags=re.S)
    text = re.sub(r'//[^\n]*', '', text)
    return enumerate(text.split('\n'), 1)


def main(root):
    failures = []
    src = os.path.join(root, 'src')
    for folder, _, files in os.walk(src):
        if os.path.relpath(folder, src).split(os.sep)[0] == 'cli':
            continue
        for name in sorted(files):
            if not name.endswith(('.c', '.h')):
                continue
            path = os.path.join(folder, name)
            for number, line in code_lines(path):
                m = ENVIRONMENT.search(line)
                if m:
                    failures.append(
                        f"{os.path.relpath(path, root)}:{number}: the library "
                        f"reads the environment ({m.group(1)}): make it an "
                        f"option the CLI sets (src/cli/cli_env.c)")
    for runner, allowed in RUNNERS.items():
        path = os.path.join(root, runner)
        for number, line in code_lines(path):
            m = INCLUDE.match(line)
            if m and os.path.basename(m.group(1)) not in allowed:
                failures.append(
                    f"{runner}:{number}: includes \"{m.group(1)}\": this "
                    f"runner goes through include/tandem.h only "
                    f"(allowed: {', '.join(sorted(allowed))})")
    for failure in failures:
        print(failure)
    if not failures:
        print(f"the library reads no environment; {len(RUNNERS)} runners "
              f"use the public API only")
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else
                  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
