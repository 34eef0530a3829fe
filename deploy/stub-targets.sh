#!/bin/sh
# deploy/stub-targets.sh - run by deploy/Dockerfile next to Cargo.toml: writes
# an empty source for the library and every target Cargo.toml declares
# ([lib], [[bin]], [[bench]], [[example]], [[test]]), so that the image's
# dependency layer builds without the real sources and keeps building when a
# target is added. (Cargo refuses a manifest naming a target whose file is
# missing, even when building another one.) tests/api/containers.rs checks
# that Cargo accepts the result.
set -eu

awk '
function flush() {
    if (kind == "lib" && path == "") path = "src/lib.rs"
    if (kind != "" && kind != "lib" && path == "" && name != "") path = dir[kind] "/" name ".rs"
    if (path != "") print kind, path
    kind = ""; name = ""; path = ""
}
function value(line) { sub(/^[^=]*= *"/, "", line); sub(/".*$/, "", line); return line }
BEGIN { dir["bin"] = "src/bin"; dir["bench"] = "benches"; dir["example"] = "examples"; dir["test"] = "tests" }
/^\[/ { flush() }
/^\[lib\]/ { kind = "lib" }
/^\[\[(bin|bench|example|test)\]\]/ { kind = $0; gsub(/[][ ]/, "", kind) }
kind != "" && /^name *=/ { name = value($0) }
kind != "" && /^path *=/ { path = value($0) }
END { flush() }
' Cargo.toml | while read -r kind path; do
    mkdir -p "$(dirname "$path")"
    if [ "$kind" = lib ]; then
        : >"$path"
    else
        echo 'fn main() {}' >"$path"
    fi
done
