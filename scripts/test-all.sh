#!/bin/sh
# npm test: the node tests and the conformance suite, both always run, both reported; fails if either failed.
# (`a && b` would skip the conformance suite after one failing node test, and say nothing of it.)
node --import tsx --test --test-concurrency=2 test/*.test.ts
unit=$?
npm run --silent conformance
conformance=$?
echo "npm test: node tests $( [ $unit -eq 0 ] && echo passed || echo "FAILED (exit $unit)" ); conformance $( [ $conformance -eq 0 ] && echo passed || echo "FAILED (exit $conformance)" )"
[ $unit -eq 0 ] && [ $conformance -eq 0 ]
