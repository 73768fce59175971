#!/usr/bin/env bash
# dogfood_busted.sh: a user library with its own busted specs, run by
# `corio test` the way its docs say (async it, before_each/after_each,
# corio.testing.autojump for sleeps of minutes, a test that times out, one
# that leaks a task): the report must be what docs/api.md ("corio.busted")
# and docs/getting-started.md promise. Fixtures: fixtures/dogfood/.
# Usage: dogfood_busted.sh path/to/corio
. "$(dirname "$0")/lib.sh"

cd "$FIX/dogfood"
SPEC=spec/ratelimit_spec.lua

NAME="the library's specs: 6 pass, 4 fail, exit status 4, in well under the minutes they sleep"
start_s=$SECONDS
run 60 "$CORIO" test "$SPEC"
took=$((SECONDS - start_s))
check_rc 4 \
  && check_out_has "6 successes / 4 failures / 0 errors / 0 pending" \
  && { [ "$took" -lt 20 ] || { fail "took ${took} s"; false; }; } \
  && pass

NAME="async before_each/after_each ran around each test (their checks passed)"
check_out_lacks "sees the async setup" \
  && check_out_lacks "sees the async teardown" \
  && check_out_lacks "fresh state" \
  && check_out_lacks "does not retry a cancel" \
  && pass

NAME="autojump: a token a minute and minutes of backoff pass at once"
check_out_lacks "a token a minute" \
  && check_out_lacks "minutes of backoff" \
  && pass

NAME="an assertion failing in a joined child task is an ordinary failure at its line"
check_out_has "ratelimit reports a failed assertion in a joined child task" \
  && check_out_has "$SPEC:51: Expected objects to be equal." \
  && pass

NAME="a test that times out names its timeout and where its task waits"
check_out_has "Failure -> $SPEC @ 55" \
  && check_out_has "$SPEC:56: test timed out after 0.3 s; its tasks then:" \
  && check_out_has "'times out' (the test's own task, running) suspended at $SPEC:56" \
  && pass

NAME="a test waiting forever on the virtual clock times out in real time"
check_out_has "$SPEC:60: test timed out after 0.3 s; its tasks then:" \
  && pass

NAME="a leaked task is named with its spawn site, parent and where it waits"
check_out_has "Failure -> $SPEC @ 63" \
  && check_out_has "ratelimit.lua:38: test left 1 task running:" \
  && check_out_has "(./ratelimit.lua:36)' (running, child of 'leaks a heartbeat task') suspended at ./ratelimit.lua:38" \
  && pass

# corio.tasks() in a test body listed the runner's timeout watcher ("corio.
# busted timeout", a child of the test's task) besides the test's own task,
# so a spec asserting that nothing else runs (#corio.tasks() == 1) failed,
# and one that cancelled every task but its own cancelled the watcher.
NAME="after the leak, the next test sees only its own task in corio.tasks()"
check_out_lacks "runs after the leak with fresh state" \
  && check_out_lacks "corio.busted timeout" \
  && pass

NAME="TAP output: the same four failures"
run 60 "$CORIO" test -o TAP "$SPEC"
check_rc 4 \
  && check_out_has "not ok 5 - ratelimit reports a failed assertion in a joined child task" \
  && check_out_has "not ok 6 - ratelimit times out" \
  && check_out_has "not ok 8 - ratelimit leaks a heartbeat task" \
  && check_out_has "ok 9 - ratelimit runs after the leak with fresh state" \
  && check_out_has "1..10" \
  && pass

NAME="--filter runs one test"
run 60 "$CORIO" test --filter "a token a minute" "$SPEC"
check_rc 0 && check_out_has "1 success / 0 failures" && pass

NAME="a background task for a test, as docs/api.md shows: a scope inside the test"
run 60 "$CORIO" test spec/background_spec.lua
check_rc 0 && check_out_has "2 successes / 0 failures / 0 errors" && pass

finish
