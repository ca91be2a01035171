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
cargo build --release --locked --bin portsyncd --bin portsyncd-state --bin portsyncd-gen-assets

echo "package: man pages and completions from the clap definitions"
rm -rf "$TARGET/assets"
"$TARGET/release/portsyncd-gen-assets" "$TARGET/assets"

echo "package: cargo deb"
cargo deb --no-build --locked --strip
version=$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)
arch=$(dpkg --print-architecture)
deb="$TARGET/debian/portsyncd_${version}_${arch}.deb"
[[ -f $deb ]] || { echo "package: expected $deb" >&2; exit 1; }
echo "package: $deb"
