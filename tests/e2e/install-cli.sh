#!/usr/bin/env bash
# Installs the pinned `@anthropic-ai/claude-code` (version in tests/e2e/CLAUDE_CLI_VERSION)
# into a cache outside the clone, ~/.cache/claudeway-e2e/<version>/ (or
# $CLAUDEWAY_E2E_CACHE/<version>/), and prints the path of the native `claude` binary on
# stdout. A working install is reused; the first one needs the npm registry (~175 MB).
#
# The package is a small wrapper whose postinstall hard-links the platform binary
# (@anthropic-ai/claude-code-linux-x64) over bin/claude.exe. If scripts cannot run, the
# install is redone with --ignore-scripts and the platform package's binary is used directly.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(tr -d '[:space:]' < "$here/CLAUDE_CLI_VERSION")"
cache="${CLAUDEWAY_E2E_CACHE:-$HOME/.cache/claudeway-e2e}"
dest="$cache/$version"
link="$dest/claude"

works() { # the binary runs and reports the pinned version
    [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "^$version "
}

if works "$link"; then
    echo "$link"
    exit 0
fi

command -v npm >/dev/null || { echo "install-cli: npm is needed to install the claude CLI" >&2; exit 1; }
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.install-$version.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

install() { # extra npm flags...
    rm -rf "$tmp/node_modules" "$tmp/package.json" "$tmp/package-lock.json"
    echo '{"private":true}' > "$tmp/package.json"
    npm install --prefix "$tmp" --no-audit --no-fund --no-save --loglevel=error \
        "$@" "@anthropic-ai/claude-code@$version" >&2
}

echo "install-cli: installing @anthropic-ai/claude-code@$version into $dest (first time only)" >&2
found=""
if install && works "$tmp/node_modules/.bin/claude"; then
    found="node_modules/.bin/claude"
else
    echo "install-cli: the postinstall link did not work; retrying with --ignore-scripts" >&2
    install --ignore-scripts
fi
if [ -z "$found" ]; then
    for p in node_modules/@anthropic-ai/claude-code-linux-x64/claude \
             node_modules/@anthropic-ai/claude-code-linux-x64-musl/claude \
             node_modules/@anthropic-ai/claude-code-linux-arm64/claude \
             node_modules/@anthropic-ai/claude-code-linux-arm64-musl/claude; do
        if works "$tmp/$p"; then found="$p"; break; fi
    done
fi
[ -n "$found" ] || { echo "install-cli: no working claude binary in the installed package" >&2; exit 1; }

rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
ln -sfn "$dest/$found" "$link"
works "$link" || { echo "install-cli: $link does not run" >&2; exit 1; }
echo "$link"
