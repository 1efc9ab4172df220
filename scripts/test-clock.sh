#!/usr/bin/env bash
# The suite's unit and integration layers with the wall clock 400 days ahead (libfaketime moves Node's
# clock and DynamoDB Local's JVM clock alike), to prove that no test depends on the calendar date.
# test/integration/create-payment.test.ts checks that the emulator's TTL sweep follows the moved clock.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v faketime >/dev/null 2>&1; then
  echo "test:clock needs libfaketime: apt-get install faketime (Debian package)" >&2
  exit 1
fi
[ -f cdk.out/manifest.json ] || npm run synth
echo "clock moved: $(faketime -f '+400d' date -u +%Y-%m-%dT%H:%M:%SZ) (real: $(date -u +%Y-%m-%dT%H:%M:%SZ))"
exec faketime -f '+400d' npx vitest run test/unit test/integration packages/provider-simulator/test "$@"
