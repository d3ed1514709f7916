/**
 * Coverage of the qvm processes the tests start. `npm test` sets QVM_CHILD_COVERAGE to a folder; every child
 * this test worker starts (bin/qvm.js above all) inherits NODE_V8_COVERAGE pointing there and writes its V8
 * coverage when it exits. scripts/coverage.mjs maps it through dist/'s source maps to src/ and merges it with
 * the coverage of the tests' own process. The worker itself is measured by vitest, not through this variable:
 * it is set only here, after the worker started.
 */
if (process.env.QVM_CHILD_COVERAGE) process.env.NODE_V8_COVERAGE = process.env.QVM_CHILD_COVERAGE;
