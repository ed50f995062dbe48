#!/bin/sh
# npm test: the lint (layers, circles, ESLint, Prettier), the node tests and the conformance suite, all always run,
# all reported; fails if any failed.
# (`a && b` would skip the conformance suite after one failing node test, and say nothing of it.)
# The tests that load the whole machine on purpose (floods, bursts of starts, microVMs under emulation) or that
# time a cluster's failover run one at a time, after the others, so none of them measures another's load.
HEAVY="test/noise.test.ts test/cluster.test.ts test/adversary-network.test.ts test/isolation.test.ts test/http-upstream.test.ts test/image.test.ts test/shutdown.test.ts test/image-runtime.test.ts test/image-hostile.test.ts test/image-microvm.test.ts"
LIGHT=$(for f in test/*.test.ts; do case " $HEAVY " in *" $f "*) ;; *) printf '%s ' "$f" ;; esac; done)
npm run --silent lint
lint=$?
node --import tsx --test --test-concurrency=2 $LIGHT
light=$?
node --import tsx --test --test-concurrency=1 $HEAVY
heavy=$?
npm run --silent conformance
conformance=$?
verdict() { [ "$1" -eq 0 ] && echo passed || echo "FAILED (exit $1)"; }
echo "npm test: lint $(verdict $lint), node tests $(verdict $light), machine-loading tests $(verdict $heavy), conformance $(verdict $conformance)"
[ $lint -eq 0 ] && [ $light -eq 0 ] && [ $heavy -eq 0 ] && [ $conformance -eq 0 ]
