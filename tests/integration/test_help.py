"""Help the way other command-line tools give it.

For every command that `tandem help` lists: `-h`, `--help` and `tandem help
CMD` print the same text, to stdout, exit 0, start with the command's usage
line and state the exit statuses; `-h` works after an argument too. An
unknown `tandem help CMD` is a usage error (2). `score`'s help names the
model formats and JSON Lines.
"""
import re

from common import expect, finish, run


def main():
    listing = run("help").stdout
    commands = re.findall(r"^  (\w+) ", listing, re.M)
    expect(len(commands) >= 10, f"tandem help lists {commands}")
    expect("exit status" in listing, "tandem help gives no exit statuses")
    for command in commands:
        if command in ("help", "version"):
            continue
        long = run(command, "--help", check=False)
        short = run(command, "-h", check=False)
        named = run("help", command, check=False)
        for how, proc in (("--help", long), ("-h", short), ("help CMD", named)):
            expect(proc.returncode == 0,
                   f"{command} {how} exited {proc.returncode}: {proc.stderr.strip()}")
            expect(proc.stdout == long.stdout,
                   f"{command} {how} prints other text than --help")
        expect(long.stdout.startswith(f"usage: tandem {command}"),
               f"{command} --help starts {long.stdout[:40]!r}")
        expect("exit status" in long.stdout, f"{command} --help has no exit status")
        late = run(command, "an-argument", "-h", check=False)
        expect(late.returncode == 0 and late.stdout == long.stdout,
               f"{command} -h after an argument: exit {late.returncode}, "
               f"{late.stderr.strip()}")
    unknown = run("help", "nosuchcommand", check=False)
    expect(unknown.returncode == 2 and "nosuchcommand" in unknown.stderr,
           f"help of an unknown command: exit {unknown.returncode}, {unknown.stderr!r}")
    score = run("score", "-h").stdout
    for word in ("LightGBM", "linear", ".jsonl"):
        expect(word in score, f"score --help does not mention {word}")
    finish("help")


if __name__ == "__main__":
    main()
