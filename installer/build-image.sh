#!/usr/bin/env bash
# Builds the swissbox image (agent, scheduler, installer, runsc wrapper, runner, swissboxctl,
# runsc and the sandbox rootfs) with buildah from scratch — no registry, no daemon — and
# writes it as an OCI archive. The base is a minimal Debian 12 with only the libraries the
# binaries link; runsc (static) is the one this machine has. Run after a build.
# usage: installer/build-image.sh [OUT.tar] [TAG]   (default build/swissbox-image.tar,
#        swissbox/agent:0.1.0); then e.g. `skopeo copy oci-archive:OUT.tar docker://REGISTRY/…`
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/swissbox-image.tar}
tag=${2:-swissbox/agent:0.1.0}
[[ $(id -u) -eq 0 ]] || { echo "build-image: run as root" >&2; exit 1; }
for p in buildah debootstrap; do
  command -v $p >/dev/null || apt-get install -y -q --no-install-recommends $p
done
bin=build/bin
for b in swissbox-agent swissbox-scheduler swissbox-installer swissbox-runsc swissbox-init swissboxctl; do
  [[ -x $bin/$b ]] || { echo "build-image: $bin/$b missing: build first" >&2; exit 1; }
done
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[[ -n $mirror ]] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
echo "build-image: base (Debian 12, runtime libraries only)"
debootstrap --variant=minbase \
  --include=libgrpc++1.51,libprotobuf32,libnl-3-200,libnl-route-3-200,libnftables1,libseccomp2,libcap2,libfmt9,e2fsprogs,util-linux,ca-certificates \
  bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; exit 1; }
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
install -m 0755 $bin/swissbox-agent $bin/swissbox-scheduler $bin/swissbox-installer \
  $bin/swissbox-runsc $bin/swissbox-init $bin/swissboxctl "$(command -v runsc)" "$root/usr/local/bin/"
install -D -m 0644 seccomp-profiles/agent.json "$root/usr/local/share/swissbox/seccomp/agent.json"
echo "build-image: sandbox rootfs"
installer/build-rootfs.sh "$root/opt/swissbox/rootfs"

echo "build-image: image $tag"
ctr=$(buildah from scratch)
buildah copy --quiet "$ctr" "$root" / >/dev/null
buildah config --entrypoint '["/usr/local/bin/swissbox-agent"]' \
  --label org.opencontainers.image.title=swissbox "$ctr"
buildah commit --quiet "$ctr" "$tag" >/dev/null
buildah rm "$ctr" >/dev/null
rm -f "$out"
buildah push --quiet "$tag" "oci-archive:$out:$tag"
echo "build-image: $out ($(du -h "$out" | cut -f1))"
