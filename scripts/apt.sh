# Sourced by the scripts that install what is missing: root (or sudo) and apt-get,
# with one `apt-get update` per run.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "please install: $* (no apt-get on this machine)" >&2; return 1
  fi
  if [ -z "${TOKENROUTE_APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    export TOKENROUTE_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
