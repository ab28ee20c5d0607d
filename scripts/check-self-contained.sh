#!/usr/bin/env bash
# Fails when a file of the project names a path outside the repository that a user's clone does not
# have: the developers' shared folder beside the checkout, or an absolute path into a developer's
# tree (both spelled out in `pattern` below). Build files, scripts, tests, examples, bench and docs are all checked: tests read their
# data from tests/golden and the system's packages only. The unit suite runs it ("self_contained").
#   scripts/check-self-contained.sh [SOURCE_ROOT]
set -euo pipefail
root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
pattern='\.\./shared\b|/work/'
self=scripts/check-self-contained.sh
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  hits=$(git -C "$root" grep -n -I -E "$pattern" -- . ":!$self" || true)
else  # an unpacked tarball: every file but build output
  hits=$(cd "$root" && grep -rn -I -E "$pattern" --exclude-dir='build*' --exclude-dir=.git --exclude-dir=.venv \
         --exclude-dir=.deps . | grep -v "^\./$self:" || true)
fi
if [[ -n "$hits" ]]; then
  echo "$hits"
  echo "check-self-contained: these lines name paths outside the repository; a clone has none of them."
  echo "Keep test data in tests/golden and take tools from the system or a project-made .venv/."
  exit 1
fi
echo "check-self-contained: no file names a path outside the repository"
