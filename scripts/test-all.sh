#!/bin/sh
# npm test: the lint (layers, circles, ESLint, Prettier), the node tests and the conformance suite, all always run,
# all reported; fails if any failed.
# (`a && b` would skip the conformance suite after one failing node test, and say nothing of it.)
# The tests that load the whole machine on purpose (floods, bursts of starts, microVMs under emulation) or that
# time a cluster's failover run one at a time, after the others, so none of them measures another's load.
HEAVY="test/noise.test.ts test/cluster.test.ts test/adversary-network.test.ts test/isolation.test.ts test/http-upstream.test.ts test/image.test.ts test/shutdown.test.ts test/image-runtime.test.ts test/image-hostile.test.ts test/image-microvm.test.ts"
LIGHT=$(for f in test/*.test.ts; do case " $HEAVY " in *" $f "*) ;; *) printf '%s ' "$f" ;; esac; done)
# Each node run also writes TAP to a file, so the end of the output can name what failed (CI shows only the tail).
tap=$(mktemp -d)
trap 'rm -rf "$tap"' EXIT
npm run --silent lint
lint=$?
node --import tsx --test --test-concurrency=2 --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap/light.tap" $LIGHT
light=$?
node --import tsx --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap/heavy.tap" $HEAVY
heavy=$?
npm run --silent conformance
conformance=$?
# A failure's name, its file:line (TAP's "location:" follows each "not ok"), then the first lines of its error and
# the first frame of its stack, so the end of a CI log says why, not only what.
failed() {
  awk '/^ *not ok /{ sub(/^ *not ok [0-9]+ - /, ""); name = $0; err = 0; stack = 0; next }
       name != "" && /^ *location:/{ sub(/^ *location: /, ""); gsub(/\x27/, ""); print "  " name "  (" $0 ")"; name = ""; shown = 0; next }
       /^ *error: \|-$/{ err = 1; next }
       /^ *error: /{ sub(/^ *error: /, ""); print "      error: " $0; next }
       err && /^ *(code|name|expected|actual|operator|stack|failureType|\.\.\.)[:]?/{ err = 0 }
       err && shown < 4 { sub(/^ */, ""); print "      error: " $0; shown++; next }
       /^ *stack: \|-$/{ stack = 1; next }
       stack { sub(/^ */, ""); print "      at " $0; stack = 0 }' \
    "$tap"/*.tap 2>/dev/null | head -80
}
[ $light -eq 0 ] && [ $heavy -eq 0 ] || { echo "failed tests (and the files and suites holding them):"; failed; }
verdict() { [ "$1" -eq 0 ] && echo passed || echo "FAILED (exit $1)"; }
echo "npm test: lint $(verdict $lint), node tests $(verdict $light), machine-loading tests $(verdict $heavy), conformance $(verdict $conformance)"
[ $lint -eq 0 ] && [ $light -eq 0 ] && [ $heavy -eq 0 ] && [ $conformance -eq 0 ]
