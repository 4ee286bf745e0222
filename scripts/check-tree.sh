#!/bin/sh
# Fails when the repository tracks files it should not: anything .gitignore
# ignores (build output, generated autotools files), and explicitly anything
# under a build folder (_build*/, build*/) or a node_modules/ folder, which
# must be produced by the build and by `npm ci`, never committed.  Outside a
# git checkout (a release tarball, `make distcheck`) there is nothing to
# check.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v git >/dev/null 2>&1 ||
    ! git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "check-tree: not a git checkout, skipped"
    exit 0
fi
cd "$top"
# The index, not HEAD: a `git rm --cached` not yet committed already counts.
# The project's .gitignore files only (not --exclude-standard): a developer's
# own global or per-clone excludes must not decide what the project tracks.
ignored=$(git ls-files -c -i --exclude-per-directory=.gitignore)
bad=$( {
    [ -z "$ignored" ] || printf '%s\n' "$ignored"
    git ls-files -c | grep -E '(^|/)node_modules/|^_?build[^/]*/' || true
} | sort -u)
if [ -n "$bad" ]; then
    n=$(printf '%s\n' "$bad" | wc -l)
    echo "check-tree: $n tracked files are build output or dependencies (ignored, or under _build*/ or node_modules/):" >&2
    printf '%s\n' "$bad" | head -20 | sed 's/^/  /' >&2
    [ "$n" -le 20 ] || echo "  ..." >&2
    echo "check-tree: remove them from the index: git rm -r --cached PATH" >&2
    exit 1
fi
echo "check-tree: no tracked file is ignored or lies under a build or node_modules folder"
