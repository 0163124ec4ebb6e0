#!/usr/bin/env bash
# Builds the manual (docs/, an mdBook) into target/book/; open target/book/index.html.
# Installs mdBook with `cargo install mdbook` when it is missing (a few minutes
# of compiling, once). CI does not run this: tests/it/docs.rs checks what the
# book says against the code (every flag, column, metric, scenario and exit
# code documented, every command shown parses) without mdBook, and the book's
# Markdown reads as it is on GitHub. Extra arguments go to `mdbook build`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mdbook >/dev/null; then
    echo "==> installing mdbook (cargo install mdbook; a few minutes, once)" >&2
    cargo install --locked mdbook
fi
mdbook build docs "$@"
echo "the manual: $PWD/target/book/index.html"
