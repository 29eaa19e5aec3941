#!/usr/bin/env bash
# Builds the read-only root filesystem for sandboxes from Debian packages (bash, coreutils,
# python3 with pip, numpy, pandas and matplotlib for the code-interpreter template, nodejs) plus the TypeScript compiler from npm, into OUT_DIR, and records
# what is in it (OUT_DIR/etc/swissbox-rootfs.packages). The agent uses it with
# `--rootfs OUT_DIR`. Needs root, debootstrap and npm (scripts/install-deps.sh has npm;
# `apt-get install debootstrap`). The Debian mirror is the one this machine's apt uses.
# usage: installer/build-rootfs.sh OUT_DIR
set -euo pipefail
out=${1:?usage: build-rootfs.sh OUT_DIR}
[[ $(id -u) -eq 0 ]] || { echo "build-rootfs: run as root" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
command -v debootstrap >/dev/null || apt-get install -y -q --no-install-recommends debootstrap

mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[[ -n $mirror ]] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
[[ -n $mirror ]] || { echo "build-rootfs: no Debian mirror in this machine's apt sources" >&2; exit 1; }

echo "build-rootfs: debootstrap bookworm from $mirror into $out"
debootstrap --variant=minbase \
  --include=bash,bash-static,coreutils,procps,ca-certificates,python3,python3-pip,python3-venv,nodejs,python3-numpy,python3-pandas,python3-matplotlib \
  bookworm "$out" "$mirror" >"$out.debootstrap.log" 2>&1 ||
  { tail -20 "$out.debootstrap.log"; exit 1; }

echo "build-rootfs: TypeScript from npm"
npm install --prefix "$out/usr/local/lib" --no-audit --no-fund --silent typescript@5.6.3

# Mount points the agent binds into every sandbox, and nothing the sandbox need not see.
mkdir -p "$out/workspace" "$out/tmp" "$out/.swissbox" "$out/home"
ln -sfn /workspace "$out/home/user"  # E2B's user home is the workspace
chmod 1777 "$out/tmp"
rm -rf "$out/var/cache/apt/archives/"*.deb "$out/var/lib/apt/lists/"* "$out.debootstrap.log"
{
  echo "# Debian packages"
  chroot "$out" dpkg-query -W -f='${Package} ${Version}\n'
  echo "# npm packages (/usr/local/lib/node_modules)"
  echo "typescript $(node -p "require('$out/usr/local/lib/node_modules/typescript/package.json').version")"
} >"$out/etc/swissbox-rootfs.packages"
echo "build-rootfs: done; $(grep -vc '^#' "$out/etc/swissbox-rootfs.packages") packages, $(du -sh "$out" | cut -f1)"
