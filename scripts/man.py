#!/usr/bin/python3
"""Generates tandem's man pages from its own help, through scdoc.

The help text compiled into the CLI (`tandem --help`, `tandem CMD --help`,
the same text `tandem help CMD` prints) is the one source: this script
turns each into scdoc markup (NAME from the command list, SYNOPSIS from
the usage line, the whole help as a literal block, EXIT STATUS from the
help's own line, SEE ALSO) and runs scdoc, so a man page cannot say
something the help does not.

  scripts/man.py BUILD/tandem OUTDIR     writes OUTDIR/tandem.1 and
                                         OUTDIR/tandem-CMD.1 per command
"""
import os
import re
import subprocess
import sys


def help_text(tandem, *args):
    proc = subprocess.run([tandem, *args, "--help"], capture_output=True,
                          text=True, check=True)
    return proc.stdout


def commands(general):
    """(name, one-line description) from the general help's list."""
    out, listing = [], False
    for line in general.splitlines():
        if line.strip() == "commands:":
            listing = True
            continue
        if listing and not line.strip():
            break
        m = re.match(r"  ([a-z]+) +(.*)", line)
        if listing and m and m.group(1) not in ("help", "version"):
            out.append((m.group(1), m.group(2)))
    return out


def page(title, name, summary, text, see_also):
    usage = next((line for line in text.splitlines()
                  if line.startswith("usage:")), "usage: " + name)
    status = next((line for line in text.splitlines()
                   if line.startswith("exit status:")), "")
    # Literal blocks keep the help's layout; scdoc interprets nothing in
    # them, so the help needs no escaping.
    body = "\n".join(line for line in text.rstrip("\n").splitlines())
    parts = [f"{title}(1)", "", "# NAME", "", f"{name} - {summary}", "",
             "# SYNOPSIS", "", "```", usage[len("usage: "):], "```", "",
             "# DESCRIPTION", "", "```", body, "```", ""]
    if status:
        parts += ["# EXIT STATUS", "", status[len("exit status: "):].replace(
            ", ", "; ") + ".", ""]
    parts += ["# SEE ALSO", "", ", ".join(f"*{p}*(1)" for p in see_also), ""]
    return "\n".join(parts)


def scdoc(markup, path):
    with open(path, "w") as f:
        subprocess.run(["scdoc"], input=markup, text=True, stdout=f, check=True)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: scripts/man.py TANDEM OUTDIR")
    tandem, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    general = help_text(tandem)
    listed = commands(general)
    pages = [f"tandem-{c}" for c, _ in listed]
    scdoc(page("tandem", "tandem", "one ML scoring pipeline, in batch and in "
               "real time", general, pages), os.path.join(outdir, "tandem.1"))
    for command, summary in listed:
        scdoc(page(f"tandem-{command}", f"tandem {command}", summary,
                   help_text(tandem, command), ["tandem"]),
              os.path.join(outdir, f"tandem-{command}.1"))


if __name__ == "__main__":
    main()
