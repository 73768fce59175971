#!/usr/bin/env bash
# hunt_cli.sh: odd command lines for the corio program (SPEC §5, README
# "CLI"): each gets a clear message and the documented exit status (1 for
# a script that cannot load or fails, as luajit; 2 for a usage error,
# where luajit uses 1).
# Usage: hunt_cli.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

# `--` ends the options, so the next argument is a script even when it
# is named "test" (was: `corio -- test a` ran busted on spec "a").
printf 'print("script named test", ...)\n' >"$TMP/test"
NAME="'-- test args' runs a script named test, not the test command"
cd "$TMP"
run 10 "$CORIO" -- test a
cd "$REPO"
check_rc 0 && check_out_eq "script named test	a" \
  && check_out_lacks "successes" && pass

NAME="'-- -e' takes -e as the script's name, as luajit: cannot open it, exit 1"
run 10 "$CORIO" -- -e
check_rc 1 && check_err_has "cannot open -e" && pass

NAME="'--' with nothing after it runs standard input (here empty), exit 0"
run 10 "$CORIO" --
check_rc 0 && check_out_eq "" && pass

NAME="-e with a syntax error names the command line, exit 1"
run 10 "$CORIO" -e 'x = ='
check_rc 1 && check_err_has "(command line):1:" && check_err_has "near '='" \
  && pass

NAME="-e with empty code runs nothing, exit 0"
run 10 "$CORIO" -e ''
check_rc 0 && check_out_eq "" && pass

NAME="a directory as the script: exit 1, naming it"
mkdir -p "$TMP/a dir"
run 10 "$CORIO" "$TMP/a dir"
check_rc 1 && check_err_has "cannot read $TMP/a dir" \
  && check_err_has "directory" && pass

NAME="a script path with spaces runs, with its args"
printf 'print(arg[0]:match("[^/]*$"), ...)\n' >"$TMP/my script.lua"
run 10 "$CORIO" "$TMP/my script.lua" "x y" z
check_rc 0 && check_out_eq "my script.lua	x y	z" && pass

NAME="a binary file as the script: a load error naming it, exit 1"
printf '\001\002\377\376' >"$TMP/bin.lua"
run 10 "$CORIO" "$TMP/bin.lua"
check_rc 1 && check_err_has "$TMP/bin.lua" && pass

NAME="an empty script runs, exit 0"
: >"$TMP/empty.lua"
run 10 "$CORIO" "$TMP/empty.lua"
check_rc 0 && check_out_eq "" && pass

if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  NAME="an unreadable script: exit 1, naming it and the errno"
  printf 'print(1)\n' >"$TMP/unr.lua"
  chmod 000 "$TMP/unr.lua"
  chmod 755 "$TMP"
  run 10 setpriv --reuid=65534 --regid=65534 --clear-groups "$CORIO" \
    "$TMP/unr.lua"
  check_rc 1 && check_err_has "cannot open $TMP/unr.lua: Permission denied" \
    && pass
elif [ "$(id -u)" != 0 ]; then
  NAME="an unreadable script: exit 1, naming it and the errno"
  printf 'print(1)\n' >"$TMP/unr.lua"
  chmod 000 "$TMP/unr.lua"
  run 10 "$CORIO" "$TMP/unr.lua"
  check_rc 1 && check_err_has "cannot open $TMP/unr.lua: Permission denied" \
    && pass
fi

NAME="--version with extra arguments prints the version, exit 0"
run 10 "$CORIO" --version extra args
check_rc 0 && check_out_has "corio 0.1.0" && pass

NAME="-h with extra arguments prints usage on stdout, exit 0"
run 10 "$CORIO" -h extra
check_rc 0 && check_out_has "usage: corio" && check_out_has "--  " && pass

NAME="--debug twice with -e is accepted"
run 10 "$CORIO" --debug --debug -e 'print(1)'
check_rc 0 && check_out_eq "1" && pass

NAME="-e after -e code without its own code is a usage error, exit 2"
run 10 "$CORIO" -e 'print(1)' -e
check_rc 2 && check_err_has "usage: corio" && check_out_eq "" && pass

NAME="corio test with a bad busted flag: names the flag, exit 1 as busted"
run 30 "$CORIO" test --no-such-flag
check_rc 1 && check_err_has "unknown/bad flag: --no-such-flag" && pass

for flag in --no-such-flag -Z --no-such-option=3; do
  NAME="corio test $flag before a spec: busted's one line on stderr, no traceback, nothing run, exit 1"
  printf 'it("ran", function() print("the spec ran") end)\n' >"$TMP/flag_spec.lua"
  run 30 "$CORIO" test "$flag" "$TMP/flag_spec.lua"
  check_rc 1 && check_err_has "corio test: error: unknown/bad " && check_err_has "$flag" \
    && check_err_has "re-run with --help for usage" && check_err_lacks "traceback" \
    && check_out_eq "" && {
      if [ "$(wc -l <"$TMP/err")" = 1 ]; then pass; else fail "more than one line on stderr"; fi
    }
done

NAME="corio test with a missing spec path: names it, fails"
run 30 "$CORIO" test "$TMP/missing_spec.lua"
# (busted's status: the number of errors, here 2)
check_rc 2 && check_out_has "Cannot find file or directory: $TMP/missing_spec.lua" \
  && pass

NAME="corio test -o with an unknown output handler: names it, exit 1 as busted"
printf 'it("x", function() end)\n' >"$TMP/a_spec.lua"
run 30 "$CORIO" test -o nosuch "$TMP/a_spec.lua"
check_rc 1 && check_err_has "Cannot load output library: nosuch" && pass

NAME="corio test -C with a missing directory: names it, exit 1"
run 30 "$CORIO" test -C "$TMP/nowhere" "$TMP/a_spec.lua"
check_rc 1 && check_err_has "$TMP/nowhere" && check_out_lacks "success" && pass

NAME="--debug before test: the test command runs with the reports on"
run 30 "$CORIO" --debug test "$TMP/a_spec.lua"
check_rc 0 && check_out_has "1 success / 0 failures" && pass

NAME="--debug with '-': the script is read from standard input"
printf 'print("from stdin")\n' >"$TMP/in.lua"
set +e
"$CORIO" --debug - <"$TMP/in.lua" >"$TMP/out" 2>"$TMP/err"
RC=$?
set -e
check_rc 0 && check_out_has "from stdin" && pass

finish
