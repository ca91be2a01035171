#!/usr/bin/env bash
# CI check of the Debian package: builds it (tools/package.sh), checks that it holds what
# docs/deployment.md promises (dpkg-deb -c), that /etc/default/portsyncd is a conffile, that the
# binaries and man pages work, and verifies the systemd unit with systemd-analyze where available.
#   bash tools/check-package.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET=${CARGO_TARGET_DIR:-target}
fail() { echo "check-package: FAIL: $*" >&2; exit 1; }

start=$SECONDS
bash tools/package.sh
echo "check-package: package built in $((SECONDS - start)) s"
version=$(awk -F'"' '/^version = /{print $2; exit}' Cargo.toml)
deb="$TARGET/debian/portsyncd_${version}_$(dpkg --print-architecture).deb"
[[ -f $deb ]] || fail "missing $deb"

listing=$(dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|')
for f in \
    /usr/bin/portsyncd \
    /usr/bin/portsyncd-state \
    /usr/lib/systemd/system/portsyncd.service \
    /etc/default/portsyncd \
    /usr/share/man/man8/portsyncd.8.gz \
    /usr/share/man/man8/portsyncd-state.8.gz \
    /usr/share/man/man8/portsyncd-state-audit.8.gz \
    /usr/share/bash-completion/completions/portsyncd \
    /usr/share/bash-completion/completions/portsyncd-state \
    /usr/share/zsh/vendor-completions/_portsyncd \
    /usr/share/fish/vendor_completions.d/portsyncd.fish \
    /usr/share/doc/portsyncd/examples/supervisord-portsyncd.conf \
    /usr/share/doc/portsyncd/copyright; do
    grep -qxF "$f" <<<"$listing" || fail "$deb lacks $f"
done
[[ $(dpkg-deb -f "$deb" Package) == portsyncd ]] || fail "wrong package name"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qxF /etc/default/portsyncd ||
    fail "/etc/default/portsyncd is not a conffile"

root=$(mktemp -d -t portsyncd-pkg.XXXXXX)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
# (captured, not piped into grep -q: no SIGPIPE under pipefail)
[[ $("$root/usr/bin/portsyncd" --version) == *"$version"* ]] || fail "portsyncd --version"
[[ $("$root/usr/bin/portsyncd-state" --help) == *audit* ]] || fail "portsyncd-state lacks audit"
[[ $(zcat "$root/usr/share/man/man8/portsyncd.8.gz") == *'log\-output'* ]] || fail "portsyncd.8 lacks --log-output"
unit="$root/usr/lib/systemd/system/portsyncd.service"
for key in StateDirectory=sonic/portsyncd CapabilityBoundingSet=CAP_NET_ADMIN \
    AmbientCapabilities=CAP_NET_ADMIN NoNewPrivileges=yes ProtectSystem=strict \
    EnvironmentFile=-/etc/default/portsyncd; do
    grep -qxF "$key" "$unit" || fail "unit lacks $key"
done

if command -v systemd-analyze >/dev/null 2>&1; then
    # verify resolves ExecStart= on this host: point it at the extracted binary. Any warning
    # (unknown key, bad value) fails the check.
    mkdir "$root/verify"
    sed "s|^ExecStart=/usr/bin/portsyncd|ExecStart=$root/usr/bin/portsyncd|" "$unit" >"$root/verify/portsyncd.service"
    out=$(systemd-analyze verify --man=no "$root/verify/portsyncd.service" 2>&1) || fail "systemd-analyze verify: $out"
    [[ -z $out ]] || fail "systemd-analyze verify: $out"
    echo "check-package: systemd-analyze verify: clean"
else
    echo "check-package: systemd-analyze not available; unit not verified"
fi
echo "check-package: $deb OK ($(wc -l <<<"$listing") entries)"
