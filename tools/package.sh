#!/usr/bin/env bash
# Builds the Debian package: target/debian/portsyncd_<version>_<arch>.deb (see Cargo.toml's
# [package.metadata.deb] for its contents). Installs cargo-deb when missing.
#   bash tools/package.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
TARGET=${CARGO_TARGET_DIR:-target}

if ! cargo deb --version >/dev/null 2>&1; then
    echo "package: installing cargo-deb"
    cargo install cargo-deb --locked
fi

echo "package: building the binaries (release)"
# Default features only: what ships is built from the product's dependency tree alone.
cargo build --release --locked --bin portsyncd --bin portsyncd-state

echo "package: man pages and completions from the clap definitions"
# The generator is a tool (feature `tools`: clap_mangen, clap_complete), built in its own cargo run
# (a debug build: it only prints text), so that its features never touch the shipped binaries.
cargo build --locked --features tools --bin portsyncd-gen-assets
rm -rf "$TARGET/assets"
"$TARGET/debug/portsyncd-gen-assets" "$TARGET/assets"

echo "package: cargo deb"
cargo deb --no-build --locked --strip
version=$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)
arch=$(dpkg --print-architecture)
deb="$TARGET/debian/portsyncd_${version}_${arch}.deb"
[[ -f $deb ]] || { echo "package: expected $deb" >&2; exit 1; }
echo "package: $deb"
