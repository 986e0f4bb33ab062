# Sourced by bin/test and bin/run after _bootstrap.sh (uses its `log` and `apt_install`):
# a Docker engine and the base image that `docker` compute targets run steps in.
#
# ensure_docker starts `dockerd` in the background when no engine answers. It is a system
# daemon: it keeps running after bin/test or bin/run ends (stop it with `kill $(pidof dockerd)`
# if you want it gone); its log is $MILLRACE_DATA_ROOT/logs/dockerd.log, or
# /tmp/millrace-dockerd.log when no data root is set.
# ensure_base_image builds $MILLRACE_BASE_IMAGE (Debian bookworm with python3, from the apt
# mirror this machine already uses) with debootstrap once; later calls find it cached.

export MILLRACE_BASE_IMAGE="${MILLRACE_BASE_IMAGE:-millrace-base:bookworm-1}"
# One lock for both functions, so concurrent bin/test / bin/run never start two engines or
# debootstrap the same image twice.
MILLRACE_DOCKER_LOCK="/tmp/millrace-docker.lock"

ensure_docker() {
  # ensure_docker : a Docker engine answers `docker info` (returns non-zero if it cannot).
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt_install docker.io debootstrap || return 1
  fi
  docker info >/dev/null 2>&1 && return 0
  (
    flock 9
    docker info >/dev/null 2>&1 && exit 0
    local logfile="/tmp/millrace-dockerd.log"
    if [ -n "${MILLRACE_DATA_ROOT:-}" ]; then
      mkdir -p "$MILLRACE_DATA_ROOT/logs" && logfile="$MILLRACE_DATA_ROOT/logs/dockerd.log"
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "Starting dockerd in the background (it keeps running; log: $logfile)"
    # Its own session: Ctrl-C on bin/run must not reach the engine (or the steps it runs);
    # fd 9 closed, or the engine would hold the lock for as long as it runs.
    $sudo setsid dockerd </dev/null >>"$logfile" 2>&1 9>&- &
    local pid=$!
    for _ in $(seq 120); do
      docker info >/dev/null 2>&1 && exit 0
      [ -d "/proc/$pid" ] || break  # it exited: no use waiting
      sleep 0.5
    done
    log "dockerd did not start (or answer within 60 s); the end of $logfile:"
    tail -n 20 "$logfile" >&2
    exit 1
  ) 9>"$MILLRACE_DOCKER_LOCK"
}

_apt_mirror() {
  # The Debian mirror this machine's apt uses (never hard-coded: it differs per machine).
  local sources=/etc/apt/sources.list.d/debian.sources uri=""
  [ -f "$sources" ] && uri="$(awk '$1 == "URIs:" {print $2; exit}' "$sources")"
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' /etc/apt/sources.list)"
  fi
  printf '%s' "$uri"
}

ensure_base_image() {
  # ensure_base_image : the image $MILLRACE_BASE_IMAGE exists on the engine (returns non-zero
  # if it cannot be built).
  docker image inspect "$MILLRACE_BASE_IMAGE" >/dev/null 2>&1 && return 0
  (
    flock 9
    docker image inspect "$MILLRACE_BASE_IMAGE" >/dev/null 2>&1 && exit 0
    local mirror
    mirror="$(_apt_mirror)"
    if [ -z "$mirror" ]; then
      log "Cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources"
      exit 1
    fi
    local cache=/var/cache/millrace
    mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=/tmp
    local dir
    dir="$(mktemp -d "$cache/base-image.XXXXXX")"
    trap 'rm -rf "$dir"' EXIT
    log "Building the base image $MILLRACE_BASE_IMAGE with debootstrap (about a minute, once)"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$dir/rootfs" "$mirror" >"$dir/debootstrap.log" 2>&1; then
      log "debootstrap failed; the end of its log:"
      tail -n 20 "$dir/debootstrap.log" >&2
      exit 1
    fi
    # Package caches are not needed in the image.
    rm -rf "$dir/rootfs/var/cache/apt/archives/"*.deb "$dir/rootfs/var/lib/apt/lists/"*
    log "Importing $MILLRACE_BASE_IMAGE"
    tar -C "$dir/rootfs" -c . | docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      - "$MILLRACE_BASE_IMAGE" >/dev/null
  ) 9>"$MILLRACE_DOCKER_LOCK"
}
