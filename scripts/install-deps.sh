#!/usr/bin/env bash
# Installs what swissbox needs to build, test and run, from Debian 12 packages only.
# Idempotent: does nothing but a quick dpkg check when everything is present.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: run as root (apt-get and runsc need it)" >&2
  exit 1
fi

build_pkgs=(cmake ninja-build g++ pkg-config libboost-dev nlohmann-json3-dev libfmt-dev
            libseccomp-dev libcap-dev libnl-3-dev libnl-route-3-dev libnftables-dev
            libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
            libgtest-dev libgmock-dev libbenchmark-dev
            clang libclang-rt-14-dev  # libFuzzer targets
            prometheus  # promtool: the tests check /metrics with Prometheus's own parser
            # Image templates' tests: a registry on loopback, an image built with umoci and
            # pushed with skopeo, pulled through containerd.
            docker-registry skopeo umoci
            zlib1g-dev)  # the browser test inflates its screenshot
# Sandbox languages: the default rootfs binds the host's /usr, so the interpreters and the
# TypeScript transpiler the sandboxes use come from here. bash-static: the runner starts
# shell commands with it (half of bash's start in a sandbox is the dynamic loader).
# e2fsprogs: mkfs.ext4 for the sandboxes' sized disks.
# python3-numpy, -pandas, -matplotlib: the code-interpreter template's (E2B's
# code-interpreter-v1) data libraries, from the host's /usr as well.
# python3-pip (and npm below): the package managers a package layer's build runs in a
# sandbox of the node's root.
run_pkgs=(python3 bash bash-static coreutils procps e2fsprogs nftables containerd
          python3-numpy python3-pandas python3-matplotlib python3-pip)

missing=()
for p in "${build_pkgs[@]}" "${run_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
dpkg-query -W -f='${Status}' node-typescript 2>/dev/null | grep -q "install ok installed" ||
  missing+=(node-typescript)

# runsc: prefer bookworm-backports (20240729, systrap) over bookworm (20221219). Enable the
# suite by adding it to the existing Debian source entry; never name a mirror host.
need_runsc=0
command -v runsc >/dev/null || need_runsc=1
src=/etc/apt/sources.list.d/debian.sources
if [[ $need_runsc -eq 1 && -f $src ]] && ! grep -q bookworm-backports "$src"; then
  sed -i '0,/^Suites: bookworm bookworm-updates$/s//Suites: bookworm bookworm-updates bookworm-backports/' "$src"
fi
if [[ $need_runsc -eq 1 && ! -f $src ]] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  # Classic one-line format: copy the main entry's mirror, change only the suite.
  line=$(grep -E '^deb [^ ]+ bookworm main' /etc/apt/sources.list | head -1 || true)
  [[ -n $line ]] && echo "${line/ bookworm / bookworm-backports }" >/etc/apt/sources.list.d/bookworm-backports.list
fi

if [[ ${#missing[@]} -gt 0 || $need_runsc -eq 1 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  echo "install-deps: installing ${missing[*]} ${need_runsc:+runsc}"
  apt-get update -q
  [[ ${#missing[@]} -gt 0 ]] && apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [[ $need_runsc -eq 1 ]]; then
    apt-get install -y -q -t bookworm-backports runsc || apt-get install -y -q runsc
  fi
fi
# The manifests' schema check (daemonset/validate.mjs) uses Kubernetes API schemas from the
# npm registry, kept inside the checkout.
npm_dir="$(dirname "$0")/../build/npm"
if [[ ! -f $npm_dir/node_modules/kubernetes-models/package.json ]]; then
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --silent \
    kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0 js-yaml@4.1.0
fi
echo "install-deps: ok (runsc $(runsc --version 2>/dev/null | head -1 | awk '{print $3}'))"
