# bash completion for tandem: installed by `make install` as
# $(PREFIX)/share/bash-completion/completions/tandem.
#
# Commands and each command's options are read from tandem's own help
# (`tandem --help`, `tandem CMD --help`), the one source the man pages are
# generated from too, so completion never offers a flag the CLI lacks.
# Other words complete as file names (models, pipelines, inputs).

_tandem_commands() {
  "$1" --help 2>/dev/null |
    awk '/^commands:/ { on = 1; next } on && /^$/ { exit } on { print $1 }'
}

_tandem() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local tandem=${COMP_WORDS[0]}
  if ((COMP_CWORD == 1)) || [[ ${COMP_WORDS[1]} == help && $COMP_CWORD == 2 ]]; then
    COMPREPLY=($(compgen -W "$(_tandem_commands "$tandem")" -- "$cur"))
    return 0
  fi
  if [[ $cur == -* ]]; then
    local flags
    flags=$("$tandem" "${COMP_WORDS[1]}" --help 2>/dev/null |
      grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    return 0
  fi
  COMPREPLY=($(compgen -f -- "$cur"))
  return 0
}

complete -o filenames -o bashdefault -F _tandem tandem
